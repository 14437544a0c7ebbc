/**
 * The POSIX layer over any MetaEngine: names, attributes, permissions, rename rules, trash, open-file
 * tracking and chunk slice lists. Every public mutation is one engine transaction, and reports its effects
 * (usage changes, names and attributes changed) for the layers that consume them after the commit.
 *
 * Inode-based, like the kernel's VFS: callers resolve paths (sdk/, fuse/) and pass inode numbers.
 *
 * The other jobs of a client's metadata live in their own modules, and Meta delegates to them (its public
 * methods stay the one API): records.ts (how records are keyed), sessions.ts (client sessions, heartbeat,
 * dead sessions), usage.ts (usage batching), catalogue.ts (the slice catalogue: ids, references, released
 * slices, copies), locks.ts (fcntl and flock), lookupcache.ts (names and attributes, fed by the effects of
 * committed transactions), format.ts (the format record).
 */

import type { MetaApi } from './api.js';
import { FsError } from '../errors.js';
import type { MetaEngine, Txn, TxnOptions } from './engine.js';
import { cutSegments, dataBytes, visibleSegments, type SliceRef } from './slices.js';
import { shiftWrites } from './append.js';
import { LookupCache, type CacheEffects } from './lookupcache.js';
import { DIR_BYTES, loadFormat } from './format.js';
import { IdPool } from './ids.js';

export { formatVolume, loadFormat, type FormatOptions } from './format.js';
export { sessionIsStale } from './sessions.js';
import { LOCK_EOF, SessionLocks, type LockConflict, type LockType } from './locks.js';
import { SliceCatalogue } from './catalogue.js';
import { ClientSession, HEARTBEAT_MS_DEFAULT, SESSION_STALE_BEATS, SESSION_STALE_MS_DEFAULT } from './sessions.js';
import { committedUsage, storedUsage, UsageBatcher } from './usage.js';
import { chunks, entries, entryWithInode, inodes, slices, xattrs } from './records.js';
import {
  FALLOC_KEEP_SIZE,
  FALLOC_PUNCH_HOLE,
  FALLOC_ZERO_RANGE,
  FORMAT_VERSION,
  NAME_BYTES_MAX,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  ROOT_INO,
  R_OK,
  SYMLINK_BYTES_MAX,
  TRASH_INO,
  TRASH_NAME,
  W_OK,
  XATTR_CREATE,
  XATTR_NAME_BYTES_MAX,
  XATTR_REPLACE,
  XATTR_VALUE_BYTES_MAX,
  X_OK,
  nameProblem,
  type Attr,
  type Ctx,
  type DirEntry,
  type EntryRec,
  type FileType,
  type FormatRec,
  type InodeRec,
  type SessionRec,
  type SetAttr,
  type SliceRefRec,
  type StatFs,
} from './types.js';

const INO_BATCH = 100;
const SCAN_PAGE = 1000;
const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_ISVTX = 0o1000;

export interface MetaOptions {
  /** This client's region (recorded in its session). */
  region?: string;
  /** Heartbeat period, ms (default 12 s); 0 disables the timer (tests call heartbeat()). */
  heartbeatMs?: number;
  /** Usage counter changes are batched for this long, ms; 0 writes them after every transaction. */
  usageFlushMs?: number;
  /** How long names and attributes resolved by lookup may be reused, ms; 0 disables (default 1000). */
  lookupCacheMs?: number;
  /**
   * How long after its last heartbeat this client's session counts as dead, ms: recorded in the session, so
   * every client and tool judges it alike. Default SESSION_STALE_BEATS heartbeats (60 s at the default
   * period), or SESSION_STALE_MS_DEFAULT without a timer.
   */
  sessionStaleMs?: number;
  /** Open a session (clients that hold files open); tools like fsck and dump do not need one. */
  session?: boolean;
  /** Clock, for tests. */
  now?: () => number;
  /**
   * The engine is a mirror's replica (read-only to clients): a dead client's cleanup drops its own records
   * only. Usage records there are the primary's (replicated), whatever session numbers they carry.
   */
  replica?: boolean;
  /**
   * Called with the cache effects of every writing transaction of this client after the lookup cache took
   * them (committed: false when its outcome is unknown or it failed): the metadata service hands them to the
   * remote client's own lookup cache.
   */
  onCacheEffects?: (effects: CacheEffects, committed: boolean) => void;
}

/**
 * What a transaction changed beyond its records, reported by the mutation as it goes and consumed after the
 * commit: usage deltas (usage.ts) and what the lookup cache must forget or may store (lookupcache.ts).
 */
interface TxnEffects extends CacheEffects {
  bytes: number;
  inodes: number;
}

const noEffects = (): TxnEffects => ({ bytes: 0, inodes: 0, entries: [], inos: [], attrs: [], all: false });

function err(code: ConstructorParameters<typeof FsError>[0], message?: string): FsError {
  return new FsError(code, message);
}

/** The trash directory of the hour of `now`: YYYY-MM-DD-HH, UTC. */
function trashHourName(now: number): string {
  return new Date(now).toISOString().slice(0, 13).replace('T', '-');
}

export function checkName(name: string): void {
  if (name === '' || name.includes('/') || name.includes('\0')) throw err('EINVAL', `invalid name ${JSON.stringify(name)}`);
  if (Buffer.byteLength(name) > NAME_BYTES_MAX) throw err('ENAMETOOLONG', `name longer than ${NAME_BYTES_MAX} bytes`);
}

/** s cut to at most maxBytes of UTF-8 on a character boundary (a cut inside one would decode to U+FFFD, 3 bytes). */
function cutUtf8(s: string, maxBytes: number): string {
  const b = Buffer.from(s);
  if (b.length <= maxBytes) return s;
  let end = maxBytes;
  while (end > 0 && (b[end]! & 0xc0) === 0x80) end--;
  return b.subarray(0, end).toString();
}

export class Meta implements MetaApi {
  readonly engine: MetaEngine;
  readonly format: FormatRec;
  readonly chunkBytes: number;
  /**
   * The changelog seq of the newest entry this client's transactions (through txn below) appended, 0 before
   * any: what a client of a mirror region waits for its replica to have applied (read-your-writes).
   */
  committedSeq = 0;
  private readonly inos: IdPool;
  private readonly openFiles = new Map<number, number>();
  private readonly options: Required<Omit<MetaOptions, 'region' | 'onCacheEffects'>> & { region: string };
  private readonly onCacheEffects: ((effects: CacheEffects, committed: boolean) => void) | undefined;
  private closed = false;
  private readonly cache: LookupCache;
  private readonly effectsOf = new WeakMap<Txn, TxnEffects>();
  private readonly session: ClientSession;
  private readonly usageBatch: UsageBatcher;
  private readonly catalogue: SliceCatalogue;
  private readonly locks: SessionLocks;
  /** Inodes this session may hold open-but-unlinked (a superset; release checks the engine for these only). */
  private readonly maybeSustained = new Set<number>();

  private constructor(engine: MetaEngine, format: FormatRec, options: MetaOptions) {
    this.engine = engine;
    this.format = format;
    this.chunkBytes = format.chunkBytes;
    this.inos = new IdPool(engine, 'nextInode', INO_BATCH);
    this.options = {
      region: options.region ?? '',
      heartbeatMs: options.heartbeatMs ?? HEARTBEAT_MS_DEFAULT,
      sessionStaleMs:
        options.sessionStaleMs ?? (options.heartbeatMs === 0 ? SESSION_STALE_MS_DEFAULT : SESSION_STALE_BEATS * (options.heartbeatMs ?? HEARTBEAT_MS_DEFAULT)),
      session: options.session ?? true,
      now: options.now ?? Date.now,
      lookupCacheMs: options.lookupCacheMs ?? 1000,
      usageFlushMs: options.usageFlushMs ?? 1000,
      replica: options.replica ?? false,
    };
    this.cache = new LookupCache(this.options.lookupCacheMs);
    this.onCacheEffects = options.onCacheEffects;
    const txn = this.txn.bind(this) as <R>(fn: (tx: Txn) => Promise<R>, options?: TxnOptions) => Promise<R>;
    const o = this.options;
    this.session = new ClientSession(txn, { region: o.region, heartbeatMs: o.heartbeatMs, staleMs: o.sessionStaleMs, now: o.now });
    this.usageBatch = new UsageBatcher(engine, o.usageFlushMs, () => this.session.sid);
    this.catalogue = new SliceCatalogue(engine, txn, o.now);
    this.locks = new SessionLocks(txn, () => this.session.sid);
  }

  /** This client's session id; 0 without a session. */
  get sid(): number {
    return this.session.sid;
  }

  /** Opens a formatted volume; throws FsError ENODEV-like EINVAL if the engine holds none. */
  static async open(engine: MetaEngine, options: MetaOptions = {}): Promise<Meta> {
    const format = await loadFormat(engine);
    if (format === undefined) throw new FsError('EINVAL', `no volume in ${engine.description} (run "ferry format" first)`);
    if (format.version > FORMAT_VERSION) {
      throw new FsError('EINVAL', `volume format version ${format.version} is newer than this ferry supports (${FORMAT_VERSION})`);
    }
    const meta = new Meta(engine, format, options);
    if (meta.options.session) {
      await meta.session.open(() => meta.heartbeat());
      // A client that starts is the first to notice clients that died while none was running.
      await meta.cleanStaleSessions().catch((e: unknown) => process.emitWarning(`ferry: cleaning dead sessions failed: ${String(e)}`));
    }
    return meta;
  }

  private now(): number {
    return this.options.now();
  }

  // ---------------------------------------------------------------- sessions

  /** Refreshes this session's heartbeat, cleans up sessions that stopped beating, and trims the changelog. */
  async heartbeat(): Promise<void> {
    if (this.sid === 0) return;
    const lost = await this.session.beat();
    if (lost) {
      // Another client judged this one dead (it stopped beating for too long: a pause, a lost engine) and
      // cleaned its session: its locks and open-but-unlinked files are gone. It goes on under the same id.
      process.emitWarning(`ferry: session ${this.sid} had been cleaned up as dead; its locks and open unlinked files were released`);
    }
    await this.cleanStaleSessions();
    // Every client trims the changelog now and then (bounded work), so that an idle volume's log shrinks
    // too once its consumers caught up.
    await this.engine.pruneLog().catch((e: unknown) => process.emitWarning(`ferry: trimming the changelog failed: ${String(e)}`));
  }

  listSessions(): Promise<Array<SessionRec & { sid: number }>> {
    return this.session.list();
  }

  /**
   * Removes dead sessions and what they held: open-but-unlinked files, locks; their pending usage changes go
   * to the counters. Returns how many.
   */
  async cleanStaleSessions(): Promise<number> {
    const stale = await this.session.stale();
    for (const sid of stale) await this.cleanSession(sid);
    return stale.length;
  }

  private async cleanSession(sid: number): Promise<void> {
    this.cache.clear();
    if (!this.options.replica) await this.usageBatch.merge(sid);
    await this.locks.dropSession(sid);
    for (;;) {
      const batch = await this.session.sustainedBatch(sid);
      if (batch.length === 0) break;
      for (const ino of batch) {
        await this.txn(async (tx) => {
          this.session.drop(tx, sid, ino);
          const attr = await inodes.get(tx, ino);
          if (attr !== undefined && attr.nlink === 0 && !(await ClientSession.openElsewhere(tx, ino, sid))) await this.destroyInode(tx, ino, attr);
        });
      }
    }
    await this.session.remove(sid);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.session.stopTimer();
    if (this.sid !== 0) {
      // Files still open when the client closes are closed now (their unlinked data released).
      for (const ino of [...this.openFiles.keys()]) {
        this.openFiles.set(ino, 1);
        await this.release(ino);
      }
      this.usageBatch.stopTimer();
      // Waits for a merge in flight; the session's cleanup then merges whatever is left, once.
      await this.usageBatch.flush().catch(() => undefined);
      await this.cleanSession(this.sid);
      this.usageBatch.dropPending();
      this.session.sid = 0;
    }
    this.usageBatch.stopTimer();
    await this.usageBatch.flush();
  }

  // ---------------------------------------------------------------- ids

  newSliceId(): Promise<number> {
    return this.catalogue.newSliceId();
  }

  // ---------------------------------------------------------------- attributes and permissions

  /** The attributes as the engine has them now; they also refresh the lookup cache. */
  async getattr(ino: number): Promise<Attr> {
    const gen = this.cache.generation;
    const rec = await this.txn((tx) => inodes.get(tx, ino), { readonly: true });
    if (rec === undefined) throw err('ENOENT', `inode ${ino}`);
    const a = { ...rec, ino };
    this.cache.store(gen, this.now(), [a]);
    return a;
  }

  /** getattr through the lookup cache: for path walks, where lookup's freshness is enough. */
  async getattrCached(ino: number): Promise<Attr> {
    const hit = this.cache.attr(ino, this.now());
    if (hit !== undefined) return hit;
    return this.getattr(ino);
  }

  private async inode(tx: Txn, ino: number): Promise<InodeRec> {
    const rec = await inodes.get(tx, ino);
    if (rec === undefined) throw err('ENOENT', `inode ${ino}`);
    return rec;
  }

  private async dir(tx: Txn, ino: number): Promise<InodeRec> {
    const rec = await this.inode(tx, ino);
    if (rec.type !== 'dir') throw err('ENOTDIR');
    return rec;
  }

  /**
   * A directory and one name in it, read at once: on engines with network round trips (Redis, PostgreSQL)
   * independent reads issued together cost one wait instead of two. Errors come in the order of reading them
   * one after the other: the directory's first.
   */
  private async dirEntry(tx: Txn, parent: number, name: string): Promise<[InodeRec, EntryRec | undefined]> {
    const [p, e] = await Promise.all([inodes.get(tx, parent), entries.get(tx, parent, name)]);
    if (p === undefined) throw err('ENOENT', `inode ${parent}`);
    if (p.type !== 'dir') throw err('ENOTDIR');
    return [p, e];
  }

  /**
   * dirEntry, and the inode the entry names read with it: one round trip on engines that follow the entry
   * to its inode on their server (entryWithInode). The inode is undefined when the entry is, or names none.
   */
  private async dirEntryInode(tx: Txn, parent: number, name: string): Promise<[InodeRec, EntryRec | undefined, InodeRec | undefined]> {
    const [p, [e, a]] = await Promise.all([inodes.get(tx, parent), entryWithInode(tx, parent, name)]);
    if (p === undefined) throw err('ENOENT', `inode ${parent}`);
    if (p.type !== 'dir') throw err('ENOTDIR');
    return [p, e, a];
  }

  /** Whether ctx may access attr with mask (R_OK|W_OK|X_OK). */
  static allowed(ctx: Ctx, attr: InodeRec, mask: number): boolean {
    if (ctx.uid === 0) {
      // Root may read and write anything, and execute what anyone may execute (directories always).
      return (mask & X_OK) === 0 || attr.type === 'dir' || (attr.mode & 0o111) !== 0;
    }
    let bits: number;
    if (ctx.uid === attr.uid) bits = (attr.mode >> 6) & 7;
    else if (ctx.gid === attr.gid || ctx.gids.includes(attr.gid)) bits = (attr.mode >> 3) & 7;
    else bits = attr.mode & 7;
    return (bits & mask) === mask;
  }

  static check(ctx: Ctx, attr: InodeRec, mask: number): void {
    if (!Meta.allowed(ctx, attr, mask)) throw err('EACCES');
  }

  /** access(2). */
  async access(ctx: Ctx, ino: number, mask: number): Promise<void> {
    const attr = await this.getattr(ino);
    if (mask !== 0) Meta.check(ctx, attr, mask);
  }

  private static inGroup(ctx: Ctx, gid: number): boolean {
    return ctx.gid === gid || ctx.gids.includes(gid);
  }

  async setattr(ctx: Ctx, ino: number, set: SetAttr): Promise<Attr> {
    const now = this.now();
    return this.txn(async (tx) => {
      this.changed(tx, { inos: [ino] });
      const a = { ...(await this.inode(tx, ino)) };
      const owner = ctx.uid === 0 || ctx.uid === a.uid;
      if (set.mode !== undefined) {
        let mode = set.mode & 0o7777;
        // A write by anyone who may write clears the set-id bits (POSIX; the kernel asks for it as a mode
        // change in the writer's name): dropping only those bits needs write permission, not ownership.
        const dropsSetIdOnly = mode !== a.mode && (mode & ~a.mode) === 0 && ((a.mode & ~mode) & ~(S_ISUID | S_ISGID)) === 0;
        if (!owner && !(dropsSetIdOnly && a.type === 'file' && Meta.allowed(ctx, a, W_OK))) throw err('EPERM', 'only the owner may change the mode');
        if (ctx.uid !== 0 && a.type !== 'dir' && !Meta.inGroup(ctx, a.gid)) mode &= ~S_ISGID;
        a.mode = mode;
      }
      if (set.uid !== undefined || set.gid !== undefined) {
        const uid = set.uid ?? a.uid;
        const gid = set.gid ?? a.gid;
        if (ctx.uid !== 0) {
          if (uid !== a.uid) throw err('EPERM', 'only root may change the owner');
          if (gid !== a.gid && (ctx.uid !== a.uid || !Meta.inGroup(ctx, gid))) throw err('EPERM', 'not a member of the group');
        }
        if ((uid !== a.uid || gid !== a.gid) && a.type === 'file') {
          // chown drops set-id bits so a changed owner cannot inherit privileges.
          a.mode &= ~S_ISUID;
          if (a.mode & 0o010) a.mode &= ~S_ISGID;
        }
        a.uid = uid;
        a.gid = gid;
      }
      for (const f of ['atime', 'mtime'] as const) {
        const v = set[f];
        if (v === undefined) continue;
        if (v === 'now') {
          if (!owner && !Meta.allowed(ctx, a, W_OK)) throw err('EACCES');
          a[f] = now;
        } else {
          if (!owner) throw err('EPERM', 'only the owner may set times');
          a[f] = v;
        }
      }
      a.ctime = now;
      inodes.put(tx, ino, a);
      return { ...a, ino };
    });
  }

  // ---------------------------------------------------------------- names

  async lookup(ctx: Ctx, parent: number, name: string): Promise<Attr> {
    return (await this.lookupPair(ctx, parent, name))[1];
  }

  /** lookup, answering the directory's attributes too (a remote client's lookup cache keeps both). */
  async lookupPair(ctx: Ctx, parent: number, name: string): Promise<readonly [dir: Attr, attr: Attr]> {
    const now = this.now();
    const gen = this.cache.generation;
    const p = this.cache.attr(parent, now);
    if (p !== undefined && p.type === 'dir' && name !== '.' && name !== '..') {
      Meta.check(ctx, p, X_OK);
      const ino = this.cache.entry(parent, name, now);
      const a = ino === undefined ? undefined : this.cache.attr(ino, now);
      if (a !== undefined) return [p, a];
    }
    const r = await this.txn(
      async (tx) => {
        // An ordinary name's entry is read together with the directory (see dirEntry).
        const plain = name !== '.' && name !== '..' && !(parent === ROOT_INO && name === TRASH_NAME) && Buffer.byteLength(name) <= NAME_BYTES_MAX;
        // ...and so is the inode it names, where the engine follows the entry on its server.
        const [p, e, a] = plain ? await this.dirEntryInode(tx, parent, name) : [await this.dir(tx, parent), undefined, undefined];
        Meta.check(ctx, p, X_OK);
        const pa = { ...p, ino: parent };
        if (name === '.') return [pa, pa] as const;
        if (name === '..') return [pa, { ...(await this.inode(tx, p.parent)), ino: p.parent }] as const;
        if (parent === ROOT_INO && name === TRASH_NAME) return [pa, { ...(await this.inode(tx, TRASH_INO)), ino: TRASH_INO }] as const;
        if (!plain) throw err('ENAMETOOLONG');
        // A name that is not there is the lookup's answer, not a failed transaction: returned, thrown below.
        // (Every create looks its name up first; a rejection through each engine layer, counted as a
        // transaction error, was a measurable part of a create's cost, issue 11.)
        if (e === undefined) return err('ENOENT', name);
        if (a === undefined) return err('ENOENT', `inode ${e.ino}`);
        return [pa, { ...a, ino: e.ino }] as const;
      },
      { readonly: true },
    );
    if (r instanceof FsError) throw r;
    this.cache.store(gen, now, [r[0], r[1]], name === '.' || name === '..' ? undefined : [parent, name, r[1].ino]);
    return r;
  }

  /** Checks that ctx may add or remove names in directory p. */
  private static checkDirWrite(ctx: Ctx, p: InodeRec): void {
    Meta.check(ctx, p, W_OK | X_OK);
  }

  /** Sticky directories: only root, the directory's owner or the entry's owner may remove or replace it. */
  private static checkSticky(ctx: Ctx, p: InodeRec, child: InodeRec): void {
    if ((p.mode & S_ISVTX) !== 0 && ctx.uid !== 0 && ctx.uid !== p.uid && ctx.uid !== child.uid) throw err('EPERM', 'sticky directory');
  }

  /**
   * Counts usage changes of the transaction tx; they reach the shared counters after it commits, batched
   * (usage.ts). Keeping them out of every transaction keeps creates and writes of different files from
   * conflicting on two hot records in every engine.
   */
  private async addUsage(tx: Txn, bytes: number, inodes: number): Promise<void> {
    const d = this.effects(tx);
    d.bytes += bytes;
    d.inodes += inodes;
    await Promise.resolve();
  }

  private effects(tx: Txn): TxnEffects {
    const d = this.effectsOf.get(tx);
    if (d === undefined) throw new Error('assertion failed: transaction effects outside Meta.txn');
    return d;
  }

  /**
   * Reports what tx changes, for the lookup cache (see CacheEffects): names it removes or moves, inodes whose
   * attributes it changes, attributes as it commits them.
   */
  private changed(tx: Txn, change: { entries?: ReadonlyArray<readonly [number, string]>; inos?: readonly number[]; attrs?: readonly Attr[]; all?: boolean }): void {
    const d = this.effects(tx);
    if (change.entries !== undefined) d.entries.push(...change.entries);
    if (change.inos !== undefined) d.inos.push(...change.inos);
    if (change.attrs !== undefined) d.attrs.push(...change.attrs);
    if (change.all === true) d.all = true;
  }

  /**
   * engine.commit, recording the seq of what it logged (committedSeq), and handing the effects the
   * transaction reported to the layers that consume them: usage changes to the usage batcher (recorded in
   * the same transaction as a `usage` record of this session, see usage.ts), what changed to the lookup
   * cache. A transaction that failed still has its last attempt's effects applied to the cache (its outcome
   * may be unknown: it may have landed), without storing anything.
   */
  private async txn<R>(fn: (tx: Txn) => Promise<R>, options?: TxnOptions): Promise<R> {
    if (options?.readonly) return this.engine.txn(fn, options);
    const gen = this.cache.generation;
    let attempt: TxnEffects | undefined;
    let done;
    try {
      done = await this.engine.commit(async (tx) => {
        const d = noEffects();
        attempt = d;
        this.effectsOf.set(tx, d);
        const r = await fn(tx);
        this.usageBatch.record(tx, d.bytes, d.inodes);
        return [r, d] as const;
      });
    } catch (e) {
      if (attempt !== undefined) {
        this.cache.apply(attempt, gen, this.now(), false);
        this.onCacheEffects?.(attempt, false);
      }
      throw e;
    }
    const {
      value: [r, d],
      seq,
    } = done;
    if (seq !== undefined && seq > this.committedSeq) this.committedSeq = seq;
    this.cache.apply(d, gen, this.now(), true);
    this.onCacheEffects?.(d, true);
    await this.usageBatch.committed(d.bytes, d.inodes);
    return r;
  }

  /**
   * Adds this client's pending usage changes to the volume's counters: with a session, by merging its usage
   * records (whatever a failed merge left is merged by the next one, or by the session's cleanup); without,
   * from memory.
   */
  flushUsage(): Promise<void> {
    return this.usageBatch.flush();
  }

  /** Creates a node of any type; the mode is applied as given (callers apply the umask). */
  async mknod(
    ctx: Ctx,
    parent: number,
    name: string,
    type: FileType,
    mode: number,
    opts: { rdev?: number; target?: string; exclusive?: boolean } = {},
  ): Promise<Attr> {
    checkName(name);
    if (type === 'symlink') {
      const t = opts.target ?? '';
      if (t === '') throw err('ENOENT', 'empty symlink target');
      if (Buffer.byteLength(t) > SYMLINK_BYTES_MAX) throw err('ENAMETOOLONG', 'symlink target too long');
    }
    const ino = await this.inos.take();
    const now = this.now();
    return this.txn(async (tx) => {
      this.changed(tx, { inos: [parent] });
      const [p, existing] = await this.dirEntry(tx, parent, name);
      if (p.nlink === 0) throw err('ENOENT', 'directory was removed');
      Meta.checkDirWrite(ctx, p);
      if (existing !== undefined || (parent === ROOT_INO && name === TRASH_NAME)) throw err('EEXIST', name);
      let m = mode & 0o7777;
      let gid = ctx.gid;
      if ((p.mode & S_ISGID) !== 0) {
        gid = p.gid;
        if (type === 'dir') m |= S_ISGID;
      } else if (ctx.uid !== 0 && type !== 'dir' && !Meta.inGroup(ctx, gid)) m &= ~S_ISGID;
      const rec: InodeRec = {
        type,
        mode: type === 'symlink' ? 0o777 : m,
        uid: ctx.uid,
        gid,
        atime: now,
        mtime: now,
        ctime: now,
        nlink: type === 'dir' ? 2 : 1,
        length: type === 'dir' ? DIR_BYTES : type === 'symlink' ? Buffer.byteLength(opts.target ?? '') : 0,
        rdev: opts.rdev ?? 0,
        parent: type === 'dir' ? parent : 0,
        ...(type === 'file' ? { used: 0 } : {}),
      };
      if (type === 'symlink') rec.target = opts.target ?? '';
      inodes.put(tx, ino, rec);
      entries.put(tx, parent, name, { ino, type });
      const np = { ...p, mtime: now, ctime: now };
      if (type === 'dir') np.nlink++;
      inodes.put(tx, parent, np);
      await this.addUsage(tx, 0, 1);
      const created = { ...rec, ino };
      // The kernel asks for the parent's attributes right after a create (it dropped them): the cache
      // answers without a read.
      this.changed(tx, { attrs: [created, { ...np, ino: parent }] });
      return created;
    });
  }

  mkdir(ctx: Ctx, parent: number, name: string, mode: number): Promise<Attr> {
    return this.mknod(ctx, parent, name, 'dir', mode);
  }

  create(ctx: Ctx, parent: number, name: string, mode: number): Promise<Attr> {
    return this.mknod(ctx, parent, name, 'file', mode);
  }

  symlink(ctx: Ctx, parent: number, name: string, target: string): Promise<Attr> {
    return this.mknod(ctx, parent, name, 'symlink', 0o777, { target });
  }

  async readlink(ino: number): Promise<string> {
    const a = await this.getattr(ino);
    if (a.type !== 'symlink' || a.target === undefined) throw err('EINVAL', 'not a symlink');
    return a.target;
  }

  async link(ctx: Ctx, ino: number, parent: number, name: string): Promise<Attr> {
    checkName(name);
    const now = this.now();
    return this.txn(async (tx) => {
      this.changed(tx, { inos: [ino, parent] });
      // All three records at once; the checks keep their order.
      const [[p, existing]] = await Promise.all([this.dirEntry(tx, parent, name), inodes.get(tx, ino)]);
      if (p.nlink === 0) throw err('ENOENT', 'directory was removed');
      Meta.checkDirWrite(ctx, p);
      // As in linkat(2): an existing new name is EEXIST before the source's type is looked at.
      if (existing !== undefined || (parent === ROOT_INO && name === TRASH_NAME)) throw err('EEXIST', name);
      const a = await this.inode(tx, ino);
      if (a.type === 'dir') throw err('EPERM', 'hard link to a directory');
      if (a.nlink === 0) throw err('ENOENT', 'file was removed');
      const na = { ...a, nlink: a.nlink + 1, ctime: now };
      inodes.put(tx, ino, na);
      entries.put(tx, parent, name, { ino, type: a.type });
      inodes.put(tx, parent, { ...p, mtime: now, ctime: now });
      return { ...na, ino };
    });
  }

  async unlink(ctx: Ctx, parent: number, name: string): Promise<void> {
    checkName(name);
    const now = this.now();
    const spare = await this.spareIno();
    await this.txn(async (tx) => {
      const [p, e] = await this.dirEntry(tx, parent, name);
      Meta.checkDirWrite(ctx, p);
      if (e === undefined) throw err('ENOENT', name);
      const [a] = await Promise.all([this.inode(tx, e.ino), this.readForDropLink(tx, e.ino, parent, p, now)]);
      if (a.type === 'dir') throw err('EISDIR', name);
      Meta.checkSticky(ctx, p, a);
      entries.del(tx, parent, name);
      this.changed(tx, { entries: [[parent, name]], inos: [parent, e.ino] });
      const np = { ...p, mtime: now, ctime: now };
      inodes.put(tx, parent, np);
      // The directory as committed: the next name looked up in it needs no engine read for it.
      this.changed(tx, { attrs: [{ ...np, ino: parent }] });
      await this.dropLink(tx, e.ino, a, parent, name, now, spare);
    });
  }

  /**
   * The reads dropLink may need for inode `ino` leaving directory `parent` (record p), started beside the
   * inode's own read so that they cost no round trip of their own (the transaction keeps what it read): the
   * trash hour's entry, or what destroying the inode reads. Resolves to nothing; the callers read again.
   */
  private async readForDropLink(tx: Txn, ino: number, parent: number, p: InodeRec, now: number): Promise<void> {
    const toTrash = this.format.trashDays > 0 && parent !== TRASH_INO && p.parent !== TRASH_INO;
    if (toTrash) await entries.get(tx, TRASH_INO, trashHourName(now));
    else await Promise.all([xattrs.scan(tx, ino), chunks.scan(tx, ino)]);
  }

  /** An inode number reserved before a transaction that may need a trash directory (ids cannot be allocated inside one). */
  private async spareIno(): Promise<number> {
    return this.format.trashDays > 0 ? this.inos.take() : 0;
  }

  /**
   * Removes one link of a non-directory whose entry the caller already deleted: trash it, keep it for its
   * open handles, or destroy it.
   */
  private async dropLink(tx: Txn, ino: number, a: InodeRec, parent: number, name: string, now: number, spareIno: number): Promise<void> {
    if (a.nlink > 1) {
      inodes.put(tx, ino, { ...a, nlink: a.nlink - 1, ctime: now });
      return;
    }
    if (this.format.trashDays > 0 && parent !== TRASH_INO && !(await this.isInTrash(tx, parent))) {
      const hour = await this.trashHourDir(tx, now, spareIno);
      this.changed(tx, { inos: [TRASH_INO, hour] });
      const tname = `${parent}-${ino}-${name}`;
      const trimmed = cutUtf8(tname, NAME_BYTES_MAX);
      entries.put(tx, hour, trimmed, { ino, type: a.type });
      // Its trash entry keeps it (and counts in nlink, as every entry does), but to stat it has no name left.
      inodes.put(tx, ino, { ...a, ctime: now, trashed: true });
      return;
    }
    await this.dropLastLink(tx, ino, a, now);
  }

  private async isInTrash(tx: Txn, dirIno: number): Promise<boolean> {
    if (dirIno === TRASH_INO) return true;
    const d = await inodes.get(tx, dirIno);
    return d !== undefined && d.parent === TRASH_INO;
  }

  /** The trash subdirectory for the hour of `now`, created on first use (name: YYYY-MM-DD-HH, UTC). */
  private async trashHourDir(tx: Txn, now: number, ino: number): Promise<number> {
    const name = trashHourName(now);
    const e = await entries.get(tx, TRASH_INO, name);
    if (e !== undefined) return e.ino;
    if (ino === 0) throw new Error('assertion failed: no inode reserved for the trash directory');
    const t = await this.inode(tx, TRASH_INO);
    inodes.put(tx, ino, {
      type: 'dir', mode: 0o555, uid: 0, gid: 0, atime: now, mtime: now, ctime: now, nlink: 2, length: DIR_BYTES, rdev: 0, parent: TRASH_INO,
    });
    entries.put(tx, TRASH_INO, name, { ino, type: 'dir' });
    inodes.put(tx, TRASH_INO, { ...t, nlink: t.nlink + 1, mtime: now, ctime: now });
    await this.addUsage(tx, 0, 1);
    return ino;
  }

  /** Deletes an inode with no links left: its record, xattrs, and its chunks (slices released). */
  private async destroyInode(tx: Txn, ino: number, a: InodeRec): Promise<void> {
    inodes.del(tx, ino);
    // Both parts at once (releaseChunks reads its part again from the transaction).
    const [xs] = await Promise.all([xattrs.scan(tx, ino), a.type === 'file' ? chunks.scan(tx, ino) : undefined]);
    for (const [k] of xs) xattrs.del(tx, ino, k);
    if (a.type === 'file') {
      await this.addUsage(tx, -(await this.releaseChunks(tx, ino, 0)), -1);
    } else {
      await this.addUsage(tx, 0, -1);
    }
  }

  /**
   * Deletes chunk records with index >= fromIdx and drops one reference of each slice they named. Returns the
   * bytes of data they held (see dataBytes).
   */
  private async releaseChunks(tx: Txn, ino: number, fromIdx: number): Promise<number> {
    let bytes = 0;
    const ids: number[] = [];
    for (const [index, refs] of await chunks.scan(tx, ino)) {
      if (index < fromIdx) continue;
      chunks.del(tx, ino, index);
      bytes += dataBytes(refs);
      for (const r of refs) ids.push(r.id);
    }
    await this.catalogue.unrefAll(tx, ids);
    return bytes;
  }

  /**
   * The data bytes a file holds before this transaction changes it: its record's `used`, or, for a record
   * written before `used` existed, counted from its chunks once.
   */
  private async usedOf(tx: Txn, ino: number, a: InodeRec): Promise<number> {
    if (a.used !== undefined) return a.used;
    let bytes = 0;
    for (const [, refs] of await chunks.scan(tx, ino)) bytes += dataBytes(refs);
    return bytes;
  }

  /** The file's data changed by `delta` bytes from `used`: sets a.used (the caller puts a) and the volume's usage. */
  private async chargeData(tx: Txn, a: InodeRec, used: number, delta: number): Promise<void> {
    a.used = Math.max(0, used + delta);
    if (delta !== 0) await this.addUsage(tx, delta, 0);
  }

  async rmdir(ctx: Ctx, parent: number, name: string): Promise<void> {
    if (name === '.') throw err('EINVAL');
    if (name === '..') throw err('ENOTEMPTY');
    checkName(name);
    const now = this.now();
    await this.txn(async (tx) => {
      const [p, e] = await this.dirEntry(tx, parent, name);
      Meta.checkDirWrite(ctx, p);
      if (e === undefined) throw err('ENOENT', name);
      // The emptiness check's and the destruction's reads beside the inode's (the transaction keeps them).
      const [a] = await Promise.all([this.inode(tx, e.ino), entries.scan(tx, e.ino, { limit: 1 }), xattrs.scan(tx, e.ino)]);
      if (a.type !== 'dir') throw err('ENOTDIR', name);
      Meta.checkSticky(ctx, p, a);
      if ((await entries.scan(tx, e.ino, { limit: 1 })).length > 0) throw err('ENOTEMPTY', name);
      entries.del(tx, parent, name);
      this.changed(tx, { entries: [[parent, name]], inos: [parent, e.ino] });
      inodes.put(tx, parent, { ...p, nlink: p.nlink - 1, mtime: now, ctime: now });
      await this.dropLastLink(tx, e.ino, a, now);
    });
  }

  /**
   * An inode lost its last name (a file, or an empty directory): destroyed, unless this client holds it
   * open — then it lives on with nlink 0 until the last close (release) or this session's cleanup.
   */
  private async dropLastLink(tx: Txn, ino: number, a: InodeRec, now: number): Promise<void> {
    if (this.openFiles.has(ino)) {
      inodes.put(tx, ino, { ...a, nlink: 0, ctime: now });
      this.session.holdOpen(tx, ino);
      this.maybeSustained.add(ino);
      return;
    }
    await this.destroyInode(tx, ino, a);
  }

  /** rename(2) / renameat2(2) with RENAME_NOREPLACE and RENAME_EXCHANGE. */
  async rename(ctx: Ctx, srcParent: number, srcName: string, dstParent: number, dstName: string, flags = 0): Promise<void> {
    if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) !== 0) throw err('EINVAL', 'unknown rename flags');
    if ((flags & RENAME_NOREPLACE) !== 0 && (flags & RENAME_EXCHANGE) !== 0) throw err('EINVAL', 'NOREPLACE with EXCHANGE');
    for (const n of [srcName, dstName]) if (n === '.' || n === '..') throw err('EBUSY');
    checkName(srcName);
    checkName(dstName);
    const now = this.now();
    const spare = await this.spareIno();
    await this.txn(async (tx) => {
      // Both directories, both names and their inodes are read at once (see dirEntryInode); checks keep their order.
      const [src, dst] = await Promise.allSettled([this.dirEntryInode(tx, srcParent, srcName), this.dirEntryInode(tx, dstParent, dstName)]);
      if (src.status === 'rejected') throw src.reason;
      if (dst.status === 'rejected') throw dst.reason;
      const [sp, se] = src.value;
      const [dp, de] = dst.value;
      // The inodes were read with the names: the reads below find them in the transaction.
      Meta.checkDirWrite(ctx, sp);
      if (dstParent !== srcParent) Meta.checkDirWrite(ctx, dp);
      if (dp.nlink === 0) throw err('ENOENT', 'target directory was removed');
      if (dstParent === ROOT_INO && dstName === TRASH_NAME) throw err('EPERM');
      if (se === undefined) throw err('ENOENT', srcName);
      const [sa, dstInode] = await Promise.all([
        inodes.get(tx, se.ino),
        de === undefined ? undefined : inodes.get(tx, de.ino),
        // What replacing the target reads, if it comes to that (the transaction keeps it).
        de === undefined || (flags & (RENAME_EXCHANGE | RENAME_NOREPLACE)) !== 0 ? undefined : this.readForReplace(tx, de, dstParent, dp, now),
      ]);
      if (sa === undefined) throw err('ENOENT', `inode ${se.ino}`);
      Meta.checkSticky(ctx, sp, sa);
      this.changed(tx, { entries: [[srcParent, srcName], [dstParent, dstName]], inos: [srcParent, dstParent, se.ino, ...(de === undefined ? [] : [de.ino])] });
      if (de !== undefined && dstInode === undefined) throw err('ENOENT', `inode ${de.ino}`);
      const da = dstInode;
      const exchange = (flags & RENAME_EXCHANGE) !== 0;

      if (exchange && (de === undefined || da === undefined)) throw err('ENOENT', dstName);
      if (de !== undefined && (flags & RENAME_NOREPLACE) !== 0) throw err('EEXIST', dstName);
      if (de !== undefined && de.ino === se.ino) {
        // Two names of one inode: POSIX says do nothing (unless exchanging, which is then also a no-op).
        return;
      }
      // A directory may not move below itself (checked for both sides of an exchange).
      if (sa.type === 'dir' && dstParent !== srcParent) await this.checkNotAncestor(tx, se.ino, dstParent);
      if (exchange && da?.type === 'dir' && dstParent !== srcParent) await this.checkNotAncestor(tx, de!.ino, srcParent);
      // A target that holds the source (one of its ancestors) is not empty, whatever the source is (as Linux).
      if (!exchange && da?.type === 'dir' && dstParent !== srcParent && (await this.isAncestorOrSelf(tx, de!.ino, srcParent))) {
        throw err('ENOTEMPTY', dstName);
      }
      // Moving a directory to a new parent rewrites its '..': that needs write permission on it.
      if (sa.type === 'dir' && dstParent !== srcParent && ctx.uid !== 0) Meta.check(ctx, sa, W_OK);
      if (exchange && da?.type === 'dir' && dstParent !== srcParent && ctx.uid !== 0) Meta.check(ctx, da, W_OK);

      const parents = new Map<number, InodeRec>([[srcParent, { ...sp, mtime: now, ctime: now }]]);
      if (dstParent !== srcParent) parents.set(dstParent, { ...dp, mtime: now, ctime: now });
      const sP = parents.get(srcParent)!;
      const dP = parents.get(dstParent)!;

      if (exchange && de !== undefined && da !== undefined) {
        // The target leaves its directory too, so the sticky rule applies to it as for a replace.
        Meta.checkSticky(ctx, dp, da);
        entries.put(tx, srcParent, srcName, { ino: de.ino, type: da.type });
        entries.put(tx, dstParent, dstName, { ino: se.ino, type: sa.type });
        if (srcParent !== dstParent) {
          if (sa.type === 'dir') {
            sP.nlink--;
            dP.nlink++;
          }
          if (da.type === 'dir') {
            dP.nlink--;
            sP.nlink++;
          }
        }
        inodes.put(tx, se.ino, { ...sa, ctime: now, parent: sa.type === 'dir' ? dstParent : 0 });
        inodes.put(tx, de.ino, { ...da, ctime: now, parent: da.type === 'dir' ? srcParent : 0 });
      } else {
        if (de !== undefined && da !== undefined) {
          Meta.checkSticky(ctx, dp, da);
          if (sa.type === 'dir' && da.type !== 'dir') throw err('ENOTDIR', dstName);
          if (sa.type !== 'dir' && da.type === 'dir') throw err('EISDIR', dstName);
          if (da.type === 'dir') {
            if ((await entries.scan(tx, de.ino, { limit: 1 })).length > 0) throw err('ENOTEMPTY', dstName);
            dP.nlink--;
            await this.dropLastLink(tx, de.ino, da, now);
          }
        }
        entries.del(tx, srcParent, srcName);
        entries.put(tx, dstParent, dstName, { ino: se.ino, type: sa.type });
        if (sa.type === 'dir' && srcParent !== dstParent) {
          sP.nlink--;
          dP.nlink++;
        }
        const moved: InodeRec = { ...sa, ctime: now, parent: sa.type === 'dir' ? dstParent : 0 };
        // A file restored from the trash has a name again.
        if (sa.trashed === true && !(await this.isInTrash(tx, dstParent))) delete moved.trashed;
        inodes.put(tx, se.ino, moved);
        for (const [ino, rec] of parents) inodes.put(tx, ino, rec);
        this.changed(tx, { attrs: [...parents].map(([ino, rec]) => ({ ...rec, ino })) });
        if (de !== undefined && da !== undefined && da.type !== 'dir') await this.dropLink(tx, de.ino, da, dstParent, dstName, now, spare);
        return;
      }
      for (const [ino, rec] of parents) inodes.put(tx, ino, rec);
      this.changed(tx, { attrs: [...parents].map(([ino, rec]) => ({ ...rec, ino })) });
    });
  }

  /** readForDropLink for a rename's target entry, or its emptiness check when it is a directory. */
  private async readForReplace(tx: Txn, de: EntryRec, dstParent: number, dp: InodeRec, now: number): Promise<void> {
    if (de.type === 'dir') await Promise.all([entries.scan(tx, de.ino, { limit: 1 }), xattrs.scan(tx, de.ino)]);
    else await this.readForDropLink(tx, de.ino, dstParent, dp, now);
  }

  /** Throws EINVAL if directory `ino` is `dir` or one of its ancestors. */
  private async checkNotAncestor(tx: Txn, ino: number, dir: number): Promise<void> {
    if (await this.isAncestorOrSelf(tx, ino, dir)) throw err('EINVAL', 'cannot move a directory into itself');
  }

  /** Whether directory `ino` is `dir` or one of its ancestors. */
  private async isAncestorOrSelf(tx: Txn, ino: number, dir: number): Promise<boolean> {
    let cur = dir;
    for (let depth = 0; depth < 100_000; depth++) {
      if (cur === ino) return true;
      if (cur === ROOT_INO) return false;
      cur = (await this.inode(tx, cur)).parent;
    }
    throw new Error('assertion failed: directory parent chain does not reach the root');
  }

  /** One page of a directory; `after` is the last name of the previous page. */
  async readdir(ctx: Ctx, ino: number, opts: { after?: string; limit?: number; plus?: boolean } = {}): Promise<DirEntry[]> {
    return this.txn(
      async (tx) => {
        const d = await this.dir(tx, ino);
        Meta.check(ctx, d, R_OK);
        const rows = await entries.scan(tx, ino, { after: opts.after, limit: opts.limit ?? SCAN_PAGE });
        // The page's inodes asked all at once: engines that batch or pipeline reads answer them together.
        const recs = opts.plus === true ? await Promise.all(rows.map(([, e]) => inodes.get(tx, e.ino))) : undefined;
        const out: DirEntry[] = [];
        for (let i = 0; i < rows.length; i++) {
          const [name, e] = rows[i]!;
          // Another client (or a hand-edited engine) may have stored anything: never hand out a name that could
          // escape a directory or confuse the kernel.
          const bad = nameProblem(name);
          if (bad !== undefined) throw err('EIO', `directory ${ino} holds an invalid entry (${bad}); run ferry fsck`);
          const entry: DirEntry = { name, ino: e.ino, type: e.type };
          if (recs !== undefined) {
            const a = recs[i];
            if (a === undefined) continue; // raced with a delete in a non-isolated read
            entry.attr = { ...a, ino: e.ino };
          }
          out.push(entry);
        }
        return out;
      },
      { readonly: true },
    );
  }

  /**
   * The volume's usage exactly as committed: the counters plus every session's usage records not merged yet
   * (status; statfs adds only this client's own, which it knows without a scan).
   */
  usage(): Promise<{ usedBytes: number; inodes: number }> {
    return committedUsage(this.engine);
  }

  /**
   * What the trash holds: files and their data bytes (counted in `usage` until the trash lets them go), at
   * most `filesMax` files looked at (`partial` then).
   */
  async trashUsage(filesMax = 100_000): Promise<{ files: number; bytes: number; partial: boolean }> {
    let files = 0;
    let bytes = 0;
    const hours = await this.txn((tx) => entries.scan(tx, TRASH_INO), { readonly: true });
    for (const [, h] of hours) {
      let after: string | undefined;
      for (;;) {
        const page = await this.txn(async (tx) => {
          const rows = await entries.scan(tx, h.ino, { after, limit: SCAN_PAGE });
          const recs = await Promise.all(rows.map(([, e]) => inodes.get(tx, e.ino)));
          return { rows, recs };
        }, { readonly: true });
        for (const a of page.recs) {
          if (a === undefined || a.type !== 'file') continue;
          files++;
          bytes += a.used ?? a.length;
        }
        if (files >= filesMax) return { files, bytes, partial: true };
        if (page.rows.length < SCAN_PAGE) break;
        after = page.rows[page.rows.length - 1]![0];
      }
    }
    return { files, bytes, partial: false };
  }

  async statfs(): Promise<StatFs> {
    const stored = await storedUsage(this.engine);
    // This client's own changes count at once; other clients' within their flush period.
    const pending = this.usageBatch.pending;
    const used = stored.usedBytes + pending.bytes;
    const inodeCount = stored.inodes + pending.inodes;
    const bsize = 4096;
    const blocks = Math.floor(this.format.capacityBytes / bsize);
    const usedBlocks = Math.ceil(Math.max(0, used) / bsize);
    const files = 2 ** 40;
    return { bsize, blocks, bfree: Math.max(0, blocks - usedBlocks), bavail: Math.max(0, blocks - usedBlocks), files, ffree: files - inodeCount, usedBytes: used, inodes: inodeCount };
  }

  // ---------------------------------------------------------------- open files

  /**
   * Checks access for open(2) flags' access mode and tracks the open for unlink-while-open. `created`: the
   * attributes create just returned for ino (open(2) with O_CREAT), which spare reading them back.
   */
  async open(ctx: Ctx, ino: number, mask: number, created?: Attr): Promise<Attr> {
    const a = created?.ino === ino ? created : await this.getattr(ino);
    if (mask !== 0) Meta.check(ctx, a, mask);
    if (a.type === 'dir' && (mask & W_OK) !== 0) throw err('EISDIR');
    this.openFiles.set(ino, (this.openFiles.get(ino) ?? 0) + 1);
    return a;
  }

  /** Drops one open of ino; the last close of an unlinked file releases it. */
  async release(ino: number): Promise<void> {
    const n = this.openFiles.get(ino) ?? 0;
    if (n > 1) {
      this.openFiles.set(ino, n - 1);
      return;
    }
    this.openFiles.delete(ino);
    if (!this.maybeSustained.delete(ino)) return;
    await this.txn(async (tx) => {
      this.changed(tx, { all: true });
      if (!(await this.session.release(tx, this.sid, ino))) return;
      const a = await inodes.get(tx, ino);
      if (a !== undefined && a.nlink === 0 && !(await ClientSession.openElsewhere(tx, ino, this.sid))) await this.destroyInode(tx, ino, a);
    });
  }

  isOpen(ino: number): boolean {
    return this.openFiles.has(ino);
  }

  // ---------------------------------------------------------------- data: chunks and slices

  /** The slice references of one chunk, oldest first. */
  async readChunk(ino: number, index: number): Promise<SliceRef[]> {
    return (await this.txn((tx) => chunks.get(tx, ino, index), { readonly: true })) ?? [];
  }

  /** Every chunk of a file: [index, refs]. */
  readChunks(ino: number): Promise<Array<[number, SliceRef[]]>> {
    return this.txn((tx) => chunks.scan(tx, ino), { readonly: true });
  }

  /**
   * Commits stored slices into a file: appends each reference to its chunk, records the new slices, extends
   * the length to cover them, updates mtime. All slices' blocks must already be stored.
   *
   * With `appendAt`, the writes are appends placed as if the file ended at appendAt: they are moved to the
   * file's real end, read in this transaction (see append.ts). `shift` says how far they moved, `indexes`
   * which chunks they landed in.
   */
  async write(
    ino: number,
    writes: ReadonlyArray<{ index: number; ref: SliceRef }>,
    mtime?: number,
    appendAt?: number,
  ): Promise<{ attr: Attr; longest: number; shift: number; indexes: number[] }> {
    const now = this.now();
    return this.txn(async (tx) => {
      this.changed(tx, { inos: [ino] });
      // Every record the commit reads, at once; an append learns where it lands from the length first.
      const [rec] = await Promise.all([this.inode(tx, ino), appendAt === undefined ? this.readForWrite(tx, ino, writes) : undefined]);
      const a = { ...rec };
      if (a.type !== 'file') throw err('EBADF', 'not a regular file');
      let longest = 0;
      const lists = new Map<number, SliceRef[]>();
      const before = new Map<number, number>();
      const shift = appendAt === undefined ? 0 : a.length - appendAt;
      const placed = shift === 0 ? writes : shiftWrites(writes, shift, this.chunkBytes);
      const [used] = await Promise.all([this.usedOf(tx, ino, a), appendAt === undefined ? undefined : this.readForWrite(tx, ino, placed)]);
      for (const { index, ref } of placed) {
        if (!Number.isSafeInteger(ref.id) || ref.id <= 0 || ref.pos < 0 || ref.len <= 0 || ref.pos + ref.len > this.chunkBytes) {
          throw new Error(`assertion failed: bad slice reference ${JSON.stringify(ref)}`);
        }
        let list = lists.get(index);
        if (list === undefined) {
          list = [...((await chunks.get(tx, ino, index)) ?? [])];
          lists.set(index, list);
          before.set(index, dataBytes(list));
        }
        list.push(ref);
        // A new slice records its home region (the reference names it); a known one keeps its record's.
        await this.catalogue.refWritten(tx, ref.id, ref.size, ref.home);
        const end = index * this.chunkBytes + ref.pos + ref.len;
        if (end > a.length) a.length = end;
      }
      let delta = 0;
      for (const [index, list] of lists) {
        chunks.put(tx, ino, index, list);
        longest = Math.max(longest, list.length);
        delta += dataBytes(list) - before.get(index)!;
      }
      await this.chargeData(tx, a, used, delta);
      a.mtime = mtime ?? now;
      a.ctime = now;
      inodes.put(tx, ino, a);
      const attr = { ...a, ino };
      this.changed(tx, { attrs: [attr] });
      return { attr, longest, shift, indexes: [...lists.keys()] };
    });
  }

  /** Reads the chunk lists and slice records a write of `writes` updates, at once (the transaction keeps them). */
  private async readForWrite(tx: Txn, ino: number, writes: ReadonlyArray<{ index: number; ref: SliceRef }>): Promise<void> {
    const indexes = new Set(writes.map((w) => w.index));
    const ids = new Set(writes.map((w) => w.ref.id));
    await Promise.all([...[...indexes].map((i) => chunks.get(tx, ino, i)), ...[...ids].map((id) => slices.get(tx, id))]);
  }

  /**
   * Appends zero references over [from, to) of a file, chunk by chunk (callers hold the transaction), and
   * returns how many data bytes that removed.
   */
  private async zeroRange(tx: Txn, ino: number, from: number, to: number, lists: Map<number, SliceRef[]>): Promise<number> {
    let removed = 0;
    for (let off = from; off < to; ) {
        const index = Math.floor(off / this.chunkBytes);
        const pos = off - index * this.chunkBytes;
        const len = Math.min(this.chunkBytes - pos, to - off);
        let list = lists.get(index);
        if (list === undefined) {
          list = [...((await chunks.get(tx, ino, index)) ?? [])];
          lists.set(index, list);
        }
        // A zero reference over a chunk nothing was written to is pointless: gaps read as zeros already.
        if (list.length > 0) {
          const was = dataBytes(list);
          list.push({ pos, id: 0, size: 0, off: 0, len });
          removed += was - dataBytes(list);
        }
        off += len;
    }
    return removed;
  }

  /** truncate(2). Permission checks are the caller's (path truncate needs W_OK; ftruncate the handle's). */
  async truncate(ino: number, length: number): Promise<Attr> {
    if (!Number.isSafeInteger(length) || length < 0) throw err('EINVAL', 'bad length');
    const now = this.now();
    return this.txn(async (tx) => {
      this.changed(tx, { inos: [ino] });
      const a = { ...(await this.inode(tx, ino)) };
      if (a.type === 'dir') throw err('EISDIR');
      if (a.type !== 'file') throw err('EINVAL');
      // Growing adds a hole: no data, no usage.
      if (length < a.length) {
        const used = await this.usedOf(tx, ino, a);
        const keep = Math.ceil(length / this.chunkBytes);
        let removed = await this.releaseChunks(tx, ino, keep);
        const lists = new Map<number, SliceRef[]>();
        if (length % this.chunkBytes !== 0) removed += await this.zeroRange(tx, ino, length, Math.min(a.length, keep * this.chunkBytes), lists);
        for (const [index, list] of lists) if (list.length > 0) chunks.put(tx, ino, index, list);
        await this.chargeData(tx, a, used, -removed);
      }
      if (length !== a.length) a.mtime = now;
      a.length = length;
      a.ctime = now;
      inodes.put(tx, ino, a);
      return { ...a, ino };
    });
  }

  /** fallocate(2): mode 0 (extend), KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE [|KEEP_SIZE]. */
  async fallocate(ino: number, mode: number, offset: number, length: number): Promise<Attr> {
    if (offset < 0 || length <= 0 || !Number.isSafeInteger(offset + length)) throw err('EINVAL', 'bad range');
    if ((mode & ~(FALLOC_KEEP_SIZE | FALLOC_PUNCH_HOLE | FALLOC_ZERO_RANGE)) !== 0) throw err('ENOTSUP');
    if ((mode & FALLOC_PUNCH_HOLE) !== 0 && (mode & FALLOC_KEEP_SIZE) === 0) throw err('ENOTSUP', 'PUNCH_HOLE needs KEEP_SIZE');
    if ((mode & FALLOC_PUNCH_HOLE) !== 0 && (mode & FALLOC_ZERO_RANGE) !== 0) throw err('EINVAL');
    const now = this.now();
    return this.txn(async (tx) => {
      this.changed(tx, { inos: [ino] });
      const a = { ...(await this.inode(tx, ino)) };
      if (a.type === 'dir') throw err('EISDIR');
      if (a.type !== 'file') throw err('ENODEV');
      const end = offset + length;
      if ((mode & (FALLOC_PUNCH_HOLE | FALLOC_ZERO_RANGE)) !== 0) {
        const used = await this.usedOf(tx, ino, a);
        const lists = new Map<number, SliceRef[]>();
        const removed = await this.zeroRange(tx, ino, offset, Math.min(end, a.length), lists);
        for (const [index, list] of lists) if (list.length > 0) chunks.put(tx, ino, index, list);
        await this.chargeData(tx, a, used, -removed);
        a.mtime = now;
      }
      // Blocks are not reserved ahead (objects are written whole, when data comes): the range stays a hole.
      if ((mode & FALLOC_KEEP_SIZE) === 0 && end > a.length) a.length = end;
      a.ctime = now;
      inodes.put(tx, ino, a);
      return { ...a, ino };
    });
  }

  /**
   * copy_file_range(2) by reference: the destination gets references to the source's slices (no data is
   * copied). Returns bytes copied (0 at or past the source's end).
   */
  async copyFileRange(inIno: number, inOff: number, outIno: number, outOff: number, size: number): Promise<number> {
    if (inOff < 0 || outOff < 0 || size < 0) throw err('EINVAL');
    const now = this.now();
    return this.txn(async (tx) => {
      this.changed(tx, { inos: [outIno] });
      const src = await this.inode(tx, inIno);
      const dst = { ...(inIno === outIno ? src : await this.inode(tx, outIno)) };
      if (src.type === 'dir' || dst.type === 'dir') throw err('EISDIR');
      if (src.type !== 'file' || dst.type !== 'file') throw err('EINVAL');
      const n = Math.max(0, Math.min(size, src.length - inOff));
      if (n === 0) return 0;
      if (inIno === outIno && inOff < outOff + n && outOff < inOff + n) throw err('EINVAL', 'overlapping ranges in one file');
      const C = this.chunkBytes;
      const used = await this.usedOf(tx, outIno, dst);
      const lists = new Map<number, SliceRef[]>();
      const before = new Map<number, number>();
      const list = async (index: number): Promise<SliceRef[]> => {
        let l = lists.get(index);
        if (l === undefined) {
          l = [...((await chunks.get(tx, outIno, index)) ?? [])];
          lists.set(index, l);
          before.set(index, dataBytes(l));
        }
        return l;
      };
      for (let off = inOff; off < inOff + n; ) {
        const sIdx = Math.floor(off / C);
        const sPos = off - sIdx * C;
        const sEnd = Math.min(C, sPos + (inOff + n - off));
        const view = visibleSegments((await chunks.get(tx, inIno, sIdx)) ?? []);
        // Fill the whole range, making gaps explicit zero references so old destination bytes are covered.
        const pieces: SliceRef[] = [];
        let cur = sPos;
        for (const s of cutSegments(view, sPos, sEnd)) {
          if (s.pos > cur) pieces.push({ pos: cur, id: 0, size: 0, off: 0, len: s.pos - cur });
          pieces.push(s);
          cur = s.pos + s.len;
        }
        if (cur < sEnd) pieces.push({ pos: cur, id: 0, size: 0, off: 0, len: sEnd - cur });
        for (const p of pieces) {
          // Place each piece at its destination, splitting at destination chunk edges.
          let dAbs = outOff + (sIdx * C + p.pos - inOff);
          let done = 0;
          while (done < p.len) {
            const dIdx = Math.floor(dAbs / C);
            const dPos = dAbs - dIdx * C;
            const len = Math.min(p.len - done, C - dPos);
            const ref: SliceRef = { pos: dPos, id: p.id, size: p.size, off: p.id === 0 ? 0 : p.off + done, len, ...(p.home === undefined ? {} : { home: p.home }) };
            const l = await list(dIdx);
            if (p.id !== 0 || l.length > 0) {
              l.push(ref);
              await this.catalogue.ref(tx, p.id, p.size);
            }
            done += len;
            dAbs += len;
          }
        }
        off = sIdx * C + sEnd;
      }
      let delta = 0;
      for (const [index, l] of lists) {
        if (l.length > 0) chunks.put(tx, outIno, index, l);
        delta += dataBytes(l) - before.get(index)!;
      }
      await this.chargeData(tx, dst, used, delta);
      const end = outOff + n;
      if (end > dst.length) dst.length = end;
      dst.mtime = now;
      dst.ctime = now;
      inodes.put(tx, outIno, dst);
      return n;
    });
  }

  /**
   * Replaces the first `old.length` references of a chunk by `ref` (compaction), if the chunk still starts
   * with exactly those references; returns false when the chunk changed underneath (nothing written).
   */
  async replaceSlices(ino: number, index: number, old: readonly SliceRef[], ref: SliceRef): Promise<boolean> {
    return this.txn(async (tx) => {
      const cur = (await chunks.get(tx, ino, index)) ?? [];
      if (cur.length < old.length) return false;
      for (let i = 0; i < old.length; i++) {
        const a = cur[i]!;
        const b = old[i]!;
        if (a.id !== b.id || a.pos !== b.pos || a.off !== b.off || a.len !== b.len) return false;
      }
      const next = [ref, ...cur.slice(old.length)];
      // The new slice stores the zeros of holes between the data it merged: they occupy space now.
      const delta = dataBytes(next) - dataBytes(cur);
      if (delta !== 0) {
        const a = await inodes.get(tx, ino);
        if (a !== undefined) {
          const na = { ...a };
          await this.chargeData(tx, na, await this.usedOf(tx, ino, a), delta);
          inodes.put(tx, ino, na);
          this.changed(tx, { inos: [ino] });
        }
      }
      this.catalogue.putNew(tx, ref.id, ref.size, ref.home);
      chunks.put(tx, ino, index, next);
      for (const r of old) await this.catalogue.unref(tx, r.id);
      return true;
    });
  }

  // ---------------------------------------------------------------- the slice catalogue (see catalogue.ts)

  /** Marks a stored slice that will never be committed (a failed write) for deletion after the grace period. */
  abandonSlice(id: number, size: number): Promise<void> {
    return this.catalogue.abandonSlice(id, size);
  }

  /** Released slices whose grace period ended before `before` (ms). */
  listDelSlices(before: number, limit = SCAN_PAGE): Promise<Array<{ id: number; size: number; time: number }>> {
    return this.catalogue.listDelSlices(before, limit);
  }

  /** Forgets a released slice once its objects are deleted. */
  dropDelSlice(id: number): Promise<void> {
    return this.catalogue.dropDelSlice(id);
  }

  /** The records of some slices (undefined: released or never committed), a page per read. */
  getSlices(ids: readonly number[]): Promise<Map<number, SliceRefRec | undefined>> {
    return this.catalogue.getSlices(ids);
  }

  /**
   * Records verified copies of slices in more regions (the bucket replicator), in one transaction. Returns
   * the ids that are gone entirely — neither live nor awaiting deletion — whose objects gc may already have
   * deleted everywhere: the caller deletes the copies it just made of those.
   */
  addSliceCopies(marks: ReadonlyArray<{ id: number; regions: readonly string[] }>, also?: (tx: Txn, gone: readonly number[]) => void): Promise<number[]> {
    return this.catalogue.addSliceCopies(marks, also);
  }

  /** Every live slice: id -> {size, refs, home, copies}. */
  listSlices(): Promise<Map<number, SliceRefRec>> {
    return this.catalogue.listSlices();
  }

  /** Empties trash hour directories older than the volume's trash days. Returns files released. */
  async cleanTrash(now = this.now()): Promise<number> {
    try {
      return await this.cleanTrashHours(now);
    } finally {
      this.cache.clear();
    }
  }

  private async cleanTrashHours(now: number): Promise<number> {
    const cutoff = now - this.format.trashDays * 86_400_000;
    let released = 0;
    const hours = await this.txn((tx) => entries.scan(tx, TRASH_INO), { readonly: true });
    for (const [name, e] of hours) {
      const t = Date.parse(`${name.slice(0, 10)}T${name.slice(11, 13)}:00:00Z`);
      if (!(t + 3_600_000 <= cutoff)) continue;
      for (;;) {
        const files = await this.txn((tx) => entries.scan(tx, e.ino, { limit: 100 }), { readonly: true });
        if (files.length === 0) break;
        for (const [fname, fe] of files) {
          await this.txn(async (tx) => {
            entries.del(tx, e.ino, fname);
            const a = await inodes.get(tx, fe.ino);
            if (a === undefined) return;
            if (a.nlink > 1) {
              // Its trash entry goes: it is a plain file with its other names again.
              const rest: InodeRec = { ...a, nlink: a.nlink - 1 };
              delete rest.trashed;
              inodes.put(tx, fe.ino, rest);
            }
            else await this.dropLastLink(tx, fe.ino, a, a.ctime);
          });
          released++;
        }
      }
      await this.txn(async (tx) => {
        const t = await this.inode(tx, TRASH_INO);
        entries.del(tx, TRASH_INO, name);
        inodes.put(tx, TRASH_INO, { ...t, nlink: t.nlink - 1 });
        const d = await inodes.get(tx, e.ino);
        if (d !== undefined) await this.destroyInode(tx, e.ino, d);
      });
    }
    return released;
  }

  // ---------------------------------------------------------------- extended attributes

  private static checkXattrName(name: string): void {
    if (name === '' || name.includes('\0')) throw err('EINVAL', 'empty attribute name or NUL in it');
    if (Buffer.byteLength(name) > XATTR_NAME_BYTES_MAX) throw err('ERANGE', 'attribute name too long');
    if (!/^(user|trusted|security|system)\./.test(name)) throw err('ENOTSUP', `unsupported attribute namespace: ${name}`);
  }

  private static checkXattrAccess(ctx: Ctx, a: InodeRec, name: string, mask: number): void {
    if (name.startsWith('user.')) {
      if (a.type !== 'file' && a.type !== 'dir') throw err(mask === W_OK ? 'EPERM' : 'ENODATA');
      Meta.check(ctx, a, mask);
    } else if (name.startsWith('trusted.') && ctx.uid !== 0) {
      throw err(mask === W_OK ? 'EPERM' : 'ENODATA');
    }
  }

  async setxattr(ctx: Ctx, ino: number, name: string, value: Buffer, flags = 0): Promise<void> {
    Meta.checkXattrName(name);
    if (value.length > XATTR_VALUE_BYTES_MAX) throw err('ERANGE', 'attribute value too large');
    const now = this.now();
    await this.txn(async (tx) => {
      this.changed(tx, { inos: [ino] });
      const a = await this.inode(tx, ino);
      Meta.checkXattrAccess(ctx, a, name, W_OK);
      const had = (await xattrs.get(tx, ino, name)) !== undefined;
      if ((flags & XATTR_CREATE) !== 0 && had) throw err('EEXIST', name);
      if ((flags & XATTR_REPLACE) !== 0 && !had) throw err('ENODATA', name);
      xattrs.put(tx, ino, name, value.toString('base64'));
      inodes.put(tx, ino, { ...a, ctime: now });
    });
  }

  async getxattr(ctx: Ctx, ino: number, name: string): Promise<Buffer> {
    Meta.checkXattrName(name);
    return this.txn(
      async (tx) => {
        const a = await this.inode(tx, ino);
        Meta.checkXattrAccess(ctx, a, name, R_OK);
        const v = await xattrs.get(tx, ino, name);
        if (v === undefined) throw err('ENODATA', name);
        return Buffer.from(v, 'base64');
      },
      { readonly: true },
    );
  }

  async listxattr(ctx: Ctx, ino: number): Promise<string[]> {
    return this.txn(
      async (tx) => {
        const a = await this.inode(tx, ino);
        const names = (await xattrs.scan(tx, ino)).map(([k]) => k);
        return names.filter((n) => !n.startsWith('trusted.') || ctx.uid === 0).filter((n) => !n.startsWith('user.') || a.type === 'file' || a.type === 'dir');
      },
      { readonly: true },
    );
  }

  async removexattr(ctx: Ctx, ino: number, name: string): Promise<void> {
    Meta.checkXattrName(name);
    const now = this.now();
    await this.txn(async (tx) => {
      this.changed(tx, { inos: [ino] });
      const a = await this.inode(tx, ino);
      Meta.checkXattrAccess(ctx, a, name, W_OK);
      if ((await xattrs.get(tx, ino, name)) === undefined) throw err('ENODATA', name);
      xattrs.del(tx, ino, name);
      inodes.put(tx, ino, { ...a, ctime: now });
    });
  }

  // ---------------------------------------------------------------- locks (see locks.ts)

  /**
   * fcntl F_GETLK: the first lock of another owner that conflicts with a `type` lock on [start, end)
   * (end LOCK_EOF: to the end of the file), or undefined if the lock could be placed.
   */
  getlk(ino: number, owner: string, type: LockType, start: number, end = LOCK_EOF): Promise<LockConflict | undefined> {
    return this.locks.getlk(ino, owner, type, start, end);
  }

  /**
   * fcntl F_SETLK: sets the owner's lock on [start, end) to `type` ('u' unlocks), splitting and merging its
   * existing ranges as POSIX says. Returns the conflicting lock (and changes nothing) if another owner's lock
   * stands in the way; F_SETLKW is the caller's retry loop.
   */
  setlk(ino: number, owner: string, type: LockType | 'u', start: number, end = LOCK_EOF, pid = 0): Promise<LockConflict | undefined> {
    return this.locks.setlk(ino, owner, type, start, end, pid);
  }

  /** flock(2) for one open file (owner): false if another owner's flock stands in the way (nothing changed). */
  flock(ino: number, owner: string, type: 'sh' | 'ex' | 'un', pid = 0): Promise<boolean> {
    return this.locks.flock(ino, owner, type, pid);
  }

  /** Whether this session may hold locks on the inode (cheap; no engine query). */
  mayHoldLocks(ino: number): boolean {
    return this.locks.mayHold(ino);
  }
}
