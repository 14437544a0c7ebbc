/**
 * The block cache contract, implemented by the memory cache and the local disk cache (and checked by
 * test/cache/conformance.ts). A cache holds *plain* block bytes (decoded, verified) by block key. The block
 * reader uses a cache as one of its tiers through tier-cache.ts (which also keeps stripes under `key#i`).
 *
 * Promises:
 * - `get` returns exactly the bytes that were `put` under the key, or undefined. A copy that fails its own
 *   verification is dropped, counted in `stats().corrupt`, and reported as a miss — never returned.
 * - `put` may decline (entry larger than capacity, disk below its free-space floor); a declined put is not an
 *   error. Capacity is enforced by evicting least-recently-used entries.
 * - Caches are advisory: any call may lose entries; none may return wrong bytes.
 */

import type { BlockPart } from '../chunk/store.js';

export interface CacheStats {
  hits: number;
  misses: number;
  /** Entries dropped because they failed verification. */
  corrupt: number;
  evictions: number;
  /** Entries and bytes currently held. */
  entries: number;
  bytes: number;
}

export interface BlockCache {
  get(key: string): Promise<Buffer | undefined>;
  put(key: string, data: Buffer): Promise<void>;
  delete(key: string): Promise<void>;
  stats(): CacheStats;
  /** Idempotent. A disk cache flushes its index so that entries survive a restart. */
  close(): Promise<void>;
}

/** Plain bytes [start, start + data.length) of a block (declared by chunk/, which hands them to readers). */
export type { BlockPart };

/**
 * Optional capability of caches that can read part of a block (the disk cache: its files use the block codec,
 * whose versions 2 and 3 are striped). `getRange` returns verified plain bytes covering [from, to) of the block
 * `key` of `plainBytes` bytes — possibly more, with their start — or undefined on a miss, under the same
 * promises as `get` (a copy that fails verification is dropped and counted, never returned).
 */
export interface RangedBlockCache {
  getRange(key: string, plainBytes: number, from: number, to: number): Promise<BlockPart | undefined>;
}

export function canGetRange(cache: BlockCache): cache is BlockCache & RangedBlockCache {
  return typeof (cache as Partial<RangedBlockCache>).getRange === 'function';
}

/**
 * Optional capability of caches that store blocks in the block codec (the disk cache): `putEncoded` caches the
 * block `key` given as `encoded`, a whole verified codec object whose last `plainBytes` bytes are its plain
 * bytes (a block stored without compression), under the same promises as `put` — except that the cache may
 * keep a reference to `encoded` instead of a copy: the caller must never modify it. It saves the cache a copy
 * and a checksum pass over a block that was just fetched and verified.
 */
export interface EncodedBlockCache {
  putEncoded(key: string, encoded: Buffer, plainBytes: number): Promise<void>;
}

export function canPutEncoded(cache: BlockCache): cache is BlockCache & EncodedBlockCache {
  return typeof (cache as Partial<EncodedBlockCache>).putEncoded === 'function';
}
