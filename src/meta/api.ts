/**
 * MetaApi: the metadata operations the front ends use — exactly what Vfs (vfs.ts, writer.ts, openfile.ts),
 * the SDK's composition root and FUSE call on their metadata layer. `Meta` (meta.ts) implements it over an
 * engine in this process; `RemoteMeta` (service/client.ts) implements it over the metadata service
 * (`ferry serve`), and `MirrorWriteMeta` (service/mirror.ts) splits it between a mirror's replica (reads) and
 * the primary's service (writes). The contracts are Meta's: see each member there.
 *
 * Tools (fsck, gc, status, the replicator, the mirror follower) keep using Meta and its engine directly: they
 * run where the engine is.
 */

import { FsError } from '../errors.js';
import type { LockConflict, LockType } from './locks.js';
import type { SliceRef } from './slices.js';
import type { Attr, Ctx, DirEntry, FileType, FormatRec, SetAttr, SliceRefRec, StatFs } from './types.js';

/** What `write` answers (see Meta.write). */
export interface WriteResult {
  attr: Attr;
  longest: number;
  shift: number;
  indexes: number[];
}

/** What `openCreate` did (see MetaApi.openCreate). */
export interface OpenCreateResult {
  /** The file's attributes (the symlink's, when not opened). */
  attr: Attr;
  /** The name was missing and a regular file was created under it. */
  created: boolean;
  /** The inode was opened (false only for an existing symlink, which the caller follows). */
  opened: boolean;
}

/** How often openCreate looks again when a name it found missing was created meanwhile by another client. */
const OPEN_CREATE_ROUNDS_MAX = 3;

/**
 * openCreate from MetaApi's plain operations (lookup, create, open), for implementations without a cheaper
 * way; the metadata service runs this next to the engine so that a remote client pays one round trip.
 */
export async function openCreateVia(meta: MetaApi, ctx: Ctx, parent: number, name: string, mode: number, mask: number, exclusive: boolean): Promise<OpenCreateResult> {
  for (let round = 1; ; round++) {
    if (!exclusive) {
      let found: Attr | undefined;
      try {
        found = await meta.lookup(ctx, parent, name);
      } catch (err) {
        if (!(err instanceof FsError && err.code === 'ENOENT')) throw err;
      }
      if (found !== undefined) {
        if (found.type === 'symlink') return { attr: found, created: false, opened: false };
        return { attr: await meta.open(ctx, found.ino, mask), created: false, opened: true };
      }
    }
    let attr: Attr;
    try {
      attr = await meta.create(ctx, parent, name, mode);
    } catch (err) {
      // Created by another client since the lookup: open(2) without O_EXCL opens what is there now.
      if (!exclusive && round < OPEN_CREATE_ROUNDS_MAX && err instanceof FsError && err.code === 'EEXIST') continue;
      throw err;
    }
    // As open(2) with O_CREAT: the creator may open the new file whatever its mode says.
    return { attr: await meta.open(ctx, attr.ino, 0, attr), created: true, opened: true };
  }
}

export interface MetaApi {
  readonly format: FormatRec;
  readonly chunkBytes: number;
  /**
   * The changelog seq of the newest entry this client's own writes appended (0 before any): what a client of
   * a mirror region waits for its replica to have applied.
   */
  readonly committedSeq: number;

  // attributes, names
  getattr(ino: number): Promise<Attr>;
  getattrCached(ino: number): Promise<Attr>;
  access(ctx: Ctx, ino: number, mask: number): Promise<void>;
  setattr(ctx: Ctx, ino: number, set: SetAttr): Promise<Attr>;
  lookup(ctx: Ctx, parent: number, name: string): Promise<Attr>;
  readdir(ctx: Ctx, ino: number, opts?: { after?: string; limit?: number; plus?: boolean }): Promise<DirEntry[]>;
  readlink(ino: number): Promise<string>;
  statfs(): Promise<StatFs>;

  // namespace changes
  mknod(ctx: Ctx, parent: number, name: string, type: FileType, mode: number, opts?: { rdev?: number; target?: string; exclusive?: boolean }): Promise<Attr>;
  mkdir(ctx: Ctx, parent: number, name: string, mode: number): Promise<Attr>;
  create(ctx: Ctx, parent: number, name: string, mode: number): Promise<Attr>;
  symlink(ctx: Ctx, parent: number, name: string, target: string): Promise<Attr>;
  link(ctx: Ctx, ino: number, parent: number, name: string): Promise<Attr>;
  unlink(ctx: Ctx, parent: number, name: string): Promise<void>;
  rmdir(ctx: Ctx, parent: number, name: string): Promise<void>;
  rename(ctx: Ctx, srcParent: number, srcName: string, dstParent: number, dstName: string, flags?: number): Promise<void>;

  // open files
  open(ctx: Ctx, ino: number, mask: number, created?: Attr): Promise<Attr>;
  /**
   * open(2) with O_CREAT of `name` in `parent`, in one step where the implementation can (an optional
   * capability; openCreateVia otherwise). Missing: creates a regular file with `mode` (as given) and opens it
   * (no access check: the creator's right). Present: EEXIST when `exclusive`; a symlink is answered unopened
   * (the caller follows it); anything else is opened with `mask` checked, as `open`.
   */
  openCreate?(ctx: Ctx, parent: number, name: string, mode: number, mask: number, exclusive: boolean): Promise<OpenCreateResult>;
  release(ino: number): Promise<void>;

  // data
  newSliceId(): Promise<number>;
  readChunk(ino: number, index: number): Promise<SliceRef[]>;
  /** Every chunk of a file with its slice list, in index order (warm-up, tools). */
  readChunks(ino: number): Promise<Array<[number, SliceRef[]]>>;
  write(ino: number, writes: ReadonlyArray<{ index: number; ref: SliceRef }>, mtime?: number, appendAt?: number): Promise<WriteResult>;
  truncate(ino: number, length: number): Promise<Attr>;
  fallocate(ino: number, mode: number, offset: number, length: number): Promise<Attr>;
  copyFileRange(inIno: number, inOff: number, outIno: number, outOff: number, size: number): Promise<number>;
  replaceSlices(ino: number, index: number, old: readonly SliceRef[], ref: SliceRef): Promise<boolean>;
  abandonSlice(id: number, size: number): Promise<void>;
  /** Slice records (region placement asks which regions hold a slice's blocks). */
  getSlices(ids: readonly number[]): Promise<Map<number, SliceRefRec | undefined>>;

  // extended attributes
  setxattr(ctx: Ctx, ino: number, name: string, value: Buffer, flags?: number): Promise<void>;
  getxattr(ctx: Ctx, ino: number, name: string): Promise<Buffer>;
  listxattr(ctx: Ctx, ino: number): Promise<string[]>;
  removexattr(ctx: Ctx, ino: number, name: string): Promise<void>;

  // locks
  getlk(ino: number, owner: string, type: LockType, start: number, end?: number): Promise<LockConflict | undefined>;
  setlk(ino: number, owner: string, type: LockType | 'u', start: number, end?: number, pid?: number): Promise<LockConflict | undefined>;
  flock(ino: number, owner: string, type: 'sh' | 'ex' | 'un', pid?: number): Promise<boolean>;
  /** Whether this client may hold locks on the inode (cheap, synchronous; a superset). */
  mayHoldLocks(ino: number): boolean;

  /** Releases what the client holds open (its session, open files); idempotent. */
  close(): Promise<void>;
}
