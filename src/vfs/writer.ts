/**
 * The write buffer of one file. Writes become slices (one contiguous range inside one chunk each); a slice's
 * full blocks upload as soon as they fill, and `flush` uploads the tails, waits for every upload and then
 * commits the slices to the metadata in the order they were created (later slices win where they overlap).
 *
 *   write(off, data) --> slice grows --> block full --> upload (bounded, in background)
 *   flush()          --> upload tails --> wait --> meta.write(all slices, in order) --> committed
 *
 * In write-back mode "upload" is a stage to local disk without a sync, and the commit first syncs the batch's
 * staged blocks at once (ChunkStore.sync): a long write pays one round of syncs per commit, not one per block.
 *
 * A slice that reaches the end of its chunk is frozen and committed in the background, so a long
 * sequential write never holds more than a few blocks in memory nor gigabytes of uncommitted data.
 *
 * Appends (O_APPEND) are buffered as a run of their own, never mixed with positioned writes: the run is
 * committed with `appendAt`, so the metadata moves it to the file's real end (another client may have
 * appended meanwhile; see meta/append.ts), and it is committed only at the end of a write() call, so one
 * call's bytes stay contiguous.
 */

import { FsError } from '../errors.js';
import type { MetaApi } from '../meta/api.js';
import type { SliceRef } from '../meta/slices.js';
import type { Attr } from '../meta/types.js';
import type { ChunkStore } from '../chunk/store.js';
import type { Limiter } from '../util/limiter.js';

/**
 * The buffer of a block being filled takes the first of these sizes that holds what it must (capped at the
 * block size), else a whole block: a small file's buffer stays small (allocating, and collecting, 64 KiB per
 * 1 KiB file was ~7 % of a small-file create), one that grows is copied at most twice (under 68 KiB in all),
 * and a big first write takes the whole block at once.
 */
const BLOCK_BUFFER_TIERS = [4 << 10, 64 << 10];
/** Open slices one writer may hold before it flushes itself (random small writes). */
const OPEN_SLICES_MAX = 256;

class OpenSlice {
  readonly index: number;
  readonly pos: number;
  readonly id: number;
  len = 0;
  frozen = false;
  /**
   * The block being filled: the chunk store's frameBytes reserved in front, so it is stored without another
   * copy (encodeBlockFramed writes the header in place).
   */
  block: Buffer | undefined;
  partBytes = 0;
  uploads: Array<Promise<void>> = [];

  constructor(index: number, pos: number, id: number) {
    this.index = index;
    this.pos = pos;
    this.id = id;
  }
}

export interface WriterEnv {
  meta: MetaApi;
  chunks: ChunkStore;
  uploads: Limiter;
  /** Called when bytes enter or leave the buffers (back-pressure accounting). */
  account(delta: number): void;
  /** Resolves when buffered bytes are below the limit. */
  waitForRoom(): Promise<void>;
  /**
   * Called just before `length` drops to 0 (everything it covered is committed): readers that took
   * attributes from the engine before that commit must read them again (see Vfs.withWrites).
   */
  onLengthDropped(): void;
  /** A commit changed the file: its attributes now, the chunks it wrote, and their longest reference list. */
  onCommitted(ino: number, attr: Attr, indexes: readonly number[], longest: number): void;
}

export class FileWriter {
  readonly ino: number;
  private readonly env: WriterEnv;
  private slices: OpenSlice[] = [];
  private committing: Promise<void> = Promise.resolve();
  private failure: unknown;
  /**
   * The file length implied by writes not yet committed (0 when none). It drops to 0 only after a flush that no
   * write overlapped: a write that lands while a flush waits for its commit stays buffered, and so must its
   * length, or a stat answered meanwhile would report the file without it (see `writes`).
   */
  length = 0;
  /** Writes completed so far: a flush compares it before and after its wait (see `length`). */
  private writes = 0;
  /** Writes under way (see `dirty`). */
  private active = 0;
  /** Where the buffered append run starts, as this client saw the file's end; undefined when not appending. */
  private appendAt: number | undefined;
  /** Where the buffered append run ends (the next append goes there). */
  private appendEnd = 0;

  constructor(ino: number, env: WriterEnv) {
    this.ino = ino;
    this.env = env;
  }

  /**
   * Whether the writer holds anything to commit, or a write is under way (its bytes may not be in a slice
   * yet: a write waits for a slice id before it buffers). Vfs drops a writer only when it is not dirty: one
   * dropped under a write in progress would take that write's bytes with it, acknowledged but never committed.
   */
  get dirty(): boolean {
    return this.slices.length > 0 || this.active > 0;
  }

  private check(): void {
    if (this.failure !== undefined) {
      const f = this.failure;
      this.failure = undefined;
      throw f instanceof FsError ? f : new FsError('EIO', `write failed: ${f instanceof Error ? f.message : String(f)}`, { cause: f });
    }
  }

  /** Buffers data at offset, or for an append after the buffered run; returns the offset used. */
  async write(offset: number, data: Buffer, append = false): Promise<number> {
    this.active++;
    try {
      return await this.buffer(offset, data, append);
    } finally {
      this.active--;
    }
  }

  private async buffer(offset: number, data: Buffer, append: boolean): Promise<number> {
    this.check();
    // A run holds only appends or only positioned writes.
    if (this.slices.length > 0 && (this.appendAt !== undefined) !== append) await this.flush();
    if (append) {
      if (this.slices.length > 0 && this.appendAt !== undefined) offset = this.appendEnd;
      else this.appendAt = offset;
      this.appendEnd = offset + data.length;
    }
    const C = this.env.meta.chunkBytes;
    let done = 0;
    while (done < data.length) {
      const off = offset + done;
      const index = Math.floor(off / C);
      const pos = off - index * C;
      const n = Math.min(C - pos, data.length - done);
      let s = this.slices.findLast((x) => !x.frozen && x.index === index && x.pos + x.len === pos);
      // Appending to an older slice is only safe if no later slice overlaps the appended range.
      if (s !== undefined && s !== this.slices.at(-1) && this.overlapsLater(s, pos, n)) s = undefined;
      if (s === undefined) {
        if (this.slices.length >= OPEN_SLICES_MAX) await this.flush();
        s = new OpenSlice(index, pos, await this.env.meta.newSliceId());
        this.slices.push(s);
      }
      await this.append(s, data.subarray(done, done + n));
      if (s.pos + s.len === C) {
        this.freeze(s);
        if (!append) this.commitFrozenPrefix();
      }
      done += n;
    }
    this.length = Math.max(this.length, offset + data.length);
    this.writes++;
    // A long append run is committed whole at the end of the call that filled a chunk.
    if (append && this.slices.some((x) => x.frozen)) this.commitAll();
    return offset;
  }

  private overlapsLater(s: OpenSlice, pos: number, n: number): boolean {
    for (let i = this.slices.indexOf(s) + 1; i < this.slices.length; i++) {
      const t = this.slices[i]!;
      if (t.index === s.index && t.pos < pos + n && pos < t.pos + t.len) return true;
    }
    return false;
  }

  private async append(s: OpenSlice, data: Buffer): Promise<void> {
    const B = this.env.chunks.blockBytes;
    let done = 0;
    while (done < data.length) {
      await this.env.waitForRoom();
      const take = Math.min(B - s.partBytes, data.length - done);
      // Copy: callers (FUSE, streams) reuse their buffers once write returns. One copy, into the block.
      const F = this.env.chunks.frameBytes;
      const need = F + s.partBytes + take;
      if (s.block === undefined || s.block.length < need) {
        // Not a whole block of memory per small file (see BLOCK_BUFFER_TIERS).
        const tier = BLOCK_BUFFER_TIERS.find((t) => t < B && need <= F + t);
        const grown = Buffer.allocUnsafe(F + (tier ?? B));
        s.block?.copy(grown, 0, 0, F + s.partBytes);
        s.block = grown;
      }
      data.copy(s.block, F + s.partBytes, done, done + take);
      s.partBytes += take;
      s.len += take;
      this.env.account(take);
      done += take;
      if (s.partBytes === B) this.storeBlock(s);
    }
  }

  /** Uploads the block being filled (full, or the tail at freeze) in the background. */
  private storeBlock(s: OpenSlice): void {
    if (s.partBytes === 0) return;
    const B = this.env.chunks.blockBytes;
    const index = Math.floor((s.len - 1) / B);
    const framed = s.block!.subarray(0, this.env.chunks.frameBytes + s.partBytes);
    const bytes = s.partBytes;
    s.block = undefined;
    s.partBytes = 0;
    const p = this.env.uploads
      // Not durable yet (write-back): commit syncs the batch's blocks at once (see commit).
      .run(() => this.env.chunks.putFramed(s.id, index, framed, undefined, false))
      .finally(() => this.env.account(-bytes));
    // Failures surface at commit; this only keeps the rejection from being unhandled meanwhile.
    p.catch(() => undefined);
    s.uploads.push(p);
  }

  private freeze(s: OpenSlice): void {
    if (s.frozen) return;
    s.frozen = true;
    this.storeBlock(s);
  }

  /** Commits, in the background, the leading slices that are frozen. */
  private commitFrozenPrefix(): void {
    let k = 0;
    while (k < this.slices.length && this.slices[k]!.frozen) k++;
    if (k === 0) return;
    const batch = this.slices.splice(0, k);
    this.committing = this.committing.then(() => this.commit(batch)).catch((e: unknown) => {
      this.failure ??= e;
    });
  }

  /** Freezes every buffered slice and commits them in the background, the append run with its appendAt. */
  private commitAll(): void {
    const batch = this.slices;
    const appendAt = this.appendAt;
    this.slices = [];
    this.appendAt = undefined;
    for (const s of batch) this.freeze(s);
    this.committing = this.committing.then(() => this.commit(batch, appendAt)).catch((e: unknown) => {
      this.failure ??= e;
    });
  }

  private async commit(batch: OpenSlice[], appendAt?: number): Promise<void> {
    if (batch.length === 0) return;
    const results = await Promise.allSettled(batch.flatMap((s) => s.uploads));
    let failed: { reason: unknown } | undefined = results.find((r) => r.status === 'rejected');
    if (failed === undefined) {
      // Write-back: staged blocks are on local disk before the metadata names them.
      try {
        await this.env.chunks.sync(batch.map((s) => s.id));
      } catch (reason) {
        failed = { reason };
      }
    }
    if (failed !== undefined) {
      for (const s of batch) {
        await this.env.meta.abandonSlice(s.id, s.len).catch(() => undefined);
        // Write-back: its blocks already staged must not be uploaded for a slice no one will commit.
        await this.env.chunks.abandoned(s.id);
      }
      throw failed.reason;
    }
    // The slices' blocks went to this client's bucket: its region is their home (multi-region volumes).
    const home = this.env.chunks.home;
    const writes = batch.map((s) => ({
      index: s.index,
      ref: { pos: s.pos, id: s.id, size: s.len, off: 0, len: s.len, ...(home === undefined ? {} : { home }) } satisfies SliceRef,
    }));
    const { attr, longest, indexes } = await this.env.meta.write(this.ino, writes, undefined, appendAt);
    this.env.onCommitted(this.ino, attr, indexes, longest);
  }

  /** Uploads and commits everything written so far; throws the first failure since the last flush. */
  async flush(): Promise<void> {
    const writes = this.writes;
    this.commitAll();
    await this.committing;
    if (this.writes === writes && this.length !== 0) {
      this.env.onLengthDropped();
      this.length = 0;
    }
    this.check();
  }
}
