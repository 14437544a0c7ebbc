/** A FIFO async mutex. `acquire()` resolves to a release function that must be called exactly once. */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();

  acquire(): Promise<() => void> {
    let release!: () => void;
    const next = new Promise<void>((resolve) => {
      release = resolve;
    });
    const prev = this.tail;
    this.tail = prev.then(() => next);
    return prev.then(() => {
      let done = false;
      return () => {
        if (done) throw new Error('assertion failed: mutex released twice');
        done = true;
        release();
      };
    });
  }

  async run<R>(fn: () => Promise<R>): Promise<R> {
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }
}
