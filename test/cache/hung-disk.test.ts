/**
 * A cache disk that hangs or fails costs only speed (src/cache/tier-cache.ts answerMsMax): a read goes around a
 * hung disk within the bound, later reads do not wait for it at all, and the disk is used again once it
 * answers; a disk whose reads fail is a miss. The cache is a real DiskBlockCache behind a switch that makes its
 * calls hang or fail, as a stuck or broken device would.
 */

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createChunkStore } from '../../src/cache/blocks.js';
import type { BlockCache, CacheStats } from '../../src/cache/cache.js';
import { DiskBlockCache } from '../../src/cache/disk.js';
import { DISK_TIER, type BlockReader } from '../../src/cache/reader.js';
import type { CacheTier } from '../../src/cache/tier-cache.js';
import { MemStore } from '../../src/object/mem.js';
import { CountingStore, pseudoRandom } from '../region/helpers.js';

/** A block cache whose calls hang (until released) or fail, on a switch. */
class SwitchedCache implements BlockCache {
  mode: 'ok' | 'hang' | 'fail' = 'ok';
  private waiting: Array<() => void> = [];
  readonly inner: DiskBlockCache;
  constructor(inner: DiskBlockCache) {
    this.inner = inner;
  }
  private async gate(): Promise<void> {
    if (this.mode === 'fail') throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
    if (this.mode === 'hang') await new Promise<void>((r) => this.waiting.push(r));
  }
  release(): void {
    this.mode = 'ok';
    for (const r of this.waiting.splice(0)) r();
  }
  async get(key: string): Promise<Buffer | undefined> {
    await this.gate();
    return this.inner.get(key);
  }
  async put(key: string, data: Buffer): Promise<void> {
    await this.gate();
    return this.inner.put(key, data);
  }
  async delete(key: string): Promise<void> {
    await this.gate();
    return this.inner.delete(key);
  }
  stats(): CacheStats {
    return this.inner.stats();
  }
  close(): Promise<void> {
    this.release();
    return this.inner.close();
  }
}

const B = 256 * 1024;
const SIZE = 4 * B;
const ID = 31;
const content = pseudoRandom(SIZE, 31);

void describe('a hung or failing cache disk', () => {
  void it('costs one bounded wait, then nothing; the disk is used again once it answers', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ferry-hung-'));
    const disk = new SwitchedCache(new DiskBlockCache({ dir, capacityBytes: 64 << 20, freeSpaceFloorRatio: 0 }));
    const bucket = new CountingStore(new MemStore());
    const chunks = createChunkStore({ store: bucket, blockBytes: B, compression: 'none', diskCache: disk });
    const tier = (chunks.reads as BlockReader).tier(DISK_TIER) as CacheTier;
    const read = async (): Promise<Buffer> => {
      const out = Buffer.alloc(SIZE);
      await chunks.readSlice(ID, SIZE, 0, SIZE, out, 0);
      return out;
    };
    try {
      for (let i = 0; i < 4; i++) await chunks.putBlock(ID, i, content.subarray(i * B, (i + 1) * B));
      assert.deepEqual(await read(), content, 'first pass fills the disk');
      await disk.inner.flush();
      const gets = bucket.calls.get;

      disk.mode = 'hang';
      const t0 = Date.now();
      assert.deepEqual(await read(), content, 'right bytes from the bucket');
      const ms = Date.now() - t0;
      assert.ok(ms < 3000, `went around the hung disk in ${ms} ms (bound 1000 ms, once)`);
      assert.ok(tier.bypassed, 'the disk is bypassed while a call hangs');
      const t1 = Date.now();
      assert.deepEqual(await read(), content);
      assert.ok(Date.now() - t1 < 500, 'a later read does not wait for the hung disk');
      assert.ok(bucket.calls.get > gets);

      disk.release();
      for (let i = 0; i < 200 && tier.bypassed; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(tier.bypassed, false, 'used again once it answered');
      const before = chunks.stats.diskHits;
      const g = bucket.calls.get;
      assert.deepEqual(await read(), content);
      assert.ok(chunks.stats.diskHits > before, 'disk hits again');
      assert.equal(bucket.calls.get, g, 'no bucket read');

      disk.mode = 'fail';
      assert.deepEqual(await read(), content, 'a failing disk is a miss');
      disk.release();
    } finally {
      await chunks.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
