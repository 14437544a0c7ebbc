/**
 * The PostgreSQL engine (pg 8.x). Records live in one table keyed by (kind, part, key); the changelog in
 * another; one row holds the changelog's bounds. All three live in one schema (`?schema=`, default public):
 *
 *   rec       kind, part, key (all COLLATE "C") → value (JSON text)    PRIMARY KEY (kind, part, key)
 *   log       seq → time, ops (JSON text of LogOp[])                    PRIMARY KEY (seq)
 *   logstate  id = 0 → last (newest seq), floor (trimmed up to)         one row
 *
 * Keys are text COLLATE "C" in a UTF8 database: C compares bytes, and UTF-8 byte order is the bytewise
 * order the contract asks of scans. Values are JSON *text*, not jsonb: jsonb rejects "\u0000" inside
 * strings, which names never hold but other values may.
 *
 * Concurrency: writers are serial, volume-wide.
 *
 *   BEGIN ISOLATION LEVEL REPEATABLE READ; LOCK TABLE logstate IN EXCLUSIVE MODE   -- one round trip
 *   fn: reads through this connection, writes buffered in an OverlayTxn
 *   one statement: upsert + delete (unnest arrays) + UPDATE logstate SET last = last + 1 + INSERT INTO log
 *                  RETURNING seq (the commit's seq, answered by `commit`)
 *   COMMIT
 *
 * LOCK TABLE takes no snapshot, so the transaction's snapshot is taken after the lock is granted and sees
 * every earlier writer's commit. EXCLUSIVE mode does not conflict with plain SELECTs: readers, readLog and
 * snapshots never wait for writers. Why not SERIALIZABLE with optimistic retries: a gapless sequence needs
 * one counter row that every logged transaction updates, so under snapshot isolation any two overlapping
 * writers conflict on it (40001) whatever else they touch — optimistic concurrency would degrade into
 * serial execution plus aborted work, and retry storms that exhaust any bounded retry count under load (and
 * Meta updates the global usage counters in nearly every mutation anyway). Why REPEATABLE READ and not READ
 * COMMITTED, when the lock makes them equivalent: a writer that bypasses the lock (hand-written SQL) then
 * fails with 40001 instead of silently losing an update; 40001 and 40P01 are Conflicts, run again by the
 * core (meta/core.ts) with jittered backoff. Within one process the core's writer gate ('always') queues
 * writers before they take a pooled connection, so waiting writers never starve readers of connections.
 *
 * Readonly transactions run each read as its own statement on any pooled connection, without a snapshot
 * across reads — the same as the SQLite engine.
 */

import pg from 'pg';
import type { ClientBase, PoolClient, PoolConfig, QueryResultRow } from 'pg';
import { UsageError } from '../errors.js';
import { maskUrl } from '../util/url.js';
import { Mutex } from '../util/mutex.js';
import { countPgQueries } from './wire.js';
import { UNLOGGED_KINDS, type Json, type Kind, type LogBounds, type LogEntry, type LogOp, type ScanOptions } from './engine.js';
import { checkNextSeq, Conflict, EngineCore, errorCode, isSocketError, type CoreOptions, type NewEntry, type Reader, type ReplayEntry, type WriteAttempt } from './core.js';

/** Pooled connections per engine (one is a writer at a time; the others serve reads and snapshots). */
export const POOL_CONNECTIONS_MAX = 8;
/** Attempts of one transaction when PostgreSQL reports a serialization failure or a deadlock. */
export const TXN_ATTEMPTS_MAX = 8;
/** Backoff before retry n is uniform in [0, min(cap, base * 2^(n-1))) ms (util/sleep.ts). */
export const RETRY_BACKOFF_BASE_MS = 10;
export const RETRY_BACKOFF_CAP_MS = 500;
/** How long a writer waits for the volume's write lock before failing (server-side lock_timeout). */
export const WRITE_LOCK_WAIT_MS_MAX = 60_000;
/** A client idle inside a transaction this long (hung, or stopped in a debugger) is cut off by the server. */
export const IDLE_IN_TXN_MS_MAX = 60_000;
/** Connecting to the server. */
export const CONNECT_MS_MAX = 10_000;
/** Rows per page when a snapshot pages through the records, and per statement when restoring. */
export const SNAPSHOT_PAGE_ROWS = 1000;
export const RESTORE_BATCH_ROWS = 1000;

const SQLSTATE_SERIALIZATION_FAILURE = '40001';
const SQLSTATE_DEADLOCK = '40P01';
const RETRYABLE = new Set([SQLSTATE_SERIALIZATION_FAILURE, SQLSTATE_DEADLOCK]);

/** For `kind <> ALL($n)`: snapshots leave out the kinds that describe live clients. */
const UNLOGGED_KIND_LIST = [...UNLOGGED_KINDS];

export interface PostgresOptions extends CoreOptions {
  /** Create the schema's tables when missing (format). Opening otherwise never creates them. */
  create?: boolean;
}

interface ParsedUrl {
  config: PoolConfig;
  schema: string;
  description: string;
}

/**
 * `postgres://user[:pass]@host[:port]/db[?schema=NAME&sslmode=disable|require|verify-ca|verify-full]`.
 * Exported for tests; throws UsageError on anything it does not understand.
 */
export function parsePostgresUrl(url: string): ParsedUrl {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`metadata URL ${JSON.stringify(maskUrl(url))} is not a URL (try postgres://user@host:5432/db)`);
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') throw new UsageError(`not a PostgreSQL URL: ${u.protocol}`);
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (database === '' || database.includes('/')) throw new UsageError(`metadata URL postgres://${u.host}${u.pathname} names no database (postgres://user@host:5432/db)`);
  let schema = 'public';
  let ssl: PoolConfig['ssl'] = false;
  for (const [name, value] of u.searchParams) {
    if (name === 'schema') {
      if (value === '') throw new UsageError('metadata URL: schema= is empty');
      schema = value;
    } else if (name === 'sslmode') {
      switch (value) {
        case 'disable':
          ssl = false;
          break;
        case 'require':
          ssl = { rejectUnauthorized: false }; // libpq's "require": encrypted, certificate not verified
          break;
        case 'verify-ca':
        case 'verify-full':
          ssl = { rejectUnauthorized: true };
          break;
        default:
          throw new UsageError(`metadata URL: sslmode=${value} is not supported (use disable, require, verify-ca or verify-full)`);
      }
    } else {
      throw new UsageError(`metadata URL: unknown parameter "${name}" (supported: schema, sslmode)`);
    }
  }
  const user = decodeURIComponent(u.username);
  const config: PoolConfig = {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: u.port === '' ? 5432 : Number(u.port),
    database,
    ssl,
    max: POOL_CONNECTIONS_MAX,
    connectionTimeoutMillis: CONNECT_MS_MAX,
    lock_timeout: WRITE_LOCK_WAIT_MS_MAX,
    idle_in_transaction_session_timeout: IDLE_IN_TXN_MS_MAX,
    application_name: 'ferry',
  };
  if (user !== '') config.user = user;
  if (u.password !== '') config.password = decodeURIComponent(u.password);
  return { config, schema, description: maskUrl(url) };
}

/** A 64-bit integer column (pg returns bigint as a string) as a number, asserted to be exact. */
function int(value: unknown, what: string): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n)) throw new Error(`assertion failed: ${what} ${String(value)} is not a safe integer`);
  return n;
}

function quoteIdent(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}

const retryable = (err: unknown): boolean => RETRYABLE.has(errorCode(err) ?? '');

/**
 * The server is not there or went away: socket errors, SQLSTATE class 08 (connection exception), 57P01-57P03
 * (shutting down, crashed, not accepting connections yet), and node-postgres's own messages for a connection
 * that ended or could not be made in time.
 */
function connectionLost(err: unknown): boolean {
  const code = errorCode(err) ?? '';
  if (isSocketError(err) || code.startsWith('08') || /^57P0[123]$/.test(code)) return true;
  return err instanceof Error && /Connection terminated|timeout expired|Client has encountered a connection error|Connection ended/i.test(err.message);
}

/** PostgreSQL cannot store U+0000 in text: fail with the record's address rather than a bare encoding error. */
function checkText(op: LogOp): void {
  if (op[1].includes('\0') || op[2].includes('\0')) throw new Error(`assertion failed: NUL in part or key of ${op[0]} record ${JSON.stringify(op.slice(1, 3))}`);
}

export class PostgresEngine extends EngineCore {
  readonly description: string;
  readonly schema: string;
  private readonly pool: pg.Pool;
  /** Reads of readonly transactions: each its own statement on any pooled connection. */
  private readonly reader: Reader;
  /** Fully qualified table names. */
  private readonly t: { rec: string; log: string; logstate: string };
  private readonly sql: {
    get: string;
    getMany: string;
    scan: string;
    scanAll: string;
    begin: string;
    readLog: string;
  };

  private constructor(parsed: ParsedUrl, options: CoreOptions) {
    // 'always': this process's writers queue on a mutex before they take a connection (the volume-wide lock
    // is LOCK TABLE), so waiting writers never starve readers of connections.
    super(
      { attemptsMax: TXN_ATTEMPTS_MAX, backoff: { baseMs: RETRY_BACKOFF_BASE_MS, capMs: RETRY_BACKOFF_CAP_MS }, serialize: 'always', lock: new Mutex() },
      options,
    );
    this.description = parsed.description;
    this.schema = parsed.schema;
    this.pool = new pg.Pool(parsed.config);
    // An idle connection dropped by the server (restart, idle timeout) is discarded by the pool and the
    // next checkout opens a new one; without a listener the 'error' event would kill the process.
    this.pool.on('error', (err) => {
      process.emitWarning(`ferry: idle PostgreSQL connection lost: ${err.message}`);
    });
    this.pool.on('connect', (client) => countPgQueries(client, this.wire));
    const s = quoteIdent(parsed.schema);
    this.t = { rec: `${s}.rec`, log: `${s}.log`, logstate: `${s}.logstate` };
    const { rec, log, logstate } = this.t;
    this.sql = {
      get: `SELECT value FROM ${rec} WHERE kind = $1 AND part = $2 AND key = $3`,
      // COLLATE "C" as the columns: the join then uses the primary key, and equality has one collation.
      getMany:
        `SELECT r.kind, r.part, r.key, r.value FROM ${rec} r JOIN unnest($1::text[], $2::text[], $3::text[]) AS q(kind, part, key) ` +
        `ON r.kind = q.kind COLLATE "C" AND r.part = q.part COLLATE "C" AND r.key = q.key COLLATE "C"`,
      scan: `SELECT key, value FROM ${rec} WHERE kind = $1 AND part = $2 AND key > $3 ORDER BY key LIMIT $4`,
      // Without `after` the empty key is included (`key > ''` would skip it).
      scanAll: `SELECT key, value FROM ${rec} WHERE kind = $1 AND part = $2 ORDER BY key LIMIT $3`,
      // One round trip; LOCK TABLE takes no snapshot, so the snapshot follows the grant (see the header).
      begin: `BEGIN ISOLATION LEVEL REPEATABLE READ; LOCK TABLE ${logstate} IN EXCLUSIVE MODE`,
      // One statement, so the floor and the entries come from one snapshot.
      readLog:
        `SELECT s.floor, l.seq, l.time, l.ops FROM ${logstate} s LEFT JOIN LATERAL ` +
        `(SELECT seq, time, ops FROM ${log} WHERE seq > $1 AND $1 >= s.floor ORDER BY seq LIMIT $2) l ON true WHERE s.id = 0 ORDER BY l.seq`,
    };
    this.reader = {
      get: (kind, part, key) => this.readGet(this.pool, kind, part, key),
      scan: (kind, part, opts, extra) => this.readScan(this.pool, kind, part, opts, extra),
    };
  }

  /** Connects, checks or creates the schema. Connection problems become UsageErrors saying what to do. */
  static async open(url: string, options: PostgresOptions = {}): Promise<PostgresEngine> {
    const engine = new PostgresEngine(parsePostgresUrl(url), options);
    try {
      await engine.setup(options.create ?? false);
    } catch (err) {
      await engine.close();
      throw PostgresEngine.explain(err, engine.description);
    }
    return engine;
  }

  private static explain(err: unknown, where: string): unknown {
    const e = err as { code?: string; message?: string };
    switch (e.code) {
      case 'ECONNREFUSED':
      case 'ENOTFOUND':
      case 'EHOSTUNREACH':
      case 'ETIMEDOUT':
        return new UsageError(`cannot connect to PostgreSQL at ${where} (${e.code}): is the server running and reachable?`);
      case '3D000':
        return new UsageError(`${where}: ${e.message ?? 'database does not exist'} (create it first: createdb)`);
      case '28000':
      case '28P01':
        return new UsageError(`${where}: authentication failed (${e.message ?? e.code})`);
      case '42501':
        return new UsageError(`${where}: permission denied (${e.message ?? e.code})`);
      default:
        if (e.message !== undefined && /timeout expired|Connection terminated/i.test(e.message)) {
          return new UsageError(`cannot connect to PostgreSQL at ${where}: ${e.message}`);
        }
        return err;
    }
  }

  private async setup(create: boolean): Promise<void> {
    const client = await this.pool.connect();
    try {
      const enc = await client.query<{ server_encoding: string }>('SHOW server_encoding');
      const encoding = enc.rows[0]?.server_encoding;
      if (encoding !== 'UTF8' && encoding !== 'SQL_ASCII') throw new UsageError(`${this.description}: database encoding ${encoding} (need UTF8)`);
      const exists = await client.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [this.t.logstate]);
      if (exists.rows[0]?.ok === true) return;
      if (!create) throw new UsageError(`no volume at ${this.description}: schema "${this.schema}" holds no Ferry tables (run "ferry format" first)`);
      const { rec, log, logstate } = this.t;
      await client.query('BEGIN');
      try {
        // Concurrent formats of one schema would race on the catalog; the advisory lock orders them.
        await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`ferry:${this.schema}`]);
        await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(this.schema)}`);
        await client.query(
          `CREATE TABLE IF NOT EXISTS ${rec} (kind text COLLATE "C" NOT NULL, part text COLLATE "C" NOT NULL, ` +
            `key text COLLATE "C" NOT NULL, value text NOT NULL, PRIMARY KEY (kind, part, key))`,
        );
        await client.query(`CREATE TABLE IF NOT EXISTS ${log} (seq bigint PRIMARY KEY, time bigint NOT NULL, ops text NOT NULL)`);
        await client.query(
          `CREATE TABLE IF NOT EXISTS ${logstate} (id int PRIMARY KEY CHECK (id = 0), last bigint NOT NULL, floor bigint NOT NULL)`,
        );
        await client.query(`INSERT INTO ${logstate} (id, last, floor) VALUES (0, 0, 0) ON CONFLICT (id) DO NOTHING`);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    } finally {
      client.release();
    }
  }

  // ---------------------------------------------------------------- reads

  private async readGet(db: ClientBase | pg.Pool, kind: Kind, part: string, key: string): Promise<Json | undefined> {
    const r = await db.query<{ value: string }>(this.sql.get, [kind, part, key]);
    const row = r.rows[0];
    return row === undefined ? undefined : (JSON.parse(row.value) as Json);
  }

  /**
   * Gets on one connection, where node-postgres runs queries one after another: gets issued in the same
   * turn of the event loop (Meta reads a directory and an entry at once) go out as one query, one round
   * trip instead of one each.
   */
  private batchedGet(client: ClientBase): (kind: Kind, part: string, key: string) => Promise<Json | undefined> {
    type Waiter = { kind: Kind; part: string; key: string; resolve(v: Json | undefined): void; reject(e: unknown): void };
    let queue: Waiter[] | undefined;
    const run = async (batch: Waiter[]): Promise<void> => {
      if (batch.length === 1) {
        const w = batch[0]!;
        w.resolve(await this.readGet(client, w.kind, w.part, w.key));
        return;
      }
      const r = await client.query<{ kind: string; part: string; key: string; value: string }>(this.sql.getMany, [
        batch.map((w) => w.kind),
        batch.map((w) => w.part),
        batch.map((w) => w.key),
      ]);
      const found = new Map(r.rows.map((row) => [`${row.kind}\0${row.part}\0${row.key}`, row.value]));
      for (const w of batch) {
        const v = found.get(`${w.kind}\0${w.part}\0${w.key}`);
        w.resolve(v === undefined ? undefined : (JSON.parse(v) as Json));
      }
    };
    return (kind, part, key) =>
      new Promise<Json | undefined>((resolve, reject) => {
        if (queue === undefined) {
          const batch: Waiter[] = (queue = []);
          queueMicrotask(() => {
            queue = undefined;
            run(batch).catch((e: unknown) => {
              for (const w of batch) w.reject(e);
            });
          });
        }
        queue.push({ kind, part, key, resolve, reject });
      });
  }

  private async readScan(db: ClientBase | pg.Pool, kind: Kind, part: string, options: ScanOptions | undefined, extra: number): Promise<Array<[string, Json]>> {
    const limit = options?.limit === undefined ? null : options.limit + extra;
    const r =
      options?.after === undefined
        ? await db.query<{ key: string; value: string }>(this.sql.scanAll, [kind, part, limit])
        : await db.query<{ key: string; value: string }>(this.sql.scan, [kind, part, options.after, limit]);
    return r.rows.map((row) => [row.key, JSON.parse(row.value) as Json]);
  }

  // ---------------------------------------------------------------- transactions

  protected readReader(): Reader {
    return this.reader;
  }

  protected override isConflict(err: unknown): boolean {
    return retryable(err);
  }

  protected override isConnectionError(err: unknown): boolean {
    return connectionLost(err);
  }

  /** A pooled connection in `BEGIN ...; LOCK TABLE` (one round trip): the volume's write lock, then the snapshot. */
  protected async beginWrite(): Promise<WriteAttempt> {
    const { client, rollback } = await this.locked();
    let committed = false;
    return {
      reader: {
        get: this.batchedGet(client),
        scan: (kind, part, opts, extra) => this.readScan(client, kind, part, opts, extra),
      },
      failed: () => Promise.resolve(undefined),
      commit: async (writes, entry) => {
        const seq = writes.length > 0 ? await this.write(client, writes, entry) : undefined;
        await client.query('COMMIT');
        committed = true;
        return seq;
      },
      end: () => (committed ? client.release() : rollback()),
    };
  }

  /**
   * A connection inside the volume's write lock, and how to give it back without committing (ROLLBACK; a
   * connection that cannot even do that is dropped from the pool). A COMMIT that fails leaves the outcome
   * unknown: the core never runs such a transaction again on its own.
   */
  private async locked(): Promise<{ client: PoolClient; rollback: () => Promise<void> }> {
    const client = await this.pool.connect();
    const rollback = async (): Promise<void> => {
      let broken: Error | undefined;
      try {
        await client.query('ROLLBACK');
      } catch (err) {
        broken = err as Error;
      }
      client.release(broken);
    };
    try {
      await client.query(this.sql.begin);
    } catch (err) {
      await rollback();
      throw err;
    }
    return { client, rollback };
  }

  /** body in one locked transaction, committed; retried like a transaction on serialization failures. */
  private exclusive(body: (client: PoolClient) => Promise<void>): Promise<void> {
    return this.retrying(async () => {
      const { client, rollback } = await this.locked();
      try {
        await body(client);
        await client.query('COMMIT');
      } catch (err) {
        await rollback();
        if (retryable(err)) return new Conflict(err);
        throw err;
      }
      client.release();
      return undefined;
    });
  }

  /**
   * Applies final record states and, when `entry` is given, appends it to the changelog under the next
   * sequence number, in one statement; returns that number.
   */
  private async write(client: ClientBase, ops: readonly LogOp[], entry: NewEntry | undefined): Promise<number | undefined> {
    const params: unknown[] = [];
    const p = (v: unknown): string => {
      params.push(v);
      return `$${params.length}`;
    };
    const puts = ops.filter((op) => op[3] !== null);
    const dels = ops.filter((op) => op[3] === null);
    const ctes: string[] = [];
    const { rec, log, logstate } = this.t;
    for (const op of ops) checkText(op);
    if (puts.length > 0) {
      ctes.push(
        `p AS (INSERT INTO ${rec} (kind, part, key, value) ` +
          `SELECT * FROM unnest(${p(puts.map((o) => o[0]))}::text[], ${p(puts.map((o) => o[1]))}::text[], ` +
          `${p(puts.map((o) => o[2]))}::text[], ${p(puts.map((o) => JSON.stringify(o[3])))}::text[]) ` +
          `ON CONFLICT (kind, part, key) DO UPDATE SET value = EXCLUDED.value RETURNING 1)`,
      );
    }
    if (dels.length > 0) {
      ctes.push(
        `d AS (DELETE FROM ${rec} r USING unnest(${p(dels.map((o) => o[0]))}::text[], ${p(dels.map((o) => o[1]))}::text[], ` +
          `${p(dels.map((o) => o[2]))}::text[]) AS x(kind, part, key) WHERE r.kind = x.kind AND r.part = x.part AND r.key = x.key RETURNING 1)`,
      );
    }
    let tail = 'SELECT NULL::bigint AS seq';
    if (entry !== undefined) {
      // The row lock on logstate (already held through LOCK TABLE) makes the sequence gapless.
      ctes.push(`s AS (UPDATE ${logstate} SET last = last + 1 WHERE id = 0 RETURNING last)`);
      tail = `INSERT INTO ${log} (seq, time, ops) SELECT last, ${p(entry.time)}, ${p(entry.opsJson)} FROM s RETURNING seq`;
    }
    if (ctes.length === 0) return undefined;
    const r = await client.query<{ seq: string | null }>(`WITH ${ctes.join(', ')} ${tail}`, params);
    if (entry === undefined) return undefined;
    if (r.rowCount !== 1) throw new Error('assertion failed: logstate row missing');
    return int(r.rows[0]!.seq, 'log.seq');
  }

  // ---------------------------------------------------------------- changelog

  protected doLogBounds(): Promise<LogBounds> {
    return this.logState();
  }

  private async logState(db: ClientBase | pg.Pool = this.pool): Promise<LogBounds> {
    const r = await db.query<{ last: string; floor: string }>(`SELECT last, floor FROM ${this.t.logstate} WHERE id = 0`);
    const row = r.rows[0];
    if (row === undefined) throw new Error('assertion failed: logstate row missing');
    return { last: int(row.last, 'logstate.last'), floor: int(row.floor, 'logstate.floor') };
  }

  protected async doReadLog(after: number, limit: number): Promise<{ floor: number; entries: LogEntry[] }> {
    const r = await this.pool.query<{ floor: string; seq: string | null; time: string | null; ops: string | null }>(this.sql.readLog, [after, limit]);
    const first = r.rows[0];
    if (first === undefined) throw new Error('assertion failed: logstate row missing');
    const floor = int(first.floor, 'logstate.floor');
    const entries: LogEntry[] = [];
    for (const row of r.rows) {
      if (row.seq === null) continue;
      entries.push({ seq: int(row.seq, 'log.seq'), time: int(row.time, 'log.time'), ops: JSON.parse(row.ops!) as LogOp[] });
    }
    return { floor, entries };
  }

  protected doTrimLog(upTo: number): Promise<void> {
    return this.exclusive(async (client) => {
      const state = await this.logState(client);
      const to = Math.min(upTo, state.last);
      if (to <= state.floor) return;
      await client.query(`DELETE FROM ${this.t.log} WHERE seq <= $1`, [to]);
      await client.query(`UPDATE ${this.t.logstate} SET floor = $1 WHERE id = 0`, [to]);
    });
  }

  protected doApplyLog(entries: ReplayEntry[]): Promise<void> {
    return this.exclusive(async (client) => {
      checkNextSeq((await this.logState(client)).last, entries[0]!.seq);
      // Entries are resulting states: applying only each record's last state equals applying them in order.
      const final = new Map<string, LogOp>();
      for (const e of entries) {
        for (const op of e.ops) {
          const id = `${op[0]}\0${op[1]}\0${op[2]}`;
          final.delete(id);
          final.set(id, op);
        }
      }
      await this.write(client, [...final.values()], undefined);
      await client.query(`INSERT INTO ${this.t.log} (seq, time, ops) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[])`, [
        entries.map((e) => e.seq),
        entries.map((e) => e.time),
        entries.map((e) => e.opsJson),
      ]);
      await client.query(`UPDATE ${this.t.logstate} SET last = $1 WHERE id = 0`, [entries[entries.length - 1]!.seq]);
    });
  }

  // ---------------------------------------------------------------- snapshots

  protected async doSnapshot(onRecord: (op: LogOp) => Promise<void> | void): Promise<{ seq: number }> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      // One snapshot for the sequence and every page; keyset pagination keeps memory to one page.
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      try {
        const { last } = await this.logState(client);
        let cursor: [string, string, string] | undefined;
        for (;;) {
          const r: pg.QueryResult<QueryResultRow> =
            cursor === undefined
              ? await client.query(
                  `SELECT kind, part, key, value FROM ${this.t.rec} WHERE kind <> ALL($1::text[]) ORDER BY kind, part, key LIMIT $2`,
                  [UNLOGGED_KIND_LIST, SNAPSHOT_PAGE_ROWS],
                )
              : await client.query(
                  `SELECT kind, part, key, value FROM ${this.t.rec} WHERE kind <> ALL($1::text[]) AND (kind, part, key) > ($3, $4, $5) ` +
                    `ORDER BY kind, part, key LIMIT $2`,
                  [UNLOGGED_KIND_LIST, SNAPSHOT_PAGE_ROWS, ...cursor],
                );
          for (const row of r.rows as Array<{ kind: Kind; part: string; key: string; value: string }>) {
            const op = onRecord([row.kind, row.part, row.key, JSON.parse(row.value) as Json]);
            if (op !== undefined) await op;
          }
          if (r.rows.length < SNAPSHOT_PAGE_ROWS) break;
          const lastRow = r.rows[r.rows.length - 1] as { kind: string; part: string; key: string };
          cursor = [lastRow.kind, lastRow.part, lastRow.key];
        }
        await client.query('COMMIT');
        return { seq: last };
      } catch (err) {
        await client.query('ROLLBACK').catch((e: unknown) => {
          broken = e as Error;
        });
        throw err;
      }
    } finally {
      client.release(broken);
    }
  }

  protected doRestore(records: AsyncIterable<LogOp>, seq: number): Promise<void> {
    // `records` is consumed once: a retry could not replay it, so this transaction is not retried.
    let consumed = false;
    return this.exclusive(async (client) => {
      if (consumed) throw new Error('restore failed after reading its records; run it again');
      consumed = true;
      await client.query(`DELETE FROM ${this.t.rec}`);
      await client.query(`DELETE FROM ${this.t.log}`);
      // Keyed per batch: one upsert statement may not touch a row twice.
      let batch = new Map<string, LogOp>();
      for await (const op of records) {
        if (op[3] === null) continue;
        batch.set(`${op[0]}\0${op[1]}\0${op[2]}`, op);
        if (batch.size >= RESTORE_BATCH_ROWS) {
          await this.write(client, [...batch.values()], undefined);
          batch = new Map();
        }
      }
      await this.write(client, [...batch.values()], undefined);
      await client.query(`UPDATE ${this.t.logstate} SET last = $1, floor = $1 WHERE id = 0`, [seq]);
    });
  }

  protected doReset(): Promise<void> {
    return this.exclusive(async (client) => {
      await client.query(`DELETE FROM ${this.t.rec}`);
      await client.query(`DELETE FROM ${this.t.log}`);
      await client.query(`UPDATE ${this.t.logstate} SET last = 0, floor = 0 WHERE id = 0`);
    });
  }

  // ---------------------------------------------------------------- lifecycle

  /** Waits for the queries in flight, then closes every connection. */
  protected doClose(): Promise<void> {
    return this.pool.end();
  }
}
