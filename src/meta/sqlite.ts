/**
 * The embedded SQLite engine (better-sqlite3 12.x, WAL). Records live in one table keyed by
 * (kind, part, key); the changelog in another.
 *
 * Concurrency: better-sqlite3 is synchronous and one connection serves the whole process. A write
 * transaction takes an in-process mutex and `BEGIN IMMEDIATE` (the cross-process write lock), reads through
 * the connection, and buffers its writes in memory; the writes and the changelog entry are applied
 * synchronously just before COMMIT. So no other statement of this process ever sees a half-applied
 * transaction, and readers need neither the mutex nor a transaction of their own.
 *
 * Durability: synchronous=NORMAL in WAL mode survives a process crash at every commit; a power loss may
 * drop the last commits (fsync of the WAL happens at checkpoints). See the note in README.
 */

import { realpathSync } from 'node:fs';
import Database from 'better-sqlite3';
import type { Database as Db, Statement } from 'better-sqlite3';
import { UNLOGGED_KINDS, type Json, type Kind, type LogBounds, type LogEntry, type LogOp, type ScanOptions } from './engine.js';
import { checkNextSeq, Demoted, EngineCore, type CoreOptions, type NewEntry, type Reader, type ReplayEntry, type WriteAttempt } from './core.js';
import { Mutex } from '../util/mutex.js';
import { DEMOTION_ADDRESS, type DemotionRec } from './epoch.js';
import { UsageError } from '../errors.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS rec (
  kind TEXT NOT NULL, part TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
  PRIMARY KEY (kind, part, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, time INTEGER NOT NULL, ops TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS logstate (id INTEGER PRIMARY KEY CHECK (id = 0), last INTEGER NOT NULL, floor INTEGER NOT NULL);
INSERT OR IGNORE INTO logstate (id, last, floor) VALUES (0, 0, 0);
`;

/**
 * One write mutex per database file in this process, shared by every engine opened on it. With a mutex per
 * engine, a second engine's BEGIN IMMEDIATE would block the event loop (busy_timeout) while the first engine's
 * transaction awaits its function on that same loop: a deadlock ending in SQLITE_BUSY.
 */
const fileMutexes = new Map<string, Mutex>();

export interface SqliteOptions extends CoreOptions {
  /** Create the database file if it does not exist (format). Otherwise a missing file is an error. */
  create?: boolean;
}

/** better-sqlite3 never conflicts (the write lock is taken up front), so one attempt; no backoff is used. */
const ATTEMPTS_MAX = 1;

export class SqliteEngine extends EngineCore {
  readonly description: string;
  private readonly db: Db;
  private readonly st: {
    get: Statement<[string, string, string], { value: string }>;
    put: Statement<[string, string, string, string]>;
    del: Statement<[string, string, string]>;
    scan: Statement<[string, string, string, number], { key: string; value: string }>;
    scanAll: Statement<[string, string, number], { key: string; value: string }>;
    logState: Statement<[], { last: number; floor: number }>;
    fence: Statement<[string, string, string], { demoted: string | null; last: number }>;
    logInsert: Statement<[number, number, string]>;
    logSetLast: Statement<[number]>;
    logRead: Statement<[number, number], { seq: number; time: number; ops: string }>;
    // Prepared: exec() parses its SQL on every call, a measurable part of a small transaction.
    begin: Statement<[]>;
    commit: Statement<[]>;
    rollback: Statement<[]>;
  };
  /** Reads of the connection: committed state, or inside BEGIN IMMEDIATE the writer's own (no writes are applied before commit). */
  private readonly reader: Reader;

  readonly path: string;

  constructor(path: string, options: SqliteOptions = {}) {
    const db = new Database(path, { fileMustExist: !options.create });
    if (!options.create && db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'rec'").get() === undefined) {
      // Someone else's database (or an empty file): change nothing in it, not even the journal mode.
      db.close();
      throw new UsageError(`${path} is not a Ferry metadata database (run "ferry format" to create a volume)`);
    }
    const file = path === ':memory:' || path === '' ? undefined : realpathSync(path);
    let mutex = file === undefined ? undefined : fileMutexes.get(file);
    if (mutex === undefined) {
      mutex = new Mutex();
      if (file !== undefined) fileMutexes.set(file, mutex);
    }
    super({ attemptsMax: ATTEMPTS_MAX, backoff: { baseMs: 0, capMs: 0 }, serialize: 'always', lock: mutex }, options);
    this.path = path;
    this.description = `sqlite://${path}`;
    this.db = db;
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 10000');
    // The schema statements write (INSERT OR IGNORE takes the write lock even when it inserts nothing): on a
    // database that has them all, skip them, or an engine opened while another engine of this process holds
    // its transaction open across an await would block the event loop in busy_timeout and fail SQLITE_BUSY.
    const tables = db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name IN ('rec', 'log', 'logstate')").get() as { n: number };
    if (tables.n !== 3 || db.prepare('SELECT 1 FROM logstate WHERE id = 0').get() === undefined) this.db.exec(SCHEMA);
    this.st = {
      get: this.db.prepare('SELECT value FROM rec WHERE kind = ? AND part = ? AND key = ?'),
      put: this.db.prepare('INSERT OR REPLACE INTO rec (kind, part, key, value) VALUES (?, ?, ?, ?)'),
      del: this.db.prepare('DELETE FROM rec WHERE kind = ? AND part = ? AND key = ?'),
      scan: this.db.prepare('SELECT key, value FROM rec WHERE kind = ? AND part = ? AND key > ? ORDER BY key LIMIT ?'),
      // Without `after` the empty key is included (`key > ''` would skip it).
      scanAll: this.db.prepare('SELECT key, value FROM rec WHERE kind = ? AND part = ? ORDER BY key LIMIT ?'),
      logState: this.db.prepare('SELECT last, floor FROM logstate WHERE id = 0'),
      // A logging commit's fence (the demotion record) and the changelog's last seq, in one statement.
      fence: this.db.prepare('SELECT (SELECT value FROM rec WHERE kind = ? AND part = ? AND key = ?) AS demoted, last FROM logstate WHERE id = 0'),
      logInsert: this.db.prepare('INSERT INTO log (seq, time, ops) VALUES (?, ?, ?)'),
      logSetLast: this.db.prepare('UPDATE logstate SET last = ? WHERE id = 0'),
      logRead: this.db.prepare('SELECT seq, time, ops FROM log WHERE seq > ? ORDER BY seq LIMIT ?'),
      begin: this.db.prepare('BEGIN IMMEDIATE'),
      commit: this.db.prepare('COMMIT'),
      rollback: this.db.prepare('ROLLBACK'),
    };
    this.reader = {
      get: (kind, part, key) => Promise.resolve(this.readGet(kind, part, key)),
      scan: (kind, part, opts, extra) => Promise.resolve(this.readScan(kind, part, opts, extra)),
    };
  }

  private readGet(kind: Kind, part: string, key: string): Json | undefined {
    this.wire.more(1);
    const row = this.st.get.get(kind, part, key);
    return row === undefined ? undefined : (JSON.parse(row.value) as Json);
  }

  private readScan(kind: Kind, part: string, options: ScanOptions | undefined, extra: number): Array<[string, Json]> {
    const limit = options?.limit === undefined ? -1 : options.limit + extra;
    this.wire.more(1);
    const rows = options?.after === undefined ? this.st.scanAll.all(kind, part, limit) : this.st.scan.all(kind, part, options.after, limit);
    return rows.map((r) => [r.key, JSON.parse(r.value) as Json]);
  }

  // ---------------------------------------------------------------- transactions

  protected readReader(): Reader {
    return this.reader;
  }

  /** Under the file's mutex (policy 'always'): BEGIN IMMEDIATE, reads, and at commit the writes applied synchronously. */
  protected beginWrite(): Promise<WriteAttempt> {
    this.st.begin.run();
    this.wire.more(1);
    return Promise.resolve({
      reader: this.reader,
      failed: () => Promise.resolve(undefined),
      commit: (writes, entry) => {
        let last = 0;
        if (entry !== undefined) {
          // Read under the write lock (BEGIN IMMEDIATE): neither can change before COMMIT.
          this.wire.more(1);
          const row = this.st.fence.get(DEMOTION_ADDRESS.kind, DEMOTION_ADDRESS.part, DEMOTION_ADDRESS.key);
          if (row === undefined) throw new Error('assertion failed: logstate row');
          if (row.demoted !== null) return Promise.resolve(new Demoted(JSON.parse(row.demoted) as DemotionRec));
          last = row.last;
        }
        const seq = this.applyWrites(writes, entry, last);
        this.st.commit.run();
        this.wire.more(1);
        return Promise.resolve(seq);
      },
      end: () => {
        if (this.db.inTransaction) this.st.rollback.run();
      },
    });
  }

  /** Writes ops and appends `entry` under the seq after `last` (none: no entry); returns that seq. */
  private applyWrites(ops: readonly LogOp[], entry: NewEntry | undefined, last: number): number | undefined {
    this.wire.more(ops.length + (entry === undefined ? 0 : 2));
    for (const [kind, part, key, value] of ops) {
      if (value === null) this.st.del.run(kind, part, key);
      else this.st.put.run(kind, part, key, JSON.stringify(value));
    }
    if (entry === undefined) return undefined;
    const seq = last + 1;
    this.st.logInsert.run(seq, entry.time, entry.opsJson);
    this.st.logSetLast.run(seq);
    return seq;
  }

  private state(): LogBounds {
    const state = this.st.logState.get();
    if (state === undefined) throw new Error('assertion failed: logstate row');
    return state;
  }

  /**
   * The database stayed locked by another process past busy_timeout: nothing was done (BEGIN IMMEDIATE
   * failed) and a later attempt may succeed, like a server that did not answer.
   */
  protected override isConnectionError(err: unknown): boolean {
    return (err as { code?: unknown } | null)?.code === 'SQLITE_BUSY';
  }

  // ---------------------------------------------------------------- changelog

  protected doLogBounds(): Promise<LogBounds> {
    return Promise.resolve(this.state());
  }

  protected doReadLog(after: number, limit: number): Promise<{ floor: number; entries: LogEntry[] }> {
    const { floor } = this.state();
    if (after < floor) return Promise.resolve({ floor, entries: [] });
    const entries = this.st.logRead.all(after, limit).map((r) => ({ seq: r.seq, time: r.time, ops: JSON.parse(r.ops) as LogOp[] }));
    return Promise.resolve({ floor, entries });
  }

  protected doTrimLog(upTo: number): Promise<void> {
    return this.exclusive(() => {
      const state = this.state();
      const to = Math.min(upTo, state.last);
      if (to <= state.floor) return;
      this.db.prepare('DELETE FROM log WHERE seq <= ?').run(to);
      this.db.prepare('UPDATE logstate SET floor = ? WHERE id = 0').run(to);
    });
  }

  protected doApplyLog(entries: ReplayEntry[]): Promise<void> {
    return this.exclusive(() => {
      checkNextSeq(this.state().last, entries[0]!.seq);
      for (const e of entries) {
        for (const [kind, part, key, value] of e.ops) {
          if (value === null) this.st.del.run(kind, part, key);
          else this.st.put.run(kind, part, key, JSON.stringify(value));
        }
        this.st.logInsert.run(e.seq, e.time, e.opsJson);
      }
      this.st.logSetLast.run(entries[entries.length - 1]!.seq);
    });
  }

  /** body in one IMMEDIATE transaction, under the file's writer gate. */
  private exclusive(body: () => void): Promise<void> {
    return this.retrying(() => {
      this.db.transaction(body).immediate();
      return Promise.resolve();
    });
  }

  // ---------------------------------------------------------------- snapshots

  protected async doSnapshot(onRecord: (op: LogOp) => Promise<void> | void): Promise<{ seq: number }> {
    // A second connection gives a stable WAL snapshot while this one keeps committing.
    const ro = new Database(this.path, { readonly: true, fileMustExist: true });
    try {
      ro.exec('BEGIN');
      const seq = (ro.prepare('SELECT last FROM logstate WHERE id = 0').get() as { last: number }).last;
      const rows = ro.prepare('SELECT kind, part, key, value FROM rec ORDER BY kind, part, key').iterate() as IterableIterator<{
        kind: Kind;
        part: string;
        key: string;
        value: string;
      }>;
      for (const r of rows) {
        if (UNLOGGED_KINDS.has(r.kind)) continue;
        const p = onRecord([r.kind, r.part, r.key, JSON.parse(r.value) as Json]);
        if (p !== undefined) await p;
      }
      ro.exec('COMMIT');
      return { seq };
    } finally {
      ro.close();
    }
  }

  protected doRestore(records: AsyncIterable<LogOp>, seq: number): Promise<void> {
    // Not `exclusive`: the records arrive asynchronously, inside the transaction.
    return this.retrying(async () => {
      this.db.exec('BEGIN IMMEDIATE');
      try {
        this.db.exec('DELETE FROM rec; DELETE FROM log;');
        for await (const [kind, part, key, value] of records) {
          if (value !== null) this.st.put.run(kind, part, key, JSON.stringify(value));
        }
        this.db.prepare('UPDATE logstate SET last = ?, floor = ? WHERE id = 0').run(seq, seq);
        this.db.exec('COMMIT');
      } catch (err) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw err;
      }
    });
  }

  protected doReset(): Promise<void> {
    return this.exclusive(() => {
      this.db.exec('DELETE FROM rec; DELETE FROM log; UPDATE logstate SET last = 0, floor = 0 WHERE id = 0;');
    });
  }

  protected doClose(): Promise<void> {
    this.db.close();
    return Promise.resolve();
  }
}
