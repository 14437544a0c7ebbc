/**
 * The VFS data path: write buffers, back-pressure, compaction, read-ahead, and behaviour when the bucket
 * fails (retries absorb transient faults; a failed upload fails close with EIO and commits nothing; a bad
 * copy is never returned as data).
 */

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { FaultStore } from '../../src/object/faults.js';
import { FileStore } from '../../src/object/file.js';
import { RetryStore } from '../../src/object/retry.js';
import { mulberry32, randomSeed } from '../../src/util/random.js';
import { makeVolume } from '../helpers/volume.js';

const KiB = 1024;

function seeded(label: string): number {
  const seed = process.env.FERRY_SEED !== undefined ? Number(process.env.FERRY_SEED) : randomSeed();
  console.log(`${label}: seed ${seed} (replay with FERRY_SEED=${seed})`);
  return seed;
}

function bytes(rand: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

void describe('vfs', () => {
  void it('many small overlapping writes are compacted into one slice and read back exactly', async () => {
    const seed = seeded('compaction');
    const rand = mulberry32(seed);
    const t = await makeVolume({ compactSlicesMin: 8 });
    try {
      const model = Buffer.alloc(300 * KiB);
      let length = 0;
      const fh = await t.vol.open('/f', 'w+');
      for (let i = 0; i < 60; i++) {
        const off = Math.floor(rand() * 250 * KiB);
        const data = bytes(rand, 1 + Math.floor(rand() * 40 * KiB));
        await fh.write(data, 0, data.length, off);
        data.copy(model, off);
        length = Math.max(length, off + data.length);
        await fh.sync(); // every sync commits: one more slice reference per iteration
      }
      await fh.close();
      await t.vol.vfs.drain();
      const st = await t.vol.stat('/f');
      const refs = await t.vol.vfs.meta.readChunk(st.ino, 0);
      assert.ok(refs.length < 20, `chunk still has ${refs.length} references after compaction`);
      assert.deepEqual(await t.vol.readFile('/f'), model.subarray(0, length));
      // Explicit compaction of what is left ends with one reference.
      await t.vol.vfs.compactChunk(st.ino, 0);
      assert.equal((await t.vol.vfs.meta.readChunk(st.ino, 0)).length, 1);
      assert.deepEqual(await t.vol.readFile('/f'), model.subarray(0, length));
    } finally {
      await t.cleanup();
    }
  });

  void it('compaction keeps holes and truncated tails as zeros', async () => {
    const t = await makeVolume();
    try {
      await t.vol.writeFile('/f', Buffer.alloc(200 * KiB, 7));
      await t.vol.truncate('/f', 50 * KiB);
      const fh = await t.vol.open('/f', 'r+');
      await fh.write(Buffer.alloc(10 * KiB, 9), 0, 10 * KiB, 150 * KiB);
      await fh.close();
      const ino = (await t.vol.stat('/f')).ino;
      assert.equal(await t.vol.vfs.compactChunk(ino, 0), true);
      const want = Buffer.alloc(160 * KiB);
      want.fill(7, 0, 50 * KiB);
      want.fill(9, 150 * KiB);
      assert.deepEqual(await t.vol.readFile('/f'), want);
    } finally {
      await t.cleanup();
    }
  });

  void it('a write larger than the buffer limit waits for uploads and stays correct', async () => {
    const t = await makeVolume({ bufferBytesMax: 256 * KiB, uploadsInFlightMax: 2 });
    try {
      const data = bytes(mulberry32(7), 5 << 20);
      const fh = await t.vol.open('/big', 'w');
      for (let off = 0; off < data.length; off += 100 * KiB) await fh.write(data, off, Math.min(100 * KiB, data.length - off), off);
      await fh.close();
      assert.deepEqual(await t.vol.readFile('/big'), data);
    } finally {
      await t.cleanup();
    }
  });

  void it('sequential reads in small pieces return the same bytes with read-ahead running', async () => {
    const t = await makeVolume();
    try {
      const data = bytes(mulberry32(11), 3 << 20);
      await t.vol.writeFile('/r', data);
      const fh = await t.vol.open('/r');
      const out = Buffer.alloc(data.length);
      for (let off = 0; off < data.length; off += 4 * KiB + 1) await fh.read(out, off, Math.min(4 * KiB + 1, data.length - off), off);
      await fh.close();
      await t.vol.vfs.drain();
      assert.deepEqual(out, data);
      assert.ok(t.vol.vfs.chunks.stats.memHits > 0, 'read-ahead filled the memory cache');
    } finally {
      await t.cleanup();
    }
  });

  void it('random small reads fetch stripes, sequential reads whole blocks; faults never yield wrong bytes', async () => {
    const seed = seeded('ranged reads');
    const rand = mulberry32(seed);
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const bucketDir = await mkdtemp(join(tmpdir(), 'ferry-ranged-'));
    const faults = new FaultStore(new FileStore(bucketDir), { seed });
    const t = await makeVolume({ blockBytes: 1 << 20, memCacheBytes: 4 << 20, store: new RetryStore(faults, { backoffMsMin: 1, backoffMsMax: 2, attemptsMax: 3 }) });
    try {
      const data = bytes(rand, 3 * (1 << 20) + 777);
      await t.vol.writeFile('/r', data);
      const chunks = t.vol.vfs.chunks;
      const fh = await t.vol.open('/r');
      for (let i = 0; i < 200; i++) {
        const len = 1 + Math.floor(rand() * 8 * KiB);
        const off = Math.floor(rand() * (data.length - len));
        const out = Buffer.alloc(len);
        await fh.read(out, 0, len, off);
        assert.deepEqual(out, data.subarray(off, off + len), `read ${off}+${len}`);
      }
      assert.ok(chunks.stats.rangesRead > 0);
      assert.ok(chunks.stats.blocksRead <= 1, `whole blocks read: ${chunks.stats.blocksRead}`);
      // Sequential: read-ahead fetches whole blocks; at most the first two reads are ranged.
      const ranges = chunks.stats.rangesRead;
      const out = Buffer.alloc(data.length);
      for (let off = 0; off < data.length; off += 128 * KiB) await fh.read(out, off, Math.min(128 * KiB, data.length - off), off);
      assert.deepEqual(out, data);
      assert.ok(chunks.stats.rangesRead - ranges <= 2, `ranged reads while sequential: ${chunks.stats.rangesRead - ranges}`);
      await fh.close();
      await t.vol.vfs.drain();
      // Truncated and failed downloads: small reads fail or return the right bytes, never others.
      const faulty = new FaultStore(new FileStore(bucketDir), { seed, errorRate: 0.1, truncateRate: 0.3 });
      const u = await makeVolume({ blockBytes: 1 << 20, memCacheBytes: 0, store: new RetryStore(faulty, { backoffMsMin: 1, backoffMsMax: 2, attemptsMax: 4 }) });
      try {
        // A second client on the same bucket through faults; it reads the first volume's slice directly.
        const st = await t.vol.stat('/r');
        const refs = await t.vol.vfs.meta.readChunk(st.ino, 0);
        const ref = refs[0]!;
        let failures = 0;
        for (let i = 0; i < 200; i++) {
          const len = 1 + Math.floor(rand() * 8 * KiB);
          const off = Math.floor(rand() * (ref.size - len));
          const got = Buffer.alloc(len);
          try {
            await u.vol.vfs.chunks.readSlice(ref.id, ref.size, off, len, got, 0);
          } catch (err) {
            failures++;
            // A damaged answer, or an injected failure that outlasted the retries: an error, never bytes.
            assert.match(String((err as Error).message), /corrupt|checksum|range of|payload|header|injected fault/);
            continue;
          }
          assert.deepEqual(got, data.subarray(off, off + len));
        }
        assert.ok(faulty.stats().truncations > 0 && failures > 0, 'faults were injected and seen');
      } finally {
        await u.cleanup();
      }
    } finally {
      await t.cleanup();
      await rm(bucketDir, { recursive: true, force: true });
    }
  });

  void it('transient bucket faults (errors, truncated downloads) are retried and never return wrong bytes', async () => {
    const seed = seeded('faults');
    const { mkdtemp } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const bucketDir = await mkdtemp(join(tmpdir(), 'ferry-faults-'));
    const faults = new FaultStore(new FileStore(bucketDir), { seed, errorRate: 0.2, truncateRate: 0.2 });
    const t = await makeVolume({ store: new RetryStore(faults, { backoffMsMin: 1, backoffMsMax: 5, attemptsMax: 12, random: mulberry32(seed) }), memCacheBytes: 0 });
    try {
      const rand = mulberry32(seed);
      const files = Array.from({ length: 8 }, () => bytes(rand, Math.floor(rand() * 300 * KiB)));
      for (const [i, f] of files.entries()) await t.vol.writeFile(`/f${i}`, f);
      for (let round = 0; round < 3; round++) {
        for (const [i, f] of files.entries()) {
          try {
            assert.deepEqual(await t.vol.readFile(`/f${i}`), f);
          } catch (err) {
            // A truncated download is a corrupt copy: it may surface as an error, never as other bytes.
            assert.match(String((err as Error).message), /corrupt|checksum|payload/);
          }
        }
      }
      const fs = faults.stats();
      assert.ok(fs.errorsBefore + fs.errorsAfter + fs.truncations > 0, 'faults were injected');
    } finally {
      await t.cleanup();
      const { rm } = await import('node:fs/promises');
      await rm(bucketDir, { recursive: true, force: true });
    }
  });

  void it('when uploads fail for good, close fails with EIO and the file keeps its committed content', async () => {
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const bucketDir = await mkdtemp(join(tmpdir(), 'ferry-down-'));
    const faults = new FaultStore(new FileStore(bucketDir), { seed: 1 });
    const t = await makeVolume({ store: new RetryStore(faults, { backoffMsMin: 1, backoffMsMax: 2, attemptsMax: 3 }) });
    try {
      await t.vol.writeFile('/f', 'committed');
      faults.setDown(true);
      const fh = await t.vol.open('/f', 'r+');
      await fh.write(Buffer.from('lost write'), 0, 10, 0);
      await assert.rejects(fh.close(), (err: NodeJS.ErrnoException) => err.code === 'EIO');
      faults.setDown(false);
      assert.equal(await t.vol.readFile('/f', 'utf8'), 'committed');
    } finally {
      await t.cleanup();
      await rm(bucketDir, { recursive: true, force: true });
    }
  });
  void it('readView (the mount\'s read) returns what readTo reads: block views, overwrites, holes, ends', async () => {
    const seed = seeded('readView');
    const rand = mulberry32(seed);
    const t = await makeVolume(); // 64 KiB blocks
    try {
      const vfs = t.vol.vfs;
      const fh = await t.vol.open('/f', 'w+');
      await fh.write(bytes(rand, 300 * KiB), 0, 300 * KiB, 0);
      await fh.write(bytes(rand, 10 * KiB), 0, 10 * KiB, 100 * KiB); // a second slice over the first
      await fh.write(bytes(rand, 5 * KiB), 0, 5 * KiB, 400 * KiB); // a hole from 300 to 400 KiB
      await fh.close();
      const attr = await t.vol.vfs.resolve(t.vol.ctx, '/f');
      const h = await vfs.open(t.vol.ctx, attr.ino, 0);
      try {
        const cases: Array<[number, number]> = [[0, 4 * KiB], [60 * KiB, 8 * KiB], [98 * KiB, 8 * KiB], [290 * KiB, 20 * KiB], [402 * KiB, 64 * KiB], [405 * KiB, 1], [0, 500 * KiB]];
        for (let i = 0; i < 40; i++) cases.push([Math.floor(rand() * 410 * KiB), 1 + Math.floor(rand() * 130 * KiB)]);
        for (const [pos, len] of cases) {
          const want = Buffer.alloc(len);
          const n = await vfs.readTo(h, pos, want);
          const got = await vfs.readView(h, pos, len);
          assert.equal(got.length, n, `length at ${pos}+${len}`);
          assert.ok(got.equals(want.subarray(0, n)), `bytes at ${pos}+${len}`);
        }
      } finally {
        await vfs.release(h);
      }
    } finally {
      await t.cleanup();
    }
  });
});
