/**
 * The one POSIX boundary: every front end (the FUSE mount, the SDK, later the S3 gateway) goes through Vfs
 * and only translates arguments and errors. Vfs owns what POSIX means above the metadata layer's records:
 * permission checks of opens and truncates, the creator's right to open what it created, set-id bits
 * cleared by writes, flush ordering (a read, truncate, fallocate, copy_file_range or explicit time sees the
 * inode's buffered writes first), path resolution with symlinks, file handles, write buffers, reads with
 * read-ahead, and background compaction.
 *
 * Consistency within one Vfs: a read, stat or truncate of an inode first sees that inode's buffered writes
 * (reads and truncates flush them; stat reports the buffered length). Across clients: close-to-open — an
 * open file's attributes and slice lists are kept while it is open (openfile.ts), refreshed by this
 * client's own commits, and re-read at the next open.
 */

import { FsError } from '../errors.js';
import type { LockConflict, LockType } from '../meta/locks.js';
import { openCreateVia, type MetaApi } from '../meta/api.js';
import { cutSegments, visibleSegments, type SliceRef } from '../meta/slices.js';
import { ROOT_INO, R_OK, W_OK, type Attr, type Ctx, type DirEntry, type FileType, type FormatRec, type SetAttr, type StatFs } from '../meta/types.js';
import type { ChunkStore } from '../chunk/store.js';
import { Limiter } from '../util/limiter.js';
import { OpenFiles, type OpenFile } from './openfile.js';
import { FileWriter } from './writer.js';

export const SYMLINK_FOLLOW_MAX = 40;
/** Compactions of one chunk in a row before it waits for the next commit to ask again. */
const COMPACT_ROUNDS_MAX = 16;
/** Attribute reads repeated while flushes keep overlapping them (see withWrites); the last one is used. */
const REREAD_MAX = 8;
/** How far a read may start from where the last one ended and still count as sequential (see readAhead). */
const READ_AHEAD_SLACK_BYTES = 2 << 20;

export interface VfsOptions {
  /** Bytes that write buffers may hold before writers wait for uploads. */
  bufferBytesMax?: number;
  /** Concurrent block uploads. */
  uploadsInFlightMax?: number;
  /** Largest read-ahead window of one handle. */
  readAheadBytesMax?: number;
  /** Compact a chunk once it has this many slice references. */
  compactSlicesMin?: number;
  /** Called with every background failure (logged and counted by the owner). */
  onBackgroundError?: (what: string, err: unknown) => void;
  /** Why nothing may change through this Vfs (a mirror's replica): front ends mount read-only. */
  readOnlyReason?: string;
}

export const O_ACCMODE = 3;
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_TRUNC = 0o1000;
export const O_APPEND = 0o2000;
export const O_DIRECTORY = 0o200000;
export const O_NOFOLLOW = 0o400000;

export interface Handle {
  readonly fh: number;
  readonly ino: number;
  readonly flags: number;
  readonly readable: boolean;
  readonly writable: boolean;
  readonly append: boolean;
  /** Sequential-read tracking for read-ahead. */
  lastEnd: number;
  ahead: number;
  prefetchedTo: number;
  closed: boolean;
  /** The inode's attributes as read from the engine at open (close-to-open checks, e.g. FUSE keep_cache). */
  readonly openedAttr?: Attr;
  /** Who opened it: writes by anyone but root clear the file's set-id bits. */
  readonly ctx: Ctx;
  /** The file had set-id bits at open and this handle has not written yet (see Vfs.write). */
  setIdCheck: boolean;
}

const S_ISUID = 0o4000;
const S_ISGID = 0o2000;

/** The set-id bits a write by anyone but root clears (set-gid only with group execute). */
function setIdBits(mode: number): number {
  return (mode & S_ISUID) | ((mode & (S_ISGID | 0o010)) === (S_ISGID | 0o010) ? S_ISGID : 0);
}

function hasSetId(mode: number): boolean {
  return setIdBits(mode) !== 0;
}

export class Vfs {
  readonly meta: MetaApi;
  readonly chunks: ChunkStore;
  private readonly writers = new Map<number, FileWriter>();
  private readonly handles = new Map<number, Handle>();
  private readonly files = new OpenFiles();
  private nextFh = 1;
  private buffered = 0;
  private roomWaiters: Array<() => void> = [];
  private readonly uploads: Limiter;
  private readonly opts: Required<Omit<VfsOptions, 'readOnlyReason'>>;
  private readonly compacting = new Set<string>();
  private background = new Set<Promise<void>>();
  /** Bumped whenever a writer's pending length drops, before it does (see withWrites). */
  private flushEpoch = 0;
  /** See `changes`. */
  private changeCount = 0;

  /** Why nothing may change through this Vfs, or undefined (see VfsOptions.readOnlyReason). */
  readonly readOnly: string | undefined;

  constructor(meta: MetaApi, chunks: ChunkStore, options: VfsOptions = {}) {
    this.readOnly = options.readOnlyReason;
    this.meta = meta;
    this.chunks = chunks;
    this.opts = {
      bufferBytesMax: options.bufferBytesMax ?? 64 << 20,
      uploadsInFlightMax: options.uploadsInFlightMax ?? 8,
      readAheadBytesMax: options.readAheadBytesMax ?? 32 << 20,
      compactSlicesMin: options.compactSlicesMin ?? 24,
      onBackgroundError:
        options.onBackgroundError ??
        ((what, err) => {
          process.emitWarning(`ferry: ${what} failed: ${err instanceof Error ? err.message : String(err)}`);
        }),
    };
    this.uploads = new Limiter(this.opts.uploadsInFlightMax);
  }

  /** The volume's format record (name, block size, ...). */
  get format(): FormatRec {
    return this.meta.format;
  }

  /**
   * A count of this Vfs's own changes, bumped when each begins and when it ends (names, attributes, data,
   * extended attributes; a write when it is buffered and when it is committed). Something read from the
   * metadata while the count stayed the same reflects every change this client made: a front end may keep
   * it (the FUSE mount's listings) for as long as other clients' changes may take to show.
   */
  get changes(): number {
    return this.changeCount;
  }

  /** Runs one of this client's changes (see `changes`). */
  private async changing<T>(fn: () => Promise<T>): Promise<T> {
    this.changeCount++;
    try {
      return await fn();
    } finally {
      this.changeCount++;
    }
  }

  /** Runs background work that is caught, reported and awaited by close(). */
  private spawn(what: string, fn: () => Promise<void>): void {
    const p = fn()
      .catch((err: unknown) => this.opts.onBackgroundError(what, err))
      .finally(() => this.background.delete(p));
    this.background.add(p);
  }

  // ---------------------------------------------------------------- paths

  /** Splits an absolute or volume-relative path into names ('.' and empty segments dropped). */
  static split(path: string): string[] {
    if (typeof path !== 'string') throw new FsError('EINVAL', 'path must be a string');
    if (path.includes('\0')) throw new FsError('EINVAL', 'path contains NUL');
    return path.split('/').filter((s) => s !== '' && s !== '.');
  }

  /**
   * The inode a path names. `follow` decides whether a symlink in the last component is followed.
   * A trailing slash requires a directory.
   */
  async resolve(ctx: Ctx, path: string, follow = true): Promise<Attr> {
    const names = Vfs.split(path);
    const attr = await this.walk(ctx, ROOT_INO, names, follow, { n: 0 });
    if (path.endsWith('/') && names.length > 0 && attr.type !== 'dir') throw new FsError('ENOTDIR', path);
    return attr;
  }

  /** The directory that would hold the last component of path, and that name. */
  async resolveParent(ctx: Ctx, path: string): Promise<{ parent: Attr; name: string }> {
    const names = Vfs.split(path);
    const name = names.pop();
    if (name === undefined) throw new FsError('EBUSY', 'the root has no parent');
    const parent = await this.walk(ctx, ROOT_INO, names, true, { n: 0 });
    if (parent.type !== 'dir') throw new FsError('ENOTDIR', path);
    return { parent, name };
  }

  private async walk(ctx: Ctx, start: number, names: readonly string[], followLast: boolean, links: { n: number }): Promise<Attr> {
    // The start's own attributes are read only to return them: lookup checks that a parent is a directory
    // the caller may search, so reading them first would cost every walk a round trip for nothing.
    if (names.length === 0) return this.meta.getattrCached(start);
    let cur: Attr | undefined;
    for (let i = 0; i < names.length; i++) {
      if (cur !== undefined && cur.type !== 'dir') throw new FsError('ENOTDIR');
      const parentIno = cur?.ino ?? start;
      const next = await this.meta.lookup(ctx, parentIno, names[i]!);
      const last = i === names.length - 1;
      if (next.type === 'symlink' && (!last || followLast)) {
        if (++links.n > SYMLINK_FOLLOW_MAX) throw new FsError('ELOOP');
        const target = next.target ?? '';
        const rest = names.slice(i + 1);
        const tnames = Vfs.split(target);
        const from = target.startsWith('/') ? ROOT_INO : parentIno;
        const resolved = await this.walk(ctx, from, tnames, true, links);
        if (target.endsWith('/') && resolved.type !== 'dir') throw new FsError('ENOTDIR');
        return rest.length === 0 ? resolved : this.walk(ctx, resolved.ino, rest, followLast, links);
      }
      cur = next;
    }
    return cur!;
  }

  // ---------------------------------------------------------------- attributes

  /**
   * Attributes read by `read`, with the length of this process's writes not yet committed. A flush may commit
   * a write and drop it from its writer between the engine read and the look at the writer: the attributes
   * would then miss a write already acknowledged (a stat shorter than what was just written, and a kernel that
   * believes it). Any flush meanwhile (the epoch moved) makes it read the attributes again, which then see the
   * commit.
   */
  private async withWrites(read: () => Promise<Attr>): Promise<Attr> {
    let epoch = this.flushEpoch;
    let a = await read();
    for (let i = 0; this.flushEpoch !== epoch && a.type === 'file' && i < REREAD_MAX; i++) {
      epoch = this.flushEpoch;
      a = await this.meta.getattr(a.ino);
    }
    return this.withWriterLength(a);
  }

  /** Attributes as the engine has them now, with this process's buffered writes. */
  getattr(ino: number): Promise<Attr> {
    return this.withWrites(() => this.meta.getattr(ino));
  }

  /** Attributes through the lookup cache (the mount's getattr), with this process's buffered writes. */
  attr(ino: number): Promise<Attr> {
    return this.withWrites(() => this.meta.getattrCached(ino));
  }

  /** One name in a directory, with this process's buffered writes. */
  lookup(ctx: Ctx, parent: number, name: string): Promise<Attr> {
    return this.withWrites(() => this.meta.lookup(ctx, parent, name));
  }

  /** link(2): a new name for ino; its attributes with this process's buffered writes. */
  link(ctx: Ctx, ino: number, parent: number, name: string): Promise<Attr> {
    return this.changing(() => this.withWrites(() => this.meta.link(ctx, ino, parent, name)));
  }

  /** A path's attributes (stat, lstat), with this process's buffered writes. */
  stat(ctx: Ctx, path: string, follow: boolean): Promise<Attr> {
    return this.withWrites(() => this.resolve(ctx, path, follow));
  }

  /** The length of buffered writes, when longer than the engine's. Callers read `a` after any flush (see withWrites). */
  withWriterLength(a: Attr): Attr {
    const w = this.writers.get(a.ino);
    return w !== undefined && w.length > a.length ? { ...a, length: w.length } : a;
  }

  /**
   * truncate(2) of an inode the caller may truncate (the kernel checked it for the mount; truncatePath and
   * ftruncate check it here). Buffered writes are committed first.
   */
  truncate(ino: number, length: number): Promise<Attr> {
    return this.changing(async () => {
      await this.flushIno(ino);
      const a = await this.meta.truncate(ino, length);
      this.files.changed(ino, a);
      return a;
    });
  }

  /** truncate(2) by path: needs write permission on the file. */
  async truncatePath(ctx: Ctx, path: string, length: number): Promise<void> {
    const a = await this.resolve(ctx, path, true);
    if (a.type === 'dir') throw new FsError('EISDIR');
    await this.meta.access(ctx, a.ino, W_OK);
    await this.truncate(a.ino, length);
  }

  /** ftruncate(2): the handle must be open for writing. */
  async ftruncate(h: Handle, length: number): Promise<void> {
    if (h.closed) throw new FsError('EBADF');
    if (!h.writable) throw new FsError('EINVAL', 'not open for writing');
    await this.truncate(h.ino, length);
  }

  // ---------------------------------------------------------------- handles

  /**
   * Opens an existing inode with open(2) flags (creation and O_TRUNC are the caller's). `created`: the
   * attributes Meta.create returned for ino, when the caller just created it: as open(2) with O_CREAT, the
   * creator may open it whatever its mode says.
   */
  async open(ctx: Ctx, ino: number, flags: number, created?: Attr): Promise<Handle> {
    const mask = created !== undefined ? 0 : Vfs.accessMask(flags);
    const a = await this.meta.open(ctx, ino, mask, created);
    return this.opened(ctx, ino, flags, a, created !== undefined);
  }

  /** The access an open with these flags needs (R_OK | W_OK). */
  private static accessMask(flags: number): number {
    const acc = flags & O_ACCMODE;
    return (acc === O_RDONLY || acc === O_RDWR ? R_OK : 0) | (acc === O_WRONLY || acc === O_RDWR ? W_OK : 0);
  }

  /** The handle of an inode the metadata layer has just opened (attributes `a`); `created`: by this open. */
  private async opened(ctx: Ctx, ino: number, flags: number, a: Attr, created: boolean): Promise<Handle> {
    const acc = flags & O_ACCMODE;
    const readable = acc === O_RDONLY || acc === O_RDWR;
    const writable = acc === O_WRONLY || acc === O_RDWR;
    if ((flags & O_DIRECTORY) !== 0 && a.type !== 'dir') {
      await this.meta.release(ino);
      throw new FsError('ENOTDIR');
    }
    if (a.type === 'dir' && writable) {
      await this.meta.release(ino);
      throw new FsError('EISDIR');
    }
    this.files.opened(a);
    const h: Handle = {
      fh: this.nextFh++,
      ino,
      flags,
      readable,
      writable,
      append: (flags & O_APPEND) !== 0,
      lastEnd: -1,
      ahead: 0,
      prefetchedTo: 0,
      closed: false,
      openedAttr: a,
      ctx,
      setIdCheck: writable && ctx.uid !== 0 && a.type === 'file' && hasSetId(a.mode),
    };
    this.handles.set(h.fh, h);
    // An empty file needs no truncate transaction, unless this client has writes to it buffered.
    if ((flags & O_TRUNC) !== 0 && writable && a.type === 'file' && !created && this.withWriterLength(a).length > 0) {
      try {
        await this.truncate(ino, 0);
      } catch (err) {
        await this.release(h);
        throw err;
      }
    }
    return h;
  }

  /**
   * Creates a regular file and opens it (open(2) with O_CREAT on a missing name): the creator may open it
   * whatever its mode says. `mode` is applied as given (the caller applies its umask).
   */
  async create(ctx: Ctx, parent: number, name: string, mode: number, flags: number): Promise<{ attr: Attr; handle: Handle }> {
    const r = await this.openCreate(ctx, parent, name, mode, flags | O_EXCL);
    if (r.handle === undefined) throw new Error('assertion failed: an exclusive create answered no handle');
    return { attr: r.attr, handle: r.handle };
  }

  /**
   * open(2) with O_CREAT of one name in a directory: creates a missing regular file (`mode` as given, the
   * caller's umask applied; the creator may open it whatever its mode says) or, without O_EXCL, opens the
   * existing inode with the access `flags` ask for (O_TRUNC truncates it). An existing symlink is answered
   * without a handle: the caller follows it. One metadata round trip where the metadata layer can fuse it
   * (MetaApi.openCreate).
   */
  async openCreate(ctx: Ctx, parent: number, name: string, mode: number, flags: number): Promise<{ attr: Attr; handle?: Handle; created: boolean }> {
    const exclusive = (flags & O_EXCL) !== 0;
    const mask = Vfs.accessMask(flags);
    const m = this.meta;
    const r = await this.changing(() => (m.openCreate !== undefined ? m.openCreate(ctx, parent, name, mode & 0o7777, mask, exclusive) : openCreateVia(m, ctx, parent, name, mode & 0o7777, mask, exclusive)));
    if (!r.opened) return { attr: r.attr, created: false };
    // A new file's handle gets the access asked for (O_ACCMODE 3 is read-write, as Linux treats it).
    const f = r.created ? ((flags & O_ACCMODE) === 3 ? O_RDWR : flags & O_ACCMODE) | (flags & O_APPEND) : flags;
    const handle = await this.opened(ctx, r.attr.ino, f, r.attr, r.created);
    return { attr: this.withWriterLength(r.attr), handle, created: r.created };
  }

  handle(fh: number): Handle {
    const h = this.handles.get(fh);
    if (h === undefined || h.closed) throw new FsError('EBADF');
    return h;
  }

  private writer(ino: number): FileWriter {
    let w = this.writers.get(ino);
    if (w === undefined) {
      w = new FileWriter(ino, {
        meta: this.meta,
        chunks: this.chunks,
        uploads: this.uploads,
        account: (delta) => this.account(delta),
        waitForRoom: () => this.waitForRoom(),
        onLengthDropped: () => {
          this.flushEpoch++;
          this.changeCount++;
        },
        onCommitted: (i, attr, indexes, longest) => {
          this.changeCount++;
          this.files.changed(i, attr, indexes);
          for (const index of indexes) this.maybeCompact(i, index, longest);
        },
      });
      this.writers.set(ino, w);
    }
    return w;
  }

  private account(delta: number): void {
    this.buffered += delta;
    if (this.buffered < this.opts.bufferBytesMax && this.roomWaiters.length > 0) {
      const waiters = this.roomWaiters;
      this.roomWaiters = [];
      for (const w of waiters) w();
    }
  }

  private waitForRoom(): Promise<void> {
    if (this.buffered < this.opts.bufferBytesMax) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /** Writes data at pos (or at the end for O_APPEND handles); returns the offset written at. */
  async write(h: Handle, data: Buffer, pos: number): Promise<number> {
    if (h.closed) throw new FsError('EBADF');
    if (!h.writable) throw new FsError('EBADF', 'not open for writing');
    if (h.setIdCheck) {
      h.setIdCheck = false;
      await this.dropSetId(h);
    }
    // The commit moves an append to the file's real end (appendAt): this end only orders this client's runs.
    if (h.append) pos = this.withWriterLength(this.openFile(h).attr).length;
    if (!Number.isSafeInteger(pos) || pos < 0) throw new FsError('EINVAL', 'bad position');
    if (data.length === 0) return pos;
    // An append may land after the process's own buffered appends, and moves to the real end at commit.
    return this.changing(() => this.writer(h.ino).write(pos, data, h.append));
  }

  /**
   * A write by anyone but root clears the file's set-uid bit, and its set-gid bit when group-executable
   * (POSIX; Linux's should_remove_suid). The FUSE mount's kernel asks for it itself before the write; the
   * SDK's writes come here.
   */
  private async dropSetId(h: Handle): Promise<void> {
    const a = await this.meta.getattr(h.ino);
    if (!hasSetId(a.mode)) return;
    await this.changing(() => this.meta.setattr(h.ctx, h.ino, { mode: a.mode & ~setIdBits(a.mode) }));
  }

  /**
   * chmod, chown and utimens of an inode, and truncate when `size` is given (the caller checked the right to
   * truncate). Explicit times win over the mtime that a later commit of buffered writes would stamp: those
   * writes are committed first (tar and cp -p write, set the times on the open file, then close it).
   */
  async setattr(ctx: Ctx, ino: number, set: SetAttr & { size?: number }): Promise<Attr> {
    const { size, ...rest } = set;
    if (size !== undefined) await this.truncate(ino, size);
    if (rest.atime !== undefined || rest.mtime !== undefined) await this.flushIno(ino);
    if (Object.values(rest).every((v) => v === undefined)) return this.attr(ino);
    const a = await this.changing(() => this.withWrites(() => this.meta.setattr(ctx, ino, rest)));
    this.files.changed(ino, a, []);
    return a;
  }

  /** Reads up to length bytes at pos into a new buffer (shorter at the end of the file). */
  async read(h: Handle, pos: number, length: number): Promise<Buffer> {
    const out = Buffer.alloc(length);
    const n = await this.readTo(h, pos, out);
    return out.subarray(0, n);
  }

  /**
   * Reads into dest (its whole length, or up to the end of the file) at pos; returns bytes read. Bytes in
   * holes are zeroed here, so dest may hold garbage on entry.
   */
  async readTo(h: Handle, pos: number, dest: Buffer): Promise<number> {
    const { n, fileLength } = await this.readSpan(h, pos, dest.length);
    if (n === 0) return 0;
    this.readAhead(h, pos, n, fileLength);
    await this.readInto(h.ino, pos, dest.subarray(0, n));
    return n;
  }

  /** Checks a read of up to len bytes at pos, commits this client's buffered writes, and clamps it to the file. */
  private async readSpan(h: Handle, pos: number, len: number): Promise<{ n: number; fileLength: number }> {
    if (h.closed) throw new FsError('EBADF');
    if (!h.readable) throw new FsError('EBADF', 'not open for reading');
    if (!Number.isSafeInteger(pos) || pos < 0) throw new FsError('EINVAL', 'bad position');
    await this.flushIno(h.ino);
    const a = this.openFile(h).attr;
    if (a.type === 'dir') throw new FsError('EISDIR');
    return { n: Math.max(0, Math.min(len, a.length - pos)), fileLength: a.length };
  }

  /** The open inode behind a live handle. */
  private openFile(h: Handle): OpenFile {
    const f = this.files.get(h.ino);
    if (f === undefined) throw new Error(`assertion failed: handle ${h.fh} of inode ${h.ino} without an open file`);
    return f;
  }

  /** A chunk's slice references: from the open file's view when the inode is open here, else the engine. */
  private refs(ino: number, index: number): Promise<SliceRef[]> {
    const f = this.files.get(ino);
    return f === undefined ? this.meta.readChunk(ino, index) : f.refs(index, (i) => this.meta.readChunk(ino, i));
  }

  /**
   * Up to `len` bytes from pos (fewer at the end of the file, none past it), for a caller that only reads
   * them before its next await (the FUSE mount's read reply): a view of a cached block when one block of one
   * slice holds them all, which spares a copy per request; else a new buffer.
   */
  async readView(h: Handle, pos: number, len: number): Promise<Buffer> {
    const { n, fileLength } = await this.readSpan(h, pos, len);
    if (n === 0) return Buffer.alloc(0);
    this.readAhead(h, pos, n, fileLength);
    let out = await this.viewOf(h.ino, pos, n);
    if (out === undefined) {
      out = Buffer.allocUnsafe(n);
      await this.readInto(h.ino, pos, out);
    }
    return out;
  }

  /** [pos, pos + n) of a file as a block view (see readView), when one block of one slice holds it. */
  private async viewOf(ino: number, pos: number, n: number): Promise<Buffer | undefined> {
    const C = this.meta.chunkBytes;
    const index = Math.floor(pos / C);
    const from = pos - index * C;
    if (from + n > C) return undefined;
    const segments = cutSegments(visibleSegments(await this.refs(ino, index)), from, from + n);
    const s = segments[0];
    if (segments.length !== 1 || s === undefined || s.id === 0 || s.pos !== from || s.len !== n) return undefined;
    return this.chunks.sliceView(s.id, s.size, s.off, s.len, undefined, s.home);
  }

  /** Fills dest with the file's bytes from pos (dest must not extend past the file's length). */
  private async readInto(ino: number, pos: number, dest: Buffer): Promise<void> {
    const C = this.meta.chunkBytes;
    const jobs: Array<Promise<void>> = [];
    for (let off = pos; off < pos + dest.length; ) {
      const index = Math.floor(off / C);
      const from = off - index * C;
      const to = Math.min(C, from + (pos + dest.length - off));
      const base = off - pos;
      jobs.push(
        this.refs(ino, index).then(async (refs) => {
          const parts: Array<Promise<void>> = [];
          let cur = from;
          for (const s of cutSegments(visibleSegments(refs), from, to)) {
            if (s.pos > cur) dest.fill(0, base + (cur - from), base + (s.pos - from));
            cur = s.pos + s.len;
            if (s.id === 0) dest.fill(0, base + (s.pos - from), base + (cur - from));
            else parts.push(this.chunks.readSlice(s.id, s.size, s.off, s.len, dest, base + (s.pos - from), undefined, s.home));
          }
          if (cur < to) dest.fill(0, base + (cur - from), base + (to - from));
          await Promise.all(parts);
        }),
      );
      off = index * C + to;
    }
    await Promise.all(jobs);
  }

  /**
   * Called as a read arrives, before its bytes are fetched, so that the read itself joins the whole-block
   * fetches started here instead of fetching stripes of a block that read-ahead then fetches again.
   *
   * A read is sequential when it starts where the last one ended or, once a handle reads sequentially, near
   * there (READ_AHEAD_SLACK_BYTES): the kernel sends a FUSE mount's read-ahead as several requests at once, and
   * they may arrive out of order; random reads never open a window this way. (Opening the window at a
   * handle's first read at offset 0 made three readers of a cache group cross the WAN four times over: the
   * burst of whole-block prefetches bypassed the group; see the session note.)
   * The window starts at two blocks and doubles with each sequential read up to readAheadBytesMax, so that
   * several blocks are in flight at once and the bucket, not the round trip, bounds a first read; a read
   * elsewhere closes it.
   */
  private readAhead(h: Handle, pos: number, n: number, fileLength: number): void {
    const B = this.chunks.blockBytes;
    const sequential = h.lastEnd >= 0 && (pos === h.lastEnd || (h.ahead > 0 && Math.abs(pos - h.lastEnd) <= READ_AHEAD_SLACK_BYTES));
    if (sequential) h.ahead = Math.min(this.opts.readAheadBytesMax, Math.max(2 * B, h.ahead * 2));
    else {
      h.ahead = 0;
      h.prefetchedTo = 0;
    }
    h.lastEnd = Math.max(pos + n, sequential ? h.lastEnd : 0);
    if (h.ahead === 0) return;
    // From the block this read is in: it is fetched whole, once, and this read waits for that fetch.
    const from = Math.max(h.prefetchedTo, Math.floor(pos / B) * B);
    const to = Math.min(fileLength, pos + n + h.ahead);
    if (from >= to) return;
    h.prefetchedTo = to;
    this.spawn('read-ahead', () => this.prefetch(h.ino, from, to));
  }

  private async prefetch(ino: number, from: number, to: number): Promise<void> {
    const C = this.meta.chunkBytes;
    for (let off = from; off < to; ) {
      const index = Math.floor(off / C);
      const a = off - index * C;
      const b = Math.min(C, a + (to - off));
      for (const s of cutSegments(visibleSegments(await this.refs(ino, index)), a, b)) {
        if (s.id !== 0) this.chunks.prefetch(s.id, s.size, s.off, s.len, s.home);
      }
      off = index * C + b;
    }
  }

  /** Uploads and commits the inode's buffered writes. */
  async flushIno(ino: number): Promise<void> {
    const w = this.writers.get(ino);
    if (w === undefined) return;
    try {
      await w.flush();
    } finally {
      if (!w.dirty && this.writers.get(ino) === w) this.writers.delete(ino);
    }
  }

  async flush(h: Handle): Promise<void> {
    if (h.closed) throw new FsError('EBADF');
    await this.flushIno(h.ino);
  }

  /** Flushes and closes a handle; the last close of an unlinked file releases it. Idempotent per handle. */
  async release(h: Handle): Promise<void> {
    if (h.closed) return;
    h.closed = true;
    this.handles.delete(h.fh);
    try {
      if (h.writable) await this.flushIno(h.ino);
    } finally {
      this.files.closed(h.ino);
      // Not a change in the sense of `changes`: the last close of an unlinked file deletes an inode no name
      // points to any more (the unlink was the change).
      await this.meta.release(h.ino);
    }
  }

  /**
   * fallocate(2) on an open file: its buffered writes first, so the range operation sees (and may punch)
   * them. The handle must be open for writing.
   */
  async fallocate(h: Handle, mode: number, offset: number, length: number): Promise<void> {
    if (h.closed) throw new FsError('EBADF');
    if (!h.writable) throw new FsError('EBADF', 'not open for writing');
    await this.flushIno(h.ino);
    const a = await this.changing(() => this.meta.fallocate(h.ino, mode, offset, length));
    this.files.changed(h.ino, a);
  }

  /**
   * copy_file_range(2) by reference (the destination shares the source's blocks): both files' buffered writes
   * first. Returns the bytes copied (fewer at the source's end).
   */
  async copyFileRange(src: Handle, srcOff: number, dst: Handle, dstOff: number, length: number): Promise<number> {
    if (src.closed || dst.closed) throw new FsError('EBADF');
    if (!src.readable) throw new FsError('EBADF', 'source not open for reading');
    if (!dst.writable || dst.append) throw new FsError('EBADF', 'destination not open for writing');
    await this.flushIno(src.ino);
    await this.flushIno(dst.ino);
    const n = await this.changing(() => this.meta.copyFileRange(src.ino, srcOff, dst.ino, dstOff, length));
    if (n > 0) this.files.changed(dst.ino, await this.meta.getattr(dst.ino));
    return n;
  }

  // ---------------------------------------------------------------- names

  /** mknod(2) of any type but a directory or a symlink (devices need root); `mode` as given (umask applied). */
  mknod(ctx: Ctx, parent: number, name: string, type: Exclude<FileType, 'dir' | 'symlink'>, mode: number, rdev = 0): Promise<Attr> {
    if ((type === 'chr' || type === 'blk') && ctx.uid !== 0) return Promise.reject(new FsError('EPERM', 'only root may create devices'));
    return this.changing(() => this.meta.mknod(ctx, parent, name, type, mode & 0o7777, { rdev }));
  }

  mkdir(ctx: Ctx, parent: number, name: string, mode: number): Promise<Attr> {
    return this.changing(() => this.meta.mkdir(ctx, parent, name, mode & 0o7777));
  }

  symlink(ctx: Ctx, parent: number, name: string, target: string): Promise<Attr> {
    return this.changing(() => this.meta.symlink(ctx, parent, name, target));
  }

  readlink(ino: number): Promise<string> {
    return this.meta.readlink(ino);
  }

  async unlink(ctx: Ctx, parent: number, name: string): Promise<void> {
    await this.changing(() => this.meta.unlink(ctx, parent, name));
  }

  async rmdir(ctx: Ctx, parent: number, name: string): Promise<void> {
    await this.changing(() => this.meta.rmdir(ctx, parent, name));
  }

  /** rename(2) / renameat2(2) flags (RENAME_NOREPLACE, RENAME_EXCHANGE). */
  async rename(ctx: Ctx, parent: number, name: string, newParent: number, newName: string, flags = 0): Promise<void> {
    await this.changing(() => this.meta.rename(ctx, parent, name, newParent, newName, flags));
  }

  /**
   * One page of a directory (`after`: the last name of the previous page). With `plus`, each entry's
   * attributes (from the same engine reads), with this process's buffered writes.
   */
  async readdir(ctx: Ctx, ino: number, opts: { after?: string; limit?: number; plus?: boolean } = {}): Promise<DirEntry[]> {
    const page = await this.meta.readdir(ctx, ino, opts);
    if (opts.plus === true && this.writers.size > 0) {
      for (const e of page) if (e.attr !== undefined) e.attr = this.withWriterLength(e.attr);
    }
    return page;
  }

  /** access(2): mask of R_OK, W_OK, X_OK (0: existence). */
  async access(ctx: Ctx, ino: number, mask: number): Promise<void> {
    await this.meta.access(ctx, ino, mask);
  }

  statfs(): Promise<StatFs> {
    return this.meta.statfs();
  }

  // ---------------------------------------------------------------- extended attributes

  async setxattr(ctx: Ctx, ino: number, name: string, value: Buffer, flags = 0): Promise<void> {
    await this.changing(() => this.meta.setxattr(ctx, ino, name, value, flags));
  }

  getxattr(ctx: Ctx, ino: number, name: string): Promise<Buffer> {
    return this.meta.getxattr(ctx, ino, name);
  }

  listxattr(ctx: Ctx, ino: number): Promise<string[]> {
    return this.meta.listxattr(ctx, ino);
  }

  async removexattr(ctx: Ctx, ino: number, name: string): Promise<void> {
    await this.changing(() => this.meta.removexattr(ctx, ino, name));
  }

  // ---------------------------------------------------------------- locks (held in the engine, across clients)

  /** fcntl F_GETLK: the lock of another owner that stands in the way, if any. */
  getlk(h: Handle, owner: string, type: LockType, start: number, end: number): Promise<LockConflict | undefined> {
    return this.meta.getlk(h.ino, owner, type, start, end);
  }

  /** fcntl F_SETLK: sets or ('u') clears the owner's range; the conflicting lock if another stands in the way. */
  setlk(h: Handle, owner: string, type: LockType | 'u', start: number, end: number, pid = 0): Promise<LockConflict | undefined> {
    return this.meta.setlk(h.ino, owner, type, start, end, pid);
  }

  /** flock(2) for an open file (owner); false when another's flock stands in the way. */
  flock(h: Handle, owner: string, type: 'sh' | 'ex' | 'un', pid = 0): Promise<boolean> {
    return this.meta.flock(h.ino, owner, type, pid);
  }

  /** Whether this client may hold locks on the inode (no engine call): closes skip unlocks of nothing. */
  mayHoldLocks(ino: number): boolean {
    return this.meta.mayHoldLocks(ino);
  }

  // ---------------------------------------------------------------- compaction

  private maybeCompact(ino: number, index: number, refs: number): void {
    if (refs < this.opts.compactSlicesMin) return;
    const key = `${ino}:${index}`;
    if (this.compacting.has(key)) return;
    this.compacting.add(key);
    this.spawn('compaction', async () => {
      try {
        // Writers may add references faster than one compaction takes: go again while the chunk is long.
        for (let round = 0; round < COMPACT_ROUNDS_MAX; round++) {
          if (!(await this.compactChunk(ino, index))) break;
          if ((await this.meta.readChunk(ino, index)).length < this.opts.compactSlicesMin) break;
        }
      } finally {
        this.compacting.delete(key);
      }
    });
  }

  /**
   * Rewrites a chunk's visible bytes as one new slice and swaps the references in one transaction, if the
   * chunk did not change meanwhile. Returns whether it swapped.
   */
  async compactChunk(ino: number, index: number): Promise<boolean> {
    const refs = await this.meta.readChunk(ino, index);
    if (refs.length < 2) return false;
    const view = visibleSegments(refs);
    const data = view.filter((s) => s.id !== 0);
    if (data.length === 0) return false;
    const start = data[0]!.pos;
    const end = data[data.length - 1]!.pos + data[data.length - 1]!.len;
    const buf = Buffer.alloc(end - start);
    await Promise.all(
      cutSegments(view, start, end)
        .filter((s) => s.id !== 0)
        .map((s) => this.chunks.readSlice(s.id, s.size, s.off, s.len, buf, s.pos - start, undefined, s.home)),
    );
    const id = await this.meta.newSliceId();
    const B = this.chunks.blockBytes;
    const puts: Array<Promise<void>> = [];
    for (let i = 0; i * B < buf.length; i++) {
      puts.push(this.uploads.run(() => this.chunks.putBlock(id, i, buf.subarray(i * B, Math.min(buf.length, (i + 1) * B)))));
    }
    try {
      await Promise.all(puts);
    } catch (err) {
      await this.meta.abandonSlice(id, buf.length);
      throw err;
    }
    const home = this.chunks.home;
    const ref: SliceRef = { pos: start, id, size: buf.length, off: 0, len: buf.length, ...(home === undefined ? {} : { home }) };
    // Zero references only mask older data; with all older references replaced, gaps read as zeros anyway.
    const swapped = await this.meta.replaceSlices(ino, index, refs, ref);
    if (!swapped) await this.meta.abandonSlice(id, buf.length);
    else this.files.changed(ino, undefined, [index]);
    return swapped;
  }

  /** Waits for background work (read-ahead, compaction). */
  async drain(): Promise<void> {
    while (this.background.size > 0) await Promise.all([...this.background]);
  }

  /** Flushes every writer and closes every handle. */
  async close(): Promise<void> {
    for (const h of [...this.handles.values()]) await this.release(h).catch((e: unknown) => this.opts.onBackgroundError('close', e));
    for (const ino of [...this.writers.keys()]) await this.flushIno(ino).catch((e: unknown) => this.opts.onBackgroundError('flush', e));
    await this.drain();
  }
}

