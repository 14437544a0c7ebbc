/**
 * The MetaEngine conformance suite: every engine (SQLite, Redis, PostgreSQL) runs it from a few-line test
 * file. Each case is named after the contract clause (src/meta/engine.ts) it checks, and gets a fresh, empty
 * engine from `open`; cases that need a second engine (applyLog, restore) call `open` again.
 *
 * An engine that cannot honour a clause declares it in `skip` with the reason; a skip naming no case fails.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareKeys, ConsumerNotFoundError, LogTrimmedError, type Json, type Kind, type LogEntry, type LogOp, type MetaEngine, type Txn } from '../../src/meta/engine.js';
import { LOG_PRUNE_EVERY_ENTRIES } from '../../src/meta/core.js';
import { getLogRetention, LOG_RETENTION_AGE_MS_DEFAULT, setLogRetention } from '../../src/meta/retention.js';
import { writeDemotion } from '../../src/meta/epoch.js';
import { isFsError } from '../../src/errors.js';

export interface EngineUnderTest {
  engine: MetaEngine;
  /** Opens the same storage again after `engine` was closed (durability cases are skipped without it). */
  reopen?: () => Promise<MetaEngine>;
  cleanup(): Promise<void>;
}

export interface EngineConformanceOptions {
  /** Case name → why this engine cannot honour it. */
  skip?: Record<string, string>;
}

/** Keys whose bytewise (UTF-8) order differs from both JS string order and locale order. */
const ORDER_KEYS = ['a', 'B', 'é', '10', '9', '\u{1F600}', '\uFF5E', 'a\u0001', 'aa', 'Z', '~'];

const JSON_VALUES: Array<[string, Json]> = [
  ['object', { a: 1, nested: { list: [1, 'two', { three: 3 }], empty: {} }, t: true, f: false }],
  ['array', [1, 'x', [2, [3]], { k: 'v' }, true, false, null]],
  ['unicode', 'héllo wörld — 日本語 \u{1F600} \u0000 "quoted" \\ back\nslash'],
  ['emptystring', ''],
  ['zero', 0],
  ['negative', -42],
  ['fraction', 1234.5678],
  ['tiny', 1e-9],
  ['maxsafe', 2 ** 53 - 1],
  ['minsafe', -(2 ** 53 - 1)],
  ['true', true],
  ['false', false],
];

export function metaEngineConformance(name: string, open: () => Promise<EngineUnderTest>, opts: EngineConformanceOptions = {}): void {
  const skip = opts.skip ?? {};
  const cases = new Set<string>();

  /** One case: a fresh engine, closed and cleaned up whatever happens. */
  function clause(title: string, body: (engine: MetaEngine, under: EngineUnderTest) => Promise<void>, needsReopen = false): void {
    cases.add(title);
    const reason = skip[title];
    it(title, reason === undefined ? {} : { skip: reason }, async (t) => {
      const under = await open();
      try {
        if (needsReopen && under.reopen === undefined) {
          t.skip('the engine under test gives no reopen()');
          return;
        }
        await body(under.engine, under);
      } finally {
        await under.cleanup();
      }
    });
  }

  /** A second, independent fresh engine for the duration of `body`. */
  async function withSecond(body: (other: MetaEngine) => Promise<void>): Promise<void> {
    const under = await open();
    try {
      await body(under.engine);
    } finally {
      await under.cleanup();
    }
  }

  describe(`MetaEngine conformance: ${name}`, () => {
    // --- records ---

    clause('get of a missing record returns undefined', async (engine) => {
      assert.equal(await engine.txn((tx) => tx.get('inode', '', '1')), undefined);
      await put(engine, 'inode', '', '1', { x: 1 });
      assert.equal(await engine.txn((tx) => tx.get('inode', '', '2')), undefined);
      assert.equal(await engine.txn((tx) => tx.get('inode', 'other', '1')), undefined, 'another part');
      assert.equal(await engine.txn((tx) => tx.get('xattr', '', '1')), undefined, 'another kind');
    });

    clause('put then get round-trips JSON values', async (engine) => {
      await engine.txn(async (tx) => {
        for (const [key, value] of JSON_VALUES) tx.put('setting', '', key, value as object | string | number | boolean);
        // Own writes are visible before commit, equal in value.
        for (const [key, value] of JSON_VALUES) assert.deepEqual(await tx.get('setting', '', key), value, key);
      });
      await engine.txn(
        async (tx) => {
          for (const [key, value] of JSON_VALUES) assert.deepEqual(await tx.get('setting', '', key), value, key);
        },
        { readonly: true },
      );
    });

    clause('records are addressed by kind, part and key together', async (engine) => {
      await engine.txn(async (tx) => {
        tx.put('entry', '1', 'x', { v: 'entry/1/x' });
        tx.put('entry', '2', 'x', { v: 'entry/2/x' });
        tx.put('entry', '12', 'x', { v: 'entry/12/x' });
        tx.put('xattr', '1', 'x', 'xattr/1/x');
        tx.put('chunk', '日本', '\u{1F600}', [1]);
        await Promise.resolve();
      });
      await engine.txn(async (tx) => {
        assert.deepEqual(await tx.get('entry', '1', 'x'), { v: 'entry/1/x' });
        assert.deepEqual(await tx.get('entry', '2', 'x'), { v: 'entry/2/x' });
        assert.deepEqual(await tx.get('entry', '12', 'x'), { v: 'entry/12/x' });
        assert.equal(await tx.get('xattr', '1', 'x'), 'xattr/1/x');
        assert.deepEqual(await tx.get('chunk', '日本', '\u{1F600}'), [1]);
      });
    });

    clause('parts and keys are opaque: separator-like characters never make two records one', async (engine) => {
      // Pairs that collide if an engine joins part and key with ':', '/' or '|'. (Parts and keys never hold
      // NUL: the POSIX layer rejects it in names, and PostgreSQL text cannot store it.)
      const records: Array<[string, string, number]> = [
        ['a:b', 'c', 1],
        ['a', 'b:c', 2],
        ['a|b', 'c', 3],
        ['a', 'b|c', 4],
        ['a/b', 'c', 5],
        ['a', 'b/c', 6],
      ];
      await engine.txn(async (tx) => {
        for (const [part, key, v] of records) tx.put('entry', part, key, v);
        // Own writes, before commit.
        for (const [part, key, v] of records) assert.equal(await tx.get('entry', part, key), v, `buffered ${JSON.stringify([part, key])}`);
      });
      await engine.txn(async (tx) => {
        for (const [part, key, v] of records) assert.equal(await tx.get('entry', part, key), v, JSON.stringify([part, key]));
      });
      assert.deepEqual(await engine.txn((tx) => tx.scan('entry', 'a')), [
        ['b/c', 6],
        ['b:c', 2],
        ['b|c', 4],
      ]);
      const log = await engine.readLog(0, 10);
      assert.equal(log[0]?.ops.length, records.length, 'one op per record in the entry');
    });

    clause('put replaces an existing value', async (engine) => {
      await put(engine, 'counter', '', 'n', 1);
      await put(engine, 'counter', '', 'n', { now: 'an object' });
      assert.deepEqual(await engine.txn((tx) => tx.get('counter', '', 'n')), { now: 'an object' });
    });

    clause('del removes a record; del of a missing record is a no-op', async (engine) => {
      await put(engine, 'inode', '', '5', { a: 1 });
      await engine.txn(async (tx) => {
        tx.del('inode', '', '5');
        tx.del('inode', '', 'never-existed');
        assert.equal(await tx.get('inode', '', '5'), undefined, 'own delete visible before commit');
      });
      assert.equal(await engine.txn((tx) => tx.get('inode', '', '5')), undefined);
      assert.deepEqual(await engine.txn((tx) => tx.scan('inode', '')), []);
    });

    clause('a value returned by get or scan is the caller’s copy', async (engine) => {
      await put(engine, 'inode', '', '1', { list: [1, 2], n: 1 });
      await engine.txn(async (tx) => {
        const v = (await tx.get<{ list: number[]; n: number }>('inode', '', '1'))!;
        v.list.push(3);
        v.n = 99;
        const [[, s]] = (await tx.scan<{ list: number[]; n: number }>('inode', '')) as [[string, { list: number[]; n: number }]];
        s.n = 100;
      });
      assert.deepEqual(await engine.txn((tx) => tx.get('inode', '', '1')), { list: [1, 2], n: 1 });
    });

    clause('getFollowing answers the record and the one its field names, as two gets would', async (engine) => {
      await engine.txn(async (tx) => {
        tx.put('entry', '1', 'a', { ino: 7, type: 'file' });
        tx.put('entry', '1', 's', { ino: 'x:y', type: 'file' });
        tx.put('entry', '1', 'dangling', { ino: 99, type: 'file' });
        tx.put('entry', '1', 'nofield', { type: 'file' });
        tx.put('entry', '1', 'scalar', 5);
        tx.put('entry', '1', 'frac', { ino: 1.5 });
        tx.put('inode', '', '7', { n: 7 });
        tx.put('inode', '', 'x:y', { n: 'xy' });
        await Promise.resolve();
      });
      const follow = (tx: Txn, key: string): Promise<[Json | undefined, Json | undefined]> => {
        assert.ok(tx.getFollowing !== undefined, "the engine's transactions offer getFollowing");
        return tx.getFollowing('entry', '1', key, 'ino', 'inode', '');
      };
      for (const readonly of [true, false]) {
        await engine.txn(
          async (tx) => {
            assert.deepEqual(await follow(tx, 'a'), [{ ino: 7, type: 'file' }, { n: 7 }]);
            assert.deepEqual(await follow(tx, 's'), [{ ino: 'x:y', type: 'file' }, { n: 'xy' }], 'a string field');
            assert.deepEqual(await follow(tx, 'dangling'), [{ ino: 99, type: 'file' }, undefined]);
            assert.deepEqual(await follow(tx, 'missing'), [undefined, undefined]);
            assert.deepEqual(await follow(tx, 'nofield'), [{ type: 'file' }, undefined]);
            assert.deepEqual(await follow(tx, 'scalar'), [5, undefined]);
            assert.deepEqual(await follow(tx, 'frac'), [{ ino: 1.5 }, undefined], 'not an integer');
          },
          { readonly },
        );
      }
      // Inside a writing transaction its own writes win, on either side of the reference.
      await engine.txn(async (tx) => {
        tx.put('inode', '', '7', { n: 'mine' });
        assert.deepEqual(await follow(tx, 'a'), [{ ino: 7, type: 'file' }, { n: 'mine' }]);
        tx.put('entry', '1', 'a', { ino: 'x:y', type: 'file' });
        assert.deepEqual(await follow(tx, 'a'), [{ ino: 'x:y', type: 'file' }, { n: 'xy' }]);
        tx.del('entry', '1', 's');
        assert.deepEqual(await follow(tx, 's'), [undefined, undefined]);
      });
      assert.deepEqual(await engine.txn((tx) => tx.get('inode', '', '7')), { n: 'mine' });
    });

    // --- scans ---

    clause('scan returns one part in ascending bytewise key order', async (engine) => {
      await engine.txn(async (tx) => {
        for (const k of ORDER_KEYS) tx.put('entry', 'p', k, { k });
        tx.put('entry', 'pp', 'a', { k: 'other part' });
        tx.put('entry', '', 'a', { k: 'empty part' });
        tx.put('xattr', 'p', 'a', 'other kind');
        await Promise.resolve();
      });
      const expected = [...ORDER_KEYS].sort(compareKeys);
      // The bytewise order is not JS string order: '\uFF5E' (EF BD 9E) sorts before '\u{1F600}' (F0 9F 98 80).
      assert.ok(expected.indexOf('\uFF5E') < expected.indexOf('\u{1F600}'));
      const rows = await engine.txn((tx) => tx.scan('entry', 'p'));
      assert.deepEqual(
        rows.map(([k]) => k),
        expected,
      );
      assert.deepEqual(
        rows.map(([, v]) => v),
        expected.map((k) => ({ k })),
      );
    });

    clause('scan without after includes the empty key', async (engine) => {
      await engine.txn(async (tx) => {
        tx.put('setting', 'p', '', 'empty');
        tx.put('setting', 'p', 'a', 'a');
        await Promise.resolve();
      });
      assert.deepEqual(await engine.txn((tx) => tx.scan('setting', 'p')), [
        ['', 'empty'],
        ['a', 'a'],
      ]);
      assert.deepEqual(await engine.txn((tx) => tx.scan('setting', 'p', { after: '' })), [['a', 'a']]);
    });

    clause('scan of an empty part returns no records', async (engine) => {
      await put(engine, 'entry', '1', 'a', { ino: 2 });
      assert.deepEqual(await engine.txn((tx) => tx.scan('entry', '2')), []);
      assert.deepEqual(await engine.txn((tx) => tx.scan('entry', '1', { after: 'a' })), []);
    });

    clause('scan after returns only keys strictly greater', async (engine) => {
      await engine.txn(async (tx) => {
        for (const k of ORDER_KEYS) tx.put('entry', 'p', k, 1);
        await Promise.resolve();
      });
      const sorted = [...ORDER_KEYS].sort(compareKeys);
      for (const after of [...sorted, '9a', '\u{1F601}', 'b']) {
        const rows = await engine.txn((tx) => tx.scan('entry', 'p', { after }));
        assert.deepEqual(
          rows.map(([k]) => k),
          sorted.filter((k) => compareKeys(k, after) > 0),
          `after ${JSON.stringify(after)}`,
        );
      }
    });

    clause('scan after and limit page through a part', async (engine) => {
      const keys = Array.from({ length: 37 }, (_, i) => `k${String(i).padStart(3, '0')}`);
      await engine.txn(async (tx) => {
        for (const k of keys) tx.put('chunk', '7', k, [k]);
        await Promise.resolve();
      });
      for (const limit of [1, 5, 10, 37, 100]) {
        const seen: string[] = [];
        let after: string | undefined;
        for (let pages = 0; ; pages++) {
          assert.ok(pages <= keys.length, 'paging does not end');
          const rows = await engine.txn((tx) => tx.scan('chunk', '7', { after, limit }));
          assert.ok(rows.length <= limit, `page of ${rows.length} > limit ${limit}`);
          for (const [k, v] of rows) {
            seen.push(k);
            assert.deepEqual(v, [k]);
          }
          if (rows.length < limit) break;
          after = rows[rows.length - 1]![0];
        }
        assert.deepEqual(seen, keys, `limit ${limit}`);
      }
    });

    clause('scan inside a txn sees its own puts and deletes', async (engine) => {
      await engine.txn(async (tx) => {
        for (const k of ['b', 'd', 'f']) tx.put('entry', 'p', k, 'old');
        await Promise.resolve();
      });
      await engine.txn(async (tx) => {
        tx.put('entry', 'p', 'a', 'new');
        tx.put('entry', 'p', 'd', 'changed');
        tx.del('entry', 'p', 'f');
        tx.put('entry', 'p', 'g', 'new');
        tx.put('entry', 'p', 'h', 'gone again');
        tx.del('entry', 'p', 'h');
        tx.put('entry', 'other', 'c', 'other part');
        assert.deepEqual(await tx.scan('entry', 'p'), [
          ['a', 'new'],
          ['b', 'old'],
          ['d', 'changed'],
          ['g', 'new'],
        ]);
        assert.deepEqual(await tx.scan('entry', 'p', { after: 'b' }), [
          ['d', 'changed'],
          ['g', 'new'],
        ]);
      });
    });

    clause('scan with limit inside a txn: own deletes do not shorten the page', async (engine) => {
      await engine.txn(async (tx) => {
        for (const k of ['a', 'b', 'c', 'd', 'e', 'f']) tx.put('entry', 'p', k, k);
        await Promise.resolve();
      });
      await engine.txn(async (tx) => {
        tx.del('entry', 'p', 'a');
        tx.del('entry', 'p', 'b');
        tx.del('entry', 'p', 'd');
        assert.deepEqual(await tx.scan('entry', 'p', { limit: 2 }), [
          ['c', 'c'],
          ['e', 'e'],
        ]);
        assert.deepEqual(await tx.scan('entry', 'p', { limit: 1 }), [['c', 'c']]);
        assert.deepEqual(await tx.scan('entry', 'p', { after: 'c', limit: 5 }), [
          ['e', 'e'],
          ['f', 'f'],
        ]);
        // A delete of every remaining key empties the part.
        tx.del('entry', 'p', 'c');
        tx.del('entry', 'p', 'e');
        tx.del('entry', 'p', 'f');
        assert.deepEqual(await tx.scan('entry', 'p', { limit: 1 }), []);
      });
    });

    clause('scan with limit inside a txn: paging sees exactly committed plus own writes', async (engine) => {
      const committed = Array.from({ length: 20 }, (_, i) => `k${String(i * 2).padStart(2, '0')}`); // k00, k02, ... k38
      await engine.txn(async (tx) => {
        for (const k of committed) tx.put('entry', 'p', k, 'c');
        await Promise.resolve();
      });
      await engine.txn(async (tx) => {
        const model = new Map<string, Json>(committed.map((k) => [k, 'c']));
        // Own writes before, between and after committed keys, and deletes of some committed ones.
        for (const k of ['a', 'k01', 'k05', 'k06', 'k39', 'k99', 'z']) {
          tx.put('entry', 'p', k, 'mine');
          model.set(k, 'mine');
        }
        for (const k of ['k00', 'k08', 'k10', 'k12', 'k38', 'k05']) {
          tx.del('entry', 'p', k);
          model.delete(k);
        }
        const expected = [...model.entries()].sort((x, y) => compareKeys(x[0], y[0]));
        for (const limit of [1, 2, 3, 7, 50]) {
          const seen: Array<[string, Json]> = [];
          let after: string | undefined;
          for (let pages = 0; ; pages++) {
            assert.ok(pages < 100, 'paging does not end');
            const rows = await tx.scan('entry', 'p', { after, limit });
            assert.ok(rows.length <= limit);
            seen.push(...rows);
            if (rows.length < limit) break;
            after = rows[rows.length - 1]![0];
          }
          assert.deepEqual(seen, expected, `limit ${limit}`);
        }
      });
    });

    // --- transactions ---

    clause('txn returns the value fn returns', async (engine) => {
      assert.deepEqual(await engine.txn(() => Promise.resolve({ answer: 42 })), { answer: 42 });
      assert.equal(await engine.txn(() => Promise.resolve('ro'), { readonly: true }), 'ro');
    });

    clause('writes are invisible to other transactions until commit', async (engine) => {
      let writerInFn = false;
      let sawUncommitted = false;
      const writer = engine.txn(async (tx) => {
        writerInFn = true;
        tx.put('inode', '', '9', { pending: true });
        await sleep(50);
        writerInFn = false;
      });
      await sleep(10);
      const reader = engine.txn(
        async (tx) => {
          const v = await tx.get('inode', '', '9');
          if (writerInFn && v !== undefined) sawUncommitted = true;
        },
        { readonly: true },
      );
      await Promise.all([writer, reader]);
      assert.equal(sawUncommitted, false, 'a reader saw a write before its commit');
      // (An engine that serializes readers behind writers never reads while the writer runs: also legal.)
      assert.deepEqual(await engine.txn((tx) => tx.get('inode', '', '9')), { pending: true });
    });

    clause('a txn that throws writes nothing, appends no entry and rethrows', async (engine) => {
      await put(engine, 'inode', '', '1', { v: 1 });
      const seq = await engine.lastSeq();
      const boom = new Error('boom');
      await assert.rejects(
        engine.txn(async (tx) => {
          tx.put('inode', '', '1', { v: 2 });
          tx.put('inode', '', '2', { v: 2 });
          tx.del('inode', '', '1');
          tx.put('session', '', '1', { s: 1 });
          await Promise.resolve();
          throw boom;
        }),
        (e: unknown) => e === boom,
      );
      assert.equal(await engine.lastSeq(), seq);
      assert.deepEqual(await engine.txn((tx) => tx.get('inode', '', '1')), { v: 1 });
      assert.equal(await engine.txn((tx) => tx.get('inode', '', '2')), undefined);
      assert.equal(await engine.txn((tx) => tx.get('session', '', '1')), undefined);
      assert.deepEqual(
        (await engine.readLog(0, 100)).map((e) => e.seq),
        [1],
      );
      // The engine stays usable.
      await put(engine, 'inode', '', '3', { v: 3 });
      assert.equal(await engine.lastSeq(), seq + 1);
    });

    clause('a readonly txn reads the committed state', async (engine) => {
      await engine.txn(async (tx) => {
        tx.put('entry', '1', 'a', { ino: 3 });
        tx.put('entry', '1', 'b', { ino: 4 });
        await Promise.resolve();
      });
      const seq = await engine.lastSeq();
      const [a, rows] = await engine.txn(async (tx) => [await tx.get('entry', '1', 'a'), await tx.scan('entry', '1')] as const, { readonly: true });
      assert.deepEqual(a, { ino: 3 });
      assert.deepEqual(rows, [
        ['a', { ino: 3 }],
        ['b', { ino: 4 }],
      ]);
      assert.equal(await engine.lastSeq(), seq, 'a readonly txn appends no entry');
    });

    clause('concurrent transactions lose no update', async (engine) => {
      const n = 50;
      const increment = (): Promise<void> =>
        engine.txn(async (tx) => {
          const c = (await tx.get<number>('counter', '', 'c')) ?? 0;
          await sleep(0); // let the other transactions run in between
          tx.put('counter', '', 'c', c + 1);
        });
      await Promise.all(Array.from({ length: n }, increment));
      assert.equal(await engine.txn((tx) => tx.get('counter', '', 'c')), n);
      assert.equal(await engine.lastSeq(), n);
      const log = await engine.readLog(0, 1000);
      assert.deepEqual(
        log.map((e) => e.seq),
        range(1, n),
      );
      // Each entry holds the value its transaction wrote: 1..n in commit order.
      assert.deepEqual(
        log.map((e) => e.ops),
        range(1, n).map((v) => [['counter', '', 'c', v]]),
      );
    });

    // --- changelog ---

    clause('a fresh engine has lastSeq 0, logFloor 0 and an empty log', async (engine) => {
      assert.equal(await engine.lastSeq(), 0);
      assert.equal(await engine.logFloor(), 0);
      assert.deepEqual(await engine.readLog(0, 10), []);
    });

    clause('each writing txn appends exactly one entry with gapless seq from 1', async (engine) => {
      const before = Date.now();
      await put(engine, 'inode', '', '1', { a: 1 });
      await engine.txn(async (tx) => {
        tx.put('inode', '', '2', { a: 2 });
        tx.put('entry', '1', 'x', { ino: 2 });
        tx.put('counter', '', 'n', 3);
        await Promise.resolve();
      });
      await engine.txn(async (tx) => {
        tx.del('inode', '', '1');
        await Promise.resolve();
      });
      const after = Date.now();
      assert.equal(await engine.lastSeq(), 3);
      const log = await engine.readLog(0, 100);
      assert.deepEqual(
        log.map((e) => e.seq),
        [1, 2, 3],
      );
      for (const e of log) assert.ok(e.time >= before - 1000 && e.time <= after + 1000, `entry time ${e.time} not within [${before}, ${after}]`);
      assert.deepEqual(log[0]!.ops, [['inode', '', '1', { a: 1 }]]);
      assert.deepEqual(sortOps(log[1]!.ops), sortOps([
        ['inode', '', '2', { a: 2 }],
        ['entry', '1', 'x', { ino: 2 }],
        ['counter', '', 'n', 3],
      ]));
      assert.deepEqual(log[2]!.ops, [['inode', '', '1', null]]);
    });

    clause('a txn that writes nothing appends no entry', async (engine) => {
      await put(engine, 'inode', '', '1', { a: 1 });
      await engine.txn(async (tx) => {
        await tx.get('inode', '', '1');
        await tx.scan('inode', '');
      });
      assert.equal(await engine.lastSeq(), 1);
      assert.equal((await engine.readLog(0, 10)).length, 1);
    });

    clause('unlogged kinds (session, sustained, lock) produce no entry', async (engine) => {
      await engine.txn(async (tx) => {
        tx.put('session', '', '1', { host: 'h' });
        tx.put('sustained', '1', '7', 1);
        tx.put('lock', '7', 'owner', { type: 'w' });
        await Promise.resolve();
      });
      assert.equal(await engine.lastSeq(), 0, 'a txn writing only unlogged kinds advanced lastSeq');
      assert.deepEqual(await engine.readLog(0, 10), []);
      // The records are stored all the same.
      assert.deepEqual(await engine.txn((tx) => tx.get('session', '', '1')), { host: 'h' });
      assert.equal(await engine.txn((tx) => tx.get('sustained', '1', '7')), 1);
      await engine.txn(async (tx) => {
        tx.del('session', '', '1');
        await Promise.resolve();
      });
      assert.equal(await engine.lastSeq(), 0, 'deleting an unlogged record advanced lastSeq');
      // A txn mixing both logs only the logged kinds.
      await engine.txn(async (tx) => {
        tx.put('session', '', '2', { host: 'h2' });
        tx.put('inode', '', '7', { a: 7 });
        tx.del('sustained', '1', '7');
        await Promise.resolve();
      });
      assert.equal(await engine.lastSeq(), 1);
      assert.deepEqual((await engine.readLog(0, 10))[0]!.ops, [['inode', '', '7', { a: 7 }]]);
    });

    clause('entries hold resulting states (value, or null for deleted)', async (engine) => {
      await engine.txn(async (tx) => {
        tx.put('inode', '', '1', { v: 1 });
        tx.put('inode', '', '2', { v: 1 });
        await Promise.resolve();
      });
      await engine.txn(async (tx) => {
        tx.put('inode', '', '1', { v: 2 });
        tx.put('inode', '', '1', { v: 3 }); // twice in one txn: only the final state
        tx.del('inode', '', '2');
        tx.put('inode', '', '3', { v: 'created then deleted' });
        tx.del('inode', '', '3');
        await Promise.resolve();
      });
      const [, second] = (await engine.readLog(0, 10)) as [LogEntry, LogEntry];
      assert.deepEqual(sortOps(second.ops), sortOps([
        ['inode', '', '1', { v: 3 }],
        ['inode', '', '2', null],
        ['inode', '', '3', null],
      ]));
    });

    clause('readLog after and limit page through the log', async (engine) => {
      for (let i = 1; i <= 10; i++) await put(engine, 'counter', '', 'n', i);
      assert.deepEqual(
        (await engine.readLog(0, 3)).map((e) => e.seq),
        [1, 2, 3],
      );
      assert.deepEqual(
        (await engine.readLog(3, 3)).map((e) => e.seq),
        [4, 5, 6],
      );
      assert.deepEqual(
        (await engine.readLog(8, 100)).map((e) => e.seq),
        [9, 10],
      );
      assert.deepEqual(await engine.readLog(10, 100), [], 'at the end');
      assert.deepEqual(await engine.readLog(50, 100), [], 'past the end');
      assert.deepEqual(
        (await engine.readLog(4, 1)).map((e) => e.ops),
        [[['counter', '', 'n', 5]]],
      );
    });

    clause('trimLog drops old entries; readLog before the floor throws LogTrimmedError', async (engine) => {
      for (let i = 1; i <= 10; i++) await put(engine, 'counter', '', 'n', i);
      await engine.trimLog(4);
      assert.equal(await engine.logFloor(), 4);
      assert.equal(await engine.lastSeq(), 10, 'trimming keeps lastSeq');
      assert.deepEqual(
        (await engine.readLog(4, 100)).map((e) => e.seq),
        [5, 6, 7, 8, 9, 10],
      );
      for (const after of [0, 3]) {
        await assert.rejects(engine.readLog(after, 100), (e: unknown) => {
          assert.ok(e instanceof LogTrimmedError, `expected LogTrimmedError, got ${String(e)}`);
          assert.equal(e.code, 'ETRIMMED');
          assert.equal(e.after, after);
          assert.equal(e.floor, 4);
          return true;
        });
      }
      // Trimming to an older point changes nothing; numbering continues after the trimmed entries.
      await engine.trimLog(2);
      assert.equal(await engine.logFloor(), 4);
      await put(engine, 'counter', '', 'n', 11);
      assert.deepEqual(
        (await engine.readLog(9, 100)).map((e) => e.seq),
        [10, 11],
      );
    });

    // --- commit and its seq ---

    clause('commit answers the seq of its entry, under which readLog returns it', async (engine) => {
      const a = await engine.commit(async (tx) => {
        tx.put('inode', '', '1', { a: 1 });
        await Promise.resolve();
        return 'first';
      });
      const b = await engine.commit(async (tx) => {
        tx.put('inode', '', '2', { b: 2 });
        tx.put('session', '', '9', { unlogged: 'but alongside a logged write' });
        await Promise.resolve();
        return 'second';
      });
      assert.deepEqual([a, b], [
        { value: 'first', seq: 1 },
        { value: 'second', seq: 2 },
      ]);
      const log = await engine.readLog(0, 10);
      assert.deepEqual(
        log.map((e) => [e.seq, e.ops]),
        [
          [1, [['inode', '', '1', { a: 1 }]]],
          [2, [['inode', '', '2', { b: 2 }]]],
        ],
      );
      assert.equal(await engine.txn(() => Promise.resolve('txn is commit’s value')), 'txn is commit’s value');
    });

    clause('commit answers seq undefined when it logged nothing: readonly, no writes, only unlogged kinds', async (engine) => {
      await put(engine, 'inode', '', '1', { a: 1 });
      const readonly = await engine.commit((tx) => tx.get('inode', '', '1'), { readonly: true });
      assert.deepEqual(readonly, { value: { a: 1 }, seq: undefined });
      const noWrites = await engine.commit(async (tx) => (await tx.scan('inode', '')).length);
      assert.deepEqual(noWrites, { value: 1, seq: undefined });
      const unlogged = await engine.commit(async (tx) => {
        tx.put('session', '', '1', { host: 'h' });
        tx.put('lock', '1', 'o', { t: 1 });
        tx.put('consumer', '', 'x', { position: 0, registered: 0, updated: 0 });
        await Promise.resolve();
        return 'unlogged';
      });
      assert.deepEqual(unlogged, { value: 'unlogged', seq: undefined });
      assert.equal(await engine.lastSeq(), 1, 'none of them appended an entry');
      const next = await engine.commit(async (tx) => {
        tx.put('inode', '', '2', { a: 2 });
        await Promise.resolve();
      });
      assert.equal(next.seq, 2, 'numbering went on without a gap');
    });

    clause('a demoted engine refuses a commit that appends an entry, writing nothing; unlogged writes pass', async (engine) => {
      await put(engine, 'inode', '', '1', { v: 1 });
      await writeDemotion(engine, { v: 1, epoch: 2, region: 'other', meta: 'sqlite:///elsewhere.db', at: 1 });
      const last = await engine.lastSeq();
      await assert.rejects(
        engine.txn(async (tx) => {
          await tx.get('inode', '', '1');
          tx.put('inode', '', '1', { v: 2 });
        }),
        (e: unknown) => isFsError(e, 'EROFS') && /region 'other' is the primary of epoch 2/.test((e as Error).message),
      );
      assert.deepEqual(await engine.txn((tx) => tx.get('inode', '', '1')), { v: 1 }, 'nothing written');
      assert.equal(await engine.lastSeq(), last, 'no entry appended');
      await engine.txn(async (tx) => {
        await tx.get('inode', '', '1');
        tx.put('session', '', '7', { live: true });
      });
      assert.deepEqual(await engine.txn((tx) => tx.get('session', '', '7')), { live: true }, 'an unlogged write passes');
    });

    clause('concurrent commits answer distinct seqs, each naming its own entry', async (engine) => {
      const n = 30;
      const results = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          engine.commit(async (tx) => {
            const c = (await tx.get<number>('counter', '', 'c')) ?? 0;
            await sleep(0);
            tx.put('counter', '', 'c', c + 1);
            tx.put('inode', '', `w${i}`, { writer: i });
            return i;
          }),
        ),
      );
      const seqs = results.map((r) => r.seq);
      assert.deepEqual([...seqs].sort((x, y) => x! - y!), range(1, n));
      const log = new Map((await engine.readLog(0, 100)).map((e) => [e.seq, e]));
      for (const { value, seq } of results) {
        assert.ok(log.get(seq!)!.ops.some((op) => op[0] === 'inode' && op[2] === `w${value}`), `entry ${seq} is not writer ${value}'s`);
      }
    });

    clause('logBounds reads the floor and the newest seq together', async (engine) => {
      assert.deepEqual(await engine.logBounds(), { floor: 0, last: 0 });
      for (let i = 1; i <= 5; i++) await put(engine, 'counter', '', 'n', i);
      await engine.trimLog(2);
      assert.deepEqual(await engine.logBounds(), { floor: 2, last: 5 });
      assert.equal(await engine.lastSeq(), 5);
      assert.equal(await engine.logFloor(), 2);
    });

    // --- consumers and trimming ---

    clause('consumers: register, advance, list and remove', async (engine) => {
      assert.deepEqual(await engine.listConsumers(), []);
      const t0 = Date.now();
      await engine.registerConsumer('mirror:eu', 0);
      await engine.registerConsumer('replicate:*>*', 5);
      await engine.advanceConsumer('mirror:eu', 3);
      await engine.advanceConsumer('mirror:eu', 7);
      const listed = await engine.listConsumers();
      assert.deepEqual(
        listed.map((c) => [c.name, c.position]),
        [
          ['mirror:eu', 7],
          ['replicate:*>*', 5],
        ],
      );
      for (const c of listed) assert.ok(c.registered >= t0 - 1000 && c.updated >= c.registered, JSON.stringify(c));
      // Registering again starts over at the position given (a consumer that re-bootstrapped).
      await engine.registerConsumer('replicate:*>*', 2);
      assert.equal((await engine.listConsumers()).find((c) => c.name === 'replicate:*>*')?.position, 2);
      assert.equal(await engine.removeConsumer('mirror:eu'), true);
      assert.equal(await engine.removeConsumer('mirror:eu'), false, 'removing twice');
      assert.deepEqual((await engine.listConsumers()).map((c) => c.name), ['replicate:*>*']);
      await assert.rejects(engine.advanceConsumer('mirror:eu', 9), (e: unknown) => e instanceof ConsumerNotFoundError && e.code === 'ENOCONSUMER');
      await assert.rejects(engine.registerConsumer('', 0), RangeError);
      await assert.rejects(engine.registerConsumer('x', -1), RangeError);
      // Consumers belong to this engine's log: no entry, no record in snapshots.
      assert.equal(await engine.lastSeq(), 0);
      assert.deepEqual((await collect(engine)).records, []);
    });

    clause('pruneLog trims behind the slowest consumer, and everything without one', async (engine) => {
      for (let i = 1; i <= 20; i++) await put(engine, 'counter', '', 'n', i);
      await engine.registerConsumer('slow', 5);
      await engine.registerConsumer('fast', 15);
      assert.deepEqual(await engine.pruneLog(), { floor: 5, last: 20, trimmed: 5, more: false });
      assert.deepEqual((await engine.readLog(5, 100)).map((e) => e.seq), range(6, 20), 'the slow consumer reads on');
      assert.deepEqual(await engine.pruneLog(), { floor: 5, last: 20, trimmed: 0, more: false }, 'nothing more to do');
      await engine.advanceConsumer('slow', 12);
      assert.equal((await engine.pruneLog()).floor, 12);
      await engine.removeConsumer('slow');
      assert.equal((await engine.pruneLog()).floor, 15, 'behind the one left');
      await engine.removeConsumer('fast');
      assert.deepEqual(await engine.pruneLog(), { floor: 20, last: 20, trimmed: 5, more: false }, 'no consumer: every entry may go');
      assert.deepEqual(await engine.readLog(20, 10), []);
      await put(engine, 'counter', '', 'n', 21);
      assert.deepEqual((await engine.readLog(20, 10)).map((e) => e.seq), [21], 'numbering goes on');
    });

    clause('pruneLog drops at most entriesMax entries per call', async (engine) => {
      for (let i = 1; i <= 12; i++) await put(engine, 'counter', '', 'n', i);
      assert.deepEqual(await engine.pruneLog({ entriesMax: 5 }), { floor: 5, last: 12, trimmed: 5, more: true });
      assert.deepEqual(await engine.pruneLog({ entriesMax: 5 }), { floor: 10, last: 12, trimmed: 5, more: true });
      assert.deepEqual(await engine.pruneLog({ entriesMax: 5 }), { floor: 12, last: 12, trimmed: 2, more: false });
    });

    clause('the retention bound of entries trims what a consumer still needs; that consumer gets LogTrimmedError', async (engine) => {
      await setLogRetention(engine, { entriesMax: 5 });
      const base = await engine.lastSeq(); // the setting's own entry
      for (let i = 1; i <= 15; i++) await put(engine, 'counter', '', 'n', i);
      const last = base + 15;
      await engine.registerConsumer('stuck', base);
      await engine.registerConsumer('current', last);
      assert.deepEqual(await engine.pruneLog(), { floor: last - 5, last, trimmed: last - 5, more: false });
      await assert.rejects(engine.readLog(base, 100), (e: unknown) => e instanceof LogTrimmedError && e.floor === last - 5);
      assert.equal((await engine.readLog(last - 5, 100)).length, 5, 'the newest entriesMax entries are kept');
      // The consumer left behind re-bootstraps: registers again at a snapshot's seq and reads on from there.
      const { seq } = await collect(engine);
      await engine.registerConsumer('stuck', seq);
      assert.deepEqual(await engine.readLog(seq, 10), []);
      assert.deepEqual(await getLogRetention(engine), { ageMsMax: LOG_RETENTION_AGE_MS_DEFAULT, entriesMax: 5 });
    });

    clause('the retention bound of age trims entries older than it, whatever consumers need', async (engine) => {
      const t0 = Date.UTC(2024, 0, 1);
      // Entries one second apart (times come with replayed entries).
      await engine.applyLog(range(1, 20).map((seq) => ({ seq, time: t0 + seq * 1000, ops: [['counter', '', 'n', seq]] as LogOp[] })));
      await engine.registerConsumer('stuck', 0);
      const ageMsMax = LOG_RETENTION_AGE_MS_DEFAULT;
      // At this clock, entries 1..10 are older than the bound (times t0+1000 .. t0+10000 < t0+10500).
      const r = await engine.pruneLog({ now: t0 + 10_500 + ageMsMax });
      assert.deepEqual(r, { floor: 10, last: 20, trimmed: 10, more: false });
      assert.deepEqual(await engine.pruneLog({ now: t0 + 10_500 + ageMsMax }), { floor: 10, last: 20, trimmed: 0, more: false });
      // A shorter bound set on the volume.
      await setLogRetention(engine, { ageMsMax: 1000 });
      assert.equal((await engine.pruneLog({ now: t0 + 15_500 })).floor, 14);
      await assert.rejects(engine.readLog(0, 10), LogTrimmedError);
    });

    clause('a commit whose seq reaches a multiple of LOG_PRUNE_EVERY_ENTRIES prunes in the background', async (engine) => {
      // An engine seeded at seq 998 (as restore does), so that the next two commits are 999 and 1000.
      await engine.restore(iterate([]), LOG_PRUNE_EVERY_ENTRIES - 2);
      await put(engine, 'counter', '', 'n', 1);
      await sleep(50);
      assert.equal(await engine.logFloor(), LOG_PRUNE_EVERY_ENTRIES - 2, 'seq 999 started no prune');
      await engine.registerConsumer('c', LOG_PRUNE_EVERY_ENTRIES - 1);
      await put(engine, 'counter', '', 'n', 2);
      for (let waited = 0; (await engine.logFloor()) !== LOG_PRUNE_EVERY_ENTRIES - 1; waited += 20) {
        assert.ok(waited < 5000, `the log was not trimmed behind the consumer (floor ${await engine.logFloor()})`);
        await sleep(20);
      }
      assert.deepEqual((await engine.readLog(LOG_PRUNE_EVERY_ENTRIES - 1, 10)).map((e) => e.seq), [LOG_PRUNE_EVERY_ENTRIES]);
    });

    // --- replication ---

    clause('applyLog into an empty engine gives an equal snapshot and lastSeq', async (engine) => {
      await sampleWorkload(engine);
      const log = await engine.readLog(0, 1000);
      await withSecond(async (other) => {
        await other.applyLog(log.slice(0, 3));
        assert.equal(await other.lastSeq(), 3);
        await other.applyLog(log.slice(3));
        await other.applyLog([]);
        assert.equal(await other.lastSeq(), await engine.lastSeq());
        assert.deepEqual(await collect(other), await collect(engine));
        // The replica's changelog holds the same entries under their own sequence numbers and times.
        assert.deepEqual(await other.readLog(0, 1000), log);
      });
    });

    clause('applyLog with a gap throws and applies nothing', async (engine) => {
      await sampleWorkload(engine);
      const log = await engine.readLog(0, 1000);
      assert.ok(log.length >= 4);
      await withSecond(async (other) => {
        await assert.rejects(other.applyLog(log.slice(1)), 'starting after seq 1 on an empty engine');
        await assert.rejects(other.applyLog([log[0]!, log[1]!, log[3]!]), 'a gap inside the batch');
        assert.equal(await other.lastSeq(), 0);
        assert.deepEqual((await collect(other)).records, []);
        assert.deepEqual(await other.readLog(0, 10), []);
        await other.applyLog(log.slice(0, 2));
        await assert.rejects(other.applyLog(log.slice(0, 3)), 'replaying an applied entry');
        await assert.rejects(other.applyLog(log.slice(3)), 'skipping an entry');
        assert.equal(await other.lastSeq(), 2);
        await other.applyLog(log.slice(2));
        assert.deepEqual(await collect(other), await collect(engine));
      });
    });

    clause('snapshot returns every logged record and its seq, without unlogged kinds', async (engine) => {
      assert.deepEqual(await collect(engine), { records: [], seq: 0 }, 'empty engine');
      await engine.txn(async (tx) => {
        tx.put('setting', '', 'format', { name: 'v' });
        tx.put('counter', '', 'nextInode', 3);
        tx.put('inode', '', '1', { type: 'dir' });
        tx.put('entry', '1', 'é', { ino: 3 });
        tx.put('chunk', '3', '0', [{ pos: 0 }]);
        tx.put('xattr', '3', 'user.a', 'QQ==');
        tx.put('slice', '', '1', { size: 1, refs: 1 });
        tx.put('delslice', '', '2', { size: 1, time: 5 });
        tx.put('session', '', '1', { host: 'h' });
        tx.put('sustained', '1', '3', 1);
        tx.put('lock', '3', 'o', { t: 1 });
        await Promise.resolve();
      });
      await engine.txn(async (tx) => {
        tx.del('xattr', '3', 'user.a');
        tx.put('counter', '', 'nextInode', 4);
        await Promise.resolve();
      });
      const snap = await collect(engine);
      assert.equal(snap.seq, 2);
      assert.deepEqual(snap.records, sortOps([
        ['setting', '', 'format', { name: 'v' }],
        ['counter', '', 'nextInode', 4],
        ['inode', '', '1', { type: 'dir' }],
        ['entry', '1', 'é', { ino: 3 }],
        ['chunk', '3', '0', [{ pos: 0 }]],
        ['slice', '', '1', { size: 1, refs: 1 }],
        ['delslice', '', '2', { size: 1, time: 5 }],
      ]));
    });

    clause('snapshot reflects one consistent point while transactions commit', async (engine) => {
      const keys = Array.from({ length: 40 }, (_, i) => `k${String(i).padStart(2, '0')}`);
      await engine.txn(async (tx) => {
        for (const k of keys) tx.put('inode', '', k, 0);
        await Promise.resolve();
      });
      const seq0 = await engine.lastSeq();
      let concurrent: Promise<void> | undefined;
      const records: LogOp[] = [];
      const { seq } = await engine.snapshot(async (op) => {
        records.push(op);
        // Started, not awaited: an engine may serialize the snapshot and transactions.
        concurrent ??= engine.txn(async (tx) => {
          for (const k of keys) tx.put('inode', '', k, 1);
          tx.put('inode', '', 'new', 1);
          await Promise.resolve();
        });
        await sleep(0);
      });
      await concurrent;
      const values = new Set(records.map((r) => r[3]));
      assert.equal(values.size, 1, 'the snapshot mixes two states');
      if (seq === seq0) assert.equal(records.length, keys.length);
      else {
        assert.equal(seq, seq0 + 1);
        assert.equal(records.length, keys.length + 1);
      }
    });

    clause('restore replaces all content; snapshot equals it; lastSeq and logFloor = seq', async (engine) => {
      await sampleWorkload(engine);
      const snap = await collect(engine);
      await withSecond(async (other) => {
        // Content from before the restore must disappear.
        await put(other, 'inode', '', 'stale', { gone: true });
        await put(other, 'counter', '', 'n', 1);
        await other.restore(iterate(snap.records), snap.seq);
        assert.deepEqual(await collect(other), snap);
        assert.equal(await other.lastSeq(), snap.seq);
        assert.equal(await other.logFloor(), snap.seq);
        assert.deepEqual(await other.readLog(snap.seq, 10), []);
        await assert.rejects(other.readLog(snap.seq - 1, 10), LogTrimmedError);
        // The changelog continues after seq: tail entries apply, and local writes take the next number.
        await put(engine, 'inode', '', 'tail', { t: 1 });
        await other.applyLog(await engine.readLog(snap.seq, 10));
        assert.deepEqual(await collect(other), await collect(engine));
        await put(other, 'inode', '', 'local', { l: 1 });
        assert.equal(await other.lastSeq(), snap.seq + 2);
      });
    });

    clause('restore mid-way then applyLog of the tail equals the source', async (engine) => {
      await sampleWorkload(engine);
      const mid = await collect(engine);
      await sampleWorkload(engine, 'second');
      await withSecond(async (other) => {
        await other.restore(iterate(mid.records), mid.seq);
        await other.applyLog(await engine.readLog(mid.seq, 1000));
        assert.deepEqual(await collect(other), await collect(engine));
      });
    });

    clause('reset removes every record and the changelog', async (engine) => {
      await sampleWorkload(engine);
      await put(engine, 'session', '', '1', { host: 'h' });
      await engine.trimLog(2);
      await engine.reset();
      assert.equal(await engine.lastSeq(), 0);
      assert.equal(await engine.logFloor(), 0);
      assert.deepEqual(await engine.readLog(0, 10), []);
      assert.deepEqual(await collect(engine), { records: [], seq: 0 });
      assert.equal(await engine.txn((tx) => tx.get('session', '', '1')), undefined, 'unlogged records too');
      await put(engine, 'inode', '', '1', { a: 1 });
      assert.deepEqual(
        (await engine.readLog(0, 10)).map((e) => e.seq),
        [1],
        'numbering starts again at 1',
      );
    });

    // --- lifecycle ---

    clause(
      'records and the changelog survive close and reopen',
      async (engine, under) => {
        await sampleWorkload(engine);
        await put(engine, 'session', '', '1', { host: 'h' });
        await engine.trimLog(1);
        const snap = await collect(engine);
        const log = await engine.readLog(1, 1000);
        await engine.close();
        const again = await under.reopen!();
        try {
          assert.deepEqual(await collect(again), snap);
          assert.deepEqual(await again.readLog(1, 1000), log);
          assert.equal(await again.lastSeq(), snap.seq);
          assert.equal(await again.logFloor(), 1);
          assert.deepEqual(await again.txn((tx) => tx.get('session', '', '1')), { host: 'h' });
          await put(again, 'inode', '', 'after', { a: 1 });
          assert.equal(await again.lastSeq(), snap.seq + 1);
        } finally {
          await again.close();
        }
      },
      true,
    );

    clause('close is idempotent', async (engine) => {
      await put(engine, 'inode', '', '1', { a: 1 });
      await engine.close();
      await engine.close();
    });

    clause('description names the engine', (engine) => {
      assert.equal(typeof engine.description, 'string');
      assert.ok(engine.description.length > 0);
      return Promise.resolve();
    });

    it('declared skips name existing cases', () => {
      for (const title of Object.keys(skip)) assert.ok(cases.has(title), `skip names no case: ${JSON.stringify(title)}`);
    });
  });
}

// --- helpers ---

async function put(engine: MetaEngine, kind: Kind, part: string, key: string, value: object | string | number | boolean): Promise<void> {
  await engine.txn(async (tx) => {
    tx.put(kind, part, key, value);
    await Promise.resolve();
  });
}

/** A few transactions touching every logged kind, with overwrites and deletes. */
async function sampleWorkload(engine: MetaEngine, tag = 'first'): Promise<void> {
  await engine.txn(async (tx) => {
    tx.put('setting', '', 'format', { name: tag, version: 1 });
    tx.put('counter', '', 'nextInode', 10);
    tx.put('inode', '', '1', { type: 'dir', nlink: 2 });
    await Promise.resolve();
  });
  for (let i = 0; i < 5; i++) {
    await engine.txn(async (tx) => {
      const n = (await tx.get<number>('counter', '', 'nextInode')) ?? 0;
      tx.put('counter', '', 'nextInode', n + 1);
      tx.put('inode', '', String(n), { type: 'file', tag, size: i * 1.5 });
      tx.put('entry', '1', `${tag}-${i}-é`, { ino: n });
      tx.put('chunk', String(n), '0', [{ pos: 0, id: n, size: 10, off: 0, len: 10 }]);
      tx.put('slice', '', String(n), { size: 10, refs: 1 });
      tx.put('xattr', String(n), 'user.k', 'dg==');
      tx.put('session', '', String(i), { host: 'unlogged' });
    });
  }
  await engine.txn(async (tx) => {
    const rows = await tx.scan<{ ino: number }>('entry', '1', { limit: 2 });
    for (const [name, e] of rows) {
      tx.del('entry', '1', name);
      tx.del('inode', '', String(e.ino));
      tx.del('xattr', String(e.ino), 'user.k');
      tx.del('slice', '', String(e.ino));
      tx.put('delslice', '', String(e.ino), { size: 10, time: 1 });
    }
  });
}

/** A snapshot as records sorted by (kind, part, key), so engines that order kinds differently compare equal. */
export async function collect(engine: MetaEngine): Promise<{ records: LogOp[]; seq: number }> {
  const records: LogOp[] = [];
  const { seq } = await engine.snapshot((op) => {
    records.push(op);
  });
  return { records: sortOps(records), seq };
}

function sortOps(ops: LogOp[]): LogOp[] {
  return [...ops].sort((a, b) => a[0].localeCompare(b[0]) || compareKeys(a[1], b[1]) || compareKeys(a[2], b[2]));
}

/** Records as the async iterable `restore` takes. */
export async function* iterate(records: LogOp[]): AsyncIterable<LogOp> {
  for (const r of records) {
    await Promise.resolve();
    yield r;
  }
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
