/**
 * The MetaEngine contract: a small transactional record store with a changelog. Every engine (SQLite, Redis,
 * PostgreSQL) implements only this, through the shared core (meta/core.ts); all POSIX rules live once above
 * it in meta/meta.ts, so engines cannot drift apart. Wrappers (retry.ts, faults.ts) implement it too.
 *
 * Records are addressed by (kind, part, key): `kind` is one of the fixed record kinds below, `part` groups
 * records that are scanned together (a directory's entries, an inode's chunks), `key` names one record in its
 * part. Values are plain JSON values. Scans return one part's records in ascending key order (bytewise).
 * Parts and keys never contain NUL (PostgreSQL text cannot hold it); callers validate names before they
 * become keys.
 *
 *   kind       part         key          value
 *   setting    ''           name         the format record and other volume settings
 *   counter    ''           name         number (next inode, next slice, used space, ...)
 *   inode      ''           ino          InodeRec
 *   entry      parent ino   name         EntryRec
 *   chunk      ino          chunk index  SliceRec[]
 *   xattr      ino          name         base64 value
 *   slice      ''           slice id     SliceRefRec (size and reference count)
 *   delslice   ''           slice id     DelSliceRec (released; objects deleted after the grace period)
 *   usage      sid          seq          [bytes, inodes]: a usage change of one of that session's transactions,
 *                                        not yet added to the counters (merged in the background; logged, so a
 *                                        snapshot holds counters and pending changes together)
 *   session    ''           sid          SessionRec            (not logged)
 *   sustained  sid          ino          1: open-but-unlinked  (not logged)
 *   lock       ino          owner        lock records          (not logged)
 *   replica    ''           name         a bucket replicator's checkpoint (not logged: it is this primary's
 *                                        progress; per-slice results are logged in `slice` records instead)
 *   consumer   ''           name         ConsumerRec: a changelog consumer's position (not logged: it is about
 *                                        this engine's own log; see registerConsumer)
 *   mirror     ''           'identity'   MirrorIdentity: this engine is a metadata replica (region/mirror.ts) — of
 *                                        which volume, serving which region (not logged: it is about this copy)
 *   member     ''           group/addr   MemberRec: a cache-group member's address, weight and heartbeat
 *                                        (meta/members.ts; not logged: live state, like sessions)
 *   egress     ''           client id    EgressRec: bytes a client read from each bucket region (meta/egress.ts;
 *                                        not logged: live counters of this engine's clients)
 *   request    ''           client.n     RequestRec: the metadata service's record of an applied request of a
 *                                        remote client (meta/requests.ts), written in the transaction that
 *                                        applied it, so a retried request is answered, not applied twice (not
 *                                        logged: it is this primary's bookkeeping)
 *   staging    ''           staging id   StagingRec: blocks a write-back client staged on its disk and has not
 *                                        uploaded yet (meta/staging.ts; not logged: live state of a client)
 *
 * Changelog: every transaction that writes a logged kind appends one entry — the list of resulting record
 * states (value or null for deleted) — under the next sequence number, in the same transaction, and `commit`
 * answers that number. Sequence numbers are gapless and start at 1. Replaying entries in order onto an engine
 * that holds the state as of the first entry's predecessor gives the same logged records; replay is
 * idempotent because each op is a full resulting state, never a delta. The log is trimmed behind its
 * registered consumers and past the volume's retention bound (see the consumer members below).
 *
 * Engines implement only primitives (point read, scan, commit of writes plus an optional entry, and their
 * own log, snapshot and restore storage); meta/core.ts holds everything else once: transactions over an
 * OverlayTxn, the readonly assertion, entry filtering and encoding, applyLog's gap checks, the retry loop,
 * consumers and trimming.
 */

export const KINDS = [
  'setting',
  'counter',
  'inode',
  'entry',
  'chunk',
  'xattr',
  'slice',
  'delslice',
  'usage',
  'session',
  'sustained',
  'lock',
  'replica',
  'consumer',
  'mirror',
  'member',
  'egress',
  'request',
  'staging',
] as const;
export type Kind = (typeof KINDS)[number];

/** Kinds kept out of the changelog and dumps: clients' live state, and this engine's own progress records. */
export const UNLOGGED_KINDS: ReadonlySet<Kind> = new Set<Kind>(['session', 'sustained', 'lock', 'replica', 'consumer', 'mirror', 'member', 'egress', 'request', 'staging']);

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** One record's resulting state: value null means the record is gone. */
export type LogOp = [kind: Kind, part: string, key: string, value: Json];

export interface LogEntry {
  /** Gapless, from 1. */
  seq: number;
  /** Commit time, ms since the epoch. */
  time: number;
  ops: LogOp[];
}

export interface ScanOptions {
  /** Only keys strictly greater than this. */
  after?: string | undefined;
  /** At most this many records. */
  limit?: number | undefined;
}

/**
 * A transaction. Reads see the committed state plus this transaction's own writes. Writes are applied
 * atomically when the function passed to `commit` returns; nothing is visible to others before.
 */
export interface Txn {
  /** T is the caller's view of the stored JSON value (not checked at run time). */
  get<T = Json>(kind: Kind, part: string, key: string): Promise<T | undefined>;
  /**
   * value must be JSON-serializable (plain objects, arrays, strings, finite numbers, booleans). The engine may
   * keep the object until commit and hand it back to a later `get` of the same transaction: callers must not
   * mutate a value after putting it, nor one they got (copy first).
   */
  put(kind: Kind, part: string, key: string, value: object | string | number | boolean): void;
  del(kind: Kind, part: string, key: string): void;
  scan<T = Json>(kind: Kind, part: string, options?: ScanOptions): Promise<Array<[string, T]>>;
  /**
   * Optional capability (wrappers may leave it out; see getFollowing in records.ts for the fallback): the
   * record at (kind, part, key) and, when it is an object whose `field` holds a number or a string, the record
   * at (refKind, refPart, that value as a string) — as two gets would answer them, in one round trip where
   * the engine follows the reference on its server (a directory entry and the inode it names).
   */
  getFollowing?<A = Json, B = Json>(kind: Kind, part: string, key: string, field: string, refKind: Kind, refPart: string): Promise<[A | undefined, B | undefined]>;
}

export interface TxnOptions {
  /**
   * The function does not write; engines may run it without taking write locks. Such a transaction is NOT a
   * snapshot in any engine: each read sees the latest commit, so two reads may straddle another client's
   * commit (a directory entry whose inode is already gone). Callers tolerate that; `snapshot` is the
   * consistent read.
   */
  readonly?: boolean;
}

/** What `commit` answers: fn's value and the changelog sequence number of this transaction's entry. */
export interface Commit<R> {
  value: R;
  /**
   * The seq under which this transaction's entry was appended (readLog returns it under this number);
   * undefined when it appended none: a readonly transaction, one that wrote nothing, or one that wrote only
   * unlogged kinds. A client of a mirror region waits until its replica has applied this seq.
   */
  seq: number | undefined;
}

/** A registered changelog consumer (a bucket replicator, a metadata mirror). */
export interface ConsumerInfo {
  name: string;
  /** The last sequence number it applied: entries after it are kept for it (within the retention bound). */
  position: number;
  /** When it was registered and when its position last moved, ms since the epoch. */
  registered: number;
  updated: number;
}

/** The changelog's bounds: entries floor+1 .. last are readable. */
export interface LogBounds {
  floor: number;
  last: number;
}

export interface PruneOptions {
  /** Clock for the age bound, ms (tests). Default Date.now(). */
  now?: number | undefined;
  /** At most this many entries are dropped by this call. Default LOG_PRUNE_ENTRIES_MAX. */
  entriesMax?: number | undefined;
}

export interface PruneResult {
  /** The floor and newest seq after this call. */
  floor: number;
  last: number;
  /** Entries this call dropped (0: nothing to do, or another client trimmed first). */
  trimmed: number;
  /** True when the call stopped at entriesMax with more to drop: call again. */
  more: boolean;
}

/**
 * The engine contract. Every member may fail with EngineUnavailableError when the engine cannot be reached;
 * its `outcome` tells whether anything may have changed (see there). Other errors are the caller's or bugs.
 */
export interface MetaEngine {
  /** Scheme and location, secrets masked. */
  readonly description: string;
  /**
   * Runs fn in one transaction and commits its writes together with at most one changelog entry (the writes
   * of logged kinds; none when there are none). Engines with optimistic concurrency may run fn more than
   * once: fn must have no effects outside `tx` and must not keep state across attempts. An exception from
   * fn aborts (nothing written) and is rethrown. A readonly fn that writes fails an assertion.
   */
  commit<R>(fn: (tx: Txn) => Promise<R>, options?: TxnOptions): Promise<Commit<R>>;
  /** commit(fn, options).value: for callers that do not need the seq. */
  txn<R>(fn: (tx: Txn) => Promise<R>, options?: TxnOptions): Promise<R>;
  /** The newest committed sequence number (0 before any). */
  lastSeq(): Promise<number>;
  /** Entries with seq > after, ascending, at most limit. Throws LogTrimmedError if after+1 was trimmed. */
  readLog(after: number, limit: number): Promise<LogEntry[]>;
  /**
   * Drops entries with seq <= min(upTo, lastSeq()), whatever consumers need (an administrator's tool and
   * `pruneLog`'s primitive); never lowers the floor. Idempotent. Unbounded: pruneLog is the bounded policy.
   */
  trimLog(upTo: number): Promise<void>;
  /** The oldest sequence still readable minus one (entries after it are all present). */
  logFloor(): Promise<number>;
  /** logFloor() and lastSeq() read together, in one round trip. */
  logBounds(): Promise<LogBounds>;
  /**
   * Applies entries produced by another engine, in order, in one transaction, and appends them to this
   * engine's changelog under their own sequence numbers. Requires entries[0].seq === lastSeq() + 1 (or an
   * engine seeded by `restore` at that sequence) and consecutive seqs; throws otherwise, applying nothing.
   */
  applyLog(entries: LogEntry[]): Promise<void>;
  /**
   * Every logged record, kind by kind, from one consistent snapshot, with the sequence it reflects.
   * `onRecord` is awaited for back-pressure.
   */
  snapshot(onRecord: (op: LogOp) => Promise<void> | void): Promise<{ seq: number }>;
  /**
   * Replaces all content with records from a snapshot and sets the changelog to start after seq. `records`
   * is read once (engines do not retry it). Atomic on SQLite and PostgreSQL; on Redis a failure part-way leaves
   * a partial volume (restore into an idle volume, then check). Consumers are removed with the rest.
   */
  restore(records: AsyncIterable<LogOp>, seq: number): Promise<void>;
  /** Removes every record and the changelog (format --force). */
  reset(): Promise<void>;

  // --- changelog consumers and trimming
  //
  // A consumer (bucket replicator, metadata mirror) registers under a name with the last seq it applied and
  // advances as it goes. The log is trimmed (pruneLog) behind the slowest consumer, and past the volume's
  // retention bound (retention.ts: entries older than N days or more than M behind the newest) whatever
  // consumers need: a consumer left behind gets LogTrimmedError from readLog and re-bootstraps (snapshot at
  // S, then the log after S). With no consumer registered, every entry may go. To bootstrap without a race
  // with trimming, register first (at any position not after the snapshot's, e.g. 0), then take the
  // snapshot, then advance to its seq.

  /**
   * Registers a consumer (or re-registers one, e.g. after a re-bootstrap) at `position`. Idempotent. Names are
   * 1-200 characters without NUL, positions integers >= 0 (RangeError otherwise); a consumer's records are
   * not logged (they describe this engine's own log).
   */
  registerConsumer(name: string, position: number): Promise<void>;
  /**
   * Sets a registered consumer's position (normally forward; a position before the floor simply means it is
   * behind). Throws ConsumerNotFoundError when no consumer has that name (it was removed).
   */
  advanceConsumer(name: string, position: number): Promise<void>;
  /** Every registered consumer, by name. */
  listConsumers(): Promise<ConsumerInfo[]>;
  /** Unregisters a consumer; false when there was none of that name. */
  removeConsumer(name: string): Promise<boolean>;
  /**
   * Drops what no registered consumer needs and what the retention bound drops, at most entriesMax entries
   * per call (bounded work: called after commits, by heartbeats, the replicator and gc, never inside a
   * transaction). Safe to run from many clients at once.
   */
  pruneLog(options?: PruneOptions): Promise<PruneResult>;

  /** Waits for the engine's own background work (a prune in flight), then closes. Idempotent. */
  close(): Promise<void>;
}

/**
 * `txn` in terms of `commit`, once for every engine and wrapper (engines extend EngineCore, wrappers this).
 */
export abstract class MetaEngineBase implements MetaEngine {
  abstract readonly description: string;
  abstract commit<R>(fn: (tx: Txn) => Promise<R>, options?: TxnOptions): Promise<Commit<R>>;
  async txn<R>(fn: (tx: Txn) => Promise<R>, options?: TxnOptions): Promise<R> {
    return (await this.commit(fn, options)).value;
  }
  abstract lastSeq(): Promise<number>;
  abstract readLog(after: number, limit: number): Promise<LogEntry[]>;
  abstract trimLog(upTo: number): Promise<void>;
  abstract logFloor(): Promise<number>;
  abstract logBounds(): Promise<LogBounds>;
  abstract applyLog(entries: LogEntry[]): Promise<void>;
  abstract snapshot(onRecord: (op: LogOp) => Promise<void> | void): Promise<{ seq: number }>;
  abstract restore(records: AsyncIterable<LogOp>, seq: number): Promise<void>;
  abstract reset(): Promise<void>;
  abstract registerConsumer(name: string, position: number): Promise<void>;
  abstract advanceConsumer(name: string, position: number): Promise<void>;
  abstract listConsumers(): Promise<ConsumerInfo[]>;
  abstract removeConsumer(name: string): Promise<boolean>;
  abstract pruneLog(options?: PruneOptions): Promise<PruneResult>;
  abstract close(): Promise<void>;
}

/**
 * A wrapper that forwards every call to `inner`: subclasses override only what they change (ReadOnlyEngine,
 * MetricsEngine, the service's RecordingEngine).
 */
export abstract class ForwardingEngine extends MetaEngineBase {
  readonly description: string;
  protected readonly inner: MetaEngine;
  constructor(inner: MetaEngine) {
    super();
    this.inner = inner;
    this.description = inner.description;
  }
  commit<R>(fn: (tx: Txn) => Promise<R>, options?: TxnOptions): Promise<Commit<R>> {
    return this.inner.commit(fn, options);
  }
  lastSeq(): Promise<number> {
    return this.inner.lastSeq();
  }
  readLog(after: number, limit: number): Promise<LogEntry[]> {
    return this.inner.readLog(after, limit);
  }
  trimLog(upTo: number): Promise<void> {
    return this.inner.trimLog(upTo);
  }
  logFloor(): Promise<number> {
    return this.inner.logFloor();
  }
  logBounds(): Promise<LogBounds> {
    return this.inner.logBounds();
  }
  applyLog(entries: LogEntry[]): Promise<void> {
    return this.inner.applyLog(entries);
  }
  snapshot(onRecord: (op: LogOp) => Promise<void> | void): Promise<{ seq: number }> {
    return this.inner.snapshot(onRecord);
  }
  restore(records: AsyncIterable<LogOp>, seq: number): Promise<void> {
    return this.inner.restore(records, seq);
  }
  reset(): Promise<void> {
    return this.inner.reset();
  }
  registerConsumer(name: string, position: number): Promise<void> {
    return this.inner.registerConsumer(name, position);
  }
  advanceConsumer(name: string, position: number): Promise<void> {
    return this.inner.advanceConsumer(name, position);
  }
  listConsumers(): Promise<ConsumerInfo[]> {
    return this.inner.listConsumers();
  }
  removeConsumer(name: string): Promise<boolean> {
    return this.inner.removeConsumer(name);
  }
  pruneLog(options?: PruneOptions): Promise<PruneResult> {
    return this.inner.pruneLog(options);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/**
 * The engine could not be reached, or stopped answering. `outcome` is what the caller may assume:
 *   'none'     nothing of the call took effect (the connection failed before a commit was sent, the server
 *              refused it): safe to retry, RetryEngine does;
 *   'unknown'  a commit may have landed (the answer was lost after it was sent): never retried blindly.
 */
export class EngineUnavailableError extends Error {
  readonly code = 'EENGINE';
  readonly outcome: 'none' | 'unknown';
  constructor(message: string, outcome: 'none' | 'unknown', options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'EngineUnavailableError';
    this.outcome = outcome;
  }
}

/** An optimistic transaction kept conflicting until its attempts ran out (nothing was committed). */
export class TxnConflictError extends Error {
  readonly code = 'ECONFLICT';
  constructor(attempts: number) {
    super(`transaction still conflicting after ${attempts} attempts (too much contention on the same records)`);
    this.name = 'TxnConflictError';
  }
}

/** advanceConsumer of a name that is not registered (never was, or was removed). */
export class ConsumerNotFoundError extends Error {
  readonly code = 'ENOCONSUMER';
  constructor(name: string) {
    super(`no changelog consumer named ${JSON.stringify(name)} is registered (it was removed, or never registered)`);
    this.name = 'ConsumerNotFoundError';
  }
}

export class LogTrimmedError extends Error {
  readonly code = 'ETRIMMED';
  readonly after: number;
  readonly floor: number;
  constructor(after: number, floor: number) {
    super(`changelog trimmed: entries after ${after} requested, only after ${floor} kept; re-bootstrap`);
    this.name = 'LogTrimmedError';
    this.after = after;
    this.floor = floor;
  }
}

/** Ascending bytewise comparison, the order of keys in scans and listings. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
