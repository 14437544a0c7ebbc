/**
 * `ferry metrics-token META --out FILE`: writes the volume's metrics token (obs/token.ts) to FILE (created
 * with mode 0600, replaced atomically), for Prometheus' `credentials_file` when a daemon serves metrics beyond
 * loopback. The token is never printed.
 */

import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { metricsToken } from '../obs/token.js';
import { openEngine } from './util.js';

export async function runMetricsToken(metaUrl: string, o: { out: string }): Promise<void> {
  const file = path.resolve(o.out);
  const { engine, format } = await openEngine(metaUrl);
  try {
    const token = await metricsToken(engine, format.uuid);
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      const fh = await open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(token.toString('hex') + '\n');
      } finally {
        await fh.close();
      }
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true });
      throw new UsageError(`cannot write ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    process.stderr.write(`ferry: wrote the metrics token of volume '${format.name}' to ${file} (mode 0600)\n`);
  } finally {
    await engine.close();
  }
}

export function register(program: Command): void {
  program
    .command('metrics-token')
    .summary('write the bearer token of metrics endpoints to a file')
    .description(
      'Write the token that metrics endpoints (mount, replicate, mirror, serve, cache-node --metrics) require when they listen beyond loopback to FILE ' +
        '(mode 0600), for Prometheus: authorization: { credentials_file: FILE }. The token is derived from the volume secret; it is never printed.',
    )
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .requiredOption('--out <FILE>', 'where to write it')
    .action((meta: string, opts: { out: string }) => runMetricsToken(meta, opts));
}
