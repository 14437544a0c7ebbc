/**
 * The locks a remote client holds, as the client knows them: what it takes again when the metadata service
 * lost its session (a restart, or an idle close). The locks themselves live in the engine under the
 * client's session on the service (meta/locks.ts); a new session starts with none.
 *
 *   session lost ──▶ every held lock asked for again on the new session, range by range:
 *                      granted                              ─▶ held again
 *                      refused by the client's old session  ─▶ asked again every REACQUIRE_POLL_MS: a service
 *                        (it died with its records: they stay    that was killed left them; they go when that
 *                        until it is judged dead)                session is judged dead (its stale time)
 *                      refused by anyone else               ─▶ lost: reported, and forgotten here
 *                      still refused after REACQUIRE_MS_MAX ─▶ lost: reported
 *
 * Between the old session's end and the grant on the new one, another client may take the lock: that window
 * is the time the service was down (graceful restart: its close dropped the locks) or one poll (killed).
 * flock answers no owner, so a refused flock is asked again until REACQUIRE_MS_MAX whoever holds it.
 */

import { LOCK_EOF, setRange, type LockConflict, type LockRange, type LockType } from '../meta/locks.js';

/** Polls of a lock the client's old session still holds, ms. */
export const REACQUIRE_POLL_MS = 250;
/** A lock not granted again within this long is lost (twice a session's default stale time), ms. */
export const REACQUIRE_MS_MAX = 120_000;

interface PosixHeld {
  ino: number;
  owner: string;
  pid: number;
  ranges: LockRange[];
}

interface FlockHeld {
  ino: number;
  owner: string;
  pid: number;
  type: 'sh' | 'ex';
}

/** How a re-acquisition asks the service (RemoteMeta's own calls). */
export interface LockRequests {
  setlk(ino: number, owner: string, type: LockType, start: number, end: number, pid: number): Promise<LockConflict | undefined>;
  flock(ino: number, owner: string, type: 'sh' | 'ex', pid: number): Promise<boolean>;
  sleep(ms: number): Promise<void>;
  now(): number;
  /** The client is closing: stop asking. */
  stopped(): boolean;
  /** A lock that could not be taken again. */
  lost(what: string): void;
}

const keyOf = (ino: number, owner: string): string => `${ino}\u0000${owner}`;

export class HeldLocks {
  private readonly posix = new Map<string, PosixHeld>();
  private readonly flocks = new Map<string, FlockHeld>();

  get size(): number {
    return this.posix.size + this.flocks.size;
  }

  /** After a granted setlk (or an unlock): the owner's ranges as the service now has them. */
  setlk(ino: number, owner: string, type: LockType | 'u', start: number, end: number | undefined, pid: number): void {
    const k = keyOf(ino, owner);
    const ranges = setRange(this.posix.get(k)?.ranges ?? [], start, end ?? LOCK_EOF, type);
    if (ranges.length === 0) this.posix.delete(k);
    else this.posix.set(k, { ino, owner, pid, ranges });
  }

  /** After a granted flock (or an unlock). */
  flock(ino: number, owner: string, type: 'sh' | 'ex' | 'un', pid: number): void {
    const k = keyOf(ino, owner);
    if (type === 'un') this.flocks.delete(k);
    else this.flocks.set(k, { ino, owner, pid, type });
  }

  /**
   * Takes every held lock again on a new session (see the file comment). `previousSid`: the session the
   * locks were held under, whose refusals are waited out.
   */
  async reacquire(req: LockRequests, previousSid: number | undefined): Promise<void> {
    const deadline = req.now() + REACQUIRE_MS_MAX;
    type Item = { kind: 'posix'; k: string; range: LockRange; pid: number; ino: number; owner: string } | { kind: 'flock'; k: string; held: FlockHeld };
    let pending: Item[] = [
      ...[...this.posix].flatMap(([k, h]) => h.ranges.map((range) => ({ kind: 'posix' as const, k, range, pid: h.pid, ino: h.ino, owner: h.owner }))),
      ...[...this.flocks].map(([k, held]) => ({ kind: 'flock' as const, k, held })),
    ];
    while (pending.length > 0 && !req.stopped()) {
      const again: Item[] = [];
      for (const it of pending) {
        if (it.kind === 'posix') {
          // Still held as it was (the client may have unlocked meanwhile)?
          const now = this.posix.get(it.k);
          if (now === undefined || !now.ranges.some((r) => r[0] <= it.range[0] && r[1] >= it.range[1] && r[2] === it.range[2])) continue;
          const [start, end, type] = it.range;
          const c = await req.setlk(it.ino, it.owner, type, start, end, it.pid);
          if (c === undefined) continue;
          if (previousSid !== undefined && c.sid === previousSid) {
            again.push(it);
            continue;
          }
          this.setlk(it.ino, it.owner, 'u', start, end, it.pid);
          req.lost(`the ${type === 'w' ? 'write' : 'read'} lock of owner ${it.owner} on inode ${it.ino}, bytes ${start}..${end === LOCK_EOF ? 'EOF' : end}: another client (session ${c.sid}, pid ${c.pid}) took it while the metadata service was away`);
        } else {
          if (this.flocks.get(it.k) !== it.held) continue;
          if (await req.flock(it.held.ino, it.held.owner, it.held.type, it.held.pid)) continue;
          again.push(it);
        }
      }
      if (again.length === 0) return;
      if (req.now() >= deadline) {
        for (const it of again) {
          if (it.kind === 'posix') this.setlk(it.ino, it.owner, 'u', it.range[0], it.range[1], it.pid);
          else this.flock(it.held.ino, it.held.owner, 'un', it.held.pid);
          req.lost(`the ${it.kind === 'posix' ? 'byte-range' : 'flock'} lock of owner ${it.kind === 'posix' ? it.owner : it.held.owner} on inode ${it.kind === 'posix' ? it.ino : it.held.ino}: not granted again within ${REACQUIRE_MS_MAX / 1000} s after the metadata service lost this client's session`);
        }
        return;
      }
      await req.sleep(REACQUIRE_POLL_MS);
      pending = again;
    }
  }
}
