/**
 * fuse-native (FUSE 2.9 high-level API, path based), loaded lazily, with the mount options Ferry needs.
 *
 * fuse-native builds its `-o` argument from a fixed set of options and has none for big writes, so by default
 * the kernel sends 4 KiB writes. `FerryFuse` replaces that list with one built here (`mountArgs`): big writes,
 * max_write/max_read, attribute and entry timeouts, Ferry's inode numbers (use_ino), default_permissions,
 * allow_other only on request, and auto_cache.
 *
 * What the binding cannot do (measured against fuse-native 2.2.6's C source, fuse-native.c):
 *   - per-open flags in struct fuse_file_info (keep_cache, direct_io): it only sets `fh`. `auto_cache` is the
 *     high-level library's equivalent of close-to-open keep_cache: at open it compares the size and mtime
 *     with those seen before and keeps the kernel's pages only if both are unchanged.
 *   - the caller's identity (fuse_get_context): handlers do not know who calls, so permission checks are the
 *     kernel's (default_permissions) and new files belong to the mount process's user.
 *   - utimens: it passes atime twice (mtime is lost), in whole milliseconds.
 *   - lock/flock (the kernel then keeps locks local to this machine), fallocate, rename flags (renameat2 with
 *     flags gets EINVAL from the kernel), ioctl, poll, readdir offsets (one call lists the whole directory).
 *   - create: the open flags are not passed (the handle is opened read-write).
 */

import { createRequire } from 'node:module';
import { UsageError } from '../errors.js';

/** The callback of a fuse-native handler: a result (0, a byte count or -errno) and an optional value. */
export type FuseCallback = (result: number, value?: unknown) => void;

/** What the FerryFuse class offers to the mount code. */
export interface FuseInstance {
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
}

export interface FuseConstructor {
  new (mnt: string, ops: object, opts: object): FuseInstance;
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
}

/** The `-o` argument for fuse_mount/fuse_new (FUSE 2.9 option names). */
export function mountArgs(a: MountArgs): string {
  const fsname = a.fsname.replace(/[,\\\s]/g, '_');
  const o = [
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
    // High-level library: Ferry's inode numbers, cache timeouts, page cache kept while size and mtime hold.
    'use_ino',
    'readdir_ino',
    `attr_timeout=${a.attrTimeoutSec}`,
    `entry_timeout=${a.entryTimeoutSec}`,
    `negative_timeout=${a.negativeTimeoutSec}`,
    'auto_cache',
    ...(a.debug ? ['debug'] : []),
  ];
  const arg = '-o' + o.join(',');
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
