/**
 * MetricsEngine: times every call of the engine it wraps that reaches the store (as its caller sees it: above
 * RetryEngine, so with its retries) in the client's metric families (obs/metrics.ts): transactions, and the
 * changelog calls that are transactions of their own (readLog, applyLog, snapshot, restore, consumers, ...).
 * Labels: the engine scheme (sqlite, redis, postgres, ...), its role for this process (primary: the volume's
 * primary engine; replica: a mirror region's replica) and the mode (read: `readonly` transactions and calls
 * that only read; write: the rest). A snapshot is timed with its callback, as the read transaction it holds
 * open that long. close() and the description are forwarded unmeasured. An error counts when the engine
 * failed (unreachable, conflicts past their retries, fenced, ...): an FsError thrown by the transaction's
 * function (ENOENT, EEXIST: the POSIX answer it computed) is an answer, not a failed transaction.
 */

import type { Counter, Histogram } from 'prom-client';
import { FsError } from '../errors.js';
import type { ClientMetrics } from '../obs/metrics.js';
import { ForwardingEngine, type Commit, type ConsumerInfo, type LogBounds, type LogEntry, type LogOp, type MetaEngine, type PruneOptions, type PruneResult, type Txn, type TxnOptions } from './engine.js';

/** The scheme of an engine's description ("sqlite:///x.db" -> "sqlite"), "unknown" without one. */
export function engineScheme(description: string): string {
  return /^([a-z][a-z0-9+.-]*):/i.exec(description)?.[1]?.toLowerCase() ?? 'unknown';
}

export type EngineRole = 'primary' | 'replica';

export interface MetricsEngineOptions {
  /** The `engine` label (default: the scheme of the engine's description). */
  engine?: string;
  /** Default 'primary'. */
  role?: EngineRole;
}

type Labels = { engine: string; role: string; mode: string };

export class MetricsEngine extends ForwardingEngine {
  private readonly seconds: Histogram<'engine' | 'role' | 'mode'>;
  private readonly errors: Counter<'engine' | 'role' | 'mode'>;
  private readonly read: Labels;
  private readonly write: Labels;

  constructor(inner: MetaEngine, metrics: ClientMetrics, o: MetricsEngineOptions = {}) {
    super(inner);
    this.seconds = metrics.metaTxnSeconds;
    this.errors = metrics.metaTxnErrors;
    const engine = o.engine ?? engineScheme(inner.description);
    const role = o.role ?? 'primary';
    this.read = { engine, role, mode: 'read' };
    this.write = { engine, role, mode: 'write' };
    // Every series exists from the start (at 0), so that rates and alerts see the first failure.
    this.errors.inc(this.read, 0);
    this.errors.inc(this.write, 0);
  }

  private async timed<R>(labels: Labels, call: () => Promise<R>): Promise<R> {
    const t0 = performance.now();
    try {
      return await call();
    } catch (err) {
      if (!(err instanceof FsError)) this.errors.inc(labels);
      throw err;
    } finally {
      this.seconds.observe(labels, (performance.now() - t0) / 1000);
    }
  }

  override commit<R>(fn: (tx: Txn) => Promise<R>, options?: TxnOptions): Promise<Commit<R>> {
    return this.timed(options?.readonly === true ? this.read : this.write, () => this.inner.commit(fn, options));
  }
  override lastSeq(): Promise<number> {
    return this.timed(this.read, () => this.inner.lastSeq());
  }
  override readLog(after: number, limit: number): Promise<LogEntry[]> {
    return this.timed(this.read, () => this.inner.readLog(after, limit));
  }
  override trimLog(upTo: number): Promise<void> {
    return this.timed(this.write, () => this.inner.trimLog(upTo));
  }
  override logFloor(): Promise<number> {
    return this.timed(this.read, () => this.inner.logFloor());
  }
  override logBounds(): Promise<LogBounds> {
    return this.timed(this.read, () => this.inner.logBounds());
  }
  override applyLog(entries: LogEntry[]): Promise<void> {
    return this.timed(this.write, () => this.inner.applyLog(entries));
  }
  override snapshot(onRecord: (op: LogOp) => Promise<void> | void): Promise<{ seq: number }> {
    return this.timed(this.read, () => this.inner.snapshot(onRecord));
  }
  override restore(records: AsyncIterable<LogOp>, seq: number): Promise<void> {
    return this.timed(this.write, () => this.inner.restore(records, seq));
  }
  override reset(): Promise<void> {
    return this.timed(this.write, () => this.inner.reset());
  }
  override registerConsumer(name: string, position: number): Promise<void> {
    return this.timed(this.write, () => this.inner.registerConsumer(name, position));
  }
  override advanceConsumer(name: string, position: number): Promise<void> {
    return this.timed(this.write, () => this.inner.advanceConsumer(name, position));
  }
  override listConsumers(): Promise<ConsumerInfo[]> {
    return this.timed(this.read, () => this.inner.listConsumers());
  }
  override removeConsumer(name: string): Promise<boolean> {
    return this.timed(this.write, () => this.inner.removeConsumer(name));
  }
  override pruneLog(options?: PruneOptions): Promise<PruneResult> {
    return this.timed(this.write, () => this.inner.pruneLog(options));
  }
}
