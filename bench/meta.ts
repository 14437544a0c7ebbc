/**
 * `npm run bench:meta`: metadata operations on each engine beside the engine's own speed, and the S3 store
 * beside the aws CLI, in one run on one machine. With BENCH_BASELINE=DIR (a checkout of the code to compare,
 * e.g. `git worktree add DIR main`), every metadata figure is measured for that code too, in the same run,
 * alternating with this code's, and printed beside it.
 *
 *   metadata   create / stat / readdir / rename / unlink through the SDK (`openVolume`), ops/s, with 1 and 8
 *              client processes (each its own volume client and its own directory; ops/s is all clients'
 *              operations over the wall time from the first start to the last finish). create = open(wx) +
 *              close. Four configurations:
 *                cache off   the lookup cache off (lookupCacheMs 0): every operation reaches the engine
 *                cache on    the lookup cache as a mount runs it (1 s): creates, then STAT_PASSES passes of stat
 *                            over the client's files (a hot tree; the first pass included)
 *                +1 ms/call  cache off, and the engine fault wrapper (FaultEngine) adding 1 ms before every
 *                            engine call (transaction or log call)
 *                +1 ms RTT   cache off, and a userspace TCP proxy (net/faultproxy.ts) adding 0.5 ms each way to
 *                            every round trip to Redis / PostgreSQL (a real network, where round trips dominate)
 *              For this code, the engine's requests per operation (meta/wire.ts) of the 1-client run.
 *   raw engine redis-benchmark: SET, and an EVAL that does what a Ferry transaction does at least (HSET a
 *              record, INCR a counter), -c 1 and -c 8. pgbench: a commit's shape (INSERT a record, UPDATE the
 *              log-state row), -c 1/-c 8.
 *   objects    put and get of 4 MiB and 64 KiB objects through the S3 store (10 in flight) and through
 *              `aws s3 cp --recursive` (its default: 10 in flight; the CLI's start-up is measured separately
 *              and not subtracted) against the same local s3rver. BENCH_OBJECTS=0 leaves them out.
 *
 * Needs Redis on 127.0.0.1:6379 (uses database 13, keys under one prefix, removed after) and PostgreSQL on
 * 127.0.0.1:5432 (database test, a schema of its own, dropped after); an engine that is not there is left out
 * of the table with a note. BENCH_SCALE=0.25 scales every count down; BENCH_CONFIGS=off,on,call,rtt picks
 * configurations; BENCH_ENGINES=sqlite,redis,postgres picks engines.
 *
 * Run as `node --import tsx bench/meta.ts`; `bench/meta.ts --worker CONFIG` is one client process.
 */

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatVolume, openMetaEngine, openObjectStore, openVolume } from '../src/index.js';
import type { MetaEngine } from '../src/meta/engine.js';
import { FaultEngine } from '../src/meta/faults.js';
import { FaultProxy } from '../src/net/faultproxy.js';
import type { ObjectStore } from '../src/object/store.js';
import { startS3Server } from '../test/helpers/s3server.js';
import { postgresEngine, redisEngine, type SharedEngine } from '../test/helpers/engines.js';

const scale = Number(process.env['BENCH_SCALE'] ?? '1');
const n = (base: number, min = 1): number => Math.max(min, Math.round(base * scale));
/** Files per client: one client does more, so that both runs last long enough to measure. */
const FILES_1 = n(1500, 50);
const FILES_8 = n(250, 20);
/** With 1 ms added per call or per round trip (each operation then takes milliseconds). */
const FILES_SLOW_1 = n(400, 30);
const FILES_SLOW_8 = n(100, 10);
/** readdir calls per client (of its own directory, holding its files). */
const READDIRS_1 = n(100, 5);
const READDIRS_8 = n(25, 3);
/** Passes of stat over a client's files with the lookup cache on. */
const STAT_PASSES = 5;
/** The lookup cache as a mount runs it (Meta's default). */
const LOOKUP_CACHE_MS = 1000;
const PHASES = ['create', 'stat', 'readdir', 'rename', 'unlink'] as const;
type Phase = (typeof PHASES)[number];
/** Seconds each pgbench run lasts; operations each redis-benchmark run does. */
const PGBENCH_SECONDS = Math.max(2, Math.round(5 * scale));
const REDIS_BENCH_OPS = n(50_000, 5000);
const OBJ_4M = n(32, 4);
const OBJ_64K = n(320, 20);
const S3_IN_FLIGHT = 10;
const MiB = 1 << 20;

interface Config {
  key: 'off' | 'on' | 'call' | 'rtt';
  title: string;
  phases: readonly Phase[];
  lookupCacheMs: number;
  callLatencyMs: number;
  /** One-way delay the TCP proxy adds, ms (0: no proxy). */
  proxyOneWayMs: number;
  statPasses: number;
  slow: boolean;
}

const CONFIGS: Config[] = [
  { key: 'off', title: 'lookup cache off', phases: PHASES, lookupCacheMs: 0, callLatencyMs: 0, proxyOneWayMs: 0, statPasses: 1, slow: false },
  { key: 'on', title: `lookup cache on (${LOOKUP_CACHE_MS} ms, as a mount); stat: ${STAT_PASSES} passes`, phases: ['create', 'stat'], lookupCacheMs: LOOKUP_CACHE_MS, callLatencyMs: 0, proxyOneWayMs: 0, statPasses: STAT_PASSES, slow: false },
  { key: 'call', title: 'cache off, +1 ms per engine call (FaultEngine)', phases: ['create', 'stat', 'rename', 'unlink'], lookupCacheMs: 0, callLatencyMs: 1, proxyOneWayMs: 0, statPasses: 1, slow: true },
  { key: 'rtt', title: 'cache off, +1 ms per round trip (TCP proxy, 0.5 ms each way)', phases: ['create', 'stat', 'rename', 'unlink'], lookupCacheMs: 0, callLatencyMs: 0, proxyOneWayMs: 0.5, statPasses: 1, slow: true },
];

// ---------------------------------------------------------------- worker (one client process)

interface WorkerConfig {
  url: string;
  dir: string;
  files: number;
  readdirs: number;
  lookupCacheMs: number;
  callLatencyMs: number;
  statPasses: number;
}

/** One phase's result: operations, their span, and the engine's requests over it (this code only). */
interface PhaseResult {
  phase: Phase;
  ops: number;
  start: number;
  end: number;
  requests?: number | undefined;
}

async function worker(config: WorkerConfig): Promise<void> {
  let engine: MetaEngine | undefined;
  const vol = await openVolume(config.url, {
    lookupCacheMs: config.lookupCacheMs,
    heartbeatMs: 0,
    uid: 0,
    gid: 0,
    wrapEngine: (e) => {
      engine = e;
      return config.callLatencyMs > 0 ? new FaultEngine(e, { seed: 1, latencyMs: [config.callLatencyMs, config.callLatencyMs] }) : e;
    },
  });
  // The engine's request counter (meta/wire.ts), where the code measured has one.
  const requests = (): number | undefined => (engine as { wire?: { requests: number } } | undefined)?.wire?.requests;
  await vol.mkdir(config.dir, { recursive: true });
  const name = (i: number, renamed = false): string => `${config.dir}/${renamed ? 'r' : 'f'}${i}`;
  const run: Record<Phase, (i: number) => Promise<unknown>> = {
    create: async (i) => (await vol.open(name(i), 'wx')).close(),
    stat: (i) => vol.stat(name(i % config.files)),
    readdir: () => vol.readdir(config.dir),
    rename: (i) => vol.rename(name(i), name(i, true)),
    unlink: (i) => vol.unlink(name(i, true)),
  };
  process.stdout.write('ready\n');
  let buffered = '';
  for await (const chunk of process.stdin) {
    buffered += String(chunk);
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const phase = buffered.substring(0, nl) as Phase | 'exit';
      buffered = buffered.substring(nl + 1);
      if (phase === 'exit') {
        await vol.close();
        process.exit(0);
      }
      const count = phase === 'readdir' ? config.readdirs : phase === 'stat' ? config.files * config.statPasses : config.files;
      const r0 = requests();
      const start = performance.timeOrigin + performance.now();
      for (let i = 0; i < count; i++) await run[phase](i);
      const end = performance.timeOrigin + performance.now();
      const r1 = requests();
      const result: PhaseResult = { phase, ops: count, start, end, requests: r0 === undefined || r1 === undefined ? undefined : r1 - r0 };
      process.stdout.write(JSON.stringify(result) + '\n');
    }
  }
}

// ---------------------------------------------------------------- driver

const SELF = fileURLToPath(import.meta.url);

class Worker {
  readonly #child;
  #lines: string[] = [];
  #waiters: Array<(line: string) => void> = [];

  constructor(script: string, config: WorkerConfig) {
    this.#child = spawn(process.execPath, ['--import', 'tsx', script, '--worker', JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'inherit'] });
    let buf = '';
    this.#child.stdout.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.substring(0, nl);
        buf = buf.substring(nl + 1);
        const w = this.#waiters.shift();
        if (w !== undefined) w(line);
        else this.#lines.push(line);
      }
    });
  }

  next(): Promise<string> {
    const l = this.#lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((resolve, reject) => {
      this.#waiters.push(resolve);
      this.#child.once('exit', (code) => reject(new Error(`bench worker exited (${code})`)));
    });
  }

  send(line: string): void {
    this.#child.stdin.write(line + '\n');
  }

  async exit(): Promise<void> {
    if (this.#child.exitCode !== null) return;
    const done = new Promise((r) => this.#child.once('exit', r));
    this.send('exit');
    await done;
  }
}

/** Per phase: ops/s of all clients together, and requests per operation (undefined: not counted). */
type Figures = Partial<Record<Phase, { rate: number; requests: number | undefined }>>;

/** The phases of `config` with `clients` worker processes (running `script`) on the volume at url. */
async function metaOps(script: string, url: string, clients: number, config: Config): Promise<Figures> {
  const files = config.slow ? (clients === 1 ? FILES_SLOW_1 : FILES_SLOW_8) : clients === 1 ? FILES_1 : FILES_8;
  const readdirs = clients === 1 ? READDIRS_1 : READDIRS_8;
  const run = randomBytes(3).toString('hex');
  const base = { url, files, readdirs, lookupCacheMs: config.lookupCacheMs, callLatencyMs: config.callLatencyMs, statPasses: config.statPasses };
  const workers = Array.from({ length: clients }, (_, i) => new Worker(script, { ...base, dir: `/bench-${run}/c${i}` }));
  const out: Figures = {};
  try {
    for (const w of workers) if ((await w.next()) !== 'ready') throw new Error('bench worker did not start');
    for (const phase of config.phases) {
      for (const w of workers) w.send(phase);
      const results = await Promise.all(workers.map(async (w) => JSON.parse(await w.next()) as PhaseResult));
      const wall = Math.max(...results.map((r) => r.end)) - Math.min(...results.map((r) => r.start));
      const ops = results.reduce((s, r) => s + r.ops, 0);
      const counted = results.every((r) => r.requests !== undefined);
      out[phase] = { rate: (ops / wall) * 1000, requests: counted ? results.reduce((s, r) => s + r.requests!, 0) / ops : undefined };
    }
  } finally {
    await Promise.all(workers.map((w) => w.exit()));
  }
  return out;
}

async function formatted(url: string, bucket: string): Promise<void> {
  const e = await openMetaEngine(url, { create: true });
  try {
    await formatVolume(e, { name: 'bench', storage: `file://${bucket}`, blockBytes: 4 * MiB, compression: 'none', trashDays: 0 });
  } finally {
    await e.close();
  }
}

function sh(cmd: string, args: string[], env?: NodeJS.ProcessEnv): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: env ?? process.env, maxBuffer: 16 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr}`);
  return r.stdout;
}

function which(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** requests per second from `redis-benchmark -q` (the last figure printed). */
function redisBench(clients: number, args: string[]): number {
  const out = sh('redis-benchmark', ['-h', '127.0.0.1', '-p', '6379', '--dbnum', '13', '-n', String(REDIS_BENCH_OPS), '-c', String(clients), '-q', ...args]);
  const all = [...out.matchAll(/([\d.]+) requests per second/g)];
  if (all.length === 0) throw new Error(`redis-benchmark printed no rate: ${out}`);
  return Number(all.at(-1)![1]);
}

async function rawRedis(): Promise<Array<[string, string, string]>> {
  const prefix = `ferrybench-${randomBytes(3).toString('hex')}`;
  const txn = `redis.call('HSET', KEYS[1], ARGV[1], 'record'); return redis.call('INCR', KEYS[2])`;
  const rows: Array<[string, string, string]> = [];
  try {
    const set = [1, 8].map((c) => redisBench(c, ['set', `${prefix}:k`, 'value']));
    rows.push(['redis-benchmark SET', fmt(set[0]!), fmt(set[1]!)]);
    const ev = [1, 8].map((c) => redisBench(c, ['-r', '1000000', 'eval', txn, '2', `${prefix}:h`, `${prefix}:c`, '__rand_int__']));
    rows.push(['redis-benchmark EVAL hset+incr', fmt(ev[0]!), fmt(ev[1]!)]);
  } finally {
    sh('redis-cli', ['-n', '13', 'del', `${prefix}:k`, `${prefix}:h`, `${prefix}:c`]);
  }
  return rows;
}

async function rawPostgres(dir: string): Promise<Array<[string, string, string]>> {
  const schema = `ferrybench_${randomBytes(3).toString('hex')}`;
  const base = process.env['FERRY_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
  sh('psql', [base, '-q', '-c', `CREATE SCHEMA ${schema}; CREATE TABLE ${schema}.rec (id bigserial PRIMARY KEY, v text); CREATE TABLE ${schema}.state (id int PRIMARY KEY, last bigint); INSERT INTO ${schema}.state VALUES (0, 0);`]);
  const script = path.join(dir, 'ferry-txn.sql');
  // A commit's shape: a record written and the log-state row updated, in one transaction.
  await fs.writeFile(script, `BEGIN;\nINSERT INTO ${schema}.rec (v) VALUES ('record');\nUPDATE ${schema}.state SET last = last + 1 WHERE id = 0;\nEND;\n`);
  try {
    const tps = [1, 8].map((c) => {
      const out = sh('pgbench', ['-n', '-f', script, '-c', String(c), '-j', String(Math.min(c, 2)), '-T', String(PGBENCH_SECONDS), base]);
      const m = /tps = ([\d.]+)/.exec(out);
      if (m === null) throw new Error(`pgbench printed no tps: ${out}`);
      return Number(m[1]);
    });
    return [['pgbench insert+update txn', fmt(tps[0]!), fmt(tps[1]!)]];
  } finally {
    sh('psql', [base, '-q', '-c', `DROP SCHEMA ${schema} CASCADE`]);
  }
}

function fmt(v: number): string {
  return v >= 100 ? v.toFixed(0) : v.toFixed(1);
}

async function pooled(count: number, inFlight: number, fn: (i: number) => Promise<void>): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < count) await fn(next++);
    }),
  );
  return (performance.now() - t0) / 1000;
}

/** Put and get rows (MiB/s and objects/s) for the S3 store and the aws CLI. */
async function objects(dir: string): Promise<{ rows: string[][]; notes: string[] }> {
  const server = await startS3Server({ buckets: ['bench'] });
  const rows: string[][] = [];
  const notes: string[] = [];
  let store: ObjectStore | undefined;
  try {
    store = await openObjectStore(server.url('ferry/'));
    const sizes: Array<[string, number, number]> = [
      ['4 MiB', 4 * MiB, OBJ_4M],
      ['64 KiB', 64 << 10, OBJ_64K],
    ];
    const cell = (bytes: number, count: number, secs: number): string => `${(bytes * count / MiB / secs).toFixed(0)} MiB/s, ${fmt(count / secs)}/s`;
    const hasAws = which('aws');
    // The aws CLI gets s3rver's built-in key and nothing from this machine's AWS configuration; the
    // endpoint is plain http, so the environment's AWS_CA_BUNDLE is left out (the CLI would try to load it).
    const awsEnv: NodeJS.ProcessEnv = { PATH: process.env['PATH'], HOME: process.env['HOME'], AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_DEFAULT_REGION: 'us-east-1', AWS_CONFIG_FILE: '/dev/null', AWS_SHARED_CREDENTIALS_FILE: '/dev/null' };
    const aws = (...args: string[]): number => {
      const t0 = performance.now();
      sh('aws', ['--endpoint-url', server.endpoint, ...args], awsEnv);
      return (performance.now() - t0) / 1000;
    };
    if (hasAws) {
      aws('s3', 'ls', 's3://bench/');
      notes.push(`aws CLI start-up + one request (aws s3 ls): ${aws('s3', 'ls', 's3://bench/').toFixed(2)} s, included in its figures`);
    } else {
      notes.push('aws CLI not found: its column is empty');
    }
    for (const [label, bytes, count] of sizes) {
      const data = Array.from({ length: count }, () => randomBytes(bytes));
      const s = store;
      const put = await pooled(count, S3_IN_FLIGHT, (i) => s.put(`${label.replace(' ', '')}/o${i}`, data[i]!));
      const get = await pooled(count, S3_IN_FLIGHT, async (i) => {
        const b = await s.get(`${label.replace(' ', '')}/o${i}`);
        if (b.length !== bytes) throw new Error(`get returned ${b.length} bytes`);
      });
      let awsPut = '';
      let awsGet = '';
      if (hasAws) {
        const src = path.join(dir, `aws-src-${bytes}`);
        const dst = path.join(dir, `aws-dst-${bytes}`);
        await fs.mkdir(src);
        for (let i = 0; i < count; i++) await fs.writeFile(path.join(src, `o${i}`), data[i]!);
        const key = `s3://bench/aws/${label.replace(' ', '')}/`;
        awsPut = cell(bytes, count, aws('s3', 'cp', '--recursive', '--quiet', src, key));
        awsGet = cell(bytes, count, aws('s3', 'cp', '--recursive', '--quiet', key, dst));
        const got = await fs.readdir(dst);
        if (got.length !== count) throw new Error(`aws s3 cp fetched ${got.length} of ${count} objects`);
      }
      rows.push([`put ${count} x ${label}`, cell(bytes, count, put), awsPut]);
      rows.push([`get ${count} x ${label}`, cell(bytes, count, get), awsGet]);
    }
  } finally {
    await store?.close();
    await server.stop();
  }
  return { rows, notes };
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** The metadata URL through the proxy: the same URL with the proxy's port. */
function viaProxy(url: string, port: number): string {
  const u = new URL(url);
  u.port = String(port);
  return u.toString();
}

interface EngineUnderBench {
  name: string;
  /** A fresh, empty volume location and its cleanup. */
  open(): Promise<{ url: string; cleanup(): Promise<void> }>;
  /** The server's port (for the proxy); undefined for SQLite. */
  port: number | undefined;
  raw?: () => Promise<Array<[string, string, string]>>;
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-bench-meta-'));
  const notes: string[] = [];
  const wanted = (env: string, all: string[]): string[] => (process.env[env] ?? all.join(',')).split(',').map((x) => x.trim()).filter((x) => x !== '');
  const configs = CONFIGS.filter((c) => wanted('BENCH_CONFIGS', CONFIGS.map((x) => x.key)).includes(c.key));
  const engineNames = wanted('BENCH_ENGINES', ['sqlite', 'redis', 'postgres']);
  // The code to compare: this bench file copied into its tree runs its src/ (workers import ../src/).
  const baselineDir = process.env['BENCH_BASELINE'];
  const trees: Array<{ label: string; script: string }> = [];
  if (baselineDir !== undefined && baselineDir !== '') {
    const script = path.join(path.resolve(baselineDir), 'bench', '.meta-bench-worker.ts');
    await fs.copyFile(SELF, script);
    trees.push({ label: 'before', script });
  }
  trees.push({ label: baselineDir ? 'after' : 'ops/s', script: SELF });
  console.log(`ferry bench:meta: ${os.cpus().length} cores, Node ${process.version}, scale ${scale}, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  console.log(`files per client: ${FILES_1} (1 client), ${FILES_8} (8 clients); with 1 ms added: ${FILES_SLOW_1} / ${FILES_SLOW_8}`);
  if (baselineDir) console.log(`before = ${baselineDir}, after = this tree; each figure's runs alternate`);
  console.log('');
  const tables = new Map<Config['key'], string[][]>(configs.map((c) => [c.key, []]));
  const rawRows: string[][] = [];
  try {
    const engines: EngineUnderBench[] = [];
    if (engineNames.includes('sqlite')) {
      let k = 0;
      engines.push({ name: 'sqlite', port: undefined, open: () => Promise.resolve({ url: `sqlite://${root}/meta-${k++}.db`, cleanup: () => Promise.resolve() }) });
    }
    const shared: Array<[SharedEngine, () => Promise<Array<[string, string, string]>>, string]> = [
      [redisEngine(13), rawRedis, 'redis-benchmark'],
      [postgresEngine(), () => rawPostgres(root), 'pgbench'],
    ];
    for (const [e, raw, tool] of shared) {
      if (!engineNames.includes(e.name)) continue;
      const down = await e.unreachable();
      if (down !== undefined) notes.push(`${e.name} left out: ${down}`);
      else if (!which(tool)) notes.push(`${e.name}: ${tool} not found, raw speed left out`);
      if (down === undefined) engines.push({ name: e.name, open: () => e.fresh(), port: Number(new URL(e.base).port || (e.name === 'redis' ? 6379 : 5432)), ...(which(tool) ? { raw } : {}) });
    }
    for (const e of engines) {
      for (const config of configs) {
        if (config.proxyOneWayMs > 0 && e.port === undefined) continue;
        const proxy = config.proxyOneWayMs > 0 ? await FaultProxy.start({ targetPort: e.port!, upLatencyMs: config.proxyOneWayMs, downLatencyMs: config.proxyOneWayMs, seed: 1 }) : undefined;
        try {
          // figures[tree][clients]
          const figures = trees.map(() => new Map<number, Figures>());
          for (const clients of [1, 8]) {
            for (const [t, tree] of trees.entries()) {
              const { url, cleanup } = await e.open();
              try {
                await formatted(url, path.join(root, `bucket-${e.name}-${randomBytes(3).toString('hex')}`));
                figures[t]!.set(clients, await metaOps(tree.script, proxy === undefined ? url : viaProxy(url, proxy.port), clients, config));
              } finally {
                await cleanup();
              }
            }
          }
          const rows = tables.get(config.key)!;
          for (const p of config.phases) {
            const cell = (t: number, c: number): string => {
              const f = figures[t]!.get(c)?.[p];
              return f === undefined ? '' : fmt(f.rate);
            };
            const mine = figures[trees.length - 1]!;
            const one = mine.get(1)?.[p];
            const eight = mine.get(8)?.[p];
            rows.push([
              `${e.name} ${p}`,
              ...trees.map((_, t) => cell(t, 1)),
              ...trees.map((_, t) => cell(t, 8)),
              one === undefined || eight === undefined ? '' : `${(eight.rate / one.rate).toFixed(1)}x`,
              one?.requests === undefined ? '' : one.requests.toFixed(1),
            ]);
          }
          rows.push([]);
        } finally {
          await proxy?.close();
        }
      }
      if (e.raw !== undefined) for (const r of await e.raw()) rawRows.push([r[0], r[1], r[2]]);
    }
    const cols = (c: string): string[] => trees.map((t) => `${c} ${t.label}`);
    for (const config of configs) {
      const rows = tables.get(config.key)!.slice(0, -1);
      if (rows.length === 0) continue;
      console.log(table([`metadata ops/s (SDK, ${config.title})`, ...cols('1 client'), ...cols('8 clients'), '8÷1', 'requests/op'], rows) + '\n');
    }
    if (rawRows.length > 0) console.log(table(['engine alone, same run', '1 client', '8 clients'], rawRows) + '\n');
    notes.push('8÷1: ops/s of 8 clients (each in its own directory) over 1 client, this tree; requests/op: engine requests per operation, 1 client, this tree');
    if (process.env['BENCH_OBJECTS'] !== '0') {
      const obj = await objects(root);
      console.log(table(['objects vs local s3rver (10 in flight)', 'ferry S3 store', 'aws s3 cp --recursive'], obj.rows));
      notes.push(...obj.notes);
    }
    notes.push(`total time ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    console.log('\n' + notes.map((x) => `note: ${x}`).join('\n'));
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--worker') await worker(JSON.parse(process.argv[3]!) as WorkerConfig);
else await main();
