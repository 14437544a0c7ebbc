/**
 * FUSE operations by inode number (FUSE 2.9's low-level API, as Ferry's addon serves it; see native.ts) over
 * Vfs and Meta. Kernel inode numbers are Ferry's (FUSE_ROOT_ID = ROOT_INO = 1), so a hard link is one inode
 * to the kernel too and the kernel may cache entries and attributes (the mount's timeouts): what this mount
 * changes it learns from the replies, others' changes show once the timeouts run out. The kernel resolves
 * paths and symlinks and checks permissions (default_permissions); every failure maps 1:1 to an errno with
 * toErrno. Ferry keeps no lookup counts: any inode can be read by number at any time (forget is the addon's).
 *
 * The fuse-native fallback (path-based high-level API) runs the same operations: native.ts resolves each
 * path to an inode with `inoOf`/`parentOf` (through Meta's lookup cache) and calls them.
 *
 * Identity: under Ferry's addon each request carries the caller (uid, gid, pid; supplementary groups are read
 * from /proc/<pid>/status and cached briefly): new files belong to the caller and Meta checks the caller's
 * permissions for what it changes. Names are looked up as the mount (the kernel already checked the caller's
 * search permission). Under fuse-native there is no caller and the mount's identity is used.
 *
 * Locks (addon only): fcntl byte-range locks and flock go through Meta's lock records in the engine, so they
 * hold across processes, mounts and machines; blocking requests retry until granted or interrupted. POSIX
 * locks of an owner go at its flush (every close), flocks at the last release of the open file.
 *
 * Page cache: open keeps the kernel's cached pages (keep_cache) when the file's size and mtime are what this
 * mount saw at its last open or release of the file (close-to-open); otherwise they go, and the addon drops
 * the kernel's cached attributes of the file too (a size changed elsewhere shows at once).
 *
 * Close: flush (every close(2)) waits until the file's buffered writes are uploaded and committed, so another
 * client that opens the file afterwards sees them and close reports a failed upload or commit. (Answering
 * first and committing after was tried: the small upload and the commit are synchronous work on the JS
 * thread, so it gained nothing measurable and would weaken close-to-open.)
 *
 * Every request is answered exactly once: `run` turns an operation's promise (or a synchronous throw) into one
 * callback, maps errors to -errno, counts it in the mount's stats, and logs errors that are not FsErrors
 * (they become EIO).
 */

import { readFile } from 'node:fs/promises';
import { ERRNO, FsError, toErrno } from '../errors.js';
import { LOCK_EOF } from '../meta/locks.js';
import { ROOT_INO, TRASH_INO, TRASH_NAME, TYPE_BITS, S_IFMT, type Attr, type Ctx, type FileType, type SetAttr } from '../meta/types.js';
import { O_ACCMODE, O_APPEND, Vfs, type Handle } from '../vfs/vfs.js';
import type { Caller, DirEntries, DirEntriesPlus, FuseLock, FuseStat, FuseStatfs, OpenReply, SetAttrArgs } from './boundary.js';
import { Listing } from './listing.js';
import { BLKSIZE, toFuseStat } from './stat.js';
import type { MountStats } from './stats.js';
import { AccessLog, type RequestInfo } from './accesslog.js';
import { counterOf, gaugeOf } from '../obs/metrics.js';

export type { DirEntries, DirEntriesPlus, FuseStat, SetAttrArgs } from './boundary.js';
export { toFuseStat } from './stat.js';

/** The virtual counters file at the mount root. */
export const STATS_NAME = '.stats';
/** Its fixed size: the text is padded (or cut), so any snapshot matches the size the kernel cached. */
export const STATS_FILE_BYTES = 65536;
/** Its inode number (not one Ferry hands out: inode counters start low and grow by one). */
export const STATS_INO = 0x7fffffff;
/** The virtual file at the mount root that streams one line per operation while it is read (accesslog.ts). */
export const ACCESSLOG_NAME = '.accesslog';
export const ACCESSLOG_INO = 0x7ffffffe;

/** The mount's virtual files: not in listings, not writable. */
function isVirtual(ino: number): boolean {
  return ino === STATS_INO || ino === ACCESSLOG_INO;
}
/** .stats handles are numbered from here (Vfs numbers its handles from 1). */
const STATS_FH_BASE = 0x40000000;

/** Entries asked of the engine per readdir page. */
const READDIR_PAGE = 1000;
/**
 * Listings kept across directory handles (see `listings`), in entries in all: about 150 bytes each. A larger
 * directory is listed anew at every opendir.
 */
const LISTING_CACHE_ENTRIES_MAX = 200_000;
/** Entries more than asked that a refresh of a listing's attributes scans (names added since it was taken). */
const REFRESH_SLACK = 64;
/**
 * Extended attributes the mount keeps no values for: setting one fails ENOTSUP (EOPNOTSUPP), listxattr leaves
 * them out, and getxattr answers the errno below — in the addon itself, without a call (`xattrAnswers`):
 *   - POSIX ACLs: FUSE 2 has no ACL support and Ferry keeps none (mode bits only). EOPNOTSUPP, as a file
 *     system mounted without ACLs answers: cp -a, rsync -A and getfacl fall back to the mode bits, and
 *     `ls -l` stops asking for the rest of the mount's files (it asks for every file while the answer is
 *     ENODATA: a round trip per name of a listing);
 *   - security.selinux: Ferry keeps no SELinux labels (an SELinux host labels a FUSE mount itself, genfs,
 *     and answers for them before a request reaches the mount). EOPNOTSUPP, for the same reason as above;
 *   - security.capability: file capabilities are not kept (as on a nosuid mount). The kernel asks before
 *     every write whether the file carries capabilities to drop: ENODATA, "none".
 */
const NO_XATTRS = new Map<string, 'ENODATA' | 'ENOTSUP'>([
  ['system.posix_acl_access', 'ENOTSUP'],
  ['system.posix_acl_default', 'ENOTSUP'],
  ['security.selinux', 'ENOTSUP'],
  ['security.capability', 'ENODATA'],
]);
/** How long a caller's supplementary groups are reused, ms. */
const GROUPS_TTL_MS = 2000;
/** Blocking lock waits retry between these delays, ms. */
const LOCK_RETRY_MIN_MS = 5;
const LOCK_RETRY_MAX_MS = 100;
/** Close-to-open memory: at most this many files' size and mtime. */
const SEEN_MAX = 100_000;
/** Open directory listings kept at once (a directory handle holds its listing from opendir to releasedir). */
const DIR_HANDLES_MAX = 10_000;

export interface MountLog {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string, err?: unknown): void;
}

const TYPE_OF_MODE = new Map<number, FileType>(Object.entries(TYPE_BITS).map(([t, bits]) => [bits, t as FileType]));

export interface FerryOpsOptions {
  readOnly: boolean;
  log: MountLog;
  stats: MountStats;
  /** Identity that owns new files (fuse-native does not pass the caller's). */
  ctx: Ctx;
  /**
   * How long a directory's listing with attributes may answer later opendirs (ms; 0: never): the kernel's
   * entry and attribute timeouts, the staleness the mount accepts anyway (see `listings`).
   */
  listingTtlMs?: number;
}

type C = Caller | undefined;

export class FerryOps {
  private readonly vfs: Vfs;
  private readonly ctx: Ctx;
  private readonly readOnly: boolean;
  private readonly log: MountLog;
  readonly stats: MountStats;
  readonly accessLog = new AccessLog();
  /**
   * The request being dispatched, set by the binding just before it calls `run` (synchronously) and only
   * while someone reads the access log; `run` takes it.
   */
  nextRequest: RequestInfo | undefined;
  /** Handles of the virtual files (.stats: its snapshot; .accesslog: an empty buffer, see accessLog). */
  private readonly statsHandles = new Map<number, Buffer>();
  private nextStatsFh = STATS_FH_BASE;
  /** Listings of open directories, by directory handle (taken at the first readdir from offset 0). */
  private readonly dirs = new Map<number, Listing | undefined>();
  /**
   * Listings with attributes by directory, kept for listingTtlMs to answer the next opendir of the same
   * directory without the engine: the kernel may cache what they hold for as long anyway (readdirplus
   * answers carry the age, so the kernel keeps them only for what is left of its timeouts). One is used only
   * while this client changed nothing since its reads began (Vfs.changes): its own changes show at once,
   * others' within the timeouts, as with the kernel's caches.
   */
  private readonly listings = new Map<number, Listing>();
  private listingEntries = 0;
  private readonly listingTtlMs: number;
  readonly xattrAnswers: ReadonlyArray<readonly [string, number]> = [...NO_XATTRS].map(([name, code]) => [name, ERRNO[code]] as const);
  private nextDirFh = 1;
  /** Callers' supplementary groups by pid, with when they were read. */
  private readonly groups = new Map<number, { at: number; gids: Promise<number[]> }>();
  /** Size and mtime of files as this mount last saw them at open or release (close-to-open keep_cache). */
  private readonly seen = new Map<number, { length: number; mtime: number }>();

  constructor(vfs: Vfs, opts: FerryOpsOptions) {
    this.vfs = vfs;
    this.ctx = opts.ctx;
    this.readOnly = opts.readOnly;
    this.log = opts.log;
    this.stats = opts.stats;
    this.listingTtlMs = opts.listingTtlMs ?? 0;
    const log = this.accessLog;
    gaugeOf(this.stats.registry, 'ferry_fuse_accesslog_readers', 'Handles reading /.accesslog now', () => log.readerCount);
    counterOf(this.stats.registry, 'ferry_fuse_accesslog_dropped_lines_total', 'Access log lines dropped for readers that fell behind', [], () => [[{}, log.dropped]]);
  }

  /** Runs one operation: exactly one answer, errors mapped to -errno, unknown errors logged (EIO). */
  run<T>(op: string, fn: () => Promise<T>, done: (res: number, value?: T) => void): void {
    const t0 = performance.now();
    const request = this.nextRequest;
    this.nextRequest = undefined;
    let answered = false;
    const answer = (res: number, value?: T): void => {
      if (answered) {
        this.log.error(`fuse ${op}: a second answer was dropped`);
        return;
      }
      answered = true;
      const seconds = (performance.now() - t0) / 1000;
      this.stats.record(op, res < 0, seconds);
      if (request !== undefined && this.accessLog.active && request.ino !== ACCESSLOG_INO && (request.fh === undefined || !this.accessLog.isReader(request.fh))) {
        this.accessLog.record(op, request.caller, request.describe(), res, seconds);
      }
      try {
        if (res < 0) done(res);
        else done(res, value);
      } catch (err) {
        this.log.error(`fuse ${op}: reply failed`, err);
      }
    };
    let p: Promise<T>;
    try {
      p = fn();
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (v) => answer(0, v),
      (err: unknown) => answer(-this.errno(op, err)),
    );
  }

  private errno(op: string, err: unknown): number {
    if (err instanceof FsError) return err.errno;
    this.log.error(`fuse ${op}: unexpected error (answered EIO)`, err);
    return toErrno(err);
  }

  private writable(): void {
    if (this.readOnly) throw new FsError('EROFS');
  }

  private handle(fh: number): Handle {
    return this.vfs.handle(fh);
  }

  // ---------------------------------------------------------------- paths (the fuse-native fallback)

  /** The inode a path names (not following a last symlink), for the path-based binding. */
  async inoOf(path: string): Promise<number> {
    if (path === '/' + STATS_NAME) return STATS_INO;
    if (path === '/' + ACCESSLOG_NAME) return ACCESSLOG_INO;
    return (await this.vfs.resolve(this.ctx, path, false)).ino;
  }

  /** The inode an open file handle is on (fuse-native's ftruncate: the name may be gone). */
  inoOfHandle(fh: number): number {
    return this.statsHandles.has(fh) ? STATS_INO : this.handle(fh).ino;
  }

  /** The directory that would hold a path's last component, and that name. */
  async parentOf(path: string): Promise<{ parent: number; name: string }> {
    const { parent, name } = await this.vfs.resolveParent(this.ctx, path);
    return { parent: parent.ino, name };
  }

  // ---------------------------------------------------------------- identity, .stats, page cache

  /** The identity of a request: the caller's under the addon, the mount's under fuse-native. */
  private async who(c: C): Promise<Ctx> {
    if (c === undefined) return this.ctx;
    if (c.uid === 0) return { uid: 0, gid: c.gid, gids: [] };
    return { uid: c.uid, gid: c.gid, gids: await this.groupsOf(c.pid) };
  }

  /** Supplementary groups of a process, from /proc/<pid>/status (none if it is gone), cached briefly. */
  private groupsOf(pid: number): Promise<number[]> {
    const now = Date.now();
    const hit = this.groups.get(pid);
    if (hit !== undefined && now - hit.at < GROUPS_TTL_MS) return hit.gids;
    if (this.groups.size > 1000) for (const [k, v] of this.groups) if (now - v.at >= GROUPS_TTL_MS) this.groups.delete(k);
    const gids = pid <= 0
      ? Promise.resolve([])
      : readFile(`/proc/${pid}/status`, 'utf8').then(
        (text) => {
          const line = /^Groups:[ \t]*(.*)$/m.exec(text)?.[1] ?? '';
          return line.split(/\s+/).filter((x) => x !== '').map(Number).filter((x) => Number.isInteger(x));
        },
        () => [],
      );
    this.groups.set(pid, { at: now, gids });
    return gids;
  }

  private async statsText(): Promise<Buffer> {
    const s = await this.vfs.statfs().catch(() => undefined);
    let text = await this.stats.statsText(s === undefined ? {} : { used_bytes: s.usedBytes, inodes: s.inodes });
    // Cut at a line: a reader never sees half a sample.
    if (text.length >= STATS_FILE_BYTES) text = text.slice(0, text.lastIndexOf('\n', STATS_FILE_BYTES - 2) + 1);
    const out = Buffer.alloc(STATS_FILE_BYTES, ' ');
    const n = out.write(text);
    out.fill(' ', n, STATS_FILE_BYTES - 1);
    out[STATS_FILE_BYTES - 1] = 0x0a;
    return out;
  }

  private statsAttr(): FuseStat {
    const now = Date.now();
    return {
      mode: TYPE_BITS.file | 0o444, uid: 0, gid: 0, size: STATS_FILE_BYTES, nlink: 1, ino: STATS_INO, rdev: 0,
      blksize: BLKSIZE, blocks: STATS_FILE_BYTES / 512, atime: now, mtime: now, ctime: now, dev: 0,
    };
  }

  /** The access log: size 0, read with direct I/O (the kernel passes every read, whatever the size). */
  private accessLogAttr(): FuseStat {
    const now = Date.now();
    return {
      mode: TYPE_BITS.file | 0o400, uid: this.ctx.uid, gid: this.ctx.gid, size: 0, nlink: 1, ino: ACCESSLOG_INO, rdev: 0,
      blksize: BLKSIZE, blocks: 0, atime: now, mtime: now, ctime: now, dev: 0,
    };
  }


  /** Whether the kernel may keep its cached pages of a file (unchanged since this mount last saw it). */
  private keepCache(a: Attr | undefined): boolean {
    if (a === undefined || a.type !== 'file') return false;
    const before = this.seen.get(a.ino);
    this.remember(a);
    return before !== undefined && before.length === a.length && before.mtime === a.mtime;
  }

  private remember(a: Attr): void {
    if (this.seen.size >= SEEN_MAX) this.seen.delete(this.seen.keys().next().value!);
    this.seen.delete(a.ino);
    this.seen.set(a.ino, { length: a.length, mtime: a.mtime });
  }

  /**
   * Attributes as the kernel should see them: with this process's buffered writes. Through Meta's lookup
   * cache: this client's own changes refresh or drop it, others' show within its TTL (as with lookup), and
   * the kernel asks again for a directory's attributes after every create or unlink in it.
   */
  private async attrOf(ino: number): Promise<FuseStat> {
    if (ino === STATS_INO) return this.statsAttr();
    if (ino === ACCESSLOG_INO) return this.accessLogAttr();
    return toFuseStat(await this.vfs.attr(ino));
  }

  /**
   * Retries fn until it reports success or the caller is interrupted (EINTR). A lock granted just as the
   * kernel gave up on the request would have no one to answer to: `undo` drops it again.
   */
  private async retryLock(c: C, fn: () => Promise<boolean>, undo: () => Promise<unknown>): Promise<void> {
    let delay = LOCK_RETRY_MIN_MS;
    for (;;) {
      if (await fn()) {
        if (c?.interrupted() === true) {
          await undo();
          throw new FsError('EINTR');
        }
        return;
      }
      if (c === undefined || c.interrupted()) throw new FsError('EINTR');
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(LOCK_RETRY_MAX_MS, delay * 2);
    }
  }

  // ---------------------------------------------------------------- names and attributes

  async lookup(c: C, parent: number, name: string): Promise<FuseStat> {
    if (parent === ROOT_INO && name === STATS_NAME) return this.statsAttr();
    if (parent === ROOT_INO && name === ACCESSLOG_NAME) return this.accessLogAttr();
    return toFuseStat(await this.vfs.lookup(this.ctx, parent, name));
  }

  getattr(c: C, ino: number): Promise<FuseStat> {
    return this.attrOf(ino);
  }

  async setattr(c: C, ino: number, set: SetAttrArgs): Promise<FuseStat> {
    this.writable();
    if (isVirtual(ino)) throw new FsError('EPERM');
    const rest: SetAttr & { size?: number } = {};
    if (set.size !== undefined) rest.size = set.size;
    if (set.mode !== undefined) rest.mode = set.mode & 0o7777;
    // (uid_t)-1 leaves the id as it is.
    if (set.uid !== undefined && set.uid !== 0xffffffff) rest.uid = set.uid;
    if (set.gid !== undefined && set.gid !== 0xffffffff) rest.gid = set.gid;
    if (set.atime !== undefined && set.atime !== 'omit') rest.atime = set.atime;
    if (set.mtime !== undefined && set.mtime !== 'omit') rest.mtime = set.mtime;
    return toFuseStat(await this.vfs.setattr(await this.who(c), ino, rest));
  }

  async readlink(c: C, ino: number): Promise<string> {
    return this.vfs.readlink(ino);
  }

  async mknod(c: C, parent: number, name: string, mode: number, rdev: number): Promise<FuseStat> {
    this.writable();
    const type = TYPE_OF_MODE.get(mode & S_IFMT);
    if (type === undefined || type === 'dir' || type === 'symlink') throw new FsError('EINVAL', 'mknod: bad file type');
    return toFuseStat(await this.vfs.mknod(await this.who(c), parent, name, type, mode & 0o7777, rdev));
  }

  async mkdir(c: C, parent: number, name: string, mode: number): Promise<FuseStat> {
    this.writable();
    return toFuseStat(await this.vfs.mkdir(await this.who(c), parent, name, mode & 0o7777));
  }

  async unlink(c: C, parent: number, name: string): Promise<void> {
    this.writable();
    await this.vfs.unlink(await this.who(c), parent, name);
  }

  async rmdir(c: C, parent: number, name: string): Promise<void> {
    this.writable();
    await this.vfs.rmdir(await this.who(c), parent, name);
  }

  async symlink(c: C, parent: number, name: string, target: string): Promise<FuseStat> {
    this.writable();
    return toFuseStat(await this.vfs.symlink(await this.who(c), parent, name, target));
  }

  async rename(c: C, parent: number, name: string, newParent: number, newName: string, flags: number): Promise<void> {
    this.writable();
    await this.vfs.rename(await this.who(c), parent, name, newParent, newName, flags);
  }

  async link(c: C, ino: number, newParent: number, newName: string): Promise<FuseStat> {
    this.writable();
    if (isVirtual(ino)) throw new FsError('EPERM');
    const ctx = await this.who(c);
    return toFuseStat(await this.vfs.link(ctx, ino, newParent, newName));
  }

  // ---------------------------------------------------------------- files

  async open(c: C, ino: number, flags: number): Promise<OpenReply> {
    if (ino === STATS_INO) {
      if ((flags & O_ACCMODE) !== 0) throw new FsError('EACCES');
      const fh = this.nextStatsFh++;
      this.statsHandles.set(fh, await this.statsText());
      this.stats.handlesOpen++;
      return { fh, directIo: false };
    }
    if (ino === ACCESSLOG_INO) {
      if ((flags & O_ACCMODE) !== 0) throw new FsError('EACCES');
      const fh = this.nextStatsFh++;
      this.accessLog.open(fh);
      this.statsHandles.set(fh, Buffer.alloc(0));
      this.stats.handlesOpen++;
      return { fh, directIo: true };
    }
    if ((flags & O_ACCMODE) !== 0 || (flags & O_APPEND) !== 0) this.writable();
    // O_CREAT, O_EXCL and O_TRUNC are the kernel's (lookup, create, setattr before open).
    const h = await this.vfs.open(await this.who(c), ino, flags & (O_ACCMODE | O_APPEND));
    this.stats.handlesOpen++;
    return { fh: h.fh, keepCache: this.keepCache(h.openedAttr) };
  }

  async create(c: C, parent: number, name: string, mode: number, flags: number): Promise<{ attr: FuseStat; open: OpenReply }> {
    this.writable();
    if (parent === ROOT_INO && (name === STATS_NAME || name === ACCESSLOG_NAME)) throw new FsError('EEXIST');
    const { attr: a, handle: h } = await this.vfs.create(await this.who(c), parent, name, mode, flags);
    this.remember(a);
    this.stats.handlesOpen++;
    return { attr: toFuseStat(a), open: { fh: h.fh } };
  }

  /** Up to len bytes at pos; the buffer may be a view of a cached block: read it before the next await. */
  async read(c: C, fh: number, len: number, pos: number): Promise<Buffer> {
    if (this.accessLog.isReader(fh)) return this.accessLog.read(fh, len, () => c?.interrupted() === true);
    const text = this.statsHandles.get(fh);
    if (text !== undefined) return text.subarray(Math.min(pos, text.length), Math.min(pos + len, text.length));
    const data = await this.vfs.readView(this.handle(fh), pos, len);
    this.stats.bytesRead += data.length;
    return data;
  }

  async write(c: C, fh: number, buf: Buffer, len: number, pos: number): Promise<number> {
    this.writable();
    // The writer copies the bytes: buf may be reused once the request is answered.
    await this.vfs.write(this.handle(fh), buf.subarray(0, len), pos);
    this.stats.bytesWritten += len;
    return len;
  }

  /** close(2) of one file descriptor: the buffered writes are committed and the owner's POSIX locks go. */
  async flush(c: C, fh: number, owner: string | undefined): Promise<void> {
    if (this.statsHandles.has(fh)) return;
    const h = this.handle(fh);
    try {
      await this.vfs.flush(h);
    } finally {
      if (owner !== undefined && this.vfs.mayHoldLocks(h.ino)) await this.vfs.setlk(h, owner, 'u', 0, LOCK_EOF);
    }
  }

  async fsync(c: C, fh: number): Promise<void> {
    if (this.statsHandles.has(fh)) return;
    await this.vfs.flush(this.handle(fh));
  }

  /** The last close of an open file. flockOwner: the open file's flock to release with it. */
  async release(c: C, fh: number, flockOwner: string | undefined): Promise<void> {
    this.stats.handlesOpen--;
    this.accessLog.release(fh);
    if (this.statsHandles.delete(fh)) return;
    const h = this.handle(fh);
    try {
      if (flockOwner !== undefined) await this.vfs.flock(h, flockOwner, 'un');
    } finally {
      await this.vfs.release(h);
    }
    // What this mount wrote is in the kernel's cache: the size and mtime after it stand for "unchanged".
    if (h.writable) {
      const a = await this.vfs.attr(h.ino).catch(() => undefined);
      if (a !== undefined) this.remember(a);
    }
  }

  async fallocate(c: C, fh: number, mode: number, offset: number, length: number): Promise<void> {
    this.writable();
    if (this.statsHandles.has(fh)) throw new FsError('EBADF');
    await this.vfs.fallocate(this.handle(fh), mode, offset, length);
  }

  // ---------------------------------------------------------------- directories

  async opendir(c: C, ino: number): Promise<number> {
    const a = await this.vfs.attr(ino);
    if (a.type !== 'dir') throw new FsError('ENOTDIR');
    if (this.dirs.size >= DIR_HANDLES_MAX) this.dirs.delete(this.dirs.keys().next().value!);
    const fh = this.nextDirFh++;
    this.dirs.set(fh, undefined);
    return fh;
  }

  /** Entries from offset on (at most what bytes can hold); the listing is taken anew at offset 0. */
  async readdir(c: C, ino: number, fh: number, offset: number, bytes: number): Promise<DirEntries> {
    let d = this.dirs.get(fh);
    if (d === undefined || offset === 0) {
      d = await this.list(ino, false);
      if (this.dirs.has(fh)) this.dirs.set(fh, d);
    }
    const listing = d;
    await listing.until(() => listing.rangeReady(offset, bytes));
    return listing.range(offset, bytes);
  }

  /**
   * Entries with their attributes from offset on (what bytes can hold). At offset 0 the handle takes a
   * listing: a kept one (see `listings`) or one from the engine, names and attributes from the same reads,
   * filled page by page while the first requests are answered. Attributes go out read after this client's
   * last change and younger than the listing TTL: a range that this client may have changed since (a chmod
   * between two requests, which the kernel would otherwise see undone) or that is older (a slow reader of a
   * big directory: the kernel could keep them for no time at all and would look each name up) is read again
   * first, in one scan.
   */
  async readdirplus(c: C, ino: number, fh: number, offset: number, bytes: number): Promise<DirEntriesPlus> {
    let d = this.dirs.get(fh);
    if (d === undefined || offset === 0 || !d.hasAttrs) {
      // A plain listing already handed out in part is not taken anew (its offsets would move): the kernel
      // mixes plain and plus requests only under READDIRPLUS_AUTO, which the addon does not ask for.
      d = d !== undefined && offset > 0 ? await this.withAttrs(d) : await this.listPlus(ino);
      if (this.dirs.has(fh)) this.dirs.set(fh, d);
    }
    const listing = d;
    await listing.until(() => listing.plusReady(offset, bytes));
    const from = Math.min(offset, listing.size);
    const to = listing.plusEnd(from, bytes);
    if (this.listingTtlMs > 0 && !listing.fresh(from, to, performance.now(), this.listingTtlMs, this.vfs.changes)) await this.refreshAttrs(ino, listing, from, to);
    return listing.viewPlus(from, to, performance.now());
  }

  releasedir(c: C, fh: number): Promise<void> {
    const d = this.dirs.get(fh);
    this.dirs.delete(fh);
    // A listing still being read that no handle and no one later may use: its reads can stop.
    if (d !== undefined && !d.complete && this.listings.get(d.inos[0]!) !== d && ![...this.dirs.values()].includes(d)) d.abandoned = true;
    return Promise.resolve();
  }

  /** A listing with attributes: a kept one while it may stand (see `listings`), else from the engine. */
  private async listPlus(ino: number): Promise<Listing> {
    const kept = this.listings.get(ino);
    if (kept !== undefined) {
      if (kept.takenChanges === this.vfs.changes && performance.now() - kept.takenAt < this.listingTtlMs) return kept;
      this.forgetListing(ino);
    }
    return this.list(ino, true, (d) => {
      // Kept only if nothing of this client's changed while it was read.
      if (this.listingTtlMs <= 0 || d.takenChanges !== this.vfs.changes || d.size > LISTING_CACHE_ENTRIES_MAX) return;
      this.forgetListing(ino);
      for (const k of this.listings.keys()) {
        if (this.listingEntries + d.size <= LISTING_CACHE_ENTRIES_MAX) break;
        this.forgetListing(k);
      }
      this.listings.set(ino, d);
      this.listingEntries += d.size;
    });
  }

  private forgetListing(ino: number): void {
    const kept = this.listings.get(ino);
    if (kept === undefined) return;
    this.listings.delete(ino);
    this.listingEntries -= kept.size;
  }

  /**
   * Reads the attributes of entries [from, to) again, in one scan from the name before them. An entry that
   * is gone, or names another inode now, goes out without attributes (the kernel looks it up if it needs it).
   */
  private async refreshAttrs(ino: number, d: Listing, from: number, to: number): Promise<void> {
    const readAt = performance.now();
    const changes = this.vfs.changes;
    const dots = Math.min(to, 2);
    if (from < dots) {
      const dir = await this.vfs.attr(ino);
      for (let i = from; i < dots; i++) d.setAttr(i, { ...dir, ino: d.inos[i]! }, readAt, changes);
    }
    const first = Math.max(from, 2);
    if (first >= to) return;
    const page = await this.vfs.readdir(this.ctx, ino, { ...(first > 2 ? { after: d.names[first - 1]! } : {}), limit: to - first + REFRESH_SLACK, plus: true });
    const now = new Map<string, Attr>();
    for (const e of page) if (e.attr !== undefined) now.set(e.name, e.attr);
    for (let i = first; i < to; i++) {
      const a = now.get(d.names[i]!);
      d.setAttr(i, a !== undefined && a.ino === d.inos[i] ? a : undefined, readAt, changes);
    }
  }

  /** A plain listing (complete) with attributes added (each through the lookup cache). */
  private async withAttrs(d: Listing): Promise<Listing> {
    await d.until(() => d.complete);
    const out = new Listing(performance.now(), this.vfs.changes, true);
    for (let i = 0; i < d.size; i++) out.add(d.names[i]!, d.inos[i]!, d.modes[i]!, await this.vfs.attr(d.inos[i]!).catch(() => undefined));
    out.finish();
    return out;
  }

  /**
   * The directory's listing ("." and ".." first), with attributes if asked: answered once the directory is
   * known to be one; its entries are read from the engine in the background, a page at a time, each page's
   * attributes from the same reads, yielding to the event loop between pages (the kernel's requests for the
   * first entries are answered meanwhile). `done` is called once it is complete without failure.
   */
  private async list(ino: number, withAttrs: boolean, done?: (d: Listing) => void): Promise<Listing> {
    const out = new Listing(performance.now(), this.vfs.changes, withAttrs);
    const d = await this.vfs.attr(ino);
    if (d.type !== 'dir') throw new FsError('ENOTDIR');
    // The kernel takes no attributes with "." and ".." (the addon sends them without): inode and type suffice.
    const parent = d.ino === ROOT_INO ? ROOT_INO : d.parent;
    out.add('.', d.ino, TYPE_BITS.dir, d);
    out.add('..', parent, TYPE_BITS.dir, { ...d, ino: parent });
    const fill = async (): Promise<void> => {
      let after: string | undefined;
      for (;;) {
        if (out.abandoned) throw new FsError('EINTR', 'listing no longer wanted');
        const readAt = performance.now();
        const changes = this.vfs.changes;
        const page = await this.vfs.readdir(this.ctx, d.ino, { ...(after === undefined ? {} : { after }), limit: READDIR_PAGE, plus: withAttrs });
        for (const e of page) {
          if (d.ino === ROOT_INO && (e.ino === TRASH_INO || e.name === TRASH_NAME)) continue;
          out.add(e.name, e.ino, TYPE_BITS[e.type], e.attr, readAt, changes);
        }
        if (page.length < READDIR_PAGE) return;
        out.added();
        after = page[page.length - 1]!.name;
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    fill().then(
      () => {
        out.finish();
        done?.(out);
      },
      (err: unknown) => out.finish(err),
    );
    return out;
  }

  fsyncdir(): Promise<void> {
    return Promise.resolve();
  }

  // ---------------------------------------------------------------- the rest

  async statfs(): Promise<FuseStatfs> {
    const s = await this.vfs.statfs();
    // fuse-native passes 32-bit fields: grow the fragment size until the block counts fit.
    let frsize = s.bsize;
    while (s.blocks * (s.bsize / frsize) >= 2 ** 32) frsize *= 2;
    const scale = s.bsize / frsize;
    const files = Math.min(s.files, 2 ** 32 - 1);
    return {
      bsize: BLKSIZE,
      frsize,
      blocks: Math.floor(s.blocks * scale),
      bfree: Math.floor(s.bfree * scale),
      bavail: Math.floor(s.bavail * scale),
      files,
      ffree: Math.max(0, files - s.inodes),
      favail: Math.max(0, files - s.inodes),
      fsid: 0,
      flag: 0,
      namemax: 255,
    };
  }

  async access(c: C, ino: number, mask: number): Promise<void> {
    if (isVirtual(ino)) return;
    await this.vfs.access(await this.who(c), ino, mask);
  }

  async setxattr(c: C, ino: number, name: string, value: Buffer, flags: number): Promise<void> {
    this.writable();
    const no = NO_XATTRS.get(name);
    if (no !== undefined) throw new FsError('ENOTSUP', `${name} is not kept on a Ferry mount`);
    if (isVirtual(ino)) throw new FsError('EPERM');
    await this.vfs.setxattr(await this.who(c), ino, name, Buffer.from(value), flags);
  }

  /** Names of NO_XATTRS are answered by the addon; this answers them the same way (fuse-native, tests). */
  async getxattr(c: C, ino: number, name: string): Promise<Buffer> {
    const no = NO_XATTRS.get(name);
    if (no !== undefined) throw new FsError(no);
    if (isVirtual(ino)) throw new FsError('ENODATA');
    return this.vfs.getxattr(await this.who(c), ino, name);
  }

  async listxattr(c: C, ino: number): Promise<string[]> {
    if (isVirtual(ino)) return [];
    // Values stored before the mount stopped keeping these names (or through the SDK) are not listed: they
    // could not be read.
    return (await this.vfs.listxattr(await this.who(c), ino)).filter((n) => !NO_XATTRS.has(n));
  }

  async removexattr(c: C, ino: number, name: string): Promise<void> {
    this.writable();
    const no = NO_XATTRS.get(name);
    if (no !== undefined) throw new FsError(no);
    if (isVirtual(ino)) throw new FsError('ENODATA');
    await this.vfs.removexattr(await this.who(c), ino, name);
  }

  /** fcntl F_GETLK: the conflicting lock, or undefined. */
  async getlk(c: C, fh: number, lk: FuseLock, owner: string): Promise<FuseLock | undefined> {
    if (this.statsHandles.has(fh) || lk.type === 'u') return undefined;
    const conflict = await this.vfs.getlk(this.handle(fh), owner, lk.type, lk.start, Math.min(lk.end, LOCK_EOF));
    return conflict === undefined ? undefined : { type: conflict.type, start: conflict.start, end: conflict.end, pid: conflict.pid };
  }

  /** fcntl F_SETLK (wait false: EAGAIN on a conflict) and F_SETLKW (wait true: until granted or EINTR). */
  async setlk(c: C, fh: number, lk: FuseLock, owner: string, wait: boolean): Promise<void> {
    if (this.statsHandles.has(fh)) return;
    const vfs = this.vfs;
    const h = this.handle(fh);
    const { start, type } = lk;
    const end = Math.min(lk.end, LOCK_EOF);
    const pid = c?.pid ?? lk.pid;
    if (!wait || type === 'u') {
      if ((await vfs.setlk(h, owner, type, start, end, pid)) !== undefined) throw new FsError('EAGAIN');
      return;
    }
    await this.retryLock(c, async () => (await vfs.setlk(h, owner, type, start, end, pid)) === undefined, () => vfs.setlk(h, owner, 'u', start, end));
  }

  async flock(c: C, fh: number, op: 'sh' | 'ex' | 'un', wait: boolean, owner: string): Promise<void> {
    if (this.statsHandles.has(fh)) return;
    const vfs = this.vfs;
    const h = this.handle(fh);
    const pid = c?.pid ?? 0;
    if (!wait || op === 'un') {
      if (!(await vfs.flock(h, owner, op, pid))) throw new FsError('EAGAIN');
      return;
    }
    await this.retryLock(c, () => vfs.flock(h, owner, op, pid), () => vfs.flock(h, owner, 'un'));
  }
}
