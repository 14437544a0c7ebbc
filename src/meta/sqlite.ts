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
import {
  LogTrimmedError,
  UNLOGGED_KINDS,
  type Json,
  type Kind,
  type LogEntry,
  type LogOp,
  type MetaEngine,
  type ScanOptions,
  type Txn,
  type TxnOptions,
} from './engine.js';
import { Mutex } from '../util/mutex.js';
import { UsageError } from '../errors.js';
import { OverlayTxn } from './overlay.js';

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

export interface SqliteOptions {
  /** Create the database file if it does not exist (format). Otherwise a missing file is an error. */
  create?: boolean;
}

export class SqliteEngine implements MetaEngine {
  readonly description: string;
  private readonly db: Db;
  private readonly mutex: Mutex;
  private closed = false;
  private readonly st: {
    get: Statement<[string, string, string], { value: string }>;
    put: Statement<[string, string, string, string]>;
    del: Statement<[string, string, string]>;
    scan: Statement<[string, string, string, number], { key: string; value: string }>;
    scanAll: Statement<[string, string, number], { key: string; value: string }>;
    logState: Statement<[], { last: number; floor: number }>;
    logInsert: Statement<[number, number, string]>;
    logSetLast: Statement<[number]>;
    logRead: Statement<[number, number], { seq: number; time: number; ops: string }>;
    // Prepared: exec() parses its SQL on every call, a measurable part of a small transaction.
    begin: Statement<[]>;
    commit: Statement<[]>;
    rollback: Statement<[]>;
  };

  readonly path: string;

  constructor(path: string, options: SqliteOptions = {}) {
    this.path = path;
    this.description = `sqlite://${path}`;
    this.db = new Database(path, { fileMustExist: !options.create });
    if (!options.create && this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'rec'").get() === undefined) {
      // Someone else's database (or an empty file): change nothing in it, not even the journal mode.
      this.db.close();
      throw new UsageError(`${path} is not a Ferry metadata database (run "ferry format" to create a volume)`);
    }
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 10000');
    this.db.exec(SCHEMA);
    const file = path === ':memory:' || path === '' ? undefined : realpathSync(path);
    let mutex = file === undefined ? undefined : fileMutexes.get(file);
    if (mutex === undefined) {
      mutex = new Mutex();
      if (file !== undefined) fileMutexes.set(file, mutex);
    }
    this.mutex = mutex;
    this.st = {
      get: this.db.prepare('SELECT value FROM rec WHERE kind = ? AND part = ? AND key = ?'),
      put: this.db.prepare('INSERT OR REPLACE INTO rec (kind, part, key, value) VALUES (?, ?, ?, ?)'),
      del: this.db.prepare('DELETE FROM rec WHERE kind = ? AND part = ? AND key = ?'),
      scan: this.db.prepare('SELECT key, value FROM rec WHERE kind = ? AND part = ? AND key > ? ORDER BY key LIMIT ?'),
      // Without `after` the empty key is included (`key > ''` would skip it).
      scanAll: this.db.prepare('SELECT key, value FROM rec WHERE kind = ? AND part = ? ORDER BY key LIMIT ?'),
      logState: this.db.prepare('SELECT last, floor FROM logstate WHERE id = 0'),
      logInsert: this.db.prepare('INSERT INTO log (seq, time, ops) VALUES (?, ?, ?)'),
      logSetLast: this.db.prepare('UPDATE logstate SET last = ? WHERE id = 0'),
      logRead: this.db.prepare('SELECT seq, time, ops FROM log WHERE seq > ? ORDER BY seq LIMIT ?'),
      begin: this.db.prepare('BEGIN IMMEDIATE'),
      commit: this.db.prepare('COMMIT'),
      rollback: this.db.prepare('ROLLBACK'),
    };
  }

  private readGet(kind: Kind, part: string, key: string): Json | undefined {
    const row = this.st.get.get(kind, part, key);
    return row === undefined ? undefined : (JSON.parse(row.value) as Json);
  }

  private readScan(kind: Kind, part: string, options: ScanOptions | undefined, extra: number): Array<[string, Json]> {
    const limit = options?.limit === undefined ? -1 : options.limit + extra;
    const rows = options?.after === undefined ? this.st.scanAll.all(kind, part, limit) : this.st.scan.all(kind, part, options.after, limit);
    return rows.map((r) => [r.key, JSON.parse(r.value) as Json]);
  }

  async txn<R>(fn: (tx: Txn) => Promise<R>, options?: TxnOptions): Promise<R> {
    this.checkOpen();
    const tx = new OverlayTxn(
      (kind, part, key) => Promise.resolve(this.readGet(kind, part, key)),
      (kind, part, opts, extra) => Promise.resolve(this.readScan(kind, part, opts, extra)),
    );
    if (options?.readonly) {
      const r = await fn(tx);
      if (tx.writes.size > 0) throw new Error('assertion failed: readonly transaction wrote');
      return r;
    }
    const release = await this.mutex.acquire();
    try {
      this.st.begin.run();
      try {
        const r = await fn(tx);
        this.applyOps([...tx.writes.values()], undefined);
        this.st.commit.run();
        return r;
      } catch (err) {
        if (this.db.inTransaction) this.st.rollback.run();
        throw err;
      }
    } finally {
      release();
    }
  }

  /** Writes ops and appends them to the log (as entry `entry` when replaying, else under the next seq). */
  private applyOps(ops: LogOp[], entry: LogEntry | undefined): void {
    for (const [kind, part, key, value] of ops) {
      if (value === null) this.st.del.run(kind, part, key);
      else this.st.put.run(kind, part, key, JSON.stringify(value));
    }
    const logged = entry?.ops ?? ops.filter((op) => !UNLOGGED_KINDS.has(op[0]));
    if (logged.length === 0 && entry === undefined) return;
    const state = this.st.logState.get();
    if (state === undefined) throw new Error('assertion failed: logstate row');
    const seq = state.last + 1;
    if (entry !== undefined && entry.seq !== seq) {
      throw new Error(`changelog gap: replica is at ${state.last}, next entry is ${entry.seq}`);
    }
    this.st.logInsert.run(seq, entry?.time ?? Date.now(), JSON.stringify(logged));
    this.st.logSetLast.run(seq);
  }

  lastSeq(): Promise<number> {
    this.checkOpen();
    return Promise.resolve(this.st.logState.get()?.last ?? 0);
  }

  logFloor(): Promise<number> {
    this.checkOpen();
    return Promise.resolve(this.st.logState.get()?.floor ?? 0);
  }

  readLog(after: number, limit: number): Promise<LogEntry[]> {
    this.checkOpen();
    const floor = this.st.logState.get()?.floor ?? 0;
    if (after < floor) return Promise.reject(new LogTrimmedError(after, floor));
    return Promise.resolve(
      this.st.logRead.all(after, limit).map((r) => ({ seq: r.seq, time: r.time, ops: JSON.parse(r.ops) as LogOp[] })),
    );
  }

  async trimLog(upTo: number): Promise<void> {
    this.checkOpen();
    const release = await this.mutex.acquire();
    try {
      this.db.transaction(() => {
        const state = this.st.logState.get();
        if (state === undefined) return;
        const to = Math.min(upTo, state.last);
        if (to <= state.floor) return;
        this.db.prepare('DELETE FROM log WHERE seq <= ?').run(to);
        this.db.prepare('UPDATE logstate SET floor = ? WHERE id = 0').run(to);
      }).immediate();
    } finally {
      release();
    }
  }

  async applyLog(entries: LogEntry[]): Promise<void> {
    this.checkOpen();
    const release = await this.mutex.acquire();
    try {
      this.db.transaction(() => {
        for (const e of entries) this.applyOps(e.ops, e);
      }).immediate();
    } finally {
      release();
    }
  }

  async snapshot(onRecord: (op: LogOp) => Promise<void> | void): Promise<{ seq: number }> {
    this.checkOpen();
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

  async restore(records: AsyncIterable<LogOp>, seq: number): Promise<void> {
    this.checkOpen();
    const release = await this.mutex.acquire();
    try {
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
    } finally {
      release();
    }
  }

  async reset(): Promise<void> {
    this.checkOpen();
    const release = await this.mutex.acquire();
    try {
      this.db.transaction(() => {
        this.db.exec('DELETE FROM rec; DELETE FROM log; UPDATE logstate SET last = 0, floor = 0 WHERE id = 0;');
      }).immediate();
    } finally {
      release();
    }
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.db.close();
    }
    return Promise.resolve();
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('metadata engine is closed');
  }
}
