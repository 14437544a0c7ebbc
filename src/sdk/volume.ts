/**
 * The SDK: an object shaped like `fs/promises`, over one mounted volume. Paths are absolute inside the
 * volume ('/data/x'); a relative path is taken from the volume's root. Errors are FsError with Node's codes
 * (`err.code === 'ENOENT'`), syscall and path.
 */

import { Readable, Writable } from 'node:stream';
import { FsError, isFsError } from '../errors.js';
import { RENAME_EXCHANGE, RENAME_NOREPLACE, ROOT_INO, TRASH_INO, type Attr, type Ctx, type FileType } from '../meta/types.js';
import { O_APPEND, O_CREAT, O_EXCL, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, SYMLINK_FOLLOW_MAX, Vfs, type Handle } from '../vfs/vfs.js';
import { Dirent, Stats } from './stats.js';
import type { ChunkStats } from '../chunk/store.js';
import type { ChunkCacheStats } from '../cache/reader.js';
import type { CacheGroupMember } from '../cache/group/member.js';
import type { EgressMeter } from '../region/egress.js';
import type { Writeback } from '../cache/writeback.js';

const MESSAGES: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EEXIST: 'file already exists',
  ENOTDIR: 'not a directory',
  EISDIR: 'illegal operation on a directory',
  ENOTEMPTY: 'directory not empty',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EINVAL: 'invalid argument',
  ELOOP: 'too many symbolic links encountered',
  ENAMETOOLONG: 'name too long',
  EBADF: 'bad file descriptor',
  EXDEV: 'cross-device link not permitted',
  EBUSY: 'resource busy or locked',
  ENODATA: 'no data available',
  ENOTSUP: 'operation not supported',
  EIO: 'i/o error',
};

/**
 * Rethrows err as an FsError naming the syscall and path, like Node's fs errors: the SDK rejects with nothing
 * else. An error that is not a file-system answer (a bucket that failed, lost a block or holds a bad copy; an
 * engine that failed or is unreachable; a bug) is an I/O error to the caller, as a disk's would be (the FUSE
 * mount answers EIO for the same): EIO, with the original as `cause` and its words in the message.
 */
function wrap(err: unknown, syscall: string, path?: string, dest?: string): never {
  const fsErr = isFsError(err) ? err : new FsError('EIO', err instanceof Error ? err.message : String(err), { cause: err });
  const where = path === undefined ? '' : dest === undefined ? ` '${path}'` : ` '${path}' -> '${dest}'`;
  // An I/O error keeps what went wrong (which block, what each bucket said): the code alone tells a user nothing.
  const detail = fsErr.code === 'EIO' && fsErr.message !== 'EIO' && !fsErr.message.startsWith('EIO: ') ? ` (${fsErr.message})` : '';
  const e = new FsError(fsErr.code, `${fsErr.code}: ${MESSAGES[fsErr.code] ?? fsErr.message}${detail}, ${syscall}${where}`, { cause: fsErr, syscall });
  e.path = path;
  throw e;
}

export type OpenFlags = string | number;

const FLAG_STRINGS: Record<string, number> = {
  r: O_RDONLY,
  rs: O_RDONLY,
  'r+': O_RDWR,
  'rs+': O_RDWR,
  w: O_WRONLY | O_CREAT | O_TRUNC,
  wx: O_WRONLY | O_CREAT | O_TRUNC | O_EXCL,
  xw: O_WRONLY | O_CREAT | O_TRUNC | O_EXCL,
  'w+': O_RDWR | O_CREAT | O_TRUNC,
  'wx+': O_RDWR | O_CREAT | O_TRUNC | O_EXCL,
  'xw+': O_RDWR | O_CREAT | O_TRUNC | O_EXCL,
  a: O_WRONLY | O_CREAT | O_APPEND,
  ax: O_WRONLY | O_CREAT | O_APPEND | O_EXCL,
  xa: O_WRONLY | O_CREAT | O_APPEND | O_EXCL,
  as: O_WRONLY | O_CREAT | O_APPEND,
  'a+': O_RDWR | O_CREAT | O_APPEND,
  'ax+': O_RDWR | O_CREAT | O_APPEND | O_EXCL,
  'xa+': O_RDWR | O_CREAT | O_APPEND | O_EXCL,
  'as+': O_RDWR | O_CREAT | O_APPEND,
};

export function parseFlags(flags: OpenFlags): number {
  if (typeof flags === 'number') return flags;
  const f = FLAG_STRINGS[flags];
  if (f === undefined) throw new FsError('EINVAL', `unknown open flags ${JSON.stringify(flags)}`);
  return f;
}

type TimeLike = number | string | Date;

/** Node's time arguments: numbers are seconds, strings are numeric seconds, Dates are dates. Returns ms. */
function toMs(t: TimeLike): number {
  if (t instanceof Date) return t.getTime();
  const n = typeof t === 'string' ? Number(t) : t;
  if (!Number.isFinite(n)) throw new FsError('EINVAL', `invalid time ${String(t)}`);
  return n * 1000;
}

type Data = Buffer | Uint8Array | string;
function toBuffer(data: Data, encoding: BufferEncoding = 'utf8'): Buffer {
  if (typeof data === 'string') return Buffer.from(data, encoding);
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

export interface ReadResult {
  bytesRead: number;
  buffer: Buffer;
}

/** A file handle like fs/promises' FileHandle, with a position for reads and writes that give none. */
export class FileHandle {
  readonly #vol: Volume;
  readonly #h: Handle;
  readonly #path: string;
  #pos = 0;

  constructor(vol: Volume, h: Handle, path: string) {
    this.#vol = vol;
    this.#h = h;
    this.#path = path;
  }

  get fd(): number {
    return this.#h.fh;
  }

  get ino(): number {
    return this.#h.ino;
  }

  /** The Vfs handle behind it (the volume's own calls that take two handles, such as copyFile). */
  get vfsHandle(): Handle {
    return this.#h;
  }

  async read(buffer?: Buffer, offset = 0, length?: number, position?: number | null): Promise<ReadResult> {
    const buf = buffer ?? Buffer.alloc(16384);
    const len = length ?? buf.length - offset;
    if (offset < 0 || len < 0 || offset + len > buf.length) throw new FsError('EINVAL', 'buffer range out of bounds');
    // As fs/promises: a zero-length read returns at once, whatever the handle or file.
    if (len === 0) return { bytesRead: 0, buffer: buf };
    const pos = position ?? this.#pos;
    try {
      const n = await this.#vol.vfs.readTo(this.#h, pos, buf.subarray(offset, offset + len));
      if (position === undefined || position === null) this.#pos = pos + n;
      return { bytesRead: n, buffer: buf };
    } catch (err) {
      wrap(err, 'read', this.#path);
    }
  }

  async write(data: Data, offset?: number, length?: number, position?: number | null): Promise<{ bytesWritten: number; buffer: Data }> {
    let buf: Buffer;
    if (typeof data === 'string') {
      // write(string, position?, encoding?)
      buf = Buffer.from(data, 'utf8');
      position = offset ?? null;
    } else {
      const b = toBuffer(data);
      const off = offset ?? 0;
      const len = length ?? b.length - off;
      if (off < 0 || len < 0 || off + len > b.length) throw new FsError('EINVAL', 'buffer range out of bounds');
      buf = b.subarray(off, off + len);
    }
    // As fs/promises: writing nothing succeeds at once, whatever the handle or file.
    if (buf.length === 0) return { bytesWritten: 0, buffer: data };
    const pos = position ?? this.#pos;
    try {
      const at = await this.#vol.vfs.write(this.#h, buf, pos);
      if (position === undefined || position === null || this.#h.append) this.#pos = at + buf.length;
      return { bytesWritten: buf.length, buffer: data };
    } catch (err) {
      wrap(err, 'write', this.#path);
    }
  }

  async readFile(options: { encoding: BufferEncoding } | BufferEncoding): Promise<string>;
  async readFile(): Promise<Buffer>;
  async readFile(options?: { encoding?: BufferEncoding } | BufferEncoding): Promise<Buffer | string>;
  async readFile(options?: { encoding?: BufferEncoding } | BufferEncoding): Promise<Buffer | string> {
    const st = await this.stat();
    const out = Buffer.allocUnsafe(st.size);
    let done = 0;
    while (done < st.size) {
      const { bytesRead } = await this.read(out, done, st.size - done, done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    const enc = typeof options === 'string' ? options : options?.encoding;
    return enc === undefined ? out.subarray(0, done) : out.subarray(0, done).toString(enc);
  }

  async writeFile(data: Data): Promise<void> {
    const buf = toBuffer(data);
    await this.write(buf, 0, buf.length, this.#h.append ? null : this.#pos);
  }

  async appendFile(data: Data): Promise<void> {
    const buf = toBuffer(data);
    const st = await this.stat();
    await this.write(buf, 0, buf.length, st.size);
  }

  async truncate(len = 0): Promise<void> {
    try {
      await this.#vol.vfs.ftruncate(this.#h, len);
    } catch (err) {
      wrap(err, 'ftruncate', this.#path);
    }
  }

  async sync(): Promise<void> {
    try {
      await this.#vol.vfs.flush(this.#h);
    } catch (err) {
      wrap(err, 'fsync', this.#path);
    }
  }

  datasync(): Promise<void> {
    return this.sync();
  }

  async stat(): Promise<Stats> {
    try {
      return new Stats(await this.#vol.vfs.getattr(this.#h.ino));
    } catch (err) {
      wrap(err, 'fstat', this.#path);
    }
  }

  async chmod(mode: number): Promise<void> {
    try {
      await this.#vol.vfs.setattr(this.#vol.ctx, this.#h.ino, { mode });
    } catch (err) {
      wrap(err, 'fchmod', this.#path);
    }
  }

  async chown(uid: number, gid: number): Promise<void> {
    try {
      await this.#vol.vfs.setattr(this.#vol.ctx, this.#h.ino, { uid, gid });
    } catch (err) {
      wrap(err, 'fchown', this.#path);
    }
  }

  async utimes(atime: TimeLike, mtime: TimeLike): Promise<void> {
    try {
      await this.#vol.vfs.setattr(this.#vol.ctx, this.#h.ino, { atime: toMs(atime), mtime: toMs(mtime) });
    } catch (err) {
      wrap(err, 'futime', this.#path);
    }
  }

  async close(): Promise<void> {
    try {
      await this.#vol.vfs.release(this.#h);
    } catch (err) {
      wrap(err, 'close', this.#path);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

export interface VolumeInfo {
  name: string;
  uuid: string;
  storage: string;
  blockBytes: number;
  compression: string;
  trashDays: number;
}

export interface VolumeStats {
  chunks: ChunkStats;
  memCache: ChunkCacheStats['memory'];
  diskCache: ChunkCacheStats['disk'];
}

export class Volume {
  readonly vfs: Vfs;
  readonly ctx: Ctx;
  readonly umask: number;
  /** This client's part in a cache group, when it joined one (OpenVolumeOptions.cacheGroup). */
  cacheGroup: CacheGroupMember | undefined;
  /** Bytes this client read from each region's bucket (region/egress.ts); set by openVolume. */
  egress: EgressMeter | undefined;
  /**
   * This client's write-back staging area (cache/writeback.ts): with OpenVolumeOptions.writeback, or when the
   * cache directory held blocks an earlier run staged; `drain()` waits for the uploads, `uploadStats()` counts.
   */
  writeback: Writeback | undefined;
  readonly #onClose: () => Promise<void>;
  #closed = false;

  constructor(vfs: Vfs, ctx: Ctx, umask: number, onClose: () => Promise<void>) {
    this.vfs = vfs;
    this.ctx = ctx;
    this.umask = umask;
    this.#onClose = onClose;
  }

  get info(): VolumeInfo {
    const f = this.vfs.format;
    return { name: f.name, uuid: f.uuid, storage: f.storage, blockBytes: f.blockBytes, compression: f.compression, trashDays: f.trashDays };
  }

  /**
   * This client's block counters: what came from the bucket, from each cache, and what the disk cache stored,
   * dropped and holds (ChunkStore.cacheStats; `counters()` gives them flat for metrics).
   */
  stats(): VolumeStats {
    // chunk/ knows the caches' counters only as records; the reader that open.ts builds (cache/reader.ts) reports
    // them as ChunkCacheStats.
    const { memory, disk } = this.vfs.chunks.cacheStats() as ChunkCacheStats;
    return { chunks: { ...this.vfs.chunks.stats }, memCache: memory, diskCache: disk };
  }

  /** The same volume seen as another user (permission checks use ctx). */
  as(ctx: Ctx): Volume {
    return new Volume(this.vfs, ctx, this.umask, () => Promise.resolve());
  }

  // ---------------------------------------------------------------- files

  async open(path: string, flags: OpenFlags = 'r', mode = 0o666): Promise<FileHandle> {
    const f = parseFlags(flags);
    try {
      let attr: Attr | undefined;
      let h: Handle | undefined;
      if ((f & O_CREAT) !== 0 && Vfs.split(path).length > 0) {
        // O_CREAT follows a symlink in the last component (unless O_EXCL) and creates a missing target.
        let p = path;
        for (let links = 0; attr === undefined; links++) {
          if (Vfs.split(p).length === 0) {
            attr = await this.vfs.resolve(this.ctx, p, true); // a link to the root ('.', '/')
            break;
          }
          const { parent, name } = await this.vfs.resolveParent(this.ctx, p);
          let found: Attr;
          if (p.endsWith('/')) {
            // Only a directory may be named with a trailing slash, and O_CREAT makes none.
            try {
              found = await this.vfs.lookup(this.ctx, parent.ino, name);
            } catch (err) {
              if (isFsError(err, 'ENOENT')) throw new FsError('EISDIR');
              throw err;
            }
            if ((f & O_EXCL) !== 0) throw new FsError('EEXIST');
          } else {
            // Lookup, create and open in one step (one round trip to a metadata service).
            const r = await this.vfs.openCreate(this.ctx, parent.ino, name, mode & ~this.umask, f);
            if (r.handle !== undefined) {
              attr = r.attr;
              h = r.handle;
              break;
            }
            found = r.attr; // a symlink, not opened
          }
          if (found.type !== 'symlink') {
            attr = found;
          } else {
            if (links >= SYMLINK_FOLLOW_MAX) throw new FsError('ELOOP');
            const target = found.target ?? '';
            p = target.startsWith('/') ? target : `/${Vfs.split(p).slice(0, -1).join('/')}/${target}`;
          }
        }
      } else {
        attr = await this.vfs.resolve(this.ctx, path, true);
      }
      // Access checks, O_TRUNC and the creator's rights are Vfs's.
      h ??= await this.vfs.open(this.ctx, attr.ino, f);
      return new FileHandle(this, h, path);
    } catch (err) {
      wrap(err, 'open', path);
    }
  }

  /** As fs/promises: a string when an encoding is given, else a Buffer. */
  async readFile(path: string, options: { encoding: BufferEncoding; flag?: OpenFlags } | BufferEncoding): Promise<string>;
  async readFile(path: string, options?: { flag?: OpenFlags }): Promise<Buffer>;
  async readFile(path: string, options?: { encoding?: BufferEncoding; flag?: OpenFlags } | BufferEncoding): Promise<Buffer | string>;
  async readFile(path: string, options?: { encoding?: BufferEncoding; flag?: OpenFlags } | BufferEncoding): Promise<Buffer | string> {
    const fh = await this.open(path, typeof options === 'object' ? (options.flag ?? 'r') : 'r');
    try {
      return await fh.readFile(options);
    } finally {
      await fh.close();
    }
  }

  async writeFile(path: string, data: Data, options?: { mode?: number; flag?: OpenFlags; encoding?: BufferEncoding } | BufferEncoding): Promise<void> {
    const o = typeof options === 'string' ? { encoding: options } : (options ?? {});
    const fh = await this.open(path, o.flag ?? 'w', o.mode ?? 0o666);
    try {
      await fh.writeFile(toBuffer(data, o.encoding));
    } finally {
      await fh.close();
    }
  }

  async appendFile(path: string, data: Data, options?: { mode?: number; encoding?: BufferEncoding } | BufferEncoding): Promise<void> {
    const o = typeof options === 'string' ? { encoding: options } : (options ?? {});
    const fh = await this.open(path, 'a', o.mode ?? 0o666);
    try {
      await fh.writeFile(toBuffer(data, o.encoding));
    } finally {
      await fh.close();
    }
  }

  /**
   * copyFile by reference: the copy shares the source's blocks (copy_file_range). As in Node (libuv): the
   * destination takes the source's mode, and copying a file onto itself (or onto another of its names)
   * does nothing.
   */
  async copyFile(src: string, dest: string, mode = 0): Promise<void> {
    const COPYFILE_EXCL = 1;
    const s = await this.open(src, 'r');
    try {
      const st = await s.stat();
      if (st.isDirectory()) throw new FsError('EISDIR');
      if ((mode & COPYFILE_EXCL) === 0) {
        const same = await this.vfs.resolve(this.ctx, dest, true).then(
          (a) => a.ino === s.ino,
          () => false, // opening the destination reports any problem with it
        );
        if (same) return;
      }
      const d = await this.open(dest, (mode & COPYFILE_EXCL) !== 0 ? 'wx' : 'w', st.mode & 0o7777);
      try {
        await this.vfs.setattr(this.ctx, d.ino, { mode: st.mode & 0o7777 });
        await this.vfs.copyFileRange(s.vfsHandle, 0, d.vfsHandle, 0, st.size);
      } finally {
        await d.close();
      }
    } catch (err) {
      wrap(err, 'copyfile', src, dest);
    } finally {
      await s.close();
    }
  }

  createReadStream(path: string, options: { start?: number; end?: number; highWaterMark?: number } = {}): Readable {
    const hwm = options.highWaterMark ?? 1 << 20;
    let fh: FileHandle | undefined;
    let pos = options.start ?? 0;
    const end = options.end ?? Infinity; // inclusive, as in fs.createReadStream
    const stream: Readable = new Readable({
      highWaterMark: hwm,
      construct: (cb) => {
        this.open(path, 'r').then(
          (h) => {
            fh = h;
            cb();
          },
          (e: unknown) => cb(e as Error),
        );
      },
      read: (size) => {
        const n = Math.min(Math.max(size, hwm), end + 1 - pos);
        if (n <= 0 || fh === undefined) {
          stream.push(null);
          return;
        }
        fh.read(Buffer.alloc(n), 0, n, pos).then(
          ({ bytesRead, buffer }) => {
            pos += bytesRead;
            stream.push(bytesRead === 0 ? null : buffer.subarray(0, bytesRead));
          },
          (e: unknown) => stream.destroy(e as Error),
        );
      },
      destroy: (e, cb) => {
        if (fh === undefined) return cb(e);
        fh.close().then(
          () => cb(e),
          (e2: unknown) => cb(e ?? (e2 as Error)),
        );
      },
    });
    return stream;
  }

  createWriteStream(path: string, options: { flags?: OpenFlags; start?: number; mode?: number } = {}): Writable {
    let fh: FileHandle | undefined;
    let pos = options.start;
    return new Writable({
      highWaterMark: 1 << 20,
      construct: (cb) => {
        this.open(path, options.flags ?? 'w', options.mode ?? 0o666).then(
          (h) => {
            fh = h;
            cb();
          },
          (e: unknown) => cb(e as Error),
        );
      },
      write: (chunk: Buffer, _enc, cb) => {
        fh!.write(chunk, 0, chunk.length, pos ?? null).then(
          ({ bytesWritten }) => {
            if (pos !== undefined) pos += bytesWritten;
            cb();
          },
          (e: unknown) => cb(e as Error),
        );
      },
      final: (cb) => {
        const h = fh;
        fh = undefined;
        if (h === undefined) return cb();
        h.close().then(
          () => cb(),
          (e: unknown) => cb(e as Error),
        );
      },
      destroy: (e, cb) => {
        const h = fh;
        fh = undefined;
        if (h === undefined) return cb(e);
        h.close().then(
          () => cb(e),
          (e2: unknown) => cb(e ?? (e2 as Error)),
        );
      },
    });
  }

  // ---------------------------------------------------------------- attributes

  async stat(path: string): Promise<Stats> {
    try {
      return new Stats(await this.vfs.stat(this.ctx, path, true));
    } catch (err) {
      wrap(err, 'stat', path);
    }
  }

  async lstat(path: string): Promise<Stats> {
    try {
      return new Stats(await this.vfs.stat(this.ctx, path, false));
    } catch (err) {
      wrap(err, 'lstat', path);
    }
  }

  async exists(path: string): Promise<boolean> {
    try {
      await this.vfs.resolve(this.ctx, path, true);
      return true;
    } catch (err) {
      if (isFsError(err, 'ENOENT')) return false;
      throw err;
    }
  }

  async access(path: string, mode = 0): Promise<void> {
    try {
      const a = await this.vfs.resolve(this.ctx, path, true);
      if (mode !== 0) await this.vfs.access(this.ctx, a.ino, mode);
    } catch (err) {
      wrap(err, 'access', path);
    }
  }

  async chmod(path: string, mode: number): Promise<void> {
    try {
      const a = await this.vfs.resolve(this.ctx, path, true);
      await this.vfs.setattr(this.ctx, a.ino, { mode });
    } catch (err) {
      wrap(err, 'chmod', path);
    }
  }

  async chown(path: string, uid: number, gid: number): Promise<void> {
    try {
      const a = await this.vfs.resolve(this.ctx, path, true);
      await this.vfs.setattr(this.ctx, a.ino, { ...(uid >= 0 ? { uid } : {}), ...(gid >= 0 ? { gid } : {}) });
    } catch (err) {
      wrap(err, 'chown', path);
    }
  }

  async lchown(path: string, uid: number, gid: number): Promise<void> {
    try {
      const a = await this.vfs.resolve(this.ctx, path, false);
      await this.vfs.setattr(this.ctx, a.ino, { ...(uid >= 0 ? { uid } : {}), ...(gid >= 0 ? { gid } : {}) });
    } catch (err) {
      wrap(err, 'lchown', path);
    }
  }

  async utimes(path: string, atime: TimeLike, mtime: TimeLike): Promise<void> {
    try {
      const a = await this.vfs.resolve(this.ctx, path, true);
      await this.vfs.setattr(this.ctx, a.ino, { atime: toMs(atime), mtime: toMs(mtime) });
    } catch (err) {
      wrap(err, 'utime', path);
    }
  }

  async truncate(path: string, len = 0): Promise<void> {
    try {
      await this.vfs.truncatePath(this.ctx, path, len);
    } catch (err) {
      wrap(err, 'truncate', path);
    }
  }

  // ---------------------------------------------------------------- names

  async readdir(path: string, options?: { withFileTypes?: false } | BufferEncoding): Promise<string[]>;
  async readdir(path: string, options: { withFileTypes: true }): Promise<Dirent[]>;
  async readdir(path: string, options?: { withFileTypes?: boolean } | BufferEncoding): Promise<string[] | Dirent[]> {
    try {
      const d = await this.vfs.resolve(this.ctx, path, true);
      if (d.type !== 'dir') throw new FsError('ENOTDIR');
      const entries: Array<{ name: string; type: FileType }> = [];
      let after: string | undefined;
      for (;;) {
        const page = await this.vfs.readdir(this.ctx, d.ino, { ...(after === undefined ? {} : { after }), limit: 1000 });
        for (const e of page) if (!(d.ino === ROOT_INO && e.ino === TRASH_INO)) entries.push(e);
        if (page.length < 1000) break;
        after = page[page.length - 1]!.name;
      }
      if (typeof options === 'object' && options.withFileTypes) {
        const parent = '/' + Vfs.split(path).join('/');
        return entries.map((e) => new Dirent(e.name, parent, e.type));
      }
      return entries.map((e) => e.name);
    } catch (err) {
      wrap(err, 'scandir', path);
    }
  }

  async mkdir(path: string, options?: { recursive?: boolean; mode?: number } | number): Promise<string | undefined> {
    const o = typeof options === 'number' ? { mode: options } : (options ?? {});
    const mode = (o.mode ?? 0o777) & ~this.umask;
    try {
      if (!o.recursive) {
        const { parent, name } = await this.vfs.resolveParent(this.ctx, path);
        await this.vfs.mkdir(this.ctx, parent.ino, name, mode);
        return undefined;
      }
      const names = Vfs.split(path);
      let cur = await this.vfs.getattr(ROOT_INO);
      let first: string | undefined;
      for (let i = 0; i < names.length; i++) {
        const name = names[i]!;
        try {
          cur = await this.vfs.resolve(this.ctx, '/' + names.slice(0, i + 1).join('/'), true);
          if (cur.type !== 'dir') throw new FsError(i === names.length - 1 ? 'EEXIST' : 'ENOTDIR');
        } catch (err) {
          if (!isFsError(err, 'ENOENT')) throw err;
          try {
            cur = await this.vfs.mkdir(this.ctx, cur.ino, name, mode);
          } catch (e2) {
            if (!isFsError(e2, 'EEXIST')) throw e2;
            // The name exists yet did not resolve: a dangling symlink or a racing creator. As Node's
            // mkdir(recursive): the last name reports why it does not resolve; an earlier one is ENOTDIR.
            const last = i === names.length - 1;
            try {
              cur = await this.vfs.resolve(this.ctx, '/' + names.slice(0, i + 1).join('/'), true);
            } catch (e3) {
              if (last) throw e3;
              throw new FsError('ENOTDIR');
            }
            if (cur.type !== 'dir') throw new FsError(last ? 'EEXIST' : 'ENOTDIR');
            continue;
          }
          first ??= '/' + names.slice(0, i + 1).join('/');
        }
      }
      return first;
    } catch (err) {
      wrap(err, 'mkdir', path);
    }
  }

  async rmdir(path: string): Promise<void> {
    try {
      const { parent, name } = await this.vfs.resolveParent(this.ctx, path);
      await this.vfs.rmdir(this.ctx, parent.ino, name);
    } catch (err) {
      wrap(err, 'rmdir', path);
    }
  }

  async unlink(path: string): Promise<void> {
    try {
      const { parent, name } = await this.vfs.resolveParent(this.ctx, path);
      await this.vfs.unlink(this.ctx, parent.ino, name);
    } catch (err) {
      wrap(err, 'unlink', path);
    }
  }

  /** rm -r / rm -f. */
  async rm(path: string, options: { recursive?: boolean; force?: boolean } = {}): Promise<void> {
    let a: Attr;
    try {
      a = await this.vfs.resolve(this.ctx, path, false);
    } catch (err) {
      if (options.force && isFsError(err, 'ENOENT')) return;
      wrap(err, 'rm', path);
    }
    if (a.type !== 'dir') return this.unlink(path);
    if (!options.recursive) wrap(new FsError('EISDIR', 'is a directory (use recursive)'), 'rm', path);
    const base = '/' + Vfs.split(path).join('/');
    for (const name of await this.readdir(path)) await this.rm(`${base === '/' ? '' : base}/${name}`, options);
    if (base !== '/') await this.rmdir(path);
  }

  /**
   * rename(2). `flags` takes RENAME_NOREPLACE (1) and RENAME_EXCHANGE (2) as in renameat2(2), or the
   * options { noReplace, exchange }.
   */
  async rename(oldPath: string, newPath: string, flags: number | { noReplace?: boolean; exchange?: boolean } = 0): Promise<void> {
    const f = typeof flags === 'number' ? flags : (flags.noReplace ? RENAME_NOREPLACE : 0) | (flags.exchange ? RENAME_EXCHANGE : 0);
    try {
      const src = await this.vfs.resolveParent(this.ctx, oldPath);
      const dst = await this.vfs.resolveParent(this.ctx, newPath);
      if (oldPath.endsWith('/') || newPath.endsWith('/')) {
        const s = await this.vfs.lookup(this.ctx, src.parent.ino, src.name);
        if (s.type !== 'dir') throw new FsError('ENOTDIR');
      }
      await this.vfs.rename(this.ctx, src.parent.ino, src.name, dst.parent.ino, dst.name, f);
    } catch (err) {
      wrap(err, 'rename', oldPath, newPath);
    }
  }

  async symlink(target: string, path: string): Promise<void> {
    try {
      const { parent, name } = await this.vfs.resolveParent(this.ctx, path);
      await this.vfs.symlink(this.ctx, parent.ino, name, target);
    } catch (err) {
      wrap(err, 'symlink', target, path);
    }
  }

  async readlink(path: string): Promise<string> {
    try {
      const a = await this.vfs.resolve(this.ctx, path, false);
      return await this.vfs.readlink(a.ino);
    } catch (err) {
      wrap(err, 'readlink', path);
    }
  }

  async link(existingPath: string, newPath: string): Promise<void> {
    try {
      const a = await this.vfs.resolve(this.ctx, existingPath, false);
      const { parent, name } = await this.vfs.resolveParent(this.ctx, newPath);
      await this.vfs.link(this.ctx, a.ino, parent.ino, name);
    } catch (err) {
      wrap(err, 'link', existingPath, newPath);
    }
  }

  /** mkfifo / mknod for FIFOs and sockets (devices need root). */
  async mknod(path: string, type: 'fifo' | 'socket' | 'chr' | 'blk', mode = 0o666, rdev = 0): Promise<void> {
    try {
      const { parent, name } = await this.vfs.resolveParent(this.ctx, path);
      await this.vfs.mknod(this.ctx, parent.ino, name, type, mode & ~this.umask, rdev);
    } catch (err) {
      wrap(err, 'mknod', path);
    }
  }

  async realpath(path: string): Promise<string> {
    try {
      const target = await this.vfs.resolve(this.ctx, path, true);
      // Walk up through parents (directories know theirs); files are found by name in their directory.
      const names: string[] = [];
      let ino = target.ino;
      let a = target;
      if (a.type !== 'dir') {
        const { parent } = await this.vfs.resolveParent(this.ctx, path);
        const page = await this.findName(parent.ino, ino);
        names.unshift(page);
        ino = parent.ino;
        a = parent;
        // The parent itself may have been reached through symlinks: continue from it.
        a = await this.vfs.getattr(ino);
      }
      while (ino !== ROOT_INO) {
        names.unshift(await this.findName(a.parent, ino));
        ino = a.parent;
        a = await this.vfs.getattr(ino);
      }
      return '/' + names.join('/');
    } catch (err) {
      wrap(err, 'realpath', path);
    }
  }

  private async findName(dir: number, ino: number): Promise<string> {
    let after: string | undefined;
    for (;;) {
      const page = await this.vfs.readdir(this.ctx, dir, { ...(after === undefined ? {} : { after }), limit: 1000 });
      const hit = page.find((e) => e.ino === ino);
      if (hit !== undefined) return hit.name;
      if (page.length < 1000) throw new FsError('ENOENT');
      after = page[page.length - 1]!.name;
    }
  }

  // ---------------------------------------------------------------- extended attributes

  async getxattr(path: string, name: string): Promise<Buffer> {
    try {
      const a = await this.vfs.resolve(this.ctx, path, true);
      return await this.vfs.getxattr(this.ctx, a.ino, name);
    } catch (err) {
      wrap(err, 'getxattr', path);
    }
  }

  async setxattr(path: string, name: string, value: Data, flags = 0): Promise<void> {
    try {
      const a = await this.vfs.resolve(this.ctx, path, true);
      await this.vfs.setxattr(this.ctx, a.ino, name, toBuffer(value), flags);
    } catch (err) {
      wrap(err, 'setxattr', path);
    }
  }

  async listxattr(path: string): Promise<string[]> {
    try {
      const a = await this.vfs.resolve(this.ctx, path, true);
      return await this.vfs.listxattr(this.ctx, a.ino);
    } catch (err) {
      wrap(err, 'listxattr', path);
    }
  }

  async removexattr(path: string, name: string): Promise<void> {
    try {
      const a = await this.vfs.resolve(this.ctx, path, true);
      await this.vfs.removexattr(this.ctx, a.ino, name);
    } catch (err) {
      wrap(err, 'removexattr', path);
    }
  }

  async statfs(path = '/'): Promise<{ type: number; bsize: number; blocks: number; bfree: number; bavail: number; files: number; ffree: number }> {
    try {
      await this.vfs.resolve(this.ctx, path, true);
      const s = await this.vfs.statfs();
      return { type: 0x46525259, bsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree };
    } catch (err) {
      wrap(err, 'statfs', path);
    }
  }

  /** Flushes every open file, closes the session and the stores. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#onClose();
  }
}
