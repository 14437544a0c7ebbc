/**
 * The FUSE binding under the mount: Ferry's own addon (native/fuse, package @ferryfs/fuse) when it is built,
 * else fuse-native 2.2.6 with its known gaps. Both run the FUSE 2.9 high-level API (path based); FerryOps
 * writes its handlers once against `FerryHandlers` and the two adapters below translate.
 *
 * The addon (native/fuse/src/ferry_fuse.c) passes what fuse-native cannot:
 *   - the caller's uid/gid/pid (fuse_get_context) with every request: new files belong to the caller and
 *     Meta's permission checks see the caller;
 *   - utimens with both times (seconds + nanoseconds, UTIME_NOW / UTIME_OMIT);
 *   - lock (F_GETLK/F_SETLK/F_SETLKW) and flock with the kernel's lock owner, so locks go through the
 *     metadata engine and hold across clients; blocked waits end with EINTR when the caller is interrupted;
 *   - fallocate; create's open flags; keep_cache/direct_io from open and create; st_ino as 64 bits;
 *   - any number of mount options (fuse-native copies them into 1024 bytes).
 *
 * fuse-native (fallback, measured against its C source, fuse-native.c):
 *   - no per-open flags (keep_cache, direct_io): `auto_cache` is used instead (the high-level library keeps the
 *     kernel's pages at open if size and mtime are unchanged);
 *   - no caller identity: permission checks are the kernel's (default_permissions) and new files belong to
 *     the mount process's user;
 *   - utimens passes atime twice (mtime is lost), in whole milliseconds;
 *   - no lock/flock (the kernel keeps locks local to this machine), no fallocate;
 *   - inode numbers cut to 32 bits; create's flags are not passed (the handle is opened read-write).
 */

import { readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { UsageError } from '../errors.js';

/** The callback of a handler: a result (0, a byte count or -errno) and an optional value. */
export type FuseCallback = (result: number, value?: unknown) => void;

/** Who makes a request (the addon only). */
export interface Caller {
  uid: number;
  gid: number;
  pid: number;
  /** Whether the kernel gave up on the request (an interrupted blocking lock wait). */
  interrupted(): boolean;
}

/** A time for utimens: ms since the epoch, or the special values. */
export type TimeArg = number | 'now' | 'omit';

/** What open and create answer. */
export interface OpenReply {
  fh: number;
  keepCache?: boolean;
  directIo?: boolean;
}

/** The stat object handlers answer (times in ms, possibly fractional). */
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

export interface FuseStatfs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  fsid: number;
  flag: number;
  namemax: number;
}

/** A POSIX lock as handlers see it: [start, end) (end Number.MAX_SAFE_INTEGER: to the end of the file). */
export interface FuseLock {
  type: 'r' | 'w' | 'u';
  start: number;
  end: number;
  pid: number;
}

type C = Caller | undefined;

/** Ferry's handlers, independent of the binding. `c` is undefined under fuse-native. */
export interface FerryHandlers {
  getattr(c: C, path: string, cb: FuseCallback): void;
  fgetattr(c: C, path: string, fh: number, cb: FuseCallback): void;
  readdir(c: C, path: string, cb: FuseCallback): void;
  open(c: C, path: string, flags: number, cb: FuseCallback): void;
  create(c: C, path: string, mode: number, flags: number, cb: FuseCallback): void;
  read(c: C, path: string, fh: number, buf: Buffer, len: number, pos: number, cb: FuseCallback): void;
  write(c: C, path: string, fh: number, buf: Buffer, len: number, pos: number, cb: FuseCallback): void;
  flush(c: C, path: string, fh: number, owner: string | undefined, cb: FuseCallback): void;
  fsync(c: C, path: string, datasync: number, fh: number, cb: FuseCallback): void;
  fsyncdir(c: C, path: string, datasync: number, fh: number, cb: FuseCallback): void;
  /** flockOwner: the open file's flock to release with it (the last close of a file that flocked). */
  release(c: C, path: string, fh: number, flockOwner: string | undefined, cb: FuseCallback): void;
  truncate(c: C, path: string, size: number, cb: FuseCallback): void;
  ftruncate(c: C, path: string, fh: number, size: number, cb: FuseCallback): void;
  chmod(c: C, path: string, mode: number, cb: FuseCallback): void;
  chown(c: C, path: string, uid: number, gid: number, cb: FuseCallback): void;
  utimens(c: C, path: string, atime: TimeArg, mtime: TimeArg, cb: FuseCallback): void;
  readlink(c: C, path: string, cb: FuseCallback): void;
  mknod(c: C, path: string, mode: number, dev: number, cb: FuseCallback): void;
  mkdir(c: C, path: string, mode: number, cb: FuseCallback): void;
  unlink(c: C, path: string, cb: FuseCallback): void;
  rmdir(c: C, path: string, cb: FuseCallback): void;
  rename(c: C, src: string, dest: string, cb: FuseCallback): void;
  link(c: C, src: string, dest: string, cb: FuseCallback): void;
  symlink(c: C, target: string, path: string, cb: FuseCallback): void;
  statfs(c: C, path: string, cb: FuseCallback): void;
  setxattr(c: C, path: string, name: string, value: Buffer, flags: number, cb: FuseCallback): void;
  getxattr(c: C, path: string, name: string, cb: FuseCallback): void;
  listxattr(c: C, path: string, cb: FuseCallback): void;
  removexattr(c: C, path: string, name: string, cb: FuseCallback): void;
  /** cmd: F_GETLK answers the conflicting FuseLock or undefined; F_SETLK(W) answer 0 or -errno. */
  lock(c: C, path: string, fh: number, cmd: 'get' | 'set' | 'setw', lk: FuseLock, owner: string, cb: FuseCallback): void;
  flock(c: C, path: string, fh: number, op: 'sh' | 'ex' | 'un', wait: boolean, owner: string, cb: FuseCallback): void;
  fallocate(c: C, path: string, fh: number, mode: number, offset: number, length: number, cb: FuseCallback): void;
}

/** What the mount code needs of a binding. */
export interface FuseInstance {
  /** Which binding serves the mount. */
  readonly backend: 'ferry-fuse' | 'fuse-native';
  /** Called once if the binding's loop ends by itself (unmounted from outside); the addon only. */
  onEnd?: (() => void) | undefined;
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
}

export interface FuseConstructor {
  new (mnt: string, ops: object, opts: object): { mount(cb: (err: Error | null) => void): void; unmount(cb: (err: Error | null) => void): void };
}

export interface MountArgs {
  /** Shown in /proc/mounts as the source, e.g. ferry:myvol. */
  fsname: string;
  readOnly?: boolean;
  allowOther?: boolean;
  /** Seconds the kernel may cache attributes and names. */
  attrTimeoutSec: number;
  entryTimeoutSec: number;
  /** Seconds the kernel may remember that a name does not exist. */
  negativeTimeoutSec: number;
  /** Largest write and read request, bytes. */
  maxWriteBytes: number;
  maxReadBytes: number;
  /** Kernel read-ahead, bytes. */
  readAheadBytes: number;
  debug?: boolean;
  /** The high-level library's close-to-open page cache (fuse-native, which cannot set keep_cache itself). */
  autoCache?: boolean;
}

/** The `-o` options for fuse_mount/fuse_new (FUSE 2.9 option names). */
export function mountOptions(a: MountArgs): string[] {
  const fsname = a.fsname.replace(/[,\\\s]/g, '_');
  return [
    `fsname=${fsname}`,
    'subtype=ferry',
    // Mount-level: the kernel checks permissions with the attributes Ferry returns.
    'default_permissions',
    ...(a.allowOther ? ['allow_other'] : []),
    ...(a.readOnly ? ['ro'] : []),
    `max_read=${a.maxReadBytes}`,
    // Low-level library: writes larger than a page, read-ahead.
    'big_writes',
    `max_write=${a.maxWriteBytes}`,
    `max_readahead=${a.readAheadBytes}`,
    // High-level library: Ferry's inode numbers, cache timeouts.
    'use_ino',
    'readdir_ino',
    `attr_timeout=${a.attrTimeoutSec}`,
    `entry_timeout=${a.entryTimeoutSec}`,
    `negative_timeout=${a.negativeTimeoutSec}`,
    ...(a.autoCache ?? true ? ['auto_cache'] : []),
    ...(a.debug ? ['debug'] : []),
  ];
}

/** The `-o` argument as one string (fuse-native's form). */
export function mountArgs(a: MountArgs): string {
  const arg = '-o' + mountOptions(a).join(',');
  // fuse-native copies the argument into a 1024-byte buffer.
  if (Buffer.byteLength(arg) >= 1024) throw new UsageError('mount options are too long');
  return arg;
}

let cached: { Fuse: FuseConstructor & Record<string, unknown> } | undefined;

/** Loads fuse-native; a missing libfuse.so.2 becomes one clear line. */
export function loadFuse(): FuseConstructor & Record<string, unknown> {
  if (cached !== undefined) return cached.Fuse;
  const require = createRequire(import.meta.url);
  try {
    cached = { Fuse: require('fuse-native') as FuseConstructor & Record<string, unknown> };
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    if (/libfuse\.so/.test(msg)) throw new UsageError('libfuse 2 is not installed: install it (Debian: apt-get install libfuse2 fuse) and try again');
    throw new UsageError(`cannot load fuse-native: ${msg}`);
  }
  return cached.Fuse;
}

/**
 * A fuse-native Fuse whose mount argument is `args`, and whose getxattr handler may answer ERANGE (the
 * stock one copies a value into a smaller kernel buffer and reports the full length).
 */
export function ferryFuseClass(args: string): FuseConstructor {
  const Fuse = loadFuse();
  const Base = Fuse as unknown as new (mnt: string, ops: object, opts: object) => FuseInstance & {
    ops: Record<string, (...a: unknown[]) => void>;
  };
  class FerryFuse extends Base {
    _fuseOptions(): string {
      return args;
    }

    /** As fuse-native's, with ERANGE for a value larger than a non-empty kernel buffer. */
    _op_getxattr(signal: (res: number, buf: ArrayBuffer) => void, path: string, name: string, valueBuf: Buffer, position: number): void {
      this.ops['getxattr']!(path, name, position, (err: number, value?: Buffer) => {
        if (err !== 0 && err !== undefined && err !== null) return signal(err, valueBuf.buffer as ArrayBuffer);
        if (value === undefined) return signal(-61, valueBuf.buffer as ArrayBuffer);
        if (valueBuf.length > 0 && value.length > valueBuf.length) return signal(-34, valueBuf.buffer as ArrayBuffer);
        value.copy(valueBuf);
        return signal(value.length, valueBuf.buffer as ArrayBuffer);
      });
    }

    /** As fuse-native's, with ERANGE when the names do not fit a non-empty kernel buffer. */
    _op_listxattr(signal: (res: number, buf: ArrayBuffer) => void, path: string, listBuf: Buffer): void {
      this.ops['listxattr']!(path, (err: number, list?: string[]) => {
        if ((err !== 0 && err !== undefined && err !== null) || list === undefined) return signal(err || -5, listBuf.buffer as ArrayBuffer);
        const size = list.reduce((n, s) => n + Buffer.byteLength(s) + 1, 0);
        if (listBuf.length === 0) return signal(size, listBuf.buffer as ArrayBuffer);
        if (size > listBuf.length) return signal(-34, listBuf.buffer as ArrayBuffer);
        let ptr = 0;
        for (const n of list) {
          ptr += listBuf.write(n, ptr);
          listBuf[ptr++] = 0;
        }
        return signal(ptr, listBuf.buffer as ArrayBuffer);
      });
    }

  }
  return FerryFuse as unknown as FuseConstructor;
}

// ------------------------------------------------------------------------------------------ fuse-native

const O_RDWR = 2;
/** fuse-native turns UTIME_NOW/UTIME_OMIT (tv_sec 0, tv_nsec ~2^30) into about 1073 ms. */
const UTIME_SPECIAL_MS_MAX = 1074;

/** FerryHandlers in fuse-native's handler shapes (no caller, no lock/flock/fallocate). */
export function fuseNativeOps(h: FerryHandlers): Record<string, (...args: never[]) => void> {
  const u = undefined;
  const floorTimes = (st: FuseStat): FuseStat => ({ ...st, atime: Math.floor(st.atime), mtime: Math.floor(st.mtime), ctime: Math.floor(st.ctime) });
  const t = (ms: number): TimeArg => (ms < UTIME_SPECIAL_MS_MAX ? 'now' : ms);
  const openCb = (cb: FuseCallback): FuseCallback => (res, v) => (v === undefined ? cb(res) : cb(res, (v as OpenReply).fh));
  return {
    init: (cb: FuseCallback) => cb(0),
    getattr: (path: string, cb: FuseCallback) => h.getattr(u, path, (res, v) => (v === undefined ? cb(res) : cb(res, floorTimes(v as FuseStat)))),
    readdir: (path: string, cb: (res: number, names?: string[], stats?: unknown[]) => void) =>
      h.readdir(u, path, (res, v) => {
        if (v === undefined) return cb(res);
        const d = v as { names: string[]; stats: unknown[] };
        return cb(res, d.names, d.stats);
      }),
    open: (path: string, flags: number, cb: FuseCallback) => h.open(u, path, flags, openCb(cb)),
    create: (path: string, mode: number, cb: FuseCallback) => h.create(u, path, mode, O_RDWR, openCb(cb)),
    read: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: FuseCallback) => h.read(u, path, fd, buf, len, pos, cb),
    write: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: FuseCallback) => h.write(u, path, fd, buf, len, pos, cb),
    flush: (path: string, fd: number, cb: FuseCallback) => h.flush(u, path, fd, undefined, cb),
    fsync: (path: string, datasync: number, fd: number, cb: FuseCallback) => h.fsync(u, path, datasync, fd, cb),
    fsyncdir: (path: string, datasync: number, fd: number, cb: FuseCallback) => h.fsyncdir(u, path, datasync, fd, cb),
    release: (path: string, fd: number, cb: FuseCallback) => h.release(u, path, fd, undefined, cb),
    truncate: (path: string, size: number, cb: FuseCallback) => h.truncate(u, path, size, cb),
    ftruncate: (path: string, fd: number, size: number, cb: FuseCallback) => h.ftruncate(u, path, fd, size, cb),
    chmod: (path: string, mode: number, cb: FuseCallback) => h.chmod(u, path, mode, cb),
    chown: (path: string, uid: number, gid: number, cb: FuseCallback) => h.chown(u, path, uid, gid, cb),
    utimens: (path: string, atime: number, mtime: number, cb: FuseCallback) => h.utimens(u, path, t(atime), t(mtime), cb),
    readlink: (path: string, cb: FuseCallback) => h.readlink(u, path, cb),
    mknod: (path: string, mode: number, dev: number, cb: FuseCallback) => h.mknod(u, path, mode, dev, cb),
    mkdir: (path: string, mode: number, cb: FuseCallback) => h.mkdir(u, path, mode, cb),
    unlink: (path: string, cb: FuseCallback) => h.unlink(u, path, cb),
    rmdir: (path: string, cb: FuseCallback) => h.rmdir(u, path, cb),
    rename: (src: string, dest: string, cb: FuseCallback) => h.rename(u, src, dest, cb),
    link: (src: string, dest: string, cb: FuseCallback) => h.link(u, src, dest, cb),
    symlink: (target: string, path: string, cb: FuseCallback) => h.symlink(u, target, path, cb),
    statfs: (path: string, cb: FuseCallback) => h.statfs(u, path, cb),
    setxattr: (path: string, name: string, value: Buffer, position: number, flags: number, cb: FuseCallback) => h.setxattr(u, path, name, value, flags, cb),
    getxattr: (path: string, name: string, position: number, cb: FuseCallback) => h.getxattr(u, path, name, cb),
    listxattr: (path: string, cb: FuseCallback) => h.listxattr(u, path, cb),
    removexattr: (path: string, name: string, cb: FuseCallback) => h.removexattr(u, path, name, cb),
  };
}

// ------------------------------------------------------------------------------------------ the addon

/** native/fuse's exports (see ferry_fuse.c). */
export interface FerryFuseAddon {
  mount(mountpoint: string, args: string[], dispatch: (...a: unknown[]) => void, singleThread: boolean): object;
  unmount(handle: object): void;
  exit(handle: object): void;
  close(handle: object): void;
  reply(id: number, result: number, ...values: unknown[]): boolean;
  interrupted(id: number): boolean;
  ops: string[];
  constants: Record<'OPEN_KEEP_CACHE' | 'OPEN_DIRECT_IO' | 'F_GETLK' | 'F_SETLK' | 'F_SETLKW' | 'F_RDLCK' | 'F_WRLCK' | 'F_UNLCK' | 'LOCK_SH' | 'LOCK_EX' | 'LOCK_NB' | 'LOCK_UN' | 'UTIME_NOW' | 'UTIME_OMIT', number>;
}

let addon: { mod?: FerryFuseAddon; why?: string } | undefined;

/** The addon, or why it cannot be used (not built, forced off by FERRY_FUSE=fuse-native). */
export function loadAddon(): { mod?: FerryFuseAddon; why?: string } {
  if (addon !== undefined) return addon;
  if (process.env['FERRY_FUSE'] === 'fuse-native') return (addon = { why: 'FERRY_FUSE=fuse-native' });
  const require = createRequire(import.meta.url);
  try {
    addon = { mod: require('@ferryfs/fuse') as FerryFuseAddon };
  } catch (err) {
    const msg = err instanceof Error ? err.message.split('\n')[0]! : String(err);
    addon = { why: /Cannot find module/.test(msg) ? 'it is not built (needs libfuse-dev at install time)' : msg };
  }
  return addon;
}

/** The device number (minor; FUSE mounts have major 0) of the mount at exactly this path, if mounted. */
async function mountDevice(mnt: string): Promise<number | undefined> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  let dev: number | undefined;
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))) !== mnt) continue;
    const minor = Number(f[2]?.split(':')[1]);
    if (Number.isInteger(minor)) dev = minor;
  }
  return dev;
}

const LOCK_EOF = Number.MAX_SAFE_INTEGER;
const EIO = 5;
/** How long unmount waits for the FUSE loop to end before giving up on it, ms. */
const DONE_WAIT_MS = 5000;

/** A mount served by the addon: one dispatch function receives every request and replies by id. */
export class AddonFuse implements FuseInstance {
  readonly backend = 'ferry-fuse' as const;
  private readonly b: FerryFuseAddon;
  private readonly mnt: string;
  private readonly h: FerryHandlers;
  private readonly options: string[];
  private readonly onError: (msg: string, err?: unknown) => void;
  private handle: object | undefined;
  private mountCb: ((err: Error | null) => void) | undefined;
  private ended = false;
  /** The FUSE connection's number (its device's minor), for an abort through /sys/fs/fuse/connections. */
  private dev: number | undefined;
  onEnd: (() => void) | undefined;
  private readonly endWaiters: Array<() => void> = [];

  constructor(b: FerryFuseAddon, mnt: string, handlers: FerryHandlers, options: string[], onError: (msg: string, err?: unknown) => void) {
    this.b = b;
    this.mnt = mnt;
    this.h = handlers;
    this.options = options;
    this.onError = onError;
  }

  /** Calls back once the kernel's INIT has been answered (or with the reason the mount failed). */
  mount(cb: (err: Error | null) => void): void {
    this.mountCb = cb;
    try {
      this.handle = this.b.mount(this.mnt, ['-o', this.options.join(',')], (...a: unknown[]) => this.dispatch(a), false);
    } catch (err) {
      this.mountCb = undefined;
      cb(new Error(err instanceof Error && err.message !== 'fuse_mount failed' ? err.message : 'fuse failed'));
    }
  }

  /** Stops the loop (lazy unmount if still mounted) and calls back once it ended (or after a while). */
  unmount(cb: (err: Error | null) => void): void {
    if (this.handle === undefined || this.ended) return cb(null);
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      cb(null);
    };
    const timer = setTimeout(() => {
      this.onError(`the FUSE loop of ${this.mnt} did not end within ${DONE_WAIT_MS} ms; going on without it`);
      finish();
    }, DONE_WAIT_MS);
    this.endWaiters.push(finish);
    // An unmount from outside ends the loop by itself; otherwise ask it to stop: unmount it if it is still
    // mounted, else (detached lazily while files were open) abort the kernel connection.
    setTimeout(() => {
      if (this.ended || this.handle === undefined) return;
      const handle = this.handle;
      void mountDevice(this.mnt).then(async (dev) => {
        if (this.ended) return;
        if (dev !== undefined) return this.b.unmount(handle);
        this.b.exit(handle);
        if (this.dev !== undefined) await writeFile(`/sys/fs/fuse/connections/${this.dev}/abort`, '1').catch(() => undefined);
      });
    }, 200).unref();
  }

  private dispatch(a: unknown[]): void {
    const op = this.b.ops[a[0] as number];
    const id = a[1] as number;
    if (op === 'init') {
      const cb = this.mountCb;
      this.mountCb = undefined;
      void mountDevice(this.mnt).then((dev) => (this.dev = dev));
      cb?.(null);
      return;
    }
    if (op === 'done') {
      this.ended = true;
      if (this.handle !== undefined) this.b.close(this.handle);
      const cb = this.mountCb;
      this.mountCb = undefined;
      cb?.(new Error('the FUSE session ended before the kernel initialized it'));
      const waiters = this.endWaiters.splice(0);
      for (const w of waiters) w();
      if (waiters.length === 0 && cb === undefined) this.onEnd?.();
      return;
    }
    const c: Caller = { uid: a[2] as number, gid: a[3] as number, pid: a[4] as number, interrupted: () => this.b.interrupted(id) };
    const r = (res: number, ...values: unknown[]): void => {
      try {
        // A lock wait the kernel gave up on (the caller was interrupted) is answered EINTR already.
        if (!this.b.reply(id, res, ...values) && op !== 'lock' && op !== 'flock') this.onError(`fuse ${op}: reply to a request no longer pending (dropped)`);
      } catch (err) {
        this.onError(`fuse ${op}: reply failed`, err);
        this.b.reply(id, -EIO);
      }
    };
    try {
      this.call(op ?? '?', c, a, r);
    } catch (err) {
      this.onError(`fuse ${op}: handler threw (answered EIO)`, err);
      r(-EIO);
    }
  }

  private call(op: string, c: Caller, a: unknown[], r: (res: number, ...values: unknown[]) => void): void {
    const h = this.h;
    const k = this.b.constants;
    const s = (i: number): string => a[i] as string;
    const n = (i: number): number => a[i] as number;
    const plain: FuseCallback = (res) => r(res);
    const stat: FuseCallback = (res, v) => {
      if (res < 0 || v === undefined) return r(res);
      const st = v as FuseStat;
      r(0, [st.mode, st.uid, st.gid, st.size, st.nlink, st.ino, st.rdev, st.blksize, st.blocks, st.atime, st.mtime, st.ctime]);
    };
    const opened: FuseCallback = (res, v) => {
      if (res < 0 || v === undefined) return r(res);
      const o = v as OpenReply;
      r(0, o.fh, (o.keepCache ? k.OPEN_KEEP_CACHE : 0) | (o.directIo ? k.OPEN_DIRECT_IO : 0));
    };
    const owner = (i: number): string => (a[i] as bigint).toString(16);
    const time = (sec: number, nsec: number): TimeArg => (nsec === k.UTIME_NOW ? 'now' : nsec === k.UTIME_OMIT ? 'omit' : sec * 1000 + nsec / 1e6);
    switch (op) {
      case 'getattr': return h.getattr(c, s(5), stat);
      case 'fgetattr': return h.fgetattr(c, s(5), n(6), stat);
      case 'readlink': return h.readlink(c, s(5), (res, v) => (res < 0 ? r(res) : r(0, v)));
      case 'mknod': return h.mknod(c, s(5), n(6), n(7), plain);
      case 'mkdir': return h.mkdir(c, s(5), n(6), plain);
      case 'unlink': return h.unlink(c, s(5), plain);
      case 'rmdir': return h.rmdir(c, s(5), plain);
      case 'symlink': return h.symlink(c, s(5), s(6), plain);
      case 'rename': return h.rename(c, s(5), s(6), plain);
      case 'link': return h.link(c, s(5), s(6), plain);
      case 'chmod': return h.chmod(c, s(5), n(6), plain);
      case 'chown': return h.chown(c, s(5), n(6), n(7), plain);
      case 'truncate': return h.truncate(c, s(5), n(6), plain);
      case 'ftruncate': return h.ftruncate(c, s(5), n(6), n(7), plain);
      case 'utimens': return h.utimens(c, s(5), time(n(6), n(7)), time(n(8), n(9)), plain);
      case 'open': return h.open(c, s(5), n(6), opened);
      case 'create': return h.create(c, s(5), n(6), n(7), opened);
      case 'read': return h.read(c, s(5), n(6), a[7] as Buffer, n(8), n(9), plain);
      case 'write': return h.write(c, s(5), n(6), a[7] as Buffer, n(8), n(9), plain);
      case 'statfs':
        return h.statfs(c, s(5), (res, v) => {
          if (res < 0 || v === undefined) return r(res);
          const f = v as FuseStatfs;
          r(0, [f.bsize, f.frsize, f.blocks, f.bfree, f.bavail, f.files, f.ffree, f.favail, f.fsid, f.flag, f.namemax]);
        });
      case 'flush': return h.flush(c, s(5), n(6), owner(7), plain);
      case 'release': return h.release(c, s(5), n(6), n(9) !== 0 ? owner(8) : undefined, plain);
      case 'releasedir': return r(0);
      case 'fsync': return h.fsync(c, s(5), n(6), n(7), plain);
      case 'fsyncdir': return h.fsyncdir(c, s(5), n(6), n(7), plain);
      case 'setxattr': return h.setxattr(c, s(5), s(6), a[7] as Buffer, n(8), plain);
      case 'getxattr': return h.getxattr(c, s(5), s(6), (res, v) => (res < 0 ? r(res) : r(0, v)));
      case 'listxattr': return h.listxattr(c, s(5), (res, v) => (res < 0 ? r(res) : r(0, v)));
      case 'removexattr': return h.removexattr(c, s(5), s(6), plain);
      case 'readdir':
        return h.readdir(c, s(5), (res, v) => {
          if (res < 0 || v === undefined) return r(res);
          const d = v as { names: string[]; stats: Array<{ ino: number; mode: number }> };
          r(0, d.names, d.stats.map((x) => x.ino), d.stats.map((x) => x.mode));
        });
      case 'lock': {
        const cmd = n(7) === k.F_GETLK ? 'get' : n(7) === k.F_SETLKW ? 'setw' : 'set';
        const type = n(8) === k.F_RDLCK ? 'r' : n(8) === k.F_WRLCK ? 'w' : 'u';
        const start = n(9);
        const end = n(10) === 0 ? LOCK_EOF : start + n(10);
        return h.lock(c, s(5), n(6), cmd, { type, start, end, pid: n(11) }, owner(12), (res, v) => {
          if (res < 0 || cmd !== 'get') return r(res);
          const l = v as FuseLock | undefined;
          if (l === undefined) return r(0, [k.F_UNLCK]);
          r(0, [l.type === 'r' ? k.F_RDLCK : k.F_WRLCK, l.start, l.end >= LOCK_EOF ? 0 : l.end - l.start, l.pid]);
        });
      }
      case 'flock': {
        const o = n(7);
        const kind = (o & k.LOCK_UN) !== 0 ? 'un' : (o & k.LOCK_EX) !== 0 ? 'ex' : 'sh';
        return h.flock(c, s(5), n(6), kind, (o & k.LOCK_NB) === 0, owner(8), plain);
      }
      case 'fallocate': return h.fallocate(c, s(5), n(9), n(6), n(7), n(8), plain);
      default:
        this.onError(`fuse: unknown request ${op}`);
        return r(-38);
    }
  }
}

let fallbackLogged = false;

/**
 * The binding for a mount: the addon when built, else fuse-native (one log line says so, once per process).
 */
export function createFuse(mnt: string, handlers: FerryHandlers, a: MountArgs, log: { warn(m: string): void; error(m: string, e?: unknown): void }): FuseInstance {
  const { mod, why } = loadAddon();
  if (mod !== undefined) return new AddonFuse(mod, mnt, handlers, mountOptions({ ...a, autoCache: false }), (m, e) => log.error(m, e));
  if (!fallbackLogged) {
    fallbackLogged = true;
    log.warn(`ferry's FUSE addon is not available (${why ?? 'unknown'}); using fuse-native: mtime from utimens, caller identity, fcntl/flock locks across clients, fallocate and 64-bit inode numbers are not supported`);
  }
  const Fuse = ferryFuseClass(mountArgs({ ...a, autoCache: true }));
  // timeout false: Ferry's own layers bound their waits; fuse-native's 15 s default would fail long flushes.
  const f = new Fuse(mnt, fuseNativeOps(handlers), { timeout: false });
  return {
    backend: 'fuse-native',
    mount: (cb) => f.mount(cb),
    unmount: (cb) => f.unmount(cb),
  };
}
