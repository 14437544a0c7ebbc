/**
 * Helpers shared by the CLI commands: argument parsing (sizes, durations, volume paths), opening a volume's
 * metadata and bucket with one-line errors, human-readable output, the progress bar, and the top-level error
 * reporter that turns every failure into `ferry: <one line>`.
 */

import { openSync, readSync, closeSync, statSync } from 'node:fs';
import path from 'node:path';
import cliProgress from 'cli-progress';
import { pino, type Logger } from 'pino';
import { Option } from 'commander';
import { BadUsageError, CorruptBlockError, FsError, UsageError } from '../errors.js';
import { maskUrl } from '../util/url.js';
import type { MetaEngine } from '../meta/engine.js';
import { loadFormat, Meta } from '../meta/meta.js';
import { openMetaEngine } from '../meta/registry.js';
import { RetryEngine } from '../meta/retry.js';
import type { FormatRec } from '../meta/types.js';
import { ObjectNotFoundError, InvalidKeyError } from '../object/store.js';
import type { ObjectStore } from '../object/store.js';
import { isServiceUrl, openBucket, openVolume, type OpenVolumeOptions } from '../sdk/open.js';
import type { Volume } from '../sdk/volume.js';
import { bucketRegion, clientRegion, volumeRegions } from '../region/regions.js';
import { GROUP_RE } from '../meta/members.js';

// ---------------------------------------------------------------- logging

let logger: Logger | undefined;

/**
 * Structured diagnostics on stderr (pino, JSON). Quiet by default so command output stays readable:
 * FERRY_LOG_LEVEL=debug|info|warn|error (or FERRY_DEBUG=1 for debug).
 */
export function log(): Logger {
  logger ??= pino(
    { name: 'ferry', level: process.env['FERRY_LOG_LEVEL'] ?? (process.env['FERRY_DEBUG'] === '1' ? 'debug' : 'silent') },
    pino.destination(2),
  );
  return logger;
}

// ---------------------------------------------------------------- parsing

/*
 * Option values are parsed in one place. Each parser takes the value and what to call it in a message (the
 * option's name, `--parallel`) and throws BadUsageError, which main.ts turns into one line and exit 2:
 *
 *   invalid --parallel '0': use a whole number from 1 to 1024
 *
 * `valueOption` attaches a parser to a commander option, so a bad value is refused while the command line is
 * read, before the command opens anything; a command that parses a value itself later gets the same message
 * and exit code by calling the same parser. Options that do not go together use commander's `.conflicts()`
 * (also exit 2, see main.ts).
 */

/** Parses an option value; throws BadUsageError naming `what` and what is accepted. */
export type ValueParser<T> = (value: string, what: string) => T;

/**
 * A commander option whose value is parsed (and so checked) when the command line is read. `defaultValue` is
 * written as a user would write it: it goes through the same parser and is shown as written in --help.
 */
export function valueOption<T>(flags: string, description: string, parse: ValueParser<T>, defaultValue?: string): Option {
  const option = new Option(flags, description);
  const what = option.long ?? option.short ?? flags;
  option.argParser((value: string) => parse(value, what));
  if (defaultValue !== undefined) option.default(parse(defaultValue, what), defaultValue);
  return option;
}

/**
 * Runs a check from elsewhere (a codec, a region name) whose UsageError is, here, about the command line: it
 * becomes a BadUsageError, its message after `prefix` (which names the option).
 */
export function asBadUsage<T>(check: () => T, prefix = ''): T {
  try {
    return check();
  } catch (err) {
    if (err instanceof UsageError && !(err instanceof BadUsageError)) throw new BadUsageError(prefix + err.message);
    throw err;
  }
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 };

/** Bytes from `4M`, `4MiB`, `4MB`, `512k`, `1G`, `4096` (units are binary: K = 1024). */
export function parseSize(s: string, what = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$/i.exec(s);
  if (m === null) throw new BadUsageError(`invalid ${what} '${s}': use a number with an optional unit, like 4M, 512K, 1G`);
  const n = Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!;
  if (!Number.isSafeInteger(n)) throw new BadUsageError(`invalid ${what} '${s}': not a whole number of bytes`);
  return n;
}

/** Bytes per second from `10M`, `512K/s`, `1G` (0: no limit). */
export function parseRate(s: string, what = 'rate'): number {
  return parseSize(s.replace(/\/s\s*$/i, ''), what);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds from `0`, `30s`, `10m`, `1h`, `7d`, `250ms` (a bare number is seconds). */
export function parseDuration(s: string, what = 'duration'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(s);
  if (m === null) throw new BadUsageError(`invalid ${what} '${s}': use a number with a unit, like 0, 30s, 10m, 1h, 7d`);
  return Math.round(Number(m[1]) * DURATION_UNITS[(m[2] ?? 's').toLowerCase()]!);
}

/** A non-negative integer option value. */
export function parseCount(s: string, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(s);
  if (!/^\s*\d+\s*$/.test(s) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new BadUsageError(`invalid ${what} '${s}': use a whole number from ${min} to ${max}`);
  }
  return n;
}

/** parseCount with its bounds, as a ValueParser. */
export function count(min: number, max: number): ValueParser<number> {
  return (s, what) => parseCount(s, what, min, max);
}

/** Seconds, possibly fractional (`1`, `0.5`). */
export function parseSeconds(s: string, what: string): number {
  const n = Number(s);
  if (s.trim() === '' || !Number.isFinite(n) || n < 0) throw new BadUsageError(`invalid ${what} '${s}': use seconds, like 1 or 0.5`);
  return n;
}

/** `HOST:PORT`, `:PORT` or `PORT` (host 127.0.0.1), `[::1]:PORT`. */
export function parseHostPort(s: string, what: string): { host: string; port: number } {
  const m = /^(?:(.*):)?(\d+)$/.exec(s);
  const port = Number(m?.[2]);
  if (m === null || !Number.isInteger(port) || port > 65535) throw new BadUsageError(`invalid ${what} '${s}': use HOST:PORT, like 127.0.0.1:9567`);
  return { host: m[1] === undefined || m[1] === '' ? '127.0.0.1' : m[1].replace(/^\[(.*)\]$/, '$1'), port };
}

/** One of a fixed set of words; `explain` says what each means (default: lists them). */
export function choice<T extends string>(values: readonly T[], explain?: string): ValueParser<T> {
  return (s, what) => {
    const v = values.find((x) => x === s);
    if (v === undefined) throw new BadUsageError(`invalid ${what} '${s}': use ${explain ?? values.join(', ')}`);
    return v;
  };
}

/**
 * The path inside the volume named by a command argument: `:/dir/file` (the cp notation) or `/dir/file`.
 * Relative names are taken from the root. Returns a normalized absolute path ('/' for the root).
 */
export function volumePath(arg: string): string {
  const p = arg.startsWith(':') ? arg.substring(1) : arg;
  if (p.includes('\0')) throw new UsageError(`invalid path ${JSON.stringify(arg)}: contains NUL`);
  const names = p.split('/').filter((s) => s !== '' && s !== '.');
  const out: string[] = [];
  for (const n of names) {
    if (n === '..') out.pop();
    else out.push(n);
  }
  return '/' + out.join('/');
}

export function isVolumeArg(arg: string): boolean {
  return arg.startsWith(':');
}

// ---------------------------------------------------------------- opening a volume

/**
 * The file a sqlite:// metadata URL names, or undefined for other schemes. Mirrors meta/registry.ts so the CLI
 * can check the file before an engine opens it (opening an empty file would turn it into a database).
 */
export function sqliteFile(url: string): string | undefined {
  const m = /^(sqlite3?):\/\/(.*)$/i.exec(url);
  if (m === null) return undefined;
  const file = m[2]!.split('?')[0]!;
  if (file === '' || file === '/') return undefined;
  try {
    return path.resolve(decodeURIComponent(file));
  } catch {
    throw new UsageError(`metadata URL ${JSON.stringify(maskUrl(url))} has a malformed %-escape`);
  }
}

const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

/**
 * Checks that an existing volume's metadata file is there and is a SQLite database before any engine opens it,
 * so that a mistyped META never leaves a new or changed file behind. Other schemes (redis://, postgres://) pass:
 * their engines never create anything unless asked to, and say themselves when no volume is there.
 */
export function checkMetaExists(url: string): void {
  const file = sqliteFile(url);
  if (file === undefined) return;
  let st;
  try {
    st = statSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError(`no volume at ${maskUrl(url)}: ${file} does not exist (run "ferry format" first)`);
    throw new UsageError(`cannot read ${file}: ${code ?? String(err)}`);
  }
  if (!st.isFile()) throw new UsageError(`${file} is not a file (META must name a SQLite database file)`);
  const head = Buffer.alloc(SQLITE_MAGIC.length);
  let n = 0;
  try {
    const fd = openSync(file, 'r');
    try {
      n = readSync(fd, head, 0, head.length, 0);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  if (n < head.length || !head.equals(SQLITE_MAGIC)) throw new UsageError(`${file} is not a Ferry volume (not a SQLite database)`);
}

/** The directory a file:// storage URL names, or undefined for other schemes (mirrors object/registry.ts). */
export function fileBucketDir(url: string): string | undefined {
  const m = /^file:\/\/(.+)$/i.exec(url);
  if (m === null) return undefined;
  try {
    return path.resolve(decodeURIComponent(m[1]!));
  } catch {
    return undefined;
  }
}

/**
 * Fails when a file:// bucket directory is gone. A FileStore creates its root on the first put and lists a
 * missing root as empty, so without this check a moved bucket would look like an empty one.
 */
export function checkBucket(url: string): void {
  const dir = fileBucketDir(url);
  if (dir === undefined) return;
  const st = statSync(dir, { throwIfNoEntry: false });
  if (st === undefined) throw new UsageError(`the volume's bucket ${dir} does not exist (was it moved or deleted?)`);
  if (!st.isDirectory()) throw new UsageError(`the volume's bucket ${dir} is not a directory`);
}

/** The bucket named in a format record: checked, opened, wrapped in retries. */
export async function openVolumeBucket(format: FormatRec): Promise<ObjectStore> {
  checkBucket(format.storage);
  return openBucket(format.storage);
}

/** The metadata engine of an existing volume (calls that found it unreachable are retried), and its format record. */
export async function openEngine(url: string): Promise<{ engine: MetaEngine; format: FormatRec }> {
  checkMetaExists(url);
  const engine = new RetryEngine(await openMetaEngine(url));
  try {
    const format = await loadFormat(engine);
    // The engine's description, not the URL: it masks a password.
    if (format === undefined) throw new UsageError(`no volume in ${engine.description} (run "ferry format" first)`);
    return { engine, format };
  } catch (err) {
    await engine.close();
    throw err;
  }
}

/** The region a client of this volume runs in, given `--region` (undefined: the primary); unknown is bad usage. */
export function checkClientRegion(format: FormatRec, region: string | undefined): string {
  return asBadUsage(() => clientRegion(format, region), `invalid --region '${region ?? ''}': `);
}

/**
 * An existing volume through the SDK, after the checks that give one-line errors (META file, format record,
 * bucket directory). Background failures (read-ahead, compaction) go to the log, not to stdout.
 */
export async function openCliVolume(url: string, options: OpenVolumeOptions = {}): Promise<Volume> {
  // A client of the metadata service has no engine to check: the service answers for the volume.
  if (isServiceUrl(url)) return openVolume(url, { onBackgroundError: (what, err) => log().warn({ err }, `${what} failed`), ...options });
  const { engine, format } = await openEngine(url);
  await engine.close();
  // The bucket of the region the client runs in (the primary's by default); an unknown region fails here.
  const regions = volumeRegions(format);
  const region = checkClientRegion(format, options.region);
  // With other regions to read from, a client starts without its own bucket (the SDK probes it); alone, it
  // cannot, and says so here in one line.
  if (regions.regions.size === 1) checkBucket(regions.regions.get(bucketRegion(regions, region))!.storage);
  return openVolume(url, {
    onBackgroundError: (what, err) => log().warn({ err }, `${what} failed`),
    ...options,
  });
}

/**
 * `--cache-group G` of a one-shot command (cat, cp): read blocks through the owners of the region's cache
 * group G before the buckets, serving nothing to it (no disk cache to share). A bad name is bad usage.
 */
export function readThroughGroup(group: string | undefined): Pick<OpenVolumeOptions, 'cacheGroup'> {
  if (group === undefined) return {};
  if (!GROUP_RE.test(group)) throw new BadUsageError(`bad cache group name ${JSON.stringify(group)}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  return { cacheGroup: { group, sharing: false } };
}

/**
 * Says (once, on stderr) that a group asked for has no live member: the reads go to the buckets, as they do
 * whenever the group cannot answer (a group never decides whether a read succeeds).
 */
export function warnIfGroupEmpty(vol: Volume): void {
  const g = vol.cacheGroup;
  if (g !== undefined && g.view.members().length === 0) process.stderr.write(`ferry: cache group '${g.group}' has no live member: reading from the buckets\n`);
}

/** Engine and Meta without a session: for tools that read metadata and hold no files open. */
export interface MetaTools {
  engine: MetaEngine;
  meta: Meta;
  format: FormatRec;
  close(): Promise<void>;
}

/** MetaTools plus the volume's bucket. */
export interface Tools extends MetaTools {
  store: ObjectStore;
}

export async function openMetaTools(url: string): Promise<MetaTools> {
  const { engine, format } = await openEngine(url);
  try {
    const meta = await Meta.open(engine, { session: false, heartbeatMs: 0 });
    return {
      engine,
      meta,
      format,
      async close() {
        try {
          await meta.close();
        } finally {
          await engine.close();
        }
      },
    };
  } catch (err) {
    await engine.close();
    throw err;
  }
}

export async function openTools(url: string): Promise<Tools> {
  const m = await openMetaTools(url);
  try {
    const store = await openVolumeBucket(m.format);
    return {
      ...m,
      store,
      async close() {
        try {
          await store.close();
        } finally {
          await m.close();
        }
      },
    };
  } catch (err) {
    await m.close();
    throw err;
  }
}

// ---------------------------------------------------------------- output

export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${units[i]!}`;
}

export function humanAge(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172_800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86_400)}d`;
}

/** Writes to stdout and resolves when the data is handed off (back-pressure for large outputs). */
export function out(text: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(text, (err) => (err ? reject(err) : resolve()));
  });
}

export function printJson(value: unknown): Promise<void> {
  return out(JSON.stringify(value, null, 2) + '\n');
}

/** A progress bar on stderr when it is a terminal; otherwise a no-op. */
export interface Progress {
  /** Advances by `bytes` (and `files` finished). */
  add(bytes: number, files?: number): void;
  stop(): void;
}

export function progressBar(totalBytes: number, totalFiles: number, unit: 'bytes' | 'blocks' = 'bytes'): Progress {
  if (process.stderr.isTTY !== true || process.env['FERRY_NO_PROGRESS'] === '1') return { add: () => undefined, stop: () => undefined };
  const started = Date.now();
  let bytes = 0;
  let files = 0;
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format:
        unit === 'bytes'
          ? '{bar} {percentage}% | {files}/{totalFiles} files | {done}/{all} | {rate}/s | ETA {eta_formatted}'
          : '{bar} {percentage}% | {value}/{total} blocks | {rate}/s | ETA {eta_formatted}',
      hideCursor: true,
      clearOnComplete: true,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  const payload = (): Record<string, string | number> => {
    const secs = Math.max(0.001, (Date.now() - started) / 1000);
    return {
      files,
      totalFiles,
      done: humanBytes(bytes),
      all: humanBytes(totalBytes),
      rate: unit === 'bytes' ? humanBytes(Math.round(bytes / secs)) : Math.round(bytes / secs),
    };
  };
  bar.start(Math.max(1, totalBytes), 0, payload());
  return {
    add(n, f = 0) {
      bytes += n;
      files += f;
      bar.update(bytes, payload());
    },
    stop() {
      bar.stop();
    },
  };
}

/** Runs fn over items with at most `max` in flight; rejects with the first failure after the rest settle. */
export async function forEachLimit<T>(items: Iterable<T>, max: number, fn: (item: T) => Promise<void>): Promise<void> {
  const it = items[Symbol.iterator]();
  let failure: { err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    for (;;) {
      if (failure !== undefined) return;
      const next = it.next();
      if (next.done === true) return;
      try {
        await fn(next.value);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, max) }, () => worker()));
  if (failure !== undefined) throw failure.err;
}

// ---------------------------------------------------------------- interruption

/** Exit code of a command stopped by SIGINT or SIGTERM: what a shell reports for one killed by SIGINT (128 + 2). */
export const EXIT_INTERRUPTED = 130;

/** The command was stopped by SIGINT or SIGTERM after cleaning up; main.ts exits 130. */
export class InterruptedError extends UsageError {
  constructor(signal: string) {
    super(`interrupted (${signal})`);
    this.name = 'InterruptedError';
  }
}

/**
 * Runs a command body that a signal may stop. The first SIGINT or SIGTERM aborts `signal`: the body stops at its
 * next check and its finally blocks clean up (temporary files), then the run rejects with InterruptedError. A
 * second signal does not wait for that: `onForcedExit` (synchronous, e.g. removing local temporary files) runs
 * and the process exits 130 at once.
 */
export async function interruptible<T>(body: (signal: AbortSignal) => Promise<T>, onForcedExit: () => void = () => undefined): Promise<T> {
  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (!controller.signal.aborted) {
      controller.abort(new InterruptedError(sig));
      return;
    }
    try {
      onForcedExit();
    } finally {
      process.exit(EXIT_INTERRUPTED);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await body(controller.signal);
  } catch (err) {
    // Whatever the body failed with once stopped (an aborted read, a closed handle), the cause is the signal.
    if (controller.signal.aborted) throw controller.signal.reason;
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

// ---------------------------------------------------------------- errors

/** Errors whose message is meant for the user as is. */
export function isKnownError(err: unknown): err is Error {
  if (err instanceof UsageError || err instanceof FsError || err instanceof CorruptBlockError) return true;
  if (err instanceof ObjectNotFoundError || err instanceof InvalidKeyError) return true;
  // Node's own file-system errors (local paths in cp, dump, load): "ENOENT: no such file or directory, open 'x'".
  const e = err as NodeJS.ErrnoException | undefined;
  return err instanceof Error && typeof e?.code === 'string' && typeof e.syscall === 'string';
}

/**
 * A failed read of `what` (a file named as the user wrote it), as `cannot read <what>: <why>`. The SDK's I/O
 * error carries what went wrong (which block; missing, corrupt or unreachable in which bucket) as its cause's
 * message, which is used without the errno boilerplate around it; other errors keep their message.
 */
export function readFailure(what: string, err: unknown): Error {
  if (err instanceof InterruptedError) return err;
  let why = err instanceof Error ? err.message : String(err);
  if (err instanceof FsError && err.code === 'EIO' && err.cause instanceof Error && err.cause.message !== 'EIO') why = err.cause.message;
  return new FsError(err instanceof FsError ? err.code : 'EIO', `cannot read ${what}: ${why}`, { cause: err });
}

/** One line, whatever the message holds. */
export function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}

/** Prints an error as `ferry: <one line>` (plus the stack for unknown errors when FERRY_DEBUG=1). */
export function reportError(err: unknown): void {
  const debug = process.env['FERRY_DEBUG'] === '1';
  if (isKnownError(err)) {
    process.stderr.write(`ferry: ${oneLine(err.message)}\n`);
  } else {
    const msg = err instanceof Error ? err.message : String(err);
    process.stderr.write(`ferry: unexpected error: ${oneLine(msg)}${debug ? '' : ' (set FERRY_DEBUG=1 for details)'}\n`);
  }
  if (debug && err instanceof Error && err.stack !== undefined) process.stderr.write(err.stack + '\n');
}
