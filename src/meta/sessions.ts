/**
 * Client sessions: each client that holds files open registers a session (`session` records, not logged)
 * and refreshes its heartbeat; a session that stopped beating for longer than it declared (`staleMs`) is
 * dead, and the next client to start or beat (or gc) cleans it: its usage records are merged, its locks
 * dropped, its open-but-unlinked files (`sustained` records) destroyed. This module keeps the records and
 * the timer; Meta runs the cleanup, which needs the POSIX layer to destroy inodes.
 *
 *   open ─▶ session/<sid> {heartbeat} ─▶ beat every heartbeatMs ─▶ close: cleaned by itself
 *                                    └─ no beat for staleMs ─▶ dead: cleaned by whoever notices first
 */

import { hostname } from 'node:os';
import type { Txn } from './engine.js';
import type { TxnRunner } from './catalogue.js';
import { sessionNext, sessions, sustained } from './records.js';
import type { SessionRec } from './types.js';

/** A session that missed this many heartbeats in a row is dead (its client crashed or lost the engine). */
export const SESSION_STALE_BEATS = 5;
export const HEARTBEAT_MS_DEFAULT = 12_000;
export const SESSION_STALE_MS_DEFAULT = SESSION_STALE_BEATS * HEARTBEAT_MS_DEFAULT;
/** Sessions recorded before they declared their own timeout are dead after this long without a heartbeat. */
const SESSION_STALE_MS_LEGACY = 300_000;
/** Open-but-unlinked files looked at per read while a session is cleaned. */
const SUSTAINED_BATCH = 100;

/** Whether a session stopped beating longer ago than it said it may (see MetaOptions.sessionStaleMs). */
export function sessionIsStale(s: SessionRec, now: number): boolean {
  return now - s.heartbeat > (s.staleMs ?? SESSION_STALE_MS_LEGACY);
}

export interface SessionOptions {
  region: string;
  /** 0: no timer (tests call the heartbeat themselves). */
  heartbeatMs: number;
  staleMs: number;
  now: () => number;
}

export class ClientSession {
  /** This client's session id; 0 while it has none. */
  sid = 0;
  private readonly txn: TxnRunner;
  private readonly options: SessionOptions;
  private timer: NodeJS.Timeout | undefined;

  constructor(txn: TxnRunner, options: SessionOptions) {
    this.txn = txn;
    this.options = options;
  }

  private record(now: number): SessionRec {
    return { host: hostname(), pid: process.pid, started: now, heartbeat: now, version: '0.1.0', region: this.options.region, staleMs: this.options.staleMs };
  }

  /** Registers this client's session and starts its heartbeat timer, which calls `beat`. */
  async open(beat: () => Promise<void>): Promise<void> {
    const now = this.options.now();
    this.sid = await this.txn(async (tx) => {
      // The session counter lives with the sessions, out of the changelog: opening a client (even a
      // read-only tool) must not add entries for mirrors to ship.
      const sid = (await sessionNext.get(tx)) ?? 1;
      sessionNext.put(tx, sid + 1);
      sessions.put(tx, sid, this.record(now));
      return sid;
    });
    if (this.options.heartbeatMs > 0) {
      this.timer = setInterval(() => {
        beat().catch((e: unknown) => {
          process.emitWarning(`ferry: session heartbeat failed: ${String(e)}`);
        });
      }, this.options.heartbeatMs);
      this.timer.unref();
    }
  }

  stopTimer(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * Refreshes the heartbeat. True when the session was gone (another client judged it dead and cleaned it):
   * it is recorded again under the same id.
   */
  async beat(): Promise<boolean> {
    const now = this.options.now();
    return this.txn(async (tx) => {
      const rec = await sessions.get(tx, this.sid);
      sessions.put(tx, this.sid, rec !== undefined ? { ...rec, heartbeat: now } : this.record(now));
      return rec === undefined;
    });
  }

  async list(): Promise<Array<SessionRec & { sid: number }>> {
    const rows = await this.txn((tx) => sessions.scan(tx), { readonly: true });
    return rows.map(([sid, v]) => ({ ...v, sid }));
  }

  /** Sessions other than this one that stopped beating. */
  async stale(): Promise<number[]> {
    const now = this.options.now();
    return (await this.list()).filter((s) => s.sid !== this.sid && sessionIsStale(s, now)).map((s) => s.sid);
  }

  async remove(sid: number): Promise<void> {
    await this.txn(async (tx) => {
      sessions.del(tx, sid);
      await Promise.resolve();
    });
  }

  // ---- open-but-unlinked files

  /** Inside tx: this session holds ino open after its last name went. */
  holdOpen(tx: Txn, ino: number): void {
    sustained.put(tx, this.sid, ino, 1);
  }

  /** A batch of the inodes session sid holds open-but-unlinked. */
  async sustainedBatch(sid: number): Promise<number[]> {
    return (await this.txn((tx) => sustained.scan(tx, sid, { limit: SUSTAINED_BATCH }), { readonly: true })).map(([ino]) => ino);
  }

  /** Inside tx: drops session sid's hold on ino; false when it held none. */
  async release(tx: Txn, sid: number, ino: number): Promise<boolean> {
    if ((await sustained.get(tx, sid, ino)) === undefined) return false;
    sustained.del(tx, sid, ino);
    return true;
  }

  /** Inside tx: drops session sid's hold on ino without reading it. */
  drop(tx: Txn, sid: number, ino: number): void {
    sustained.del(tx, sid, ino);
  }

  /** Inside tx: whether another live session than `except` holds the inode open-but-unlinked. */
  static async openElsewhere(tx: Txn, ino: number, except: number): Promise<boolean> {
    for (const [sid] of await sessions.scan(tx)) {
      if (sid === except) continue;
      if ((await sustained.get(tx, sid, ino)) !== undefined) return true;
    }
    return false;
  }
}
