/**
 * A store wrapper that counts what passes through it: GETs and the bytes they returned, PUTs and their bytes.
 * For tests and benchmarks that must know what a bucket served (not what a client thinks it read), and for the
 * egress figures a deployment multiplies by its provider's price. Counting never changes an answer.
 */

import type { CallOptions, GetOptions, ListOptions, ListPage, ObjectInfo, ObjectStore } from './store.js';

export interface TrafficStats {
  gets: number;
  getBytes: number;
  puts: number;
  putBytes: number;
}

export class CountingStore implements ObjectStore {
  readonly description: string;
  readonly inner: ObjectStore;
  readonly traffic: TrafficStats = { gets: 0, getBytes: 0, puts: 0, putBytes: 0 };

  constructor(inner: ObjectStore) {
    this.inner = inner;
    this.description = inner.description;
  }

  async get(key: string, options?: GetOptions): Promise<Buffer> {
    const data = await this.inner.get(key, options);
    this.traffic.gets++;
    this.traffic.getBytes += data.length;
    return data;
  }

  async put(key: string, data: Buffer, options?: CallOptions): Promise<void> {
    await this.inner.put(key, data, options);
    this.traffic.puts++;
    this.traffic.putBytes += data.length;
  }

  head(key: string, options?: CallOptions): Promise<ObjectInfo> {
    return this.inner.head(key, options);
  }

  delete(key: string, options?: CallOptions): Promise<void> {
    return this.inner.delete(key, options);
  }

  list(prefix: string, options?: ListOptions): Promise<ListPage> {
    return this.inner.list(prefix, options);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
