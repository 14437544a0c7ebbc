/**
 * Real mounts for tests: a fresh volume (SQLite metadata, file:// bucket) mounted by `node dist/cli/main.js
 * mount` in a child process, driven from other child processes (shell tools, python). The test process never
 * touches the mount point through its own file calls while it waits on the mount (no deadlock possible).
 *
 * Tests need /dev/fuse, fusermount, libfuse2 and a build (`npm test` builds first).
 */

import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { it } from 'node:test';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { formatVolume, openMetaEngine } from '../../src/index.js';

export const exec = promisify(execFile);
export const REPO = resolve(import.meta.dirname, '../..');
export const CLI = join(REPO, 'dist/cli/main.js');

const INSTALL = 'apt-get install fuse libfuse2 libfuse-dev pkg-config, then npm ci';

/**
 * A reason to skip the FUSE tests on a developer machine. Under CI=true nothing may pass by skipping: a test
 * that fails with the reason is registered instead (as the Redis and PostgreSQL tests do).
 */
function skipOrFail(why: string | undefined): string | undefined {
  if (why === undefined) return undefined;
  if (process.env['CI'] === 'true') it('FUSE is available (required under CI=true)', () => assert.fail(why));
  return why;
}

function fuseMissing(): string | undefined {
  if (!existsSync('/dev/fuse')) return `no /dev/fuse (${INSTALL})`;
  if (!existsSync(CLI)) return 'not built (run npm run build)';
  for (const dir of (process.env['PATH'] ?? '').split(':')) if (existsSync(join(dir, 'fusermount'))) return undefined;
  return `fusermount is not installed (${INSTALL})`;
}

/** Why the FUSE tests cannot run here, or undefined if they can (see skipOrFail). */
export function fuseUnavailable(): string | undefined {
  return skipOrFail(fuseMissing());
}

export interface Volume {
  dir: string;
  metaUrl: string;
  mnt: string;
}

/** Why the tests of Ferry's own FUSE addon (native/fuse) cannot run here, or undefined if they can. */
export function addonUnavailable(): string | undefined {
  const why = fuseMissing();
  if (why !== undefined) return skipOrFail(why);
  if (process.env['FERRY_FUSE'] === 'fuse-native') return 'FERRY_FUSE=fuse-native';
  try {
    createRequire(import.meta.url)('@ferryfs/fuse');
    return undefined;
  } catch (err) {
    return skipOrFail(`the FUSE addon is not built (${err instanceof Error ? err.message.split('\n')[0] : String(err)}; ${INSTALL})`);
  }
}

/**
 * A formatted volume and an empty mount point in a fresh directory (world-traversable for non-root steps).
 * nextInode: the first inode number new files get (to test numbers past 32 bits). metaUrl: format there
 * (a Redis or PostgreSQL location) instead of a SQLite file in the directory.
 */
export async function makeVolume(opts: { trashDays?: number; blockBytes?: number; nextInode?: number; metaUrl?: string } = {}): Promise<Volume> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-fuse-'));
  await chmod(dir, 0o755);
  const bucket = join(dir, 'bucket');
  await mkdir(bucket);
  const mnt = join(dir, 'mnt');
  await mkdir(mnt);
  // SQLite beside the bucket, unless a shared engine's (empty) location is given.
  const metaUrl = opts.metaUrl ?? 'sqlite://' + join(dir, 'meta.db');
  const eng = await openMetaEngine(metaUrl, { create: true });
  try {
    await formatVolume(eng, { name: 'fusetest', storage: 'file://' + bucket, blockBytes: opts.blockBytes ?? 1 << 20, compression: 'none', trashDays: opts.trashDays ?? 0 });
    const next = opts.nextInode;
    if (next !== undefined) {
      await eng.txn(async (tx) => {
        tx.put('counter', '', 'nextInode', next);
        await Promise.resolve();
      });
    }
  } finally {
    await eng.close();
  }
  return { dir, metaUrl, mnt };
}

export interface RunningMount {
  child: ChildProcess;
  /** Everything the mount process wrote to stderr so far. */
  log(): string;
  /** SIGTERM and wait for the process to exit (it unmounts); kills and lazily unmounts if it hangs. */
  stop(): Promise<void>;
  exited: Promise<number | null>;
}

/** Starts `ferry mount` in the foreground and waits until it reports the mount ready. */
export async function startMount(vol: Volume, args: string[] = []): Promise<RunningMount> {
  const child = spawn(process.execPath, [CLI, 'mount', vol.metaUrl, vol.mnt, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  await new Promise<void>((res, rej) => {
    const t = setTimeout(() => rej(new Error(`mount not ready after 20 s:\n${log}`)), 20_000);
    const check = (): void => {
      if (/mounted volume/.test(log)) {
        clearTimeout(t);
        child.stderr!.off('data', check);
        res();
      }
    };
    child.stderr!.on('data', check);
    void exited.then((code) => {
      clearTimeout(t);
      rej(new Error(`mount exited with ${code}:\n${log}`));
    });
  });
  return {
    child,
    log: () => log,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const done = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 15_000))]);
        if (!done) child.kill('SIGKILL');
      }
      await unmountQuietly(vol.mnt);
    },
  };
}

/** fusermount -u, then -uz; ignores "not mounted". */
export async function unmountQuietly(mnt: string): Promise<void> {
  await exec('fusermount', ['-u', mnt]).catch(() => exec('fusermount', ['-uz', mnt]).catch(() => undefined));
}

export async function removeVolume(vol: Volume): Promise<void> {
  await unmountQuietly(vol.mnt);
  await rm(vol.dir, { recursive: true, force: true });
}

/** Runs a bash script with cwd; returns stdout (throws with stderr on failure). */
export async function sh(script: string, cwd: string, env: Record<string, string> = {}): Promise<string> {
  try {
    const { stdout } = await exec('bash', ['-euo', 'pipefail', '-c', script], { cwd, env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string };
    throw new Error(`script failed in ${cwd}: ${e.message}\nstdout: ${e.stdout ?? ''}\nstderr: ${e.stderr ?? ''}`);
  }
}

export async function ferry(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [CLI, ...args], { maxBuffer: 16 << 20 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as Error & { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}
