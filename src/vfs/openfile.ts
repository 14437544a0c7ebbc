/**
 * What this client knows of the inodes it holds open: their attributes and the slice lists of the chunks it
 * read, so that reading an open, unchanged file costs no engine round trip (a 1 MiB read used to cost two:
 * the attributes and the chunk's slice list).
 *
 * When the view changes:
 *
 *   open  ──> first handle: attributes from the engine, no chunks yet
 *             another handle: attributes from the engine; if the file changed elsewhere (length, mtime or
 *             ctime differ) the chunk lists go (close-to-open: another client's change shows at the next open)
 *   read  ──> a chunk's slice list from the engine once, then from here
 *   this client's own commits (writes, truncate, fallocate, copy_file_range, compaction, setattr)
 *         ──> the attributes they committed; the chunk lists they touched go
 *   last release ──> forgotten
 *
 * A chunk list load that overlapped an invalidation is not kept (the generation moved), so an own commit is
 * never hidden behind a list read before it.
 */

import type { SliceRef } from '../meta/slices.js';
import type { Attr } from '../meta/types.js';

/** One open inode. */
export class OpenFile {
  readonly ino: number;
  attr: Attr;
  /** Handles open on it in this client. */
  opens = 0;
  /** Slice lists by chunk index, loaded or loading (concurrent readers of one chunk share one load). */
  private readonly chunks = new Map<number, Promise<SliceRef[]>>();
  /** Bumped by every invalidation; loads that began before one are not kept. */
  private gen = 0;

  constructor(attr: Attr) {
    this.ino = attr.ino;
    this.attr = attr;
  }

  /** The chunk's slice references, from here or loaded (and kept). */
  refs(index: number, load: (index: number) => Promise<SliceRef[]>): Promise<SliceRef[]> {
    const hit = this.chunks.get(index);
    if (hit !== undefined) return hit;
    const gen = this.gen;
    const p = load(index);
    this.chunks.set(index, p);
    // A load that overlapped an invalidation (or failed) is not kept: the next reader loads again.
    const drop = (): void => {
      if (this.chunks.get(index) === p && gen !== this.gen) this.chunks.delete(index);
    };
    p.then(drop, () => {
      if (this.chunks.get(index) === p) this.chunks.delete(index);
    });
    return p;
  }

  /** Drops the listed chunks (all when indexes is undefined). */
  forget(indexes?: readonly number[]): void {
    this.gen++;
    if (indexes === undefined) this.chunks.clear();
    else for (const i of indexes) this.chunks.delete(i);
  }

  /** Attributes read at another open: a change made elsewhere drops the chunk lists. */
  reopened(a: Attr): void {
    const b = this.attr;
    if (a.length !== b.length || a.mtime !== b.mtime || a.ctime !== b.ctime) this.forget();
    this.attr = a;
  }
}

/** The open inodes of one client. */
export class OpenFiles {
  private readonly files = new Map<number, OpenFile>();

  get(ino: number): OpenFile | undefined {
    return this.files.get(ino);
  }

  /** Counts one more open of the inode whose attributes were just read. */
  opened(a: Attr): OpenFile {
    let f = this.files.get(a.ino);
    if (f === undefined) {
      f = new OpenFile(a);
      this.files.set(a.ino, f);
    } else {
      f.reopened(a);
    }
    f.opens++;
    return f;
  }

  /** Counts one close; the last forgets the inode. */
  closed(ino: number): void {
    const f = this.files.get(ino);
    if (f === undefined) return;
    if (--f.opens <= 0) this.files.delete(ino);
  }

  /** This client changed the inode: its attributes now, and which chunks changed (undefined: any). */
  changed(ino: number, attr: Attr | undefined, indexes?: readonly number[]): void {
    const f = this.files.get(ino);
    if (f === undefined) return;
    if (attr !== undefined) f.attr = attr;
    if (indexes === undefined || indexes.length > 0) f.forget(indexes);
  }
}
