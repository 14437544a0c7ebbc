/**
 * FUSE operations (fuse-native's path-based handlers) over Vfs and Meta. The kernel resolves symlinks and
 * checks permissions (default_permissions); each handler resolves its path to an inode through Vfs (names
 * and attributes come from Meta's lookup cache: own changes invalidate it, others' show within its TTL) and
 * calls the inode-level operation, so every failure maps 1:1 to an errno with toErrno.
 *
 * Every handler replies exactly once: `run` turns the handler's promise (or a synchronous throw) into one
 * callback, maps errors to -errno, and logs errors that are not FsErrors (they become EIO).
 */

import { FsError, toErrno } from '../errors.js';
import { ROOT_INO, TRASH_INO, TRASH_NAME, TYPE_BITS, S_IFMT, type Attr, type Ctx, type FileType } from '../meta/types.js';
import { O_ACCMODE, O_APPEND, O_RDWR, Vfs, type Handle } from '../vfs/vfs.js';
import type { FuseCallback } from './native.js';
import type { MountStats } from './stats.js';

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
/** utimens gets UTIME_NOW and UTIME_OMIT as tv_sec 0 and tv_nsec ~2^30, i.e. 1073 ms. */
const UTIME_SPECIAL_MS_MAX = 1074;

export interface MountLog {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string, err?: unknown): void;
}

/** The stat object fuse-native turns into struct stat (times in ms). */
export interface FuseStat {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  ino: number;
  rdev: number;
  blksize: number;
  blocks: number;
  atime: number;
  mtime: number;
  ctime: number;
  dev: number;
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
    atime: Math.floor(a.atime),
    mtime: Math.floor(a.mtime),
    ctime: Math.floor(a.ctime),
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

  /** The handlers object for fuse-native. */
  handlers(): Record<string, (...args: never[]) => void> {
    const vfs = this.vfs;
    const meta = vfs.meta;
    const ctx = this.ctx;
    const handle = (fd: number): Handle => vfs.handle(fd);

    return {
      init: (cb: FuseCallback) => this.run('init', cb, () => Promise.resolve(0)),

      getattr: (path: string, cb: FuseCallback) =>
        this.run('getattr', cb, async () => {
          if (path === STATS_PATH) return [0, this.statsAttr()];
          return [0, toFuseStat(vfs.withWriterLength(await this.resolve(path)))];
        }),

      readdir: (path: string, cb: (res: number, names?: string[], stats?: unknown[]) => void) =>
        this.run('readdir', (res, v) => (v === undefined ? cb(res) : cb(res, ...(v as [string[], unknown[]]))), async () => {
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
          // fuse-native passes each stat to the filler (d_ino, d_type); a full stat is not needed.
          return [0, [names, stats]];
        }),

      open: (path: string, flags: number, cb: FuseCallback) =>
        this.run('open', cb, async () => {
          if (path === STATS_PATH) {
            if ((flags & O_ACCMODE) !== 0) throw new FsError('EACCES');
            const fh = this.nextStatsFh++;
            this.statsHandles.set(fh, await this.statsText());
            this.stats.handlesOpen++;
            return [0, fh];
          }
          if ((flags & O_ACCMODE) !== 0 || (flags & O_APPEND) !== 0) this.writable();
          const a = await this.resolve(path);
          // O_CREAT, O_EXCL and O_TRUNC are the kernel's (lookup, create, setattr before open).
          const h = await vfs.open(ctx, a.ino, flags & (O_ACCMODE | O_APPEND));
          this.stats.handlesOpen++;
          return [0, h.fh];
        }),

      create: (path: string, mode: number, cb: FuseCallback) =>
        this.run('create', cb, async () => {
          this.writable();
          const { parent, name } = await vfs.resolveParent(ctx, path);
          const a = await meta.create(ctx, parent.ino, name, mode & 0o7777);
          // The flags of create are not passed by fuse-native: read-write serves every access mode.
          const h = await vfs.open({ ...ctx, uid: 0 }, a.ino, O_RDWR);
          this.stats.handlesOpen++;
          return [0, h.fh];
        }),

      read: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: FuseCallback) =>
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

      write: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: FuseCallback) =>
        this.run('write', cb, async () => {
          this.writable();
          // The writer copies the bytes: buf is the kernel request's memory, reused after the reply.
          await vfs.write(handle(fd), buf.subarray(0, len), pos);
          this.stats.bytesWritten += len;
          return len;
        }),

      flush: (path: string, fd: number, cb: FuseCallback) =>
        this.run('flush', cb, async () => {
          if (this.statsHandles.has(fd)) return 0;
          await vfs.flush(handle(fd));
          return 0;
        }),

      fsync: (path: string, datasync: number, fd: number, cb: FuseCallback) =>
        this.run('fsync', cb, async () => {
          if (this.statsHandles.has(fd)) return 0;
          await vfs.flush(handle(fd));
          return 0;
        }),

      fsyncdir: (path: string, datasync: number, fd: number, cb: FuseCallback) => this.run('fsyncdir', cb, () => Promise.resolve(0)),

      release: (path: string, fd: number, cb: FuseCallback) =>
        this.run('release', cb, async () => {
          this.stats.handlesOpen--;
          if (this.statsHandles.delete(fd)) return 0;
          await vfs.release(handle(fd));
          return 0;
        }),

      truncate: (path: string, size: number, cb: FuseCallback) =>
        this.run('truncate', cb, async () => {
          this.writable();
          const a = await this.resolve(path);
          await vfs.truncate(a.ino, size);
          return 0;
        }),

      ftruncate: (path: string, fd: number, size: number, cb: FuseCallback) =>
        this.run('ftruncate', cb, async () => {
          this.writable();
          await vfs.truncate(handle(fd).ino, size);
          return 0;
        }),

      chmod: (path: string, mode: number, cb: FuseCallback) =>
        this.run('chmod', cb, async () => {
          this.writable();
          const a = await this.resolve(path);
          await meta.setattr(ctx, a.ino, { mode: mode & 0o7777 });
          return 0;
        }),

      chown: (path: string, uid: number, gid: number, cb: FuseCallback) =>
        this.run('chown', cb, async () => {
          this.writable();
          const a = await this.resolve(path);
          // (uid_t)-1 leaves the id as it is.
          await meta.setattr(ctx, a.ino, { ...(uid !== 0xffffffff ? { uid } : {}), ...(gid !== 0xffffffff ? { gid } : {}) });
          return 0;
        }),

      utimens: (path: string, atime: number, mtime: number, cb: FuseCallback) =>
        this.run('utimens', cb, async () => {
          this.writable();
          const a = await this.resolve(path);
          const t = (ms: number): number | 'now' => (ms < UTIME_SPECIAL_MS_MAX ? 'now' : ms);
          await meta.setattr(ctx, a.ino, { atime: t(atime), mtime: t(mtime) });
          return 0;
        }),

      readlink: (path: string, cb: FuseCallback) =>
        this.run('readlink', cb, async () => {
          const a = await this.resolve(path);
          return [0, await meta.readlink(a.ino)];
        }),

      mknod: (path: string, mode: number, dev: number, cb: FuseCallback) =>
        this.run('mknod', cb, async () => {
          this.writable();
          const type = TYPE_OF_MODE.get(mode & S_IFMT);
          if (type === undefined || type === 'dir' || type === 'symlink') throw new FsError('EINVAL', 'mknod: bad file type');
          const { parent, name } = await vfs.resolveParent(ctx, path);
          await meta.mknod(ctx, parent.ino, name, type, mode & 0o7777, { rdev: dev });
          return 0;
        }),

      mkdir: (path: string, mode: number, cb: FuseCallback) =>
        this.run('mkdir', cb, async () => {
          this.writable();
          const { parent, name } = await vfs.resolveParent(ctx, path);
          await meta.mkdir(ctx, parent.ino, name, mode & 0o7777);
          return 0;
        }),

      unlink: (path: string, cb: FuseCallback) =>
        this.run('unlink', cb, async () => {
          this.writable();
          const { parent, name } = await vfs.resolveParent(ctx, path);
          await meta.unlink(ctx, parent.ino, name);
          return 0;
        }),

      rmdir: (path: string, cb: FuseCallback) =>
        this.run('rmdir', cb, async () => {
          this.writable();
          const { parent, name } = await vfs.resolveParent(ctx, path);
          await meta.rmdir(ctx, parent.ino, name);
          return 0;
        }),

      rename: (src: string, dest: string, cb: FuseCallback) =>
        this.run('rename', cb, async () => {
          this.writable();
          const s = await vfs.resolveParent(ctx, src);
          const d = await vfs.resolveParent(ctx, dest);
          await meta.rename(ctx, s.parent.ino, s.name, d.parent.ino, d.name, 0);
          return 0;
        }),

      link: (src: string, dest: string, cb: FuseCallback) =>
        this.run('link', cb, async () => {
          this.writable();
          const a = await this.resolve(src);
          const d = await vfs.resolveParent(ctx, dest);
          await meta.link(ctx, a.ino, d.parent.ino, d.name);
          return 0;
        }),

      symlink: (target: string, path: string, cb: FuseCallback) =>
        this.run('symlink', cb, async () => {
          this.writable();
          const { parent, name } = await vfs.resolveParent(ctx, path);
          await meta.symlink(ctx, parent.ino, name, target);
          return 0;
        }),

      statfs: (path: string, cb: FuseCallback) =>
        this.run('statfs', cb, async () => {
          const s = await meta.statfs();
          // fuse-native passes 32-bit fields: grow the fragment size until the block counts fit.
          let frsize = s.bsize;
          while (s.blocks * (s.bsize / frsize) >= 2 ** 32) frsize *= 2;
          const scale = s.bsize / frsize;
          const files = Math.min(s.files, 2 ** 32 - 1);
          return [
            0,
            {
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
            },
          ];
        }),

      setxattr: (path: string, name: string, value: Buffer, position: number, flags: number, cb: FuseCallback) =>
        this.run('setxattr', cb, async () => {
          this.writable();
          if (ACL_XATTRS.has(name)) throw new FsError('ENOTSUP', 'no POSIX ACLs');
          const a = await this.resolve(path);
          await meta.setxattr(ctx, a.ino, name, Buffer.from(value), flags);
          return 0;
        }),

      getxattr: (path: string, name: string, position: number, cb: FuseCallback) =>
        this.run('getxattr', cb, async () => {
          if (path === STATS_PATH || ACL_XATTRS.has(name)) throw new FsError('ENODATA');
          const a = await this.resolve(path);
          return [0, await meta.getxattr(ctx, a.ino, name)];
        }),

      listxattr: (path: string, cb: FuseCallback) =>
        this.run('listxattr', cb, async () => {
          if (path === STATS_PATH) return [0, []];
          const a = await this.resolve(path);
          return [0, await meta.listxattr(ctx, a.ino)];
        }),

      removexattr: (path: string, name: string, cb: FuseCallback) =>
        this.run('removexattr', cb, async () => {
          this.writable();
          if (ACL_XATTRS.has(name)) throw new FsError('ENODATA');
          const a = await this.resolve(path);
          await meta.removexattr(ctx, a.ino, name);
          return 0;
        }),
    };
  }
}
