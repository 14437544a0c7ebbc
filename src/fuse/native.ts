/**
 * The FUSE binding under the mount: Ferry's own addon (native/fuse, package @ferryfs/fuse) when it is built,
 * else fuse-native 2.2.6 with its known gaps. Both serve one FuseOps (boundary.ts; FerryOps of ops.ts), whose
 * operations take inode numbers.
 *
 * The addon (native/fuse/src) runs FUSE 2.9's LOW-LEVEL API: the kernel speaks in Ferry's inode numbers (so
 * hard links are one kernel inode, and entries and attributes may be cached for the mount's timeouts), and
 * nothing waits while JS works: the JS thread reads requests from /dev/fuse on its event loop and answers each
 * by id, at once or later. AddonFuse below turns each request into one FuseOps call, reading its arguments by
 * name from boundary.ts's table, and its result into the reply. It also passes what fuse-native cannot:
 *   - the caller's uid/gid/pid (fuse_req_ctx) with every request: new files belong to the caller and Meta's
 *     permission checks see the caller;
 *   - setattr with both times (seconds + nanoseconds, UTIME_NOW);
 *   - getlk/setlk and flock with the kernel's lock owner, so locks go through the metadata engine and hold
 *     across clients; blocked waits end with EINTR when the caller is interrupted;
 *   - fallocate; create's open flags; keep_cache/direct_io from open and create; 64-bit inode numbers;
 *   - any number of mount options (fuse-native copies them into 1024 bytes);
 *   - read and write requests of max_read/max_write (1 MiB): the addon negotiates FUSE_MAX_PAGES, which
 *     libfuse 2.9 does not know (requests would stay at 128 KiB), and the mount raises the kernel's
 *     read-ahead to max_readahead (root only);
 *   - listings with attributes (readdirplus, which libfuse 2.9 does not know either): `ls -l` of a
 *     directory costs a few requests, not a lookup per name; getxattr of the names the mount keeps no values
 *     for (FuseOps.xattrAnswers) is answered by the addon without a call.
 *
 * fuse-native (fallback: FUSE 2.9 high-level API, path based): fuseNativeOps resolves each path to an inode
 * (through Meta's lookup cache) and calls the same FerryOps. Its gaps, measured against its C source:
 *   - no per-open flags (keep_cache, direct_io): `auto_cache` is used instead (the high-level library keeps the
 *     kernel's pages at open if size and mtime are unchanged);
 *   - no caller identity: permission checks are the kernel's (default_permissions) and new files belong to
 *     the mount process's user;
 *   - utimens passes atime twice (mtime is lost), in whole milliseconds;
 *   - no lock/flock (the kernel keeps locks local to this machine), no fallocate;
 *   - inode numbers cut to 32 bits; create's flags are not passed (the handle is opened read-write);
 *   - every path has its own kernel inode: attr_timeout must stay 0 for hard links to agree.
 */

import { readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { UsageError } from '../errors.js';
import { describeArgs, type RequestInfo } from './accesslog.js';
import { ARG, HEAD, HEADER, OPS, arg, type Caller, type FerryFuseAddon, type FuseLock, type FuseOps, type FuseStat, type FuseStatfs, type OpenReply, type SetAttrArgs, type Slot, type TimeArg } from './boundary.js';

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
  /** Seconds the kernel may remember that a name does not exist (high-level library only). */
  negativeTimeoutSec: number;
  /** Largest write and read request, bytes. */
  maxWriteBytes: number;
  maxReadBytes: number;
  /** Kernel read-ahead, bytes. */
  readAheadBytes: number;
  debug?: boolean;
}

/**
 * The `-o` options for fuse_mount and the library (FUSE 2.9 option names). The low-level library takes no
 * timeouts or inode options: the addon passes timeouts with each reply, and inode numbers are Ferry's anyway.
 */
export function mountOptions(a: MountArgs, library: 'low-level' | 'high-level'): string[] {
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
    // High-level library: Ferry's inode numbers, cache timeouts, close-to-open page cache.
    ...(library === 'high-level'
      ? ['use_ino', 'readdir_ino', `attr_timeout=${a.attrTimeoutSec}`, `entry_timeout=${a.entryTimeoutSec}`, `negative_timeout=${a.negativeTimeoutSec}`, 'auto_cache']
      : []),
    ...(a.debug ? ['debug'] : []),
  ];
}

/** The `-o` argument as one string (fuse-native's form). */
export function mountArgs(a: MountArgs): string {
  const arg = '-o' + mountOptions(a, 'high-level').join(',');
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

type Cb = (res: number, ...values: unknown[]) => void;

/**
 * FuseOps in fuse-native's path-based handler shapes (no caller, no lock/flock/fallocate): each path is
 * resolved to an inode (or its parent directory and name) first.
 */
export function fuseNativeOps(ops: FuseOps): Record<string, (...args: never[]) => void> {
  const u = undefined;
  const floorTimes = (st: FuseStat): FuseStat => ({ ...st, atime: Math.floor(st.atime), mtime: Math.floor(st.mtime), ctime: Math.floor(st.ctime) });
  const t = (ms: number): TimeArg => (ms < UTIME_SPECIAL_MS_MAX ? 'now' : ms);
  /** Runs op; its value (if any) is the callback's second argument. */
  const run = <T>(op: string, cb: Cb, fn: () => Promise<T>, out: (v: T) => unknown[] = () => []): void =>
    ops.run(op, fn, (res, v) => (res < 0 ? cb(res) : cb(0, ...out(v as T))));
  const ino = (path: string): Promise<number> => ops.inoOf(path);
  const parent = (path: string): Promise<{ parent: number; name: string }> => ops.parentOf(path);
  const setattr = (op: string, path: string, set: SetAttrArgs, cb: Cb): void => run(op, cb, async () => ops.setattr(u, await ino(path), set));
  return {
    init: (cb: Cb) => cb(0),
    getattr: (path: string, cb: Cb) => run('getattr', cb, async () => ops.getattr(u, await ino(path)), (st) => [floorTimes(st)]),
    readdir: (path: string, cb: Cb) =>
      run('readdir', cb, async () => {
        const dir = await ino(path);
        const fh = await ops.opendir(u, dir);
        try {
          return await ops.readdir(u, dir, fh, 0, Infinity);
        } finally {
          await ops.releasedir(u, fh);
        }
      }, (d) => [d.names, d.inos.map((i, k) => ({ ino: i, mode: d.modes[k] }))]),
    open: (path: string, flags: number, cb: Cb) => run('open', cb, async () => ops.open(u, await ino(path), flags), (o) => [o.fh]),
    create: (path: string, mode: number, cb: Cb) =>
      run('create', cb, async () => {
        const p = await parent(path);
        return ops.create(u, p.parent, p.name, mode, O_RDWR);
      }, (r) => [r.open.fh]),
    read: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb) =>
      ops.run('read', () => ops.read(u, fd, len, pos), (res, data) => cb(res < 0 ? res : data!.copy(buf))),
    write: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb) =>
      ops.run('write', () => ops.write(u, fd, buf, len, pos), (res, n) => cb(res < 0 ? res : n!)),
    flush: (path: string, fd: number, cb: Cb) => run('flush', cb, () => ops.flush(u, fd, undefined)),
    fsync: (path: string, datasync: number, fd: number, cb: Cb) => run('fsync', cb, () => ops.fsync(u, fd)),
    fsyncdir: (path: string, datasync: number, fd: number, cb: Cb) => run('fsyncdir', cb, () => ops.fsyncdir()),
    release: (path: string, fd: number, cb: Cb) => run('release', cb, () => ops.release(u, fd, undefined)),
    truncate: (path: string, size: number, cb: Cb) => setattr('truncate', path, { size }, cb),
    ftruncate: (path: string, fd: number, size: number, cb: Cb) => run('truncate', cb, async () => ops.setattr(u, ops.inoOfHandle(fd), { size })),
    chmod: (path: string, mode: number, cb: Cb) => setattr('chmod', path, { mode }, cb),
    chown: (path: string, uid: number, gid: number, cb: Cb) => setattr('chown', path, { uid, gid }, cb),
    utimens: (path: string, atime: number, mtime: number, cb: Cb) => setattr('utimens', path, { atime: t(atime), mtime: t(mtime) }, cb),
    readlink: (path: string, cb: Cb) => run('readlink', cb, async () => ops.readlink(u, await ino(path)), (s) => [s]),
    mknod: (path: string, mode: number, dev: number, cb: Cb) =>
      run('mknod', cb, async () => {
        const p = await parent(path);
        return ops.mknod(u, p.parent, p.name, mode, dev);
      }),
    mkdir: (path: string, mode: number, cb: Cb) =>
      run('mkdir', cb, async () => {
        const p = await parent(path);
        return ops.mkdir(u, p.parent, p.name, mode);
      }),
    unlink: (path: string, cb: Cb) =>
      run('unlink', cb, async () => {
        const p = await parent(path);
        return ops.unlink(u, p.parent, p.name);
      }),
    rmdir: (path: string, cb: Cb) =>
      run('rmdir', cb, async () => {
        const p = await parent(path);
        return ops.rmdir(u, p.parent, p.name);
      }),
    rename: (src: string, dest: string, cb: Cb) =>
      run('rename', cb, async () => {
        const s = await parent(src);
        const d = await parent(dest);
        return ops.rename(u, s.parent, s.name, d.parent, d.name, 0);
      }),
    link: (src: string, dest: string, cb: Cb) =>
      run('link', cb, async () => {
        const from = await ino(src);
        const d = await parent(dest);
        return ops.link(u, from, d.parent, d.name);
      }),
    symlink: (target: string, path: string, cb: Cb) =>
      run('symlink', cb, async () => {
        const p = await parent(path);
        return ops.symlink(u, p.parent, p.name, target);
      }),
    statfs: (path: string, cb: Cb) => run('statfs', cb, () => ops.statfs(), (s) => [s]),
    setxattr: (path: string, name: string, value: Buffer, position: number, flags: number, cb: Cb) =>
      run('setxattr', cb, async () => ops.setxattr(u, await ino(path), name, value, flags)),
    getxattr: (path: string, name: string, position: number, cb: Cb) => run('getxattr', cb, async () => ops.getxattr(u, await ino(path), name), (v) => [v]),
    listxattr: (path: string, cb: Cb) => run('listxattr', cb, async () => ops.listxattr(u, await ino(path)), (v) => [v]),
    removexattr: (path: string, name: string, cb: Cb) => run('removexattr', cb, async () => ops.removexattr(u, await ino(path), name)),
  };
}

// ------------------------------------------------------------------------------------------ the addon

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

type Reply = (res: number, ...values: unknown[]) => void;

// Records in the order of boundary.ts's RECORDS (test/fuse/boundary.test.ts checks them).
const statArray = (st: FuseStat): number[] => [st.mode, st.uid, st.gid, st.size, st.nlink, st.ino, st.rdev, st.blksize, st.blocks, st.atime, st.mtime, st.ctime];
const statfsArray = (f: FuseStatfs): number[] => [f.bsize, f.frsize, f.blocks, f.bfree, f.bavail, f.files, f.ffree, f.favail, f.fsid, f.flag, f.namemax];

/** The kernel's lock owner, as Meta's lock records name it. */
const ownerOf = (a: readonly unknown[], i: Slot<bigint>): string => arg(a, i).toString(16);

/** A mount served by the addon: one dispatch function receives every request and replies by id. */
export class AddonFuse implements FuseInstance {
  readonly backend = 'ferry-fuse' as const;
  private readonly b: FerryFuseAddon;
  private readonly mnt: string;
  private readonly ops: FuseOps;
  private readonly options: string[];
  private readonly timeouts: { attrSec: number; entrySec: number };
  private readonly readAheadBytes: number;
  private readonly onError: (msg: string, err?: unknown) => void;
  private handle: object | undefined;
  private mountCb: ((err: Error | null) => void) | undefined;
  private ended = false;
  /** The FUSE connection's number (its device's minor), for an abort through /sys/fs/fuse/connections. */
  private dev: number | undefined;
  onEnd: (() => void) | undefined;
  private readonly endWaiters: Array<() => void> = [];

  constructor(b: FerryFuseAddon, mnt: string, ops: FuseOps, a: MountArgs, onError: (msg: string, err?: unknown) => void) {
    this.b = b;
    this.mnt = mnt;
    this.ops = ops;
    this.options = mountOptions(a, 'low-level');
    this.timeouts = { attrSec: a.attrTimeoutSec, entrySec: a.entryTimeoutSec };
    this.readAheadBytes = a.readAheadBytes;
    this.onError = onError;
  }

  /** Calls back once the kernel's INIT has been answered (or with the reason the mount failed). */
  mount(cb: (err: Error | null) => void): void {
    this.mountCb = cb;
    try {
      const dispatch = (...a: unknown[]): void => this.dispatch(a);
      this.handle = this.b.mount(this.mnt, ['-o', this.options.join(',')], dispatch, this.timeouts.attrSec, this.timeouts.entrySec, this.ops.xattrAnswers ?? []);
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

  /** Every request and event of the addon: a is (...HEADER, ...OPS[op].args) of boundary.ts. */
  private dispatch(a: unknown[]): void {
    const op = this.b.ops[arg(a, HEAD.op)];
    const id = arg(a, HEAD.id);
    if (op === 'init') {
      const cb = this.mountCb;
      this.mountCb = undefined;
      void mountDevice(this.mnt)
        .then(async (dev) => {
          this.dev = dev;
          // The kernel caps a FUSE mount's read-ahead at its default (128 KiB), and a read request at the
          // read-ahead: raising it (root only) lets reads reach max_read. Without it reads are smaller.
          if (dev !== undefined) await writeFile(`/sys/class/bdi/0:${dev}/read_ahead_kb`, String(Math.floor(this.readAheadBytes / 1024))).catch(() => undefined);
        })
        .finally(() => cb?.(null));
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
    const c: Caller = { uid: arg(a, HEAD.uid), gid: arg(a, HEAD.gid), pid: arg(a, HEAD.pid), interrupted: () => this.b.interrupted(id) };
    const r: Reply = (res, ...values) => {
      try {
        // A lock wait the kernel gave up on (the caller was interrupted) is answered EINTR already.
        if (!this.b.reply(id, res, ...values) && op !== 'setlk' && op !== 'flock') this.onError(`fuse ${op}: reply to a request no longer pending (dropped)`);
      } catch (err) {
        this.onError(`fuse ${op}: reply failed`, err);
        this.b.reply(id, -EIO);
      }
    };
    if (this.ops.accessLog?.active === true && op !== undefined) this.ops.nextRequest = requestInfo(op, c, a);
    try {
      this.call(op ?? '?', c, a, r);
    } catch (err) {
      this.onError(`fuse ${op}: handler threw (answered EIO)`, err);
      r(-EIO);
    }
  }

  /** Runs an operation whose answer carries no values. */
  private plain(op: string, r: Reply, p: () => Promise<unknown>): void {
    this.ops.run(op, p, (res) => r(res));
  }

  /** Runs an operation answered with an entry or attributes. */
  private attr(op: string, r: Reply, p: () => Promise<FuseStat>): void {
    this.ops.run(op, p, (res, st) => (res < 0 ? r(res) : r(0, statArray(st!))));
  }

  /** The lock a getlk or setlk request describes. */
  private lockOf(a: readonly unknown[], p: typeof ARG.getlk | typeof ARG.setlk): FuseLock {
    const k = this.b.constants;
    const t = arg(a, p.lockType);
    const start = arg(a, p.lockStart);
    const len = arg(a, p.lockLength);
    return { type: t === k.F_RDLCK ? 'r' : t === k.F_WRLCK ? 'w' : 'u', start, end: len === 0 ? LOCK_EOF : start + len, pid: arg(a, p.lockPid) };
  }

  private openFlags(v: OpenReply): number {
    const k = this.b.constants;
    return (v.keepCache === true ? k.OPEN_KEEP_CACHE : 0) | (v.directIo === true ? k.OPEN_DIRECT_IO : 0);
  }

  /** One request: its arguments read by name (ARG), one FuseOps call, its reply values in OPS[op].reply's order. */
  private call(op: string, c: Caller, a: unknown[], r: Reply): void {
    const o = this.ops;
    const k = this.b.constants;
    switch (op) {
      case 'lookup': {
        const p = ARG.lookup;
        return this.attr(op, r, () => o.lookup(c, arg(a, p.parent), arg(a, p.name)));
      }
      case 'getattr': return this.attr(op, r, () => o.getattr(c, arg(a, ARG.getattr.ino)));
      case 'setattr': {
        const p = ARG.setattr;
        const set = arg(a, p.toSet);
        const has = (bit: number): boolean => (set & bit) !== 0;
        const time = (bit: number, nowBit: number, ms: number): TimeArg | undefined => (has(nowBit) ? 'now' : has(bit) ? ms : undefined);
        const args: SetAttrArgs = {};
        if (has(k.SET_ATTR_MODE)) args.mode = arg(a, p.setMode);
        if (has(k.SET_ATTR_UID)) args.uid = arg(a, p.setUid);
        if (has(k.SET_ATTR_GID)) args.gid = arg(a, p.setGid);
        if (has(k.SET_ATTR_SIZE)) args.size = arg(a, p.setSize);
        const at = time(k.SET_ATTR_ATIME, k.SET_ATTR_ATIME_NOW, arg(a, p.setAtimeMs));
        const mt = time(k.SET_ATTR_MTIME, k.SET_ATTR_MTIME_NOW, arg(a, p.setMtimeMs));
        if (at !== undefined) args.atime = at;
        if (mt !== undefined) args.mtime = mt;
        return this.attr(op, r, () => o.setattr(c, arg(a, p.ino), args));
      }
      case 'readlink': return o.run(op, () => o.readlink(c, arg(a, ARG.readlink.ino)), (res, v) => (res < 0 ? r(res) : r(0, v)));
      case 'mknod': {
        const p = ARG.mknod;
        return this.attr(op, r, () => o.mknod(c, arg(a, p.parent), arg(a, p.name), arg(a, p.mode), arg(a, p.rdev)));
      }
      case 'mkdir': {
        const p = ARG.mkdir;
        return this.attr(op, r, () => o.mkdir(c, arg(a, p.parent), arg(a, p.name), arg(a, p.mode)));
      }
      case 'unlink': {
        const p = ARG.unlink;
        return this.plain(op, r, () => o.unlink(c, arg(a, p.parent), arg(a, p.name)));
      }
      case 'rmdir': {
        const p = ARG.rmdir;
        return this.plain(op, r, () => o.rmdir(c, arg(a, p.parent), arg(a, p.name)));
      }
      case 'symlink': {
        const p = ARG.symlink;
        return this.attr(op, r, () => o.symlink(c, arg(a, p.parent), arg(a, p.name), arg(a, p.target)));
      }
      case 'rename': {
        const p = ARG.rename;
        return this.plain(op, r, () => o.rename(c, arg(a, p.parent), arg(a, p.name), arg(a, p.newParent), arg(a, p.newName), 0));
      }
      case 'link': {
        const p = ARG.link;
        return this.attr(op, r, () => o.link(c, arg(a, p.ino), arg(a, p.newParent), arg(a, p.newName)));
      }
      case 'open': {
        const ino = arg(a, ARG.open.ino);
        return o.run(op, () => o.open(c, ino, arg(a, ARG.open.flags)), (res, v) => {
          if (res < 0) return r(res);
          // Pages the kernel may not keep may come with a stale size too: it re-reads the attributes.
          if (v!.keepCache !== true && this.handle !== undefined) this.b.invalidate(this.handle, ino);
          r(0, v!.fh, this.openFlags(v!));
        });
      }
      case 'create': {
        const p = ARG.create;
        return o.run(op, () => o.create(c, arg(a, p.parent), arg(a, p.name), arg(a, p.mode), arg(a, p.flags)), (res, v) =>
          res < 0 ? r(res) : r(0, statArray(v!.attr), v!.open.fh, this.openFlags(v!.open)));
      }
      // The reply may be a view of a cached block (no copy); it is sent before anything else runs.
      case 'read': {
        const p = ARG.read;
        return o.run(op, () => o.read(c, arg(a, p.fh), arg(a, p.size), arg(a, p.offset)), (res, data) => (res < 0 ? r(res) : r(data!.length, data)));
      }
      case 'write': {
        const p = ARG.write;
        return o.run(op, () => o.write(c, arg(a, p.fh), arg(a, p.data), arg(a, p.size), arg(a, p.offset)), (res, v) => r(res < 0 ? res : v!));
      }
      case 'flush': {
        const p = ARG.flush;
        return this.plain(op, r, () => o.flush(c, arg(a, p.fh), ownerOf(a, p.lockOwner)));
      }
      case 'release': {
        const p = ARG.release;
        return this.plain(op, r, () => o.release(c, arg(a, p.fh), arg(a, p.flockRelease) !== 0 ? ownerOf(a, p.lockOwner) : undefined));
      }
      case 'fsync': return this.plain(op, r, () => o.fsync(c, arg(a, ARG.fsync.fh)));
      case 'opendir': return o.run(op, () => o.opendir(c, arg(a, ARG.opendir.ino)), (res, fh) => (res < 0 ? r(res) : r(0, fh!, 0)));
      case 'readdir': {
        const p = ARG.readdir;
        return o.run(op, () => o.readdir(c, arg(a, p.ino), arg(a, p.fh), arg(a, p.offset), arg(a, p.size)), (res, d) =>
          res < 0 ? r(res) : r(0, d!.names, d!.inos, d!.modes));
      }
      case 'readdirplus': {
        const p = ARG.readdirplus;
        return o.run(op, () => o.readdirplus(c, arg(a, p.ino), arg(a, p.fh), arg(a, p.offset), arg(a, p.size)), (res, d) =>
          res < 0 ? r(res) : r(0, d!.nameBytes, d!.attrs, d!.ageMs));
      }
      case 'releasedir': return this.plain(op, r, () => o.releasedir(c, arg(a, ARG.releasedir.fh)));
      case 'fsyncdir': return this.plain(op, r, () => o.fsyncdir());
      case 'statfs': return o.run(op, () => o.statfs(), (res, f) => (res < 0 ? r(res) : r(0, statfsArray(f!))));
      case 'setxattr': {
        const p = ARG.setxattr;
        return this.plain(op, r, () => o.setxattr(c, arg(a, p.ino), arg(a, p.name), arg(a, p.data), arg(a, p.flags)));
      }
      case 'getxattr': {
        const p = ARG.getxattr;
        return o.run(op, () => o.getxattr(c, arg(a, p.ino), arg(a, p.name)), (res, v) => (res < 0 ? r(res) : r(0, v)));
      }
      case 'listxattr': return o.run(op, () => o.listxattr(c, arg(a, ARG.listxattr.ino)), (res, v) => (res < 0 ? r(res) : r(0, v)));
      case 'removexattr': {
        const p = ARG.removexattr;
        return this.plain(op, r, () => o.removexattr(c, arg(a, p.ino), arg(a, p.name)));
      }
      case 'access': {
        const p = ARG.access;
        return this.plain(op, r, () => o.access(c, arg(a, p.ino), arg(a, p.mask)));
      }
      case 'getlk': {
        const p = ARG.getlk;
        return o.run(op, () => o.getlk(c, arg(a, p.fh), this.lockOf(a, p), ownerOf(a, p.lockOwner)), (res, l) => {
          if (res < 0) return r(res);
          if (l === undefined) return r(0, [k.F_UNLCK]);
          r(0, [l.type === 'r' ? k.F_RDLCK : k.F_WRLCK, l.start, l.end >= LOCK_EOF ? 0 : l.end - l.start, l.pid]);
        });
      }
      case 'setlk': {
        const p = ARG.setlk;
        return this.plain(op, r, () => o.setlk(c, arg(a, p.fh), this.lockOf(a, p), ownerOf(a, p.lockOwner), arg(a, p.sleep) !== 0));
      }
      case 'flock': {
        const p = ARG.flock;
        const f = arg(a, p.flockOp);
        const kind = (f & k.LOCK_UN) !== 0 ? 'un' : (f & k.LOCK_EX) !== 0 ? 'ex' : 'sh';
        return this.plain(op, r, () => o.flock(c, arg(a, p.fh), kind, (f & k.LOCK_NB) === 0, ownerOf(a, p.lockOwner)));
      }
      case 'fallocate': {
        const p = ARG.fallocate;
        return this.plain(op, r, () => o.fallocate(c, arg(a, p.fh), arg(a, p.fallocateMode), arg(a, p.offset), arg(a, p.length)));
      }
      default:
        this.onError(`fuse: unknown request ${op}`);
        return r(-38);
    }
  }
}

/** The access log's view of a request (accesslog.ts): caller, inode and handle, arguments on demand. */
function requestInfo(op: string, c: Caller, a: readonly unknown[]): RequestInfo {
  const names = (OPS as Record<string, { args: ReadonlyArray<readonly [string, string]> }>)[op]?.args ?? [];
  const at = (name: string): number | undefined => {
    const i = names.findIndex(([n]) => n === name);
    const v = i < 0 ? undefined : a[HEADER.length + i];
    return typeof v === 'number' ? v : undefined;
  };
  return { caller: { uid: c.uid, gid: c.gid, pid: c.pid }, ino: at('ino'), fh: at('fh'), describe: () => describeArgs(names, a, HEADER.length) };
}

let fallbackLogged = false;

/**
 * The binding for a mount: the addon when built, else fuse-native (one log line says so, once per process).
 */
export function createFuse(mnt: string, ops: FuseOps, a: MountArgs, log: { warn(m: string): void; error(m: string, e?: unknown): void }): FuseInstance {
  const { mod, why } = loadAddon();
  if (mod !== undefined) return new AddonFuse(mod, mnt, ops, a, (m, e) => log.error(m, e));
  if (!fallbackLogged) {
    fallbackLogged = true;
    log.warn(`ferry's FUSE addon is not available (${why ?? 'unknown'}); using fuse-native: mtime from utimens, caller identity, fcntl/flock locks across clients, fallocate and 64-bit inode numbers are not supported`);
  }
  // Every path is its own kernel inode under the high-level library: attributes are not cached, so hard
  // links agree.
  const Fuse = ferryFuseClass(mountArgs({ ...a, attrTimeoutSec: 0 }));
  // timeout false: Ferry's own layers bound their waits; fuse-native's 15 s default would fail long flushes.
  const f = new Fuse(mnt, fuseNativeOps(ops), { timeout: false });
  return {
    backend: 'fuse-native',
    mount: (cb) => f.mount(cb),
    unmount: (cb) => f.unmount(cb),
  };
}
