/**
 * Blocks of slices in a bucket, through the caches. The read order for one block is
 *
 *   memory cache -> disk cache -> bucket (decoded and verified) -> fill both caches
 *
 * with concurrent misses of one block fetched once. A copy that fails verification is never returned:
 * CorruptBlockError reaches the caller (and the counters), and the next read tries the store again.
 *
 * With several regions (DESIGN §6) a `BlockSource` (region/placement.ts) names the buckets to try for a
 * slice, best first; chunk/ only follows that order:
 *
 *   memory -> disk -> source.order(slice)[0] -> [1] -> ... -> fill both caches
 *
 * A copy that is missing, fails verification or cannot be fetched (the bucket is down past its retries) falls
 * through to the next bucket; the read fails only when no bucket gave a good copy, with an error naming what
 * each bucket said. Without a source (one region) the path is the one above, unchanged.
 *
 * Small reads of uncompressed blocks fetch only the stripes they need (chunk/codec.ts, version 2): a read of
 * at most `rangeReadBytesMax` bytes of a block that is in neither cache, and that no one is fetching whole,
 *
 *   memory (whole block, then each stripe) -> disk (whole block) -> bucket: GET the stripes, plus the header
 *   unless its verified stripe table is remembered -> verify each stripe -> memory cache, one entry a stripe
 *
 * falling through the buckets of a source like a whole block. Read-ahead and larger reads fetch whole blocks
 * (so sequential reads cost what they did); a version 1 block (compressed, or written before version 2) is
 * found out from its header and read whole. Stripes go to the memory cache only: the disk cache holds whole
 * blocks, so with a disk cache a ranged read also fetches its whole block into the caches in the background
 * (at most CACHE_FILLS_IN_FLIGHT_MAX at once, else not at all): a working set read at random still ends up
 * on local disk, without the reads waiting for whole blocks.
 *
 * Slices are cut into blocks relative to the slice's own start, so full blocks can be uploaded before the
 * slice's final size is known (the key names the block's length, not the slice's):
 *
 *   slice  [ block 0: blockBytes ][ block 1: blockBytes ][ block 2: rest ]
 */

import { CorruptBlockError, FsError } from '../errors.js';
import { canGetRange, canPutEncoded, type BlockCache, type CacheStats } from '../cache/cache.js';
import type { DiskCacheStats } from '../cache/disk.js';
import {
  BLOCK_STRIPE_BYTES,
  blockFrameBytes,
  blockHeaderBytes,
  decodeBlock,
  decodeBlockHeader,
  decodeStripes,
  encodeBlock,
  encodeBlockFramed,
  stripeSpan,
  type Compression,
  type StripeSpan,
  type StripedHeader,
} from './codec.js';
import { blockKey } from './keys.js';
import type { GetOptions, ObjectStore } from '../object/store.js';
import { ObjectNotFoundError } from '../object/store.js';
import { SingleFlight } from '../util/singleflight.js';

/** A region's bucket, as a BlockSource names it. */
export interface SourceStore {
  region: string;
  store: ObjectStore;
}

/** Where to read a slice's blocks when the volume has several buckets (region/ decides, chunk/ follows). */
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

export interface ChunkStoreOptions {
  /** This client's bucket: new blocks go here; with no `source`, every read comes from here too. */
  store: ObjectStore;
  /** The region recorded as home of the slices this client writes (multi-region volumes only). */
  home?: string | undefined;
  /** The read order over several buckets (multi-region volumes only). */
  source?: BlockSource | undefined;
  blockBytes: number;
  compression: Compression;
  memCache?: BlockCache | undefined;
  diskCache?: BlockCache | undefined;
  /** Also put written blocks into the disk cache (a reader soon after a writer on this client). */
  cacheWrites?: boolean;
  /**
   * Reads of at most this many bytes of one uncached block fetch only the stripes they need; default a
   * quarter of `blockBytes`; 0: every read fetches whole blocks.
   */
  rangeReadBytesMax?: number;
  /** A ranged fetch covers at least this many bytes (whole stripes, forward from the read); default one stripe. */
  rangeFetchBytesMin?: number;
}

/** Verified stripe tables remembered for ranged reads (at most 4 KiB each, 280 bytes for a 4 MiB block). */
export const STRIPE_TABLES_MAX = 4096;
/** Background whole-block fetches into the disk cache after ranged reads. */
export const CACHE_FILLS_IN_FLIGHT_MAX = 2;

/** Bytes [start, start + data.length) of a block's plain bytes. */
interface Part {
  data: Buffer;
  start: number;
}

export interface ChunkStats {
  blocksRead: number;
  bytesRead: number;
  blocksWritten: number;
  bytesWritten: number;
  corrupt: number;
  memHits: number;
  diskHits: number;
  /** Ranged fetches (stripes of a block) and the object bytes they read, headers included. */
  rangesRead: number;
  rangeBytesRead: number;
  /** Small reads served from stripes in the memory cache. */
  stripeHits: number;
  /** Whole blocks fetched into the disk cache in the background after ranged reads. */
  cacheFills: number;
}

/** What the caches of a ChunkStore hold and did; a disk cache adds its own counters (DiskCacheStats). */
export interface ChunkCacheStats {
  memory: CacheStats | undefined;
  /** DiskCacheStats's extra counters (stored, dropped, ...) are there when the disk cache is a DiskBlockCache. */
  disk: (CacheStats & Partial<DiskCacheStats>) | undefined;
}

export class ChunkStore {
  readonly store: ObjectStore;
  readonly home: string | undefined;
  private readonly source: BlockSource | undefined;
  readonly blockBytes: number;
  readonly compression: Compression;
  private readonly mem: BlockCache | undefined;
  private readonly disk: BlockCache | undefined;
  private readonly cacheWrites: boolean;
  /** Space that putFramed callers reserve in front of a block's plain bytes (blockFrameBytes). */
  readonly frameBytes: number;
  private readonly rangeReadBytesMax: number;
  private readonly rangeFetchStripesMin: number;
  private readonly flights = new SingleFlight<string, Buffer>();
  private readonly rangeFlights = new SingleFlight<string, Part>();
  /** `region \0 key` -> the block's verified stripe table, or 'whole' for a version 1 block; least recent first. */
  private readonly tables = new Map<string, StripedHeader | 'whole'>();
  readonly stats: ChunkStats = {
    blocksRead: 0,
    bytesRead: 0,
    blocksWritten: 0,
    bytesWritten: 0,
    corrupt: 0,
    memHits: 0,
    diskHits: 0,
    rangesRead: 0,
    rangeBytesRead: 0,
    stripeHits: 0,
    cacheFills: 0,
  };
  private readonly fills = new Map<string, Promise<void>>();

  constructor(options: ChunkStoreOptions) {
    this.store = options.store;
    this.home = options.home;
    this.source = options.source;
    this.blockBytes = options.blockBytes;
    this.compression = options.compression;
    this.mem = options.memCache;
    this.disk = options.diskCache;
    this.cacheWrites = options.cacheWrites ?? false;
    this.frameBytes = blockFrameBytes(this.blockBytes);
    this.rangeReadBytesMax = options.rangeReadBytesMax ?? Math.floor(this.blockBytes / 4);
    const min = options.rangeFetchBytesMin ?? BLOCK_STRIPE_BYTES;
    for (const [name, v] of [['rangeReadBytesMax', this.rangeReadBytesMax], ['rangeFetchBytesMin', min]] as const) {
      if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be an integer >= 0, got ${v}`);
    }
    this.rangeFetchStripesMin = Math.max(1, Math.ceil(min / BLOCK_STRIPE_BYTES));
  }

  /** Length of block `index` of a slice of `size` bytes. */
  blockLength(size: number, index: number): number {
    return Math.min(this.blockBytes, size - index * this.blockBytes);
  }

  /** Encodes and stores one block (any block but a slice's last must be exactly blockBytes long). */
  async putBlock(id: number, index: number, plain: Buffer, signal?: AbortSignal): Promise<void> {
    if (plain.length === 0 || plain.length > this.blockBytes) throw new Error(`assertion failed: block of ${plain.length} bytes`);
    const key = blockKey(id, index, plain.length);
    const object = encodeBlock(plain, this.compression);
    await this.store.put(key, object, { signal });
    this.stats.blocksWritten++;
    this.stats.bytesWritten += plain.length;
    if (this.cacheWrites && this.disk !== undefined) await this.disk.put(key, plain);
  }

  /**
   * Stores one block given as [frameBytes of space][plain bytes]; the header is written into that space, so
   * the caller must not reuse `framed` (it may be the stored object).
   */
  async putFramed(id: number, index: number, framed: Buffer, signal?: AbortSignal): Promise<void> {
    const len = framed.length - this.frameBytes;
    if (len <= 0 || len > this.blockBytes) throw new Error(`assertion failed: block of ${len} bytes`);
    const key = blockKey(id, index, len);
    const object = encodeBlockFramed(framed, this.compression, this.frameBytes);
    await this.store.put(key, object, { signal });
    this.stats.blocksWritten++;
    this.stats.bytesWritten += len;
    if (this.cacheWrites && this.disk !== undefined) await this.disk.put(key, Buffer.from(framed.subarray(this.frameBytes)));
  }

  /**
   * The plain bytes of one block of a slice (verified). `size` is the slice's stored size. The returned
   * buffer may be shared with the caches: callers must not modify it.
   */
  readBlock(id: number, size: number, index: number, signal?: AbortSignal, home?: string): Promise<Buffer> {
    const len = this.blockLength(size, index);
    if (len <= 0) throw new Error(`assertion failed: block ${index} of a ${size}-byte slice`);
    const key = blockKey(id, index, len);
    return this.flights.do(key, async () => {
      const cached = await this.cachedBlock(key, len);
      if (cached !== undefined) return cached;
      const got =
        this.source === undefined
          ? await this.fetchObject(this.store, key, len, signal)
          : await this.fetchAny(this.source, id, home, key, signal, (s) => this.fetchObject(s.store, key, len, signal), () => len);
      await this.cacheBlock(key, got.plain, got.object);
      return got.plain;
    });
  }

  /** The whole block from the memory cache. */
  private async memBlock(key: string, len: number): Promise<Buffer | undefined> {
    const m = await this.mem?.get(key);
    if (m !== undefined && m.length === len) {
      this.stats.memHits++;
      return m;
    }
    return undefined;
  }

  /** The whole block from the memory or the disk cache (a disk hit also fills the memory cache). */
  private async cachedBlock(key: string, len: number): Promise<Buffer | undefined> {
    const m = await this.memBlock(key, len);
    if (m !== undefined) return m;
    const d = await this.disk?.get(key);
    if (d !== undefined && d.length === len) {
      this.stats.diskHits++;
      await this.mem?.put(key, d);
      return d;
    }
    return undefined;
  }

  /**
   * Counts a whole block fetched from a bucket and fills both caches with it. The disk cache's put may wait
   * for room in its write queue (DiskBlockCache): a read that outruns the local disk is slowed to the disk's
   * write rate, so that what it fetched stays cached for the next pass.
   */
  private async cacheBlock(key: string, plain: Buffer, object?: Buffer): Promise<void> {
    this.stats.blocksRead++;
    this.stats.bytesRead += plain.length;
    await this.mem?.put(key, plain);
    if (this.disk !== undefined) await this.diskPut(this.disk, key, plain, object);
  }

  /**
   * Puts a block into the disk cache; when `object` is the verified object it was decoded from and `plain` is
   * its tail (no compression), the object itself is handed over, saving the cache a copy and a checksum pass.
   */
  private async diskPut(disk: BlockCache, key: string, plain: Buffer, object: Buffer | undefined): Promise<void> {
    if (object !== undefined && canPutEncoded(disk) && isTailOf(plain, object)) await disk.putEncoded(key, object, plain.length);
    else await disk.put(key, plain);
  }

  /**
   * Plain bytes [from, from + n) of one block, and possibly more around them: from the caches, else a ranged
   * fetch of the stripes that cover them when the read is small (see the header comment), else the whole block.
   */
  private async readPart(id: number, size: number, index: number, from: number, n: number, signal: AbortSignal | undefined, home: string | undefined): Promise<Part> {
    const len = this.blockLength(size, index);
    const key = blockKey(id, index, len);
    // A whole-block fetch in flight (read-ahead) is joined rather than raced.
    if (n > this.rangeReadBytesMax || n === len || this.compression !== 'none' || this.flights.has(key)) {
      return { data: await this.readBlock(id, size, index, signal, home), start: 0 };
    }
    const m = await this.memBlock(key, len);
    if (m !== undefined) return { data: m, start: 0 };
    const need = stripeSpan(len, from, from + n);
    const hit = await this.cachedStripes(key, need);
    if (hit !== undefined) return hit;
    if (this.disk !== undefined) {
      let d: Part | undefined;
      if (canGetRange(this.disk)) {
        d = await this.disk.getRange(key, len, from, from + n);
      } else {
        const b = await this.disk.get(key);
        if (b !== undefined && b.length === len) d = { data: b, start: 0 };
      }
      if (d !== undefined && d.start <= from && from + n <= d.start + d.data.length && d.start + d.data.length <= len) {
        this.stats.diskHits++;
        await this.cachePart(key, len, d);
        return d;
      }
    }
    const span = stripeSpan(len, need.plainStart, Math.min(len, Math.max(need.end, need.first + this.rangeFetchStripesMin) * BLOCK_STRIPE_BYTES));
    // Two GETs (header and stripes) for what one whole GET would bring: read the block whole.
    if (span.first === 0 && span.plainEnd === len) return { data: await this.readBlock(id, size, index, signal, home), start: 0 };
    const part = await this.rangeFlights.do(`${key}#${span.first}-${span.end}`, async () => {
      const got =
        this.source === undefined
          ? await this.fetchRange(this.store, '', key, len, span, signal)
          : await this.fetchAny(this.source, id, home, key, signal, (s) => this.fetchRange(s.store, s.region, key, len, span, signal), (p) => p.data.length);
      if (got.start === 0 && got.data.length === len) await this.cacheBlock(key, got.data);
      else await this.cachePart(key, len, got);
      return got;
    });
    if (part.start !== 0 || part.data.length !== len) this.fillDisk(id, home, key, len);
    return part;
  }

  /** Puts a whole block into the memory cache, or the stripes of a part, one entry each. */
  private async cachePart(key: string, len: number, part: Part): Promise<void> {
    if (this.mem === undefined) return;
    if (part.start === 0 && part.data.length === len) {
      await this.mem.put(key, part.data);
      return;
    }
    // Stripes of a multi-stripe part are copied apart: a view kept in a cache that shares buffers would hold
    // the whole part in memory while it is counted as one stripe.
    const apart = part.data.length > BLOCK_STRIPE_BYTES;
    for (let at = 0; at < part.data.length; at += BLOCK_STRIPE_BYTES) {
      const stripe = part.data.subarray(at, Math.min(part.data.length, at + BLOCK_STRIPE_BYTES));
      await this.mem.put(stripeKey(key, (part.start + at) / BLOCK_STRIPE_BYTES), apart ? Buffer.from(stripe) : stripe);
    }
  }

  /** Fetches a whole block into the disk cache in the background, if there is one and a slot is free. */
  private fillDisk(id: number, home: string | undefined, key: string, len: number): void {
    const disk = this.disk;
    if (disk === undefined || this.fills.has(key) || this.fills.size >= CACHE_FILLS_IN_FLIGHT_MAX) return;
    const p = (async () => {
      const got =
        this.source === undefined
          ? await this.fetchObject(this.store, key, len, undefined)
          : await this.fetchAny(this.source, id, home, key, undefined, (s) => this.fetchObject(s.store, key, len, undefined), () => len);
      await this.diskPut(disk, key, got.plain, got.object);
      this.stats.cacheFills++;
    })()
      // A failed fill costs nothing but the fill: the next read fetches what it needs.
      .catch(() => undefined)
      .finally(() => this.fills.delete(key));
    this.fills.set(key, p);
  }

  /** Stripes `span` from the memory cache, when it holds every one of them. */
  private async cachedStripes(key: string, span: StripeSpan): Promise<Part | undefined> {
    if (this.mem === undefined) return undefined;
    const parts: Buffer[] = [];
    for (let i = span.first; i < span.end; i++) {
      const s = await this.mem.get(stripeKey(key, i));
      if (s === undefined || s.length !== Math.min(BLOCK_STRIPE_BYTES, span.plainEnd - i * BLOCK_STRIPE_BYTES)) return undefined;
      parts.push(s);
    }
    this.stats.stripeHits++;
    return { data: parts.length === 1 ? parts[0]! : Buffer.concat(parts), start: span.plainStart };
  }

  /** The verified plain bytes of `key` from one bucket; a missing object is reported as a corrupt block. */
  private async fetch(store: ObjectStore, key: string, len: number, signal: AbortSignal | undefined): Promise<Buffer> {
    return (await this.fetchObject(store, key, len, signal)).plain;
  }

  /** As `fetch`, with the object the plain bytes were decoded from (they may be a view of it). */
  private async fetchObject(store: ObjectStore, key: string, len: number, signal: AbortSignal | undefined): Promise<{ plain: Buffer; object: Buffer }> {
    const object = await getObject(store, key, { signal });
    try {
      return { plain: decodeBlock(object, key, len), object };
    } catch (err) {
      this.stats.corrupt++;
      throw err;
    }
  }

  /**
   * The verified stripes `span` of `key` from one bucket (the bucket of `region`): a GET of the stripes and,
   * at the same time, of the header unless its table is remembered. A version 1 block is fetched whole (and
   * the returned part is the whole block).
   */
  private async fetchRange(store: ObjectStore, region: string, key: string, len: number, span: StripeSpan, signal: AbortSignal | undefined): Promise<Part> {
    const tableKey = `${region}\0${key}`;
    const known = this.tables.get(tableKey);
    if (known === 'whole') return { data: await this.fetch(store, key, len, signal), start: 0 };
    const data = getObject(store, key, { offset: span.offset, length: span.length, signal });
    let header = known;
    if (header === undefined) {
      const [head, got] = await Promise.allSettled([getObject(store, key, { offset: 0, length: blockHeaderBytes(len), signal }), data]);
      if (head.status === 'rejected') throw head.reason;
      let parsed: StripedHeader | undefined;
      try {
        parsed = decodeBlockHeader(head.value, key, len);
      } catch (err) {
        this.stats.corrupt++;
        throw err;
      }
      if (parsed === undefined) {
        this.remember(tableKey, 'whole');
        return { data: await this.fetch(store, key, len, signal), start: 0 };
      }
      header = { plainBytes: parsed.plainBytes, table: Buffer.from(parsed.table) };
      this.remember(tableKey, header);
      if (got.status === 'rejected') throw got.reason;
    }
    const bytes = await data;
    this.stats.rangesRead++;
    this.stats.rangeBytesRead += bytes.length + (known === undefined ? blockHeaderBytes(len) : 0);
    try {
      return { data: decodeStripes(header, span, bytes, key), start: span.plainStart };
    } catch (err) {
      this.stats.corrupt++;
      // The next read asks for the header again, in case this copy was replaced by a good one.
      this.tables.delete(tableKey);
      throw err;
    }
  }

  private remember(tableKey: string, entry: StripedHeader | 'whole'): void {
    this.tables.delete(tableKey);
    this.tables.set(tableKey, entry);
    if (this.tables.size > STRIPE_TABLES_MAX) this.tables.delete(this.tables.keys().next().value!);
  }

  /** The first good copy along the source's order; fails naming every bucket's failure. */
  private async fetchAny<T>(
    source: BlockSource,
    id: number,
    home: string | undefined,
    key: string,
    signal: AbortSignal | undefined,
    get: (s: SourceStore) => Promise<T>,
    bytes: (got: T) => number,
  ): Promise<T> {
    const order = await source.order(id, home, signal);
    const failures: string[] = [];
    let onlyBadCopies = true;
    let last: unknown;
    for (const [position, s] of order.entries()) {
      const { region } = s;
      try {
        const got = await get(s);
        source.onRead?.(region, key, position, bytes(got));
        return got;
      } catch (err) {
        if (signal?.aborted === true) throw err;
        last = err;
        if (!(err instanceof CorruptBlockError)) onlyBadCopies = false;
        failures.push(`${region}: ${err instanceof CorruptBlockError ? err.message.replace(`corrupt block ${key}: `, '') : err instanceof Error ? err.message : String(err)}`);
        source.onBadCopy?.(region, key, err);
      }
    }
    const detail = `no region has a good copy (${failures.join('; ')})`;
    // Every bucket answered and none had it intact: the block is lost or damaged everywhere (fsck's finding).
    // Otherwise some bucket could not be asked: an I/O error that may pass.
    if (onlyBadCopies) throw new CorruptBlockError(key, detail);
    throw new FsError('EIO', `block ${key}: ${detail}`, { cause: last });
  }

  /**
   * Copies bytes [off, off+len) of slice (id, size) into dest at destOff, block by block, fetching the
   * blocks concurrently. `home` is the slice's home region (multi-region volumes).
   */
  async readSlice(id: number, size: number, off: number, len: number, dest: Buffer, destOff: number, signal?: AbortSignal, home?: string): Promise<void> {
    if (off < 0 || len < 0 || off + len > size) throw new Error(`assertion failed: range ${off}+${len} of a ${size}-byte slice`);
    const B = this.blockBytes;
    const jobs: Array<Promise<void>> = [];
    for (let pos = off; pos < off + len; ) {
      const index = Math.floor(pos / B);
      const inBlock = pos - index * B;
      const n = Math.min(B - inBlock, off + len - pos);
      const at = destOff + (pos - off);
      jobs.push(
        this.readPart(id, size, index, inBlock, n, signal, home).then((part) => {
          part.data.copy(dest, at, inBlock - part.start, inBlock - part.start + n);
        }),
      );
      pos += n;
    }
    await Promise.all(jobs);
  }

  /**
   * The plain bytes [off, off + len) of a slice without a copy, when one block holds them all (undefined when
   * they span blocks). The view may be shared with the caches: callers must not modify it nor keep it.
   */
  async sliceView(id: number, size: number, off: number, len: number, signal?: AbortSignal, home?: string): Promise<Buffer | undefined> {
    if (off < 0 || len <= 0 || off + len > size) throw new Error(`assertion failed: range ${off}+${len} of a ${size}-byte slice`);
    const B = this.blockBytes;
    const index = Math.floor(off / B);
    const inBlock = off - index * B;
    if (inBlock + len > B) return undefined;
    const part = await this.readPart(id, size, index, inBlock, len, signal, home);
    return part.data.subarray(inBlock - part.start, inBlock - part.start + len);
  }

  /** Starts fetching blocks into the caches without waiting; failures are left for the real read. */
  prefetch(id: number, size: number, off: number, len: number, home?: string): void {
    const B = this.blockBytes;
    for (let index = Math.floor(off / B); index * B < Math.min(size, off + len); index++) {
      this.readBlock(id, size, index, undefined, home).catch(() => undefined);
    }
  }

  cacheStats(): ChunkCacheStats {
    return {
      memory: this.mem?.stats(),
      disk: this.disk?.stats(),
    };
  }

  /**
   * Every numeric counter of this store and its caches, flat, in Prometheus style (`chunk_blocks_read`,
   * `disk_cache_stored`, `disk_cache_dropped`, ...), for a mount's `.stats` and `/metrics`.
   */
  counters(): Record<string, number> {
    const out: Record<string, number> = {};
    const snake = (k: string): string => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    for (const [k, v] of Object.entries(this.stats)) out[`chunk_${snake(k)}`] = v;
    const { memory, disk } = this.cacheStats();
    for (const [prefix, st] of [['mem_cache', memory], ['disk_cache', disk]] as const) {
      for (const [k, v] of Object.entries(st ?? {})) if (typeof v === 'number') out[`${prefix}_${snake(k)}`] = v;
    }
    return out;
  }

  async close(): Promise<void> {
    while (this.fills.size > 0) await Promise.all(this.fills.values());
    await this.mem?.close();
    await this.disk?.close();
    try {
      await this.store.close();
    } finally {
      await this.source?.close?.();
    }
  }
}

/** Whether `plain` is a view of the last bytes of `object` (a block stored without compression). */
function isTailOf(plain: Buffer, object: Buffer): boolean {
  return plain.buffer === object.buffer && plain.byteOffset + plain.length === object.byteOffset + object.length && plain.length < object.length;
}

/** The memory cache's key for stripe `i` of block `key` (never a block key: those have no '#'). */
function stripeKey(key: string, i: number): string {
  return `${key}#${i}`;
}

/** A GET that reports a missing object as a corrupt block (the reader then tries the next copy). */
async function getObject(store: ObjectStore, key: string, options: GetOptions): Promise<Buffer> {
  try {
    return await store.get(key, options);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) throw new CorruptBlockError(key, 'object missing from the bucket');
    throw err;
  }
}
