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
 * Slices are cut into blocks relative to the slice's own start, so full blocks can be uploaded before the
 * slice's final size is known (the key names the block's length, not the slice's):
 *
 *   slice  [ block 0: blockBytes ][ block 1: blockBytes ][ block 2: rest ]
 */

import { CorruptBlockError, FsError } from '../errors.js';
import type { BlockCache } from '../cache/cache.js';
import { BLOCK_HEADER_BYTES, decodeBlock, encodeBlock, encodeBlockFramed, type Compression } from './codec.js';
import { blockKey } from './keys.js';
import type { ObjectStore } from '../object/store.js';
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
}

export interface ChunkStats {
  blocksRead: number;
  bytesRead: number;
  blocksWritten: number;
  bytesWritten: number;
  corrupt: number;
  memHits: number;
  diskHits: number;
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
  private readonly flights = new SingleFlight<string, Buffer>();
  readonly stats: ChunkStats = { blocksRead: 0, bytesRead: 0, blocksWritten: 0, bytesWritten: 0, corrupt: 0, memHits: 0, diskHits: 0 };

  constructor(options: ChunkStoreOptions) {
    this.store = options.store;
    this.home = options.home;
    this.source = options.source;
    this.blockBytes = options.blockBytes;
    this.compression = options.compression;
    this.mem = options.memCache;
    this.disk = options.diskCache;
    this.cacheWrites = options.cacheWrites ?? false;
  }

  /** Length of block `index` of a slice of `size` bytes. */
  blockLength(size: number, index: number): number {
    return Math.min(this.blockBytes, size - index * this.blockBytes);
  }

  /** Every block key of a slice. */
  sliceKeys(id: number, size: number): string[] {
    const keys: string[] = [];
    for (let i = 0; i * this.blockBytes < size; i++) keys.push(blockKey(id, i, this.blockLength(size, i)));
    return keys;
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
   * Stores one block given as [BLOCK_HEADER_BYTES of space][plain bytes]; the header is written into that
   * space, so the caller must not reuse `framed` (it may be the stored object).
   */
  async putFramed(id: number, index: number, framed: Buffer, signal?: AbortSignal): Promise<void> {
    const len = framed.length - BLOCK_HEADER_BYTES;
    if (len <= 0 || len > this.blockBytes) throw new Error(`assertion failed: block of ${len} bytes`);
    const key = blockKey(id, index, len);
    const object = encodeBlockFramed(framed, this.compression);
    await this.store.put(key, object, { signal });
    this.stats.blocksWritten++;
    this.stats.bytesWritten += len;
    if (this.cacheWrites && this.disk !== undefined) await this.disk.put(key, Buffer.from(framed.subarray(BLOCK_HEADER_BYTES)));
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
      const m = await this.mem?.get(key);
      if (m !== undefined && m.length === len) {
        this.stats.memHits++;
        return m;
      }
      const d = await this.disk?.get(key);
      if (d !== undefined && d.length === len) {
        this.stats.diskHits++;
        await this.mem?.put(key, d);
        return d;
      }
      const plain = this.source === undefined ? await this.fetch(this.store, key, len, signal) : await this.fetchAny(this.source, id, home, key, len, signal);
      this.stats.blocksRead++;
      this.stats.bytesRead += len;
      await this.mem?.put(key, plain);
      await this.disk?.put(key, plain);
      return plain;
    });
  }

  /** The verified plain bytes of `key` from one bucket; a missing object is reported as a corrupt block. */
  private async fetch(store: ObjectStore, key: string, len: number, signal: AbortSignal | undefined): Promise<Buffer> {
    let object: Buffer;
    try {
      object = await store.get(key, { signal });
    } catch (err) {
      if (err instanceof ObjectNotFoundError) throw new CorruptBlockError(key, 'object missing from the bucket');
      throw err;
    }
    try {
      return decodeBlock(object, key, len);
    } catch (err) {
      this.stats.corrupt++;
      throw err;
    }
  }

  /** The first good copy along the source's order; fails naming every bucket's failure. */
  private async fetchAny(source: BlockSource, id: number, home: string | undefined, key: string, len: number, signal: AbortSignal | undefined): Promise<Buffer> {
    const order = await source.order(id, home, signal);
    const failures: string[] = [];
    let onlyBadCopies = true;
    let last: unknown;
    for (const [position, { region, store }] of order.entries()) {
      try {
        const plain = await this.fetch(store, key, len, signal);
        source.onRead?.(region, key, position, len);
        return plain;
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
        this.readBlock(id, size, index, signal, home).then((block) => {
          block.copy(dest, at, inBlock, inBlock + n);
        }),
      );
      pos += n;
    }
    await Promise.all(jobs);
  }

  /** Starts fetching blocks into the caches without waiting; failures are left for the real read. */
  prefetch(id: number, size: number, off: number, len: number, home?: string): void {
    const B = this.blockBytes;
    for (let index = Math.floor(off / B); index * B < Math.min(size, off + len); index++) {
      this.readBlock(id, size, index, undefined, home).catch(() => undefined);
    }
  }

  /** Deletes every block object of a slice from this client's bucket (idempotent) and drops them from the caches. */
  async deleteSlice(id: number, size: number, signal?: AbortSignal): Promise<void> {
    for (const key of this.sliceKeys(id, size)) {
      await this.store.delete(key, { signal });
      await this.mem?.delete(key);
      await this.disk?.delete(key);
    }
  }

  async close(): Promise<void> {
    await this.mem?.close();
    await this.disk?.close();
    try {
      await this.store.close();
    } finally {
      await this.source?.close?.();
    }
  }
}
