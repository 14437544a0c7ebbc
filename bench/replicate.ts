/**
 * `ferry replicate --once` beside `rclone sync` (Debian's rclone: its defaults, and at Ferry's parallelism) of the same block objects
 * between the same two local S3 servers (s3rver), then the replication lag while a writer commits steadily.
 *
 *   npm run bench:replicate [-- --small N --large N --parallel N --steady-seconds S]
 *
 *   server A: bucket a (region a)      server B: buckets b (region b), c (region c), rclone
 *   1. a writer in region a writes N small files of 64 KiB and M large files of 64 MiB (4 MiB blocks)
 *   2. ferry replicate --once --to b --verify full: every copy read back and compared   (timed)
 *   3. ferry replicate --once --to c --verify put (the default): every put carries Content-MD5 and the ETag the server answers
 *      (the MD5 of what it stored) is compared with it: end to end, without reading the copy back   (timed)
 *   4. rclone sync --fast-list A:a B:rclone0, then with --transfers P --checkers P (P = --parallel) to B:rclone1:
 *      the same objects (bucket a holds only the volume's blocks)
 *      (timed; --fast-list because this rclone (1.60) finds nothing to copy in s3rver's nested prefixes
 *      when it lists directory by directory, its default)
 *   5. ferry replicate following the changelog (to b) while a writer commits a 256 KiB file every 50 ms in
 *      a: lag from commit to verified copy, p50 / p99
 *   6. for reference, s3rver's own speed: the same objects with plain get and put, and put alone. The put
 *      alone bounds any client: no copy to server B can be faster than B accepting the objects.
 *
 * Every figure is wall time on a machine whose cores the servers, the client and anything else running share:
 * compare figures of one run only, and read them with the load average printed beside them.
 */

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { formatVolume, Meta, openMetaEngine, openVolume } from '../src/index.js';
import { openObjectStore } from '../src/object/registry.js';
import { RetryStore } from '../src/object/retry.js';
import { listAll, type ObjectStore } from '../src/object/store.js';
import { Replicator } from '../src/region/replicate.js';
import { mulberry32 } from '../src/util/random.js';
import { rcloneEnv, startS3Server } from '../test/helpers/s3server.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const SMALL_BYTES = 64 * 1024;
const LARGE_BYTES = 64 * 1024 * 1024;
const WRITERS = 16;

const { values } = parseArgs({
  options: {
    small: { type: 'string', default: '1000' },
    large: { type: 'string', default: '4' },
    parallel: { type: 'string', default: '32' },
    'steady-seconds': { type: 'string', default: '10' },
  },
});
const smallCount = Number(values.small);
const largeCount = Number(values.large);

function data(seed: number, bytes: number): Buffer {
  const rnd = mulberry32(seed);
  const b = Buffer.allocUnsafe(bytes);
  for (let i = 0; i + 4 <= bytes; i += 4) b.writeUInt32LE(Math.floor(rnd() * 2 ** 32), i);
  return b;
}

/** CPU seconds (user + system) a process has used so far, from /proc (0 where /proc is missing). */
function cpuSecs(pid: number): number {
  try {
    // Fields after the command name (which may hold spaces, so split after its closing parenthesis): utime is 14th, stime 15th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
const GNU_TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;

/** CPU seconds of one timed run: each server's, and the client's (undefined when it cannot be measured). */
interface RunCpu {
  a: number;
  b: number;
  client: number | undefined;
}

interface Timed {
  secs: number;
  stdout: string;
  cpu: RunCpu;
}

/** Runs a command, timing it and measuring the CPU it and both servers used (the client's through GNU time). */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const timeFile = path.join(tmpdir(), `ferry-bench-time-${process.pid}-${Math.random().toString(36).slice(2)}`);
    const [file, argv] = GNU_TIME === undefined ? [cmd, args] : [GNU_TIME, ['-f', '%U %S', '-o', timeFile, cmd, ...args]];
    const a0 = cpuSecs(serverA.pid);
    const b0 = cpuSecs(serverB.pid);
    const t0 = performance.now();
    let stdout = '';
    const child = spawn(file, argv, { env, stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.once('error', reject);
    child.once('exit', (code) => {
      const secs = (performance.now() - t0) / 1000;
      const cpu: RunCpu = { a: cpuSecs(serverA.pid) - a0, b: cpuSecs(serverB.pid) - b0, client: undefined };
      if (GNU_TIME !== undefined) {
        try {
          const [user, sys] = readFileSync(timeFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
          if (Number.isFinite(user) && Number.isFinite(sys)) cpu.client = user! + sys!;
        } catch {
          // Left undefined: printed as '?'.
        }
        rmSync(timeFile, { force: true });
      }
      if (code === 0) resolve({ secs, stdout, cpu });
      else reject(new Error(`${cmd} exited with ${code}`));
    });
  });
}

/** Times an in-process run and the CPU of both servers and of this process during it. */
async function timedHere(fn: () => Promise<void>): Promise<{ secs: number; cpu: RunCpu }> {
  const a0 = cpuSecs(serverA.pid);
  const b0 = cpuSecs(serverB.pid);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const secs = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return { secs, cpu: { a: cpuSecs(serverA.pid) - a0, b: cpuSecs(serverB.pid) - b0, client: (c.user + c.system) / 1e6 } };
}

async function count(store: ObjectStore, prefix: string): Promise<{ objects: number; bytes: number }> {
  let objects = 0;
  let bytes = 0;
  for await (const o of listAll(store, prefix)) {
    objects++;
    bytes += o.size;
  }
  return { objects, bytes };
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const load = (): string => loadavg().map((x) => x.toFixed(2)).join(' ');
const loadAtStart = load();
const dir = await mkdtemp(path.join(tmpdir(), 'ferry-bench-replicate-'));
const serverA = await startS3Server({ buckets: ['a'] });
const serverB = await startS3Server({ buckets: ['b', 'c', 'rclone0', 'rclone1'] });
try {
  const metaUrl = `sqlite://${path.join(dir, 'meta.db')}`;
  const urlA = serverA.url('vol', 'a');
  const urlB = serverB.url('vol', 'b');
  const urlC = serverB.url('vol', 'c');
  const engine = await openMetaEngine(metaUrl, { create: true });
  await formatVolume(engine, {
    name: 'bench',
    storage: '',
    regions: { a: { storage: urlA }, b: { storage: urlB }, c: { storage: urlC } },
    primary: 'a',
    blockBytes: 4 << 20,
    compression: 'none',
    trashDays: 0,
  });
  await engine.close();

  // 1. The dataset, written in region a.
  process.stdout.write(`writing ${smallCount} × 64 KiB + ${largeCount} × 64 MiB in region a (${serverA.endpoint}) ... `);
  let t0 = performance.now();
  const va = await openVolume(metaUrl, { region: 'a', heartbeatMs: 0 });
  await va.mkdir('/small');
  await va.mkdir('/large');
  let next = 0;
  const jobs: Array<() => Promise<void>> = [];
  for (let i = 0; i < smallCount; i++) jobs.push(() => va.writeFile(`/small/${String(i).padStart(5, '0')}`, data(i, SMALL_BYTES)));
  for (let i = 0; i < largeCount; i++) jobs.push(() => va.writeFile(`/large/${i}`, data(1_000_000 + i, LARGE_BYTES)));
  await Promise.all(Array.from({ length: WRITERS }, async () => {
    while (next < jobs.length) await jobs[next++]!();
  }));
  await va.close();
  const total = smallCount * SMALL_BYTES + largeCount * LARGE_BYTES;
  const storeA = await openObjectStore(urlA);
  const inA = await count(storeA, 'chunks/');
  const keys: string[] = [];
  for await (const o of listAll(storeA, 'chunks/')) keys.push(o.key);
  process.stdout.write(`${inA.objects} block objects, ${(inA.bytes / 2 ** 20).toFixed(0)} MiB in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);

  // 2, 3. ferry replicate --once, to b verifying by read-back, to c trusting the checked put.
  const env = { ...process.env, FERRY_NO_PROGRESS: '1' };
  const ferry = await timed(process.execPath, [CLI, 'replicate', metaUrl, '--once', '--to', 'b', '--parallel', values.parallel, '--verify', 'full'], env);
  process.stdout.write(ferry.stdout);
  const ferryPut = await timed(process.execPath, [CLI, 'replicate', metaUrl, '--once', '--to', 'c', '--parallel', values.parallel, '--verify', 'put'], env);
  process.stdout.write(ferryPut.stdout);
  const storeB = await openObjectStore(urlB);
  const inB = await count(storeB, 'chunks/');
  const storeC = await openObjectStore(urlC);
  const inC = await count(storeC, 'chunks/');

  // 3. rclone sync of the same objects: its defaults (4 transfers, 8 checkers), then at Ferry's parallelism.
  type RcloneRun = { args: string[]; secs: number; cpu: RunCpu; got: { objects: number; bytes: number } };
  const rclone: RcloneRun[] = [];
  const rcloneVersion = spawnSync('rclone', ['version'], { encoding: 'utf8' });
  if (rcloneVersion.status === 0) {
    const env = rcloneEnv(serverA.endpoint, serverB.endpoint);
    const p = values.parallel;
    for (const [i, extra] of [[], ['--transfers', p, '--checkers', p]].entries()) {
      const args = ['sync', '--fast-list', ...extra, 'SRC:a', `DST:rclone${i}`];
      const r = await timed('rclone', args, env);
      const storeR = await openObjectStore(serverB.url('vol', `rclone${i}`));
      rclone.push({ args, secs: r.secs, cpu: r.cpu, got: await count(storeR, 'chunks/') });
      await storeR.close();
    }
  }

  // 4. Lag while a writer commits steadily in region a.
  const steadyMs = Number(values['steady-seconds']) * 1000;
  const engine2 = await openMetaEngine(metaUrl);
  const meta = await Meta.open(engine2, { session: false, heartbeatMs: 0 });
  const lags: number[] = [];
  const rep = new Replicator({
    meta,
    stores: new Map<string, ObjectStore>([
      ['a', new RetryStore(await openObjectStore(urlA))],
      ['b', new RetryStore(await openObjectStore(urlB))],
    ]),
    parallel: Number(values.parallel),
    to: ['b'],
    onEvent: (e) => {
      if (e.type === 'page' && e.slices > 0) lags.push(e.lagMs);
    },
  });
  await rep.runOnce();
  const stop = new AbortController();
  const following = rep.run({ signal: stop.signal, pollMs: 20 });
  const writer = await openVolume(metaUrl, { region: 'a', heartbeatMs: 0 });
  await writer.mkdir('/steady');
  t0 = performance.now();
  let commits = 0;
  while (performance.now() - t0 < steadyMs) {
    await writer.writeFile(`/steady/${commits}`, data(5_000_000 + commits, 256 * 1024));
    commits++;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await writer.close();
  await new Promise((resolve) => setTimeout(resolve, 500));
  stop.abort();
  await following;
  await meta.close();
  await engine2.close();

  // 6. s3rver's own speed for the same objects: plain get from A and put to B, and put alone.
  const raw = async (fn: (key: string) => Promise<void>): Promise<{ secs: number; cpu: RunCpu }> => {
    let i = 0;
    return timedHere(async () => {
      await Promise.all(Array.from({ length: Number(values.parallel) }, async () => {
        while (i < keys.length) await fn(keys[i++]!);
      }));
    });
  };
  const held = new Map<string, Buffer>();
  const rawCopy = await raw(async (k) => {
    const b = await storeA.get(k);
    held.set(k, b);
    await storeB.put(`raw/${k}`, b);
  });
  const rawPut = await raw((k) => storeB.put(`raw2/${k}`, held.get(k)!));
  held.clear();

  const mib = total / 2 ** 20;
  const cpuText = (c: RunCpu): string => `cpu: A ${c.a.toFixed(2)} s, B ${c.b.toFixed(2)} s, client ${c.client === undefined ? '?' : c.client.toFixed(2)} s`;
  const line = (name: string, run: { secs: number; cpu: RunCpu }, got: { objects: number; bytes: number }): string =>
    `${name.padEnd(24)} ${run.secs.toFixed(2).padStart(7)} s  ${(mib / run.secs).toFixed(1).padStart(6)} MiB/s  ${got.objects} objects, ${(got.bytes / 2 ** 20).toFixed(0)} MiB${got.objects === inA.objects ? '' : '  (INCOMPLETE)'}  [${cpuText(run.cpu)}]`;
  process.stdout.write(`\n${smallCount + largeCount} files, ${mib.toFixed(0)} MiB, ${inA.objects} block objects, s3rver -> s3rver\n`);
  process.stdout.write(line('ferry replicate --once', ferry, inB) + `  (--parallel ${values.parallel}, --verify full: every copy read back)\n`);
  process.stdout.write(line('ferry replicate --once', ferryPut, inC) + `  (--parallel ${values.parallel}, --verify put, the default: the ETag answered = the Content-MD5 sent)\n`);
  process.stdout.write(line('plain get + put', rawCopy, { objects: keys.length, bytes: inA.bytes }) + `  (S3Store calls only, ${values.parallel} at once)\n`);
  process.stdout.write(line('plain put alone', rawPut, { objects: keys.length, bytes: inA.bytes }) + `  (server B's floor for any client copying these objects)\n`);
  if (rclone.length > 0) {
    process.stdout.write(`${rcloneVersion.stdout.split('\n')[0]}, remotes: type s3, provider Other, path-style (s3rver)\n`);
    for (const r of rclone) {
      process.stdout.write(line(`rclone ${r.args.slice(0, -2).join(' ')}`.slice(0, 24), r, r.got) + `  (rclone ${r.args.join(' ')})\n`);
    }
    const equal = rclone[rclone.length - 1]!;
    process.stdout.write(
      `ferry replicate (verify put) is ${(equal.secs / ferryPut.secs).toFixed(2)}× rclone at equal parallelism (${values.parallel}) and ${(rclone[0]!.secs / ferryPut.secs).toFixed(2)}× rclone's defaults; ` +
        `verify full: ${(equal.secs / ferry.secs).toFixed(2)}× and ${(rclone[0]!.secs / ferry.secs).toFixed(2)}×\n`,
    );
  } else {
    process.stdout.write('rclone sync              skipped: rclone is not installed (apt-get install rclone)\n');
  }
  // The bound the servers set: whatever the client, the two servers must do the same GETs and PUTs, and they
  // share this machine's cores with each other and with the client. The least server CPU any run needed
  // (each server single-threaded JavaScript) gives a floor on wall time for any client that uses no CPU at all.
  const runs = [ferry, ferryPut, rawCopy, ...rclone];
  const cpuA = Math.min(...runs.map((r) => r.cpu.a));
  const cpuB = Math.min(...runs.map((r) => r.cpu.b));
  const cores = cpus().length;
  const floor = Math.max(cpuA, cpuB, (cpuA + cpuB) / cores);
  process.stdout.write(
    `servers' bound: the least CPU the servers used for these copies is A ${cpuA.toFixed(2)} s + B ${cpuB.toFixed(2)} s on ${cores} cores, ` +
      `so no client copies them in less than ${floor.toFixed(2)} s here (a client that used no CPU at all)\n`,
  );
  process.stdout.write(
    `target: ferry replicate --once >= 0.9× the servers' own get+put (${(rawCopy.secs / ferryPut.secs).toFixed(2)}× now, verify put; ` +
      `${(rawCopy.secs / ferry.secs).toFixed(2)}× verify full)${rclone.length > 0 ? ` and >= 1.5× rclone at equal parallelism (${(rclone[rclone.length - 1]!.secs / ferryPut.secs).toFixed(2)}× now; ` +
      `the servers' bound allows at most ${(rclone[rclone.length - 1]!.secs / floor).toFixed(2)}× here)` : ''}\n`,
  );
  process.stdout.write(`load average ${loadAtStart} at the start, ${load()} at the end (1, 5, 15 min; ${cpus().length} cores)\n`);
  lags.sort((x, y) => x - y);
  process.stdout.write(
    `lag while a writer commits a 256 KiB file every 50 ms for ${steadyMs / 1000} s (${commits} commits): ` +
      `p50 ${percentile(lags, 50).toFixed(0)} ms, p99 ${percentile(lags, 99).toFixed(0)} ms, max ${percentile(lags, 100).toFixed(0)} ms over ${lags.length} pages\n`,
  );
  await storeA.close();
  await storeB.close();
  await storeC.close();
} finally {
  await Promise.allSettled([serverA.stop(), serverB.stop()]);
  await rm(dir, { recursive: true, force: true });
}
