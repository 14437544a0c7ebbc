/**
 * `ferry cp META SRC... DST`: copies between the local disk and the volume, or inside the volume. A path
 * written `:/dir/file` is inside the volume; any other path is local.
 *
 * Behaves like cp(1): into an existing directory (keeping the source's name) or to a new name; several
 * sources need an existing directory; `-r` copies directories (symlinks inside them are copied as links);
 * without `-r` a directory is refused. The copy is planned in full before anything is written, so a missing
 * source or a type clash (a directory over a file, ...) fails with nothing changed. Modes are preserved;
 * `-p` also keeps access and modification times. Inside the volume files are copied by reference (the copy
 * shares the source's blocks).
 *
 * No partial file: each file is written to `.NAME.ferry-XXXXXXXX` beside its destination and renamed over it
 * when complete (see copyFile); a failure or an interruption (SIGINT/SIGTERM, exit 130) removes the temporary.
 */

import { randomBytes } from 'node:crypto';
import { promises as fsp, rmSync } from 'node:fs';
import nodePath from 'node:path';
import type { Command } from 'commander';
import { BadUsageError, FsError, isFsError, UsageError } from '../errors.js';
import type { Volume } from '../sdk/volume.js';
import { interruptible, isVolumeArg, openCliVolume, progressBar, readFailure, readThroughGroup, volumePath, warnIfGroupEmpty, type Progress } from './util.js';

/** Bytes moved per read/write call (and between checks for an interruption). */
const COPY_BUFFER_BYTES = 4 << 20;
/** copyFile's flag: fail if the destination exists (fs.constants.COPYFILE_EXCL). */
const COPYFILE_EXCL = 1;

type Kind = 'file' | 'dir' | 'symlink' | 'other';

interface Info {
  kind: Kind;
  /** Permission bits with set-id and sticky (0o7777). */
  mode: number;
  size: number;
  atimeMs: number;
  mtimeMs: number;
}

interface Reader {
  read(buf: Buffer, pos: number): Promise<number>;
  close(): Promise<void>;
}

interface Writer {
  write(buf: Buffer, pos: number): Promise<void>;
  close(): Promise<void>;
}

/** One side of a copy: the local disk or the volume. Paths are that side's own (absolute for the volume). */
interface Side {
  readonly isVolume: boolean;
  /** How the user would write the path (for messages). */
  show(p: string): string;
  join(dir: string, name: string): string;
  dirname(p: string): string;
  basename(p: string): string;
  /** undefined when nothing is there. */
  stat(p: string, follow: boolean): Promise<Info | undefined>;
  readdir(p: string): Promise<string[]>;
  readlink(p: string): Promise<string>;
  mkdir(p: string): Promise<void>;
  symlink(target: string, p: string): Promise<void>;
  unlink(p: string): Promise<void>;
  /** Replaces `to` (a file, or nothing) with `from`, atomically. */
  rename(from: string, to: string): Promise<void>;
  openRead(p: string): Promise<Reader>;
  /** Creates a new file (fails if `p` exists) with permission bits `mode`, for writing. */
  openWrite(p: string, mode: number): Promise<Writer>;
  chmod(p: string, mode: number): Promise<void>;
  utimes(p: string, atimeMs: number, mtimeMs: number): Promise<void>;
}

function kindOf(s: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean }): Kind {
  return s.isFile() ? 'file' : s.isDirectory() ? 'dir' : s.isSymbolicLink() ? 'symlink' : 'other';
}

class LocalSide implements Side {
  readonly isVolume = false;
  show(p: string): string {
    return p;
  }
  join(dir: string, name: string): string {
    return nodePath.join(dir, name);
  }
  dirname(p: string): string {
    return nodePath.dirname(p);
  }
  basename(p: string): string {
    return nodePath.basename(p);
  }
  async stat(p: string, follow: boolean): Promise<Info | undefined> {
    try {
      const s = follow ? await fsp.stat(p) : await fsp.lstat(p);
      return { kind: kindOf(s), mode: s.mode & 0o7777, size: s.size, atimeMs: s.atimeMs, mtimeMs: s.mtimeMs };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }
  readdir(p: string): Promise<string[]> {
    return fsp.readdir(p);
  }
  readlink(p: string): Promise<string> {
    return fsp.readlink(p);
  }
  async mkdir(p: string): Promise<void> {
    await fsp.mkdir(p, { mode: 0o700 });
  }
  symlink(target: string, p: string): Promise<void> {
    return fsp.symlink(target, p);
  }
  unlink(p: string): Promise<void> {
    return fsp.unlink(p);
  }
  rename(from: string, to: string): Promise<void> {
    return fsp.rename(from, to);
  }
  async openRead(p: string): Promise<Reader> {
    const fh = await fsp.open(p, 'r');
    return {
      read: async (buf, pos) => (await fh.read(buf, 0, buf.length, pos)).bytesRead,
      close: () => fh.close(),
    };
  }
  async openWrite(p: string, mode: number): Promise<Writer> {
    const fh = await fsp.open(p, 'wx', mode);
    return {
      write: async (buf, pos) => {
        let done = 0;
        while (done < buf.length) done += (await fh.write(buf, done, buf.length - done, pos + done)).bytesWritten;
      },
      close: () => fh.close(),
    };
  }
  chmod(p: string, mode: number): Promise<void> {
    return fsp.chmod(p, mode);
  }
  utimes(p: string, atimeMs: number, mtimeMs: number): Promise<void> {
    return fsp.utimes(p, atimeMs / 1000, mtimeMs / 1000);
  }
}

class VolumeSide implements Side {
  readonly isVolume = true;
  readonly vol: Volume;
  constructor(vol: Volume) {
    this.vol = vol;
  }
  show(p: string): string {
    return `:${p}`;
  }
  join(dir: string, name: string): string {
    return nodePath.posix.join(dir, name);
  }
  dirname(p: string): string {
    return nodePath.posix.dirname(p);
  }
  basename(p: string): string {
    return nodePath.posix.basename(p);
  }
  async stat(p: string, follow: boolean): Promise<Info | undefined> {
    try {
      const s = follow ? await this.vol.stat(p) : await this.vol.lstat(p);
      return { kind: kindOf(s), mode: s.mode & 0o7777, size: s.size, atimeMs: s.atimeMs, mtimeMs: s.mtimeMs };
    } catch (err) {
      if (isFsError(err, 'ENOENT')) return undefined;
      throw err;
    }
  }
  readdir(p: string): Promise<string[]> {
    return this.vol.readdir(p);
  }
  readlink(p: string): Promise<string> {
    return this.vol.readlink(p);
  }
  async mkdir(p: string): Promise<void> {
    await this.vol.mkdir(p, { mode: 0o700 });
  }
  symlink(target: string, p: string): Promise<void> {
    return this.vol.symlink(target, p);
  }
  unlink(p: string): Promise<void> {
    return this.vol.unlink(p);
  }
  rename(from: string, to: string): Promise<void> {
    return this.vol.rename(from, to);
  }
  async openRead(p: string): Promise<Reader> {
    const fh = await this.vol.open(p, 'r');
    return {
      read: async (buf, pos) => (await fh.read(buf, 0, buf.length, pos)).bytesRead,
      close: () => fh.close(),
    };
  }
  async openWrite(p: string, mode: number): Promise<Writer> {
    const fh = await this.vol.open(p, 'wx', mode);
    return {
      write: async (buf, pos) => {
        await fh.write(buf, 0, buf.length, pos);
      },
      close: () => fh.close(),
    };
  }
  chmod(p: string, mode: number): Promise<void> {
    return this.vol.chmod(p, mode);
  }
  utimes(p: string, atimeMs: number, mtimeMs: number): Promise<void> {
    return this.vol.utimes(p, new Date(atimeMs), new Date(mtimeMs));
  }
}

/** One step of a planned copy. Directories come before their contents. */
interface Step {
  src: string;
  dst: string;
  info: Info;
  /** What is at dst now (undefined: nothing). */
  existing: Info | undefined;
}

interface Plan {
  from: Side;
  to: Side;
  steps: Step[];
  files: number;
  bytes: number;
}

export interface CpOptions {
  recursive?: boolean;
  preserve?: boolean;
  /** The region this client runs in (multi-region volumes). */
  region?: string;
  /** Read blocks through this cache group of the region (serving nothing to it). */
  cacheGroup?: string;
}

function enoent(what: string): FsError {
  return new FsError('ENOENT', `cannot stat '${what}': no such file or directory`);
}

/** Whether `inner` is `outer` or below it (same side, normalized absolute paths). */
function within(outer: string, inner: string, side: Side): boolean {
  const rel = side.isVolume ? nodePath.posix.relative(outer, inner) : nodePath.relative(nodePath.resolve(outer), nodePath.resolve(inner));
  return rel === '' || (!rel.startsWith('..') && !nodePath.isAbsolute(rel));
}

async function planSource(plan: Plan, src: string, target: string, opts: CpOptions): Promise<void> {
  const { from, to } = plan;
  const info = await from.stat(src, opts.recursive !== true);
  if (info === undefined) throw enoent(from.show(src));
  if (info.kind === 'dir' && opts.recursive !== true) throw new UsageError(`-r not specified; omitting directory '${from.show(src)}'`);
  if (from === to && within(src, target, from)) {
    throw new UsageError(
      info.kind === 'dir' && src !== target
        ? `cannot copy a directory, '${from.show(src)}', into itself, '${to.show(target)}'`
        : `'${from.show(src)}' and '${to.show(target)}' are the same file`,
    );
  }
  const parent = await to.stat(to.dirname(target), true);
  if (parent?.kind !== 'dir') throw new FsError('ENOENT', `cannot create '${to.show(target)}': ${to.show(to.dirname(target))} is not a directory`);
  await planTree(plan, src, target, info, true);
}

async function planTree(plan: Plan, src: string, dst: string, info: Info, parentExisted: boolean): Promise<void> {
  const { from, to } = plan;
  if (info.kind === 'other') throw new UsageError(`cannot copy special file '${from.show(src)}'`);
  const existing = parentExisted ? await to.stat(dst, false) : undefined;
  if (existing !== undefined) {
    if (info.kind === 'dir' && existing.kind !== 'dir') throw new UsageError(`cannot overwrite non-directory '${to.show(dst)}' with directory '${from.show(src)}'`);
    if (info.kind !== 'dir' && existing.kind === 'dir') throw new UsageError(`cannot overwrite directory '${to.show(dst)}' with non-directory '${from.show(src)}'`);
  }
  plan.steps.push({ src, dst, info, existing });
  if (info.kind === 'file') {
    plan.files++;
    plan.bytes += info.size;
  }
  if (info.kind !== 'dir') return;
  for (const name of (await from.readdir(src)).sort()) {
    const s = from.join(src, name);
    const child = await from.stat(s, false);
    if (child === undefined) continue; // removed while we listed
    await planTree(plan, s, to.join(dst, name), child, existing !== undefined);
  }
}

/** Longest part of a file name kept in its temporary name, in bytes (names are at most 255 bytes). */
const TEMP_NAME_PART_BYTES_MAX = 200;
/** Symlinks followed at the destination before giving up (as the kernel's ELOOP). */
const SYMLINKS_FOLLOWED_MAX = 40;

/** `.NAME.ferry-XXXXXXXX`: hidden, recognisable as cp's, unique, and short enough for any NAME. */
function tempName(name: string): string {
  let part = name;
  while (Buffer.byteLength(part) > TEMP_NAME_PART_BYTES_MAX) part = [...part].slice(0, -1).join('');
  return `.${part}.ferry-${randomBytes(4).toString('hex')}`;
}

/**
 * Where a file copied to `dst` lands: `dst` itself, or, when `dst` is a symlink, the file it leads to (cp(1)
 * writes through a symlink at the destination, creating a missing target).
 */
async function landingPath(to: Side, dst: string, existing: Info | undefined): Promise<string> {
  let p = dst;
  let info = existing;
  for (let links = 0; info?.kind === 'symlink'; links++) {
    if (links >= SYMLINKS_FOLLOWED_MAX) throw new FsError('ELOOP', `cannot write '${to.show(dst)}': too many levels of symbolic links`);
    const target = await to.readlink(p);
    p = to.isVolume ? nodePath.posix.resolve(to.dirname(p), target) : nodePath.resolve(to.dirname(p), target);
    info = await to.stat(p, false);
  }
  return p;
}

/**
 * Copies one file so that no partial copy is ever seen under its name: the data goes to a temporary name in the
 * destination directory, which takes the mode (and with -p the times) and is renamed over the destination only
 * when complete. Any failure (a source block missing or corrupt in every bucket, a full disk, an interruption)
 * removes the temporary and leaves the destination as it was.
 */
async function copyFile(plan: Plan, step: Step, opts: CpOptions, progress: Progress, temps: Set<string>, signal: AbortSignal): Promise<void> {
  const { from, to } = plan;
  const mode = opts.preserve === true ? step.info.mode : step.info.mode & 0o777;
  const final = await landingPath(to, step.dst, step.existing);
  const tmp = to.join(to.dirname(final), tempName(to.basename(final)));
  // Local temporaries are removed even on a forced exit (a second signal); see runCp.
  if (!to.isVolume) temps.add(tmp);
  let created = false;
  try {
    if (from.isVolume && to.isVolume) {
      // By reference: the copy shares the source's blocks.
      await (from as VolumeSide).vol.copyFile(step.src, tmp, COPYFILE_EXCL);
      created = true;
      progress.add(step.info.size);
    } else {
      const r = await from.openRead(step.src);
      try {
        // Owner-only until complete; the mode is applied below.
        const w = await to.openWrite(tmp, 0o600);
        created = true;
        try {
          for (let pos = 0; ; ) {
            signal.throwIfAborted();
            const buf = Buffer.allocUnsafe(COPY_BUFFER_BYTES);
            let n: number;
            try {
              n = await r.read(buf, pos);
            } catch (err) {
              throw readFailure(`'${from.show(step.src)}'`, err);
            }
            if (n === 0) break;
            await w.write(buf.subarray(0, n), pos);
            pos += n;
            progress.add(n);
          }
        } finally {
          await w.close();
        }
      } finally {
        await r.close();
      }
    }
    signal.throwIfAborted();
    await to.chmod(tmp, mode);
    if (opts.preserve === true) await to.utimes(tmp, step.info.atimeMs, step.info.mtimeMs);
    await to.rename(tmp, final);
    created = false;
  } finally {
    if (created) await to.unlink(tmp).catch(() => undefined);
    temps.delete(tmp);
  }
}

async function execute(plan: Plan, opts: CpOptions, progress: Progress, temps: Set<string>, signal: AbortSignal): Promise<void> {
  const { from, to } = plan;
  const modeOf = (i: Info): number => (opts.preserve === true ? i.mode : i.mode & 0o777);
  const dirs: Step[] = [];
  for (const step of plan.steps) {
    signal.throwIfAborted();
    switch (step.info.kind) {
      case 'dir':
        // Created owner-writable; the source's mode is applied once the contents are in.
        if (step.existing === undefined) await to.mkdir(step.dst);
        dirs.push(step);
        break;
      case 'symlink':
        if (step.existing !== undefined) await to.unlink(step.dst);
        await to.symlink(await from.readlink(step.src), step.dst);
        break;
      case 'file':
        await copyFile(plan, step, opts, progress, temps, signal);
        progress.add(0, 1);
        break;
      case 'other':
        throw new Error('assertion failed: special files are refused while planning');
    }
  }
  // Deepest first, so setting a directory's times is not undone by changes inside it.
  for (const d of dirs.reverse()) {
    await to.chmod(d.dst, modeOf(d.info));
    if (opts.preserve === true) await to.utimes(d.dst, d.info.atimeMs, d.info.mtimeMs);
  }
}

export async function runCp(metaUrl: string, args: string[], opts: CpOptions): Promise<void> {
  if (args.length < 2) throw new BadUsageError('cp needs a SOURCE and a DEST (write volume paths as :/dir/file)');
  const srcArgs = args.slice(0, -1);
  const dstArg = args[args.length - 1]!;
  const fromVolume = srcArgs.map(isVolumeArg);
  if (fromVolume.some((v) => v !== fromVolume[0])) throw new BadUsageError('all sources must be on the same side: all inside the volume (:/path) or all local');
  if (!fromVolume[0] && !isVolumeArg(dstArg)) throw new BadUsageError('nothing inside the volume: write volume paths as :/dir/file');

  const vol = await openCliVolume(metaUrl, { ...(opts.region === undefined ? {} : { region: opts.region }), ...readThroughGroup(opts.cacheGroup) });
  try {
    warnIfGroupEmpty(vol);
    const local = new LocalSide();
    const volume = new VolumeSide(vol);
    const from: Side = fromVolume[0] ? volume : local;
    const to: Side = isVolumeArg(dstArg) ? volume : local;
    const norm = (arg: string, side: Side): string => (side.isVolume ? volumePath(arg) : nodePath.resolve(arg));
    const dst = norm(dstArg, to);
    const dstInfo = await to.stat(dst, true);
    const dstIsDir = dstInfo?.kind === 'dir';
    if (!dstIsDir && (srcArgs.length > 1 || /\/\.?$/.test(dstArg))) {
      throw new UsageError(dstInfo === undefined ? `target '${dstArg}' is not an existing directory` : `target '${dstArg}' is not a directory`);
    }
    const plan: Plan = { from, to, steps: [], files: 0, bytes: 0 };
    for (const arg of srcArgs) {
      const src = norm(arg, from);
      await planSource(plan, src, dstIsDir ? to.join(dst, from.basename(src)) : dst, opts);
    }
    const progress = progressBar(plan.bytes, plan.files);
    // Temporary files being written on the local disk, removed even if a second signal forces an exit.
    const temps = new Set<string>();
    try {
      await interruptible(
        (signal) => execute(plan, opts, progress, temps, signal),
        () => {
          for (const t of temps) rmSync(t, { force: true });
        },
      );
    } finally {
      progress.stop();
    }
  } finally {
    await vol.close();
  }
}

export function register(program: Command): void {
  program
    .command('cp')
    .summary('copy files into, out of, or inside the volume')
    .description(
      'Copy files like cp(1). A path written :/dir/file is inside the volume; any other path is local. ' +
        'Into an existing directory or to a new name; -r for directories. Modes are kept; -p also keeps times. ' +
        'Each file is written under a temporary name (.NAME.ferry-XXXXXXXX) and renamed into place when complete, so a ' +
        'failed read or an interruption never leaves a partial file.',
    )
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .argument('<SRC_AND_DST...>', 'one or more sources, then the destination')
    .usage('[options] <META> <SRC...> <DST>')
    .option('-r, --recursive', 'copy directories recursively')
    .option('-p, --preserve', 'keep access and modification times (and set-id bits)')
    .option('--region <NAME>', 'the region this client runs in: its bucket is read first (default: the primary)')
    .option('--cache-group <G>', "read blocks through the region's cache group G before the buckets (serving nothing to it)")
    .addHelpText(
      'after',
      `
Examples:
  $ ferry cp sqlite:///data/vol.db ./report.pdf :/docs/
  $ ferry cp sqlite:///data/vol.db -r ./dataset :/datasets/imagenet
  $ ferry cp sqlite:///data/vol.db :/docs/report.pdf /tmp/report.pdf
  $ ferry cp sqlite:///data/vol.db -r :/datasets/imagenet :/backup/`,
    )
    .action((meta: string, paths: string[], opts: CpOptions) => runCp(meta, paths, opts));
}
