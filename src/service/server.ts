/**
 * The metadata service (`ferry serve`, DESIGN §7): runs next to the primary engine and executes metadata
 * operations for remote clients, one HTTP request per operation (protocol.ts), answering the result and the
 * seq of the commit. A client 50 ms away pays one round trip per operation instead of a transaction's
 * several, never holds an engine lock across the WAN, and needs the volume token instead of engine
 * credentials.
 *
 *   client ──POST /v1/op──▶ auth (token, constant time) ──▶ check args ──▶ client's Meta (own session)
 *                                                                          │ RecordingEngine (recorder.ts)
 *                                                                          ▼
 *                                                               primary engine (one transaction per op,
 *                                                               carrying the request record)
 *
 * Each client gets its own Meta with its own session (region, open files, locks), opened on its first request
 * and closed after CLIENT_IDLE_MS without one (clients ping meanwhile); the engine sees every remote client
 * as a session, as if it ran there.
 *
 * Idempotency. A mutating request carries (client, n). In order:
 *   1. an answer this process gave for it (RECENT_ANSWERS_MAX kept)           ─▶ the same answer
 *   2. the same request running here now (a retry racing the original)        ─▶ wait for it
 *   3. otherwise run it. Its record goes into the operation's own transaction (recorder.ts), so the record
 *      exists iff the operation committed, whatever happens to this process or the reply afterwards; that
 *      transaction first looks for the record, and finding it (an earlier attempt applied the request)
 *      aborts: answered ─▶ that answer; applied ─▶ the answer derived from the state now (the answer was
 *      lost with a restart), or EIO saying it was applied when it cannot be derived. The answer is written
 *      into the record later, riding along in other transactions (recorder.ts).
 * Records are deleted when the client lists them in `drop`, and by a sweep after REQUEST_KEEP_MS.
 *
 * Riding along (protocol.ts, level 3). Releases (`rl`) are applied before the request's operation, outside
 * its scope (no record: a release commits nothing but for an unlinked file's last close), each release id at
 * most once per session, so a retry or a repeat of the request does not release twice; their effects and
 * seq join the answer's. Names to revalidate (`rv`) are looked up after the operation. `bye` needs neither:
 * closing the session releases every file it holds open, queued releases included.
 */

import { randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { Duplex } from 'node:stream';
import { FsError } from '../errors.js';
import { EngineUnavailableError, type Json, type MetaEngine } from '../meta/engine.js';
import { openCreateVia } from '../meta/api.js';
import { Meta } from '../meta/meta.js';
import { CLIENT_ID_RE, readRequest, requestKey, REQUEST_KEEP_MS, sweepRequests, type RequestRec } from '../meta/requests.js';
import type { Attr, Ctx, FileType, SetAttr } from '../meta/types.js';
import type { SliceRef } from '../meta/slices.js';
import type { LockType } from '../meta/locks.js';
import type { ServiceMetrics } from '../obs/metrics.js';
import { GroupCommitEngine } from './group.js';
import { AlreadyAppliedError, RecordingEngine, requestScope, type RequestScope } from './recorder.js';
import {
  addEffects,
  allEffects,
  checkReleases,
  checkRevalidate,
  decodeArgs,
  DROP_MAX,
  OPS,
  PROTOCOL_LEVEL,
  PROTOCOL_PATH,
  REQUEST_BYTES_MAX,
  SLICE_IDS_MAX,
  type OpReply,
  type OpRequest,
  type Revalidated,
  type RideAlongReleases,
  type WireEffects,
} from './protocol.js';
import { tokenMatches } from './token.js';

/** A client's Meta is closed after this long without a request (clients ping every CLIENT_PING_MS). */
export const CLIENT_IDLE_MS = 60_000;
/** Clients served at once (each holds a session). */
export const CLIENTS_MAX = 10_000;
/** Answers kept in memory for retries (beside the engine's records). */
const RECENT_ANSWERS_MAX = 20_000;
/** How often old request records are swept. */
const SWEEP_MS = 60_000;
/**
 * Release ids one session remembers as applied, at most (above the client's floor; a client has only the
 * releases of its requests in flight there, far fewer). Past it the oldest are forgotten.
 */
const RELEASE_IDS_KEPT_MAX = 100_000;
/** Who revalidates names (`rv`): the client checks search permission on its cached directory at each use. */
const ROOT_CTX: Ctx = { uid: 0, gid: 0, gids: [] };

export interface MetaServiceOptions {
  /** The primary's engine (the caller's; wrap it in RetryEngine). Not closed by the service. */
  engine: MetaEngine;
  /** The volume token's bytes (token.ts). */
  token: Buffer;
  host: string;
  /** 0: any free port. */
  port: number;
  tls?: { cert: Buffer; key: Buffer } | undefined;
  /** Default CLIENT_IDLE_MS. */
  clientIdleMs?: number | undefined;
  /** Session heartbeat of each client's Meta, ms (Meta's default otherwise; 0 in tests). */
  heartbeatMs?: number | undefined;
  /** Concurrent writers share engine transactions (group.ts); default true. */
  groupCommit?: boolean | undefined;
  /** Background failures (answer recording, sweeps, idle closes). */
  onError?: ((what: string, err: unknown) => void) | undefined;
  /** The families each request feeds (made at the composition root, `ferry serve --metrics`). */
  metrics?: ServiceMetrics | undefined;
}

export interface MetaServiceStats {
  requests: number;
  refused: number;
  clients: number;
  /** Retries answered from memory, the engine's record, or by joining the running original. */
  deduplicated: number;
  recorded: number;
  multiCommits: number;
  /** Answers written into request records, and transactions of their own that wrote some. */
  answers: number;
  answerCommits: number;
  /** Writing engine transactions, and the operations' transactions they carried (group.ts). */
  transactions: number;
  grouped: number;
  largestGroup: number;
}

interface Client {
  id: string;
  meta: Meta;
  last: number;
  /** Release ids applied in this session, at or above `releaseFloor` (see takeReleases). */
  released: Set<number>;
  /** Every release id below it is applied (the client saw the answers). */
  releaseFloor: number;
}

type Reply = { status: number; body: OpReply };

export class MetaService {
  readonly host: string;
  /** The port it listens on (the one the OS chose for port 0). */
  port: number;
  readonly tls: boolean;
  private readonly server: http.Server;
  /** What listens: the server itself, or (TLS) the first-byte sniffer in front of it. */
  private readonly listener: net.Server;
  private readonly rawSockets = new Set<net.Socket>();
  private readonly engine: RecordingEngine;
  private readonly group: GroupCommitEngine | undefined;
  private readonly raw: MetaEngine;
  private readonly token: Buffer;
  private readonly clients = new Map<string, Promise<Client>>();
  private readonly inflight = new Map<string, Promise<Reply>>();
  private readonly recent = new Map<string, Reply>();
  private readonly instance = randomBytes(4).toString('hex');
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly idleMs: number;
  private readonly heartbeatMs: number | undefined;
  private readonly onError: (what: string, err: unknown) => void;
  private readonly metrics: ServiceMetrics | undefined;
  private counters = { requests: 0, refused: 0, deduplicated: 0 };
  private closing: Promise<void> | undefined;

  private constructor(o: MetaServiceOptions, server: http.Server, listener: net.Server) {
    this.listener = listener;
    this.raw = o.engine;
    this.token = o.token;
    this.server = server;
    this.host = o.host;
    this.port = o.port;
    this.tls = o.tls !== undefined;
    this.idleMs = o.clientIdleMs ?? CLIENT_IDLE_MS;
    this.heartbeatMs = o.heartbeatMs;
    this.metrics = o.metrics;
    this.onError = o.onError ?? ((what, err) => process.emitWarning(`ferry serve: ${what} failed: ${err instanceof Error ? err.message : String(err)}`));
    this.group = o.groupCommit === false ? undefined : new GroupCommitEngine(o.engine);
    this.engine = new RecordingEngine(this.group ?? o.engine, this.onError);
  }

  static async start(o: MetaServiceOptions): Promise<MetaService> {
    if (o.token.length !== 32) throw new Error('assertion failed: service token must be 32 bytes');
    const server = o.tls === undefined ? http.createServer({ keepAliveTimeout: 65_000 }) : https.createServer({ cert: o.tls.cert, key: o.tls.key, keepAliveTimeout: 65_000 });
    server.headersTimeout = 30_000;
    server.requestTimeout = 120_000;
    // With TLS, a plain listener looks at each connection's first byte: a TLS handshake goes to the HTTPS
    // server, anything else (a ferry:// client at a ferrys:// service) gets a plain answer saying so.
    const listener = o.tls === undefined ? server : net.createServer((socket) => sniffTls(socket, server));
    const s = new MetaService(o, server, listener);
    if (listener !== server) {
      // Connections still being sniffed are the listener's alone: closed with the service.
      listener.on('connection', (sock: net.Socket) => {
        s.rawSockets.add(sock);
        sock.once('close', () => s.rawSockets.delete(sock));
      });
    }
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      s.handle(req, res).catch((err: unknown) => {
        s.onError('answering a request', err);
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ok: false, code: 'EIO', message: 'internal error in the metadata service' }));
      });
    });
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(o.port, o.host, () => {
        listener.off('error', reject);
        resolve();
      });
    });
    s.port = (listener.address() as AddressInfo).port;
    s.timers.push(setInterval(() => s.closeIdle(), Math.max(1000, Math.floor(s.idleMs / 4))).unref());
    s.timers.push(
      setInterval(() => {
        sweepRequests(s.raw, Date.now() - REQUEST_KEEP_MS).catch((err: unknown) => s.onError('sweeping old request records', err));
      }, SWEEP_MS).unref(),
    );
    return s;
  }

  get stats(): MetaServiceStats {
    const r = this.engine.stats;
    const g = this.group?.stats;
    return {
      ...this.counters,
      clients: this.clients.size,
      recorded: r.recorded,
      multiCommits: r.multiCommits,
      answers: r.answers,
      answerCommits: r.answerCommits,
      transactions: g?.transactions ?? 0,
      grouped: g?.members ?? 0,
      largestGroup: g?.largest ?? 0,
    };
  }

  /** Stops listening, records pending answers, closes every client's session. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const t of this.timers) clearInterval(t);
      await new Promise<void>((resolve) => {
        this.listener.close(() => resolve());
        this.server.closeAllConnections();
        for (const sock of this.rawSockets) sock.destroy();
      });
      while (this.inflight.size > 0) await Promise.allSettled([...this.inflight.values()]);
      await this.engine.flushAnswers().catch((err: unknown) => this.onError('recording answers of applied requests', err));
      for (const p of this.clients.values()) {
        const c = await p.catch(() => undefined);
        await c?.meta.close().catch((err: unknown) => this.onError('closing a client session', err));
      }
      this.clients.clear();
    })();
    return this.closing;
  }

  // ---------------------------------------------------------------- HTTP

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const arrived = performance.now();
    const send = (r: Reply): void => {
      const body = JSON.stringify(r.body);
      res.writeHead(r.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    const fail = (status: number, code: string, message: string): void => {
      this.metrics?.refused.inc({ reason: status === 401 ? 'token' : 'malformed' });
      send({ status, body: { ok: false, code, message } });
    };
    if (req.method !== 'POST' || req.url !== PROTOCOL_PATH) {
      req.resume();
      fail(404, 'EINVAL', 'not a metadata service request');
      return;
    }
    if (!tokenMatches(req.headers.authorization, this.token)) {
      this.counters.refused++;
      req.resume();
      fail(401, 'EAUTH', 'the metadata service refused the request: missing or wrong volume token');
      return;
    }
    const raw = await readBody(req, REQUEST_BYTES_MAX);
    if (raw === undefined) {
      fail(413, 'EINVAL', `request larger than ${REQUEST_BYTES_MAX} bytes`);
      return;
    }
    let msg: OpRequest;
    try {
      msg = JSON.parse(raw.toString('utf8')) as OpRequest;
    } catch {
      fail(400, 'EINVAL', 'request body is not JSON');
      return;
    }
    const bad = checkRequest(msg);
    if (bad !== undefined) {
      fail(400, 'EINVAL', bad);
      return;
    }
    const spec = OPS[msg.op]!;
    const args = decodeArgs(spec, msg.args);
    if (typeof args === 'string') {
      fail(400, 'EINVAL', `${msg.op}: ${args}`);
      return;
    }
    const rl = checkReleases(msg.rl);
    if (typeof rl === 'string') {
      fail(400, 'EINVAL', rl);
      return;
    }
    const rv = checkRevalidate(msg.rv);
    if (typeof rv === 'string') {
      fail(400, 'EINVAL', rv);
      return;
    }
    this.counters.requests++;
    const m = this.metrics;
    if (m === undefined) {
      send(await this.dispatch(msg, args, rl, rv));
      return;
    }
    // From arrival to the answer written; a dispatch that throws is answered EIO by the caller of handle().
    const op = { op: msg.op };
    let reply: Reply | undefined;
    m.inFlight.inc();
    try {
      reply = await this.dispatch(msg, args, rl, rv);
      send(reply);
    } finally {
      m.inFlight.dec();
      m.requests.inc(op);
      m.requestSeconds.observe(op, (performance.now() - arrived) / 1000);
      const code = reply === undefined ? 'EIO' : reply.body.ok ? undefined : reply.body.code;
      if (code !== undefined) m.errors.inc({ op: msg.op, code });
    }
  }

  // ---------------------------------------------------------------- requests

  private async dispatch(msg: OpRequest, args: unknown[], rl: RideAlongReleases | undefined, rv: Array<[number, string]> | undefined): Promise<Reply> {
    if (this.closing !== undefined) return retryLater('the metadata service is shutting down');
    if (msg.op === 'bye') {
      // The client is going either way; a session that cannot be closed now is cleaned as stale later.
      await this.dropClient(msg.c).catch((err: unknown) => this.onError(`closing the session of client ${msg.c}`, err));
      return { status: 200, body: { ok: true, r: null, seq: 0 } };
    }
    let client: Client;
    try {
      client = await this.client(msg.c, msg.g ?? '');
    } catch (err) {
      return errorReply(err);
    }
    client.last = Date.now();
    const released = rl === undefined ? undefined : await this.takeReleases(client, rl);
    const reply = await this.run(client, msg, args);
    if (reply.status !== 200) return reply; // retried with the same releases: their ids are known now
    let body: OpReply = reply.body;
    if (released !== undefined) {
      // A new object: `reply` may be a remembered answer, shared with repeats of the request.
      const fx = released.fx === undefined ? body.fx : body.fx === undefined ? released.fx : addEffects(released.fx, body.fx, true);
      body = body.ok ? { ...body, seq: Math.max(body.seq, released.seq), rla: 1 } : { ...body, rla: 1 };
      if (fx !== undefined) body.fx = fx;
    }
    if (rv !== undefined && body.ok) body = { ...body, rv: await this.revalidate(client, rv) };
    return body === reply.body ? reply : { status: reply.status, body };
  }

  /**
   * Applies the releases that ride along in a request (protocol.ts `rl`): each id once per session, none
   * from another session (see the file comment). A failed release is reported, not the request's failure:
   * its file stays counted open until the session ends, as a lost release request would leave it.
   */
  private async takeReleases(client: Client, rl: RideAlongReleases): Promise<{ fx: WireEffects | undefined; seq: number }> {
    if (rl.f > client.releaseFloor) {
      client.releaseFloor = rl.f;
      for (const id of client.released) if (id < rl.f) client.released.delete(id);
    }
    if (rl.s !== this.sid(client)) return { fx: undefined, seq: 0 };
    const todo: number[] = [];
    for (const [id, ino] of rl.r) {
      if (id < client.releaseFloor || client.released.has(id)) continue;
      client.released.add(id);
      todo.push(ino);
    }
    for (const id of client.released) {
      if (client.released.size <= RELEASE_IDS_KEPT_MAX) break;
      client.released.delete(id);
    }
    if (todo.length === 0) return { fx: undefined, seq: 0 };
    // A scope without a key: no request record; it collects the releases' effects and seq for the answer.
    const scope: RequestScope = { key: undefined, drop: [], open: true, applied: false, seq: 0, now: Date.now, fx: undefined };
    try {
      await requestScope.run(scope, async () => {
        for (const ino of todo) await client.meta.release(ino).catch((err: unknown) => this.onError(`releasing inode ${ino} for client ${client.id}`, err));
      });
    } finally {
      scope.open = false;
    }
    return { fx: scope.fx, seq: scope.seq };
  }

  /** protocol.ts `rv`: each name's [directory, entry] attributes now, null where the lookup fails. */
  private async revalidate(client: Client, names: Array<[number, string]>): Promise<Revalidated> {
    const out: Revalidated = [];
    for (const [parent, name] of names) {
      const pair = await requestScope.exit(() => client.meta.lookupPair(ROOT_CTX, parent, name)).catch(() => null);
      out.push(pair === null ? null : [pair[0], pair[1]]);
    }
    return out;
  }

  /** The request's operation, mutating ones through their request numbers (see the file comment). */
  private async run(client: Client, msg: OpRequest, args: unknown[]): Promise<Reply> {
    const spec = OPS[msg.op]!;
    if (!spec.mutating) {
      try {
        return { status: 200, body: { ok: true, r: encodeResult(msg.op, await this.call(client, msg.op, args)), seq: 0, sid: this.sid(client) } };
      } catch (err) {
        return errorReply(err);
      }
    }
    const key = requestKey(msg.c, msg.n!);
    const known = this.recent.get(key);
    if (known !== undefined) {
      this.counters.deduplicated++;
      return known;
    }
    let running = this.inflight.get(key);
    if (running !== undefined) {
      this.counters.deduplicated++;
      return running;
    }
    const drop = (msg.drop ?? []).map((n) => requestKey(msg.c, n));
    this.engine.forgetAnswers(drop);
    running = this.runMutating(client, key, msg.op, args, drop).finally(() => this.inflight.delete(key));
    this.inflight.set(key, running);
    return running;
  }

  /**
   * Runs a mutating request that this process has not answered. Whether an earlier attempt applied it is
   * checked inside the operation's own transactions (RecordingEngine): a request record found there aborts
   * the transaction with AlreadyAppliedError, and the answer comes from the record. Operations that commit
   * nothing (an open, a release) keep no record and are simply run again.
   */
  private async runMutating(client: Client, key: string, op: string, args: unknown[], drop: string[]): Promise<Reply> {
    const scope: RequestScope = { key, drop, open: true, applied: false, seq: 0, now: Date.now, fx: undefined };
    try {
      const r = encodeResult(op, await requestScope.run(scope, () => this.call(client, op, args)));
      const body: OpReply = { ok: true, r, seq: scope.seq, sid: this.sid(client), ...(scope.applied ? { a: 1 as const } : {}), ...(scope.fx === undefined ? {} : { fx: scope.fx }) };
      if (scope.applied) this.engine.queueAnswer({ key, time: Date.now(), seq: scope.seq, result: r as Json });
      return this.remember(key, { status: 200, body });
    } catch (err) {
      if (err instanceof AlreadyAppliedError) {
        this.counters.deduplicated++;
        const rec = await readRequest(this.raw, key).catch(() => undefined);
        if (rec !== undefined) return this.remember(key, await this.fromRecord(client, rec, op, args));
        return retryLater(`request ${key} is being applied by another attempt`);
      }
      const reply = errorReply(err, scope.fx);
      // A final answer (not "retry") is kept for a retry whose original answer was lost.
      return reply.status === 200 ? this.remember(key, reply) : reply;
    } finally {
      scope.open = false;
    }
  }

  /**
   * The answer to a request applied by an earlier attempt: the recorded one, or (answer lost with a restart)
   * one derived from the state now, or EIO saying it was applied.
   */
  private async fromRecord(client: Client, rec: RequestRec, op: string, args: unknown[]): Promise<Reply> {
    // What the earlier attempt changed is not known here: the client's lookup cache forgets everything.
    const fx = allEffects();
    if (rec.state === 'answered' && op !== 'openCreate') return { status: 200, body: { ok: true, r: rec.result ?? null, seq: rec.seq ?? 0, a: 1, sid: this.sid(client), fx } };
    const ok = async (r: unknown): Promise<Reply> => ({ status: 200, body: { ok: true, r: encodeResult(op, r), seq: await this.raw.lastSeq(), a: 1, sid: this.sid(client), fx } });
    try {
      switch (op) {
        case 'openCreate': {
          // The record means the create committed. The open is this process's (in memory): a recorded answer
          // may come from before a restart, whose open went with that session, so it is opened again here (a
          // second open of a service that did not restart only keeps the file open until the session ends).
          const ctx = args[0] as Ctx;
          const attr = await client.meta.lookup(ctx, args[1] as number, args[2] as string);
          return await ok({ attr: await client.meta.open(ctx, attr.ino, 0, attr), created: true, opened: true });
        }
        case 'unlink':
        case 'rmdir':
        case 'rename':
        case 'setxattr':
        case 'removexattr':
        case 'release':
        case 'abandonSlice':
          return await ok(null);
        case 'replaceSlices':
          return await ok(true);
        case 'mknod':
        case 'mkdir':
        case 'create':
        case 'symlink':
          return await ok(await client.meta.lookup(args[0] as Ctx, args[1] as number, args[2] as string));
        case 'link':
          return await ok(await client.meta.lookup(args[0] as Ctx, args[2] as number, args[3] as string));
        case 'setattr':
          return await ok(await client.meta.getattr(args[1] as number));
        case 'truncate':
        case 'fallocate':
          return await ok(await client.meta.getattr(args[0] as number));
        default:
          break;
      }
    } catch (err) {
      return errorReply(err);
    }
    return errorReply(new FsError('EIO', `${op} was applied on the primary, but its answer was lost with a restart of the metadata service: its effect stands; reopen the file to see it`));
  }

  private remember(key: string, reply: Reply): Reply {
    this.recent.set(key, reply);
    if (this.recent.size > RECENT_ANSWERS_MAX) this.recent.delete(this.recent.keys().next().value!);
    return reply;
  }

  private sid(client: Client): string {
    return `${this.instance}.${client.meta.sid}`;
  }

  /** The client's Meta, opened (outside any request scope: its session is not the request's) on first use. */
  private client(id: string, region: string): Promise<Client> {
    let p = this.clients.get(id);
    if (p === undefined) {
      if (this.clients.size >= CLIENTS_MAX) return Promise.reject(new FsError('EAGAIN', `the metadata service serves ${CLIENTS_MAX} clients already`));
      p = requestScope.exit(async () => {
        // No lookup cache here: the client keeps its own, fed by the effects of its requests (`fx` of each
        // answer), so names and attributes it caches are never older than its own cache's timeout.
        const opts: Parameters<typeof Meta.open>[1] = {
          region,
          lookupCacheMs: 0,
          onCacheEffects: (fx, committed) => {
            const scope = requestScope.getStore();
            if (scope?.open === true) scope.fx = addEffects(scope.fx, fx, committed);
          },
        };
        if (this.heartbeatMs !== undefined) opts.heartbeatMs = this.heartbeatMs;
        const meta = await Meta.open(this.engine, opts);
        return { id, meta, last: Date.now(), released: new Set<number>(), releaseFloor: 0 };
      });
      this.clients.set(id, p);
      p.catch(() => this.clients.delete(id));
    }
    return p;
  }

  private async dropClient(id: string): Promise<void> {
    const p = this.clients.get(id);
    if (p === undefined) return;
    this.clients.delete(id);
    const c = await p.catch(() => undefined);
    await c?.meta.close();
  }

  private closeIdle(): void {
    const now = Date.now();
    for (const [id, p] of this.clients) {
      p.then(
        (c) => {
          if (now - c.last > this.idleMs && this.clients.get(id) === p) this.dropClient(id).catch((err: unknown) => this.onError(`closing idle client ${id}`, err));
        },
        () => undefined,
      );
    }
  }

  // ---------------------------------------------------------------- operations

  private async call(client: Client, op: string, a: unknown[]): Promise<unknown> {
    const m = client.meta;
    const ctx = a[0] as Ctx;
    const n = (i: number): number => a[i] as number;
    const s = (i: number): string => a[i] as string;
    const optN = (i: number): number | undefined => a[i] as number | undefined;
    switch (op) {
      case 'hello':
        return { format: m.format, proto: PROTOCOL_LEVEL };
      case 'ping':
      case 'releases':
        return null;
      case 'getattr':
        return m.getattr(n(0));
      case 'getattrCached':
        return m.getattrCached(n(0));
      case 'access':
        return m.access(ctx, n(1), n(2));
      case 'setattr':
        return m.setattr(ctx, n(1), pickSetAttr(a[2]));
      case 'lookup':
        // With `pair`, the directory's attributes too (the client's lookup cache keeps both).
        return optN(3) === 1 ? m.lookupPair(ctx, n(1), s(2)) : m.lookup(ctx, n(1), s(2));
      case 'readdir': {
        const o = (a[2] ?? {}) as { after?: unknown; limit?: unknown; plus?: unknown };
        const opts: { after?: string; limit?: number; plus?: boolean } = {};
        if (typeof o.after === 'string') opts.after = o.after;
        if (typeof o.limit === 'number' && Number.isSafeInteger(o.limit) && o.limit > 0) opts.limit = Math.min(o.limit, 10_000);
        if (o.plus === true) opts.plus = true;
        return m.readdir(ctx, n(1), opts);
      }
      case 'readlink':
        return m.readlink(n(0));
      case 'statfs':
        return m.statfs();
      case 'mknod': {
        const o = (a[5] ?? {}) as { rdev?: unknown; target?: unknown };
        const opts: { rdev?: number; target?: string } = {};
        if (typeof o.rdev === 'number' && Number.isSafeInteger(o.rdev) && o.rdev >= 0) opts.rdev = o.rdev;
        if (typeof o.target === 'string') opts.target = o.target;
        const type = s(3);
        if (!['file', 'dir', 'symlink', 'fifo', 'socket', 'chr', 'blk'].includes(type)) throw new FsError('EINVAL', `unknown file type ${JSON.stringify(type)}`);
        return m.mknod(ctx, n(1), s(2), type as FileType, n(4), opts);
      }
      case 'mkdir':
        return m.mkdir(ctx, n(1), s(2), n(3));
      case 'create':
        return m.create(ctx, n(1), s(2), n(3));
      case 'openCreate':
        return openCreateVia(m, ctx, n(1), s(2), n(3), n(4), n(5) === 1);
      case 'symlink':
        return m.symlink(ctx, n(1), s(2), s(3));
      case 'link':
        return m.link(ctx, n(1), n(2), s(3));
      case 'unlink':
        return m.unlink(ctx, n(1), s(2));
      case 'rmdir':
        return m.rmdir(ctx, n(1), s(2));
      case 'rename':
        return m.rename(ctx, n(1), s(2), n(3), s(4), optN(5) ?? 0);
      case 'open': {
        const created = a[3] as Attr | undefined;
        return m.open(ctx, n(1), n(2), created !== undefined && created.ino === n(1) && typeof created.type === 'string' ? created : undefined);
      }
      case 'reopen': {
        // A client whose session the service lost (a restart) registers its open files again.
        const root: Ctx = { uid: 0, gid: 0, gids: [] };
        for (let i = 0; i < Math.min(n(1), 1_000_000); i++) await m.open(root, n(0), 0);
        return null;
      }
      case 'release':
        return m.release(n(0));
      case 'sliceIds': {
        const count = Math.min(Math.max(1, n(0)), SLICE_IDS_MAX);
        const ids: number[] = [];
        for (let i = 0; i < count; i++) ids.push(await m.newSliceId());
        return ids;
      }
      case 'readChunk':
        return m.readChunk(n(0), n(1));
      case 'readChunks':
        return m.readChunks(n(0));
      case 'write':
        return m.write(n(0), a[1] as Array<{ index: number; ref: SliceRef }>, optN(2), optN(3));
      case 'truncate':
        return m.truncate(n(0), n(1));
      case 'fallocate':
        return m.fallocate(n(0), n(1), n(2), n(3));
      case 'copyFileRange':
        return m.copyFileRange(n(0), n(1), n(2), n(3), n(4));
      case 'replaceSlices':
        return m.replaceSlices(n(0), n(1), a[2] as SliceRef[], a[3] as SliceRef);
      case 'abandonSlice':
        return m.abandonSlice(n(0), n(1));
      case 'getSlices': {
        const ids = (a[0] as unknown[]).filter((x): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x > 0).slice(0, 10_000);
        return m.getSlices(ids);
      }
      case 'setxattr':
        return m.setxattr(ctx, n(1), s(2), a[3] as Buffer, optN(4) ?? 0);
      case 'getxattr':
        return m.getxattr(ctx, n(1), s(2));
      case 'listxattr':
        return m.listxattr(ctx, n(1));
      case 'removexattr':
        return m.removexattr(ctx, n(1), s(2));
      case 'getlk':
        return m.getlk(n(0), s(1), lockType(s(2)), n(3), optN(4));
      case 'setlk': {
        const t = s(2);
        return m.setlk(n(0), s(1), t === 'u' ? 'u' : lockType(t), n(3), optN(4), optN(5) ?? 0);
      }
      case 'flock': {
        const t = s(2);
        if (t !== 'sh' && t !== 'ex' && t !== 'un') throw new FsError('EINVAL', `unknown flock type ${JSON.stringify(t)}`);
        return m.flock(n(0), s(1), t, optN(3) ?? 0);
      }
      default:
        throw new FsError('ENOSYS', `unknown operation ${op}`);
    }
  }
}

function lockType(t: string): LockType {
  if (t !== 'r' && t !== 'w') throw new FsError('EINVAL', `unknown lock type ${JSON.stringify(t)}`);
  return t;
}

function pickSetAttr(v: unknown): SetAttr {
  const o = v as Record<string, unknown>;
  const out: SetAttr = {};
  const int = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
  if (o['mode'] !== undefined) {
    if (!int(o['mode'])) throw new FsError('EINVAL', 'bad mode');
    out.mode = o['mode'];
  }
  for (const f of ['uid', 'gid'] as const) {
    if (o[f] === undefined) continue;
    if (!int(o[f])) throw new FsError('EINVAL', `bad ${f}`);
    out[f] = o[f];
  }
  for (const f of ['atime', 'mtime'] as const) {
    const x = o[f];
    if (x === undefined) continue;
    if (x !== 'now' && !(typeof x === 'number' && Number.isSafeInteger(x))) throw new FsError('EINVAL', `bad ${f}`);
    out[f] = x;
  }
  return out;
}

function checkRequest(msg: OpRequest): string | undefined {
  if (msg === null || typeof msg !== 'object') return 'request must be an object';
  if (typeof msg.op !== 'string' || !Object.hasOwn(OPS, msg.op)) return `unknown operation ${JSON.stringify(String(msg.op)).slice(0, 80)}`;
  if (typeof msg.c !== 'string' || !CLIENT_ID_RE.test(msg.c)) return 'bad client id';
  if (msg.g !== undefined && (typeof msg.g !== 'string' || msg.g.length > 200)) return 'bad region';
  if (OPS[msg.op]!.mutating && !(typeof msg.n === 'number' && Number.isSafeInteger(msg.n) && msg.n >= 1)) return `${msg.op} needs a request number`;
  if (msg.drop !== undefined && (!Array.isArray(msg.drop) || msg.drop.length > DROP_MAX || !msg.drop.every((x) => Number.isSafeInteger(x) && x >= 1))) return 'bad drop list';
  return undefined;
}

/** Results as JSON: Buffers as base64, Maps as pairs, undefined as null. */
function encodeResult(op: string, r: unknown): unknown {
  if (op === 'getxattr') return (r as Buffer).toString('base64');
  if (op === 'getSlices') return [...(r as Map<number, unknown>)].map(([k, v]) => [k, v ?? null]);
  return r ?? null;
}

function retryLater(message: string): Reply {
  return { status: 503, body: { ok: false, code: 'EAGAIN', message } };
}

function errorReply(err: unknown, fx?: WireEffects): Reply {
  if (err instanceof FsError) return { status: 200, body: { ok: false, code: err.code, message: err.message, ...(fx === undefined ? {} : { fx }) } };
  if (err instanceof EngineUnavailableError) return retryLater(`the primary's metadata engine did not answer: ${err.message}`);
  const message = err instanceof Error ? err.message : String(err);
  return { status: 200, body: { ok: false, code: 'EIO', message: `the metadata service failed: ${message}`, ...(fx === undefined ? {} : { fx }) } };
}

/** First byte of a TLS record carrying a handshake (a ClientHello opens every TLS connection). */
const TLS_HANDSHAKE = 0x16;
/** A connection that sends nothing this long is closed, ms. */
const FIRST_BYTE_MS_MAX = 30_000;

/**
 * Hands a connection to the HTTPS server if it opens with a TLS handshake; answers a plain one that it must
 * use TLS. The byte that decided is already read, so the TLS layer reads the connection through a stream
 * that starts with it (a TLS socket over a raw socket would read past it, from the socket's handle).
 */
function sniffTls(socket: net.Socket, https: http.Server): void {
  socket.setTimeout(FIRST_BYTE_MS_MAX, () => socket.destroy());
  socket.on('error', () => socket.destroy());
  socket.once('data', (first: Buffer) => {
    socket.setTimeout(0);
    if (first[0] !== TLS_HANDSHAKE) {
      const body = JSON.stringify({ ok: false, code: 'EIO', message: 'this metadata service speaks TLS: address it as ferrys://HOST:PORT' });
      socket.end(`HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      return;
    }
    socket.pause();
    const stream = new Duplex({
      read: () => socket.resume(),
      write: (chunk: Buffer, _enc, cb) => socket.write(chunk, cb),
      final: (cb) => socket.end(cb),
      destroy: (err, cb) => {
        socket.destroy();
        cb(err);
      },
    });
    stream.push(first);
    socket.on('data', (d: Buffer) => {
      if (!stream.push(d)) socket.pause();
    });
    socket.on('end', () => stream.push(null));
    socket.on('close', () => stream.destroy());
    https.emit('connection', stream);
  });
}

async function readBody(req: http.IncomingMessage, max: number): Promise<Buffer | undefined> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > max) {
      req.resume();
      return undefined;
    }
    parts.push(chunk);
  }
  return Buffer.concat(parts, n);
}
