/**
 * A directory's listing as the mount hands it to the kernel: names, inode numbers and types in the order the
 * engine scanned them (a handle's offsets index it), and for readdirplus each entry's attributes, laid out
 * as they arrive so that a request for a range of it is answered with views (no copy, no object per entry):
 *
 *   names, inos, modes   arrays         plain readdir
 *   nameBytes            Buffer         every name in UTF-8, each ended by a NUL
 *   nameEnds             Uint32Array    nameEnds[i]: where name i's NUL ends (name i starts at nameEnds[i-1])
 *   attrs                Float64Array   a stat record (RECORDS.stat's fields) per entry, one after another;
 *                                       mode 0: none but the inode number (the entry goes out without
 *                                       attributes and with an unknown type; the kernel looks it up)
 *   readAt, readChanges  Float64Array   per entry: when its attributes were read (performance.now(), ms) and
 *                                       the client's change count (Vfs.changes) when that read began
 *
 * A listing fills page by page (FerryOps takes it from the engine in the background): a request waits only
 * until the entries it can hold are in, or the listing is complete, so the kernel works on the first entries
 * while the rest are read. Entry i's directory offset (where the kernel's next request starts) is i + 1, as in
 * DirEntries. The names are a snapshot (as readdir(3) allows); the attributes are refreshed range by range
 * when they are too old or this client changed something since they were read (see FerryOps.readdirplus).
 */

import type { Attr } from '../meta/types.js';
import { RECORDS, type DirEntries, type DirEntriesPlus } from './boundary.js';
import { putStat } from './stat.js';

/** Fields per stat record. */
export const STAT_FIELDS = RECORDS.stat.length;
const MODE_FIELD = RECORDS.stat.indexOf('mode');
const INO_FIELD = RECORDS.stat.indexOf('ino');
/** Bytes of one entry in the kernel's readdirplus buffer: fuse_direntplus (152 bytes) and the name, 8-aligned. */
const DIRENTPLUS_HEADER_BYTES = 152;
/** The smallest entry of a plain listing (fuse_dirent: 24 bytes + name, 8-aligned). */
const DIRENT_BYTES_MIN = 32;
/** Entries a plus listing makes room for at first (it doubles as it grows). */
const CAPACITY_MIN = 64;

interface Plus {
  nameBytes: Buffer;
  /** Bytes of nameBytes in use. */
  nameBytesUsed: number;
  nameEnds: Uint32Array;
  attrs: Float64Array;
  readAt: Float64Array;
  readChanges: Float64Array;
}

export class Listing {
  readonly names: string[] = [];
  readonly inos: number[] = [];
  readonly modes: number[] = [];
  /** When the reads it was taken from began (performance.now(), ms), and the client's change count then. */
  readonly takenAt: number;
  readonly takenChanges: number;
  /** Every entry is in (or taking it failed: `failure`). */
  complete = false;
  /** No handle wants it any more: the one filling it may stop. */
  abandoned = false;
  private failure: unknown;
  private readonly plus: Plus | undefined;
  private waiters: Array<() => void> = [];

  constructor(takenAt: number, takenChanges: number, withAttrs: boolean) {
    this.takenAt = takenAt;
    this.takenChanges = takenChanges;
    if (withAttrs) {
      this.plus = {
        nameBytes: Buffer.allocUnsafe(CAPACITY_MIN * 16),
        nameBytesUsed: 0,
        nameEnds: new Uint32Array(CAPACITY_MIN),
        attrs: new Float64Array(CAPACITY_MIN * STAT_FIELDS),
        readAt: new Float64Array(CAPACITY_MIN),
        readChanges: new Float64Array(CAPACITY_MIN),
      };
    }
  }

  get size(): number {
    return this.names.length;
  }

  get hasAttrs(): boolean {
    return this.plus !== undefined;
  }

  /**
   * One more entry, with its attributes in a listing taken with them (undefined there: none) as read at
   * `readAt` with the change count `readChanges` (default: when the listing was taken).
   */
  add(name: string, ino: number, mode: number, a?: Attr, readAt = this.takenAt, readChanges = this.takenChanges): void {
    const i = this.names.length;
    this.names.push(name);
    this.inos.push(ino);
    this.modes.push(mode);
    const p = this.plus;
    if (p === undefined) return;
    const nameBytes = Buffer.byteLength(name) + 1;
    if (i >= p.nameEnds.length) this.grow(p, i + 1);
    if (p.nameBytesUsed + nameBytes > p.nameBytes.length) {
      const bigger = Buffer.allocUnsafe(Math.max(2 * p.nameBytes.length, p.nameBytesUsed + nameBytes));
      p.nameBytes.copy(bigger, 0, 0, p.nameBytesUsed);
      p.nameBytes = bigger;
    }
    p.nameBytesUsed += p.nameBytes.write(name, p.nameBytesUsed);
    p.nameBytes[p.nameBytesUsed++] = 0;
    p.nameEnds[i] = p.nameBytesUsed;
    this.setAttr(i, a, readAt, readChanges);
  }

  /** Room for at least n entries' arrays. */
  private grow(p: Plus, n: number): void {
    const cap = Math.max(n, 2 * p.nameEnds.length);
    const more = <T extends Uint32Array | Float64Array>(old: T, make: (len: number) => T, per = 1): T => {
      const out = make(cap * per);
      out.set(old);
      return out;
    };
    p.nameEnds = more(p.nameEnds, (len) => new Uint32Array(len));
    p.attrs = more(p.attrs, (len) => new Float64Array(len), STAT_FIELDS);
    p.readAt = more(p.readAt, (len) => new Float64Array(len));
    p.readChanges = more(p.readChanges, (len) => new Float64Array(len));
  }

  /** Every entry is in, or taking the rest failed with `err` (requests waiting for entries then fail). */
  finish(err?: unknown): void {
    if (this.complete) return;
    this.complete = true;
    if (err !== undefined) this.failure = err;
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Entries were added: requests waiting for them go on. */
  added(): void {
    this.wake();
  }

  /** Waits until `ready()` or the listing is complete; rejects if taking it failed. */
  async until(ready: () => boolean): Promise<void> {
    while (!this.complete && !ready()) await new Promise<void>((resolve) => this.waiters.push(resolve));
    if (this.failure !== undefined) throw this.failure;
  }

  /** Entry i's attributes (undefined: none), as read at `readAt` with the change count `readChanges`. */
  setAttr(i: number, a: Attr | undefined, readAt: number, readChanges: number): void {
    const p = this.plusOf();
    const at = i * STAT_FIELDS;
    if (a === undefined) {
      p.attrs.fill(0, at, at + STAT_FIELDS);
      p.attrs[at + INO_FIELD] = this.inos[i]!;
    } else {
      putStat(p.attrs, at, a);
    }
    p.readAt[i] = readAt;
    p.readChanges[i] = readChanges;
  }

  /** Whether entry i goes out with attributes. */
  hasAttr(i: number): boolean {
    return this.plusOf().attrs[i * STAT_FIELDS + MODE_FIELD] !== 0;
  }

  /** Whether a plain answer from offset can be given now (it fills `bytes`, or the listing is complete). */
  rangeReady(offset: number, bytes: number): boolean {
    return this.complete || offset + Math.ceil(bytes / DIRENT_BYTES_MIN) <= this.names.length;
  }

  /** Entries from offset on, at most what `bytes` of the kernel's plain listing buffer can hold (the addon stops where it is full). */
  range(offset: number, bytes: number): DirEntries {
    const end = Math.min(this.names.length, offset + Math.ceil(bytes / DIRENT_BYTES_MIN));
    return { names: this.names.slice(offset, end), inos: this.inos.slice(offset, end), modes: this.modes.slice(offset, end) };
  }

  /** Where a readdirplus answer from offset ends: the entries in now that fit `bytes` of the kernel's buffer. */
  plusEnd(offset: number, bytes: number): number {
    const p = this.plusOf();
    const n = this.names.length;
    let end = Math.min(offset, n);
    let start = end === 0 ? 0 : p.nameEnds[end - 1]!;
    let used = 0;
    while (end < n) {
      const rec = (DIRENTPLUS_HEADER_BYTES + (p.nameEnds[end]! - start - 1) + 7) & ~7;
      if (used + rec > bytes) break;
      used += rec;
      start = p.nameEnds[end]!;
      end++;
    }
    return end;
  }

  /** Whether a readdirplus answer from offset can be given now (it fills `bytes`, or the listing is complete). */
  plusReady(offset: number, bytes: number): boolean {
    return this.complete || this.plusEnd(offset, bytes) < this.names.length;
  }

  /** Whether the attributes of entries [from, to) were read at most maxAgeMs ago, after the client's last change. */
  fresh(from: number, to: number, now: number, maxAgeMs: number, changes: number): boolean {
    const p = this.plusOf();
    for (let i = from; i < to; i++) if (p.readChanges[i] !== changes || now - p.readAt[i]! > maxAgeMs) return false;
    return true;
  }

  /** Entries [from, to) with their attributes, as views; ageMs is the oldest one's. */
  viewPlus(from: number, to: number, now: number): DirEntriesPlus {
    const p = this.plusOf();
    let oldest = now;
    for (let i = from; i < to; i++) oldest = Math.min(oldest, p.readAt[i]!);
    return {
      nameBytes: p.nameBytes.subarray(from === 0 ? 0 : p.nameEnds[from - 1]!, to === 0 ? 0 : p.nameEnds[to - 1]!),
      attrs: p.attrs.subarray(from * STAT_FIELDS, to * STAT_FIELDS),
      ageMs: now - oldest,
    };
  }

  private plusOf(): Plus {
    if (this.plus === undefined) throw new Error('assertion failed: attributes of a listing taken without them');
    return this.plus;
  }
}
