/**
 * FaultEngine: a MetaEngine wrapper that injects what a metadata server across a network shows, reproducibly
 * from a seed, for tests (the engine's counterpart of object/faults.ts).
 *
 * Each transaction draws the same number of random values at entry, before any await, so the faults a run
 * sees depend only on the seed and the order of calls. Per transaction, in this order:
 *
 *   down (setDown / blackout)  → EngineUnavailableError, nothing done
 *   latencyMs [min, max]       → waits before the transaction starts (the request's way there)
 *   errorRate                  → EngineUnavailableError: a share errorAfterRatio (default half) of them
 *                                *after* its commit (it landed, the caller sees an error: the answer was lost
 *                                on the way back; outcome 'unknown'), the others *before* the transaction
 *                                (nothing done; outcome 'none')
 *   replyLatencyMs [min, max]  → waits after the transaction ran, before its result is handed back (the
 *                                answer's way back: what it read may be stale by the time it arrives)
 *
 * Log, snapshot, consumer and admin calls (lastSeq, readLog, pruneLog, ...) see `down` (outcome 'none') and
 * the latencies, not the error rate.
 */

import { mulberry32 } from '../util/random.js';
import { sleep } from '../util/sleep.js';
import {
  EngineUnavailableError,
  MetaEngineBase,
  type Commit,
  type ConsumerInfo,
  type LogBounds,
  type LogEntry,
  type LogOp,
  type MetaEngine,
  type PruneOptions,
  type PruneResult,
  type Txn,
  type TxnOptions,
} from './engine.js';

/** Kept here for callers that import it with the fault wrapper; it is every engine's (engine.ts). */
export { EngineUnavailableError } from './engine.js';

export interface EngineFaultOptions {
  seed: number;
  /** Probability in [0, 1] that a transaction fails with EngineUnavailableError (before or after its commit). */
  errorRate?: number | undefined;
  /** Of those failures, the share that happens after the commit (outcome unknown); default 0.5. */
  errorAfterRatio?: number | undefined;
  /** Added latency before each call, uniform in [min, max] ms. */
  latencyMs?: readonly [min: number, max: number] | undefined;
  /** Added latency after each call, before its result is returned, uniform in [min, max] ms. */
  replyLatencyMs?: readonly [min: number, max: number] | undefined;
  /** Only read-only transactions get replyLatencyMs (a slow reader beside prompt writers). */
  replyLatencyReadsOnly?: boolean | undefined;
}

export interface EngineFaultStats {
  txns: number;
  refused: number;
  errorsBefore: number;
  errorsAfter: number;
}

interface Plan {
  error: number;
  errorAfter: number;
  latency: number;
  reply: number;
}

export class FaultEngine extends MetaEngineBase {
  readonly description: string;
  readonly seed: number;
  private readonly inner: MetaEngine;
  private readonly random: () => number;
  private readonly errorRate: number;
  private readonly errorAfterRatio: number;
  private latencyMs: readonly [number, number] | undefined;
  private replyLatencyMs: readonly [number, number] | undefined;
  private readonly replyReadsOnly: boolean;
  private down = false;
  private downUntil = 0;
  private readonly counters: EngineFaultStats = { txns: 0, refused: 0, errorsBefore: 0, errorsAfter: 0 };

  constructor(inner: MetaEngine, options: EngineFaultOptions) {
    super();
    this.inner = inner;
    this.seed = options.seed;
    this.random = mulberry32(options.seed);
    const r = options.errorRate ?? 0;
    if (!(r >= 0 && r <= 1)) throw new RangeError(`errorRate must be in [0, 1], got ${r}`);
    this.errorRate = r;
    const after = options.errorAfterRatio ?? 0.5;
    if (!(after >= 0 && after <= 1)) throw new RangeError(`errorAfterRatio must be in [0, 1], got ${after}`);
    this.errorAfterRatio = after;
    this.latencyMs = checkRange('latencyMs', options.latencyMs);
    this.replyLatencyMs = checkRange('replyLatencyMs', options.replyLatencyMs);
    this.replyReadsOnly = options.replyLatencyReadsOnly ?? false;
    this.description = inner.description;
  }

  /** Every call fails with EngineUnavailableError until setDown(false). */
  setDown(down: boolean): void {
    this.down = down;
    if (!down) this.downUntil = 0;
  }

  /** Every call fails for the next ms milliseconds. */
  blackout(ms: number): void {
    this.downUntil = Math.max(this.downUntil, Date.now() + ms);
  }

  /** Changes the latencies from now on (undefined: none). */
  setLatency(latencyMs: readonly [number, number] | undefined, replyLatencyMs?: readonly [number, number]): void {
    this.latencyMs = checkRange('latencyMs', latencyMs);
    this.replyLatencyMs = checkRange('replyLatencyMs', replyLatencyMs);
  }

  stats(): EngineFaultStats {
    return { ...this.counters };
  }

  async commit<R>(fn: (tx: Txn) => Promise<R>, options?: TxnOptions): Promise<Commit<R>> {
    this.counters.txns++;
    const plan: Plan = { error: this.random(), errorAfter: this.random(), latency: this.random(), reply: this.random() };
    // The reply's latency is the one in force when the call began (a later setLatency does not change it).
    const replyLatency = this.replyLatencyMs;
    await this.before('txn', plan.latency);
    const fail = plan.error < this.errorRate;
    if (fail && plan.errorAfter < 1 - this.errorAfterRatio) {
      this.counters.errorsBefore++;
      throw new EngineUnavailableError('injected fault: transaction failed before reaching the engine', 'none');
    }
    const r = await this.inner.commit(fn, options);
    if (fail) {
      this.counters.errorsAfter++;
      throw new EngineUnavailableError('injected fault: the engine committed, but its answer was lost', 'unknown');
    }
    if (!this.replyReadsOnly || options?.readonly === true) await this.wait(replyLatency, plan.reply);
    return r;
  }

  async lastSeq(): Promise<number> {
    return this.call('lastSeq', () => this.inner.lastSeq());
  }

  async readLog(after: number, limit: number): Promise<LogEntry[]> {
    return this.call('readLog', () => this.inner.readLog(after, limit));
  }

  async trimLog(upTo: number): Promise<void> {
    return this.call('trimLog', () => this.inner.trimLog(upTo));
  }

  async logFloor(): Promise<number> {
    return this.call('logFloor', () => this.inner.logFloor());
  }

  async logBounds(): Promise<LogBounds> {
    return this.call('logBounds', () => this.inner.logBounds());
  }

  async applyLog(entries: LogEntry[]): Promise<void> {
    return this.call('applyLog', () => this.inner.applyLog(entries));
  }

  async snapshot(onRecord: (op: LogOp) => Promise<void> | void): Promise<{ seq: number }> {
    return this.call('snapshot', () => this.inner.snapshot(onRecord));
  }

  async restore(records: AsyncIterable<LogOp>, seq: number): Promise<void> {
    return this.call('restore', () => this.inner.restore(records, seq));
  }

  async reset(): Promise<void> {
    return this.call('reset', () => this.inner.reset());
  }

  async registerConsumer(name: string, position: number): Promise<void> {
    return this.call('registerConsumer', () => this.inner.registerConsumer(name, position));
  }

  async advanceConsumer(name: string, position: number): Promise<void> {
    return this.call('advanceConsumer', () => this.inner.advanceConsumer(name, position));
  }

  async listConsumers(): Promise<ConsumerInfo[]> {
    return this.call('listConsumers', () => this.inner.listConsumers());
  }

  async removeConsumer(name: string): Promise<boolean> {
    return this.call('removeConsumer', () => this.inner.removeConsumer(name));
  }

  async pruneLog(options?: PruneOptions): Promise<PruneResult> {
    return this.call('pruneLog', () => this.inner.pruneLog(options));
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const latency = this.random();
    const reply = this.random();
    const replyLatency = this.replyLatencyMs;
    await this.before(what, latency);
    const r = await fn();
    await this.wait(replyLatency, reply);
    return r;
  }

  private async before(what: string, draw: number): Promise<void> {
    if (this.down || Date.now() < this.downUntil) {
      this.counters.refused++;
      throw new EngineUnavailableError(`injected fault: engine down (${what})`, 'none');
    }
    await this.wait(this.latencyMs, draw);
  }

  private async wait(range: readonly [number, number] | undefined, draw: number): Promise<void> {
    if (range === undefined) return;
    const ms = range[0] + draw * (range[1] - range[0]);
    if (ms > 0) await sleep(ms);
  }
}

function checkRange(name: string, r: readonly [number, number] | undefined): readonly [number, number] | undefined {
  if (r === undefined) return undefined;
  if (!(r[0] >= 0 && r[1] >= r[0])) throw new RangeError(`${name} must be [min, max] with 0 <= min <= max, got [${r[0]}, ${r[1]}]`);
  return r;
}
