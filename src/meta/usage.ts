/**
 * Usage batching: the volume's usage counters (`counter` usedBytes and inodes) and the per-session usage
 * records that feed them.
 *
 * A transaction that changes usage does not touch the two hot counters (that would make every create and
 * write of every client conflict on them). With a session, it writes a `usage` record of its own in the same
 * transaction (durable: a client killed before the merge loses nothing; its session's cleanup merges them);
 * after the commit the change is pending in memory, and a timer (or flushUsage) merges the session's records
 * into the counters, a batch per transaction, each record deleted in the transaction that adds it, so it is
 * counted exactly once. Without a session (tools), pending changes go to the counters directly.
 *
 *   txn(+bytes) ──▶ usage/<sid>/<seq> = [bytes, inodes]   ─┐
 *          └──────▶ pending += (statfs counts it at once)  ├─ flush (timer, close) ─▶ counters += Σ, records gone
 *                                                          ┘
 */

import type { MetaEngine, Txn } from './engine.js';
import { counter, counters, sessions, usageRecs } from './records.js';

/** Usage change records merged into the counters per transaction. */
const USAGE_MERGE_BATCH = 500;
const SCAN_PAGE = 1000;

/** Adds to the volume's usage counters (read-modify-write: callers batch). */
async function addCounters(tx: Txn, bytes: number, inodes: number): Promise<void> {
  if (bytes !== 0) counters.put(tx, 'usedBytes', (await counter(tx, 'usedBytes')) + bytes);
  if (inodes !== 0) counters.put(tx, 'inodes', (await counter(tx, 'inodes')) + inodes);
}

export class UsageBatcher {
  private readonly engine: MetaEngine;
  /** 0: flush after every transaction. */
  private readonly flushMs: number;
  /** This client's session id (0: none). */
  private readonly sid: () => number;
  private pendingBytes = 0;
  private pendingInodes = 0;
  private timer: NodeJS.Timeout | undefined;
  /** The flush in flight, if any (see flush). */
  private inFlight: Promise<void> | undefined;
  /** Keys of this session's usage records. */
  private seq = 0;

  constructor(engine: MetaEngine, flushMs: number, sid: () => number) {
    this.engine = engine;
    this.flushMs = flushMs;
    this.sid = sid;
  }

  /** Inside a writing transaction: records its usage change durably (with a session). */
  record(tx: Txn, bytes: number, inodes: number): void {
    const sid = this.sid();
    if (sid === 0 || (bytes === 0 && inodes === 0)) return;
    // Blind writes under keys of their own: a client's concurrent transactions never conflict on them.
    usageRecs.put(tx, sid, (++this.seq).toString(36).padStart(8, '0'), [bytes, inodes]);
  }

  /** After that transaction committed: the change is pending until the next flush. */
  async committed(bytes: number, inodes: number): Promise<void> {
    if (bytes === 0 && inodes === 0) return;
    this.pendingBytes += bytes;
    this.pendingInodes += inodes;
    if (this.flushMs === 0) await this.flush();
    else this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.flush().catch((e: unknown) => process.emitWarning(`ferry: usage counters not flushed: ${String(e)}`));
    }, this.flushMs).unref();
  }

  /** This client's changes not in the counters yet. */
  get pending(): { bytes: number; inodes: number } {
    return { bytes: this.pendingBytes, inodes: this.pendingInodes };
  }

  /** Forgets what is pending (the session's cleanup merged its records). */
  dropPending(): void {
    this.pendingBytes = 0;
    this.pendingInodes = 0;
  }

  stopTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /**
   * Adds this client's pending usage changes to the volume's counters: with a session, by merging its usage
   * records (whatever a failed merge left is merged by the next one, or by the session's cleanup); without,
   * from memory.
   */
  async flush(): Promise<void> {
    // One flush at a time: a caller (close above all) waits for a flush in flight (the timer's), then writes
    // what is left, including what that flush put back if it failed. Without the wait, close found nothing
    // pending, closed the engine under the timer's transaction, and the counts were lost.
    while (this.inFlight !== undefined) await this.inFlight.catch(() => undefined);
    const bytes = this.pendingBytes;
    const inodes = this.pendingInodes;
    if (bytes === 0 && inodes === 0) return;
    this.pendingBytes -= bytes;
    this.pendingInodes -= inodes;
    const sid = this.sid();
    const flush = (sid !== 0 ? this.merge(sid) : this.engine.txn(async (tx) => addCounters(tx, bytes, inodes)))
      .catch((e: unknown) => {
        this.pendingBytes += bytes;
        this.pendingInodes += inodes;
        throw e;
      })
      .finally(() => {
        if (this.inFlight === flush) this.inFlight = undefined;
      });
    this.inFlight = flush;
    await flush;
  }

  /** Moves a session's usage records into the counters, a batch per transaction. */
  async merge(sid: number): Promise<void> {
    for (;;) {
      const n = await this.engine.txn(async (tx) => {
        const rows = await usageRecs.scan(tx, sid, { limit: USAGE_MERGE_BATCH });
        let bytes = 0;
        let inodes = 0;
        for (const [k, [b, i]] of rows) {
          bytes += b;
          inodes += i;
          usageRecs.del(tx, sid, k);
        }
        await addCounters(tx, bytes, inodes);
        return rows.length;
      });
      if (n < USAGE_MERGE_BATCH) return;
    }
  }
}

/**
 * The volume's usage exactly as committed: the counters plus every session's usage records not merged yet
 * (status; statfs adds only its own client's, which it knows without a scan).
 */
export async function committedUsage(engine: MetaEngine): Promise<{ usedBytes: number; inodes: number }> {
  return engine.txn(async (tx) => {
    let usedBytes = await counter(tx, 'usedBytes');
    let inodes = await counter(tx, 'inodes');
    for (const [sid] of await sessions.scan(tx)) {
      let after: string | undefined;
      for (;;) {
        const rows = await usageRecs.scan(tx, sid, { after, limit: SCAN_PAGE });
        for (const [, [b, i]] of rows) {
          usedBytes += b;
          inodes += i;
        }
        if (rows.length < SCAN_PAGE) break;
        after = rows[rows.length - 1]![0];
      }
    }
    return { usedBytes, inodes };
  }, { readonly: true });
}

/** The usage counters as stored (without pending changes). */
export async function storedUsage(engine: MetaEngine): Promise<{ usedBytes: number; inodes: number }> {
  return engine.txn(async (tx) => ({ usedBytes: await counter(tx, 'usedBytes'), inodes: await counter(tx, 'inodes') }), { readonly: true });
}
