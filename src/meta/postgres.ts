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
 * Concurrency: optimistic, and serial only for the commit itself.
 *
 *   reads    plain statements on any pooled connection, outside any transaction: gets issued in one turn of
 *            the event loop go out as one query. Each returns the row's version (xmin: a new one for every
 *            new row version) with its value; the attempt remembers the version of every record it read
 *            (none: missing) and the keys of every range it scanned.
 *   commit   one statement, SELECT ferry_commit_v1(reads, writes, entry): a PL/pgSQL function that, in its
 *            own single-statement transaction,
 *              takes the logstate row lock (FOR UPDATE: commits queue here, and only for their own duration)
 *              checks every remembered read against the latest committed state (READ COMMITTED: each of the
 *                function's statements sees every commit made before it began, so all commits made before
 *                the lock was granted), and returns 0 — nothing written — when one changed
 *              the fence (meta/epoch.ts), when an entry is to be appended: 2 and the demotion record
 *              upserts, deletes, UPDATE logstate SET last = last + 1 and INSERT INTO log, returning 1 and the seq
 *
 * A transaction is thereby serializable at its commit point, and the changelog gapless and in commit order:
 * seqs are taken under the row lock, and a commit is visible before the next one takes the lock. A reader
 * of the log (readLog, snapshots) never waits. Nothing is locked across a client's round trips: a client that
 * stalls between its reads and its commit delays nobody. A read that no longer holds makes the attempt a
 * Conflict, run again by the core (meta/core.ts) with jittered backoff; 40001 and 40P01 (from an administrator's
 * hand-written transaction, say) are Conflicts too. Every connection runs READ COMMITTED whatever the server's
 * default, which the function's checks rely on.
 *
 * A retry does not gamble again: it takes the logstate row lock first (BEGIN and the lock in one round trip),
 * reads on that connection, calls the commit function and commits. No other commit can land in between, so
 * a transaction that lost once wins its second attempt; under heavy contention on one record (many clients
 * creating in one directory) commits queue on the lock, as a pessimistic engine's would, instead of retrying
 * against each other. Only these retries hold the lock across round trips.
 *
 * Whole-volume work (applyLog, restore, reset, trimming) takes LOCK TABLE logstate IN EXCLUSIVE MODE in a
 * REPEATABLE READ transaction: it waits for commits in flight and holds new ones off until it ends.
 *
 * Readonly transactions run each read as its own statement on any pooled connection, without a snapshot
 * across reads — the same as the SQLite engine. Snapshots are one REPEATABLE READ READ ONLY transaction.
 */

import pg from 'pg';
import type { ClientBase, PoolClient, PoolConfig, QueryResultRow } from 'pg';
import { UsageError } from '../errors.js';
import { maskUrl } from '../util/url.js';
import { Mutex } from '../util/mutex.js';
import { countPgQueries } from './wire.js';
import { DEMOTION_ADDRESS, type DemotionRec } from './epoch.js';
import { UNLOGGED_KINDS, type Json, type Kind, type LogBounds, type LogEntry, type LogOp, type ScanOptions } from './engine.js';
import { refKeyOf } from './overlay.js';
import { SpeculativeReads } from './speculate.js';
import { checkNextSeq, Conflict, Demoted, EngineCore, errorCode, isSocketError, type CoreOptions, type NewEntry, type Reader, type ReplayEntry, type WriteAttempt } from './core.js';

/** Pooled connections per engine (a transaction holds one only for one statement at a time). */
export const POOL_CONNECTIONS_MAX = 8;
/** Attempts of one transaction whose reads changed before its commit (or that met 40001/40P01). */
export const TXN_ATTEMPTS_MAX = 50;
/** Backoff before retry n is uniform in [0, min(cap, base * 2^(n-1))) ms (util/sleep.ts). */
export const RETRY_BACKOFF_BASE_MS = 1;
export const RETRY_BACKOFF_CAP_MS = 100;
/** How long a commit (or whole-volume work) waits for the log-state lock before failing (server-side lock_timeout). */
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
    // The commit function's checks need each of its statements to see the latest commits (see the header).
    options: '-c default_transaction_isolation=read\\ committed',
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
  /** What this client recently read (row versions; null: missing), for first attempts to speculate on. */
  readonly recent = new SpeculativeReads<string | null>();
  /** Fully qualified table names. */
  private readonly t: { rec: string; log: string; logstate: string };
  private readonly sql: {
    get: string;
    getMany: string;
    scan: string;
    scanAll: string;
    begin: string;
    lockCommits: string;
    readLog: string;
    commit: string;
  };

  private constructor(parsed: ParsedUrl, options: CoreOptions) {
    // 'contention': writers run concurrently; after a conflict this process's writers take turns (core.ts).
    super(
      { attemptsMax: TXN_ATTEMPTS_MAX, backoff: { baseMs: RETRY_BACKOFF_BASE_MS, capMs: RETRY_BACKOFF_CAP_MS }, serialize: 'contention', lock: new Mutex() },
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
    // Reads answer each row's version (xmin, as text) beside its value: the commit function checks it.
    this.sql = {
      get: `SELECT value, xmin::text AS ver FROM ${rec} WHERE kind = $1 AND part = $2 AND key = $3`,
      // COLLATE "C" as the columns: the join then uses the primary key, and equality has one collation.
      // Gets and following reads of one batch (see batched): COLLATE "C" as the columns, so the joins use the
      // primary key. The field is read only for following reads (CASE: no JSON parsed for plain gets).
      getMany:
        `SELECT q.i, a.value AS a, a.xmin::text AS av, CASE WHEN q.field IS NOT NULL THEN a.value::json ->> q.field END AS bk, ` +
        `b.value AS b, b.xmin::text AS bv ` +
        `FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) WITH ORDINALITY AS q(kind, part, key, field, rkind, rpart, i) ` +
        `JOIN ${rec} a ON a.kind = q.kind COLLATE "C" AND a.part = q.part COLLATE "C" AND a.key = q.key COLLATE "C" ` +
        `LEFT JOIN ${rec} b ON b.kind = q.rkind COLLATE "C" AND b.part = q.rpart COLLATE "C" ` +
        `AND b.key = (CASE WHEN q.field IS NOT NULL THEN a.value::json ->> q.field END) COLLATE "C"`,
      scan: `SELECT key, value, xmin::text AS ver FROM ${rec} WHERE kind = $1 AND part = $2 AND key > $3 ORDER BY key LIMIT $4`,
      // Without `after` the empty key is included (`key > ''` would skip it).
      scanAll: `SELECT key, value, xmin::text AS ver FROM ${rec} WHERE kind = $1 AND part = $2 ORDER BY key LIMIT $3`,
      // Whole-volume work: LOCK TABLE takes no snapshot, so the snapshot follows the grant (see the header).
      begin: `BEGIN ISOLATION LEVEL REPEATABLE READ; LOCK TABLE ${logstate} IN EXCLUSIVE MODE`,
      // A retry's lock (beginWrite): the row every commit locks first. READ COMMITTED: each later statement
      // sees every commit made before the lock was granted.
      lockCommits: `BEGIN ISOLATION LEVEL READ COMMITTED; SELECT 1 FROM ${logstate} WHERE id = 0 FOR UPDATE`,
      commit:
        `SELECT r_status, r_seq, r_info FROM ${s}.${COMMIT_FUNCTION}($1::text[], $2::text[], $3::text[], $4::text[], ` +
        `$5::text[], $6::text[], $7::text[], $8::bigint[], $9::int[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], ` +
        `$15::text[], $16::text[], $17::text[], $18::bigint, $19::text)`,
      // One statement, so the floor and the entries come from one snapshot.
      readLog:
        `SELECT s.floor, l.seq, l.time, l.ops FROM ${logstate} s LEFT JOIN LATERAL ` +
        `(SELECT seq, time, ops FROM ${log} WHERE seq > $1 AND $1 >= s.floor ORDER BY seq LIMIT $2) l ON true WHERE s.id = 0 ORDER BY l.seq`,
    };
    const reads = this.batched();
    this.reader = {
      get: async (kind, part, key) => {
        const v = await reads.get(kind, part, key);
        this.remember(kind, part, key, v);
        return v?.value;
      },
      scan: async (kind, part, opts, extra) => (await this.readScan(this.pool, kind, part, opts, extra)).rows,
      getFollowing: async (kind, part, key, field, refKind, refPart) => {
        const r = await reads.following(kind, part, key, field, refKind, refPart);
        this.remember(kind, part, key, r.value);
        if (r.refKey !== undefined) this.remember(refKind, refPart, r.refKey, r.ref);
        return { value: r.value?.value, refKey: r.refKey, ref: r.ref?.value };
      },
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
      if (exists.rows[0]?.ok === true) {
        await this.ensureCommitFunction(client);
        return;
      }
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
        await client.query(commitFunctionSql(quoteIdent(this.schema), this.t));
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    } finally {
      client.release();
    }
  }

  /**
   * A volume formatted before the commit function existed gets it at open. Without the privilege to create
   * it (a read-only user), opening still succeeds: reads work, and a commit fails naming the missing function.
   */
  private async ensureCommitFunction(client: PoolClient): Promise<void> {
    const have = await client.query(
      'SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 AND p.proname = $2',
      [this.schema, COMMIT_FUNCTION],
    );
    if (have.rowCount !== null && have.rowCount > 0) return;
    await client.query('BEGIN');
    try {
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`ferry:${this.schema}`]);
      await client.query(commitFunctionSql(quoteIdent(this.schema), this.t));
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      if (errorCode(err) !== '42501') throw err;
    }
  }

  // ---------------------------------------------------------------- reads

  /**
   * Point reads on `db`, batched: gets and getFollowing reads issued in the same turn of the event loop (Meta
   * reads a directory and an entry at once, with the inode the entry names) go out as one query, one round
   * trip instead of one each. Each answers the record's value and version (undefined: missing) and, for a
   * following read, the key its field names and that record.
   */
  private batched(db: pg.Pool | PoolClient = this.pool): BatchedReads {
    let queue: ReadWaiter[] | undefined;
    const run = async (batch: ReadWaiter[]): Promise<void> => {
      const w0 = batch[0]!;
      if (batch.length === 1 && w0.field === null) {
        const r = await db.query<{ value: string; ver: string }>({ name: 'ferry-get', text: this.sql.get, values: [w0.kind, w0.part, w0.key] });
        const row = r.rows[0];
        w0.resolve({ value: row === undefined ? undefined : { value: JSON.parse(row.value) as Json, ver: row.ver, raw: row.value }, refKey: undefined, ref: undefined });
        return;
      }
      const r = await db.query<{ i: string; a: string; av: string; bk: string | null; b: string | null; bv: string | null }>({
        name: 'ferry-get-many',
        text: this.sql.getMany,
        values: [
          batch.map((w) => w.kind),
          batch.map((w) => w.part),
          batch.map((w) => w.key),
          batch.map((w) => w.field),
          batch.map((w) => w.refKind),
          batch.map((w) => w.refPart),
        ],
      });
      const rows = new Map(r.rows.map((row) => [Number(row.i), row]));
      for (const [i, w] of batch.entries()) {
        const row = rows.get(i + 1);
        if (row === undefined) {
          w.resolve({ value: undefined, refKey: undefined, ref: undefined });
          continue;
        }
        const value: Versioned = { value: JSON.parse(row.a) as Json, ver: row.av, raw: row.a };
        const refKey = w.field === null ? undefined : refKeyOf(value.value, w.field);
        if (refKey === undefined || w.refKind === null || w.refPart === null) {
          w.resolve({ value, refKey: undefined, ref: undefined });
        } else if (refKey !== row.bk) {
          // The server read the field otherwise than JavaScript does (a number written as 1e3): read it alone.
          this.batched(db)
            .get(w.refKind, w.refPart, refKey)
            .then((ref) => w.resolve({ value, refKey, ref }), w.reject);
        } else {
          w.resolve({ value, refKey, ref: row.b === null ? undefined : { value: JSON.parse(row.b) as Json, ver: row.bv!, raw: row.b } });
        }
      }
    };
    const read = (w: Omit<ReadWaiter, 'resolve' | 'reject'>): Promise<FollowedRead> =>
      new Promise<FollowedRead>((resolve, reject) => {
        if (queue === undefined) {
          const batch: ReadWaiter[] = (queue = []);
          queueMicrotask(() => {
            queue = undefined;
            run(batch).catch((e: unknown) => {
              for (const x of batch) x.reject(e);
            });
          });
        }
        queue.push({ ...w, resolve, reject });
      });
    return {
      get: async (kind, part, key) => (await read({ kind, part, key, field: null, refKind: null, refPart: null })).value,
      following: (kind, part, key, field, refKind, refPart) => read({ kind, part, key, field, refKind, refPart }),
    };
  }

  /** One range of a part, with each row's version; `limit` as queried (null: none). */
  private async readScan(
    db: pg.Pool | PoolClient,
    kind: Kind,
    part: string,
    options: ScanOptions | undefined,
    extra: number,
  ): Promise<{ limit: number | null; rows: Array<[string, Json]>; vers: string[] }> {
    const limit = options?.limit === undefined ? null : options.limit + extra;
    const r =
      options?.after === undefined
        ? await db.query<{ key: string; value: string; ver: string }>({ name: 'ferry-scan-all', text: this.sql.scanAll, values: [kind, part, limit] })
        : await db.query<{ key: string; value: string; ver: string }>({ name: 'ferry-scan', text: this.sql.scan, values: [kind, part, options.after, limit] });
    return { limit, rows: r.rows.map((row) => [row.key, JSON.parse(row.value) as Json]), vers: r.rows.map((row) => row.ver) };
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

  /**
   * Attempt 1 is optimistic: reads through the pool, remembered, then one call of the commit function. A
   * retry (the first attempt lost to another commit) runs under the commit lock instead: BEGIN and the
   * logstate row lock in one round trip, its reads on that connection, the commit function, COMMIT. Nothing
   * can commit meanwhile, so it cannot lose again: under contention on one record (creates in one directory
   * from many clients) every transaction commits at its second attempt at the latest, in the order the
   * lock grants, instead of retrying against each other.
   */
  protected beginWrite(n: number): Promise<WriteAttempt> {
    return n === 1 ? Promise.resolve(this.optimistic()) : this.underLock();
  }

  private optimistic(): WriteAttempt {
    const reads = new ReadSet();
    const batch = this.batched();
    const recent = this.recent;
    // Records taken from what this client read less than a second ago (meta/speculate.ts): checked at commit
    // like any read.
    const speculated = new Set<string>();
    const speculate = (kind: Kind, part: string, key: string): Versioned | null | undefined => {
      const id = recId(kind, part, key);
      const hit = recent.fresh(id);
      if (hit === undefined) return undefined;
      speculated.add(id);
      reads.got(kind, part, key, hit.ver);
      return hit.raw === undefined ? null : { value: JSON.parse(hit.raw) as Json, ver: hit.ver!, raw: hit.raw };
    };
    const reader: Reader = {
      get: async (kind, part, key) => {
        const hit = speculate(kind, part, key);
        if (hit !== undefined) return hit?.value;
        const v = await batch.get(kind, part, key);
        reads.got(kind, part, key, v?.ver ?? null);
        this.remember(kind, part, key, v);
        return v?.value;
      },
      scan: async (kind, part, opts, extra) => {
        const r = await this.readScan(this.pool, kind, part, opts, extra);
        reads.scanned(kind, part, opts?.after ?? null, r.limit, r.rows.map(([k]) => k));
        r.rows.forEach(([k], i) => reads.got(kind, part, k, r.vers[i]!));
        return r.rows;
      },
      getFollowing: async (kind, part, key, field, refKind, refPart) => {
        const a = recent.fresh(recId(kind, part, key));
        if (a !== undefined) {
          const refKey = a.raw === undefined ? undefined : refKeyOf(JSON.parse(a.raw) as Json, field);
          if (refKey === undefined || recent.fresh(recId(refKind, refPart, refKey)) !== undefined) {
            const value = speculate(kind, part, key);
            const ref = refKey === undefined ? undefined : speculate(refKind, refPart, refKey);
            return { value: value?.value, refKey, ref: ref?.value };
          }
        }
        const r = await batch.following(kind, part, key, field, refKind, refPart);
        reads.got(kind, part, key, r.value?.ver ?? null);
        this.remember(kind, part, key, r.value);
        if (r.refKey !== undefined) {
          reads.got(refKind, refPart, r.refKey, r.ref?.ver ?? null);
          this.remember(refKind, refPart, r.refKey, r.ref);
        }
        return { value: r.value?.value, refKey: r.refKey, ref: r.ref?.value };
      },
    };
    const lost = (r: Conflict): Conflict => {
      // What this attempt read may be stale, speculated or not.
      for (const g of reads.gets.values()) recent.forget(recId(g.kind, g.part, g.key));
      if (speculated.size > 0) recent.conflicted(speculated);
      return r;
    };
    return {
      reader,
      failed: async () => {
        // fn may have failed only because its reads came from different commits: checking them (a call that
        // writes nothing) reruns fn then, instead of reporting an error a serial execution would not raise.
        if (reads.torn) return lost(new Conflict());
        if (reads.empty) return undefined;
        const r = await this.callCommit(this.pool, reads, [], undefined);
        return r instanceof Conflict ? lost(r) : undefined;
      },
      commit: async (writes, entry) => {
        if (reads.torn) return lost(new Conflict());
        if (writes.length === 0 && reads.empty) return undefined;
        const r = await this.callCommit(this.pool, reads, writes, entry);
        if (r instanceof Conflict) return lost(r);
        this.forgetWritten(writes);
        return r;
      },
      end: () => undefined,
    };
  }

  /** A read of the committed state, for later first attempts to speculate on (undefined: the record is missing). */
  private remember(kind: Kind, part: string, key: string, v: Versioned | undefined): void {
    this.recent.remember(recId(kind, part, key), v?.ver ?? null, v?.raw);
  }

  /** After a commit: its records' new versions are the server's, unknown here. */
  private forgetWritten(writes: readonly LogOp[]): void {
    for (const [kind, part, key] of writes) this.recent.forget(recId(kind, part, key));
  }

  /** An attempt that holds the commit lock from its first read to its COMMIT (see beginWrite). */
  private async underLock(): Promise<WriteAttempt> {
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
      await client.query(this.sql.lockCommits);
    } catch (err) {
      await rollback();
      throw err;
    }
    const batch = this.batched(client);
    let committed = false;
    return {
      // Reads under the lock are the latest state: later first attempts may speculate on them.
      reader: {
        get: async (kind, part, key) => {
          const v = await batch.get(kind, part, key);
          this.remember(kind, part, key, v);
          return v?.value;
        },
        scan: async (kind, part, opts, extra) => (await this.readScan(client, kind, part, opts, extra)).rows,
        getFollowing: async (kind, part, key, field, refKind, refPart) => {
          const r = await batch.following(kind, part, key, field, refKind, refPart);
          this.remember(kind, part, key, r.value);
          if (r.refKey !== undefined) this.remember(refKind, refPart, r.refKey, r.ref);
          return { value: r.value?.value, refKey: r.refKey, ref: r.ref?.value };
        },
      },
      // Every read came from the latest commit, and no other can happen until this one ends.
      failed: () => Promise.resolve(undefined),
      commit: async (writes, entry) => {
        const r = writes.length === 0 ? undefined : await this.callCommit(client, new ReadSet(), writes, entry);
        if (r instanceof Demoted || r instanceof Conflict) return r;
        await client.query('COMMIT');
        committed = true;
        this.forgetWritten(writes);
        return r;
      },
      end: () => (committed ? client.release() : rollback()),
    };
  }

  /** One call of the commit function (no writes and no entry: a check of the reads only). */
  private async callCommit(db: pg.Pool | PoolClient, reads: ReadSet, writes: readonly LogOp[], entry: NewEntry | undefined): Promise<number | undefined | Conflict | Demoted> {
    for (const op of writes) checkText(op);
    const puts = writes.filter((op) => op[3] !== null);
    const dels = writes.filter((op) => op[3] === null);
    const g = [...reads.gets.values()];
    const sc = reads.scans;
    const r = await db.query<{ r_status: number; r_seq: string | null; r_info: string | null }>({
      name: 'ferry-commit',
      text: this.sql.commit,
      values: [
        g.map((x) => x.kind),
        g.map((x) => x.part),
        g.map((x) => x.key),
        g.map((x) => x.ver),
        sc.map((x) => x.kind),
        sc.map((x) => x.part),
        sc.map((x) => x.after),
        sc.map((x) => x.limit),
        sc.map((x) => x.keys.length),
        sc.flatMap((x) => x.keys),
        puts.map((o) => o[0]),
        puts.map((o) => o[1]),
        puts.map((o) => o[2]),
        puts.map((o) => JSON.stringify(o[3])),
        dels.map((o) => o[0]),
        dels.map((o) => o[1]),
        dels.map((o) => o[2]),
        entry?.time ?? null,
        entry?.opsJson ?? null,
      ],
    });
    const row = r.rows[0];
    if (row === undefined) throw new Error('assertion failed: the commit function answered no row');
    switch (row.r_status) {
      case 1:
        return entry === undefined ? undefined : int(row.r_seq, 'log.seq');
      case 0:
        return new Conflict();
      case 2:
        return new Demoted(JSON.parse(row.r_info!) as DemotionRec);
      default:
        throw new Error(`assertion failed: the commit function answered status ${String(row.r_status)}`);
    }
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

/** A record's address as one string (the speculation cache's key). */
function recId(kind: Kind, part: string, key: string): string {
  return `${kind}\0${part}\0${key}`;
}

/** A record's value and its row version (xmin), as a read answers them, and its JSON text. */
interface Versioned {
  value: Json;
  ver: string;
  raw: string;
}

/** A point read's answer; refKey and ref only for a following read that named a record (Txn.getFollowing). */
interface FollowedRead {
  value: Versioned | undefined;
  refKey: string | undefined;
  ref: Versioned | undefined;
}

interface ReadWaiter {
  kind: Kind;
  part: string;
  key: string;
  /** Following reads only (null for a plain get). */
  field: string | null;
  refKind: Kind | null;
  refPart: string | null;
  resolve(r: FollowedRead): void;
  reject(e: unknown): void;
}

/** Point reads of one connection or pool, batched per turn of the event loop (PostgresEngine.batched). */
interface BatchedReads {
  get(kind: Kind, part: string, key: string): Promise<Versioned | undefined>;
  following(kind: Kind, part: string, key: string, field: string, refKind: Kind, refPart: string): Promise<FollowedRead>;
}

/** What a writing attempt read, for the commit function to check. */
class ReadSet {
  /** Record address → the version read (null: missing); the first read wins. */
  readonly gets = new Map<string, { kind: Kind; part: string; key: string; ver: string | null }>();
  readonly scans: Array<{ kind: Kind; part: string; after: string | null; limit: number | null; keys: string[] }> = [];
  /** Two reads of one record disagreed: the attempt saw two commits and must run again. */
  torn = false;

  got(kind: Kind, part: string, key: string, ver: string | null): void {
    const id = `${kind}\0${part}\0${key}`;
    const had = this.gets.get(id);
    if (had === undefined) this.gets.set(id, { kind, part, key, ver });
    else if (had.ver !== ver) this.torn = true;
  }

  scanned(kind: Kind, part: string, after: string | null, limit: number | null, keys: string[]): void {
    this.scans.push({ kind, part, after, limit, keys });
  }

  get empty(): boolean {
    return this.gets.size === 0 && this.scans.length === 0;
  }
}

/** The commit function's name; a change of its signature or meaning gets a new version suffix. */
const COMMIT_FUNCTION = 'ferry_commit_v1';

/**
 * The commit function (see the file comment). Arguments, as parallel arrays: the records read and their
 * versions (NULL: missing); the ranges scanned (after NULL: from the start; limit NULL: none) with how many
 * keys each answered and those keys, flattened; the records to upsert; the records to delete; the entry
 * (time, ops JSON; NULL ops: append none). Answers r_status 1 (committed, r_seq the entry's seq or NULL),
 * 0 (a read no longer holds: nothing written) or 2 (demoted, r_info the demotion record: nothing written).
 */
function commitFunctionSql(schema: string, t: { rec: string; log: string; logstate: string }): string {
  return `CREATE OR REPLACE FUNCTION ${schema}.${COMMIT_FUNCTION}(
  g_kind text[], g_part text[], g_key text[], g_ver text[],
  s_kind text[], s_part text[], s_after text[], s_limit bigint[], s_count int[], s_keys text[],
  p_kind text[], p_part text[], p_key text[], p_val text[],
  d_kind text[], d_part text[], d_key text[],
  e_time bigint, e_ops text,
  OUT r_status int, OUT r_seq bigint, OUT r_info text)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
  i int;
  off int := 0;
  got text[];
BEGIN
  r_status := 0;
  PERFORM 1 FROM ${t.logstate} WHERE id = 0 FOR UPDATE;
  IF EXISTS (SELECT 1 FROM unnest(g_kind, g_part, g_key, g_ver) AS q(kind, part, key, ver)
      LEFT JOIN ${t.rec} r ON r.kind = q.kind COLLATE "C" AND r.part = q.part COLLATE "C" AND r.key = q.key COLLATE "C"
      WHERE r.xmin::text IS DISTINCT FROM q.ver) THEN
    RETURN;
  END IF;
  FOR i IN 1 .. coalesce(array_length(s_kind, 1), 0) LOOP
    SELECT coalesce(array_agg(x.key ORDER BY x.key), '{}') INTO got FROM (
      SELECT r.key FROM ${t.rec} r WHERE r.kind = s_kind[i] AND r.part = s_part[i] AND (s_after[i] IS NULL OR r.key > s_after[i])
      ORDER BY r.key LIMIT s_limit[i]) x;
    IF got IS DISTINCT FROM coalesce(s_keys[off + 1 : off + s_count[i]], '{}') THEN
      RETURN;
    END IF;
    off := off + s_count[i];
  END LOOP;
  IF e_ops IS NOT NULL THEN
    SELECT r.value INTO r_info FROM ${t.rec} r WHERE r.kind = '${DEMOTION_ADDRESS.kind}' AND r.part = '${DEMOTION_ADDRESS.part}' AND r.key = '${DEMOTION_ADDRESS.key}';
    IF r_info IS NOT NULL THEN
      r_status := 2;
      RETURN;
    END IF;
  END IF;
  IF coalesce(array_length(p_kind, 1), 0) > 0 THEN
    INSERT INTO ${t.rec} (kind, part, key, value) SELECT * FROM unnest(p_kind, p_part, p_key, p_val)
      ON CONFLICT (kind, part, key) DO UPDATE SET value = EXCLUDED.value;
  END IF;
  IF coalesce(array_length(d_kind, 1), 0) > 0 THEN
    DELETE FROM ${t.rec} r USING unnest(d_kind, d_part, d_key) AS x(kind, part, key)
      WHERE r.kind = x.kind AND r.part = x.part AND r.key = x.key;
  END IF;
  IF e_ops IS NOT NULL THEN
    UPDATE ${t.logstate} SET last = last + 1 WHERE id = 0 RETURNING last INTO r_seq;
    INSERT INTO ${t.log} (seq, time, ops) VALUES (r_seq, e_time, e_ops);
  END IF;
  r_status := 1;
END
$fn$`;
}
