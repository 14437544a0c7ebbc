/**
 * BlockReader rules not covered by the read tests (test/chunk/store.test.ts) and the peer seam
 * (tier-peer.test.ts): the order of its tiers, and what it does with a plain tier that answers out of
 * contract or fails.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BlockReader } from '../../src/cache/reader.js';
import type { BlockPart, BlockRange, FillableTier, PlainTier } from '../../src/cache/tier.js';
import { blockKey } from '../../src/chunk/keys.js';
import { ChunkStore } from '../../src/chunk/store.js';
import { MemStore } from '../../src/object/mem.js';
import { PeerTier } from './peer-tier.js';

/** A plain, fillable tier that answers what it is told to (right or wrong), and records drops. */
class ScriptedTier implements PlainTier, FillableTier {
  readonly form = 'plain';
  readonly fillWith = 'whole';
  answer: ((range: BlockRange | undefined) => BlockPart | undefined) | undefined;
  fail: Error | undefined;
  drops: string[] = [];
  fills = 0;
  readonly name: string;
  constructor(name: string) {
    this.name = name;
  }
  get(_key: string, _plainBytes: number, range: BlockRange | undefined): Promise<BlockPart | undefined> {
    if (this.fail !== undefined) return Promise.reject(this.fail);
    return Promise.resolve(this.answer?.(range));
  }
  fill(): Promise<void> {
    this.fills++;
    return Promise.resolve();
  }
  drop(key: string): Promise<void> {
    this.drops.push(key);
    return Promise.resolve();
  }
}

const B = 256 * 1024;

async function rig(tier: ScriptedTier): Promise<{ chunks: ChunkStore; plain: Buffer; bad: string[] }> {
  const store = new MemStore();
  const bad: string[] = [];
  const reads = new BlockReader({ tiers: [tier], store, blockBytes: B, compression: 'none', onBadCopy: (t, _k, err) => bad.push(`${t}: ${String(err)}`) });
  const chunks = new ChunkStore({ store, blockBytes: B, compression: 'none', reads });
  const plain = Buffer.alloc(B);
  for (let i = 0; i < B; i++) plain[i] = (i * 7) & 0xff;
  await chunks.putBlock(1, 0, plain);
  return { chunks, plain, bad };
}

void describe('BlockReader', () => {
  void it('refuses a plain tier after an encoded one, and two tiers of one name', () => {
    const store = new MemStore();
    assert.throws(() => new BlockReader({ tiers: [new PeerTier(), new ScriptedTier('memory')], store, blockBytes: B, compression: 'none' }), /plain tiers .* come before encoded ones/);
    assert.throws(() => new BlockReader({ tiers: [new ScriptedTier('memory'), new ScriptedTier('memory')], store, blockBytes: B, compression: 'none' }), /unique/);
  });

  void it('a plain answer that does not cover the read is dropped, reported, and the bucket serves it', async () => {
    const tier = new ScriptedTier('memory');
    const { chunks, plain, bad } = await rig(tier);
    // Wrong for both paths: a short whole block, a part that starts after the read.
    tier.answer = (range) => (range === undefined ? { data: plain.subarray(0, B - 1), start: 0 } : { data: plain.subarray(range.from + 1, range.to + 1), start: range.from + 1 });
    const out = Buffer.alloc(100);
    await chunks.readSlice(1, B, 5000, 100, out, 0);
    assert.deepEqual(out, plain.subarray(5000, 5100));
    assert.deepEqual(await chunks.readBlock(1, B, 0), plain);
    assert.deepEqual(tier.drops, [blockKey(1, 0, B), blockKey(1, 0, B)]);
    assert.equal(bad.length, 2);
    assert.match(bad[0]!, /memory: CorruptBlockError: corrupt block .*: tier memory answered plain bytes 5001\.\.5101 for 5000\.\.5100/);
    assert.equal(chunks.stats.memHits + chunks.stats.stripeHits, 0, 'no hit counted');
    assert.equal(chunks.stats.corrupt, 0, 'not a copy that failed its checksum');
  });

  void it('a plain tier that fails is skipped and reported, not dropped; an aborted read ends there', async () => {
    const tier = new ScriptedTier('disk');
    const { chunks, plain, bad } = await rig(tier);
    tier.fail = new Error('EIO reading the cache file');
    assert.deepEqual(await chunks.readBlock(1, B, 0), plain);
    assert.deepEqual(tier.drops, []);
    assert.deepEqual(bad, ['disk: Error: EIO reading the cache file']);
    assert.equal(tier.fills, 1, "then filled with the bucket's copy, as any tier before the one that answered");
    const ac = new AbortController();
    ac.abort();
    tier.fail = new Error('aborted');
    await assert.rejects(chunks.readSlice(1, B, 10, 10, Buffer.alloc(10), 0, ac.signal), /aborted/);
  });
});
