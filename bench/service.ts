/**
 * `npm run bench:service`: the metadata service beside clients that run transactions on the primary's engine
 * directly, in one run on one machine. Prints one table.
 *
 *   WAN    create (open wx + close), write-close of a new 4 KiB file, rename — from a ferry:// client whose
 *          service sits behind the fault proxy at 50 ms each way, beside a client whose PostgreSQL connection
 *          goes through the same kind of proxy (ms per operation, and round trips per operation = ms / 100).
 *          One client each, one operation at a time; lookup caches off on both so every operation reaches
 *          the metadata (the service's own per-client Meta keeps its default cache).
 *   local  creates/s from 8 concurrent clients through the service (in a child process, `ferry serve`) beside
 *          the same 8 clients on the engine directly.
 *
 * Needs PostgreSQL on 127.0.0.1:5432 (database test, a schema of its own, dropped after; falls back to Redis db
 * 12 with a prefix of its own). `npm run build` first (the service runs from dist/). BENCH_SCALE scales counts.
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
const LOCAL_OPS = n(150, 20);
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

async function wanRow(vol: Volume, dir: string): Promise<Record<'create' | 'write' | 'rename', number>> {
  await vol.mkdir(dir, { recursive: true });
  const data = Buffer.alloc(4096, 1);
  const create = await timeOps(WAN_OPS, async (i) => (await vol.open(`${dir}/c${i}`, 'wx')).close());
  const write = await timeOps(WAN_OPS, (i) => vol.writeFile(`${dir}/w${i}`, data));
  const rename = await timeOps(WAN_OPS, (i) => vol.rename(`${dir}/c${i}`, `${dir}/r${i}`));
  return { create, write, rename };
}

async function localCreates(open: () => Promise<Volume>, dir: string): Promise<number> {
  const vols = await Promise.all(Array.from({ length: LOCAL_CLIENTS }, () => open()));
  try {
    await Promise.all(vols.map((v, k) => v.mkdir(`${dir}/k${k}`, { recursive: true })));
    const t0 = performance.now();
    await Promise.all(vols.map(async (v, k) => {
      for (let i = 0; i < LOCAL_OPS; i++) await (await v.open(`${dir}/k${k}/f${i}`, 'wx')).close();
    }));
    return (LOCAL_CLIENTS * LOCAL_OPS) / ((performance.now() - t0) / 1000);
  } finally {
    for (const v of vols) await v.close();
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
    const common = { uid: 0, gid: 0, heartbeatMs: 0, lookupCacheMs: 0, memCacheBytes: 0 } as const;

    // WAN: 50 ms each way in front of the service, and in front of the engine.
    const target = new URL(loc.url);
    const sp = await FaultProxy.start({ targetPort: svc.port, upLatencyMs: ONE_WAY_MS, downLatencyMs: ONE_WAY_MS });
    const ep = await FaultProxy.start({ targetPort: Number(target.port || (engine.name === 'postgres' ? 5432 : 6379)), upLatencyMs: ONE_WAY_MS, downLatencyMs: ONE_WAY_MS });
    proxies.push(sp, ep);
    const viaService = await openVolume(`ferry://127.0.0.1:${sp.port}`, { ...common, token, serviceClient: { pingMs: 0 } });
    const directUrl = loc.url.replace(`:${target.port || (engine.name === 'postgres' ? 5432 : 6379)}`, `:${ep.port}`);
    const direct = await openVolume(directUrl, common);
    const s = await wanRow(viaService, '/wan-service');
    const d = await wanRow(direct, '/wan-direct');
    await viaService.close();
    await direct.close();

    // Local throughput: 8 clients.
    const localSvc = await localCreates(() => openVolume(`ferry://127.0.0.1:${svc!.port}`, { ...common, token, serviceClient: { pingMs: 0 } }), '/local-service');
    const localDirect = await localCreates(() => openVolume(loc.url, common), '/local-direct');

    const pkg = JSON.parse(await readFile(path.join(ROOT, 'node_modules', 'undici', 'package.json'), 'utf8')) as { version: string };
    const rt = 2 * ONE_WAY_MS;
    const f = (ms: number): string => `${ms.toFixed(0).padStart(6)} ms  ${(ms / rt).toFixed(1).padStart(5)} RT`;
    console.log(`ferry bench:service — node ${process.version}, ${engine.name} ${await engineVersion(engine)}, undici ${pkg.version}, HTTP/1.1 keep-alive; proxy ${ONE_WAY_MS} ms each way (RT = ${rt} ms); ${WAN_OPS} ops per WAN phase, ${LOCAL_CLIENTS}×${LOCAL_OPS} local creates; lookup caches off on clients`);
    console.log('');
    console.log('WAN, one client             ferry:// service          direct engine          speed-up');
    for (const k of ['create', 'write', 'rename'] as const) {
      const label = k === 'write' ? 'write-close 4 KiB' : k;
      console.log(`  ${label.padEnd(24)}  ${f(s[k])}      ${f(d[k])}      ${(d[k] / s[k]).toFixed(1)}×`);
    }
    console.log('');
    console.log(`local, ${LOCAL_CLIENTS} clients, creates/s      service ${localSvc.toFixed(0).padStart(6)}    direct ${localDirect.toFixed(0).padStart(6)}    (${(localSvc / localDirect).toFixed(2)}× of direct)`);
  } finally {
    for (const p of proxies) await p.close();
    svc?.child.kill('SIGTERM');
    if (svc !== undefined) await once(svc.child, 'exit');
    await loc.cleanup();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
