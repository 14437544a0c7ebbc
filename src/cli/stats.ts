/**
 * `ferry stats MOUNTPOINT`: a live view of a mount, one line per interval (like dstat). It reads the mount's
 * `/.stats` (Prometheus text: fuse/stats.ts) every `--interval` seconds and prints what changed, per second:
 *
 *   FUSE operations and their mean latency, errors; read and write throughput through the mount; which tier
 *   served the block reads (memory, disk, cache group, bucket: share of hits); object-store requests and
 *   their mean latency; metadata transactions and their mean latency.
 *
 * `--json` prints one JSON object per line instead (the same figures, unrounded); `--count N` stops after N
 * lines. Its own reads of `/.stats` are counted by the mount like any other operation (a few per interval).
 */

import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { BadUsageError, UsageError } from '../errors.js';
import { parsePromText, sumOf, type Sample } from '../obs/promtext.js';
import { out, parseCount, valueOption, type ValueParser } from './util.js';

export interface StatsCliOptions {
  interval: number;
  count?: number;
  json?: boolean;
}

/** What one interval saw, per second where it says so. */
export interface StatsLine {
  /** ISO time of the second reading. */
  time: string;
  seconds: number;
  fuse: { opsPerSec: number; meanLatencyMs: number | null; errorsPerSec: number };
  readBytesPerSec: number;
  writeBytesPerSec: number;
  /** Per read tier: hits per second and their share of all block reads served (null with no reads). */
  tiers: Record<string, { hitsPerSec: number; bytesPerSec: number; hitRatio: number | null }>;
  object: { requestsPerSec: number; meanLatencyMs: number | null; errorsPerSec: number; readBytesPerSec: number; writtenBytesPerSec: number };
  meta: { txnsPerSec: number; meanLatencyMs: number | null; errorsPerSec: number };
}

interface Reading {
  at: number;
  samples: Sample[];
}

const TIER_ORDER = ['memory', 'disk', 'group', 'bucket'];

function tiersOf(samples: readonly Sample[]): string[] {
  const names = new Set<string>();
  for (const s of samples) if (s.name === 'ferry_block_read_hits_total' && s.labels['tier'] !== undefined) names.add(s.labels['tier']);
  for (const t of ['memory', 'bucket']) names.add(t);
  const rank = (t: string): number => (TIER_ORDER.includes(t) ? TIER_ORDER.indexOf(t) : TIER_ORDER.length);
  return [...names].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : 1));
}

/** The figures between two readings of /.stats. */
export function diffStats(a: Reading, b: Reading): StatsLine {
  const dt = Math.max(1e-6, (b.at - a.at) / 1000);
  const d = (name: string, match: Record<string, string> = {}): number => Math.max(0, sumOf(b.samples, name, match) - sumOf(a.samples, name, match));
  const mean = (sum: string, count: string): number | null => {
    const n = d(count);
    return n === 0 ? null : (d(sum) / n) * 1000;
  };
  const tiers: StatsLine['tiers'] = {};
  const allHits = d('ferry_block_read_hits_total');
  for (const tier of tiersOf(b.samples)) {
    const hits = d('ferry_block_read_hits_total', { tier });
    tiers[tier] = { hitsPerSec: hits / dt, bytesPerSec: d('ferry_block_read_bytes_total', { tier }) / dt, hitRatio: allHits === 0 ? null : hits / allHits };
  }
  return {
    time: new Date(b.at).toISOString(),
    seconds: dt,
    fuse: { opsPerSec: d('ferry_fuse_ops_total') / dt, meanLatencyMs: mean('ferry_fuse_op_seconds_sum', 'ferry_fuse_op_seconds_count'), errorsPerSec: d('ferry_fuse_errors_total') / dt },
    readBytesPerSec: d('ferry_fuse_read_bytes_total') / dt,
    writeBytesPerSec: d('ferry_fuse_written_bytes_total') / dt,
    tiers,
    object: {
      requestsPerSec: d('ferry_object_request_seconds_count') / dt,
      meanLatencyMs: mean('ferry_object_request_seconds_sum', 'ferry_object_request_seconds_count'),
      errorsPerSec: d('ferry_object_errors_total') / dt,
      readBytesPerSec: d('ferry_object_read_bytes_total') / dt,
      writtenBytesPerSec: d('ferry_object_written_bytes_total') / dt,
    },
    meta: { txnsPerSec: d('ferry_meta_txn_seconds_count') / dt, meanLatencyMs: mean('ferry_meta_txn_seconds_sum', 'ferry_meta_txn_seconds_count'), errorsPerSec: d('ferry_meta_txn_errors_total') / dt },
  };
}

const MiB = 1 << 20;
const num = (v: number, w: number, digits = 0): string => v.toFixed(digits).padStart(w);
const ms = (v: number | null, w: number): string => (v === null ? '-'.padStart(w) : num(v, w, v < 10 ? 2 : 1));
const pct = (v: number | null, w: number): string => (v === null ? '-'.padStart(w) : num(v * 100, w));

/** The two header lines of the text view, for these tiers. */
export function statsHeader(tiers: readonly string[]): string {
  const group = (title: string, width: number): string => {
    const t = ` ${title} `;
    const left = Math.max(0, Math.floor((width - t.length) / 2));
    return '-'.repeat(left) + t + '-'.repeat(Math.max(0, width - left - t.length));
  };
  const tierCols = tiers.map((t) => t.slice(0, 6).padStart(6)).join(' ');
  const tierWidth = Math.max(tiers.length * 7 - 1, 12);
  return (
    `${'time'.padEnd(8)} ${group('fuse', 22)} ${group('MiB/s', 13)} ${group('hits % by tier', tierWidth)} ${group('object', 14)} ${group('meta', 14)}\n` +
    `${''.padEnd(8)} ${'ops/s'.padStart(7)} ${'ms'.padStart(7)} ${'err/s'.padStart(6)} ${'read'.padStart(6)} ${'write'.padStart(6)} ${tierCols.padStart(tierWidth)} ${'req/s'.padStart(6)} ${'ms'.padStart(7)} ${'txn/s'.padStart(6)} ${'ms'.padStart(7)}\n`
  );
}

export function statsRow(l: StatsLine, tiers: readonly string[]): string {
  const tierWidth = Math.max(tiers.length * 7 - 1, 12);
  const tierCols = tiers.map((t) => pct(l.tiers[t]?.hitRatio ?? null, 6)).join(' ');
  return (
    `${l.time.substring(11, 19)} ${num(l.fuse.opsPerSec, 7)} ${ms(l.fuse.meanLatencyMs, 7)} ${num(l.fuse.errorsPerSec, 6)} ` +
    `${num(l.readBytesPerSec / MiB, 6, 1)} ${num(l.writeBytesPerSec / MiB, 6, 1)} ${tierCols.padStart(tierWidth)} ` +
    `${num(l.object.requestsPerSec, 6)} ${ms(l.object.meanLatencyMs, 7)} ${num(l.meta.txnsPerSec, 6)} ${ms(l.meta.meanLatencyMs, 7)}\n`
  );
}

/** Header lines are repeated every this many rows (as dstat does). */
const HEADER_EVERY = 20;

async function readStats(file: string): Promise<Reading> {
  const text = await readFile(file, 'utf8');
  return { at: Date.now(), samples: parsePromText(text) };
}

export async function runStats(mountpoint: string, o: StatsCliOptions): Promise<void> {
  const abs = path.resolve(mountpoint);
  const file = path.join(abs, '.stats');
  const st = await stat(file).catch(() => undefined);
  if (st === undefined || !st.isFile()) throw new UsageError(`${abs} is not a Ferry mount point (no ${file}; mount one with: ferry mount META ${abs})`);
  const controller = new AbortController();
  const stop = (): void => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    let prev = await readStats(file);
    let rows = 0;
    let tiers: string[] = [];
    while (o.count === undefined || rows < o.count) {
      const aborted = await new Promise<boolean>((resolve) => {
        if (controller.signal.aborted) return resolve(true);
        const timer = setTimeout(() => resolve(false), o.interval * 1000);
        controller.signal.addEventListener('abort', () => {
          clearTimeout(timer);
          resolve(true);
        }, { once: true });
      });
      if (aborted) break;
      let next: Reading;
      try {
        next = await readStats(file);
      } catch (err) {
        throw new UsageError(`cannot read ${file} (was ${abs} unmounted?): ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      }
      const line = diffStats(prev, next);
      prev = next;
      if (o.json === true) {
        await out(JSON.stringify(line) + '\n');
      } else {
        const now = Object.keys(line.tiers);
        if (rows % HEADER_EVERY === 0 || now.join() !== tiers.join()) {
          tiers = now;
          await out(statsHeader(tiers));
        }
        await out(statsRow(line, tiers));
      }
      rows++;
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

const positiveSeconds: ValueParser<number> = (s, what) => {
  const n = Number(s);
  if (s.trim() === '' || !Number.isFinite(n) || n < 0.1 || n > 3600) throw new BadUsageError(`invalid ${what} '${s}': use seconds from 0.1 to 3600, like 1`);
  return n;
};

export function register(program: Command): void {
  program
    .command('stats')
    .summary('live per-second view of a mount')
    .description(
      "Show a mount's activity every --interval seconds: FUSE operations and mean latency, read/write MiB/s, the share of block reads each " +
        'cache tier served, object-store requests and metadata transactions with their mean latency. Reads MOUNTPOINT/.stats. Ctrl-C stops.',
    )
    .argument('<MOUNTPOINT>', 'where a volume is mounted')
    .addOption(valueOption('--interval <SECONDS>', 'seconds between lines', positiveSeconds, '1'))
    .addOption(valueOption('--count <N>', 'stop after N lines', (s, what) => parseCount(s, what, 1)))
    .option('--json', 'one JSON object per line')
    .addHelpText('after', '\nExamples:\n  $ ferry stats /mnt/ferry\n  $ ferry stats /mnt/ferry --interval 5 --json --count 12')
    .action((mnt: string, opts: StatsCliOptions) => runStats(mnt, opts));
}
