/**
 * Single flight: concurrent calls for the same key share one execution of `fn` (one download of a block for
 * many readers that missed the cache together). Nothing is remembered once it settles: the next call after
 * that runs `fn` again, so a failure is never cached.
 *
 * Callers that join share the first caller's `fn`, including its AbortSignal if it closed over one: a joiner
 * that wants its own deadline races the returned promise against it.
 */
export class SingleFlight<K, V> {
  readonly #inFlight = new Map<K, Promise<V>>();

  do(key: K, fn: () => Promise<V>): Promise<V> {
    const running = this.#inFlight.get(key);
    if (running !== undefined) return running;
    // The async wrapper turns a synchronous throw in fn into a rejection shared like any other result.
    const p = (async () => fn())().finally(() => {
      if (this.#inFlight.get(key) === p) this.#inFlight.delete(key);
    });
    this.#inFlight.set(key, p);
    return p;
  }

  /** Keys with an execution in flight. */
  get size(): number {
    return this.#inFlight.size;
  }

  has(key: K): boolean {
    return this.#inFlight.has(key);
  }
}
