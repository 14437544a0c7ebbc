import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { constants } from 'node:fs';
import { createHash } from 'node:crypto';
import { access, mkdtemp, open, readdir, readFile, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DiskBlockCache, type DiskBlockCacheOptions } from '../../src/cache/disk.js';
import { blockCacheConformance } from './conformance.js';
import { crc32c } from '@node-rs/crc32';
import { BLOCK_HEADER_BYTES, BLOCK_MAGIC, BLOCK_STRIPE_BYTES, blockHeaderBytes, encodeBlock } from '../../src/chunk/codec.js';
import { blockKey } from '../../src/chunk/keys.js';
import { encodeV2 } from '../helpers/blocks.js';

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

/** Runs pending promise callbacks (no I/O completes meanwhile) until `done` or a bound. */
async function settle(done: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !done(); i++) await Promise.resolve();
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

  void it('getRange reads and verifies only the covering stripes; damage is dropped and counted; old files read whole', () =>
    withDir(async (dir) => {
      const S = BLOCK_STRIPE_BYTES;
      const cache = new DiskBlockCache({ dir, capacityBytes: 16 << 20, freeSpaceFloorRatio: 0 });
      const len = 4 * S + 99;
      const key = `chunks/0/0/8_0_${len}`;
      const body = data(len, 3);
      await cache.put(key, body);
      // Served from the queued write before it reaches the disk, then from the file.
      for (let round = 0; round < 2; round++) {
        for (const [from, to] of [[0, 1], [S - 1, S + 1], [S, 2 * S], [len - 1, len], [0, len], [3 * S + 5, 4 * S + 7]] as const) {
          const part = await cache.getRange(key, len, from, to);
          assert.ok(part !== undefined, `range ${from}..${to}`);
          assert.ok(part.start <= from && to <= part.start + part.data.length);
          assert.deepEqual(part.data.subarray(from - part.start, to - part.start), body.subarray(from, to));
        }
        await cache.flush();
      }
      assert.equal(cache.stats().corrupt, 0);
      const file = cache.filePath(key);
      const good = await readFile(file);
      const at = 2 + key.length;
      // A flip in stripe 2: ranges elsewhere still verify; the range over it drops the file.
      const bad = Buffer.from(good);
      bad[at + blockHeaderBytes(len) + 2 * S + 10]! ^= 1;
      await writeFile(file, bad);
      assert.deepEqual((await cache.getRange(key, len, 10, 20))!.data.subarray(10, 20), body.subarray(10, 20));
      assert.equal(await cache.getRange(key, len, 2 * S + 10, 2 * S + 11), undefined);
      assert.equal(cache.stats().corrupt, 1);
      assert.equal(await exists(file), false);
      assert.equal(await cache.getRange(key, len, 0, 1), undefined, 'gone');
      // A flip in the header, and a length other than the key's.
      for (const [offset, asked] of [[at + 13, len], [at + 30, len], [0, len], [at + 40, len - 1]] as const) {
        await cache.put(key, body);
        await cache.flush();
        const b = Buffer.from(good);
        if (asked === len) b[offset]! ^= 1;
        await writeFile(file, b);
        assert.equal(await cache.getRange(key, asked, 0, 1), undefined, `flip at ${offset}, length ${asked}`);
        assert.equal(await exists(file), false);
      }
      // A file of codec version 1 (written before version 2) is read whole.
      const v1 = Buffer.alloc(BLOCK_HEADER_BYTES + len);
      BLOCK_MAGIC.copy(v1, 0);
      v1.writeUInt8(1, 4);
      v1.writeUInt32LE(crc32c(body), 8);
      v1.writeUInt32LE(len, 12);
      v1.writeUInt32LE(len, 16);
      v1.writeUInt32LE(crc32c(v1.subarray(0, 20)), 20);
      body.copy(v1, BLOCK_HEADER_BYTES);
      await cache.put(key, body);
      await cache.flush();
      await writeFile(file, Buffer.concat([good.subarray(0, at), v1]));
      const whole = await cache.getRange(key, len, S, S + 1);
      assert.deepEqual(whole, { data: body, start: 0 });
      await cache.close();
    }));

  void it('getEncodedRange answers object bytes from the header and the covering stripes only, verified; a damaged stripe is never returned', () =>
    withDir(async (dir) => {
      const S = BLOCK_STRIPE_BYTES;
      const cache = new DiskBlockCache({ dir, capacityBytes: 16 << 20, freeSpaceFloorRatio: 0 });
      const len = 4 * S + 99;
      const H = blockHeaderBytes(len);
      const key = blockKey(8, 0, len);
      const body = data(len, 5);
      const object = encodeBlock(body, 'none', key);
      await cache.put(key, body);
      const ranges = [[H, H + 1], [H + S - 1, H + S + 1], [H + S, H + 2 * S], [H + len - 1, H + len], [H, H + len], [H + 3 * S + 5, H + 4 * S + 7]] as const;
      // From the queued write, then from the file.
      for (let round = 0; round < 2; round++) {
        for (const [from, to] of ranges) {
          const got = await cache.getEncodedRange(key, len, from, to);
          assert.ok(got !== undefined && got !== 'whole', `range ${from}..${to}`);
          assert.deepEqual(got.data, object.subarray(from, to));
          assert.deepEqual(got.head, object.subarray(0, H));
        }
        await cache.flush();
      }
      await assert.rejects(cache.getEncodedRange(key, len, 0, H + 1), RangeError, 'the header is not a stripe');
      assert.equal(cache.stats().corrupt, 0);
      const file = cache.filePath(key);
      const good = await readFile(file);
      const at = 2 + key.length;
      // A flip in stripe 2: stripe 0 still answers (the file is not read whole); the range over stripe 2 is a
      // miss, counted, and the file is gone.
      const bad = Buffer.from(good);
      bad[at + H + 2 * S + 10]! ^= 1;
      await writeFile(file, bad);
      const first = await cache.getEncodedRange(key, len, H, H + S);
      assert.ok(first !== undefined && first !== 'whole');
      assert.deepEqual(first.data, object.subarray(H, H + S));
      assert.equal(await cache.getEncodedRange(key, len, H + 2 * S, H + 2 * S + 1), undefined);
      assert.equal(cache.stats().corrupt, 1);
      assert.equal(await exists(file), false);
      // A flip in the header: nothing is answered, whichever stripe is asked.
      await cache.put(key, body);
      await cache.flush();
      const badHead = Buffer.from(good);
      badHead[at + 30]! ^= 1;
      await writeFile(file, badHead);
      assert.equal(await cache.getEncodedRange(key, len, H, H + 1), undefined);
      assert.equal(cache.stats().corrupt, 2);
      // A file that is not striped (version 1): only a whole read can verify it.
      await cache.put(key, body);
      await cache.flush();
      const v1 = Buffer.alloc(BLOCK_HEADER_BYTES + len);
      BLOCK_MAGIC.copy(v1, 0);
      v1.writeUInt8(1, 4);
      v1.writeUInt32LE(crc32c(body), 8);
      v1.writeUInt32LE(len, 12);
      v1.writeUInt32LE(len, 16);
      v1.writeUInt32LE(crc32c(v1.subarray(0, 20)), 20);
      body.copy(v1, BLOCK_HEADER_BYTES);
      await writeFile(file, Buffer.concat([good.subarray(0, at), v1]));
      assert.equal(await cache.getEncodedRange(key, len, H, H + 1), 'whole');
      await cache.close();
    }));

  void it('getEncodedInto reads a file into the caller\'s buffer, verified; a damaged file is a miss, never returned', () =>
    withDir(async (dir) => {
      const cache = new DiskBlockCache({ dir, capacityBytes: 16 << 20, freeSpaceFloorRatio: 0 });
      const len = 3 * BLOCK_STRIPE_BYTES + 7;
      const key = blockKey(9, 0, len);
      const body = data(len, 9);
      const object = encodeBlock(body, 'none', key);
      const buf = Buffer.alloc(len + 4096, 0xee);
      await cache.put(key, body);
      const queued = await cache.getEncodedInto(key, () => buf);
      assert.ok(queued !== undefined);
      assert.equal(queued.lent, false, 'a queued write is answered as it is');
      assert.deepEqual(queued.encoded, object);
      await cache.flush();
      const got = await cache.getEncodedInto(key, (n) => {
        assert.equal(n, 2 + key.length + object.length);
        return buf;
      });
      assert.ok(got !== undefined && got.lent);
      assert.equal(got.encoded.buffer, buf.buffer, 'a view of the given buffer');
      assert.deepEqual(got.encoded, object);
      const file = cache.filePath(key);
      const bad = await readFile(file);
      bad[bad.length - 1]! ^= 1;
      await writeFile(file, bad);
      assert.equal(await cache.getEncodedInto(key, () => buf), undefined);
      assert.equal(cache.stats().corrupt, 1);
      assert.equal(await exists(file), false);
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

  void it('a full write queue that may not wait drops puts, counted, without losing accepted ones', () =>
    withDir(async (dir) => {
      const cache = new DiskBlockCache({ dir, capacityBytes: 1 << 20, freeSpaceFloorRatio: 0, pendingWritesMax: 2, writesInFlightMax: 1, putWaitMsMax: 0 });
      await Promise.all(Array.from({ length: 20 }, (_, i) => cache.put(`k${i}`, data(5000, i))));
      const s = cache.stats();
      assert.ok(s.dropped >= 1, `dropped ${s.dropped}`);
      assert.equal(s.declined, s.dropped);
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

  void it('a full write queue makes puts wait for room, within its byte bound, and stores every one', () =>
    withDir(async (dir) => {
      const bound = 3 * 5100;
      const cache = new DiskBlockCache({ dir, capacityBytes: 1 << 20, freeSpaceFloorRatio: 0, pendingWriteBytesMax: bound, writesInFlightMax: 1 });
      const puts = Array.from({ length: 20 }, async (_, i) => {
        await cache.put(`k${i}`, data(5000, i));
        const bytes = cache.stats().pendingWriteBytes;
        assert.ok(bytes <= bound, `queue bytes ${bytes} > ${bound}`);
      });
      await settle(() => cache.stats().putsWaiting === 17);
      assert.equal(cache.stats().putsWaiting, 17, 'three fit, the others wait');
      await Promise.all(puts);
      await cache.flush();
      const s = cache.stats();
      assert.equal(s.dropped, 0);
      assert.equal(s.declined, 0);
      assert.equal(s.stored, 20);
      assert.equal(s.pendingWriteBytes, 0);
      assert.equal(s.entries, 20);
      await cache.close();
      const reopened = new DiskBlockCache({ dir, capacityBytes: 1 << 20, freeSpaceFloorRatio: 0 });
      for (let i = 0; i < 20; i++) assert.deepEqual(await reopened.get(`k${i}`), data(5000, i));
      await reopened.close();
    }));

  void it('a delete or a close gives up puts still waiting for room', () =>
    withDir(async (dir) => {
      // A bound of one byte: a second put waits while the first is queued or being written.
      const cache = new DiskBlockCache({ dir, capacityBytes: 1 << 20, freeSpaceFloorRatio: 0, pendingWriteBytesMax: 1, writesInFlightMax: 1 });
      const first = cache.put('k1', data(5000, 1));
      const second = cache.put('k2', data(5000, 2));
      const third = cache.put('k3', data(5000, 3));
      await settle(() => cache.stats().putsWaiting === 2);
      assert.equal(cache.stats().putsWaiting, 2);
      await cache.delete('k2');
      await Promise.all([first, second]);
      const closing = cache.close();
      await third;
      await closing;
      const s = cache.stats();
      assert.equal(s.putsWaiting, 0);
      assert.equal(s.stored, 1);
      assert.equal(s.dropped, 0, 'given up, not dropped for a full queue');
      const reopened = new DiskBlockCache({ dir, capacityBytes: 1 << 20, freeSpaceFloorRatio: 0 });
      assert.deepEqual(await reopened.get('k1'), data(5000, 1));
      assert.equal(await reopened.get('k2'), undefined, 'a put made before a delete does not land after it');
      assert.equal(await reopened.get('k3'), undefined);
      await reopened.close();
    }));

  void it('a stalled disk costs one wait: later puts are dropped at once until a write completes', () =>
    withDir(async (dir) => {
      const cache = new DiskBlockCache({ dir, capacityBytes: 1 << 20, freeSpaceFloorRatio: 0, pendingWriteBytesMax: 1, writesInFlightMax: 1, putWaitMsMax: 300 });
      // The first write's temporary file is a FIFO with no reader: opening it blocks, as on a hung disk.
      const fifo = join(dir, 'v1', 'tmp', `${createHash('sha256').update('k1').digest('hex').substring(0, 32)}.1`);
      execFileSync('mkfifo', [fifo]);
      // Opening the reading end unblocks the write; done in `finally` too, so that a failure cannot hang the run.
      const unblock = (): Promise<FileHandle> => open(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
      let reader: FileHandle | undefined;
      try {
        await cache.put('k1', data(5000, 1));
        await cache.put('k2', data(5000, 2)); // waits 300 ms for room, then is dropped
        assert.equal(cache.stats().dropped, 1);
        const t0 = performance.now();
        await cache.put('k3', data(5000, 3));
        assert.ok(performance.now() - t0 < 250, 'dropped without waiting');
        assert.deepEqual([cache.stats().dropped, cache.stats().declined, cache.stats().stored], [2, 2, 0]);
        // The disk comes back: the blocked write completes, and puts wait (and are taken) again.
        reader = await unblock();
        await cache.flush();
      } finally {
        reader ??= await unblock();
        await reader.close();
      }
      assert.equal(cache.stats().stored, 1);
      await cache.put('k4', data(5000, 4));
      await cache.put('k5', data(5000, 5));
      await cache.flush();
      assert.deepEqual([cache.stats().dropped, cache.stats().stored], [2, 3]);
      // (k1's file is the FIFO, renamed into place: not read here.)
      for (const [k, fill] of [['k4', 4], ['k5', 5]] as const) assert.deepEqual(await cache.get(k), data(5000, fill));
      assert.equal(await cache.get('k2'), undefined);
      await cache.close();
    }));

  void it('putEncoded caches a verified block as given: get, getRange and a restart see its plain bytes', () =>
    withDir(async (dir) => {
      const cache = new DiskBlockCache({ dir, capacityBytes: 1 << 20, freeSpaceFloorRatio: 0 });
      const plain = data(3 * BLOCK_STRIPE_BYTES + 123, 5);
      const key = `chunks/0/0/9_0_${plain.length}`;
      await cache.putEncoded(key, encodeBlock(plain, 'none', key), plain.length);
      assert.deepEqual(await cache.get(key), plain, 'while queued');
      await cache.flush();
      assert.deepEqual(await cache.get(key), plain, 'from the file');
      const part = await cache.getRange(key, plain.length, BLOCK_STRIPE_BYTES + 5, BLOCK_STRIPE_BYTES + 10);
      assert.ok(part !== undefined);
      assert.deepEqual(part.data, plain.subarray(part.start, part.start + part.data.length));
      assert.equal(cache.stats().stored, 1);
      await cache.close();
      const reopened = new DiskBlockCache({ dir, capacityBytes: 1 << 20, freeSpaceFloorRatio: 0 });
      assert.deepEqual(await reopened.get(key), plain);
      await assert.rejects(reopened.putEncoded('k', Buffer.alloc(10), 10), /assertion failed/);
      await reopened.close();
    }));

  void it('a well-formed block of another key in a file is never served: dropped and counted like a damaged one', () =>
    withDir(async (dir) => {
      const options = { dir, capacityBytes: 1 << 20, freeSpaceFloorRatio: 0 };
      const first = new DiskBlockCache(options);
      const plain = data(3 * BLOCK_STRIPE_BYTES + 123, 6);
      const n = plain.length;
      // Keys of block 0 of slice 9 whose files hold block 0 of slice 7, and block 1 of slice 7 (same length):
      // the file framing names the key, the block inside is another one (a buggy writer, a mix-up upstream).
      const misplaced = [blockKey(9, 0, n), blockKey(7, 1, n)];
      for (const key of misplaced) await first.putEncoded(key, encodeBlock(plain, 'none', blockKey(7, 0, n)), n);
      await first.close();
      const cache = new DiskBlockCache(options);
      await cache.ready();
      for (const key of misplaced) {
        assert.equal(await cache.getRange(key, n, BLOCK_STRIPE_BYTES + 5, BLOCK_STRIPE_BYTES + 10), undefined, `range of ${key}`);
        assert.equal(await exists(cache.filePath(key)), false, 'the file is removed');
      }
      assert.equal(cache.stats().corrupt, 2);
      await cache.close();
      const again = new DiskBlockCache(options);
      for (const key of misplaced) await again.putEncoded(key, encodeBlock(plain, 'none', blockKey(7, 0, n)), n);
      await again.close();
      const third = new DiskBlockCache(options);
      for (const key of misplaced) assert.equal(await third.get(key), undefined, `whole ${key}`);
      assert.equal(third.stats().corrupt, 2);
      await third.close();
    }));

  void it('files of codec version 2 (written before identity) still read, whole and by range', () =>
    withDir(async (dir) => {
      const options = { dir, capacityBytes: 1 << 20, freeSpaceFloorRatio: 0 };
      const plain = data(2 * BLOCK_STRIPE_BYTES + 77, 8);
      const key = blockKey(11, 0, plain.length);
      const first = new DiskBlockCache(options);
      await first.putEncoded(key, encodeV2(plain), plain.length);
      await first.close();
      const cache = new DiskBlockCache(options);
      await cache.ready();
      const part = await cache.getRange(key, plain.length, BLOCK_STRIPE_BYTES + 1, BLOCK_STRIPE_BYTES + 9);
      assert.ok(part !== undefined && part.data.length <= BLOCK_STRIPE_BYTES, 'a stripe, not the whole block');
      assert.deepEqual(part.data, plain.subarray(part.start, part.start + part.data.length));
      assert.deepEqual(await cache.get(key), plain);
      assert.equal(cache.stats().corrupt, 0);
      await cache.close();
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
    assert.throws(() => new DiskBlockCache({ dir: '/tmp/x', capacityBytes: 1, pendingWriteBytesMax: 0 }), /pendingWriteBytesMax must be/);
    assert.throws(() => new DiskBlockCache({ dir: '/tmp/x', capacityBytes: 1, putWaitMsMax: -1 }), /putWaitMsMax must be/);
  });
});
