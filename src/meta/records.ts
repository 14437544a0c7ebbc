/**
 * Typed record accessors: the one place that knows how each record kind is keyed and shaped (the table in
 * engine.ts). Code outside meta/ never names a kind; it calls these accessors, or the functions of meta/ built
 * on them (check.ts, dumpfile.ts, the slice catalogue, ...). test/meta/records-boundary.test.ts holds the line.
 *
 * An accessor encodes its part and key (inode numbers, slice ids and chunk indexes as decimal strings, the
 * encoding every engine and dump already holds) and decodes them back in scans; values are typed but not
 * checked at run time (records come from our own writes, or from a dump that dumpfile.ts validated).
 *
 *   accessor       kind       part     key         value
 *   formatRecord   setting    ''       'format'    FormatRec
 *   setting(name)  setting    ''       name        (per setting: secret.ts, retention.ts)
 *   counters       counter    ''       name        number
 *   inodes         inode      ''       ino         InodeRec
 *   entries        entry      parent   name        EntryRec
 *   chunks         chunk      ino      index       SliceRef[]
 *   xattrs         xattr      ino      name        base64 string
 *   slices         slice      ''       id          SliceRefRec
 *   delslices      delslice   ''       id          DelSliceRec
 *   usageRecs      usage      sid      seq         [bytes, inodes]
 *   sessions       session    ''       sid         SessionRec
 *   sessionNext    session    'counter' 'next'     number (the session id counter, kept out of the log)
 *   sustained      sustained  sid      ino         1
 *   locks          lock       (locks.ts)           PosixLockRec | FlockRec | 1
 *   replicas       replica    ''       name        a replicator's checkpoint (its shape is region/'s)
 *   consumers      consumer   ''       name        ConsumerRec
 *   mirrors        mirror     ''       key         (mirror.ts)
 */

import type { Json, Kind, LogOp, ScanOptions, Txn } from './engine.js';
import type { SliceRef } from './slices.js';
import type { DelSliceRec, EntryRec, FormatRec, InodeRec, SessionRec, SliceRefRec } from './types.js';

type Value = object | string | number | boolean;

interface Codec<T> {
  enc(v: T): string;
  dec(s: string): T;
}

/** Decimal numbers: inode numbers, slice ids, chunk indexes, session ids. */
const num: Codec<number> = { enc: (n) => String(n), dec: (s) => Number(s) };
const str: Codec<string> = { enc: (s) => s, dec: (s) => s };

export interface RecordScan<K> {
  /** Only keys after this one (in the engine's bytewise key order). */
  after?: K | undefined;
  limit?: number | undefined;
}

/** Records of one kind grouped in parts (a directory's entries, a file's chunks). */
export class PartedRecords<P, K, V extends Value> {
  readonly kind: Kind;
  private readonly p: Codec<P>;
  private readonly k: Codec<K>;
  constructor(kind: Kind, p: Codec<P>, k: Codec<K>) {
    this.kind = kind;
    this.p = p;
    this.k = k;
  }

  get(tx: Txn, part: P, key: K): Promise<V | undefined> {
    return tx.get<V>(this.kind, this.p.enc(part), this.k.enc(key));
  }

  put(tx: Txn, part: P, key: K, value: V): void {
    tx.put(this.kind, this.p.enc(part), this.k.enc(key), value);
  }

  del(tx: Txn, part: P, key: K): void {
    tx.del(this.kind, this.p.enc(part), this.k.enc(key));
  }

  /** One part's records in the engine's key order. */
  async scan(tx: Txn, part: P, options: RecordScan<K> = {}): Promise<Array<[K, V]>> {
    const o: ScanOptions = { limit: options.limit, after: options.after === undefined ? undefined : this.k.enc(options.after) };
    const rows = await tx.scan<V>(this.kind, this.p.enc(part), o);
    return rows.map(([k, v]) => [this.k.dec(k), v]);
  }

  /** Whether the part holds any record. */
  async any(tx: Txn, part: P): Promise<boolean> {
    return (await tx.scan(this.kind, this.p.enc(part), { limit: 1 })).length > 0;
  }
}

/** Records of one kind in a single part (''): addressed by key alone. */
export class KeyedRecords<K, V extends Value> {
  private readonly r: PartedRecords<'', K, V>;
  constructor(kind: Kind, k: Codec<K>) {
    this.r = new PartedRecords<'', K, V>(kind, { enc: () => '', dec: () => '' }, k);
  }
  get kind(): Kind {
    return this.r.kind;
  }
  get(tx: Txn, key: K): Promise<V | undefined> {
    return this.r.get(tx, '', key);
  }
  put(tx: Txn, key: K, value: V): void {
    this.r.put(tx, '', key, value);
  }
  del(tx: Txn, key: K): void {
    this.r.del(tx, '', key);
  }
  scan(tx: Txn, options?: RecordScan<K>): Promise<Array<[K, V]>> {
    return this.r.scan(tx, '', options);
  }
}

/** One record at a fixed address (a setting). */
export class SingleRecord<V extends Value> {
  readonly kind: Kind;
  readonly part: string;
  readonly key: string;
  constructor(kind: Kind, part: string, key: string) {
    this.kind = kind;
    this.part = part;
    this.key = key;
  }
  get(tx: Txn): Promise<V | undefined> {
    return tx.get<V>(this.kind, this.part, this.key);
  }
  put(tx: Txn, value: V): void {
    tx.put(this.kind, this.part, this.key, value);
  }
  del(tx: Txn): void {
    tx.del(this.kind, this.part, this.key);
  }
}

export type CounterName = 'nextInode' | 'nextSlice' | 'usedBytes' | 'inodes';
/** A usage change not merged into the counters yet: [bytes, inodes]. */
export type UsageDelta = [bytes: number, inodes: number];

/** One volume setting by name (secret.ts, retention.ts). */
export function setting<V extends Value>(name: string): SingleRecord<V> {
  return new SingleRecord<V>('setting', '', name);
}

/** Volume settings by name (the format record, the secret, the log retention bound). */
export const settings = new KeyedRecords<string, Json & Value>('setting', str);
export const FORMAT_KEY = 'format';
export const formatRecord = setting<FormatRec>(FORMAT_KEY);
export const counters = new KeyedRecords<CounterName, number>('counter', str as Codec<CounterName>);
export const inodes = new KeyedRecords<number, InodeRec>('inode', num);
export const entries = new PartedRecords<number, string, EntryRec>('entry', num, str);
export const chunks = new PartedRecords<number, number, SliceRef[]>('chunk', num, num);
export const xattrs = new PartedRecords<number, string, string>('xattr', num, str);
export const slices = new KeyedRecords<number, SliceRefRec>('slice', num);
export const delslices = new KeyedRecords<number, DelSliceRec>('delslice', num);
export const usageRecs = new PartedRecords<number, string, UsageDelta>('usage', num, str);
export const sessions = new KeyedRecords<number, SessionRec>('session', num);
/** The session id counter lives with the sessions, out of the changelog (see sessions.ts). */
export const sessionNext = new SingleRecord<number>('session', 'counter', 'next');
export const sustained = new PartedRecords<number, number, 1>('sustained', num, num);
/** Lock records: part is an inode number or a session's index part (locks.ts says which). */
export const lockRecs = new PartedRecords<string, string, Value>('lock', str, str);
export const replicas = new KeyedRecords<string, Value>('replica', str);
export const mirrors = new KeyedRecords<string, Value>('mirror', str);
/** A changelog consumer's position (core.ts). */
export interface ConsumerRec {
  position: number;
  registered: number;
  updated: number;
}
export const consumers = new KeyedRecords<string, ConsumerRec>('consumer', str);


/**
 * The entry `name` of directory `parent` and the inode it names, read together: in one round trip where the
 * transaction can follow the reference (Txn.getFollowing), else one read after the other.
 */
export async function entryWithInode(tx: Txn, parent: number, name: string): Promise<[EntryRec | undefined, InodeRec | undefined]> {
  if (tx.getFollowing !== undefined) return tx.getFollowing<EntryRec, InodeRec>(entries.kind, num.enc(parent), name, 'ino', inodes.kind, '');
  const e = await entries.get(tx, parent, name);
  return [e, e === undefined ? undefined : await inodes.get(tx, e.ino)];
}

/** A counter's value (0 when unset). */
export async function counter(tx: Txn, name: CounterName): Promise<number> {
  return (await counters.get(tx, name)) ?? 0;
}

// ---------------------------------------------------------------- changelog ops and snapshot records

/** A changelog op or snapshot record seen through its meaning. */
export type RecordOf =
  | { kind: 'inode'; ino: number; value: InodeRec | null }
  | { kind: 'entry'; parent: number; name: string; value: EntryRec | null }
  | { kind: 'chunk'; ino: number; index: number; value: SliceRef[] | null }
  | { kind: 'xattr'; ino: number; name: string; value: string | null }
  | { kind: 'slice'; id: number; value: SliceRefRec | null }
  | { kind: 'delslice'; id: number; value: DelSliceRec | null }
  | { kind: 'counter'; name: string; value: number | null }
  | { kind: 'usage'; sid: number; key: string; value: UsageDelta | null }
  | { kind: 'setting'; name: string; value: Json }
  | { kind: 'other'; op: LogOp };

/** What an op means, by kind (values as stored; not checked). */
export function decodeOp(op: LogOp): RecordOf {
  const [kind, part, key, v] = op;
  const value = v as never;
  switch (kind) {
    case 'inode':
      return { kind, ino: num.dec(key), value };
    case 'entry':
      return { kind, parent: num.dec(part), name: key, value };
    case 'chunk':
      return { kind, ino: num.dec(part), index: num.dec(key), value };
    case 'xattr':
      return { kind, ino: num.dec(part), name: key, value };
    case 'slice':
      return { kind, id: num.dec(key), value };
    case 'delslice':
      return { kind, id: num.dec(key), value };
    case 'counter':
      return { kind, name: key, value };
    case 'usage':
      return { kind, sid: num.dec(part), key, value };
    case 'setting':
      return { kind, name: key, value: v };
    default:
      return { kind: 'other', op };
  }
}

/** The slice records a changelog entry's ops set (deletions skipped): what the bucket replicator follows. */
export function* slicesSet(ops: readonly LogOp[]): Generator<[id: number, rec: SliceRefRec]> {
  for (const op of ops) {
    const r = decodeOp(op);
    if (r.kind === 'slice' && r.value !== null) yield [r.id, r.value];
  }
}
