/**
 * The write-back rows of `npm run bench:mount` (also runnable alone: `node --import tsx bench/mount-writeback.ts`
 * after `npm run build`): Ferry mounted over a local S3 server (s3rver) with `--cache-dir`, without and with
 * `--writeback`, and the same behind a proxy that adds WRITEBACK_RTT_MS (default 20) of round trip, as a bucket in
 * another cloud has (src/net/faultproxy.ts, in this process), in one run:
 *
 *   sequential write of a 1 GiB file with 1 MiB requests (fio, end_fsync: the close is in the figure), and
 *   the seconds until every staged block is in the bucket (write-back; the mount's .stats says when)
 *   create 4 KiB files one at a time (Python: open, write, close), then the seconds until they are uploaded
 *
 * Each side waits for its uploads before its next step, so a step never measures the previous one's uploads.
 * Sizes scale with BENCH_SCALE (0.25: 256 MiB, 2,500 files).
 */

import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { formatVolume, openMetaEngine } from '../src/index.js';
import { FaultProxy } from '../src/net/faultproxy.js';
import { startS3Server } from '../test/helpers/s3server.js';

const exec = promisify(execFile);
const REPO = path.resolve(import.meta.dirname, '..');
const CLI = path.join(REPO, 'dist/cli/main.js');
const scale = Number(process.env['BENCH_SCALE'] ?? '1');
const SIZE_MIB = Math.max(64, Math.round(1024 * scale));
const FILES = Math.max(1000, Math.round(10_000 * scale));
/** How long a side may take to upload what it staged before the bench gives up. */
const DRAIN_S_MAX = 900;
const RTT_MS = Number(process.env['WRITEBACK_RTT_MS'] ?? '20');

const CREATE_SCRIPT = `
import os, sys, time
n = int(sys.argv[1]); d = sys.argv[2]
os.mkdir(d)
data = b"x" * 4096
t = time.perf_counter()
for i in range(n):
    fd = os.open(f"{d}/f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644); os.write(fd, data); os.close(fd)
print(f"{n / (time.perf_counter() - t):.1f}")
`;

interface WritebackRow {
  name: string;
  writeMibs: number;
  /** Seconds after the write until its blocks were all in the bucket (0 without write-back). */
  writeUploadedS: number;
  create: number;
  createUploadedS: number;
}

async function pendingBlocks(mnt: string): Promise<number> {
  const m = /^ferry_writeback_pending_blocks (\d+)$/m.exec(await readFile(path.join(mnt, '.stats'), 'utf8'));
  return m === null ? 0 : Number(m[1]);
}

/** Seconds until the mount has nothing left to upload. */
async function drainSeconds(mnt: string): Promise<number> {
  const t = performance.now();
  while ((await pendingBlocks(mnt)) > 0) {
    if (performance.now() - t > DRAIN_S_MAX * 1000) throw new Error(`${mnt}: uploads still pending after ${DRAIN_S_MAX} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return (performance.now() - t) / 1000;
}

async function measure(name: string, mnt: string): Promise<WritebackRow> {
  process.stderr.write(`${name}: sequential write ${SIZE_MIB} MiB...\n`);
  const { stdout } = await exec(
    'fio',
    ['--name=b', `--directory=${mnt}`, '--filename=bench.dat', '--rw=write', '--bs=1M', `--size=${SIZE_MIB}M`, '--ioengine=psync', '--end_fsync=1', '--output-format=json'],
    { maxBuffer: 16 << 20 },
  );
  const writeMibs = (JSON.parse(stdout) as { jobs: Array<{ write: { bw_bytes: number } }> }).jobs[0]!.write.bw_bytes / 2 ** 20;
  const writeUploadedS = await drainSeconds(mnt);
  process.stderr.write(`${name}: create ${FILES} files of 4 KiB...\n`);
  const created = await exec('python3', ['-c', CREATE_SCRIPT, String(FILES), path.join(mnt, 'small')]);
  const create = Number(created.stdout.trim());
  const createUploadedS = await drainSeconds(mnt);
  return { name, writeMibs, writeUploadedS, create, createUploadedS };
}

/** Mounts an S3 volume per side in turn (without and with --writeback, direct and over a slow link); one table. */
export async function writebackBench(): Promise<void> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'ferry-bench-wb-'));
  const s3 = await startS3Server();
  const proxy = await FaultProxy.start({ targetPort: s3.port, upLatencyMs: RTT_MS / 2, downLatencyMs: RTT_MS / 2 });
  const slow = (url: string): string => url.replace(encodeURIComponent(s3.endpoint), encodeURIComponent(`http://127.0.0.1:${proxy.port}`));
  const rows: WritebackRow[] = [];
  try {
    for (const [name, link, extra] of [
      ['s3', 'direct', []],
      ['s3 --writeback', 'direct', ['--writeback']],
      [`s3 +${RTT_MS} ms RTT`, 'slow', []],
      [`s3 +${RTT_MS} ms RTT --writeback`, 'slow', ['--writeback']],
    ] as const) {
      const dir = path.join(root, name.replace(/[^a-z0-9]+/g, '-'));
      const mnt = path.join(dir, 'mnt');
      await mkdir(mnt, { recursive: true });
      const metaUrl = 'sqlite://' + path.join(dir, 'meta.db');
      const url = s3.url(path.basename(dir));
      const eng = await openMetaEngine(metaUrl, { create: true });
      await formatVolume(eng, { name: 'bench', storage: link === 'slow' ? slow(url) : url, blockBytes: 4 << 20, compression: 'none', trashDays: 0 });
      await eng.close();
      await exec(process.execPath, [CLI, 'mount', '-d', metaUrl, mnt, '--cache-dir', path.join(dir, 'cache'), ...extra, '--log', path.join(dir, 'mount.log')]);
      try {
        rows.push(await measure(`ferry ${name}`, mnt));
      } finally {
        await exec(process.execPath, [CLI, 'umount', mnt]).catch(() => exec('fusermount', ['-uz', mnt]).catch(() => undefined));
      }
    }
  } finally {
    await proxy.close();
    await s3.stop();
    await new Promise((r) => setTimeout(r, 1500));
    await rm(root, { recursive: true, force: true });
  }
  const f = (n: number): string => (n >= 100 ? n.toFixed(0) : n.toFixed(1));
  const head = ['', `write ${SIZE_MIB} MiB`, 'all uploaded after', `create ${FILES} x 4 KiB`, 'all uploaded after'];
  const lines = [head, ['', 'MiB/s', 's', 'files/s', 's']];
  for (const r of rows) lines.push([r.name, f(r.writeMibs), f(r.writeUploadedS), f(r.create), f(r.createUploadedS)]);
  for (let i = 0; i + 1 < rows.length; i += 2) {
    const [base, wb] = [rows[i]!, rows[i + 1]!];
    lines.push([`${wb.name.replace('ferry ', '')} / without`, `${(wb.writeMibs / base.writeMibs).toFixed(2)}x`, '', `${(wb.create / base.create).toFixed(2)}x`, '']);
  }
  const widths = head.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  console.log(`\nWrite-back over a local S3 server (s3rver), directly and with ${RTT_MS} ms of added round trip; every side with --cache-dir; one run:`);
  for (const l of lines) console.log(l.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  writebackBench().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
