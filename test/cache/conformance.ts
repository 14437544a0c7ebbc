/**
 * The BlockCache conformance suite (src/cache/cache.ts): each case is named after the clause it checks. An
 * implementation's test file calls `blockCacheConformance` with a function that opens a fresh, empty cache of
 * the given capacity, and lists any case it opts out of, with the reason.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BlockCache } from '../../src/cache/cache.js';
import { mulberry32 } from '../../src/util/random.js';

export interface CacheUnderTest {
  cache: BlockCache;
  /** Closes nothing: opens the same storage again as a new cache (for caches that survive a restart). */
  reopen?: () => Promise<BlockCache>;
  /** Closes the cache(s) and removes what the test created. */
  cleanup(): Promise<void>;
}

export interface OpenCacheOptions {
  /** The cache's capacity; entries in these cases are far smaller, so framing overhead never matters. */
  capacityBytes: number;
}

export type ConformanceCase =
  | 'get after put returns equal bytes'
  | 'get of a missing key returns undefined'
  | 'put copies its input'
  | 'get returns a copy'
  | 'put over an existing key replaces the bytes'
  | 'delete removes the entry and a missing key is fine'
  | 'empty and one-byte blocks round trip'
  | 'similar keys are distinct'
  | 'eviction keeps bytes within capacity and drops the least recently used'
  | 'an entry larger than the capacity is declined'
  | 'capacity 0 declines every put'
  | 'stats count hits, misses, entries and bytes'
  | 'many concurrent puts and gets never return wrong bytes'
  | 'close is idempotent'
  | 'entries survive reopen';

export interface ConformanceOptions {
  /** Cases to skip, each with the reason. */
  skip?: Partial<Record<ConformanceCase, string>>;
}

const DEFAULT_CAPACITY_BYTES = 1024 * 1024;

function block(seed: number, bytes: number): Buffer {
  const rand = mulberry32(seed);
  const b = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < bytes; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

/** A block key shaped like the real ones. */
function key(i: number): string {
  return `chunks/0/0/${i}_0_4096`;
}

export function blockCacheConformance(
  name: string,
  open: (options: OpenCacheOptions) => Promise<CacheUnderTest>,
  options: ConformanceOptions = {},
): void {
  const skip = options.skip ?? {};

  function test(title: ConformanceCase, body: (c: CacheUnderTest) => Promise<void>, capacityBytes = DEFAULT_CAPACITY_BYTES) {
    const reason = skip[title];
    void it(title, reason === undefined ? {} : { skip: reason }, async () => {
      const c = await open({ capacityBytes });
      try {
        await body(c);
      } finally {
        await c.cleanup();
      }
    });
  }

  void describe(`BlockCache conformance: ${name}`, () => {
    test('get after put returns equal bytes', async ({ cache }) => {
      const data = block(1, 4096);
      await cache.put(key(1), data);
      assert.deepEqual(await cache.get(key(1)), data);
    });

    test('get of a missing key returns undefined', async ({ cache }) => {
      assert.equal(await cache.get(key(404)), undefined);
      await cache.put(key(1), block(1, 10));
      assert.equal(await cache.get(key(404)), undefined);
    });

    test('put copies its input', async ({ cache }) => {
      const data = block(2, 4096);
      const original = Buffer.from(data);
      await cache.put(key(2), data);
      data.fill(0);
      assert.deepEqual(await cache.get(key(2)), original);
    });

    test('get returns a copy', async ({ cache }) => {
      const data = block(3, 4096);
      await cache.put(key(3), data);
      const first = await cache.get(key(3));
      assert.ok(first !== undefined);
      first.fill(0);
      assert.deepEqual(await cache.get(key(3)), data);
    });

    test('put over an existing key replaces the bytes', async ({ cache }) => {
      await cache.put(key(4), block(4, 4096));
      const second = block(5, 1000);
      await cache.put(key(4), second);
      assert.deepEqual(await cache.get(key(4)), second);
      assert.equal(cache.stats().entries, 1);
    });

    test('delete removes the entry and a missing key is fine', async ({ cache }) => {
      await cache.put(key(6), block(6, 4096));
      await cache.put(key(7), block(7, 4096));
      await cache.delete(key(6));
      assert.equal(await cache.get(key(6)), undefined);
      assert.deepEqual(await cache.get(key(7)), block(7, 4096));
      await cache.delete(key(6));
      await cache.delete(key(404));
      assert.equal(cache.stats().entries, 1);
    });

    test('empty and one-byte blocks round trip', async ({ cache }) => {
      await cache.put(key(8), Buffer.alloc(0));
      await cache.put(key(9), Buffer.from([0xa5]));
      assert.deepEqual(await cache.get(key(8)), Buffer.alloc(0));
      assert.deepEqual(await cache.get(key(9)), Buffer.from([0xa5]));
    });

    test('similar keys are distinct', async ({ cache }) => {
      const keys = ['a/b', 'a_b', 'a/b/', 'A/b', 'ä/b', 'a/b\u0000', `chunks/1/1000/1000000_0_4096`, `chunks/1/1000/1000000_0_4097`];
      for (const [i, k] of keys.entries()) await cache.put(k, block(100 + i, 64 + i));
      for (const [i, k] of keys.entries()) assert.deepEqual(await cache.get(k), block(100 + i, 64 + i), k);
    });

    test(
      'eviction keeps bytes within capacity and drops the least recently used',
      async ({ cache }) => {
        // Six 10 KiB entries fit in 64 KiB (with room for framing); the seventh evicts one.
        for (let i = 0; i < 6; i++) await cache.put(key(i), block(i, 10 * 1024));
        assert.ok(await cache.get(key(0)), 'key 0 still cached'); // now the most recently used
        await cache.put(key(6), block(6, 10 * 1024));
        const s = cache.stats();
        assert.ok(s.bytes <= 64 * 1024, `bytes ${s.bytes} within capacity`);
        assert.ok(s.evictions >= 1);
        assert.equal(await cache.get(key(1)), undefined, 'least recently used entry evicted');
        assert.deepEqual(await cache.get(key(0)), block(0, 10 * 1024));
        assert.deepEqual(await cache.get(key(6)), block(6, 10 * 1024));
        // Filling far past capacity never exceeds it.
        for (let i = 10; i < 40; i++) {
          await cache.put(key(i), block(i, 10 * 1024));
          assert.ok(cache.stats().bytes <= 64 * 1024);
        }
        assert.deepEqual(await cache.get(key(39)), block(39, 10 * 1024));
      },
      64 * 1024,
    );

    test(
      'an entry larger than the capacity is declined',
      async ({ cache }) => {
        await cache.put(key(1), block(1, 1000));
        await cache.put(key(2), block(2, 8 * 1024 + 1));
        assert.equal(await cache.get(key(2)), undefined);
        assert.deepEqual(await cache.get(key(1)), block(1, 1000));
        // A declined put leaves no older copy under the key.
        await cache.put(key(1), block(3, 8 * 1024 + 1));
        assert.equal(await cache.get(key(1)), undefined);
        assert.equal(cache.stats().entries, 0);
      },
      8 * 1024,
    );

    test(
      'capacity 0 declines every put',
      async ({ cache }) => {
        await cache.put(key(1), Buffer.alloc(0));
        await cache.put(key(2), block(2, 10));
        assert.equal(await cache.get(key(1)), undefined);
        assert.equal(await cache.get(key(2)), undefined);
        assert.equal(cache.stats().bytes, 0);
      },
      0,
    );

    test('stats count hits, misses, entries and bytes', async ({ cache }) => {
      const { hits, misses, corrupt, evictions, entries, bytes } = cache.stats();
      assert.deepEqual({ hits, misses, corrupt, evictions, entries, bytes }, { hits: 0, misses: 0, corrupt: 0, evictions: 0, entries: 0, bytes: 0 });
      await cache.get(key(1));
      await cache.put(key(1), block(1, 4096));
      await cache.put(key(2), block(2, 100));
      await cache.get(key(1));
      await cache.get(key(1));
      await cache.get(key(3));
      const s = cache.stats();
      assert.equal(s.hits, 2);
      assert.equal(s.misses, 2);
      assert.equal(s.entries, 2);
      assert.ok(s.bytes >= 4196, `bytes ${s.bytes} counts at least the data`);
      await cache.delete(key(1));
      assert.equal(cache.stats().entries, 1);
      assert.ok(cache.stats().bytes < s.bytes);
    });

    test('many concurrent puts and gets never return wrong bytes', async ({ cache }) => {
      const n = 200;
      const rand = mulberry32(42);
      const ops: Array<Promise<void>> = [];
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < n; i++) {
          const k = Math.floor(rand() * 50);
          if (rand() < 0.5) ops.push(cache.put(key(k), block(k, 2048 + k)));
          else {
            ops.push(
              cache.get(key(k)).then((got) => {
                if (got !== undefined) assert.deepEqual(got, block(k, 2048 + k), `key ${k}`);
              }),
            );
          }
        }
      }
      await Promise.all(ops);
      for (let k = 0; k < 50; k++) {
        const got = await cache.get(key(k));
        if (got !== undefined) assert.deepEqual(got, block(k, 2048 + k), `key ${k}`);
      }
      assert.ok(cache.stats().bytes <= DEFAULT_CAPACITY_BYTES);
    });

    test('close is idempotent', async ({ cache }) => {
      await cache.put(key(1), block(1, 100));
      await Promise.all([cache.close(), cache.close()]);
      await cache.close();
    });

    test('entries survive reopen', async ({ cache, reopen }) => {
      assert.ok(reopen, 'reopen is given (or the case is skipped)');
      for (let i = 0; i < 5; i++) await cache.put(key(i), block(i, 3000 + i));
      await cache.delete(key(4));
      await cache.close();
      const again = await reopen();
      try {
        for (let i = 0; i < 4; i++) assert.deepEqual(await again.get(key(i)), block(i, 3000 + i), `key ${i}`);
        assert.equal(await again.get(key(4)), undefined);
        assert.equal(again.stats().corrupt, 0);
      } finally {
        await again.close();
      }
    });
  });
}
