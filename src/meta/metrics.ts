/**
 * MetricsEngine: times every transaction of the engine it wraps (as its caller sees it: above RetryEngine, so
 * with its retries) in the client's metric families (obs/metrics.ts), labelled by engine scheme (sqlite,
 * redis, postgres, ...) and mode (read: `readonly` transactions; write: the rest). Everything else is
 * forwarded unchanged.
 */

import type { Counter, Histogram } from 'prom-client';
import type { ClientMetrics } from '../obs/metrics.js';
import { ForwardingEngine, type Commit, type MetaEngine, type Txn, type TxnOptions } from './engine.js';

/** The scheme of an engine's description ("sqlite:///x.db" -> "sqlite"), "unknown" without one. */
export function engineScheme(description: string): string {
  return /^([a-z][a-z0-9+.-]*):/i.exec(description)?.[1]?.toLowerCase() ?? 'unknown';
}

export class MetricsEngine extends ForwardingEngine {
  private readonly seconds: Histogram<'engine' | 'mode'>;
  private readonly errors: Counter<'engine' | 'mode'>;
  private readonly read: { engine: string; mode: string };
  private readonly write: { engine: string; mode: string };

  constructor(inner: MetaEngine, metrics: ClientMetrics, engine = engineScheme(inner.description)) {
    super(inner);
    this.seconds = metrics.metaTxnSeconds;
    this.errors = metrics.metaTxnErrors;
    this.read = { engine, mode: 'read' };
    this.write = { engine, mode: 'write' };
    // Every series exists from the start (at 0), so that rates and alerts see the first failure.
    this.errors.inc(this.read, 0);
    this.errors.inc(this.write, 0);
  }

  override async commit<R>(fn: (tx: Txn) => Promise<R>, options?: TxnOptions): Promise<Commit<R>> {
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
}
