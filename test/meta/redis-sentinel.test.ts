/**
 * The Redis engine through Sentinel: a real sentinel process (redis-server --sentinel, started here on a free
 * loopback port) monitors the local Redis on 127.0.0.1:6379, and the MetaEngine conformance suite runs on a
 * `redis+sentinel://` URL, so the engine finds its master by asking the sentinel.
 *
 * Needs redis-server on PATH and Redis on 127.0.0.1:6379 (database 13). Without them the tests skip, except
 * under CI=true where they fail.
 */

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { Redis } from 'ioredis';
import { openRedisEngine } from '../../src/meta/redis.js';
import { metaEngineConformance } from './engine-conformance.js';

const MASTER = 'ferrymaster';
const DB = 13;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function problem(): Promise<string | undefined> {
  if (spawnSync('redis-server', ['--version']).status !== 0) return 'redis-server is not on PATH';
  const r = new Redis({ host: '127.0.0.1', port: 6379, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  r.on('error', () => undefined);
  try {
    await r.connect();
    await r.ping();
    return undefined;
  } catch (err) {
    return `Redis is not reachable at 127.0.0.1:6379 (${String(err)})`;
  } finally {
    r.disconnect();
  }
}

const down = await problem();
if (down !== undefined) {
  const message = `${down}: install redis-server and start it on 127.0.0.1:6379`;
  if (process.env['CI'] === 'true') it('Redis Sentinel can run', () => assert.fail(message));
  else it('Redis engine through Sentinel', { skip: message }, () => undefined);
} else {
  let dir = '';
  let port = 0;
  let sentinel: ChildProcess | undefined;
  const run = randomBytes(4).toString('hex');
  let n = 0;
  const admin = new Redis({ host: '127.0.0.1', port: 6379, db: DB });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-sentinel-'));
    port = await freePort();
    const conf = join(dir, 'sentinel.conf');
    // Sentinel rewrites its config file, so it must be its own writable file.
    await writeFile(conf, `port ${port}\nbind 127.0.0.1\ndir ${dir}\nsentinel monitor ${MASTER} 127.0.0.1 6379 1\n`);
    sentinel = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
    const probe = new Redis({ host: '127.0.0.1', port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    probe.on('error', () => undefined);
    for (let i = 0; ; i++) {
      try {
        if (probe.status !== 'ready') await probe.connect();
        const addr = (await probe.call('SENTINEL', 'get-master-addr-by-name', MASTER)) as string[] | null;
        if (addr !== null && addr[1] === '6379') break;
      } catch {
        // not up yet
      }
      if (i >= 100) throw new Error('the sentinel did not come up within 10 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    probe.disconnect();
  });

  after(async () => {
    sentinel?.kill('SIGTERM');
    await admin.quit();
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  async function dropKeys(prefix: string): Promise<void> {
    let cursor = '0';
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', `{${prefix}}:*`, 'COUNT', 1000);
      if (keys.length > 0) await admin.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
  }

  metaEngineConformance('redis through sentinel', async () => {
    const prefix = `ferrytest-sentinel-${run}-${n++}`;
    const url = `redis+sentinel://127.0.0.1:${port}/${MASTER}/${DB}?prefix=${prefix}`;
    const engine = await openRedisEngine(url);
    return {
      engine,
      reopen: () => openRedisEngine(url),
      cleanup: async () => {
        await engine.close();
        await dropKeys(prefix);
      },
    };
  });
}
