/**
 * The MetaEngine contract: a small transactional record store. Every engine (SQLite, Redis, PostgreSQL)
 * implements only this; all POSIX rules live once above it in meta/meta.ts, so engines cannot drift apart.
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
 *
 * Changelog: every transaction that writes a logged kind appends one entry — the list of resulting record
 * states (value or null for deleted) — under the next sequence number, in the same transaction. Sequence
 * numbers are gapless and start at 1. Replaying entries in order onto an engine that holds the state as of
 * the first entry's predecessor gives the same logged records; replay is idempotent because each op is a
 * full resulting state, never a delta.
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
] as const;
export type Kind = (typeof KINDS)[number];

/** Kinds that describe one client's live state: kept out of the changelog and dumps. */
export const UNLOGGED_KINDS: ReadonlySet<Kind> = new Set<Kind>(['session', 'sustained', 'lock', 'replica']);

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
 * atomically when the function passed to `txn` returns; nothing is visible to others before.
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

export interface MetaEngine {
  /** Scheme and location, secrets masked. */
  readonly description: string;
  /**
   * Runs fn in one transaction and commits its writes together with one changelog entry. Engines with
   * optimistic concurrency may run fn more than once: fn must have no effects outside `tx` and must not
   * keep state across attempts. An exception from fn aborts (nothing written) and is rethrown.
   */
  txn<R>(fn: (tx: Txn) => Promise<R>, options?: TxnOptions): Promise<R>;
  /** The newest committed sequence number (0 before any). */
  lastSeq(): Promise<number>;
  /** Entries with seq > after, ascending, at most limit. Throws LogTrimmedError if after+1 was trimmed. */
  readLog(after: number, limit: number): Promise<LogEntry[]>;
  /** Drops entries with seq <= upTo. */
  trimLog(upTo: number): Promise<void>;
  /** The oldest sequence still readable minus one (entries after it are all present). */
  logFloor(): Promise<number>;
  /**
   * Applies entries produced by another engine, in order, in one transaction, and appends them to this
   * engine's changelog under their own sequence numbers. Requires entries[0].seq === lastSeq() + 1 (or an
   * engine seeded by `restore` at that sequence); throws otherwise.
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
   * a partial volume (restore into an idle volume, then check).
   */
  restore(records: AsyncIterable<LogOp>, seq: number): Promise<void>;
  /** Removes every record and the changelog (format --force). */
  reset(): Promise<void>;
  /** Idempotent. */
  close(): Promise<void>;
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
