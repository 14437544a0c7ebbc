/**
 * The seam for the cache group: a dummy peer tier (peer-tier.ts, one small file) passes the tier suite and,
 * placed between the disk cache and the buckets of a real reader, serves reads, is verified (a corrupt copy
 * falls through to the bucket and is never returned), and is asked once for a block however many readers
 * want it.
 */

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createChunkStore } from '../../src/cache/blocks.js';
import { DiskBlockCache } from '../../src/cache/disk.js';
import { MemoryBlockCache } from '../../src/cache/memory.js';
import type { BlockReader } from '../../src/cache/reader.js';
import { BLOCK_STRIPE_BYTES } from '../../src/chunk/codec.js';
import { blockKey } from '../../src/chunk/keys.js';
import type { ChunkStore } from '../../src/chunk/store.js';
import { CorruptBlockError } from '../../src/errors.js';
import { FaultStore } from '../../src/object/faults.js';
import { MemStore } from '../../src/object/mem.js';
import { mulberry32 } from '../../src/util/random.js';
import { CountingStore } from '../region/helpers.js';
import { PeerTier } from './peer-tier.js';
import { flipPlainByte, tierConformance } from './tier-conformance.js';

tierConformance('dummy peer (cache group stand-in)', () => {
  const tier = new PeerTier();
  return Promise.resolve({
    tier,
    hold: (key: string, plain: Buffer, object: Buffer) => Promise.resolve(tier.hold(key, plain, object)),
    damage: (key: string, plainBytes: number, at: number) => Promise.resolve(flipPlainByte(tier.objects.get(key)!, plainBytes, at)),
    cleanup: () => Promise.resolve(),
  });
});

const KiB = 1024;
const MiB = 1024 * KiB;
const S = BLOCK_STRIPE_BYTES;
const B = MiB;
const ID = 777;
/** Three blocks, the last one short. */
const SIZE = 2 * B + 200 * KiB + 9;

function randomBytes(seed: number, n: number): Buffer {
  const rand = mulberry32(seed);
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

const content = randomBytes(0x5eed, SIZE);
const blockLen = (i: number): number => Math.min(B, SIZE - i * B);
const keyOf = (i: number): string => blockKey(ID, i, blockLen(i));

interface Rig {
  chunks: ChunkStore;
  reader: BlockReader;
  bucket: CountingStore;
  peer: PeerTier;
  disk: DiskBlockCache;
  /** What the reader reported of its front tiers: `tier: message`. */
  bad: string[];
  close(): Promise<void>;
}

/** memory -> disk -> peer -> bucket, with the slice in the bucket and (unless told) in the peer. */
async function rig(options: { peerHolds?: boolean; bucketLatencyMs?: number } = {}): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-peer-'));
  const inner = new MemStore();
  const bucket = new CountingStore(options.bucketLatencyMs === undefined ? inner : new FaultStore(inner, { seed: 1, latencyMs: [options.bucketLatencyMs, options.bucketLatencyMs] }));
  const peer = new PeerTier();
  const disk = new DiskBlockCache({ dir, capacityBytes: 64 * MiB, freeSpaceFloorRatio: 0 });
  const bad: string[] = [];
  const chunks = createChunkStore({
    store: bucket,
    blockBytes: B,
    compression: 'none',
    memCache: new MemoryBlockCache({ capacityBytes: 16 * MiB, shareBuffers: true }),
    diskCache: disk,
    extraTiers: [peer],
    onBadCopy: (tier, _key, err) => bad.push(`${tier}: ${err instanceof Error ? err.message : String(err)}`),
  });
  for (let i = 0; i * B < SIZE; i++) {
    const plain = content.subarray(i * B, i * B + blockLen(i));
    await chunks.putBlock(ID, i, plain);
    if (options.peerHolds ?? true) peer.hold(keyOf(i), plain);
  }
  bucket.calls.get = 0;
  return {
    chunks,
    reader: chunks.reads as BlockReader,
    bucket,
    peer,
    disk,
    bad,
    close: async () => {
      await chunks.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function read(chunks: ChunkStore, off: number, len: number): Promise<Buffer> {
  const out = Buffer.alloc(len, 0xaa);
  await chunks.readSlice(ID, SIZE, off, len, out, 0);
  return out;
}

async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !done(); i++) await new Promise((r) => setTimeout(r, 10));
}

void describe('a peer tier between the disk cache and the buckets', () => {
  void it('whole reads hit the peer, not the bucket, and fill memory and disk on the way back', async () => {
    const r = await rig();
    try {
      assert.deepEqual(await read(r.chunks, 0, SIZE), content);
      assert.equal(r.bucket.calls.get, 0, 'the bucket was not asked');
      assert.equal(r.reader.tierStats('peer')?.hits, 3);
      assert.equal(r.chunks.stats.blocksRead, 0, 'no block from a bucket');
      await r.disk.flush();
      assert.equal(r.disk.stats().entries, 3, 'the disk keeps the whole blocks');
      const gets = r.peer.gets;
      assert.deepEqual(await read(r.chunks, 0, SIZE), content);
      assert.equal(r.peer.gets, gets, 'the second pass comes from memory');
      assert.equal(r.chunks.stats.memHits, 3);
    } finally {
      await r.close();
    }
  });

  void it('a small read takes stripes from the peer; the disk gets the whole block in the background, from the peer', async () => {
    const r = await rig();
    try {
      assert.deepEqual(await read(r.chunks, B + 100 * KiB, 4 * KiB), content.subarray(B + 100 * KiB, B + 104 * KiB));
      assert.equal(r.reader.tierStats('peer')?.partHits, 1);
      await until(() => r.chunks.stats.cacheFills >= 1);
      await r.disk.flush();
      assert.equal(r.chunks.stats.cacheFills, 1);
      assert.equal(r.disk.stats().entries, 1);
      assert.equal(r.bucket.calls.get, 0, 'neither the stripes nor the fill came from the bucket');
      // The stripe is in memory now.
      assert.deepEqual(await read(r.chunks, B + 101 * KiB, 10), content.subarray(B + 101 * KiB, B + 101 * KiB + 10));
      assert.equal(r.chunks.stats.stripeHits, 1);
    } finally {
      await r.close();
    }
  });

  void it('a corrupt copy from the peer falls through to the bucket and is never returned', async () => {
    const r = await rig();
    try {
      r.peer.corrupt = true;
      assert.deepEqual(await read(r.chunks, 0, B), content.subarray(0, B), 'a whole block');
      assert.deepEqual(await read(r.chunks, B + 3 * S + 5, 100), content.subarray(B + 3 * S + 5, B + 3 * S + 105), 'a small read');
      assert.ok(r.bucket.calls.get >= 2, 'the bucket served them');
      assert.ok(r.chunks.stats.corrupt >= 2, `corrupt copies counted: ${r.chunks.stats.corrupt}`);
      assert.equal(r.reader.tierStats('peer')?.hits, 0);
      assert.ok((r.reader.tierStats('peer')?.failures ?? 0) >= 2);
      assert.ok(r.bad.length >= 2 && r.bad.every((b) => /^peer: corrupt block .*(checksum|mismatch)/.test(b)), r.bad.join('\n'));
      // What the caches got is the bucket's good copy.
      assert.deepEqual(await read(r.chunks, 0, B), content.subarray(0, B));
      // With no good copy anywhere, the read fails: the peer's bytes are never returned.
      await r.bucket.inner.delete(keyOf(2));
      await assert.rejects(read(r.chunks, 2 * B, 10), (err: unknown) => err instanceof CorruptBlockError && /missing/.test(err.message));
      await assert.rejects(r.chunks.readBlock(ID, SIZE, 2), CorruptBlockError);
    } finally {
      await r.close();
    }
  });

  void it('an unreachable peer falls through to the bucket', async () => {
    const r = await rig();
    try {
      r.peer.down = true;
      assert.deepEqual(await read(r.chunks, 0, SIZE), content);
      assert.ok(r.bucket.calls.get > 0);
      assert.equal(r.chunks.stats.corrupt, 0, 'unreachable is not corrupt');
      assert.ok(r.bad.length > 0 && r.bad.every((b) => /^peer: cache group: owner of .* unreachable$/.test(b)), r.bad.join('\n'));
    } finally {
      await r.close();
    }
  });

  void it('concurrent readers of one missing block cause one fetch', async () => {
    // The peer misses: the bucket (slow) is asked once for all of them.
    const r = await rig({ peerHolds: false, bucketLatencyMs: 30 });
    try {
      const whole = await Promise.all(Array.from({ length: 8 }, () => r.chunks.readBlock(ID, SIZE, 0)));
      for (const b of whole) assert.deepEqual(b, content.subarray(0, B));
      assert.equal(r.bucket.calls.get, 1, 'one GET of block 0');
      assert.equal(r.peer.gets, 1, 'one question to the peer');
      // Small reads of one stripe range: one header and one range GET, one question to the peer.
      const at = B + 5 * S + 10;
      const small = await Promise.all(Array.from({ length: 8 }, () => read(r.chunks, at, 50)));
      for (const b of small) assert.deepEqual(b, content.subarray(at, at + 50));
      // One question to the peer and one header and one range GET for the stripes; then the background fill of
      // the disk asks for that block whole, once.
      await until(() => r.chunks.stats.cacheFills >= 1);
      assert.equal(r.peer.gets, 1 + 1 + 1);
      assert.equal(r.bucket.calls.get, 1 + 2 + 1);
    } finally {
      await r.close();
    }
    // The peer holds it, slowly: asked once.
    const p = await rig();
    try {
      p.peer.delayMs = 30;
      const whole = await Promise.all(Array.from({ length: 8 }, () => p.chunks.readBlock(ID, SIZE, 1)));
      for (const b of whole) assert.deepEqual(b, content.subarray(B, 2 * B));
      assert.equal(p.peer.gets, 1);
      assert.equal(p.bucket.calls.get, 0);
    } finally {
      await p.close();
    }
  });
});
