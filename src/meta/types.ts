/** Record shapes stored through the MetaEngine, and the public attribute type. */

export type Compression = 'none' | 'lz4' | 'zstd';

export const ROOT_INO = 1;
export const TRASH_INO = 2;
export const TRASH_NAME = '.trash';
export const FIRST_FREE_INO = 3;

export const CHUNK_BYTES = 64 << 20;
export const BLOCK_BYTES_DEFAULT = 4 << 20;
export const NAME_BYTES_MAX = 255;
export const SYMLINK_BYTES_MAX = 4095;
export const XATTR_NAME_BYTES_MAX = 255;
export const XATTR_VALUE_BYTES_MAX = 65536;
export const FORMAT_VERSION = 1;

export type FileType = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'chr' | 'blk';

/** Type bits as in st_mode. */
export const S_IFMT = 0o170000;
export const TYPE_BITS: Record<FileType, number> = {
  file: 0o100000,
  dir: 0o040000,
  symlink: 0o120000,
  fifo: 0o010000,
  socket: 0o140000,
  chr: 0o020000,
  blk: 0o060000,
};

export interface InodeRec {
  type: FileType;
  /** Permission bits and suid/sgid/sticky (0o7777); the type lives in `type`. */
  mode: number;
  uid: number;
  gid: number;
  /** ms since the epoch (fractional allowed). */
  atime: number;
  mtime: number;
  ctime: number;
  nlink: number;
  /** Bytes for files; target bytes for symlinks; 4096 for directories. */
  length: number;
  rdev: number;
  /** Directories: the parent's inode (for loop checks and '..'); others: 0. */
  parent: number;
  /** Symlinks only. */
  target?: string;
  /**
   * Set when the file's last name moved to the trash: that entry still counts in `nlink` (fsck's invariant),
   * but stat reports one link less (an unlinked file has nlink 0). Cleared when it leaves the trash.
   */
  trashed?: boolean;
  /**
   * Files: bytes of data they hold, holes not counted (what `usedBytes` sums and st_blocks reports). Absent in
   * records written before it existed: st_blocks then falls back to the length.
   */
  used?: number;
}

/**
 * Why a directory entry name is not one a file system may hand out, or undefined when it is fine: names come
 * from clients, engines and dumps, and a name such as '../x' must never become a local path (cp -r) or reach
 * the kernel (readdir).
 */
export function nameProblem(name: string): string | undefined {
  if (name === '') return 'empty name';
  if (name === '.' || name === '..') return `reserved name ${JSON.stringify(name)}`;
  if (name.includes('/')) return `name ${JSON.stringify(name)} holds '/'`;
  if (name.includes('\0')) return `name ${JSON.stringify(name)} holds NUL`;
  if (Buffer.byteLength(name) > NAME_BYTES_MAX) return `name longer than ${NAME_BYTES_MAX} bytes`;
  return undefined;
}

/** st_nlink as POSIX sees it: a trashed file's trash entry is not a name (see InodeRec.trashed). */
export function linkCount(a: InodeRec): number {
  return a.trashed === true ? Math.max(0, a.nlink - 1) : a.nlink;
}

/** st_blocks, in 512-byte units: the data a file holds (holes are free), else its length. */
export function blockCount(a: InodeRec): number {
  if (a.type === 'file') return Math.ceil((a.used ?? a.length) / 512);
  return Math.ceil(a.length / 512);
}

export interface Attr extends InodeRec {
  ino: number;
}

export interface EntryRec {
  ino: number;
  type: FileType;
}

export interface SliceRefRec {
  /** Stored bytes of the slice. */
  size: number;
  /** References from chunk records. */
  refs: number;
  /**
   * The region whose bucket received the blocks when the slice was written. Absent in volumes without regions
   * and in slices written before the volume had regions: those live in the primary's bucket.
   */
  home?: string;
  /**
   * Regions other than `home` whose buckets hold verified copies of every block, set by the bucket
   * replicator (`ferry replicate`). Logged like every slice change, so metadata mirrors learn it too.
   */
  copies?: string[];
}

export interface DelSliceRec {
  size: number;
  /** When the last reference went, ms. */
  time: number;
}

export interface SessionRec {
  host: string;
  pid: number;
  started: number;
  heartbeat: number;
  version: string;
  region: string;
  /** How long after `heartbeat` the session counts as dead, ms (absent in older records: 5 minutes). */
  staleMs?: number;
}

/** One region of a volume (DESIGN §2): for now, its bucket. */
export interface RegionRec {
  /**
   * Object store URL of the region's bucket (secrets kept; printed masked). Absent for a metadata-only mirror:
   * its clients read the primary's bucket (through their caches).
   */
  storage?: string;
  /**
   * Metadata URL of the region's replica (a mirror region, DESIGN §7): kept current by `ferry mirror`; the
   * region's clients open it instead of the primary's engine. Secrets kept; printed masked.
   */
  replica?: string;
}

/** What a metadata replica knows of itself (the `mirror` record; region/mirror.ts). */
export interface MirrorIdentity {
  /** The volume it mirrors (FormatRec uuid and name). */
  volume: string;
  name: string;
  /** The region whose clients it serves. */
  region: string;
  /** The primary region (where writes go). */
  primary: string;
  /** When the follower last bootstrapped it, ms. */
  bootstrapped: number;
  /**
   * The primary's metadata URL as the follower was given it (secrets kept; printed masked), so that
   * `ferry mirror promote` can fence it; absent in replicas bootstrapped before failover existed.
   */
  primaryMeta?: string;
  /** The primary's epoch (meta/epoch.ts) when the replica was bootstrapped; absent: 1. */
  epoch?: number;
}

/**
 * The volume's format record. Two shapes are accepted, both at FORMAT_VERSION 1:
 *
 *   one region (formatted with --storage, or before regions existed): `storage` only; the volume has one
 *     region, named DEFAULT_REGION ('default'), which is the primary;
 *   regions: `regions` and `primary` set, and `storage` kept equal to the primary's bucket, so that a tool
 *     that knows only `storage` still finds the primary bucket.
 *
 * region/regions.ts reads both shapes (`volumeRegions`); nothing else should look at these fields directly.
 */
export interface FormatRec {
  name: string;
  uuid: string;
  /** Object store URL of the primary region's bucket (secrets kept; printed masked). */
  storage: string;
  /** Region name -> region, when the volume has named regions. */
  regions?: Record<string, RegionRec>;
  /** The primary region's name; set exactly when `regions` is. */
  primary?: string;
  blockBytes: number;
  chunkBytes: number;
  compression: Compression;
  trashDays: number;
  /** Total capacity reported by statfs, bytes. */
  capacityBytes: number;
  version: number;
  createdAt: number;
}

/** The caller's identity for permission checks. */
export interface Ctx {
  uid: number;
  gid: number;
  /** Supplementary groups. */
  gids: readonly number[];
}

export const ROOT_CTX: Ctx = { uid: 0, gid: 0, gids: [] };

export interface DirEntry {
  name: string;
  ino: number;
  type: FileType;
  attr?: Attr;
}

export interface StatFs {
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  usedBytes: number;
  inodes: number;
}

export interface SetAttr {
  mode?: number;
  uid?: number;
  gid?: number;
  /** ms since the epoch, or 'now'. */
  atime?: number | 'now';
  mtime?: number | 'now';
}

export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;
export const FALLOC_KEEP_SIZE = 0x01;
export const FALLOC_PUNCH_HOLE = 0x02;
export const FALLOC_ZERO_RANGE = 0x10;

/** Access mask bits (as in access(2)). */
export const R_OK = 4;
export const W_OK = 2;
export const X_OK = 1;
