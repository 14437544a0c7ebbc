/**
 * Mirror regions: how far a replica's follower lags behind a busy primary, on loopback and across a 50 ms WAN,
 * and what a far region gains by answering its metadata calls from its own replica.
 *
 *   npm run bench:mirror [-- --rate 1000 --seconds 10 --writers 6 --stat-ops 100 --engines redis,postgres]
 *
 *   for each primary engine (Redis, PostgreSQL on 127.0.0.1), a volume with region a (bucket) and a
 *   metadata-only mirror region m (its own SQLite replica):
 *   1. loopback: writers commit metadata operations (create, chmod, rename, unlink of empty files) at --rate
 *      operations per second in all while the follower (in this process) follows the primary's changelog into
 *      the replica. Lag of each commit = the time from the writer's acknowledged commit to the follower's
 *      applied batch holding it; p50 / p99 / max.
 *   2. the same, with the fault proxy between the follower and the primary adding 50 ms each way (the writers
 *      stay near the primary, as they would be).
 *   3. stat (of distinct files, cold caches), lookup of a missing name, and readdir of a 100-entry directory:
 *      a client of the mirror (its replica on this host) beside a client of the primary through the same
 *      50 ms proxy; operations per second, one at a time.
 *
 * The writers, the follower and the clients share this process and the machine's cores with the engines: the
 * load average is printed beside the figures. Compare figures of one run only.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { FsError, formatVolume, openMetaEngine, openVolume, type Volume } from '../src/index.js';
import type { MetaEngine } from '../src/meta/engine.js';
import { FaultProxy } from '../src/net/faultproxy.js';
import { MirrorFollower } from '../src/region/mirror.js';
import { addRegion } from '../src/region/regions.js';
import { sleep } from '../src/util/sleep.js';
import { postgresEngine, redisEngine, type SharedEngine } from '../test/helpers/engines.js';

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '10' },
    writers: { type: 'string', default: '6' },
    'stat-ops': { type: 'string', default: '100' },
    engines: { type: 'string', default: 'redis,postgres' },
    'wan-ms': { type: 'string', default: '50' },
  },
});
const RATE = Number(values.rate);
const SECONDS = Number(values.seconds);
const WRITERS = Number(values.writers);
const STAT_OPS = Number(values['stat-ops']);
const WAN_MS = Number(values['wan-ms']);
for (const [name, v] of [['--rate', RATE], ['--seconds', SECONDS], ['--writers', WRITERS], ['--stat-ops', STAT_OPS], ['--wan-ms', WAN_MS]] as const) {
  if (!Number.isFinite(v) || v <= 0) {
    process.stderr.write(`bench:mirror: ${name} must be a positive number\n`);
    process.exit(2);
  }
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function line(label: string, text: string): void {
  process.stdout.write(`  ${label.padEnd(42)} ${text}\n`);
}

interface Lag {
  commits: number;
  seconds: number;
  lags: number[];
}

/**
 * Writers commit at RATE ops/s in all for SECONDS while `follower` runs; the lag of every commit a writer
 * acknowledged: from the acknowledgement to the follower's applied event for the batch that holds its seq.
 */
async function lagRun(primaryUrl: string, follower: () => MirrorFollower, commitTimes: Map<number, number>, appliedAt: Map<number, number>): Promise<Lag> {
  const vols: Volume[] = [];
  for (let w = 0; w < WRITERS; w++) vols.push(await openVolume(primaryUrl, { heartbeatMs: 0, memCacheBytes: 0 }));
  const f = follower();
  await f.prepare();
  const stop = new AbortController();
  const running = f.run(stop.signal);
  const interval = (WRITERS * 1000) / RATE;
  const started = Date.now();
  const end = started + SECONDS * 1000;
  let ops = 0;
  const op = async (vol: Volume, body: () => Promise<unknown>): Promise<void> => {
    try {
      await body();
    } catch (err) {
      if (!(err instanceof FsError)) throw err;
    }
    const seq = vol.vfs.meta.committedSeq;
    if (!commitTimes.has(seq)) commitTimes.set(seq, performance.now());
    ops++;
  };
  try {
    await Promise.all(
      vols.map(async (vol, w) => {
        await vol.mkdir(`/w${w}`).catch(() => undefined);
        let next = Date.now() + (w * interval) / WRITERS;
        for (let i = 0; Date.now() < end; i++) {
          const p = `/w${w}/f${i % 50}`;
          const steps = [() => vol.writeFile(p, ''), () => vol.chmod(p, 0o600), () => vol.rename(p, `${p}.r`), () => vol.unlink(`${p}.r`)];
          for (const s of steps) {
            const wait = next - Date.now();
            if (wait > 0) await sleep(wait);
            next += interval;
            await op(vol, s);
          }
        }
      }),
    );
    const seconds = (Date.now() - started) / 1000;
    // Every acknowledged commit applied, then stop.
    const last = Math.max(0, ...commitTimes.keys());
    const deadline = Date.now() + 60_000;
    while (f.stats.applied < last && Date.now() < deadline) await sleep(5);
    stop.abort();
    await running;
    // A commit the follower applied before its writer saw the acknowledgement counts as lag 0.
    const lags = [...commitTimes].map(([seq, t]) => Math.max(0, (appliedAt.get(seq) ?? Infinity) - t));
    return { commits: ops, seconds, lags: lags.sort((a, b) => a - b) };
  } finally {
    stop.abort();
    await running.catch(() => undefined);
    for (const v of vols) await v.close();
  }
}

/** Ops per second of `body(i)` run `n` times one after another. */
async function rate(n: number, body: (i: number) => Promise<unknown>): Promise<number> {
  const t = performance.now();
  for (let i = 0; i < n; i++) await body(i);
  return n / ((performance.now() - t) / 1000);
}

async function benchEngine(engine: SharedEngine): Promise<void> {
  const why = await engine.unreachable();
  if (why !== undefined) {
    process.stdout.write(`\n${engine.name}: skipped (${why})\n`);
    return;
  }
  const loc = await engine.fresh();
  const dir = await mkdtemp(path.join(tmpdir(), 'ferry-bench-mirror-'));
  const replicaUrl = `sqlite://${dir}/replica.db`;
  const target = new URL(loc.url);
  const port = Number(target.port || (engine.name === 'redis' ? 6379 : 5432));
  const proxy = await FaultProxy.start({ targetPort: port, seed: 1 });
  proxy.setFaults({ upLatencyMs: WAN_MS, downLatencyMs: WAN_MS });
  const hostPort = `${target.hostname}:${port}`;
  const farUrl = loc.url.replace(hostPort, `127.0.0.1:${proxy.port}`);
  if (farUrl === loc.url) throw new Error(`cannot route ${engine.name} through the proxy: ${hostPort} not in the URL`);
  const engines: MetaEngine[] = [];
  try {
    const admin = await openMetaEngine(loc.url, { create: true });
    engines.push(admin);
    await formatVolume(admin, { name: 'bench-mirror', storage: '', regions: { a: { storage: `file://${dir}/a` } }, primary: 'a', blockBytes: 1 << 20, compression: 'none', trashDays: 0 });
    await addRegion(admin, 'm', { replica: replicaUrl });
    const replica = await openMetaEngine(replicaUrl, { create: true });
    engines.push(replica);
    process.stdout.write(`\n${engine.name} primary (${engine.base}), SQLite replica; ${WRITERS} writers at ${RATE} ops/s for ${SECONDS} s\n`);

    const commitTimes = new Map<number, number>();
    const appliedAt = new Map<number, number>();
    const onEvent = (e: { type: string; from?: number; to?: number }): void => {
      if (e.type !== 'applied') return;
      const now = performance.now();
      for (let s = e.from!; s <= e.to!; s++) appliedAt.set(s, now);
    };
    for (const [label, primary] of [
      ['loopback', admin],
      [`${WAN_MS} ms each way (fault proxy)`, await openMetaEngine(farUrl)],
    ] as const) {
      if (primary !== admin) engines.push(primary);
      commitTimes.clear();
      appliedAt.clear();
      const la = loadavg()[0]!;
      const r = await lagRun(loc.url, () => new MirrorFollower({ primary, replica, region: 'm', onEvent }), commitTimes, appliedAt);
      line(`follower lag, ${label}`, `p50 ${pct(r.lags, 50).toFixed(1)} ms, p99 ${pct(r.lags, 99).toFixed(1)} ms, max ${pct(r.lags, 100).toFixed(1)} ms ` +
        `over ${r.lags.length} commits (${(r.commits / r.seconds).toFixed(0)} ops/s achieved; load ${la.toFixed(2)})`);
    }

    // 3. Metadata calls from the far region: its replica vs the primary across the proxy.
    const writer = await openVolume(loc.url, { heartbeatMs: 0 });
    try {
      await writer.mkdir('/many');
      await writer.mkdir('/small');
      for (let i = 0; i < STAT_OPS * 2; i++) await writer.writeFile(`/many/f${i}`, '');
      for (let i = 0; i < 100; i++) await writer.writeFile(`/small/e${i}`, '');
    } finally {
      await writer.close();
    }
    const catchUp = new MirrorFollower({ primary: admin, replica, region: 'm' });
    await catchUp.once();
    const far = await openVolume(farUrl, { heartbeatMs: 0, region: 'a' });
    const mirror = await openVolume(replicaUrl, { heartbeatMs: 0 });
    try {
      const results: Record<string, [number, number]> = {};
      const pair = async (what: string, body: (v: Volume, i: number, side: number) => Promise<unknown>): Promise<void> => {
        const m = await rate(STAT_OPS, (i) => body(mirror, i, 0));
        const p = await rate(STAT_OPS, (i) => body(far, i, 1));
        results[what] = [m, p];
      };
      // Distinct files: each stat is a cold lookup + getattr in both clients.
      await pair('stat', (v, i, side) => v.stat(`/many/f${side * STAT_OPS + i}`));
      await pair('lookup (missing name)', (v, i) => v.stat(`/many/missing-${i}`).catch((e: unknown) => {
        if (!(e instanceof FsError) || e.code !== 'ENOENT') throw e;
      }));
      await pair('readdir (100 entries)', (v) => v.readdir('/small'));
      for (const [what, [m, p]] of Object.entries(results)) {
        line(what, `mirror client ${m.toFixed(0)}/s, primary across ${WAN_MS} ms ${p.toFixed(1)}/s: ${(m / p).toFixed(0)}x`);
      }
    } finally {
      await far.close();
      await mirror.close();
    }
  } finally {
    for (const e of engines.reverse()) await e.close().catch(() => undefined);
    await proxy.close();
    await loc.cleanup();
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  process.stdout.write(`Ferry mirror bench: node ${process.version}, ${cpus().length} cores, load ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
  process.stdout.write(`  follower: batches of up to 1000 entries, next batch read while one is applied, poll 5 ms after an empty answer\n`);
  const wanted = values.engines.split(',');
  const all: SharedEngine[] = [redisEngine(13), postgresEngine()];
  for (const e of all) if (wanted.includes(e.name)) await benchEngine(e);
  await sleep(0);
}

await main();
