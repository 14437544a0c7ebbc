/**
 * The optimistic commit path of the networked engines (Redis: one COMMIT script; PostgreSQL: one call of the
 * commit function), run on both with the same body:
 *
 * - a read that another client's commit changed before this commit makes the attempt run again, and only
 *   such a read: a get, a missing record that appeared, a scanned range's members or values — but not a key
 *   added beyond a scan's limit, nor a record nobody read;
 * - an error fn raised from reads of different commits reruns it; one raised from consistent reads is final;
 * - a first attempt takes a record this client read a moment ago from memory (meta/speculate.ts): its commit
 *   is then its only request, and a stale memory costs a retry, never a wrong commit;
 * - under concurrent writers on several engines (a counter read-modify-written, and blind writes), a follower
 *   that tails the changelog while they commit applies it without ever meeting a gap, and ends equal to the
 *   primary (the replica is a prefix of the primary at every step).
 *
 * Needs Redis (database 11) and PostgreSQL like the engine tests; skips without them, fails under CI=true.
 */

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { EngineCore } from '../../src/meta/core.js';
import type { MetaEngine, Txn } from '../../src/meta/engine.js';
import { openMetaEngine } from '../../src/meta/registry.js';
import { SqliteEngine } from '../../src/meta/sqlite.js';
import { forEachEngine, postgresEngine, redisEngine } from '../helpers/engines.js';
import { collect } from './engine-conformance.js';

/** Engines writing at once in the follower case, and commits each. */
const WRITERS = 4;
const COMMITS_EACH = 40;

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

await forEachEngine([redisEngine(11), postgresEngine()], (shared) => {
  describe(`optimistic commits: ${shared.name}`, () => {
    /** n engines on one fresh volume location. */
    async function engines(n: number): Promise<MetaEngine[]> {
      const { url, cleanup } = await shared.fresh();
      const out: MetaEngine[] = [];
      for (let i = 0; i < n; i++) out.push(await openMetaEngine(url, { create: true }));
      cleanups.push(async () => {
        for (const e of out) await e.close();
        await cleanup();
      });
      return out;
    }

    it('a read changed by another commit reruns the attempt; an unread or out-of-range change does not', async () => {
      const [engine, other] = (await engines(2)) as [MetaEngine, MetaEngine];
      await engine.txn(async (tx) => {
        tx.put('inode', '', '1', { v: 0 });
        tx.put('entry', '1', 'a', { v: 0 });
        tx.put('entry', '1', 'c', { v: 0 });
        tx.put('entry', '2', 'f', { ino: 1 });
        await Promise.resolve();
      });
      const write = (fn: (t: Txn) => void) => () => other.txn(async (t) => fn(t)).then(() => undefined);
      const cases: Array<[string, (tx: Txn) => Promise<unknown>, () => Promise<void>, number]> = [
        ['get', (tx) => tx.get('inode', '', '1'), write((t) => t.put('inode', '', '1', { v: 1 })), 2],
        ['get of a missing record', (tx) => tx.get('inode', '', '99'), write((t) => t.put('inode', '', '99', 1)), 2],
        ['scan membership', (tx) => tx.scan('entry', '1'), write((t) => t.put('entry', '1', 'b', { v: 0 })), 2],
        ['scanned value', (tx) => tx.scan('entry', '1'), write((t) => t.put('entry', '1', 'a', { v: 2 })), 2],
        ['scanned record deleted', (tx) => tx.scan('entry', '1'), write((t) => t.del('entry', '1', 'b')), 2],
        ['a key inside a limited scan', (tx) => tx.scan('entry', '1', { limit: 2 }), write((t) => t.put('entry', '1', 'a0', { v: 0 })), 2],
        ['a key beyond a limited scan', (tx) => tx.scan('entry', '1', { limit: 1 }), write((t) => t.put('entry', '1', 'z', { v: 0 })), 1],
        ['a key before a scan’s after', (tx) => tx.scan('entry', '1', { after: 'b' }), write((t) => t.put('entry', '1', 'A', { v: 0 })), 1],
        ['the record a followed entry names', (tx) => tx.getFollowing!('entry', '2', 'f', 'ino', 'inode', ''), write((t) => t.put('inode', '', '1', { v: 9 })), 2],
        ['a followed entry', (tx) => tx.getFollowing!('entry', '2', 'f', 'ino', 'inode', ''), write((t) => t.put('entry', '2', 'f', { ino: 2 })), 2],
        ['a record nobody read', (tx) => tx.get('inode', '', '1'), write((t) => t.put('inode', '', '2', { unrelated: true })), 1],
        ['a blind write of the same record', async () => undefined, write((t) => t.put('counter', '', 'touched', -1)), 1],
      ];
      for (const [name, read, interfere, want] of cases) {
        let runs = 0;
        await engine.txn(async (tx) => {
          runs++;
          await read(tx);
          if (runs === 1) await interfere();
          tx.put('counter', '', 'touched', runs);
        });
        assert.equal(runs, want, name);
        assert.equal(await engine.txn((tx) => tx.get('counter', '', 'touched')), want, `${name}: the last attempt's write stands`);
      }
    });

    it('an error from reads of two commits reruns fn; one from consistent reads is final and writes nothing', async () => {
      const [engine, other] = (await engines(2)) as [MetaEngine, MetaEngine];
      await engine.txn(async (tx) => tx.put('inode', '', '1', { v: 0 }));
      let runs = 0;
      const r = await engine.txn(async (tx) => {
        runs++;
        await tx.get('inode', '', '1');
        if (runs === 1) {
          await other.txn(async (t) => t.put('inode', '', '1', { v: 3 }));
          throw new Error('saw a state that a serial run would not');
        }
        return 'second run';
      });
      assert.deepEqual([r, runs], ['second run', 2]);
      runs = 0;
      const before = await engine.lastSeq();
      await assert.rejects(
        engine.txn(async (tx) => {
          runs++;
          await tx.get('inode', '', '1');
          tx.put('inode', '', '2', { never: true });
          throw new Error('real');
        }),
        /real/,
      );
      assert.equal(runs, 1);
      assert.equal(await engine.txn((tx) => tx.get('inode', '', '2')), undefined);
      assert.equal(await engine.lastSeq(), before);
    });

    it('a record read a moment ago is not read again by a first attempt; a stale one costs a retry, never a wrong commit', async () => {
      const [engine, other] = (await engines(2)) as [MetaEngine, MetaEngine];
      const wire = (engine as unknown as EngineCore).wire;
      await engine.txn(async (tx) => tx.put('inode', '', '1', { v: 0 }));
      const increment = async (): Promise<number> => {
        let runs = 0;
        await engine.txn(async (tx) => {
          runs++;
          const v = (await tx.get<{ v: number }>('inode', '', '1'))!;
          tx.put('inode', '', '1', { v: v.v + 1 });
        });
        return runs;
      };
      // The client's own read (a lookup before a create, say), then the transaction: its commit is its only request.
      await engine.txn((tx) => tx.get('inode', '', '1'), { readonly: true });
      const before = wire.snapshot();
      assert.equal(await increment(), 1);
      assert.equal(wire.since(before).requests, 1, 'the first attempt read nothing from the server');
      // Another client changes the record after this one read it: the first attempt speculates on a stale
      // value, its commit refuses it, the second reads afresh.
      await engine.txn((tx) => tx.get('inode', '', '1'), { readonly: true });
      await other.txn(async (tx) => tx.put('inode', '', '1', { v: 10 }));
      assert.equal(await increment(), 2);
      assert.deepEqual(await other.txn((tx) => tx.get('inode', '', '1')), { v: 11 });
    });

    it(`${WRITERS} engines committing at once: a follower tailing the log never meets a gap and ends equal`, async () => {
      const writers = await engines(WRITERS);
      const primary = writers[0]!;
      const dir = await mkdtemp(join(tmpdir(), 'ferry-optimistic-'));
      const follower = new SqliteEngine(join(dir, 'replica.db'), { create: true });
      cleanups.push(async () => {
        await follower.close();
        await rm(dir, { recursive: true, force: true });
      });
      let done = false;
      let applied = 0;
      let batches = 0;
      const tail = (async () => {
        for (;;) {
          const finished = done;
          const entries = await primary.readLog(applied, 50);
          if (entries.length > 0) {
            // applyLog refuses a gap or an entry out of order: the log as read is a prefix at every step.
            await follower.applyLog(entries);
            applied = entries[entries.length - 1]!.seq;
            batches++;
          } else if (finished) {
            return;
          } else {
            await new Promise((r) => setTimeout(r, 2));
          }
        }
      })();
      await Promise.all(
        writers.map(async (e, w) => {
          for (let i = 0; i < COMMITS_EACH; i++) {
            await e.txn(async (tx) => {
              // A contended read-modify-write, and a blind write of this writer's own.
              const c = (await tx.get<number>('counter', '', 'c')) ?? 0;
              tx.put('counter', '', 'c', c + 1);
              tx.put('inode', '', `${w}-${i}`, { w, i });
            });
          }
        }),
      );
      done = true;
      await tail;
      assert.equal(await primary.txn((tx) => tx.get('counter', '', 'c')), WRITERS * COMMITS_EACH, 'no increment lost');
      assert.equal(applied, WRITERS * COMMITS_EACH);
      assert.ok(batches > 1, 'the follower applied while writers committed');
      assert.deepEqual(await collect(follower), await collect(primary));
    });
  });
});
