/**
 * Metrics of a Ferry process, on prom-client: one Registry per process (made at the composition root: the
 * mount, replicate, mirror, ... commands) holding the default process metrics (CPU, memory, GC, event-loop lag,
 * under prom-client's standard `process_*` and `nodejs_*` names) and Ferry's own families, each named once
 * here with its unit last (`_seconds`, `_bytes_total`). Layers never create metrics: they are handed the
 * families they feed (`clientMetrics(registry)`), or report through callbacks that the composition root wires.
 *
 * Latency histograms share one bucket ladder (LATENCY_BUCKETS_SECONDS) that resolves both a loopback call
 * (~100 µs) and a WAN one (~100 ms and more).
 *
 * `serveMetrics` is the one HTTP endpoint: GET /metrics, bound to 127.0.0.1 unless asked otherwise; bound
 * anywhere else it requires `authorization: Bearer <hex token>` (the volume's metrics token, see token.ts),
 * compared in constant time, and never logs or echoes it.
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Seconds: 100 µs .. 30 s, about three steps per decade. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

/** A Registry with the default process metrics: one per process, made at the composition root. */
export function processRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 10 });
  return registry;
}

/** The families a client (SDK volume, mount) feeds: object requests, metadata transactions, block reads. */
export class ClientMetrics {
  readonly registry: Registry;
  /** One object-store request (one attempt: retries are counted apart), by region, bucket, operation. */
  readonly objectRequestSeconds: Histogram<'region' | 'bucket' | 'op'>;
  /** Failed object-store attempts, by kind: notfound (an expected miss in a read order), transient, other. */
  readonly objectErrors: Counter<'region' | 'bucket' | 'op' | 'kind'>;
  readonly objectRetries: Counter<'region' | 'bucket'>;
  readonly objectReadBytes: Counter<'region' | 'bucket'>;
  readonly objectWrittenBytes: Counter<'region' | 'bucket'>;
  /**
   * One metadata transaction or log call (all its attempts), by engine scheme, the engine's role for this
   * process (`primary`: the volume's primary; `replica`: a mirror region's replica) and read/write.
   */
  readonly metaTxnSeconds: Histogram<'engine' | 'role' | 'mode'>;
  readonly metaTxnErrors: Counter<'engine' | 'role' | 'mode'>;
  /** Blocks (or parts of blocks) served by each read tier, and their plain bytes. */
  readonly blockReadHits: Counter<'tier'>;
  readonly blockReadBytes: Counter<'tier'>;
  /** Plain block bytes read from a bucket in region `from` by a client in region `to`. */
  readonly regionReadBytes: Counter<'from' | 'to'>;

  constructor(registry: Registry) {
    this.registry = registry;
    const registers = [registry];
    const buckets = [...LATENCY_BUCKETS_SECONDS];
    this.objectRequestSeconds = new Histogram({ name: 'ferry_object_request_seconds', help: 'Object store requests (each attempt), by region, bucket and operation', labelNames: ['region', 'bucket', 'op'], buckets, registers });
    this.objectErrors = new Counter({ name: 'ferry_object_errors_total', help: 'Failed object store attempts (kind: notfound, transient, other)', labelNames: ['region', 'bucket', 'op', 'kind'], registers });
    this.objectRetries = new Counter({ name: 'ferry_object_retries_total', help: 'Object store attempts repeated after a retryable failure', labelNames: ['region', 'bucket'], registers });
    this.objectReadBytes = new Counter({ name: 'ferry_object_read_bytes_total', help: 'Bytes received from object stores', labelNames: ['region', 'bucket'], registers });
    this.objectWrittenBytes = new Counter({ name: 'ferry_object_written_bytes_total', help: 'Bytes sent to object stores', labelNames: ['region', 'bucket'], registers });
    this.metaTxnSeconds = new Histogram({ name: 'ferry_meta_txn_seconds', help: 'Metadata transactions and log calls (with their retries), by engine, role (primary, replica) and mode (read, write)', labelNames: ['engine', 'role', 'mode'], buckets, registers });
    this.metaTxnErrors = new Counter({ name: 'ferry_meta_txn_errors_total', help: 'Metadata transactions and log calls that failed', labelNames: ['engine', 'role', 'mode'], registers });
    this.blockReadHits = new Counter({ name: 'ferry_block_read_hits_total', help: 'Block reads served by each tier (memory, disk, group, bucket)', labelNames: ['tier'], registers });
    this.blockReadBytes = new Counter({ name: 'ferry_block_read_bytes_total', help: 'Plain block bytes served by each tier', labelNames: ['tier'], registers });
    this.regionReadBytes = new Counter({ name: 'ferry_region_read_bytes_total', help: 'Plain block bytes read from a bucket in region `from` by a client in region `to`', labelNames: ['from', 'to'], registers });
  }
}

const clients = new WeakMap<Registry, ClientMetrics>();

/** The client families of a registry, made on first use (a name registers once per registry). */
export function clientMetrics(registry: Registry): ClientMetrics {
  let m = clients.get(registry);
  if (m === undefined) {
    m = new ClientMetrics(registry);
    clients.set(registry, m);
  }
  return m;
}

/** The families of a FUSE mount. */
export class FuseMetrics {
  readonly ops: Counter<'op'>;
  readonly errors: Counter<'op'>;
  readonly opSeconds: Histogram<'op'>;
  /**
   * The two counters' values by op, kept here and set into the counters at each scrape: every FUSE request
   * counts, and a prom-client inc (label validation and hashing) per request was a measurable part of a small
   * request's cost. Maps keep first-seen order, the order prom-client lists series in.
   */
  private readonly opCounts = new Map<string, number>();
  private readonly errorCounts = new Map<string, number>();

  constructor(registry: Registry) {
    const registers = [registry];
    const series = (m: Map<string, number>): Array<[{ op: string }, number]> => [...m].map(([op, n]) => [{ op }, n]);
    this.ops = counterOf(registry, 'ferry_fuse_ops_total', 'FUSE operations answered', ['op'], () => series(this.opCounts));
    this.errors = counterOf(registry, 'ferry_fuse_errors_total', 'FUSE operations answered with an error', ['op'], () => series(this.errorCounts));
    this.opSeconds = new Histogram({ name: 'ferry_fuse_op_seconds', help: 'FUSE operations, from request to answer', labelNames: ['op'], buckets: [...LATENCY_BUCKETS_SECONDS], registers });
  }

  /** One answered FUSE request. */
  record(op: string, failed: boolean, seconds: number): void {
    this.opCounts.set(op, (this.opCounts.get(op) ?? 0) + 1);
    if (failed) this.errorCounts.set(op, (this.errorCounts.get(op) ?? 0) + 1);
    this.opSeconds.observe({ op }, seconds);
  }
}

/**
 * The families of the metadata service (`ferry serve`, service/server.ts): one request is one metadata
 * operation of a remote client, from its arrival to its answer. An answer with an error (ENOENT included:
 * the service does not judge which errors are expected) is counted by its code; requests refused before they
 * reach an operation (no or a wrong token, a malformed request) by reason.
 */
export class ServiceMetrics {
  readonly requests: Counter<'op'>;
  readonly errors: Counter<'op' | 'code'>;
  readonly requestSeconds: Histogram<'op'>;
  readonly inFlight: Gauge;
  readonly refused: Counter<'reason'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.requests = new Counter({ name: 'ferry_service_requests_total', help: 'Metadata service requests answered, by operation', labelNames: ['op'], registers });
    this.errors = new Counter({ name: 'ferry_service_errors_total', help: 'Metadata service requests answered with an error, by operation and error code', labelNames: ['op', 'code'], registers });
    this.requestSeconds = new Histogram({ name: 'ferry_service_request_seconds', help: 'Metadata service requests, from arrival to answer, by operation', labelNames: ['op'], buckets: [...LATENCY_BUCKETS_SECONDS], registers });
    this.inFlight = new Gauge({ name: 'ferry_service_requests_in_flight', help: 'Metadata service requests being executed', registers });
    this.refused = new Counter({ name: 'ferry_service_refused_total', help: 'Requests refused before any operation (reason: token, malformed)', labelNames: ['reason'], registers });
    // Every refusal series exists from the start (at 0), so that rates and alerts see the first one.
    for (const reason of ['token', 'malformed']) this.refused.inc({ reason }, 0);
  }
}

/** A gauge whose value is read at every scrape. */
export function gaugeOf(registry: Registry, name: string, help: string, value: () => number): Gauge {
  return new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(value());
    },
  });
}

/**
 * A counter whose value lives elsewhere (a component's own counters), set at every scrape. `values` gives one
 * value per label set.
 */
export function counterOf<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[], values: () => Array<[Partial<Record<L, string>>, number]>): Counter<L> {
  return new Counter<L>({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, v] of values()) if (v >= 0) this.inc(labels, v);
    },
  });
}

/** Whether a listen host reaches only this machine. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export interface ServeMetricsOptions {
  host: string;
  port: number;
  /** Required (Bearer, hex) when `host` is not loopback; ignored otherwise. */
  token?: Buffer | undefined;
  /** Text appended to the registry's exposition (counters kept under their older names). */
  extra?: (() => string | Promise<string>) | undefined;
  /** Error messages name the endpoint with this (default host:port). */
  what?: string;
}

export interface MetricsEndpoint {
  /** http://host:port (the port the system chose when 0 was asked). */
  readonly url: string;
  readonly server: Server;
  /** Idempotent. */
  close(): Promise<void>;
}

/** The bearer token of a request, checked in constant time. */
function authorized(req: IncomingMessage, token: Buffer): boolean {
  const m = /^Bearer\s+([0-9a-fA-F]+)\s*$/.exec(req.headers.authorization ?? '');
  if (m === null) return false;
  const got = Buffer.from(m[1]!, 'hex');
  return got.length === token.length && timingSafeEqual(got, token);
}

/** Renders a registry (and `extra`) as Prometheus text. */
export async function renderMetrics(registry: Registry, extra?: () => string | Promise<string>): Promise<string> {
  const text = await registry.metrics();
  return extra === undefined ? text : (text.endsWith('\n') ? text : text + '\n') + (await extra());
}

/**
 * Serves GET /metrics. Beyond loopback a token is required: refusing to start without one is the caller's
 * guarantee that a metrics port never opens unauthenticated to the network.
 */
export async function serveMetrics(registry: Registry, o: ServeMetricsOptions): Promise<MetricsEndpoint> {
  const what = o.what ?? `${o.host.includes(':') ? `[${o.host}]` : o.host}:${o.port}`;
  const token = isLoopback(o.host) ? undefined : o.token;
  if (!isLoopback(o.host) && (token === undefined || token.length === 0)) throw new Error(`metrics on ${what} need a token beyond loopback`);
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found (try /metrics)\n');
      return;
    }
    if (token !== undefined && !authorized(req, token)) {
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' }).end('unauthorized: send authorization: Bearer <metrics token>\n');
      return;
    }
    renderMetrics(registry, o.extra).then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err instanceof Error ? err.message : String(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new Error(`cannot serve metrics on ${what}: ${e.message}`)));
    server.listen(o.port, o.host, () => resolve());
  });
  server.on('error', () => undefined);
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${addr.port}`,
    server,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}
