/**
 * The PostgreSQL engine: the MetaEngine conformance suite, a changelog replay into SQLite, and what is
 * specific to PostgreSQL (URLs, schema isolation, retries, 64-bit columns, paged snapshots).
 *
 * Needs PostgreSQL on 127.0.0.1:5432 with trust auth and a database `test` (override with
 * FERRY_TEST_POSTGRES_URL). Each engine gets its own schema ferry_test_<random>, dropped afterwards. Without
 * a server the tests skip, except under CI=true where they fail.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { UsageError } from '../../src/errors.js';
import type { LogOp, MetaEngine } from '../../src/meta/engine.js';
import { formatVolume, Meta } from '../../src/meta/meta.js';
import { parsePostgresUrl, PostgresEngine, SNAPSHOT_PAGE_ROWS, TXN_ATTEMPTS_MAX } from '../../src/meta/postgres.js';
import { openMetaEngine } from '../../src/meta/registry.js';
import { SqliteEngine } from '../../src/meta/sqlite.js';
import { ROOT_CTX, ROOT_INO } from '../../src/meta/types.js';
import { forEachEngine, postgresEngine } from '../helpers/engines.js';
import { metaEngineConformance } from './engine-conformance.js';

const PG = postgresEngine();
const PG_URL = PG.base;

await forEachEngine([PG], () => suites());

function suites(): void {
  const admin = new pg.Pool({ connectionString: PG_URL, max: 2 });
  after(() => admin.end());

  function urlFor(schema: string): string {
    return `${PG_URL}${PG_URL.includes('?') ? '&' : '?'}schema=${schema}`;
  }
  function newSchema(): string {
    return `ferry_test_${randomBytes(6).toString('hex')}`;
  }
  async function dropSchema(schema: string): Promise<void> {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  }

  /** A fresh engine in its own schema. */
  async function fresh(): Promise<{ engine: PostgresEngine; url: string; schema: string; cleanup(): Promise<void> }> {
    const schema = newSchema();
    const url = urlFor(schema);
    const engine = await PostgresEngine.open(url, { create: true });
    return {
      engine,
      url,
      schema,
      cleanup: async () => {
        await engine.close();
        await dropSchema(schema);
      },
    };
  }

  metaEngineConformance('postgres', async () => {
    const f = await fresh();
    return { engine: f.engine, reopen: () => PostgresEngine.open(f.url), cleanup: f.cleanup };
  });

  describe('PostgresEngine', () => {
    it('parses URLs and masks the password in the description', () => {
      const p = parsePostgresUrl('postgresql://ferry:s3cret@db.example:6543/vol?schema=v1&sslmode=require');
      assert.equal(p.schema, 'v1');
      assert.equal(p.config.host, 'db.example');
      assert.equal(p.config.port, 6543);
      assert.equal(p.config.database, 'vol');
      assert.equal(p.config.user, 'ferry');
      assert.equal(p.config.password, 's3cret');
      assert.deepEqual(p.config.ssl, { rejectUnauthorized: false });
      assert.ok(!p.description.includes('s3cret'), p.description);
      assert.match(p.description, /^postgresql:\/\/ferry:\*\*\*\*@db\.example:6543\/vol\?schema=v1/);
      assert.equal(parsePostgresUrl('postgres://u@h/d').schema, 'public');
      assert.equal(parsePostgresUrl('postgres://u@h/d').config.port, 5432);
      assert.throws(() => parsePostgresUrl('postgres://u@h/'), UsageError, 'no database');
      assert.throws(() => parsePostgresUrl('postgres://u@h/d?pool=3'), /unknown parameter "pool"/);
      assert.throws(() => parsePostgresUrl('postgres://u@h/d?sslmode=prefer'), /sslmode=prefer is not supported/);
    });

    it('opens through the registry by postgres:// and postgresql://, creating tables only with create', async () => {
      const schema = newSchema();
      try {
        await assert.rejects(openMetaEngine(urlFor(schema)), (e: unknown) => e instanceof UsageError && /ferry format/.test(e.message));
        const a = await openMetaEngine(urlFor(schema), { create: true });
        await a.txn(async (tx) => {
          tx.put('inode', '', '1', { a: 1 });
          await Promise.resolve();
        });
        await a.close();
        const b = await openMetaEngine(urlFor(schema).replace(/^postgres:/, 'postgresql:'));
        assert.deepEqual(await b.txn((tx) => tx.get('inode', '', '1')), { a: 1 });
        assert.match(b.description, /^postgresql:\/\//);
        await b.close();
      } finally {
        await dropSchema(schema);
      }
    });

    it('a server that is not there is a UsageError naming the address', async () => {
      // Port 1 on loopback: connection refused at once.
      await assert.rejects(PostgresEngine.open('postgres://postgres@127.0.0.1:1/test'), (e: unknown) => e instanceof UsageError && /127\.0\.0\.1:1/.test(e.message));
    });

    it('schemas isolate volumes in one database', async () => {
      const a = await fresh();
      const b = await fresh();
      try {
        await a.engine.txn(async (tx) => {
          tx.put('inode', '', '1', { in: 'a' });
          await Promise.resolve();
        });
        assert.equal(await b.engine.txn((tx) => tx.get('inode', '', '1')), undefined);
        assert.equal(await b.engine.lastSeq(), 0);
      } finally {
        await a.cleanup();
        await b.cleanup();
      }
    });

    it('two engines (two pools) on one schema lose no update and keep the log gapless', async () => {
      const a = await fresh();
      const b = await PostgresEngine.open(a.url);
      const n = 60;
      try {
        const inc = (e: MetaEngine): Promise<void> =>
          e.txn(async (tx) => {
            const c = (await tx.get<number>('counter', '', 'c')) ?? 0;
            await new Promise((r) => setImmediate(r));
            tx.put('counter', '', 'c', c + 1);
          });
        await Promise.all([...Array.from({ length: n }, () => inc(a.engine)), ...Array.from({ length: n }, () => inc(b))]);
        assert.equal(await a.engine.txn((tx) => tx.get('counter', '', 'c')), 2 * n);
        const log = await b.readLog(0, 10 * n);
        assert.deepEqual(
          log.map((e) => e.seq),
          Array.from({ length: 2 * n }, (_, i) => i + 1),
        );
        assert.deepEqual(
          log.map((e) => e.ops[0]?.[3]),
          Array.from({ length: 2 * n }, (_, i) => i + 1),
        );
      } finally {
        await b.close();
        await a.cleanup();
      }
    });

    it('retries the whole function on a serialization failure or deadlock, a bounded number of times', async () => {
      const f = await fresh();
      try {
        let attempts = 0;
        const r = await f.engine.txn(async (tx) => {
          attempts++;
          tx.put('inode', '', 'x', { attempt: attempts });
          if (attempts === 1) throw Object.assign(new Error('could not serialize access'), { code: '40001' });
          if (attempts === 2) throw Object.assign(new Error('deadlock detected'), { code: '40P01' });
          await Promise.resolve();
          return attempts;
        });
        assert.equal(r, 3);
        assert.deepEqual(await f.engine.txn((tx) => tx.get('inode', '', 'x')), { attempt: 3 });
        assert.equal(await f.engine.lastSeq(), 1, 'failed attempts left no entry');

        attempts = 0;
        await assert.rejects(
          f.engine.txn(async () => {
            attempts++;
            await Promise.resolve();
            throw Object.assign(new Error('could not serialize access'), { code: '40001' });
          }),
          /could not serialize/,
        );
        assert.equal(attempts, TXN_ATTEMPTS_MAX);

        attempts = 0;
        await assert.rejects(
          f.engine.txn(async () => {
            attempts++;
            await Promise.resolve();
            throw Object.assign(new Error('not retryable'), { code: '23505' });
          }),
        );
        assert.equal(attempts, 1);
      } finally {
        await f.cleanup();
      }
    });

    it('a change by a writer that bypasses the engine is caught at commit and the transaction run again', async () => {
      const f = await fresh();
      const other = await admin.connect();
      try {
        await f.engine.txn(async (tx) => {
          tx.put('counter', '', 'c', 1);
          await Promise.resolve();
        });
        let attempts = 0;
        await f.engine.txn(async (tx) => {
          attempts++;
          const c = (await tx.get<number>('counter', '', 'c'))!;
          if (attempts === 1) {
            // Another session changes the row after this transaction read it.
            await other.query(`UPDATE "${f.schema}".rec SET value = '10' WHERE kind = 'counter' AND key = 'c'`);
          }
          tx.put('counter', '', 'c', c + 1);
        });
        assert.equal(attempts, 2);
        assert.equal(await f.engine.txn((tx) => tx.get('counter', '', 'c')), 11);
      } finally {
        other.release();
        await f.cleanup();
      }
    });

    it('bigint columns beyond 2^53 fail an assertion instead of losing precision', async () => {
      const f = await fresh();
      try {
        await admin.query(`UPDATE "${f.schema}".logstate SET last = 9007199254740993`);
        await assert.rejects(f.engine.lastSeq(), /assertion failed: logstate.last 9007199254740993/);
      } finally {
        await f.cleanup();
      }
    });

    it('snapshot pages through more records than one page, in order, each once', async () => {
      const f = await fresh();
      try {
        const n = 2 * SNAPSHOT_PAGE_ROWS + 17;
        await f.engine.txn(async (tx) => {
          for (let i = 0; i < n; i++) tx.put('entry', String(i % 3), `name-${i}`, { ino: i });
          tx.put('session', '', '1', { unlogged: true });
          await Promise.resolve();
        });
        const seen: LogOp[] = [];
        const { seq } = await f.engine.snapshot((op) => {
          seen.push(op);
        });
        assert.equal(seq, 1);
        assert.equal(seen.length, n);
        assert.equal(new Set(seen.map((o) => `${o[1]}/${o[2]}`)).size, n);
      } finally {
        await f.cleanup();
      }
    });

    it('a closed engine refuses transactions; close is idempotent', async () => {
      const f = await fresh();
      await f.engine.close();
      await assert.rejects(
        f.engine.txn(() => Promise.resolve(1)),
        /closed/,
      );
      await f.cleanup();
    });
  });

  describe('changelog replay: PostgreSQL to SQLite', () => {
    it('a random Meta workload on PostgreSQL, applied to SQLite through readLog/applyLog, gives equal snapshots', async () => {
      const f = await fresh();
      const dir = await mkdtemp(join(tmpdir(), 'ferry-pg-replay-'));
      const replica = new SqliteEngine(join(dir, 'meta.db'), { create: true });
      try {
        await formatVolume(f.engine, { name: 'replay', storage: 'mem://', blockBytes: 1 << 20, compression: 'none', trashDays: 0 });
        await f.engine.registerConsumer('replay', 0);
        const meta = await Meta.open(f.engine, { heartbeatMs: 0 });
        await randomWorkload(meta, 0x5eed, 300);
        // Replay in batches while the source keeps going, then the tail.
        let at = 0;
        const pump = async (): Promise<void> => {
          for (;;) {
            const batch = await f.engine.readLog(at, 37);
            if (batch.length === 0) return;
            await replica.applyLog(batch);
            at = batch[batch.length - 1]!.seq;
          }
        };
        await pump();
        await randomWorkload(meta, 0xbeef, 100);
        await meta.close();
        await pump();
        assert.equal(await replica.lastSeq(), await f.engine.lastSeq());
        assert.deepEqual(await collect(replica), await collect(f.engine));
      } finally {
        await replica.close();
        await rm(dir, { recursive: true, force: true });
        await f.cleanup();
      }
    });
  });
}

/** A deterministic mix of creates, mkdirs, writes, renames, truncates, xattrs and unlinks. */
async function randomWorkload(meta: Meta, seed: number, ops: number): Promise<void> {
  let s = seed >>> 0;
  const rand = (n: number): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  };
  const dirs = [ROOT_INO];
  const files: Array<{ parent: number; name: string; ino: number }> = [];
  for (let i = 0; i < ops; i++) {
    const parent = dirs[rand(dirs.length)]!;
    const choice = rand(10);
    try {
      if (choice === 0) {
        const a = await meta.mkdir(ROOT_CTX, parent, `d${seed}-${i}`, 0o755);
        dirs.push(a.ino);
      } else if (choice <= 3 || files.length === 0) {
        const name = `f${seed}-${i}`;
        const a = await meta.create(ROOT_CTX, parent, name, 0o644);
        files.push({ parent, name, ino: a.ino });
      } else {
        const f = files[rand(files.length)]!;
        if (choice <= 5) {
          const id = await meta.newSliceId();
          const len = 1 + rand(4096);
          await meta.write(f.ino, [{ index: rand(2), ref: { pos: rand(1 << 16), id, size: len, off: 0, len } }]);
        } else if (choice === 6) {
          const to = dirs[rand(dirs.length)]!;
          const name = `r${seed}-${i}`;
          await meta.rename(ROOT_CTX, f.parent, f.name, to, name);
          f.parent = to;
          f.name = name;
        } else if (choice === 7) {
          await meta.truncate(f.ino, rand(1 << 17));
        } else if (choice === 8) {
          await meta.setxattr(ROOT_CTX, f.ino, `user.k${rand(3)}`, Buffer.from(`v${i}`));
        } else {
          await meta.unlink(ROOT_CTX, f.parent, f.name);
          files.splice(files.indexOf(f), 1);
        }
      }
    } catch (err) {
      // Random choices may hit legitimate POSIX errors (e.g. a name taken); anything else is a failure.
      if (!(err instanceof Error && 'code' in err && typeof err.code === 'string' && /^E[A-Z]+$/.test(err.code))) throw err;
    }
  }
}

async function collect(engine: MetaEngine): Promise<{ seq: number; records: string[] }> {
  const records: string[] = [];
  const { seq } = await engine.snapshot((op) => {
    records.push(JSON.stringify(op));
  });
  return { seq, records: records.sort() };
}
