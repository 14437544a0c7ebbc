/**
 * Id allocation from a counter record in batches, so most allocations cost no transaction. A batch taken
 * and not used is simply skipped (ids need to be unique, not dense).
 *
 * The counter is the one record every allocating client read-modify-writes, so its transactions must stay
 * rare however fast a client allocates: a refill that comes less than REFILL_MS_MIN after the previous one
 * doubles the batch (up to batchMax), so a client refills at most a few times a second whatever its rate,
 * and a slow client keeps small batches (few ids skipped when it exits).
 */

import type { MetaEngine } from './engine.js';
import { counters, type CounterName } from './records.js';

/** A refill sooner than this after the previous one doubles the batch. */
export const REFILL_MS_MIN = 1000;
/** The largest batch is the first one times this. */
export const BATCH_GROWTH_MAX = 64;

export class IdPool {
  private next = 0;
  private end = 0;
  private pending: Promise<void> | undefined;
  private readonly engine: MetaEngine;
  private readonly counter: CounterName;
  private batch: number;
  private readonly batchMax: number;
  private lastRefill = Number.NEGATIVE_INFINITY;
  private readonly now: () => number;
  /** Refills so far (tests). */
  refills = 0;

  constructor(engine: MetaEngine, counter: CounterName, batch: number, now: () => number = Date.now) {
    if (!Number.isSafeInteger(batch) || batch < 1) throw new RangeError(`id batch must be an integer >= 1, got ${batch}`);
    this.engine = engine;
    this.counter = counter;
    this.batch = batch;
    this.batchMax = batch * BATCH_GROWTH_MAX;
    this.now = now;
  }

  async take(): Promise<number> {
    while (this.next >= this.end) {
      this.pending ??= this.refill().finally(() => {
        this.pending = undefined;
      });
      await this.pending;
    }
    return this.next++;
  }

  private async refill(): Promise<void> {
    const t = this.now();
    if (t - this.lastRefill < REFILL_MS_MIN) this.batch = Math.min(this.batchMax, this.batch * 2);
    this.lastRefill = t;
    const size = this.batch;
    const start = await this.engine.txn(async (tx) => {
      const c = (await counters.get(tx, this.counter)) ?? 1;
      counters.put(tx, this.counter, c + size);
      return c;
    });
    this.refills++;
    this.next = start;
    this.end = start + size;
  }
}
