/**
 * GroupCommitEngine (service/group.ts) on every engine: commits that arrive while one runs go together in one
 * engine transaction, with the semantics of committing them one after the other —
 *   - each member sees the writes of the members before it, and all commit under one seq;
 *   - a member that throws leaves nothing and gets its own error; the others commit;
 *   - a read that fails fails the whole group (nothing of it is written);
 *   - a commit from inside a member fails an assertion instead of waiting for its own group;
 *   - Meta clients on it, many at once, end with the same state as the operations' serial history
 *     (a random workload, seeded, checked against the engine read directly).
 */

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FsError, formatVolume, openMetaEngine } from '../../src/index.js';
import { ForwardingEngine, type Commit, type Json, type Kind, type MetaEngine, type ScanOptions, type Txn, type TxnOptions } from '../../src/meta/engine.js';
import { Meta } from '../../src/meta/meta.js';
import { GroupCommitEngine } from '../../src/service/group.js';
import { mulberry32 } from '../../src/util/random.js';
import { forEachEngine, postgresEngine, redisEngine } from '../helpers/engines.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** An engine whose reads of counter 'poison' fail (a stand-in for a lost connection mid-transaction). */
class PoisonEngine extends ForwardingEngine {
  override commit<R>(fn: (tx: Txn) => Promise<R>, options?: TxnOptions): Promise<Commit<R>> {
    return this.inner.commit(
      (tx) =>
        fn({
          get: <T = Json>(kind: Kind, part: string, key: string): Promise<T | undefined> =>
            kind === 'counter' && key === 'poison' ? Promise.reject(new Error('connection lost')) : tx.get<T>(kind, part, key),
          put: (kind, part, key, value) => tx.put(kind, part, key, value),
          del: (kind, part, key) => tx.del(kind, part, key),
          scan: <T = Json>(kind: Kind, part: string, o?: ScanOptions) => tx.scan<T>(kind, part, o),
        }),
      options,
    );
  }
}

const read = (e: MetaEngine, key: string): Promise<Json | undefined> => e.txn((tx) => tx.get('counter', '', key), { readonly: true });

/** Holds the engine busy with one commit until `release` is called, so that the next commits queue. */
function blocker(g: GroupCommitEngine): { done: Promise<Commit<void>>; release: () => void } {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const done = g.commit(async (tx) => {
    tx.put('counter', '', 'blocker', 1);
    await gate;
  });
  return { done, release };
}

function suite(name: string, fresh: () => Promise<{ url: string; cleanup(): Promise<void> }>): void {
  describe(`GroupCommitEngine on ${name}`, () => {
    const open = async (): Promise<{ engine: MetaEngine; cleanup(): Promise<void> }> => {
      const loc = await fresh();
      const engine = await openMetaEngine(loc.url, { create: true });
      return {
        engine,
        async cleanup() {
          await engine.close();
          await loc.cleanup();
        },
      };
    };

    it('commits queued members in one transaction, in order, each seeing the ones before; a throwing member leaves nothing', async () => {
      const { engine, cleanup } = await open();
      try {
        const g = new GroupCommitEngine(engine);
        const b = blocker(g);
        const add = (by: number): Promise<Commit<number>> =>
          g.commit(async (tx) => {
            const n = ((await tx.get<number>('counter', '', 'n')) ?? 0) + by;
            tx.put('counter', '', 'n', n);
            return n;
          });
        const first = add(1);
        const bad = g.commit(async (tx) => {
          tx.put('counter', '', 'n', 1000);
          tx.put('counter', '', 'bad', 1);
          await Promise.resolve();
          throw new FsError('EEXIST', 'refused by its own function');
        });
        const second = add(10);
        const readOnly = g.commit((tx) => tx.get<number>('counter', '', 'n'), { readonly: true });
        const quiet = g.commit(() => Promise.resolve('nothing written'));
        assert.equal((await readOnly).value, undefined, 'a readonly transaction does not wait for the group');
        b.release();
        const [c0, c1, c2, c3] = await Promise.all([b.done, first, second, quiet]);
        await assert.rejects(bad, (e: unknown) => e instanceof FsError && e.code === 'EEXIST');
        assert.deepEqual([c1.value, c2.value], [1, 11], 'members run in order and see the ones before');
        assert.ok(c0.seq !== undefined && c1.seq !== undefined);
        assert.equal(c1.seq, c0.seq + 1, 'the group is the next transaction');
        assert.equal(c2.seq, c1.seq, 'one seq for the whole group');
        assert.equal(c3.seq, undefined, 'a member that wrote nothing gets no seq');
        assert.equal(c3.value, 'nothing written');
        assert.equal(await read(engine, 'n'), 11);
        assert.equal(await read(engine, 'bad'), undefined, "the throwing member's writes are gone");
        assert.deepEqual(g.stats, { transactions: 2, members: 5, largest: 4 });
        const log = await engine.readLog(c1.seq - 1, 10);
        assert.equal(log.length, 1, 'one changelog entry for the group');
      } finally {
        await cleanup();
      }
    });

    it('a read that fails fails the whole group; a nested commit fails an assertion', async () => {
      const { engine, cleanup } = await open();
      try {
        const g = new GroupCommitEngine(new PoisonEngine(engine));
        const b = blocker(g);
        const fine = g.commit(async (tx) => {
          tx.put('counter', '', 'fine', 1);
          await Promise.resolve();
        });
        const poisoned = g.commit(async (tx) => {
          try {
            await tx.get('counter', '', 'poison');
          } catch {
            // A member that swallows the failure still fails its group: the transaction lost its engine.
          }
          tx.put('counter', '', 'poisoned', 1);
        });
        b.release();
        await b.done;
        await assert.rejects(fine, /connection lost/);
        await assert.rejects(poisoned, /connection lost/);
        assert.equal(await read(engine, 'fine'), undefined, 'nothing of the group was written');
        await assert.rejects(
          g.commit(async () => {
            await g.commit(() => Promise.resolve());
          }),
          /assertion failed: a commit inside a grouped transaction/,
        );
      } finally {
        await cleanup();
      }
    });

    it('many Meta clients on it at once end with the serial history of their operations (random, seeded)', async () => {
      const { engine, cleanup } = await open();
      const seed = Number(process.env['FERRY_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
      process.stdout.write(`# group commit workload on ${name}: seed ${seed} (replay with FERRY_SEED=${seed})\n`);
      const rnd = mulberry32(seed);
      const ctx = { uid: 0, gid: 0, gids: [] };
      try {
        await formatVolume(engine, { name: 'g', storage: 'file:///nowhere', blockBytes: 1 << 16, compression: 'none', trashDays: 0 });
        const base = await Meta.open(engine, { heartbeatMs: 0, lookupCacheMs: 0, session: false });
        const inodes0 = (await base.statfs()).inodes;
        await base.close();
        const g = new GroupCommitEngine(engine);
        const clients = await Promise.all(Array.from({ length: 6 }, () => Meta.open(g, { heartbeatMs: 0, lookupCacheMs: 0, usageFlushMs: 0 })));
        const d = await clients[0]!.mkdir(ctx, 1, 'd', 0o755);
        const names = Array.from({ length: 12 }, (_, i) => `n${i}`);
        const outcomes = { ok: 0, refused: 0 };
        await Promise.all(
          clients.map(async (m) => {
            for (let i = 0; i < 40; i++) {
              const a = names[Math.floor(rnd() * names.length)]!;
              const b = names[Math.floor(rnd() * names.length)]!;
              const r = rnd();
              try {
                if (r < 0.4) await m.create(ctx, d.ino, a, 0o644);
                else if (r < 0.6) await m.unlink(ctx, d.ino, a);
                else if (r < 0.8) await m.rename(ctx, d.ino, a, d.ino, b);
                else await m.mkdir(ctx, d.ino, `${a}.d`, 0o755);
                outcomes.ok++;
              } catch (e) {
                if (!(e instanceof FsError)) throw e;
                outcomes.refused++;
              }
            }
          }),
        );
        assert.ok(g.stats.largest > 1, `commits were grouped (${JSON.stringify(g.stats)})`);
        assert.ok(outcomes.ok > 0 && outcomes.refused > 0, JSON.stringify(outcomes));
        // The state is consistent: every entry names a live inode, link counts and usage agree.
        const direct = await Meta.open(engine, { heartbeatMs: 0, lookupCacheMs: 0, session: false });
        const list = await direct.readdir(ctx, d.ino, { plus: true });
        let dirs = 0;
        for (const e of list) {
          const a = await direct.getattr(e.ino);
          assert.equal(a.nlink, a.type === 'dir' ? 2 : 1, `${e.name}: link count`);
          if (a.type === 'dir') dirs++;
        }
        assert.equal((await direct.getattr(d.ino)).nlink, 2 + dirs, 'the directory counts its subdirectories');
        for (const m of clients) await m.close();
        const st = await direct.statfs();
        assert.equal(st.inodes, inodes0 + 1 + list.length, 'the inode count agrees with the tree (d and what it holds)');
        await direct.close();
      } finally {
        await cleanup();
      }
    });
  });
}

suite('sqlite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-group-'));
  dirs.push(dir);
  return { url: `sqlite://${join(dir, 'meta.db')}`, cleanup: () => Promise.resolve() };
});
await forEachEngine([redisEngine(11), postgresEngine()], (e) => suite(e.name, () => e.fresh()));
