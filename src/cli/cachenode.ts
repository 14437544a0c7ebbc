/**
 * `ferry cache-node META --group G --listen HOST:PORT --cache-dir DIR --cache-size SIZE [--weight W]`: a daemon
 * that serves blocks to its cache group (DESIGN §8). It is a client of the volume (region: --region, or the
 * replica's when META is a mirror replica) that keeps a disk cache, registers in the group with a heartbeat,
 * and answers signed requests for the blocks it owns: from its disk cache, else fetched along its read order
 * (the region's bucket, the home bucket, ...), verified and kept. SIGINT/SIGTERM leave the group and exit.
 * The cache directory survives a restart: a node restarted on the same address owns the same blocks and
 * serves what it kept.
 */

import type { Command } from 'commander';
import { Counter, Gauge, type Registry } from 'prom-client';
import path from 'node:path';
import { BadUsageError, UsageError } from '../errors.js';
import type { CacheGroupMember } from '../cache/group/member.js';
import type { MetaEngine } from '../meta/engine.js';
import { isLoopback, processRegistry, serveMetrics, type MetricsEndpoint } from '../obs/metrics.js';
import { metricsToken } from '../obs/token.js';
import type { Volume } from '../sdk/volume.js';
import { humanBytes, log, openCliVolume, parseHostPort, parseSize, valueOption } from './util.js';

interface CacheNodeCliOptions {
  group: string;
  listen: { host: string; port: number };
  cacheDir: string;
  cacheSize: number;
  weight?: string;
  region?: string;
  advertise?: string;
  metrics?: { host: string; port: number };
}

function parseWeight(s: string): number {
  const w = Number(s);
  if (s.trim() === '' || !Number.isFinite(w) || w < 0 || w > 1_000_000) throw new BadUsageError(`invalid --weight '${s}': a number from 0 (drain) to 1000000`);
  return w;
}

/**
 * The node's own counters, added to the process registry (which the volume also feeds with its object
 * requests, metadata transactions and block reads, as a mount's does).
 */
function nodeMetrics(registry: Registry, vol: Volume, member: CacheGroupMember): void {
  const gauge = (name: string, help: string, get: () => number): void => {
    new Gauge({ name: `ferry_cache_node_${name}`, help, registers: [registry], collect() { this.set(get()); } });
  };
  const counter = (name: string, help: string, get: () => number): void => {
    new Counter({
      name: `ferry_cache_node_${name}`,
      help,
      registers: [registry],
      // The count lives in the node's own stats; the metric shows it as it is at each scrape.
      collect() {
        this.reset();
        this.inc(get());
      },
    });
  };
  counter('requests_total', 'peer requests received', () => member.server?.stats.requests ?? 0);
  counter('refused_total', 'peer requests refused (unsigned, bad signature, out of window, other volume, bad key)', () => member.server?.stats.refused ?? 0);
  counter('served_bytes_total', 'block bytes served to peers', () => member.server?.stats.bytesServed ?? 0);
  counter('memory_hits_total', 'blocks served from recent objects in memory', () => member.owner?.stats.memoryHits ?? 0);
  counter('disk_hits_total', 'blocks served from the disk cache', () => member.owner?.stats.diskHits ?? 0);
  counter('fetched_bytes_total', 'block bytes fetched from buckets on a miss', () => member.owner?.stats.fetchedBytes ?? 0);
  new Counter({
    name: 'ferry_cache_node_egress_bytes_total',
    help: 'bytes read from buckets, by bucket region (from) and this node\'s region (to)',
    labelNames: ['from', 'to'],
    registers: [registry],
    collect() {
      this.reset();
      const meter = vol.egress;
      if (meter !== undefined) for (const [from, n] of meter.totals()) this.inc({ from, to: meter.region }, n);
    },
  });
  gauge('members', 'live members of the group seen by this node', () => member.view.members().length);
  gauge('disk_cache_bytes', 'bytes held by the disk cache', () => vol.stats().diskCache?.bytes ?? 0);
}

export async function runCacheNode(metaUrl: string, o: CacheNodeCliOptions): Promise<void> {
  const weight = o.weight === undefined ? 1 : parseWeight(o.weight);
  const registry = processRegistry();
  const vol = await openCliVolume(metaUrl, {
    metrics: registry,
    ...(o.region === undefined ? {} : { region: o.region }),
    cacheDir: path.resolve(o.cacheDir),
    cacheBytes: o.cacheSize,
    // The node keeps recently served objects itself (group/owner.ts); plain blocks in memory would be a copy.
    memCacheBytes: 0,
    cacheGroup: { group: o.group, listen: o.listen, weight, role: 'node', ...(o.advertise === undefined ? {} : { advertise: o.advertise }) },
  });
  let server: MetricsEndpoint | undefined;
  const stopped = new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  try {
    const member = vol.cacheGroup!;
    if (o.metrics !== undefined) {
      nodeMetrics(registry, vol, member);
      // Beyond loopback the endpoint wants the volume's metrics token (ferry metrics-token), as every other one.
      const engine = (vol.vfs.meta as { engine?: MetaEngine }).engine;
      if (!isLoopback(o.metrics.host) && engine === undefined) throw new UsageError('--metrics beyond loopback needs the volume token, which a ferry:// client does not hold: serve on 127.0.0.1');
      const token = isLoopback(o.metrics.host) ? undefined : await metricsToken(engine!, vol.info.uuid);
      server = await serveMetrics(registry, { ...o.metrics, token }).catch((err: unknown) => {
        throw new UsageError(err instanceof Error ? err.message : String(err));
      });
    }
    process.stderr.write(
      `ferry: cache node of group '${o.group}' for volume '${vol.info.name}' serving at ${member.address ?? '?'} ` +
        `(cache ${path.resolve(o.cacheDir)}, ${humanBytes(o.cacheSize)}, weight ${weight}); Ctrl-C stops\n`,
    );
    const sig = await stopped;
    log().info({ signal: sig }, 'leaving the cache group');
  } finally {
    await server?.close();
    await vol.close();
  }
}

export function register(program: Command): void {
  program
    .command('cache-node')
    .summary("serve blocks to a region's cache group")
    .description(
      'Run a cache node: it registers in the cache group G of its region (heartbeat), and serves the blocks it owns to the ' +
        "group's clients (mount/SDK with --cache-group G) over signed HTTP, fetching each from storage once and keeping it in " +
        'its disk cache (which survives a restart). Runs until SIGINT/SIGTERM.',
    )
    .argument('<META>', "metadata URL, e.g. sqlite:///data/vol.db (a mirror region's replica for a node in that region)")
    .requiredOption('--group <G>', 'the cache group to serve')
    .addOption(valueOption('--listen <HOST:PORT>', 'where to serve the group (other members and clients must reach it)', parseHostPort).makeOptionMandatory())
    .requiredOption('--cache-dir <DIR>', 'disk cache directory')
    .addOption(valueOption('--cache-size <SIZE>', 'disk cache capacity, e.g. 100G', parseSize).makeOptionMandatory())
    .option('--weight <W>', 'share of the group\'s blocks relative to other members (default 1; 0 drains)')
    .option('--region <NAME>', 'the region this node runs in (default: the primary, or the replica\'s region)')
    .option('--advertise <HOST:PORT>', 'the address clients reach this node at, when not the listen address')
    .addOption(valueOption('--metrics <HOST:PORT>', 'serve Prometheus metrics at http://HOST:PORT/metrics', parseHostPort))
    .addHelpText('after', '\nExamples:\n  $ ferry cache-node sqlite:///data/vol.db --group gpu --listen 10.0.0.5:9555 --cache-dir /nvme/ferry --cache-size 500G')
    .action((meta: string, o: CacheNodeCliOptions) => runCacheNode(meta, o));
}
