/**
 * ChunkStore reads (through its BlockReader, src/cache/reader.ts): small reads of uncached blocks fetch and
 * verify only the stripes they need (codec versions 2 and 3), through the caches, with the header's table remembered, version 1 blocks read whole, and the same
 * fall-through over a source's buckets as whole blocks.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { BLOCK_STRIPE_BYTES, blockHeaderBytes } from '../../src/chunk/codec.js';
import { blockKey } from '../../src/chunk/keys.js';
import type { ChunkStore } from '../../src/chunk/store.js';
import { createChunkStore, type CreateChunkStoreOptions } from '../../src/cache/blocks.js';
import type { BlockSource, SourceStore } from '../../src/cache/reader.js';
import { MemoryBlockCache } from '../../src/cache/memory.js';
import { DiskBlockCache } from '../../src/cache/disk.js';
import { CorruptBlockError, FsError, NoGoodCopyError } from '../../src/errors.js';
import { MemStore } from '../../src/object/mem.js';
import type { CallOptions, GetOptions, ListOptions, ListPage, ObjectInfo, ObjectStore } from '../../src/object/store.js';
import { mulberry32, randomSeed } from '../../src/util/random.js';
import { encodeV1None } from '../helpers/blocks.js';

const SEED = process.env['FERRY_SEED'] === undefined ? randomSeed() : Number(process.env['FERRY_SEED']);
console.log(`chunk store test seed ${SEED} (replay with FERRY_SEED=${SEED})`);

const KiB = 1024;
const MiB = 1024 * KiB;
const S = BLOCK_STRIPE_BYTES;
const B = MiB;
/** Three blocks, the last one short. */
const SIZE = 2 * B + 300 * KiB + 123;
const ID = 4242;

function randomBytes(seed: number, bytes: number): Buffer {
  const rand = mulberry32(seed);
  const b = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < bytes; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

interface Get {
  key: string;
  offset: number | undefined;
  length: number | undefined;
}

/** Records every get; `fail` makes gets of matching keys throw (an unreachable bucket). */
class RecordingStore implements ObjectStore {
  readonly description = 'recording';
  readonly inner = new MemStore();
  gets: Get[] = [];
  fail: Error | undefined;
  get(key: string, options?: GetOptions): Promise<Buffer> {
    this.gets.push({ key, offset: options?.offset, length: options?.length });
    if (this.fail !== undefined) return Promise.reject(this.fail);
    return this.inner.get(key, options);
  }
  put(key: string, data: Buffer, options?: CallOptions): Promise<void> {
    return this.inner.put(key, data, options);
  }
  head(key: string, options?: CallOptions): Promise<ObjectInfo> {
    return this.inner.head(key, options);
  }
  delete(key: string, options?: CallOptions): Promise<void> {
    return this.inner.delete(key, options);
  }
  list(prefix: string, options?: ListOptions): Promise<ListPage> {
    return this.inner.list(prefix, options);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  take(): Get[] {
    const g = this.gets;
    this.gets = [];
    return g;
  }
  async mutate(key: string, fn: (object: Buffer) => Buffer): Promise<void> {
    await this.inner.put(key, fn(await this.inner.get(key)));
  }
}


const content = randomBytes(SEED, SIZE);
const blockLen = (i: number): number => Math.min(B, SIZE - i * B);
const keyOf = (i: number): string => blockKey(ID, i, blockLen(i));

function chunkStore(store: ObjectStore, options: Partial<CreateChunkStoreOptions> = {}): ChunkStore {
  return createChunkStore({ store, blockBytes: B, compression: 'none', ...options });
}

async function writeSlice(chunks: ChunkStore, data: Buffer = content): Promise<void> {
  for (let i = 0; i * B < data.length; i++) await chunks.putBlock(ID, i, data.subarray(i * B, Math.min(data.length, (i + 1) * B)));
}

async function read(chunks: ChunkStore, off: number, len: number): Promise<Buffer> {
  const out = Buffer.alloc(len, 0xaa);
  await chunks.readSlice(ID, SIZE, off, len, out, 0);
  return out;
}

const isWhole = (g: Get): boolean => g.offset === undefined && g.length === undefined;

void describe('ChunkStore ranged reads', () => {
  void it('seeded random small reads fetch only the stripes they cover and return the right bytes', async () => {
    const bucket = new RecordingStore();
    await writeSlice(chunkStore(bucket));
    const chunks = chunkStore(bucket, { memCache: new MemoryBlockCache({ capacityBytes: 256 * KiB, shareBuffers: true }) });
    const rand = mulberry32(SEED ^ 0x77);
    for (let i = 0; i < 300; i++) {
      const len = 1 + Math.floor(rand() * 16 * KiB);
      const off = Math.floor(rand() * (SIZE - len));
      assert.deepEqual(await read(chunks, off, len), content.subarray(off, off + len), `read ${off}+${len}`);
    }
    const gets = bucket.take();
    assert.equal(gets.filter(isWhole).length, 0, 'no whole-block GET');
    for (const g of gets) {
      assert.ok(g.length! <= 2 * S, `GET of ${g.length} bytes`);
      if (g.offset !== 0) assert.equal((g.offset! - blockHeaderBytes(g.key === keyOf(2) ? blockLen(2) : B)) % S, 0, 'stripe-aligned');
    }
    assert.equal(chunks.stats.blocksRead, 0);
    assert.ok(chunks.stats.rangesRead > 0);
    // One header GET per block: the tables are remembered.
    assert.equal(gets.filter((g) => g.offset === 0).length, 3);
  });

  void it('the header is fetched once, beside the first range; a repeated read is a stripe hit', async () => {
    const bucket = new RecordingStore();
    await writeSlice(chunkStore(bucket));
    const chunks = chunkStore(bucket, { memCache: new MemoryBlockCache({ capacityBytes: 4 * MiB, shareBuffers: true }) });
    assert.deepEqual(await read(chunks, 100 * KiB, 4 * KiB), content.subarray(100 * KiB, 104 * KiB));
    assert.deepEqual(bucket.take(), [
      { key: keyOf(0), offset: blockHeaderBytes(B) + S, length: S },
      { key: keyOf(0), offset: 0, length: blockHeaderBytes(B) },
    ]);
    assert.deepEqual(await read(chunks, 300 * KiB, 4 * KiB), content.subarray(300 * KiB, 304 * KiB));
    assert.deepEqual(bucket.take(), [{ key: keyOf(0), offset: blockHeaderBytes(B) + 4 * S, length: S }]);
    assert.deepEqual(await read(chunks, 101 * KiB, 2 * KiB), content.subarray(101 * KiB, 103 * KiB));
    assert.deepEqual(bucket.take(), [], 'served from the cached stripe');
    assert.equal(chunks.stats.stripeHits, 1);
    // A read across a stripe edge needs both stripes; one is cached, so both are fetched in one range.
    assert.deepEqual(await read(chunks, 2 * S - 10, 20), content.subarray(2 * S - 10, 2 * S + 10));
    assert.deepEqual(bucket.take(), [{ key: keyOf(0), offset: blockHeaderBytes(B) + S, length: 2 * S }]);
    // The short last block: its header is smaller and its last stripe short.
    const at = 2 * B + blockLen(2) - 5;
    assert.deepEqual(await read(chunks, at, 5), content.subarray(at, at + 5));
    const lastStripe = Math.floor((blockLen(2) - 1) / S);
    assert.deepEqual(bucket.take(), [
      { key: keyOf(2), offset: blockHeaderBytes(blockLen(2)) + lastStripe * S, length: blockLen(2) - lastStripe * S },
      { key: keyOf(2), offset: 0, length: blockHeaderBytes(blockLen(2)) },
    ]);
  });

  void it('every edge: around stripes and blocks, with and without a memory cache, with a larger minimum fetch', async () => {
    const bucket = new RecordingStore();
    await writeSlice(chunkStore(bucket));
    const edges = new Set<number>();
    for (let e = 0; e <= SIZE; e += S) for (const d of [-1, 0, 1]) if (e + d >= 0 && e + d <= SIZE) edges.add(e + d);
    for (let e = 0; e <= SIZE; e += B) for (const d of [-S - 1, -S, -1, 0, 1, S]) if (e + d >= 0 && e + d <= SIZE) edges.add(e + d);
    edges.add(SIZE);
    const sorted = [...edges].sort((a, b) => a - b);
    for (const options of [{}, { memCache: new MemoryBlockCache({ capacityBytes: 512 * KiB }) }, { rangeFetchBytesMin: 200 * KiB }]) {
      const chunks = chunkStore(bucket, options);
      for (const a of sorted) {
        for (const b of sorted) {
          if (a >= b || b - a > 3 * S) continue;
          assert.deepEqual(await read(chunks, a, b - a), content.subarray(a, b), `read ${a}..${b}`);
        }
      }
      assert.equal(bucket.take().filter(isWhole).length, 0);
    }
  });

  void it('large reads, read-ahead, a disabled switch and compressed volumes fetch whole blocks', async () => {
    const bucket = new RecordingStore();
    await writeSlice(chunkStore(bucket));
    let chunks = chunkStore(bucket);
    assert.deepEqual(await read(chunks, 10, B / 4 + 1), content.subarray(10, 10 + B / 4 + 1));
    assert.ok(bucket.take().every(isWhole), 'more than rangeReadBytesMax');
    chunks = chunkStore(bucket, { rangeReadBytesMax: 0 });
    assert.deepEqual(await read(chunks, 5000, 10), content.subarray(5000, 5010));
    assert.deepEqual(bucket.take(), [{ key: keyOf(0), offset: undefined, length: undefined }]);
    // Read-ahead in flight: the small read joins it.
    chunks = chunkStore(bucket, { memCache: new MemoryBlockCache({ capacityBytes: 4 * MiB, shareBuffers: true }) });
    chunks.prefetch(ID, SIZE, 0, SIZE);
    assert.deepEqual(await read(chunks, B + 5000, 10), content.subarray(B + 5000, B + 5010));
    assert.deepEqual(await read(chunks, 7, 10), content.subarray(7, 17));
    assert.ok(bucket.take().every(isWhole));
    // A volume with compression: blocks may be whole (version 4, compressed), so reads are whole.
    const zb = new RecordingStore();
    const text = Buffer.alloc(SIZE, 'ferry block ');
    await writeSlice(chunkStore(zb, { compression: 'lz4' }), text);
    chunks = chunkStore(zb, { compression: 'lz4' });
    const out = Buffer.alloc(100);
    await chunks.readSlice(ID, SIZE, B + 77, 100, out, 0);
    assert.deepEqual(out, text.subarray(B + 77, B + 177));
    assert.ok(zb.take().every(isWhole));
  });

  void it('concurrent small reads of one range share one fetch', async () => {
    const bucket = new RecordingStore();
    await writeSlice(chunkStore(bucket));
    const chunks = chunkStore(bucket);
    const outs = await Promise.all(Array.from({ length: 8 }, () => read(chunks, S + 100, 50)));
    for (const o of outs) assert.deepEqual(o, content.subarray(S + 100, S + 150));
    assert.equal(bucket.take().length, 2, 'one header and one range');
  });

  void it('version 1 blocks are read whole through the ranged path, and remembered as such', async () => {
    const bucket = new RecordingStore();
    for (let i = 0; i * B < SIZE; i++) await bucket.put(keyOf(i), encodeV1None(content.subarray(i * B, i * B + blockLen(i))));
    const chunks = chunkStore(bucket);
    assert.deepEqual(await read(chunks, 3 * S + 5, 100), content.subarray(3 * S + 5, 3 * S + 105));
    const first = bucket.take();
    assert.equal(first.length, 3, 'header and range at once, then the whole block');
    assert.ok(isWhole(first[2]!));
    assert.deepEqual(await read(chunks, 9 * S, 100), content.subarray(9 * S, 9 * S + 100));
    assert.deepEqual(bucket.take(), [{ key: keyOf(0), offset: undefined, length: undefined }], 'straight to a whole read');
    assert.equal(chunks.stats.blocksRead, 2);
  });

  void it('damage in the bucket: a ranged read of the stripe rejects, other stripes read, whole reads reject', async () => {
    const bucket = new RecordingStore();
    await writeSlice(chunkStore(bucket));
    const h = blockHeaderBytes(B);
    await bucket.mutate(keyOf(1), (o) => {
      o[h + 5 * S + 17]! ^= 0x01;
      return o;
    });
    const chunks = chunkStore(bucket, { memCache: new MemoryBlockCache({ capacityBytes: 4 * MiB, shareBuffers: true }) });
    await assert.rejects(read(chunks, B + 5 * S, 4 * KiB), (err: unknown) => err instanceof CorruptBlockError && /stripe 5 checksum mismatch/.test(err.message));
    await assert.rejects(read(chunks, B + 5 * S + 17, 1), CorruptBlockError);
    assert.deepEqual(await read(chunks, B + 4 * S, 4 * KiB), content.subarray(B + 4 * S, B + 4 * S + 4 * KiB));
    assert.deepEqual(await read(chunks, B + 6 * S, 4 * KiB), content.subarray(B + 6 * S, B + 6 * S + 4 * KiB));
    await assert.rejects(chunks.readBlock(ID, SIZE, 1), CorruptBlockError);
    await assert.rejects(read(chunks, B, B), CorruptBlockError);
    assert.ok(chunks.stats.corrupt >= 4);
    // A damaged stripe table (covered by the header checksum): every ranged read of the block rejects.
    await bucket.mutate(keyOf(0), (o) => {
      o[30]! ^= 0x80;
      return o;
    });
    const fresh = chunkStore(bucket);
    await assert.rejects(read(fresh, 10, 10), (err: unknown) => err instanceof CorruptBlockError && /header checksum/.test(err.message));
    // A missing block.
    await bucket.delete(keyOf(2));
    await assert.rejects(read(fresh, 2 * B + 10, 10), (err: unknown) => err instanceof CorruptBlockError && /missing/.test(err.message));
  });

  for (const compression of ['none', 'lz4'] as const) {
    void it(`${compression}: a well-formed block of another slice or index under a key is refused by whole and ranged reads, like a damaged one`, async () => {
      const bucket = new RecordingStore();
      const text = Buffer.from('ferry block identity '.repeat(Math.ceil(SIZE / 21)).substring(0, SIZE));
      const data = compression === 'none' ? content : text;
      await writeSlice(chunkStore(bucket, { compression }), data);
      // Another slice whose block 1 has the same length, with other bytes.
      const other = randomBytes(SEED ^ 0x1d, B);
      await chunkStore(bucket, { compression }).putBlock(ID + 1, 1, compression === 'none' ? other : text.subarray(B - 1000, 2 * B - 1000));
      // A replica mix-up: slice ID+1's block 1 under slice ID's block 1; a copy bug: block 0 under block 1's key.
      for (const source of [blockKey(ID + 1, 1, B), keyOf(0)]) {
        await bucket.put(keyOf(1), await bucket.inner.get(source));
        const chunks = chunkStore(bucket, { compression });
        const misplaced = (err: unknown): boolean => err instanceof CorruptBlockError && /identity mismatch/.test(err.message);
        await assert.rejects(read(chunks, B + 2 * S + 5, 100), misplaced, `ranged, ${source}`);
        await assert.rejects(chunks.readBlock(ID, SIZE, 1), misplaced, `whole, ${source}`);
        await assert.rejects(read(chunks, B, B), misplaced, `all of it, ${source}`);
        assert.deepEqual(await read(chunks, 10, 100), data.subarray(10, 110), 'the other blocks still read');
        assert.ok(chunks.stats.corrupt >= 2, 'counted as bad copies');
        // With a second bucket that holds the right block, reads fall through to it.
        const good = new RecordingStore();
        await writeSlice(chunkStore(good, { compression }), data);
        const log: string[] = [];
        const order: SourceStore[] = [{ region: 'a', store: bucket }, { region: 'b', store: good }];
        const two = chunkStore(bucket, { compression, source: { order: () => Promise.resolve(order), onBadCopy: (region, _key, err) => log.push(`${region}: ${String(err)}`) } });
        assert.deepEqual(await read(two, B + 2 * S + 5, 100), data.subarray(B + 2 * S + 5, B + 2 * S + 105));
        assert.deepEqual(await two.readBlock(ID, SIZE, 1), data.subarray(B, 2 * B));
        assert.ok(log.length >= 1 && log.every((l) => /^a: CorruptBlockError: .*identity mismatch/.test(l)), log.join('\n'));
      }
    });
  }

  void it('with a disk cache, a ranged read fills it with the whole block in the background; a disk hit serves small reads', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ferry-chunk-'));
    try {
      const bucket = new RecordingStore();
      await writeSlice(chunkStore(bucket));
      const disk = new DiskBlockCache({ dir, capacityBytes: 64 * MiB });
      const chunks = chunkStore(bucket, { diskCache: disk });
      assert.deepEqual(await read(chunks, 10 * KiB, 10), content.subarray(10 * KiB, 10 * KiB + 10));
      for (let i = 0; i < 500 && chunks.stats.cacheFills < 1; i++) await new Promise((r) => setTimeout(r, 10));
      await disk.flush();
      assert.equal(chunks.stats.cacheFills, 1);
      assert.equal(disk.stats().entries, 1, 'the whole block, no stripes');
      const gets = bucket.take();
      assert.equal(gets.filter(isWhole).length, 1);
      assert.equal(gets.length, 3);
      assert.deepEqual(await read(chunks, 200 * KiB, 10), content.subarray(200 * KiB, 200 * KiB + 10));
      assert.deepEqual(bucket.take(), [], 'from the disk cache');
      assert.equal(chunks.stats.diskHits, 1);
      // Fills are bounded: small reads in three blocks at once start at most two.
      await Promise.all([read(chunks, B + 5, 5), read(chunks, 2 * B + 5, 5)]);
      await chunks.close();
      assert.ok(chunks.stats.cacheFills <= 3);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  void it('background fills are bounded', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ferry-chunk-'));
    try {
      const bucket = new RecordingStore();
      const big = randomBytes(SEED ^ 0x99, 8 * B);
      for (let i = 0; i < 8; i++) await chunkStore(bucket).putBlock(ID, i, big.subarray(i * B, (i + 1) * B));
      const disk = new DiskBlockCache({ dir, capacityBytes: 64 * MiB });
      const chunks = chunkStore(bucket, { diskCache: disk });
      await Promise.all(
        Array.from({ length: 8 }, async (_, i) => {
          const out = Buffer.alloc(10);
          await chunks.readSlice(ID, 8 * B, i * B + 3, 10, out, 0);
          assert.deepEqual(out, big.subarray(i * B + 3, i * B + 13));
        }),
      );
      await chunks.close();
      assert.ok(chunks.stats.cacheFills >= 1 && chunks.stats.cacheFills <= 2, `fills ${chunks.stats.cacheFills}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

void describe('ChunkStore ranged reads over several buckets', () => {
  function source(stores: Array<[string, ObjectStore]>, log: string[]): BlockSource {
    const order: SourceStore[] = stores.map(([region, store]) => ({ region, store }));
    return {
      order: () => Promise.resolve(order),
      onRead: (region, _key, position, bytes) => log.push(`read ${region} ${position} ${bytes}`),
      onBadCopy: (region, _key, err) => log.push(`bad ${region} ${err instanceof Error ? err.message : String(err)}`),
    };
  }

  async function twoBuckets(): Promise<{ a: RecordingStore; b: RecordingStore }> {
    const a = new RecordingStore();
    const b = new RecordingStore();
    await writeSlice(chunkStore(a));
    await writeSlice(chunkStore(b));
    return { a, b };
  }

  const damage: Array<[string, (a: RecordingStore) => Promise<void>, RegExp]> = [
    ['missing', (a) => a.delete(keyOf(1)), /missing/],
    ['a flipped byte in the stripe', (a) => a.mutate(keyOf(1), (o) => ((o[blockHeaderBytes(B) + 2 * S + 9]! ^= 1), o)), /stripe 2 checksum/],
    ['a flipped byte in the header', (a) => a.mutate(keyOf(1), (o) => ((o[13]! ^= 1), o)), /header checksum/],
    ['a truncated object', (a) => a.mutate(keyOf(1), (o) => o.subarray(0, blockHeaderBytes(B) + 2 * S + 5)), /range of \d+ bytes/],
    [
      'unreachable',
      (a) => {
        a.fail = new Error('connection reset');
        return Promise.resolve();
      },
      /connection reset/,
    ],
  ];
  for (const [what, hurt, message] of damage) {
    void it(`${what} in the first bucket: the range comes from the next`, async () => {
      const { a, b } = await twoBuckets();
      await hurt(a);
      const log: string[] = [];
      const chunks = chunkStore(a, { source: source([['a', a], ['b', b]], log) });
      assert.deepEqual(await read(chunks, B + 2 * S + 1, 100), content.subarray(B + 2 * S + 1, B + 2 * S + 101));
      assert.equal(log.length, 2, log.join('\n'));
      assert.match(log[0]!, /^bad a /);
      assert.match(log[0]!, message);
      assert.equal(log[1], `read b 1 ${S}`);
      assert.ok(b.take().every((g) => !isWhole(g)), 'the next bucket is read by range too');
    });
  }

  void it('a version 1 copy in the first bucket is read whole from it', async () => {
    const { a, b } = await twoBuckets();
    await a.put(keyOf(1), encodeV1None(content.subarray(B, 2 * B)));
    const log: string[] = [];
    const chunks = chunkStore(a, { source: source([['a', a], ['b', b]], log) });
    assert.deepEqual(await read(chunks, B + 2 * S + 1, 100), content.subarray(B + 2 * S + 1, B + 2 * S + 101));
    assert.deepEqual(log, [`read a 0 ${B}`]);
    assert.deepEqual(b.take(), []);
  });

  void it('no good copy anywhere: NoGoodCopyError (a CorruptBlockError) naming what each bucket did; an unreachable one makes it EIO', async () => {
    const { a, b } = await twoBuckets();
    await a.mutate(keyOf(0), (o) => ((o[blockHeaderBytes(B) + 7]! ^= 1), o));
    await b.delete(keyOf(0));
    const chunks = chunkStore(a, { source: source([['a', a], ['b', b]], []) });
    for (const r of [() => read(chunks, 7, 10), () => chunks.readBlock(ID, SIZE, 0)]) {
      await assert.rejects(r(), (err: unknown) => {
        assert.ok(err instanceof NoGoodCopyError && err instanceof CorruptBlockError, String(err));
        assert.equal(err.message, `no good copy of ${keyOf(0)}: a: corrupt (stripe 0 checksum mismatch), b: missing`);
        assert.equal(err.key, keyOf(0));
        return true;
      });
    }
    b.fail = new Error('timeout');
    await assert.rejects(read(chunks, 7, 10), (err: unknown) => {
      assert.ok(err instanceof FsError && err.code === 'EIO', String(err));
      assert.equal(err.message, `no good copy of ${keyOf(0)}: a: corrupt (stripe 0 checksum mismatch), b: unreachable (timeout)`);
      assert.equal(err.cause, b.fail, "the unreachable bucket's error is the cause");
      return true;
    });
  });

  void it('every copy missing is named missing, never corrupt; one bucket is named too', async () => {
    const { a, b } = await twoBuckets();
    const c = new RecordingStore();
    for (const s of [a, b]) await s.delete(keyOf(2));
    const chunks = chunkStore(a, { source: source([['a', a], ['b', b]], []) });
    await assert.rejects(read(chunks, 2 * B + 5, 10), (err: unknown) => {
      assert.ok(err instanceof NoGoodCopyError, String(err));
      assert.equal(err.message, `no good copy of ${keyOf(2)}: a: missing, b: missing`);
      return true;
    });
    // One bucket, no source: the same words.
    await assert.rejects(chunkStore(a).readBlock(ID, SIZE, 2), (err: unknown) => err instanceof NoGoodCopyError && err.message === `no good copy of ${keyOf(2)}: bucket: missing`);
    // Missing, corrupt and unreachable in one read, in read order.
    await writeSlice(chunkStore(b));
    await b.mutate(keyOf(2), (o) => ((o[o.length - 1]! ^= 1), o));
    c.fail = new Error('timeout');
    const three = chunkStore(a, { source: source([['a', a], ['b', b], ['c', c]], []) });
    await assert.rejects(three.readBlock(ID, SIZE, 2), (err: unknown) => {
      assert.ok(err instanceof FsError && err.code === 'EIO', String(err));
      assert.match(err.message, new RegExp(`^no good copy of ${keyOf(2)}: a: missing, b: corrupt \\(stripe \\d+ checksum mismatch\\), c: unreachable \\(timeout\\)$`));
      return true;
    });
  });
});
