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
 *
 * The range arithmetic below is pure; SessionLocks runs it in transactions for one client's session.
 */

import { FsError } from '../errors.js';
import type { TxnRunner } from './catalogue.js';
import type { Txn } from './engine.js';
import { lockRecs } from './records.js';

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

/** Lock records looked at per read while a session's locks are dropped. */
const LOCK_DROP_BATCH = 100;

const inoPart = (ino: number): string => String(ino);

function checkLockRange(start: number, end: number): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end <= start) throw new FsError('EINVAL', 'bad lock range');
}

/** One client session's view of the lock records: fcntl and flock for its owners, and its cleanup. */
export class SessionLocks {
  private readonly txn: TxnRunner;
  private readonly sid: () => number;
  /** Lock record keys this session holds, by inode (a superset: unlocks of nothing skip the engine). */
  private readonly held = new Map<number, Set<string>>();

  constructor(txn: TxnRunner, sid: () => number) {
    this.txn = txn;
    this.sid = sid;
  }

  /** Removes every lock session sid holds (its own close, or cleanup after it died). */
  async dropSession(sid: number): Promise<void> {
    for (;;) {
      const batch = await this.txn((tx) => lockRecs.scan(tx, sessionLockPart(sid), { limit: LOCK_DROP_BATCH }), { readonly: true });
      if (batch.length === 0) break;
      for (const [inoKey] of batch) {
        await this.txn(async (tx) => {
          lockRecs.del(tx, sessionLockPart(sid), inoKey);
          for (const [key] of await lockRecs.scan(tx, inoKey)) if (keyOfSession(key, sid)) lockRecs.del(tx, inoKey, key);
        });
      }
    }
    if (sid === this.sid()) this.held.clear();
  }

  /** Records (or forgets) in the transaction that this session holds locks on ino, from its remaining keys. */
  private async index(tx: Txn, ino: number): Promise<boolean> {
    const sid = this.sid();
    const any = (await lockRecs.scan(tx, inoPart(ino))).some(([k]) => keyOfSession(k, sid));
    if (any) lockRecs.put(tx, sessionLockPart(sid), inoPart(ino), 1);
    else lockRecs.del(tx, sessionLockPart(sid), inoPart(ino));
    return any;
  }

  private note(ino: number, key: string, held: boolean): void {
    let keys = this.held.get(ino);
    if (held) {
      if (keys === undefined) this.held.set(ino, (keys = new Set()));
      keys.add(key);
    } else if (keys !== undefined) {
      keys.delete(key);
      if (keys.size === 0) this.held.delete(ino);
    }
  }

  /** See Meta.getlk. */
  async getlk(ino: number, owner: string, type: LockType, start: number, end: number): Promise<LockConflict | undefined> {
    checkLockRange(start, end);
    const me = posixKey(this.sid(), owner);
    return this.txn(async (tx) => {
      const recs = (await lockRecs.scan(tx, inoPart(ino))) as Array<[string, PosixLockRec]>;
      return posixConflict(recs.filter(([k]) => k.startsWith('p:') && k !== me).map(([, v]) => v), type, start, end);
    }, { readonly: true });
  }

  /** See Meta.setlk. */
  async setlk(ino: number, owner: string, type: LockType | 'u', start: number, end: number, pid: number): Promise<LockConflict | undefined> {
    checkLockRange(start, end);
    const sid = this.sid();
    const key = posixKey(sid, owner);
    if (type === 'u' && !(this.held.get(ino)?.has(key) ?? false)) return undefined;
    const [conflict, held] = await this.txn(async (tx) => {
      const recs = (await lockRecs.scan(tx, inoPart(ino))) as Array<[string, PosixLockRec]>;
      if (type !== 'u') {
        const c = posixConflict(recs.filter(([k]) => k.startsWith('p:') && k !== key).map(([, v]) => v), type, start, end);
        if (c !== undefined) return [c, undefined] as const;
      }
      const mine = recs.find(([k]) => k === key)?.[1];
      const ranges = setRange(mine?.ranges ?? [], start, end, type);
      if (ranges.length === 0) lockRecs.del(tx, inoPart(ino), key);
      else lockRecs.put(tx, inoPart(ino), key, { sid, pid, ranges } satisfies PosixLockRec);
      if (ranges.length > 0) lockRecs.put(tx, sessionLockPart(sid), inoPart(ino), 1);
      else await this.index(tx, ino);
      return [undefined, ranges.length > 0] as const;
    });
    if (held !== undefined) this.note(ino, key, held);
    return conflict;
  }

  /** See Meta.flock. */
  async flock(ino: number, owner: string, type: 'sh' | 'ex' | 'un', pid: number): Promise<boolean> {
    const sid = this.sid();
    const key = flockKey(sid, owner);
    if (type === 'un' && !(this.held.get(ino)?.has(key) ?? false)) return true;
    const ok = await this.txn(async (tx) => {
      if (type === 'un') {
        lockRecs.del(tx, inoPart(ino), key);
        await this.index(tx, ino);
        return true;
      }
      const recs = (await lockRecs.scan(tx, inoPart(ino))) as Array<[string, FlockRec]>;
      if (flockConflict(recs.filter(([k]) => k.startsWith('f:') && k !== key).map(([, v]) => v), type)) return false;
      lockRecs.put(tx, inoPart(ino), key, { sid, pid, type } satisfies FlockRec);
      lockRecs.put(tx, sessionLockPart(sid), inoPart(ino), 1);
      return true;
    });
    if (ok) this.note(ino, key, type !== 'un');
    return ok;
  }

  /** Whether this session may hold locks on the inode (cheap; no engine query). */
  mayHold(ino: number): boolean {
    return this.held.has(ino);
  }
}
