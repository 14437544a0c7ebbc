/**
 * `npm run bench`: the SDK beside node:fs on the same disk, in one run.
 *
 *   sequential write and read of a 1 GiB file with 1 MiB requests (MiB/s)
 *   create (1 KiB each) / stat / unlink of 10,000 small files, one at a time and 16 at a time (ops/s);
 *   creating empty files (metadata only) one at a time
 *   peak RSS while the SDK writes a 4 GiB file
 *   random 4 KiB reads of a 1 GiB file (IOPS, one at a time and 16 at a time) and a sequential read of it, on
 *   fresh clients with a 64 MiB memory cache: whole-block reads (rangeReadBytesMax 0, as before stripes) beside
 *   ranged reads of stripes (the default), each the mean of two runs in the order whole, ranged, ranged, whole
 *   a training job's epochs with a disk cache (cacheDir) big enough for the 1 GiB file: the first sequential
 *   read (from the bucket, filling the disk cache), the share of its blocks the disk cache stored, and the
 *   second read on a fresh client (memory cache cold, so from local disk), beside node:fs; with the disk cache
 *   as it is (puts wait for room in a byte-bounded queue) and with the queue policy it had before (a 32-block
 *   queue, 2 writers, a full queue drops; on today's write path, which no longer copies a fetched block), in the
 *   order now, before, before, now (the mean of two runs each); with the load average
 *
 * Not a test: it asserts nothing, it prints a table. Sizes can be scaled down with BENCH_SCALE=0.25;
 * BENCH_ONLY=reads runs only the read comparison.
 */

import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { formatVolume, openMetaEngine, openVolume, type OpenVolumeOptions } from '../src/index.js';
import type { Volume } from '../src/sdk/volume.js';

const MiB = 1 << 20;
const scale = Number(process.env.BENCH_SCALE ?? '1');
const BIG = Math.max(64, Math.round(1024 * scale)) * MiB;
const HUGE = Math.max(256, Math.round(4096 * scale)) * MiB;
const FILES = Math.max(1000, Math.round(10_000 * scale));
const REQ = MiB;
const RANDOM_IO = 4096;
/** Each random-read measurement runs this long (or RANDOM_OPS_MAX reads). */
const RANDOM_SECONDS = Number(process.env.BENCH_RANDOM_SECONDS ?? '4');
const RANDOM_OPS_MAX = 200_000;
const RANDOM_MEM_CACHE_BYTES = 64 * MiB;
/** BENCH_ONLY=reads: only the random and sequential read comparison. */
const ONLY_READS = process.env.BENCH_ONLY === 'reads';

interface FsLike {
  name: string;
  writeBig(p: string, bytes: number, chunk: Buffer): Promise<void>;
  readBig(p: string, buf: Buffer): Promise<number>;
  mkdir(p: string): Promise<void>;
  create(p: string, data: Buffer): Promise<void>;
  /** An empty file: metadata only. */
  touch(p: string): Promise<void>;
  stat(p: string): Promise<void>;
  unlink(p: string): Promise<void>;
}

function nodeFs(root: string): FsLike {
  const abs = (p: string): string => path.join(root, p);
  return {
    name: 'node:fs',
    async writeBig(p, bytes, chunk) {
      const fh = await fs.open(abs(p), 'w');
      for (let off = 0; off < bytes; off += chunk.length) await fh.write(chunk, 0, chunk.length, off);
      await fh.close();
    },
    async readBig(p, buf) {
      const fh = await fs.open(abs(p), 'r');
      let total = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, total);
        if (bytesRead === 0) break;
        total += bytesRead;
      }
      await fh.close();
      return total;
    },
    mkdir: async (p) => {
      await fs.mkdir(abs(p), { recursive: true });
    },
    create: (p, data) => fs.writeFile(abs(p), data),
    touch: async (p) => {
      await (await fs.open(abs(p), 'wx')).close();
    },
    stat: async (p) => {
      await fs.stat(abs(p));
    },
    unlink: (p) => fs.unlink(abs(p)),
  };
}

function ferry(vol: Volume): FsLike {
  return {
    name: 'ferry sdk',
    async writeBig(p, bytes, chunk) {
      const fh = await vol.open(p, 'w');
      for (let off = 0; off < bytes; off += chunk.length) await fh.write(chunk, 0, chunk.length, off);
      await fh.close();
    },
    async readBig(p, buf) {
      const fh = await vol.open(p, 'r');
      let total = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, total);
        if (bytesRead === 0) break;
        total += bytesRead;
      }
      await fh.close();
      return total;
    },
    mkdir: async (p) => {
      await vol.mkdir(p, { recursive: true });
    },
    create: (p, data) => vol.writeFile(p, data),
    touch: async (p) => {
      await (await vol.open(p, 'wx')).close();
    },
    stat: async (p) => {
      await vol.stat(p);
    },
    unlink: (p) => vol.unlink(p),
  };
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
}

async function each(n: number, parallel: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

const name = (i: number): string => `/small/d${Math.floor(i / 1000)}/f${i}`;

async function run(f: FsLike): Promise<Record<string, number>> {
  const chunk = randomBytes(REQ);
  const out: Record<string, number> = {};
  out['write 1 GiB (MiB/s)'] = BIG / MiB / (await timed(() => f.writeBig('/big', BIG, chunk)));
  const buf = Buffer.allocUnsafe(REQ);
  out['read 1 GiB (MiB/s)'] = BIG / MiB / (await timed(() => f.readBig('/big', buf)));
  await f.unlink('/big');
  const small = randomBytes(1024);
  for (let d = 0; d * 1000 < FILES; d++) await f.mkdir(`/small/d${d}`);
  out['create empty (ops/s)'] = FILES / (await timed(() => each(FILES, 1, (i) => f.touch(`${name(i)}.e`))));
  await each(FILES, 16, (i) => f.unlink(`${name(i)}.e`));
  for (const parallel of [1, 16]) {
    const tag = parallel === 1 ? '' : ` x${parallel}`;
    out[`create${tag} (ops/s)`] = FILES / (await timed(() => each(FILES, parallel, (i) => f.create(name(i), small))));
    out[`stat${tag} (ops/s)`] = FILES / (await timed(() => each(FILES, parallel, (i) => f.stat(name(i)))));
    out[`unlink${tag} (ops/s)`] = FILES / (await timed(() => each(FILES, parallel, (i) => f.unlink(name(i)))));
  }
  return out;
}

async function peakRss(vol: Volume): Promise<{ peakMiB: number; mibps: number }> {
  const chunk = randomBytes(REQ);
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 50);
  const secs = await timed(() => ferry(vol).writeBig('/huge', HUGE, chunk));
  clearInterval(timer);
  peak = Math.max(peak, process.memoryUsage().rss);
  await vol.unlink('/huge');
  return { peakMiB: peak / MiB, mibps: HUGE / MiB / secs };
}

/** Reads of RANDOM_IO bytes at seeded random aligned offsets for RANDOM_SECONDS; IOPS. */
async function randomIops(fileBytes: number, parallel: number, read: (buf: Buffer, pos: number) => Promise<void>): Promise<number> {
  let x = 0x9e3779b9;
  const next = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % Math.floor(fileBytes / RANDOM_IO);
  };
  const deadline = performance.now() + RANDOM_SECONDS * 1000;
  let ops = 0;
  const t = performance.now();
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      const buf = Buffer.allocUnsafe(RANDOM_IO);
      while (performance.now() < deadline && ops < RANDOM_OPS_MAX) {
        ops++;
        await read(buf, next() * RANDOM_IO);
      }
    }),
  );
  return ops / ((performance.now() - t) / 1000);
}

type ReadRow = 'random read 4 KiB (IOPS)' | 'random read 4 KiB x16 (IOPS)' | 'sequential read 1 GiB (MiB/s)';
const READ_ROWS: readonly ReadRow[] = ['random read 4 KiB (IOPS)', 'random read 4 KiB x16 (IOPS)', 'sequential read 1 GiB (MiB/s)'];

/** One read row on a fresh client (cold memory cache); rangeReadBytesMax 0: whole blocks only. */
async function readRow(metaUrl: string, row: ReadRow, rangeReadBytesMax: number | undefined): Promise<number> {
  const vol = await openVolume(metaUrl, {
    uid: 0,
    gid: 0,
    memCacheBytes: RANDOM_MEM_CACHE_BYTES,
    ...(rangeReadBytesMax === undefined ? {} : { rangeReadBytesMax }),
  });
  try {
    if (row === 'sequential read 1 GiB (MiB/s)') return BIG / MiB / (await timed(() => ferry(vol).readBig('/rand', Buffer.allocUnsafe(REQ))));
    const fh = await vol.open('/rand', 'r');
    try {
      return await randomIops(BIG, row === 'random read 4 KiB (IOPS)' ? 1 : 16, async (buf, pos) => {
        await fh.read(buf, 0, buf.length, pos);
      });
    } finally {
      await fh.close();
    }
  } finally {
    await vol.close();
  }
}

/**
 * Each read row whole-block and ranged, in the order whole, ranged, ranged, whole (the mean of two runs each),
 * so that a load that drifts during the run favours neither.
 */
async function readRows(metaUrl: string): Promise<{ whole: Record<string, number>; ranged: Record<string, number> }> {
  const whole: Record<string, number> = {};
  const ranged: Record<string, number> = {};
  for (const row of READ_ROWS) {
    const w1 = await readRow(metaUrl, row, 0);
    const r1 = await readRow(metaUrl, row, undefined);
    const r2 = await readRow(metaUrl, row, undefined);
    const w2 = await readRow(metaUrl, row, 0);
    whole[row] = (w1 + w2) / 2;
    ranged[row] = (r1 + r2) / 2;
  }
  return { whole, ranged };
}

type EpochRow = 'first read 1 GiB (MiB/s)' | 'blocks on disk when it returned (%)' | 'blocks on disk after the queue drained (%)' | 'puts dropped' | 'second read, fresh client (MiB/s)' | 'RSS before the first read (MiB)' | 'peak RSS during the first read (MiB)';

/** The disk cache's queue policy before puts could wait: 32 blocks queued at most, 2 writers, a full queue drops. */
const DROP_WHEN_FULL = { putWaitMsMax: 0, pendingWriteBytesMax: 32 * 4 * MiB, writesInFlightMax: 2 };

/** Two epochs of a sequential read of '/rand' with a fresh disk cache in `cacheDir`. */
async function epochs(metaUrl: string, cacheDir: string, cacheOptions: OpenVolumeOptions['cacheOptions']): Promise<Record<EpochRow, number>> {
  await fs.rm(cacheDir, { recursive: true, force: true });
  const options: OpenVolumeOptions = { uid: 0, gid: 0, memCacheBytes: RANDOM_MEM_CACHE_BYTES, cacheDir, cacheBytes: 2 * BIG, cacheOptions: { freeSpaceFloorRatio: 0, ...cacheOptions } };
  const blocks = BIG / (4 * MiB);
  const first = await openVolume(metaUrl, options);
  const rssBefore = process.memoryUsage().rss;
  let peak = rssBefore;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 20);
  const firstSecs = await timed(() => ferry(first).readBig('/rand', Buffer.allocUnsafe(REQ)));
  clearInterval(timer);
  const atReturn = first.stats().diskCache!;
  await first.vfs.drain();
  await first.close(); // waits for the queued writes
  const drained = first.stats().diskCache!;
  const second = await openVolume(metaUrl, options);
  const secondSecs = await timed(() => ferry(second).readBig('/rand', Buffer.allocUnsafe(REQ)));
  await second.close();
  return {
    'first read 1 GiB (MiB/s)': BIG / MiB / firstSecs,
    'blocks on disk when it returned (%)': ((atReturn.stored ?? 0) / blocks) * 100,
    'blocks on disk after the queue drained (%)': (drained.entries / blocks) * 100,
    'puts dropped': drained.dropped ?? 0,
    'second read, fresh client (MiB/s)': BIG / MiB / secondSecs,
    'RSS before the first read (MiB)': rssBefore / MiB,
    'peak RSS during the first read (MiB)': peak / MiB,
  };
}

async function epochRows(metaUrl: string, cacheDir: string): Promise<{ now: Record<string, number>; before: Record<string, number> }> {
  const n1 = await epochs(metaUrl, cacheDir, {});
  const b1 = await epochs(metaUrl, cacheDir, DROP_WHEN_FULL);
  const b2 = await epochs(metaUrl, cacheDir, DROP_WHEN_FULL);
  const n2 = await epochs(metaUrl, cacheDir, {});
  const mean = (x: Record<string, number>, y: Record<string, number>): Record<string, number> =>
    Object.fromEntries(Object.keys(x).map((k) => [k, (x[k]! + y[k]!) / 2]));
  await fs.rm(cacheDir, { recursive: true, force: true });
  return { now: mean(n1, n2), before: mean(b1, b2) };
}

function printTable(head: string[], rows: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(head));
  for (const r of rows) console.log(line(r));
}

async function main(): Promise<void> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-bench-'));
  try {
    const plain = path.join(root, 'plain');
    const bucket = path.join(root, 'bucket');
    await fs.mkdir(plain);
    await fs.mkdir(bucket);
    const metaUrl = `sqlite://${path.join(root, 'meta.db')}`;
    const eng = await openMetaEngine(metaUrl, { create: true });
    await formatVolume(eng, { name: 'bench', storage: `file://${bucket}`, blockBytes: 4 * MiB, compression: 'none', trashDays: 0 });
    await eng.close();
    const vol = await openVolume(metaUrl, { uid: 0, gid: 0 });

    console.log(`ferry bench: ${os.cpus().length} cores, Node ${process.version}, dir ${root}`);
    console.log(`files: ${BIG / MiB} MiB big file, ${FILES} small files, ${HUGE / MiB} MiB for RSS\n`);
    if (!ONLY_READS) {
      const base = await run(nodeFs(plain));
      const mine = await run(ferry(vol));
      const rows = Object.keys(base).map((k) => [k, base[k]!.toFixed(0), mine[k]!.toFixed(0), `${((mine[k]! / base[k]!) * 100).toFixed(0)} %`]);
      printTable(['', 'node:fs', 'ferry', 'ferry/node'], rows);
    }

    // Random reads: one 1 GiB file, read by fresh clients (cold memory cache) whole-block and ranged.
    await ferry(vol).writeBig('/rand', BIG, randomBytes(REQ));
    await nodeFs(plain).writeBig('/rand', BIG, randomBytes(REQ));
    const nfh = await fs.open(path.join(plain, 'rand'), 'r');
    const nodeRows: Record<string, number> = {};
    for (const parallel of [1, 16]) {
      nodeRows[`random read 4 KiB${parallel === 1 ? '' : ` x${parallel}`} (IOPS)`] = await randomIops(BIG, parallel, async (buf, pos) => {
        await nfh.read(buf, 0, buf.length, pos);
      });
    }
    nodeRows['sequential read 1 GiB (MiB/s)'] = BIG / MiB / (await timed(() => nodeFs(plain).readBig('/rand', Buffer.allocUnsafe(REQ))));
    await nfh.close();
    const { whole, ranged } = await readRows(metaUrl);
    console.log(`\n${BIG / MiB} MiB file, 4 MiB blocks, file:// bucket, ${RANDOM_MEM_CACHE_BYTES / MiB} MiB memory cache, fresh client per run:`);
    printTable(
      ['', 'node:fs', 'whole blocks', 'ranged', 'ranged/whole'],
      Object.keys(whole).map((k) => [k, nodeRows[k]!.toFixed(0), whole[k]!.toFixed(0), ranged[k]!.toFixed(0), `${((ranged[k]! / whole[k]!) * 100).toFixed(0)} %`]),
    );

    const loadBefore = os.loadavg();
    const { now: waitRows, before: dropRows } = await epochRows(metaUrl, path.join(root, 'cache'));
    const loadAfter = os.loadavg();
    const fmt = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');
    console.log(
      `\nepochs with a disk cache of ${(2 * BIG) / MiB} MiB (${RANDOM_MEM_CACHE_BYTES / MiB} MiB memory cache); load average ` +
        `${fmt(loadBefore)} before, ${fmt(loadAfter)} after (${os.cpus().length} cores):`,
    );
    printTable(
      ['', 'node:fs', 'drop when full (before)', 'wait for room (now)'],
      Object.keys(waitRows).map((k) => [
        k,
        k.startsWith('first') || k.startsWith('second') ? nodeRows['sequential read 1 GiB (MiB/s)']!.toFixed(0) : '',
        dropRows[k]!.toFixed(0),
        waitRows[k]!.toFixed(0),
      ]),
    );
    await vol.unlink('/rand');
    await fs.unlink(path.join(plain, 'rand'));
    // RSS is measured on a freshly opened volume, so the read cache filled above does not count.
    await vol.close();
    if (ONLY_READS) return;
    const fresh = await openVolume(metaUrl, { uid: 0, gid: 0 });
    const before = process.memoryUsage().rss / MiB;
    const rss = await peakRss(fresh);
    console.log(
      `\npeak RSS while writing ${HUGE / MiB} MiB through the SDK: ${rss.peakMiB.toFixed(0)} MiB ` +
        `(process at ${before.toFixed(0)} MiB before; ${rss.mibps.toFixed(0)} MiB/s)`,
    );
    await fresh.close();
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
}

await main();
