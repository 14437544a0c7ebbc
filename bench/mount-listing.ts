/**
 * Listing a big directory through the mount, beside bindfs over the same disk, in one run (part of
 * `npm run bench:mount`; bench/mount.ts calls `benchListing`): a directory of LIST_FILES empty files,
 *
 *   ls -l cold    the kernel's caches dropped and the mount fresh (unmounted and mounted again): what a new
 *                 client pays for names, attributes and the extended attributes `ls -l` asks for
 *   ls -l warm    the same again at once, on the same mount
 *   walk cold     Python's os.scandir + os.stat of every entry (what data loaders and `du` do), cold as above,
 *                 timed inside Python (the interpreter's start is left out)
 *   walk warm     the same again at once
 *
 * Each is the median of LIST_RUNS runs, in seconds. Ferry mounts with its defaults (1 s attribute and entry
 * timeouts); bindfs with its defaults (it passes everything through, no caching of its own). Needs root (FUSE,
 * dropping caches) and bindfs.
 */

import { execFile, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { formatVolume, openMetaEngine } from '../src/index.js';

const exec = promisify(execFile);
const CLI = path.join(path.resolve(import.meta.dirname, '..'), 'dist/cli/main.js');
const LIST_FILES = Math.max(1000, Math.round(20_000 * Number(process.env['BENCH_SCALE'] ?? '1')));
const LIST_RUNS = 3;

/** Prints the seconds the walk took (the interpreter's start, slow on a loaded machine, left out). */
const WALK = `
import os, sys, time
t = time.perf_counter()
n = 0
for e in os.scandir(sys.argv[1]):
    os.stat(e.path)
    n += 1
assert n == int(sys.argv[2]), n
print(time.perf_counter() - t)
`;

const MAKE = `
import os, sys
d = sys.argv[1]
for i in range(int(sys.argv[2])):
    os.close(os.open(os.path.join(d, "f%06d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
`;

async function dropCaches(): Promise<void> {
  spawnSync('sync');
  await writeFile('/proc/sys/vm/drop_caches', '3\n').catch(() => process.stderr.write('(cannot drop caches: not root; cold numbers are warm)\n'));
}

/** Seconds a command takes (its output discarded), or the seconds it prints itself (`selfTimed`). */
async function timed(cmd: string, args: string[], selfTimed = false): Promise<number> {
  const t = performance.now();
  const { stdout } = await exec(cmd, args, { maxBuffer: 64 << 20 });
  return selfTimed ? Number(stdout.trim()) : (performance.now() - t) / 1000;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

interface Side {
  name: string;
  /** The directory to list. */
  dir: string;
  /** Unmounts and mounts the side again: its own caches start empty. */
  remount(): Promise<void>;
}

/** Cold and warm `ls -l` and walk of side.dir, medians of LIST_RUNS. */
async function measure(side: Side): Promise<number[]> {
  const runs: number[][] = [[], [], [], []];
  const ls = ['ls', ['-l', side.dir], false] as const;
  const walk = ['python3', ['-c', WALK, side.dir, String(LIST_FILES)], true] as const;
  for (let i = 0; i < LIST_RUNS; i++) {
    for (const [k, [cmd, args, self]] of [ls, walk].entries()) {
      await side.remount();
      await dropCaches();
      runs[2 * k]!.push(await timed(cmd, [...args], self));
      runs[2 * k + 1]!.push(await timed(cmd, [...args], self));
    }
  }
  return runs.map(median);
}

/** Lines of the listing table: ls -l and the walk of LIST_FILES files, cold and warm, bindfs and ferry. */
export async function benchListing(): Promise<string[]> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'ferry-bench-list-'));
  const ferryMnt = path.join(root, 'ferry');
  const bindSrc = path.join(root, 'bind-src');
  const bindMnt = path.join(root, 'bindfs');
  for (const d of [ferryMnt, bindSrc, bindMnt, path.join(root, 'bucket')]) await mkdir(d);
  const metaUrl = 'sqlite://' + path.join(root, 'meta.db');
  const eng = await openMetaEngine(metaUrl, { create: true });
  await formatVolume(eng, { name: 'bench-list', storage: 'file://' + path.join(root, 'bucket'), blockBytes: 4 << 20, compression: 'none', trashDays: 0 });
  await eng.close();
  const mountFerry = (): Promise<unknown> => exec(process.execPath, [CLI, 'mount', '-d', metaUrl, ferryMnt, '--log', path.join(root, 'mount.log')]);
  const umountFerry = (): Promise<unknown> => exec(process.execPath, [CLI, 'umount', ferryMnt]).catch(() => exec('fusermount', ['-uz', ferryMnt]).catch(() => undefined));
  const umountBind = (): Promise<unknown> => exec('fusermount', ['-u', bindMnt]).catch(() => exec('fusermount', ['-uz', bindMnt]).catch(() => undefined));
  const results: Array<[string, number[]]> = [];
  try {
    await mountFerry();
    await exec('bindfs', [bindSrc, bindMnt]);
    process.stderr.write(`listing: making ${LIST_FILES} empty files on each side...\n`);
    await mkdir(path.join(bindSrc, 'big'));
    await exec('python3', ['-c', MAKE, path.join(bindSrc, 'big'), String(LIST_FILES)]);
    await mkdir(path.join(ferryMnt, 'big'));
    await exec('python3', ['-c', MAKE, path.join(ferryMnt, 'big'), String(LIST_FILES)]);
    const sides: Side[] = [
      {
        name: 'bindfs',
        dir: path.join(bindMnt, 'big'),
        remount: async () => {
          await umountBind();
          await exec('bindfs', [bindSrc, bindMnt]);
        },
      },
      {
        name: 'ferry',
        dir: path.join(ferryMnt, 'big'),
        remount: async () => {
          await umountFerry();
          await mountFerry();
        },
      },
    ];
    for (const side of sides) {
      process.stderr.write(`listing: ${side.name}: ls -l and a scandir+stat walk, cold and warm, ${LIST_RUNS} runs...\n`);
      results.push([side.name, await measure(side)]);
    }
  } finally {
    await umountFerry();
    await umountBind();
    await new Promise((r) => setTimeout(r, 1500));
    await rm(root, { recursive: true, force: true });
  }
  const head = ['', 'ls -l cold', 'ls -l warm', 'walk cold', 'walk warm'];
  const lines = [head, [`${LIST_FILES} empty files`, 's', 's', 's', 's']];
  for (const [name, r] of results) lines.push([name, ...r.map((x) => x.toFixed(3))]);
  const b = results[0]![1];
  const fe = results[1]![1];
  lines.push(['bindfs/ferry (speed-up)', ...b.map((x, i) => `${(x / fe[i]!).toFixed(2)}x`)]);
  const widths = head.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  return lines.map((l) => l.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
}
