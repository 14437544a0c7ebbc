/**
 * `npm run bench:meta`: metadata operations on each engine beside the engine's own speed, and the S3 store
 * beside the aws CLI, in one run on one machine. Prints one table.
 *
 *   metadata   create / stat / readdir / rename / unlink through the SDK (`openVolume`), ops/s, with 1 and 8
 *              client processes (each its own volume client and its own directory; ops/s is all clients'
 *              operations over the wall time from the first start to the last finish). The lookup cache is
 *              off (lookupCacheMs 0) so every operation reaches the engine. create = open(wx) + close.
 *   raw engine redis-benchmark: SET, and an EVAL that does what a Ferry transaction does at least (HSET a
 *              record, INCR a counter), -c 1 and -c 8. pgbench: Ferry's transaction shape (REPEATABLE READ,
 *              LOCK TABLE of the log-state row's table, INSERT a record, UPDATE the counter row), -c 1/-c 8.
 *   objects    put and get of 4 MiB and 64 KiB objects through the S3 store (10 in flight) and through
 *              `aws s3 cp --recursive` (its default: 10 in flight; the CLI's start-up is measured separately
 *              and not subtracted) against the same local s3rver.
 *
 * Needs Redis on 127.0.0.1:6379 (uses database 13, keys under one prefix, removed after) and PostgreSQL on
 * 127.0.0.1:5432 (database test, a schema of its own, dropped after); an engine that is not there is left out
 * of the table with a note. BENCH_SCALE=0.25 scales every count down.
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
import type { ObjectStore } from '../src/object/store.js';
import { startS3Server } from '../test/helpers/s3server.js';
import { postgresEngine, redisEngine, type SharedEngine } from '../test/helpers/engines.js';

const scale = Number(process.env['BENCH_SCALE'] ?? '1');
const n = (base: number, min = 1): number => Math.max(min, Math.round(base * scale));
/** Files per client: one client does more, so that both runs last long enough to measure. */
const FILES_1 = n(1500, 50);
const FILES_8 = n(250, 20);
/** readdir calls per client (of its own directory, holding its files). */
const READDIRS_1 = n(100, 5);
const READDIRS_8 = n(25, 3);
const PHASES = ['create', 'stat', 'readdir', 'rename', 'unlink'] as const;
type Phase = (typeof PHASES)[number];
/** Seconds each pgbench run lasts; operations each redis-benchmark run does. */
const PGBENCH_SECONDS = Math.max(2, Math.round(5 * scale));
const REDIS_BENCH_OPS = n(50_000, 5000);
const OBJ_4M = n(32, 4);
const OBJ_64K = n(320, 20);
const S3_IN_FLIGHT = 10;
const MiB = 1 << 20;

// ---------------------------------------------------------------- worker (one client process)

interface WorkerConfig {
  url: string;
  dir: string;
  files: number;
  readdirs: number;
}

async function worker(config: WorkerConfig): Promise<void> {
  const vol = await openVolume(config.url, { lookupCacheMs: 0, heartbeatMs: 0, uid: 0, gid: 0 });
  await vol.mkdir(config.dir, { recursive: true });
  const name = (i: number, renamed = false): string => `${config.dir}/${renamed ? 'r' : 'f'}${i}`;
  const run: Record<Phase, (i: number) => Promise<unknown>> = {
    create: async (i) => (await vol.open(name(i), 'wx')).close(),
    stat: (i) => vol.stat(name(i)),
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
      const count = phase === 'readdir' ? config.readdirs : config.files;
      const start = performance.timeOrigin + performance.now();
      for (let i = 0; i < count; i++) await run[phase](i);
      const end = performance.timeOrigin + performance.now();
      process.stdout.write(JSON.stringify({ phase, ops: count, start, end }) + '\n');
    }
  }
}

// ---------------------------------------------------------------- driver

const SELF = fileURLToPath(import.meta.url);

class Worker {
  readonly #child;
  #lines: string[] = [];
  #waiters: Array<(line: string) => void> = [];

  constructor(config: WorkerConfig) {
    this.#child = spawn(process.execPath, ['--import', 'tsx', SELF, '--worker', JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'inherit'] });
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

/** Ops/s of each phase with `clients` worker processes on the volume at url. */
async function metaOps(url: string, clients: number): Promise<Record<Phase, number>> {
  const files = clients === 1 ? FILES_1 : FILES_8;
  const readdirs = clients === 1 ? READDIRS_1 : READDIRS_8;
  const run = randomBytes(3).toString('hex');
  const workers = Array.from({ length: clients }, (_, i) => new Worker({ url, dir: `/bench-${run}/c${i}`, files, readdirs }));
  const out = {} as Record<Phase, number>;
  try {
    for (const w of workers) if ((await w.next()) !== 'ready') throw new Error('bench worker did not start');
    for (const phase of PHASES) {
      for (const w of workers) w.send(phase);
      const results = await Promise.all(workers.map(async (w) => JSON.parse(await w.next()) as { ops: number; start: number; end: number }));
      const wall = Math.max(...results.map((r) => r.end)) - Math.min(...results.map((r) => r.start));
      out[phase] = (results.reduce((s, r) => s + r.ops, 0) / wall) * 1000;
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
  await fs.writeFile(
    script,
    `BEGIN ISOLATION LEVEL REPEATABLE READ;\nLOCK TABLE ${schema}.state IN EXCLUSIVE MODE;\nINSERT INTO ${schema}.rec (v) VALUES ('record');\nUPDATE ${schema}.state SET last = last + 1 WHERE id = 0;\nEND;\n`,
  );
  try {
    const tps = [1, 8].map((c) => {
      const out = sh('pgbench', ['-n', '-f', script, '-c', String(c), '-j', String(Math.min(c, 2)), '-T', String(PGBENCH_SECONDS), base]);
      const m = /tps = ([\d.]+)/.exec(out);
      if (m === null) throw new Error(`pgbench printed no tps: ${out}`);
      return Number(m[1]);
    });
    return [['pgbench lock+insert+update txn', fmt(tps[0]!), fmt(tps[1]!)]];
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

async function main(): Promise<void> {
  const t0 = performance.now();
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-bench-meta-'));
  const notes: string[] = [];
  const rows: string[][] = [];
  console.log(`ferry bench:meta: ${os.cpus().length} cores, Node ${process.version}, scale ${scale}`);
  console.log(`files per client: ${FILES_1} (1 client), ${FILES_8} (8 clients); readdir of the client's directory holding them\n`);
  try {
    const engines: Array<{ name: string; open(): Promise<{ url: string; cleanup(): Promise<void> }>; raw?: () => Promise<Array<[string, string, string]>> }> = [
      { name: 'sqlite', open: () => Promise.resolve({ url: `sqlite://${root}/meta.db`, cleanup: () => Promise.resolve() }) },
    ];
    const shared: Array<[SharedEngine, () => Promise<Array<[string, string, string]>>, string]> = [
      [redisEngine(13), rawRedis, 'redis-benchmark'],
      [postgresEngine(), () => rawPostgres(root), 'pgbench'],
    ];
    for (const [e, raw, tool] of shared) {
      const down = await e.unreachable();
      if (down !== undefined) notes.push(`${e.name} left out: ${down}`);
      else if (!which(tool)) notes.push(`${e.name}: ${tool} not found, raw speed left out`);
      if (down === undefined) engines.push({ name: e.name, open: () => e.fresh(), ...(which(tool) ? { raw } : {}) });
    }
    for (const e of engines) {
      const { url, cleanup } = await e.open();
      try {
        await formatted(url, path.join(root, `bucket-${e.name}`));
        const one = await metaOps(url, 1);
        const eight = await metaOps(url, 8);
        for (const p of PHASES) rows.push([`${e.name} ${p}`, fmt(one[p]), fmt(eight[p])]);
        if (e.raw !== undefined) for (const r of await e.raw()) rows.push([`  ${r[0]}`, r[1], r[2]]);
      } finally {
        await cleanup();
      }
      rows.push(['', '', '']);
    }
    console.log(table(['metadata ops/s (SDK, lookup cache off)', '1 client', '8 clients'], rows.slice(0, -1)));
    const obj = await objects(root);
    console.log('\n' + table(['objects vs local s3rver (10 in flight)', 'ferry S3 store', 'aws s3 cp --recursive'], obj.rows));
    notes.push(...obj.notes);
    notes.push(`total time ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    console.log('\n' + notes.map((x) => `note: ${x}`).join('\n'));
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--worker') await worker(JSON.parse(process.argv[3]!) as WorkerConfig);
else await main();
