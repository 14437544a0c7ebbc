/**
 * PrefixStore: a view of the keys under one prefix of another store, so several volumes can share a bucket.
 * Key `k` is stored as `prefix + k`; list strips the prefix and never shows keys outside it.
 */

import {
  validateKey,
  ObjectNotFoundError,
  type CallOptions,
  type GetOptions,
  type ListOptions,
  type ListPage,
  type ObjectInfo,
  type ObjectStore,
} from './store.js';
import { assert } from '../errors.js';

export class PrefixStore implements ObjectStore {
  readonly description: string;
  private readonly inner: ObjectStore;
  private readonly prefix: string;

  /** `prefix` is one or more whole key segments ending in '/', like 'vol1/' or 'team/vol1/'. */
  constructor(inner: ObjectStore, prefix: string) {
    if (!prefix.endsWith('/')) throw new RangeError(`store prefix must end with '/', got ${JSON.stringify(prefix)}`);
    validateKey(prefix.substring(0, prefix.length - 1));
    this.inner = inner;
    this.prefix = prefix;
    this.description = `${inner.description} (prefix ${prefix})`;
  }

  async get(key: string, options?: GetOptions): Promise<Buffer> {
    return this.inner.get(this.full(key), options).catch((err: unknown) => this.unprefixed(err, key));
  }

  async put(key: string, data: Buffer, options?: CallOptions): Promise<void> {
    return this.inner.put(this.full(key), data, options);
  }

  async head(key: string, options?: CallOptions): Promise<ObjectInfo> {
    const info = await this.inner.head(this.full(key), options).catch((err: unknown) => this.unprefixed(err, key));
    return { ...info, key };
  }

  async delete(key: string, options?: CallOptions): Promise<void> {
    return this.inner.delete(this.full(key), options);
  }

  async list(prefix: string, options?: ListOptions): Promise<ListPage> {
    const startAfter = options?.startAfter;
    const page = await this.inner.list(this.prefix + prefix, {
      ...options,
      startAfter: startAfter === undefined ? undefined : this.prefix + startAfter,
    });
    return {
      objects: page.objects.map((info) => {
        assert(info.key.startsWith(this.prefix), `inner store listed ${info.key} outside prefix ${this.prefix}`);
        return { ...info, key: info.key.substring(this.prefix.length) };
      }),
      more: page.more,
    };
  }

  async close(): Promise<void> {
    return this.inner.close();
  }

  /** Rethrows err, naming the caller's key rather than the inner one when it is a not-found. */
  private unprefixed(err: unknown, key: string): never {
    if (err instanceof ObjectNotFoundError && err.key === this.prefix + key) throw new ObjectNotFoundError(key);
    throw err;
  }

  /** Validates the key as the caller wrote it, so that no key can reach outside the prefix. */
  private full(key: string): string {
    validateKey(key);
    return this.prefix + key;
  }
}
