/**
 * RetryEngine: rides out an engine that is briefly unreachable (a restart, a failover, a blip of the WAN) by
 * retrying calls that failed with EngineUnavailableError, when retrying is safe. The engine's counterpart of
 * object/retry.ts; it sits above everything else that wraps an engine (a FaultEngine in tests).
 *
 * What is retried, by what a repeat could do:
 *
 *   reads        commit({readonly}), lastSeq, logFloor, logBounds, readLog, listConsumers: any
 *                EngineUnavailableError (a read changes nothing, whatever became of it)
 *   idempotent   trimLog, pruneLog, registerConsumer, advanceConsumer, removeConsumer, reset: any
 *                EngineUnavailableError (done twice is done once; removeConsumer may then answer false)
 *   once         a writing commit, applyLog: only outcome 'none' — nothing was committed. An 'unknown'
 *                outcome (the answer was lost after the commit was sent) is never retried: a second run of a
 *                create would report EEXIST for the file the first run made; it surfaces as the error it is
 *   snapshot     only while onRecord has not been called (a repeat would hand records twice)
 *   never        restore (its records are read once)
 *
 * Other errors (POSIX answers, conflicts the engine already retried, bugs) pass through at once.
 *
 * Backoff is util/sleep.ts's capped exponential with full jitter; a call gives up after attemptsMax
 * attempts or when the next wait would end past retryMsMax since it began, whichever comes first, throwing
 * the last error. A seeded `random` makes the waits reproducible.
 */

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
import { backoffMs, checkBackoff, sleep, type Backoff } from '../util/sleep.js';

export const ENGINE_RETRY_ATTEMPTS_MAX = 30;
export const ENGINE_RETRY_BACKOFF: Readonly<Backoff> = { baseMs: 50, capMs: 2000 };
/** No retry starts after a call has been failing this long. */
export const ENGINE_RETRY_MS_MAX = 30_000;

export interface EngineRetryOptions {
  /** Attempts per call, the first included; default ENGINE_RETRY_ATTEMPTS_MAX. */
  attemptsMax?: number | undefined;
  /** Default ENGINE_RETRY_BACKOFF. */
  backoff?: Backoff | undefined;
  /** Default ENGINE_RETRY_MS_MAX. */
  retryMsMax?: number | undefined;
  /** Floats in [0, 1) for jitter; default Math.random. */
  random?: (() => number) | undefined;
  /** Called before each wait; must not throw. */
  onRetry?: ((event: EngineRetryEvent) => void) | undefined;
}

export interface EngineRetryEvent {
  op: string;
  /** The attempt that failed, from 1. */
  attempt: number;
  delayMs: number;
  error: unknown;
}

export interface EngineRetryStats {
  /** Attempts repeated after a retryable failure. */
  retries: number;
  /** Calls that gave up with a retryable error (attempts or time ran out). */
  failures: number;
}

type Safety = 'read' | 'idempotent' | 'once';

/** Whether a call of this safety may run again after `err`. */
export function engineRetryable(err: unknown, safety: Safety): boolean {
  if (!(err instanceof EngineUnavailableError)) return false;
  return safety !== 'once' || err.outcome === 'none';
}

export class RetryEngine extends MetaEngineBase {
  readonly description: string;
  readonly inner: MetaEngine;
  private readonly attemptsMax: number;
  private readonly backoff: Backoff;
  private readonly retryMsMax: number;
  private readonly random: () => number;
  private readonly onRetry: ((event: EngineRetryEvent) => void) | undefined;
  private readonly counters: EngineRetryStats = { retries: 0, failures: 0 };

  constructor(inner: MetaEngine, options: EngineRetryOptions = {}) {
    super();
    this.inner = inner;
    this.description = inner.description;
    this.attemptsMax = options.attemptsMax ?? ENGINE_RETRY_ATTEMPTS_MAX;
    if (!Number.isSafeInteger(this.attemptsMax) || this.attemptsMax < 1) throw new RangeError(`attemptsMax must be an integer >= 1, got ${this.attemptsMax}`);
    this.backoff = checkBackoff(options.backoff ?? ENGINE_RETRY_BACKOFF, 'engine retry backoff');
    this.retryMsMax = options.retryMsMax ?? ENGINE_RETRY_MS_MAX;
    if (!(this.retryMsMax >= 0)) throw new RangeError(`retryMsMax must be >= 0, got ${this.retryMsMax}`);
    this.random = options.random ?? Math.random;
    this.onRetry = options.onRetry;
  }

  stats(): EngineRetryStats {
    return { ...this.counters };
  }

  commit<R>(fn: (tx: Txn) => Promise<R>, options?: TxnOptions): Promise<Commit<R>> {
    return this.call('commit', options?.readonly === true ? 'read' : 'once', () => this.inner.commit(fn, options));
  }

  lastSeq(): Promise<number> {
    return this.call('lastSeq', 'read', () => this.inner.lastSeq());
  }

  logFloor(): Promise<number> {
    return this.call('logFloor', 'read', () => this.inner.logFloor());
  }

  logBounds(): Promise<LogBounds> {
    return this.call('logBounds', 'read', () => this.inner.logBounds());
  }

  readLog(after: number, limit: number): Promise<LogEntry[]> {
    return this.call('readLog', 'read', () => this.inner.readLog(after, limit));
  }

  trimLog(upTo: number): Promise<void> {
    return this.call('trimLog', 'idempotent', () => this.inner.trimLog(upTo));
  }

  applyLog(entries: LogEntry[]): Promise<void> {
    return this.call('applyLog', 'once', () => this.inner.applyLog(entries));
  }

  snapshot(onRecord: (op: LogOp) => Promise<void> | void): Promise<{ seq: number }> {
    let handed = false;
    const counted = (op: LogOp): Promise<void> | void => {
      handed = true;
      return onRecord(op);
    };
    // 'read' until the first record is handed out, then 'once' with an outcome that is never 'none'.
    return this.call('snapshot', 'read', () => this.inner.snapshot(counted), () => !handed);
  }

  restore(records: AsyncIterable<LogOp>, seq: number): Promise<void> {
    return this.inner.restore(records, seq);
  }

  reset(): Promise<void> {
    return this.call('reset', 'idempotent', () => this.inner.reset());
  }

  registerConsumer(name: string, position: number): Promise<void> {
    return this.call('registerConsumer', 'idempotent', () => this.inner.registerConsumer(name, position));
  }

  advanceConsumer(name: string, position: number): Promise<void> {
    return this.call('advanceConsumer', 'idempotent', () => this.inner.advanceConsumer(name, position));
  }

  listConsumers(): Promise<ConsumerInfo[]> {
    return this.call('listConsumers', 'read', () => this.inner.listConsumers());
  }

  removeConsumer(name: string): Promise<boolean> {
    return this.call('removeConsumer', 'idempotent', () => this.inner.removeConsumer(name));
  }

  pruneLog(options?: PruneOptions): Promise<PruneResult> {
    return this.call('pruneLog', 'idempotent', () => this.inner.pruneLog(options));
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async call<T>(op: string, safety: Safety, attempt: () => Promise<T>, stillSafe: () => boolean = () => true): Promise<T> {
    const started = Date.now();
    for (let n = 1; ; n++) {
      try {
        return await attempt();
      } catch (err) {
        if (!engineRetryable(err, safety) || !stillSafe()) throw err;
        const delayMs = backoffMs(n, this.backoff, this.random);
        if (n >= this.attemptsMax || Date.now() + delayMs - started > this.retryMsMax) {
          this.counters.failures++;
          throw err;
        }
        this.counters.retries++;
        this.onRetry?.({ op, attempt: n, delayMs, error: err });
        await sleep(delayMs);
      }
    }
  }
}
