/**
 * Waiting, once for the code base: `sleep`, and the one backoff rule every retry loop uses (object stores,
 * metadata engines' optimistic transactions, the engine retry wrapper): capped exponential with full jitter.
 *
 *   wait before retry n (n = 1 after the first failed attempt) = uniform in [0, min(capMs, baseMs * 2^(n-1)))
 *
 * Full jitter spreads clients that failed together (a conflict, a restart of the server) over the whole window
 * instead of waking them in step.
 */

/** Waits ms; an abort of `signal` rejects at once with the signal's reason. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export interface Backoff {
  /** Ceiling of the first wait, ms; doubles per retry. */
  baseMs: number;
  /** Cap on the ceiling, ms. */
  capMs: number;
}

/** Validates a backoff's numbers (for option checking with a precise message). */
export function checkBackoff(b: Backoff, what = 'backoff'): Backoff {
  if (!(b.baseMs >= 0)) throw new RangeError(`${what}: baseMs must be >= 0, got ${b.baseMs}`);
  if (!(b.capMs >= b.baseMs)) throw new RangeError(`${what}: capMs must be >= baseMs (${b.baseMs}), got ${b.capMs}`);
  return b;
}

/** The wait after failed attempt n (from 1), ms: full jitter under a capped exponential ceiling. */
export function backoffMs(n: number, b: Backoff, random: () => number = Math.random): number {
  const ceiling = Math.min(b.capMs, b.baseMs * 2 ** Math.min(n - 1, 52));
  return Math.floor(random() * ceiling);
}
