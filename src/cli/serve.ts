/**
 * `ferry serve META --listen HOST:PORT`: the metadata service (service/server.ts) next to the primary's
 * engine, registered in the volume under its advertised address so mirror clients find it through their
 * replica. With `--metrics HOST:PORT` it serves Prometheus metrics (obs/metrics.ts: requests by operation,
 * their latency, errors and refusals, the engine's transactions, the process) under the same rules as every
 * other endpoint: the volume's metrics token beyond loopback. `ferry token META --out FILE`: the volume token for clients given only a `ferry://` URL, written to
 * a 0600 file (never to the terminal).
 */

import { readFile, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { BadUsageError, UsageError } from '../errors.js';
import type { MetaEngine } from '../meta/engine.js';
import { MetricsEngine } from '../meta/metrics.js';
import { formatServiceAddress, registerServiceAddress } from '../meta/service.js';
import { clientMetrics, counterOf, gaugeOf, isLoopback, processRegistry, serveMetrics, ServiceMetrics, type MetricsEndpoint } from '../obs/metrics.js';
import { metricsToken } from '../obs/token.js';
import { MetaService } from '../service/server.js';
import { serviceToken } from '../service/token.js';
import { log, openEngine, out, parseHostPort, valueOption } from './util.js';

interface ServeOptions {
  listen: { host: string; port: number };
  advertise?: { host: string; port: number };
  tlsCert?: string;
  tlsKey?: string;
  printTokenTo?: string;
  metrics?: { host: string; port: number };
}

/** Writes the token to a new file readable by its owner only; refuses to overwrite unless `force`. */
async function writeTokenFile(file: string, token: string, force: boolean): Promise<void> {
  try {
    await writeFile(file, `${token}\n`, { mode: 0o600, flag: force ? 'w' : 'wx' });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new UsageError(`${file} exists (use --force to replace it)`);
    throw new UsageError(`cannot write the token file ${file}: ${code ?? String(err)}`);
  }
}

function hostForUrl(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

export async function runServe(metaUrl: string, o: ServeOptions): Promise<void> {
  if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) throw new BadUsageError('--tls-cert and --tls-key go together');
  const tls = o.tlsCert === undefined ? undefined : { cert: await readFile(o.tlsCert), key: await readFile(o.tlsKey!) };
  const { engine, format } = await openEngine(metaUrl);
  let service: MetaService | undefined;
  let endpoint: MetricsEndpoint | undefined;
  const registry = o.metrics === undefined ? undefined : processRegistry();
  // With --metrics the service's transactions are measured above the retries, as a client's are.
  const measured: MetaEngine = registry === undefined ? engine : new MetricsEngine(engine, clientMetrics(registry), { role: 'primary' });
  const stop = new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  try {
    const token = await serviceToken(engine, format.uuid);
    if (o.printTokenTo !== undefined) await writeTokenFile(o.printTokenTo, token, true);
    service = await MetaService.start({
      engine: measured,
      metrics: registry === undefined ? undefined : new ServiceMetrics(registry),
      token: Buffer.from(token, 'hex'),
      host: o.listen.host,
      port: o.listen.port,
      tls,
      onError: (what, err) => log().warn({ err }, `${what} failed`),
    }).catch((err: unknown) => {
      throw new UsageError(`cannot listen on ${o.listen.host}:${o.listen.port}: ${err instanceof Error ? err.message : String(err)}`);
    });
    const adv = o.advertise ?? { host: o.listen.host, port: service.port };
    if (o.advertise === undefined && (adv.host === '0.0.0.0' || adv.host === '::')) {
      throw new BadUsageError(`--listen ${adv.host} is no address clients can reach: give --advertise HOST:PORT`);
    }
    const address = formatServiceAddress({ tls: tls !== undefined, host: hostForUrl(adv.host), port: adv.port });
    await registerServiceAddress(engine, address);
    if (registry !== undefined && o.metrics !== undefined) {
      const svc = service;
      gaugeOf(registry, 'ferry_service_clients', 'Remote clients with a session on the service', () => svc.stats.clients);
      counterOf(registry, 'ferry_service_deduplicated_total', 'Retried requests answered without running them again', [], () => [[{}, svc.stats.deduplicated]]);
      // Beyond loopback the endpoint wants the volume's metrics token (ferry metrics-token), as every other one.
      const mtoken = isLoopback(o.metrics.host) ? undefined : await metricsToken(engine, format.uuid);
      endpoint = await serveMetrics(registry, { ...o.metrics, token: mtoken }).catch((err: unknown) => {
        throw new UsageError(err instanceof Error ? err.message : String(err));
      });
    }
    await out(
      `metadata service of volume "${format.name}" listening on ${o.listen.host}:${service.port}${tls === undefined ? '' : ' (TLS)'}; registered as ${address}` +
        `${endpoint === undefined ? '' : `; metrics on ${endpoint.url}/metrics`}\n`,
    );
    log().info({ volume: format.name, address }, 'metadata service started');
    const signal = await stop;
    log().info({ signal, stats: service.stats }, 'metadata service stopping');
  } finally {
    await endpoint?.close();
    await service?.close();
    await engine.close();
  }
}

export async function runToken(metaUrl: string, o: { out: string; force?: boolean }): Promise<void> {
  const { engine, format } = await openEngine(metaUrl);
  try {
    await writeTokenFile(o.out, await serviceToken(engine, format.uuid), o.force === true);
    await out(`wrote the metadata service token of volume "${format.name}" to ${o.out} (mode 0600); clients read it with FERRY_TOKEN_FILE=${o.out}\n`);
  } finally {
    await engine.close();
  }
}

export function register(program: Command): void {
  program
    .command('serve')
    .summary('run the metadata service for remote clients (ferry://)')
    .description(
      "Serve the volume's metadata operations to remote clients, one HTTP request per operation, next to the primary engine. Clients address it as ferry://HOST:PORT and need the volume token (ferry token), not engine credentials; mirror clients find it through their replica and send their writes to it.",
    )
    .argument('<META>', "the primary's metadata URL")
    .addOption(valueOption('--listen <HOST:PORT>', 'address to listen on', parseHostPort).makeOptionMandatory())
    .addOption(valueOption('--advertise <HOST:PORT>', 'address clients use, registered in the volume (default: the listen address)', parseHostPort))
    .option('--tls-cert <FILE>', 'serve TLS with this certificate (PEM); clients use ferrys://')
    .option('--tls-key <FILE>', 'the private key of --tls-cert (PEM)')
    .option('--print-token-to <FILE>', 'also write the volume token to FILE (mode 0600) for ferry:// clients')
    .addOption(valueOption('--metrics <HOST:PORT>', 'serve Prometheus metrics at http://HOST:PORT/metrics (beyond loopback: the metrics token is required)', parseHostPort))
    .addHelpText('after', '\nExamples:\n  $ ferry serve postgres://db/vol --listen 0.0.0.0:9570 --advertise meta.example:9570\n  $ ferry token postgres://db/vol --out token && FERRY_TOKEN_FILE=token ferry ls ferry://meta.example:9570 /')
    .action((meta: string, opts: ServeOptions) => runServe(meta, opts));
  program
    .command('token')
    .summary('write the metadata service token to a file')
    .description('Write the volume token that ferry:// clients present to the metadata service to FILE, readable by its owner only. It is never printed.')
    .argument('<META>', 'the metadata URL (the primary or a replica)')
    .requiredOption('--out <FILE>', 'where to write it (mode 0600)')
    .option('--force', 'replace FILE if it exists')
    .action((meta: string, opts: { out: string; force?: boolean }) => runToken(meta, opts));
}
