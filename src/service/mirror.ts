/**
 * MirrorWriteMeta: the metadata of a writable mirror client (DESIGN §6, §7). Reads are answered by the
 * region's replica (a local Meta over a ReadOnlyEngine); writes go to the primary's metadata service
 * (RemoteMeta), and before a write returns, the client waits until its replica has applied the commit's seq,
 * so what it just did is what it reads next (read-your-writes):
 *
 *   write op ──▶ service (primary commits at seq S) ──▶ wait: replica.lastSeq() >= S ──▶ return
 *   read op  ──▶ replica
 *
 * The wait is bounded (`applyWaitMs`): past it the call fails with EIO naming the lag — the write itself is
 * committed on the primary; only this region has not seen it yet (is the region's follower running?).
 *
 * Opens: for reading, on the replica (no round trip); for writing, on the service, which tracks the open in
 * the client's session on the primary (an unlink there keeps the file while it is open). open(2) with
 * O_CREAT is the service's one request (openCreate), whatever the access: the primary decides whether the
 * name exists. Locks go to the
 * service: they are shared with every region.
 *
 * The replica's Meta must be opened with its lookup cache off: a cache could answer a name from before this
 * client's own remote write (the local Meta never sees that commit, only its effect through the follower).
 */

import { FsError } from '../errors.js';
import type { MetaApi, OpenCreateResult, WriteResult } from '../meta/api.js';
import type { MetaEngine } from '../meta/engine.js';
import type { LockConflict, LockType } from '../meta/locks.js';
import type { SliceRef } from '../meta/slices.js';
import type { Attr, Ctx, DirEntry, FileType, FormatRec, SetAttr, SliceRefRec, StatFs } from '../meta/types.js';
import { W_OK } from '../meta/types.js';
import { sleep } from '../util/sleep.js';
import type { RemoteMeta } from './client.js';

/** How long a write waits for the replica to apply its commit, ms. */
export const APPLY_WAIT_MS_DEFAULT = 10_000;
/** Polls of the replica's applied seq: the first after this, doubling up to the max, ms. */
const APPLY_POLL_MS_MIN = 1;
const APPLY_POLL_MS_MAX = 20;

export interface MirrorWriteOptions {
  /** The replica's Meta (over a ReadOnlyEngine; lookup cache off). Closed with this. */
  local: MetaApi;
  /** The replica's engine: its lastSeq() is the primary seq it has applied. */
  replica: MetaEngine;
  remote: RemoteMeta;
  region: string;
  applyWaitMs?: number | undefined;
}

export interface MirrorWriteStats {
  writes: number;
  /** Writes that had to wait for the replica, and the total wait, ms. */
  waited: number;
  waitMs: number;
}

export class MirrorWriteMeta implements MetaApi {
  readonly format: FormatRec;
  readonly chunkBytes: number;
  readonly stats: MirrorWriteStats = { writes: 0, waited: 0, waitMs: 0 };
  private readonly local: MetaApi;
  private readonly remote: RemoteMeta;
  private readonly replica: MetaEngine;
  private readonly region: string;
  private readonly applyWaitMs: number;
  /** Opens held on the service (for writing), by inode; the rest are the replica's. */
  private readonly remoteOpens = new Map<number, number>();
  private applied = 0;

  constructor(o: MirrorWriteOptions) {
    this.local = o.local;
    this.remote = o.remote;
    this.replica = o.replica;
    this.region = o.region;
    this.format = o.local.format;
    this.chunkBytes = o.local.chunkBytes;
    this.applyWaitMs = o.applyWaitMs ?? APPLY_WAIT_MS_DEFAULT;
  }

  get committedSeq(): number {
    return this.remote.committedSeq;
  }

  /** Waits until the replica has applied `seq` (see the file comment). */
  async waitApplied(seq: number): Promise<void> {
    if (seq <= this.applied) return;
    const start = Date.now();
    let poll = APPLY_POLL_MS_MIN;
    let waited = false;
    for (;;) {
      const at = await this.replica.lastSeq();
      if (at > this.applied) this.applied = at;
      if (at >= seq) break;
      const ms = Date.now() - start;
      if (ms >= this.applyWaitMs) {
        throw new FsError(
          'EIO',
          `the write is committed on the primary (seq ${seq}), but the replica of region '${this.region}' has not applied it within ${this.applyWaitMs} ms: it is at seq ${at}, ${seq - at} entries behind (is its follower, "ferry mirror ... --region ${this.region}", running?)`,
        );
      }
      waited = true;
      await sleep(Math.min(poll, this.applyWaitMs - ms));
      poll = Math.min(poll * 2, APPLY_POLL_MS_MAX);
    }
    if (waited) {
      this.stats.waited++;
      this.stats.waitMs += Date.now() - start;
    }
  }

  /** A write through the service, returned once the replica shows it. */
  private async written<T>(call: Promise<T>): Promise<T> {
    this.stats.writes++;
    const r = await call;
    // committedSeq is the newest seq of this client's writes: at least this one's (a concurrent write of the
    // same client only makes it wait longer); an operation that committed nothing leaves it where it was.
    await this.waitApplied(this.remote.committedSeq);
    return r;
  }

  // reads: the replica
  getattr(ino: number): Promise<Attr> {
    return this.local.getattr(ino);
  }
  getattrCached(ino: number): Promise<Attr> {
    return this.local.getattrCached(ino);
  }
  access(ctx: Ctx, ino: number, mask: number): Promise<void> {
    return this.local.access(ctx, ino, mask);
  }
  lookup(ctx: Ctx, parent: number, name: string): Promise<Attr> {
    return this.local.lookup(ctx, parent, name);
  }
  readdir(ctx: Ctx, ino: number, opts?: { after?: string; limit?: number; plus?: boolean }): Promise<DirEntry[]> {
    return this.local.readdir(ctx, ino, opts);
  }
  readlink(ino: number): Promise<string> {
    return this.local.readlink(ino);
  }
  statfs(): Promise<StatFs> {
    return this.local.statfs();
  }
  readChunk(ino: number, index: number): Promise<SliceRef[]> {
    return this.local.readChunk(ino, index);
  }

  readChunks(ino: number): Promise<Array<[number, SliceRef[]]>> {
    return this.local.readChunks(ino);
  }
  getSlices(ids: readonly number[]): Promise<Map<number, SliceRefRec | undefined>> {
    return this.local.getSlices(ids);
  }
  getxattr(ctx: Ctx, ino: number, name: string): Promise<Buffer> {
    return this.local.getxattr(ctx, ino, name);
  }
  listxattr(ctx: Ctx, ino: number): Promise<string[]> {
    return this.local.listxattr(ctx, ino);
  }

  // writes: the service, then the replica's wait
  setattr(ctx: Ctx, ino: number, set: SetAttr): Promise<Attr> {
    return this.written(this.remote.setattr(ctx, ino, set));
  }
  mknod(ctx: Ctx, parent: number, name: string, type: FileType, mode: number, opts?: { rdev?: number; target?: string; exclusive?: boolean }): Promise<Attr> {
    return this.written(this.remote.mknod(ctx, parent, name, type, mode, opts));
  }
  mkdir(ctx: Ctx, parent: number, name: string, mode: number): Promise<Attr> {
    return this.written(this.remote.mkdir(ctx, parent, name, mode));
  }
  create(ctx: Ctx, parent: number, name: string, mode: number): Promise<Attr> {
    return this.written(this.remote.create(ctx, parent, name, mode));
  }
  symlink(ctx: Ctx, parent: number, name: string, target: string): Promise<Attr> {
    return this.written(this.remote.symlink(ctx, parent, name, target));
  }
  link(ctx: Ctx, ino: number, parent: number, name: string): Promise<Attr> {
    return this.written(this.remote.link(ctx, ino, parent, name));
  }
  unlink(ctx: Ctx, parent: number, name: string): Promise<void> {
    return this.written(this.remote.unlink(ctx, parent, name));
  }
  rmdir(ctx: Ctx, parent: number, name: string): Promise<void> {
    return this.written(this.remote.rmdir(ctx, parent, name));
  }
  rename(ctx: Ctx, srcParent: number, srcName: string, dstParent: number, dstName: string, flags?: number): Promise<void> {
    return this.written(this.remote.rename(ctx, srcParent, srcName, dstParent, dstName, flags));
  }
  write(ino: number, writes: ReadonlyArray<{ index: number; ref: SliceRef }>, mtime?: number, appendAt?: number): Promise<WriteResult> {
    return this.written(this.remote.write(ino, writes, mtime, appendAt));
  }
  truncate(ino: number, length: number): Promise<Attr> {
    return this.written(this.remote.truncate(ino, length));
  }
  fallocate(ino: number, mode: number, offset: number, length: number): Promise<Attr> {
    return this.written(this.remote.fallocate(ino, mode, offset, length));
  }
  copyFileRange(inIno: number, inOff: number, outIno: number, outOff: number, size: number): Promise<number> {
    return this.written(this.remote.copyFileRange(inIno, inOff, outIno, outOff, size));
  }
  replaceSlices(ino: number, index: number, old: readonly SliceRef[], ref: SliceRef): Promise<boolean> {
    return this.written(this.remote.replaceSlices(ino, index, old, ref));
  }
  abandonSlice(id: number, size: number): Promise<void> {
    return this.remote.abandonSlice(id, size);
  }
  newSliceId(): Promise<number> {
    return this.remote.newSliceId();
  }
  setxattr(ctx: Ctx, ino: number, name: string, value: Buffer, flags?: number): Promise<void> {
    return this.written(this.remote.setxattr(ctx, ino, name, value, flags));
  }
  removexattr(ctx: Ctx, ino: number, name: string): Promise<void> {
    return this.written(this.remote.removexattr(ctx, ino, name));
  }

  // open files
  async open(ctx: Ctx, ino: number, mask: number, created?: Attr): Promise<Attr> {
    if ((mask & W_OK) === 0) return this.local.open(ctx, ino, mask, created);
    const a = await this.remote.open(ctx, ino, mask, created);
    this.remoteOpens.set(ino, (this.remoteOpens.get(ino) ?? 0) + 1);
    return a;
  }
  /** open(2) with O_CREAT: one request to the service (which registers the open), then the replica's wait. */
  async openCreate(ctx: Ctx, parent: number, name: string, mode: number, mask: number, exclusive: boolean): Promise<OpenCreateResult> {
    const r = await this.written(this.remote.openCreate(ctx, parent, name, mode, mask, exclusive));
    if (r.opened) this.remoteOpens.set(r.attr.ino, (this.remoteOpens.get(r.attr.ino) ?? 0) + 1);
    return r;
  }
  async release(ino: number): Promise<void> {
    const n = this.remoteOpens.get(ino) ?? 0;
    if (n === 0) return this.local.release(ino);
    if (n === 1) this.remoteOpens.delete(ino);
    else this.remoteOpens.set(ino, n - 1);
    return this.written(this.remote.release(ino));
  }

  // locks: shared by every region, so the primary's
  getlk(ino: number, owner: string, type: LockType, start: number, end?: number): Promise<LockConflict | undefined> {
    return this.remote.getlk(ino, owner, type, start, end);
  }
  setlk(ino: number, owner: string, type: LockType | 'u', start: number, end?: number, pid?: number): Promise<LockConflict | undefined> {
    return this.remote.setlk(ino, owner, type, start, end, pid);
  }
  flock(ino: number, owner: string, type: 'sh' | 'ex' | 'un', pid?: number): Promise<boolean> {
    return this.remote.flock(ino, owner, type, pid);
  }
  mayHoldLocks(ino: number): boolean {
    return this.remote.mayHoldLocks(ino);
  }

  async close(): Promise<void> {
    try {
      await this.remote.close();
    } finally {
      await this.local.close();
    }
  }
}
