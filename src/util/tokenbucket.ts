/**
 * A token bucket that paces bytes to a rate: `take(n)` resolves when n bytes may pass. Used by `ferry sync
 * --bwlimit` and the fault proxy's bandwidth cap.
 *
 * Takers may run the bucket into debt: a take subtracts first and then waits until the debt is paid off, so
 * concurrent takers queue behind each other in arrival order and the long-run rate holds exactly. A take larger
 * than the burst is allowed (it simply waits longer); callers that want smooth flow split their work into
 * pieces of at most `burstBytes`.
 */

import { sleep } from './sleep.js';

export class TokenBucket {
  private rate: number;
  private burst: number;
  private tokens: number;
  private refilledAt: number;

  /** `bytesPerSecond` 0 or Infinity means unlimited. `burstBytes` defaults to a tenth of a second's worth. */
  constructor(bytesPerSecond: number, burstBytes?: number) {
    this.rate = 0;
    this.burst = 0;
    this.tokens = 0;
    this.refilledAt = performance.now();
    this.setRate(bytesPerSecond, burstBytes);
  }

  get bytesPerSecond(): number {
    return this.rate;
  }

  get burstBytes(): number {
    return this.burst;
  }

  get unlimited(): boolean {
    return this.rate === 0 || this.rate === Infinity;
  }

  /** Changes the rate; the current debt or credit is kept, capped to the new burst. */
  setRate(bytesPerSecond: number, burstBytes?: number): void {
    if (!(bytesPerSecond >= 0)) throw new RangeError(`rate must be >= 0 bytes/s, got ${bytesPerSecond}`);
    if (burstBytes !== undefined && !(burstBytes > 0)) throw new RangeError(`burst must be > 0 bytes, got ${burstBytes}`);
    this.refill();
    this.rate = bytesPerSecond;
    this.burst = burstBytes ?? Math.max(1, Math.ceil(bytesPerSecond / 10));
    this.tokens = Math.min(this.tokens, this.burst);
  }

  /** Waits until `bytes` may pass; an abort of `signal` rejects at once (the bytes stay taken). */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    if (this.unlimited || bytes <= 0) return;
    this.refill();
    this.tokens -= bytes;
    if (this.tokens < 0) await sleep(Math.ceil((-this.tokens / this.rate) * 1000), signal);
  }

  private refill(): void {
    const now = performance.now();
    if (!this.unlimited) this.tokens = Math.min(this.burst, this.tokens + ((now - this.refilledAt) / 1000) * this.rate);
    this.refilledAt = now;
  }
}
