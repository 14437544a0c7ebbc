/**
 * One reader process of bench/cachegroup.ts: opens the volume (through a cache group, a local disk cache, or
 * neither), reads a file, and prints one JSON line of what it measured. Usage: a JSON argument, see `Job`.
 */

import { openVolume } from '../src/index.js';

interface Job {
  meta: string;
  path: string;
  group?: string;
  cacheDir?: string;
  /** Passes to read before the timed ones (to fill caches). */
  warmPasses?: number;
  /** Timed: one sequential pass, then `randomReads` reads of 4 KiB at seeded random offsets, 16 at a time. */
  randomReads?: number;
}

const job = JSON.parse(process.argv[2]!) as Job;
const vol = await openVolume(job.meta, {
  heartbeatMs: 0,
  memCacheBytes: 0,
  ...(job.cacheDir === undefined ? {} : { cacheDir: job.cacheDir, cacheBytes: 4 << 30 }),
  ...(job.group === undefined ? {} : { cacheGroup: { group: job.group, sharing: false, timeoutMs: 120_000 } }),
});
const size = (await vol.stat(job.path)).size;
const h = await vol.open(job.path);
const buf = Buffer.alloc(4 << 20);
const seq = async (): Promise<number> => {
  const t0 = performance.now();
  for (let off = 0; off < size; off += buf.length) await h.read(buf, 0, Math.min(buf.length, size - off), off);
  return performance.now() - t0;
};
for (let i = 0; i < (job.warmPasses ?? 0); i++) await seq();
// Requests to the group (and their bytes) of each timed phase: what a read costs on the wire.
const peer = (): { requests: number; bytes: number } => {
  const s = vol.cacheGroup?.tier.peerStats;
  return { requests: s?.requests ?? 0, bytes: s?.bytes ?? 0 };
};
const minus = (a: { requests: number; bytes: number }, b: { requests: number; bytes: number }): { requests: number; bytes: number } => ({ requests: a.requests - b.requests, bytes: a.bytes - b.bytes });
const cpu = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const p0 = peer();
const c0 = cpu();
const seqMs = await seq();
const c1 = cpu();
const p1 = peer();
let randomMs = 0;
const n = job.randomReads ?? 0;
if (n > 0) {
  let x = 12345;
  const offsets = Array.from({ length: n }, () => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return Math.floor((x / 2 ** 32) * (size - 4096));
  });
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      const b = Buffer.alloc(4096);
      while (next < offsets.length) await h.read(b, 0, 4096, offsets[next++]!);
    }),
  );
  randomMs = performance.now() - t0;
}
const p2 = peer();
const c2 = cpu();
await h.close();
const stats = vol.stats().chunks;
await vol.close();
process.stdout.write(JSON.stringify({ bytes: size, seqMs, randomMs, randomReads: n, bucketBlocks: stats.blocksRead, seqPeer: minus(p1, p0), randomPeer: minus(p2, p1), seqCpuMs: c1 - c0, randomCpuMs: c2 - c1 }) + '\n');
