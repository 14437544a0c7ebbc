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
 * One string key per record (rather than one hash per part) so that a transaction's checks cover exactly the
 * records it read, and a write of one inode never conflicts with a transaction that read another. The part
 * length in the record key keeps "a:b"+"c" apart from "a"+"b:c".
 *
 * Transactions are optimistic, and every commit is one script run (EVALSHA), so it costs one round trip and
 * nothing is held between a transaction's reads and its commit:
 *
 *   reads    get = GET; scan = one script (READ_PART: ZRANGEBYLEX and the records' values, atomically);
 *            getFollowing = one script (READ_FOLLOWING: an entry and the inode it names). Reads
 *            issued together leave in one write (ioredis auto-pipelining). The attempt remembers what each
 *            read returned: the value of each record (or its absence) and each scanned range's members.
 *   commit   one script (COMMIT), atomic on the server: every remembered read is checked against the current
 *            state (a record's value, a range's members); if anything differs nothing is written and the
 *            attempt is a Conflict, run again by the core (meta/core.ts) after a jittered backoff. Otherwise
 *            the fence (the demotion record, meta/epoch.ts) when an entry is to be appended, the writes (SET +
 *            ZADD, DEL + ZREM), and the entry: INCR {p}:seq and RPUSH {p}:log, whose seq the script returns.
 *
 * Checking values rather than watching keys makes the transaction serializable at its commit point: every
 * value it read is the value at the moment its writes land. A value that changed and changed back passes,
 * rightly. A blind write (a record written without being read, like a session's usage record) is never
 * checked, so it never conflicts. When fn throws, the same script with no writes checks the reads: an error
 * raised from reads of different commits reruns fn, one raised from consistent reads is final.
 *
 * Connections: one for reads (readonly transactions, log reads, snapshots, maintenance; commands resent after
 * a reconnect, as reads are idempotent) and one for commit scripts, which never resends a command after a
 * reconnect: a commit whose answer was lost has an unknown outcome (EngineUnavailableError 'unknown'), and
 * must not be applied twice. Both pipeline the commands of concurrent transactions.
 *
 * The core's writer gate runs in 'contention' mode: after a first conflict a txn retries holding the
 * engine's mutex, and while anyone holds or waits for it, new writing txns of this process queue there too:
 * under contention a process degrades to one writer at a time instead of letting its own transactions
 * starve each other. Readonly txns read without checks (read committed per call, as in the SQLite engine).
 *
 * The log append is part of the commit script, so seq and list length move together with the writes and stay
 * gapless, in commit order (Redis runs one script at a time). applyLog is one script as well (APPLY_LOG).
 *
 * Snapshot: Redis has no MVCC. The snapshot reads seq s0, reads every logged part without locking (a fuzzy
 * copy, buffered in memory), reads seq s1, then overlays the changelog entries s0+1..s1. A record unchanged
 * during the copy was read correctly; one changed during it appears in those entries, whose ops are the
 * resulting states, so the last one wins. The result is exactly the state at s1, without blocking writers
 * and without retries unless a reset/restore (epoch) or a trim of those entries interferes (the snapshot
 * registers a consumer of its own for its duration, so only the retention bound can trim them). Limit: the
 * copy is held in client memory (about the JSON size of the volume's logged records) and costs a round trip
 * per page of a part; dumping a volume of many millions of records wants a replica or an RDB instead.
 *
 * Cluster: every key shares one hash tag, so one slot and one node hold the volume (no sharding of one
 * volume; several volumes spread over the nodes); scripts name the keys they touch, except READ_PART, which
 * builds its record keys from the part's prefix (same slot). Tested here: standalone only; Sentinel and
 * Cluster are tested for URL parsing and client construction.
 */

import { randomBytes } from 'node:crypto';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { UsageError } from '../errors.js';
import { maskUrl } from '../util/url.js';
import { compareKeys, KINDS, LogTrimmedError, UNLOGGED_KINDS, type Json, type Kind, type LogBounds, type LogEntry, type LogOp, type ScanOptions } from './engine.js';
import { checkNextSeq, Conflict, Demoted, EngineCore, isSocketError, type CoreOptions, type NewEntry, type Reader, type ReplayEntry, type WriteAttempt } from './core.js';
import { Mutex } from '../util/mutex.js';
import { countRedisCommands } from './wire.js';
import { DEMOTION_ADDRESS, type DemotionRec } from './epoch.js';
import { refKeyOf } from './overlay.js';
import { SpeculativeReads } from './speculate.js';

/** Attempts of one optimistic transaction before it fails with TxnConflictError. */
export const txnAttemptsMax = 50;
/** The jittered pause between attempts: its ceiling starts at 1 ms and doubles up to this (util/sleep.ts). */
export const txnBackoffMsMax = 100;
/**
 * The URL's `pool` option, accepted for URLs written for earlier versions (which held a connection per
 * writing transaction); the engine now uses two connections whatever it says.
 */
export const connectionsMaxDefault = 8;
export const connectionsMaxLimit = 64;
/** Records per ZRANGEBYLEX/MGET page in snapshot, per pipeline in restore and per UNLINK in reset. */
const pageRecordsMax = 1000;
/** Records per MGET inside READ_PART (Lua's unpack has a stack limit). */
const scriptMgetKeysMax = 500;
/** Snapshot attempts: only a concurrent reset/restore or a trim of the entries it needs forces another. */
const snapshotAttemptsMax = 5;
/** How long a connection attempt may take. */
const connectTimeoutMs = 5000;
/** A command without a reply after this fails (a commit's outcome is then unknown). */
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

/**
 * A transaction's commit (see the file comment). KEYS[1] seq, KEYS[2] log, KEYS[3] the demotion record, then
 * the keys of each group; ARGV[1] the entry's JSON ('' = append none), ARGV[2..5] how many gets, scans, puts
 * and dels follow:
 *   get   KEYS record                ARGV the value read ('' = it was missing: JSON is never empty)
 *   scan  KEYS zset                  ARGV min, limit (-1 = none), n, the n members read
 *   put   KEYS record, zset          ARGV member, value
 *   del   KEYS record, zset          ARGV member
 * Answers {1, seq} (seq 0 without an entry), {0} when a read no longer holds (nothing written), {2, record}
 * when the engine is demoted and an entry was to be appended (nothing written).
 */
const COMMIT = `
local k, a = 4, 6
for i = 1, tonumber(ARGV[2]) do
  if (redis.call('GET', KEYS[k]) or '') ~= ARGV[a] then return {0} end
  k = k + 1
  a = a + 1
end
for i = 1, tonumber(ARGV[3]) do
  local limit = tonumber(ARGV[a + 1])
  local got
  if limit < 0 then got = redis.call('ZRANGEBYLEX', KEYS[k], ARGV[a], '+')
  else got = redis.call('ZRANGEBYLEX', KEYS[k], ARGV[a], '+', 'LIMIT', 0, limit) end
  local n = tonumber(ARGV[a + 2])
  if #got ~= n then return {0} end
  for j = 1, n do
    if got[j] ~= ARGV[a + 2 + j] then return {0} end
  end
  k = k + 1
  a = a + 3 + n
end
if ARGV[1] ~= '' then
  local d = redis.call('GET', KEYS[3])
  if d then return {2, d} end
end
for i = 1, tonumber(ARGV[4]) do
  redis.call('SET', KEYS[k], ARGV[a + 1])
  redis.call('ZADD', KEYS[k + 1], 0, ARGV[a])
  k = k + 2
  a = a + 2
end
for i = 1, tonumber(ARGV[5]) do
  redis.call('DEL', KEYS[k])
  redis.call('ZREM', KEYS[k + 1], ARGV[a])
  k = k + 2
  a = a + 1
end
if ARGV[1] == '' then return {1, 0} end
local seq = redis.call('INCR', KEYS[1])
redis.call('RPUSH', KEYS[2], ARGV[1])
return {1, seq}`;

/**
 * One range of a part with its values, atomically. KEYS[1] the zset; ARGV min, limit (-1 = none), the
 * part's record key prefix, the MGET page size. Answers {members, values}.
 */
const READ_PART = `
local m
local limit = tonumber(ARGV[2])
if limit < 0 then m = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+')
else m = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, limit) end
local v = {}
local page = tonumber(ARGV[4])
for i = 1, #m, page do
  local keys = {}
  for j = i, math.min(i + page - 1, #m) do keys[#keys + 1] = ARGV[3] .. m[j] end
  local got = redis.call('MGET', unpack(keys))
  for j = 1, #got do v[#v + 1] = got[j] end
end
return {m, v}`;

/**
 * A record and the record one of its fields names (Txn.getFollowing), atomically. KEYS[1] the record; ARGV
 * the field, the named records' key prefix. Answers {value, key, value of the named record} (false where
 * missing: no record, not an object, or the field holds no integer or string).
 */
const READ_FOLLOWING = `
local a = redis.call('GET', KEYS[1])
if not a then return {false, false, false} end
local ok, obj = pcall(cjson.decode, a)
if not ok or type(obj) ~= 'table' then return {a, false, false} end
local v = obj[ARGV[1]]
local k
if type(v) == 'number' then
  if v ~= math.floor(v) or v > 9007199254740991 or v < -9007199254740991 then return {a, false, false} end
  k = string.format('%d', v)
elseif type(v) == 'string' then
  k = v
else
  return {a, false, false}
end
return {a, k, redis.call('GET', ARGV[2] .. k) or false}`;

/**
 * applyLog's entries, atomically. KEYS[1] seq, KEYS[2] log, then a record and a zset per op; ARGV[1] the seq
 * this engine must be at (the first entry's minus one), ARGV[2] the last entry's seq, ARGV[3] the number of
 * ops, then member and value ('' = delete) per op, then each entry's JSON. Answers the seq it found when it
 * is not the one expected (nothing written), else -1.
 */
const APPLY_LOG = `
local at = tonumber(redis.call('GET', KEYS[1]) or '0')
if at ~= tonumber(ARGV[1]) then return at end
local n = tonumber(ARGV[3])
local k, a = 3, 4
for i = 1, n do
  if ARGV[a + 1] == '' then
    redis.call('DEL', KEYS[k])
    redis.call('ZREM', KEYS[k + 1], ARGV[a])
  else
    redis.call('SET', KEYS[k], ARGV[a + 1])
    redis.call('ZADD', KEYS[k + 1], 0, ARGV[a])
  end
  k = k + 2
  a = a + 2
end
for i = a, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
redis.call('SET', KEYS[1], ARGV[2])
return -1`;

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

// ------------------------------------------------------------------------------------------------ engine helpers

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
  /** Reads: readonly txns, the reads of writing txns, log reads, snapshots, maintenance (resends after a reconnect). */
  private readonly main: Client & Scripts;
  /** Commit and applyLog scripts only: never resends a command after a reconnect (see the file comment). */
  private readonly writer: Client & Scripts;
  /** The connections' latest error (e.g. ECONNREFUSED), for messages about failed commands. */
  private lastError: Error | undefined;
  private readonly base: string;
  private readonly seqKey: string;
  private readonly floorKey: string;
  private readonly logKey: string;
  private readonly epochKey: string;
  private readonly demotedKey: string;
  /** Where a restore writes the new volume before switching to it, and the key that marks the switch. */
  private readonly stageBase: string;
  private readonly switchKey: string;
  private readonly reader: Reader;
  /** What this client recently read or wrote, raw (null: missing), for first attempts to speculate on. */
  readonly recent = new SpeculativeReads<string | null>();

  constructor(target: RedisTarget, options: RedisEngineOptions = {}) {
    super({ attemptsMax: txnAttemptsMax, backoff: { baseMs: 1, capMs: txnBackoffMsMax }, serialize: 'contention', lock: new Mutex() }, options);
    this.target = target;
    this.description = target.description;
    this.base = `{${target.prefix}}:`;
    this.seqKey = this.base + 'seq';
    this.floorKey = this.base + 'floor';
    this.logKey = this.base + 'log';
    this.epochKey = this.base + 'epoch';
    this.demotedKey = this.recKey(DEMOTION_ADDRESS.kind, DEMOTION_ADDRESS.part, DEMOTION_ADDRESS.key);
    this.stageBase = this.base + 'restore:';
    this.switchKey = this.base + 'restore-switch';
    const lazyConnect = options.lazy ?? false;
    // Commands issued in one turn of the event loop (a transaction's independent reads, concurrent
    // transactions' commits) leave in one write.
    this.main = withScripts(makeClient(target, { maxRetriesPerRequest: 3, lazyConnect, enableAutoPipelining: true }));
    this.writer = withScripts(makeClient(target, { autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 3, lazyConnect, enableAutoPipelining: true }));
    for (const c of [this.main, this.writer]) {
      countRedisCommands(c, this.wire);
      // Errors reach the callers through their commands; without a listener ioredis logs every reconnect failure.
      c.on('error', (err: Error) => {
        this.lastError = err;
      });
    }
    this.reader = {
      get: async (kind, part, key) => {
        const rk = this.recKey(kind, part, key);
        const raw = await this.main.get(rk);
        this.recent.remember(rk, raw, raw ?? undefined);
        return parse(raw);
      },
      scan: async (kind, part, opts, extra) => (await this.readPart(kind, part, opts, extra))?.rows ?? [],
      getFollowing: async (kind, part, key, field, refKind, refPart) => {
        const r = await this.readFollowing(kind, part, key, field, refKind, refPart);
        this.recent.remember(this.recKey(kind, part, key), r.raw, r.raw ?? undefined);
        if (r.refKey !== undefined) this.recent.remember(this.recKey(refKind, refPart, r.refKey), r.refRaw, r.refRaw ?? undefined);
        return { value: parse(r.raw), refKey: r.refKey, ref: parse(r.refRaw) };
      },
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

  /**
   * One optimistic attempt: plain reads, remembered, then the COMMIT script that checks them (see the file
   * comment). A first attempt takes what this client read of a record less than a second ago instead of
   * reading it again (meta/speculate.ts): the script checks it like any read.
   */
  protected beginWrite(n: number): Promise<WriteAttempt> {
    const reads = new ReadSet();
    const speculate = n === 1;
    const speculated = new Set<string>();
    const recent = this.recent;
    const reader: Reader = {
      get: async (kind, part, key) => {
        const rk = this.recKey(kind, part, key);
        const hit = speculate ? recent.fresh(rk) : undefined;
        if (hit !== undefined) {
          speculated.add(rk);
          reads.got(rk, hit.ver);
          return parse(hit.raw ?? null);
        }
        const raw = await this.main.get(rk);
        reads.got(rk, raw);
        recent.remember(rk, raw, raw ?? undefined);
        return parse(raw);
      },
      scan: async (kind, part, opts, extra) => {
        const r = await this.readPart(kind, part, opts, extra);
        if (r === undefined) return [];
        reads.scanned({ zk: r.zk, min: r.min, limit: r.limit, members: r.members });
        r.members.forEach((m, i) => reads.got(this.recKey(kind, part, m), r.values[i] ?? null));
        return r.rows;
      },
      getFollowing: async (kind, part, key, field, refKind, refPart) => {
        const rk = this.recKey(kind, part, key);
        const hit = speculate ? recent.fresh(rk) : undefined;
        if (hit !== undefined) {
          const value = parse(hit.raw ?? null);
          const refKey = refKeyOf(value, field);
          const ref = refKey === undefined ? undefined : recent.fresh(this.recKey(refKind, refPart, refKey));
          if (refKey === undefined || ref !== undefined) {
            speculated.add(rk);
            reads.got(rk, hit.ver);
            if (refKey !== undefined) {
              speculated.add(this.recKey(refKind, refPart, refKey));
              reads.got(this.recKey(refKind, refPart, refKey), ref!.ver);
            }
            return { value, refKey, ref: ref === undefined ? undefined : parse(ref.raw ?? null) };
          }
        }
        const r = await this.readFollowing(kind, part, key, field, refKind, refPart);
        reads.got(rk, r.raw);
        recent.remember(rk, r.raw, r.raw ?? undefined);
        if (r.refKey !== undefined) {
          reads.got(this.recKey(refKind, refPart, r.refKey), r.refRaw);
          recent.remember(this.recKey(refKind, refPart, r.refKey), r.refRaw, r.refRaw ?? undefined);
        }
        return { value: parse(r.raw), refKey: r.refKey, ref: parse(r.refRaw) };
      },
    };
    const lost = (r: Conflict): Conflict => {
      // What this attempt read may be stale, speculated or not.
      for (const rk of reads.gets.keys()) recent.forget(rk);
      if (speculated.size > 0) recent.conflicted(speculated);
      return r;
    };
    return Promise.resolve({
      reader,
      failed: async () => {
        // fn may have failed only because its reads came from different commits (an entry naming an inode
        // that another client deleted since): checking them reruns fn then, instead of reporting an error that
        // a serial execution would not have raised. The check writes nothing: any connection may run it.
        if (reads.torn) return lost(new Conflict());
        if (reads.empty) return undefined;
        const r = await this.runCommit(this.main, reads, [], undefined);
        return r instanceof Conflict ? lost(r) : undefined;
      },
      commit: async (writes, entry) => {
        if (reads.torn) return lost(new Conflict());
        const r = await this.runCommit(this.writer, reads, writes, entry);
        if (r instanceof Conflict) return lost(r);
        // What it wrote is what the records hold now (the script stores exactly this JSON).
        if (!(r instanceof Demoted)) {
          for (const [kind, part, key, value] of writes) {
            const raw = value === null ? null : JSON.stringify(value);
            recent.remember(this.recKey(kind, part, key), raw, raw ?? undefined);
          }
        }
        return r;
      },
      end: () => undefined,
    });
  }

  /** The COMMIT script over `reads` and `writes` (no writes and no entry: a check only). */
  private async runCommit(c: Client & Scripts, reads: ReadSet, writes: readonly LogOp[], entry: NewEntry | undefined): Promise<number | undefined | Conflict | Demoted> {
    const keys: string[] = [this.seqKey, this.logKey, this.demotedKey];
    const args: Array<string | number> = [entry === undefined ? '' : encodeEntry(entry), reads.gets.size, reads.scans.length, 0, 0];
    for (const [rk, raw] of reads.gets) {
      keys.push(rk);
      args.push(raw ?? '');
    }
    for (const sc of reads.scans) {
      keys.push(sc.zk);
      args.push(sc.min, sc.limit, sc.members.length);
      for (const m of sc.members) args.push(m);
    }
    let puts = 0;
    for (const [kind, part, key, value] of writes) {
      if (value === null) continue;
      keys.push(this.recKey(kind, part, key), this.zsetKey(kind, part));
      args.push(key, JSON.stringify(value));
      puts++;
    }
    for (const [kind, part, key, value] of writes) {
      if (value !== null) continue;
      keys.push(this.recKey(kind, part, key), this.zsetKey(kind, part));
      args.push(key);
    }
    args[3] = puts;
    args[4] = writes.length - puts;
    const res = (await c.ferryCommit(keys.length, keys, args)) as [number, unknown?];
    switch (res[0]) {
      case 1:
        return entry === undefined ? undefined : toSafeInt(res[1], 'seq');
      case 0:
        return new Conflict();
      case 2:
        return new Demoted(JSON.parse(String(res[1])) as DemotionRec);
      default:
        throw new Error(`assertion failed: commit script answered ${JSON.stringify(res)}`);
    }
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

  /** READ_FOLLOWING: a record, the key its `field` names and that record, raw (see Txn.getFollowing). */
  private async readFollowing(
    kind: Kind,
    part: string,
    key: string,
    field: string,
    refKind: Kind,
    refPart: string,
  ): Promise<{ raw: string | null; refKey: string | undefined; refRaw: string | null }> {
    const [raw, refKey, refRaw] = (await this.main.ferryReadFollowing(1, this.recKey(kind, part, key), field, this.recKey(refKind, refPart, ''))) as [
      string | null,
      string | null,
      string | null,
    ];
    return { raw, refKey: refKey ?? undefined, refRaw: refKey === null ? null : refRaw };
  }

  /**
   * One range of a part and its values, in one round trip (READ_PART); undefined when the limit asks for
   * nothing. `extra`: rows beyond options.limit (see Reader.scan).
   */
  private async readPart(
    kind: Kind,
    part: string,
    options: ScanOptions | undefined,
    extra: number,
  ): Promise<{ zk: string; min: string; limit: number; members: string[]; values: Array<string | null>; rows: Array<[string, Json]> } | undefined> {
    const zk = this.zsetKey(kind, part);
    const min = options?.after === undefined ? '-' : '(' + options.after;
    const limit = options?.limit === undefined ? -1 : options.limit + extra;
    if (limit === 0 || limit < -1) return undefined;
    const prefix = this.recKey(kind, part, '');
    const [members, values] = (await this.main.ferryReadPart(1, zk, min, limit, prefix, scriptMgetKeysMax)) as [string[], Array<string | null>];
    if (values.length !== members.length) throw new Error(`assertion failed: READ_PART answered ${members.length} members and ${values.length} values`);
    const rows: Array<[string, Json]> = [];
    for (let i = 0; i < members.length; i++) {
      // Every member has its record: the scripts write both or neither.
      const raw = values[i];
      if (raw !== null && raw !== undefined) rows.push([members[i]!, JSON.parse(raw) as Json]);
    }
    return { zk, min, limit, members, values, rows };
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

  /** One APPLY_LOG script: the seq check, the writes, the entries and the new seq, atomically. */
  protected async doApplyLog(entries: ReplayEntry[]): Promise<void> {
    const keys: string[] = [this.seqKey, this.logKey];
    const args: Array<string | number> = [entries[0]!.seq - 1, entries[entries.length - 1]!.seq, 0];
    let ops = 0;
    for (const e of entries) {
      for (const [kind, part, key, value] of e.ops) {
        keys.push(this.recKey(kind, part, key), this.zsetKey(kind, part));
        args.push(key, value === null ? '' : JSON.stringify(value));
        ops++;
      }
    }
    args[2] = ops;
    for (const e of entries) args.push(encodeEntry(e));
    const at = toSafeInt(await this.writer.ferryApplyLog(keys.length, keys, args), 'seq');
    if (at !== -1) checkNextSeq(at, entries[0]!.seq);
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
          const page = (await this.readPart(kind, part, { after, limit: pageRecordsMax }, 0))?.rows ?? [];
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
    await Promise.all([quit(this.writer), quit(this.main)]);
  }
}

/** A log list element: the entry's time and ops, as JSON {time, ops} (the ops' JSON encoded once by the core). */
function encodeEntry(e: NewEntry): string {
  return `{"time":${e.time},"ops":${e.opsJson}}`;
}

// ------------------------------------------------------------------------------------------------ helpers

/** A GET's reply as a record value. */
function parse(raw: string | null): Json | undefined {
  return raw === null ? undefined : (JSON.parse(raw) as Json);
}

/** The scripts, as commands of a client (EVALSHA, and EVAL once when the server does not know the script). */
interface Scripts {
  ferryCommit(numKeys: number, keys: string[], args: Array<string | number>): Promise<unknown>;
  ferryReadPart(numKeys: 1, zset: string, min: string, limit: number, prefix: string, page: number): Promise<unknown>;
  ferryApplyLog(numKeys: number, keys: string[], args: Array<string | number>): Promise<unknown>;
  ferryReadFollowing(numKeys: 1, key: string, field: string, prefix: string): Promise<unknown>;
}

function withScripts(c: Client): Client & Scripts {
  c.defineCommand('ferryCommit', { lua: COMMIT });
  c.defineCommand('ferryReadPart', { lua: READ_PART });
  c.defineCommand('ferryApplyLog', { lua: APPLY_LOG });
  c.defineCommand('ferryReadFollowing', { lua: READ_FOLLOWING });
  return c as Client & Scripts;
}

/** What a writing attempt read, for the COMMIT script to check. */
class ReadSet {
  /** Record key → the value read (null: missing), first read wins. */
  readonly gets = new Map<string, string | null>();
  readonly scans: Array<{ zk: string; min: string; limit: number; members: string[] }> = [];
  /** Two reads of one record disagreed: the attempt saw two commits and must run again. */
  torn = false;

  got(rk: string, raw: string | null): void {
    const had = this.gets.get(rk);
    if (had === undefined) this.gets.set(rk, raw);
    else if (had !== raw) this.torn = true;
  }

  scanned(scan: { zk: string; min: string; limit: number; members: string[] }): void {
    this.scans.push(scan);
  }

  get empty(): boolean {
    return this.gets.size === 0 && this.scans.length === 0;
  }
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

