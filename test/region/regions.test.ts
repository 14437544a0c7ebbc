/**
 * Regions: placement (a client writes to its region's bucket, slices record their home), the read order
 * (own bucket, home bucket, others; never first a bucket known to lack the block), fall-through on missing,
 * corrupt and unreachable copies, and deletions in every bucket only after the grace period.
 */

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { formatVolume, FsError, openMetaEngine, openVolume, UsageError, type Volume } from '../../src/index.js';
import { FaultStore } from '../../src/object/faults.js';
import { GATE_PROBE_INTERVAL_MS_DEFAULT } from '../../src/object/gate.js';
import { RetryStore } from '../../src/object/retry.js';
import { ObjectNotFoundError } from '../../src/object/store.js';
import { addRegion, removeRegion, volumeRegions } from '../../src/region/regions.js';
import { loadFormat } from '../../src/meta/meta.js';
import { gcVolume } from '../../src/cli/gc.js';
import { badBlocks, CountingStore, makeRegionLab, pseudoRandom, type RegionLab } from './helpers.js';

const KiB = 1024;
/** Sizes around the 64 KiB block edge, and several blocks. */
const SIZES = [0, 1, 1000, 64 * KiB - 1, 64 * KiB, 64 * KiB + 1, 200 * KiB, 1024 * KiB + 7];

async function writeSet(lab: RegionLab, prefix: string, seed: number): Promise<Map<string, Buffer>> {
  const va = await lab.open('a');
  const files = new Map<string, Buffer>();
  await va.mkdir(prefix, { recursive: true });
  for (const [i, n] of SIZES.entries()) {
    const data = pseudoRandom(n, seed + i);
    await va.writeFile(`${prefix}/f${i}`, data);
    files.set(`${prefix}/f${i}`, data);
  }
  await va.close();
  return files;
}

/** A quick store wrapper setup for a client: few, short retries so a dead bucket is given up on fast. */
function quickRetry(inner: FaultStore | CountingStore | ReturnType<RegionLab['store']>): RetryStore {
  return new RetryStore(inner, { attemptsMax: 2, backoffMsMin: 1, backoffMsMax: 5 });
}

describe('regions in the volume format', () => {
  it('old one-region records read as region "default"; region add keeps existing slices in their bucket', async () => {
    const lab = await makeRegionLab();
    try {
      const engine = await openMetaEngine(lab.metaUrl);
      try {
        const f = (await loadFormat(engine))!;
        const r = volumeRegions(f);
        assert.equal(r.primary, 'a');
        assert.deepEqual([...r.regions.keys()], ['a', 'b']);
        assert.equal(f.storage, `file://${lab.bucket('a')}`, 'storage follows the primary');
        assert.deepEqual([...volumeRegions({ ...f, regions: undefined, primary: undefined } as never).regions.keys()], ['default']);
        const added = await addRegion(engine, 'c', { storage: 'mem://c' });
        assert.deepEqual([...volumeRegions(added).regions.keys()], ['a', 'b', 'c']);
        await assert.rejects(addRegion(engine, 'c', { storage: 'mem://c' }), /already has a region 'c'/);
        await assert.rejects(removeRegion(engine, 'a'), /primary and cannot be removed/);
        const removed = await removeRegion(engine, 'c');
        assert.deepEqual([...volumeRegions(removed).regions.keys()], ['a', 'b']);
      } finally {
        await engine.close();
      }
      await assert.rejects(lab.open('x' as 'a'), /has no region 'x'/);
    } finally {
      await lab.cleanup();
    }
  });
});

describe('placement and read order', () => {
  let lab: RegionLab;
  let files: Map<string, Buffer>;
  before(async () => {
    lab = await makeRegionLab();
    files = await writeSet(lab, '/set', 1);
  });
  after(() => lab.cleanup());

  it('a client writes to its own bucket and records its region as the slices\' home', async () => {
    const blocks = await lab.liveBlocks();
    assert.ok(blocks.length > 0);
    for (const b of blocks) assert.equal(b.home, 'a');
    assert.deepEqual(await badBlocks(lab.store('a'), blocks), []);
    assert.equal((await badBlocks(lab.store('b'), blocks)).length, blocks.length, 'nothing in b before replication');
  });

  it('writes in a are read in b before replication, byte for byte, without asking b first', async () => {
    const b = new CountingStore(lab.store('b'));
    const vb = await lab.open('b', { stores: { b } });
    for (const [p, data] of files) assert.ok((await vb.readFile(p)).equals(data), p);
    assert.equal(b.calls.get, 0, 'known not replicated: b was never asked');
    await vb.close();
  });

  it('after replication, b reads its own bucket only', async () => {
    const rep = await lab.replicator();
    const r = await rep.runOnce();
    assert.equal(r.pending, 0);
    const blocks = await lab.liveBlocks();
    assert.ok(r.blocksCopied >= blocks.length - 1, `copied ${r.blocksCopied} of ${blocks.length}`);
    assert.deepEqual(await badBlocks(lab.store('b'), blocks), [], 'every block in b, verifying');
    const a = new CountingStore(lab.store('a'));
    const vb = await lab.open('b', { stores: { a } });
    for (const [p, data] of files) assert.ok((await vb.readFile(p)).equals(data), p);
    assert.equal(a.calls.get, 0, 'nothing read from the home bucket');
    await vb.close();
    // A second run has nothing to do.
    const again = await (await lab.replicator()).runOnce();
    assert.equal(again.blocksCopied, 0);
  });

  it("with a's bucket failing every call, b reads every replicated file and a clear error for the rest", async () => {
    const fresh = await writeSet(lab, '/fresh', 100);
    const down = new FaultStore(lab.store('a'), { seed: 7 });
    down.setDown(true);
    const vb = await lab.open('b', { stores: { a: quickRetry(down) } });
    for (const [p, data] of files) assert.ok((await vb.readFile(p)).equals(data), `replicated ${p}`);
    for (const [p, data] of fresh) {
      if (data.length === 0) {
        assert.equal((await vb.readFile(p)).length, 0);
        continue;
      }
      await assert.rejects(vb.readFile(p), (err: unknown) => {
        assert.ok(err instanceof FsError, `FsError, got ${String(err)}`);
        assert.equal(err.code, 'EIO');
        assert.match(err.message, /no good copy of chunks\/\S+: a: unreachable \(injected fault: store down .*\), b: missing\)/);
        return true;
      }, p);
    }
    await vb.close();
  });

  it('a corrupted replica is detected and the home copy served', async () => {
    // Replicate /fresh too, then damage b's copies of one file's blocks.
    assert.equal((await (await lab.replicator()).runOnce()).pending, 0);
    const target = '/fresh/f6'; // 200 KiB: 4 blocks
    const va = await lab.open('a');
    const ino = (await va.stat(target)).ino;
    await va.close();
    const { meta } = await lab.tools();
    const ids = (await meta.readChunks(ino)).flatMap(([, refs]) => refs.map((r) => r.id));
    const damaged: string[] = [];
    for (const top of readdirSync(join(lab.bucket('b'), 'chunks'), { recursive: true, withFileTypes: true })) {
      if (!top.isFile()) continue;
      const id = Number(top.name.split('_')[0]);
      if (!ids.includes(id)) continue;
      const file = join(top.parentPath, top.name);
      const buf = readFileSync(file);
      buf[buf.length - 1]! ^= 0xff;
      writeFileSync(file, buf);
      damaged.push(top.name);
    }
    assert.ok(damaged.length >= 4, `damaged ${damaged.length} copies`);
    const vb = await lab.open('b');
    const data = await vb.readFile(target);
    assert.ok(data.equals(pseudoRandom(200 * KiB, 106)), 'the home copy was served');
    assert.ok(vb.vfs.chunks.stats.corrupt >= damaged.length, `corrupt copies counted: ${vb.vfs.chunks.stats.corrupt}`);
    await vb.close();
    // With the home bucket down too, the damage is an error, never wrong bytes.
    const down = new FaultStore(lab.store('a'), { seed: 8 });
    down.setDown(true);
    const vb2 = await lab.open('b', { stores: { a: quickRetry(down) } });
    await assert.rejects(vb2.readFile(target), /no good copy of chunks\/\S+: b: corrupt \(stripe 0 checksum mismatch\), a: unreachable \(injected fault: store down/);
    await vb2.close();
    // --scan finds what the records claim but the buckets no longer hold intact? Sizes match, so a
    // scan cannot see a flipped byte; readers do, and the copy is replaced by copying again:
    const rep = await lab.replicator();
    const scan = await rep.scanBuckets();
    assert.deepEqual(scan.failed, []);
  });

  it('a missing replica falls through to the home bucket, and --scan restores it', async () => {
    const blocks = await lab.liveBlocks();
    const victim = blocks.find((b) => b.len === 64 * KiB)!;
    await lab.store('b').delete(victim.key);
    await assert.rejects(lab.store('b').get(victim.key), ObjectNotFoundError);
    const vb = await lab.open('b');
    for (const [p, data] of files) assert.ok((await vb.readFile(p)).equals(data), p);
    await vb.close();
    const scan = await (await lab.replicator()).scanBuckets();
    assert.ok(scan.copied >= 1, `scan copied ${scan.copied}`);
    assert.deepEqual(await badBlocks(lab.store('b'), [victim]), []);
  });
});

/** An S3 URL whose endpoint refuses connections: a bucket that cannot be reached. */
async function unreachableS3Url(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `s3://AKIDEXAMPLE:secretsecret@gone?endpoint=http://127.0.0.1:${port}&path-style=true&region=us-east-1`;
}

/** A write that must fail at once (no retries, no timeouts) with EIO naming region a's bucket as unreachable. */
async function assertWriteFailsFast(v: Volume, why: RegExp): Promise<void> {
  const t0 = performance.now();
  await assert.rejects(v.writeFile('/new', pseudoRandom(100 * KiB, 9)), (err: unknown) => {
    assert.ok(err instanceof FsError && err.code === 'EIO', String(err));
    assert.match(err.message, /the bucket of region a \(.+\) is unreachable: /);
    assert.match(err.message, why);
    return true;
  });
  const ms = performance.now() - t0;
  assert.ok(ms < 3000, `the write failed after ${Math.round(ms)} ms`);
}

describe("a client whose own region's bucket does not answer", () => {
  it('opens while its bucket is unreachable (a refused endpoint), reads what b holds, and a write fails at once naming the bucket', async () => {
    const lab = await makeRegionLab({ storage: { a: await unreachableS3Url() } });
    try {
      const vb = await lab.open('b');
      await vb.mkdir('/from-b');
      await vb.writeFile('/from-b/f', pseudoRandom(200 * KiB, 21));
      await vb.close();
      const va = await lab.open('a');
      assert.deepEqual(await va.readdir('/'), ['from-b']);
      assert.ok((await va.readFile('/from-b/f')).equals(pseudoRandom(200 * KiB, 21)));
      await assertWriteFailsFast(va, /ECONNREFUSED|connect|socket|refused/i);
      await va.close();
    } finally {
      await lab.cleanup();
    }
  });

  it('opens while its bucket directory is gone, reads the replicas in b, and a write fails at once (the directory is not recreated)', async () => {
    const lab = await makeRegionLab();
    try {
      const files = await writeSet(lab, '/set', 500);
      assert.equal((await (await lab.replicator()).runOnce()).pending, 0);
      rmSync(lab.bucket('a'), { recursive: true });
      const va = await lab.open('a');
      for (const [p, data] of files) assert.ok((await va.readFile(p)).equals(data), p);
      await assertWriteFailsFast(va, /bucket directory .*bucket-a does not exist/);
      assert.equal(existsSync(lab.bucket('a')), false, 'no empty bucket made in its place');
      await va.close();
    } finally {
      await lab.cleanup();
    }
  });

  it('opens while its store fails every call, falls through to b, writes fail at once; once the bucket is back a client writes there', async () => {
    const lab = await makeRegionLab();
    try {
      const files = await writeSet(lab, '/set', 600);
      assert.equal((await (await lab.replicator()).runOnce()).pending, 0);
      const down = new FaultStore(lab.store('a'), { seed: 9 });
      down.setDown(true);
      const va = await lab.open('a', { stores: { a: quickRetry(down) } });
      const refused = down.stats().refused;
      const t0 = performance.now();
      for (const [p, data] of files) assert.ok((await va.readFile(p)).equals(data), p);
      // The reads never asked the dead bucket: at most a probe per interval did.
      const probes = 1 + Math.floor((performance.now() - t0) / GATE_PROBE_INTERVAL_MS_DEFAULT);
      assert.ok(down.stats().refused - refused <= probes, `${down.stats().refused - refused} calls reached the dead bucket`);
      await assertWriteFailsFast(va, /injected fault: store down/);
      await va.close();
      // Back up (the volume closed the store it was given): a new client opens as usual and writes to its bucket.
      const again = await lab.open('a', { stores: { a: quickRetry(lab.store('a')) } });
      await again.writeFile('/new', pseudoRandom(10 * KiB, 3));
      assert.ok((await again.readFile('/new')).equals(pseudoRandom(10 * KiB, 3)));
      await again.close();
      assert.deepEqual(await badBlocks(lab.store('a'), await lab.liveBlocks()), [], 'every block in a, the new one too');
    } finally {
      await lab.cleanup();
    }
  });

  it('a one-region volume whose only bucket is unreachable still fails to open, saying so', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-one-region-'));
    try {
      const metaUrl = `sqlite://${join(dir, 'meta.db')}`;
      const engine = await openMetaEngine(metaUrl, { create: true });
      await formatVolume(engine, { name: 'one', storage: await unreachableS3Url(), blockBytes: 64 * KiB, compression: 'none', trashDays: 0 });
      await engine.close();
      await assert.rejects(openVolume(metaUrl, { heartbeatMs: 0 }), (err: unknown) => err instanceof UsageError && /^cannot reach the bucket s3:\/\/.*gone/.test(err.message));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('block identity across buckets', () => {
  it('a well-formed block under another key in the home bucket is not replicated, and reads name it', async () => {
    const lab = await makeRegionLab();
    try {
      const va = await lab.open('a');
      await va.writeFile('/x', pseudoRandom(64 * KiB, 31));
      await va.writeFile('/y', pseudoRandom(64 * KiB, 32));
      await va.close();
      const blocks = await lab.liveBlocks();
      assert.equal(blocks.length, 2);
      const [x, y] = blocks as [(typeof blocks)[0], (typeof blocks)[0]];
      // A copy bug put x's block (same length, well-formed) where y's belongs.
      const a = lab.store('a');
      await a.put(y.key, await a.get(x.key));
      const events: string[] = [];
      const r = await (await lab.replicator({ onEvent: (e) => (e.type === 'error' ? events.push(String(e.error)) : undefined) })).runOnce();
      assert.equal(r.pending, 1, 'the slice with the misplaced block stays pending');
      assert.ok(events.some((e) => e.includes(y.key) && /identity mismatch/.test(e)), events.join('\n'));
      assert.deepEqual(await badBlocks(lab.store('b'), blocks), [y.key], 'only x was copied to b');
      const { meta } = await lab.tools();
      const copies = [...(await meta.listSlices()).values()].map((s) => s.copies ?? []);
      assert.deepEqual(copies.map((c) => c.includes('b')).sort(), [false, true], 'y is not recorded as copied');
      // A reader in b: x from its own bucket; y fails naming what each bucket holds, never x's bytes.
      const vb = await lab.open('b');
      assert.ok((await vb.readFile('/x')).equals(pseudoRandom(64 * KiB, 31)));
      await assert.rejects(vb.readFile('/y'), (err: unknown) => err instanceof FsError && err.code === 'EIO' && /identity mismatch/.test(err.message));
      await vb.close();
    } finally {
      await lab.cleanup();
    }
  });
});

describe('deletions', () => {
  it('reach every bucket after the grace period and never before', async () => {
    const lab = await makeRegionLab();
    try {
      const files = await writeSet(lab, '/d', 300);
      assert.equal((await (await lab.replicator()).runOnce()).pending, 0);
      const blocks = await lab.liveBlocks();
      assert.deepEqual(await badBlocks(lab.store('b'), blocks), []);
      const va = await lab.open('a');
      for (const p of files.keys()) await va.unlink(p);
      await va.close();
      assert.deepEqual(await lab.liveBlocks(), [], 'every slice released');
      const graceMs = 60_000;
      const t0 = Date.now();
      // Before the grace period: neither the replicator nor gc deletes anything.
      const early = await lab.replicator({ graceMs, now: () => t0 + graceMs - 1000 });
      await early.runOnce();
      const { meta } = await lab.tools();
      const tools = { engine: meta.engine, meta, format: meta.format, store: lab.store('a'), close: () => Promise.resolve() };
      const gcEarly = await gcVolume(tools, { graceMs, leakAgeMs: 3_600_000, now: t0 + graceMs - 1000, otherStores: new Map([['b', lab.store('b')]]) });
      assert.equal(gcEarly.slicesDeleted, 0);
      assert.ok(gcEarly.slicesWaiting > 0);
      assert.deepEqual(await badBlocks(lab.store('a'), blocks), [], 'a keeps every block during the grace period');
      assert.deepEqual(await badBlocks(lab.store('b'), blocks), [], 'b keeps every block during the grace period');
      // After it: gone from both buckets, and the records dropped.
      const late = await lab.replicator({ graceMs, now: () => t0 + graceMs + 1000 });
      await late.runOnce();
      assert.equal((await badBlocks(lab.store('a'), blocks)).length, blocks.length, 'gone from a');
      assert.equal((await badBlocks(lab.store('b'), blocks)).length, blocks.length, 'gone from b');
      assert.deepEqual(await meta.listDelSlices(Number.MAX_SAFE_INTEGER), []);
      assert.ok(late.stats.deletedSlices > 0);
    } finally {
      await lab.cleanup();
    }
  });

  it('gc deletes released slices in every bucket', async () => {
    const lab = await makeRegionLab();
    try {
      const files = await writeSet(lab, '/g', 400);
      assert.equal((await (await lab.replicator()).runOnce()).pending, 0);
      const blocks = await lab.liveBlocks();
      const va = await lab.open('a');
      for (const p of files.keys()) await va.unlink(p);
      await va.close();
      const { meta } = await lab.tools();
      const tools = { engine: meta.engine, meta, format: meta.format, store: lab.store('a'), close: () => Promise.resolve() };
      const r = await gcVolume(tools, { graceMs: 0, leakAgeMs: 3_600_000, otherStores: new Map([['b', lab.store('b')]]) });
      assert.ok(r.slicesDeleted > 0);
      assert.equal((await badBlocks(lab.store('a'), blocks)).length, blocks.length);
      assert.equal((await badBlocks(lab.store('b'), blocks)).length, blocks.length);
    } finally {
      await lab.cleanup();
    }
  });
});
