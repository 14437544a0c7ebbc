/**
 * A mounted volume: checks the mount point, mounts through the FUSE binding (native.ts: Ferry's addon on the
 * low-level, inode-based API, else fuse-native) serving one FerryOps (ops.ts), watches for an unmount from
 * outside (`ferry umount`, `fusermount -u`), and on close unmounts, flushes every open file and closes the
 * volume. The kernel caches entries and attributes for the timeouts given here (1 s by default).
 *
 *   checkMountpoint --> fuse mount --> ready (kernel INIT) --> serving
 *   serving --> close() | unmounted from outside --> unmount (lazy if busy) --> vfs flush, volume close --> done
 */

import { execFile } from 'node:child_process';
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { UsageError } from '../errors.js';
import type { Volume } from '../sdk/volume.js';
import { createFuse, type FuseInstance, type MountArgs } from './native.js';
import { FerryOps, type MountLog } from './ops.js';
import { MountStats } from './stats.js';
import type { Registry } from 'prom-client';

const exec = promisify(execFile);

/** How often the mount looks for an unmount done from outside, ms. */
const UNMOUNT_POLL_MS = 1000;

export interface MountOptions {
  mountpoint: string;
  readOnly?: boolean;
  allowOther?: boolean;
  /**
   * Seconds the kernel caches attributes and names (default 1 each). Hard links agree at once whatever they
   * are (one kernel inode); others' changes show once they have run out (plus Meta's lookup cache TTL).
   */
  attrTimeoutSec?: number;
  entryTimeoutSec?: number;
  log: MountLog;
  debug?: boolean;
  /** The process's metrics registry (obs/metrics.ts); default: one of the mount's own. */
  metrics?: Registry;
}

/** One line of /proc/self/mountinfo: where, what type, from what. */
export interface MountEntry {
  mountpoint: string;
  fstype: string;
  source: string;
}

/** Undoes the octal escapes of /proc/self/mountinfo (\040 for a space, ...). */
function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export async function listMounts(): Promise<MountEntry[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const [left, right] = line.split(' - ');
    const f = left!.split(' ');
    const r = (right ?? '').split(' ');
    out.push({ mountpoint: unescapeMountinfo(f[4] ?? ''), fstype: r[0] ?? '', source: unescapeMountinfo(r[1] ?? '') });
  }
  return out;
}

/** The mount at exactly this path (the last one, if mounts are stacked). */
export async function findMount(mountpoint: string): Promise<MountEntry | undefined> {
  const abs = path.resolve(mountpoint);
  return (await listMounts()).filter((m) => m.mountpoint === abs).at(-1);
}

/** Throws a one-line UsageError unless the path is an existing, empty, unmounted directory. */
export async function checkMountpoint(mountpoint: string): Promise<string> {
  const abs = path.resolve(mountpoint);
  let st;
  try {
    st = await stat(abs);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError(`mount point ${abs} does not exist (create it with mkdir first)`);
    if (code === 'ENOTCONN') throw new UsageError(`${abs} is a dead mount left by a mount process that stopped (clear it with: ferry umount --force ${abs})`);
    throw new UsageError(`cannot use ${abs} as a mount point: ${code ?? String(err)}`);
  }
  if (!st.isDirectory()) throw new UsageError(`mount point ${abs} is not a directory`);
  const m = await findMount(await realpath(abs));
  if (m !== undefined) throw new UsageError(`${abs} is already mounted (${m.fstype} from ${m.source}); unmount it first: ferry umount ${abs}`);
  if ((await readdir(abs)).length > 0) throw new UsageError(`mount point ${abs} is not empty (mount on an empty directory)`);
  return abs;
}

/** fusermount -u (or -uz: lazy, detaches even when busy or when the serving process is gone). */
export async function fusermount(mountpoint: string, lazy: boolean): Promise<void> {
  try {
    await exec('fusermount', [lazy ? '-uz' : '-u', mountpoint]);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new UsageError('fusermount is not installed (Debian: apt-get install fuse)');
    const msg = (e.stderr ?? e.message).trim().replace(/^fusermount: /, '');
    if (/busy/i.test(msg)) throw new UsageError(`${mountpoint} is busy: files are open there (close them, or unmount lazily with --force)`);
    throw new UsageError(`cannot unmount ${mountpoint}: ${msg}`);
  }
}

export class Mount {
  readonly mountpoint: string;
  readonly stats: MountStats;
  private readonly vol: Volume;
  private readonly fuse: FuseInstance;
  private readonly log: MountLog;
  private watcher: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  private resolveDone!: () => void;
  /** Resolves once the mount is gone and the volume is closed (by close() or an unmount from outside). */
  readonly done: Promise<void>;

  private constructor(mountpoint: string, vol: Volume, fuse: FuseInstance, stats: MountStats, log: MountLog) {
    this.mountpoint = mountpoint;
    this.vol = vol;
    this.fuse = fuse;
    this.stats = stats;
    this.log = log;
    this.done = new Promise((resolve) => {
      // The process stays up until the mount is gone and the volume closed, whatever the binding keeps open.
      const keepAlive = setInterval(() => undefined, 1 << 30);
      this.resolveDone = () => {
        clearInterval(keepAlive);
        resolve();
      };
    });
  }

  /** Which FUSE binding serves the mount: Ferry's addon, or fuse-native (fallback with known gaps). */
  get backend(): 'ferry-fuse' | 'fuse-native' {
    return this.fuse.backend;
  }

  /** Mounts `vol` at the mount point; resolves once the kernel has initialized the mount. */
  static async mount(vol: Volume, opts: MountOptions): Promise<Mount> {
    if (!existsSync('/dev/fuse')) throw new UsageError('/dev/fuse is missing: this machine (or container) cannot mount FUSE file systems');
    const mnt = await checkMountpoint(opts.mountpoint);
    const args: MountArgs = {
      fsname: `ferry:${vol.info.name}`,
      readOnly: opts.readOnly ?? false,
      allowOther: opts.allowOther ?? false,
      attrTimeoutSec: opts.attrTimeoutSec ?? 1,
      entryTimeoutSec: opts.entryTimeoutSec ?? 1,
      negativeTimeoutSec: 0,
      maxWriteBytes: 1 << 20,
      maxReadBytes: 1 << 20,
      readAheadBytes: 1 << 20,
      debug: opts.debug ?? false,
    };
    const stats = new MountStats(opts.metrics);
    // Block store and cache counters (hits, misses, stored, dropped, ...) beside the FUSE ones.
    stats.addSource(() => vol.vfs.chunks.counters());
    const listingTtlMs = Math.min(args.attrTimeoutSec, args.entryTimeoutSec) * 1000;
    const ops = new FerryOps(vol.vfs, { readOnly: opts.readOnly ?? false, log: opts.log, stats, ctx: vol.ctx, listingTtlMs });
    const fuse = createFuse(mnt, ops, args, opts.log);
    await new Promise<void>((resolve, reject) => {
      fuse.mount((err) => {
        if (err === null || err === undefined) return resolve();
        reject(new UsageError(`cannot mount ${mnt}: ${err.message === 'fuse failed' ? 'the FUSE mount failed (is fusermount installed and /dev/fuse usable?)' : err.message}`));
      });
    });
    const m = new Mount(mnt, vol, fuse, stats, opts.log);
    m.watch();
    // The binding's loop ended (unmounted from outside): finish at once rather than at the next poll.
    fuse.onEnd = () => {
      if (m.closing === undefined) {
        m.log.info(`${m.mountpoint} was unmounted from outside; flushing and closing`);
        m.closing = m.finish();
      }
    };
    return m;
  }

  private watch(): void {
    this.watcher = setInterval(() => {
      findMount(this.mountpoint).then(
        (e) => {
          if (e === undefined && this.closing === undefined) {
            this.log.info(`${this.mountpoint} was unmounted from outside; flushing and closing`);
            this.closing = this.finish();
          }
        },
        (err: unknown) => this.log.error('cannot read the mount table', err),
      );
    }, UNMOUNT_POLL_MS);
    this.watcher.unref();
  }

  /** Unmounts (lazily if files are still open), flushes and closes the volume. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if ((await findMount(this.mountpoint)) !== undefined) {
        try {
          await fusermount(this.mountpoint, false);
        } catch (err) {
          this.log.warn(`${err instanceof Error ? err.message : String(err)}; unmounting lazily`);
          await fusermount(this.mountpoint, true).catch((e: unknown) => this.log.error('lazy unmount failed', e));
        }
      }
      await this.finish();
    })();
    return this.closing;
  }

  private async finish(): Promise<void> {
    if (this.watcher !== undefined) clearInterval(this.watcher);
    // Ends the binding's loop (fuse-native's runs `fusermount -uz`, which fails once the mount is gone: expected).
    await new Promise<void>((resolve) => this.fuse.unmount(() => resolve()));
    try {
      await this.vol.close();
    } catch (err) {
      this.log.error('closing the volume failed (data written since the last close may be lost)', err);
    } finally {
      this.resolveDone();
    }
  }
}
