/**
 * The metrics module: the endpoint (loopback by default, a bearer token beyond it), the default process
 * metrics, and the client families fed by a real volume (SQLite engine, file:// bucket) under a workload:
 * each named metric moves the way it should. A 60 ms latency injected in the engine (FaultEngine) lands in
 * the histogram bucket (0.05, 0.1] (60 ms injected: a timer may fire a little early, so not exactly 50).
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { FaultEngine } from '../../src/meta/faults.js';
import { MetricsEngine } from '../../src/meta/metrics.js';
import { openMetaEngine } from '../../src/meta/registry.js';
import { clientMetrics, isLoopback, LATENCY_BUCKETS_SECONDS, processRegistry, serveMetrics } from '../../src/obs/metrics.js';
import { parsePromText, sumOf, valueOf, type Sample } from '../../src/obs/promtext.js';
import { makeVolume } from '../helpers/volume.js';

async function scrape(registry: Registry): Promise<Sample[]> {
  return parsePromText(await registry.metrics());
}

describe('metrics endpoint', () => {
  it('serves the default process metrics on loopback, and 404 elsewhere', async () => {
    const registry = processRegistry();
    const ep = await serveMetrics(registry, { host: '127.0.0.1', port: 0 });
    try {
      assert.match(ep.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      const res = await fetch(`${ep.url}/metrics`);
      assert.equal(res.status, 200);
      const s = parsePromText(await res.text());
      for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
        assert.ok(valueOf(s, name) !== undefined, `${name} served`);
      }
      assert.equal((await fetch(`${ep.url}/other`)).status, 404);
    } finally {
      await ep.close();
      await ep.close();
    }
  });

  it('refuses to listen beyond loopback without a token', async () => {
    await assert.rejects(serveMetrics(new Registry(), { host: '0.0.0.0', port: 0 }), /need a token beyond loopback/);
    assert.equal(isLoopback('127.0.0.1'), true);
    assert.equal(isLoopback('::1'), true);
    assert.equal(isLoopback('0.0.0.0'), false);
    assert.equal(isLoopback('10.1.2.3'), false);
  });

  it('beyond loopback answers only a request with the bearer token, and never echoes it', async () => {
    const token = randomBytes(32);
    const ep = await serveMetrics(processRegistry(), { host: '0.0.0.0', port: 0, token });
    const port = new URL(ep.url).port;
    const url = `http://127.0.0.1:${port}/metrics`;
    try {
      const none = await fetch(url);
      assert.equal(none.status, 401);
      const wrong = await fetch(url, { headers: { authorization: `Bearer ${randomBytes(32).toString('hex')}` } });
      assert.equal(wrong.status, 401);
      const short = await fetch(url, { headers: { authorization: 'Bearer 00' } });
      assert.equal(short.status, 401);
      const ok = await fetch(url, { headers: { authorization: `Bearer ${token.toString('hex')}` } });
      assert.equal(ok.status, 200);
      const body = await ok.text();
      assert.ok(!body.includes(token.toString('hex')));
      assert.ok(!(await wrong.text()).includes(token.toString('hex')));
    } finally {
      await ep.close();
    }
  });
});

describe('client metrics under a workload', () => {
  it('a 60 ms engine latency lands in the (0.05, 0.1] bucket of ferry_meta_txn_seconds', async (t) => {
    const d = await mkdtemp(join(tmpdir(), 'ferry-obs-'));
    t.after(() => rm(d, { recursive: true, force: true }));
    const registry = new Registry();
    const inner = await openMetaEngine(`sqlite://${d}/meta.db`, { create: true });
    const faults = new FaultEngine(inner, { seed: 7, latencyMs: [60, 60] });
    const engine = new MetricsEngine(faults, clientMetrics(registry));
    try {
      // Each call's wall time bounds what the histogram saw: on a loaded machine a call may take longer than
      // 100 ms, so the bucket expected is the first one at or above the slowest call (0.1 when the machine is idle).
      let slowest = 0;
      let wall = 0;
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        await engine.txn((tx) => tx.get('setting', '', 'nothing'), { readonly: true });
        const took = (performance.now() - t0) / 1000;
        slowest = Math.max(slowest, took);
        wall += took;
      }
      const bound = LATENCY_BUCKETS_SECONDS.find((b) => b >= slowest && b >= 0.1);
      const s = await scrape(registry);
      const le = (b: string): number => sumOf(s, 'ferry_meta_txn_seconds_bucket', { engine: 'sqlite', mode: 'read', le: b });
      assert.ok(LATENCY_BUCKETS_SECONDS.includes(0.05) && LATENCY_BUCKETS_SECONDS.includes(0.1));
      assert.equal(le('0.025'), 0, 'nothing faster than 25 ms');
      assert.equal(le('0.05'), 0, 'nothing at or below 50 ms');
      assert.equal(le(String(bound)), 3, `all three in (0.05, ${bound}] (slowest call ${(slowest * 1000).toFixed(1)} ms)`);
      assert.equal(sumOf(s, 'ferry_meta_txn_seconds_count', { engine: 'sqlite', mode: 'read' }), 3);
      const sum = sumOf(s, 'ferry_meta_txn_seconds_sum', { engine: 'sqlite', mode: 'read' });
      assert.ok(sum >= 0.17 && sum <= wall, `sum ${sum} (three calls took ${wall.toFixed(3)} s)`);
    } finally {
      await engine.close();
    }
  });

  it('object requests, metadata transactions, block tiers and region bytes move with reads and writes', async (t) => {
    const registry = new Registry();
    const tv = await makeVolume({ metrics: registry, memCacheBytes: 8 << 20 });
    t.after(() => tv.cleanup());
    const { vol } = tv;
    let s = await scrape(registry);
    const before = {
      put: sumOf(s, 'ferry_object_request_seconds_count', { op: 'put' }),
      written: sumOf(s, 'ferry_object_written_bytes_total'),
      writes: sumOf(s, 'ferry_meta_txn_seconds_count', { mode: 'write' }),
    };
    const data = randomBytes(200_000); // 4 blocks of 64 KiB
    await vol.writeFile('/f', data);
    s = await scrape(registry);
    assert.ok(sumOf(s, 'ferry_object_request_seconds_count', { op: 'put' }) >= before.put + 4, 'puts counted');
    assert.ok(sumOf(s, 'ferry_object_written_bytes_total') >= before.written + data.length, 'written bytes counted');
    assert.ok(sumOf(s, 'ferry_meta_txn_seconds_count', { engine: 'sqlite', mode: 'write' }) > before.writes, 'write transactions counted');
    const put = s.find((x) => x.name === 'ferry_object_request_seconds_count' && x.labels['op'] === 'put');
    assert.ok(put !== undefined && put.labels['region'] !== undefined && put.labels['bucket']!.startsWith('file://'), 'labelled by region and bucket');

    // First read: from the bucket (the writer does not fill the memory cache); second: from memory.
    const bucketHits = sumOf(s, 'ferry_block_read_hits_total', { tier: 'bucket' });
    assert.deepEqual(await vol.readFile('/f'), data);
    s = await scrape(registry);
    assert.ok(sumOf(s, 'ferry_block_read_hits_total', { tier: 'bucket' }) >= bucketHits + 4, 'bucket hits');
    assert.ok(sumOf(s, 'ferry_block_read_bytes_total', { tier: 'bucket' }) >= data.length, 'bucket bytes');
    assert.ok(sumOf(s, 'ferry_object_read_bytes_total') >= data.length, 'object bytes read');
    const pair = s.filter((x) => x.name === 'ferry_region_read_bytes_total');
    assert.equal(pair.length, 1);
    assert.equal(pair[0]!.labels['from'], pair[0]!.labels['to'], 'one region: from itself');
    assert.ok(pair[0]!.value >= data.length);
    const memBytes = sumOf(s, 'ferry_block_read_bytes_total', { tier: 'memory' });
    assert.deepEqual(await vol.readFile('/f'), data);
    s = await scrape(registry);
    assert.ok(sumOf(s, 'ferry_block_read_bytes_total', { tier: 'memory' }) >= memBytes + data.length, 'memory tier serves the second read');
    assert.ok(sumOf(s, 'ferry_meta_txn_seconds_count', { mode: 'read' }) > 0, 'read transactions counted');

    // A missing object is a 'notfound' error of the bucket, not a transient one.
    const store = (vol.vfs.chunks as unknown as { store: { get(k: string): Promise<Buffer> } }).store;
    await assert.rejects(store.get('chunks/0/0/999999_0_10'));
    s = await scrape(registry);
    assert.ok(sumOf(s, 'ferry_object_errors_total', { op: 'get', kind: 'notfound' }) >= 1, 'not found counted');
    assert.equal(sumOf(s, 'ferry_object_errors_total', { kind: 'transient' }), 0);
  });

  it('without a registry, a volume registers nothing', async (t) => {
    const tv = await makeVolume();
    t.after(() => tv.cleanup());
    await tv.vol.writeFile('/x', 'y');
    // The SDK's default: no metrics objects anywhere (nothing to assert on but that it works unmeasured).
    assert.equal(await tv.vol.readFile('/x', 'utf8'), 'y');
  });
});
