/**
 * `ferry dashboard META [--listen HOST:PORT]`: one web page of the volume (obs/dashboard.ts serves it). It
 * shows what `ferry status --json` shows (gatherStatus: the same function, so the same masking), the rates
 * between two readings, the last hour of lag and throughput, and, with `--scrape`, the rates of the named
 * processes' /metrics (the figures of `ferry stats`, by diffStats).
 *
 * One reading every `--interval` (default 5 s), whoever is watching: a reading runs only after the previous
 * one ended (a slow engine slows the readings, never stacks them), and a request answers the last reading.
 * So the page costs the metadata engine the same with one viewer or fifty.
 *
 *   reading n-1 ──► reading n ──► rates (n - n-1) ──► history (last hour) ──► /api/status
 *
 * Read-only: it opens no client session and writes nothing to the engine, except that beyond loopback or
 * with --scrape it needs the volume's metrics token, which makes the volume secret on a volume that has none
 * (as `ferry metrics-token` does). Beyond loopback every request needs that token (obs/dashboard.ts).
 */

import type { Command } from 'commander';
import { Option } from 'commander';
import { BadUsageError, UsageError } from '../errors.js';
import { serveDashboard } from '../obs/dashboard.js';
import { isLoopback } from '../obs/metrics.js';
import { parsePromText } from '../obs/promtext.js';
import { metricsToken } from '../obs/token.js';
import { reloadFormat } from '../region/regions.js';
import { maskUrl } from '../util/url.js';
import { diffStats, type StatsLine } from './stats.js';
import { gatherStatus, type VolumeStatus } from './status.js';
import { count, log, openMetaTools, out, parseHostPort, valueOption, type MetaTools } from './util.js';

/** What the charts keep. */
export const HISTORY_MS = 3_600_000;
/** A bound on the points per chart whatever the interval. */
const HISTORY_POINTS_MAX = 3600;
/** Recent errors kept for the page. */
const ERRORS_MAX = 50;
const SCRAPE_TARGETS_MAX = 64;
const SCRAPE_TIMEOUT_MS = 3000;
/** The largest /metrics answer read (a mount's is tens of KiB). */
const SCRAPE_BYTES_MAX = 8 << 20;
export const DEFAULT_LISTEN = '127.0.0.1:9575';

/** Per second between two readings of the volume's status (null before the second reading). */
export interface VolumeRates {
  seconds: number;
  /** Changelog entries committed: the metadata write rate. */
  commitsPerSec: number;
  /** Change of the data bytes used (negative when more was deleted than written). */
  usageBytesPerSec: number;
  inodesPerSec: number;
  /** Bytes the replicators copied, by "from>to". */
  copiedBytesPerSec: Record<string, number>;
  /** Bytes clients read from a bucket of another region, by "from>to" (as their egress records report). */
  egressBytesPerSec: Record<string, number>;
}

export interface DashboardHistory {
  /** Reading times, ms; each series has one value per time (null: nothing to show then). */
  t: number[];
  replicationLagSeconds: Array<number | null>;
  mirrorLagSeconds: Array<number | null>;
  commitsPerSec: Array<number | null>;
  copiedBytesPerSec: Array<number | null>;
  egressBytesPerSec: Array<number | null>;
}

export interface ProcessView {
  /** The scraped URL, masked. */
  target: string;
  /** Rates between its last two scrapes (absent before the second). */
  line?: StatsLine;
  /** Why the last scrape failed. */
  error?: string;
}

/** What /api/status answers. */
export interface DashboardData {
  version: 1;
  /** When the last reading ended, ms (null: none yet). */
  generatedAt: number | null;
  intervalMs: number;
  /** The metadata engine, as its description names it (secrets masked). */
  engine: string;
  status: VolumeStatus | null;
  rates: VolumeRates | null;
  history: DashboardHistory;
  processes: ProcessView[];
  errors: Array<{ at: number; what: string }>;
}

function copiedByPair(s: VolumeStatus): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of s.replication ?? []) for (const [pair, n] of Object.entries(r.stats.copiedBytes)) m.set(pair, (m.get(pair) ?? 0) + n);
  return m;
}

function egressByPair(s: VolumeStatus): Map<string, number> {
  return new Map(s.egress.map((e) => [`${e.from}>${e.to}`, e.total]));
}

/** Counter deltas per second; a counter that went down (a restarted replicator's) counts from 0. */
function perSecond(a: Map<string, number>, b: Map<string, number>, seconds: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of b) {
    const before = a.get(k) ?? 0;
    out[k] = (v >= before ? v - before : v) / seconds;
  }
  return out;
}

/** The rates between two readings taken `seconds` apart. */
export function volumeRates(a: VolumeStatus, b: VolumeStatus, seconds: number): VolumeRates {
  const dt = Math.max(1e-3, seconds);
  return {
    seconds: dt,
    commitsPerSec: Math.max(0, b.changelog.lastSeq - a.changelog.lastSeq) / dt,
    usageBytesPerSec: (b.usage.usedBytes - a.usage.usedBytes) / dt,
    inodesPerSec: (b.usage.inodes - a.usage.inodes) / dt,
    copiedBytesPerSec: perSecond(copiedByPair(a), copiedByPair(b), dt),
    egressBytesPerSec: perSecond(egressByPair(a), egressByPair(b), dt),
  };
}

function maxOf(values: Array<number | undefined>): number | null {
  const known = values.filter((v): v is number => v !== undefined && Number.isFinite(v));
  return known.length === 0 ? null : Math.max(...known);
}

const sum = (r: Record<string, number>): number => Object.values(r).reduce((n, v) => n + v, 0);

/** `HOST:PORT` (http://HOST:PORT/metrics) or an http(s) URL; bad usage otherwise. */
export function parseScrapeTarget(s: string, what = '--scrape'): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) {
    let url: URL;
    try {
      url = new URL(s);
    } catch {
      throw new BadUsageError(`invalid ${what} '${maskUrl(s)}': not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new BadUsageError(`invalid ${what} '${maskUrl(s)}': use HOST:PORT or an http:// URL`);
    return url.pathname === '/' && !s.endsWith('/') ? `${url.origin}/metrics` : url.href;
  }
  const { host, port } = parseHostPort(s, what);
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}/metrics`;
}

function collectScrape(arg: string, previous: string[] | undefined): string[] {
  const all = [...(previous ?? []), parseScrapeTarget(arg)];
  if (all.length > SCRAPE_TARGETS_MAX) throw new BadUsageError(`too many --scrape targets: at most ${SCRAPE_TARGETS_MAX}`);
  return all;
}

/** A /metrics answer as text, bounded in size and time; errors say what failed in a few words. */
async function fetchMetrics(url: string, token: Buffer | undefined): Promise<string> {
  let res: Response;
  try {
    res = await fetch(url, {
      headers: token === undefined ? {} : { authorization: `Bearer ${token.toString('hex')}` },
      signal: AbortSignal.timeout(SCRAPE_TIMEOUT_MS),
      redirect: 'error',
    });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    if (e.name === 'TimeoutError') throw new Error(`no answer in ${SCRAPE_TIMEOUT_MS / 1000}s`);
    throw new Error(`unreachable (${e.cause?.code ?? e.name})`);
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new Error(`HTTP ${res.status}${res.status === 401 ? ' (a token of another volume?)' : ''}`);
  }
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  for await (const chunk of res.body ?? []) {
    const c = chunk as Uint8Array;
    bytes += c.length;
    if (bytes > SCRAPE_BYTES_MAX) throw new Error(`answer larger than ${SCRAPE_BYTES_MAX >> 20} MiB`);
    chunks.push(c);
  }
  return Buffer.concat(chunks, bytes).toString('utf8');
}

interface Target {
  url: string;
  view: ProcessView;
  prev?: { at: number; samples: ReturnType<typeof parsePromText> };
}

export interface SamplerOptions {
  intervalMs: number;
  /** /metrics URLs to scrape at each reading. */
  scrape?: string[];
  /** Sent as a bearer token to the scraped endpoints. */
  token?: Buffer | undefined;
  onError?: (what: string) => void;
}

/** Reads the volume every interval and keeps what the page shows. */
export class DashboardSampler {
  private readonly tools: MetaTools;
  private readonly o: SamplerOptions;
  private readonly targets: Target[];
  private prev: { at: number; status: VolumeStatus } | undefined;
  private data: DashboardData;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private closed = false;
  private readonly mirrorErrors = new Map<string, string>();
  private readonly replicatorErrors = new Map<string, number>();

  constructor(tools: MetaTools, o: SamplerOptions) {
    this.tools = tools;
    this.o = o;
    this.targets = (o.scrape ?? []).map((url) => ({ url, view: { target: maskUrl(url) } }));
    this.data = {
      version: 1,
      generatedAt: null,
      intervalMs: o.intervalMs,
      engine: tools.engine.description,
      status: null,
      rates: null,
      history: { t: [], replicationLagSeconds: [], mirrorLagSeconds: [], commitsPerSec: [], copiedBytesPerSec: [], egressBytesPerSec: [] },
      processes: this.targets.map((t) => t.view),
      errors: [],
    };
  }

  /** The last reading (the same object until the next one ends). */
  snapshot(): DashboardData {
    return this.data;
  }

  /** Takes the first reading and schedules the next ones. */
  async start(): Promise<void> {
    await this.readOnce();
    this.schedule();
  }

  private schedule(): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.running = this.readOnce().finally(() => {
        this.running = undefined;
        this.schedule();
      });
    }, this.o.intervalMs);
  }

  private error(what: string, at = Date.now()): void {
    this.data.errors.push({ at, what });
    if (this.data.errors.length > ERRORS_MAX) this.data.errors.splice(0, this.data.errors.length - ERRORS_MAX);
    this.o.onError?.(what);
  }

  /** One reading; never throws (a failure is shown on the page and logged). */
  async readOnce(): Promise<void> {
    const started = Date.now();
    await Promise.all([this.readVolume(started), ...this.targets.map((t) => this.scrape(t))]);
    this.data = { ...this.data, generatedAt: Date.now(), processes: this.targets.map((t) => t.view) };
  }

  private async readVolume(now: number): Promise<void> {
    let status: VolumeStatus;
    try {
      // The format is read each time: a region added while the dashboard runs shows up.
      const format = await reloadFormat(this.tools.engine);
      status = await gatherStatus({ engine: this.tools.engine, meta: this.tools.meta, format }, now, { prune: false });
    } catch (err) {
      this.error(`cannot read the volume: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    this.noteErrors(status, now);
    const rates = this.prev === undefined ? null : volumeRates(this.prev.status, status, (now - this.prev.at) / 1000);
    this.prev = { at: now, status };
    const h = this.data.history;
    h.t.push(now);
    h.replicationLagSeconds.push(maxOf((status.replication ?? []).map((r) => r.lagSeconds)));
    h.mirrorLagSeconds.push(maxOf((status.mirrors ?? []).map((m) => m.lagSeconds)));
    h.commitsPerSec.push(rates?.commitsPerSec ?? null);
    h.copiedBytesPerSec.push(rates === null ? null : sum(rates.copiedBytesPerSec));
    h.egressBytesPerSec.push(rates === null ? null : sum(rates.egressBytesPerSec));
    let drop = 0;
    while (drop < h.t.length && (h.t[drop]! < now - HISTORY_MS || h.t.length - drop > HISTORY_POINTS_MAX)) drop++;
    if (drop > 0) for (const series of Object.values(h)) series.splice(0, drop);
    this.data = { ...this.data, status, rates };
  }

  /** New mirror errors and replicator copy failures since the last reading go to the recent errors. */
  private noteErrors(status: VolumeStatus, now: number): void {
    for (const m of status.mirrors ?? []) {
      if (m.error !== undefined && m.error !== this.mirrorErrors.get(m.region)) this.error(`mirror ${m.region}: ${m.error}`, m.updated ?? now);
      if (m.error === undefined) this.mirrorErrors.delete(m.region);
      else this.mirrorErrors.set(m.region, m.error);
    }
    for (const r of status.replication ?? []) {
      const before = this.replicatorErrors.get(r.name);
      if (before !== undefined && r.stats.errors > before) this.error(`replicator ${r.name}: ${r.stats.errors - before} block copies failed`, r.updated);
      this.replicatorErrors.set(r.name, r.stats.errors);
    }
  }

  private async scrape(t: Target): Promise<void> {
    const at = Date.now();
    try {
      const samples = parsePromText(await fetchMetrics(t.url, this.o.token));
      const cur = { at, samples };
      t.view = { target: t.view.target, ...(t.prev === undefined ? {} : { line: diffStats(t.prev, cur) }) };
      t.prev = cur;
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      if (t.view.error !== why) this.error(`${t.view.target}: ${why}`, at);
      t.view = { target: t.view.target, error: why, ...(t.view.line === undefined ? {} : { line: t.view.line }) };
    }
  }

  /** Stops the readings (waits for one under way). Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.running;
  }
}

interface DashboardCliOptions {
  listen: { host: string; port: number };
  interval: number;
  scrape?: string[];
}

export async function runDashboard(metaUrl: string, o: DashboardCliOptions): Promise<void> {
  const tools = await openMetaTools(metaUrl);
  let sampler: DashboardSampler | undefined;
  let endpoint: Awaited<ReturnType<typeof serveDashboard>> | undefined;
  const stop = new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  try {
    const beyond = !isLoopback(o.listen.host);
    let token: Buffer | undefined;
    if (beyond || (o.scrape ?? []).length > 0) {
      try {
        token = await metricsToken(tools.engine, tools.format.uuid);
      } catch (err) {
        if (beyond) throw new UsageError(`the dashboard beyond loopback needs the volume's metrics token: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    sampler = new DashboardSampler(tools, {
      intervalMs: o.interval * 1000,
      ...(o.scrape === undefined ? {} : { scrape: o.scrape }),
      token,
      onError: (what) => log().warn(what),
    });
    await sampler.start();
    endpoint = await serveDashboard({
      host: o.listen.host,
      port: o.listen.port,
      token,
      refreshMs: Math.min(o.interval * 1000, 10_000),
      snapshot: () => sampler!.snapshot(),
      onRequest: (method, path, status) => log().debug({ method, path, status }, 'dashboard request'),
    }).catch((err: unknown) => {
      throw new UsageError(err instanceof Error ? err.message : String(err));
    });
    await out(
      `dashboard of volume '${tools.format.name}' on ${endpoint.url}/` +
        (beyond ? ' (every request needs the metrics token: open /?token=<token> once in a browser; "ferry metrics-token" writes it)' : '') +
        '\n',
    );
    const signal = await stop;
    log().info({ signal }, 'dashboard stopping');
  } finally {
    await endpoint?.close();
    await sampler?.close();
    await tools.close();
  }
}

export function register(program: Command): void {
  program
    .command('dashboard')
    .summary('serve a web page of the volume')
    .description(
      'Serve one web page of the volume: what "ferry status" shows (regions, replication backlog and lag, mirror lag, metadata epoch, ' +
        'cache groups, bytes across regions, sessions, usage), rates and the last hour of lag and throughput, refreshed every few seconds. ' +
        'Read-only. On loopback it is open to this machine; beyond it every request needs the volume\'s metrics token ' +
        '(authorization: Bearer, or open /?token=TOKEN once in a browser). Runs until SIGINT/SIGTERM.',
    )
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .addOption(valueOption('--listen <HOST:PORT>', 'where to serve the page (:PORT means 127.0.0.1)', parseHostPort, DEFAULT_LISTEN))
    .addOption(valueOption('--interval <SECONDS>', 'how often to read the volume', count(1, 3600), '5'))
    .addOption(
      new Option('--scrape <HOST:PORT|URL>', "also show the rates of a process's Prometheus /metrics (mount, replicate, mirror --metrics); repeatable").argParser(collectScrape),
    )
    .addHelpText(
      'after',
      '\nExamples:\n  $ ferry dashboard sqlite:///data/vol.db\n  $ ferry dashboard sqlite:///data/vol.db --listen 127.0.0.1:9575 --scrape 127.0.0.1:9567\n' +
        '  $ ferry dashboard postgres://ferry@db/vol --listen 0.0.0.0:9575   # then open http://HOST:9575/?token=$(cat FILE) once',
    )
    .action((meta: string, opts: DashboardCliOptions) => runDashboard(meta, opts));
}
