/**
 * The write-back staging area (cache/writeback.ts) on its own, over a real file:// bucket: a staged copy leaves
 * local disk only once the bucket verifiably holds it, damaged staged files are never uploaded, abandoned
 * slices are not uploaded, and staging declines (so the caller puts directly) when the disk is short of space.
 */

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, beforeEach, describe, it } from 'node:test';
import { encodeBlock } from '../../src/chunk/codec.js';
import { blockKey } from '../../src/chunk/keys.js';
import { Writeback } from '../../src/cache/writeback.js';
import { CorruptBlockError } from '../../src/errors.js';
import { FileStore } from '../../src/object/file.js';
import { ObjectNotFoundError, type CallOptions, type ObjectStore } from '../../src/object/store.js';

const QUICK = { retryDelayMsMin: 5, retryDelayMsMax: 20, reportIntervalMs: 10 };

function block(slice: number, index: number, bytes: number, fill: number): { key: string; object: Buffer; plain: Buffer } {
  const key = blockKey(slice, index, bytes);
  const plain = Buffer.alloc(bytes, fill);
  return { key, object: encodeBlock(plain, 'none', key), plain };
}

/** A bucket that stores a truncated copy of every put while `broken` (a server that lost part of a body). */
class TruncatingStore extends FileStore {
  broken = true;
  override async put(key: string, data: Buffer, options?: CallOptions): Promise<void> {
    await super.put(key, this.broken ? data.subarray(0, data.length - 1) : data, options);
  }
}

async function staged(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => /^\d/.test(n)).sort();
}

describe('write-back staging area', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'ferry-wbs-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('keeps a staged copy until the bucket verifiably holds it', async () => {
    const bucket = new TruncatingStore(path.join(root, 'bucket'));
    const dir = path.join(root, 'wb');
    const wb = new Writeback({ dir, store: bucket, ...QUICK });
    try {
      const b = block(7, 0, 5000, 1);
      assert.equal(await wb.stage(b.key, b.object, 7), true);
      while (wb.uploadStats().uploadFailures < 2) await new Promise((r) => setTimeout(r, 5));
      // The bucket holds a short copy: not trusted, so the staged one stays.
      assert.deepEqual(await staged(dir), ['7_0_5000']);
      assert.equal(wb.uploadStats().pendingBlocks, 1);
      bucket.broken = false;
      assert.equal(await wb.drain(5000), true);
      assert.deepEqual(await staged(dir), []);
      assert.ok((await bucket.get(b.key)).equals(b.object));
    } finally {
      await wb.close();
    }
  });

  it('serves staged blocks verified, and never returns or uploads a damaged one', async () => {
    const bucket = new FileStore(path.join(root, 'bucket'));
    const dir = path.join(root, 'wb');
    const down: ObjectStore = Object.assign(Object.create(bucket) as ObjectStore, {
      put: () => Promise.reject(new Error('bucket down')),
    });
    const first = new Writeback({ dir, store: down, ...QUICK });
    const good = block(3, 0, 4096, 2);
    const bad = block(4, 0, 4096, 3);
    await first.stage(good.key, good.object, 3);
    await first.stage(bad.key, bad.object, 4);
    const part = await first.get(good.key, 4096, { from: 10, to: 20, head: false });
    assert.ok(part !== undefined && part.start === 0 && part.data.equals(good.plain));
    assert.equal(await first.get(blockKey(5, 0, 4096), 4096, undefined), undefined, 'not staged: not held');
    await first.close();
    // Bit rot in one staged file while no client runs.
    const damaged = Buffer.from(bad.object);
    damaged[damaged.length - 1]! ^= 0xff;
    await writeFile(path.join(dir, '4_0_4096'), damaged);

    const next = new Writeback({ dir, store: bucket, ...QUICK });
    try {
      assert.equal(next.uploadStats().recovered, 2);
      assert.equal(await next.drain(5000), true);
      assert.equal(next.uploadStats().corrupt, 1);
      assert.ok((await bucket.get(good.key)).equals(good.object));
      await assert.rejects(bucket.head(bad.key), ObjectNotFoundError, 'a damaged staged copy is never uploaded');
      assert.deepEqual(await readdir(path.join(dir, 'corrupt')), ['4_0_4096']);
    } finally {
      await next.close();
    }
  });

  it('a damaged staged copy is a bad copy to a reader, not bytes', async () => {
    const dir = path.join(root, 'wb');
    // Its one upload hangs (it read the good copy already), so only the reader meets the damaged one.
    const hanging: ObjectStore = Object.assign(Object.create(new FileStore(path.join(root, 'bucket'))) as ObjectStore, {
      put: (_k: string, _d: Buffer, o?: CallOptions) => new Promise<void>((_resolve, reject) => o?.signal?.addEventListener('abort', () => reject(new Error('aborted')))),
    });
    const wb = new Writeback({ dir, store: hanging, ...QUICK });
    try {
      const b = block(9, 1, 70_000, 4);
      await wb.stage(b.key, b.object, 9);
      const damaged = Buffer.from(b.object);
      damaged[100]! ^= 1;
      await writeFile(path.join(dir, 'damaged'), damaged);
      await rename(path.join(dir, 'damaged'), path.join(dir, '9_1_70000'));
      await assert.rejects(wb.get(b.key, 70_000, undefined), CorruptBlockError);
      assert.equal(wb.uploadStats().pendingBlocks, 0);
      assert.ok(existsSync(path.join(dir, 'corrupt', '9_1_70000')));
    } finally {
      await wb.close();
    }
  });

  it('drops the staged blocks of an abandoned slice instead of uploading them', async () => {
    const bucket = new FileStore(path.join(root, 'bucket'));
    const dir = path.join(root, 'wb');
    let open = false;
    const gated: ObjectStore = Object.assign(Object.create(bucket) as ObjectStore, {
      put: (key: string, data: Buffer, o?: CallOptions) => (open ? bucket.put(key, data, o) : Promise.reject(new Error('not yet'))),
    });
    const wb = new Writeback({ dir, store: gated, ...QUICK });
    try {
      const kept = block(11, 0, 100, 5);
      const dropped = [block(12, 0, 65536, 6), block(12, 1, 10, 6)];
      await wb.stage(kept.key, kept.object, 11);
      for (const b of dropped) await wb.stage(b.key, b.object, 12);
      await wb.discard(12);
      assert.deepEqual(await staged(dir), ['11_0_100']);
      open = true;
      assert.equal(await wb.drain(5000), true);
      await bucket.head(kept.key);
      for (const b of dropped) await assert.rejects(bucket.head(b.key), ObjectNotFoundError);
    } finally {
      await wb.close();
    }
  });

  it('blocks staged without a sync are synced per slice before a commit; one that vanished fails the sync', async () => {
    const dir = path.join(root, 'wb');
    const hanging: ObjectStore = Object.assign(Object.create(new FileStore(path.join(root, 'bucket'))) as ObjectStore, {
      put: (_k: string, _d: Buffer, o?: CallOptions) => new Promise<void>((_resolve, reject) => o?.signal?.addEventListener('abort', () => reject(new Error('aborted')))),
    });
    const wb = new Writeback({ dir, store: hanging, ...QUICK });
    try {
      const a = [block(21, 0, 65536, 1), block(21, 1, 70_000, 1)];
      const b = block(22, 0, 100, 2);
      for (const x of a) assert.equal(await wb.stage(x.key, x.object, 21, false), true);
      assert.equal(await wb.stage(b.key, b.object, 22, false), true);
      await wb.sync([21, 99]);
      await rm(path.join(dir, '22_0_100'));
      await assert.rejects(wb.sync([22]), /ENOENT/);
      // Read back from the staging area whatever the sync state.
      const got = await wb.get(a[1]!.key, 70_000, undefined);
      assert.ok(got?.data.equals(a[1]!.plain));
    } finally {
      await wb.close();
    }
  });

  it('declines to stage on a disk below its free-space floor (the caller puts the block itself)', async () => {
    const wb = new Writeback({ dir: path.join(root, 'wb'), store: new FileStore(path.join(root, 'bucket')), freeSpaceFloorRatio: 1 });
    try {
      const b = block(1, 0, 10, 1);
      assert.equal(await wb.stage(b.key, b.object, 1), false);
      assert.equal(wb.uploadStats().declined, 1);
      assert.equal(wb.uploadStats().pendingBlocks, 0);
    } finally {
      await wb.close();
    }
  });

  it('rejects tuning out of range with a precise message', () => {
    assert.throws(() => new Writeback({ dir: path.join(root, 'x'), store: new FileStore(root), uploadsInFlightMax: 0 }), /uploadsInFlightMax must be an integer >= 1, got 0/);
    assert.throws(() => new Writeback({ dir: path.join(root, 'x'), store: new FileStore(root), retryDelayMsMin: 100, retryDelayMsMax: 50 }), /retryDelayMsMax must be an integer >= 100, got 50/);
  });
});
