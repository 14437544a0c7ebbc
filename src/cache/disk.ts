/**
 * A BlockCache on local disk: one file per block, surviving restarts.
 *
 *   <dir>/v1/          layout version 1
 *     tmp/             files being written, renamed into place when complete; emptied at open
 *     00/ .. ff/       block files, named by the first 128 bits of sha256(key) in hex; subdirectory = its first
 *                      two hex digits
 *
 *   block file:  u16 LE key length | key (UTF-8) | encodeBlock(data, 'none', key)  (codec version 3, striped,
 *                naming the block; files written before hold version 1 or 2 and still read, as do the
 *                uncompressed objects of any version that `putEncoded` was given)
 *
 * `getRange` reads only the key, the block header and the stripes a small read needs, and verifies those.
 * Every file carries its key and the block codec's checksummed header, so a get verifies what it read; a file
 * that fails (bit rot, a torn write after a crash, a misplaced file) is deleted, counted in `corrupt` and
 * reported as a miss. Nothing is fsynced: verification makes a torn file harmless.
 *
 * Index: entries live in a Map in least-recently-used order. At open, a background scan lists the directory
 * and adds the files found, oldest access first; until it finishes, a miss in the index also tries the file
 * itself, so a restarted cache serves hits at once. Sizes are counted in file bytes (data plus framing).
 *
 * Writes: `put` frames a copy of the data (`putEncoded` takes a verified block as it is) and queues the write;
 * `writesInFlightMax` workers write the queue to disk. Queued data is served by `get`. `flush()` and `close()`
 * wait for every queued write. All file changes for one name (write, unlink) run in order, one at a time, so an
 * eviction or delete that races a write always wins.
 *
 * Back-pressure: the queue (queued plus in-flight writes) is bounded in bytes by `pendingWriteBytesMax` (and,
 * for bookkeeping of tiny blocks, in entries by `pendingWritesMax`). A put that finds the queue full waits,
 * in call order and before copying anything, for the workers to make room, at most `putWaitMsMax`; only then
 * is it dropped (counted in `dropped`). So a reader that fetches faster than the disk writes (a bucket on the
 * same machine, a page-cached file) is slowed to the disk's write rate instead of losing its blocks, and
 * memory stays bounded by the queue's bytes plus the callers' own buffers (the block reader, cache/reader.ts:
 * the blocks its reads and read-ahead have in flight). A bucket slower than the disk (a WAN) never fills the
 * queue, so reads do not wait at all. What gets dropped: a put that waited `putWaitMsMax` without the queue
 * gaining room (a stalled or failing disk). Once a wait times out, later puts that find the queue full are
 * dropped at once until a write completes, so a stalled disk costs readers one wait, not one per block.
 * Dropping is acceptable there: the cache is advisory, the block is still returned to its reader, and the next
 * read fetches it again.
 * `putWaitMsMax: 0` never waits: a full queue drops (JuiceFS's policy), for a first read that must not slow.
 *
 * A put is declined when the file system's free space is below `freeSpaceFloorRatio` (statfs checked at most
 * every `freeSpaceCheckIntervalMs`). One process owns a cache directory at a time.
 */

import { createHash } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, statfs, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { blockHeaderBytes, decodeBlock, decodeBlockHeader, decodeStripes, encodeBlock, peekBlockWhole, stripeSpan, type StripedHeader, type StripeSpan } from '../chunk/codec.js';
import { CorruptBlockError } from '../errors.js';
import type { BlockCache, BlockPart, CacheStats, EncodedBlockCache, RangedBlockCache } from './cache.js';
import { checkCapacityBytes } from './memory.js';

export interface DiskBlockCacheOptions {
  dir: string;
  /** Total file bytes held; 0 disables the cache. */
  capacityBytes: number;
  /** Decline puts while the file system has less than this fraction of its space free; default 0.1. 0 never checks. */
  freeSpaceFloorRatio?: number | undefined;
  /** Default 2000. */
  freeSpaceCheckIntervalMs?: number | undefined;
  /** File bytes of writes queued or in flight (the memory the queue holds); default 128 MiB. */
  pendingWriteBytesMax?: number | undefined;
  /** Writes queued or in flight; default 4096 (a bound on bookkeeping for tiny blocks; bytes bind first). */
  pendingWritesMax?: number | undefined;
  /** Concurrent file writes (each takes a libuv thread for its open, write, close and rename); default 4. */
  writesInFlightMax?: number | undefined;
  /** How long a put waits for room in a full queue before it is dropped, ms; default 1000. 0: never wait. */
  putWaitMsMax?: number | undefined;
  /** Failures of background work (writes, scan, statfs, unlink); they are also counted in stats. */
  onBackgroundError?: ((err: unknown, what: string) => void) | undefined;
}

export interface DiskCacheStats extends CacheStats {
  /** Writes queued or in flight, and their file bytes. */
  pendingWrites: number;
  pendingWriteBytes: number;
  /** Puts waiting for room in the queue now. */
  putsWaiting: number;
  /** Block files written to disk, and their file bytes. */
  stored: number;
  storedBytes: number;
  /** Puts declined for any reason: too large, queue full (`dropped`), or low free space (`declinedLowSpace`). */
  declined: number;
  /** Puts dropped because the write queue stayed full for `putWaitMsMax`. */
  dropped: number;
  declinedLowSpace: number;
  backgroundErrors: number;
  /** True until the startup scan has indexed the files already on disk. */
  scanning: boolean;
}

/** The object store contract caps keys at 1024 bytes; the file framing could hold 65535. */
const KEY_BYTES_MAX = 1024;
const LAYOUT_DIR = 'v1';
const NAME_RE = /^[0-9a-f]{32}$/;
const SUBDIR_RE = /^[0-9a-f]{2}$/;
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;

interface Entry {
  name: string;
  /** Unknown for entries found by the scan until they are read. */
  key: string | undefined;
  bytes: number;
  /**
   * The file's block header (its encoded bytes and the verified stripe table), once a ranged read verified it:
   * later ranged reads of the file read only their stripes. Dropped with the entry (a new put is a new entry).
   */
  head?: { bytes: Buffer; header: StripedHeader } | undefined;
}

interface WriteJob {
  entry: Entry;
  /** File bytes, counted in the queue's bytes until the job is written or leaves the queue unwritten. */
  fileBytes: number;
  prefix: Buffer;
  block: Buffer;
  /** The plain bytes at the end of `block`. */
  dataBytes: number;
}

/** A put waiting for room in the write queue. */
interface Waiter {
  name: string;
  bytes: number;
  /** true: admitted, `bytes` reserved in the queue; false: dropped or cancelled, nothing reserved. */
  resolve: (admitted: boolean) => void;
  timer: NodeJS.Timeout | undefined;
}

const MiB = 1 << 20;

function nameOf(key: string): string {
  return createHash('sha256').update(key).digest('hex').substring(0, 32);
}

function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}

function optionInt(name: string, v: number | undefined, dflt: number, min: number): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`${name} must be an integer >= ${min}, got ${v}`);
  return v;
}

/** Checks that a block file (or its first bytes) names `key`; returns where the encoded block starts. */
function checkFileKey(file: Buffer, key: string): number {
  if (file.length < 2) throw new CorruptBlockError(key, 'cache file too short');
  const keyBytes = file.readUInt16LE(0);
  if (file.length < 2 + keyBytes || file.toString('utf8', 2, 2 + keyBytes) !== key) {
    throw new CorruptBlockError(key, 'cache file holds another key');
  }
  return 2 + keyBytes;
}

/** A block file's verified header: its encoded bytes and the stripe table they hold. */
interface FileHead {
  bytes: Buffer;
  header: StripedHeader;
}

/** A header to keep: one copy of its bytes (a view of a read buffer that also held the file's key), the table a view of it. */
function keptHead(h: FileHead): FileHead {
  const bytes = Buffer.from(h.bytes);
  const at = h.header.table.byteOffset - h.bytes.byteOffset;
  return { bytes, header: { plainBytes: h.header.plainBytes, table: bytes.subarray(at, at + h.header.table.length) } };
}

/**
 * The verified header and covering stripes of plain bytes [from, to) of the block in an open block file of
 * `key` (a striped codec version: the header, unless `known` gives it, and the stripes are read and checked),
 * 'whole' for a file that is not striped (it can only be read whole), or CorruptBlockError.
 */
async function readFileStripes(fh: FileHandle, key: string, plainBytes: number, from: number, to: number, known: FileHead | undefined): Promise<{ head: FileHead; span: StripeSpan; data: Buffer } | 'whole'> {
  const at = 2 + Buffer.byteLength(key, 'utf8');
  let head = known;
  if (head === undefined) {
    const file = await readAt(fh, at + blockHeaderBytes(plainBytes), 0);
    const bytes = file.subarray(checkFileKey(file, key));
    const header = decodeBlockHeader(bytes, key, plainBytes);
    if (header === undefined) return 'whole';
    head = { bytes, header };
  }
  const span = stripeSpan(plainBytes, from, to);
  const data = await readAt(fh, span.length, at + span.offset);
  return { head, span, data: decodeStripes(head.header, span, data, key) };
}

/** A whole file, read into the first bytes of `into(its size)`. */
async function readFileInto(path: string, into: (fileBytes: number) => Buffer): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const buf = into(size);
    if (buf.length < size) throw new Error(`assertion failed: a ${buf.length}-byte buffer for a ${size}-byte file`);
    let filled = 0;
    while (filled < size) {
      const { bytesRead } = await fh.read(buf, filled, size - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return buf.subarray(0, filled);
  } finally {
    await fh.close();
  }
}

/** Up to `bytes` bytes at `position` (fewer at the end of the file). */
async function readAt(fh: FileHandle, bytes: number, position: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(bytes);
  let filled = 0;
  while (filled < bytes) {
    const { bytesRead } = await fh.read(buf, filled, bytes - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return buf.subarray(0, filled);
}

export class DiskBlockCache implements BlockCache, RangedBlockCache, EncodedBlockCache {
  readonly dir: string;
  readonly capacityBytes: number;
  readonly freeSpaceFloorRatio: number;
  readonly freeSpaceCheckIntervalMs: number;
  readonly pendingWriteBytesMax: number;
  readonly pendingWritesMax: number;
  readonly writesInFlightMax: number;
  readonly putWaitMsMax: number;

  readonly #root: string;
  readonly #tmp: string;
  readonly #onBackgroundError: ((err: unknown, what: string) => void) | undefined;
  /** By file name, least recently used first. */
  #index = new Map<string, Entry>();
  #bytes = 0;
  /** Data not yet (or being) written, by file name; gets are served from here. */
  readonly #pending = new Map<string, WriteJob>();
  /** Writes not started, in order; a dropped entry's job is removed at once (its memory with it). */
  readonly #queue = new Set<WriteJob>();
  #writing = 0;
  /** File bytes of queued and in-flight writes, plus room reserved for admitted puts not yet queued. */
  #pendingBytes = 0;
  /** Reserved entries not yet queued (admitted puts between admission and queueing). */
  #reserved = 0;
  /** Puts waiting for room, in call order. */
  #waiters: Waiter[] = [];
  /** A wait timed out and no write has completed since: full-queue puts are dropped without waiting. */
  #stalled = false;
  /** The tail of each name's chain of file changes. */
  readonly #locks = new Map<string, Promise<void>>();
  readonly #madeDirs = new Set<string>();
  #tmpSeq = 0;

  #scanning = true;
  /** Names deleted or evicted while the scan runs, so that it does not bring them back. */
  readonly #removedDuringScan = new Set<string>();
  readonly #scanDone: Promise<void>;

  #freeCheckedAtMs = Number.NEGATIVE_INFINITY;
  #freeCheck: Promise<void> | undefined;
  #belowFloor = false;

  #closed = false;
  #closing: Promise<void> | undefined;

  #hits = 0;
  #misses = 0;
  #corrupt = 0;
  #evictions = 0;
  #declined = 0;
  #dropped = 0;
  #stored = 0;
  #storedBytes = 0;
  #declinedLowSpace = 0;
  #backgroundErrors = 0;

  static async open(options: DiskBlockCacheOptions): Promise<DiskBlockCache> {
    return new DiskBlockCache(options);
  }

  /** Creates the directory and starts the background scan (see `ready()`). */
  constructor(options: DiskBlockCacheOptions) {
    if (typeof options.dir !== 'string' || options.dir === '') throw new TypeError('dir must be a non-empty path');
    this.dir = options.dir;
    this.capacityBytes = checkCapacityBytes(options.capacityBytes);
    const floor = options.freeSpaceFloorRatio ?? 0.1;
    if (typeof floor !== 'number' || !(floor >= 0 && floor <= 1)) {
      throw new RangeError(`freeSpaceFloorRatio must be within [0, 1], got ${String(floor)}`);
    }
    this.freeSpaceFloorRatio = floor;
    this.freeSpaceCheckIntervalMs = optionInt('freeSpaceCheckIntervalMs', options.freeSpaceCheckIntervalMs, 2000, 0);
    this.pendingWriteBytesMax = optionInt('pendingWriteBytesMax', options.pendingWriteBytesMax, 128 * MiB, 1);
    this.pendingWritesMax = optionInt('pendingWritesMax', options.pendingWritesMax, 4096, 1);
    this.writesInFlightMax = optionInt('writesInFlightMax', options.writesInFlightMax, 4, 1);
    this.putWaitMsMax = optionInt('putWaitMsMax', options.putWaitMsMax, 1000, 0);
    this.#onBackgroundError = options.onBackgroundError;
    this.#root = join(this.dir, LAYOUT_DIR);
    this.#tmp = join(this.#root, 'tmp');
    mkdirSync(this.#root, { recursive: true, mode: DIR_MODE });
    rmSync(this.#tmp, { recursive: true, force: true });
    mkdirSync(this.#tmp, { mode: DIR_MODE });
    this.#scanDone = this.#scan().catch((err: unknown) => {
      this.#backgroundError(err, 'scan');
      this.#scanning = false;
    });
  }

  /** Resolves when the startup scan has indexed the files already on disk. Never rejects. */
  ready(): Promise<void> {
    return this.#scanDone;
  }

  /** The file that holds (or would hold) a key; for tests and debugging. */
  filePath(key: string): string {
    return this.#pathOf(nameOf(key));
  }

  async get(key: string): Promise<Buffer | undefined> {
    return (await this.#load(key, false, undefined))?.plain;
  }

  /**
   * Whether block `key` is held, by the index alone (no read, no verification: a later get may still find the
   * file damaged and miss). Until the startup scan is done, a file not yet indexed is looked for on disk.
   */
  async has(key: string): Promise<boolean> {
    if (this.#closed) return false;
    const name = nameOf(key);
    const job = this.#pending.get(name);
    if (job !== undefined) return job.entry.key === key;
    const entry = this.#index.get(name);
    if (entry !== undefined) return entry.key === undefined || entry.key === key;
    if (!this.#scanning || this.#removedDuringScan.has(name)) return false;
    return (await stat(this.#pathOf(name)).catch(() => undefined)) !== undefined;
  }

  /**
   * The block `key` as stored: a whole codec object (chunk/codec.ts), verified exactly as `get` verifies it
   * (misses, hits and damage handled and counted the same), for a cache-group owner that serves it as is. The
   * buffer may be shared with the write queue: the caller must not modify it.
   */
  async getEncoded(key: string): Promise<Buffer | undefined> {
    return (await this.#load(key, true, undefined))?.encoded;
  }

  /**
   * As `getEncoded`, but a file is read (with one read) into the buffer `into(fileBytes)` returns, at least that
   * long, and the answer is a view of it: a caller that serves many blocks reuses its buffers instead of
   * allocating one per block (each 4 MiB allocation adds to the garbage collector's work). `lent` says whether
   * the answer is such a view (false: a block still in the write queue, shared, not copied).
   */
  async getEncodedInto(key: string, into: (fileBytes: number) => Buffer): Promise<{ encoded: Buffer; lent: boolean } | undefined> {
    const got = await this.#load(key, true, into);
    return got === undefined ? undefined : { encoded: got.encoded, lent: got.lent };
  }

  async #load(key: string, encoded: boolean, into: ((fileBytes: number) => Buffer) | undefined): Promise<{ plain: Buffer; encoded: Buffer; lent: boolean } | undefined> {
    if (this.#closed) return this.#miss();
    const name = nameOf(key);
    const job = this.#pending.get(name);
    if (job !== undefined) {
      if (job.entry.key !== key) return this.#miss();
      this.#hits++;
      this.#touch(job.entry);
      const tail = job.block.subarray(job.block.length - job.dataBytes);
      return { plain: encoded ? tail : Buffer.from(tail), encoded: job.block, lent: false };
    }
    const entry = this.#index.get(name);
    if (entry === undefined && (!this.#scanning || this.#removedDuringScan.has(name))) return this.#miss();
    if (entry?.key !== undefined && entry.key !== key) return this.#miss();

    let file: Buffer;
    try {
      file = into === undefined ? await readFile(this.#pathOf(name)) : await readFileInto(this.#pathOf(name), into);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) {
        if (entry !== undefined && this.#index.get(name) === entry) void this.#drop(entry, false);
      } else {
        this.#backgroundError(err, 'read');
      }
      return this.#miss();
    }
    let data: Buffer;
    let at: number;
    try {
      at = checkFileKey(file, key);
      data = decodeBlock(file.subarray(at), key);
    } catch (err) {
      if (!(err instanceof CorruptBlockError)) throw err;
      this.#corrupt++;
      const current = this.#index.get(name);
      // Unlink only the copy we read: a newer put under the name will replace the file itself.
      if (current !== undefined && current === entry) await this.#drop(current, true);
      else if (current === undefined && !this.#pending.has(name)) await this.#unlink(name);
      return this.#miss();
    }
    this.#hits++;
    const current = this.#index.get(name);
    if (current !== undefined && current === entry) {
      current.key = key;
      this.#touch(current);
    } else if (current === undefined && this.#scanning && !this.#removedDuringScan.has(name) && !this.#closed) {
      // Found before the scan reached it: index it now, as the most recently used.
      this.#index.set(name, { name, key, bytes: file.length });
      this.#bytes += file.length;
      this.#evict();
    }
    return { plain: data, encoded: file.subarray(at), lent: into !== undefined };
  }

  /**
   * Plain bytes covering [from, to) of block `key` (`plainBytes` long, as its key says): for a file in a striped
   * codec version, only its header and the covering stripes are read and verified; a version 1 file (written
   * before) is read whole. Misses, hits and damage are handled and counted as in `get`.
   */
  async getRange(key: string, plainBytes: number, from: number, to: number): Promise<BlockPart | undefined> {
    const got = await this.#ranged(
      key,
      plainBytes,
      (block) => {
        const span = stripeSpan(plainBytes, from, to);
        const plain = block.subarray(block.length - plainBytes);
        return { data: Buffer.from(plain.subarray(span.plainStart, span.plainEnd)), start: span.plainStart };
      },
      async (fh, known) => {
        const got = await readFileStripes(fh, key, plainBytes, from, to, known);
        return got === 'whole' ? 'whole' : { part: { data: got.data, start: got.span.plainStart }, head: got.head };
      },
    );
    return got === 'whole' ? this.#whole(key) : got;
  }

  /**
   * Object bytes [from, to) of block `key` as stored (its codec object, chunk/codec.ts), for a cache-group owner
   * answering a ranged request without reading the whole file: only the file's key, the block header and the
   * stripes that cover the range are read, and all of them are verified (the header's checksum and the block it
   * names, each stripe's checksum) before any byte is returned. `head` is that verified header. The range must
   * lie within the stripes: H <= from < to <= H + plainBytes, H = blockHeaderBytes(plainBytes).
   * 'whole' when only a whole read can answer (a file not striped: codec version 1 or 4; a file the startup
   * scan has not indexed yet): the caller reads it with `getEncoded`. Misses and damage are handled and counted
   * as in `get` (a file that fails is deleted, never served).
   */
  async getEncodedRange(key: string, plainBytes: number, from: number, to: number): Promise<{ head: Buffer; data: Buffer } | 'whole' | undefined> {
    const H = blockHeaderBytes(plainBytes);
    if (!(Number.isSafeInteger(from) && Number.isSafeInteger(to) && H <= from && from < to && to <= H + plainBytes)) {
      throw new RangeError(`object range ${from}..${to} is not within the stripes of a ${plainBytes}-byte block`);
    }
    return this.#ranged(
      key,
      plainBytes,
      // Queued blocks were verified (or encoded here) before they were put.
      (block) => (block.length !== H + plainBytes || peekBlockWhole(block) ? 'whole' : { head: block.subarray(0, H), data: block.subarray(from, to) }),
      async (fh, known) => {
        const got = await readFileStripes(fh, key, plainBytes, from - H, to - H, known);
        if (got === 'whole') return 'whole';
        const skip = from - got.span.offset;
        return { part: { head: got.head.bytes, data: got.data.subarray(skip, skip + (to - from)) }, head: got.head };
      },
    );
  }

  /**
   * A ranged read of block `key`: from its queued write (`pending`, given the job's codec object), else from its
   * file (`read`, given the open file and the file's verified header when the entry remembers it; it answers
   * the part and that header, which the entry then keeps); misses, hits and damage handled and counted as in
   * `get`. 'whole' when the file can only be read whole (passed on, not counted). Every file call stays in the
   * thread pool: a hung disk must leave the JS thread free (the disk tier then gives up on it, tier-cache.ts).
   */
  async #ranged<T>(
    key: string,
    plainBytes: number,
    pending: (block: Buffer) => T | 'whole',
    read: (fh: FileHandle, known: FileHead | undefined) => Promise<{ part: T; head: FileHead } | 'whole'>,
  ): Promise<T | 'whole' | undefined> {
    if (this.#closed) return this.#miss();
    const name = nameOf(key);
    const job = this.#pending.get(name);
    if (job !== undefined) {
      if (job.entry.key !== key || job.dataBytes !== plainBytes) return this.#miss();
      const got = pending(job.block);
      if (got === 'whole') return 'whole';
      this.#hits++;
      this.#touch(job.entry);
      return got;
    }
    const entry = this.#index.get(name);
    // Not yet seen by the startup scan: the whole get handles that (it indexes what it finds).
    if (entry === undefined) return this.#scanning && !this.#removedDuringScan.has(name) ? 'whole' : this.#miss();
    if (entry.key !== undefined && entry.key !== key) return this.#miss();
    const known = entry.key === key ? entry.head : undefined;
    let got: { part: T; head: FileHead } | 'whole';
    try {
      const fh = await open(this.#pathOf(name), 'r');
      try {
        got = await read(fh, known);
      } finally {
        await fh.close();
      }
    } catch (err) {
      if (err instanceof CorruptBlockError) {
        this.#corrupt++;
        // Unlink only the copy we read: a newer put under the name will replace the file itself.
        if (this.#index.get(name) === entry) await this.#drop(entry, true);
      } else if (isErrno(err, 'ENOENT')) {
        if (this.#index.get(name) === entry) void this.#drop(entry, false);
      } else {
        this.#backgroundError(err, 'read');
      }
      return this.#miss();
    }
    if (got === 'whole') return 'whole';
    this.#hits++;
    if (this.#index.get(name) === entry) {
      entry.key = key;
      if (entry.head === undefined) entry.head = keptHead(got.head);
      this.#touch(entry);
    }
    return got.part;
  }

  async #whole(key: string): Promise<BlockPart | undefined> {
    const data = await this.get(key);
    return data === undefined ? undefined : { data, start: 0 };
  }

  async put(key: string, data: Buffer): Promise<void> {
    // Framed (and so copied) once admitted, before put returns: the caller may reuse its buffer after that.
    // Copying only then keeps a waiting put from holding a second copy of its block.
    await this.#put(key, data.length, blockHeaderBytes(data.length) + data.length, () => encodeBlock(data, 'none', key));
  }

  /** The EncodedBlockCache capability (cache.ts): `encoded` is written as is and kept, not copied, until then. */
  async putEncoded(key: string, encoded: Buffer, plainBytes: number): Promise<void> {
    if (!Number.isSafeInteger(plainBytes) || plainBytes < 0 || plainBytes >= encoded.length) {
      throw new Error(`assertion failed: ${plainBytes} plain bytes in a ${encoded.length}-byte block`);
    }
    await this.#put(key, plainBytes, encoded.length, () => encoded);
  }

  /** Caches a block of `dataBytes` plain bytes whose framed form of `blockBytes` bytes `frame` returns. */
  async #put(key: string, dataBytes: number, blockBytes: number, frame: () => Buffer): Promise<void> {
    if (this.#closed) return;
    const name = nameOf(key);
    const keyBytes = Buffer.byteLength(key, 'utf8');
    const fileBytes = 2 + keyBytes + blockBytes;
    let ok = fileBytes <= this.capacityBytes && keyBytes <= KEY_BYTES_MAX;
    if (ok && !(await this.#spaceOk())) {
      this.#declinedLowSpace++;
      ok = false;
    }
    let admitted = false;
    if (ok && !this.#closed) {
      admitted = await this.#admit(name, fileBytes);
    }
    if (this.#closed) {
      if (admitted) this.#unreserve(fileBytes);
      return;
    }
    const old = this.#index.get(name);
    if (!admitted) {
      this.#declined++;
      // A declined put leaves no older copy behind under the key.
      if (old !== undefined) await this.#drop(old, true);
      return;
    }
    const block = frame();
    if (block.length !== blockBytes) throw new Error(`assertion failed: framed block of ${block.length} bytes, expected ${blockBytes}`);
    if (old !== undefined) void this.#drop(old, false); // the new file replaces the old one in place
    const prefix = Buffer.allocUnsafe(2 + keyBytes);
    prefix.writeUInt16LE(keyBytes, 0);
    prefix.write(key, 2, 'utf8');
    const entry: Entry = { name, key, bytes: fileBytes };
    const job: WriteJob = { entry, fileBytes, prefix, block, dataBytes };
    this.#index.set(name, entry);
    this.#bytes += fileBytes;
    this.#pending.set(name, job);
    this.#queue.add(job);
    this.#reserved--; // the reservation is now the queued job (its bytes stay counted)
    this.#evict();
    this.#pump();
  }

  async delete(key: string): Promise<void> {
    if (this.#closed) return;
    const name = nameOf(key);
    // A put of the key still waiting for room was made before this delete: it must not land after it.
    for (const w of this.#waiters.filter((x) => x.name === name)) this.#cancelWaiter(w);
    const entry = this.#index.get(name);
    if (entry !== undefined) await this.#drop(entry, true);
    else if (this.#scanning) {
      this.#removedDuringScan.add(name);
      await this.#unlink(name);
    }
  }

  stats(): DiskCacheStats {
    return {
      hits: this.#hits,
      misses: this.#misses,
      corrupt: this.#corrupt,
      evictions: this.#evictions,
      entries: this.#index.size,
      bytes: this.#bytes,
      pendingWrites: this.#queue.size + this.#writing,
      pendingWriteBytes: this.#pendingBytes,
      putsWaiting: this.#waiters.length,
      stored: this.#stored,
      storedBytes: this.#storedBytes,
      declined: this.#declined,
      dropped: this.#dropped,
      declinedLowSpace: this.#declinedLowSpace,
      backgroundErrors: this.#backgroundErrors,
      scanning: this.#scanning,
    };
  }

  /** Resolves when every write queued so far, and every unlink, has finished. */
  async flush(): Promise<void> {
    while (this.#locks.size > 0) await Promise.all(this.#locks.values());
  }

  /** Idempotent: stops taking puts, waits for queued writes and the scan. Gets after close miss. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      // Waiting puts are given up: a closing cache takes no more writes.
      for (const w of [...this.#waiters]) this.#cancelWaiter(w);
      await this.#scanDone;
      await this.flush();
    })();
    return this.#closing;
  }

  #miss(): undefined {
    this.#misses++;
    return undefined;
  }

  #pathOf(name: string): string {
    return join(this.#root, name.substring(0, 2), name);
  }

  #touch(entry: Entry): void {
    if (this.#index.get(entry.name) !== entry) return;
    this.#index.delete(entry.name);
    this.#index.set(entry.name, entry);
  }

  /** Forgets an entry (and its queued write); with `unlink`, also removes its file, after any write in flight. */
  #drop(entry: Entry, unlink: boolean): Promise<void> {
    if (this.#index.get(entry.name) === entry) {
      this.#index.delete(entry.name);
      this.#bytes -= entry.bytes;
    }
    const job = this.#pending.get(entry.name);
    if (job?.entry === entry) {
      this.#pending.delete(entry.name);
      // A job not yet started frees its room now; one in flight frees it when its write ends.
      if (this.#queue.delete(job)) this.#release(job.fileBytes);
    }
    if (this.#scanning) this.#removedDuringScan.add(entry.name);
    return unlink ? this.#unlink(entry.name) : Promise.resolve();
  }

  #unlink(name: string): Promise<void> {
    return this.#withLock(name, 'unlink', () => rm(this.#pathOf(name), { force: true }));
  }

  #evict(): void {
    for (const entry of this.#index.values()) {
      if (this.#bytes <= this.capacityBytes) break;
      this.#evictions++;
      void this.#drop(entry, true);
    }
  }

  /** Runs fn after every earlier change to the same name; never rejects (failures are reported). */
  #withLock(name: string, what: string, fn: () => Promise<void>): Promise<void> {
    const prev = this.#locks.get(name) ?? Promise.resolve();
    const next = prev.then(fn).catch((err: unknown) => this.#backgroundError(err, what));
    this.#locks.set(name, next);
    void next.then(() => {
      if (this.#locks.get(name) === next) this.#locks.delete(name);
    });
    return next;
  }

  #pump(): void {
    while (this.#writing < this.writesInFlightMax) {
      const job = this.#queue.values().next().value;
      if (job === undefined) return;
      this.#queue.delete(job);
      this.#writing++;
      void this.#withLock(job.entry.name, 'write', () => this.#write(job)).then(() => {
        this.#writing--;
        this.#release(job.fileBytes);
        this.#pump();
      });
    }
  }

  async #write(job: WriteJob): Promise<void> {
    const { name } = job.entry;
    if (this.#pending.get(name) !== job) return;
    const final = this.#pathOf(name);
    const tmp = join(this.#tmp, `${name}.${++this.#tmpSeq}`);
    try {
      const sub = name.substring(0, 2);
      if (!this.#madeDirs.has(sub)) {
        await mkdir(join(this.#root, sub), { recursive: true, mode: DIR_MODE });
        this.#madeDirs.add(sub);
      }
      const fh = await open(tmp, 'w', FILE_MODE);
      try {
        await fh.writev([job.prefix, job.block]);
      } finally {
        await fh.close();
      }
      await rename(tmp, final);
      this.#stored++;
      this.#storedBytes += job.fileBytes;
      this.#stalled = false;
    } catch (err) {
      this.#backgroundError(err, 'write');
      await rm(tmp, { force: true }).catch(() => undefined);
      // An older file under the name must not outlive the put that replaced it.
      await rm(final, { force: true }).catch(() => undefined);
      if (this.#index.get(name) === job.entry) void this.#drop(job.entry, false);
    } finally {
      if (this.#pending.get(name) === job) this.#pending.delete(name);
    }
  }

  /** Whether `bytes` more fit in the write queue now; an empty queue takes any block (even one above the bound). */
  #roomFor(bytes: number): boolean {
    const entries = this.#queue.size + this.#writing + this.#reserved;
    return entries === 0 || (this.#pendingBytes + bytes <= this.pendingWriteBytesMax && entries < this.pendingWritesMax);
  }

  /**
   * Reserves room for a write of `bytes` under `name`: at once when there is room and no earlier put is waiting,
   * else after waiting in call order for at most `putWaitMsMax`. false: dropped (counted) or cancelled by a
   * delete or close; nothing reserved.
   */
  #admit(name: string, bytes: number): Promise<boolean> {
    if (this.#waiters.length === 0 && this.#roomFor(bytes)) {
      this.#reserve(bytes);
      return Promise.resolve(true);
    }
    if (this.putWaitMsMax === 0 || this.#stalled) {
      this.#dropped++;
      return Promise.resolve(false);
    }
    return new Promise<boolean>((resolve) => {
      const w: Waiter = { name, bytes, resolve, timer: undefined };
      w.timer = setTimeout(() => {
        // No room for this long: the disk is not keeping up at all. Later puts stop waiting until a write ends.
        this.#stalled = true;
        this.#dropped++;
        this.#cancelWaiter(w);
      }, this.putWaitMsMax);
      this.#waiters.push(w);
    });
  }

  #reserve(bytes: number): void {
    this.#pendingBytes += bytes;
    this.#reserved++;
  }

  /** Gives back an admission that did not become a job. */
  #unreserve(bytes: number): void {
    this.#reserved--;
    this.#release(bytes);
  }

  /** Frees room in the queue and admits the waiting puts that now fit. */
  #release(bytes: number): void {
    this.#pendingBytes -= bytes;
    if (this.#pendingBytes < 0 || this.#reserved < 0) throw new Error(`assertion failed: write queue bytes ${this.#pendingBytes}, reserved ${this.#reserved}`);
    this.#admitWaiters();
  }

  /** Admits waiting puts while the first one fits, first come first served. */
  #admitWaiters(): void {
    while (this.#waiters.length > 0 && !this.#closed) {
      const w = this.#waiters[0]!;
      if (!this.#roomFor(w.bytes)) break;
      this.#waiters.shift();
      clearTimeout(w.timer);
      this.#reserve(w.bytes);
      w.resolve(true);
    }
  }

  #cancelWaiter(w: Waiter): void {
    const i = this.#waiters.indexOf(w);
    if (i < 0) return;
    this.#waiters.splice(i, 1);
    clearTimeout(w.timer);
    w.resolve(false);
    // The puts behind it may fit where it did not.
    if (i === 0) this.#admitWaiters();
  }

  /** Whether free space is above the floor; statfs at most once per interval, the first time awaited. */
  async #spaceOk(): Promise<boolean> {
    if (this.freeSpaceFloorRatio === 0) return true;
    if (performance.now() - this.#freeCheckedAtMs >= this.freeSpaceCheckIntervalMs) {
      const first = this.#freeCheckedAtMs === Number.NEGATIVE_INFINITY;
      this.#freeCheck ??= this.#checkFreeSpace().finally(() => {
        this.#freeCheck = undefined;
      });
      if (first) await this.#freeCheck;
    }
    return !this.#belowFloor;
  }

  async #checkFreeSpace(): Promise<void> {
    try {
      const s = await statfs(this.#root);
      this.#belowFloor = s.blocks > 0 && s.bavail / s.blocks < this.freeSpaceFloorRatio;
    } catch (err) {
      this.#backgroundError(err, 'statfs');
    } finally {
      this.#freeCheckedAtMs = performance.now();
    }
  }

  async #scan(): Promise<void> {
    const found: Array<{ name: string; bytes: number; usedMs: number }> = [];
    const subs = await readdir(this.#root).catch((err: unknown) => {
      if (!isErrno(err, 'ENOENT')) throw err;
      return [];
    });
    for (const sub of subs) {
      if (this.#closed) return;
      if (!SUBDIR_RE.test(sub)) continue;
      this.#madeDirs.add(sub);
      const listed = await readdir(join(this.#root, sub)).catch((err: unknown) => {
        this.#backgroundError(err, 'scan');
        return [];
      });
      const names = listed.filter((n) => NAME_RE.test(n) && n.startsWith(sub));
      const stats = await Promise.all(names.map((n) => stat(this.#pathOf(n)).catch(() => undefined)));
      names.forEach((name, i) => {
        const st = stats[i];
        // Access time, where the mount records it, orders restarted entries best; else the write time.
        if (st?.isFile() === true) found.push({ name, bytes: st.size, usedMs: Math.max(st.atimeMs, st.mtimeMs) });
      });
    }
    found.sort((a, b) => a.usedMs - b.usedMs);
    // Files from before the restart are older than anything used since: they go first in LRU order.
    const merged = new Map<string, Entry>();
    for (const f of found) {
      if (this.#index.has(f.name) || this.#removedDuringScan.has(f.name)) continue;
      merged.set(f.name, { name: f.name, key: undefined, bytes: f.bytes });
      this.#bytes += f.bytes;
    }
    for (const [name, entry] of this.#index) merged.set(name, entry);
    this.#index = merged;
    this.#scanning = false;
    this.#removedDuringScan.clear();
    this.#evict();
  }

  #backgroundError(err: unknown, what: string): void {
    this.#backgroundErrors++;
    try {
      this.#onBackgroundError?.(err, what);
    } catch {
      // A failing reporter must not turn into an unhandled rejection.
    }
  }
}
