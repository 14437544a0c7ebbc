/**
 * The FUSE boundary: what the bindings (native.ts: Ferry's addon, or fuse-native) and the operations they
 * serve (ops.ts: FerryOps) exchange, and the addon's interface. Both sides import it; neither imports the
 * other.
 */

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

/** What setattr may change (a field left out stays as it is). */
export interface SetAttrArgs {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: TimeArg;
  mtime?: TimeArg;
}

/** Directory entries from some offset on: entry i's offset (for the next readdir) is offset + i + 1. */
export interface DirEntries {
  names: string[];
  inos: number[];
  modes: number[];
}

type C = Caller | undefined;

/**
 * The operations a binding serves, by inode number (FerryOps implements them). The caller is undefined under
 * fuse-native, which passes none. Each returns a promise; `run` turns it into exactly one answer.
 */
export interface FuseOps {
  /** Runs one operation: exactly one answer, errors mapped to -errno, unknown errors logged (EIO). */
  run<T>(op: string, fn: () => Promise<T>, done: (res: number, value?: T) => void): void;
  /** Path helpers for the path-based fuse-native fallback. */
  inoOf(path: string): Promise<number>;
  inoOfHandle(fh: number): number;
  parentOf(path: string): Promise<{ parent: number; name: string }>;
  lookup(c: C, parent: number, name: string): Promise<FuseStat>;
  getattr(c: C, ino: number): Promise<FuseStat>;
  setattr(c: C, ino: number, set: SetAttrArgs): Promise<FuseStat>;
  readlink(c: C, ino: number): Promise<string>;
  mknod(c: C, parent: number, name: string, mode: number, rdev: number): Promise<FuseStat>;
  mkdir(c: C, parent: number, name: string, mode: number): Promise<FuseStat>;
  unlink(c: C, parent: number, name: string): Promise<void>;
  rmdir(c: C, parent: number, name: string): Promise<void>;
  symlink(c: C, parent: number, name: string, target: string): Promise<FuseStat>;
  rename(c: C, parent: number, name: string, newParent: number, newName: string, flags: number): Promise<void>;
  link(c: C, ino: number, newParent: number, newName: string): Promise<FuseStat>;
  open(c: C, ino: number, flags: number): Promise<OpenReply>;
  create(c: C, parent: number, name: string, mode: number, flags: number): Promise<{ attr: FuseStat; open: OpenReply }>;
  /** Up to len bytes at pos; the buffer may be a view of a cached block: read it before the next await. */
  read(c: C, fh: number, len: number, pos: number): Promise<Buffer>;
  write(c: C, fh: number, buf: Buffer, len: number, pos: number): Promise<number>;
  /** close(2) of one file descriptor; owner: whose POSIX locks go with it. */
  flush(c: C, fh: number, owner: string | undefined): Promise<void>;
  fsync(c: C, fh: number): Promise<void>;
  /** The last close of an open file. flockOwner: the open file's flock to release with it. */
  release(c: C, fh: number, flockOwner: string | undefined): Promise<void>;
  fallocate(c: C, fh: number, mode: number, offset: number, length: number): Promise<void>;
  opendir(c: C, ino: number): Promise<number>;
  /** Entries from offset on (at most what bytes can hold). */
  readdir(c: C, ino: number, fh: number, offset: number, bytes: number): Promise<DirEntries>;
  releasedir(c: C, fh: number): Promise<void>;
  fsyncdir(): Promise<void>;
  statfs(): Promise<FuseStatfs>;
  access(c: C, ino: number, mask: number): Promise<void>;
  setxattr(c: C, ino: number, name: string, value: Buffer, flags: number): Promise<void>;
  getxattr(c: C, ino: number, name: string): Promise<Buffer>;
  listxattr(c: C, ino: number): Promise<string[]>;
  removexattr(c: C, ino: number, name: string): Promise<void>;
  /** fcntl F_GETLK: the conflicting lock, or undefined. */
  getlk(c: C, fh: number, lk: FuseLock, owner: string): Promise<FuseLock | undefined>;
  /** fcntl F_SETLK (wait false) and F_SETLKW (wait true: until granted or EINTR). */
  setlk(c: C, fh: number, lk: FuseLock, owner: string, wait: boolean): Promise<void>;
  flock(c: C, fh: number, op: 'sh' | 'ex' | 'un', wait: boolean, owner: string): Promise<void>;
}

// ------------------------------------------------------------------------------------------ the addon

/** The addon's constants (native/fuse/src/module.c). */
export type AddonConstant =
  | 'OPEN_KEEP_CACHE' | 'OPEN_DIRECT_IO' | 'OPEN_NONSEEKABLE' | 'F_RDLCK' | 'F_WRLCK' | 'F_UNLCK' | 'LOCK_SH' | 'LOCK_EX' | 'LOCK_NB' | 'LOCK_UN'
  | 'SET_ATTR_MODE' | 'SET_ATTR_UID' | 'SET_ATTR_GID' | 'SET_ATTR_SIZE' | 'SET_ATTR_ATIME' | 'SET_ATTR_MTIME' | 'SET_ATTR_ATIME_NOW' | 'SET_ATTR_MTIME_NOW';

/** native/fuse's exports (native/fuse/src/module.c). */
export interface FerryFuseAddon {
  mount(mountpoint: string, args: string[], dispatch: (...a: unknown[]) => void, attrTimeoutSec: number, entryTimeoutSec: number): object;
  unmount(handle: object): void;
  exit(handle: object): void;
  close(handle: object): void;
  reply(id: number, result: number, ...values: unknown[]): boolean;
  interrupted(id: number): boolean;
  invalidate(handle: object, ino: number): number;
  /** Op names by op code. */
  ops: string[];
  constants: Record<AddonConstant, number>;
}
