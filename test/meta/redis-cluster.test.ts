/**
 * The Redis engine on a real Redis Cluster: three cluster-enabled redis-server processes on free loopback
 * ports, joined with `redis-cli --cluster create`, and the MetaEngine conformance suite on a
 * `redis+cluster://` URL. A volume's keys share one hash tag, so its transactions stay on one slot.
 *
 * Needs redis-server and redis-cli on PATH. Without them the tests skip, except under CI=true where they fail.
 */

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { openRedisEngine } from '../../src/meta/redis.js';
import { metaEngineConformance } from './engine-conformance.js';

const NODES = 3;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const missing = ['redis-server', 'redis-cli'].filter((c) => spawnSync(c, ['--version']).status !== 0);
if (missing.length > 0) {
  const message = `${missing.join(' and ')} not on PATH: install Redis (Debian: redis-server, redis-tools)`;
  if (process.env['CI'] === 'true') it('Redis Cluster can run', () => assert.fail(message));
  else it('Redis engine on a cluster', { skip: message }, () => undefined);
} else {
  let dir = '';
  const ports: number[] = [];
  const nodes: ChildProcess[] = [];
  const run = randomBytes(4).toString('hex');
  let n = 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-cluster-'));
    // Cluster nodes also listen on port + 10000 (the bus): pick ports whose bus port is free too.
    while (ports.length < NODES) {
      const p = await freePort();
      if (p + 10000 < 65536 && !ports.includes(p)) ports.push(p);
    }
    for (const p of ports) {
      const d = join(dir, String(p));
      await mkdir(d);
      const args = ['--port', String(p), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--save', '', '--appendonly', 'no', '--dir', d];
      nodes.push(spawn('redis-server', args, { stdio: 'ignore' }));
    }
    for (const p of ports) {
      for (let i = 0; spawnSync('redis-cli', ['-p', String(p), 'ping']).stdout?.toString().trim() !== 'PONG'; i++) {
        if (i >= 100) throw new Error(`cluster node ${p} did not start within 10 s`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const create = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8' });
    assert.equal(create.status, 0, `redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
    for (let i = 0; !/cluster_state:ok/.test(spawnSync('redis-cli', ['-p', String(ports[0]), 'cluster', 'info']).stdout?.toString() ?? ''); i++) {
      if (i >= 100) throw new Error('the cluster did not reach state ok within 10 s');
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  after(async () => {
    for (const node of nodes) node.kill('SIGTERM');
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  metaEngineConformance('redis cluster', async () => {
    const prefix = `ferrytest-cluster-${run}-${n++}`;
    const url = `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}?prefix=${prefix}`;
    const engine = await openRedisEngine(url);
    return {
      engine,
      reopen: () => openRedisEngine(url),
      // reset deletes only this volume's keys (the cluster itself is dropped after the file); the case may
      // have closed its engine already, so a fresh one does it.
      cleanup: async () => {
        await engine.close();
        const e = await openRedisEngine(url);
        await e.reset();
        await e.close();
      },
    };
  });
}
