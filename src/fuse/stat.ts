/**
 * Ferry's attributes as the kernel sees them: as a FuseStat object (one answer), or written straight into a
 * stat record of a Float64Array (RECORDS.stat's fields, a listing's thousands of entries: no object each).
 */

import { TYPE_BITS, blockCount, linkCount, type Attr } from '../meta/types.js';
import { RECORDS, type FuseStat } from './boundary.js';

/** st_blksize: the I/O size tools like cp use for their buffers. */
export const BLKSIZE = 131072;

export function toFuseStat(a: Attr): FuseStat {
  return {
    mode: TYPE_BITS[a.type] | (a.mode & 0o7777),
    uid: a.uid,
    gid: a.gid,
    size: a.length,
    nlink: linkCount(a),
    ino: a.ino,
    rdev: a.rdev,
    blksize: BLKSIZE,
    blocks: blockCount(a),
    atime: a.atime,
    mtime: a.mtime,
    ctime: a.ctime,
    dev: 0,
  };
}

/** Each stat field's place in a record. */
const AT = Object.fromEntries(RECORDS.stat.map((name, i) => [name, i])) as Record<(typeof RECORDS.stat)[number], number>;

/** toFuseStat(a), written as a stat record into out[at, at + RECORDS.stat.length). */
export function putStat(out: Float64Array, at: number, a: Attr): void {
  out[at + AT.mode] = TYPE_BITS[a.type] | (a.mode & 0o7777);
  out[at + AT.uid] = a.uid;
  out[at + AT.gid] = a.gid;
  out[at + AT.size] = a.length;
  out[at + AT.nlink] = linkCount(a);
  out[at + AT.ino] = a.ino;
  out[at + AT.rdev] = a.rdev;
  out[at + AT.blksize] = BLKSIZE;
  out[at + AT.blocks] = blockCount(a);
  out[at + AT.atime] = a.atime;
  out[at + AT.mtime] = a.mtime;
  out[at + AT.ctime] = a.ctime;
}
