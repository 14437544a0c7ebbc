/**
 * A real owner (src/cache/group/owner.ts: its disk cache, then its block reader) behind the peer server, asked
 * through the peer tier over HTTP: it passes the tier conformance suite; a ranged request reads only the
 * header and the covering stripes from its disk (a damaged stripe elsewhere does not stop it); a damaged
 * stripe or file on its disk is never served (the good copy comes from its bucket); whole blocks read from
 * disk into reused buffers stay right under concurrent requests.
 */

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createChunkStore } from '../../../src/cache/blocks.js';
import { DiskBlockCache } from '../../../src/cache/disk.js';
import { OwnerBlocks } from '../../../src/cache/group/owner.js';
import { Ring } from '../../../src/cache/group/ring.js';
import { PeerServer } from '../../../src/cache/group/server.js';
import { PeerTier } from '../../../src/cache/tier-peer.js';
import { BLOCK_STRIPE_BYTES, decodeBlock, decodeBlockHeader, decodeStripes, encodeBlock, stripeSpan } from '../../../src/chunk/codec.js';
import { blockKey } from '../../../src/chunk/keys.js';
import type { ChunkStore } from '../../../src/chunk/store.js';
import { deriveKey } from '../../../src/meta/secret.js';
import { MemStore } from '../../../src/object/mem.js';
import { mulberry32 } from '../../../src/util/random.js';
import { flipPlainByte, tierConformance } from '../tier-conformance.js';

const UUID = 'vol-uuid-owner';
const KEY = deriveKey(Buffer.alloc(32, 7), UUID, 'cache-peer');
const S = BLOCK_STRIPE_BYTES;

interface Rig {
  tier: PeerTier;
  owner: OwnerBlocks;
  disk: DiskBlockCache;
  /** The owner's bucket (empty unless a test puts objects in it). */
  bucket: MemStore;
  /** Flips the byte at plain offset `at` of the block's file on the owner's disk. */
  damage(key: string, plainBytes: number, at: number): Promise<void>;
  cleanup(): Promise<void>;
}

async function rig(): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-owner-'));
  const disk = new DiskBlockCache({ dir, capacityBytes: 256 << 20, freeSpaceFloorRatio: 0 });
  const bucket = new MemStore();
  // The owner's own reader: its disk cache, then its bucket (as a cache node's volume has).
  const chunks: ChunkStore = createChunkStore({ store: bucket, blockBytes: 4 << 20, compression: 'none', diskCache: disk });
  const owner = new OwnerBlocks({ reader: chunks.reads, disk });
  const server = new PeerServer({ uuid: UUID, key: KEY, provider: owner });
  const a = await server.listen(0, '127.0.0.1');
  const tier = new PeerTier({ ring: () => new Ring([{ id: `127.0.0.1:${a.port}`, weight: 1 }]), uuid: UUID, key: KEY, timeoutMs: 30_000 });
  return {
    tier,
    owner,
    disk,
    bucket,
    async damage(key, plainBytes, at) {
      await disk.flush();
      const file = await readFile(disk.filePath(key));
      flipPlainByte(file, plainBytes, at);
      await writeFile(disk.filePath(key), file);
    },
    async cleanup() {
      await tier.close();
      await server.close();
      await chunks.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

tierConformance('cache group peer over HTTP, a real owner serving from its disk cache', async () => {
  const r = await rig();
  return {
    tier: r.tier,
    hold: async (key: string, plain: Buffer, object: Buffer) => {
      await r.disk.putEncoded(key, Buffer.from(object), plain.length);
      await r.disk.flush();
    },
    damage: (key: string, plainBytes: number, at: number) => r.damage(key, plainBytes, at),
    cleanup: () => r.cleanup(),
  };
}, {
  skip: {
    'a block that is not striped is answered whole for a range':
      'a disk cache keeps uncompressed objects only: a compressed block reaches the owner through its reader and is kept (and answered) striped',
  },
});

function randomBytes(seed: number, n: number): Buffer {
  const rand = mulberry32(seed);
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

/** Plain bytes [from, to) of block `key` asked of the tier by stripes (with its header), verified as the reader does. */
async function rangeOf(tier: PeerTier, key: string, plainBytes: number, from: number, to: number): Promise<Buffer | undefined> {
  const got = await tier.get(key, plainBytes, { from, to, head: true }, undefined);
  if (got === undefined) return undefined;
  const span = stripeSpan(plainBytes, from, to);
  assert.equal(got.offset, span.offset);
  const header = decodeBlockHeader(got.head!, key, plainBytes)!;
  const stripes = decodeStripes(header, span, got.data, key);
  return stripes.subarray(from - span.plainStart, to - span.plainStart);
}

void describe('a cache-group owner serving from its disk cache', () => {
  void it('ranged requests read only the covering stripes; a damaged stripe is never served, the bucket\'s copy is', async () => {
    const r = await rig();
    try {
      const n = 8 * S + 1000;
      const key = blockKey(42, 0, n);
      const plain = randomBytes(1, n);
      const object = encodeBlock(plain, 'none', key);
      await r.bucket.put(key, object);
      await r.disk.putEncoded(key, Buffer.from(object), n);
      await r.damage(key, n, 5 * S + 3);

      // Stripe 1 is read from the disk by stripes, though the file is damaged elsewhere (a whole read would
      // have found the damage, dropped the file and fetched the block).
      assert.deepEqual(await rangeOf(r.tier, key, n, S + 10, S + 20), plain.subarray(S + 10, S + 20));
      assert.equal(r.owner.stats.diskRangeHits, 1);
      assert.equal(r.owner.stats.fetched, 0, 'nothing fetched');
      assert.equal(r.disk.stats().corrupt, 0);

      // Stripe 5 is damaged on disk: found, dropped, and the bucket's copy served instead.
      assert.deepEqual(await rangeOf(r.tier, key, n, 5 * S, 5 * S + 4096), plain.subarray(5 * S, 5 * S + 4096));
      assert.equal(r.disk.stats().corrupt, 1, 'the damage was found on the owner');
      assert.equal(r.owner.stats.fetched, 1, 'the block was fetched from the bucket');
      assert.equal(r.tier.peerStats.failures, 0, 'no bad answer reached the client');
    } finally {
      await r.cleanup();
    }
  });

  void it('a damaged file is never served whole; the bucket\'s copy is, and later whole reads come from the disk again', async () => {
    const r = await rig();
    try {
      const n = 3 * S + 7;
      const key = blockKey(43, 0, n);
      const plain = randomBytes(2, n);
      const object = encodeBlock(plain, 'none', key);
      await r.bucket.put(key, object);
      await r.disk.putEncoded(key, Buffer.from(object), n);
      await r.damage(key, n, n - 1);
      const got = await r.tier.get(key, n, undefined, undefined);
      assert.ok(got !== undefined && got.offset === 0);
      assert.deepEqual(decodeBlock(got.data, key, n), plain);
      assert.equal(r.disk.stats().corrupt, 1);
      assert.equal(r.owner.stats.fetched, 1);
      assert.equal(r.tier.peerStats.failures, 0);
    } finally {
      await r.cleanup();
    }
  });

  void it('whole blocks read from disk into reused buffers: 64 concurrent requests over 6 blocks all verify (seeded)', async () => {
    const r = await rig();
    try {
      const seed = 0xb10c;
      process.stdout.write(`# seed ${seed}\n`);
      const rand = mulberry32(seed);
      const blocks = Array.from({ length: 6 }, (_, i) => {
        const n = 4 * S + Math.floor(rand() * 4 * S);
        const key = blockKey(50 + i, 0, n);
        return { key, n, plain: randomBytes(seed + i, n) };
      });
      for (const b of blocks) await r.disk.putEncoded(b.key, encodeBlock(b.plain, 'none', b.key), b.n);
      await r.disk.flush();
      // Disk answers are not kept in the owner's memory: every answer is read into a lent buffer, of sizes
      // that vary, so later ones reuse larger buffers returned by earlier ones.
      const order = Array.from({ length: 64 }, () => blocks[Math.floor(rand() * blocks.length)]!);
      const answers = await Promise.all(order.map((b) => r.tier.get(b.key, b.n, undefined, undefined)));
      for (let i = 0; i < order.length; i++) {
        const b = order[i]!;
        const got = answers[i];
        assert.ok(got !== undefined && got.offset === 0, `answer ${i}`);
        assert.deepEqual(decodeBlock(got.data, b.key, b.n), b.plain, `answer ${i} (${b.key})`);
      }
      const { diskLends, memoryHits, fetched } = r.owner.stats;
      assert.equal(diskLends + memoryHits, 64, `${diskLends} reads from disk and ${memoryHits} shared answers`);
      assert.ok(diskLends >= blocks.length, 'each block read from disk at least once');
      assert.equal(fetched, 0);
      // Requests for one block at once share one read.
      const [b] = blocks;
      const before = r.owner.stats.diskLends;
      const same = await Promise.all(Array.from({ length: 12 }, () => r.tier.get(b!.key, b!.n, undefined, undefined)));
      for (const got of same) assert.deepEqual(decodeBlock(got!.data, b!.key, b!.n), b!.plain);
      assert.ok(r.owner.stats.diskLends - before < 12, `${r.owner.stats.diskLends - before} disk reads for 12 requests at once`);
    } finally {
      await r.cleanup();
    }
  });
});
