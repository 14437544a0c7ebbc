/**
 * RetryStore: retries a store's calls that failed with a retryable error or ran past a per-call deadline.
 *
 * - Every attempt gets its own deadline (`callTimeoutMs`) combined with the caller's signal. A store that
 *   ignores the signal is still abandoned at the deadline; its late result is dropped (a late put may land,
 *   which is harmless: puts are idempotent and atomic).
 * - A timeout counts as retryable. An abort by the caller is final and rethrows the caller's reason.
 * - Backoff is capped exponential with full jitter: before retry n the wait is drawn uniformly from
 *   [0, min(backoffMsMax, backoffMsMin * 2^(n-1))]. With a seeded `random` the waits are reproducible.
 * - Errors that are not retryable (not found, invalid key, access denied) pass through on the first attempt.
 *
 * Every ObjectStore call is idempotent, so every call may be retried.
 */

import { backoffMs, sleep } from '../util/sleep.js';
import { canPutChecked, canSweepTemp, isRetryable, TransientError, type CallOptions, type GetOptions, type PutCheckedOptions, type ListOptions, type ListPage, type ObjectInfo, type ObjectStore } from './store.js';

/** Re-exported for callers that import it from here; the helper lives in util/sleep.ts. */
export { sleep } from '../util/sleep.js';

export interface RetryOptions {
  /** Attempts per call, the first included; default 5. */
  attemptsMax?: number | undefined;
  /** Upper bound of the wait before the first retry; doubles per retry up to backoffMsMax. Default 100. */
  backoffMsMin?: number | undefined;
  /** Cap on the wait between attempts; default 10 000. */
  backoffMsMax?: number | undefined;
  /** Deadline of one attempt; default 60 000 (a 4 MiB put over a slow link must fit). */
  callTimeoutMs?: number | undefined;
  /** Floats in [0, 1) for jitter; default Math.random. Pass mulberry32(seed) for reproducible waits. */
  random?: (() => number) | undefined;
  /** Called before each wait; must not throw. */
  onRetry?: ((event: RetryEvent) => void) | undefined;
}

export interface RetryEvent {
  op: 'get' | 'put' | 'head' | 'delete' | 'list';
  /** The key, or the prefix for list. */
  key: string;
  /** The attempt that failed, from 1. */
  attempt: number;
  delayMs: number;
  error: unknown;
  timedOut: boolean;
}

export interface RetryStats {
  /** Attempts repeated after a retryable failure. */
  retries: number;
  /** Attempts abandoned at their deadline. */
  timeouts: number;
  /** Calls that gave up: every attempt failed retryably. Final (non-retryable) errors are not counted. */
  failures: number;
}

export class RetryStore implements ObjectStore {
  readonly description: string;
  private readonly inner: ObjectStore;
  private readonly attemptsMax: number;
  private readonly backoffMsMin: number;
  private readonly backoffMsMax: number;
  private readonly callTimeoutMs: number;
  private readonly random: () => number;
  private readonly onRetry: ((event: RetryEvent) => void) | undefined;
  private readonly counters: RetryStats = { retries: 0, timeouts: 0, failures: 0 };

  constructor(inner: ObjectStore, options: RetryOptions = {}) {
    this.inner = inner;
    this.description = inner.description;
    this.attemptsMax = options.attemptsMax ?? 5;
    this.backoffMsMin = options.backoffMsMin ?? 100;
    this.backoffMsMax = options.backoffMsMax ?? 10_000;
    this.callTimeoutMs = options.callTimeoutMs ?? 60_000;
    this.random = options.random ?? Math.random;
    this.onRetry = options.onRetry;
    if (!Number.isSafeInteger(this.attemptsMax) || this.attemptsMax < 1) {
      throw new RangeError(`attemptsMax must be an integer >= 1, got ${this.attemptsMax}`);
    }
    if (!(this.backoffMsMin >= 0)) throw new RangeError(`backoffMsMin must be >= 0, got ${this.backoffMsMin}`);
    if (!(this.backoffMsMax >= this.backoffMsMin)) {
      throw new RangeError(`backoffMsMax must be >= backoffMsMin (${this.backoffMsMin}), got ${this.backoffMsMax}`);
    }
    if (!(this.callTimeoutMs > 0)) throw new RangeError(`callTimeoutMs must be > 0, got ${this.callTimeoutMs}`);
  }

  stats(): RetryStats {
    return { ...this.counters };
  }

  get(key: string, options?: GetOptions): Promise<Buffer> {
    return this.call('get', key, options, (signal) => this.inner.get(key, { ...options, signal }));
  }

  put(key: string, data: Buffer, options?: CallOptions): Promise<void> {
    return this.call('put', key, options, (signal) => this.inner.put(key, data, { ...options, signal }));
  }

  /** CheckedPutter, forwarded and retried like put; undefined when the inner store cannot compare digests. */
  putChecked(key: string, data: Buffer, options?: PutCheckedOptions): Promise<boolean | undefined> {
    const inner = this.inner;
    return this.call('put', key, options, (signal) =>
      canPutChecked(inner) ? inner.putChecked(key, data, { ...options, signal }) : inner.put(key, data, { ...options, signal }).then(() => undefined),
    );
  }

  head(key: string, options?: CallOptions): Promise<ObjectInfo> {
    return this.call('head', key, options, (signal) => this.inner.head(key, { ...options, signal }));
  }

  delete(key: string, options?: CallOptions): Promise<void> {
    return this.call('delete', key, options, (signal) => this.inner.delete(key, { ...options, signal }));
  }

  list(prefix: string, options?: ListOptions): Promise<ListPage> {
    return this.call('list', prefix, options, (signal) => this.inner.list(prefix, { ...options, signal }));
  }

  /** TempSweeper, forwarded (0 when the inner store has no temp files). Not retried: the next gc sweeps again. */
  sweepTemp(olderThanMs: number): Promise<number> {
    return canSweepTemp(this.inner) ? this.inner.sweepTemp(olderThanMs) : Promise.resolve(0);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async call<T>(op: RetryEvent['op'], key: string, options: CallOptions | undefined, attempt: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const callerSignal = options?.signal;
    for (let n = 1; ; n++) {
      callerSignal?.throwIfAborted();
      // A cleared timer rather than AbortSignal.timeout: at high call rates, thousands of pending 60 s timers
      // would otherwise outlive the calls they guard.
      const deadline = new AbortController();
      const timer = setTimeout(() => deadline.abort(new TransientError(`${op} ${key}: no answer within ${this.callTimeoutMs} ms`)), this.callTimeoutMs);
      const signal = callerSignal === undefined ? deadline.signal : AbortSignal.any([callerSignal, deadline.signal]);
      let error: unknown;
      try {
        return await untilAborted(attempt(signal), signal);
      } catch (err) {
        error = err;
      } finally {
        clearTimeout(timer);
      }
      if (callerSignal?.aborted) throw callerSignal.reason;
      const timedOut = deadline.signal.aborted;
      if (timedOut) {
        this.counters.timeouts++;
        error = deadline.signal.reason;
      } else if (!isRetryable(error)) {
        throw error;
      }
      if (n >= this.attemptsMax) {
        this.counters.failures++;
        throw error;
      }
      const delayMs = this.backoff(n);
      this.counters.retries++;
      this.onRetry?.({ op, key, attempt: n, delayMs, error, timedOut });
      await sleep(delayMs, callerSignal);
    }
  }

  /** The wait after failed attempt n (from 1): full jitter under a capped exponential ceiling. */
  private backoff(n: number): number {
    return backoffMs(n, { baseMs: this.backoffMsMin, capMs: this.backoffMsMax }, this.random);
  }
}

/** Settles like `promise`, or rejects with the signal's reason once it aborts, whichever comes first. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
