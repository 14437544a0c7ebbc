/**
 * The tier conformance suite (src/cache/tier.ts): every tier implementation runs it from a few-line test file.
 * Each case is named after the contract clause it checks and gets a fresh, empty tier from `open`.
 *
 * Cases that apply to one form only ('plain' or 'encoded') or to a capability the tier lacks (fill, stats,
 * close) are skipped with that reason. A tier that cannot honour a clause declares it in `skip` with the
 * reason; a skip naming no case fails.
 *
 * The suite checks what the reader relies on: plain answers cover what was asked and are the block's bytes;
 * encoded answers are the stored object's bytes where the table in tier.ts says (so the codec verifies them);
 * a damaged copy is never answered as good bytes.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BLOCK_STRIPE_BYTES,
  blockHeaderBytes,
  decodeBlock,
  decodeBlockHeader,
  decodeStripes,
  encodeBlock,
  stripeSpan,
  type StripedHeader,
} from '../../src/chunk/codec.js';
import { blockKey } from '../../src/chunk/keys.js';
import { CorruptBlockError } from '../../src/errors.js';
import { canFill, type BlockPart, type BlockRange, type BlockTier, type EncodedTier, type ObjectPart } from '../../src/cache/tier.js';
import { mulberry32 } from '../../src/util/random.js';
import { encodeV1None } from '../helpers/blocks.js';

export interface TierUnderTest {
  tier: BlockTier;
  /**
   * Makes the tier hold block `key` as this client would find it: a plain tier its `plain` bytes, an encoded
   * tier the stored `object` (the suite passes version 3 objects, and whole ones for the clause about
   * unstriped blocks).
   */
  hold(key: string, plain: Buffer, object: Buffer): Promise<void>;
  /** Damages the tier's copy of `key` where it is stored (a flipped byte at plain offset `at`). */
  damage?(key: string, plainBytes: number, at: number): Promise<void>;
  cleanup(): Promise<void>;
}

export interface TierConformanceOptions {
  /** Case name -> why this tier cannot honour it. */
  skip?: Record<string, string>;
}

const S = BLOCK_STRIPE_BYTES;
/** Block sizes around the stripe edges: one byte, one stripe, a stripe and a byte, several with a short last. */
const SIZES = [1, S - 1, S, S + 1, 5 * S + 123];

function bytes(seed: number, n: number): Buffer {
  const rand = mulberry32(seed);
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

/** A block key of slice `id`, block 0, `plainBytes` long (the key names the length, as the reader relies on). */
function keyOf(id: number, plainBytes: number): string {
  return blockKey(id, 0, plainBytes);
}

/** Ranges at and around the stripe edges of a block of `n` bytes, and a few inside. */
function ranges(n: number): Array<[number, number]> {
  const points = new Set<number>([0, 1, n - 1, n]);
  for (let e = S; e < n; e += S) for (const d of [-1, 0, 1]) points.add(e + d);
  const sorted = [...points].filter((p) => p >= 0 && p <= n).sort((a, b) => a - b);
  const out: Array<[number, number]> = [];
  for (const a of sorted) for (const b of sorted) if (a < b && b - a <= 3 * S) out.push([a, b]);
  return out;
}

function range(from: number, to: number, head: boolean): BlockRange {
  return { from, to, head };
}

/**
 * The plain bytes [from, to) an answer gives, checked against the contract (and verified with the codec for an
 * encoded answer; `header` is the table of an earlier answer when `head` was not asked).
 */
function plainOf(
  tier: BlockTier,
  key: string,
  plainBytes: number,
  r: BlockRange | undefined,
  got: BlockPart | ObjectPart,
  header?: StripedHeader,
): { part: BlockPart; header: StripedHeader | undefined } {
  if (tier.form === 'plain') {
    const p = got as BlockPart;
    const end = p.start + p.data.length;
    if (r === undefined) assert.ok(p.start === 0 && p.data.length === plainBytes, `whole answer ${p.start}+${p.data.length} of ${plainBytes}`);
    else assert.ok(p.start >= 0 && p.start <= r.from && r.to <= end && end <= plainBytes, `answer ${p.start}..${end} covers ${r.from}..${r.to} of ${plainBytes}`);
    return { part: p, header: undefined };
  }
  const o = got as ObjectPart;
  if (o.offset === 0) return { part: { data: decodeBlock(o.data, key, plainBytes), start: 0 }, header: undefined };
  assert.ok(r !== undefined, 'a whole get is answered from offset 0');
  const span = stripeSpan(plainBytes, r.from, r.to);
  assert.equal(o.offset, span.offset, 'stripes answered where the span says');
  let h = header;
  if (r.head) {
    assert.ok(o.head !== undefined, 'the header, as asked');
    h = decodeBlockHeader(o.head, key, plainBytes);
    assert.ok(h !== undefined, 'a striped header for a striped answer');
  }
  assert.ok(h !== undefined, 'a table to verify the stripes with');
  return { part: { data: decodeStripes(h, span, o.data, key), start: span.plainStart }, header: h };
}

export function tierConformance(name: string, open: () => Promise<TierUnderTest>, options: TierConformanceOptions = {}): void {
  const skip = options.skip ?? {};
  const cases = new Set<string>();

  /** One case on a fresh tier; `applies` returns why the case does not apply to this tier, if it does not. */
  function clause(title: string, applies: (t: BlockTier) => string | undefined, body: (u: TierUnderTest) => Promise<void>): void {
    cases.add(title);
    void it(title, async (t) => {
      const declared = skip[title];
      if (declared !== undefined) return t.skip(declared);
      const u = await open();
      try {
        const why = applies(u.tier);
        if (why !== undefined) return t.skip(why);
        await body(u);
      } finally {
        await u.cleanup();
      }
    });
  }

  const any = (): undefined => undefined;
  const encodedOnly = (t: BlockTier): string | undefined => (t.form === 'encoded' ? undefined : 'for encoded tiers');
  const fillable = (t: BlockTier): string | undefined => (canFill(t) ? undefined : 'the tier cannot be filled');

  async function holdBlock(u: TierUnderTest, id: number, plainBytes: number): Promise<{ key: string; plain: Buffer }> {
    const key = keyOf(id, plainBytes);
    const plain = bytes(id * 7919 + plainBytes, plainBytes);
    await u.hold(key, plain, encodeBlock(plain, 'none', key));
    return { key, plain };
  }

  void describe(`tier conformance: ${name}`, () => {
    clause('get of a block the tier does not hold answers undefined', any, async (u) => {
      assert.equal(await u.tier.get(keyOf(404, 1000), 1000, undefined, undefined), undefined);
      await holdBlock(u, 1, 1000);
      assert.equal(await u.tier.get(keyOf(404, 1000), 1000, undefined, undefined), undefined);
      assert.equal(await u.tier.get(keyOf(404, 1000), 1000, range(10, 20, true), undefined), undefined);
      assert.equal(await u.tier.get(keyOf(404, 1000), 1000, range(10, 20, false), undefined), undefined);
    });

    clause('get of the whole block answers all of it', any, async (u) => {
      for (const [i, n] of SIZES.entries()) {
        const { key, plain } = await holdBlock(u, 10 + i, n);
        const got = await u.tier.get(key, n, undefined, undefined);
        assert.ok(got !== undefined, `block of ${n} held`);
        assert.deepEqual(plainOf(u.tier, key, n, undefined, got).part.data, plain, `block of ${n}`);
      }
    });

    clause('get of a range answers bytes that cover it, at every stripe edge', any, async (u) => {
      for (const [i, n] of SIZES.entries()) {
        const { key, plain } = await holdBlock(u, 20 + i, n);
        for (const [a, b] of ranges(n)) {
          const r = range(a, b, true);
          const got = await u.tier.get(key, n, r, undefined);
          assert.ok(got !== undefined, `${a}..${b} of ${n} held`);
          const { part } = plainOf(u.tier, key, n, r, got);
          assert.deepEqual(part.data.subarray(a - part.start, b - part.start), plain.subarray(a, b), `${a}..${b} of ${n}`);
          assert.deepEqual(part.data, plain.subarray(part.start, part.start + part.data.length), 'every byte answered is the block\'s');
        }
      }
    });

    clause('a range asked with head comes with the block header', encodedOnly, async (u) => {
      const n = 5 * S + 123;
      const { key } = await holdBlock(u, 30, n);
      const got = (await (u.tier as EncodedTier).get(key, n, range(S + 5, S + 10, true), undefined))!;
      assert.ok(got.offset === 0 || got.head?.length === blockHeaderBytes(n), 'the header bytes, or the whole object');
      if (got.offset !== 0) assert.ok(decodeBlockHeader(got.head!, key, n) !== undefined);
    });

    clause('a range asked without head is the stripes alone, verified by an earlier header', encodedOnly, async (u) => {
      const n = 5 * S + 123;
      const { key, plain } = await holdBlock(u, 31, n);
      const first = (await u.tier.get(key, n, range(0, 10, true), undefined))!;
      const { header } = plainOf(u.tier, key, n, range(0, 10, true), first);
      for (const [a, b] of [[S, S + 1], [2 * S - 1, 2 * S + 1], [n - 1, n]] as const) {
        const r = range(a, b, false);
        const got = (await u.tier.get(key, n, r, undefined))!;
        const { part } = plainOf(u.tier, key, n, r, got, header);
        assert.deepEqual(part.data.subarray(a - part.start, b - part.start), plain.subarray(a, b));
      }
    });

    clause('a block that is not striped is answered whole for a range', encodedOnly, async (u) => {
      const n = 3 * S + 7;
      const key = keyOf(32, n);
      const plain = bytes(32, n);
      // Version 1 as written before stripes; compressed blocks are whole too (version 4).
      await u.hold(key, plain, encodeV1None(plain));
      const got = (await (u.tier as EncodedTier).get(key, n, range(S + 1, S + 9, true), undefined))!;
      assert.equal(got.offset, 0, 'the whole object');
      assert.deepEqual(decodeBlock(got.data, key, n), plain);
      const text = Buffer.alloc(4 * S, 'ferry block ');
      const zkey = keyOf(33, text.length);
      await u.hold(zkey, text, encodeBlock(text, 'lz4', zkey));
      const z = (await (u.tier as EncodedTier).get(zkey, text.length, range(10, 20, true), undefined))!;
      assert.equal(z.offset, 0);
      assert.deepEqual(decodeBlock(z.data, zkey, text.length), text);
    });

    clause('similar keys are distinct blocks', any, async (u) => {
      // Same slice, other lengths; same length, other slices and indexes.
      const keys: Array<[string, number]> = [
        [blockKey(1_000_000, 0, 1000), 1000],
        [blockKey(1_000_000, 0, 1001), 1001],
        [blockKey(1_000_000, 1, 1000), 1000],
        [blockKey(100_000, 0, 1000), 1000],
        [blockKey(1_000_001, 0, 1000), 1000],
      ];
      for (const [i, [k, n]] of keys.entries()) await u.hold(k, bytes(40 + i, n), encodeBlock(bytes(40 + i, n), 'none', k));
      for (const [i, [k, n]] of keys.entries()) {
        const got = await u.tier.get(k, n, undefined, undefined);
        assert.ok(got !== undefined, k);
        assert.deepEqual(plainOf(u.tier, k, n, undefined, got).part.data, bytes(40 + i, n), k);
      }
    });

    clause('concurrent gets of one block answer the same bytes', any, async (u) => {
      const n = 4 * S + 99;
      const { key, plain } = await holdBlock(u, 50, n);
      const rand = mulberry32(50);
      const asks = Array.from({ length: 40 }, () => {
        if (rand() < 0.3) return [undefined] as const;
        const a = Math.floor(rand() * (n - 1));
        return [range(a, Math.min(n, a + 1 + Math.floor(rand() * 2 * S)), true)] as const;
      });
      const answers = await Promise.all(asks.map(([r]) => u.tier.get(key, n, r, undefined)));
      for (const [i, got] of answers.entries()) {
        const r = asks[i]![0];
        assert.ok(got !== undefined);
        const { part } = plainOf(u.tier, key, n, r, got);
        assert.deepEqual(part.data, plain.subarray(part.start, part.start + part.data.length));
      }
    });

    clause('a damaged copy is never answered as good bytes', any, async (u) => {
      assert.ok(u.damage !== undefined, 'damage is given (or the case is skipped)');
      const n = 3 * S + 500;
      const { key } = await holdBlock(u, 60, n);
      const at = S + 17;
      await u.damage(key, n, at);
      for (const r of [undefined, range(S, S + 100, true), range(at, at + 1, true)]) {
        const got = await u.tier.get(key, n, r, undefined);
        if (got === undefined) continue; // a plain tier that found the damage: a miss
        assert.equal(u.tier.form, 'encoded', 'a plain tier answers only good bytes');
        assert.throws(() => plainOf(u.tier, key, n, r, got), CorruptBlockError, 'the codec rejects the damaged copy');
      }
    });

    clause('an aborted get rejects or answers good bytes', any, async (u) => {
      const n = 2 * S + 1;
      const { key, plain } = await holdBlock(u, 70, n);
      const ac = new AbortController();
      ac.abort(new Error('aborted by the test'));
      for (const r of [undefined, range(S, S + 10, true)]) {
        let got: BlockPart | ObjectPart | undefined;
        try {
          got = await u.tier.get(key, n, r, ac.signal);
        } catch {
          continue;
        }
        if (got === undefined) continue;
        const { part } = plainOf(u.tier, key, n, r, got);
        assert.deepEqual(part.data, plain.subarray(part.start, part.start + part.data.length));
      }
    });

    // ---- FillableTier

    clause('a filled whole block is answered whole and for any range', fillable, async (u) => {
      if (!canFill(u.tier)) return;
      const n = 4 * S + 3;
      const key = keyOf(80, n);
      const plain = bytes(80, n);
      await u.tier.fill(key, n, { data: plain, start: 0 }, undefined);
      const whole = await u.tier.get(key, n, undefined, undefined);
      assert.ok(whole !== undefined);
      assert.deepEqual(plainOf(u.tier, key, n, undefined, whole).part.data, plain);
      for (const [a, b] of [[0, 1], [S - 1, S + 1], [n - 1, n]] as const) {
        const r = range(a, b, true);
        const got = await u.tier.get(key, n, r, undefined);
        assert.ok(got !== undefined, `${a}..${b}`);
        const { part } = plainOf(u.tier, key, n, r, got);
        assert.deepEqual(part.data.subarray(a - part.start, b - part.start), plain.subarray(a, b));
      }
    });

    clause("a filled part is answered by a 'stripes' tier inside it and ignored by a 'whole' tier", fillable, async (u) => {
      if (!canFill(u.tier)) return;
      const n = 6 * S + 10;
      const key = keyOf(81, n);
      const plain = bytes(81, n);
      // Stripes 2..3, and the short last one.
      await u.tier.fill(key, n, { data: plain.subarray(2 * S, 4 * S), start: 2 * S }, undefined);
      await u.tier.fill(key, n, { data: plain.subarray(6 * S), start: 6 * S }, undefined);
      for (const [a, b] of [[2 * S, 2 * S + 1], [3 * S - 5, 3 * S + 5], [4 * S - 1, 4 * S], [6 * S + 2, n]] as const) {
        const r = range(a, b, false);
        const got: BlockPart | ObjectPart | undefined = await u.tier.get(key, n, r, undefined);
        if (u.tier.fillWith === 'whole') {
          assert.equal(got, undefined, `${a}..${b}: a 'whole' tier keeps no parts`);
          continue;
        }
        assert.ok(got !== undefined, `${a}..${b}`);
        const { part } = plainOf(u.tier, key, n, r, got);
        assert.deepEqual(part.data.subarray(a - part.start, b - part.start), plain.subarray(a, b));
      }
      assert.equal(await u.tier.get(key, n, range(S, S + 1, false), undefined), undefined, 'a stripe never filled');
      assert.equal(await u.tier.get(key, n, undefined, undefined), undefined, 'not the whole block');
    });

    clause('a fill given the encoded object keeps the same bytes', fillable, async (u) => {
      if (!canFill(u.tier)) return;
      const n = 2 * S + 77;
      const key = keyOf(82, n);
      const plain = bytes(82, n);
      const object = encodeBlock(plain, 'none', key);
      await u.tier.fill(key, n, { data: object.subarray(object.length - n), start: 0 }, object);
      const got = await u.tier.get(key, n, undefined, undefined);
      assert.ok(got !== undefined);
      assert.deepEqual(plainOf(u.tier, key, n, undefined, got).part.data, plain);
    });

    clause('drop forgets the block and its stripes', fillable, async (u) => {
      if (!canFill(u.tier)) return;
      const n = 3 * S + 1;
      const key = keyOf(83, n);
      const plain = bytes(83, n);
      await u.tier.fill(key, n, { data: plain, start: 0 }, undefined);
      await u.tier.fill(key, n, { data: plain.subarray(S, 2 * S), start: S }, undefined);
      const other = keyOf(84, n);
      await u.tier.fill(other, n, { data: plain, start: 0 }, undefined);
      await u.tier.drop(key, n);
      await u.tier.drop(keyOf(404, n), n);
      assert.equal(await u.tier.get(key, n, undefined, undefined), undefined);
      assert.equal(await u.tier.get(key, n, range(S + 1, S + 2, false), undefined), undefined);
      assert.ok((await u.tier.get(other, n, undefined, undefined)) !== undefined, 'other blocks stay');
    });

    // ---- stats, close

    clause('stats count what the tier holds', (t) => (t.stats === undefined ? 'the tier gives no stats' : undefined), async (u) => {
      const before = u.tier.stats!();
      await holdBlock(u, 90, 1000);
      const s = u.tier.stats!();
      assert.ok(s.entries > before.entries, 'an entry more');
      assert.ok(s.bytes >= before.bytes + 1000, 'its bytes counted');
      await u.tier.get(keyOf(90, 1000), 1000, undefined, undefined);
      assert.ok(u.tier.stats!().hits > s.hits, 'a hit counted');
    });

    clause('close is idempotent', (t) => (t.close === undefined ? 'the tier has nothing to close' : undefined), async (u) => {
      await holdBlock(u, 91, 100);
      await Promise.all([u.tier.close!(), u.tier.close!()]);
      await u.tier.close!();
    });

    void it('declared skips name existing cases', () => {
      for (const title of Object.keys(skip)) assert.ok(cases.has(title), `skip names no case: ${JSON.stringify(title)}`);
    });
  });
}

/** Flips the byte at plain offset `at` of an encoded block object (in place). */
export function flipPlainByte(object: Buffer, plainBytes: number, at: number): void {
  object[object.length - plainBytes + at]! ^= 0x01;
}
