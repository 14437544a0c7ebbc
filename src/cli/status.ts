/**
 * `ferry status META`: the volume, its usage, client sessions and the changelog (its bounds, retention and
 * registered consumers) at a glance; with regions, each region's bucket and each bucket replicator's
 * position, lag, backlog and counters.
 */

import type { Command } from 'commander';
import { humanAge, humanBytes, openMetaTools, out, printJson } from './util.js';
import { publicFormat } from './info.js';
import { sessionIsStale } from '../meta/meta.js';
import { replicationStatus } from '../region/replicate.js';
import { volumeRegions } from '../region/regions.js';
import { copiedSummary } from './replicate.js';
import { getLogRetention } from '../meta/retention.js';
import { retentionSummary } from './config.js';

export async function runStatus(metaUrl: string, opts: { json?: boolean }): Promise<void> {
  const tools = await openMetaTools(metaUrl);
  try {
    const now = Date.now();
    const usage = await tools.meta.usage();
    const trash = await tools.meta.trashUsage();
    const sessions = (await tools.meta.listSessions()).map((s) => ({ ...s, ageMs: now - s.heartbeat, stale: sessionIsStale(s, now) }));
    const pending = await tools.meta.listDelSlices(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    const { last: lastSeq, floor } = await tools.engine.logBounds();
    const retention = await getLogRetention(tools.engine);
    const consumers = (await tools.engine.listConsumers()).map((c) => ({
      ...c,
      behind: Math.max(0, lastSeq - c.position),
      // Entries it has not read are gone: it re-bootstraps when it next reads.
      trimmedPast: c.position < floor,
    }));
    const regions = volumeRegions(tools.format);
    const replication = regions.named ? await replicationStatus(tools.meta, now) : [];
    const status = {
      volume: publicFormat(tools.format),
      usage: { usedBytes: usage.usedBytes, capacityBytes: tools.format.capacityBytes, inodes: usage.inodes },
      trash: { files: trash.files, bytes: trash.bytes, partial: trash.partial, days: tools.format.trashDays },
      pendingDeletion: { slices: pending.length, bytes: pending.reduce((n, d) => n + d.size, 0) },
      sessions,
      changelog: { lastSeq, floor, length: lastSeq - floor, retention, consumers },
      ...(regions.named ? { regions: { primary: regions.primary, names: [...regions.regions.keys()] }, replication } : {}),
    };
    if (opts.json === true) return await printJson(status);
    const lines = [
      `volume:    ${tools.format.name} (${tools.format.uuid})`,
      `storage:   ${status.volume.storage}`,
      `usage:     ${humanBytes(usage.usedBytes)} of ${humanBytes(tools.format.capacityBytes)} (data, holes not counted), ${usage.inodes} inodes`,
      `trash:     ${trash.partial ? 'at least ' : ''}${trash.files} file(s), ${humanBytes(trash.bytes)}${tools.format.trashDays > 0 ? `, kept ${tools.format.trashDays} day(s)` : ' (trash disabled)'}`,
      `pending:   ${status.pendingDeletion.slices} released slices (${humanBytes(status.pendingDeletion.bytes)}) awaiting gc`,
      `changelog: last seq ${lastSeq}${floor > 0 ? `, kept after ${floor}` : ''} (${lastSeq - floor} entries); retention ${retentionSummary(retention)}`,
      ...consumers.map(
        (c) =>
          `  consumer ${c.name} at seq ${c.position}, ` +
          (c.trimmedPast ? 'behind the trimmed log (it re-bootstraps)' : `${c.behind} behind`) +
          `, updated ${humanAge(now - c.updated)} ago`,
      ),
    ];
    if (regions.named) {
      lines.push(`regions:   ${[...regions.regions.keys()].map((r) => (r === regions.primary ? `${r} (primary)` : r)).join(', ')}`);
      if (replication.length === 0) lines.push('replication: never run (start "ferry replicate")');
      for (const r of replication) {
        const b = r.backlog;
        lines.push(
          `replication ${r.name === '*>*' ? '' : `${r.name} `}at seq ${r.seq} of ${r.lastSeq}, lag ${r.lagSeconds.toFixed(1)}s, ` +
            `backlog ${b.blocks}${b.partial ? '+' : ''} blocks (${humanBytes(b.bytes)})${r.pending > 0 ? `, ${r.pending} slice(s) failing` : ''}, ` +
            `updated ${humanAge(now - r.updated)} ago`,
          `  copied ${copiedSummary(r.stats)}; ${r.stats.copiedBlocks} blocks, errors ${r.stats.errors}, retries ${r.stats.retries}`,
        );
      }
    }
    lines.push(`sessions:  ${sessions.length}`);
    for (const s of sessions) {
      lines.push(
        `  sid ${s.sid}  ${s.host} pid ${s.pid}${s.region === '' ? '' : ` region ${s.region}`}  heartbeat ${humanAge(s.ageMs)} ago${s.stale ? ' (dead: cleaned by the next client or gc)' : ''}`,
      );
    }
    await out(lines.join('\n') + '\n');
  } finally {
    await tools.close();
  }
}

export function register(program: Command): void {
  program
    .command('status')
    .summary('show usage, sessions and the changelog')
    .description(
      'Show the volume, its usage, client sessions (host, pid, region, last heartbeat), the changelog (bounds, retention, ' +
        'registered consumers and their positions) and, with regions, each replicator.',
    )
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExamples:\n  $ ferry status sqlite:///data/vol.db\n  $ ferry status sqlite:///data/vol.db --json')
    .action((meta: string, opts: { json?: boolean }) => runStatus(meta, opts));
}
