/**
 * RecordingEngine: the engine under the service's Meta instances. While a mutating request runs (its
 * RequestScope is the AsyncLocalStorage store), it adds the request's record to the one transaction that
 * carries the operation, so the record exists exactly when the operation committed:
 *
 *   Meta op ──commit(fn)──▶ RecordingEngine ──commit(fn')──▶ inner engine
 *                            fn'(tx): fn(spy), and beside it: request record present?
 *                                       ─yes─▶ throw AlreadyAppliedError (the transaction aborts: nothing written)
 *                                     wrote an operation kind? ─yes─▶ put { state: 'applied' }
 *                                     drop the records the client has seen (blind deletes)
 *                                     answers of earlier requests (blind puts, see below)
 *
 * Which transaction is "the operation's": the first commit in the scope that writes a kind other than the
 * bookkeeping ones (counter — Meta's id pools refill in a transaction of their own before the operation's;
 * session; usage — merged later). Meta's public mutations each commit one such transaction today; should one
 * ever commit two, the second is not covered by the record (a retry after a lost answer would be answered as
 * applied from the first): `stats.multiCommits` counts that so a test catches it. The epoch check (failover)
 * is below this wrapper, in every engine's commit (meta/core.ts, meta/epoch.ts): a demoted primary refuses the
 * operation's transaction, record and all, so a retried request is refused again, never answered as applied.
 *
 * Answers. Once an operation answered, its record gets the answer (`answered`: a retry after a restart of the
 * service gets the very answer). Answers wait in a queue and ride along in the next writing transaction of
 * any client (no commit of their own under load), at most ANSWERS_PER_TXN_MAX per transaction; a queue that
 * no transaction takes within ANSWER_FLUSH_MS is written by a transaction of its own. An answer whose client
 * has seen it (listed it in `drop`) leaves the queue (forgetAnswers), since a blind put would bring its
 * dropped record back; one that was in flight in a transaction that failed goes back to the queue.
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
import type { CacheEffects } from '../meta/lookupcache.js';
import { dropRequests, getRequest, markAnswered, markApplied } from '../meta/requests.js';

/** Answers written per transaction at most (see the file comment). */
export const ANSWERS_PER_TXN_MAX = 200;
/** A queued answer is written within this long, by a transaction of its own if none takes it, ms. */
export const ANSWER_FLUSH_MS = 50;

/** An applied request's answer, waiting to be written into its record. */
export interface PendingAnswer {
  key: string;
  /** When the operation committed, ms (the record's time: the sweep's clock). */
  time: number;
  seq: number;
  result: Json;
}

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
  /** What the request's transactions changed, for the client's lookup cache (protocol.ts `fx`). */
  fx: CacheEffects | undefined;
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
  /** Answers written, and transactions of their own that wrote some (the rest rode along). */
  answers: number;
  answerCommits: number;
}

export class RecordingEngine extends ForwardingEngine {
  readonly stats: RecorderStats = { recorded: 0, alreadyApplied: 0, multiCommits: 0, answers: 0, answerCommits: 0 };
  /** Queued answers by request key, oldest first. */
  private readonly answers = new Map<string, PendingAnswer>();
  private answerTimer: NodeJS.Timeout | undefined;
  private readonly onError: (what: string, err: unknown) => void;

  constructor(inner: MetaEngine, onError: (what: string, err: unknown) => void = () => undefined) {
    super(inner);
    this.onError = onError;
  }

  /** Queues an applied request's answer (see the file comment). */
  queueAnswer(a: PendingAnswer): void {
    this.answers.set(a.key, a);
    this.answerTimer ??= setTimeout(() => {
      this.answerTimer = undefined;
      this.flushAnswers().catch((err: unknown) => this.onError('recording answers of applied requests', err));
    }, ANSWER_FLUSH_MS).unref();
  }

  /** The clients have seen these answers (their records are being dropped): not to be written. */
  forgetAnswers(keys: readonly string[]): void {
    for (const k of keys) this.answers.delete(k);
  }

  /** Writes every queued answer now, in transactions of their own (a timer, the service's close). */
  async flushAnswers(): Promise<void> {
    if (this.answerTimer !== undefined) clearTimeout(this.answerTimer);
    this.answerTimer = undefined;
    while (this.answers.size > 0) {
      this.stats.answerCommits++;
      // The answers ride along in this otherwise empty transaction (commit takes them).
      await requestScope.exit(() => this.commit(() => Promise.resolve()));
    }
  }

  private takeAnswers(): PendingAnswer[] {
    const out: PendingAnswer[] = [];
    for (const a of this.answers.values()) {
      if (out.length >= ANSWERS_PER_TXN_MAX) break;
      out.push(a);
    }
    for (const a of out) this.answers.delete(a.key);
    return out;
  }

  override async commit<R>(fn: (tx: Txn) => Promise<R>, options?: TxnOptions): Promise<Commit<R>> {
    if (options?.readonly === true) return this.inner.commit(fn, options);
    const found = requestScope.getStore();
    const scope = found?.open === true ? found : undefined;
    const carried = this.takeAnswers();
    // Per attempt: an optimistic engine may run fn' more than once; the committed attempt's flags count.
    let marked = false;
    let dropped = false;
    let operation = false;
    let c: Commit<R>;
    try {
      c = await this.inner.commit(async (tx) => {
        marked = false;
        dropped = false;
        const key = scope?.key;
        // The record is read beside the operation's own reads (one wait on engines that pipeline them); found,
        // it decides, whatever the operation made of the state its earlier attempt left (EEXIST, ENOENT).
        const check = scope !== undefined && key !== undefined && !scope.applied ? getRequest(tx, key) : undefined;
        check?.catch(() => undefined); // awaited below on every path; a failure meanwhile is not unhandled
        const applied = async (): Promise<boolean> => check !== undefined && (await check) !== undefined;
        let value: R;
        if (scope === undefined) {
          value = await fn(tx);
        } else {
          const spy = new SpyTxn(tx);
          try {
            value = await fn(spy);
          } catch (err) {
            if (await applied()) throw new AlreadyAppliedError(key!);
            throw err;
          }
          if (await applied()) throw new AlreadyAppliedError(key!);
          operation = spy.operation;
          if (key !== undefined && !scope.applied && spy.operation) {
            markApplied(tx, key, scope.now());
            marked = true;
          }
          if (scope.drop.length > 0) {
            dropRequests(tx, scope.drop);
            dropped = true;
          }
        }
        for (const a of carried) markAnswered(tx, a.key, a.time, a.seq, a.result);
        return value;
      }, options);
    } catch (err) {
      // Not written: back to the queue (before anything queued since, which is newer).
      if (carried.length > 0) {
        const later = [...this.answers.values()];
        this.answers.clear();
        for (const a of [...carried, ...later]) this.answers.set(a.key, a);
        this.queueAnswer(carried[0]!);
      }
      throw err;
    }
    this.stats.answers += carried.length;
    if (scope !== undefined) {
      if (marked) {
        scope.applied = true;
        this.stats.recorded++;
      } else if (operation && scope.applied) {
        this.stats.multiCommits++;
      }
      if (dropped) scope.drop = [];
      if (c.seq !== undefined && c.seq > scope.seq) scope.seq = c.seq;
    }
    return c;
  }
}
