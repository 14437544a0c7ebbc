/**
 * `ferry replicate META`: the bucket replicator (region/replicate.ts) as a command. Follows the changelog
 * until interrupted (SIGINT/SIGTERM end it cleanly; SIGKILL loses nothing but the blocks in flight), or with
 * --once copies everything committed so far and exits: 0 when every slice is in every region's bucket, 1 when
 * some could not be copied (they stay pending for the next run), 130 when SIGINT/SIGTERM stopped it (at once,
 * a --bwlimit wait included; the unfinished slices stay pending, the finished ones marked).
 */

import { Option, type Command } from 'commander';
import { BadUsageError, UsageError } from '../errors.js';
import { Meta } from '../meta/meta.js';
import type { ObjectStore } from '../object/store.js';
import type { RetryStore } from '../object/retry.js';
import { GC_GRACE_DEFAULT } from './gc.js';
import { openRegionStores } from './region.js';
import { PARALLEL_DEFAULT, replicationStatus, Replicator, VERIFY_DEFAULT, VERIFY_MODES, type ReplicaCounters, type ReplicateEvent } from '../region/replicate.js';
import { volumeRegions } from '../region/regions.js';
import { Gauge, type Registry } from 'prom-client';
import { ClientMetrics, counterOf, isLoopback, processRegistry, serveMetrics, type MetricsEndpoint } from '../obs/metrics.js';
import { MetricsStore } from '../object/metrics.js';
import { MetricsEngine } from '../meta/metrics.js';
import { metricsToken } from '../obs/token.js';
import { choice, humanBytes, InterruptedError, log, openEngine, out, parseCount, parseDuration, parseHostPort, parseSize } from './util.js';

export interface ReplicateCliOptions {
  once?: boolean;
  scan?: boolean;
  check?: boolean;
  from?: string;
  to?: string;
  parallel?: string;
  bwlimit?: string;
  grace?: string;
  keepReleased?: boolean;
  verify: string;
  poll?: string;
  metrics?: string;
}

function regionList(s: string | undefined): string[] | undefined {
  if (s === undefined) return undefined;
  return s.split(',').map((x) => x.trim()).filter((x) => x !== '');
}

/** One line per region pair: "a>b 12.0 MiB". */
export function copiedSummary(c: ReplicaCounters): string {
  const pairs = Object.entries(c.copiedBytes).sort(([a], [b]) => (a < b ? -1 : 1));
  return pairs.length === 0 ? 'nothing copied yet' : pairs.map(([p, n]) => `${p.replace('>', ' -> ')} ${humanBytes(n)}`).join(', ');
}

/** A replicator's metrics: counters from the process, backlog and lag measured from the metadata at each scrape. */
function replicatorMetrics(registry: Registry, meta: Meta, rep: Replicator): void {
  counterOf(registry, 'ferry_replication_copied_bytes_total', 'Block bytes copied, by region pair', ['from', 'to'], () =>
    Object.entries(rep.stats.copiedBytes).map(([pair, n]) => {
      const [from, to] = pair.split('>');
      return [{ from: from ?? '', to: to ?? '' }, n];
    }),
  );
  counterOf(registry, 'ferry_replication_copied_blocks_total', 'Blocks copied', [], () => [[{}, rep.stats.copiedBlocks]]);
  counterOf(registry, 'ferry_replication_errors_total', 'Failed block copies (retried on the next pass)', [], () => [[{}, rep.stats.errors]]);
  counterOf(registry, 'ferry_replication_retries_total', 'Object store attempts repeated', [], () => [[{}, rep.stats.retries]]);
  counterOf(registry, 'ferry_replication_verify_failures_total', 'Copies that failed verification', [], () => [[{}, rep.stats.verifyFailures]]);
  // One status query per scrape, shared by the four gauges below.
  let status: Promise<Awaited<ReturnType<typeof replicationStatus>>[number] | undefined> | undefined;
  const current = (): Promise<Awaited<ReturnType<typeof replicationStatus>>[number] | undefined> =>
    (status ??= replicationStatus(meta)
      .then((all) => all.find((x) => x.name === rep.name))
      .finally(() => setImmediate(() => (status = undefined))));
  for (const [name, help, value] of [
    ['ferry_replication_backlog_blocks', 'Blocks committed but not yet copied', (st: { backlog: { blocks: number } }) => st.backlog.blocks],
    ['ferry_replication_backlog_bytes', 'Bytes committed but not yet copied', (st: { backlog: { bytes: number } }) => st.backlog.bytes],
    ['ferry_replication_lag_seconds', 'Age of the oldest committed slice not yet copied', (st: { lagSeconds: number }) => st.lagSeconds],
    ['ferry_replication_pending_slices', 'Slices waiting to be copied', (st: { pending: number }) => st.pending],
  ] as const) {
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        const st = await current();
        if (st !== undefined) this.set(value(st as never));
      },
    });
  }
}

export async function runReplicate(metaUrl: string, o: ReplicateCliOptions): Promise<void> {
  const parallel = o.parallel === undefined ? PARALLEL_DEFAULT : parseCount(o.parallel, '--parallel', 1, 1024);
  const bytesPerSecond = o.bwlimit === undefined ? 0 : parseSize(o.bwlimit.replace(/\/s$/i, ''), '--bwlimit');
  const graceMs = o.keepReleased === true ? undefined : parseDuration(o.grace ?? GC_GRACE_DEFAULT, '--grace');
  const pollMs = parseDuration(o.poll ?? '500ms', '--poll');
  const verify = choice(VERIFY_MODES, "put (the server's digest of the copy, else read it back), full (read every copy back) or size (compare its size)")(o.verify, '--verify');
  const metrics = o.metrics === undefined ? undefined : parseHostPort(o.metrics, '--metrics');
  if (o.check === true && o.scan !== true) throw new BadUsageError('--check needs --scan: it reads every copy the bucket listings show');
  const { engine, format } = await openEngine(metaUrl);
  let stores: Map<string, ObjectStore> | undefined;
  let meta: Meta | undefined;
  let server: MetricsEndpoint | undefined;
  const controller = new AbortController();
  const stop = (sig: NodeJS.Signals): void => controller.abort(new InterruptedError(sig));
  try {
    const regions = volumeRegions(format);
    if (regions.regions.size < 2) {
      throw new UsageError(`volume '${format.name}' has one region: nothing to replicate (add one with "ferry region add")`);
    }
    for (const [what, list] of [['--from', o.from], ['--to', o.to]] as const) {
      for (const r of regionList(list) ?? []) {
        if (!regions.regions.has(r)) throw new BadUsageError(`invalid ${what} '${list!}': volume '${format.name}' has no region '${r}' (its regions: ${[...regions.regions.keys()].join(', ')})`);
      }
    }
    // With --metrics, object requests and metadata transactions are measured as a mount's are.
    const registry = metrics === undefined ? undefined : processRegistry();
    const cm = registry === undefined ? undefined : new ClientMetrics(registry);
    const wrap = (region: string, store: ObjectStore): ObjectStore => (cm === undefined ? store : new MetricsStore(store, cm, region));
    stores = await openRegionStores(format, wrap);
    meta = await Meta.open(cm === undefined ? engine : new MetricsEngine(engine, cm), { session: false, heartbeatMs: 0 });
    const retryStores = [...stores.values()] as RetryStore[];
    const onEvent = (e: ReplicateEvent): void => {
      if (e.type === 'error') log().warn({ err: e.error, key: e.key }, 'replication error');
      else log().info(e, e.type);
    };
    const { openObjectStore } = await import('../object/registry.js');
    const { RetryStore: Retry } = await import('../object/retry.js');
    const rep = new Replicator({
      meta,
      stores,
      openStore: async (name, rec) => new Retry(wrap(name, await openObjectStore(rec.storage))),
      from: regionList(o.from),
      to: regionList(o.to),
      parallel,
      bytesPerSecond,
      verify,
      graceMs,
      retries: () => retryStores.reduce((n, s) => n + s.stats().retries, 0),
      onEvent,
      signal: controller.signal,
    });
    if (metrics !== undefined && registry !== undefined) {
      replicatorMetrics(registry, meta, rep);
      const token = isLoopback(metrics.host) ? undefined : await metricsToken(engine, format.uuid);
      server = await serveMetrics(registry, { ...metrics, token, what: o.metrics! }).catch((err: unknown) => {
        throw new UsageError(err instanceof Error ? err.message : String(err));
      });
    }
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      if (o.scan === true) {
        // --verify full reads every copy back: a scan under it reads the copies already in place too.
        const r = await rep.scanBuckets({ check: o.check === true || verify === 'full' });
        const checked = r.checked === 0 ? '' : `${r.checked} copies read and verified (${r.bad} bad), `;
        await out(`scan: ${r.listed} objects listed, ${checked}${r.copied} blocks copied, ${r.failed.length} slice(s) failed\n`);
        if (r.failed.length > 0) process.exitCode = 1;
        if (o.once === true) return;
      }
      if (o.once === true) {
        const started = Date.now();
        const r = await rep.runOnce({ signal: controller.signal });
        const s = rep.stats;
        await out(
          `replicated ${r.slicesCopied} slice(s), ${r.blocksCopied} block(s) in ${((Date.now() - started) / 1000).toFixed(1)} s; ` +
            `position seq ${r.seq}; ${r.pending} pending; copied so far: ${copiedSummary(s)}; errors ${s.errors}, retries ${s.retries}\n`,
        );
        if (r.pending > 0) throw new UsageError(`${r.pending} slice(s) could not be copied (they are retried by the next run); see FERRY_LOG_LEVEL=warn for why`);
        return;
      }
      process.stderr.write(`ferry: replicating volume '${format.name}' (${[...regions.regions.keys()].join(', ')}); Ctrl-C stops\n`);
      // Following is stopped by a signal as its normal end (exit 0).
      await rep.run({ signal: controller.signal, pollMs });
    } catch (err) {
      // --once or --scan stopped by SIGINT/SIGTERM: whatever the work failed with, the cause is the signal
      // (exit 130). What was complete is marked; the rest is pending in the checkpoint for the next run.
      if (controller.signal.aborted) throw controller.signal.reason;
      throw err;
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      await rep.close();
    }
  } finally {
    await server?.close();
    for (const s of stores?.values() ?? []) await s.close().catch(() => undefined);
    await meta?.close().catch(() => undefined);
    await engine.close();
  }
}

export function register(program: Command): void {
  program
    .command('replicate')
    .summary("copy blocks to every region's bucket")
    .description(
      "Copy every slice's blocks from its home bucket to every other region's bucket, verified, following the changelog from a " +
        'durable checkpoint. Runs until interrupted, or with --once until everything committed so far is copied. ' +
        'Also deletes released slices in every bucket after --grace.',
    )
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .option('--once', 'copy everything pending and exit (0 when all is copied)')
    .option('--scan', 'first list and diff the buckets (bootstrap or repair), then replicate')
    .option('--check', 'with --scan: also read every copy in place and verify it (checksums, length, identity); copy bad ones again')
    .option('--from <REGIONS>', 'only slices whose home is one of these regions (comma-separated)')
    .option('--to <REGIONS>', 'only copy to these regions (comma-separated)')
    .option('--parallel <N>', `block copies in flight (default ${PARALLEL_DEFAULT})`)
    .option('--bwlimit <RATE>', 'cap on bytes copied per second, like 10M (MiB/s)')
    .addOption(new Option('--grace <DURATION>', 'delete released slices in every bucket after this long (not with --from/--to)').conflicts(['from', 'to', 'keepReleased']))
    .addOption(new Option('--keep-released', 'do not delete released slices (leave it to "ferry gc")'))
    .option(
      '--verify <MODE>',
      "put: the server's digest of the stored copy (S3: the ETag answered equals the Content-MD5 sent), else read it back; " +
        'full: read every copy back and compare; size: compare its size',
      VERIFY_DEFAULT,
    )
    .addOption(new Option('--poll <DURATION>', 'pause between changelog polls when idle (not with --once)').conflicts('once'))
    .option('--metrics <HOST:PORT>', 'serve Prometheus metrics at http://HOST:PORT/metrics')
    .addHelpText(
      'after',
      '\nExamples:\n  $ ferry replicate sqlite:///data/vol.db --once\n  $ ferry replicate sqlite:///data/vol.db --to b --parallel 32 --bwlimit 50M --metrics :9568\n' +
        '  $ ferry replicate sqlite:///data/vol.db --scan --check --once',
    )
    .action((meta: string, opts: ReplicateCliOptions) => runReplicate(meta, opts));
}
