/**
 * FUSE operations (path-based FUSE 2.9 high-level handlers, see native.ts's FerryHandlers) over Vfs and
 * Meta. The kernel resolves symlinks and checks permissions (default_permissions); each handler resolves its
 * path to an inode through Vfs (names and attributes come from Meta's lookup cache: own changes invalidate
 * it, others' show within its TTL) and calls the inode-level operation, so every failure maps 1:1 to an
 * errno with toErrno.
 *
 * Identity: under Ferry's addon each request carries the caller (uid, gid, pid; supplementary groups are read
 * from /proc/<pid>/status and cached briefly): new files belong to the caller and Meta checks the caller's
 * permissions for what it changes. Paths are resolved as the mount (the kernel already checked the
 * caller's search permission). Under fuse-native there is no caller and the mount's identity is used.
 *
 * Locks (addon only): fcntl byte-range locks and flock go through Meta's lock records in the engine, so they
 * hold across processes, mounts and machines; blocking requests retry until granted or interrupted. The
 * high-level library releases POSIX locks on every flush (close) and flocks on the last release.
 *
 * Page cache (addon only): open keeps the kernel's cached pages (keep_cache) when the file's size and mtime
 * are what this mount saw at its last open or release of the file (close-to-open); otherwise they go.
 *
 * Every handler replies exactly once: `run` turns the handler's promise (or a synchronous throw) into one
 * callback, maps errors to -errno, and logs errors that are not FsErrors (they become EIO).
 */

import { readFile } from 'node:fs/promises';
import { FsError, toErrno } from '../errors.js';
import { LOCK_EOF } from '../meta/locks.js';
import { ROOT_INO, TRASH_INO, TRASH_NAME, TYPE_BITS, S_IFMT, type Attr, type Ctx, type FileType } from '../meta/types.js';
import { O_ACCMODE, O_APPEND, O_RDWR, Vfs, type Handle } from '../vfs/vfs.js';
import type { Caller, FerryHandlers, FuseCallback, FuseLock, FuseStat, FuseStatfs, OpenReply, TimeArg } from './native.js';
import type { MountStats } from './stats.js';

export type { FuseStat } from './native.js';

/** The virtual counters file at the mount root. */
export const STATS_NAME = '.stats';
const STATS_PATH = '/' + STATS_NAME;
/** Its fixed size: the text is padded, so any snapshot matches the size the kernel cached. */
export const STATS_FILE_BYTES = 16384;
const STATS_INO = 0x7fffffff;
/** .stats handles are numbered from here (Vfs numbers its handles from 1). */
const STATS_FH_BASE = 0x40000000;

/** st_blksize: the I/O size tools like cp use for their buffers. */
const BLKSIZE = 131072;
/** Entries asked of the engine per readdir page. */
const READDIR_PAGE = 1000;
/**
 * POSIX ACLs: the kernel passes their xattrs through (FUSE 2 has no ACL support). Ferry has no ACLs, so
 * setting one fails with ENOTSUP and tools (cp -a, rsync -A) fall back to chmod, as on a file system
 * mounted without ACLs.
 */
const ACL_XATTRS = new Set(['system.posix_acl_access', 'system.posix_acl_default']);
/** How long a caller's supplementary groups are reused, ms. */
const GROUPS_TTL_MS = 2000;
/** Blocking lock waits retry between these delays, ms. */
const LOCK_RETRY_MIN_MS = 5;
const LOCK_RETRY_MAX_MS = 100;
/** Close-to-open memory: at most this many files' size and mtime. */
const SEEN_MAX = 100_000;

export interface MountLog {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string, err?: unknown): void;
}

export function toFuseStat(a: Attr): FuseStat {
  return {
    mode: TYPE_BITS[a.type] | (a.mode & 0o7777),
    uid: a.uid,
    gid: a.gid,
    size: a.length,
    nlink: a.nlink,
    ino: a.ino,
    rdev: a.rdev,
    blksize: BLKSIZE,
    blocks: Math.ceil(a.length / 512),
    atime: a.atime,
    mtime: a.mtime,
    ctime: a.ctime,
    dev: 0,
  };
}

const TYPE_OF_MODE = new Map<number, FileType>(Object.entries(TYPE_BITS).map(([t, bits]) => [bits, t as FileType]));

export interface FerryOpsOptions {
  readOnly: boolean;
  log: MountLog;
  stats: MountStats;
  /** Identity that owns new files (fuse-native does not pass the caller's). */
  ctx: Ctx;
}

type Reply = number | [number, unknown];

export class FerryOps {
  private readonly vfs: Vfs;
  private readonly ctx: Ctx;
  private readonly readOnly: boolean;
  private readonly log: MountLog;
  readonly stats: MountStats;
  private readonly statsHandles = new Map<number, Buffer>();
  private nextStatsFh = STATS_FH_BASE;
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
  }

  /** Runs one handler: exactly one reply, errors mapped to -errno, unknown errors logged (EIO). */
  private run(op: string, cb: FuseCallback, fn: () => Promise<Reply>): void {
    const t0 = performance.now();
    let replied = false;
    const reply = (res: number, value?: unknown): void => {
      if (replied) {
        this.log.error(`fuse ${op}: a second reply was dropped`);
        return;
      }
      replied = true;
      this.stats.record(op, res < 0, (performance.now() - t0) / 1000);
      try {
        if (value === undefined) cb(res);
        else cb(res, value);
      } catch (err) {
        this.log.error(`fuse ${op}: reply failed`, err);
      }
    };
    let p: Promise<Reply>;
    try {
      p = fn();
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (r) => (typeof r === 'number' ? reply(r) : reply(r[0], r[1])),
      (err: unknown) => reply(-this.errno(op, err)),
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

  private resolve(path: string): Promise<Attr> {
    return this.vfs.resolve(this.ctx, path, false);
  }

  private async statsText(): Promise<Buffer> {
    const s = await this.vfs.meta.statfs().catch(() => undefined);
    const text = this.stats.render(s === undefined ? {} : { used_bytes: s.usedBytes, inodes: s.inodes });
    const out = Buffer.alloc(STATS_FILE_BYTES, ' ');
    const n = out.write(text.length < STATS_FILE_BYTES ? text : text.slice(0, STATS_FILE_BYTES - 1));
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

  /** The identity of a request: the caller's under the addon, the mount's under fuse-native. */
  private async who(c: Caller | undefined): Promise<Ctx> {
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
   * Retries fn until it reports success or the caller is interrupted (EINTR). A lock granted just as the
   * kernel gave up on the request would have no one to answer to: `undo` drops it again.
   */
  private async retryLock(c: Caller | undefined, fn: () => Promise<boolean>, undo: () => Promise<unknown>): Promise<void> {
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

  /** The handlers for either binding (see native.ts). */
  handlers(): FerryHandlers {
    const vfs = this.vfs;
    const meta = vfs.meta;
    const ctx = this.ctx;
    const handle = (fd: number): Handle => vfs.handle(fd);
    const getattr = async (path: string): Promise<Reply> => {
      if (path === STATS_PATH) return [0, this.statsAttr()];
      return [0, toFuseStat(vfs.withWriterLength(await this.resolve(path)))];
    };

    return {
      getattr: (c, path, cb) => this.run('getattr', cb, () => getattr(path)),

      fgetattr: (c, path, fd, cb) =>
        this.run('getattr', cb, async () => {
          if (path === STATS_PATH || this.statsHandles.has(fd)) return [0, this.statsAttr()];
          const h = vfs.handle(fd);
          return [0, toFuseStat(vfs.withWriterLength(await meta.getattrCached(h.ino)))];
        }),

      readdir: (c, path, cb) =>
        this.run('readdir', cb, async () => {
          const d = await this.resolve(path);
          if (d.type !== 'dir') throw new FsError('ENOTDIR');
          const names = ['.', '..'];
          const stats: Array<{ ino: number; mode: number }> = [
            { ino: d.ino, mode: TYPE_BITS.dir },
            { ino: d.ino === ROOT_INO ? ROOT_INO : d.parent, mode: TYPE_BITS.dir },
          ];
          let after: string | undefined;
          for (;;) {
            const page = await meta.readdir(ctx, d.ino, { ...(after === undefined ? {} : { after }), limit: READDIR_PAGE });
            for (const e of page) {
              if (d.ino === ROOT_INO && (e.ino === TRASH_INO || e.name === TRASH_NAME)) continue;
              names.push(e.name);
              stats.push({ ino: e.ino, mode: TYPE_BITS[e.type] });
            }
            if (page.length < READDIR_PAGE) break;
            after = page[page.length - 1]!.name;
          }
          // Each entry's d_ino and d_type; a full stat is not needed.
          return [0, { names, stats }];
        }),

      open: (c, path, flags, cb) =>
        this.run('open', cb, async () => {
          if (path === STATS_PATH) {
            if ((flags & O_ACCMODE) !== 0) throw new FsError('EACCES');
            const fh = this.nextStatsFh++;
            this.statsHandles.set(fh, await this.statsText());
            this.stats.handlesOpen++;
            return [0, { fh, directIo: false } satisfies OpenReply];
          }
          if ((flags & O_ACCMODE) !== 0 || (flags & O_APPEND) !== 0) this.writable();
          const a = await this.resolve(path);
          // O_CREAT, O_EXCL and O_TRUNC are the kernel's (lookup, create, setattr before open).
          const h = await vfs.open(await this.who(c), a.ino, flags & (O_ACCMODE | O_APPEND));
          this.stats.handlesOpen++;
          return [0, { fh: h.fh, keepCache: this.keepCache(h.openedAttr) } satisfies OpenReply];
        }),

      create: (c, path, mode, flags, cb) =>
        this.run('create', cb, async () => {
          this.writable();
          const { parent, name } = await vfs.resolveParent(ctx, path);
          const a = await meta.create(await this.who(c), parent.ino, name, mode & 0o7777);
          // The creator may open what it created whatever the mode (open(2) with O_CREAT).
          const acc = (flags & O_ACCMODE) === 3 ? O_RDWR : flags & O_ACCMODE;
          const h = await vfs.open({ ...ctx, uid: 0 }, a.ino, acc | (flags & O_APPEND));
          this.remember(a);
          this.stats.handlesOpen++;
          return [0, { fh: h.fh } satisfies OpenReply];
        }),

      read: (c, path, fd, buf, len, pos, cb) =>
        this.run('read', cb, async () => {
          const text = this.statsHandles.get(fd);
          if (text !== undefined) {
            const n = Math.max(0, Math.min(len, text.length - pos));
            text.copy(buf, 0, pos, pos + n);
            return n;
          }
          const n = await vfs.readTo(handle(fd), pos, buf.subarray(0, len));
          this.stats.bytesRead += n;
          return n;
        }),

      write: (c, path, fd, buf, len, pos, cb) =>
        this.run('write', cb, async () => {
          this.writable();
          // The writer copies the bytes: buf is the kernel request's memory, reused after the reply.
          await vfs.write(handle(fd), buf.subarray(0, len), pos);
          this.stats.bytesWritten += len;
          return len;
        }),

      flush: (c, path, fd, owner, cb) =>
        this.run('flush', cb, async () => {
          if (this.statsHandles.has(fd)) return 0;
          await vfs.flush(handle(fd));
          return 0;
        }),

      fsync: (c, path, datasync, fd, cb) =>
        this.run('fsync', cb, async () => {
          if (this.statsHandles.has(fd)) return 0;
          await vfs.flush(handle(fd));
          return 0;
        }),

      fsyncdir: (c, path, datasync, fd, cb) => this.run('fsyncdir', cb, () => Promise.resolve(0)),

      release: (c, path, fd, flockOwner, cb) =>
        this.run('release', cb, async () => {
          this.stats.handlesOpen--;
          if (this.statsHandles.delete(fd)) return 0;
          const h = handle(fd);
          try {
            if (flockOwner !== undefined) await meta.flock(h.ino, flockOwner, 'un');
          } finally {
            await vfs.release(h);
          }
          // What this mount wrote is in the kernel's cache: the size and mtime after it stand for "unchanged".
          if (h.writable) {
            const a = await meta.getattrCached(h.ino).catch(() => undefined);
            if (a !== undefined) this.remember(a);
          }
          return 0;
        }),

      truncate: (c, path, size, cb) =>
        this.run('truncate', cb, async () => {
          this.writable();
          const a = await this.resolve(path);
          await vfs.truncate(a.ino, size);
          return 0;
        }),

      ftruncate: (c, path, fd, size, cb) =>
        this.run('ftruncate', cb, async () => {
          this.writable();
          await vfs.truncate(handle(fd).ino, size);
          return 0;
        }),

      chmod: (c, path, mode, cb) =>
        this.run('chmod', cb, async () => {
          this.writable();
          const a = await this.resolve(path);
          await meta.setattr(await this.who(c), a.ino, { mode: mode & 0o7777 });
          return 0;
        }),

      chown: (c, path, uid, gid, cb) =>
        this.run('chown', cb, async () => {
          this.writable();
          const a = await this.resolve(path);
          // (uid_t)-1 leaves the id as it is.
          await meta.setattr(await this.who(c), a.ino, { ...(uid !== 0xffffffff ? { uid } : {}), ...(gid !== 0xffffffff ? { gid } : {}) });
          return 0;
        }),

      utimens: (c, path, atime, mtime, cb) =>
        this.run('utimens', cb, async () => {
          this.writable();
          const a = await this.resolve(path);
          const set: { atime?: number | 'now'; mtime?: number | 'now' } = {};
          const t = (v: TimeArg): number | 'now' | undefined => (v === 'omit' ? undefined : v);
          const at = t(atime);
          const mt = t(mtime);
          if (at !== undefined) set.atime = at;
          if (mt !== undefined) set.mtime = mt;
          if (at === undefined && mt === undefined) return 0;
          await meta.setattr(await this.who(c), a.ino, set);
          return 0;
        }),

      readlink: (c, path, cb) =>
        this.run('readlink', cb, async () => {
          const a = await this.resolve(path);
          return [0, await meta.readlink(a.ino)];
        }),

      mknod: (c, path, mode, dev, cb) =>
        this.run('mknod', cb, async () => {
          this.writable();
          const type = TYPE_OF_MODE.get(mode & S_IFMT);
          if (type === undefined || type === 'dir' || type === 'symlink') throw new FsError('EINVAL', 'mknod: bad file type');
          const { parent, name } = await vfs.resolveParent(ctx, path);
          await meta.mknod(await this.who(c), parent.ino, name, type, mode & 0o7777, { rdev: dev });
          return 0;
        }),

      mkdir: (c, path, mode, cb) =>
        this.run('mkdir', cb, async () => {
          this.writable();
          const { parent, name } = await vfs.resolveParent(ctx, path);
          await meta.mkdir(await this.who(c), parent.ino, name, mode & 0o7777);
          return 0;
        }),

      unlink: (c, path, cb) =>
        this.run('unlink', cb, async () => {
          this.writable();
          const { parent, name } = await vfs.resolveParent(ctx, path);
          await meta.unlink(await this.who(c), parent.ino, name);
          return 0;
        }),

      rmdir: (c, path, cb) =>
        this.run('rmdir', cb, async () => {
          this.writable();
          const { parent, name } = await vfs.resolveParent(ctx, path);
          await meta.rmdir(await this.who(c), parent.ino, name);
          return 0;
        }),

      rename: (c, src, dest, cb) =>
        this.run('rename', cb, async () => {
          this.writable();
          const s = await vfs.resolveParent(ctx, src);
          const d = await vfs.resolveParent(ctx, dest);
          await meta.rename(await this.who(c), s.parent.ino, s.name, d.parent.ino, d.name, 0);
          return 0;
        }),

      link: (c, src, dest, cb) =>
        this.run('link', cb, async () => {
          this.writable();
          const a = await this.resolve(src);
          const d = await vfs.resolveParent(ctx, dest);
          await meta.link(await this.who(c), a.ino, d.parent.ino, d.name);
          return 0;
        }),

      symlink: (c, target, path, cb) =>
        this.run('symlink', cb, async () => {
          this.writable();
          const { parent, name } = await vfs.resolveParent(ctx, path);
          await meta.symlink(await this.who(c), parent.ino, name, target);
          return 0;
        }),

      statfs: (c, path, cb) =>
        this.run('statfs', cb, async () => {
          const s = await meta.statfs();
          // fuse-native passes 32-bit fields: grow the fragment size until the block counts fit.
          let frsize = s.bsize;
          while (s.blocks * (s.bsize / frsize) >= 2 ** 32) frsize *= 2;
          const scale = s.bsize / frsize;
          const files = Math.min(s.files, 2 ** 32 - 1);
          const out: FuseStatfs = {
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
          return [0, out];
        }),

      setxattr: (c, path, name, value, flags, cb) =>
        this.run('setxattr', cb, async () => {
          this.writable();
          if (ACL_XATTRS.has(name)) throw new FsError('ENOTSUP', 'no POSIX ACLs');
          const a = await this.resolve(path);
          await meta.setxattr(await this.who(c), a.ino, name, Buffer.from(value), flags);
          return 0;
        }),

      getxattr: (c, path, name, cb) =>
        this.run('getxattr', cb, async () => {
          if (path === STATS_PATH || ACL_XATTRS.has(name)) throw new FsError('ENODATA');
          const a = await this.resolve(path);
          return [0, await meta.getxattr(await this.who(c), a.ino, name)];
        }),

      listxattr: (c, path, cb) =>
        this.run('listxattr', cb, async () => {
          if (path === STATS_PATH) return [0, []];
          const a = await this.resolve(path);
          return [0, await meta.listxattr(await this.who(c), a.ino)];
        }),

      removexattr: (c, path, name, cb) =>
        this.run('removexattr', cb, async () => {
          this.writable();
          if (ACL_XATTRS.has(name)) throw new FsError('ENODATA');
          const a = await this.resolve(path);
          await meta.removexattr(await this.who(c), a.ino, name);
          return 0;
        }),

      lock: (c, path, fd, cmd, lk, owner, cb) =>
        this.run('lock', cb, async () => {
          if (this.statsHandles.has(fd)) return cmd === 'get' ? [0, undefined] : 0;
          const ino = handle(fd).ino;
          const start = lk.start;
          const end = Math.min(lk.end, LOCK_EOF);
          if (cmd === 'get') {
            if (lk.type === 'u') return [0, undefined];
            const conflict = await meta.getlk(ino, owner, lk.type, start, end);
            return [0, conflict === undefined ? undefined : ({ type: conflict.type, start: conflict.start, end: conflict.end, pid: conflict.pid } satisfies FuseLock)];
          }
          const pid = c?.pid ?? lk.pid;
          if (cmd === 'set' || lk.type === 'u') {
            if ((await meta.setlk(ino, owner, lk.type, start, end, pid)) !== undefined) throw new FsError('EAGAIN');
            return 0;
          }
          await this.retryLock(c, async () => (await meta.setlk(ino, owner, lk.type, start, end, pid)) === undefined, () => meta.setlk(ino, owner, 'u', start, end));
          return 0;
        }),

      flock: (c, path, fd, op, wait, owner, cb) =>
        this.run('flock', cb, async () => {
          if (this.statsHandles.has(fd)) return 0;
          const ino = handle(fd).ino;
          const pid = c?.pid ?? 0;
          if (!wait || op === 'un') {
            if (!(await meta.flock(ino, owner, op, pid))) throw new FsError('EAGAIN');
            return 0;
          }
          await this.retryLock(c, () => meta.flock(ino, owner, op, pid), () => meta.flock(ino, owner, 'un'));
          return 0;
        }),

      fallocate: (c, path, fd, mode, offset, length, cb) =>
        this.run('fallocate', cb, async () => {
          this.writable();
          if (this.statsHandles.has(fd)) throw new FsError('EBADF');
          const h = handle(fd);
          if (!h.writable) throw new FsError('EBADF');
          // Buffered writes first, so the range operation sees (and may punch) them.
          await vfs.flush(h);
          await meta.fallocate(h.ino, mode, offset, length);
          return 0;
        }),
    };
  }
}
