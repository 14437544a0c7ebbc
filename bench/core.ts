/**
 * `npm run bench`: the SDK beside node:fs on the same disk, in one run.
 *
 *   sequential write and read of a 1 GiB file with 1 MiB requests (MiB/s)
 *   create (1 KiB each) / stat / unlink of 10,000 small files, one at a time and 16 at a time (ops/s);
 *   creating empty files (metadata only) one at a time
 *   peak RSS while the SDK writes a 4 GiB file
 *
 * Not a test: it asserts nothing, it prints a table. Sizes can be scaled down with BENCH_SCALE=0.25.
 */

import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { formatVolume, openMetaEngine, openVolume } from '../src/index.js';
import type { Volume } from '../src/sdk/volume.js';

const MiB = 1 << 20;
const scale = Number(process.env.BENCH_SCALE ?? '1');
const BIG = Math.max(64, Math.round(1024 * scale)) * MiB;
const HUGE = Math.max(256, Math.round(4096 * scale)) * MiB;
const FILES = Math.max(1000, Math.round(10_000 * scale));
const REQ = MiB;

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
    const base = await run(nodeFs(plain));
    const mine = await run(ferry(vol));
    const rows = Object.keys(base).map((k) => [k, base[k]!.toFixed(0), mine[k]!.toFixed(0), `${((mine[k]! / base[k]!) * 100).toFixed(0)} %`]);
    const head = ['', 'node:fs', 'ferry', 'ferry/node'];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
    console.log(line(head));
    for (const r of rows) console.log(line(r));
    // RSS is measured on a freshly opened volume, so the read cache filled above does not count.
    await vol.close();
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
