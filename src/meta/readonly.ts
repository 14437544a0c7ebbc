/**
 * ReadOnlyEngine: a MetaEngine through which nothing of the volume can change — what the clients of a mirror
 * region get over their replica (region/mirror.ts). A transaction that puts or deletes a record of a logged
 * kind fails with EROFS and a message saying where writes go; the kinds that describe this client's own live
 * state (its session, open-but-unlinked files, locks) may still be written, since they are not the volume's
 * and are not in the changelog the replica must keep equal to the primary's. The log members (applyLog,
 * restore, trimming) are the follower's and pass through.
 */

import { FsError } from '../errors.js';
import {
  ForwardingEngine,
  UNLOGGED_KINDS,
  type Commit,
  type Json,
  type Kind,
  type MetaEngine,
  type ScanOptions,
  type Txn,
  type TxnOptions,
} from './engine.js';

class GuardTxn implements Txn {
  private readonly inner: Txn;
  private readonly reason: string;
  constructor(inner: Txn, reason: string) {
    this.inner = inner;
    this.reason = reason;
  }

  get<T = Json>(kind: Kind, part: string, key: string): Promise<T | undefined> {
    return this.inner.get<T>(kind, part, key);
  }

  put(kind: Kind, part: string, key: string, value: object | string | number | boolean): void {
    this.check(kind);
    this.inner.put(kind, part, key, value);
  }

  del(kind: Kind, part: string, key: string): void {
    this.check(kind);
    this.inner.del(kind, part, key);
  }

  scan<T = Json>(kind: Kind, part: string, options?: ScanOptions): Promise<Array<[string, T]>> {
    return this.inner.scan<T>(kind, part, options);
  }

  private check(kind: Kind): void {
    if (!UNLOGGED_KINDS.has(kind)) throw new FsError('EROFS', this.reason);
  }
}

export class ReadOnlyEngine extends ForwardingEngine {
  /** Why writes fail (the EROFS message). */
  readonly reason: string;

  constructor(inner: MetaEngine, reason: string) {
    super(inner);
    this.reason = reason;
  }

  override commit<R>(fn: (tx: Txn) => Promise<R>, options?: TxnOptions): Promise<Commit<R>> {
    if (options?.readonly === true) return this.inner.commit(fn, options);
    return this.inner.commit((tx) => fn(new GuardTxn(tx, this.reason)), options);
  }
  override reset(): Promise<void> {
    return Promise.reject(new FsError('EROFS', this.reason));
  }
}
