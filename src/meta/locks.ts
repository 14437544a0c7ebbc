/**
 * File locks kept in the metadata engine, so they hold across clients: POSIX byte-range locks (fcntl
 * F_SETLK/F_SETLKW/F_GETLK, also OFD locks) and flock. Pure record logic; Meta runs it in transactions.
 *
 * Records (kind `lock`, not logged):
 *   part = inode number, key = `p:<sid>:<owner>`  PosixLockRec  one lock owner's ranges on the inode
 *   part = inode number, key = `f:<sid>:<owner>`  FlockRec      one open file's flock
 *   part = `s<sid>`,     key = inode number       1             index: inodes where the session holds locks
 *
 * The owner is the session plus the kernel's lock owner (for POSIX locks the process's file table, for flock
 * and OFD locks the open file), so two processes, two mounts or two machines never share an owner. POSIX
 * locks and flock do not conflict with each other (as on Linux). Conflicts are checked against every other
 * owner's records; locks of a dead session go when its session is cleaned (Meta.cleanSession).
 */

export type LockType = 'r' | 'w';
/** End of a range that runs to the end of the file (and beyond). */
export const LOCK_EOF = Number.MAX_SAFE_INTEGER;

/** [start, end) and the lock type. */
export type LockRange = [start: number, end: number, type: LockType];

export interface PosixLockRec {
  sid: number;
  pid: number;
  ranges: LockRange[];
}

export interface FlockRec {
  sid: number;
  pid: number;
  type: 'sh' | 'ex';
}

/** A lock that stands in the way: what F_GETLK reports. */
export interface LockConflict {
  type: LockType;
  start: number;
  end: number;
  pid: number;
  sid: number;
}

export const posixKey = (sid: number, owner: string): string => `p:${sid}:${owner}`;
export const flockKey = (sid: number, owner: string): string => `f:${sid}:${owner}`;
export const sessionLockPart = (sid: number): string => `s${sid}`;

/** Whether a lock record key belongs to the session. */
export function keyOfSession(key: string, sid: number): boolean {
  return key.startsWith(`p:${sid}:`) || key.startsWith(`f:${sid}:`);
}

/** The ranges without [start, end) (ranges cut at its edges). */
export function subtractRange(ranges: readonly LockRange[], start: number, end: number): LockRange[] {
  const out: LockRange[] = [];
  for (const [s, e, t] of ranges) {
    if (e <= start || s >= end) {
      out.push([s, e, t]);
      continue;
    }
    if (s < start) out.push([s, start, t]);
    if (e > end) out.push([end, e, t]);
  }
  return out;
}

/** The ranges with [start, end) set to type (replacing what the owner held there), sorted and merged. */
export function setRange(ranges: readonly LockRange[], start: number, end: number, type: LockType | 'u'): LockRange[] {
  const rest = subtractRange(ranges, start, end);
  if (type !== 'u') rest.push([start, end, type]);
  rest.sort((a, b) => a[0] - b[0]);
  const out: LockRange[] = [];
  for (const r of rest) {
    const last = out[out.length - 1];
    if (last !== undefined && last[2] === r[2] && last[1] >= r[0]) last[1] = Math.max(last[1], r[1]);
    else out.push([r[0], r[1], r[2]]);
  }
  return out;
}

/** The first range of another owner's record that conflicts with a type lock on [start, end). */
export function posixConflict(
  others: Iterable<PosixLockRec>,
  type: LockType,
  start: number,
  end: number,
): LockConflict | undefined {
  for (const rec of others) {
    for (const [s, e, t] of rec.ranges) {
      if (e <= start || s >= end) continue;
      if (t === 'w' || type === 'w') return { type: t, start: s, end: e, pid: rec.pid, sid: rec.sid };
    }
  }
  return undefined;
}

/** Whether another owner's flock stands in the way of a type flock. */
export function flockConflict(others: Iterable<FlockRec>, type: 'sh' | 'ex'): boolean {
  for (const rec of others) if (rec.type === 'ex' || type === 'ex') return true;
  return false;
}
