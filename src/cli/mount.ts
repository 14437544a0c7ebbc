/**
 * `ferry mount META MOUNTPOINT`: serves a volume through FUSE. Foreground by default, with readable log lines
 * on stderr; `-d` starts the same command in the background and returns once the mount is ready (or fails
 * with the reason). SIGINT/SIGTERM unmount, flush and exit; `ferry umount` from elsewhere does the same.
 *
 *   ferry mount -d ... --> spawns `ferry mount ...` (detached, IPC) --> child: mount --> "ready" | "error"
 *                      <-- parent prints where and the child's pid, exits 0 (or 1 with the reason)
 */

import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { BadUsageError, UsageError } from '../errors.js';
import { Mount, checkMountpoint } from '../fuse/mount.js';
import type { MountLog } from '../fuse/ops.js';
import type { MetaEngine } from '../meta/engine.js';
import { isServiceUrl } from '../sdk/open.js';
import { checkClientRegion, oneLine, openCliVolume, openEngine, count, parseHostPort, parseSeconds, parseSize, valueOption } from './util.js';
import { processRegistry, serveMetrics, isLoopback, type MetricsEndpoint } from '../obs/metrics.js';
import { metricsToken } from '../obs/token.js';

/** The options of `ferry mount`, parsed (see register). */
export interface MountCliOptions {
  background?: boolean;
  region?: string;
  cacheDir?: string;
  /** --cache-size, bytes. */
  cacheSize?: number;
  /** --buffer-size, bytes. */
  bufferSize?: number;
  /** --writeback: stage closed files' blocks in --cache-dir and upload them in the background. */
  writeback?: boolean;
  readOnly?: boolean;
  allowOther?: boolean;
  metrics?: { host: string; port: number };
  /** --attr-timeout, seconds. */
  attrTimeout?: number;
  /** --entry-timeout, seconds. */
  entryTimeout?: number;
  log?: string;
  debugFuse?: boolean;
  /** --cache-group, --no-sharing (sharing false), --group-listen, --group-weight. */
  cacheGroup?: string;
  sharing?: boolean;
  groupListen?: { host: string; port: number };
  groupWeight?: number;
}

/** Set in the environment of the background child, so it mounts in the foreground and reports over IPC. */
const CHILD_ENV = 'FERRY_MOUNT_CHILD';

/** Human-readable log lines on stderr: time, level, message (and the error's stack for unexpected ones). */
export function lineLog(stream: NodeJS.WritableStream = process.stderr): MountLog {
  // A closed log stream (the terminal or pipe went away) must not stop the mount, nor loop through the
  // uncaught-exception handler: logging stops, serving goes on.
  let broken = false;
  stream.on('error', () => {
    broken = true;
  });
  const write = (level: string, msg: string, err?: unknown): void => {
    if (broken) return;
    let line = `${new Date().toISOString()} ${level} ${msg}`;
    if (err !== undefined) line += `: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`;
    stream.write(line + '\n');
  };
  return {
    info: (m) => write('INFO ', m),
    warn: (m) => write('WARN ', m),
    error: (m, e) => write('ERROR', m, e),
  };
}

/**
 * glibc malloc settings for the background mount daemon (glibc reads them only at start; the user's own
 * values win). Block buffers (4 MiB) are above glibc's default mmap threshold, so each one is mapped fresh
 * and unmapped when collected, and every byte moved into one pays a page fault first: with these, freed
 * buffers are reused. Measured on a sequential first read with 50 ms per GET (the SDK over a
 * latency-injecting store, eight blocks in flight, one loaded machine): 40–50 MiB/s with glibc's defaults,
 * 114–231 MiB/s with these. Up to MALLOC_TRIM_THRESHOLD_ of freed memory stays in the process.
 */
export const MALLOC_TUNING: Readonly<Record<string, string>> = {
  MALLOC_MMAP_THRESHOLD_: String(32 << 20),
  MALLOC_TRIM_THRESHOLD_: String(256 << 20),
  MALLOC_TOP_PAD_: String(64 << 20),
};

/**
 * V8 settings for the background mount daemon. Every block a write fills is a 4 MiB buffer whose memory lives
 * outside the JS heap and which usually outlives a young-generation collection (it waits for its upload), so
 * only full collections free it. With the default initial old-generation limit, V8 then starts incremental
 * marking again and again though the JS heap hardly grows: a sequential write of 1 GiB through the mount ran
 * 80–170 full collections (~1 s of GC) and 260–430 MiB/s; with this setting 2–15 collections and 490–650 MiB/s
 * (fio, 1 MiB writes, SQLite + file bucket, one quiet 2-core machine). The daemon's peak RSS moved from 243 to
 * 261 MiB. The limit only delays collections of a heap that stays small; external memory keeps its own trigger.
 * Not settable through NODE_OPTIONS, so a foreground mount runs without it unless node is started with it.
 */
export const V8_TUNING: readonly string[] = ['--initial-old-space-size=128'];

function pickDefined(env: NodeJS.ProcessEnv, keys: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of keys) if (env[k] !== undefined) out[k] = env[k];
  return out;
}

/** Starts this command again, detached, and waits for it to report the mount ready or failed. */
async function runInBackground(argv: string[], mountpoint: string, logFile: string): Promise<void> {
  const args = argv.slice(1).filter((a) => a !== '-d' && a !== '--background');
  const fd = openSync(logFile, 'a');
  const v8 = V8_TUNING.filter((flag) => !process.execArgv.some((a) => a.startsWith(flag.split('=')[0]!)));
  const child = spawn(process.execPath, [...process.execArgv, ...v8, ...args], {
    detached: true,
    stdio: ['ignore', fd, fd, 'ipc'],
    env: { ...process.env, ...MALLOC_TUNING, ...pickDefined(process.env, Object.keys(MALLOC_TUNING)), [CHILD_ENV]: '1' },
  });
  const result = await new Promise<{ ok: true } | { ok: false; error: string }>((resolve) => {
    child.once('message', (m: { ready?: boolean; error?: string }) => resolve(m.ready === true ? { ok: true } : { ok: false, error: m.error ?? 'the mount failed' }));
    child.once('exit', (code, sig) => resolve({ ok: false, error: `the mount process exited (${sig ?? `code ${code ?? '?'}`}); see ${logFile}` }));
    child.once('error', (err) => resolve({ ok: false, error: err.message }));
  });
  child.removeAllListeners();
  if (child.connected) child.disconnect();
  child.unref();
  if (!result.ok) throw new UsageError(result.error);
  process.stderr.write(`ferry: mounted at ${mountpoint} (pid ${child.pid ?? '?'}, log ${logFile})\n`);
}

export async function runMount(metaUrl: string, mountpoint: string, o: MountCliOptions): Promise<void> {
  const attrTimeoutSec = o.attrTimeout;
  const entryTimeoutSec = o.entryTimeout;
  const metrics = o.metrics;
  const metricsAt = metrics === undefined ? '' : `${metrics.host.includes(':') ? `[${metrics.host}]` : metrics.host}:${metrics.port}`;
  const volOptions = {
    ...(o.region === undefined ? {} : { region: o.region }),
    ...(o.cacheDir === undefined ? {} : { cacheDir: path.resolve(o.cacheDir) }),
    ...(o.cacheSize === undefined ? {} : { cacheBytes: o.cacheSize }),
    ...(o.bufferSize === undefined ? {} : { bufferBytesMax: o.bufferSize }),
    ...(o.writeback === true ? { writeback: true } : {}),
    ...(o.cacheGroup === undefined
      ? {}
      : {
          cacheGroup: {
            group: o.cacheGroup,
            sharing: o.sharing !== false,
            ...(o.groupListen === undefined ? {} : { listen: o.groupListen }),
            ...(o.groupWeight === undefined ? {} : { weight: o.groupWeight }),
          },
        }),
  };
  if (o.writeback === true && o.cacheDir === undefined) {
    throw new BadUsageError('--writeback needs --cache-dir DIR: blocks are staged there until they are uploaded');
  }
  if (o.cacheGroup === undefined && (o.sharing === false || o.groupListen !== undefined || o.groupWeight !== undefined)) {
    throw new BadUsageError('--no-sharing, --group-listen and --group-weight go with --cache-group');
  }
  const abs = path.resolve(mountpoint);

  if (o.background === true && process.env[CHILD_ENV] !== '1') {
    // Fail here, in the caller's terminal, for what can be seen before starting anything.
    await checkMountpoint(abs);
    // A client of the metadata service is checked by the background mount (it has no engine to read here).
    if (!isServiceUrl(metaUrl)) {
      const { engine, format } = await openEngine(metaUrl);
      await engine.close();
      checkClientRegion(format, o.region);
    }
    const logFile = path.resolve(o.log ?? path.join(os.tmpdir(), `ferry-mount-${abs.replace(/[^A-Za-z0-9]+/g, '_')}.log`));
    return runInBackground(process.argv, abs, logFile);
  }

  const report = (m: { ready: true } | { error: string }): void => {
    if (process.send !== undefined && process.connected) process.send(m);
  };
  const log = lineLog();
  let mount: Mount;
  let volName = '';
  let readOnlyWhy: string | undefined;
  let staged: { dir: string; recovered: number } | undefined;
  let server: MetricsEndpoint | undefined;
  const registry = processRegistry();
  try {
    await checkMountpoint(abs);
    const vol = await openCliVolume(metaUrl, {
      ...volOptions,
      metrics: registry,
      onBackgroundError: (what, err) => log.error(`${what} failed`, err),
    });
    volName = vol.info.name;
    readOnlyWhy = vol.vfs.readOnly;
    if (vol.writeback !== undefined) staged = { dir: vol.writeback.dir, recovered: vol.writeback.uploadStats().recovered };
    try {
      mount = await Mount.mount(vol, {
        mountpoint: abs,
        // A mirror's replica is mounted read-only whatever was asked: the kernel then refuses writes at once.
        readOnly: o.readOnly === true || vol.vfs.readOnly !== undefined,
        allowOther: o.allowOther === true,
        ...(attrTimeoutSec === undefined ? {} : { attrTimeoutSec }),
        ...(entryTimeoutSec === undefined ? {} : { entryTimeoutSec }),
        log,
        debug: o.debugFuse === true,
        metrics: registry,
      });
    } catch (err) {
      await vol.close().catch(() => undefined);
      throw err;
    }
    if (metrics !== undefined) {
      const m = mount;
      try {
        // The token comes from the volume secret, which only a client of the engine holds (not a ferry:// client).
        const engine = (vol.vfs.meta as { engine?: MetaEngine }).engine;
        if (!isLoopback(metrics.host) && engine === undefined) throw new Error(`--metrics beyond loopback needs the volume token, which a ferry:// client does not hold: serve on 127.0.0.1`);
        const token = isLoopback(metrics.host) ? undefined : await metricsToken(engine!, vol.info.uuid);
        server = await serveMetrics(registry, { ...metrics, token, what: metricsAt, extra: () => m.stats.legacyText() });
      } catch (err) {
        await m.close();
        throw new UsageError(err instanceof Error ? err.message : String(err));
      }
    }
  } catch (err) {
    report({ error: oneLine(err instanceof Error ? err.message : String(err)) });
    throw err;
  }
  if (staged !== undefined && staged.recovered > 0) log.info(`write-back: uploading ${staged.recovered} block(s) that an earlier run staged in ${staged.dir}`);
  log.info(`mounted volume "${volName}" at ${abs}${o.readOnly === true || readOnlyWhy !== undefined ? ` (read-only${readOnlyWhy === undefined ? '' : `: ${readOnlyWhy}`})` : ''}${server === undefined ? '' : `; metrics on ${server.url}/metrics`}; counters in ${abs}/.stats, operations in ${abs}/.accesslog; FUSE binding ${mount.backend}`);
  report({ ready: true });
  if (process.connected) process.disconnect();

  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (++signals > 1) {
      log.warn(`${sig} again: exiting without waiting for the unmount`);
      process.exit(1);
    }
    log.info(`${sig}: unmounting ${abs}`);
    mount.close().catch((err: unknown) => log.error('unmount failed', err));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', () => log.info('SIGHUP ignored (use SIGTERM or ferry umount to stop)'));
  // A failure that escaped every handler must not leave a dead mount point: log it and keep serving.
  process.on('uncaughtException', (err) => log.error('uncaught exception', err));
  process.on('unhandledRejection', (err) => log.error('unhandled rejection', err));

  await mount.done;
  await server?.close();
  log.info(`unmounted ${abs}`);
  // fuse-native keeps a handle open after an unmount (the addon does not); nothing is left to do.
  process.exit(0);
}

export function register(program: Command): void {
  program
    .command('mount')
    .summary('mount a volume (FUSE)')
    .description('Mount a volume at MOUNTPOINT through FUSE. Runs in the foreground (logs on stderr) until SIGINT/SIGTERM or `ferry umount`; -d returns once the mount is ready. Counters: MOUNTPOINT/.stats.')
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .argument('<MOUNTPOINT>', 'an existing empty directory')
    .option('-d, --background', 'run in the background; return once the mount is ready')
    .option('--region <NAME>', 'the region this client runs in (default: the primary)')
    .option('--cache-dir <DIR>', 'local disk block cache directory')
    .addOption(valueOption('--cache-size <SIZE>', 'disk cache capacity, e.g. 10G', parseSize))
    .addOption(valueOption('--buffer-size <SIZE>', 'memory for write buffers, e.g. 256M (default 64M)', parseSize))
    .option('--writeback', 'with --cache-dir: a closed or fsynced file is staged durably on local disk and committed at once; its blocks upload in the background (other clients see them once uploaded)')
    .option('--cache-group <G>', "join the region's cache group G: read blocks through their owner before the buckets, and share this mount's disk cache")
    .option('--no-sharing', 'with --cache-group: read through the group without serving this disk cache to it')
    .addOption(valueOption('--group-listen <HOST:PORT>', 'with --cache-group: where to serve the group (default: this host, any free port)', parseHostPort))
    .addOption(valueOption('--group-weight <W>', "with --cache-group: share of the group's blocks (default 1; 0 drains)", count(0, 1_000_000)))
    .option('--read-only', 'mount read-only')
    .option('--allow-other', 'let other users access the mount (needs user_allow_other in /etc/fuse.conf for non-root)')
    .addOption(valueOption('--metrics <HOST:PORT>', 'serve Prometheus metrics at http://HOST:PORT/metrics', parseHostPort))
    .addOption(
      valueOption('--attr-timeout <SECONDS>', 'how long the kernel caches attributes (default 1; hard links are one inode to the kernel, so they always agree)', parseSeconds),
    )
    .addOption(valueOption('--entry-timeout <SECONDS>', 'how long the kernel caches names (default 1)', parseSeconds))
    .option('--log <FILE>', 'log file in the background (default: in the temporary directory)')
    .option('--debug-fuse', "print libfuse's request trace")
    .addHelpText('after', '\nExamples:\n  $ ferry mount sqlite:///data/vol.db /mnt/vol\n  $ ferry mount -d sqlite:///data/vol.db /mnt/vol --cache-dir /var/cache/ferry\n  $ ferry umount /mnt/vol')
    .action((meta: string, mnt: string, o: MountCliOptions) => runMount(meta, mnt, o));
}
