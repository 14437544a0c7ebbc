/**
 * The block reader: one read path over an ordered list of tiers (tier.ts), fastest first,
 *
 *   tiers:  memory -> local disk -> (cache group) -> buckets: source.order(slice)[0] -> [1] -> ...
 *           plain     plain          encoded         encoded   (region/placement.ts decides; without a
 *           (this machine's tiers come first)                   source, the one `store`)
 *
 * asking each in turn what it holds of a block; the first good answer is returned and fills the fillable
 * tiers before it on its way back. Concurrent misses of one block are fetched once (single flight). What a
 * tier answers is checked before use: encoded answers (buckets, later the cache group) are verified with the
 * codec (CRC32C of the header, the stripe table and every stripe, or of the whole block, and the block the
 * header names against the key asked for), plain answers must cover what was asked. A copy that fails is
 * treated as missing: counted (`corrupt`, for encoded copies), dropped from the tier when it is fillable,
 * reported (`onBadCopy`, or the source's for a bucket), and the next tier is asked. A read fails only when no
 * bucket gave a good copy, with one message that says what each bucket did, in the order they were asked
 * (without a source, the one bucket is called 'bucket'):
 *
 *   no good copy of chunks/0/0/42_1_65536: a: missing, b: corrupt (stripe 2 checksum mismatch), c: unreachable (why)
 *
 * NoGoodCopyError (a CorruptBlockError) when every bucket answered and none had it intact: the block is lost or
 * damaged everywhere. FsError EIO when some bucket could not be asked, with the first such failure as its
 * cause: the block may be fine there. The tiers in front never decide the error: a cache group that is down or
 * serves garbage costs a fall-through, nothing else.
 *
 * Whole block (readBlock; reads larger than rangeReadBytesMax, compressed volumes, read-ahead):
 *
 *   flight(key): plain tiers whole -> encoded tiers whole -> buckets GET whole, decode
 *                -> fill every fillable tier before the one that answered (awaited)
 *
 * Small read (readRange: at most rangeReadBytesMax bytes of an uncompressed block that no one is fetching
 * whole; else it joins or starts the whole-block flight):
 *
 *   plain tiers, no flight: memory (the whole block, else its stripes) -> disk (header + the needed stripes)
 *   -> flight(key#stripes): encoded tiers, then buckets: GET the stripes (at least rangeFetchBytesMin of
 *      them, forward from the read) and, at the same time, the header unless its verified stripe table is
 *      remembered (at most STRIPE_TABLES_MAX tables, per tier and block, least recently used dropped)
 *      -> verify each stripe -> fill the 'stripes' tiers before it (memory), awaited
 *   -> the 'whole' tiers (disk) are filled in the background with the whole block, fetched from the encoded
 *      tiers and buckets, at most CACHE_FILLS_IN_FLIGHT_MAX blocks at once (else not at all): a working set
 *      read at random still ends up on local disk, without the reads waiting for whole blocks.
 *
 * A span of stripes that would be the whole block anyway is read whole (one GET rather than two); a block
 * whose header says it is whole (codec version 1 or 4: compressed, or written before stripes) is read whole and
 * remembered as such.
 * Fills are awaited because the disk cache's put may wait for room in its write queue: a read that outruns
 * the local disk is slowed to its write rate, so that what it fetched stays cached for the next pass.
 *
 * Counters (`stats`, named as ChunkStats in chunk/store.ts): hits of the tiers named 'memory' (whole blocks:
 * memHits; stripes: stripeHits) and 'disk' (diskHits); from the buckets, whole blocks (blocksRead, bytesRead)
 * and ranged fetches (rangesRead, rangeBytesRead, headers included); bad copies (corrupt); background fills
 * (cacheFills). `tierStats(name)` gives any front tier's hits and failures (the cache group's, later).
 */

import type { BlockPart, BlockReads, ReadStats } from '../chunk/store.js';
import { BLOCK_STRIPE_BYTES, decodeBlock, decodeBlockHeader, decodeStripes, peekBlockWhole, stripeSpan, type Compression, type StripedHeader, type StripeSpan } from '../chunk/codec.js';
import { CorruptBlockError, FsError, NoGoodCopyError, noGoodCopyMessage } from '../errors.js';
import type { ObjectStore } from '../object/store.js';
import { SingleFlight } from '../util/singleflight.js';
import type { CacheStats } from './cache.js';
import type { DiskCacheStats } from './disk.js';
import { BucketTier } from './tier-bucket.js';
import { isStriped } from './tier-cache.js';
import { canFill, isWhole, type BlockRange, type BlockTier, type EncodedTier, type FillableTier, type PlainTier } from './tier.js';

/** A region's bucket, as a BlockSource names it. */
export interface SourceStore {
  region: string;
  store: ObjectStore;
}

/** Where to read a slice's blocks when the volume has several buckets (region/ decides, the reader follows). */
export interface BlockSource {
  /** The buckets to try for slice `id` whose home region is `home` (undefined: the primary), best first. */
  order(id: number, home: string | undefined, signal?: AbortSignal): Promise<readonly SourceStore[]>;
  /** Block `key` came from order()[position] (position > 0: an earlier bucket lacked it or failed). */
  onRead?(region: string, key: string, position: number, bytes: number): void;
  /** The copy of `key` in `region` was missing, corrupt or unreachable; the next bucket is tried. */
  onBadCopy?(region: string, key: string, err: unknown): void;
  /** Closes the buckets it opened besides the ChunkStore's own `store`. */
  close?(): Promise<void>;
}

export interface BlockReaderOptions {
  /** The tiers asked before the buckets, fastest first (memory, local disk, ...); closed with the reader. */
  tiers: readonly BlockTier[];
  /** This client's bucket: with no `source`, the only bucket, and its errors reach callers unchanged. */
  store: ObjectStore;
  /** The buckets for each slice, in read order (multi-region volumes); closed with the reader. */
  source?: BlockSource | undefined;
  blockBytes: number;
  /** The volume's compression: only uncompressed volumes read stripes (compressed blocks are whole). */
  compression: Compression;
  /**
   * Reads of at most this many bytes of one uncached block fetch only the stripes they need; default a
   * quarter of `blockBytes`; 0: every read fetches whole blocks.
   */
  rangeReadBytesMax?: number | undefined;
  /** A ranged fetch covers at least this many bytes (whole stripes, forward from the read); default one stripe. */
  rangeFetchBytesMin?: number | undefined;
  /** A tier in `tiers` could not answer or answered a bad copy (dropped from it); the next tier was asked. */
  onBadCopy?: ((tier: string, key: string, err: unknown) => void) | undefined;
  /**
   * A read was served: by the front tier named `tier` (region undefined), or by the bucket of `region` (tier
   * BUCKET_TIER; region BUCKET_TIER too for the one bucket of a reader without a source), with the plain
   * bytes it gave. For metrics; must not throw.
   */
  onServed?: ((tier: string, region: string | undefined, bytes: number) => void) | undefined;
}

/** What the caches of a reader hold and did: the stats of the tiers named 'memory' and 'disk'. */
export interface ChunkCacheStats {
  memory: CacheStats | undefined;
  /** DiskCacheStats's extra counters (stored, dropped, ...) are there when the disk tier is a DiskBlockCache. */
  disk: (CacheStats & Partial<DiskCacheStats>) | undefined;
}

/** A front tier's counters. */
export interface TierCounters {
  /** Whole blocks, and parts of blocks, it served. */
  hits: number;
  partHits: number;
  /** Answers it could not give (unreachable) or that failed verification. */
  failures: number;
}

/** The tier names whose hits ChunkStats reports as memHits/stripeHits and diskHits. */
export const MEMORY_TIER = 'memory';
export const DISK_TIER = 'disk';
/** How errors name the one bucket of a reader without a source. */
export const BUCKET_TIER = 'bucket';
/** Verified stripe tables remembered for ranged reads (at most 4 KiB each, 280 bytes for a 4 MiB block). */
export const STRIPE_TABLES_MAX = 4096;
/** Background whole-block fetches into 'whole' tiers (the disk cache) after ranged reads. */
export const CACHE_FILLS_IN_FLIGHT_MAX = 2;

/** A good answer: plain bytes of the block, the verified object they are the tail of (if any), which tier. */
interface Found {
  part: BlockPart;
  encoded: Buffer | undefined;
  /** Index in `tiers`, or tiers.length + position in the bucket order. */
  at: number;
}

function ignore(): undefined {
  return undefined;
}

/** What a source's onBadCopy is told of a bucket that does not hold the block. */
function missing(key: string): CorruptBlockError {
  return new CorruptBlockError(key, 'object missing from the bucket');
}

/** Whether a plain answer covers [range.from, range.to) within a block of `plainBytes`. */
function covers(part: BlockPart, range: BlockRange, plainBytes: number): boolean {
  const end = part.start + part.data.length;
  return part.start >= 0 && part.start <= range.from && range.to <= end && end <= plainBytes;
}

export class BlockReader implements BlockReads {
  readonly source: BlockSource | undefined;
  readonly rangeReadBytesMax: number;
  private readonly tiers: readonly BlockTier[];
  /** tiers[i] when it can be filled. */
  private readonly fillable: ReadonlyArray<(BlockTier & FillableTier) | undefined>;
  /** tiers[0, local) are plain (this machine's: memory, disk), the rest encoded. */
  private readonly local: number;
  /** The fillable tiers that take whole blocks only. */
  private readonly wholeTiers: ReadonlyArray<BlockTier & FillableTier>;
  private readonly counters: TierCounters[];
  private readonly memory: number;
  private readonly disk: number;
  private readonly bucket: BucketTier;
  /** The read order without a source: the one bucket, named as in errors. */
  private readonly own: readonly SourceStore[];
  private readonly buckets = new Map<string, BucketTier>();
  private readonly ranged: boolean;
  private readonly rangeFetchStripesMin: number;
  private readonly onBadCopy: ((tier: string, key: string, err: unknown) => void) | undefined;
  private readonly onServed: ((tier: string, region: string | undefined, bytes: number) => void) | undefined;
  private readonly flights = new SingleFlight<string, Buffer>();
  private readonly rangeFlights = new SingleFlight<string, BlockPart>();
  /** `tier \0 key` -> the block's verified stripe table, or 'whole' for an unstriped block; least recent first. */
  private readonly tables = new Map<string, StripedHeader | 'whole'>();
  private readonly fills = new Map<string, Promise<void>>();
  private blocksRead = 0;
  private bytesRead = 0;
  private corrupt = 0;
  private rangesRead = 0;
  private rangeBytesRead = 0;
  private cacheFills = 0;
  private closing: Promise<void> | undefined;

  constructor(options: BlockReaderOptions) {
    this.tiers = [...options.tiers];
    const names = new Set(this.tiers.map((t) => t.name));
    if (names.size !== this.tiers.length) throw new Error(`assertion failed: tier names must be unique, got ${this.tiers.map((t) => t.name).join(', ')}`);
    this.local = this.tiers.findIndex((t) => t.form !== 'plain');
    if (this.local < 0) this.local = this.tiers.length;
    if (this.tiers.slice(this.local).some((t) => t.form === 'plain')) {
      throw new Error(`assertion failed: plain tiers (this machine's) come before encoded ones, got ${this.tiers.map((t) => `${t.name} (${t.form})`).join(', ')}`);
    }
    this.fillable = this.tiers.map((t) => (canFill(t) ? t : undefined));
    this.wholeTiers = this.fillable.filter((t): t is BlockTier & FillableTier => t?.fillWith === 'whole');
    this.counters = this.tiers.map(() => ({ hits: 0, partHits: 0, failures: 0 }));
    this.memory = this.tiers.findIndex((t) => t.name === MEMORY_TIER);
    this.disk = this.tiers.findIndex((t) => t.name === DISK_TIER);
    this.bucket = new BucketTier(BUCKET_TIER, options.store);
    this.own = [{ region: BUCKET_TIER, store: options.store }];
    this.source = options.source;
    this.ranged = options.compression === 'none';
    this.rangeReadBytesMax = options.rangeReadBytesMax ?? Math.floor(options.blockBytes / 4);
    const min = options.rangeFetchBytesMin ?? BLOCK_STRIPE_BYTES;
    for (const [name, v] of [['rangeReadBytesMax', this.rangeReadBytesMax], ['rangeFetchBytesMin', min]] as const) {
      if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be an integer >= 0, got ${v}`);
    }
    this.rangeFetchStripesMin = Math.max(1, Math.ceil(min / BLOCK_STRIPE_BYTES));
    this.onBadCopy = options.onBadCopy;
    this.onServed = options.onServed;
  }

  get stats(): ReadStats {
    const mem = this.counters[this.memory];
    const disk = this.counters[this.disk];
    return {
      blocksRead: this.blocksRead,
      bytesRead: this.bytesRead,
      corrupt: this.corrupt,
      memHits: mem?.hits ?? 0,
      diskHits: disk === undefined ? 0 : disk.hits + disk.partHits,
      rangesRead: this.rangesRead,
      rangeBytesRead: this.rangeBytesRead,
      stripeHits: mem?.partHits ?? 0,
      cacheFills: this.cacheFills,
    };
  }

  /** The front tier named `name` (tools that act on a cache directly: warm-up's check and evict). */
  tier(name: string): BlockTier | undefined {
    return this.tiers.find((t) => t.name === name);
  }

  /** The counters of the front tier named `name` (a copy), or undefined. */
  tierStats(name: string): TierCounters | undefined {
    const i = this.tiers.findIndex((t) => t.name === name);
    return i < 0 ? undefined : { ...this.counters[i]! };
  }

  cacheStats(): ChunkCacheStats {
    return { memory: this.tiers[this.memory]?.stats?.(), disk: this.tiers[this.disk]?.stats?.() };
  }

  readBlock(key: string, plainBytes: number, slice: number, home: string | undefined, signal: AbortSignal | undefined): Promise<Buffer> {
    return this.flights.do(key, () => this.loadWhole(key, plainBytes, slice, home, signal));
  }

  private async loadWhole(key: string, plainBytes: number, slice: number, home: string | undefined, signal: AbortSignal | undefined): Promise<Buffer> {
    const local = await this.askLocal(key, plainBytes, undefined, signal);
    if (local !== undefined) return local.data;
    const found = await this.walk(key, plainBytes, undefined, undefined, slice, home, signal);
    this.countBucketWhole(found, plainBytes);
    if (found.at > 0) await this.fillBefore(found.at, key, plainBytes, found.part, found.encoded);
    return found.part.data;
  }

  async readRange(key: string, plainBytes: number, from: number, to: number, slice: number, home: string | undefined, signal: AbortSignal | undefined): Promise<BlockPart> {
    const n = to - from;
    // A whole-block fetch in flight (read-ahead) is joined rather than raced.
    if (n > this.rangeReadBytesMax || n === plainBytes || !this.ranged || this.flights.has(key)) return { data: await this.readBlock(key, plainBytes, slice, home, signal), start: 0 };
    const range: BlockRange = { from, to, head: false };
    // The tiers of this machine (memory, disk) answer at once: no flight, no span.
    const local = await this.askLocal(key, plainBytes, range, signal);
    if (local !== undefined) return local;
    const need = stripeSpan(plainBytes, from, to);
    const span = stripeSpan(plainBytes, need.plainStart, Math.min(plainBytes, Math.max(need.end, need.first + this.rangeFetchStripesMin) * BLOCK_STRIPE_BYTES));
    // Two GETs (header and stripes) for what one whole GET would bring: read the block whole.
    if (span.first === 0 && span.plainEnd === plainBytes) return { data: await this.readBlock(key, plainBytes, slice, home, signal), start: 0 };
    const part = await this.rangeFlights.do(`${key}#${span.first}-${span.end}`, async () => {
      const found = await this.walk(key, plainBytes, range, span, slice, home, signal);
      this.countBucketWhole(found, plainBytes);
      // A whole block here is mostly an unstriped one (version 1 or 4): the disk gets it re-encoded (striped)
      // rather than as it came, so that small reads of it are ranged there too.
      await this.fillBefore(found.at, key, plainBytes, found.part, undefined);
      return found.part;
    });
    if (!isWhole(part, plainBytes)) this.fillInBackground(key, plainBytes, slice, home);
    return part;
  }

  /**
   * The first good answer of this machine's tiers (counted), which then fills the fillable ones before it;
   * undefined when none holds the block. A tier that fails or answers out of contract is reported and skipped.
   */
  private async askLocal(key: string, plainBytes: number, range: BlockRange | undefined, signal: AbortSignal | undefined): Promise<BlockPart | undefined> {
    for (let i = 0; i < this.local; i++) {
      const t = this.tiers[i] as PlainTier;
      let part: BlockPart | undefined;
      try {
        part = await t.get(key, plainBytes, range, signal);
        if (part === undefined) continue;
        if (range === undefined ? !isWhole(part, plainBytes) : !covers(part, range, plainBytes)) {
          const end = part.start + part.data.length;
          throw new CorruptBlockError(key, `tier ${t.name} answered plain bytes ${part.start}..${end} for ${range === undefined ? `all ${plainBytes}` : `${range.from}..${range.to}`}`);
        }
      } catch (err) {
        if (signal?.aborted === true) throw err;
        await this.frontFailed(i, key, plainBytes, err);
        continue;
      }
      this.countHit(i, part, plainBytes);
      if (i > 0) await this.fillBefore(i, key, plainBytes, part, undefined);
      return part;
    }
    return undefined;
  }

  /**
   * The first good answer of the encoded tiers in front (the cache group), then of the buckets. `range`
   * undefined: the whole block; else the plain range wanted, and `span` the stripes to ask for.
   */
  private async walk(
    key: string,
    plainBytes: number,
    range: BlockRange | undefined,
    span: StripeSpan | undefined,
    slice: number,
    home: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Found> {
    for (let i = this.local; i < this.tiers.length; i++) {
      let found: Found | undefined;
      try {
        found = await this.askEncoded(this.tiers[i] as EncodedTier, i, key, plainBytes, range, span, signal);
      } catch (err) {
        if (signal?.aborted === true) throw err;
        await this.frontFailed(i, key, plainBytes, err);
        continue;
      }
      if (found !== undefined) {
        this.countHit(i, found.part, plainBytes);
        return found;
      }
    }
    return this.fromBuckets(key, plainBytes, range, span, slice, home, signal);
  }

  /**
   * Asks an encoded tier (`at`: its place, for Found) and verifies the answer: the plain bytes, or undefined
   * when it does not hold the block; rejects when it cannot answer or its copy is bad (counted in `corrupt`).
   */
  private async askEncoded(
    t: EncodedTier,
    at: number,
    key: string,
    plainBytes: number,
    range: BlockRange | undefined,
    span: StripeSpan | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Found | undefined> {
    const tableKey = range === undefined || span === undefined ? '' : `${t.name}\0${key}`;
    const known = tableKey === '' ? 'whole' : this.tables.get(tableKey);
    const ask: BlockRange | undefined = known === 'whole' || span === undefined ? undefined : { from: span.plainStart, to: span.plainEnd, head: known === undefined };
    const got = await t.get(key, plainBytes, ask, signal);
    if (got === undefined) return undefined;
    if (got.offset === 0) {
      let plain: Buffer;
      try {
        plain = decodeBlock(got.data, key, plainBytes);
      } catch (err) {
        this.corrupt++;
        throw err;
      }
      if (tableKey !== '' && known === undefined && peekBlockWhole(got.data)) this.remember(tableKey, 'whole');
      return { part: { data: plain, start: 0 }, encoded: got.data, at };
    }
    if (ask === undefined || span === undefined || got.offset !== span.offset) {
      this.corrupt++;
      throw new CorruptBlockError(key, `tier ${t.name} answered object bytes from ${got.offset}, expected ${ask === undefined || span === undefined ? 'the whole object' : span.offset}`);
    }
    let header = known;
    if (header === undefined) {
      let parsed: StripedHeader | undefined;
      try {
        if (got.head === undefined) throw new CorruptBlockError(key, `tier ${t.name} answered no header`);
        parsed = decodeBlockHeader(got.head, key, plainBytes);
      } catch (err) {
        this.corrupt++;
        throw err;
      }
      if (parsed === undefined) {
        // Version 1 or 4: not striped, so the stripes came from the wrong place. Read it whole from this tier.
        this.remember(tableKey, 'whole');
        return this.askEncoded(t, at, key, plainBytes, range, span, signal);
      }
      header = { plainBytes: parsed.plainBytes, table: Buffer.from(parsed.table) };
      this.remember(tableKey, header);
    }
    if (header === 'whole') throw new Error('assertion failed: a whole-block table for a ranged answer');
    if (at >= this.tiers.length) {
      this.rangesRead++;
      this.rangeBytesRead += got.data.length + (known === undefined ? (got.head?.length ?? 0) : 0);
    }
    try {
      return { part: { data: decodeStripes(header, span, got.data, key), start: span.plainStart }, encoded: undefined, at };
    } catch (err) {
      this.corrupt++;
      // The next read asks for the header again, in case this copy was replaced by a good one.
      this.tables.delete(tableKey);
      throw err;
    }
  }

  /**
   * The first good copy along the buckets (the source's order, else the one bucket); fails naming what each
   * bucket said (see the header).
   */
  private async fromBuckets(
    key: string,
    plainBytes: number,
    range: BlockRange | undefined,
    span: StripeSpan | undefined,
    slice: number,
    home: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Found> {
    const first = this.tiers.length;
    const source = this.source;
    const order = source === undefined ? this.own : await source.order(slice, home, signal);
    // What each bucket said, built only once a bucket has failed.
    let said: string[] | undefined;
    let unreachable: unknown;
    let corrupt: unknown;
    for (let position = 0; position < order.length; position++) {
      const s = order[position]!;
      let found: Found | undefined;
      try {
        found = await this.askEncoded(source === undefined ? this.bucket : this.bucketTier(s), first + position, key, plainBytes, range, span, signal);
      } catch (err) {
        if (signal?.aborted === true) throw err;
        if (err instanceof CorruptBlockError) {
          corrupt ??= err;
          (said ??= []).push(`${s.region}: corrupt (${err.detail})`);
        } else {
          unreachable ??= err;
          (said ??= []).push(`${s.region}: unreachable (${err instanceof Error ? err.message : String(err)})`);
        }
        source?.onBadCopy?.(s.region, key, err);
        continue;
      }
      if (found === undefined) {
        (said ??= []).push(`${s.region}: missing`);
        source?.onBadCopy?.(s.region, key, missing(key));
        continue;
      }
      source?.onRead?.(s.region, key, position, found.part.data.length);
      this.onServed?.(BUCKET_TIER, s.region, found.part.data.length);
      return found;
    }
    const detail = (said ?? ['no bucket to ask']).join(', ');
    // Every bucket answered and none had it intact: the block is lost or damaged everywhere (fsck's finding).
    // Otherwise some bucket could not be asked: an I/O error that may pass.
    if (unreachable === undefined) throw new NoGoodCopyError(key, detail, { cause: corrupt });
    throw new FsError('EIO', noGoodCopyMessage(key, detail), { cause: unreachable });
  }

  /** The tier of a source's bucket (made once per region and store). */
  private bucketTier(s: SourceStore): BucketTier {
    let t = this.buckets.get(s.region);
    if (t === undefined || t.store !== s.store) {
      t = new BucketTier(s.region, s.store);
      this.buckets.set(s.region, t);
    }
    return t;
  }

  private countHit(i: number, part: BlockPart, plainBytes: number): void {
    const c = this.counters[i]!;
    if (isWhole(part, plainBytes)) c.hits++;
    else c.partHits++;
    this.onServed?.(this.tiers[i]!.name, undefined, part.data.length);
  }

  /** Counts a whole block that came from a bucket. */
  private countBucketWhole(found: Found, plainBytes: number): void {
    if (found.at < this.tiers.length || !isWhole(found.part, plainBytes)) return;
    this.blocksRead++;
    this.bytesRead += plainBytes;
  }

  /** Tier i failed to answer or answered a bad copy: counted, reported, and a bad copy dropped from it. */
  private async frontFailed(i: number, key: string, plainBytes: number, err: unknown): Promise<void> {
    this.counters[i]!.failures++;
    const t = this.tiers[i]!;
    if (err instanceof CorruptBlockError) {
      await this.fillable[i]?.drop(key, plainBytes);
      try {
        t.answeredBad?.(key, err);
      } catch {
        // A failing listener must not fail the read.
      }
    }
    try {
      this.onBadCopy?.(t.name, key, err);
    } catch {
      // A failing reporter must not fail the read.
    }
  }

  /**
   * Fills the fillable tiers before tier `at` with what it answered: whole blocks go to every one of them (with
   * the verified object when there is one), parts only to 'stripes' tiers, and only parts cut at stripes.
   */
  private async fillBefore(at: number, key: string, plainBytes: number, part: BlockPart, encoded: Buffer | undefined): Promise<void> {
    const end = Math.min(at, this.tiers.length);
    const whole = isWhole(part, plainBytes);
    if (!whole && !isStriped(part, plainBytes)) return;
    for (let i = 0; i < end; i++) {
      const t = this.fillable[i];
      if (t !== undefined && (whole || t.fillWith === 'stripes')) await t.fill(key, plainBytes, part, encoded);
    }
  }

  /** Fetches a whole block into the 'whole' tiers in the background, if there are any and a slot is free. */
  private fillInBackground(key: string, plainBytes: number, slice: number, home: string | undefined): void {
    if (this.wholeTiers.length === 0 || this.fills.has(key) || this.fills.size >= CACHE_FILLS_IN_FLIGHT_MAX || this.closing !== undefined) return;
    const p = this.fillWhole(key, plainBytes, slice, home)
      // A failed fill costs nothing but the fill: the next read fetches what it needs.
      .catch(ignore)
      .finally(() => this.fills.delete(key));
    this.fills.set(key, p);
  }

  private async fillWhole(key: string, plainBytes: number, slice: number, home: string | undefined): Promise<void> {
    const found = await this.walk(key, plainBytes, undefined, undefined, slice, home, undefined);
    for (const t of this.wholeTiers) await t.fill(key, plainBytes, found.part, found.encoded);
    this.cacheFills++;
  }

  /** Write-through: a block this client wrote goes to the tiers that keep whole blocks (the disk cache). */
  async cacheWritten(key: string, plain: Buffer): Promise<void> {
    for (const t of this.wholeTiers) await t.fill(key, plain.length, { data: plain, start: 0 }, undefined);
  }

  private remember(tableKey: string, entry: StripedHeader | 'whole'): void {
    this.tables.delete(tableKey);
    this.tables.set(tableKey, entry);
    if (this.tables.size > STRIPE_TABLES_MAX) this.tables.delete(this.tables.keys().next().value!);
  }

  /** Idempotent: waits for the background fills, then closes the tiers and the source. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      while (this.fills.size > 0) await Promise.all(this.fills.values());
      let failed: unknown;
      for (const t of this.tiers) {
        await t.close?.().catch((err: unknown) => {
          failed ??= err;
        });
      }
      await this.source?.close?.();
      if (failed !== undefined) throw failed;
    })();
    return this.closing;
  }
}
