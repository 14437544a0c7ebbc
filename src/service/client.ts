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
 * Caches. RemoteMeta keeps names and attributes in a LookupCache (meta/lookupcache.ts), as a Meta in its
 * place would, with the same consistency: every answer to a mutating request carries the effects of its
 * transactions (`fx`), which the cache takes before the call returns, so this client sees its own changes at
 * once; other clients' changes are seen within the cache's timeout (`lookupCacheMs`, like the kernel's entry
 * and attribute timeouts). A mutating request that got no answer may or may not have been applied: the cache
 * forgets everything. The service keeps no cache for its remote clients (their own caches would add to it).
 * It also keeps slice ids (fetched SLICE_ID_BATCH at a time, the next batch asked for while a quarter is left;
 * unused ones are simply never used), the inodes it holds open and the locks it holds (heldlocks.ts): a
 * service that lost this client's session (a restart; every answer, pings included, names the session) gets
 * both again, the locks waiting out a killed service's old session.
 *
 * Fused requests: open(2) with O_CREAT is one request (openCreate: lookup, create and open next to the
 * engine), and lookup answers the directory's attributes beside the entry's, so that a path walk through
 * the cache needs no separate getattr.
 *
 * Riding along (protocol.ts level 3): close(2) waits for no request. Its release is queued and sent with the
 * next request, whatever it is, or by a `releases` request of its own RELEASE_LINGER_MS later; a volume's
 * close ends the session (`bye`), which releases whatever is still open or queued. Each release has an id,
 * so a retried or repeated request releases once; one whose request got no answer is queued again (its id
 * kept), unless the session changed meanwhile (the new session never had that open). Likewise a name the
 * cache answers in its second half-life is revalidated by the next request (`rv`), so a path in use stays
 * cached without a lookup of its own and is never older than the cache's timeout.
 *
 *   close(2) ──▶ queue [id, ino] ──┬─ next request carries it (rl) ──▶ answered: done (no rla: old service,
 *                                  │                                 │           sent as `release` requests)
 *                                  │                                 └─ no answer: queued again (same id)
 *                                  └─ RELEASE_LINGER_MS: a `releases` request carries it
 */

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Pool } from 'undici';
import { FsError } from '../errors.js';
import type { MetaApi, OpenCreateResult, WriteResult } from '../meta/api.js';
import { LookupCache, type CacheEffects } from '../meta/lookupcache.js';
import { Meta } from '../meta/meta.js';
import type { LockConflict, LockType } from '../meta/locks.js';
import { parseServiceAddress, type ServiceAddress } from '../meta/service.js';
import type { SliceRef } from '../meta/slices.js';
import { X_OK, type Attr, type Ctx, type DirEntry, type FileType, type FormatRec, type SetAttr, type SliceRefRec, type StatFs } from '../meta/types.js';
import { backoffMs, sleep, type Backoff } from '../util/sleep.js';
import { HeldLocks } from './heldlocks.js';
import {
  decodeEffects,
  decodeRevalidated,
  DROP_MAX,
  isErrnoCode,
  OPS,
  PROTOCOL_LEVEL,
  PROTOCOL_LEVEL_MIN,
  PROTOCOL_PATH,
  RELEASES_PER_REQUEST_MAX,
  REVALIDATE_PER_REQUEST_MAX,
  type OpReply,
  type OpRequest,
  type Revalidated,
  type RideAlongReleases,
} from './protocol.js';

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
/** The next batch of slice ids is asked for while this many are left. */
const SLICE_ID_LOW = SLICE_ID_BATCH / 4;
/** Default of RemoteMetaOptions.lookupCacheMs (Meta's default too). */
export const LOOKUP_CACHE_MS_DEFAULT = 1000;
/**
 * A queued release waits this long for a request to ride along with before it is sent on its own, ms: long
 * enough for the next operation of a busy client, short enough that an unlinked file's last close frees its
 * data soon. The timer holds the process open, so a script that ends without closing its volume still sends it.
 */
export const RELEASE_LINGER_MS = 100;

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
  /** Requests by operation (what a front-end operation cost in requests: see bench/service.ts). */
  byOp: Record<string, number>;
  /** Releases sent riding along in requests (`rl`; counted again when a request is sent again). */
  releasesCarried: number;
  /** Names sent for revalidation (`rv`). */
  revalidations: number;
}

/** What rides along in one request (protocol.ts). */
export interface RideAlong {
  rl?: RideAlongReleases | undefined;
  rv?: Array<[number, string]> | undefined;
}

/** One answer of the service (ServiceClient.call). */
export interface ServiceAnswer {
  r: unknown;
  seq: number;
  sid: string | undefined;
  /** The effects of a mutating operation's transactions, for the client's lookup cache. */
  fx: CacheEffects | undefined;
  /** The service took the releases that rode along (`rla`). */
  rla: boolean;
  /** Answers to `rv`, when asked and well formed. */
  rv: Revalidated | undefined;
}

/** A POSIX answer of the service (final), with the effects of the failed operation's transactions. */
export class ServiceAnswerError extends FsError {
  readonly fx: CacheEffects | undefined;
  /** The service took the releases that rode along (`rla`). */
  readonly rla: boolean;
  constructor(code: ConstructorParameters<typeof FsError>[0], message: string, fx: CacheEffects | undefined, rla = false) {
    super(code, message);
    this.name = 'ServiceAnswerError';
    this.fx = fx;
    this.rla = rla;
  }
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

/** Certificate checks a TLS client failed: the service's certificate is not trusted here (final). */
const TLS_TRUST_CODES: ReadonlySet<string> = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** A connection failure that no retry mends (a TLS mismatch), as the error to give; undefined otherwise. */
function connectionProblem(err: unknown, description: string, tls: boolean): FsError | undefined {
  const code = errorCodeOf(err);
  if (code === undefined) return undefined;
  const what = err instanceof Error ? err.message : String(err);
  if (TLS_TRUST_CODES.has(code)) {
    return new FsError('EIO', `the metadata service ${description} presented a certificate this client does not trust (${code}: ${what}): give the CA certificate that signed it with FERRY_TLS_CA=FILE`, { cause: err });
  }
  if (tls && (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG' || /wrong version number|packet length too long/.test(what))) {
    return new FsError('EIO', `the metadata service ${description} does not speak TLS: address it as ferry://HOST:PORT`, { cause: err });
  }
  return undefined;
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
  readonly stats: ServiceClientStats = { requests: 0, retries: 0, failures: 0, byOp: {}, releasesCarried: 0, revalidations: 0 };
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
  /** Told the session id of every answer that names one (pings too): RemoteMeta notices a lost session. */
  onSession: ((sid: string) => void) | undefined;

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

  /**
   * Sends one operation, with what rides along (RemoteMeta's queues), and returns its answer, retrying as the
   * file comment says (every attempt carries the same body).
   */
  async call(op: string, args: unknown[], ride: RideAlong = {}): Promise<ServiceAnswer> {
    if (this.closed) throw new FsError('EIO', 'the metadata service client is closed');
    const spec = OPS[op];
    if (spec === undefined) throw new Error(`assertion failed: unknown operation ${op}`);
    const msg: OpRequest = { op, args, c: this.id };
    if (this.region !== undefined) msg.g = this.region;
    if (spec.mutating) {
      msg.n = this.nextN++;
      if (this.seen.length > 0) msg.drop = this.seen.splice(0, DROP_MAX);
    }
    if (ride.rl !== undefined) {
      if (ride.rl.r.length > RELEASES_PER_REQUEST_MAX) throw new Error('assertion failed: too many releases in one request');
      msg.rl = ride.rl;
      this.stats.releasesCarried += ride.rl.r.length;
    }
    if (ride.rv !== undefined && ride.rv.length > 0) {
      if (ride.rv.length > REVALIDATE_PER_REQUEST_MAX) throw new Error('assertion failed: too many names to revalidate in one request');
      msg.rv = ride.rv;
      this.stats.revalidations += ride.rv.length;
    }
    const body = JSON.stringify(msg);
    const started = Date.now();
    this.stats.requests++;
    this.stats.byOp[op] = (this.stats.byOp[op] ?? 0) + 1;
    for (let attempt = 1; ; attempt++) {
      const at = this.current;
      let outcome: OpReply | Retry;
      try {
        outcome = await this.send(at, body);
      } catch (err) {
        const problem = connectionProblem(err, this.description, this.addresses[at]!.tls);
        if (problem !== undefined) throw problem;
        if (!transient(err)) throw err;
        outcome = new Retry(`${errorCodeOf(err)}: ${err instanceof Error ? err.message : String(err)}`);
      }
      if (!(outcome instanceof Retry)) {
        if (!outcome.ok) throw new ServiceAnswerError(isErrnoCode(outcome.code) ? outcome.code : 'EIO', outcome.message, decodeEffects(outcome.fx), outcome.rla === 1);
        if (outcome.a === 1 && msg.n !== undefined) this.seen.push(msg.n);
        if (outcome.sid !== undefined) this.onSession?.(outcome.sid);
        this.startPings();
        const rv = msg.rv === undefined ? undefined : decodeRevalidated(outcome.rv, msg.rv.length);
        return { r: outcome.r, seq: outcome.seq, sid: outcome.sid, fx: decodeEffects(outcome.fx), rla: outcome.rla === 1, rv };
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
    if (res.statusCode === 400 && !reply.ok && /^unknown operation|^\w+: expected \d+\.\.\d+ arguments/.test(reply.message)) {
      throw new FsError('ENOSYS', `the metadata service ${this.description} is older than this client (${safeMessage(text)}): upgrade "ferry serve" first`);
    }
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
    const reply = await this.send(this.current, JSON.stringify(msg));
    if (!(reply instanceof Retry) && reply.ok && reply.sid !== undefined) this.onSession?.(reply.sid);
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

export interface RemoteMetaOptions {
  /** How long names and attributes may be reused, ms; 0 disables (default LOOKUP_CACHE_MS_DEFAULT). */
  lookupCacheMs?: number | undefined;
  /** Clock, for tests. */
  now?: (() => number) | undefined;
}

/** MetaApi over the metadata service (see the file comment). */
export class RemoteMeta implements MetaApi {
  readonly client: ServiceClient;
  readonly format: FormatRec;
  readonly chunkBytes: number;
  committedSeq = 0;
  private readonly cache: LookupCache;
  private readonly now: () => number;
  private sliceIds: number[] = [];
  private sliceIdFetch: Promise<void> | undefined;
  private readonly opens = new Map<number, number>();
  private readonly lockedInos = new Set<number>();
  /** Locks this client holds, taken again on a new session (heldlocks.ts). */
  private readonly locks = new HeldLocks();
  private closing = false;
  private sid: string | undefined;
  private reopening: Promise<void> | undefined;
  /** Releases sent as requests of their own (a flush of the queue, or a service without `rl`). */
  private readonly releases = new Set<Promise<void>>();
  /** Releases waiting for a request to ride along with: [release id, inode] (see the file comment). */
  private releaseQueue: Array<[number, number]> = [];
  /** Ids of releases sent and not answered yet. */
  private readonly releasesInFlight = new Set<number>();
  private nextReleaseId = 1;
  private releaseTimer: NodeJS.Timeout | undefined;
  /** The service answered a request with releases without taking them (older than level 3). */
  private releasesUnsupported = false;
  /** Re-registrations of open files on a new session still running (releases wait for them). */
  private reopensPending = 0;
  /** Names to revalidate with the next request: "parent/name" -> [parent, name]. */
  private readonly revalidateQueue = new Map<string, [number, string]>();

  private constructor(client: ServiceClient, format: FormatRec, options: RemoteMetaOptions, sid: string | undefined) {
    this.client = client;
    this.sid = sid;
    client.onSession = (s) => {
      if (s !== this.sid) this.sessionChanged(s);
    };
    this.format = format;
    this.chunkBytes = format.chunkBytes;
    this.cache = new LookupCache(options.lookupCacheMs ?? LOOKUP_CACHE_MS_DEFAULT);
    this.now = options.now ?? Date.now;
  }

  /** Opens a client of the service (the first request checks the token and fetches the format record). */
  static async open(client: ServiceClient, options: RemoteMetaOptions = {}): Promise<RemoteMeta> {
    const { r, sid } = await client.call('hello', []);
    const hello = r as { format?: FormatRec; proto?: unknown } | null;
    const format = hello?.format;
    if (format === undefined || typeof format.uuid !== 'string' || !Number.isSafeInteger(format.chunkBytes)) throw new FsError('EIO', 'the metadata service sent no valid format record');
    const level = typeof hello?.proto === 'number' ? hello.proto : 1;
    if (level < PROTOCOL_LEVEL_MIN) throw new FsError('ENOSYS', `the metadata service ${client.description} speaks protocol level ${level}, this client needs ${PROTOCOL_LEVEL_MIN}: upgrade "ferry serve" first`);
    const meta = new RemoteMeta(client, format, options, sid);
    // Releases ride along from level 3 on (one that did not would be seen at the first answer anyway).
    if (level < PROTOCOL_LEVEL) meta.releasesUnsupported = true;
    return meta;
  }

  /**
   * A client that already knows the volume's format record (a mirror client reads it from its replica): no
   * request is made until the first operation, so it opens while the service is unreachable.
   */
  static withFormat(client: ServiceClient, format: FormatRec, options: RemoteMetaOptions = {}): RemoteMeta {
    return new RemoteMeta(client, format, options, undefined);
  }

  /**
   * One request. The lookup cache takes the answer's effects (a POSIX error's too); a mutating request
   * without an answer may have been applied or not, so the cache forgets everything. `stored`: attributes
   * (and a name) the answer shows, kept when nothing was invalidated meanwhile but the answer's own effects.
   */
  private async call<T>(op: string, args: unknown[], stored?: (r: T) => { attrs: Attr[]; entry?: [number, string, number] }): Promise<T> {
    const gen = this.cache.generation;
    const rl = this.takeReleases();
    const rv = this.takeRevalidations();
    let answer: ServiceAnswer;
    try {
      answer = await this.client.call(op, args, { rl, rv });
    } catch (err) {
      if (err instanceof ServiceAnswerError) {
        this.releasesAnswered(rl, err.rla);
        if (err.fx !== undefined) this.cache.apply(err.fx, gen, this.now(), false);
      } else {
        this.releasesUnanswered(rl, err);
        if (OPS[op]?.mutating === true || rl !== undefined) this.cache.clear();
      }
      throw err;
    }
    this.releasesAnswered(rl, answer.rla);
    const { r, seq, fx } = answer;
    if (seq > this.committedSeq) this.committedSeq = seq;
    // Nothing else invalidated during the request: what it answers is the freshest view there is.
    const clean = this.cache.generation === gen;
    if (fx !== undefined) this.cache.apply(fx, gen, this.now(), true);
    if (clean) {
      const now = this.now();
      if (stored !== undefined) {
        const s = stored(r as T);
        this.cache.store(this.cache.generation, now, s.attrs, s.entry);
      }
      // Looked up after the operation: newer than its effects.
      if (rv !== undefined && answer.rv !== undefined) {
        for (let i = 0; i < rv.length; i++) {
          const pair = answer.rv[i];
          if (pair !== null && pair !== undefined) this.cache.store(this.cache.generation, now, [pair[0], pair[1]], [rv[i]![0], rv[i]![1], pair[1].ino]);
        }
      }
    }
    return r as T;
  }

  /** The queued releases for the next request (at most RELEASES_PER_REQUEST_MAX), now in flight. */
  private takeReleases(): RideAlongReleases | undefined {
    if (this.releaseQueue.length === 0 || this.sid === undefined || this.reopensPending > 0) return undefined;
    const r = this.releaseQueue.splice(0, RELEASES_PER_REQUEST_MAX);
    if (this.releaseQueue.length === 0 && this.releaseTimer !== undefined) {
      clearTimeout(this.releaseTimer);
      this.releaseTimer = undefined;
    }
    for (const [id] of r) this.releasesInFlight.add(id);
    return { s: this.sid, f: this.releaseFloor(), r };
  }

  /** Every release id below it has been answered (the service may forget those ids). */
  private releaseFloor(): number {
    let floor = this.nextReleaseId;
    for (const id of this.releasesInFlight) floor = Math.min(floor, id);
    for (const [id] of this.releaseQueue) floor = Math.min(floor, id);
    return floor;
  }

  /** The request that carried `rl` was answered: done, or (a service older than level 3) sent one by one. */
  private releasesAnswered(rl: RideAlongReleases | undefined, taken: boolean): void {
    if (rl === undefined) return;
    for (const [id] of rl.r) this.releasesInFlight.delete(id);
    if (taken) return;
    this.releasesUnsupported = true;
    for (const [, ino] of rl.r) this.sendRelease(ino);
  }

  /**
   * The request that carried `rl` got no answer (or a final refusal): the releases may or may not have been
   * applied. Queued again, ids kept, when the service did not answer and the session is still theirs.
   */
  private releasesUnanswered(rl: RideAlongReleases | undefined, err: unknown): void {
    if (rl === undefined) return;
    for (const [id] of rl.r) this.releasesInFlight.delete(id);
    if (err instanceof FsError && err.code === 'ENOSYS' && !this.releasesUnsupported) {
      // A service older than level 3 refused the `releases` request itself: one request per release.
      this.releasesUnsupported = true;
      for (const [, ino] of rl.r) this.sendRelease(ino);
      return;
    }
    if (!(err instanceof ServiceUnavailableError) || rl.s !== this.sid || this.closing) return; // the session's end releases them
    this.releaseQueue.unshift(...rl.r);
    this.armReleaseTimer();
  }

  private armReleaseTimer(): void {
    if (this.releaseTimer !== undefined || this.closing) return;
    this.releaseTimer = setTimeout(() => {
      this.releaseTimer = undefined;
      if (this.releaseQueue.length === 0 || this.reopensPending > 0) return; // the re-registration arms it again
      // Whatever request runs first carries the queue; this one only makes sure one does.
      this.track(this.call('releases', []).then(() => undefined), 'sending released files');
    }, RELEASE_LINGER_MS);
  }

  /** Background requests, awaited by close(); their failures are warnings (the session's end repairs them). */
  private track(p: Promise<void>, what: string): void {
    const q: Promise<void> = p
      .catch((err: unknown) => process.emitWarning(`ferry: ${what} to the metadata service failed (the end of this client's session there releases the files): ${err instanceof Error ? err.message : String(err)}`))
      .finally(() => this.releases.delete(q));
    this.releases.add(q);
  }

  /** A release as a request of its own (a service older than level 3). */
  private sendRelease(ino: number): void {
    this.track(this.call('release', [ino]).then(() => undefined), `releasing inode ${ino}`);
  }

  /** The names to revalidate with the next request. */
  private takeRevalidations(): Array<[number, string]> | undefined {
    if (this.revalidateQueue.size === 0) return undefined;
    const out = [...this.revalidateQueue.values()];
    this.revalidateQueue.clear();
    return out;
  }

  /**
   * The service opened a new session for this client (it restarted, or closed this client as idle): the opens
   * this client holds are registered again, so an unlink on the primary keeps those files.
   */
  private sessionChanged(sid: string): void {
    const previous = this.sid;
    this.sid = sid;
    // Queued releases drop opens of the lost session; the new one gets only what is still open (below).
    this.releaseQueue = [];
    if (previous === undefined || (this.opens.size === 0 && this.locks.size === 0)) return;
    const held = [...this.opens];
    // The session id is "<service instance>.<engine session>": the old engine session may still hold locks.
    const m = /\.(\d+)$/.exec(previous);
    const previousSid = m === null ? undefined : Number(m[1]);
    // Releases wait until the opens are registered again: one arriving first would drop nothing and leave
    // its file counted open on the new session.
    this.reopensPending++;
    this.reopening = (this.reopening ?? Promise.resolve()).then(async () => {
      try {
        for (const [ino, count] of held) await this.client.call('reopen', [ino, count]).catch(() => undefined);
      } finally {
        this.reopensPending--;
        if (this.releaseQueue.length > 0) this.armReleaseTimer();
      }
      await this.locks
        .reacquire(
          {
            setlk: async (ino, owner, type, start, end, pid) => (await this.call<LockConflict | null>('setlk', [ino, owner, type, start, end, pid])) ?? undefined,
            flock: (ino, owner, type, pid) => this.call<boolean>('flock', [ino, owner, type, pid]),
            sleep,
            now: Date.now,
            stopped: () => this.closing,
            lost: (what) => process.emitWarning(`ferry: lost ${what}`),
          },
          previousSid,
        )
        .catch((err: unknown) => process.emitWarning(`ferry: taking locks again after the metadata service lost this client's session failed: ${err instanceof Error ? err.message : String(err)}`));
    });
  }

  getattr(ino: number): Promise<Attr> {
    return this.call<Attr>('getattr', [ino], (a) => ({ attrs: [a] }));
  }
  async getattrCached(ino: number): Promise<Attr> {
    return this.cache.attr(ino, this.now()) ?? this.getattr(ino);
  }
  async access(ctx: Ctx, ino: number, mask: number): Promise<void> {
    await this.call('access', [ctx, ino, mask]);
  }
  setattr(ctx: Ctx, ino: number, set: SetAttr): Promise<Attr> {
    return this.call('setattr', [ctx, ino, set]);
  }
  async lookup(ctx: Ctx, parent: number, name: string): Promise<Attr> {
    const now = this.now();
    const p = this.cache.attr(parent, now);
    const special = name === '.' || name === '..';
    if (p !== undefined && p.type === 'dir' && !special) {
      Meta.check(ctx, p, X_OK);
      const ino = this.cache.entry(parent, name, now);
      const a = ino === undefined ? undefined : this.cache.attr(ino, now);
      if (a !== undefined) {
        // In its second half-life: the next request brings it again (a path in use never expires).
        if (this.cache.expiresAt(parent, name) - now < this.cache.ttlMs / 2 && this.revalidateQueue.size < REVALIDATE_PER_REQUEST_MAX) {
          this.revalidateQueue.set(`${parent}/${name}`, [parent, name]);
        }
        return a;
      }
    }
    const [, a] = await this.call<[Attr, Attr]>('lookup', [ctx, parent, name, 1], ([pa, ea]) => ({ attrs: [pa, ea], ...(special ? {} : { entry: [parent, name, ea.ino] as [number, string, number] }) }));
    return a;
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
    return this.call<Attr>('mknod', [ctx, parent, name, type, mode, opts], (a) => ({ attrs: [a], entry: [parent, name, a.ino] }));
  }
  mkdir(ctx: Ctx, parent: number, name: string, mode: number): Promise<Attr> {
    return this.call<Attr>('mkdir', [ctx, parent, name, mode], (a) => ({ attrs: [a], entry: [parent, name, a.ino] }));
  }
  create(ctx: Ctx, parent: number, name: string, mode: number): Promise<Attr> {
    return this.call<Attr>('create', [ctx, parent, name, mode], (a) => ({ attrs: [a], entry: [parent, name, a.ino] }));
  }
  symlink(ctx: Ctx, parent: number, name: string, target: string): Promise<Attr> {
    return this.call<Attr>('symlink', [ctx, parent, name, target], (a) => ({ attrs: [a], entry: [parent, name, a.ino] }));
  }
  link(ctx: Ctx, ino: number, parent: number, name: string): Promise<Attr> {
    return this.call<Attr>('link', [ctx, ino, parent, name], (a) => ({ attrs: [a], entry: [parent, name, a.ino] }));
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
    const a = await this.call<Attr>('open', [ctx, ino, mask, created ?? null], (x) => ({ attrs: created === undefined ? [x] : [] }));
    this.opens.set(ino, (this.opens.get(ino) ?? 0) + 1);
    return a;
  }
  /** One request: lookup, create and open next to the engine (MetaApi.openCreate). */
  async openCreate(ctx: Ctx, parent: number, name: string, mode: number, mask: number, exclusive: boolean): Promise<OpenCreateResult> {
    const r = await this.call<OpenCreateResult>('openCreate', [ctx, parent, name, mode, mask, exclusive ? 1 : 0], (x) => ({ attrs: [x.attr], entry: [parent, name, x.attr.ino] }));
    if (r === null || typeof r !== 'object' || typeof r.attr?.ino !== 'number') throw new FsError('EIO', 'the metadata service answered openCreate without attributes');
    if (r.opened) this.opens.set(r.attr.ino, (this.opens.get(r.attr.ino) ?? 0) + 1);
    return r;
  }
  /**
   * Queued, riding along with the next request (see the file comment): close(2) costs no request. Until the
   * service has it, the file merely counts as open a little longer (an unlink meanwhile keeps it until the
   * release arrives, then it goes); a release that never arrives is undone when this client's session on
   * the service closes.
   */
  release(ino: number): Promise<void> {
    const n = this.opens.get(ino) ?? 0;
    if (n <= 1) this.opens.delete(ino);
    else this.opens.set(ino, n - 1);
    if (this.closing) return Promise.resolve(); // bye releases it
    if (this.releasesUnsupported || this.sid === undefined) {
      this.sendRelease(ino);
      return Promise.resolve();
    }
    this.releaseQueue.push([this.nextReleaseId++, ino]);
    this.armReleaseTimer();
    return Promise.resolve();
  }
  async newSliceId(): Promise<number> {
    while (this.sliceIds.length === 0) await this.fetchSliceIds();
    if (this.sliceIds.length <= SLICE_ID_LOW) this.fetchSliceIds().catch(() => undefined); // the next batch, ahead of need
    return this.sliceIds.shift()!;
  }
  private fetchSliceIds(): Promise<void> {
    this.sliceIdFetch ??= this.call<number[]>('sliceIds', [SLICE_ID_BATCH])
      .then((ids) => {
        if (!Array.isArray(ids) || !ids.every((x) => Number.isSafeInteger(x) && x > 0)) throw new FsError('EIO', 'the metadata service sent bad slice ids');
        this.sliceIds.push(...ids);
      })
      .finally(() => {
        this.sliceIdFetch = undefined;
      });
    return this.sliceIdFetch;
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
    const c = (await this.call<LockConflict | null>('setlk', [ino, owner, type, start, end ?? null, pid])) ?? undefined;
    if (c === undefined) this.locks.setlk(ino, owner, type, start, end, pid);
    return c;
  }
  async flock(ino: number, owner: string, type: 'sh' | 'ex' | 'un', pid = 0): Promise<boolean> {
    if (type !== 'un') this.lockedInos.add(ino);
    const ok = await this.call<boolean>('flock', [ino, owner, type, pid]);
    if (ok) this.locks.flock(ino, owner, type, pid);
    return ok;
  }
  mayHoldLocks(ino: number): boolean {
    return this.lockedInos.has(ino);
  }
  /**
   * Waits for what follows a lost session (see sessionChanged): open files registered again, held locks
   * taken again or reported lost.
   */
  async sessionRestored(): Promise<void> {
    await this.reopening;
  }

  /**
   * Sends the queued releases, then ends the session on the service (`bye`), which releases every file this
   * client still holds open.
   */
  async close(): Promise<void> {
    if (this.releaseTimer !== undefined) clearTimeout(this.releaseTimer);
    this.releaseTimer = undefined;
    // bye would release them too, but it is sent once, without retries: the queue goes first, retried.
    if (this.releaseQueue.length > 0 && !this.closing) this.track(this.call('releases', []).then(() => undefined), 'sending released files');
    this.closing = true;
    while (this.releases.size > 0) await Promise.all([...this.releases]);
    await this.reopening?.catch(() => undefined);
    await this.client.close();
    this.releaseQueue = [];
  }
}
