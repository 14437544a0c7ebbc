/**
 * Id allocation from a counter record in batches, so most allocations cost no transaction. A batch taken
 * and not used is simply skipped (ids need to be unique, not dense).
 */

import type { MetaEngine } from './engine.js';
import { counters, type CounterName } from './records.js';

export class IdPool {
  private next = 0;
  private end = 0;
  private pending: Promise<void> | undefined;
  private readonly engine: MetaEngine;
  private readonly counter: CounterName;
  private readonly batch: number;
  constructor(engine: MetaEngine, counter: CounterName, batch: number) {
    this.engine = engine;
    this.counter = counter;
    this.batch = batch;
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
    const start = await this.engine.txn(async (tx) => {
      const c = (await counters.get(tx, this.counter)) ?? 1;
      counters.put(tx, this.counter, c + this.batch);
      return c;
    });
    this.next = start;
    this.end = start + this.batch;
  }
}
