/**
 * RecordingEngine: the engine under the service's Meta instances. While a mutating request runs (its
 * RequestScope is the AsyncLocalStorage store), it adds the request's record to the one transaction that
 * carries the operation, so the record exists exactly when the operation committed:
 *
 *   Meta op ──commit(fn)──▶ RecordingEngine ──commit(fn')──▶ inner engine
 *                            fn'(tx): request record present? ─yes─▶ throw AlreadyAppliedError (nothing written)
 *                                     fn(spy) ──▶ wrote an operation kind? ─yes─▶ put { state: 'applied' }
 *                                     drop the records the client has seen (blind deletes)
 *
 * Which transaction is "the operation's": the first commit in the scope that writes a kind other than the
 * bookkeeping ones (counter — Meta's id pools refill in a transaction of their own before the operation's;
 * session; usage — merged later). Meta's public mutations each commit one such transaction today; should one
 * ever commit two, the second is not covered by the record (a retry after a lost answer would be answered as
 * applied from the first): `stats.multiCommits` counts that so a test catches it. The epoch check (failover)
 * is below this wrapper, in every engine's commit (meta/core.ts, meta/epoch.ts): a demoted primary refuses the
 * operation's transaction, record and all, so a retried request is refused again, never answered as applied.
 *
 * Other calls pass through. Timers that Meta starts inside a scope (usage flushes) inherit the store: the
 * scope is closed when its request ends, and a closed scope is ignored.
 */

import { AsyncLocalStorage } from 'node:async_hooks';
import {
  ForwardingEngine,
  type Commit,
  type Json,
  type Kind,
  type MetaEngine,
  type ScanOptions,
  type Txn,
  type TxnOptions,
} from '../meta/engine.js';
import { dropRequests, getRequest, markApplied } from '../meta/requests.js';

/** Kinds a transaction may write without being the operation's (see the file comment). */
const BOOKKEEPING_KINDS: ReadonlySet<Kind> = new Set<Kind>(['counter', 'session', 'usage', 'request']);

export interface RequestScope {
  /** The request record's key (undefined: a request that needs none). */
  key: string | undefined;
  /** Keys of records the client has seen the answers of: deleted in the first writing transaction. */
  drop: string[];
  /** While the request runs; a closed scope is ignored. */
  open: boolean;
  /** The operation's transaction committed with the record. */
  applied: boolean;
  /** The newest seq a commit in this scope appended (0: none). */
  seq: number;
  now: () => number;
}

export const requestScope = new AsyncLocalStorage<RequestScope>();

/** The request's record was found: the operation was applied by an earlier attempt. Nothing was written. */
export class AlreadyAppliedError extends Error {
  constructor(key: string) {
    super(`request ${key} was applied already`);
    this.name = 'AlreadyAppliedError';
  }
}

class SpyTxn implements Txn {
  operation = false;
  private readonly inner: Txn;
  constructor(inner: Txn) {
    this.inner = inner;
  }
  get<T = Json>(kind: Kind, part: string, key: string): Promise<T | undefined> {
    return this.inner.get<T>(kind, part, key);
  }
  put(kind: Kind, part: string, key: string, value: object | string | number | boolean): void {
    if (!BOOKKEEPING_KINDS.has(kind)) this.operation = true;
    this.inner.put(kind, part, key, value);
  }
  del(kind: Kind, part: string, key: string): void {
    if (!BOOKKEEPING_KINDS.has(kind)) this.operation = true;
    this.inner.del(kind, part, key);
  }
  scan<T = Json>(kind: Kind, part: string, options?: ScanOptions): Promise<Array<[string, T]>> {
    return this.inner.scan<T>(kind, part, options);
  }
}

export interface RecorderStats {
  /** Operation transactions that carried a request record. */
  recorded: number;
  /** Requests found applied inside a transaction (a retry racing its original). */
  alreadyApplied: number;
  /** A second operation transaction in one scope (see the file comment): should stay 0. */
  multiCommits: number;
}

export class RecordingEngine extends ForwardingEngine {
  readonly stats: RecorderStats = { recorded: 0, alreadyApplied: 0, multiCommits: 0 };

  constructor(inner: MetaEngine) {
    super(inner);
  }

  override async commit<R>(fn: (tx: Txn) => Promise<R>, options?: TxnOptions): Promise<Commit<R>> {
    const scope = requestScope.getStore();
    if (scope === undefined || !scope.open || options?.readonly === true) return this.inner.commit(fn, options);
    // Per attempt: an optimistic engine may run fn' more than once; the committed attempt's flags count.
    let marked = false;
    let dropped = false;
    let operation = false;
    const c = await this.inner.commit(async (tx) => {
      marked = false;
      dropped = false;
      const key = scope.key;
      if (key !== undefined && !scope.applied && (await getRequest(tx, key)) !== undefined) throw new AlreadyAppliedError(key);
      const spy = new SpyTxn(tx);
      const value = await fn(spy);
      operation = spy.operation;
      if (key !== undefined && !scope.applied && spy.operation) {
        markApplied(tx, key, scope.now());
        marked = true;
      }
      if (scope.drop.length > 0) {
        dropRequests(tx, scope.drop);
        dropped = true;
      }
      return value;
    }, options);
    if (marked) {
      scope.applied = true;
      this.stats.recorded++;
    } else if (operation && scope.applied) {
      this.stats.multiCommits++;
    }
    if (dropped) scope.drop = [];
    if (c.seq !== undefined && c.seq > scope.seq) scope.seq = c.seq;
    return c;
  }
}
