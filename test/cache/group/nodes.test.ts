/**
 * Cache nodes as real processes (`ferry cache-node`, built CLI): clients read the right bytes through them; a
 * node killed with SIGKILL in the middle of a read costs only speed (the reader goes to the bucket and skips
 * the node); a node stopped and restarted on the same address with the same cache directory serves what it
 * kept without fetching it again.
 */

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { CLI, ensureBuilt } from '../../cli/helpers.js';
import { digestOf, makeGroupVolume, MiB, type GroupVolume } from './helpers.js';

interface Node {
  child: ChildProcess;
  address: string;
  metrics: string;
  stderr: () => string;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function startNode(metaUrl: string, cacheDir: string, port: number, metricsPort: number): Promise<Node> {
  const child = spawn(process.execPath, [CLI, 'cache-node', metaUrl, '--group', 'g', '--listen', `127.0.0.1:${port}`, '--cache-dir', cacheDir, '--cache-size', '1G', '--metrics', `127.0.0.1:${metricsPort}`], {
    env: { ...process.env, FERRY_NO_PROGRESS: '1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cache node did not start:\n${err}`)), 20_000);
    const check = (): void => {
      if (/serving at/.test(err)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stderr!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`cache node exited (${code}):\n${err}`));
    });
  });
  child.removeAllListeners('exit');
  return { child, address: `127.0.0.1:${port}`, metrics: `http://127.0.0.1:${metricsPort}/metrics`, stderr: () => err };
}

async function stop(node: Node, signal: NodeJS.Signals): Promise<void> {
  if (node.child.exitCode !== null || node.child.signalCode !== null) return;
  const exited = new Promise<void>((r) => node.child.once('exit', () => r()));
  node.child.kill(signal);
  await exited;
}

async function metric(node: Node, name: string): Promise<number> {
  const r = await request(node.metrics);
  const text = await r.body.text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  assert.ok(m !== null, `${name} in the metrics`);
  return Number(m[1]);
}

const SIZE = 48 * MiB;

void describe('cache nodes as processes', () => {
  let gv: GroupVolume;
  const nodes: Node[] = [];
  before(async () => {
    ensureBuilt();
    gv = await makeGroupVolume({ size: SIZE, seed: 7, blockBytes: MiB });
  });
  after(async () => {
    for (const n of nodes) await stop(n, 'SIGKILL');
    await gv.cleanup();
  });

  const client = () => gv.open({ memCacheBytes: 4 * MiB, cacheGroup: { group: 'g', sharing: false, timeoutMs: 2000, unhealthyMs: 60_000, refreshMs: 300 } });

  void it('a node killed mid-read costs only speed; a node restarted on its address serves what it kept', async () => {
    const ports = [await freePort(), await freePort(), await freePort(), await freePort()];
    const dirs = [join(gv.dir, 'c1'), join(gv.dir, 'c2')];
    nodes.push(await startNode(gv.metaUrl, dirs[0]!, ports[0]!, ports[2]!));
    nodes.push(await startNode(gv.metaUrl, dirs[1]!, ports[1]!, ports[3]!));

    // First pass: both nodes fetch and keep their share.
    const c1 = await client();
    assert.equal(c1.cacheGroup!.view.members().length, 2);
    assert.equal(await digestOf(c1, '/data'), gv.digest);
    assert.equal(c1.stats().chunks.blocksRead, 0, 'all through the group');
    const kept = await metric(nodes[0]!, 'ferry_cache_node_fetched_bytes_total');
    assert.ok(kept > 0, 'node 1 fetched its share');
    // The process's own metrics and the volume's object requests are served beside the node's.
    const text = await (await request(nodes[0]!.metrics)).body.text();
    assert.match(text, /^process_cpu_seconds_total /m);
    assert.match(text, /^ferry_object_request_seconds_count\{[^}]*op="get"[^}]*\} [1-9]/m, 'the node\'s bucket GETs');

    // Restart node 1 cleanly (its queued cache writes finish), on the same address and directory.
    await stop(nodes[0]!, 'SIGTERM');
    nodes[0] = await startNode(gv.metaUrl, dirs[0]!, ports[0]!, ports[2]!);
    const c2 = await client();
    assert.equal(await digestOf(c2, '/data'), gv.digest);
    assert.equal(c2.stats().chunks.blocksRead, 0, 'all through the group after the restart');
    assert.equal(await metric(nodes[0]!, 'ferry_cache_node_fetched_bytes_total'), 0, 'the restarted node fetched nothing again');
    assert.ok((await metric(nodes[0]!, 'ferry_cache_node_disk_hits_total')) > 0, 'it served from the cache it kept');

    // Kill node 2 with SIGKILL while a fresh client reads: the read completes with the right bytes.
    const c3 = await client();
    const reading = digestOf(c3, '/data');
    const tier = c3.cacheGroup!.tier;
    for (let i = 0; i < 500 && tier.peerStats.answers < 6; i++) await new Promise((r) => setTimeout(r, 5));
    await stop(nodes[1]!, 'SIGKILL');
    const t0 = Date.now();
    assert.equal(await reading, gv.digest, 'right bytes after the kill');
    assert.ok(Date.now() - t0 < 20_000, 'bounded');
    assert.equal(tier.isHealthy(nodes[1]!.address), false, 'the killed node is skipped');
    assert.ok(c3.stats().chunks.blocksRead > 0, "the killed node's blocks came from the bucket");
  });
});
