/**
 * Write-back staging: the blocks of a closed (or fsync'd) file are kept durably on local disk and uploaded to
 * the client's bucket in the background, so that close returns after a local write and one metadata commit
 * instead of a round trip to the bucket per block.
 *
 *   <cache dir>/<volume uuid>/writeback/   (beside the disk cache's v1/, which never evicts what is here;
 *                                           writeback-<region>/ in a volume with several regions)
 *     id                  this staging area's id (random, written once): the key of its status record
 *     tmp/                blocks being staged; emptied at open
 *     <slice>_<index>_<bytes>
 *                         one staged block: the object exactly as it is uploaded (chunk/codec.ts, self-verifying)
 *     corrupt/            staged files that failed verification: never uploaded, kept for a human
 *
 * One block's life:
 *
 *   stage:  write tmp/ -> rename into writeback/ -> fdatasync the file and, at the same time, fsync
 *           writeback/ (one fsync shared by the stages that renamed before it started) -> resolves: durable;
 *           the caller may now commit the metadata.  A stage without `durable` skips the syncs, and `sync`
 *           does them later for a whole slice's blocks at once (the file writer: once per commit, not per
 *           block); its commit waits for that.
 *   upload: queued (oldest first) -> read the file, verify -> put -> verified (the server's digest, else a
 *           HEAD of its size) -> unlink -> gone.  A failure puts it back in the queue and pauses every upload
 *           for a backoff (retryDelayMsMin, doubling to retryDelayMsMax, with jitter), after which one upload at
 *           a time probes the bucket until one succeeds: a bucket that is down delays the uploads, costs one
 *           request per backoff, and loses nothing.
 *   restart: every staged file found at open is queued (a client killed between commit and upload, or one
 *           that closed before its uploads finished): uploaded by whichever client of the volume opens the
 *           cache dir next, with or without write-back.
 *
 * So a staged block leaves local disk only after the bucket holds it; a block that is committed but not yet
 * uploaded is served to this client's readers by `get` (a plain tier of cache/reader.ts). Other clients do not
 * see this disk: for them the block is missing until it is uploaded (their read fails with EIO).
 *
 * Limits: `uploadsInFlightMax` uploads at once; staging declines (the caller then puts the block directly)
 * while the file system is below `freeSpaceFloorRatio` free or a write fails. Memory: the index only (a name
 * and a few numbers per staged block); uploads read their block from the file.
 *
 * Status: `onState` is called with the pending blocks, bytes and slice ids whenever they changed (at most every
 * `reportIntervalMs`), at least every `keepAliveMs` while anything is pending, once when nothing is left, and
 * at close; open.ts writes it to the engine (meta/staging.ts) for `ferry status` and `ferry fsck`.
 */

import { randomBytes } from 'node:crypto';
import { closeSync, fdatasync, fsync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { open, readFile, rename, rm, statfs } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { decodeBlock } from '../chunk/codec.js';
import { blockKey, parseBlockKey } from '../chunk/keys.js';
import type { BlockStaging } from '../chunk/store.js';
import { CorruptBlockError } from '../errors.js';
import { canPutChecked, ObjectNotFoundError, type ObjectStore } from '../object/store.js';
import type { BlockPart, BlockRange, PlainTier } from './tier.js';

/** The tier name of the staging area in the block reader. */
export const STAGING_TIER = 'staging';
/** Slice ids listed in a status record; past this the record says `partial` (fsck then judges by range). */
export const STAGING_SLICES_LISTED_MAX = 10_000;
export const WRITEBACK_UPLOADS_IN_FLIGHT_DEFAULT = 8;
export const WRITEBACK_RETRY_DELAY_MS_MIN_DEFAULT = 500;
export const WRITEBACK_RETRY_DELAY_MS_MAX_DEFAULT = 30_000;
export const WRITEBACK_REPORT_INTERVAL_MS_DEFAULT = 1000;
export const WRITEBACK_KEEP_ALIVE_MS_DEFAULT = 10_000;
/** While uploads keep failing, one failure is reported per this many ms. */
export const WRITEBACK_FAILURE_LOG_INTERVAL_MS = 30_000;

const NAME_RE = /^(\d{1,16})_(\d{1,16})_(\d{1,16})$/;
/**
 * Objects up to this size are written, renamed, read and removed with synchronous calls (microseconds of event
 * loop each), larger ones through the thread pool: for a small file those round trips (a wake-up each way)
 * were most of the staging time. The syncs always run in the pool.
 */
const SYNC_IO_BYTES_MAX = 64 * 1024;
const fdatasyncAsync = promisify(fdatasync);
const fsyncAsync = promisify(fsync);
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;

export interface WritebackOptions {
  /** The staging directory (`<cache dir>/<volume uuid>/writeback`); created when missing. */
  dir: string;
  /** The client's bucket: staged blocks are uploaded here. Not closed by the staging area. */
  store: ObjectStore;
  /** Uploads at once; default 8. */
  uploadsInFlightMax?: number | undefined;
  /** First pause of the uploads after a failure, ms (doubles per failure up to retryDelayMsMax); default 500. */
  retryDelayMsMin?: number | undefined;
  retryDelayMsMax?: number | undefined;
  /** Decline to stage while the file system has less than this fraction free; default 0.05; 0 never checks. */
  freeSpaceFloorRatio?: number | undefined;
  /** How often a changed state is reported, ms; default 1000. */
  reportIntervalMs?: number | undefined;
  /** How often an unchanged state with pending blocks is reported again (a liveness sign), ms; default 10 000. */
  keepAliveMs?: number | undefined;
  /** Receives the state (see the header); a failure is reported to onBackgroundError and retried next time. */
  onState?: ((state: WritebackState) => Promise<void>) | undefined;
  /** Failures of background work: uploads (once per streak of failures, and at the longest delay), reports. */
  onBackgroundError?: ((err: unknown, what: string) => void) | undefined;
}

/** What is staged and not yet uploaded. */
export interface WritebackState {
  /** Staged blocks not yet in the bucket, and their object bytes. */
  blocks: number;
  bytes: number;
  /** When the oldest of them was staged (ms since the epoch; for blocks found at open, the file's mtime). */
  oldest: number | undefined;
  /** Their slice ids, ascending, at most STAGING_SLICES_LISTED_MAX (then `partial`). */
  slices: number[];
  partial: boolean;
}

export interface WritebackStats {
  /** Pending now (see WritebackState). */
  pendingBlocks: number;
  pendingBytes: number;
  /** Blocks staged by this process, and found staged at open. */
  staged: number;
  stagedBytes: number;
  recovered: number;
  /** Blocks uploaded (and verified) and their object bytes. */
  uploaded: number;
  uploadedBytes: number;
  /** Upload attempts that failed (each retried). */
  uploadFailures: number;
  /** Stages declined (low space, a failed write): those blocks were put directly. */
  declined: number;
  /** Staged files that failed verification (moved to corrupt/, never uploaded). */
  corrupt: number;
  /** Reads served from staged blocks. */
  hits: number;
}

interface Entry {
  name: string;
  key: string;
  slice: number;
  /** The block's plain length (its key names it). */
  plainBytes: number;
  /** The staged object's bytes. */
  bytes: number;
  stagedAt: number;
  uploading: boolean;
  /** Its data and directory entry are on disk (false: staged without `durable`, until `sync`). */
  synced: boolean;
}

function optionInt(name: string, v: number | undefined, dflt: number, min: number): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`${name} must be an integer >= ${min}, got ${v}`);
  return v;
}

function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}

/** The staging file name of a block key (`<slice>_<index>_<bytes>`), or undefined for a key that is not one. */
function nameOfKey(key: string): string | undefined {
  const p = parseBlockKey(key);
  return p === undefined ? undefined : `${p.sliceId}_${p.blockIndex}_${p.blockBytes}`;
}

/** The block key of a staging file name, or undefined for a name this code would not write. */
function keyOfName(name: string): { key: string; slice: number; plainBytes: number } | undefined {
  const m = NAME_RE.exec(name);
  if (m === null) return undefined;
  const [slice, index, plainBytes] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (![slice, index, plainBytes].every((n) => Number.isSafeInteger(n))) return undefined;
  const key = blockKey(slice, index, plainBytes);
  return nameOfKey(key) === name ? { key, slice, plainBytes } : undefined;
}

/** fdatasync of a file by path (small ones opened and closed on the JS thread, see SYNC_IO_BYTES_MAX). */
async function syncFile(file: string, bytes: number): Promise<void> {
  if (bytes <= SYNC_IO_BYTES_MAX) {
    const fd = openSync(file, 'r');
    try {
      await fdatasyncAsync(fd);
    } finally {
      closeSync(fd);
    }
    return;
  }
  const fh = await open(file, 'r');
  try {
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

/** Waits for both, then rejects with the first failure (a file descriptor in use is closed only after both). */
async function both(a: Promise<void>, b: Promise<void>): Promise<void> {
  const [x, y] = await Promise.allSettled([a, b]);
  if (x.status === 'rejected') throw x.reason;
  if (y.status === 'rejected') throw y.reason;
}

export class Writeback implements BlockStaging, PlainTier {
  readonly form = 'plain';
  readonly name = STAGING_TIER;
  readonly dir: string;
  /** This staging area's id (the `id` file): the key of its status record. */
  readonly id: string;
  readonly uploadsInFlightMax: number;
  readonly retryDelayMsMin: number;
  readonly retryDelayMsMax: number;
  readonly freeSpaceFloorRatio: number;

  readonly #store: ObjectStore;
  readonly #tmp: string;
  readonly #reportIntervalMs: number;
  readonly #keepAliveMs: number;
  readonly #onState: ((state: WritebackState) => Promise<void>) | undefined;
  readonly #onBackgroundError: ((err: unknown, what: string) => void) | undefined;
  /** Staged blocks not yet uploaded, by file name, in staging order. */
  readonly #index = new Map<string, Entry>();
  /** Names waiting for an upload, oldest first. */
  readonly #queue = new Set<string>();
  /** Entries staged without `durable` and not yet synced, by slice. */
  readonly #unsynced = new Map<number, Set<Entry>>();
  #pendingBytes = 0;
  #uploading = 0;
  #tmpSeq = 0;
  /** Uploads start again at this time (ms, Date.now) after a failure. */
  #pausedUntil = 0;
  #delayMs = 0;
  #pauseTimer: NodeJS.Timeout | undefined;
  /** Failures in a row; the first of a streak is reported, then one every WRITEBACK_FAILURE_LOG_INTERVAL_MS. */
  #failStreak = 0;
  #failLoggedAtMs = 0;
  readonly #abort = new AbortController();
  /** Resolved whenever the pending set becomes empty or an upload ends (drain's wake-up). */
  #wake: Array<() => void> = [];

  /** The staging directory, open for its fsyncs (one thread-pool call each, not three). */
  readonly #dirFd: number;
  #dirSync: Promise<void> | undefined;
  #dirSyncNext: Promise<void> | undefined;

  #freeCheckedAtMs = Number.NEGATIVE_INFINITY;
  #belowFloor = false;

  #reportTimer: NodeJS.Timeout | undefined;
  #reporting: Promise<void> | undefined;
  #changed = true;
  #reportedAtMs = 0;
  #reportedBlocks = -1;
  #reportOk = true;

  #closed = false;
  #closing: Promise<void> | undefined;

  readonly #stats: Omit<WritebackStats, 'pendingBlocks' | 'pendingBytes'> = {
    staged: 0,
    stagedBytes: 0,
    recovered: 0,
    uploaded: 0,
    uploadedBytes: 0,
    uploadFailures: 0,
    declined: 0,
    corrupt: 0,
    hits: 0,
  };

  /** Opens (creating) the staging directory and queues the blocks staged before (see the header). */
  constructor(options: WritebackOptions) {
    if (typeof options.dir !== 'string' || options.dir === '') throw new TypeError('dir must be a non-empty path');
    this.dir = options.dir;
    this.#store = options.store;
    this.uploadsInFlightMax = optionInt('uploadsInFlightMax', options.uploadsInFlightMax, WRITEBACK_UPLOADS_IN_FLIGHT_DEFAULT, 1);
    this.retryDelayMsMin = optionInt('retryDelayMsMin', options.retryDelayMsMin, WRITEBACK_RETRY_DELAY_MS_MIN_DEFAULT, 1);
    this.retryDelayMsMax = optionInt('retryDelayMsMax', options.retryDelayMsMax, WRITEBACK_RETRY_DELAY_MS_MAX_DEFAULT, this.retryDelayMsMin);
    this.#reportIntervalMs = optionInt('reportIntervalMs', options.reportIntervalMs, WRITEBACK_REPORT_INTERVAL_MS_DEFAULT, 1);
    this.#keepAliveMs = optionInt('keepAliveMs', options.keepAliveMs, WRITEBACK_KEEP_ALIVE_MS_DEFAULT, 1);
    const floor = options.freeSpaceFloorRatio ?? 0.05;
    if (typeof floor !== 'number' || !(floor >= 0 && floor <= 1)) throw new RangeError(`freeSpaceFloorRatio must be within [0, 1], got ${String(floor)}`);
    this.freeSpaceFloorRatio = floor;
    this.#onState = options.onState;
    this.#onBackgroundError = options.onBackgroundError;
    this.#tmp = join(this.dir, 'tmp');
    mkdirSync(this.dir, { recursive: true, mode: DIR_MODE });
    rmSync(this.#tmp, { recursive: true, force: true });
    mkdirSync(this.#tmp, { mode: DIR_MODE });
    this.id = this.#readId();
    this.#dirFd = openSync(this.dir, 'r');
    this.#recover();
    this.#reportTimer = setInterval(() => this.#maybeReport(), this.#reportIntervalMs);
    this.#reportTimer.unref();
    this.#pump();
  }

  /** Whether `dir` holds staged blocks (a client without write-back still opens it then, to upload them). */
  static hasStaged(dir: string): boolean {
    try {
      return readdirSync(dir).some((n) => keyOfName(n) !== undefined);
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return false;
      throw err;
    }
  }

  #readId(): string {
    const file = join(this.dir, 'id');
    try {
      const id = readFileSync(file, 'utf8').trim();
      if (/^[0-9a-f]{16,64}$/.test(id)) return id;
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
    // Durable, like the blocks: a restart must update the same status record, not leave this one behind.
    const id = randomBytes(12).toString('hex');
    const tmp = join(this.#tmp, 'id');
    writeFileSync(tmp, id + '\n', { mode: FILE_MODE });
    const fd = openSync(tmp, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
    const dir = openSync(this.dir, 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
    return id;
  }

  /** Queues the staged files found at open, oldest slice first. */
  #recover(): void {
    const found: Array<{ name: string; key: string; slice: number; plainBytes: number; bytes: number; mtime: number }> = [];
    for (const name of readdirSync(this.dir)) {
      const k = keyOfName(name);
      if (k === undefined) continue;
      const st = statSync(join(this.dir, name), { throwIfNoEntry: false });
      if (st?.isFile() !== true) continue;
      found.push({ name, ...k, bytes: st.size, mtime: st.mtimeMs });
    }
    found.sort((a, b) => a.slice - b.slice || a.name.localeCompare(b.name));
    for (const f of found) {
      this.#add({ name: f.name, key: f.key, slice: f.slice, plainBytes: f.plainBytes, bytes: f.bytes, stagedAt: Math.floor(f.mtime), uploading: false, synced: true });
      this.#stats.recovered++;
    }
  }

  #add(entry: Entry): void {
    const old = this.#index.get(entry.name);
    if (old !== undefined) this.#remove(old);
    this.#index.set(entry.name, entry);
    this.#pendingBytes += entry.bytes;
    this.#queue.add(entry.name);
    if (!entry.synced) {
      const set = this.#unsynced.get(entry.slice) ?? new Set<Entry>();
      set.add(entry);
      this.#unsynced.set(entry.slice, set);
    }
    this.#changed = true;
  }

  #remove(entry: Entry): void {
    if (this.#index.get(entry.name) !== entry) return;
    this.#index.delete(entry.name);
    this.#queue.delete(entry.name);
    this.#pendingBytes -= entry.bytes;
    if (!entry.synced) this.#markSynced(entry);
    this.#changed = true;
    this.#wakeAll();
  }

  #wakeAll(): void {
    const w = this.#wake;
    this.#wake = [];
    for (const f of w) f();
  }

  // ------------------------------------------------------------------ staging (BlockStaging)

  /**
   * Keeps `object` (the encoded block `key`, of slice `slice`) in the staging directory and queues its upload.
   * true once it is staged: durable (file and directory synced) unless `durable` is false, in which case `sync`
   * makes it so; false when staging declined (low space, a failed write): nothing was staged and the caller
   * must store the block itself.
   */
  async stage(key: string, object: Buffer, slice: number, durable = true): Promise<boolean> {
    if (this.#closed) throw new Error('assertion failed: stage after the write-back staging area was closed');
    const name = nameOfKey(key);
    const parts = name === undefined ? undefined : keyOfName(name);
    if (name === undefined || parts === undefined || parts.slice !== slice) throw new Error(`assertion failed: ${key} is not a block key of slice ${slice}`);
    if (!(await this.#spaceOk())) {
      this.#stats.declined++;
      return false;
    }
    const tmp = join(this.#tmp, `${name}.${++this.#tmpSeq}`);
    const final = join(this.dir, name);
    try {
      // The data and the directory entry are synced at once (half the latency of one after the other): until
      // both are done the block is not committed, so a crash in between leaves at worst a torn file of a slice
      // no one committed, which fails verification at the next open (see #quarantine).
      if (object.length <= SYNC_IO_BYTES_MAX) {
        const fd = openSync(tmp, 'w', FILE_MODE);
        try {
          let done = 0;
          while (done < object.length) done += writeSync(fd, object, done, object.length - done, done);
          renameSync(tmp, final);
          if (durable) await both(fdatasyncAsync(fd), this.#syncDir());
        } finally {
          closeSync(fd);
        }
      } else {
        const fh = await open(tmp, 'w', FILE_MODE);
        try {
          let done = 0;
          while (done < object.length) done += (await fh.write(object, done, object.length - done, done)).bytesWritten;
          await rename(tmp, final);
          if (durable) await both(fh.datasync(), this.#syncDir());
        } finally {
          await fh.close();
        }
      }
    } catch (err) {
      this.#backgroundError(err, 'write-back staging (the block is uploaded directly instead)');
      await rm(tmp, { force: true }).catch(() => undefined);
      await rm(final, { force: true }).catch(() => undefined);
      this.#stats.declined++;
      return false;
    }
    this.#stats.staged++;
    this.#stats.stagedBytes += object.length;
    const entry: Entry = { name, key, slice, plainBytes: parts.plainBytes, bytes: object.length, stagedAt: Date.now(), uploading: false, synced: durable };
    this.#add(entry);
    this.#pump();
    return true;
  }

  /**
   * Makes the blocks of `slices` staged without `durable` durable: each file's data (all at once) and the
   * directory (one fsync for all). A block uploaded meanwhile needs nothing more: the bucket holds it. Rejects
   * when a sync fails (the caller must not commit those slices).
   */
  async sync(slices: readonly number[]): Promise<void> {
    const files: Entry[] = [];
    for (const slice of slices) {
      const set = this.#unsynced.get(slice);
      if (set === undefined) continue;
      files.push(...set);
    }
    if (files.length === 0) return;
    await Promise.all([
      this.#syncDir(),
      ...files.map(async (e) => {
        try {
          await syncFile(join(this.dir, e.name), e.bytes);
        } catch (err) {
          // Uploaded (and removed) meanwhile: it is in the bucket.
          if (isErrno(err, 'ENOENT') && this.#index.get(e.name) !== e) return;
          throw err;
        }
        this.#markSynced(e);
      }),
    ]);
  }

  #markSynced(e: Entry): void {
    e.synced = true;
    const set = this.#unsynced.get(e.slice);
    if (set === undefined) return;
    set.delete(e);
    if (set.size === 0) this.#unsynced.delete(e.slice);
  }

  /**
   * One fsync of the staging directory that covers every rename done before this call: a sync already running
   * may have started before the caller's rename, so the caller waits for the next one, which every caller
   * arriving meanwhile shares.
   */
  #syncDir(): Promise<void> {
    if (this.#dirSync === undefined) {
      this.#dirSync = fsyncAsync(this.#dirFd).finally(() => {
        this.#dirSync = undefined;
      });
      return this.#dirSync;
    }
    this.#dirSyncNext ??= this.#dirSync
      .catch(() => undefined)
      .then(() => {
        this.#dirSyncNext = undefined;
        return this.#syncDir();
      });
    return this.#dirSyncNext;
  }

  /**
   * The staged blocks of `slice` will never be committed (an abandoned write): dropped, not uploaded. An upload
   * already under way finishes (a leaked object for gc), but is not retried.
   */
  async discard(slice: number): Promise<void> {
    const gone = [...this.#index.values()].filter((e) => e.slice === slice);
    for (const e of gone) {
      this.#remove(e);
      await rm(join(this.dir, e.name), { force: true }).catch((err: unknown) => this.#backgroundError(err, 'write-back discard'));
    }
  }

  // ------------------------------------------------------------------ reads (PlainTier)

  /** The whole block when it is staged here (verified), whatever part was asked; undefined otherwise. */
  async get(key: string, plainBytes: number, _range: BlockRange | undefined): Promise<BlockPart | undefined> {
    if (this.#index.size === 0) return undefined;
    const name = nameOfKey(key);
    const entry = name === undefined ? undefined : this.#index.get(name);
    if (entry === undefined || entry.key !== key) return undefined;
    let object: Buffer;
    try {
      object = await readFile(join(this.dir, entry.name));
    } catch (err) {
      // Uploaded and removed meanwhile: the bucket has it now.
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
    let plain: Buffer;
    try {
      plain = decodeBlock(object, key, plainBytes);
    } catch (err) {
      if (err instanceof CorruptBlockError) await this.#quarantine(entry, err);
      throw err;
    }
    this.#stats.hits++;
    return { data: plain, start: 0 };
  }

  // ------------------------------------------------------------------ uploads

  /** Starts uploads while there is room, the queue holds work and the uploads are not paused. */
  #pump(): void {
    if (this.#abort.signal.aborted) return;
    const now = Date.now();
    if (now < this.#pausedUntil) {
      if (this.#pauseTimer === undefined) {
        this.#pauseTimer = setTimeout(() => {
          this.#pauseTimer = undefined;
          this.#pump();
        }, this.#pausedUntil - now);
      }
      return;
    }
    // After a failure, one upload at a time probes the bucket; the others start once one succeeds.
    const max = this.#failStreak > 0 ? 1 : this.uploadsInFlightMax;
    while (this.#uploading < max) {
      const name = this.#queue.values().next().value;
      if (name === undefined) return;
      this.#queue.delete(name);
      const entry = this.#index.get(name);
      if (entry === undefined) continue;
      entry.uploading = true;
      this.#uploading++;
      void this.#upload(entry).finally(() => {
        entry.uploading = false;
        this.#uploading--;
        this.#wakeAll();
        this.#pump();
      });
    }
  }

  /** Uploads one staged block; never rejects (a failure requeues it and pauses the uploads). */
  async #upload(entry: Entry): Promise<void> {
    const file = join(this.dir, entry.name);
    const signal = this.#abort.signal;
    try {
      let object: Buffer;
      try {
        object = entry.bytes <= SYNC_IO_BYTES_MAX ? readFileSync(file) : await readFile(file);
      } catch (err) {
        // Another client of this cache dir uploaded and removed it.
        if (isErrno(err, 'ENOENT')) return this.#remove(entry);
        throw err;
      }
      try {
        decodeBlock(object, entry.key, entry.plainBytes);
      } catch (err) {
        if (err instanceof CorruptBlockError) return await this.#quarantine(entry, err);
        throw err;
      }
      await this.#putVerified(entry.key, object, signal);
      this.#stats.uploaded++;
      this.#stats.uploadedBytes += object.length;
      // Removed only now that the bucket has it: a crash before the unlink uploads it again (idempotent).
      this.#remove(entry);
      if (entry.bytes <= SYNC_IO_BYTES_MAX) rmSync(file, { force: true });
      else await rm(file, { force: true });
      if (this.#failStreak > 0) this.#failStreak = 0;
      this.#delayMs = 0;
    } catch (err) {
      if (signal.aborted) {
        if (this.#index.get(entry.name) === entry) this.#queue.add(entry.name);
        return;
      }
      this.#stats.uploadFailures++;
      if (this.#index.get(entry.name) === entry) this.#queue.add(entry.name);
      this.#delayMs = Math.min(this.retryDelayMsMax, this.#delayMs === 0 ? this.retryDelayMsMin : this.#delayMs * 2);
      const delay = Math.round(this.#delayMs * (0.75 + Math.random() * 0.5));
      this.#pausedUntil = Math.max(this.#pausedUntil, Date.now() + delay);
      const now = Date.now();
      if (this.#failStreak++ === 0 || now - this.#failLoggedAtMs >= WRITEBACK_FAILURE_LOG_INTERVAL_MS) {
        this.#failLoggedAtMs = now;
        this.#backgroundError(err, `write-back upload of ${entry.key} (${this.#index.size} block(s) pending; retrying in ${delay} ms, then with backoff)`);
      }
    }
  }

  /** Puts and checks that the bucket holds what was put: the server's digest when it gives one, else its size. */
  async #putVerified(key: string, object: Buffer, signal: AbortSignal): Promise<void> {
    const store = this.#store;
    if (canPutChecked(store)) {
      if ((await store.putChecked(key, object, { signal })) === true) return;
    } else {
      await store.put(key, object, { signal });
    }
    let size: number;
    try {
      size = (await store.head(key, { signal })).size;
    } catch (err) {
      if (err instanceof ObjectNotFoundError) throw new CorruptBlockError(key, 'missing from the bucket right after it was put');
      throw err;
    }
    if (size !== object.length) throw new CorruptBlockError(key, `the bucket holds ${size} bytes, ${object.length} were put`);
  }

  /** A staged file failed verification: moved to corrupt/ (never uploaded), counted, reported. */
  async #quarantine(entry: Entry, err: unknown): Promise<void> {
    this.#stats.corrupt++;
    this.#remove(entry);
    // Either a stage torn by a crash before its commit (harmless: no file names it) or a committed block damaged
    // on this disk before its upload (lost: fsck reports it missing once this record no longer lists it).
    this.#backgroundError(err, `write-back: staged block ${entry.key} failed verification, moved to ${join(this.dir, 'corrupt')} (a write cut short by a crash before its commit, or damage: "ferry fsck" tells)`);
    const dest = join(this.dir, 'corrupt');
    try {
      mkdirSync(dest, { recursive: true, mode: DIR_MODE });
      await rename(join(this.dir, entry.name), join(dest, entry.name));
    } catch (e) {
      if (!isErrno(e, 'ENOENT')) this.#backgroundError(e, 'write-back quarantine');
    }
  }

  // ------------------------------------------------------------------ state

  /** What is pending now. */
  state(): WritebackState {
    let oldest: number | undefined;
    const ids = new Set<number>();
    for (const e of this.#index.values()) {
      if (oldest === undefined || e.stagedAt < oldest) oldest = e.stagedAt;
      ids.add(e.slice);
    }
    const slices = [...ids].sort((a, b) => a - b);
    const partial = slices.length > STAGING_SLICES_LISTED_MAX;
    return { blocks: this.#index.size, bytes: this.#pendingBytes, oldest, slices: partial ? slices.slice(0, STAGING_SLICES_LISTED_MAX) : slices, partial };
  }

  uploadStats(): WritebackStats {
    return { pendingBlocks: this.#index.size, pendingBytes: this.#pendingBytes, ...this.#stats };
  }

  /** The counters, flat (`writeback_pending_blocks`, ...), for `.stats` and metrics (ChunkStore.counters). */
  counters(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(this.uploadStats())) out[k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = v;
    return out;
  }

  /**
   * Resolves true once nothing is pending, or false after `timeoutMs` (default: no limit) with blocks still
   * pending (they stay staged and upload later).
   */
  async drain(timeoutMs?: number): Promise<boolean> {
    const deadline = timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + timeoutMs;
    while (this.#index.size > 0) {
      if (this.#abort.signal.aborted) return false;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const t = Number.isFinite(left) ? setTimeout(resolve, left) : undefined;
        this.#wake.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return true;
  }

  #maybeReport(): void {
    if (this.#onState === undefined || this.#reporting !== undefined) return;
    const blocks = this.#index.size;
    const due = this.#changed || (blocks > 0 && Date.now() - this.#reportedAtMs >= this.#keepAliveMs);
    // Nothing pending and nothing pending reported: no record to write.
    if (!due || (blocks === 0 && this.#reportedBlocks === 0)) return;
    this.#reporting = this.#report().finally(() => {
      this.#reporting = undefined;
    });
  }

  async #report(): Promise<void> {
    if (this.#onState === undefined) return;
    this.#changed = false;
    const state = this.state();
    try {
      await this.#onState(state);
      this.#reportedAtMs = Date.now();
      this.#reportedBlocks = state.blocks;
    } catch (err) {
      this.#changed = true;
      // Once per streak: an engine that is down fails every second.
      if (this.#reportOk) this.#backgroundError(err, 'write-back status record (retried)');
      this.#reportOk = false;
      return;
    }
    this.#reportOk = true;
  }

  // ------------------------------------------------------------------ lifecycle

  /**
   * Idempotent: waits up to `drainMs` (default 0) for the pending uploads, then stops them (what is left stays
   * staged, durable, and uploads at the next open), and reports the final state. Does not close the store.
   */
  close(drainMs = 0): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      if (drainMs > 0) await this.drain(drainMs);
      this.#abort.abort();
      clearTimeout(this.#pauseTimer);
      clearInterval(this.#reportTimer);
      while (this.#uploading > 0) await new Promise<void>((resolve) => this.#wake.push(resolve));
      await this.#reporting;
      this.#changed = true;
      if (this.#index.size > 0 || this.#reportedBlocks !== 0) await this.#report();
      closeSync(this.#dirFd);
    })();
    return this.#closing;
  }

  /** Whether free space is above the floor; statfs at most every 2 s. */
  async #spaceOk(): Promise<boolean> {
    if (this.freeSpaceFloorRatio === 0) return true;
    const now = performance.now();
    if (now - this.#freeCheckedAtMs >= 2000) {
      this.#freeCheckedAtMs = now;
      try {
        const s = await statfs(this.dir);
        this.#belowFloor = s.blocks > 0 && s.bavail / s.blocks < this.freeSpaceFloorRatio;
      } catch (err) {
        this.#backgroundError(err, 'write-back statfs');
      }
    }
    return !this.#belowFloor;
  }

  #backgroundError(err: unknown, what: string): void {
    try {
      this.#onBackgroundError?.(err, what);
    } catch {
      // A failing reporter must not become an unhandled rejection.
    }
  }
}
