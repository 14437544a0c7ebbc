/**
 * FaultStore: injects the failures a real bucket shows, reproducibly from a seed, for tests.
 *
 * Each call draws the same number of random values at entry, before any await, so the faults a run sees
 * depend only on the seed and the order of calls. Per call, in this order:
 *
 *   down (setDown / blackout)  → TransientError, nothing done
 *   latencyMs [min, max]       → waits (an abort of the caller's signal ends the wait)
 *   timeoutRate                → hangs until the caller's signal aborts, else timeoutMs, then TransientError;
 *                                nothing done
 *   errorRate                  → TransientError, half the time *before* the call (nothing done) and half the
 *                                time *after* it (a put landed, but the caller sees an error)
 *   truncateRate (get only)    → returns a strict prefix of the real bytes, without an error: a broken
 *                                download that only a checksum catches
 */

import { mulberry32 } from '../util/random.js';
import { sleep } from '../util/sleep.js';
import { TransientError, type CallOptions, type GetOptions, type ListOptions, type ListPage, type ObjectInfo, type ObjectStore } from './store.js';

export interface FaultOptions {
  seed: number;
  /** Probability in [0, 1] that a call fails with TransientError (before or after the real call). */
  errorRate?: number | undefined;
  /** Probability in [0, 1] that a call hangs. */
  timeoutRate?: number | undefined;
  /** How long a hang lasts when the caller does not abort first; default 10 000. */
  timeoutMs?: number | undefined;
  /** Added latency per call, uniform in [min, max] ms; default none. */
  latencyMs?: readonly [min: number, max: number] | undefined;
  /** Probability in [0, 1] that a get returns a truncated body. */
  truncateRate?: number | undefined;
}

export interface FaultStats {
  calls: number;
  /** Calls refused while down. */
  refused: number;
  errorsBefore: number;
  errorsAfter: number;
  timeouts: number;
  truncations: number;
}

/** The random draws of one call. */
interface Plan {
  error: number;
  errorAfter: number;
  timeout: number;
  latency: number;
  truncate: number;
}

export class FaultStore implements ObjectStore {
  readonly description: string;
  readonly seed: number;
  private readonly inner: ObjectStore;
  private readonly random: () => number;
  private readonly errorRate: number;
  private readonly timeoutRate: number;
  private readonly timeoutMs: number;
  private readonly latencyMs: readonly [number, number] | undefined;
  private readonly truncateRate: number;
  private down = false;
  private downUntil = 0;
  private readonly counters: FaultStats = { calls: 0, refused: 0, errorsBefore: 0, errorsAfter: 0, timeouts: 0, truncations: 0 };

  constructor(inner: ObjectStore, options: FaultOptions) {
    this.inner = inner;
    this.seed = options.seed;
    this.random = mulberry32(options.seed);
    this.errorRate = rate('errorRate', options.errorRate);
    this.timeoutRate = rate('timeoutRate', options.timeoutRate);
    this.truncateRate = rate('truncateRate', options.truncateRate);
    this.timeoutMs = options.timeoutMs ?? 10_000;
    if (!(this.timeoutMs >= 0)) throw new RangeError(`timeoutMs must be >= 0, got ${this.timeoutMs}`);
    this.latencyMs = options.latencyMs;
    if (this.latencyMs !== undefined) {
      const [min, max] = this.latencyMs;
      if (!(min >= 0 && max >= min)) throw new RangeError(`latencyMs must be [min, max] with 0 <= min <= max, got [${min}, ${max}]`);
    }
    this.description = `${inner.description} (faults, seed ${options.seed})`;
  }

  /** Every call fails with TransientError until setDown(false). */
  setDown(down: boolean): void {
    this.down = down;
    if (!down) this.downUntil = 0;
  }

  /** Every call fails with TransientError for the next ms milliseconds. */
  blackout(ms: number): void {
    this.downUntil = Math.max(this.downUntil, Date.now() + ms);
  }

  stats(): FaultStats {
    return { ...this.counters };
  }

  async get(key: string, options?: GetOptions): Promise<Buffer> {
    const plan = this.plan();
    const data = await this.run('get', key, plan, options, () => this.inner.get(key, options));
    if (plan.truncate < this.truncateRate && data.length > 0) {
      this.counters.truncations++;
      return data.subarray(0, Math.floor((plan.truncate / this.truncateRate) * data.length));
    }
    return data;
  }

  async put(key: string, data: Buffer, options?: CallOptions): Promise<void> {
    await this.run('put', key, this.plan(), options, () => this.inner.put(key, data, options));
  }

  async head(key: string, options?: CallOptions): Promise<ObjectInfo> {
    return this.run('head', key, this.plan(), options, () => this.inner.head(key, options));
  }

  async delete(key: string, options?: CallOptions): Promise<void> {
    await this.run('delete', key, this.plan(), options, () => this.inner.delete(key, options));
  }

  async list(prefix: string, options?: ListOptions): Promise<ListPage> {
    return this.run('list', prefix, this.plan(), options, () => this.inner.list(prefix, options));
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  /** Draws a fixed number of values per call, whatever the options, so the sequence depends on the seed only. */
  private plan(): Plan {
    this.counters.calls++;
    return { error: this.random(), errorAfter: this.random(), timeout: this.random(), latency: this.random(), truncate: this.random() };
  }

  private async run<T>(op: string, key: string, plan: Plan, options: CallOptions | undefined, call: () => Promise<T>): Promise<T> {
    const signal = options?.signal;
    if (this.down || Date.now() < this.downUntil) {
      this.counters.refused++;
      throw new TransientError(`injected fault: store down (${op} ${key})`);
    }
    if (this.latencyMs !== undefined) {
      const [min, max] = this.latencyMs;
      await sleep(min + plan.latency * (max - min), signal);
    }
    if (plan.timeout < this.timeoutRate) {
      this.counters.timeouts++;
      await sleep(this.timeoutMs, signal);
      throw new TransientError(`injected fault: ${op} ${key} timed out after ${this.timeoutMs} ms`);
    }
    if (plan.error < this.errorRate) {
      if (plan.errorAfter < 0.5) {
        this.counters.errorsBefore++;
        throw new TransientError(`injected fault: ${op} ${key} failed before reaching the store`);
      }
      await call();
      this.counters.errorsAfter++;
      throw new TransientError(`injected fault: ${op} ${key} failed after the store performed it`);
    }
    return call();
  }
}

function rate(name: string, value: number | undefined): number {
  const r = value ?? 0;
  if (!(r >= 0 && r <= 1)) throw new RangeError(`${name} must be in [0, 1], got ${r}`);
  return r;
}
