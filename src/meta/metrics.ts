/**
 * MetricsEngine: times every transaction of the engine it wraps (as its caller sees it: above RetryEngine, so
 * with its retries) in the client's metric families (obs/metrics.ts), labelled by engine scheme (sqlite,
 * redis, postgres, ...) and mode (read: `readonly` transactions; write: the rest). Everything else is
 * forwarded unchanged.
 */

import type { Counter, Histogram } from 'prom-client';
import type { ClientMetrics } from '../obs/metrics.js';
import { MetaEngineBase, type Commit, type ConsumerInfo, type LogBounds, type LogEntry, type LogOp, type MetaEngine, type PruneOptions, type PruneResult, type Txn, type TxnOptions } from './engine.js';

/** The scheme of an engine's description ("sqlite:///x.db" -> "sqlite"), "unknown" without one. */
export function engineScheme(description: string): string {
  return /^([a-z][a-z0-9+.-]*):/i.exec(description)?.[1]?.toLowerCase() ?? 'unknown';
}

export class MetricsEngine extends MetaEngineBase {
  readonly description: string;
  private readonly inner: MetaEngine;
  private readonly seconds: Histogram<'engine' | 'mode'>;
  private readonly errors: Counter<'engine' | 'mode'>;
  private readonly read: { engine: string; mode: string };
  private readonly write: { engine: string; mode: string };

  constructor(inner: MetaEngine, metrics: ClientMetrics, engine = engineScheme(inner.description)) {
    super();
    this.inner = inner;
    this.description = inner.description;
    this.seconds = metrics.metaTxnSeconds;
    this.errors = metrics.metaTxnErrors;
    this.read = { engine, mode: 'read' };
    this.write = { engine, mode: 'write' };
    // Every series exists from the start (at 0), so that rates and alerts see the first failure.
    this.errors.inc(this.read, 0);
    this.errors.inc(this.write, 0);
  }

  async commit<R>(fn: (tx: Txn) => Promise<R>, options?: TxnOptions): Promise<Commit<R>> {
    const labels = options?.readonly === true ? this.read : this.write;
    const t0 = performance.now();
    try {
      return await this.inner.commit(fn, options);
    } catch (err) {
      this.errors.inc(labels);
      throw err;
    } finally {
      this.seconds.observe(labels, (performance.now() - t0) / 1000);
    }
  }

  lastSeq(): Promise<number> {
    return this.inner.lastSeq();
  }

  readLog(after: number, limit: number): Promise<LogEntry[]> {
    return this.inner.readLog(after, limit);
  }

  trimLog(upTo: number): Promise<void> {
    return this.inner.trimLog(upTo);
  }

  logFloor(): Promise<number> {
    return this.inner.logFloor();
  }

  logBounds(): Promise<LogBounds> {
    return this.inner.logBounds();
  }

  applyLog(entries: LogEntry[]): Promise<void> {
    return this.inner.applyLog(entries);
  }

  snapshot(onRecord: (op: LogOp) => Promise<void> | void): Promise<{ seq: number }> {
    return this.inner.snapshot(onRecord);
  }

  restore(records: AsyncIterable<LogOp>, seq: number): Promise<void> {
    return this.inner.restore(records, seq);
  }

  reset(): Promise<void> {
    return this.inner.reset();
  }

  registerConsumer(name: string, position: number): Promise<void> {
    return this.inner.registerConsumer(name, position);
  }

  advanceConsumer(name: string, position: number): Promise<void> {
    return this.inner.advanceConsumer(name, position);
  }

  listConsumers(): Promise<ConsumerInfo[]> {
    return this.inner.listConsumers();
  }

  removeConsumer(name: string): Promise<boolean> {
    return this.inner.removeConsumer(name);
  }

  pruneLog(options?: PruneOptions): Promise<PruneResult> {
    return this.inner.pruneLog(options);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
