/**
 * `npm run bench:mount`: Ferry's FUSE mount beside bindfs (a FUSE passthrough) over a directory on the same
 * disk, in one run, with fio and a small metadata script:
 *
 *   sequential write, then read of a 1 GiB file with 1 MiB requests: cold (kernel caches dropped) and warm
 *   random 4 KiB reads over that file for a few seconds (IOPS)
 *   create (1 KiB each) / stat / unlink of 10,000 small files, one at a time (ops/s)
 *   ls -l and a scandir+stat walk of a directory of 20,000 empty files, cold and warm (bench/mount-listing.ts)
 *
 * Every side's create runs before any side's unlink, after a wait on ext4 without a journal (as on our VMs):
 * such an ext4 skips, at every new inode, each free inode of the group freed in the last minute (six minutes
 * while its inode table block is dirty: the recently_deleted() check, a scan per create). Creating right after
 * 10,000 deletions (the other side's unlink, or the last run's cleanup) measured that scan, not the file system
 * under test: perf showed it as 45 % of the mount's CPU. So on such a disk the bench syncs and waits out the
 * minute before the creates (BENCH_SETTLE_SECONDS, default 61; 0 skips the wait).
 *
 * Not a test: it prints a table. Installs fio and bindfs from Debian when missing (needs root). Needs a build
 * (`npm run build`). Sizes scale with BENCH_SCALE=0.25.
 */

import { execFile, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { formatVolume, openMetaEngine } from '../src/index.js';
import { benchListing } from './mount-listing.js';
import { writebackBench } from './mount-writeback.js';

const exec = promisify(execFile);
const REPO = path.resolve(import.meta.dirname, '..');
const CLI = path.join(REPO, 'dist/cli/main.js');
const scale = Number(process.env['BENCH_SCALE'] ?? '1');
const SIZE_MIB = Math.max(64, Math.round(1024 * scale));
const FILES = Math.max(1000, Math.round(10_000 * scale));
const RAND_SECONDS = 5;

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

function ensureTools(): void {
  const need = ['fio', 'bindfs'].filter((c) => !have(c));
  if (need.length === 0) return;
  process.stderr.write(`installing ${need.join(', ')} from Debian...\n`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  spawnSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'ignore', 'inherit'], env });
  const r = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...need], { stdio: ['ignore', 'ignore', 'inherit'], env });
  if (r.status !== 0) throw new Error(`cannot install ${need.join(', ')} (run as root, or install them first)`);
}

async function dropCaches(): Promise<void> {
  spawnSync('sync');
  await writeFile('/proc/sys/vm/drop_caches', '3\n').catch(() => process.stderr.write('(cannot drop caches: not root; cold numbers are warm)\n'));
}

async function fio(dir: string, rw: string, bs: string, extra: string[] = []): Promise<{ mibs: number; iops: number }> {
  const { stdout } = await exec(
    'fio',
    ['--name=b', `--directory=${dir}`, '--filename=bench.dat', `--rw=${rw}`, `--bs=${bs}`, `--size=${SIZE_MIB}M`, '--ioengine=psync', '--output-format=json', ...extra],
    { maxBuffer: 16 << 20 },
  );
  const job = (JSON.parse(stdout) as { jobs: Array<Record<'read' | 'write', { bw_bytes: number; iops: number }>> }).jobs[0]!;
  const side = rw.includes('write') ? job.write : job.read;
  return { mibs: side.bw_bytes / 2 ** 20, iops: side.iops };
}

/** argv: phase ("create": create then stat, "unlink"), count, directory. Prints ops/s per step. */
const META_SCRIPT = `
import os, sys, time
phase = sys.argv[1]; n = int(sys.argv[2]); d = sys.argv[3]
res = []
if phase == "create":
    os.mkdir(d)
    data = b"x" * 1024
    t = time.perf_counter()
    for i in range(n):
        fd = os.open(f"{d}/f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644); os.write(fd, data); os.close(fd)
    res.append(n / (time.perf_counter() - t))
    t = time.perf_counter()
    for i in range(n): os.stat(f"{d}/f{i}")
    res.append(n / (time.perf_counter() - t))
else:
    t = time.perf_counter()
    for i in range(n): os.unlink(f"{d}/f{i}")
    res.append(n / (time.perf_counter() - t))
    os.rmdir(d)
print(" ".join(f"{x:.0f}" for x in res))
`;

interface Row {
  name: string;
  write: number;
  coldRead: number;
  warmRead: number;
  randIops: number;
  create: number;
  stat: number;
  unlink: number;
}

/** Whether dir is on ext4 without a journal (jbd2 lists every journaled ext4 device in /proc/fs/jbd2). */
function ext4WithoutJournal(dir: string): boolean {
  const r = spawnSync('findmnt', ['-n', '-o', 'SOURCE,FSTYPE', '-T', dir], { encoding: 'utf8' });
  const [source, fstype] = (r.stdout ?? '').trim().split(/\s+/);
  if (r.status !== 0 || fstype !== 'ext4' || source === undefined) return false;
  const dev = path.basename(source);
  const journals = spawnSync('ls', ['/proc/fs/jbd2'], { encoding: 'utf8' }).stdout ?? '';
  return !journals.split('\n').some((j) => j.startsWith(`${dev}-`));
}

/** On ext4 without a journal: syncs and waits until earlier deletions no longer slow new inodes (see above). */
async function settleBeforeCreates(dir: string): Promise<void> {
  const seconds = Number(process.env['BENCH_SETTLE_SECONDS'] ?? '61');
  if (!(seconds > 0) || !ext4WithoutJournal(dir)) return;
  process.stderr.write(`ext4 without a journal under ${dir}: sync, then ${seconds} s for inodes freed earlier to age (recently_deleted)...\n`);
  spawnSync('sync');
  await new Promise((r) => setTimeout(r, seconds * 1000));
}

async function smallFiles(phase: 'create' | 'unlink', dir: string): Promise<number[]> {
  const { stdout } = await exec('python3', ['-c', META_SCRIPT, phase, String(FILES), path.join(dir, 'small')]);
  return stdout.trim().split(' ').map(Number);
}

async function measureData(name: string, dir: string): Promise<Row> {
  process.stderr.write(`${name}: sequential write...\n`);
  const write = (await fio(dir, 'write', '1M', ['--end_fsync=1'])).mibs;
  await dropCaches();
  process.stderr.write(`${name}: reads...\n`);
  const coldRead = (await fio(dir, 'read', '1M')).mibs;
  // fio drops the file's cached pages before a job unless told not to: keep them for the warm read.
  const warmRead = (await fio(dir, 'read', '1M', ['--invalidate=0'])).mibs;
  await dropCaches();
  const randIops = (await fio(dir, 'randread', '4k', ['--time_based', `--runtime=${RAND_SECONDS}`])).iops;
  await rm(path.join(dir, 'bench.dat'), { force: true });
  return { name, write, coldRead, warmRead, randIops, create: 0, stat: 0, unlink: 0 };
}

async function main(): Promise<void> {
  ensureTools();
  const root = await mkdtemp(path.join(os.tmpdir(), 'ferry-bench-mount-'));
  const ferryMnt = path.join(root, 'ferry');
  const bindSrc = path.join(root, 'bind-src');
  const bindMnt = path.join(root, 'bindfs');
  for (const d of [ferryMnt, bindSrc, bindMnt, path.join(root, 'bucket')]) await mkdir(d);
  const metaUrl = 'sqlite://' + path.join(root, 'meta.db');
  const eng = await openMetaEngine(metaUrl, { create: true });
  await formatVolume(eng, { name: 'bench', storage: 'file://' + path.join(root, 'bucket'), blockBytes: 4 << 20, compression: 'none', trashDays: 0 });
  await eng.close();
  const rows: Row[] = [];
  try {
    await exec(process.execPath, [CLI, 'mount', '-d', metaUrl, ferryMnt, '--log', path.join(root, 'mount.log')]);
    await exec('bindfs', [bindSrc, bindMnt]);
    const sides: Array<[Row, string]> = [];
    for (const [name, dir] of [['bindfs', bindMnt], ['ferry', ferryMnt]] as const) sides.push([await measureData(name, dir), dir]);
    await settleBeforeCreates(root);
    for (const [row, dir] of sides) {
      process.stderr.write(`${row.name}: create and stat ${FILES} small files...\n`);
      [row.create, row.stat] = (await smallFiles('create', dir)) as [number, number];
    }
    for (const [row, dir] of sides) {
      process.stderr.write(`${row.name}: unlink them...\n`);
      [row.unlink] = (await smallFiles('unlink', dir)) as [number];
      rows.push(row);
    }
  } finally {
    await exec(process.execPath, [CLI, 'umount', ferryMnt]).catch(() => exec('fusermount', ['-uz', ferryMnt]).catch(() => undefined));
    await exec('fusermount', ['-u', bindMnt]).catch(() => exec('fusermount', ['-uz', bindMnt]).catch(() => undefined));
    await new Promise((r) => setTimeout(r, 1500));
    await rm(root, { recursive: true, force: true });
  }
  const f = (n: number): string => (n >= 100 ? n.toFixed(0) : n.toFixed(1));
  const head = ['', `write ${SIZE_MIB} MiB`, 'read cold', 'read warm', 'rand 4K read', `create ${FILES}`, 'stat', 'unlink'];
  const lines = [head, ['', 'MiB/s', 'MiB/s', 'MiB/s', 'IOPS', 'ops/s', 'ops/s', 'ops/s']];
  for (const r of rows) lines.push([r.name, f(r.write), f(r.coldRead), f(r.warmRead), f(r.randIops), f(r.create), f(r.stat), f(r.unlink)]);
  const b = rows[0]!;
  const fe = rows[1]!;
  lines.push(['ferry/bindfs', ...[fe.write / b.write, fe.coldRead / b.coldRead, fe.warmRead / b.warmRead, fe.randIops / b.randIops, fe.create / b.create, fe.stat / b.stat, fe.unlink / b.unlink].map((x) => `${x.toFixed(2)}x`)]);
  const widths = head.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  for (const l of lines) console.log(l.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
  console.log('');
  for (const l of await benchListing()) console.log(l);
  // Write-back rows (bench/mount-writeback.ts): their own volumes, over s3rver; BENCH_WRITEBACK=0 skips them.
  if (process.env['BENCH_WRITEBACK'] !== '0') await writebackBench();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
