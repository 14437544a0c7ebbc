/**
 * MemStore: the reference ObjectStore, held in process memory. `mem://NAME` stores with the same NAME share one
 * bucket for the life of the process (so a test can "reopen" a volume); `mem://` is a fresh private bucket.
 * Buffers are copied in and out: no caller can change a stored object by mutating its own buffer.
 */

import { assert } from '../errors.js';
import {
  compareKeys,
  resolveListLimit,
  resolveRange,
  validateKey,
  ObjectNotFoundError,
  type CallOptions,
  type GetOptions,
  type ListOptions,
  type ListPage,
  type ObjectInfo,
  type ObjectStore,
} from './store.js';

interface Entry {
  data: Buffer;
  mtime: number;
}

interface Bucket {
  objects: Map<string, Entry>;
  /** Every key of `objects`, kept sorted by compareKeys so a list page costs O(log n + limit). */
  keys: string[];
}

const namedBuckets = new Map<string, Bucket>();

export class MemStore implements ObjectStore {
  readonly description: string;
  private readonly bucket: Bucket;
  private closed = false;

  /** `name` '' gives a private bucket; any other name shares the bucket of that name within the process. */
  constructor(name = '') {
    this.description = `mem://${name}`;
    if (name === '') {
      this.bucket = newBucket();
    } else {
      let bucket = namedBuckets.get(name);
      if (bucket === undefined) {
        bucket = newBucket();
        namedBuckets.set(name, bucket);
      }
      this.bucket = bucket;
    }
  }

  /** Drops a named bucket's contents; stores already open on it keep the old objects. For tests. */
  static forget(name: string): void {
    namedBuckets.delete(name);
  }

  async get(key: string, options?: GetOptions): Promise<Buffer> {
    this.enter(key, options);
    const entry = this.bucket.objects.get(key);
    if (entry === undefined) throw new ObjectNotFoundError(key);
    const [start, end] = resolveRange(entry.data.length, options);
    return copyOf(entry.data.subarray(start, end));
  }

  async put(key: string, data: Buffer, options?: CallOptions): Promise<void> {
    this.enter(key, options);
    const { objects, keys } = this.bucket;
    if (!objects.has(key)) keys.splice(lowerBound(keys, key), 0, key);
    objects.set(key, { data: copyOf(data), mtime: Date.now() });
  }

  async head(key: string, options?: CallOptions): Promise<ObjectInfo> {
    this.enter(key, options);
    const entry = this.bucket.objects.get(key);
    if (entry === undefined) throw new ObjectNotFoundError(key);
    return { key, size: entry.data.length, mtime: entry.mtime };
  }

  async delete(key: string, options?: CallOptions): Promise<void> {
    this.enter(key, options);
    const { objects, keys } = this.bucket;
    if (!objects.delete(key)) return;
    const i = lowerBound(keys, key);
    assert(keys[i] === key, 'mem store key index out of step with its map');
    keys.splice(i, 1);
  }

  async list(prefix: string, options?: ListOptions): Promise<ListPage> {
    this.enter(undefined, options);
    const limit = resolveListLimit(options?.limit);
    const { objects, keys } = this.bucket;
    // Keys sharing a prefix are contiguous in code point order, so the page is one run of `keys`.
    let i = lowerBound(keys, prefix);
    const startAfter = options?.startAfter;
    if (startAfter !== undefined) i = Math.max(i, upperBound(keys, startAfter));
    const page: ObjectInfo[] = [];
    for (; i < keys.length && page.length < limit; i++) {
      const key = keys[i]!;
      if (!key.startsWith(prefix)) break;
      const entry = objects.get(key)!;
      page.push({ key, size: entry.data.length, mtime: entry.mtime });
    }
    const next = keys[i];
    return { objects: page, more: next !== undefined && next.startsWith(prefix) };
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private enter(key: string | undefined, options: CallOptions | undefined): void {
    if (this.closed) throw new Error(`object store ${this.description} is closed`);
    options?.signal?.throwIfAborted();
    if (key !== undefined) validateKey(key);
  }
}

function newBucket(): Bucket {
  return { objects: new Map(), keys: [] };
}

/** An unpooled copy: a small stored object must not pin a shared 8 KiB pool slab. */
function copyOf(data: Uint8Array): Buffer {
  const copy = Buffer.allocUnsafeSlow(data.length);
  copy.set(data);
  return copy;
}

/** First index whose key is >= key. */
function lowerBound(keys: string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareKeys(keys[mid]!, key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First index whose key is > key. */
function upperBound(keys: string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareKeys(keys[mid]!, key) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
