/**
 * The FUSE boundary: what the bindings (native.ts: Ferry's addon, or fuse-native) and the operations they
 * serve (ops.ts: FerryOps) exchange, and the addon's wire table.
 *
 *   bindings (native.ts) --FuseOps calls, these types--> FerryOps (ops.ts)
 *   addon (native/fuse, C) --dispatch(...HEADER, ...OPS[op].args)--> AddonFuse (native.ts)
 *   AddonFuse --reply(id, result, ...OPS[op].reply)--> addon; result < 0 is -errno and carries no values
 *
 * OPS is the one statement, on this side, of each operation's arguments and reply values: name, order and
 * JS type. The addon states the same table in C (native/fuse/src/layout.h, layout.c) and builds every call
 * and reads every reply from it; test/fuse/boundary.test.ts checks the two against each other (the C source
 * as written, and the addon as built) and drives AddonFuse through a fake addon to check that each argument
 * reaches the FerryOps parameter its name says. AddonFuse reads arguments by name (ARG below), never by a
 * bare index; changing an argument means changing both tables, or the test fails.
 */

import type { RequestInfo } from './accesslog.js';

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

/**
 * Directory entries with their attributes (readdirplus), from some offset on, as the addon takes them: the
 * names each ended by a NUL in one buffer, and one stat record (RECORDS.stat's fields) per name in one flat
 * array. ageMs: how old the attributes are; the kernel caches them for what is left of its timeouts.
 */
export interface DirEntriesPlus {
  nameBytes: Buffer;
  attrs: Float64Array;
  ageMs: number;
}

type C = Caller | undefined;

/**
 * The operations a binding serves, by inode number (FerryOps implements them). The caller is undefined under
 * fuse-native, which passes none. Each returns a promise; `run` turns it into exactly one answer.
 */
export interface FuseOps {
  /** Runs one operation: exactly one answer, errors mapped to -errno, unknown errors logged (EIO). */
  run<T>(op: string, fn: () => Promise<T>, done: (res: number, value?: T) => void): void;
  /**
   * Extended attributes the mount keeps no values for, with the errno getxattr of each answers: the addon
   * answers those itself, without a call (the kernel asks for some before every write, `ls -l` for others).
   */
  readonly xattrAnswers?: ReadonlyArray<readonly [name: string, errno: number]>;
  /** Whether someone reads the access log; while so, the binding sets `nextRequest` just before `run`. */
  readonly accessLog?: { readonly active: boolean };
  nextRequest?: RequestInfo | undefined;
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
  /** Entries with their attributes from offset on (at most what bytes can hold); the addon only. */
  readdirplus(c: C, ino: number, fh: number, offset: number, bytes: number): Promise<DirEntriesPlus>;
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

// ------------------------------------------------------------------------------------------ the addon's table

/**
 * JS types on the wire. A string may be null (no name from libfuse); records are arrays of numbers;
 * float64[] is a Float64Array.
 */
export type WireType = 'number' | 'string' | 'bigint' | 'buffer' | 'number[]' | 'string[]' | 'float64[]' | 'stat' | 'statfs' | 'lock';
type Entry = readonly [name: string, type: WireType];

/** Every dispatch call starts with these, events (init, done) included (id, uid, gid, pid 0 there). */
export const HEADER = [['op', 'number'], ['id', 'number'], ['uid', 'number'], ['gid', 'number'], ['pid', 'number']] as const satisfies readonly Entry[];

/**
 * Each operation's arguments after HEADER and its reply values after the result, in order; the key order is
 * the op code (HEADER's op). What each name means is said once, in native/fuse/src/layout.h. Events have no
 * reply; an operation with `reply: []` answers with the result alone (0, or write's byte count).
 */
export const OPS = {
  init: { args: [['protoMajor', 'number'], ['protoMinor', 'number'], ['capable', 'number'], ['want', 'number'], ['maxWrite', 'number']] },
  done: { args: [['status', 'number']] },
  lookup: { args: [['parent', 'number'], ['name', 'string']], reply: [['attr', 'stat']] },
  getattr: { args: [['ino', 'number'], ['fh', 'number']], reply: [['attr', 'stat']] },
  setattr: {
    args: [['ino', 'number'], ['fh', 'number'], ['toSet', 'number'], ['setMode', 'number'], ['setUid', 'number'], ['setGid', 'number'], ['setSize', 'number'], ['setAtimeMs', 'number'], ['setMtimeMs', 'number']],
    reply: [['attr', 'stat']],
  },
  readlink: { args: [['ino', 'number']], reply: [['target', 'string']] },
  mknod: { args: [['parent', 'number'], ['name', 'string'], ['mode', 'number'], ['rdev', 'number']], reply: [['attr', 'stat']] },
  mkdir: { args: [['parent', 'number'], ['name', 'string'], ['mode', 'number']], reply: [['attr', 'stat']] },
  unlink: { args: [['parent', 'number'], ['name', 'string']], reply: [] },
  rmdir: { args: [['parent', 'number'], ['name', 'string']], reply: [] },
  symlink: { args: [['parent', 'number'], ['name', 'string'], ['target', 'string']], reply: [['attr', 'stat']] },
  rename: { args: [['parent', 'number'], ['name', 'string'], ['newParent', 'number'], ['newName', 'string']], reply: [] },
  link: { args: [['ino', 'number'], ['newParent', 'number'], ['newName', 'string']], reply: [['attr', 'stat']] },
  open: { args: [['ino', 'number'], ['flags', 'number']], reply: [['fh', 'number'], ['openFlags', 'number']] },
  read: { args: [['ino', 'number'], ['fh', 'number'], ['size', 'number'], ['offset', 'number']], reply: [['data', 'buffer']] },
  write: { args: [['ino', 'number'], ['fh', 'number'], ['data', 'buffer'], ['size', 'number'], ['offset', 'number']], reply: [] },
  flush: { args: [['ino', 'number'], ['fh', 'number'], ['lockOwner', 'bigint']], reply: [] },
  release: { args: [['ino', 'number'], ['fh', 'number'], ['flags', 'number'], ['lockOwner', 'bigint'], ['flockRelease', 'number']], reply: [] },
  fsync: { args: [['ino', 'number'], ['datasync', 'number'], ['fh', 'number']], reply: [] },
  opendir: { args: [['ino', 'number'], ['flags', 'number']], reply: [['fh', 'number'], ['openFlags', 'number']] },
  readdir: { args: [['ino', 'number'], ['fh', 'number'], ['size', 'number'], ['offset', 'number']], reply: [['names', 'string[]'], ['inos', 'number[]'], ['modes', 'number[]']] },
  releasedir: { args: [['ino', 'number'], ['fh', 'number']], reply: [] },
  fsyncdir: { args: [['ino', 'number'], ['datasync', 'number'], ['fh', 'number']], reply: [] },
  statfs: { args: [['ino', 'number']], reply: [['statfs', 'statfs']] },
  setxattr: { args: [['ino', 'number'], ['name', 'string'], ['data', 'buffer'], ['flags', 'number']], reply: [] },
  getxattr: { args: [['ino', 'number'], ['name', 'string'], ['size', 'number']], reply: [['value', 'buffer']] },
  listxattr: { args: [['ino', 'number'], ['size', 'number']], reply: [['names', 'string[]']] },
  removexattr: { args: [['ino', 'number'], ['name', 'string']], reply: [] },
  access: { args: [['ino', 'number'], ['mask', 'number']], reply: [] },
  create: { args: [['parent', 'number'], ['name', 'string'], ['mode', 'number'], ['flags', 'number']], reply: [['attr', 'stat'], ['fh', 'number'], ['openFlags', 'number']] },
  getlk: {
    args: [['ino', 'number'], ['fh', 'number'], ['lockType', 'number'], ['lockStart', 'number'], ['lockLength', 'number'], ['lockPid', 'number'], ['lockOwner', 'bigint']],
    reply: [['lock', 'lock']],
  },
  setlk: {
    args: [['ino', 'number'], ['fh', 'number'], ['sleep', 'number'], ['lockType', 'number'], ['lockStart', 'number'], ['lockLength', 'number'], ['lockPid', 'number'], ['lockOwner', 'bigint']],
    reply: [],
  },
  flock: { args: [['ino', 'number'], ['fh', 'number'], ['flockOp', 'number'], ['lockOwner', 'bigint']], reply: [] },
  fallocate: { args: [['ino', 'number'], ['fh', 'number'], ['fallocateMode', 'number'], ['offset', 'number'], ['length', 'number']], reply: [] },
  readdirplus: { args: [['ino', 'number'], ['fh', 'number'], ['size', 'number'], ['offset', 'number']], reply: [['nameBytes', 'buffer'], ['attrs', 'float64[]'], ['ageMs', 'number']] },
} as const satisfies Record<string, { args: readonly Entry[]; reply?: readonly Entry[] }>;

export type OpName = keyof typeof OPS;

/** Records (reply values of type stat, statfs, lock): arrays of numbers in this order. Times in ms. */
export const RECORDS = {
  stat: ['mode', 'uid', 'gid', 'size', 'nlink', 'ino', 'rdev', 'blksize', 'blocks', 'atime', 'mtime', 'ctime'],
  statfs: ['bsize', 'frsize', 'blocks', 'bfree', 'bavail', 'files', 'ffree', 'favail', 'fsid', 'flag', 'namemax'],
  /** getlk's conflicting lock: length 0 is to the end of the file; [F_UNLCK] alone for none. */
  lock: ['type', 'start', 'length', 'pid'],
} as const satisfies { stat: readonly (keyof FuseStat)[]; statfs: readonly (keyof FuseStatfs)[]; lock: readonly string[] };

/** A position in a dispatch call's arguments that holds a T (read it with `arg`). */
export type Slot<T> = number & { readonly slotOf?: T };
type JsOf<W extends WireType> = W extends 'number' ? number : W extends 'string' ? string : W extends 'bigint' ? bigint : W extends 'buffer' ? Buffer : W extends 'string[]' ? string[] : W extends 'float64[]' ? Float64Array : number[];
type Slots<L extends readonly Entry[]> = { readonly [E in L[number] as E[0]]: Slot<JsOf<E[1]>> };

function slots(list: readonly Entry[], from: number): Record<string, number> {
  const out: Record<string, number> = {};
  list.forEach(([name], i) => (out[name] = from + i));
  return Object.freeze(out);
}

/** HEADER's positions by name: `a[HEAD.id]`. */
export const HEAD = slots(HEADER, 0) as Slots<typeof HEADER>;

/** Each operation's arguments' positions by name (after HEADER): `arg(a, ARG.read.fh)`. Computed once, at load. */
export const ARG = Object.freeze(Object.fromEntries(Object.entries(OPS).map(([op, l]) => [op, slots(l.args, HEADER.length)]))) as {
  readonly [Op in OpName]: Slots<(typeof OPS)[Op]['args']>;
};

/** The argument at position i of a dispatch call, typed as the table says. */
export function arg<T>(a: readonly unknown[], i: Slot<T>): T {
  return a[i] as T;
}

/** The addon's constants (native/fuse/src/module.c). */
export type AddonConstant =
  | 'OPEN_KEEP_CACHE' | 'OPEN_DIRECT_IO' | 'OPEN_NONSEEKABLE' | 'F_RDLCK' | 'F_WRLCK' | 'F_UNLCK' | 'LOCK_SH' | 'LOCK_EX' | 'LOCK_NB' | 'LOCK_UN'
  | 'SET_ATTR_MODE' | 'SET_ATTR_UID' | 'SET_ATTR_GID' | 'SET_ATTR_SIZE' | 'SET_ATTR_ATIME' | 'SET_ATTR_MTIME' | 'SET_ATTR_ATIME_NOW' | 'SET_ATTR_MTIME_NOW';

/** The table as the addon states it (its `layout` export), for the test that compares it with OPS. */
export interface AddonLayout {
  header: Array<[string, string]>;
  args: Record<string, Array<[string, string]>>;
  reply: Record<string, Array<[string, string]>>;
  records: Record<string, string[]>;
}

/** native/fuse's exports (native/fuse/src/module.c). */
export interface FerryFuseAddon {
  /** xattrAnswers: getxattr of these names is answered with the errno by the addon (FuseOps.xattrAnswers). */
  mount(mountpoint: string, args: string[], dispatch: (...a: unknown[]) => void, attrTimeoutSec: number, entryTimeoutSec: number, xattrAnswers: ReadonlyArray<readonly [string, number]>): object;
  unmount(handle: object): void;
  exit(handle: object): void;
  close(handle: object): void;
  reply(id: number, result: number, ...values: unknown[]): boolean;
  interrupted(id: number): boolean;
  invalidate(handle: object, ino: number): number;
  /** Op names by op code. */
  ops: string[];
  layout: AddonLayout;
  constants: Record<AddonConstant, number>;
}
