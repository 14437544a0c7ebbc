/**
 * The disk cache as a reader sees it through the SDK: what a sequential read fetched stays on local disk (the
 * next epoch of a training job reads it there, even with the bucket gone, even after a restart), and a cache
 * smaller than the file keeps within its capacity and never serves wrong bytes.
 */

import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openVolume, type OpenVolumeOptions, type Volume } from '../../src/index.js';
import { FaultStore } from '../../src/object/faults.js';
import { FileStore } from '../../src/object/file.js';
import { RetryStore } from '../../src/object/retry.js';
import { mulberry32, randomSeed } from '../../src/util/random.js';
import { makeVolume, type TestVolume } from '../helpers/volume.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = MiB;

const SEED = process.env['FERRY_SEED'] === undefined ? randomSeed() : Number(process.env['FERRY_SEED']);
console.log(`read cache test seed ${SEED} (replay with FERRY_SEED=${SEED})`);

function randomBytes(rand: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n + 3);
  for (let i = 0; i < n; i += 4) b.writeUInt32LE(Math.floor(rand() * 2 ** 32), i);
  return b.subarray(0, n);
}

/** Reads the whole file front to back in `req`-byte reads, as a training loader does. */
async function readSequential(vol: Volume, path: string, size: number, req: number): Promise<Buffer> {
  const out = Buffer.alloc(size);
  const fh = await vol.open(path, 'r');
  try {
    for (let off = 0; off < size; off += req) {
      const { bytesRead } = await fh.read(out, off, Math.min(req, size - off), off);
      assert.equal(bytesRead, Math.min(req, size - off));
    }
  } finally {
    await fh.close();
  }
  return out;
}

/** File bytes of the block files under a cache directory (temporary files excluded). */
async function blockFileBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile() && /^[0-9a-f]{32}$/.test(e.name)) total += (await stat(join(e.parentPath, e.name))).size;
  }
  return total;
}

interface Reader {
  vol: Volume;
  faults: FaultStore;
}

/** A second client of the volume on a bucket that can be broken, with a disk cache in `cacheDir`. */
async function openReader(t: TestVolume, cacheDir: string, options: OpenVolumeOptions): Promise<Reader> {
  const faults = new FaultStore(new FileStore(join(t.dir, 'bucket')), { seed: SEED });
  const vol = await openVolume(t.metaUrl, {
    uid: 0,
    gid: 0,
    heartbeatMs: 0,
    store: new RetryStore(faults, { backoffMsMin: 1, backoffMsMax: 2, attemptsMax: 2 }),
    cacheDir,
    ...options,
  });
  return { vol, faults };
}

void describe('disk read cache through the SDK', () => {
  void it('a file larger than the memory cache read once comes back whole from disk with the bucket down, also after a restart', async () => {
    const rand = mulberry32(SEED);
    const t = await makeVolume({ blockBytes: BLOCK });
    const cacheDir = await mkdtemp(join(tmpdir(), 'ferry-readcache-'));
    const size = 24 * BLOCK + 12_345;
    const blocks = Math.ceil(size / BLOCK);
    try {
      const data = randomBytes(rand, size);
      await t.vol.writeFile('/dataset', data);
      const options: OpenVolumeOptions = {
        memCacheBytes: 4 * MiB,
        cacheBytes: 64 * MiB,
        // A write queue of two blocks, so that the read outruns the disk and puts wait for room; a wait long
        // enough that a loaded machine does not turn it into drops.
        cacheOptions: { pendingWriteBytesMax: 2 * MiB, putWaitMsMax: 30_000, freeSpaceFloorRatio: 0 },
      };
      const first = await openReader(t, cacheDir, options);
      try {
        assert.deepEqual(await readSequential(first.vol, '/dataset', size, 256 * KiB), data, 'epoch 1');
        await first.vol.vfs.drain();
        const s = first.vol.stats();
        assert.equal(s.diskCache?.dropped, 0, 'no block dropped');
        assert.equal(s.diskCache?.declined, 0, 'no block declined');
        assert.equal(s.diskCache?.entries, blocks, 'every block of the file is in the disk cache');
        // The same counters, flat, as a mount's .stats and /metrics take them.
        const flat = first.vol.vfs.chunks.counters();
        assert.equal(flat['disk_cache_dropped'], 0);
        assert.equal(flat['disk_cache_entries'], blocks);

        first.faults.setDown(true);
        const refused = first.faults.stats().refused;
        const diskHits = s.chunks.diskHits;
        assert.deepEqual(await readSequential(first.vol, '/dataset', size, 256 * KiB), data, 'epoch 2, bucket down');
        assert.equal(first.faults.stats().refused, refused, 'the bucket was not asked');
        // The memory cache holds four blocks; everything else came from disk.
        assert.ok(first.vol.stats().chunks.diskHits - diskHits >= blocks - 4, `disk hits ${first.vol.stats().chunks.diskHits - diskHits}`);
      } finally {
        await first.vol.close();
      }

      const second = await openReader(t, cacheDir, options);
      try {
        second.faults.setDown(true);
        assert.deepEqual(await readSequential(second.vol, '/dataset', size, MiB), data, 'epoch 3, new process, bucket down');
        assert.equal(second.faults.stats().refused, 0, 'the bucket was not asked');
      } finally {
        await second.vol.close();
      }
    } finally {
      await t.cleanup();
      await rm(cacheDir, { recursive: true, force: true });
    }
  });

  void it('a disk cache smaller than the file keeps within its capacity and never serves wrong bytes', async () => {
    const rand = mulberry32(SEED ^ 0x5a5a);
    const t = await makeVolume({ blockBytes: BLOCK });
    const cacheDir = await mkdtemp(join(tmpdir(), 'ferry-readcache-'));
    const size = 20 * BLOCK + 999;
    const capacityBytes = 6 * BLOCK;
    try {
      const data = randomBytes(rand, size);
      await t.vol.writeFile('/big', data);
      const r = await openReader(t, cacheDir, { memCacheBytes: 2 * MiB, cacheBytes: capacityBytes, cacheOptions: { freeSpaceFloorRatio: 0 } });
      try {
        for (let epoch = 0; epoch < 2; epoch++) {
          assert.deepEqual(await readSequential(r.vol, '/big', size, 512 * KiB), data, `epoch ${epoch}`);
          await r.vol.vfs.drain();
          const d = r.vol.stats().diskCache;
          assert.ok(d !== undefined && d.bytes <= capacityBytes, `cache holds ${d?.bytes} > ${capacityBytes}`);
          assert.ok((d?.evictions ?? 0) > 0, 'LRU evicted');
        }
        const fh = await r.vol.open('/big', 'r');
        // Random reads with the bucket down: a cached block reads right, an uncached one fails, none reads wrong bytes.
        r.faults.setDown(true);
        const diskHits = r.vol.stats().chunks.diskHits;
        let served = 0;
        for (let i = 0; i < 60; i++) {
          const len = 1 + Math.floor(rand() * 300 * KiB);
          const off = Math.floor(rand() * (size - len));
          const out = Buffer.alloc(len);
          try {
            await fh.read(out, 0, len, off);
          } catch (err) {
            // The bucket's error comes through (today the store's TransientError, not an FsError).
            assert.ok(err instanceof Error && /down|EIO/.test(err.message), String(err));
            continue;
          }
          served++;
          assert.deepEqual(out, data.subarray(off, off + len), `read ${off}+${len}`);
        }
        await fh.close();
        console.log(`bucket down: ${served} of 60 random reads served from the caches`);
        // About a quarter of the file is cached (five of 21 blocks on disk, two in memory): some reads land there.
        assert.ok(served > 0 && r.vol.stats().chunks.diskHits > diskHits, `served ${served}`);
      } finally {
        await r.vol.close();
      }
      // Closing flushed the writes: the files on disk fit the capacity too.
      assert.ok((await blockFileBytes(cacheDir)) <= capacityBytes, 'files on disk fit the capacity');
    } finally {
      await t.cleanup();
      await rm(cacheDir, { recursive: true, force: true });
    }
  });
});
