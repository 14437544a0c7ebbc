import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FaultStore, type FaultOptions } from '../../src/object/faults.js';
import { MemStore } from '../../src/object/mem.js';
import { TransientError } from '../../src/object/store.js';
import { mulberry32, randomSeed } from '../../src/util/random.js';
import { objectStoreConformance } from './conformance.js';

const SEED = Number(process.env['FERRY_SEED'] ?? randomSeed());
console.log(`fault tests: seed ${SEED} (replay with FERRY_SEED=${SEED})`);

objectStoreConformance('faults with every rate 0 over mem', async () => {
  const store = new FaultStore(new MemStore(), { seed: SEED });
  return { store, cleanup: () => store.close() };
});

/** Runs a fixed sequence of calls and records what each one saw. */
async function trace(options: FaultOptions): Promise<string[]> {
  const store = new FaultStore(new MemStore(), options);
  const out: string[] = [];
  const data = Buffer.alloc(100, 7);
  for (let i = 0; i < 200; i++) {
    const key = `k${Math.floor(i / 2) % 10}`;
    try {
      if (i % 2 === 0) {
        await store.put(key, data);
        out.push('put ok');
      } else {
        const got = await store.get(key);
        out.push(got.length === data.length ? 'get ok' : `get truncated ${got.length}`);
      }
    } catch (err) {
      out.push(err instanceof TransientError ? 'transient' : `other: ${String(err)}`);
    }
  }
  return out;
}

void describe('FaultStore', () => {
  void it('replays the same faults from the same seed', async () => {
    const options = { errorRate: 0.2, truncateRate: 0.2 };
    const first = await trace({ seed: SEED, ...options });
    assert.deepEqual(await trace({ seed: SEED, ...options }), first);
    assert.notDeepEqual(await trace({ seed: SEED + 1, ...options }), first);
    assert.ok(first.includes('transient'));
    assert.ok(first.some((t) => t.startsWith('get truncated')));
  });

  void it('truncates a get to a strict prefix of the real bytes, without an error', async () => {
    const store = new FaultStore(new MemStore(), { seed: SEED, truncateRate: 1 });
    const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => i & 0xff));
    await store.put('k', data);
    for (let i = 0; i < 20; i++) {
      const got = await store.get('k');
      assert.ok(got.length < data.length);
      assert.deepEqual(got, data.subarray(0, got.length));
    }
    assert.equal(store.stats().truncations, 20);
  });

  void it('fails before or after the call, and an error after a put leaves the put landed', async () => {
    const inner = new MemStore();
    const store = new FaultStore(inner, { seed: SEED, errorRate: 1 });
    for (let i = 0; i < 40; i++) await assert.rejects(store.put(`k${i}`, Buffer.from('x')), TransientError);
    const { errorsBefore, errorsAfter } = store.stats();
    assert.equal(errorsBefore + errorsAfter, 40);
    assert.ok(errorsBefore > 0 && errorsAfter > 0, `before ${errorsBefore}, after ${errorsAfter}`);
    assert.equal((await inner.list('')).objects.length, errorsAfter);
  });

  void it('fails every call during a blackout and while set down', async () => {
    const store = new FaultStore(new MemStore(), { seed: SEED });
    await store.put('k', Buffer.from('x'));
    store.blackout(50);
    await assert.rejects(store.get('k'), TransientError);
    await assert.rejects(store.list(''), TransientError);
    await new Promise((resolve) => setTimeout(resolve, 70));
    assert.deepEqual(await store.get('k'), Buffer.from('x'));
    store.setDown(true);
    await assert.rejects(store.head('k'), TransientError);
    store.setDown(false);
    assert.equal((await store.head('k')).size, 1);
    assert.equal(store.stats().refused, 3);
  });

  void it("hangs until the caller's signal aborts, or timeoutMs, then fails", async () => {
    const store = new FaultStore(new MemStore(), { seed: SEED, timeoutRate: 1, timeoutMs: 30 });
    const started = Date.now();
    await assert.rejects(store.head('k'), (e) => e instanceof TransientError && /timed out after 30 ms/.test(e.message));
    assert.ok(Date.now() - started >= 25);
    const controller = new AbortController();
    const slow = new FaultStore(new MemStore(), { seed: SEED, timeoutRate: 1, timeoutMs: 60_000 });
    setTimeout(() => controller.abort(new Error('caller gave up')), 10);
    await assert.rejects(slow.head('k', { signal: controller.signal }), /caller gave up/);
    assert.equal(slow.stats().timeouts, 1);
  });

  void it('adds latency within [min, max]', async () => {
    const store = new FaultStore(new MemStore(), { seed: SEED, latencyMs: [20, 30] });
    const started = Date.now();
    await store.put('k', Buffer.from('x'));
    assert.ok(Date.now() - started >= 19);
  });

  void it('validates its options', () => {
    assert.throws(() => new FaultStore(new MemStore(), { seed: 1, errorRate: 1.5 }), /errorRate must be in \[0, 1\]/);
    assert.throws(() => new FaultStore(new MemStore(), { seed: 1, latencyMs: [10, 5] }), /latencyMs/);
  });
});

void describe('mulberry32', () => {
  void it('yields the same sequence of floats in [0, 1) from the same seed', () => {
    const a = mulberry32(SEED);
    const b = mulberry32(SEED);
    for (let i = 0; i < 1000; i++) {
      const x = a();
      assert.equal(x, b());
      assert.ok(x >= 0 && x < 1);
    }
    assert.notEqual(mulberry32(1)(), mulberry32(2)());
  });
});
