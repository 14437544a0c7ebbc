/**
 * `ferry status META`: the volume, its usage, client sessions and the changelog (its bounds, retention and
 * registered consumers) at a glance; with regions, each region's bucket and each bucket replicator's
 * position, lag, backlog and counters.
 */

import type { Command } from 'commander';
import { humanAge, humanBytes, openMetaTools, out, printJson, type MetaTools } from './util.js';
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

/** What `ferry status --json` prints, and what the dashboard serves: secrets are masked in every URL. */
export type VolumeStatus = Awaited<ReturnType<typeof gatherStatus>>;

/**
 * The status of a volume, read from its metadata alone (no bucket, no replica is contacted). `tools.format`
 * is used as given: a long-running caller passes a freshly read one. Every URL in it is masked. With `prune`
 * (the default) it deletes egress records past their keeping time, its only write; the dashboard does not.
 */
export async function gatherStatus(tools: Pick<MetaTools, 'engine' | 'meta' | 'format'>, now = Date.now(), o: { prune?: boolean } = {}) {
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
  const egress = await egressTotals(tools.engine, { now, prune: o.prune ?? true });
  // Failover: which epoch this engine is the primary of (1 until a mirror is promoted), or that it was demoted.
  const epochRec = await readEpoch(tools.engine);
  const demotion = await readDemotion(tools.engine);
  const writeback = await writebackStatus(tools.engine, now);
  const metadata = {
    epoch: epochOf(epochRec),
    primaryRegion: epochRec?.region ?? (regions.named ? regions.primary : undefined),
    ...(epochRec === undefined ? {} : { promoted: { at: epochRec.promotedAt, from: epochRec.previous, fenced: epochRec.fenced } }),
    ...(demotion === undefined ? {} : { demoted: { epoch: demotion.epoch, region: demotion.region, meta: maskUrl(demotion.meta), at: demotion.at } }),
  };
  return {
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
}

/** The status as `ferry status` prints it. */
export function statusText(status: VolumeStatus, now = Date.now()): string {
  const { volume, usage, trash, changelog, metadata } = status;
  const lines = [
    `volume:    ${volume.name} (${volume.uuid})`,
    `storage:   ${volume.storage}`,
    `usage:     ${humanBytes(usage.usedBytes)} of ${humanBytes(usage.capacityBytes)} (data, holes not counted), ${usage.inodes} inodes`,
    `trash:     ${trash.partial ? 'at least ' : ''}${trash.files} file(s), ${humanBytes(trash.bytes)}${trash.days > 0 ? `, kept ${trash.days} day(s)` : ' (trash disabled)'}`,
    `pending:   ${status.pendingDeletion.slices} released slices (${humanBytes(status.pendingDeletion.bytes)}) awaiting gc`,
    ...writebackLines(status.writeback),
    `changelog: last seq ${changelog.lastSeq}${changelog.floor > 0 ? `, kept after ${changelog.floor}` : ''} (${changelog.length} entries); retention ${retentionSummary(changelog.retention)}`,
    ...changelog.consumers.map(
      (c) =>
        `  consumer ${c.name} at seq ${c.position}, ` +
        (c.trimmedPast ? 'behind the trimmed log (it re-bootstraps)' : `${c.behind} behind`) +
        `, updated ${humanAge(now - c.updated)} ago`,
    ),
  ];
  const { demoted, promoted } = metadata;
  if (demoted !== undefined) {
    lines.splice(1, 0, `metadata:  DEMOTED — region '${demoted.region}' is the primary of epoch ${demoted.epoch} since ${new Date(demoted.at).toISOString()} (${demoted.meta}); writes are refused here`);
  } else if (promoted !== undefined) {
    lines.splice(1, 0, `metadata:  primary of epoch ${metadata.epoch} in region '${metadata.primaryRegion ?? ''}' (promoted ${new Date(promoted.at).toISOString()} from '${promoted.from}'${promoted.fenced ? '' : ', which was not fenced: --force'})`);
  }
  const identity = status.replicaOf;
  if (identity !== undefined) {
    lines.splice(1, 0, `replica:   of volume '${identity.name}' for region '${identity.region}' (primary region '${identity.primary}'), applied up to seq ${identity.applied}; read-only`);
  }
  if (status.regions !== undefined) {
    lines.push(`regions:   ${status.regions.names.map((r) => `${r} (${status.regions?.roles[r] ?? ''})`).join(', ')}`);
    for (const m of identity === undefined ? (status.mirrors ?? []) : []) {
      lines.push(
        m.applied === undefined
          ? `mirror ${m.region}: follower never ran (start "ferry mirror META --region ${m.region}")`
          : `mirror ${m.region} (${m.role}) at seq ${m.applied}, lag ${m.lagEntries} entries / ${(m.lagSeconds ?? 0).toFixed(1)}s, ` +
              `${m.bootstraps} bootstrap(s), reported ${humanAge(now - (m.updated ?? now))} ago${m.error === undefined ? '' : `; last error: ${m.error}`}`,
      );
    }
    const neverRun = status.unreplicated;
    if (neverRun !== undefined) {
      lines.push(`replication: never run (start "ferry replicate"); backlog ${neverRun.blocks} blocks (${humanBytes(neverRun.bytes)}) not yet copied`);
    }
    for (const r of status.replication ?? []) {
      const b = r.backlog;
      lines.push(
        `replication ${r.name === '*>*' ? '' : `${r.name} `}at seq ${r.seq} of ${r.lastSeq}, lag ${r.lagSeconds.toFixed(1)}s, ` +
          `backlog ${b.blocks}${b.partial ? '+' : ''} blocks (${humanBytes(b.bytes)})${r.pending > 0 ? `, ${r.pending} slice(s) failing` : ''}, ` +
          `updated ${humanAge(now - r.updated)} ago`,
        `  copied ${copiedSummary(r.stats)}; ${r.stats.copiedBlocks} blocks, errors ${r.stats.errors}, retries ${r.stats.retries}`,
      );
    }
  }
  const groups = [...new Set(status.cacheGroups.map((m) => m.group))];
  lines.push(`cache groups: ${groups.length === 0 ? 'none' : groups.join(', ')}`);
  for (const m of status.cacheGroups) {
    lines.push(
      `  ${m.group}  ${m.address}  ${m.role} weight ${m.weight}${m.region === undefined ? '' : ` region ${m.region}`}  ${m.host} pid ${m.pid}  ` +
        `heartbeat ${humanAge(m.ageMs)} ago${m.stale ? ' (gone: left the group)' : ''}`,
    );
  }
  lines.push(`egress (bucket region -> client region): ${status.egress.length === 0 ? 'none counted' : ''}`.trimEnd());
  for (const e of status.egress) lines.push(`  ${e.from} -> ${e.to}: ${humanBytes(e.lastHour)} in the last hour, ${humanBytes(e.total)} since start`);
  lines.push(`sessions:  ${status.sessions.length}`);
  for (const s of status.sessions) {
    lines.push(
      `  sid ${s.sid}  ${s.host} pid ${s.pid}${s.region === '' ? '' : ` region ${s.region}`}  heartbeat ${humanAge(s.ageMs)} ago${s.stale ? ' (dead: cleaned by the next client or gc)' : ''}`,
    );
  }
  return lines.join('\n') + '\n';
}

export async function runStatus(metaUrl: string, opts: { json?: boolean }): Promise<void> {
  const tools = await openMetaTools(metaUrl);
  try {
    const now = Date.now();
    const status = await gatherStatus(tools, now);
    await (opts.json === true ? printJson(status) : out(statusText(status, now)));
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
