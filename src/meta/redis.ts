/**
 * The Redis engine (ioredis): standalone, Sentinel or Cluster, selected by URL (see parseRedisUrl).
 *
 * Layout. Every key of one volume carries the hash tag {p} (p = the `prefix` URL option, default "ferry"),
 * so a Cluster keeps the whole volume in one slot, where MULTI/EXEC and scripts may touch any of its keys:
 *
 *   {p}:r:<kind>:<len(part)>:<part>:<key>   string  one record's JSON value
 *   {p}:z:<kind>:<part>                     zset    the part's keys, every score 0: ZRANGEBYLEX walks them in
 *                                                   bytewise order (Redis compares members with memcmp)
 *   {p}:seq                                 string  newest changelog seq (missing = 0)
 *   {p}:floor                               string  entries <= floor are trimmed (missing = 0)
 *   {p}:log                                 list    entry floor+1+i at index i, as JSON {time, ops}
 *   {p}:epoch                               string  a fresh random token after every reset and restore
 *   {p}:restore:...                         a restore's new volume, written beside the live one (same layout)
 *   {p}:restore-switch                      string  a restore past its switch point: 'delete' (old keys go)
 *                                                   then 'rename' (staged keys become live); see doRestore
 *
 * One string key per record (rather than one hash per part) so that a transaction's WATCH covers exactly
 * the records it read: with a hash per part every inode read would conflict with every inode write of the
 * volume (all inodes live in part ''). The part length in the record key keeps "a:b"+"c" apart from
 * "a"+"b:c".
 *
 * Transactions are optimistic. A writing txn takes a pooled connection of its own (WATCH is per connection);
 * get = WATCH record + GET; scan = WATCH zset + ZRANGEBYLEX, then WATCH the returned records + MGET, so both
 * a new key in a scanned part and a changed value of a scanned record abort the commit. Writes are buffered
 * in OverlayTxn; commit = MULTI, the writes, one Lua EVAL that INCRs {p}:seq and RPUSHes the entry, EXEC,
 * whose reply carries the entry's seq. EXEC answers null when a watched key changed: the attempt is a
 * Conflict, run again by the core (meta/core.ts) up to txnAttemptsMax times after a jittered backoff. When fn
 * throws, an empty MULTI/EXEC first checks the watches: an error raised from reads of different commits
 * reruns fn, one raised from consistent reads is final.
 *
 * The core's writer gate runs in 'contention' mode: after a first conflict a txn retries holding the
 * engine's mutex, and while anyone holds or waits for it, new writing txns of this process queue there too:
 * under contention a process degrades to one writer at a time instead of letting its own transactions
 * starve each other. Readonly txns use the shared connection without WATCH (read committed per call, as in
 * the SQLite engine).
 *
 * The log append is a script inside MULTI, so it runs atomically with the writes: seq and list length move
 * together and stay gapless. EVAL (not EVALSHA) because a NOSCRIPT error inside MULTI would not undo the
 * commands queued around it.
 *
 * Snapshot: Redis has no MVCC. The snapshot reads seq s0, reads every logged part without locking (a fuzzy
 * copy, buffered in memory), reads seq s1, then overlays the changelog entries s0+1..s1. A record unchanged
 * during the copy was read correctly; one changed during it appears in those entries, whose ops are the
 * resulting states, so the last one wins. The result is exactly the state at s1, without blocking writers
 * and without retries unless a reset/restore (epoch) or a trim of those entries interferes (the snapshot
 * registers a consumer of its own for its duration, so only the retention bound can trim them). Limit: the
 * copy is held in client memory (about the JSON size of the volume's logged records) and costs two round
 * trips per part; dumping a volume of many millions of records wants a replica or an RDB instead.
 *
 * Cluster: every key shares one hash tag, so one slot and one node hold the volume (no sharding of one
 * volume; several volumes spread over the nodes). Each pooled Cluster client holds its own node
 * connections, so WATCH state stays per transaction. Tested here: standalone only; Sentinel and Cluster
 * are tested for URL parsing and client construction.
 */

import { randomBytes } from 'node:crypto';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { UsageError } from '../errors.js';
import { maskUrl } from '../util/url.js';
import { compareKeys, KINDS, LogTrimmedError, UNLOGGED_KINDS, type Json, type Kind, type LogBounds, type LogEntry, type LogOp, type ScanOptions } from './engine.js';
import { checkNextSeq, Conflict, EngineCore, isSocketError, type CoreOptions, type NewEntry, type Reader, type ReplayEntry, type WriteAttempt } from './core.js';
import { Mutex } from '../util/mutex.js';
import { countRedisCommands } from './wire.js';

/** Attempts of one optimistic transaction before it fails with TxnConflictError. */
export const txnAttemptsMax = 50;
/** The jittered pause between attempts: its ceiling starts at 1 ms and doubles up to this (util/sleep.ts). */
export const txnBackoffMsMax = 100;
/** Pooled connections for writing transactions (each holds its WATCH state); the URL's `pool` overrides it. */
export const connectionsMaxDefault = 8;
export const connectionsMaxLimit = 64;
/** Records per ZRANGEBYLEX/MGET page in snapshot, per pipeline in restore and per UNLINK in reset. */
const pageRecordsMax = 1000;
/** Snapshot attempts: only a concurrent reset/restore or a trim of the entries it needs forces another. */
const snapshotAttemptsMax = 5;
/** How long a connection attempt may take. */
const connectTimeoutMs = 5000;
/** A command without a reply after this fails (and its pooled connection is dropped: its outcome is unknown). */
const commandTimeoutMs = 15_000;

type Client = Redis | Cluster;
/** ioredis 6 declares `replyMapping` optional-with-undefined in RedisOptions but not in its constructors. */
type ClientOptions = Omit<RedisOptions, 'replyMapping'>;

/** Kept here for callers that import it from the Redis engine; it is every engine's (engine.ts). */
export { TxnConflictError } from './engine.js';

// ------------------------------------------------------------------------------------------------ URLs

export interface RedisHost {
  host: string;
  port: number;
}

/** What a redis URL names. Secrets are kept here; `description` masks them. */
export interface RedisTarget {
  mode: 'standalone' | 'sentinel' | 'cluster';
  tls: boolean;
  hosts: RedisHost[];
  username: string | undefined;
  password: string | undefined;
  /** Sentinel only: the master's name. */
  masterName: string | undefined;
  /** Sentinel only: the sentinels' own password (`sentinel-password` option). */
  sentinelPassword: string | undefined;
  db: number;
  /** The volume's key prefix, used as the hash tag {prefix}. */
  prefix: string;
  connectionsMax: number;
  /** The URL with passwords masked. */
  description: string;
}

const URL_FORMS =
  'redis://[[user]:pass@]host[:port][/db], rediss://... (TLS), redis+sentinel://[pass@]host[:port],.../master[/db], ' +
  'redis+cluster://[[user]:pass@]host[:port],...; options ?prefix=NAME&pool=N&sentinel-password=P';

/**
 * Parses a redis URL. Userinfo is `user:pass`, `:pass` or a bare `pass` (no ACL user); reserved characters in
 * it must be percent-encoded. Default ports: 6379, sentinels 26379. Cluster has only database 0.
 */
export function parseRedisUrl(url: string): RedisTarget {
  const masked = maskUrl(url);
  const bad = (why: string): UsageError => new UsageError(`bad redis URL ${JSON.stringify(masked)}: ${why} (forms: ${URL_FORMS})`);
  // A piece of a mis-parsed URL (a password with a raw '/' or '?') may be part of a secret: it is quoted only
  // when the masked URL shows it anyway.
  const quote = (piece: string): string => (masked.includes(piece) ? ` ${JSON.stringify(piece)}` : '');
  const m = /^(redis|rediss)(\+sentinel|\+cluster)?:\/\/(.*)$/i.exec(url);
  if (m === null) throw bad('unknown scheme');
  const tls = m[1]!.toLowerCase() === 'rediss';
  const mode = m[2] === undefined ? 'standalone' : m[2].toLowerCase() === '+sentinel' ? 'sentinel' : 'cluster';
  let rest = m[3]!;
  let query = '';
  const q = rest.indexOf('?');
  if (q >= 0) {
    query = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  const slash = rest.indexOf('/');
  const authority = slash >= 0 ? rest.slice(0, slash) : rest;
  const path = slash >= 0 ? rest.slice(slash + 1) : '';
  const at = authority.lastIndexOf('@');
  const userinfo = at >= 0 ? authority.slice(0, at) : undefined;
  const hostList = at >= 0 ? authority.slice(at + 1) : authority;

  let username: string | undefined;
  let password: string | undefined;
  if (userinfo !== undefined) {
    const colon = userinfo.indexOf(':');
    const dec = (s: string): string => {
      try {
        return decodeURIComponent(s);
      } catch {
        throw bad('userinfo is not valid percent-encoding');
      }
    };
    if (colon >= 0) {
      username = dec(userinfo.slice(0, colon)) || undefined;
      password = dec(userinfo.slice(colon + 1)) || undefined;
    } else {
      password = dec(userinfo) || undefined;
    }
  }

  const defaultPort = mode === 'sentinel' ? 26379 : 6379;
  const hosts: RedisHost[] = [];
  for (const h of hostList.split(',')) {
    const hm = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(h);
    if (hm === null) throw bad(`host${quote(h)} is not host[:port]`);
    const port = hm[3] === undefined ? defaultPort : Number(hm[3]);
    if (port < 1 || port > 65535) throw bad(`port ${port} out of range`);
    hosts.push({ host: hm[1] ?? hm[2]!, port });
  }
  if (mode === 'standalone' && hosts.length !== 1) throw bad('a standalone server is one host (use redis+sentinel:// or redis+cluster:// for several)');

  const segs = path === '' ? [] : path.split('/');
  if (segs.length > 0 && segs[segs.length - 1] === '') segs.pop();
  const parseDb = (s: string | undefined): number => {
    if (s === undefined) return 0;
    if (!/^\d{1,5}$/.test(s)) throw bad(`database${quote(s)} is not a number`);
    return Number(s);
  };
  let db: number;
  let masterName: string | undefined;
  if (mode === 'sentinel') {
    if (segs.length < 1 || segs.length > 2 || segs[0] === '') throw bad('Sentinel needs /mastername[/db]');
    masterName = decodeURIComponent(segs[0]!);
    db = parseDb(segs[1]);
  } else {
    if (segs.length > 1) throw bad('the path is /db');
    db = parseDb(segs[0]);
    if (mode === 'cluster' && db !== 0) throw bad('a Redis Cluster has only database 0');
  }

  let prefix = 'ferry';
  let connectionsMax = connectionsMaxDefault;
  let sentinelPassword: string | undefined;
  for (const [k, v] of new URLSearchParams(query)) {
    if (k === 'prefix') {
      if (!/^[A-Za-z0-9._:-]{1,64}$/.test(v)) throw bad('prefix must be 1-64 of A-Z a-z 0-9 . _ : -');
      prefix = v;
    } else if (k === 'pool') {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > connectionsMaxLimit) throw bad(`pool must be 1..${connectionsMaxLimit}`);
      connectionsMax = n;
    } else if (k === 'sentinel-password' && mode === 'sentinel') {
      sentinelPassword = v;
    } else {
      throw bad(`unknown option${quote(k)}`);
    }
  }
  return { mode, tls, hosts, username, password, masterName, sentinelPassword, db, prefix, connectionsMax, description: maskUrl(url) };
}

/** A new client for the target (connecting at once unless extra.lazyConnect). */
function makeClient(t: RedisTarget, extra: ClientOptions): Client {
  const common: ClientOptions = {
    ...(t.username === undefined ? {} : { username: t.username }),
    ...(t.password === undefined ? {} : { password: t.password }),
    ...(t.tls ? { tls: {} } : {}),
    connectTimeout: connectTimeoutMs,
    commandTimeout: commandTimeoutMs,
    ...extra,
  };
  if (t.mode === 'cluster') {
    return new Cluster(t.hosts, { redisOptions: common, lazyConnect: extra.lazyConnect ?? false });
  }
  if (t.mode === 'sentinel') {
    return new Redis({
      ...common,
      sentinels: t.hosts,
      name: t.masterName!,
      db: t.db,
      ...(t.sentinelPassword === undefined ? {} : { sentinelPassword: t.sentinelPassword }),
      ...(t.tls ? { enableTLSForSentinelMode: true } : {}),
    });
  }
  return new Redis({ ...common, host: t.hosts[0]!.host, port: t.hosts[0]!.port, db: t.db });
}

// ------------------------------------------------------------------------------------------------ scripts

/** KEYS: seq, log. ARGV: entry JSON. Appends the entry under the next seq; returns it. */
const APPEND_LOG = `
local seq = redis.call('INCR', KEYS[1])
redis.call('RPUSH', KEYS[2], ARGV[1])
return seq`;

/** KEYS: seq, floor, log. ARGV: after, limit. Returns {floor, last, entry JSON...}; no entries when trimmed. */
const READ_LOG = `
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(redis.call('GET', KEYS[2]) or '0')
local after = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if after < floor or after >= last or limit <= 0 then return {floor, last} end
local start = after - floor
local out = redis.call('LRANGE', KEYS[3], start, start + limit - 1)
table.insert(out, 1, last)
table.insert(out, 1, floor)
return out`;

/** KEYS: seq, floor, log. ARGV: upTo. Drops entries <= min(upTo, last); returns the new floor. */
const TRIM_LOG = `
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(redis.call('GET', KEYS[2]) or '0')
local to = math.min(tonumber(ARGV[1]), last)
if to <= floor then return floor end
redis.call('LTRIM', KEYS[3], to - floor, -1)
redis.call('SET', KEYS[2], to)
return to`;

// ------------------------------------------------------------------------------------------------ pool

interface Pooled {
  client: Redis | Cluster;
  /** Connection losses so far: WATCH state does not survive a reconnect. */
  closes: number;
}

/** At most `max` connections; each serves one writing transaction at a time. */
class ConnectionPool {
  private readonly make: () => Client;
  private readonly max: number;
  private readonly idle: Pooled[] = [];
  private readonly all = new Set<Pooled>();
  private readonly waiters: Array<{ resolve: (p: Pooled) => void; reject: (e: Error) => void }> = [];
  private closed = false;

  constructor(make: () => Client, max: number) {
    this.make = make;
    this.max = max;
  }

  acquire(): Promise<Pooled> {
    if (this.closed) return Promise.reject(new Error('metadata engine is closed'));
    const p = this.idle.pop();
    if (p !== undefined) return Promise.resolve(p);
    if (this.all.size < this.max) {
      const client = this.make();
      const pooled: Pooled = { client, closes: 0 };
      client.on('close', () => {
        pooled.closes++;
      });
      client.on('error', () => {});
      this.all.add(pooled);
      return Promise.resolve(pooled);
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** `healthy` false drops the connection (its WATCH state is unknown). */
  release(p: Pooled, healthy: boolean): void {
    if (!healthy || this.closed) {
      this.all.delete(p);
      p.client.disconnect();
      if (!this.closed && this.waiters.length > 0) {
        // A slot freed: let the next waiter make a connection.
        const w = this.waiters.shift()!;
        this.acquire().then(w.resolve, w.reject);
      }
      return;
    }
    const w = this.waiters.shift();
    if (w !== undefined) w.resolve(p);
    else this.idle.push(p);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w.reject(new Error('metadata engine is closed'));
    const conns = [...this.idle];
    this.idle.length = 0;
    for (const p of conns) this.all.delete(p);
    await Promise.all(conns.map((p) => quit(p.client)));
  }
}

async function quit(c: Client): Promise<void> {
  if (c.status !== 'ready') {
    // Never connected (lazy), still (re)connecting, or gone: nothing to drain, and QUIT would wait for a
    // connection that may never come.
    c.disconnect();
    return;
  }
  try {
    await c.quit();
  } catch {
    c.disconnect();
  }
}

// ------------------------------------------------------------------------------------------------ engine

export interface OpenRedisOptions {
  /** Connect on first use instead of checking the server at open. */
  lazy?: boolean;
}

/** Opens a Redis engine and checks that the server answers. */
export async function openRedisEngine(url: string, options: OpenRedisOptions = {}): Promise<RedisEngine> {
  const engine = new RedisEngine(parseRedisUrl(url), { lazy: options.lazy ?? false });
  if (!options.lazy) {
    let timer: NodeJS.Timeout | undefined;
    try {
      // A client retries connecting by itself (Sentinel for half a minute): opening waits a bounded time.
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${connectTimeoutMs} ms`)), connectTimeoutMs);
      });
      await Promise.race([engine.ping(), late]);
    } catch (err) {
      await engine.close();
      throw new UsageError(`cannot reach Redis at ${engine.description}: ${(err as Error).message} (is redis-server running there?)`);
    } finally {
      clearTimeout(timer);
    }
    // A `load` killed after its switch point left the new volume half in place: finish it before any use.
    try {
      await engine.finishRestore();
    } catch (err) {
      await engine.close();
      throw err;
    }
  }
  return engine;
}

/** A map key for one record; JSON keeps any part and key apart. */
const recId = (op: LogOp): string => JSON.stringify([op[0], op[1], op[2]]);

export interface RedisEngineOptions extends CoreOptions {
  /** Connect on first use instead of at construction. */
  lazy?: boolean;
}

export class RedisEngine extends EngineCore {
  readonly description: string;
  readonly target: RedisTarget;
  /** The shared connection: readonly txns, log reads, snapshots, maintenance. Never holds WATCH state. */
  private readonly main: Client;
  private readonly pool: ConnectionPool;
  /** The shared connection's latest error (e.g. ECONNREFUSED), for messages about failed commands. */
  private lastError: Error | undefined;
  private readonly base: string;
  private readonly seqKey: string;
  private readonly floorKey: string;
  private readonly logKey: string;
  private readonly epochKey: string;
  /** Where a restore writes the new volume before switching to it, and the key that marks the switch. */
  private readonly stageBase: string;
  private readonly switchKey: string;
  private readonly reader: Reader;

  constructor(target: RedisTarget, options: RedisEngineOptions = {}) {
    super({ attemptsMax: txnAttemptsMax, backoff: { baseMs: 1, capMs: txnBackoffMsMax }, serialize: 'contention', lock: new Mutex() }, options);
    this.target = target;
    this.description = target.description;
    this.base = `{${target.prefix}}:`;
    this.seqKey = this.base + 'seq';
    this.floorKey = this.base + 'floor';
    this.logKey = this.base + 'log';
    this.epochKey = this.base + 'epoch';
    this.stageBase = this.base + 'restore:';
    this.switchKey = this.base + 'restore-switch';
    const lazyConnect = options.lazy ?? false;
    this.main = makeClient(target, { maxRetriesPerRequest: 3, lazyConnect });
    countRedisCommands(this.main, this.wire);
    // Errors reach the callers through their commands; without a listener ioredis logs every reconnect failure.
    this.main.on('error', (err: Error) => {
      this.lastError = err;
    });
    // Pool connections never resend a command after a reconnect: a resent EXEC would run without its WATCH.
    this.pool = new ConnectionPool(() => {
      const c = makeClient(target, { autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 3, lazyConnect });
      countRedisCommands(c, this.wire);
      return c;
    }, target.connectionsMax);
    this.reader = {
      get: (kind, part, key) => this.getOn(this.main, kind, part, key, false),
      scan: (kind, part, opts, extra) => this.scanOn(this.main, kind, part, opts, extra, false),
    };
  }

  /** Round trip to the server (open uses it to fail early); a failure names the connection's own error. */
  async ping(): Promise<void> {
    try {
      await this.main.ping();
    } catch (err) {
      throw this.lastError ?? err;
    }
  }

  private recKey(kind: Kind, part: string, key: string, base = this.base): string {
    return `${base}r:${kind}:${part.length}:${part}:${key}`;
  }

  private zsetKey(kind: Kind, part: string, base = this.base): string {
    return `${base}z:${kind}:${part}`;
  }

  // --- transactions

  protected readReader(): Reader {
    return this.reader;
  }

  /** ioredis's ways of saying the server is not there: socket errors, a closed connection, retries exhausted, a timeout. */
  protected override isConnectionError(err: unknown): boolean {
    if (isSocketError(err) || (err as { name?: unknown } | null)?.name === 'MaxRetriesPerRequestError') return true;
    return err instanceof Error && /^(Connection is closed|Command timed out|Stream isn't writeable)/.test(err.message);
  }

  /** One optimistic attempt on a pooled connection of its own (WATCH state is per connection). */
  protected async beginWrite(): Promise<WriteAttempt> {
    const conn = await this.pool.acquire();
    const closes = conn.closes;
    const c = conn.client;
    let healthy = false;
    return {
      reader: {
        get: (kind, part, key) => this.getOn(c, kind, part, key, true),
        scan: (kind, part, opts, extra) => this.scanOn(c, kind, part, opts, extra, true),
      },
      failed: async () => {
        // fn may have failed only because its reads came from different commits (an entry naming an inode
        // that another client deleted since): an empty MULTI/EXEC checks the watches, and a conflict reruns
        // fn instead of reporting an error that a serial execution would not have raised.
        const check = await c
          .multi()
          .exec()
          .then(
            (r) => (r === null ? 'conflict' : 'consistent'),
            () => 'broken' as const,
          );
        healthy = check !== 'broken';
        return check === 'conflict' || (check === 'consistent' && conn.closes !== closes) ? new Conflict() : undefined;
      },
      commit: async (writes, entry) => {
        if (conn.closes !== closes) {
          // The connection was lost since the attempt began: its watches are gone and EXEC would not check
          // them. (Had it been lost after this check, the MULTI would fail: pool connections do not resend.)
          healthy = true;
          return new Conflict();
        }
        const multi = c.multi();
        for (const op of writes) this.queueWrite(multi, op);
        if (entry !== undefined) multi.eval(APPEND_LOG, 2, this.seqKey, this.logKey, encodeEntry(entry));
        const res = await multi.exec();
        healthy = true;
        if (res === null) return new Conflict();
        checkExec(res);
        return entry === undefined ? undefined : toSafeInt(res[res.length - 1]![1], 'seq');
      },
      end: () => this.pool.release(conn, healthy),
    };
  }

  private queueWrite(multi: ReturnType<Client['multi']>, [kind, part, key, value]: LogOp, base = this.base): void {
    const rk = this.recKey(kind, part, key, base);
    const zk = this.zsetKey(kind, part, base);
    if (value === null) {
      multi.del(rk);
      multi.zrem(zk, key);
    } else {
      multi.set(rk, JSON.stringify(value));
      multi.zadd(zk, 0, key);
    }
  }

  private async getOn(c: Client, kind: Kind, part: string, key: string, watch: boolean): Promise<Json | undefined> {
    const rk = this.recKey(kind, part, key);
    let raw: string | null;
    if (watch) {
      const res = await c.pipeline().watch(rk).get(rk).exec();
      raw = pipelineResult(res, 1) as string | null;
    } else {
      raw = await c.get(rk);
    }
    return raw === null ? undefined : (JSON.parse(raw) as Json);
  }

  private async scanOn(
    c: Client,
    kind: Kind,
    part: string,
    options: ScanOptions | undefined,
    extra: number,
    watch: boolean,
  ): Promise<Array<[string, Json]>> {
    const zk = this.zsetKey(kind, part);
    const min = options?.after === undefined ? '-' : '(' + options.after;
    const limit = options?.limit === undefined ? undefined : options.limit + extra;
    if (limit !== undefined && limit <= 0) return [];
    const range: Array<string | number> = limit === undefined ? [zk, min, '+'] : [zk, min, '+', 'LIMIT', 0, limit];
    let keys: string[];
    if (watch) {
      const res = await c
        .pipeline()
        .watch(zk)
        .call('ZRANGEBYLEX', ...range)
        .exec();
      keys = pipelineResult(res, 1) as string[];
    } else {
      keys = (await c.call('ZRANGEBYLEX', ...range)) as string[];
    }
    if (keys.length === 0) return [];
    const rks = keys.map((k) => this.recKey(kind, part, k));
    let values: Array<string | null>;
    if (watch) {
      const res = await c
        .pipeline()
        .watch(...rks)
        .mget(...rks)
        .exec();
      values = pipelineResult(res, 1) as Array<string | null>;
    } else {
      values = await c.mget(...rks);
    }
    const out: Array<[string, Json]> = [];
    for (let i = 0; i < keys.length; i++) {
      // A member without a value was deleted between the two reads; a watched scan then fails its EXEC.
      const raw = values[i];
      if (raw !== null && raw !== undefined) out.push([keys[i]!, JSON.parse(raw) as Json]);
    }
    return out;
  }

  // --- changelog

  protected async doLogBounds(): Promise<LogBounds> {
    const [last, floor] = await this.main.mget(this.seqKey, this.floorKey);
    return { last: toSafeInt(last, 'seq'), floor: toSafeInt(floor, 'floor') };
  }

  protected async doReadLog(after: number, limit: number): Promise<{ floor: number; entries: LogEntry[] }> {
    const res = (await this.main.eval(READ_LOG, 3, this.seqKey, this.floorKey, this.logKey, after, limit)) as [number, number, ...string[]];
    const floor = toSafeInt(res[0], 'floor');
    const last = toSafeInt(res[1], 'seq');
    const entries: LogEntry[] = [];
    for (let i = 2; i < res.length; i++) {
      const e = JSON.parse(res[i] as string) as { time: number; ops: LogOp[] };
      entries.push({ seq: after + i - 1, time: e.time, ops: e.ops });
    }
    if (entries.length > 0 && entries[entries.length - 1]!.seq > last) throw new Error(`assertion failed: changelog list longer than seq ${last}`);
    return { floor, entries };
  }

  protected async doTrimLog(upTo: number): Promise<void> {
    await this.main.eval(TRIM_LOG, 3, this.seqKey, this.floorKey, this.logKey, upTo);
  }

  /** WATCH seq, check it, then the writes, the entries and the new seq in one MULTI/EXEC; a conflict runs it again. */
  protected async doApplyLog(entries: ReplayEntry[]): Promise<void> {
    const last = entries[entries.length - 1]!.seq;
    await this.retrying(async () => {
      const conn = await this.pool.acquire();
      const closes = conn.closes;
      let healthy = false;
      try {
        const c = conn.client;
        const res = await c.pipeline().watch(this.seqKey).get(this.seqKey).exec();
        const current = toSafeInt(pipelineResult(res, 1), 'seq');
        try {
          checkNextSeq(current, entries[0]!.seq);
        } catch (err) {
          healthy = await unwatch(c);
          throw err;
        }
        if (conn.closes !== closes) {
          healthy = true; // lost its WATCH with the old socket: try again
          return new Conflict();
        }
        const multi = c.multi();
        for (const e of entries) {
          for (const op of e.ops) this.queueWrite(multi, op);
          multi.rpush(this.logKey, encodeEntry(e));
        }
        multi.set(this.seqKey, last);
        const done = await multi.exec();
        healthy = true;
        if (done === null) return new Conflict();
        checkExec(done);
        return undefined;
      } finally {
        this.pool.release(conn, healthy);
      }
    });
  }

  // --- snapshot, restore, reset

  protected async doSnapshot(onRecord: (op: LogOp) => Promise<void> | void): Promise<{ seq: number }> {
    // The overlay needs the entries committed during the copy: a consumer of its own keeps them from being
    // trimmed behind it (position 0: nothing after the floor goes; the retention bound still applies).
    const pin = `snapshot:${randomBytes(6).toString('hex')}`;
    await this.registerConsumer(pin, 0);
    try {
      return await this.fuzzySnapshot(onRecord);
    } finally {
      await this.removeConsumer(pin).catch(() => undefined);
    }
  }

  private async fuzzySnapshot(onRecord: (op: LogOp) => Promise<void> | void): Promise<{ seq: number }> {
    for (let attempt = 1; ; attempt++) {
      const [s0, e0] = await this.main.mget(this.seqKey, this.epochKey);
      const seq0 = toSafeInt(s0, 'seq');
      const records = new Map<string, LogOp>();
      for (const zk of await this.scanKeys(this.base + 'z:')) {
        const rest = zk.slice(this.base.length + 2);
        const colon = rest.indexOf(':');
        const kind = rest.slice(0, colon) as Kind;
        const part = rest.slice(colon + 1);
        if (!KINDS.includes(kind)) throw new Error(`assertion failed: unknown kind in key ${zk}`);
        if (UNLOGGED_KINDS.has(kind)) continue;
        for (let after: string | undefined; ; ) {
          const page = await this.scanOn(this.main, kind, part, { after, limit: pageRecordsMax }, 0, false);
          for (const [key, value] of page) {
            const op: LogOp = [kind, part, key, value];
            records.set(recId(op), op);
          }
          if (page.length < pageRecordsMax) break;
          after = page[page.length - 1]![0];
        }
      }
      const [s1, e1] = await this.main.mget(this.seqKey, this.epochKey);
      const seq1 = toSafeInt(s1, 'seq');
      if (e1 !== e0 || seq1 < seq0) {
        if (attempt >= snapshotAttemptsMax) throw new Error(`snapshot: the volume was reset or restored ${attempt} times while being read`);
        continue;
      }
      // Bring every record changed during the copy to its state at seq1.
      let trimmed = false;
      for (let at = seq0; at < seq1 && !trimmed; ) {
        let entries: LogEntry[];
        try {
          entries = await this.readLog(at, Math.min(pageRecordsMax, seq1 - at));
        } catch (err) {
          if (!(err instanceof LogTrimmedError)) throw err;
          trimmed = true;
          break;
        }
        if (entries.length === 0 || entries[0]!.seq !== at + 1) throw new Error(`assertion failed: changelog entry ${at + 1} missing`);
        for (const e of entries) {
          for (const op of e.ops) {
            if (op[3] === null) records.delete(recId(op));
            else records.set(recId(op), op);
          }
        }
        at = entries[entries.length - 1]!.seq;
      }
      if (trimmed) {
        if (attempt >= snapshotAttemptsMax) throw new Error('snapshot: the changelog was trimmed past the snapshot start repeatedly');
        continue;
      }
      const kindOrder = new Map<string, number>(KINDS.map((k, i) => [k, i]));
      const sorted = [...records.values()].sort(
        (a, b) => kindOrder.get(a[0])! - kindOrder.get(b[0])! || compareKeys(a[1], b[1]) || compareKeys(a[2], b[2]),
      );
      records.clear();
      for (const op of sorted) {
        const p = onRecord(op);
        if (p !== undefined) await p;
      }
      return { seq: seq1 };
    }
  }

  /**
   * All or nothing, whenever the process dies: the new volume is written beside the live one (under
   * {p}:restore:, in pipelined batches, the old volume untouched and readable), then one SET of the switch key
   * is the commit point, after which the old keys are deleted and the staged ones renamed into place. A
   * restore that dies before the switch leaves the old volume whole (its staged keys are removed by the next
   * restore); one that dies after it is finished by the next open of the engine (finishRestore), so whoever
   * opens the volume next sees the old volume or the new one, never a mixture. Meant for `load` into an idle
   * volume: clients of the old volume that keep running during the switch see it change under them.
   */
  protected async doRestore(records: AsyncIterable<LogOp>, seq: number): Promise<void> {
    await this.finishRestore();
    await this.unlinkAll(await this.scanKeys(this.stageBase));
    let batch = this.main.pipeline();
    let n = 0;
    for await (const op of records) {
      if (op[3] === null) continue;
      this.queueWrite(batch, op, this.stageBase);
      if (++n >= pageRecordsMax) {
        checkExec(await batch.exec());
        batch = this.main.pipeline();
        n = 0;
      }
    }
    batch.set(this.stageBase + 'seq', seq).set(this.stageBase + 'floor', seq);
    checkExec(await batch.exec());
    await this.main.set(this.switchKey, 'delete');
    await this.finishRestore();
  }

  /**
   * Completes a restore that passed its switch point (see doRestore); false when there is none. Each phase
   * can be run again after a crash: 'delete' removes the old volume's keys (never the staged ones), then
   * 'rename' moves every staged key into place; a new epoch and the switch key's removal end it in one step.
   */
  async finishRestore(): Promise<boolean> {
    let phase = await this.main.get(this.switchKey);
    if (phase === null) return false;
    if (phase === 'delete') {
      const old = (await this.scanKeys(this.base)).filter((k) => !k.startsWith(this.stageBase) && k !== this.switchKey);
      await this.unlinkAll(old);
      await this.main.set(this.switchKey, 'rename');
      phase = 'rename';
    }
    if (phase !== 'rename') throw new Error(`${this.description}: unknown restore phase ${JSON.stringify(phase)} in ${this.switchKey}`);
    const staged = await this.scanKeys(this.stageBase);
    for (let i = 0; i < staged.length; i += pageRecordsMax) {
      const batch = this.main.pipeline();
      for (const k of staged.slice(i, i + pageRecordsMax)) batch.rename(k, this.base + k.slice(this.stageBase.length));
      checkExec(await batch.exec());
    }
    checkExec(await this.main.multi().set(this.epochKey, randomBytes(8).toString('hex')).del(this.switchKey).exec());
    return true;
  }

  private async unlinkAll(keys: readonly string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += pageRecordsMax) await this.main.unlink(...keys.slice(i, i + pageRecordsMax));
  }

  /** Deletes this volume's keys only (SCAN by prefix, never FLUSHDB). */
  protected async doReset(): Promise<void> {
    const keys = await this.scanKeys(this.base);
    for (let i = 0; i < keys.length; i += pageRecordsMax) await this.main.unlink(...keys.slice(i, i + pageRecordsMax));
    await this.main.set(this.epochKey, randomBytes(8).toString('hex'));
  }

  /** Every key starting with `prefix`, deduplicated (SCAN may repeat keys). */
  private async scanKeys(prefix: string): Promise<string[]> {
    const pattern = prefix.replace(/[*?[\]\\]/g, '\\$&') + '*';
    const nodes: Redis[] = this.main instanceof Cluster ? this.main.nodes('master') : [this.main];
    const keys = new Set<string>();
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, batch] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', pageRecordsMax);
        for (const k of batch) keys.add(k);
        cursor = next;
      } while (cursor !== '0');
    }
    return [...keys];
  }

  protected async doClose(): Promise<void> {
    await Promise.all([this.pool.close(), quit(this.main)]);
  }
}

/** A log list element: the entry's time and ops, as JSON {time, ops} (the ops' JSON encoded once by the core). */
function encodeEntry(e: NewEntry): string {
  return `{"time":${e.time},"ops":${e.opsJson}}`;
}

// ------------------------------------------------------------------------------------------------ helpers

/** The reply of command `i` of a pipeline; throws its error. */
function pipelineResult(res: Array<[Error | null, unknown]> | null, i: number): unknown {
  if (res === null) throw new Error('assertion failed: pipeline returned null');
  const r = res[i];
  if (r === undefined) throw new Error(`assertion failed: pipeline has no reply ${i}`);
  if (r[0] !== null) throw r[0];
  return r[1];
}

/** Clears the connection's watches; false when the connection failed (drop it). */
function unwatch(c: Client): Promise<boolean> {
  return c.unwatch().then(
    () => true,
    () => false,
  );
}

/** A runtime error inside EXEC does not undo the other commands: report it loudly. */
function checkExec(res: Array<[Error | null, unknown]> | null): void {
  for (const r of res ?? []) if (r[0] !== null) throw new Error(`redis command failed inside a transaction: ${r[0].message}`, { cause: r[0] });
}

/** 64-bit replies (INCR, Lua numbers, strings) become JS numbers here, and only when exact. */
function toSafeInt(v: unknown, what: string): number {
  if (v === null || v === undefined) return 0;
  const n = typeof v === 'number' ? v : Number(v);
  assertSafeInt(n, what);
  return n;
}

function assertSafeInt(n: number, what: string): void {
  if (!Number.isSafeInteger(n)) throw new Error(`assertion failed: ${what} ${n} is not a safe integer`);
}

