/**
 * A client's ChunkStore as Ferry builds it: the chunk/ facade (writes, slice arithmetic) over a BlockReader
 * whose tiers are the caches it is given, in the read order of DESIGN §6:
 *
 *   memory (MemoryBlockCache, 'stripes') -> [staging] -> disk (DiskBlockCache, 'whole') -> [extra tiers] -> buckets
 *
 * `staging` (write-back, cache/writeback.ts) holds blocks committed but not yet uploaded: new blocks are staged
 * there instead of put, and read from there until the bucket has them. It comes before the disk cache so that a
 * staged block is not copied into the cache as well (a hit fills the memory tier only).
 * `extraTiers` go between the local caches and the buckets: the place of the region's cache group.
 */

import type { Compression } from '../chunk/codec.js';
import { ChunkStore } from '../chunk/store.js';
import type { ObjectStore } from '../object/store.js';
import type { BlockCache } from './cache.js';
import { BlockReader, DISK_TIER, MEMORY_TIER, type BlockReaderOptions, type BlockSource } from './reader.js';
import { CacheTier, DISK_ANSWER_MS_MAX_DEFAULT } from './tier-cache.js';
import type { BlockTier } from './tier.js';
import type { Writeback } from './writeback.js';

export interface CreateChunkStoreOptions {
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
  /** Tiers asked after the local caches, before the buckets (the cache group's place); closed with the store. */
  extraTiers?: readonly BlockTier[] | undefined;
  /** Also put written blocks into the disk cache (a reader soon after a writer on this client). */
  cacheWrites?: boolean | undefined;
  /**
   * Write-back staging: new blocks are staged there (when `writeback`), and staged blocks are read from there
   * until uploaded; closed with the store. Without `writeback` it only uploads what an earlier run staged.
   */
  staging?: Writeback | undefined;
  writeback?: boolean | undefined;
  /** See BlockReaderOptions. */
  rangeReadBytesMax?: number | undefined;
  rangeFetchBytesMin?: number | undefined;
  onBadCopy?: BlockReaderOptions['onBadCopy'];
  onServed?: BlockReaderOptions['onServed'];
}

/** The tiers in front of the buckets for these caches, in read order. */
export function cacheTiers(memCache: BlockCache | undefined, diskCache: BlockCache | undefined, staging?: Writeback): BlockTier[] {
  const tiers: BlockTier[] = [];
  if (memCache !== undefined) tiers.push(new CacheTier({ name: MEMORY_TIER, cache: memCache, fillWith: 'stripes' }));
  if (staging !== undefined) tiers.push(staging);
  if (diskCache !== undefined) tiers.push(new CacheTier({ name: DISK_TIER, cache: diskCache, fillWith: 'whole', answerMsMax: DISK_ANSWER_MS_MAX_DEFAULT }));
  return tiers;
}

export function createChunkStore(options: CreateChunkStoreOptions): ChunkStore {
  const reads = new BlockReader({
    tiers: [...cacheTiers(options.memCache, options.diskCache, options.staging), ...(options.extraTiers ?? [])],
    store: options.store,
    source: options.source,
    blockBytes: options.blockBytes,
    compression: options.compression,
    rangeReadBytesMax: options.rangeReadBytesMax,
    rangeFetchBytesMin: options.rangeFetchBytesMin,
    onBadCopy: options.onBadCopy,
    onServed: options.onServed,
  });
  return new ChunkStore({
    store: options.store,
    home: options.home,
    blockBytes: options.blockBytes,
    compression: options.compression,
    reads,
    cacheWrites: options.cacheWrites,
    // Without write-back the staging area is only read and drained; it is closed as a tier of the reader.
    staging: options.writeback === true ? options.staging : undefined,
  });
}
