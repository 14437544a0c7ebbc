/**
 * `ferry warmup META PATH... [--group G] [--parallel N] [--check] [--evict]`: has the blocks of the given files
 * and trees fetched ahead of their readers (sdk/warmup.ts): by their owners in cache group G, or without a
 * group into the local disk cache at --cache-dir (the directory a later mount will use; not while a mount holds
 * it). A progress bar (files, bytes, rate, ETA) unless FERRY_NO_PROGRESS=1 or stderr is not a terminal.
 * Interrupted (SIGINT), it stops; run again, it fetches only what is missing. `--check` reports how much of
 * each path is held, `--evict` drops it. Exit 1 when some block could not be warmed.
 */

import path from 'node:path';
import type { Command } from 'commander';
import { Option } from 'commander';
import { BadUsageError, UsageError } from '../errors.js';
import { planWarmup, runWarmup, WARMUP_PARALLEL_DEFAULT } from '../sdk/warmup.js';
import { count, humanBytes, interruptible, openCliVolume, out, parseSize, progressBar, valueOption, volumePath } from './util.js';

interface WarmupCliOptions {
  group?: string;
  parallel?: number;
  check?: boolean;
  evict?: boolean;
  region?: string;
  cacheDir?: string;
  cacheSize?: number;
}

/** Warm-up asks may wait for an owner's fetch over a WAN: a longer bound than a reader's. */
const WARMUP_PEER_TIMEOUT_MS = 120_000;

export async function runWarmupCli(metaUrl: string, paths: string[], o: WarmupCliOptions): Promise<void> {
  const what = o.check === true ? 'check' : o.evict === true ? 'evict' : 'warm';
  if (o.group === undefined && o.cacheDir === undefined) throw new BadUsageError('give --group G (warm a cache group) or --cache-dir DIR (warm a local disk cache)');
  const vol = await openCliVolume(metaUrl, {
    ...(o.region === undefined ? {} : { region: o.region }),
    memCacheBytes: 0,
    ...(o.cacheDir === undefined ? {} : { cacheDir: path.resolve(o.cacheDir), ...(o.cacheSize === undefined ? {} : { cacheBytes: o.cacheSize }) }),
    ...(o.group === undefined ? {} : { cacheGroup: { group: o.group, sharing: false, timeoutMs: WARMUP_PEER_TIMEOUT_MS } }),
  });
  try {
    if (vol.cacheGroup !== undefined && vol.cacheGroup.view.members().length === 0) throw new UsageError(`cache group '${o.group ?? ''}' has no live member`);
    const plan = await planWarmup(vol, paths.map((p) => volumePath(p)));
    const started = Date.now();
    const bar = what === 'warm' ? progressBar(plan.bytes, plan.files.length) : { add: () => undefined, stop: () => undefined };
    let r;
    try {
      r = await interruptible((signal) => runWarmup(vol, plan, what, { parallel: o.parallel ?? WARMUP_PARALLEL_DEFAULT, signal, onProgress: (b, f) => bar.add(b, f) }));
    } finally {
      bar.stop();
    }
    const secs = (Date.now() - started) / 1000;
    if (what === 'check') {
      for (const [p, h] of r.heldBytes) await out(`${p}: ${humanBytes(h.held)} of ${humanBytes(h.total)} cached (${h.total === 0 ? 100 : Math.floor((100 * h.held) / h.total)}%)\n`);
    } else if (what === 'evict') {
      await out(`evicted ${r.blocks} block(s) (${humanBytes(r.bytes)}) of ${plan.files.length} file(s)\n`);
    } else {
      await out(
        `warmed ${r.blocks} block(s) (${humanBytes(r.bytes)}) of ${plan.files.length} file(s) in ${secs.toFixed(1)} s: ` +
          `${r.fetched} fetched, ${r.held} already cached${r.failed > 0 ? `, ${r.failed} failed` : ''}\n`,
      );
    }
    if (r.failed > 0) throw new UsageError(`${r.failed} block(s) could not be ${what === 'warm' ? 'warmed' : what === 'check' ? 'checked' : 'evicted'}: ${r.errors.join('; ')}`);
  } finally {
    await vol.close();
  }
}

export function register(program: Command): void {
  program
    .command('warmup')
    .summary('fetch the blocks of files ahead of their readers')
    .description(
      'Have the blocks of the given files and trees fetched ahead of their readers: by their owners in cache group G (--group), ' +
        'or into a local disk cache (--cache-dir). Run again after an interruption, it fetches only what is missing. ' +
        '--check reports how much of each path is cached; --evict drops it.',
    )
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .argument('<PATH...>', 'files or directories in the volume')
    .option('--group <G>', "the region's cache group to warm")
    .option('--cache-dir <DIR>', 'without --group: the local disk cache directory to fill')
    .addOption(valueOption('--cache-size <SIZE>', 'with --cache-dir: its capacity, e.g. 100G', parseSize))
    .addOption(valueOption('--parallel <N>', `blocks in flight (default ${WARMUP_PARALLEL_DEFAULT})`, count(1, 1024)))
    .addOption(new Option('--check', 'report how much of each path is cached').conflicts('evict'))
    .option('--evict', 'drop the blocks from the cache')
    .option('--region <NAME>', 'the region this client runs in (default: the primary)')
    .addHelpText('after', '\nExamples:\n  $ ferry warmup sqlite:///data/vol.db /datasets/imagenet --group gpu --parallel 32\n  $ ferry warmup sqlite:///data/vol.db /datasets/imagenet --group gpu --check')
    .action((meta: string, paths: string[], o: WarmupCliOptions) => runWarmupCli(meta, paths, o));
}
