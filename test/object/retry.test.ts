import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FaultStore } from '../../src/object/faults.js';
import { MemStore } from '../../src/object/mem.js';
import { RetryStore, type RetryEvent } from '../../src/object/retry.js';
import { ObjectNotFoundError, TransientError, type ObjectStore } from '../../src/object/store.js';
import { mulberry32 } from '../../src/util/random.js';
import { objectStoreConformance } from './conformance.js';

const SEED = Number(process.env['FERRY_SEED'] ?? 20240611);
console.log(`retry tests: seed ${SEED} (replay with FERRY_SEED=${SEED})`);

// Three calls in ten fail, some after the put landed, one in a hundred hangs: the retry wrapper must hide it all.
objectStoreConformance('retry over faults (errorRate 0.3, timeoutRate 0.01) over mem', async () => {
  const faults = new FaultStore(new MemStore(), { seed: SEED, errorRate: 0.3, timeoutRate: 0.01, timeoutMs: 10_000 });
  const store = new RetryStore(faults, { attemptsMax: 12, backoffMsMin: 1, backoffMsMax: 4, callTimeoutMs: 250, random: mulberry32(SEED) });
  return { store, cleanup: () => store.close() };
});

type Step = 'ok' | 'hang' | 'hang-ignoring-signal' | Error;

/** A store whose every call takes the next step of a script; the last step repeats. Only get is used. */
function scripted(steps: Step[]): { store: ObjectStore; calls: () => number } {
  let calls = 0;
  const store = new MemStore();
  const get = async (_key: string, options?: { signal?: AbortSignal | undefined }): Promise<Buffer> => {
    const step = steps[Math.min(calls, steps.length - 1)]!;
    calls++;
    if (step === 'ok') return Buffer.from('data');
    if (step === 'hang-ignoring-signal') return new Promise(() => undefined);
    if (step === 'hang') {
      return new Promise((_, reject) => options?.signal?.addEventListener('abort', () => reject(options.signal?.reason as Error)));
    }
    throw step;
  };
  return { store: Object.assign(store, { get }), calls: () => calls };
}

const fast = { backoffMsMin: 1, backoffMsMax: 2 };

void describe('RetryStore', () => {
  void it('retries retryable errors until one attempt succeeds', async () => {
    const { store, calls } = scripted([new TransientError('1'), new TransientError('2'), 'ok']);
    const events: RetryEvent[] = [];
    const retry = new RetryStore(store, { ...fast, onRetry: (e) => events.push(e) });
    assert.deepEqual(await retry.get('k'), Buffer.from('data'));
    assert.equal(calls(), 3);
    assert.deepEqual(events.map((e) => [e.op, e.key, e.attempt]), [['get', 'k', 1], ['get', 'k', 2]]);
    assert.deepEqual(retry.stats(), { retries: 2, timeouts: 0, failures: 0 });
  });

  void it('does not retry errors that are not retryable', async () => {
    const notFound = new ObjectNotFoundError('k');
    const plain = new Error('access denied');
    for (const err of [notFound, plain]) {
      const { store, calls } = scripted([err, 'ok']);
      const retry = new RetryStore(store, fast);
      await assert.rejects(retry.get('k'), (e) => e === err);
      assert.equal(calls(), 1);
      assert.deepEqual(retry.stats(), { retries: 0, timeouts: 0, failures: 0 });
    }
  });

  void it('honours attemptsMax and throws the last error', async () => {
    const last = new TransientError('still down');
    const { store, calls } = scripted([new TransientError('down'), new TransientError('down'), last]);
    const retry = new RetryStore(store, { ...fast, attemptsMax: 3 });
    await assert.rejects(retry.get('k'), (e) => e === last);
    assert.equal(calls(), 3);
    assert.deepEqual(retry.stats(), { retries: 2, timeouts: 0, failures: 1 });
  });

  void it('retries an attempt that passes its deadline, even one that ignores its signal', async () => {
    for (const hang of ['hang', 'hang-ignoring-signal'] as const) {
      const { store, calls } = scripted([hang, 'ok']);
      const retry = new RetryStore(store, { ...fast, callTimeoutMs: 30 });
      assert.deepEqual(await retry.get('k'), Buffer.from('data'));
      assert.equal(calls(), 2);
      assert.deepEqual(retry.stats(), { retries: 1, timeouts: 1, failures: 0 });
    }
  });

  void it('gives up on timeouts after attemptsMax with a TransientError', async () => {
    const { store, calls } = scripted(['hang']);
    const retry = new RetryStore(store, { ...fast, callTimeoutMs: 10, attemptsMax: 3 });
    await assert.rejects(retry.get('k'), (e) => e instanceof TransientError && /no answer within 10 ms/.test(e.message));
    assert.equal(calls(), 3);
    assert.deepEqual(retry.stats(), { retries: 2, timeouts: 3, failures: 1 });
  });

  void it("treats the caller's abort as final, during an attempt or a backoff", async () => {
    const { store, calls } = scripted(['hang']);
    const retry = new RetryStore(store, { ...fast, callTimeoutMs: 10_000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('caller gave up')), 20);
    await assert.rejects(retry.get('k', { signal: controller.signal }), /caller gave up/);
    assert.equal(calls(), 1);

    const failing = scripted([new TransientError('down')]);
    const slow = new RetryStore(failing.store, { backoffMsMin: 10_000, backoffMsMax: 10_000, random: () => 0.99 });
    const during = new AbortController();
    setTimeout(() => during.abort(new Error('caller gave up in backoff')), 20);
    const started = Date.now();
    await assert.rejects(slow.get('k', { signal: during.signal }), /caller gave up in backoff/);
    assert.ok(Date.now() - started < 5000, 'the backoff wait ended with the abort');
    assert.equal(failing.calls(), 1);
  });

  void it('draws reproducible, capped, exponential full-jitter waits from a seeded random', async () => {
    const waits = async (): Promise<number[]> => {
      const { store } = scripted([new TransientError('down')]);
      const delays: number[] = [];
      const retry = new RetryStore(store, {
        attemptsMax: 8,
        backoffMsMin: 1,
        backoffMsMax: 16,
        random: mulberry32(SEED),
        onRetry: (e) => delays.push(e.delayMs),
      });
      await assert.rejects(retry.get('k'), TransientError);
      return delays;
    };
    const first = await waits();
    assert.deepEqual(await waits(), first);
    assert.equal(first.length, 7);
    first.forEach((delay, i) => assert.ok(delay >= 0 && delay <= Math.min(16, 2 ** i), `wait ${i + 1}: ${delay}`));
  });

  void it('validates its options', () => {
    const inner = new MemStore();
    assert.throws(() => new RetryStore(inner, { attemptsMax: 0 }), /attemptsMax must be an integer >= 1/);
    assert.throws(() => new RetryStore(inner, { backoffMsMin: 10, backoffMsMax: 5 }), /backoffMsMax must be >= backoffMsMin/);
    assert.throws(() => new RetryStore(inner, { callTimeoutMs: 0 }), /callTimeoutMs must be > 0/);
  });
});
