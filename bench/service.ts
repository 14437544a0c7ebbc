/**
 * `npm run bench:service`: the metadata service beside clients that run transactions on the primary's engine
 * directly, in one run on one machine. Prints two tables.
 *
 *   WAN    create (open wx + close), write-close of a new 4 KiB file (writeFile), rename — from a ferry://
 *          client whose service sits behind the fault proxy at 50 ms each way, beside a client whose engine
 *          connection goes through the same kind of proxy (ms per operation, and round trips per operation =
 *          ms / 100), and the service requests each operation cost (ServiceClient stats, when the client
 *          keeps them). One client each, one operation at a time, lookup caches at their defaults (1 s) on
 *          both: the parent directory is resolved from the cache, as a mount's kernel would.
 *   local  creates/s from 1 and from 8 concurrent clients through the service (in a child process,
 *          `ferry serve`) beside the same clients on the engine directly, in alternating rounds.
 *
 * Needs PostgreSQL on 127.0.0.1:5432 (database test, a schema of its own, dropped after; falls back to Redis db
 * 12 with a prefix of its own). `npm run build` first (the service runs from dist/). BENCH_SCALE scales counts.
 * The same file runs against an older tree (copy it there) for a baseline in the same session.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { formatVolume, openMetaEngine, openVolume, type Volume } from '../src/index.js';
import { loadFormat } from '../src/meta/meta.js';
import { FaultProxy } from '../src/net/faultproxy.js';
import { serviceToken } from '../src/service/token.js';
import { postgresEngine, redisEngine, type SharedEngine } from '../test/helpers/engines.js';

const scale = Number(process.env['BENCH_SCALE'] ?? '1');
const n = (base: number, min = 1): number => Math.max(min, Math.round(base * scale));
const WAN_OPS = n(20, 5);
const LOCAL_CLIENTS = 8;
const LOCAL_OPS = n(120, 20);
/** Alternating rounds of the local phase (see localCreates). */
const LOCAL_ROUNDS = 4;
const ONE_WAY_MS = 50;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');

async function pickEngine(): Promise<SharedEngine> {
  const p = postgresEngine();
  if ((await p.unreachable()) === undefined) return p;
  const r = redisEngine(12);
  const why = await r.unreachable();
  if (why !== undefined) throw new Error(`neither PostgreSQL nor Redis answers: ${why}`);
  return r;
}

async function engineVersion(e: SharedEngine): Promise<string> {
  if (e.name === 'postgres') {
    const c = new pg.Client({ connectionString: e.base });
    await c.connect();
    try {
      return String((await c.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]?.v);
    } finally {
      await c.end();
    }
  }
  return 'redis';
}

async function startService(url: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [CLI, 'serve', url, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [chunk] = (await once(child.stdout!, 'data')) as [Buffer];
  const m = /listening on 127\.0\.0\.1:(\d+)/.exec(chunk.toString());
  if (m === null) throw new Error(`ferry serve said: ${chunk.toString()}`);
  return { child, port: Number(m[1]) };
}

async function timeOps(count: number, op: (i: number) => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < count; i++) await op(i);
  return (performance.now() - t0) / count;
}

type WanOp = 'create' | 'write' | 'rename';

/** Requests by operation of a ferry:// volume's client, when it counts them (undefined otherwise). */
function requestCounts(vol: Volume): Record<string, number> | undefined {
  const byOp = (vol.vfs.meta as { client?: { stats?: { byOp?: Record<string, number> } } }).client?.stats?.byOp;
  return byOp === undefined ? undefined : { ...byOp };
}

/** "openCreate 1.0 + release 1.0": requests per operation between two counts. */
function perOp(before: Record<string, number> | undefined, after: Record<string, number> | undefined, ops: number): string {
  if (before === undefined || after === undefined) return '(not counted)';
  const parts = Object.entries(after)
    .map(([k, v]) => [k, (v - (before[k] ?? 0)) / ops] as const)
    .filter(([, v]) => v > 0)
    .sort((a, b) => b[1] - a[1]);
  return parts.map(([k, v]) => `${k} ${v.toFixed(2)}`).join(' + ') || 'none';
}

async function wanRow(vol: Volume, dir: string): Promise<Record<WanOp, { ms: number; requests: string }>> {
  await vol.mkdir(dir, { recursive: true });
  const data = Buffer.alloc(4096, 1);
  const out = {} as Record<WanOp, { ms: number; requests: string }>;
  const phase = async (k: WanOp, op: (i: number) => Promise<unknown>): Promise<void> => {
    await op(-1); // warm: the parent directory in the lookup cache, slice ids fetched
    const before = requestCounts(vol);
    const ms = await timeOps(WAN_OPS, op);
    out[k] = { ms, requests: perOp(before, requestCounts(vol), WAN_OPS) };
  };
  await phase('create', async (i) => (await vol.open(`${dir}/c${i}`, 'wx')).close());
  await phase('write', (i) => vol.writeFile(`${dir}/w${i}`, data));
  await phase('rename', (i) => vol.rename(`${dir}/c${i}`, `${dir}/r${i}`));
  return out;
}

/**
 * Creates/s of `clients` concurrent clients through the service and on the engine directly, measured in
 * LOCAL_ROUNDS alternating rounds (service, direct, service, ...) so that both see the same machine load.
 */
async function localCreates(viaService: () => Promise<Volume>, direct: () => Promise<Volume>, clients: number, dir: string): Promise<{ service: number; direct: number }> {
  const sides = { service: { vols: await Promise.all(Array.from({ length: clients }, () => viaService())), ms: 0 }, direct: { vols: await Promise.all(Array.from({ length: clients }, () => direct())), ms: 0 } };
  const perRound = Math.max(1, Math.round(LOCAL_OPS / LOCAL_ROUNDS));
  try {
    for (const [name, side] of Object.entries(sides)) await Promise.all(side.vols.map((v, k) => v.mkdir(`${dir}/${name}/k${k}`, { recursive: true })));
    for (let round = 0; round < LOCAL_ROUNDS; round++) {
      for (const [name, side] of Object.entries(sides)) {
        const t0 = performance.now();
        await Promise.all(
          side.vols.map(async (v, k) => {
            for (let i = round * perRound; i < (round + 1) * perRound; i++) await (await v.open(`${dir}/${name}/k${k}/f${i}`, 'wx')).close();
          }),
        );
        side.ms += performance.now() - t0;
      }
    }
    const rate = (ms: number): number => (clients * perRound * LOCAL_ROUNDS) / (ms / 1000);
    return { service: rate(sides.service.ms), direct: rate(sides.direct.ms) };
  } finally {
    for (const side of Object.values(sides)) for (const v of side.vols) await v.close();
  }
}

async function main(): Promise<void> {
  const engine = await pickEngine();
  const loc = await engine.fresh();
  const dir = await mkdtemp(path.join(tmpdir(), 'ferry-bench-service-'));
  await mkdir(path.join(dir, 'bucket'));
  let svc: { child: ChildProcess; port: number } | undefined;
  const proxies: FaultProxy[] = [];
  try {
    const e = await openMetaEngine(loc.url, { create: true });
    await formatVolume(e, { name: 'bench', storage: `file://${path.join(dir, 'bucket')}`, blockBytes: 4 << 20, compression: 'none', trashDays: 0 });
    const token = await serviceToken(e, (await loadFormat(e))!.uuid);
    await e.close();
    svc = await startService(loc.url);
    const common = { uid: 0, gid: 0, heartbeatMs: 0, memCacheBytes: 0 } as const;

    // WAN: 50 ms each way in front of the service, and in front of the engine.
    const target = new URL(loc.url);
    const enginePort = Number(target.port || (engine.name === 'postgres' ? 5432 : 6379));
    const sp = await FaultProxy.start({ targetPort: svc.port, upLatencyMs: ONE_WAY_MS, downLatencyMs: ONE_WAY_MS });
    const ep = await FaultProxy.start({ targetPort: enginePort, upLatencyMs: ONE_WAY_MS, downLatencyMs: ONE_WAY_MS });
    proxies.push(sp, ep);
    const viaService = await openVolume(`ferry://127.0.0.1:${sp.port}`, { ...common, token, serviceClient: { pingMs: 0 } });
    const direct = await openVolume(loc.url.replace(`:${enginePort}`, `:${ep.port}`), common);
    const s = await wanRow(viaService, '/wan-service');
    const d = await wanRow(direct, '/wan-direct');
    await viaService.close();
    await direct.close();

    // Local throughput: 1 and 8 clients.
    const viaSvc = (): Promise<Volume> => openVolume(`ferry://127.0.0.1:${svc!.port}`, { ...common, token, serviceClient: { pingMs: 0 } });
    const viaEngine = (): Promise<Volume> => openVolume(loc.url, common);
    const local: Array<{ clients: number; service: number; direct: number }> = [];
    for (const clients of [1, LOCAL_CLIENTS]) local.push({ clients, ...(await localCreates(viaSvc, viaEngine, clients, `/local-${clients}`)) });

    const pkg = JSON.parse(await readFile(path.join(ROOT, 'node_modules', 'undici', 'package.json'), 'utf8')) as { version: string };
    const rt = 2 * ONE_WAY_MS;
    const f = (ms: number): string => `${ms.toFixed(0).padStart(6)} ms  ${(ms / rt).toFixed(1).padStart(5)} RT`;
    console.log(`ferry bench:service (${ROOT}) — node ${process.version}, ${engine.name} ${await engineVersion(engine)}, undici ${pkg.version}; proxy ${ONE_WAY_MS} ms each way (RT = ${rt} ms); ${WAN_OPS} ops per WAN phase, ${LOCAL_OPS} creates per local client; lookup caches at their defaults`);
    console.log('');
    console.log('WAN, one client             ferry:// service          direct engine          speed-up   service requests per op');
    for (const k of ['create', 'write', 'rename'] as const) {
      const label = k === 'write' ? 'write-close 4 KiB' : k;
      console.log(`  ${label.padEnd(24)}  ${f(s[k].ms)}      ${f(d[k].ms)}      ${(d[k].ms / s[k].ms).toFixed(1).padStart(5)}×    ${s[k].requests}`);
    }
    const mean = (['create', 'write', 'rename'] as const).reduce((a, k) => a + s[k].ms, 0) / 3;
    console.log(`  mean of the three          ${f(mean)}`);
    console.log('');
    for (const r of local) {
      console.log(`local, ${String(r.clients).padStart(2)} client${r.clients === 1 ? ' ' : 's'}, creates/s    service ${r.service.toFixed(0).padStart(6)}    direct ${r.direct.toFixed(0).padStart(6)}    (${(r.service / r.direct).toFixed(2)}× of direct)`);
    }
  } finally {
    for (const p of proxies) await p.close();
    svc?.child.kill('SIGTERM');
    if (svc !== undefined) await once(svc.child, 'exit');
    await loc.cleanup();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
