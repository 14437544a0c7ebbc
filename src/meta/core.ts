/**
 * EngineCore: everything the metadata engines share, once. An engine (sqlite.ts, redis.ts, postgres.ts)
 * extends it and supplies primitives only: reads of its committed state, one attempt of a writing
 * transaction (reads, then a commit of the writes plus at most one log entry), and its own log, snapshot
 * and restore storage. What the contract promises beyond those — OverlayTxn, the readonly assertion, which
 * writes are logged and how an entry is encoded, applyLog's gap checks, the retry loop with its backoff and
 * writer gate, consumers, trimming — is here, so the engines cannot drift apart.
 *
 *   commit(fn)
 *     readonly ──▶ OverlayTxn(readReader()) ── fn ── assert no writes ──▶ { value, seq: undefined }
 *     writing  ──▶ [gate] ──▶ attempt n: beginWrite() ─▶ WriteAttempt { reader, failed, commit, end }
 *                     OverlayTxn(reader) ── fn ──▶ writes ──▶ entry = logged kinds only, JSON once
 *                     ──▶ attempt.commit(writes, entry) ──▶ seq | Conflict
 *                  Conflict (or isConflict(err)) ──▶ backoff(n) ──▶ attempt n+1, at most attemptsMax
 *                  seq crossing a multiple of pruneEveryEntries ──▶ pruneLog() in the background
 *
 * The writer gate (`TxnPolicy.serialize`): 'always' — this process's writers take the engine's mutex for
 * the whole transaction, retries included (SQLite: one write lock per file anyway; PostgreSQL: writers are
 * serial volume-wide under LOCK TABLE, so waiting in the process keeps pooled connections for readers);
 * 'contention' — writers run concurrently and optimistically, and only after a first conflict retry
 * holding the mutex, while anyone holds or waits for it new writers queue there too (Redis: under
 * contention a process degrades to one writer at a time instead of starving its own transactions).
 *
 * Errors: an engine says which of its errors mean "the server is unreachable" (isConnectionError). The core
 * turns those into EngineUnavailableError with the outcome it knows from where the error arose: before the
 * attempt's commit was sent, nothing committed ('none'); during it, 'unknown'. RetryEngine retries only the
 * first kind of a writing transaction.
 *
 * Fencing (meta/epoch.ts): every commit that appends a changelog entry checks the engine's demotion record in
 * the same atomic step as its writes (no round trip of its own); one on a demoted primary writes nothing and
 * fails with EROFS naming the new primary.
 *
 * Trimming (pruneLog) keeps everything after the slowest registered consumer, within the volume's retention
 * bound (retention.ts), and drops at most LOG_PRUNE_ENTRIES_MAX entries per call. The commit or applyLog
 * whose seq crosses a multiple of LOG_PRUNE_EVERY_ENTRIES starts one in the background (after it returned,
 * one at a time per engine; every client does this for its own commits, so one in that many entries
 * volume-wide starts a prune). Clients' heartbeats, the replicator and `ferry gc` call it too.
 */

import {
  ConsumerNotFoundError,
  EngineUnavailableError,
  LogTrimmedError,
  MetaEngineBase,
  TxnConflictError,
  UNLOGGED_KINDS,
  type Commit,
  type ConsumerInfo,
  type LogBounds,
  type LogEntry,
  type LogOp,
  type PruneOptions,
  type PruneResult,
  type Txn,
  type TxnOptions,
} from './engine.js';
import { demotedError, type DemotionRec } from './epoch.js';
import { OverlayTxn, type Reader } from './overlay.js';
import { consumers as consumerRecs, type ConsumerRec } from './records.js';
import { readLogRetention } from './retention.js';
import type { Mutex } from '../util/mutex.js';
import { backoffMs, sleep, type Backoff } from '../util/sleep.js';
import { WireCounter } from './wire.js';

/** A commit or applyLog whose seq crosses a multiple of this starts a background prune. */
export const LOG_PRUNE_EVERY_ENTRIES = 1000;
/** Entries one pruneLog call drops at most (bounded work per call). */
export const LOG_PRUNE_ENTRIES_MAX = 10_000;
/** Consumer names: 1..this many characters, no NUL. */
export const CONSUMER_NAME_CHARS_MAX = 200;

export type { Reader } from './overlay.js';

/** A changelog entry about to be stored: the logged writes, and their JSON (encoded once, here). */
export interface NewEntry {
  time: number;
  ops: LogOp[];
  /** JSON text of `ops`: what engines store. */
  opsJson: string;
}

/** An entry applyLog stores under its own seq. */
export interface ReplayEntry extends NewEntry {
  seq: number;
}

/** An attempt that must run again: nothing was committed. `error`, when given, is rethrown once attempts run out. */
export class Conflict {
  readonly error: unknown;
  constructor(error?: unknown) {
    this.error = error;
  }
}

/**
 * A commit refused because the engine is a demoted primary (meta/epoch.ts): nothing was written. The core
 * answers it with EROFS naming the new primary.
 */
export class Demoted {
  readonly record: DemotionRec;
  constructor(record: DemotionRec) {
    this.record = record;
  }
}

/** One attempt of a writing transaction, as an engine runs it (beginWrite). */
export interface WriteAttempt {
  /** Reads inside this attempt (with whatever the engine needs to detect conflicts: WATCH, a snapshot). */
  readonly reader: Reader;
  /**
   * fn threw `err` (not a conflict the engine classifies by its code): a Conflict when its reads were
   * inconsistent and fn must run again, undefined when the error is fn's answer. Nothing is committed either way.
   */
  failed(err: unknown): Promise<Conflict | undefined>;
  /**
   * Commits every write (logged kinds or not) and `entry` (undefined: append none) atomically: the entry's
   * seq (undefined without one), or a Conflict when nothing was committed and the attempt must run again.
   * The fence (meta/epoch.ts) is the engine's, inside the same atomic step: with an entry to append and the
   * demotion record set in the committed state, nothing is written and the answer is Demoted.
   */
  commit(writes: LogOp[], entry: NewEntry | undefined): Promise<number | undefined | Conflict | Demoted>;
  /** Called once when the attempt is over, committed or not (roll back, release the connection). Must not throw. */
  end(committed: boolean): Promise<void> | void;
}

export interface TxnPolicy {
  /** Attempts of one writing transaction (conflicts) before it fails. */
  attemptsMax: number;
  /** Between attempts (util/sleep.ts's rule). */
  backoff: Backoff;
  /** See the file comment. */
  serialize: 'always' | 'contention';
  /** The mutex of the writer gate. */
  lock: Mutex;
}

export interface CoreOptions {
  /** A background prune every this many seqs (0: none; the default LOG_PRUNE_EVERY_ENTRIES). */
  pruneEveryEntries?: number | undefined;
}

export interface EngineCoreStats {
  /** Writing transactions committed. */
  commits: number;
  /** Attempts lost to a conflict (and run again, or failed at attemptsMax). */
  conflicts: number;
  /** Background prunes that trimmed something, and those that failed. */
  prunes: number;
  pruneFailures: number;
}

export abstract class EngineCore extends MetaEngineBase {
  readonly stats: EngineCoreStats = { commits: 0, conflicts: 0, prunes: 0, pruneFailures: 0 };
  /** What this engine sent to its server (meta/wire.ts): each engine counts on its driver. */
  readonly wire = new WireCounter();
  private readonly policy: TxnPolicy;
  private readonly pruneEveryEntries: number;
  private gateUsers = 0;
  private closed = false;
  private closing: Promise<void> | undefined;
  /** The background prune in flight, if any. */
  private pruning: Promise<void> | undefined;

  protected constructor(policy: TxnPolicy, options: CoreOptions = {}) {
    super();
    if (!Number.isSafeInteger(policy.attemptsMax) || policy.attemptsMax < 1) throw new RangeError(`attemptsMax must be an integer >= 1, got ${policy.attemptsMax}`);
    this.policy = policy;
    const every = options.pruneEveryEntries ?? LOG_PRUNE_EVERY_ENTRIES;
    if (!Number.isSafeInteger(every) || every < 0) throw new RangeError(`pruneEveryEntries must be an integer >= 0, got ${every}`);
    this.pruneEveryEntries = every;
  }

  // ---------------------------------------------------------------- primitives (per engine)

  /** Reads of the committed state for readonly transactions: latest commit per read, no locks. */
  protected abstract readReader(): Reader;
  /**
   * Starts attempt n (from 1) of a writing transaction (under the gate when the policy says so). An engine
   * may run a retry differently from a first attempt (PostgreSQL: under the commit lock, so that it cannot
   * lose again).
   */
  protected abstract beginWrite(n: number): Promise<WriteAttempt>;
  /** An error that means "run the attempt again" (a serialization failure): Conflict, whatever threw it. */
  protected isConflict(_err: unknown): boolean {
    return false;
  }
  /** An error that means the server could not be reached or stopped answering (see the file comment). */
  protected isConnectionError(_err: unknown): boolean {
    return false;
  }
  protected abstract doLogBounds(): Promise<LogBounds>;
  /** The floor and the entries after `after` (at most limit), read together; no entries when after < floor. */
  protected abstract doReadLog(after: number, limit: number): Promise<{ floor: number; entries: LogEntry[] }>;
  /** Drops entries <= min(upTo, last) and sets the floor there; never lowers the floor. */
  protected abstract doTrimLog(upTo: number): Promise<void>;
  /**
   * Applies and appends consecutive entries in one transaction, after checking (inside it) that the first
   * follows this engine's last: `checkNextSeq(last, entries[0].seq)`.
   */
  protected abstract doApplyLog(entries: ReplayEntry[]): Promise<void>;
  protected abstract doSnapshot(onRecord: (op: LogOp) => Promise<void> | void): Promise<{ seq: number }>;
  protected abstract doRestore(records: AsyncIterable<LogOp>, seq: number): Promise<void>;
  protected abstract doReset(): Promise<void>;
  /** Releases connections and files; called once, after background work ended. */
  protected abstract doClose(): Promise<void>;

  // ---------------------------------------------------------------- transactions

  async commit<R>(fn: (tx: Txn) => Promise<R>, options?: TxnOptions): Promise<Commit<R>> {
    this.checkOpen();
    if (options?.readonly === true) {
      const tx = new OverlayTxn(this.readReader());
      let value: R;
      try {
        value = await fn(tx);
      } catch (err) {
        throw this.unavailable(err, 'none', 'a read');
      }
      if (tx.writes.size > 0) throw new Error('assertion failed: readonly transaction wrote');
      return { value, seq: undefined };
    }
    const done = await this.retrying((n) => this.attempt(fn, n));
    this.stats.commits++;
    if (done.seq !== undefined) this.logged(done.seq, done.seq);
    return done;
  }

  private async attempt<R>(fn: (tx: Txn) => Promise<R>, n: number): Promise<Commit<R> | Conflict> {
    let a: WriteAttempt;
    try {
      a = await this.beginWrite(n);
    } catch (err) {
      if (this.isConflict(err)) return new Conflict(err);
      throw this.unavailable(err, 'none', 'a transaction');
    }
    let committing = false;
    let committed = false;
    try {
      const tx = new OverlayTxn(a.reader);
      let value: R;
      try {
        value = await fn(tx);
      } catch (err) {
        if (this.isConflict(err)) return new Conflict(err);
        const conflict = await a.failed(err);
        if (conflict !== undefined) return conflict;
        throw err;
      }
      const writes = [...tx.writes.values()];
      const entry = newEntry(writes);
      committing = true;
      const seq = await a.commit(writes, entry);
      if (seq instanceof Conflict) return seq;
      if (seq instanceof Demoted) {
        committing = false; // nothing was written
        throw demotedError(seq.record);
      }
      committed = true;
      return { value, seq };
    } catch (err) {
      if (this.isConflict(err)) return new Conflict(err);
      throw this.unavailable(err, committing ? 'unknown' : 'none', 'a transaction');
    } finally {
      await a.end(committed);
    }
  }

  /**
   * The one retry loop of the engines: runs `attempt` until it returns something other than a Conflict, under
   * the writer gate of the policy, with jittered exponential backoff between attempts. When attempts run
   * out, the last conflict's error (or TxnConflictError) is thrown. Engines use it for their own
   * whole-volume transactions too (applyLog, restore, trimming).
   */
  protected async retrying<T>(attempt: (n: number) => Promise<T | Conflict>): Promise<T> {
    const p = this.policy;
    let release = p.serialize === 'always' || this.gateUsers > 0 ? await this.enterGate() : undefined;
    try {
      for (let n = 1; ; n++) {
        this.checkOpen();
        const r = await attempt(n);
        if (!(r instanceof Conflict)) return r;
        this.stats.conflicts++;
        if (n >= p.attemptsMax) throw r.error ?? new TxnConflictError(n);
        release ??= await this.enterGate();
        await sleep(backoffMs(n, p.backoff));
      }
    } finally {
      if (release !== undefined) {
        this.gateUsers--;
        release();
      }
    }
  }

  private async enterGate(): Promise<() => void> {
    this.gateUsers++;
    try {
      return await this.policy.lock.acquire();
    } catch (err) {
      this.gateUsers--;
      throw err;
    }
  }

  /** A connection error as EngineUnavailableError with the outcome the caller may assume; others as they are. */
  protected unavailable(err: unknown, outcome: 'none' | 'unknown', what: string): unknown {
    if (err instanceof EngineUnavailableError || !this.isConnectionError(err)) return err;
    const why = err instanceof Error ? err.message : String(err);
    return new EngineUnavailableError(`${this.description}: ${what} failed, the engine did not answer (${why})`, outcome, { cause: err });
  }

  /** Runs a call that is not a transaction, turning connection errors into EngineUnavailableError. */
  protected async guard<T>(outcome: 'none' | 'unknown', what: string, call: () => Promise<T>): Promise<T> {
    this.checkOpen();
    try {
      return await call();
    } catch (err) {
      throw this.unavailable(err, outcome, what);
    }
  }

  protected checkOpen(): void {
    if (this.closed) throw new Error('metadata engine is closed');
  }

  // ---------------------------------------------------------------- changelog

  async logBounds(): Promise<LogBounds> {
    return this.guard('none', 'logBounds', () => this.doLogBounds());
  }

  async lastSeq(): Promise<number> {
    return (await this.logBounds()).last;
  }

  async logFloor(): Promise<number> {
    return (await this.logBounds()).floor;
  }

  async readLog(after: number, limit: number): Promise<LogEntry[]> {
    if (!Number.isSafeInteger(after) || after < 0 || !Number.isSafeInteger(limit) || limit < 0) throw new Error(`assertion failed: readLog(${after}, ${limit})`);
    const { floor, entries } = await this.guard('none', 'readLog', () => this.doReadLog(after, limit));
    if (after < floor) throw new LogTrimmedError(after, floor);
    return entries;
  }

  async trimLog(upTo: number): Promise<void> {
    if (!Number.isSafeInteger(upTo)) throw new Error(`assertion failed: trimLog(${upTo})`);
    await this.guard('unknown', 'trimLog', () => this.doTrimLog(upTo));
  }

  async applyLog(entries: LogEntry[]): Promise<void> {
    this.checkOpen();
    if (entries.length === 0) return;
    const replay: ReplayEntry[] = entries.map((e, i) => {
      if (!Number.isSafeInteger(e.seq) || e.seq < 1 || !Number.isSafeInteger(e.time)) throw new Error(`assertion failed: log entry seq ${e.seq} time ${e.time}`);
      if (i > 0 && e.seq !== entries[i - 1]!.seq + 1) throw new Error(`changelog gap: entry ${entries[i - 1]!.seq} is followed by ${e.seq}`);
      return { seq: e.seq, time: e.time, ops: e.ops, opsJson: JSON.stringify(e.ops) };
    });
    await this.guard('unknown', 'applyLog', () => this.doApplyLog(replay));
    this.logged(replay[0]!.seq, replay[replay.length - 1]!.seq);
  }

  async snapshot(onRecord: (op: LogOp) => Promise<void> | void): Promise<{ seq: number }> {
    return this.guard('none', 'snapshot', () => this.doSnapshot(onRecord));
  }

  async restore(records: AsyncIterable<LogOp>, seq: number): Promise<void> {
    if (!Number.isSafeInteger(seq) || seq < 0) throw new Error(`assertion failed: restore at seq ${seq}`);
    await this.guard('unknown', 'restore', () => this.doRestore(records, seq));
  }

  async reset(): Promise<void> {
    await this.guard('unknown', 'reset', () => this.doReset());
  }

  // ---------------------------------------------------------------- consumers and trimming

  async registerConsumer(name: string, position: number): Promise<void> {
    checkConsumer(name, position);
    await this.txn(async (tx) => {
      const now = Date.now();
      consumerRecs.put(tx, name, { position, registered: now, updated: now });
      await Promise.resolve();
    });
  }

  async advanceConsumer(name: string, position: number): Promise<void> {
    checkConsumer(name, position);
    await this.txn(async (tx) => {
      if (!(await putConsumerPosition(tx, name, position, false))) throw new ConsumerNotFoundError(name);
    });
  }

  async listConsumers(): Promise<ConsumerInfo[]> {
    const rows = await this.txn((tx) => consumerRecs.scan(tx), { readonly: true });
    return rows.map(([name, c]) => ({ name, position: c.position, registered: c.registered, updated: c.updated }));
  }

  async removeConsumer(name: string): Promise<boolean> {
    checkConsumer(name, 0);
    return this.txn(async (tx) => {
      const had = (await consumerRecs.get(tx, name)) !== undefined;
      if (had) consumerRecs.del(tx, name);
      return had;
    });
  }

  async pruneLog(options: PruneOptions = {}): Promise<PruneResult> {
    const now = options.now ?? Date.now();
    const entriesMax = options.entriesMax ?? LOG_PRUNE_ENTRIES_MAX;
    if (!Number.isSafeInteger(entriesMax) || entriesMax < 1) throw new RangeError(`entriesMax must be an integer >= 1, got ${entriesMax}`);
    const { floor, last } = await this.logBounds();
    const nothing: PruneResult = { floor, last, trimmed: 0, more: false };
    if (last <= floor) return nothing;
    const [consumers, retention] = await this.txn(async (tx) => [await consumerRecs.scan(tx), await readLogRetention(tx)] as const, { readonly: true });
    // Everything after the slowest consumer is kept (everything may go without one)...
    let want = consumers.length === 0 ? last : Math.min(...consumers.map(([, c]) => c.position));
    // ...within the retention bound, whatever consumers need.
    want = Math.max(want, last - retention.entriesMax);
    const cap = Math.min(last, floor + entriesMax);
    if (want < cap) want = Math.max(want, await this.agedThrough(floor, cap, now - retention.ageMsMax));
    const target = Math.min(want, cap);
    if (target <= floor) return nothing;
    await this.trimLog(target);
    return { floor: target, last, trimmed: target - floor, more: want > cap };
  }

  /**
   * The newest seq in (floor, hi] committed before `cutoff` (floor when none), by bisection: entries are
   * appended in commit order, so their times ascend (up to clock skew between clients, which only moves the
   * cut by that much). At most ~log2(hi - floor) + 2 single-entry reads, and one when nothing is that old.
   */
  private async agedThrough(floor: number, hi: number, cutoff: number): Promise<number> {
    const timeAt = async (seq: number): Promise<number | undefined> => {
      try {
        return (await this.readLog(seq - 1, 1))[0]?.time;
      } catch (err) {
        if (err instanceof LogTrimmedError) return undefined; // trimmed meanwhile by another client
        throw err;
      }
    };
    const first = await timeAt(floor + 1);
    if (first === undefined || first >= cutoff) return floor;
    const top = await timeAt(hi);
    if (top === undefined) return floor;
    if (top < cutoff) return hi;
    let lo = floor + 1; // time < cutoff
    let up = hi; // time >= cutoff
    while (up - lo > 1) {
      const mid = Math.floor((lo + up) / 2);
      const t = await timeAt(mid);
      if (t === undefined) return floor;
      if (t < cutoff) lo = mid;
      else up = mid;
    }
    return lo;
  }

  /** After entries first..last were appended: a prune in the background when they crossed a multiple. */
  private logged(first: number, last: number): void {
    const every = this.pruneEveryEntries;
    if (every === 0 || this.pruning !== undefined || this.closed) return;
    if (Math.floor(last / every) === Math.floor((first - 1) / every)) return;
    // After the caller's transaction returned, never inside it. A microtask rather than setImmediate: a
    // client committing back to back on SQLite never yields to the event loop's later phases.
    this.pruning = Promise.resolve()
      .then(async () => {
        if (this.closed) return;
        const r = await this.pruneLog();
        if (r.trimmed > 0) this.stats.prunes++;
      })
      .catch((err: unknown) => {
        if (this.closed) return;
        this.stats.pruneFailures++;
        process.emitWarning(`ferry: trimming the changelog of ${this.description} failed (the next prune retries): ${String(err)}`);
      })
      .finally(() => {
        this.pruning = undefined;
      });
  }

  // ---------------------------------------------------------------- lifecycle

  close(): Promise<void> {
    this.closed = true;
    this.closing ??= (async () => {
      await this.pruning;
      await this.doClose();
    })();
    return this.closing;
  }
}

/** The logged part of a transaction's writes as an entry, or undefined when nothing of it is logged. */
export function newEntry(writes: readonly LogOp[], time = Date.now()): NewEntry | undefined {
  let ops: LogOp[] | undefined;
  for (const op of writes) if (!UNLOGGED_KINDS.has(op[0])) (ops ??= []).push(op);
  return ops === undefined ? undefined : { time, ops, opsJson: JSON.stringify(ops) };
}

/** Socket error codes that mean a server could not be reached or the connection broke (engines' isConnectionError). */
const SOCKET_ERROR_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'ENOTFOUND', 'EAI_AGAIN']);

/** The error's `code` when it is a string (driver errors carry socket codes and SQLSTATEs there). */
export function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export function isSocketError(err: unknown): boolean {
  const code = errorCode(err);
  return code !== undefined && SOCKET_ERROR_CODES.has(code);
}

/** For an engine's applyLog, inside its transaction: the first entry must follow the engine's newest. */
export function checkNextSeq(last: number, first: number): void {
  if (first !== last + 1) throw new Error(`changelog gap: this engine is at ${last}, the next entry given is ${first}`);
}

function checkConsumer(name: string, position: number): void {
  if (typeof name !== 'string' || name.length === 0 || name.length > CONSUMER_NAME_CHARS_MAX || name.includes('\0')) {
    throw new RangeError(`consumer name must be 1-${CONSUMER_NAME_CHARS_MAX} characters without NUL, got ${JSON.stringify(name)}`);
  }
  if (!Number.isSafeInteger(position) || position < 0) throw new RangeError(`consumer position must be an integer >= 0, got ${position}`);
}

/**
 * Sets consumer `name`'s position inside a caller's transaction (a consumer that stores its own progress
 * with it, as the replicator does with its checkpoint). With `create`, registers it when missing. False
 * when it is missing and not created.
 */
export async function putConsumerPosition(tx: Txn, name: string, position: number, create: boolean): Promise<boolean> {
  checkConsumer(name, position);
  const rec = await consumerRecs.get(tx, name);
  if (rec === undefined && !create) return false;
  const now = Date.now();
  consumerRecs.put(tx, name, { position, registered: rec?.registered ?? now, updated: now } satisfies ConsumerRec);
  return true;
}
