/**
 * GroupCommitEngine: the metadata service's writers share engine transactions. The service is the one
 * writer of many clients; an engine commits one transaction at a time per volume anyway (PostgreSQL's
 * volume lock, SQLite's write lock) and pays a durable flush per commit. So commits that arrive while one is
 * running wait, and then go together, in order, as the members of one engine transaction:
 *
 *   commit(fn1) ─▶ idle: runs at once, alone ──────────────────────────────────▶ { value1, seq }
 *   commit(fn2) ┐                                      ┌▶ fn2 on an overlay ─ ok ─▶ its writes into tx
 *   commit(fn3) ├▶ queued while fn1 commits ─▶ one tx: ├▶ fn3 on an overlay ─ threw ─▶ dropped, fn3's error
 *   commit(fn4) ┘                                      └▶ fn4 on an overlay ─ ok ─▶ its writes into tx
 *                                                        commit ─▶ fn2, fn4: { value, seq }; fn3: its error
 *
 * Semantics are those of committing the members one after the other: each member sees the writes of the
 * members before it (its overlay reads through the group's transaction), a member whose function throws
 * leaves nothing behind and gets its own error, and a member's writes are applied only if its function
 * returned. The group's transaction commits all successful members atomically under one changelog entry
 * (one seq, answered to every member that wrote). If the engine fails the group's transaction (unavailable,
 * fenced, a conflict retried to its limit), every member that would have committed gets that error; a
 * member's read that fails is the group's failure, not the member's (the engine's core retries the group:
 * each attempt runs every member again, as an optimistic engine may run any transaction function again).
 *
 * Limits: GROUP_MEMBERS_MAX members per transaction. A commit from inside a member's function would wait
 * for its own group: it fails an assertion instead (Meta never nests commits). Readonly transactions pass
 * through.
 */

import { AsyncLocalStorage } from 'node:async_hooks';
import { ForwardingEngine, type Commit, type Json, type Kind, type MetaEngine, type ScanOptions, type Txn, type TxnOptions } from '../meta/engine.js';
import { OverlayTxn, type Reader } from '../meta/overlay.js';

/** Members of one engine transaction at most. */
export const GROUP_MEMBERS_MAX = 64;

interface Member {
  fn: (tx: Txn) => Promise<unknown>;
  resolve: (c: Commit<unknown>) => void;
  reject: (err: unknown) => void;
}

type Outcome = { ok: true; value: unknown; wrote: boolean } | { ok: false; err: unknown };

/** Set while a member's function runs (nested commits are a bug: see the file comment). */
const inMember = new AsyncLocalStorage<true>();

/** A member's reads through the group's transaction; a failed read is the group's failure (`failed`). */
class GroupReader implements Reader {
  failed: { err: unknown } | undefined;
  private readonly tx: Txn;
  constructor(tx: Txn) {
    this.tx = tx;
  }
  async get(kind: Kind, part: string, key: string): Promise<Json | undefined> {
    try {
      return await this.tx.get(kind, part, key);
    } catch (err) {
      this.failed ??= { err };
      throw err;
    }
  }
  async scan(kind: Kind, part: string, options: ScanOptions | undefined, extra: number): Promise<Array<[string, Json]>> {
    const o: ScanOptions = { after: options?.after, limit: options?.limit === undefined ? undefined : options.limit + extra };
    try {
      return await this.tx.scan(kind, part, o);
    } catch (err) {
      this.failed ??= { err };
      throw err;
    }
  }
}

export interface GroupCommitStats {
  /** Engine transactions that carried writers, and the writers they carried. */
  transactions: number;
  members: number;
  /** The most members one transaction carried. */
  largest: number;
}

export class GroupCommitEngine extends ForwardingEngine {
  readonly stats: GroupCommitStats = { transactions: 0, members: 0, largest: 0 };
  private queue: Member[] = [];
  private running = false;

  constructor(inner: MetaEngine) {
    super(inner);
  }

  override commit<R>(fn: (tx: Txn) => Promise<R>, options?: TxnOptions): Promise<Commit<R>> {
    if (options?.readonly === true) return this.inner.commit(fn, options);
    if (inMember.getStore() === true) return Promise.reject(new Error('assertion failed: a commit inside a grouped transaction function would wait for its own group'));
    return new Promise<Commit<R>>((resolve, reject) => {
      this.queue.push({ fn, resolve: resolve as (c: Commit<unknown>) => void, reject });
      if (!this.running) void this.run();
    });
  }

  /** Commits queued members, a group at a time, until none is left. */
  private async run(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const group = this.queue.splice(0, GROUP_MEMBERS_MAX);
        this.stats.transactions++;
        this.stats.members += group.length;
        this.stats.largest = Math.max(this.stats.largest, group.length);
        await (group.length === 1 ? this.commitAlone(group[0]!) : this.commitGroup(group));
      }
    } finally {
      this.running = false;
    }
  }

  private async commitAlone(m: Member): Promise<void> {
    try {
      m.resolve(await this.inner.commit((tx) => inMember.run(true, () => m.fn(tx))));
    } catch (err) {
      m.reject(err);
    }
  }

  private async commitGroup(members: Member[]): Promise<void> {
    let outcomes: Outcome[] = [];
    let c: Commit<null>;
    try {
      c = await this.inner.commit(async (tx) => {
        outcomes = [];
        for (const m of members) {
          const reader = new GroupReader(tx);
          const sub = new OverlayTxn(reader);
          let outcome: Outcome;
          try {
            const value = await inMember.run(true, () => m.fn(sub));
            outcome = { ok: true, value, wrote: sub.writes.size > 0 };
          } catch (err) {
            outcome = { ok: false, err };
          }
          if (reader.failed !== undefined) throw reader.failed.err;
          if (outcome.ok) {
            for (const [kind, part, key, value] of sub.writes.values()) {
              if (value === null) tx.del(kind, part, key);
              else tx.put(kind, part, key, value as object | string | number | boolean);
            }
          }
          outcomes.push(outcome);
        }
        return null;
      });
    } catch (err) {
      members.forEach((m, i) => {
        const o = outcomes[i];
        m.reject(o !== undefined && !o.ok ? o.err : err);
      });
      return;
    }
    members.forEach((m, i) => {
      const o = outcomes[i]!;
      if (o.ok) m.resolve({ value: o.value, seq: o.wrote ? c.seq : undefined });
      else m.reject(o.err);
    });
  }
}
