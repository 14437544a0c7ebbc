/**
 * A BlockCache (cache.ts) as a plain, fillable tier (tier.ts): the memory cache and the local disk cache.
 *
 *   get whole        cache.get(key), of the block's length
 *   get [from, to)   cache.getRange(key, ...) when the cache can (RangedBlockCache: the disk cache reads and
 *                    verifies only the header and the stripes it needs); else cache.get(key) whole, then, for a
 *                    'stripes' tier, the stripe entries key#i that cover the range, all of them or none
 *   fill whole       cache.putEncoded(key, object) when given the verified object the block is the tail of and
 *                    the cache keeps codec objects (EncodedBlockCache: the disk cache, no copy, no checksum
 *                    pass); else cache.put(key, plain)
 *   fill a part      'stripes': one entry per stripe, key#i (a multi-stripe part is copied apart, see fill);
 *                    'whole': ignored (the reader fills it with the whole block in the background)
 *   drop             the block's entry and its stripe entries
 *
 * The memory cache is the 'stripes' tier and the disk cache the 'whole' one: stripes keep a random small-read
 * working set in memory without whole blocks, while the disk keeps whole blocks, which a later pass reads in one
 * piece (and its files carry their own stripe table, so it serves small reads by range anyway).
 */

import { BLOCK_STRIPE_BYTES, blockStripes, stripeSpan } from '../chunk/codec.js';
import { canGetRange, canPutEncoded, type BlockCache, type CacheStats, type EncodedBlockCache, type RangedBlockCache } from './cache.js';
import { isWhole, type BlockPart, type BlockRange, type FillableTier, type PlainTier } from './tier.js';

export interface CacheTierOptions {
  /** 'memory', 'disk' (reader.ts reports their hits under these names). */
  name: string;
  cache: BlockCache;
  fillWith: 'whole' | 'stripes';
  /**
   * A cache call that has not answered in this long is given up on (get: rejects, so the reader goes on to the
   * next tier; fill, drop: abandoned), and the tier is bypassed (a miss at once, fills skipped) until every call
   * given up on has answered: a hung or failing disk costs readers one wait, then nothing but its hits, and is
   * used again once it answers. Default: unbounded (the memory cache).
   */
  answerMsMax?: number | undefined;
}

/** The disk tier's answerMsMax (cache/blocks.ts). */
export const DISK_ANSWER_MS_MAX_DEFAULT = 1000;
/** What a fill may take beyond answerMsMax (the disk cache's default putWaitMsMax is 1 s). */
const FILL_SLACK_MS = 2000;

/** The cache key for stripe `i` of block `key` (never a block key: those have no '#'). */
export function stripeKey(key: string, i: number): string {
  return `${key}#${i}`;
}

/** Whether `plain` is a view of the last bytes of `object` (a block stored without compression). */
export function isTailOf(plain: Buffer, object: Buffer): boolean {
  return plain.buffer === object.buffer && plain.byteOffset + plain.length === object.byteOffset + object.length && plain.length < object.length;
}

/** Whether a part of a block of `plainBytes` starts on a stripe boundary and ends on one or at the block's end. */
export function isStriped(part: BlockPart, plainBytes: number): boolean {
  const end = part.start + part.data.length;
  return part.start % BLOCK_STRIPE_BYTES === 0 && (end % BLOCK_STRIPE_BYTES === 0 || end === plainBytes) && end <= plainBytes && part.data.length > 0;
}

export class CacheTier implements PlainTier, FillableTier {
  readonly form = 'plain';
  readonly name: string;
  readonly fillWith: 'whole' | 'stripes';
  readonly cache: BlockCache;
  /** The cache's optional capabilities, found once. */
  private readonly ranged: RangedBlockCache | undefined;
  private readonly encoded: EncodedBlockCache | undefined;
  private readonly answerMsMax: number | undefined;
  /** Calls given up on that have not answered yet: while any, the tier is bypassed. */
  private hung = 0;
  /** Calls given up on, in all. */
  timeouts = 0;

  constructor(options: CacheTierOptions) {
    this.name = options.name;
    this.cache = options.cache;
    this.fillWith = options.fillWith;
    this.ranged = canGetRange(options.cache) ? options.cache : undefined;
    this.encoded = canPutEncoded(options.cache) ? options.cache : undefined;
    this.answerMsMax = options.answerMsMax;
  }

  /** Whether the tier is bypassed now (a call it was given up on has not answered yet). */
  get bypassed(): boolean {
    return this.hung > 0;
  }

  /** `op`, or a rejection once answerMsMax has passed (the op then counts as hung until it settles). */
  private async bounded<T>(op: () => Promise<T>, slack = 0): Promise<T> {
    if (this.answerMsMax === undefined) return op();
    const ms = this.answerMsMax + slack;
    const running = op();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), ms);
    });
    try {
      const first = await Promise.race([running, late]);
      if (first !== 'late') return first;
    } finally {
      clearTimeout(timer);
    }
    this.timeouts++;
    this.hung++;
    const settled = (): void => {
      this.hung--;
    };
    running.then(settled, settled);
    throw new Error(`the ${this.name} cache did not answer within ${ms} ms (bypassed until it does)`);
  }

  async get(key: string, plainBytes: number, range: BlockRange | undefined): Promise<BlockPart | undefined> {
    if (this.hung > 0) return undefined;
    return this.bounded(() => this.getNow(key, plainBytes, range));
  }

  private async getNow(key: string, plainBytes: number, range: BlockRange | undefined): Promise<BlockPart | undefined> {
    if (range !== undefined && this.ranged !== undefined) return this.ranged.getRange(key, plainBytes, range.from, range.to);
    const whole = await this.cache.get(key);
    if (whole !== undefined && whole.length === plainBytes) return { data: whole, start: 0 };
    if (range === undefined || this.fillWith !== 'stripes') return undefined;
    return this.stripes(key, plainBytes, range);
  }

  /** The stripes covering `range` from their entries, when every one of them is there. */
  private async stripes(key: string, plainBytes: number, range: BlockRange): Promise<BlockPart | undefined> {
    const span = stripeSpan(plainBytes, range.from, range.to);
    const parts: Buffer[] = [];
    for (let i = span.first; i < span.end; i++) {
      const s = await this.cache.get(stripeKey(key, i));
      if (s === undefined || s.length !== Math.min(BLOCK_STRIPE_BYTES, span.plainEnd - i * BLOCK_STRIPE_BYTES)) return undefined;
      parts.push(s);
    }
    return { data: parts.length === 1 ? parts[0]! : Buffer.concat(parts), start: span.plainStart };
  }

  async fill(key: string, plainBytes: number, part: BlockPart, encoded: Buffer | undefined): Promise<void> {
    if (this.hung > 0) return;
    // A disk cache's put may wait for room in its write queue (its back-pressure, bounded by its own putWaitMsMax):
    // fills get that much longer before they count as hung.
    await this.bounded(() => this.fillNow(key, plainBytes, part, encoded), FILL_SLACK_MS).catch(() => undefined);
  }

  private async fillNow(key: string, plainBytes: number, part: BlockPart, encoded: Buffer | undefined): Promise<void> {
    if (isWhole(part, plainBytes)) {
      if (encoded !== undefined && this.encoded !== undefined && isTailOf(part.data, encoded)) await this.encoded.putEncoded(key, encoded, plainBytes);
      else await this.cache.put(key, part.data);
      return;
    }
    if (this.fillWith !== 'stripes' || !isStriped(part, plainBytes)) return;
    // Stripes of a multi-stripe part are copied apart: a view kept in a cache that shares buffers would hold
    // the whole part in memory while it is counted as one stripe.
    const apart = part.data.length > BLOCK_STRIPE_BYTES;
    for (let at = 0; at < part.data.length; at += BLOCK_STRIPE_BYTES) {
      const stripe = part.data.subarray(at, Math.min(part.data.length, at + BLOCK_STRIPE_BYTES));
      await this.cache.put(stripeKey(key, (part.start + at) / BLOCK_STRIPE_BYTES), apart ? Buffer.from(stripe) : stripe);
    }
  }

  async drop(key: string, plainBytes: number): Promise<void> {
    await this.bounded(() => this.dropNow(key, plainBytes)).catch(() => undefined);
  }

  private async dropNow(key: string, plainBytes: number): Promise<void> {
    await this.cache.delete(key);
    if (this.fillWith !== 'stripes') return;
    for (let i = 0; i < blockStripes(plainBytes); i++) await this.cache.delete(stripeKey(key, i));
  }

  stats(): CacheStats {
    return this.cache.stats();
  }

  close(): Promise<void> {
    return this.cache.close();
  }
}
