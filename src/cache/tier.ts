/**
 * The tier contract: one place a block may be found, checked by test/cache/tier-conformance.ts. The block
 * reader (reader.ts) walks an ordered list of tiers, fastest first, the plain ones (this machine's) before
 * the encoded ones:
 *
 *   memory -> local disk -> (the region's cache group) -> buckets, in the order region/ decides per slice
 *   plain     plain          encoded                      encoded
 *   tier-cache.ts            (one file, later)            tier-bucket.ts
 *
 * A tier answers one question: what do you hold of block `key` (`plainBytes` long, as its key says), whole
 * or the part `range` of it? The answer comes in one of two forms, fixed per tier (`form`):
 *
 *   'plain'    plain bytes that need no check here: they never left this process (memory), or the tier checked
 *              them with the codec as it read them (disk: a BlockCache never returns a copy that fails its own
 *              verification, cache.ts).
 *   'encoded'  bytes of the stored object in the block codec (chunk/codec.ts), as the tier got them. The reader
 *              verifies all of them (header, stripe table, checksums, the block the header names) before any is
 *              used, so a tier that serves a damaged, truncated or foreign copy (another block's) costs a
 *              fall-through to the next tier, never wrong bytes.
 *
 *   range      plain tier answers (BlockPart)              encoded tier answers (ObjectPart)
 *   ---------  ------------------------------------------  ----------------------------------------------------
 *   undefined  {data: all plainBytes, start: 0}            {offset: 0, data: the whole object}
 *   [from,to)  {data, start} with start <= from and        the stripes that cover [from, to): {offset:
 *              to <= start + data.length <= plainBytes     span.offset, data: span.length bytes, head: the first
 *              (more is fine: whole stripes, the whole     blockHeaderBytes(plainBytes) object bytes when
 *              block)                                      range.head} with span = stripeSpan(plainBytes, from,
 *                                                          to); or the whole object ({offset: 0, ...}) when the
 *                                                          block is not striped (codec version 1 or 4) or the tier
 *                                                          prefers it
 *   not held   undefined                                   undefined
 *
 * Promises of every tier:
 * - `undefined` means "not held here": the reader asks the next tier. It is not an error and is not reported.
 * - `get` rejects only when the tier cannot answer (unreachable, timed out, aborted, a failed read): the reader
 *   reports it and asks the next tier, unless the read itself was aborted.
 * - Buffers in an answer may be shared (kept by the tier, views of a larger buffer): nobody modifies them.
 * - `get` changes what the tier holds only by its own policy (LRU order, forgetting a copy it found bad).
 * An answer outside the table above (short, misplaced, of another block) is a bad copy to the reader: treated
 * as missing, dropped from the tier when it can be (FillableTier), reported, and the next tier asked.
 *
 * Optional capabilities, found by type guard:
 * - FillableTier: the reader puts what a slower tier gave into it on the way back, and drops from it a copy
 *   that failed. `fillWith` says what it takes: 'stripes' (whole blocks, and parts of one cut at stripe
 *   boundaries: the memory cache) or 'whole' (whole blocks only: the disk cache; a small read that fetched
 *   only stripes then fills it in the background, bounded, see reader.ts).
 * - `stats()`: counters of what the tier holds and did (caches), for `.stats` and metrics.
 * - `close()`: the reader owns the tiers it is given and closes them with itself.
 * - `answeredBad(key, err)`: the reader tells the tier that a copy it answered was bad (after dropping it).
 */

import type { BlockPart } from '../chunk/store.js';
import type { CacheStats } from './cache.js';

export type { BlockPart };

/** Which part of a block a read wants; see the table in the header. */
export interface BlockRange {
  /** Plain bytes [from, to) of the block: 0 <= from < to <= plainBytes. */
  readonly from: number;
  readonly to: number;
  /** Encoded tiers: also answer the object's header (the reader does not hold its verified stripe table). */
  readonly head: boolean;
}

/** Object bytes [offset, offset + data.length) of a block as stored (codec form), and its header if asked. */
export interface ObjectPart {
  offset: number;
  data: Buffer;
  head?: Buffer | undefined;
}

interface TierBase {
  /** Names the tier in reports and errors: 'memory', 'disk', a region's name for its bucket. */
  readonly name: string;
  /** Counters of what the tier holds and did (caches). */
  stats?(): CacheStats;
  /** Idempotent; the reader closes the tiers it was given. */
  close?(): Promise<void>;
  /**
   * Told when a copy this tier answered failed verification or was out of contract (a tier that relays other
   * machines, the cache group, stops asking the one that answered for a while). Never throws.
   */
  answeredBad?(key: string, err: unknown): void;
}

export interface PlainTier extends TierBase {
  readonly form: 'plain';
  get(key: string, plainBytes: number, range: BlockRange | undefined, signal: AbortSignal | undefined): Promise<BlockPart | undefined>;
}

export interface EncodedTier extends TierBase {
  readonly form: 'encoded';
  get(key: string, plainBytes: number, range: BlockRange | undefined, signal: AbortSignal | undefined): Promise<ObjectPart | undefined>;
}

/** One place a block may be found (see the header). */
export type BlockTier = PlainTier | EncodedTier;

/**
 * Optional capability: a tier the reader fills on the way back.
 * - `fill` keeps verified plain bytes `part` of block `key` (a whole block, or for 'stripes' tiers a part that
 *   starts and ends on stripe boundaries or at the block's end); a 'whole' tier ignores parts. `encoded`, when
 *   given, is the verified codec object whose last bytes are `part.data` (a whole block stored without
 *   compression): a tier that keeps codec objects may store it as is, saving a copy and a checksum pass. The
 *   tier may keep references to `part.data` and `encoded` instead of copies: nobody modifies them. It may
 *   decline (full, too large); it never rejects.
 * - `drop` forgets every copy of block `key` it holds (one failed verification or answered out of contract);
 *   it never rejects.
 */
export interface FillableTier {
  readonly fillWith: 'whole' | 'stripes';
  fill(key: string, plainBytes: number, part: BlockPart, encoded: Buffer | undefined): Promise<void>;
  drop(key: string, plainBytes: number): Promise<void>;
}

export function canFill(tier: BlockTier): tier is BlockTier & FillableTier {
  return typeof (tier as Partial<FillableTier>).fill === 'function' && typeof (tier as Partial<FillableTier>).drop === 'function';
}

/** Whether `part` is all of a block of `plainBytes`. */
export function isWhole(part: BlockPart, plainBytes: number): boolean {
  return part.start === 0 && part.data.length === plainBytes;
}
