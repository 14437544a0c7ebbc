/**
 * Seeded differential test: the same random operations run against a Ferry volume (through the SDK) and
 * against a real directory (node:fs/promises), and every outcome is compared — the value on success, the
 * error code on failure — and, every CHECK_EVERY operations and at the end, the whole tree: names, types,
 * sizes, permission bits, link counts, symlink targets and file contents.
 *
 * The namespace is small (names a..d; random paths up to depth 3, new names in directories up to depth 4)
 * so operations collide often: renames over existing entries and ancestors, paths through files, links to
 * symlinks, dangling and looping symlinks, handles kept open across unlinks and renames. Both sides run as
 * root (the test is skipped otherwise: the local side would enforce permissions the volume's root skips).
 *
 * Replay a failure with FERRY_SEED=<seed>; FERRY_DIFF_OPS sets the number of operations; FERRY_DIFF_KEEP=1
 * keeps both trees for inspection.
 *
 * Where Linux and Ferry legitimately differ, the comparison leaves the field out (each one says why):
 *  - directory sizes (ext4 reports allocated bytes, Ferry a constant 4096);
 *  - atime/mtime/ctime, except right after an explicit utimes (clocks and relatime differ);
 *  - absolute symlink targets are stored rebased under the local root, and read back without that prefix;
 *    a symlink's size is compared as the byte length of the target as the caller wrote it;
 *  - inode numbers, uid/gid (both root), blocks;
 *  - rmdir of the root is never generated (the local root is an ordinary directory);
 *  - copyFile from a directory: libuv truncates and then unlinks an existing destination before it fails
 *    with EISDIR; Ferry fails first and leaves the destination alone (the local side is made to do so).
 */

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { FileHandle as FerryHandle, Volume } from '../../src/index.js';
import { mulberry32, randomSeed } from '../../src/util/random.js';
import { makeVolume } from '../helpers/volume.js';

const SEED = process.env.FERRY_SEED !== undefined ? Number(process.env.FERRY_SEED) : randomSeed();
const OPS = Number(process.env.FERRY_DIFF_OPS ?? 3000);
const CHECK_EVERY = 250;
const BLOCK_BYTES = 16 << 10; // small blocks: random writes cross block edges all the time
const NAMES = ['a', 'b', 'c', 'd'];
const DEPTH_MAX = 3;
const HANDLES_MAX = 3;
const HOLE_BYTES_MAX = 200_000;
const DATA_BYTES_MAX = 3 * BLOCK_BYTES + 100;
const HISTORY_MAX = 40;
const KNOWN_EVERY = 10;
const FRESH_DEPTH_MAX = 4;
const COPYFILE_EXCL = 1;

// ---------------------------------------------------------------- the two sides

type Kind = 'file' | 'dir' | 'symlink' | 'other';

/** The comparable part of a stat result. */
interface StatView {
  type: Kind;
  /** Files and symlinks only (see the header for directories). */
  size?: number;
  perm: number;
  nlink: number;
}

interface Handle {
  write(data: Buffer, pos: number): Promise<number>;
  read(len: number, pos: number): Promise<Buffer>;
  stat(): Promise<StatView>;
  truncate(len: number): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** One file system as the operations see it: volume paths ('/a/b') in, comparable values out. */
interface Side {
  readonly name: string;
  writeFile(p: string, data: Buffer, flag: string): Promise<void>;
  appendFile(p: string, data: Buffer): Promise<void>;
  readFile(p: string): Promise<Buffer>;
  open(p: string, flags: string): Promise<Handle>;
  truncate(p: string, len: number): Promise<void>;
  mkdir(p: string, recursive: boolean): Promise<string | undefined>;
  rmdir(p: string): Promise<void>;
  unlink(p: string): Promise<void>;
  rename(a: string, b: string): Promise<void>;
  link(a: string, b: string): Promise<void>;
  symlink(target: string, p: string): Promise<void>;
  readlink(p: string): Promise<string>;
  chmod(p: string, mode: number): Promise<void>;
  stat(p: string): Promise<StatView>;
  lstat(p: string): Promise<StatView>;
  readdir(p: string): Promise<string[]>;
  readdirTypes(p: string): Promise<string[]>;
  utimes(p: string, atime: number, mtime: number): Promise<{ atimeMs: number; mtimeMs: number }>;
  copyFile(a: string, b: string, mode: number): Promise<void>;
}

interface StatLike {
  mode: number;
  size: number;
  nlink: number;
  isFile(): boolean;
  isDirectory(): boolean;
  isSymbolicLink(): boolean;
}

function view(st: StatLike, symlinkSize?: number): StatView {
  const type: Kind = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
  const v: StatView = { type, perm: st.mode & 0o7777, nlink: st.nlink };
  if (type === 'file') v.size = st.size;
  if (type === 'symlink') v.size = symlinkSize ?? st.size;
  return v;
}

function typeName(e: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean }): Kind {
  return e.isFile() ? 'file' : e.isDirectory() ? 'dir' : e.isSymbolicLink() ? 'symlink' : 'other';
}

function ferrySide(vol: Volume): Side {
  const handle = (fh: FerryHandle): Handle => ({
    write: async (data, pos) => (await fh.write(data, 0, data.length, pos)).bytesWritten,
    read: async (len, pos) => {
      const buf = Buffer.alloc(len);
      const { bytesRead } = await fh.read(buf, 0, len, pos);
      return buf.subarray(0, bytesRead);
    },
    stat: async () => view(await fh.stat()),
    truncate: (len) => fh.truncate(len),
    sync: () => fh.sync(),
    close: () => fh.close(),
  });
  return {
    name: 'ferry',
    writeFile: (p, data, flag) => vol.writeFile(p, data, { flag }),
    appendFile: (p, data) => vol.appendFile(p, data),
    readFile: async (p) => (await vol.readFile(p)) as Buffer,
    open: async (p, flags) => handle(await vol.open(p, flags)),
    truncate: (p, len) => vol.truncate(p, len),
    mkdir: (p, recursive) => vol.mkdir(p, { recursive }),
    rmdir: (p) => vol.rmdir(p),
    unlink: (p) => vol.unlink(p),
    rename: (a, b) => vol.rename(a, b),
    link: (a, b) => vol.link(a, b),
    symlink: (t, p) => vol.symlink(t, p),
    readlink: (p) => vol.readlink(p),
    chmod: (p, mode) => vol.chmod(p, mode),
    stat: async (p) => view(await vol.stat(p)),
    lstat: async (p) => view(await vol.lstat(p)),
    readdir: async (p) => (await vol.readdir(p)).sort(),
    readdirTypes: async (p) => (await vol.readdir(p, { withFileTypes: true })).map((e) => `${e.name}:${typeName(e)}`).sort(),
    utimes: async (p, atime, mtime) => {
      await vol.utimes(p, atime, mtime);
      const st = await vol.stat(p);
      return { atimeMs: st.atimeMs, mtimeMs: st.mtimeMs };
    },
    copyFile: (a, b, mode) => vol.copyFile(a, b, mode),
  };
}

function localSide(root: string): Side {
  const at = (p: string): string => root + p;
  // Absolute targets are rebased under the root on the way in and stripped on the way out.
  const toLocalTarget = (t: string): string => (t.startsWith('/') ? root + t : t);
  const fromLocalTarget = (t: string): string => (t.startsWith(root + '/') ? t.slice(root.length) : t);
  const lview = async (p: string, st: StatLike): Promise<StatView> =>
    view(st, st.isSymbolicLink() ? Buffer.byteLength(fromLocalTarget(await fs.readlink(p))) : undefined);
  const handle = (fh: fs.FileHandle): Handle => ({
    write: async (data, pos) => (await fh.write(data, 0, data.length, pos)).bytesWritten,
    read: async (len, pos) => {
      const buf = Buffer.alloc(len);
      const { bytesRead } = await fh.read(buf, 0, len, pos);
      return buf.subarray(0, bytesRead);
    },
    stat: async () => view(await fh.stat()),
    truncate: (len) => fh.truncate(len),
    sync: () => fh.sync(),
    close: () => fh.close(),
  });
  return {
    name: 'local',
    writeFile: (p, data, flag) => fs.writeFile(at(p), data, { flag }),
    appendFile: (p, data) => fs.appendFile(at(p), data),
    readFile: (p) => fs.readFile(at(p)),
    open: async (p, flags) => handle(await fs.open(at(p), flags)),
    truncate: (p, len) => fs.truncate(at(p), len),
    mkdir: async (p, recursive) => {
      const first = await fs.mkdir(at(p), { recursive });
      return first === undefined ? undefined : first.slice(root.length);
    },
    rmdir: (p) => fs.rmdir(at(p)),
    unlink: (p) => fs.unlink(at(p)),
    rename: (a, b) => fs.rename(at(a), at(b)),
    link: (a, b) => fs.link(at(a), at(b)),
    symlink: (t, p) => fs.symlink(toLocalTarget(t), at(p)),
    readlink: async (p) => fromLocalTarget(await fs.readlink(at(p))),
    chmod: (p, mode) => fs.chmod(at(p), mode),
    stat: async (p) => view(await fs.stat(at(p))),
    lstat: async (p) => lview(at(p), await fs.lstat(at(p))),
    readdir: async (p) => (await fs.readdir(at(p))).sort(),
    readdirTypes: async (p) => (await fs.readdir(at(p), { withFileTypes: true })).map((e) => `${e.name}:${typeName(e)}`).sort(),
    utimes: async (p, atime, mtime) => {
      await fs.utimes(at(p), atime, mtime);
      const st = await fs.stat(at(p));
      return { atimeMs: st.atimeMs, mtimeMs: st.mtimeMs };
    },
    copyFile: async (a, b, mode) => {
      // libuv opens, truncates and then unlinks an existing destination before it notices that the source
      // is a directory; Ferry refuses a directory source up front and leaves the destination alone.
      if ((await fs.stat(at(a)).catch(() => undefined))?.isDirectory()) throw Object.assign(new Error('EISDIR'), { code: 'EISDIR' });
      await fs.copyFile(at(a), at(b), mode);
    },
  };
}

// ---------------------------------------------------------------- outcomes

type Outcome = { ok: true; value: unknown } | { ok: false; code: string };

async function outcome<T>(fn: () => Promise<T>): Promise<Outcome> {
  try {
    return { ok: true, value: normalize(await fn()) };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    // Anything without a POSIX code is a crash, not a result: report it with its message.
    return { ok: false, code: typeof code === 'string' ? code : `no code: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}` };
  }
}

/** Buffers compare by length and hash so failure messages stay short. */
function normalize(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return { bytes: v.length, sha256: createHash('sha256').update(v).digest('hex').slice(0, 16) };
  return v;
}

// ---------------------------------------------------------------- trees

interface TreeEntry extends StatView {
  target?: string;
  sha256?: string;
}

async function tree(side: Side): Promise<Record<string, TreeEntry>> {
  const out: Record<string, TreeEntry> = {};
  const walk = async (dir: string): Promise<void> => {
    for (const name of await side.readdir(dir === '' ? '/' : dir)) {
      const p = `${dir}/${name}`;
      const st = await side.lstat(p);
      const e: TreeEntry = { ...st };
      if (st.type === 'symlink') e.target = await side.readlink(p);
      if (st.type === 'file') e.sha256 = createHash('sha256').update(await side.readFile(p)).digest('hex');
      out[p] = e;
      if (st.type === 'dir') await walk(p);
    }
  };
  out['/'] = await side.stat('/');
  delete out['/'].size;
  await walk('');
  return out;
}

// ---------------------------------------------------------------- random operations

/** Names that exist (from the local side, refreshed every few operations): most operations aim at them. */
interface Known {
  dirs: string[];
  files: string[];
  all: string[];
}

async function knownNames(root: string): Promise<Known> {
  const k: Known = { dirs: ['/'], files: [], all: [] };
  const walk = async (dir: string): Promise<void> => {
    for (const e of (await fs.readdir(root + dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = `${dir}/${e.name}`;
      k.all.push(p);
      if (e.isDirectory()) {
        k.dirs.push(p);
        await walk(p);
      } else if (e.isFile()) k.files.push(p);
    }
  };
  await walk('');
  return k;
}

class Gen {
  readonly next: () => number;
  known: Known = { dirs: ['/'], files: [], all: [] };
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  /** Mostly an existing name, sometimes any path. */
  existing(): string {
    return this.known.all.length > 0 && this.chance(0.65) ? this.pick(this.known.all) : this.path();
  }
  existingFile(): string {
    return this.known.files.length > 0 && this.chance(0.65) ? this.pick(this.known.files) : this.existing();
  }
  existingDir(): string {
    return this.chance(0.65) ? this.pick(this.known.dirs) : this.existing();
  }
  /**
   * Like existingDir, but never the root: the local root is an ordinary directory (rmdir gives ENOTEMPTY),
   * while the volume root is a mount root (EBUSY, as on Linux).
   */
  removableDir(): string {
    const d = this.existingDir();
    return d === '/' ? this.path() : d;
  }
  /** Mostly a name in an existing directory, sometimes any path. */
  fresh(): string {
    // Only shallow directories, or renames and mkdirs would grow ever deeper paths (slow, and no new cases).
    const dirs = this.known.dirs.filter((d) => d.split('/').length <= FRESH_DEPTH_MAX);
    if (!this.chance(0.7)) return this.path();
    const d = this.pick(dirs);
    return `${d === '/' ? '' : d}/${this.pick(NAMES)}`;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  path(): string {
    const r = this.next();
    const depth = r < 0.4 ? 1 : r < 0.85 ? 2 : DEPTH_MAX;
    return '/' + Array.from({ length: depth }, () => this.pick(NAMES)).join('/');
  }
  /** Relative targets stay inside the tree (no '..', which would leave the local root); absolute ones are rebased. */
  target(): string {
    if (this.chance(0.05)) return '.';
    const p = this.path();
    return this.chance(0.5) ? p : p.slice(1);
  }
  /** Mostly small sizes, sometimes a few blocks. */
  size(): number {
    const r = this.next();
    if (r < 0.1) return 0;
    if (r < 0.6) return 1 + this.int(100);
    if (r < 0.85) return 1 + this.int(BLOCK_BYTES + 100);
    return 1 + this.int(DATA_BYTES_MAX);
  }
  offset(): number {
    const r = this.next();
    if (r < 0.3) return 0;
    if (r < 0.7) return this.int(2 * BLOCK_BYTES + 10);
    return this.int(HOLE_BYTES_MAX);
  }
  data(n: number): Buffer {
    // A cheap seeded fill (xorshift32) so big buffers cost little.
    let x = (this.int(2 ** 31) | 1) >>> 0;
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      b[i] = x & 0xff;
    }
    return b;
  }
  mode(): number {
    return this.pick([0o644, 0o600, 0o755, 0o700, 0o777, 0o1777, 0o4755, 0o2755, 0o444, 0o000, 0o640, 0o751]);
  }
}

interface OpenPair {
  desc: string;
  ferry: Handle;
  local: Handle;
}

const notRoot = process.getuid !== undefined && process.getuid() !== 0;

test(`differential: ${OPS} random operations on the SDK and on a local directory agree`, { timeout: 600_000, skip: notRoot && 'needs root (uid 0) for the local side' }, async (t) => {
  assert.ok(Number.isSafeInteger(SEED), `FERRY_SEED must be an integer, got ${process.env.FERRY_SEED}`);
  t.diagnostic(`seed ${SEED} (replay with FERRY_SEED=${SEED})`);
  console.log(`differential seed: ${SEED} (replay with FERRY_SEED=${SEED})`);
  process.umask(0o022); // the SDK volume's default umask; the local side must match

  const tv = await makeVolume({ blockBytes: BLOCK_BYTES, compactSlicesMin: 4 });
  const localDir = await mkdtemp(join(tmpdir(), 'ferry-diff-'));
  const localRoot = join(localDir, 'root');
  await fs.mkdir(localRoot);
  await fs.chmod(localRoot, 0o777); // the volume root's mode
  const ferry = ferrySide(tv.vol);
  const local = localSide(localRoot);
  const g = new Gen(SEED);
  const handles: OpenPair[] = [];
  const history: string[] = [];
  const counts = new Map<string, number>();
  let errors = 0;

  const fail = (i: number, what: string, f: unknown, l: unknown): never => {
    assert.fail(
      `seed ${SEED}, operation #${i}: ${what}\n  ferry: ${JSON.stringify(f)}\n  local: ${JSON.stringify(l)}\n` +
        `recent operations:\n  ${history.join('\n  ')}`,
    );
  };

  /** Runs one step on both sides and requires equal outcomes; returns whether it succeeded. */
  const both = async (i: number, desc: string, fn: (s: Side) => Promise<unknown>): Promise<boolean> => {
    const [f, l] = [await outcome(() => fn(ferry)), await outcome(() => fn(local))];
    history.push(`#${i} ${desc} -> ${f.ok ? 'ok' : f.code}`);
    if (history.length > HISTORY_MAX) history.shift();
    try {
      assert.deepEqual(f, l);
    } catch {
      fail(i, desc, f, l);
    }
    if (!f.ok) errors++;
    return f.ok;
  };

  const compareTrees = async (i: number): Promise<void> => {
    const [f, l] = [await tree(ferry), await tree(local)];
    try {
      assert.deepEqual(f, l);
    } catch (err) {
      fail(i, `tree comparison\n${(err as Error).message}`, Object.keys(f).length, Object.keys(l).length);
    }
  };

  /** Opens a handle pair; both sides must agree on whether it opened. */
  const openPair = async (i: number, p: string, flags: string): Promise<void> => {
    const desc = `open(${p}, ${flags})`;
    const [f, l] = [await outcome(() => ferry.open(p, flags)), await outcome(() => local.open(p, flags))];
    history.push(`#${i} ${desc} -> ${f.ok ? 'ok' : f.code}`);
    if (f.ok !== l.ok || (!f.ok && !l.ok && f.code !== l.code)) {
      if (f.ok) await (f.value as Handle).close();
      if (l.ok) await (l.value as Handle).close();
      fail(i, desc, f.ok ? 'opened' : f, l.ok ? 'opened' : l);
    }
    if (f.ok && l.ok) {
      if (handles.length >= HANDLES_MAX) {
        const old = handles.shift()!;
        await both(i, `close(${old.desc})`, (s) => (s === ferry ? old.ferry : old.local).close());
      }
      handles.push({ desc: `${desc}@${i}`, ferry: f.value as Handle, local: l.value as Handle });
    } else errors++;
  };

  try {
    for (let i = 0; i < OPS; i++) {
      if (i % KNOWN_EVERY === 0) g.known = await knownNames(localRoot);
      const r = g.int(100);
      let op: string;
      if (r < 8) {
        op = 'writeFile';
        const p = g.chance(0.5) ? g.existingFile() : g.fresh();
        const data = g.data(g.size());
        const flag = g.pick(['w', 'w', 'w', 'wx', 'a']);
        await both(i, `writeFile(${p}, ${data.length}B, ${flag})`, (s) => s.writeFile(p, data, flag));
      } else if (r < 13) {
        op = 'appendFile';
        const p = g.chance(0.5) ? g.existingFile() : g.fresh();
        const data = g.data(g.size());
        await both(i, `appendFile(${p}, ${data.length}B)`, (s) => s.appendFile(p, data));
      } else if (r < 23) {
        op = 'open-write-close';
        const p = g.chance(0.7) ? g.existingFile() : g.fresh();
        const flags = g.pick(['r+', 'r+', 'w', 'a', 'wx', 'w+', 'a+']);
        const writes = Array.from({ length: 1 + g.int(3) }, () => ({ pos: g.offset(), data: g.data(g.size()) }));
        const desc = `open(${p}, ${flags}) + ${writes.map((w) => `write(${w.pos}, ${w.data.length}B)`).join(' + ')} + close`;
        await both(i, desc, async (s) => {
          const h = await s.open(p, flags);
          try {
            for (const w of writes) await h.write(w.data, w.pos);
          } finally {
            await h.close();
          }
        });
      } else if (r < 28) {
        op = 'read-range';
        const p = g.existingFile();
        const pos = g.offset();
        const len = g.size();
        await both(i, `read(${p}, ${pos}, ${len})`, async (s) => {
          const h = await s.open(p, 'r');
          try {
            return await h.read(len, pos);
          } finally {
            await h.close();
          }
        });
      } else if (r < 31) {
        op = 'readFile';
        const p = g.existingFile();
        await both(i, `readFile(${p})`, (s) => s.readFile(p));
      } else if (r < 35) {
        op = 'truncate';
        const p = g.existingFile();
        const len = g.chance(0.3) ? 0 : g.offset();
        await both(i, `truncate(${p}, ${len})`, (s) => s.truncate(p, len));
      } else if (r < 42) {
        op = 'mkdir';
        const p = g.fresh();
        const recursive = g.chance(0.25);
        await both(i, `mkdir(${p}, recursive=${recursive})`, (s) => s.mkdir(p, recursive));
      } else if (r < 45) {
        op = 'rmdir';
        const p = g.removableDir();
        await both(i, `rmdir(${p})`, (s) => s.rmdir(p));
      } else if (r < 49) {
        op = 'unlink';
        const p = g.existing();
        await both(i, `unlink(${p})`, (s) => s.unlink(p));
      } else if (r < 57) {
        op = 'rename';
        const a = g.existing();
        const b = g.chance(0.1) ? `${a}/${g.pick(NAMES)}` : g.chance(0.5) ? g.existing() : g.fresh();
        await both(i, `rename(${a}, ${b})`, (s) => s.rename(a, b));
      } else if (r < 61) {
        op = 'link';
        const a = g.existing();
        const b = g.fresh();
        await both(i, `link(${a}, ${b})`, (s) => s.link(a, b));
      } else if (r < 65) {
        op = 'symlink';
        const tgt = g.target();
        const p = g.fresh();
        await both(i, `symlink(${tgt}, ${p})`, (s) => s.symlink(tgt, p));
      } else if (r < 67) {
        op = 'readlink';
        const p = g.existing();
        await both(i, `readlink(${p})`, (s) => s.readlink(p));
      } else if (r < 70) {
        op = 'chmod';
        const p = g.existing();
        const mode = g.mode();
        await both(i, `chmod(${p}, ${mode.toString(8)})`, (s) => s.chmod(p, mode));
      } else if (r < 75) {
        op = 'stat';
        const p = g.existing();
        const follow = g.chance(0.5);
        await both(i, `${follow ? 'stat' : 'lstat'}(${p})`, (s) => (follow ? s.stat(p) : s.lstat(p)));
      } else if (r < 79) {
        op = 'readdir';
        const p = g.existingDir();
        const types = g.chance(0.5);
        await both(i, `readdir(${p}, withFileTypes=${types})`, (s) => (types ? s.readdirTypes(p) : s.readdir(p)));
      } else if (r < 81) {
        op = 'utimes';
        const p = g.existing();
        // Whole and half seconds are exact in both (ext4 keeps nanoseconds, Ferry milliseconds).
        const atime = 1_500_000_000 + g.int(100_000_000) / 2;
        const mtime = 1_500_000_000 + g.int(100_000_000) / 2;
        await both(i, `utimes(${p}, ${atime}, ${mtime})`, (s) => s.utimes(p, atime, mtime));
      } else if (r < 85) {
        op = 'copyFile';
        const a = g.existingFile();
        const b = g.chance(0.3) ? g.existing() : g.fresh();
        const mode = g.chance(0.2) ? COPYFILE_EXCL : 0;
        await both(i, `copyFile(${a}, ${b}, ${mode})`, (s) => s.copyFile(a, b, mode));
      } else if (r < 89 || handles.length === 0) {
        op = 'handle-open';
        await openPair(i, g.chance(0.8) ? g.existingFile() : g.fresh(), g.pick(['r', 'r+', 'w', 'a', 'w+', 'a+', 'r']));
      } else {
        const k = g.int(handles.length);
        const h = handles[k]!;
        const which = g.int(10);
        if (which < 4) {
          op = 'handle-write';
          const pos = g.offset();
          const data = g.data(g.size());
          await both(i, `write(${h.desc}, ${pos}, ${data.length}B)`, (s) => (s === ferry ? h.ferry : h.local).write(data, pos));
        } else if (which < 6) {
          op = 'handle-read';
          const pos = g.offset();
          const len = g.size();
          await both(i, `read(${h.desc}, ${pos}, ${len})`, (s) => (s === ferry ? h.ferry : h.local).read(len, pos));
        } else if (which < 7) {
          op = 'handle-stat';
          await both(i, `fstat(${h.desc})`, (s) => (s === ferry ? h.ferry : h.local).stat());
        } else if (which < 8) {
          op = 'handle-truncate';
          const len = g.offset();
          await both(i, `ftruncate(${h.desc}, ${len})`, (s) => (s === ferry ? h.ferry : h.local).truncate(len));
        } else if (which < 9) {
          op = 'handle-sync';
          await both(i, `fsync(${h.desc})`, (s) => (s === ferry ? h.ferry : h.local).sync());
        } else {
          op = 'handle-close';
          handles.splice(k, 1);
          await both(i, `close(${h.desc})`, (s) => (s === ferry ? h.ferry : h.local).close());
        }
      }
      counts.set(op, (counts.get(op) ?? 0) + 1);
      if ((i + 1) % CHECK_EVERY === 0) await compareTrees(i);
    }
    for (const h of handles.splice(0)) await both(OPS, `close(${h.desc})`, (s) => (s === ferry ? h.ferry : h.local).close());
    await compareTrees(OPS);
    // The volume reopened from its metadata and bucket holds the same tree.
    await tv.vol.close();
    const { openVolume } = await import('../../src/index.js');
    const reopened = await openVolume(tv.metaUrl, { uid: 0, gid: 0, gids: [], heartbeatMs: 0 });
    try {
      assert.deepEqual(await tree(ferrySide(reopened)), await tree(local), `seed ${SEED}: the reopened volume differs`);
    } finally {
      await reopened.close();
    }
    const summary = [...counts].sort().map(([k, v]) => `${k}=${v}`).join(' ');
    t.diagnostic(`${OPS} operations (${errors} failed alike on both sides): ${summary}`);
    // A run where nearly everything fails would compare little: require a healthy mix.
    assert.ok(errors < OPS * 0.6, `seed ${SEED}: ${errors} of ${OPS} operations failed; the workload is too degenerate`);
  } finally {
    for (const h of handles) {
      await h.ferry.close().catch(() => undefined);
      await h.local.close().catch(() => undefined);
    }
    if (process.env.FERRY_DIFF_KEEP === '1') {
      await tv.vol.close();
      console.log(`kept: volume ${tv.metaUrl}, local tree ${localRoot}`);
    } else {
      await tv.cleanup();
      await rm(localDir, { recursive: true, force: true });
    }
  }
});
