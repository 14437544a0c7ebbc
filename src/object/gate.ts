/**
 * GateStore: a bucket that did not answer when its client opened it. A client of a multi-region volume opens
 * even when its own region's bucket is missing or unreachable (sdk/open.ts): its reads have the other regions'
 * buckets to fall through to. Waiting out retries and timeouts on every call to a bucket known to be gone would
 * make each read slow and each write hang, so while the gate is shut every call fails at once with
 * BucketUnreachableError, naming the bucket and why: reads fall through to the next bucket, writes fail with
 * that error (EIO to the SDK and the mount).
 *
 *   shut --call within probeIntervalMs of the last probe--------> BucketUnreachableError (the last reason)
 *   shut --call later--> probe --fails or takes probeTimeoutMs--> BucketUnreachableError (the new reason)
 *                              \--answers----------------------> open: this call and every later one go to
 *                                                                the store unchanged
 *
 * One probe at a time: calls that arrive while one runs wait for it. An open gate never shuts again: later
 * failures of the bucket are the retry wrapper's business, as for any bucket that fails after the open. The
 * capabilities of the wrapped store are forwarded, behind the gate.
 */

import { canPutChecked, canSweepTemp, type CallOptions, type GetOptions, type PutCheckedOptions, type ListOptions, type ListPage, type ObjectInfo, type ObjectStore } from './store.js';

/** How often a shut gate lets a call probe the bucket again, by default. */
export const GATE_PROBE_INTERVAL_MS_DEFAULT = 10_000;
/** How long a probe may take before it counts as failed, by default. */
export const GATE_PROBE_TIMEOUT_MS_DEFAULT = 5_000;

/** A call to a bucket that is known not to answer. Final for the retry wrapper (not `retryable`). */
export class BucketUnreachableError extends Error {
  readonly code = 'EUNREACHABLE';
  /** The bucket, as the gate names it. */
  readonly bucket: string;
  constructor(bucket: string, reason: unknown) {
    super(`${bucket} is unreachable: ${reason instanceof Error ? reason.message : String(reason)}`, { cause: reason });
    this.bucket = bucket;
    this.name = 'BucketUnreachableError';
  }
}

export interface GateOptions {
  /** Names the bucket in errors: "the bucket of region a (s3://...)". */
  name: string;
  /** Why the bucket was found unreachable (the failure of the probe at open). */
  reason: unknown;
  /** Resolves when the bucket answers, rejects saying why not; gets a signal that aborts at the timeout. */
  probe: (signal: AbortSignal) => Promise<void>;
  /** Default GATE_PROBE_INTERVAL_MS_DEFAULT. */
  probeIntervalMs?: number | undefined;
  /** Default GATE_PROBE_TIMEOUT_MS_DEFAULT. */
  probeTimeoutMs?: number | undefined;
  /** Milliseconds clock; default performance.now. */
  now?: (() => number) | undefined;
}

/**
 * Runs `probe` for at most `timeoutMs`: undefined when it resolved in time, else why not (its error, or a
 * timeout). Never rejects. The probe's signal aborts at the timeout; a probe that ignores it is left behind.
 */
export async function probeWithin(probe: (signal: AbortSignal) => Promise<void>, timeoutMs: number): Promise<unknown> {
  const deadline = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new Error(`no answer within ${timeoutMs} ms`);
      deadline.abort(err);
      reject(err);
    }, timeoutMs);
  });
  try {
    await Promise.race([probe(deadline.signal), late]);
    return undefined;
  } catch (err) {
    return err ?? new Error('probe failed');
  } finally {
    clearTimeout(timer);
  }
}

function optionMs(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be an integer >= 0, got ${v}`);
  return v;
}

export class GateStore implements ObjectStore {
  readonly description: string;
  readonly inner: ObjectStore;
  readonly name: string;
  readonly probeIntervalMs: number;
  readonly probeTimeoutMs: number;
  private readonly probe: (signal: AbortSignal) => Promise<void>;
  private readonly now: () => number;
  private shut = true;
  private reason: unknown;
  private probedAt: number;
  private probing: Promise<void> | undefined;

  /** The gate starts shut, as if a probe had just failed with `reason`. */
  constructor(inner: ObjectStore, options: GateOptions) {
    this.inner = inner;
    this.description = inner.description;
    this.name = options.name;
    this.reason = options.reason;
    this.probe = options.probe;
    this.probeIntervalMs = optionMs('probeIntervalMs', options.probeIntervalMs, GATE_PROBE_INTERVAL_MS_DEFAULT);
    this.probeTimeoutMs = optionMs('probeTimeoutMs', options.probeTimeoutMs, GATE_PROBE_TIMEOUT_MS_DEFAULT);
    this.now = options.now ?? (() => performance.now());
    this.probedAt = this.now();
  }

  /** Whether calls go to the store (a probe has answered). */
  get isOpen(): boolean {
    return !this.shut;
  }

  async get(key: string, options?: GetOptions): Promise<Buffer> {
    if (this.shut) await this.pass();
    return this.inner.get(key, options);
  }

  async put(key: string, data: Buffer, options?: CallOptions): Promise<void> {
    if (this.shut) await this.pass();
    return this.inner.put(key, data, options);
  }

  async head(key: string, options?: CallOptions): Promise<ObjectInfo> {
    if (this.shut) await this.pass();
    return this.inner.head(key, options);
  }

  async delete(key: string, options?: CallOptions): Promise<void> {
    if (this.shut) await this.pass();
    return this.inner.delete(key, options);
  }

  async list(prefix: string, options?: ListOptions): Promise<ListPage> {
    if (this.shut) await this.pass();
    return this.inner.list(prefix, options);
  }

  /** CheckedPutter, forwarded (undefined when the store cannot tell). */
  async putChecked(key: string, data: Buffer, options?: PutCheckedOptions): Promise<boolean | undefined> {
    if (this.shut) await this.pass();
    if (canPutChecked(this.inner)) return this.inner.putChecked(key, data, options);
    await this.inner.put(key, data, options);
    return undefined;
  }

  /** TempSweeper, forwarded (0 when the store has no temp files). */
  async sweepTemp(olderThanMs: number): Promise<number> {
    if (this.shut) await this.pass();
    return canSweepTemp(this.inner) ? this.inner.sweepTemp(olderThanMs) : 0;
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  /** Resolves once the gate is open (probing first when due), else rejects with BucketUnreachableError. */
  private async pass(): Promise<void> {
    if (this.probing === undefined && this.now() - this.probedAt >= this.probeIntervalMs) {
      this.probing = probeWithin(this.probe, this.probeTimeoutMs).then((failure) => {
        this.probedAt = this.now();
        this.probing = undefined;
        if (failure === undefined) this.shut = false;
        else this.reason = failure;
      });
    }
    if (this.probing !== undefined) await this.probing;
    if (this.shut) throw new BucketUnreachableError(this.name, this.reason);
  }
}
