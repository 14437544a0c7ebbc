/**
 * The second half of `npm run bench:mount`: Ferry's mount over a local S3 server (s3rver) beside the mounts a
 * user would pick for a bucket, over the same server, in one run:
 *
 *   s3fs     (Debian's s3fs-fuse) with its defaults and path-style requests
 *   rclone   `rclone mount --vfs-cache-mode full`, the mode its docs recommend for applications that write
 *            files as a normal file system expects (it writes to a local cache and uploads later)
 *   ferry    `ferry mount --cache-dir` (and `--writeback` too when this build has it)
 *
 * Each side runs the same fio jobs (1 MiB psync requests, one job) and the same small-file script:
 *
 *   write        sequential write of a file, with end_fsync (what a user waits for)
 *   read after   a sequential read of that file after the kernel's caches are dropped, same mount
 *   first read   the same read after unmounting, emptying the side's own caches and mounting again: the
 *                first read of data a fresh client has never seen, limited by the bucket and the client
 *   create       4 KiB files, one at a time (open O_CREAT|O_EXCL, write, close), files/s
 *
 * Not a test: it prints a table with each side's options and the ratios ferry/s3fs and ferry/rclone. Needs root
 * (FUSE, dropping caches) and installs fio, s3fs and rclone from Debian when missing. Sizes scale with BENCH_SCALE.
 */

import { execFile, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { formatVolume, openMetaEngine } from '../src/index.js';
import { rcloneEnv, S3RVER_ACCESS_KEY, S3RVER_SECRET_KEY, startS3Server, type S3Server } from '../test/helpers/s3server.js';

const exec = promisify(execFile);
const REPO = path.resolve(import.meta.dirname, '..');
const CLI = path.join(REPO, 'dist/cli/main.js');
const scale = Number(process.env['BENCH_SCALE'] ?? '1');
const SIZE_MIB = Math.max(64, Math.round(1024 * scale));
const FILES = Math.max(200, Math.round(1000 * scale));

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

function ensureTools(): void {
  const need = [['fio', 'fio'], ['s3fs', 's3fs'], ['rclone', 'rclone']].filter(([cmd]) => !have(cmd!)).map(([, pkg]) => pkg!);
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

async function fio(dir: string, rw: 'write' | 'read', extra: string[] = []): Promise<number> {
  const { stdout } = await exec(
    'fio',
    ['--name=b', `--directory=${dir}`, '--filename=bench.dat', `--rw=${rw}`, '--bs=1M', `--size=${SIZE_MIB}M`, '--ioengine=psync', '--output-format=json', ...extra],
    { maxBuffer: 16 << 20 },
  );
  const job = (JSON.parse(stdout) as { jobs: Array<Record<'read' | 'write', { bw_bytes: number }>> }).jobs[0]!;
  return job[rw].bw_bytes / 2 ** 20;
}

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

async function creates(dir: string): Promise<number> {
  const { stdout } = await exec('python3', ['-c', CREATE_SCRIPT, String(FILES), path.join(dir, 'small')], { maxBuffer: 1 << 20 });
  return Number(stdout.trim());
}

/** A mount under test: how to mount it, and how to make the next mount start with empty caches. */
interface Side {
  name: string;
  options: string;
  mount(): Promise<void>;
  umount(): Promise<void>;
  clearCaches(): Promise<void>;
  dir: string;
}

interface Row {
  name: string;
  options: string;
  write: number;
  readAfter: number;
  firstRead: number;
  create: number;
}

async function fusermountU(dir: string): Promise<void> {
  await exec('fusermount', ['-u', dir]).catch(() => exec('fusermount', ['-uz', dir]).catch(() => undefined));
}

/** Waits until dir is a mount point (rclone's and s3fs's daemons return before the kernel mount is there). */
async function mounted(dir: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (spawnSync('mountpoint', ['-q', dir]).status === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${dir} did not become a mount point`);
}

async function measure(side: Side): Promise<Row> {
  await side.mount();
  process.stderr.write(`${side.name}: sequential write ${SIZE_MIB} MiB...\n`);
  const write = await fio(side.dir, 'write', ['--end_fsync=1']);
  await dropCaches();
  process.stderr.write(`${side.name}: read after write...\n`);
  const readAfter = await fio(side.dir, 'read');
  await side.umount();
  await side.clearCaches();
  await dropCaches();
  await side.mount();
  process.stderr.write(`${side.name}: first read after a fresh mount...\n`);
  const firstRead = await fio(side.dir, 'read');
  process.stderr.write(`${side.name}: create ${FILES} files of 4 KiB...\n`);
  const create = await creates(side.dir);
  await side.umount();
  return { name: side.name, options: side.options, write, readAfter, firstRead, create };
}

function ferrySide(root: string, server: S3Server, bucket: string, name: string, extra: string[]): Side {
  const dir = path.join(root, `mnt-${name}`);
  const cacheDir = path.join(root, `cache-${name}`);
  const metaUrl = `sqlite://${path.join(root, `${name}.db`)}`;
  let formatted = false;
  return {
    name,
    options: ['--cache-dir DIR', ...extra].join(' '),
    dir,
    async mount() {
      await mkdir(dir, { recursive: true });
      if (!formatted) {
        const eng = await openMetaEngine(metaUrl, { create: true });
        await formatVolume(eng, { name: 'bench', storage: server.url(name, bucket), blockBytes: 4 << 20, compression: 'none', trashDays: 0 });
        await eng.close();
        formatted = true;
      }
      await exec(process.execPath, [CLI, 'mount', '-d', metaUrl, dir, '--cache-dir', cacheDir, '--log', path.join(root, `${name}.log`), ...extra]);
    },
    async umount() {
      await exec(process.execPath, [CLI, 'umount', dir]).catch(() => fusermountU(dir));
    },
    async clearCaches() {
      await rm(cacheDir, { recursive: true, force: true });
    },
  };
}

function s3fsSide(root: string, server: S3Server, bucket: string): Side {
  const dir = path.join(root, 'mnt-s3fs');
  const passwd = path.join(root, 's3fs.passwd');
  const opts = ['url=' + server.endpoint, 'use_path_request_style', 'passwd_file=' + passwd];
  return {
    name: 's3fs',
    options: '-o use_path_request_style (defaults otherwise: no local cache)',
    dir,
    async mount() {
      await mkdir(dir, { recursive: true });
      await writeFile(passwd, `${S3RVER_ACCESS_KEY}:${S3RVER_SECRET_KEY}\n`, { mode: 0o600 });
      await exec('s3fs', [bucket, dir, ...opts.flatMap((o) => ['-o', o])]);
      await mounted(dir);
    },
    umount: () => fusermountU(dir),
    async clearCaches() {},
  };
}

function rcloneSide(root: string, server: S3Server, bucket: string): Side {
  const dir = path.join(root, 'mnt-rclone');
  const cacheDir = path.join(root, 'cache-rclone');
  const env = rcloneEnv(server.endpoint, server.endpoint);
  return {
    name: 'rclone',
    options: '--vfs-cache-mode full',
    dir,
    async mount() {
      await mkdir(dir, { recursive: true });
      await exec('rclone', ['mount', `DST:${bucket}`, dir, '--vfs-cache-mode', 'full', '--cache-dir', cacheDir, '--daemon'], { env });
      await mounted(dir);
    },
    umount: () => fusermountU(dir),
    async clearCaches() {
      await rm(cacheDir, { recursive: true, force: true });
    },
  };
}

async function main(): Promise<void> {
  ensureTools();
  const { stdout: help } = await exec(process.execPath, [CLI, 'mount', '--help']);
  const writeback = /--writeback\b/.test(help);
  const root = await mkdtemp(path.join(os.tmpdir(), 'ferry-bench-mount-s3-'));
  const server = await startS3Server({ buckets: ['ferry', 'ferrywb', 's3fs', 'rclone'] });
  const rows: Row[] = [];
  const sides: Side[] = [
    s3fsSide(root, server, 's3fs'),
    rcloneSide(root, server, 'rclone'),
    ferrySide(root, server, 'ferry', 'ferry', []),
    ...(writeback ? [ferrySide(root, server, 'ferrywb', 'ferry-wb', ['--writeback'])] : []),
  ];
  try {
    for (const side of sides) rows.push(await measure(side));
  } finally {
    for (const side of sides) await side.umount().catch(() => undefined);
    await new Promise((r) => setTimeout(r, 1000));
    await server.stop();
    await rm(root, { recursive: true, force: true });
  }
  const versions = [
    (spawnSync('s3fs', ['--version'], { encoding: 'utf8' }).stdout ?? '').split('\n')[0],
    (spawnSync('rclone', ['version'], { encoding: 'utf8' }).stdout ?? '').split('\n')[0],
    (spawnSync('fio', ['--version'], { encoding: 'utf8' }).stdout ?? '').trim(),
  ];
  console.log(`\nover S3 (s3rver on 127.0.0.1), ${SIZE_MIB} MiB file, 1 MiB psync requests; ${FILES} files of 4 KiB; ${versions.join('; ')}`);
  const f = (n: number): string => (n >= 100 ? n.toFixed(0) : n.toFixed(1));
  const head = ['', 'write', 'read after', 'first read', 'create 4K'];
  const lines = [head, ['', 'MiB/s', 'MiB/s', 'MiB/s', 'files/s']];
  for (const r of rows) lines.push([r.name, f(r.write), f(r.readAfter), f(r.firstRead), f(r.create)]);
  const by = new Map(rows.map((r) => [r.name, r]));
  for (const fe of rows.filter((r) => r.name.startsWith('ferry'))) {
    for (const peer of ['s3fs', 'rclone']) {
      const p = by.get(peer);
      if (p === undefined) continue;
      lines.push([`${fe.name}/${peer}`, ...[fe.write / p.write, fe.readAfter / p.readAfter, fe.firstRead / p.firstRead, fe.create / p.create].map((x) => `${x.toFixed(2)}x`)]);
    }
  }
  const widths = head.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  for (const l of lines) console.log(l.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
  for (const r of rows) console.log(`  ${r.name}: ${r.options}`);
  console.log('  (rclone --vfs-cache-mode full acknowledges writes from its local cache and uploads after; ferry --writeback likewise)');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
