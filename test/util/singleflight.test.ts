import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SingleFlight } from '../../src/util/singleflight.js';

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

void describe('SingleFlight', () => {
  void it('concurrent calls with the same key share one execution', async () => {
    const sf = new SingleFlight<string, number>();
    const d = deferred<number>();
    let calls = 0;
    const fn = () => {
      calls++;
      return d.promise;
    };
    const all = Promise.all([sf.do('a', fn), sf.do('a', fn), sf.do('a', fn)]);
    assert.equal(sf.has('a'), true);
    d.resolve(7);
    assert.deepEqual(await all, [7, 7, 7]);
    assert.equal(calls, 1);
    assert.equal(sf.size, 0);
  });

  void it('different keys run separately', async () => {
    const sf = new SingleFlight<number, number>();
    let calls = 0;
    const results = await Promise.all([1, 2, 3, 1, 2, 3].map((k) => sf.do(k, async () => (calls++, k * 10))));
    assert.deepEqual(results, [10, 20, 30, 10, 20, 30]);
    assert.equal(calls, 3);
  });

  void it('after it settles, the next call runs fn again', async () => {
    const sf = new SingleFlight<string, number>();
    let calls = 0;
    const fn = async () => ++calls;
    assert.equal(await sf.do('a', fn), 1);
    assert.equal(await sf.do('a', fn), 2);
  });

  void it('a rejection is shared by every waiter and not remembered', async () => {
    const sf = new SingleFlight<string, number>();
    const d = deferred<number>();
    const a = sf.do('a', () => d.promise);
    const b = sf.do('a', () => Promise.resolve(0));
    d.reject(new Error('boom'));
    await assert.rejects(a, /boom/);
    await assert.rejects(b, /boom/);
    assert.equal(await sf.do('a', () => Promise.resolve(5)), 5);
  });

  void it('a synchronous throw in fn becomes a rejection', async () => {
    const sf = new SingleFlight<string, number>();
    await assert.rejects(
      sf.do('a', () => {
        throw new Error('sync');
      }),
      /sync/,
    );
    assert.equal(sf.size, 0);
  });
});
