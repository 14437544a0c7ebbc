/**
 * `ferry mirror META --region NAME`: the follower of a mirror region's metadata replica (region/mirror.ts);
 * `ferry mirror verify META --region NAME`: compares the replica with the primary without stopping either.
 *
 * The replica's URL comes from the region's record in the primary's volume (`ferry region add ... --replica`).
 * `--once` catches up to the primary's newest sequence and exits 0; without it the follower runs until
 * SIGINT/SIGTERM, riding out an unreachable primary or replica. `--metrics` serves Prometheus metrics (lag in
 * entries and seconds, apply rate, bootstraps, errors, and every call to the primary and the replica in
 * `ferry_meta_txn_seconds`, told apart by their `role` label).
 */

import type { Command } from 'commander';
import { Gauge, type Registry } from 'prom-client';
import { BadUsageError, UsageError } from '../errors.js';
import { openMetaEngine } from '../meta/registry.js';
import { RetryEngine } from '../meta/retry.js';
import type { MetaEngine } from '../meta/engine.js';
import { MetricsEngine, type EngineRole } from '../meta/metrics.js';
import { MirrorFollower, verifyMirror, type MirrorEvent } from '../region/mirror.js';
import { promoteReplica } from '../region/promote.js';
import { volumeRegions } from '../region/regions.js';
import { maskUrl } from '../util/url.js';
import { clientMetrics, counterOf, isLoopback, processRegistry, serveMetrics, type MetricsEndpoint } from '../obs/metrics.js';
import { metricsToken } from '../obs/token.js';
import { log, openEngine, out, parseHostPort, printJson, valueOption } from './util.js';

interface MirrorCliOptions {
  region: string;
  once?: boolean;
  metrics?: { host: string; port: number };
  json?: boolean;
}

/** The primary (checked) and the region's replica engine. */
async function openPair(metaUrl: string, region: string): Promise<{ primary: MetaEngine; replica: MetaEngine; replicaUrl: string; uuid: string }> {
  const { engine: primary, format } = await openEngine(metaUrl);
  try {
    const r = volumeRegions(format);
    const rec = r.all.get(region);
    if (rec === undefined) throw new BadUsageError(`invalid --region '${region}': volume '${format.name}' has no such region (its regions: ${[...r.all.keys()].join(', ')})`);
    if (rec.replica === undefined) {
      throw new BadUsageError(`invalid --region '${region}': region '${region}' has no replica (give it one: ferry region add META NAME [BUCKET] --replica REPLICA-META)`);
    }
    let replica: MetaEngine;
    try {
      replica = new RetryEngine(await openMetaEngine(rec.replica, { create: true }));
    } catch (err) {
      throw new UsageError(`cannot open the replica of region '${region}' (${maskUrl(rec.replica)}): ${err instanceof Error ? err.message : String(err)}`);
    }
    return { primary, replica, replicaUrl: rec.replica, uuid: format.uuid };
  } catch (err) {
    await primary.close();
    throw err;
  }
}

function describe(e: MirrorEvent): void {
  if (e.type === 'bootstrap') log().info({ seq: e.seq, records: e.records, ms: e.ms, why: e.why }, 'bootstrapped the replica');
  else if (e.type === 'repoint') log().warn({ epoch: e.epoch, region: e.region, meta: e.meta, why: e.why }, 'following the new primary');
  else if (e.type === 'error') log().warn({ err: e.error }, 'mirror step failed; retrying');
  else log().debug(e, 'applied');
}

export async function runMirror(metaUrl: string, o: MirrorCliOptions): Promise<void> {
  const { primary, replica, replicaUrl, uuid } = await openPair(metaUrl, o.region);
  let server: MetricsEndpoint | undefined;
  const controller = new AbortController();
  const stop = (): void => controller.abort(new Error('interrupted'));
  let follower: MirrorFollower | undefined;
  const registry = o.metrics === undefined ? undefined : processRegistry();
  const cm = registry === undefined ? undefined : clientMetrics(registry);
  const measure = (engine: MetaEngine, role: EngineRole): MetaEngine => (cm === undefined ? engine : new MetricsEngine(engine, cm, { role }));
  try {
    follower = new MirrorFollower({
      primary: measure(primary, 'primary'),
      replica: measure(replica, 'replica'),
      region: o.region,
      onEvent: describe,
      primaryUrl: metaUrl,
      // The primaries it opens itself (a new one after a failover, or another region's replica probed to be
      // one) are measured as the primary.
      ...(cm === undefined ? {} : { open: async (url: string) => measure(await openMetaEngine(url), 'primary') }),
    });
    if (o.metrics !== undefined && registry !== undefined) {
      const token = isLoopback(o.metrics.host) ? undefined : await metricsToken(primary, uuid);
      server = await serveMirrorMetrics(registry, follower, o.metrics, token);
    }
    await follower.prepare();
    if (o.once === true) {
      const s = await follower.once(controller.signal);
      await out(`mirror ${o.region}: replica ${maskUrl(replicaUrl)} at seq ${s.applied} (${s.entriesApplied} entries applied${s.bootstraps > 0 ? `, bootstrapped ${s.bootstraps}×` : ''})\n`);
      return;
    }
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    log().info({ region: o.region, replica: maskUrl(replicaUrl), seq: follower.stats.applied }, 'following the primary');
    await follower.run(controller.signal);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await server?.close();
    await follower?.close();
    await replica.close();
    await primary.close();
  }
}

async function serveMirrorMetrics(registry: Registry, f: MirrorFollower, at: { host: string; port: number }, token: Buffer | undefined): Promise<MetricsEndpoint> {
  const labels = { region: f.region };
  new Gauge({
    name: 'ferry_mirror_applied_seq',
    help: 'Last primary changelog sequence the replica applied',
    labelNames: ['region'],
    registers: [registry],
    collect() {
      this.set(labels, f.stats.applied);
    },
  });
  new Gauge({
    name: 'ferry_mirror_lag_entries',
    help: 'Primary changelog entries the replica has not applied (as last seen)',
    labelNames: ['region'],
    registers: [registry],
    collect() {
      this.set(labels, Math.max(0, f.stats.primaryLast - f.stats.applied));
    },
  });
  new Gauge({
    name: 'ferry_mirror_lag_seconds',
    help: 'Age of the newest entry applied when the replica is behind, else 0',
    labelNames: ['region'],
    registers: [registry],
    collect() {
      const behind = f.stats.primaryLast > f.stats.applied && f.stats.appliedTime > 0;
      this.set(labels, behind ? (Date.now() - f.stats.appliedTime) / 1000 : 0);
    },
  });
  for (const [name, help, value] of [
    ['ferry_mirror_applied_entries_total', 'Changelog entries applied to the replica', () => f.stats.entriesApplied],
    ['ferry_mirror_batches_total', 'Replica transactions (batches of entries)', () => f.stats.batches],
    ['ferry_mirror_bootstraps_total', 'Bootstraps of the replica from a snapshot', () => f.stats.bootstraps],
    ['ferry_mirror_errors_total', 'Failed follower steps (retried)', () => f.stats.errors],
  ] as const) {
    // Counters whose value lives in the follower: set to it at every scrape.
    counterOf(registry, name, help, ['region'], () => [[labels, value()]]);
  }
  try {
    return await serveMetrics(registry, { ...at, token });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

export async function runMirrorVerify(metaUrl: string, o: MirrorCliOptions): Promise<void> {
  const { primary, replica } = await openPair(metaUrl, o.region);
  try {
    const r = await verifyMirror(primary, replica);
    if (o.json === true) await printJson(r);
    else {
      for (const d of r.differences) await out(`${d}\n`);
      await out(
        r.differences.length === 0
          ? `mirror ${o.region}: the replica (at seq ${r.replicaSeq}) equals the primary: ${r.records} records compared at seq ${r.seq}\n`
          : `mirror ${o.region}: ${r.differences.length} difference(s) between the replica (at seq ${r.replicaSeq}) and the primary at seq ${r.seq}\n`,
      );
    }
    if (r.differences.length > 0) process.exitCode = 1;
  } finally {
    await replica.close();
    await primary.close();
  }
}

interface PromoteCliOptions {
  primary?: string;
  force?: boolean;
  json?: boolean;
}

export async function runMirrorPromote(replicaUrl: string, o: PromoteCliOptions): Promise<void> {
  let replica: MetaEngine;
  try {
    replica = await openMetaEngine(replicaUrl);
  } catch (err) {
    throw new UsageError(`cannot open the replica ${maskUrl(replicaUrl)}: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    const r = await promoteReplica({ replicaUrl, replica, primaryUrl: o.primary, force: o.force });
    if (o.json === true) {
      await printJson(r);
      return;
    }
    await out(`promoted region '${r.region}' to the metadata primary of epoch ${r.epoch} (previous primary: region '${r.previous}'), at seq ${r.applied} of its history\n`);
    if (r.fenced) {
      await out(`the old primary is fenced: it refuses every write from now on (readers carry on); ${r.caughtUp} entries it had committed were copied first, so nothing it acknowledged is lost\n`);
    } else {
      const seen = r.lastSeen;
      await out(
        `--force: the old primary was NOT fenced (${r.unreachable ?? 'unreachable'}). If it comes back, it accepts writes until it is demoted ` +
          `(run this command again while it is reachable, or stop it). Writes it accepted after seq ${r.applied} are lost` +
          (seen === undefined
            ? ' (how far behind the replica was is unknown: its follower never reported).\n'
            : `: the follower last saw it at seq ${seen.seq} (${Math.max(0, seen.seq - r.applied)} entries behind, ${new Date(seen.at).toISOString()}).\n`),
      );
    }
    await out(`other mirrors re-point by themselves (ferry mirror OLD-META --region NAME follows the new primary and bootstraps); clients of region '${r.previous}' must reopen with the new primary's metadata URL\n`);
  } finally {
    await replica.close();
  }
}

export function register(program: Command): void {
  const mirror = program
    .command('mirror')
    .summary("keep a mirror region's metadata replica current (or verify it)")
    .description(
      "Follow the primary's changelog into a mirror region's replica (the region's clients open the replica). Bootstraps an empty or too-far-behind replica from a snapshot, then applies the log batch by batch.",
    );
  mirror
    .command('follow', { isDefault: true })
    .description("Keep the replica of region NAME current (the default: `ferry mirror META --region NAME`). Runs until SIGINT/SIGTERM unless --once.")
    .argument('<META>', "the primary's metadata URL")
    .requiredOption('--region <NAME>', 'the mirror region')
    .option('--once', "catch up to the primary's newest sequence and exit")
    .addOption(valueOption('--metrics <HOST:PORT>', 'serve Prometheus metrics at http://HOST:PORT/metrics', parseHostPort))
    .addHelpText('after', '\nExamples:\n  $ ferry mirror sqlite:///data/vol.db --region far\n  $ ferry mirror redis://10.0.0.5/1 --region eu --once')
    .action((meta: string, opts: MirrorCliOptions) => runMirror(meta, opts));
  mirror
    .command('verify')
    .description("Compare region NAME's replica with the primary (without stopping either); exit 1 on any difference.")
    .argument('<META>', "the primary's metadata URL")
    .requiredOption('--region <NAME>', 'the mirror region')
    .option('--json', 'print JSON')
    .action((meta: string, opts: MirrorCliOptions) => runMirrorVerify(meta, opts));
  mirror
    .command('promote')
    .description(
      "Make a mirror region's replica the metadata primary of a new epoch. The old primary, when reachable, is fenced (it refuses writes) and its remaining log is copied first; without it, --force promotes anyway: the old primary is not fenced and its writes after the replica's applied seq are lost. Stop the region's follower first.",
    )
    .argument('<REPLICA-META>', "the mirror region's replica URL")
    .option('--primary <META>', "the old primary's URL (default: the one the follower recorded)")
    .option('--force', 'promote even when the old primary cannot be reached (see above)')
    .option('--json', 'print JSON')
    .action((meta: string, opts: PromoteCliOptions) => runMirrorPromote(meta, opts));
}
