/**
 * What a cache-group member serves (server.ts BlockProvider): blocks as codec objects, from
 *
 *   recent objects (memory, at most objectBytesMax) -> its disk cache (verified) -> its own block reader
 *   (its tiers, then its read order: the region's bucket, the block's home bucket, ...; single flight; the
 *   reader verifies, and fills the disk cache on the way back)
 *
 * Concurrent requests for one block are one fetch. The member's reader has no cache-group tier itself: an
 * owner that misses goes to storage, never to another member (no loops, no second hop).
 *
 * The slice's home region is not sent by the client, so the owner reads it in the primary-first order
 * (region/placement.ts with home undefined): correct for every block, the best order for blocks written in
 * the primary's region.
 */

import { encodeBlock } from '../../chunk/codec.js';
import type { BlockKeyParts } from '../../chunk/keys.js';
import type { BlockReads } from '../../chunk/store.js';
import { SingleFlight } from '../../util/singleflight.js';
import type { DiskBlockCache } from '../disk.js';
import type { BlockProvider } from './server.js';

export const OWNER_OBJECT_BYTES_MAX_DEFAULT = 64 << 20;

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
  fetched: number;
  fetchedBytes: number;
}

export class OwnerBlocks implements BlockProvider {
  readonly stats: OwnerStats = { memoryHits: 0, diskHits: 0, fetched: 0, fetchedBytes: 0 };
  private readonly reader: BlockReads;
  private readonly disk: DiskBlockCache | undefined;
  private readonly objectBytesMax: number;
  /** Least recently used first. */
  private readonly recent = new Map<string, Buffer>();
  private recentBytes = 0;
  private readonly flights = new SingleFlight<string, Buffer | undefined>();

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
