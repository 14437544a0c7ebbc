/**
 * The Redis engine: the MetaEngine conformance suite, a changelog replay into SQLite (with a snapshot taken
 * while writers run), and what is specific to Redis (URLs, key isolation, optimistic retries, 64-bit
 * replies).
 *
 * Needs Redis on 127.0.0.1:6379 (database 11; FERRY_TEST_REDIS_HOST=host:port overrides). Every engine gets its own
 * key prefix ferrytest-<run>-<n>, whose keys are deleted afterwards. Without a server the tests skip, except
 * under CI=true where they fail.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { isFsError, UsageError } from '../../src/errors.js';
import type { LogOp, MetaEngine } from '../../src/meta/engine.js';
import { formatVolume, Meta } from '../../src/meta/meta.js';
import { openRedisEngine, parseRedisUrl, RedisEngine, txnAttemptsMax } from '../../src/meta/redis.js';
import { openMetaEngine } from '../../src/meta/registry.js';
import { SqliteEngine } from '../../src/meta/sqlite.js';
import { ROOT_CTX, ROOT_INO } from '../../src/meta/types.js';
import { mulberry32, randomSeed } from '../../src/util/random.js';
import { forEachEngine, redisEngine } from '../helpers/engines.js';
import { collect, iterate, metaEngineConformance } from './engine-conformance.js';

const REDIS = redisEngine(11);
const REDIS_URL = REDIS.base;

await forEachEngine([REDIS], () => suites());

function suites(): void {
  const run = randomBytes(4).toString('hex');
  let n = 0;
  const admin = new Redis(REDIS_URL);

  function newPrefix(): string {
    return `ferrytest-${run}-${n++}`;
  }
  function urlFor(prefix: string, extra = ''): string {
    return `${REDIS_URL}?prefix=${prefix}${extra}`;
  }
  async function keysOf(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await admin.scan(cursor, 'MATCH', `{${prefix}}:*`, 'COUNT', 1000);
      keys.push(...batch);
      cursor = next;
    } while (cursor !== '0');
    return keys;
  }
  async function dropKeys(prefix: string): Promise<void> {
    const keys = await keysOf(prefix);
    if (keys.length > 0) await admin.unlink(...keys);
  }

  const cleanups: Array<() => Promise<void>> = [];
  after(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    await admin.quit();
  });
  /** An engine on a fresh prefix, closed and its keys dropped after the file's tests. */
  async function fresh(extra = ''): Promise<{ engine: RedisEngine; url: string; prefix: string }> {
    const prefix = newPrefix();
    const url = urlFor(prefix, extra);
    const engine = await openRedisEngine(url);
    cleanups.push(async () => {
      await engine.close();
      await dropKeys(prefix);
    });
    return { engine, url, prefix };
  }

  metaEngineConformance('redis', async () => {
    const prefix = newPrefix();
    const url = urlFor(prefix);
    const engine = await openRedisEngine(url);
    return {
      engine,
      reopen: () => openRedisEngine(url),
      cleanup: async () => {
        await engine.close();
        await dropKeys(prefix);
      },
    };
  });

  describe('RedisEngine', () => {
    it('parses standalone, TLS, Sentinel and Cluster URLs', () => {
      const s = parseRedisUrl('redis://127.0.0.1:6379/11');
      assert.deepEqual([s.mode, s.tls, s.hosts, s.db, s.prefix, s.username, s.password], ['standalone', false, [{ host: '127.0.0.1', port: 6379 }], 11, 'ferry', undefined, undefined]);
      assert.deepEqual(parseRedisUrl('redis://localhost').hosts, [{ host: 'localhost', port: 6379 }]);
      assert.equal(parseRedisUrl('redis://localhost/').db, 0);
      const auth = parseRedisUrl('rediss://alice:p%40ss%3Aw@redis.example.com:6380/2?prefix=vol1&pool=3');
      assert.deepEqual(
        [auth.tls, auth.username, auth.password, auth.hosts, auth.db, auth.prefix, auth.connectionsMax],
        [true, 'alice', 'p@ss:w', [{ host: 'redis.example.com', port: 6380 }], 2, 'vol1', 3],
      );
      assert.equal(auth.description, 'rediss://alice:****@redis.example.com:6380/2?prefix=vol1&pool=3', 'the password is masked');
      assert.deepEqual([parseRedisUrl('redis://:secret@h/1').username, parseRedisUrl('redis://:secret@h/1').password], [undefined, 'secret']);
      assert.deepEqual([parseRedisUrl('redis://secret@h').username, parseRedisUrl('redis://secret@h').password], [undefined, 'secret']);
      assert.deepEqual(parseRedisUrl('redis://[::1]:7000').hosts, [{ host: '::1', port: 7000 }]);

      const sen = parseRedisUrl('redis+sentinel://pw@s1:26380,s2,[fe80::1]:5000/mymaster/3?sentinel-password=sp');
      assert.deepEqual(
        [sen.mode, sen.password, sen.hosts, sen.masterName, sen.db, sen.sentinelPassword],
        ['sentinel', 'pw', [{ host: 's1', port: 26380 }, { host: 's2', port: 26379 }, { host: 'fe80::1', port: 5000 }], 'mymaster', 3, 'sp'],
      );
      assert.equal(sen.description, 'redis+sentinel://****@s1:26380,s2,[fe80::1]:5000/mymaster/3?sentinel-password=****');
      assert.equal(parseRedisUrl('redis+sentinel://s1/m').db, 0);

      const cl = parseRedisUrl('rediss+cluster://u:p@n1:7000,n2:7001?prefix=big');
      assert.deepEqual([cl.mode, cl.tls, cl.hosts.length, cl.db, cl.prefix], ['cluster', true, 2, 0, 'big']);

      for (const bad of [
        'redis://h1,h2/0',
        'redis://h/x',
        'redis://h/1/2',
        'redis://h:99999',
        'redis://h?prefix=a{b}',
        'redis://h?pool=0',
        'redis://h?pool=65',
        'redis://h?what=1',
        'redis://h?sentinel-password=x',
        'redis+sentinel://s1',
        'redis+cluster://n1/3',
        'redis+other://h',
        'http://h',
      ]) {
        assert.throws(() => parseRedisUrl(bad), UsageError, bad);
      }
      assert.throws(() => parseRedisUrl('redis://u:hunter2@h/x'), (e: Error) => !e.message.includes('hunter2'), 'errors mask the password');
    });

    it('builds TLS, Sentinel and Cluster clients (lazily: no such servers here) and closes them', async () => {
      for (const url of ['rediss://u:pw@tls.invalid:6380/1', 'redis+sentinel://pw@s1.invalid,s2.invalid:26380/mymaster/2', 'redis+cluster://:pw@n1.invalid:7000,n2.invalid:7001']) {
        const e = await openRedisEngine(url, { lazy: true });
        assert.ok(!e.description.includes('pw'), e.description);
        await e.close();
        await e.close();
      }
    });

    it('openMetaEngine opens redis:// URLs; an unreachable server is a UsageError', async () => {
      const prefix = newPrefix();
      const e = await openMetaEngine(urlFor(prefix));
      assert.ok(e instanceof RedisEngine);
      await e.close();
      await assert.rejects(openMetaEngine('redis://127.0.0.1:1/0'), (err: unknown) => err instanceof UsageError && /cannot reach Redis/.test(err.message));
    });

    it('keys carry the volume hash tag; reset removes only this volume', async () => {
      const a = await fresh();
      const b = await fresh();
      for (const { engine } of [a, b]) {
        await engine.txn(async (tx) => {
          tx.put('inode', '', '1', { a: 1 });
          tx.put('entry', '1', 'x:y', { ino: 2 });
          tx.put('session', '', '1', { s: 1 });
          await Promise.resolve();
        });
      }
      await admin.set('ferry-unrelated-' + run, '1');
      try {
        const keys = await keysOf(a.prefix);
        assert.ok(keys.length >= 6);
        for (const k of keys) assert.ok(k.startsWith(`{${a.prefix}}:`), k);
        await a.engine.reset();
        assert.deepEqual(
          (await keysOf(a.prefix)).filter((k) => !k.endsWith(':epoch')),
          [],
        );
        assert.deepEqual(await b.engine.txn((tx) => tx.get('entry', '1', 'x:y')), { ino: 2 }, 'another prefix survives');
        assert.equal(await admin.get('ferry-unrelated-' + run), '1', 'unrelated keys survive');
      } finally {
        await admin.del('ferry-unrelated-' + run);
      }
    });

    it('parts and keys containing the separator stay apart', async () => {
      const { engine } = await fresh();
      await engine.txn(async (tx) => {
        tx.put('entry', 'a:b', 'c', 1);
        tx.put('entry', 'a', 'b:c', 2);
        tx.put('entry', 'a:', 'b:c', 3);
        await Promise.resolve();
      });
      assert.deepEqual(await engine.txn((tx) => tx.scan('entry', 'a:b')), [['c', 1]]);
      assert.deepEqual(await engine.txn((tx) => tx.scan('entry', 'a')), [['b:c', 2]]);
      assert.deepEqual(await engine.txn((tx) => tx.scan('entry', 'a:')), [['b:c', 3]]);
    });

    it('a read-write conflict reruns the transaction (get, scan membership, scanned value)', async () => {
      const { engine, url } = await fresh();
      const other = await openRedisEngine(url);
      try {
        await engine.txn(async (tx) => {
          tx.put('inode', '', '1', { v: 0 });
          tx.put('entry', '1', 'a', { v: 0 });
          await Promise.resolve();
        });
        const cases: Array<[string, (tx: import('../../src/meta/engine.js').Txn) => Promise<unknown>, () => Promise<void>]> = [
          ['get', (tx) => tx.get('inode', '', '1'), () => other.txn(async (t) => t.put('inode', '', '1', { v: 1 }))],
          ['scan membership', (tx) => tx.scan('entry', '1'), () => other.txn(async (t) => t.put('entry', '1', 'b', { v: 0 }))],
          ['scanned value', (tx) => tx.scan('entry', '1'), () => other.txn(async (t) => t.put('entry', '1', 'a', { v: 2 }))],
          ['get of a missing record', (tx) => tx.get('inode', '', '99'), () => other.txn(async (t) => t.put('inode', '', '99', 1))],
        ];
        for (const [name, read, interfere] of cases) {
          let runs = 0;
          await engine.txn(async (tx) => {
            runs++;
            await read(tx);
            if (runs === 1) await interfere();
            tx.put('counter', '', 'touched', runs);
          });
          assert.equal(runs, 2, `${name}: the interfered attempt was not retried`);
        }
        // An error thrown by fn after reading stale state reruns it; one thrown from consistent reads is final.
        let throws = 0;
        const r = await engine.txn(async (tx) => {
          throws++;
          await tx.get('inode', '', '1');
          if (throws === 1) {
            await other.txn(async (t) => t.put('inode', '', '1', { v: 3 }));
            throw new Error('saw a state that a serial run would not');
          }
          return 'second run';
        });
        assert.deepEqual([r, throws], ['second run', 2]);
        throws = 0;
        await assert.rejects(
          engine.txn(async (tx) => {
            throws++;
            await tx.get('inode', '', '1');
            throw new Error('real');
          }),
          /real/,
        );
        assert.equal(throws, 1);
        // A write to a record nobody read does not conflict.
        let runs = 0;
        await engine.txn(async (tx) => {
          runs++;
          await tx.get('inode', '', '1');
          if (runs === 1) await other.txn(async (t) => t.put('inode', '', '2', { unrelated: true }));
          tx.put('counter', '', 'touched', 0);
        });
        assert.equal(runs, 1, 'an unrelated write caused a retry');
      } finally {
        await other.close();
      }
    });

    it(`a transaction that always conflicts fails after ${txnAttemptsMax} attempts and writes nothing`, async () => {
      const { engine, url } = await fresh();
      const other = await openRedisEngine(url);
      try {
        let runs = 0;
        await assert.rejects(
          engine.txn(async (tx) => {
            runs++;
            await tx.get('counter', '', 'c');
            await other.txn(async (t) => t.put('counter', '', 'c', runs));
            tx.put('inode', '', 'never', 1);
          }),
          (e: unknown) => (e as { code?: string }).code === 'ECONFLICT',
        );
        assert.equal(runs, txnAttemptsMax);
        assert.equal(await engine.txn((tx) => tx.get('inode', '', 'never')), undefined);
        assert.equal(await engine.lastSeq(), txnAttemptsMax, 'only the interfering transactions are logged');
      } finally {
        await other.close();
      }
    });

    it('three engines with small pools on one volume lose no update and keep the log gapless', async () => {
      const { engine, url } = await fresh('&pool=2');
      const b = await openRedisEngine(url);
      const c = await openRedisEngine(url.replace('pool=2', 'pool=1'));
      try {
        const per = 40;
        const inc = (e: MetaEngine): Promise<void> =>
          e.txn(async (tx) => {
            const v = (await tx.get<number>('counter', '', 'c')) ?? 0;
            await new Promise((r) => setImmediate(r));
            tx.put('counter', '', 'c', v + 1);
          });
        await Promise.all([engine, b, c].flatMap((e) => Array.from({ length: per }, () => inc(e))));
        const total = 3 * per;
        assert.equal(await engine.txn((tx) => tx.get('counter', '', 'c')), total);
        const log = await b.readLog(0, 1000);
        assert.deepEqual(
          log.map((e) => [e.seq, e.ops[0]?.[3]]),
          Array.from({ length: total }, (_, i) => [i + 1, i + 1]),
        );
      } finally {
        await b.close();
        await c.close();
      }
    });

    it('replies beyond 2^53 are refused, not rounded', async () => {
      const { engine, prefix } = await fresh();
      await admin.set(`{${prefix}}:seq`, '9007199254740993');
      await assert.rejects(engine.lastSeq(), /not a safe integer/);
      await admin.set(`{${prefix}}:seq`, '9007199254740991');
      assert.equal(await engine.lastSeq(), 2 ** 53 - 1);
    });

    it('a closed engine refuses work; close is idempotent', async () => {
      const { engine } = await fresh();
      await engine.close();
      await engine.close();
      await assert.rejects(
        engine.txn(() => Promise.resolve(1)),
        /closed/,
      );
    });

    it('changelog replay: a Meta workload on Redis shipped into SQLite, snapshot taken under load', async (t) => {
      await replay(await fresh(), (msg) => t.diagnostic(msg));
    });
  });

  async function replay({ engine }: { engine: RedisEngine }, diagnostic: (msg: string) => void): Promise<void> {
    const seed = Number(process.env['FERRY_SEED'] ?? randomSeed());
    const dir = await mkdtemp(join(tmpdir(), 'ferry-redis-replay-'));
    const b = new SqliteEngine(join(dir, 'b.db'), { create: true });
    const c = new SqliteEngine(join(dir, 'c.db'), { create: true });
    await formatVolume(engine, { name: 'replay', storage: 'mem://replay', blockBytes: 4 << 20, compression: 'none', trashDays: 0 });
    // b and c replay the log afterwards: as a registered consumer, so that no entry is trimmed before.
    await engine.registerConsumer('replay', 0);
    const meta = await Meta.open(engine, { heartbeatMs: 0 });
    try {
      const workers = 4;
      const opsPerWorker = 120;
      const names = ['a', 'b', 'c', 'é', 'd:e', 'f\u{1F600}'];
      const dirs = [ROOT_INO];
      let failed = 0;
      let mid: { records: LogOp[]; seq: number } | undefined;
      const worker = async (w: number): Promise<void> => {
        const random = mulberry32(seed + w);
        const int = (k: number): number => Math.floor(random() * k);
        const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
        for (let i = 0; i < opsPerWorker; i++) {
          if (w === 0 && i === opsPerWorker / 2) {
            // While the other workers write: entries committed during the copy are overlaid from the log.
            const before = await engine.lastSeq();
            mid = await collect(engine);
            diagnostic(`snapshot at seq ${mid.seq}: ${mid.seq - before} entries committed while it was read`);
          }
          try {
            const parent = pick(dirs);
            switch (int(7)) {
              case 0:
                dirs.push((await meta.mkdir(ROOT_CTX, parent, pick(names), 0o755)).ino);
                break;
              case 1:
              case 2:
                await meta.create(ROOT_CTX, parent, pick(names), 0o644);
                break;
              case 3:
                await meta.rename(ROOT_CTX, parent, pick(names), pick(dirs), pick(names));
                break;
              case 4:
                await meta.unlink(ROOT_CTX, parent, pick(names));
                break;
              case 5: {
                const list = await meta.readdir(ROOT_CTX, parent);
                const f = list.find((e) => e.type === 'file');
                if (f !== undefined) {
                  const id = await meta.newSliceId();
                  await meta.write(f.ino, [{ index: 0, ref: { pos: int(1000), id, size: 100, off: 0, len: 1 + int(99) } }]);
                }
                break;
              }
              default:
                await meta.setxattr(ROOT_CTX, parent, pick(['user.a', 'user.b']), Buffer.from([w, i]));
            }
          } catch (e) {
            if (!isFsError(e)) throw new Error(`seed ${seed} worker ${w} op ${i}: ${String(e)}`, { cause: e });
            failed++;
          }
        }
      };
      await Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
      const final = await collect(engine);
      assert.ok(final.seq > (workers * opsPerWorker) / 3, `only ${final.seq} entries (${failed} ops failed), seed ${seed}`);
      assert.ok(mid !== undefined && mid.seq > 0 && mid.seq < final.seq, 'the mid-way snapshot saw part of the work');

      for (let at = 0; ; ) {
        const entries = await engine.readLog(at, 97);
        if (entries.length === 0) break;
        await b.applyLog(entries);
        at = entries[entries.length - 1]!.seq;
      }
      assert.deepEqual(await collect(b), final, `seed ${seed}`);

      await c.restore(iterate(mid.records), mid.seq);
      await c.applyLog(await engine.readLog(mid.seq, 100_000));
      assert.deepEqual(await collect(c), final, `the snapshot taken under load is the state at its seq (seed ${seed})`);

      const replica = await Meta.open(b, { session: false });
      assert.deepEqual(await replica.readdir(ROOT_CTX, ROOT_INO, { plus: true }), await meta.readdir(ROOT_CTX, ROOT_INO, { plus: true }));
      await replica.close();
    } finally {
      await meta.close();
      await b.close();
      await c.close();
      await rm(dir, { recursive: true, force: true });
    }
  }
}

