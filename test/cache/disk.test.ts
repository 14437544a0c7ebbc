import assert from 'node:assert/strict';
import { access, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DiskBlockCache, type DiskBlockCacheOptions } from '../../src/cache/disk.js';
import { blockCacheConformance } from './conformance.js';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'ferry-disk-cache-'));
}

// The free-space floor is off in the shared cases: a nearly full /tmp must not turn them into misses.
blockCacheConformance('disk', async ({ capacityBytes }) => {
  const dir = await tempDir();
  const options: DiskBlockCacheOptions = { dir, capacityBytes, freeSpaceFloorRatio: 0 };
  const opened: DiskBlockCache[] = [await DiskBlockCache.open(options)];
  return {
    cache: opened[0]!,
    reopen: async () => {
      const c = await DiskBlockCache.open(options);
      opened.push(c);
      return c;
    },
    cleanup: async () => {
      for (const c of opened) await c.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

function data(bytes: number, fill: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) b[i] = (i * 31 + fill) & 0xff;
  return b;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

void describe('DiskBlockCache', () => {
  async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
    const dir = await tempDir();
    try {
      await fn(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  void it('a flipped byte anywhere in a cached file is detected, counted and the file removed', () =>
    withDir(async (dir) => {
      const cache = new DiskBlockCache({ dir, capacityBytes: 1 << 20, freeSpaceFloorRatio: 0 });
      const key = 'chunks/0/0/7_0_1000';
      const file = cache.filePath(key);
      const body = data(1000, 7);
      await cache.put(key, body);
      await cache.flush();
      const good = await readFile(file);
      // Key length, key, block header, first and last data byte.
      const offsets = [0, 1, 2, 2 + key.length - 1, 2 + key.length, 2 + key.length + 12, 2 + key.length + 24, good.length - 1];
      for (const [n, offset] of offsets.entries()) {
        const bad = Buffer.from(good);
        bad[offset]! ^= 0x10;
        await writeFile(file, bad);
        assert.equal(await cache.get(key), undefined, `flip at ${offset}`);
        assert.equal(cache.stats().corrupt, n + 1);
        assert.equal(await exists(file), false, `file removed after flip at ${offset}`);
        assert.equal(cache.stats().entries, 0);
        await cache.put(key, body);
        await cache.flush();
        assert.deepEqual(await cache.get(key), body);
      }
      // A truncated file is corrupt too.
      await writeFile(file, good.subarray(0, good.length - 1));
      assert.equal(await cache.get(key), undefined);
      assert.equal(cache.stats().corrupt, offsets.length + 1);
      await cache.close();
    }));

  void it('a restart keeps entries, their bytes and their count, and serves hits before the scan ends', () =>
    withDir(async (dir) => {
      const options = { dir, capacityBytes: 1 << 20, freeSpaceFloorRatio: 0 };
      const first = new DiskBlockCache(options);
      for (let i = 0; i < 20; i++) await first.put(`k${i}`, data(1000 + i, i));
      await first.close();
      const before = first.stats();

      const second = new DiskBlockCache(options);
      assert.equal(second.stats().scanning, true);
      assert.deepEqual(await second.get('k3'), data(1003, 3));
      await second.ready();
      const after = second.stats();
      assert.equal(after.scanning, false);
      assert.equal(after.entries, 20);
      assert.equal(after.bytes, before.bytes);
      for (let i = 0; i < 20; i++) assert.deepEqual(await second.get(`k${i}`), data(1000 + i, i));
      await second.close();
    }));

  void it('a restart with a smaller capacity evicts down to it, oldest first', () =>
    withDir(async (dir) => {
      const first = new DiskBlockCache({ dir, capacityBytes: 1 << 20, freeSpaceFloorRatio: 0 });
      for (let i = 0; i < 10; i++) {
        await first.put(`k${i}`, data(10_000, i));
        await first.flush();
        // Distinct modification times order the scan.
        await new Promise((r) => setTimeout(r, 15));
      }
      await first.close();
      const second = new DiskBlockCache({ dir, capacityBytes: 35_000, freeSpaceFloorRatio: 0 });
      await second.ready();
      await second.flush();
      assert.ok(second.stats().bytes <= 35_000);
      assert.equal(second.stats().entries, 3);
      assert.equal(await second.get('k0'), undefined);
      assert.deepEqual(await second.get('k9'), data(10_000, 9));
      await second.close();
    }));

  void it('the free-space floor declines puts', () =>
    withDir(async (dir) => {
      // A floor of 1.0 asks for a completely empty file system, which never holds.
      const cache = new DiskBlockCache({ dir, capacityBytes: 1 << 20, freeSpaceFloorRatio: 1 });
      await cache.put('k', data(100, 1));
      assert.equal(await cache.get('k'), undefined);
      assert.equal(cache.stats().declinedLowSpace, 1);
      assert.equal(cache.stats().entries, 0);
      await cache.close();
    }));

  void it('a full write queue declines puts without losing accepted ones', () =>
    withDir(async (dir) => {
      const cache = new DiskBlockCache({ dir, capacityBytes: 1 << 20, freeSpaceFloorRatio: 0, pendingWritesMax: 2, writesInFlightMax: 1 });
      await Promise.all(Array.from({ length: 20 }, (_, i) => cache.put(`k${i}`, data(5000, i))));
      const s = cache.stats();
      assert.ok(s.declined >= 1, `declined ${s.declined}`);
      assert.ok(s.pendingWrites <= 2);
      await cache.close();
      const reopened = new DiskBlockCache({ dir, capacityBytes: 1 << 20, freeSpaceFloorRatio: 0 });
      await reopened.ready();
      assert.equal(reopened.stats().entries, s.entries);
      for (let i = 0; i < 20; i++) {
        const got = await reopened.get(`k${i}`);
        if (got !== undefined) assert.deepEqual(got, data(5000, i));
      }
      await reopened.close();
    }));

  void it('close waits for queued writes', () =>
    withDir(async (dir) => {
      const cache = new DiskBlockCache({ dir, capacityBytes: 1 << 20, freeSpaceFloorRatio: 0 });
      for (let i = 0; i < 8; i++) await cache.put(`k${i}`, data(20_000, i));
      await cache.close();
      for (let i = 0; i < 8; i++) assert.equal(await exists(cache.filePath(`k${i}`)), true);
      assert.equal(await cache.get('k0'), undefined, 'gets after close miss');
    }));

  void it('leftover temporary files are removed and foreign files ignored at open', () =>
    withDir(async (dir) => {
      const first = new DiskBlockCache({ dir, capacityBytes: 1 << 20, freeSpaceFloorRatio: 0 });
      await first.put('k', data(10, 1));
      await first.close();
      await writeFile(join(dir, 'v1', 'tmp', 'half-written'), 'x');
      await writeFile(join(dir, 'v1', 'README'), 'not a block');
      const second = new DiskBlockCache({ dir, capacityBytes: 1 << 20, freeSpaceFloorRatio: 0 });
      await second.ready();
      assert.deepEqual(await readdir(join(dir, 'v1', 'tmp')), []);
      assert.equal(second.stats().entries, 1);
      assert.deepEqual(await second.get('k'), data(10, 1));
      await second.close();
    }));

  void it('rejects invalid options with a precise message', () => {
    assert.throws(() => new DiskBlockCache({ dir: '/tmp/x', capacityBytes: -1 }), /capacityBytes must be/);
    assert.throws(() => new DiskBlockCache({ dir: '/tmp/x', capacityBytes: 1, freeSpaceFloorRatio: 2 }), /freeSpaceFloorRatio/);
    assert.throws(() => new DiskBlockCache({ dir: '/tmp/x', capacityBytes: 1, pendingWritesMax: 0 }), /pendingWritesMax/);
  });
});
