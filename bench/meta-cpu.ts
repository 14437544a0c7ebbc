/**
 * CPU per metadata operation: one SDK client (lookup cache off) creates (open wx + close), stats and unlinks
 * N files on Redis, and prints ops/s with the client's CPU (process.cpuUsage) and the Redis server's CPU
 * (/proc/<pid>/stat of every local redis-server) per operation. The sum bounds what clients sharing this
 * machine's cores can reach together, whatever their round trips: cores / (client + server CPU per op).
 *
 *   node --import tsx bench/meta-cpu.ts [N]     (Redis on 127.0.0.1:6379; uses database 14 and flushes it)
 */

import { execSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { formatVolume, openMetaEngine, openVolume } from '../src/index.js';

const N = Number(process.argv[2] ?? 2000);
const URL = 'redis://127.0.0.1:6379/14';

function serverCpuMs(pids: string[]): number {
  let ms = 0;
  for (const pid of pids) {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    ms += (Number(fields[11]) + Number(fields[12])) * 10; // utime + stime, in clock ticks of 10 ms
  }
  return ms;
}

async function main(): Promise<void> {
  const pids = execSync('pgrep -x redis-server', { encoding: 'utf8' }).trim().split('\n').filter((p) => p !== '');
  execSync('redis-cli -n 14 flushdb');
  const root = await mkdtemp(path.join(tmpdir(), 'ferry-meta-cpu-'));
  const eng = await openMetaEngine(URL, { create: true });
  await formatVolume(eng, { name: 'metacpu', storage: 'file://' + path.join(root, 'bucket'), blockBytes: 4 << 20, compression: 'none', trashDays: 0 });
  await eng.close();
  const vol = await openVolume(URL, { lookupCacheMs: 0 });
  try {
    await vol.mkdir('/d');
    console.log(`meta CPU per op: Redis, 1 SDK client, lookup cache off, ${N} files; ${cpus().length} cores`);
    for (const op of ['create', 'stat', 'unlink'] as const) {
      const c0 = process.cpuUsage();
      const s0 = serverCpuMs(pids);
      const t0 = performance.now();
      for (let i = 0; i < N; i++) {
        if (op === 'create') await (await vol.open(`/d/f${i}`, 'wx')).close();
        else if (op === 'stat') await vol.stat(`/d/f${i}`);
        else await vol.unlink(`/d/f${i}`);
      }
      const wall = performance.now() - t0;
      const c = process.cpuUsage(c0);
      const client = (c.user + c.system) / N;
      const server = ((serverCpuMs(pids) - s0) * 1000) / N;
      const bound = (cpus().length * 1e6) / (client + server);
      console.log(`${op.padEnd(7)} ${((N / wall) * 1000).toFixed(0).padStart(6)} ops/s  client ${client.toFixed(0)} µs/op  redis ${server.toFixed(0)} µs/op  => at most ${bound.toFixed(0)} ops/s from all clients on these cores`);
    }
  } finally {
    await vol.close();
    execSync('redis-cli -n 14 flushdb');
    await rm(root, { recursive: true, force: true });
  }
}

await main();
