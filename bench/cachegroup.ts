/**
 * Cache groups (DESIGN §8), every figure from this one run:
 *
 *   npm run bench:cachegroup [-- --mib N]
 *
 *   A. a file read through a group peer (one `ferry cache-node` process holding it) beside the same reads from
 *      the reader's own local disk cache: one sequential pass (4 MiB reads) and 4 KiB reads at random offsets
 *      (16 in flight); the goal is peer >= 0.8x local. Beside it, the bound of any HTTP transport on this
 *      machine: a plain node:http server (another process) sending a 4 MiB buffer from memory to an undici
 *      client that copies each answer into one buffer, as the peer tier does, 8 in flight (the read-ahead's
 *      depth), without reading a disk or checking a byte on either side
 *   B. aggregate throughput of 4 reader processes reading the file at once through a group of 1 node, then of 2
 *      nodes (each group warmed first)
 *   C. the first read of a dataset from a bucket behind the fault proxy (s3rver; 50 ms each way, 200 Mbit/s
 *      shared), with no group (the reader fetches) beside through a group of one node (the node fetches)
 *
 * Readers and nodes are separate processes; the machine's cores are shared by all of them (and by whatever
 * else runs): compare figures of one run only, and read them with the load average printed beside them.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { Agent } from 'undici';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { formatVolume, openMetaEngine, openVolume } from '../src/index.js';
import { openObjectStore } from '../src/object/registry.js';
import { FaultProxy } from '../src/net/faultproxy.js';
import { startS3Server } from '../test/helpers/s3server.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const READER = path.join(ROOT, 'bench', 'cachegroup-reader.ts');
const MiB = 1 << 20;
const { values } = parseArgs({ options: { mib: { type: 'string', default: '128' }, 'wan-mib': { type: 'string', default: '64' } } });
const SIZE = Number(values.mib) * MiB;
const WAN_SIZE = Number(values['wan-mib']) * MiB;
const RANDOM_READS = 2000;

function data(seed: number, n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let block = createHash('sha256').update(String(seed)).digest();
  for (let at = 0; at < n; at += block.length) {
    block = createHash('sha256').update(block).digest();
    block.copy(out, at, 0, Math.min(block.length, n - at));
  }
  return out;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const children: ChildProcess[] = [];
// A bench stopped early (Ctrl-C, or its output piped into `head`) must not leave cache nodes running: 'exit'
// handlers run on process.exit, which these turn an interrupt or a closed stdout into.
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));
process.stdout.on('error', () => process.exit(1));

async function startNode(meta: string, group: string, cacheDir: string): Promise<ChildProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, [CLI, 'cache-node', meta, '--group', group, '--listen', `127.0.0.1:${port}`, '--cache-dir', cacheDir, '--cache-size', '4G'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, FERRY_NO_PROGRESS: '1' },
  });
  children.push(child);
  let err = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      if (/serving at/.test(err)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`cache node exited ${code}: ${err}`)));
  });
  return child;
}

interface ReaderResult {
  bytes: number;
  /** Requests to the group, and their bytes, in the timed sequential pass and in the random reads. */
  seqPeer: { requests: number; bytes: number };
  randomPeer: { requests: number; bytes: number };
  /** CPU time of the reader process (all its threads) in the timed sequential pass and in the random reads, ms. */
  seqCpuMs: number;
  randomCpuMs: number;
  seqMs: number;
  randomMs: number;
  randomReads: number;
  bucketBlocks: number;
}

function reader(job: Record<string, unknown>): Promise<ReaderResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', READER, JSON.stringify(job)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as ReaderResult) : reject(new Error(`reader exited ${code}: ${err}`))));
  });
}

/** MiB/s of `blocks` 4 MiB answers of a plain node:http server in another process, `inFlight` at a time. */
async function loopbackBound(blocks: number, inFlight: number): Promise<number> {
  const server = spawn(
    process.execPath,
    [
      '-e',
      `const b = require('node:crypto').randomBytes(4 << 20);
       require('node:http').createServer((q, s) => s.writeHead(200, { 'content-length': b.length }).end(b))
         .listen(0, '127.0.0.1', function () { process.stdout.write(this.address().port + '\\n'); });`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const port = await new Promise<number>((resolve) => server.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim()))));
  const agent = new Agent({ connections: 16, keepAliveTimeout: 60_000 });
  const get = async (): Promise<void> => {
    const res = await agent.request({ origin: `http://127.0.0.1:${port}`, path: '/', method: 'GET' });
    const into = Buffer.allocUnsafe(Number(res.headers['content-length']));
    let n = 0;
    for await (const c of res.body) n += (c as Buffer).copy(into, n);
  };
  const pass = async (): Promise<number> => {
    let next = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: inFlight }, async () => {
      while (next++ < blocks) await get();
    }));
    return performance.now() - t0;
  };
  await pass();
  const ms = await pass();
  await agent.close();
  const exited = new Promise<void>((r) => server.once('exit', () => r()));
  server.kill('SIGTERM');
  await exited;
  return (blocks * 4) / (ms / 1000);
}

const mbps = (bytes: number, ms: number): string => `${(bytes / MiB / (ms / 1000)).toFixed(0)} MiB/s`;
const load = (): string => loadavg().map((x) => x.toFixed(2)).join(' ');
const stopAll = async (): Promise<void> => {
  for (const c of children.splice(0)) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    await exited;
  }
};

const dir = await mkdtemp(path.join(tmpdir(), 'ferry-bench-cachegroup-'));
process.stdout.write(`cache group bench: ${SIZE / MiB} MiB file, 4 MiB blocks; ${cpus().length} cores; load ${load()}\n`);
try {
  // The volume: SQLite metadata, a file bucket.
  const meta = `sqlite://${path.join(dir, 'meta.db')}`;
  const eng = await openMetaEngine(meta, { create: true });
  await formatVolume(eng, { name: 'bench', storage: `file://${path.join(dir, 'bucket')}`, blockBytes: 4 * MiB, compression: 'none', trashDays: 0 });
  await eng.close();
  const w = await openVolume(meta, { heartbeatMs: 0 });
  await w.writeFile('/data', data(1, SIZE));
  await w.close();

  // A. Peer vs local disk.
  const local = await reader({ meta, path: '/data', cacheDir: path.join(dir, 'local'), warmPasses: 1, randomReads: RANDOM_READS });
  await startNode(meta, 'one', path.join(dir, 'n1'));
  const peer = await reader({ meta, path: '/data', group: 'one', warmPasses: 1, randomReads: RANDOM_READS });
  process.stdout.write(
    `A. sequential: local disk cache ${mbps(local.bytes, local.seqMs)}, group peer ${mbps(peer.bytes, peer.seqMs)} (${(local.seqMs / peer.seqMs).toFixed(2)}x)\n` +
      `   random 4 KiB x ${RANDOM_READS}, 16 in flight: local ${(RANDOM_READS / (local.randomMs / 1000)).toFixed(0)} reads/s, ` +
      `peer ${(RANDOM_READS / (peer.randomMs / 1000)).toFixed(0)} reads/s (${(local.randomMs / peer.randomMs).toFixed(2)}x); bucket blocks read by the peer's reader: ${peer.bucketBlocks}; load ${load()}\n` +
      `   peer requests: sequential ${peer.seqPeer.requests} (${(peer.seqPeer.bytes / MiB).toFixed(0)} MiB), random ${peer.randomPeer.requests} (${(peer.randomPeer.bytes / Math.max(1, peer.randomPeer.requests) / 1024).toFixed(0)} KiB each); ` +
      `reader CPU per 4 MiB block: local ${(local.seqCpuMs / (SIZE / (4 * MiB))).toFixed(1)} ms, peer ${(peer.seqCpuMs / (SIZE / (4 * MiB))).toFixed(1)} ms; ` +
      `per random read: local ${((local.randomCpuMs / RANDOM_READS) * 1000).toFixed(0)} us, peer ${((peer.randomCpuMs / RANDOM_READS) * 1000).toFixed(0)} us\n`,
  );
  const bound = await loopbackBound(SIZE / (4 * MiB), 8);
  const peerMbps = peer.bytes / MiB / (peer.seqMs / 1000);
  process.stdout.write(
    `   bound: plain node:http from memory to undici, 4 MiB x ${SIZE / (4 * MiB)}, 8 in flight, nothing read from disk or checked: ${bound.toFixed(0)} MiB/s ` +
      `(peer ${(peerMbps / bound).toFixed(2)}x of it, local disk ${(local.bytes / MiB / (local.seqMs / 1000) / bound).toFixed(2)}x); load ${load()}\n`,
  );


  // B. 4 readers, 1 node (warm from A) vs 2 nodes (warmed by one pass first).
  const four = async (group: string): Promise<string> => {
    const t0 = performance.now();
    const rs = await Promise.all(Array.from({ length: 4 }, () => reader({ meta, path: '/data', group })));
    const ms = performance.now() - t0;
    // Aggregate over the slowest reader's timed pass (process start-up is outside the timed pass).
    const slowest = Math.max(...rs.map((r) => r.seqMs));
    return `${mbps(4 * SIZE, slowest)} (all four ${(slowest / 1000).toFixed(1)} s; wall ${(ms / 1000).toFixed(1)} s incl. start-up; bucket blocks ${rs.reduce((n, r) => n + r.bucketBlocks, 0)})`;
  };
  const one = await four('one');
  await startNode(meta, 'two', path.join(dir, 'n2a'));
  await startNode(meta, 'two', path.join(dir, 'n2b'));
  await reader({ meta, path: '/data', group: 'two' });
  const two = await four('two');
  process.stdout.write(`B. 4 readers at once: 1 node ${one}\n   4 readers at once: 2 nodes ${two}; load ${load()}\n`);
  await stopAll();

  // C. First read from a bucket behind the fault proxy.
  const s3 = await startS3Server({ buckets: ['wan'] });
  const proxy = await FaultProxy.start({ targetPort: s3.port, upLatencyMs: 50, downLatencyMs: 50, totalBytesPerSecond: 25_000_000 });
  try {
    const direct = s3.url('vol');
    const viaProxy = direct.replace(encodeURIComponent(s3.endpoint), encodeURIComponent(proxy.url));
    const wanMeta = `sqlite://${path.join(dir, 'wan.db')}`;
    const e2 = await openMetaEngine(wanMeta, { create: true });
    await formatVolume(e2, { name: 'wan', storage: viaProxy, blockBytes: 4 * MiB, compression: 'none', trashDays: 0 });
    await e2.close();
    // Written straight to the server (the proxy is for reads).
    const ww = await openVolume(wanMeta, { heartbeatMs: 0, store: await openObjectStore(direct) });
    await ww.writeFile('/data', data(2, WAN_SIZE));
    await ww.close();
    const noGroup = await reader({ meta: wanMeta, path: '/data' });
    await startNode(wanMeta, 'wan', path.join(dir, 'wan-node'));
    const viaGroup = await reader({ meta: wanMeta, path: '/data', group: 'wan' });
    process.stdout.write(
      `C. first read of ${WAN_SIZE / MiB} MiB over the WAN (50 ms each way, 200 Mbit/s): no group ${(noGroup.seqMs / 1000).toFixed(1)} s (${mbps(WAN_SIZE, noGroup.seqMs)}), ` +
        `through a group node ${(viaGroup.seqMs / 1000).toFixed(1)} s (${mbps(WAN_SIZE, viaGroup.seqMs)}); load ${load()}\n`,
    );
  } finally {
    await stopAll();
    await proxy.close();
    await s3.stop();
  }
} finally {
  await stopAll();
  await rm(dir, { recursive: true, force: true });
}
