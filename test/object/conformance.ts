/**
 * The ObjectStore conformance suite: every store and wrapper runs it from a few-line test file. Each case is
 * named after the contract clause (src/object/store.ts) it checks, and gets a fresh, empty store.
 *
 * A backend that cannot honour a clause declares it in `skip` with the reason; a skip naming no case fails.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  listAll,
  InvalidKeyError,
  KEY_BYTES_MAX,
  LIST_LIMIT_MAX,
  ObjectNotFoundError,
  type ObjectInfo,
  type ObjectStore,
} from '../../src/object/store.js';
import { mulberry32 } from '../../src/util/random.js';

export interface StoreUnderTest {
  store: ObjectStore;
  cleanup(): Promise<void>;
}

export interface ConformanceOptions {
  /** Case name → why this store cannot honour it. */
  skip?: Record<string, string>;
}

const MiB = 1024 * 1024;
/** Clock skew between this machine and a remote store that an mtime may show. */
const MTIME_SKEW_MS_MAX = 5 * 60 * 1000;

export function objectStoreConformance(name: string, open: () => Promise<StoreUnderTest>, opts: ConformanceOptions = {}): void {
  const skip = opts.skip ?? {};
  const cases = new Set<string>();

  /** One case: a fresh store, cleaned up whatever happens. */
  function clause(title: string, body: (store: ObjectStore) => Promise<void>): void {
    cases.add(title);
    const reason = skip[title];
    void it(title, reason === undefined ? {} : { skip: reason }, async () => {
      const { store, cleanup } = await open();
      try {
        await body(store);
      } finally {
        await cleanup();
      }
    });
  }

  void describe(`ObjectStore conformance: ${name}`, () => {
    // --- get ---

    clause('get returns the whole object', async (store) => {
      const data = pattern(1000, 1);
      await store.put('a/b', data);
      assert.deepEqual(await store.get('a/b'), data);
    });

    clause('get with offset and length returns exactly that range', async (store) => {
      const data = pattern(1000, 2);
      await store.put('k', data);
      assert.deepEqual(await store.get('k', { offset: 100, length: 50 }), data.subarray(100, 150));
      assert.deepEqual(await store.get('k', { offset: 0, length: 1 }), data.subarray(0, 1));
      assert.deepEqual(await store.get('k', { offset: 999, length: 1 }), data.subarray(999));
      assert.equal((await store.get('k', { offset: 10, length: 0 })).length, 0);
    });

    clause('get with an offset only returns the rest of the object', async (store) => {
      const data = pattern(1000, 3);
      await store.put('k', data);
      assert.deepEqual(await store.get('k', { offset: 300 }), data.subarray(300));
    });

    clause('get with an offset at or past the end returns no bytes', async (store) => {
      await store.put('k', pattern(100, 4));
      assert.equal((await store.get('k', { offset: 100 })).length, 0);
      assert.equal((await store.get('k', { offset: 5000, length: 10 })).length, 0);
    });

    clause('get with a length past the end returns the bytes that exist', async (store) => {
      const data = pattern(100, 5);
      await store.put('k', data);
      assert.deepEqual(await store.get('k', { offset: 90, length: 1000 }), data.subarray(90));
      assert.deepEqual(await store.get('k', { length: 1000 }), data);
    });

    clause('get of a missing key throws ObjectNotFoundError', async (store) => {
      await store.put('present', pattern(10, 6));
      await rejectsNotFound(store.get('missing'), 'missing');
      await rejectsNotFound(store.get('present/below'), 'present/below');
      await rejectsNotFound(store.get('missing', { offset: 1, length: 1 }), 'missing');
    });

    // --- head ---

    clause('head returns key, size and mtime in ms', async (store) => {
      const before = Date.now();
      await store.put('dir/k', pattern(1234, 7));
      const after = Date.now();
      const info = await store.head('dir/k');
      assert.equal(info.key, 'dir/k');
      assert.equal(info.size, 1234);
      assertRecentMtime(info, before, after);
    });

    clause('head of a missing key throws ObjectNotFoundError', async (store) => {
      await store.put('dir/k', pattern(10, 8));
      await rejectsNotFound(store.head('missing'), 'missing');
      // A prefix of existing keys is no object.
      await rejectsNotFound(store.head('dir'), 'dir');
    });

    // --- put ---

    clause('put replaces an existing object', async (store) => {
      await store.put('k', pattern(5000, 9));
      const second = pattern(10, 10);
      await store.put('k', second);
      assert.deepEqual(await store.get('k'), second);
      assert.equal((await store.head('k')).size, 10);
    });

    clause("put copies the caller's buffer", async (store) => {
      const data = pattern(100, 11);
      const expected = Buffer.from(data);
      await store.put('k', data);
      data.fill(0);
      assert.deepEqual(await store.get('k'), expected);
    });

    clause('get returns a buffer the caller may change', async (store) => {
      const data = pattern(100, 12);
      await store.put('k', data);
      (await store.get('k')).fill(0);
      (await store.get('k', { offset: 10, length: 10 })).fill(0);
      assert.deepEqual(await store.get('k'), data);
    });

    clause('a zero-byte object round-trips', async (store) => {
      await store.put('empty', Buffer.alloc(0));
      assert.equal((await store.get('empty')).length, 0);
      assert.equal((await store.head('empty')).size, 0);
      const listed = await collect(store, '');
      assert.deepEqual(listed.map((o) => [o.key, o.size]), [['empty', 0]]);
    });

    clause('every byte value 0..255 round-trips', async (store) => {
      const data = Buffer.alloc(512);
      for (let i = 0; i < data.length; i++) data[i] = i & 0xff;
      await store.put('bytes', data);
      assert.deepEqual(await store.get('bytes'), data);
      assert.deepEqual(await store.get('bytes', { offset: 250, length: 12 }), data.subarray(250, 262));
    });

    clause('a 5 MiB object round-trips, whole and by range', async (store) => {
      const data = pattern(5 * MiB, 13);
      await store.put('big', data);
      assert.equal((await store.head('big')).size, data.length);
      assert.ok((await store.get('big')).equals(data));
      const start = 3 * MiB - 7;
      assert.ok((await store.get('big', { offset: start, length: MiB })).equals(data.subarray(start, start + MiB)));
      assert.ok((await store.get('big', { offset: 5 * MiB - 3 })).equals(data.subarray(5 * MiB - 3)));
    });

    // --- delete ---

    clause('delete is idempotent', async (store) => {
      await store.delete('never/was');
      await store.put('k', pattern(10, 14));
      await store.delete('k');
      await store.delete('k');
    });

    clause('get and head after delete throw ObjectNotFoundError', async (store) => {
      await store.put('a/b/c', pattern(10, 15));
      await store.delete('a/b/c');
      await rejectsNotFound(store.get('a/b/c'), 'a/b/c');
      await rejectsNotFound(store.head('a/b/c'), 'a/b/c');
      assert.deepEqual(await collect(store, ''), []);
    });

    clause('delete leaves every other key', async (store) => {
      const keys = ['d/a', 'd/b', 'd/b0', 'd/c/x', 'e'];
      for (const key of keys) await store.put(key, Buffer.from(key));
      await store.delete('d/b');
      await store.delete('d/c'); // A prefix of a key is no object: deleting it deletes nothing.
      assert.deepEqual(await keysOf(store, ''), ['d/a', 'd/b0', 'd/c/x', 'e']);
      await store.delete('d/c/x');
      assert.deepEqual(await keysOf(store, ''), ['d/a', 'd/b0', 'e']);
      await store.put('d/c/y', Buffer.from('again')); // Re-creating under a pruned folder works.
      assert.deepEqual(await store.get('d/c/y'), Buffer.from('again'));
    });

    // --- list ---

    clause('list returns keys in bytewise UTF-8 order', async (store) => {
      const keys = [
        // '-' (0x2d) < '.' (0x2e) < '/' (0x2f) < '0' (0x30): a folder sorts where its '/' falls.
        'x/a-b', 'x/a.b', 'x/a/b', 'x/a/c/d', 'x/a0', 'x/ab', 'x/A',
        // Mixed lengths: bytewise, not numeric.
        'y/1', 'y/10', 'y/100', 'y/2', 'y/20',
        // UTF-16 order would put U+1F600 before U+E000 and U+FFFD; UTF-8 order puts it last.
        'z/Z', 'z/z', 'z/é', 'z/\u00ff', 'z/\u4e2d', 'z/\ue000', 'z/\ufffd', 'z/\u{1f600}', 'z/\u{10ffff}',
      ];
      for (const key of shuffled(keys, 16)) await store.put(key, Buffer.from(key));
      const expected = bytewiseSorted(keys);
      assert.deepEqual(await keysOf(store, ''), expected);
      // The same order page by page.
      assert.deepEqual(await keysOf(store, '', 3), expected);
    });

    clause('list prefix may end mid-segment', async (store) => {
      const keys = ['chunks/0/1/a', 'chunks/0/10/b', 'chunks/0/1x', 'chunks/0/2/c', 'chunks/01/d', 'chunks/1/e'];
      for (const key of keys) await store.put(key, Buffer.from(key));
      assert.deepEqual(await keysOf(store, 'chunks/0/1'), ['chunks/0/1/a', 'chunks/0/10/b', 'chunks/0/1x']);
      assert.deepEqual(await keysOf(store, 'chunks/0'), ['chunks/0/1/a', 'chunks/0/10/b', 'chunks/0/1x', 'chunks/0/2/c', 'chunks/01/d']);
      assert.deepEqual(await keysOf(store, 'ch'), keys);
      assert.deepEqual(await keysOf(store, 'chunks/0/1/a'), ['chunks/0/1/a']);
    });

    clause('list prefix ending in / lists that folder and below', async (store) => {
      const keys = ['m/a', 'm/b/c', 'm0', 'm-x', 'n/m/a'];
      for (const key of keys) await store.put(key, Buffer.from(key));
      assert.deepEqual(await keysOf(store, 'm/'), ['m/a', 'm/b/c']);
      assert.deepEqual(await keysOf(store, 'm/b/'), ['m/b/c']);
    });

    clause('list with an empty prefix lists every key', async (store) => {
      const keys = ['a', 'b/c', 'b/d/e', 'c'];
      for (const key of keys) await store.put(key, Buffer.from(key));
      assert.deepEqual(await keysOf(store, ''), keys);
    });

    clause('list of a prefix with no keys is empty and final', async (store) => {
      assert.deepEqual(await store.list(''), { objects: [], more: false });
      await store.put('a/b', Buffer.from('x'));
      for (const prefix of ['b', 'a/c', 'a/b/', 'a/bc', 'zzz/', '../', '/a', 'a//']) {
        assert.deepEqual(await store.list(prefix), { objects: [], more: false }, `prefix ${JSON.stringify(prefix)}`);
      }
    });

    clause('list pages with limit and startAfter cover every key exactly once', async (store) => {
      const keys: string[] = [];
      for (let i = 0; i < 30; i++) keys.push(`p/d${i % 4}/${i}`, `p/${i}`);
      await putAll(store, keys);
      const expected = bytewiseSorted(keys);
      for (const limit of [1, 2, 7, 60, 61, 1000]) {
        const seen: string[] = [];
        let startAfter: string | undefined;
        for (;;) {
          const page = await store.list('p/', { limit, startAfter });
          assert.ok(page.objects.length <= limit, `page of ${page.objects.length} > limit ${limit}`);
          seen.push(...page.objects.map((o) => o.key));
          if (!page.more) break;
          assert.ok(page.objects.length > 0, 'a page with more=true must hold a key');
          startAfter = page.objects.at(-1)!.key;
        }
        assert.deepEqual(seen, expected, `limit ${limit}`);
      }
    });

    clause('list startAfter need not be an existing key', async (store) => {
      const keys = ['s/a', 's/b/1', 's/b/2', 's/c'];
      for (const key of keys) await store.put(key, Buffer.from(key));
      assert.deepEqual(await keysOf(store, 's/', undefined, 's/b'), ['s/b/1', 's/b/2', 's/c']);
      assert.deepEqual(await keysOf(store, 's/', undefined, 's/b/'), ['s/b/1', 's/b/2', 's/c']);
      assert.deepEqual(await keysOf(store, 's/', undefined, 's/b/10'), ['s/b/2', 's/c']);
      assert.deepEqual(await keysOf(store, 's/', undefined, 's/bz'), ['s/c']);
      assert.deepEqual(await keysOf(store, 's/', undefined, 'a'), keys);
      assert.deepEqual(await keysOf(store, 's/', undefined, 't'), []);
    });

    clause("list reports each object's size and mtime", async (store) => {
      const before = Date.now();
      await store.put('l/one', pattern(1, 17));
      await store.put('l/three', pattern(3, 18));
      const after = Date.now();
      const listed = await collect(store, 'l/');
      assert.deepEqual(listed.map((o) => [o.key, o.size]), [['l/one', 1], ['l/three', 3]]);
      for (const info of listed) assertRecentMtime(info, before, after);
    });

    clause(`list pages hold at most ${LIST_LIMIT_MAX} keys`, async (store) => {
      const keys = Array.from({ length: LIST_LIMIT_MAX + 1 }, (_, i) => `many/${i}`);
      await putAll(store, keys);
      for (const limit of [undefined, LIST_LIMIT_MAX + 500]) {
        const page = await store.list('many/', { limit });
        assert.equal(page.objects.length, LIST_LIMIT_MAX, `limit ${limit}`);
        assert.equal(page.more, true);
        const rest = await store.list('many/', { limit, startAfter: page.objects.at(-1)!.key });
        assert.equal(rest.objects.length, 1);
        assert.equal(rest.more, false);
      }
      assert.deepEqual(await keysOf(store, 'many/'), bytewiseSorted(keys));
    });

    // --- keys ---

    clause('invalid keys are rejected by get, put, head and delete', async (store) => {
      const invalid = ['', '/abs', 'a//b', 'a/', '.', '..', 'a/./b', 'a/../b', '../escape', 'a/..', 'a\\b', 'a\0b', 'a\ud800b', 'x'.repeat(KEY_BYTES_MAX + 1)];
      for (const key of invalid) {
        const what = JSON.stringify(key.length > 40 ? `${key.substring(0, 40)}...` : key);
        await assert.rejects(store.put(key, Buffer.from('x')), InvalidKeyError, `put ${what}`);
        await assert.rejects(store.get(key), InvalidKeyError, `get ${what}`);
        await assert.rejects(store.head(key), InvalidKeyError, `head ${what}`);
        await assert.rejects(store.delete(key), InvalidKeyError, `delete ${what}`);
      }
      assert.deepEqual(await collect(store, ''), []);
    });

    clause('unusual but valid keys round-trip', async (store) => {
      const keys = ['sp ace/x', 'per%cent', 'plus+and&amp', 'é/中文/😀', '.hidden/.dot', 'a:b', 'x'.repeat(200), 'q?#*'];
      for (const key of keys) await store.put(key, Buffer.from(key));
      for (const key of keys) assert.deepEqual(await store.get(key), Buffer.from(key), key);
      assert.deepEqual(await keysOf(store, ''), bytewiseSorted(keys));
    });

    clause('a key may also be the prefix of a longer key', async (store) => {
      await store.put('a', Buffer.from('1'));
      await store.put('a/b', Buffer.from('2'));
      assert.deepEqual(await store.get('a'), Buffer.from('1'));
      assert.deepEqual(await keysOf(store, ''), ['a', 'a/b']);
    });

    // --- concurrency ---

    clause('concurrent puts to distinct keys all land', async (store) => {
      const keys = Array.from({ length: 64 }, (_, i) => `c/${i % 8}/${i}`);
      await Promise.all(keys.map((key, i) => store.put(key, pattern(1000 + i, 100 + i))));
      for (const [i, key] of keys.entries()) assert.deepEqual(await store.get(key), pattern(1000 + i, 100 + i), key);
      assert.deepEqual(await keysOf(store, 'c/'), bytewiseSorted(keys));
    });

    clause('concurrent puts of one key leave one whole version', async (store) => {
      const size = 256 * 1024;
      await Promise.all(Array.from({ length: 8 }, (_, i) => store.put('same', Buffer.alloc(size, i + 1))));
      assertUniform(await store.get('same'), size, 8);
      assert.equal((await keysOf(store, '')).length, 1);
    });

    clause('a get racing a put sees the old or the new object whole', async (store) => {
      const size = MiB;
      await store.put('race', Buffer.alloc(size, 1));
      const gets: Promise<Buffer>[] = [];
      const puts: Promise<void>[] = [];
      for (let i = 2; i <= 4; i++) {
        puts.push(store.put('race', Buffer.alloc(size, i)));
        gets.push(store.get('race'), store.get('race'));
      }
      await Promise.all(puts);
      for (const data of await Promise.all(gets)) assertUniform(data, size, 4);
    });

    // --- signals and lifecycle ---

    clause('an already-aborted signal rejects every call', async (store) => {
      await store.put('k', Buffer.from('x'));
      const controller = new AbortController();
      controller.abort();
      const signal = controller.signal;
      const isAbort = (err: unknown): boolean => err === signal.reason || (err instanceof Error && err.name === 'AbortError');
      await assert.rejects(store.get('k', { signal }), isAbort);
      await assert.rejects(store.put('k2', Buffer.from('y'), { signal }), isAbort);
      await assert.rejects(store.head('k', { signal }), isAbort);
      await assert.rejects(store.delete('k', { signal }), isAbort);
      await assert.rejects(store.list('', { signal }), isAbort);
      assert.deepEqual(await keysOf(store, ''), ['k']);
    });

    clause('description names the store', async (store) => {
      assert.equal(typeof store.description, 'string');
      assert.ok(store.description.length > 0);
    });

    clause('close is idempotent and later calls fail', async (store) => {
      await store.put('k', Buffer.from('x'));
      await store.close();
      await store.close();
      await assert.rejects(store.get('k'));
      await assert.rejects(store.put('k', Buffer.from('y')));
      await assert.rejects(store.head('k'));
      await assert.rejects(store.delete('k'));
      await assert.rejects(store.list(''));
    });

    void it('declared skips name existing cases', () => {
      for (const title of Object.keys(skip)) assert.ok(cases.has(title), `skip names no case: ${JSON.stringify(title)}`);
    });
  });
}

// --- helpers ---

/** Deterministic pseudo-random bytes. */
function pattern(size: number, seed: number): Buffer {
  const random = mulberry32(seed);
  const buf = Buffer.alloc(size);
  let i = 0;
  for (; i + 4 <= size; i += 4) buf.writeUInt32LE(Math.floor(random() * 2 ** 32), i);
  for (; i < size; i++) buf[i] = Math.floor(random() * 256);
  return buf;
}

/** The expected list order, computed independently of the stores' comparator: compare the UTF-8 bytes. */
function bytewiseSorted(keys: string[]): string[] {
  return [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

function shuffled<T>(items: T[], seed: number): T[] {
  const random = mulberry32(seed);
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

async function collect(store: ObjectStore, prefix: string): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const info of listAll(store, prefix)) out.push(info);
  return out;
}

/** Every key under prefix, paging with `limit` (default: the store's), starting after `startAfter`. */
async function keysOf(store: ObjectStore, prefix: string, limit?: number, startAfter?: string): Promise<string[]> {
  const keys: string[] = [];
  for (;;) {
    const page = await store.list(prefix, { limit, startAfter });
    keys.push(...page.objects.map((o) => o.key));
    const last = page.objects.at(-1);
    if (!page.more || last === undefined) return keys;
    startAfter = last.key;
  }
}

/** Puts each key (its own name as data), a bounded number at a time. */
async function putAll(store: ObjectStore, keys: string[], inFlightMax = 32): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < keys.length) {
      const key = keys[next++]!;
      await store.put(key, Buffer.from(key));
    }
  };
  await Promise.all(Array.from({ length: inFlightMax }, worker));
}

async function rejectsNotFound(promise: Promise<unknown>, key: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof ObjectNotFoundError, `expected ObjectNotFoundError, got ${String(err)}`);
    assert.equal(err.key, key);
    return true;
  });
}

function assertRecentMtime(info: ObjectInfo, before: number, after: number): void {
  assert.ok(Number.isFinite(info.mtime), `mtime ${info.mtime}`);
  assert.ok(info.mtime >= before - MTIME_SKEW_MS_MAX && info.mtime <= after + MTIME_SKEW_MS_MAX, `mtime ${info.mtime} not within [${before}, ${after}] (ms)`);
}

/** data is `size` bytes, all one value in 1..valuesMax: one whole version, not a mix. */
function assertUniform(data: Buffer, size: number, valuesMax: number): void {
  assert.equal(data.length, size);
  const value = data[0]!;
  assert.ok(value >= 1 && value <= valuesMax, `unexpected byte ${value}`);
  assert.ok(data.every((b) => b === value), 'object mixes two versions');
}
