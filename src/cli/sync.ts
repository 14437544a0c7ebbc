/**
 * `ferry sync SRC DST`: makes DST hold what SRC holds. Either side is an object store URL (file://, s3://,
 * mem://) or a local directory (a plain path: a file store rooted there, whose keys are relative paths).
 * The engine is region/sync.ts; this file parses options, opens the stores (each wrapped in RetryStore),
 * shows progress and turns the result into output and an exit code:
 *
 *   0    everything copied, checked or deleted as asked
 *   1    some object failed (listed on stderr, one line each; the summary counts them), or a fatal error
 *   2    bad usage: a bad option value or filter, overlapping trees (nothing is opened)
 *   130  interrupted (SIGINT/SIGTERM): in-flight copies were cancelled; a rerun resumes where this one stopped
 *
 * Output: a progress bar on stderr when it is a terminal (objects, bytes, rate, ETA; totals grow while the
 * listing runs), and a summary line on stdout at the end. `--dry-run` prints each decision on stdout instead
 * of acting on it.
 *
 * A run killed with SIGKILL leaves the temporary files of its puts in a file:// destination's `.tmp/`; each
 * run first removes those older than STALE_TEMP_AGE_MS (as `ferry gc` does in a volume's buckets).
 */

import { promises as fsp, statSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { BadUsageError, UsageError } from '../errors.js';
import { openObjectStore } from '../object/registry.js';
import { RetryStore } from '../object/retry.js';
import { canSweepTemp, type ObjectStore } from '../object/store.js';
import { compileFilter, globToRegExp, PARALLEL_DEFAULT, SyncListError, Syncer, type FilterRule, type SyncEvent, type SyncResult, type SyncStats } from '../region/sync.js';
import { count, EXIT_INTERRUPTED, humanBytes, oneLine, parseRate, valueOption } from './util.js';

/** Progress bar refresh. */
const PROGRESS_INTERVAL_MS = 250;
/** Largest --parallel accepted. */
const PARALLEL_MAX = 1024;
/**
 * A temporary file in a file:// destination's `.tmp/` untouched this long is from a put that will never finish
 * (a killed run): a put writes its temporary in one go, so one in progress is always younger.
 */
export const STALE_TEMP_AGE_MS = 3_600_000;

/** The options of `ferry sync`, parsed (see register). */
export interface SyncCliOptions {
  delete?: boolean;
  check?: boolean;
  parallel?: number;
  dryRun?: boolean;
  /** --bwlimit, bytes per second. */
  bwlimit?: number;
}

/** One side of the sync: the URL to open and, for a local tree, its directory. */
interface Endpoint {
  url: string;
  /** The directory of a file store (plain path or file:// URL). */
  dir: string | undefined;
}

const URL_LIKE = /^[a-z][a-z0-9+.-]*:\/\//i;

function endpointOf(arg: string): Endpoint {
  if (arg === '') throw new BadUsageError('an empty SRC or DST; give a directory or a store URL like s3://bucket/prefix');
  if (URL_LIKE.test(arg)) {
    const m = /^file:\/\/(.+)$/i.exec(arg);
    let dir: string | undefined;
    if (m !== null) {
      try {
        dir = path.resolve(decodeURIComponent(m[1]!));
      } catch {
        dir = undefined; // openObjectStore gives the error.
      }
    }
    return { url: arg, dir };
  }
  const dir = path.resolve(arg);
  return { url: pathToFileURL(dir).href, dir };
}

function checkSourceDir(dir: string, arg: string): void {
  const st = statSync(dir, { throwIfNoEntry: false });
  if (st === undefined) throw new UsageError(`source ${arg}: directory ${dir} does not exist`);
  if (!st.isDirectory()) throw new UsageError(`source ${arg}: ${dir} is not a directory (ferry sync copies trees and buckets)`);
}

function checkDestDir(dir: string, arg: string): void {
  const st = statSync(dir, { throwIfNoEntry: false });
  if (st !== undefined && !st.isDirectory()) throw new UsageError(`destination ${arg}: ${dir} exists and is not a directory`);
}

function inside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

async function open(endpoint: Endpoint, role: 'source' | 'destination'): Promise<ObjectStore> {
  try {
    return new RetryStore(await openObjectStore(endpoint.url));
  } catch (err) {
    if (err instanceof UsageError) throw new UsageError(`${role}: ${err.message}`);
    throw err;
  }
}

export async function runSync(srcArg: string, dstArg: string, rules: FilterRule[], opts: SyncCliOptions): Promise<void> {
  const src = endpointOf(srcArg);
  const dst = endpointOf(dstArg);
  // Every check before anything is opened, so that bad input writes nothing (option values are checked by the
  // parser, see register).
  const parallel = opts.parallel ?? PARALLEL_DEFAULT;
  const bytesPerSecond = opts.bwlimit ?? 0;
  const filter = compileFilter(rules);
  if (src.dir !== undefined) checkSourceDir(src.dir, srcArg);
  if (dst.dir !== undefined) checkDestDir(dst.dir, dstArg);
  if (src.dir !== undefined && dst.dir !== undefined && (inside(src.dir, dst.dir) || inside(dst.dir, src.dir))) {
    throw new BadUsageError(`source ${src.dir} and destination ${dst.dir} overlap; sync between separate trees`);
  }

  const srcStore = await open(src, 'source');
  let dstStore: ObjectStore;
  try {
    dstStore = await open(dst, 'destination');
  } catch (err) {
    await srcStore.close();
    throw err;
  }

  const abort = new AbortController();
  const onSignal = (): void => abort.abort(new UsageError('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const lines: string[] = [];
  const onEvent = (e: SyncEvent): void => {
    if (e.type === 'fail') {
      const msg = e.error instanceof Error ? e.error.message : String(e.error);
      process.stderr.write(`ferry: sync: ${e.op} ${e.key} failed: ${oneLine(msg)}\n`);
    } else if (opts.dryRun === true) {
      lines.push(e.type === 'copy' ? `would copy ${e.key} (${e.bytes} bytes, ${e.reason})` : `would delete ${e.key}`);
      if (lines.length >= 256) process.stdout.write(lines.splice(0).join('\n') + '\n');
    }
  };
  const syncer = new Syncer(srcStore, dstStore, {
    delete: opts.delete,
    check: opts.check,
    filter,
    parallel,
    dryRun: opts.dryRun,
    bytesPerSecond,
    signal: abort.signal,
    onEvent,
  });
  const bar = progress(() => syncer.stats());
  let result: SyncResult | undefined;
  let tempSwept = 0;
  try {
    if (opts.dryRun !== true) tempSwept = await sweepStaleTemps(dstStore);
    result = await syncer.run();
  } catch (err) {
    if (err instanceof SyncListError) throw new UsageError(err.message);
    if (!abort.signal.aborted) throw err;
  } finally {
    bar.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (lines.length > 0) process.stdout.write(lines.join('\n') + '\n');
    await Promise.allSettled([srcStore.close(), dstStore.close()]);
    // The file store leaves its (empty) temp directory behind; a local tree should look as the user left it.
    if (dst.dir !== undefined) await fsp.rmdir(path.join(dst.dir, '.tmp')).catch(() => undefined);
  }
  if (result === undefined) {
    process.stdout.write(`${summary(syncer.stats(), opts.dryRun === true)} (interrupted; run again to resume)\n`);
    process.exitCode = EXIT_INTERRUPTED;
    return;
  }
  process.stdout.write(`${summary(result, result.dryRun)}${tempSwept > 0 ? `; removed ${tempSwept} stale temporary file(s) of an earlier run` : ''}\n`);
  if (result.deletesSkipped !== 0) {
    const n = result.deletesSkipped < 0 ? 'the' : String(result.deletesSkipped);
    process.stderr.write(`ferry: sync: not deleting ${n} extra objects in the destination because copies failed\n`);
  }
  if (result.failed > 0) process.exitCode = 1;
}

/**
 * Removes what killed runs left in the destination's temporary directory (a file:// store's `.tmp/`), older than
 * STALE_TEMP_AGE_MS. Best effort: a failure is a warning, since the copies do not depend on it.
 */
async function sweepStaleTemps(store: ObjectStore): Promise<number> {
  if (!canSweepTemp(store)) return 0;
  try {
    return await store.sweepTemp(STALE_TEMP_AGE_MS);
  } catch (err) {
    process.stderr.write(`ferry: sync: warning: cannot remove stale temporary files in ${store.description}: ${oneLine(err instanceof Error ? err.message : String(err))}\n`);
    return 0;
  }
}

/** `copied 12, skipped 988, deleted 0, failed 0, bytes 3145728 (3.00 MiB), 1.23 s, 2.44 MiB/s` */
export function summary(s: SyncStats, dryRun: boolean): string {
  const rate = s.seconds > 0 ? humanBytes(Math.round(s.copiedBytes / s.seconds)) : humanBytes(0);
  return (
    `${dryRun ? 'dry run: would have ' : ''}copied ${s.copied}, skipped ${s.skipped}, deleted ${s.deleted}, failed ${s.failed}, ` +
    `bytes ${s.copiedBytes} (${humanBytes(s.copiedBytes)}), ${s.seconds.toFixed(2)} s, ${rate}/s`
  );
}

/** A progress bar on stderr when it is a terminal: totals are what is known to need copying so far. */
function progress(stats: () => SyncStats): { stop(): void } {
  if (process.stderr.isTTY !== true || process.env['FERRY_NO_PROGRESS'] === '1') return { stop: () => undefined };
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: '{bar} {percentage}% | {objects}/{totalObjects} objects | {done}/{all} | {rate}/s | ETA {eta} | {note}',
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const payload = (s: SyncStats): Record<string, string | number> => {
    const rate = s.seconds > 0 ? s.copiedBytes / s.seconds : 0;
    const left = s.toCopyBytes - s.copiedBytes;
    return {
      objects: s.copied,
      totalObjects: s.toCopy,
      done: humanBytes(s.copiedBytes),
      all: humanBytes(s.toCopyBytes),
      rate: humanBytes(Math.round(rate)),
      eta: rate > 0 && s.listed ? `${Math.ceil(left / rate)}s` : '?',
      note: `${s.skipped} same${s.failed > 0 ? `, ${s.failed} failed` : ''}${s.listed ? '' : ', listing'}`,
    };
  };
  bar.start(1, 0, payload(stats()));
  const timer = setInterval(() => {
    const s = stats();
    bar.setTotal(Math.max(1, s.toCopyBytes));
    bar.update(s.copiedBytes, payload(s));
  }, PROGRESS_INTERVAL_MS);
  return {
    stop() {
      clearInterval(timer);
      bar.stop();
    },
  };
}

export function register(program: Command): void {
  // --include and --exclude share one list, so that their order on the command line is kept.
  const rules: FilterRule[] = [];
  // Each pattern is checked as it is read, so that a bad one is a bad option value (exit 2).
  const rule = (kind: FilterRule['kind']) => (pattern: string): FilterRule[] => {
    try {
      globToRegExp(pattern);
    } catch (err) {
      throw new BadUsageError(`invalid --${kind} '${pattern}': ${(err as Error).message}`);
    }
    rules.push({ kind, pattern });
    return rules;
  };
  program
    .command('sync')
    .summary('make one bucket or directory hold what another holds')
    .description(
      'Copy objects from SRC to DST where DST lacks them or holds a different size (with --check, different bytes), ' +
        'verifying every copy. SRC and DST are store URLs (file:///dir, s3://bucket/prefix?endpoint=...) or local ' +
        'directories. Interrupted runs resume: run the same command again. Filters are tried in the order given, ' +
        'the first match wins (* within a path segment, ** across, a leading / anchors at the root); with any ' +
        '--include, keys that match nothing are excluded. Objects up to 1 GiB, each held in memory while copied. ' +
        "Temporary files a killed run left in a file:// DST's .tmp/ are removed once an hour old.",
    )
    .argument('<SRC>', 'source: a directory or a store URL')
    .argument('<DST>', 'destination: a directory or a store URL')
    .option('--delete', 'remove objects in DST that SRC lacks (after all copies succeed)')
    .option('--check', 'compare the bytes of same-size objects, and read every copy back')
    .option('--include <GLOB>', 'copy only matching keys (repeatable)', rule('include'))
    .option('--exclude <GLOB>', 'leave matching keys alone (repeatable)', rule('exclude'))
    .addOption(valueOption('--parallel <N>', `copies at once, 1 to ${PARALLEL_MAX} (default ${PARALLEL_DEFAULT})`, count(1, PARALLEL_MAX)))
    .option('--dry-run', 'print what would be copied and deleted; change nothing')
    .addOption(valueOption('--bwlimit <RATE>', 'cap on bytes written per second, like 10M (MiB/s) or 512K', parseRate))
    .addHelpText(
      'after',
      '\nExamples:\n  $ ferry sync ./photos "s3://backup/photos?endpoint=http://127.0.0.1:9000"\n' +
        '  $ ferry sync file:///data/bucket-a file:///data/bucket-b --delete --check\n' +
        "  $ ferry sync ./src ./dst --include '*.jpg' --exclude 'tmp/**'",
    )
    .action((srcArg: string, dstArg: string, opts: SyncCliOptions) => runSync(srcArg, dstArg, rules, opts));
}
