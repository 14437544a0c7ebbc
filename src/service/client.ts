/**
 * The client side of the metadata service: ServiceClient (HTTP/1.1 keep-alive pools over undici, retries,
 * request numbers) and RemoteMeta, a MetaApi whose every operation is one request to the service.
 *
 * Retries. A request that failed without an answer (connection refused or reset, a timeout, a 503 from a
 * service whose engine did not answer) is sent again — to the next address when several are given — with
 * util/sleep.ts's backoff, until REQUEST_RETRY_MS_MAX has passed since it was first sent. A mutating request
 * keeps its number across attempts, so the service answers a repeat instead of applying it again
 * (server.ts); reads are repeated freely. When retries run out, the error says whether a write may have been
 * applied. Answers (POSIX errors included) and 401 are final.
 *
 * Caches. RemoteMeta keeps no names or attributes: every lookup asks the service, whose per-client Meta has
 * the lookup cache (and forgets what this client's own commits changed, as a local Meta does). It keeps slice
 * ids (fetched SLICE_ID_BATCH at a time; unused ones are simply never used), the inodes it holds open (given
 * back to a service that lost them in a restart) and the inodes it took locks on (mayHoldLocks).
 */

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Pool } from 'undici';
import { FsError } from '../errors.js';
import type { MetaApi, WriteResult } from '../meta/api.js';
import type { LockConflict, LockType } from '../meta/locks.js';
import { parseServiceAddress, type ServiceAddress } from '../meta/service.js';
import type { SliceRef } from '../meta/slices.js';
import type { Attr, Ctx, DirEntry, FileType, FormatRec, SetAttr, SliceRefRec, StatFs } from '../meta/types.js';
import { backoffMs, sleep, type Backoff } from '../util/sleep.js';
import { DROP_MAX, isErrnoCode, OPS, PROTOCOL_PATH, type OpReply, type OpRequest } from './protocol.js';

/** One attempt's wait for an answer, ms (a retry is safe, so this can be short). */
export const REQUEST_ATTEMPT_MS_DEFAULT = 5_000;
/** No retry starts after a request has been failing this long, ms. */
export const REQUEST_RETRY_MS_MAX = 60_000;
export const REQUEST_BACKOFF: Readonly<Backoff> = { baseMs: 50, capMs: 2000 };
/** Connections per service address. */
export const CONNECTIONS_MAX = 16;
/** How often an idle client tells the service it is alive (its session is closed after server.ts's CLIENT_IDLE_MS). */
export const CLIENT_PING_MS = 15_000;
const SLICE_ID_BATCH = 100;

export interface ServiceClientOptions {
  /** `ferry://host:port` or `ferrys://host:port` addresses: the first answering one is used. */
  addresses: readonly string[];
  /** The volume token (64 hex). */
  token: string;
  /** The client's region (recorded in its session on the service). */
  region?: string | undefined;
  /** CA certificate(s) for ferrys:// (PEM); default FERRY_TLS_CA's file, else the system's. */
  ca?: string | Buffer | undefined;
  attemptMs?: number | undefined;
  retryMsMax?: number | undefined;
  backoff?: Backoff | undefined;
  /** Ping period, ms; 0: none (tests). Default CLIENT_PING_MS. */
  pingMs?: number | undefined;
}

export interface ServiceClientStats {
  requests: number;
  retries: number;
  failures: number;
}

/** A request that got no answer within the retry window. */
export class ServiceUnavailableError extends FsError {
  constructor(message: string, cause: unknown) {
    super('EIO', message, { cause });
    this.name = 'ServiceUnavailableError';
  }
}

function errorCodeOf(err: unknown): string | undefined {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

/** Whether a failed attempt (no answer) may be sent again. */
function transient(err: unknown): boolean {
  const code = errorCodeOf(err);
  if (code === undefined) return false;
  return code.startsWith('UND_ERR_') || ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED', 'EAI_AGAIN'].includes(code);
}

class Retry {
  readonly why: string;
  constructor(why: string) {
    this.why = why;
  }
}

export class ServiceClient {
  readonly id = randomBytes(12).toString('base64url');
  readonly description: string;
  readonly stats: ServiceClientStats = { requests: 0, retries: 0, failures: 0 };
  private readonly addresses: ServiceAddress[];
  private readonly pools: Pool[];
  private readonly auth: string;
  private readonly region: string | undefined;
  private readonly attemptMs: number;
  private readonly retryMsMax: number;
  private readonly backoff: Backoff;
  private current = 0;
  private nextN = 1;
  /** Numbers of applied requests whose answers arrived: listed in the next mutating request's `drop`. */
  private seen: number[] = [];
  private pinger: NodeJS.Timeout | undefined;
  private readonly pingMs: number;
  private closed = false;

  constructor(o: ServiceClientOptions) {
    if (o.addresses.length === 0) throw new Error('assertion failed: no service address');
    this.addresses = o.addresses.map((a) => {
      const p = parseServiceAddress(a);
      if (p === undefined) throw new FsError('EINVAL', `not a metadata service address: ${JSON.stringify(a)} (expected ferry://HOST:PORT)`);
      return p;
    });
    this.description = this.addresses.map((a) => `${a.tls ? 'ferrys' : 'ferry'}://${a.host}:${a.port}`).join(',');
    const caFile = process.env['FERRY_TLS_CA'];
    const ca = o.ca ?? (caFile !== undefined && caFile !== '' ? readFileSync(caFile) : undefined);
    this.pools = this.addresses.map(
      (a) =>
        new Pool(`${a.tls ? 'https' : 'http'}://${a.host}:${a.port}`, {
          connections: CONNECTIONS_MAX,
          pipelining: 1,
          keepAliveTimeout: 60_000,
          connect: { timeout: 10_000, ...(ca === undefined ? {} : { ca }) },
        }),
    );
    this.auth = `Bearer ${o.token}`;
    this.region = o.region;
    this.attemptMs = o.attemptMs ?? REQUEST_ATTEMPT_MS_DEFAULT;
    this.retryMsMax = o.retryMsMax ?? REQUEST_RETRY_MS_MAX;
    this.backoff = o.backoff ?? REQUEST_BACKOFF;
    this.pingMs = o.pingMs ?? CLIENT_PING_MS;
  }

  /** From the first answer on, a ping now and then keeps this client's session on the service open. */
  private startPings(): void {
    if (this.pinger !== undefined || this.pingMs <= 0 || this.closed) return;
    this.pinger = setInterval(() => {
      this.callOnce('ping').catch(() => undefined);
    }, this.pingMs).unref();
  }

  /** Sends one operation and returns its answer, retrying as the file comment says. */
  async call(op: string, args: unknown[]): Promise<{ r: unknown; seq: number; sid: string | undefined }> {
    if (this.closed) throw new FsError('EIO', 'the metadata service client is closed');
    const spec = OPS[op];
    if (spec === undefined) throw new Error(`assertion failed: unknown operation ${op}`);
    const msg: OpRequest = { op, args, c: this.id };
    if (this.region !== undefined) msg.g = this.region;
    if (spec.mutating) {
      msg.n = this.nextN++;
      if (this.seen.length > 0) msg.drop = this.seen.splice(0, DROP_MAX);
    }
    const body = JSON.stringify(msg);
    const started = Date.now();
    this.stats.requests++;
    for (let attempt = 1; ; attempt++) {
      const at = this.current;
      let outcome: OpReply | Retry;
      try {
        outcome = await this.send(at, body);
      } catch (err) {
        if (!transient(err)) throw err;
        outcome = new Retry(`${errorCodeOf(err)}: ${err instanceof Error ? err.message : String(err)}`);
      }
      if (!(outcome instanceof Retry)) {
        if (!outcome.ok) throw new FsError(isErrnoCode(outcome.code) ? outcome.code : 'EIO', outcome.message);
        if (outcome.a === 1 && msg.n !== undefined) this.seen.push(msg.n);
        this.startPings();
        return { r: outcome.r, seq: outcome.seq, sid: outcome.sid };
      }
      // Another address, if there is one, for the next attempt.
      if (this.current === at) this.current = (at + 1) % this.pools.length;
      const wait = backoffMs(attempt, this.backoff);
      if (Date.now() + wait - started > this.retryMsMax || this.closed) {
        this.stats.failures++;
        const what = spec.mutating ? `; ${op} may or may not have been applied (a later call with the same effect shows which)` : '';
        throw new ServiceUnavailableError(`the metadata service ${this.description} did not answer ${op} for ${Math.round((Date.now() - started) / 1000)} s (${outcome.why})${what}`, outcome);
      }
      this.stats.retries++;
      await sleep(wait);
    }
  }

  private async send(i: number, body: string): Promise<OpReply | Retry> {
    const res = await this.pools[i]!.request({
      method: 'POST',
      path: PROTOCOL_PATH,
      headers: { 'content-type': 'application/json', authorization: this.auth },
      body,
      headersTimeout: this.attemptMs,
      bodyTimeout: this.attemptMs,
    });
    const text = await res.body.text();
    if (res.statusCode === 503) return new Retry(`service busy: ${safeMessage(text)}`);
    if (res.statusCode === 401) throw new FsError('EACCES', `the metadata service ${this.description} refused the volume token (wrong volume, or a stale token: get one with "ferry token META --out FILE")`);
    let reply: OpReply;
    try {
      reply = JSON.parse(text) as OpReply;
    } catch {
      throw new FsError('EIO', `the metadata service answered HTTP ${res.statusCode} with a body that is not JSON`);
    }
    if (reply === null || typeof reply !== 'object' || typeof reply.ok !== 'boolean') throw new FsError('EIO', `the metadata service answered HTTP ${res.statusCode} with a malformed body`);
    return reply;
  }

  /** Tells the service this client is gone (its session closes), then closes the connections. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.pinger !== undefined) clearInterval(this.pinger);
    try {
      // Only a client that reached the service has a session there.
      if (this.pinger !== undefined || this.pingMs <= 0) await this.callOnce('bye');
    } catch {
      // The service closes an idle client's session by itself.
    }
    this.closed = true;
    await Promise.all(this.pools.map((p) => p.close().catch(() => undefined)));
  }

  private async callOnce(op: string): Promise<void> {
    const msg: OpRequest = { op, args: [], c: this.id };
    if (this.region !== undefined) msg.g = this.region;
    await this.send(this.current, JSON.stringify(msg));
  }
}

function safeMessage(text: string): string {
  try {
    const m = (JSON.parse(text) as { message?: unknown }).message;
    return typeof m === 'string' ? m.slice(0, 300) : 'no message';
  } catch {
    return 'no message';
  }
}

/** MetaApi over the metadata service (see the file comment). */
export class RemoteMeta implements MetaApi {
  readonly client: ServiceClient;
  readonly format: FormatRec;
  readonly chunkBytes: number;
  committedSeq = 0;
  private sliceIds: number[] = [];
  private sliceIdFetch: Promise<void> | undefined;
  private readonly opens = new Map<number, number>();
  private readonly lockedInos = new Set<number>();
  private sid: string | undefined;
  private reopening: Promise<void> | undefined;
  /** Releases on their way to the service (see release). */
  private readonly releases = new Set<Promise<void>>();

  private constructor(client: ServiceClient, format: FormatRec) {
    this.client = client;
    this.format = format;
    this.chunkBytes = format.chunkBytes;
  }

  /** Opens a client of the service (the first request checks the token and fetches the format record). */
  static async open(client: ServiceClient): Promise<RemoteMeta> {
    const { r, sid } = await client.call('hello', []);
    const format = (r as { format?: FormatRec } | null)?.format;
    if (format === undefined || typeof format.uuid !== 'string' || !Number.isSafeInteger(format.chunkBytes)) throw new FsError('EIO', 'the metadata service sent no valid format record');
    const m = new RemoteMeta(client, format);
    m.sid = sid;
    return m;
  }

  /**
   * A client that already knows the volume's format record (a mirror client reads it from its replica): no
   * request is made until the first operation, so it opens while the service is unreachable.
   */
  static withFormat(client: ServiceClient, format: FormatRec): RemoteMeta {
    return new RemoteMeta(client, format);
  }

  private async call<T>(op: string, args: unknown[]): Promise<T> {
    const { r, seq, sid } = await this.client.call(op, args);
    if (seq > this.committedSeq) this.committedSeq = seq;
    if (sid !== undefined && sid !== this.sid) this.sessionChanged(sid);
    return r as T;
  }

  /**
   * The service opened a new session for this client (it restarted, or closed this client as idle): the opens
   * this client holds are registered again, so an unlink on the primary keeps those files.
   */
  private sessionChanged(sid: string): void {
    const first = this.sid === undefined;
    this.sid = sid;
    if (first || this.opens.size === 0) return;
    const held = [...this.opens];
    this.reopening = (this.reopening ?? Promise.resolve()).then(async () => {
      for (const [ino, count] of held) await this.client.call('reopen', [ino, count]).catch(() => undefined);
    });
  }

  getattr(ino: number): Promise<Attr> {
    return this.call('getattr', [ino]);
  }
  getattrCached(ino: number): Promise<Attr> {
    return this.call('getattrCached', [ino]);
  }
  async access(ctx: Ctx, ino: number, mask: number): Promise<void> {
    await this.call('access', [ctx, ino, mask]);
  }
  setattr(ctx: Ctx, ino: number, set: SetAttr): Promise<Attr> {
    return this.call('setattr', [ctx, ino, set]);
  }
  lookup(ctx: Ctx, parent: number, name: string): Promise<Attr> {
    return this.call('lookup', [ctx, parent, name]);
  }
  readdir(ctx: Ctx, ino: number, opts: { after?: string; limit?: number; plus?: boolean } = {}): Promise<DirEntry[]> {
    return this.call('readdir', [ctx, ino, opts]);
  }
  readlink(ino: number): Promise<string> {
    return this.call('readlink', [ino]);
  }
  statfs(): Promise<StatFs> {
    return this.call('statfs', []);
  }
  mknod(ctx: Ctx, parent: number, name: string, type: FileType, mode: number, opts: { rdev?: number; target?: string; exclusive?: boolean } = {}): Promise<Attr> {
    return this.call('mknod', [ctx, parent, name, type, mode, opts]);
  }
  mkdir(ctx: Ctx, parent: number, name: string, mode: number): Promise<Attr> {
    return this.call('mkdir', [ctx, parent, name, mode]);
  }
  create(ctx: Ctx, parent: number, name: string, mode: number): Promise<Attr> {
    return this.call('create', [ctx, parent, name, mode]);
  }
  symlink(ctx: Ctx, parent: number, name: string, target: string): Promise<Attr> {
    return this.call('symlink', [ctx, parent, name, target]);
  }
  link(ctx: Ctx, ino: number, parent: number, name: string): Promise<Attr> {
    return this.call('link', [ctx, ino, parent, name]);
  }
  async unlink(ctx: Ctx, parent: number, name: string): Promise<void> {
    await this.call('unlink', [ctx, parent, name]);
  }
  async rmdir(ctx: Ctx, parent: number, name: string): Promise<void> {
    await this.call('rmdir', [ctx, parent, name]);
  }
  async rename(ctx: Ctx, srcParent: number, srcName: string, dstParent: number, dstName: string, flags = 0): Promise<void> {
    await this.call('rename', [ctx, srcParent, srcName, dstParent, dstName, flags]);
  }
  async open(ctx: Ctx, ino: number, mask: number, created?: Attr): Promise<Attr> {
    const a = await this.call<Attr>('open', [ctx, ino, mask, created ?? null]);
    this.opens.set(ino, (this.opens.get(ino) ?? 0) + 1);
    return a;
  }
  /**
   * Sent in the background: close(2) does not wait for a round trip. Until the service has it, the file
   * merely counts as open a little longer (an unlink meanwhile keeps it until the release arrives, then it
   * goes); a release that never arrives is undone when this client's session on the service closes.
   */
  release(ino: number): Promise<void> {
    const n = this.opens.get(ino) ?? 0;
    if (n <= 1) this.opens.delete(ino);
    else this.opens.set(ino, n - 1);
    const p: Promise<void> = this.call('release', [ino])
      .then(() => undefined)
      .catch((err: unknown) => process.emitWarning(`ferry: releasing inode ${ino} on the metadata service failed (its session's end releases it): ${err instanceof Error ? err.message : String(err)}`))
      .finally(() => this.releases.delete(p));
    this.releases.add(p);
    return Promise.resolve();
  }
  async newSliceId(): Promise<number> {
    while (this.sliceIds.length === 0) {
      this.sliceIdFetch ??= this.call<number[]>('sliceIds', [SLICE_ID_BATCH])
        .then((ids) => {
          if (!Array.isArray(ids) || !ids.every((x) => Number.isSafeInteger(x) && x > 0)) throw new FsError('EIO', 'the metadata service sent bad slice ids');
          this.sliceIds.push(...ids);
        })
        .finally(() => {
          this.sliceIdFetch = undefined;
        });
      await this.sliceIdFetch;
    }
    return this.sliceIds.shift()!;
  }
  readChunk(ino: number, index: number): Promise<SliceRef[]> {
    return this.call('readChunk', [ino, index]);
  }

  readChunks(ino: number): Promise<Array<[number, SliceRef[]]>> {
    return this.call('readChunks', [ino]);
  }
  write(ino: number, writes: ReadonlyArray<{ index: number; ref: SliceRef }>, mtime?: number, appendAt?: number): Promise<WriteResult> {
    return this.call('write', [ino, writes, mtime ?? null, appendAt ?? null]);
  }
  truncate(ino: number, length: number): Promise<Attr> {
    return this.call('truncate', [ino, length]);
  }
  fallocate(ino: number, mode: number, offset: number, length: number): Promise<Attr> {
    return this.call('fallocate', [ino, mode, offset, length]);
  }
  copyFileRange(inIno: number, inOff: number, outIno: number, outOff: number, size: number): Promise<number> {
    return this.call('copyFileRange', [inIno, inOff, outIno, outOff, size]);
  }
  replaceSlices(ino: number, index: number, old: readonly SliceRef[], ref: SliceRef): Promise<boolean> {
    return this.call('replaceSlices', [ino, index, old, ref]);
  }
  async abandonSlice(id: number, size: number): Promise<void> {
    await this.call('abandonSlice', [id, size]);
  }
  async getSlices(ids: readonly number[]): Promise<Map<number, SliceRefRec | undefined>> {
    const pairs = await this.call<Array<[number, SliceRefRec | null]>>('getSlices', [ids]);
    return new Map(pairs.map(([k, v]) => [k, v ?? undefined]));
  }
  async setxattr(ctx: Ctx, ino: number, name: string, value: Buffer, flags = 0): Promise<void> {
    await this.call('setxattr', [ctx, ino, name, value.toString('base64'), flags]);
  }
  async getxattr(ctx: Ctx, ino: number, name: string): Promise<Buffer> {
    return Buffer.from(await this.call<string>('getxattr', [ctx, ino, name]), 'base64');
  }
  listxattr(ctx: Ctx, ino: number): Promise<string[]> {
    return this.call('listxattr', [ctx, ino]);
  }
  async removexattr(ctx: Ctx, ino: number, name: string): Promise<void> {
    await this.call('removexattr', [ctx, ino, name]);
  }
  async getlk(ino: number, owner: string, type: LockType, start: number, end?: number): Promise<LockConflict | undefined> {
    return (await this.call<LockConflict | null>('getlk', [ino, owner, type, start, end ?? null])) ?? undefined;
  }
  async setlk(ino: number, owner: string, type: LockType | 'u', start: number, end?: number, pid = 0): Promise<LockConflict | undefined> {
    if (type !== 'u') this.lockedInos.add(ino);
    return (await this.call<LockConflict | null>('setlk', [ino, owner, type, start, end ?? null, pid])) ?? undefined;
  }
  flock(ino: number, owner: string, type: 'sh' | 'ex' | 'un', pid = 0): Promise<boolean> {
    if (type !== 'un') this.lockedInos.add(ino);
    return this.call('flock', [ino, owner, type, pid]);
  }
  mayHoldLocks(ino: number): boolean {
    return this.lockedInos.has(ino);
  }
  async close(): Promise<void> {
    await Promise.all([...this.releases]);
    await this.reopening?.catch(() => undefined);
    await this.client.close();
  }
}
