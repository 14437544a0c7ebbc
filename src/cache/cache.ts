/**
 * The block cache contract, implemented by the memory cache and the local disk cache (and checked by
 * test/cache/conformance.ts). A cache holds *plain* block bytes (decoded, verified) by block key.
 *
 * Promises:
 * - `get` returns exactly the bytes that were `put` under the key, or undefined. A copy that fails its own
 *   verification is dropped, counted in `stats().corrupt`, and reported as a miss — never returned.
 * - `put` may decline (entry larger than capacity, disk below its free-space floor); a declined put is not an
 *   error. Capacity is enforced by evicting least-recently-used entries.
 * - Caches are advisory: any call may lose entries; none may return wrong bytes.
 */

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
