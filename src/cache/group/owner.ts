/**
 * What a cache-group member serves (server.ts BlockProvider): blocks as codec objects, from
 *
 *   recent objects (memory, at most objectBytesMax) -> its disk cache (verified) -> its own block reader
 *   (its tiers, then its read order: the region's bucket, the block's home bucket, ...; single flight; the
 *   reader verifies, and fills the disk cache on the way back)
 *
 * A ranged request (`range`: a client reading a few stripes) is answered from a recent object, else from the
 * disk cache reading only the block's header and the stripes asked for (verified: header checksum, each
 * stripe's checksum), not the whole file; only when neither holds it striped does it take the whole path
 * above (and the fetched object is then kept).
 *
 * A whole request the disk cache holds (`lend`) is read into a reused buffer, verified, sent, and the buffer goes
 * back to a small pool once the response has been handed to the kernel: a sequential reader then costs the
 * owner one file read and one checksum pass per block, and no allocation (a 4 MiB allocation per block kept
 * the garbage collector busier than the reads). Such blocks are not kept in memory (the page cache has them).
 *
 * Concurrent requests for one block are one fetch. The member's reader has no cache-group tier itself: an
 * owner that misses goes to storage, never to another member (no loops, no second hop).
 *
 * The slice's home region is not sent by the client, so the owner reads it in the primary-first order
 * (region/placement.ts with home undefined): correct for every block, the best order for blocks written in
 * the primary's region.
 */

import { blockHeaderBytes, encodeBlock, peekBlockWhole } from '../../chunk/codec.js';
import type { BlockKeyParts } from '../../chunk/keys.js';
import type { BlockReads } from '../../chunk/store.js';
import { SingleFlight } from '../../util/singleflight.js';
import type { DiskBlockCache } from '../disk.js';
import type { BlockProvider } from './server.js';

export const OWNER_OBJECT_BYTES_MAX_DEFAULT = 64 << 20;
/** Read buffers kept for reuse (whole blocks read from disk for one response each). */
export const OWNER_READ_BUFFERS_MAX = 8;

export interface OwnerBlocksOptions {
  reader: BlockReads;
  /** The reader's disk tier (served from directly, as stored). */
  disk: DiskBlockCache | undefined;
  /** Recently served objects kept in memory, bytes (a client reading a block by stripes asks for it often). */
  objectBytesMax?: number | undefined;
}

export interface OwnerStats {
  /** Answers from memory, from the disk cache, and fetched through the reader (misses). */
  memoryHits: number;
  diskHits: number;
  /** Of diskHits: ranged answers read by stripes (the header and the stripes asked for). */
  diskRangeHits: number;
  /** Of diskHits: whole answers read into a reused buffer (`lend`). */
  diskLends: number;
  fetched: number;
  fetchedBytes: number;
}

function nothing(): void {}

export class OwnerBlocks implements BlockProvider {
  readonly stats: OwnerStats = { memoryHits: 0, diskHits: 0, diskRangeHits: 0, diskLends: 0, fetched: 0, fetchedBytes: 0 };
  private readonly reader: BlockReads;
  private readonly disk: DiskBlockCache | undefined;
  private readonly objectBytesMax: number;
  /** Least recently used first. */
  private readonly recent = new Map<string, Buffer>();
  private recentBytes = 0;
  private readonly flights = new SingleFlight<string, Buffer | undefined>();
  /** Read buffers not lent now, at most OWNER_READ_BUFFERS_MAX. */
  private readonly spare: Buffer[] = [];
  /** Blocks lent now (read, or being read, for responses not yet over), by key. */
  private readonly loans = new Map<string, { got: Promise<{ object: Buffer; buf: Buffer | undefined } | undefined>; users: number; reusable: boolean }>();

  constructor(options: OwnerBlocksOptions) {
    this.reader = options.reader;
    this.disk = options.disk;
    this.objectBytesMax = options.objectBytesMax ?? OWNER_OBJECT_BYTES_MAX_DEFAULT;
  }

  async object(key: string, parts: BlockKeyParts): Promise<Buffer | undefined> {
    const kept = this.recent.get(key);
    if (kept !== undefined) {
      this.recent.delete(key);
      this.recent.set(key, kept);
      this.stats.memoryHits++;
      return kept;
    }
    return this.flights.do(key, async () => {
      let object = await this.disk?.getEncoded(key);
      if (object !== undefined) {
        this.stats.diskHits++;
      } else {
        // Verified by the reader (and put into the disk cache by it); the disk's copy is the codec object as
        // stored when it kept one, else the block is encoded here (one checksum pass).
        const plain = await this.reader.readBlock(key, parts.blockBytes, parts.sliceId, undefined, undefined);
        object = (await this.disk?.getEncoded(key)) ?? encodeBlock(plain, 'none', key);
        this.stats.fetched++;
        this.stats.fetchedBytes += plain.length;
      }
      this.remember(key, object);
      return object;
    });
  }

  /**
   * Object bytes [from, to) of a striped block and its header (both verified), when a recent object or the disk
   * cache holds it striped; undefined otherwise (the caller takes the whole path, `object`). The range must lie
   * within the stripes (blockHeaderBytes <= from < to <= blockHeaderBytes + plainBytes); else undefined.
   */
  async range(key: string, parts: BlockKeyParts, from: number, to: number): Promise<{ head: Buffer; data: Buffer } | undefined> {
    const plainBytes = parts.blockBytes;
    const H = blockHeaderBytes(plainBytes);
    if (!(H <= from && from < to && to <= H + plainBytes)) return undefined;
    const kept = this.recent.get(key);
    if (kept !== undefined) {
      if (peekBlockWhole(kept) || kept.length !== H + plainBytes) return undefined;
      this.recent.delete(key);
      this.recent.set(key, kept);
      this.stats.memoryHits++;
      return { head: kept.subarray(0, H), data: kept.subarray(from, to) };
    }
    // A whole fetch in flight (another client's read of the block) is joined rather than raced.
    if (this.flights.has(key) || this.disk === undefined) return undefined;
    const got = await this.disk.getEncodedRange(key, plainBytes, from, to);
    if (got === undefined || got === 'whole') return undefined;
    this.stats.diskHits++;
    this.stats.diskRangeHits++;
    return got;
  }

  /**
   * The whole verified object of a block for one response, when memory or the disk cache holds it. The caller
   * calls `release(sent)` once, when the response is over: sent true once it was handed to the kernel (the
   * buffer may then be reused), false when it was aborted (the buffer is then dropped, never reused: the
   * socket may still have held it). Concurrent requests for one block share one read (readers reading a file
   * at once cost one read and one check). undefined: take the `object` path (fetch, or join a fetch).
   */
  async lend(key: string): Promise<{ object: Buffer; release: (sent: boolean) => void } | undefined> {
    const kept = this.recent.get(key);
    if (kept !== undefined) {
      this.recent.delete(key);
      this.recent.set(key, kept);
      this.stats.memoryHits++;
      return { object: kept, release: nothing };
    }
    if (this.flights.has(key) || this.disk === undefined) return undefined;
    let loan = this.loans.get(key);
    if (loan === undefined) {
      loan = { got: this.readLent(this.disk, key), users: 0, reusable: true };
      this.loans.set(key, loan);
    } else {
      this.stats.memoryHits++;
    }
    loan.users++;
    const l = loan;
    const done = (sent: boolean): void => {
      if (!sent) l.reusable = false;
      if (--l.users > 0) return;
      if (this.loans.get(key) === l) this.loans.delete(key);
      l.got.then(
        (got) => {
          if (got?.buf !== undefined && l.reusable) this.give(got.buf);
        },
        nothing,
      );
    };
    let got;
    try {
      got = await l.got;
    } catch (err) {
      // A failed read is not kept for the next request.
      done(false);
      throw err;
    }
    if (got === undefined) {
      done(true);
      return undefined;
    }
    let released = false;
    return {
      object: got.object,
      release: (sent) => {
        if (released) return;
        released = true;
        done(sent);
      },
    };
  }

  /** A whole object read from the disk cache into a read buffer (`buf`; undefined: not in one, nothing to give back). */
  private async readLent(disk: DiskBlockCache, key: string): Promise<{ object: Buffer; buf: Buffer | undefined } | undefined> {
    let buf: Buffer | undefined;
    const got = await disk.getEncodedInto(key, (n) => (buf = this.take(n)));
    if (got === undefined) {
      if (buf !== undefined) this.give(buf);
      return undefined;
    }
    this.stats.diskHits++;
    this.stats.diskLends++;
    return { object: got.encoded, buf: got.lent ? buf : undefined };
  }

  /** A read buffer of at least `n` bytes (a spare one when one is large enough). */
  private take(n: number): Buffer {
    const i = this.spare.findIndex((b) => b.length >= n);
    if (i >= 0) return this.spare.splice(i, 1)[0]!;
    return Buffer.allocUnsafeSlow(n);
  }

  private give(buf: Buffer): void {
    if (this.spare.length < OWNER_READ_BUFFERS_MAX && buf.length <= this.objectBytesMax / 4) this.spare.push(buf);
  }

  async holds(key: string): Promise<boolean> {
    if (this.recent.has(key)) return true;
    return (await this.disk?.has(key)) ?? false;
  }

  async warm(key: string, parts: BlockKeyParts): Promise<'held' | 'fetched' | 'missing'> {
    if (await this.holds(key)) return 'held';
    return (await this.object(key, parts)) === undefined ? 'missing' : 'fetched';
  }

  async evict(key: string): Promise<void> {
    const kept = this.recent.get(key);
    if (kept !== undefined) {
      this.recent.delete(key);
      this.recentBytes -= kept.length;
    }
    await this.disk?.delete(key);
  }

  private remember(key: string, object: Buffer): void {
    const old = this.recent.get(key);
    if (old !== undefined) {
      this.recent.delete(key);
      this.recentBytes -= old.length;
    }
    if (object.length > this.objectBytesMax / 4) return;
    this.recent.set(key, object);
    this.recentBytes += object.length;
    while (this.recentBytes > this.objectBytesMax) {
      const [k, v] = this.recent.entries().next().value!;
      this.recent.delete(k);
      this.recentBytes -= v.length;
    }
  }
}
