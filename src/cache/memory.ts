/**
 * The reference BlockCache: blocks in process memory, least recently used evicted first (a Map keeps
 * insertion order, and a hit re-inserts its entry at the end). It stores a copy of what is put and returns a
 * copy on get, so no caller can change a cached block through a buffer it holds.
 */

import type { BlockCache, CacheStats } from './cache.js';

export interface MemoryBlockCacheOptions {
  /** Total bytes of block data held; 0 disables the cache (every put is declined). */
  capacityBytes: number;
  /**
   * Keep and return the caller's buffers instead of copies. Only for owners that never modify a buffer
   * after putting it or after getting it (the chunk store: blocks are immutable) — it saves two copies of
   * every block read.
   */
  shareBuffers?: boolean;
}

export function checkCapacityBytes(capacityBytes: unknown): number {
  if (typeof capacityBytes !== 'number' || !Number.isSafeInteger(capacityBytes) || capacityBytes < 0) {
    throw new RangeError(`capacityBytes must be a non-negative safe integer, got ${String(capacityBytes)}`);
  }
  return capacityBytes;
}

export class MemoryBlockCache implements BlockCache {
  readonly capacityBytes: number;
  readonly #entries = new Map<string, Buffer>();
  #bytes = 0;
  #hits = 0;
  #misses = 0;
  #evictions = 0;
  readonly #share: boolean;

  constructor(options: MemoryBlockCacheOptions) {
    this.capacityBytes = checkCapacityBytes(options.capacityBytes);
    this.#share = options.shareBuffers ?? false;
  }

  get(key: string): Promise<Buffer | undefined> {
    const data = this.#entries.get(key);
    if (data === undefined) {
      this.#misses++;
      return Promise.resolve(undefined);
    }
    this.#hits++;
    this.#entries.delete(key);
    this.#entries.set(key, data);
    return Promise.resolve(this.#share ? data : Buffer.from(data));
  }

  put(key: string, data: Buffer): Promise<void> {
    this.#remove(key);
    // A declined put leaves no older copy behind under the key.
    if (this.capacityBytes === 0 || data.length > this.capacityBytes) return Promise.resolve();
    this.#entries.set(key, this.#share ? data : Buffer.from(data));
    this.#bytes += data.length;
    for (const [oldest, old] of this.#entries) {
      if (this.#bytes <= this.capacityBytes) break;
      this.#entries.delete(oldest);
      this.#bytes -= old.length;
      this.#evictions++;
    }
    return Promise.resolve();
  }

  delete(key: string): Promise<void> {
    this.#remove(key);
    return Promise.resolve();
  }

  stats(): CacheStats {
    return {
      hits: this.#hits,
      misses: this.#misses,
      corrupt: 0,
      evictions: this.#evictions,
      entries: this.#entries.size,
      bytes: this.#bytes,
    };
  }

  /** Idempotent; drops every entry. */
  close(): Promise<void> {
    this.#entries.clear();
    this.#bytes = 0;
    return Promise.resolve();
  }

  #remove(key: string): void {
    const old = this.#entries.get(key);
    if (old === undefined) return;
    this.#entries.delete(key);
    this.#bytes -= old.length;
  }
}
