/**
 * MetricsStore: times every call of the store it wraps (one attempt each: it sits below RetryStore) and counts
 * its bytes and failures in the client's metric families (obs/metrics.ts), labelled by the region and bucket
 * it serves. Pure observation: results, errors and capabilities pass through unchanged.
 */

import type { Counter, Histogram } from 'prom-client';
import type { ClientMetrics } from '../obs/metrics.js';
import { canPutChecked, canSweepTemp, isRetryable, ObjectNotFoundError, type CallOptions, type GetOptions, type PutCheckedOptions, type ListOptions, type ListPage, type ObjectInfo, type ObjectStore } from './store.js';

const OPS = ['get', 'put', 'head', 'delete', 'list'] as const;
type Op = (typeof OPS)[number];

export class MetricsStore implements ObjectStore {
  readonly description: string;
  private readonly inner: ObjectStore;
  private readonly labels: { region: string; bucket: string };
  /** The timing series' labels per op, built once (not a spread per call). */
  private readonly opLabels: Record<Op, { region: string; bucket: string; op: Op }>;
  private readonly seconds: Histogram<'region' | 'bucket' | 'op'>;
  private readonly errors: Counter<'region' | 'bucket' | 'op' | 'kind'>;
  private readonly readBytes: Counter<'region' | 'bucket'>;
  private readonly writtenBytes: Counter<'region' | 'bucket'>;

  /** `region`: the region whose bucket this is; the bucket label is the store's (masked) description. */
  constructor(inner: ObjectStore, metrics: ClientMetrics, region: string) {
    this.inner = inner;
    this.description = inner.description;
    this.labels = { region, bucket: inner.description };
    this.opLabels = Object.fromEntries(OPS.map((op) => [op, { ...this.labels, op }])) as Record<Op, { region: string; bucket: string; op: Op }>;
    this.seconds = metrics.objectRequestSeconds;
    this.errors = metrics.objectErrors;
    this.readBytes = metrics.objectReadBytes;
    this.writtenBytes = metrics.objectWrittenBytes;
    // Every series exists from the start (at 0), so that rates and alerts see the first failure.
    for (const op of OPS) for (const kind of ['notfound', 'transient', 'other']) this.errors.inc({ ...this.labels, op, kind }, 0);
    metrics.objectRetries.inc(this.labels, 0);
    this.readBytes.inc(this.labels, 0);
    this.writtenBytes.inc(this.labels, 0);
  }

  get(key: string, options?: GetOptions): Promise<Buffer> {
    return this.time('get', async () => {
      const data = await this.inner.get(key, options);
      this.readBytes.inc(this.labels, data.length);
      return data;
    });
  }

  put(key: string, data: Buffer, options?: CallOptions): Promise<void> {
    return this.time('put', async () => {
      await this.inner.put(key, data, options);
      this.writtenBytes.inc(this.labels, data.length);
    });
  }

  /** CheckedPutter, forwarded (a plain put answering undefined when the inner store cannot compare digests). */
  putChecked(key: string, data: Buffer, options?: PutCheckedOptions): Promise<boolean | undefined> {
    const inner = this.inner;
    return this.time('put', async () => {
      const r = canPutChecked(inner) ? await inner.putChecked(key, data, options) : await inner.put(key, data, options).then(() => undefined);
      this.writtenBytes.inc(this.labels, data.length);
      return r;
    });
  }

  head(key: string, options?: CallOptions): Promise<ObjectInfo> {
    return this.time('head', () => this.inner.head(key, options));
  }

  delete(key: string, options?: CallOptions): Promise<void> {
    return this.time('delete', () => this.inner.delete(key, options));
  }

  list(prefix: string, options?: ListOptions): Promise<ListPage> {
    return this.time('list', () => this.inner.list(prefix, options));
  }

  sweepTemp(olderThanMs: number): Promise<number> {
    return canSweepTemp(this.inner) ? this.inner.sweepTemp(olderThanMs) : Promise.resolve(0);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async time<T>(op: Op, fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await fn();
    } catch (err) {
      const kind = err instanceof ObjectNotFoundError ? 'notfound' : isRetryable(err) ? 'transient' : 'other';
      this.errors.inc({ ...this.labels, op, kind });
      throw err;
    } finally {
      this.seconds.observe(this.opLabels[op], (performance.now() - t0) / 1000);
    }
  }
}
