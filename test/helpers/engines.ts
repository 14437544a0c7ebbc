/**
 * The shared metadata engines for tests that run one body on Redis and on PostgreSQL: whether the server is
 * there, a fresh isolated volume location (a Redis key prefix, a PostgreSQL schema) and its cleanup, and the
 * skip-or-fail rule: without a server the tests skip with a message, except under CI=true where they fail.
 *
 *   Redis       127.0.0.1:6379, database given by the caller (FERRY_TEST_REDIS_HOST=host:port overrides)
 *   PostgreSQL  postgres://postgres@127.0.0.1:5432/test, trust auth (FERRY_TEST_POSTGRES_URL overrides)
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';
import { Redis } from 'ioredis';
import pg from 'pg';

export interface SharedEngine {
  name: 'redis' | 'postgres';
  /** The server's URL (Redis: with the database; PostgreSQL: database `test`), without a volume location. */
  base: string;
  /** Undefined when the server answers; otherwise why not, and what to do. */
  unreachable(): Promise<string | undefined>;
  /** A metadata URL no other test uses, and a cleanup that removes everything stored under it. */
  fresh(): Promise<{ url: string; cleanup(): Promise<void> }>;
}

export function redisEngine(db: number): SharedEngine {
  const base = `redis://${process.env['FERRY_TEST_REDIS_HOST'] ?? '127.0.0.1:6379'}/${db}`;
  return {
    name: 'redis',
    base,
    async unreachable() {
      const r = new Redis(base, { lazyConnect: true, retryStrategy: () => null, connectTimeout: 3000, maxRetriesPerRequest: 0 });
      let last: Error | undefined;
      r.on('error', (err: Error) => (last = err));
      try {
        await r.connect();
        await r.ping();
        return undefined;
      } catch (err) {
        return `Redis is not reachable at ${base} (${String(last ?? err)}): start redis-server on 127.0.0.1:6379 or set FERRY_TEST_REDIS_HOST`;
      } finally {
        r.disconnect();
      }
    },
    fresh() {
      const prefix = `ferrytest-${randomBytes(5).toString('hex')}`;
      return Promise.resolve({
        url: `${base}?prefix=${prefix}`,
        async cleanup() {
          // Every key of a volume carries its hash tag {prefix}.
          const admin = new Redis(base);
          try {
            let cursor = '0';
            do {
              const [next, keys] = await admin.scan(cursor, 'MATCH', `{${prefix}}:*`, 'COUNT', 1000);
              if (keys.length > 0) await admin.unlink(...keys);
              cursor = next;
            } while (cursor !== '0');
          } finally {
            await admin.quit();
          }
        },
      });
    },
  };
}

export function postgresEngine(): SharedEngine {
  const base = process.env['FERRY_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
  const admin = (): pg.Client => new pg.Client({ connectionString: base, connectionTimeoutMillis: 3000 });
  return {
    name: 'postgres',
    base,
    async unreachable() {
      const c = admin();
      try {
        await c.connect();
        await c.query('SELECT 1');
        return undefined;
      } catch (err) {
        return `PostgreSQL is not reachable at ${base} (${String(err)}): start PostgreSQL on 127.0.0.1:5432 (trust auth, database "test") or set FERRY_TEST_POSTGRES_URL`;
      } finally {
        await c.end().catch(() => undefined);
      }
    },
    async fresh() {
      const schema = `ferry_test_${randomBytes(6).toString('hex')}`;
      const c = admin();
      await c.connect();
      try {
        await c.query(`CREATE SCHEMA "${schema}"`);
      } finally {
        await c.end();
      }
      return {
        url: `${base}${base.includes('?') ? '&' : '?'}schema=${schema}`,
        async cleanup() {
          const d = admin();
          await d.connect();
          try {
            await d.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
          } finally {
            await d.end();
          }
        },
      };
    },
  };
}

/**
 * Calls body for each engine whose server answers. For one that does not, registers one test that skips with
 * the reason, or fails under CI=true (CI must not pass by skipping). Every server is checked before any suite
 * is registered: a suite may start at once and block the event loop (spawnSync), starving a later check.
 */
export async function forEachEngine(engines: SharedEngine[], body: (engine: SharedEngine) => void): Promise<void> {
  const down = await Promise.all(engines.map((e) => e.unreachable()));
  engines.forEach((engine, i) => {
    const why = down[i];
    if (why === undefined) body(engine);
    else if (process.env['CI'] === 'true') it(`${engine.name} is reachable`, () => assert.fail(why));
    else it(`${engine.name}`, { skip: why }, () => undefined);
  });
}
