/**
 * `ferry config META`: shows and changes volume settings that are not part of the format record. Today: the
 * changelog's retention bound (meta/retention.ts) and its registered consumers (one that will never come
 * back can be removed, so the log is no longer kept for it).
 */

import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { getLogRetention, setLogRetention, type LogRetention } from '../meta/retention.js';
import { openEngine, out, parseCount, printJson } from './util.js';

const DAY_MS = 86_400_000;

export interface ConfigCliOptions {
  logRetentionDays?: string;
  logRetentionEntries?: string;
  removeConsumer?: string;
  json?: boolean;
}

/** "7 days or 10000000 entries": the bound in words. */
export function retentionSummary(r: LogRetention): string {
  const days = r.ageMsMax / DAY_MS;
  return `${Number.isInteger(days) ? days : days.toFixed(3)} day(s) or ${r.entriesMax} entries behind the newest, whichever is less`;
}

function parseDays(s: string): number {
  const days = Number(s);
  const ms = Math.round(days * DAY_MS);
  if (!/^\s*\d+(\.\d+)?\s*$/.test(s) || !(ms >= 1) || !Number.isSafeInteger(ms)) {
    throw new UsageError(`invalid --log-retention-days '${s}': expected a positive number of days, like 7 or 0.5`);
  }
  return ms;
}

export async function runConfig(metaUrl: string, o: ConfigCliOptions): Promise<void> {
  const change: Partial<LogRetention> = {};
  if (o.logRetentionDays !== undefined) change.ageMsMax = parseDays(o.logRetentionDays);
  if (o.logRetentionEntries !== undefined) change.entriesMax = parseCount(o.logRetentionEntries, '--log-retention-entries', 1);
  const { engine } = await openEngine(metaUrl);
  try {
    const retention = Object.keys(change).length > 0 ? await setLogRetention(engine, change) : await getLogRetention(engine);
    if (o.removeConsumer !== undefined && !(await engine.removeConsumer(o.removeConsumer))) {
      throw new UsageError(`no changelog consumer named '${o.removeConsumer}' (see "ferry status" for the registered ones)`);
    }
    if (o.json === true) return await printJson({ logRetention: retention });
    await out(`log retention: ${retentionSummary(retention)}\n${o.removeConsumer === undefined ? '' : `consumer '${o.removeConsumer}' removed\n`}`);
  } finally {
    await engine.close();
  }
}

export function register(program: Command): void {
  program
    .command('config')
    .summary('show or change volume settings (changelog retention)')
    .description(
      'Show or change settings kept in the volume. The changelog is trimmed behind its slowest registered consumer ' +
        '(replicators, mirrors), but never kept longer than the retention bound: entries older than --log-retention-days ' +
        'or more than --log-retention-entries behind the newest go even if a consumer still needs them (it re-bootstraps). ' +
        'Defaults: 7 days, 10000000 entries.',
    )
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .option('--log-retention-days <N>', 'trim changelog entries older than N days (fractions allowed)')
    .option('--log-retention-entries <N>', 'trim changelog entries more than N behind the newest')
    .option('--remove-consumer <NAME>', 'unregister a changelog consumer that will not come back')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      '\nExamples:\n  $ ferry config sqlite:///data/vol.db\n  $ ferry config sqlite:///data/vol.db --log-retention-days 3 --log-retention-entries 1000000\n' +
        "  $ ferry config sqlite:///data/vol.db --remove-consumer 'mirror:eu-west'",
    )
    .action((meta: string, opts: ConfigCliOptions) => runConfig(meta, opts));
}
