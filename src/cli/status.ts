/**
 * `ferry status META`: the volume, its usage, client sessions and the changelog (its bounds, retention and
 * registered consumers) at a glance; with regions, each region's bucket and each bucket replicator's
 * position, lag, backlog and counters.
 */

import type { Command } from 'commander';
import { humanAge, humanBytes, openMetaTools, out, printJson } from './util.js';
import { publicFormat } from './info.js';
import { sessionIsStale } from '../meta/meta.js';
import { replicationStatus, unreplicatedBacklog } from '../region/replicate.js';
import { regionRole, volumeRegions } from '../region/regions.js';
import { mirrorStatus } from '../region/mirror.js';
import { readMirrorIdentity } from '../meta/mirror.js';
import { copiedSummary } from './replicate.js';
import { getLogRetention } from '../meta/retention.js';
import { retentionSummary } from './config.js';
import { listMembers, memberIsStale } from '../meta/members.js';
import { egressTotals } from '../meta/egress.js';
import { epochOf, readDemotion, readEpoch } from '../meta/epoch.js';
import { maskUrl } from '../util/url.js';
import { writebackStatus, writebackLines } from './writeback-status.js';

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
    // No replicator ever ran: everything written so far is still to copy.
    const neverRun = replication.length === 0 && regions.regions.size > 1 ? await unreplicatedBacklog(tools.meta) : undefined;
    const mirrors = regions.named ? await mirrorStatus(tools.engine, tools.format, now) : [];
    // Opened on a replica: what it mirrors, and how far it is.
    const identity = await readMirrorIdentity(tools.engine);
    const members = await listMembers(tools.engine, { now, stale: true });
    const egress = await egressTotals(tools.engine, { now, prune: true });
    // Failover: which epoch this engine is the primary of (1 until a mirror is promoted), or that it was demoted.
    const epochRec = await readEpoch(tools.engine);
    const demotion = await readDemotion(tools.engine);
    const metadata = {
      epoch: epochOf(epochRec),
      primaryRegion: epochRec?.region ?? (regions.named ? regions.primary : undefined),
      ...(demotion === undefined ? {} : { demoted: { epoch: demotion.epoch, region: demotion.region, meta: maskUrl(demotion.meta), at: demotion.at } }),
    };
    const writeback = await writebackStatus(tools.engine, now);
    const status = {
      metadata,
      volume: publicFormat(tools.format),
      usage: { usedBytes: usage.usedBytes, capacityBytes: tools.format.capacityBytes, inodes: usage.inodes },
      trash: { files: trash.files, bytes: trash.bytes, partial: trash.partial, days: tools.format.trashDays },
      pendingDeletion: { slices: pending.length, bytes: pending.reduce((n, d) => n + d.size, 0) },
      writeback,
      sessions,
      changelog: { lastSeq, floor, length: lastSeq - floor, retention, consumers },
      ...(regions.named
        ? {
            regions: { primary: regions.primary, names: [...regions.all.keys()], roles: Object.fromEntries([...regions.all.keys()].map((n) => [n, regionRole(regions, n)])) },
            replication,
            ...(neverRun === undefined ? {} : { unreplicated: neverRun }),
            mirrors,
          }
        : {}),
      ...(identity === undefined ? {} : { replicaOf: { ...identity, applied: lastSeq } }),
      cacheGroups: members.map((m) => ({ group: m.group, address: m.address, weight: m.weight, role: m.role, region: m.region, host: m.host, pid: m.pid, ageMs: now - m.heartbeat, stale: memberIsStale(m, now) })),
      egress,
    };
    if (opts.json === true) return await printJson(status);
    const lines = [
      `volume:    ${tools.format.name} (${tools.format.uuid})`,
      `storage:   ${status.volume.storage}`,
      `usage:     ${humanBytes(usage.usedBytes)} of ${humanBytes(tools.format.capacityBytes)} (data, holes not counted), ${usage.inodes} inodes`,
      `trash:     ${trash.partial ? 'at least ' : ''}${trash.files} file(s), ${humanBytes(trash.bytes)}${tools.format.trashDays > 0 ? `, kept ${tools.format.trashDays} day(s)` : ' (trash disabled)'}`,
      `pending:   ${status.pendingDeletion.slices} released slices (${humanBytes(status.pendingDeletion.bytes)}) awaiting gc`,
      ...writebackLines(writeback),
      `changelog: last seq ${lastSeq}${floor > 0 ? `, kept after ${floor}` : ''} (${lastSeq - floor} entries); retention ${retentionSummary(retention)}`,
      ...consumers.map(
        (c) =>
          `  consumer ${c.name} at seq ${c.position}, ` +
          (c.trimmedPast ? 'behind the trimmed log (it re-bootstraps)' : `${c.behind} behind`) +
          `, updated ${humanAge(now - c.updated)} ago`,
      ),
    ];
    if (demotion !== undefined) {
      lines.splice(1, 0, `metadata:  DEMOTED — region '${demotion.region}' is the primary of epoch ${demotion.epoch} since ${new Date(demotion.at).toISOString()} (${maskUrl(demotion.meta)}); writes are refused here`);
    } else if (epochRec !== undefined) {
      lines.splice(1, 0, `metadata:  primary of epoch ${epochRec.epoch} in region '${epochRec.region}' (promoted ${new Date(epochRec.promotedAt).toISOString()} from '${epochRec.previous}'${epochRec.fenced ? '' : ', which was not fenced: --force'})`);
    }
    if (identity !== undefined) {
      lines.splice(1, 0, `replica:   of volume '${identity.name}' for region '${identity.region}' (primary region '${identity.primary}'), applied up to seq ${lastSeq}; read-only`);
    }
    if (regions.named) {
      lines.push(`regions:   ${[...regions.all.keys()].map((r) => `${r} (${regionRole(regions, r)})`).join(', ')}`);
      for (const m of identity === undefined ? mirrors : []) {
        lines.push(
          m.applied === undefined
            ? `mirror ${m.region}: follower never ran (start "ferry mirror META --region ${m.region}")`
            : `mirror ${m.region} (${m.role}) at seq ${m.applied}, lag ${m.lagEntries} entries / ${(m.lagSeconds ?? 0).toFixed(1)}s, ` +
                `${m.bootstraps} bootstrap(s), reported ${humanAge(now - (m.updated ?? now))} ago${m.error === undefined ? '' : `; last error: ${m.error}`}`,
        );
      }
      if (neverRun !== undefined) {
        lines.push(`replication: never run (start "ferry replicate"); backlog ${neverRun.blocks} blocks (${humanBytes(neverRun.bytes)}) not yet copied`);
      }
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
    const groups = [...new Set(members.map((m) => m.group))];
    lines.push(`cache groups: ${groups.length === 0 ? 'none' : groups.join(', ')}`);
    for (const m of status.cacheGroups) {
      lines.push(
        `  ${m.group}  ${m.address}  ${m.role} weight ${m.weight}${m.region === undefined ? '' : ` region ${m.region}`}  ${m.host} pid ${m.pid}  ` +
          `heartbeat ${humanAge(m.ageMs)} ago${m.stale ? ' (gone: left the group)' : ''}`,
      );
    }
    lines.push(`egress (bucket region -> client region): ${egress.length === 0 ? 'none counted' : ''}`.trimEnd());
    for (const e of egress) lines.push(`  ${e.from} -> ${e.to}: ${humanBytes(e.lastHour)} in the last hour, ${humanBytes(e.total)} since start`);
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
