/**
 * The metadata service's request records (service/server.ts): how a retried request of a remote client is
 * answered instead of applied twice.
 *
 *   request  ''  '<client>.<n>'  RequestRec
 *
 * `<client>` is the client's id (CLIENT_ID_RE), `<n>` its request counter in base 36, zero-padded so a client's
 * records sort by counter. Life of a record:
 *
 *   the operation's transaction ──▶ { state: 'applied' }            (same transaction: it exists iff the
 *                                                                      operation committed)
 *   after the answer is known   ──▶ { state: 'answered', seq, result } (a later, batched transaction: a retry
 *                                                                      gets the very answer)
 *   the client saw the answer   ──▶ deleted (its next request lists it in `drop`), or by the sweep after
 *                                   REQUEST_KEEP_MS (a client that died, an answer lost for good)
 *
 * Unlogged: the records are the primary's bookkeeping, not the volume's state.
 */

import type { Json, MetaEngine, Txn } from './engine.js';

/** A client id: what a remote client names itself (random, fixed for its life). */
export const CLIENT_ID_RE = /^[A-Za-z0-9_-]{8,64}$/;
/** Records older than this are swept (well past any client's retry window). */
export const REQUEST_KEEP_MS = 10 * 60_000;
/** Records looked at per sweep transaction. */
export const REQUEST_SWEEP_BATCH = 500;

export interface RequestRec {
  v: 1;
  /** When the operation committed (the service's clock), ms. */
  time: number;
  state: 'applied' | 'answered';
  /** The seq the client waits for (its replica's read-your-writes), once answered. */
  seq?: number;
  /** The operation's answer as sent (the protocol's JSON), once answered. */
  result?: Json;
}

export function requestKey(client: string, n: number): string {
  if (!CLIENT_ID_RE.test(client)) throw new RangeError(`bad client id ${JSON.stringify(client)}`);
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`bad request number ${n}`);
  return `${client}.${n.toString(36).padStart(11, '0')}`;
}

export function getRequest(tx: Txn, key: string): Promise<RequestRec | undefined> {
  return tx.get<RequestRec>('request', '', key);
}

/** Inside the operation's own transaction. */
export function markApplied(tx: Txn, key: string, time: number): void {
  tx.put('request', '', key, { v: 1, time, state: 'applied' } satisfies RequestRec);
}

/**
 * Stores the answer of an applied request (inside any transaction committed after the operation's): a blind
 * write, so the caller must not write it for a record its client has dropped (it would stay until the sweep).
 */
export function markAnswered(tx: Txn, key: string, time: number, seq: number, result: Json): void {
  tx.put('request', '', key, { v: 1, time, state: 'answered', seq, result } satisfies RequestRec);
}

/** Blind deletes of records whose answers their client has seen (inside any transaction). */
export function dropRequests(tx: Txn, keys: readonly string[]): void {
  for (const k of keys) tx.del('request', '', k);
}

export async function readRequest(engine: MetaEngine, key: string): Promise<RequestRec | undefined> {
  return engine.txn((tx) => getRequest(tx, key), { readonly: true });
}

/**
 * Stores answers of applied requests, in one transaction. A record that is gone (dropped by its client, which
 * therefore has its answer) is not recreated.
 */
export async function recordAnswers(engine: MetaEngine, answers: ReadonlyArray<{ key: string; seq: number; result: Json }>): Promise<void> {
  if (answers.length === 0) return;
  await engine.txn(async (tx) => {
    const recs = await Promise.all(answers.map((a) => getRequest(tx, a.key)));
    answers.forEach((a, i) => {
      const r = recs[i];
      if (r !== undefined) tx.put('request', '', a.key, { v: 1, time: r.time, state: 'answered', seq: a.seq, result: a.result } satisfies RequestRec);
    });
  });
}

/** Deletes records older than `before` (ms), at most `limit` looked at per transaction; returns how many went. */
export async function sweepRequests(engine: MetaEngine, before: number, limit = REQUEST_SWEEP_BATCH): Promise<number> {
  let removed = 0;
  let after: string | undefined;
  for (;;) {
    const page = await engine.txn((tx) => tx.scan<RequestRec>('request', '', { after, limit }), { readonly: true });
    const old = page.filter(([, r]) => typeof r?.time !== 'number' || r.time < before).map(([k]) => k);
    if (old.length > 0) {
      await engine.txn(async (tx) => {
        dropRequests(tx, old);
        await Promise.resolve();
      });
      removed += old.length;
    }
    if (page.length < limit) return removed;
    after = page[page.length - 1]![0];
  }
}
