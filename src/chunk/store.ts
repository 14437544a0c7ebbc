/**
 * A client's blocks: slices cut into blocks, written to the client's bucket, read through a `BlockReads`.
 *
 * chunk/ is a leaf: it knows the key layout (keys.ts), the block codec (codec.ts) and the arithmetic of this
 * file, and nothing of caches, tiers or regions. Reading is delegated to a BlockReads (cache/reader.ts: an
 * ordered list of tiers, memory -> disk -> ... -> the buckets in the read order region/ decides), which the
 * composition root builds (cache/blocks.ts createChunkStore, sdk/open.ts); this class only turns slice ranges
 * into block reads and does the writes:
 *
 *   slice  [ block 0: blockBytes ][ block 1: blockBytes ][ block 2: rest ]
 *              readSlice(off, len) -> per block: reads.readRange(key, plainBytes, [from, to)) -> copy out
 *              sliceView(off, len) -> one block:  reads.readRange(...) -> a view, no copy
 *              prefetch(off, len)  -> per block: reads.readBlock(key, plainBytes), not awaited
 *              putBlock / putFramed -> encode (codec) -> this client's bucket -> reads.cacheWritten (if asked)
 *                                      \-> write-back: staging.stage (durable on local disk, uploaded later;
 *                                           a declined stage falls back to the bucket)
 *
 * Slices are cut into blocks relative to the slice's own start, so full blocks can be uploaded before the
 * slice's final size is known (the key names the block's length, not the slice's).
 */

import { blockFrameBytes, encodeBlock, encodeBlockFramed, type Compression } from './codec.js';
import { blockKey } from './keys.js';
import type { ObjectStore } from '../object/store.js';

/** Plain bytes [start, start + data.length) of a block. */
export interface BlockPart {
  data: Buffer;
  start: number;
}

/** What the read side counted (see ChunkStats for each counter's meaning). */
export interface ReadStats {
  blocksRead: number;
  bytesRead: number;
  corrupt: number;
  memHits: number;
  diskHits: number;
  rangesRead: number;
  rangeBytesRead: number;
  stripeHits: number;
  cacheFills: number;
}

export interface ChunkStats {
  /** Whole blocks fetched from a bucket, and their plain bytes. */
  blocksRead: number;
  bytesRead: number;
  /** Blocks stored in this client's bucket (write-back: staged for it), and their plain bytes. */
  blocksWritten: number;
  bytesWritten: number;
  /** Copies fetched from a bucket (or another tier that serves encoded copies) that failed verification. */
  corrupt: number;
  /** Whole blocks served by the memory cache, and reads served by the disk cache. */
  memHits: number;
  diskHits: number;
  /** Ranged fetches (stripes of a block) from a bucket and the object bytes they read, headers included. */
  rangesRead: number;
  rangeBytesRead: number;
  /** Small reads served from stripes in the memory cache. */
  stripeHits: number;
  /** Whole blocks fetched into the disk cache in the background after ranged reads. */
  cacheFills: number;
}

/**
 * What the read side reports of its caches, one record of counters each (cache/reader.ts gives the exact
 * types: cache/cache.ts CacheStats, and a disk cache's DiskCacheStats). chunk/ knows no caches, so here they
 * are only named records, read as counters by `ChunkStore.counters()`.
 */
export interface ChunkCacheStats {
  memory: object | undefined;
  disk: object | undefined;
}

/**
 * The read side of a ChunkStore (implemented by cache/reader.ts BlockReader). `key` is a block key
 * (chunk/keys.ts) of `plainBytes` plain bytes, of slice `slice` whose home region is `home` (undefined: the
 * primary; multi-region volumes read it in the order region/placement.ts decides). Every byte returned has
 * been verified; returned buffers may be shared with caches: callers must not modify them.
 */
export interface BlockReads {
  /** The whole block. Concurrent calls for one key share one fetch. */
  readBlock(key: string, plainBytes: number, slice: number, home: string | undefined, signal: AbortSignal | undefined): Promise<Buffer>;
  /**
   * Plain bytes covering [from, to) of the block (0 <= from < to <= plainBytes), and possibly more around
   * them (the whole block, whole stripes), with where they start.
   */
  readRange(key: string, plainBytes: number, from: number, to: number, slice: number, home: string | undefined, signal: AbortSignal | undefined): Promise<BlockPart>;
  /** A block this client just stored in its bucket (write-through into the caches that keep written blocks). */
  cacheWritten(key: string, plain: Buffer): Promise<void>;
  /** The read counters, now. */
  readonly stats: ReadStats;
  cacheStats(): ChunkCacheStats;
  /** Waits for background work, closes the tiers it was given and the block source; idempotent. */
  close(): Promise<void>;
}

/**
 * Write-back staging (implemented by cache/writeback.ts): where a client in write-back mode keeps new blocks
 * until they are uploaded in the background.
 */
export interface BlockStaging {
  /**
   * Keeps `object`, the encoded block `key` of slice `slice`, on local disk and queues its upload. true:
   * staged, and durable unless `durable` is false (then `sync` makes it durable); false: declined (low space,
   * a failed write), nothing kept, the caller must store the block itself.
   */
  stage(key: string, object: Buffer, slice: number, durable: boolean): Promise<boolean>;
  /** Makes the blocks of these slices staged without `durable` durable; rejects when it cannot. */
  sync(slices: readonly number[]): Promise<void>;
  /** The slice will never be committed: its staged blocks are dropped instead of uploaded. Never rejects. */
  discard(slice: number): Promise<void>;
  /** Counters, flat in Prometheus style without a prefix (`pending_blocks`, ...). */
  counters(): Record<string, number>;
  /** Idempotent; leaves what is not uploaded staged (see cache/writeback.ts). */
  close(): Promise<void>;
}

export interface ChunkStoreOptions {
  /** This client's bucket: new blocks go here. */
  store: ObjectStore;
  /** The region recorded as home of the slices this client writes (multi-region volumes only). */
  home?: string | undefined;
  blockBytes: number;
  compression: Compression;
  /** Where reads go (cache/reader.ts); closed with this store. */
  reads: BlockReads;
  /** Also hand written blocks to `reads.cacheWritten` (a reader soon after a writer on this client). */
  cacheWrites?: boolean | undefined;
  /**
   * Write-back: new blocks are staged here instead of put (the reads must then have the staging area as a
   * tier, so that this client reads them before they are uploaded); closed with this store, first.
   */
  staging?: BlockStaging | undefined;
}

/** For prefetch: its failures are left for the real read. */
function ignore(): undefined {
  return undefined;
}

export class ChunkStore {
  readonly store: ObjectStore;
  readonly home: string | undefined;
  readonly blockBytes: number;
  readonly compression: Compression;
  /** Space that putFramed callers reserve in front of a block's plain bytes (blockFrameBytes). */
  readonly frameBytes: number;
  readonly reads: BlockReads;
  /** Write-back staging, when this client writes back (see ChunkStoreOptions.staging). */
  readonly staging: BlockStaging | undefined;
  private readonly cacheWrites: boolean;
  private blocksWritten = 0;
  private bytesWritten = 0;
  private closing: Promise<void> | undefined;

  constructor(options: ChunkStoreOptions) {
    if (!Number.isSafeInteger(options.blockBytes) || options.blockBytes <= 0) throw new RangeError(`blockBytes must be a positive integer, got ${options.blockBytes}`);
    this.store = options.store;
    this.home = options.home;
    this.blockBytes = options.blockBytes;
    this.compression = options.compression;
    this.frameBytes = blockFrameBytes(this.blockBytes);
    this.reads = options.reads;
    this.cacheWrites = options.cacheWrites ?? false;
    this.staging = options.staging;
  }

  /** Length of block `index` of a slice of `size` bytes. */
  blockLength(size: number, index: number): number {
    return Math.min(this.blockBytes, size - index * this.blockBytes);
  }

  /** Every counter of reads and writes, now (a new object each call). */
  get stats(): ChunkStats {
    const r = this.reads.stats;
    return {
      blocksRead: r.blocksRead,
      bytesRead: r.bytesRead,
      blocksWritten: this.blocksWritten,
      bytesWritten: this.bytesWritten,
      corrupt: r.corrupt,
      memHits: r.memHits,
      diskHits: r.diskHits,
      rangesRead: r.rangesRead,
      rangeBytesRead: r.rangeBytesRead,
      stripeHits: r.stripeHits,
      cacheFills: r.cacheFills,
    };
  }

  /** Encodes and stores one block (any block but a slice's last must be exactly blockBytes long). */
  async putBlock(id: number, index: number, plain: Buffer, signal?: AbortSignal): Promise<void> {
    if (plain.length === 0 || plain.length > this.blockBytes) throw new Error(`assertion failed: block of ${plain.length} bytes`);
    const key = blockKey(id, index, plain.length);
    const object = encodeBlock(plain, this.compression, key);
    await this.keep(id, key, object, plain.length, signal);
    if (this.cacheWrites) await this.reads.cacheWritten(key, plain);
  }

  /**
   * Stores one block given as [frameBytes of space][plain bytes]; the header is written into that space, so
   * the caller must not reuse `framed` (it may be the stored object). `durable` false: a block staged for
   * write-back may not be on disk yet; `sync` of its slice must come before the slice is committed (so that a
   * long write syncs once per commit, not once per block).
   */
  async putFramed(id: number, index: number, framed: Buffer, signal?: AbortSignal, durable = true): Promise<void> {
    const len = framed.length - this.frameBytes;
    if (len <= 0 || len > this.blockBytes) throw new Error(`assertion failed: block of ${len} bytes`);
    const key = blockKey(id, index, len);
    const object = encodeBlockFramed(framed, this.compression, this.frameBytes, key);
    await this.keep(id, key, object, len, signal, durable);
    if (this.cacheWrites) await this.reads.cacheWritten(key, Buffer.from(framed.subarray(this.frameBytes)));
  }

  /** Stages an encoded block (write-back), else (or when staging declines) puts it in this client's bucket. */
  private async keep(id: number, key: string, object: Buffer, plainBytes: number, signal: AbortSignal | undefined, durable = true): Promise<void> {
    if (this.staging === undefined || !(await this.staging.stage(key, object, id, durable))) await this.store.put(key, object, { signal });
    this.blocksWritten++;
    this.bytesWritten += plainBytes;
  }

  /** Makes the blocks of these slices stored with `durable` false durable (write-back); rejects when it cannot. */
  async sync(ids: readonly number[]): Promise<void> {
    await this.staging?.sync(ids);
  }

  /** A slice that will never be committed: its staged blocks (write-back) are not uploaded. Never rejects. */
  async abandoned(id: number): Promise<void> {
    await this.staging?.discard(id);
  }

  /**
   * The plain bytes of one block of a slice (verified). `size` is the slice's stored size. The returned
   * buffer may be shared with the caches: callers must not modify it.
   */
  readBlock(id: number, size: number, index: number, signal?: AbortSignal, home?: string): Promise<Buffer> {
    const len = this.blockLength(size, index);
    if (len <= 0) throw new Error(`assertion failed: block ${index} of a ${size}-byte slice`);
    return this.reads.readBlock(blockKey(id, index, len), len, id, home, signal);
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
      const blockLen = this.blockLength(size, index);
      jobs.push(
        this.reads.readRange(blockKey(id, index, blockLen), blockLen, inBlock, inBlock + n, id, home, signal).then((part) => {
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
    const blockLen = this.blockLength(size, index);
    const part = await this.reads.readRange(blockKey(id, index, blockLen), blockLen, inBlock, inBlock + len, id, home, signal);
    return part.data.subarray(inBlock - part.start, inBlock - part.start + len);
  }

  /** Starts fetching blocks into the caches without waiting; failures are left for the real read. */
  prefetch(id: number, size: number, off: number, len: number, home?: string): void {
    const B = this.blockBytes;
    for (let index = Math.floor(off / B); index * B < Math.min(size, off + len); index++) {
      const blockLen = this.blockLength(size, index);
      this.reads.readBlock(blockKey(id, index, blockLen), blockLen, id, home, undefined).catch(ignore);
    }
  }

  cacheStats(): ChunkCacheStats {
    return this.reads.cacheStats();
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
    for (const [k, v] of Object.entries(this.staging?.counters() ?? {})) out[`writeback_${k}`] = v;
    return out;
  }

  /**
   * Idempotent: the write-back staging (what is not uploaded stays staged), the read side (its background work,
   * tiers and block source), then this client's bucket.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.staging?.close();
        await this.reads.close();
      } finally {
        await this.store.close();
      }
    })();
    return this.closing;
  }
}
