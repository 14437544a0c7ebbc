/**
 * The metrics of two daemons, run as the built CLI: `ferry serve --metrics` (each operation of a ferry://
 * client counted and timed, its errors by code, refusals by reason, the engine's transactions, the process;
 * beyond loopback only with the volume's metrics token) and `ferry mirror --metrics` (its calls to the primary
 * and to the replica in ferry_meta_txn_seconds, told apart by role). In process: a 60 ms engine latency puts
 * every mkdir answered by the service above the 50 ms bucket of ferry_service_request_seconds. Volumes are
 * SQLite files with a file:// bucket in a temporary directory.
 */

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { openMetaEngine, openVolume, type Volume } from '../../src/index.js';
import { FaultEngine } from '../../src/meta/faults.js';
import { loadFormat } from '../../src/meta/format.js';
import { MetricsEngine } from '../../src/meta/metrics.js';
import { clientMetrics, LATENCY_BUCKETS_SECONDS, processRegistry, ServiceMetrics } from '../../src/obs/metrics.js';
import { parsePromText, sumOf, valueOf, type Sample } from '../../src/obs/promtext.js';
import { metricsToken } from '../../src/obs/token.js';
import { MetaService } from '../../src/service/server.js';
import { CLI, ensureBuilt } from '../cli/helpers.js';
import { makeServiceLab } from '../service/helpers.js';

/** A CLI daemon; resolves once its stdout matched `ready` (or fails with its output if it exits first). */
function startDaemon(args: string[], ready: RegExp): Promise<{ child: ChildProcess; match: RegExpExecArray; output: () => string; stop: () => Promise<number | null> }> {
  ensureBuilt();
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, FERRY_DEBUG: '', FERRY_NO_PROGRESS: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stop = async (): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    return exited;
  };
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      const match = ready.exec(stdout);
      if (match !== null) resolve({ child, match, output: () => stdout + stderr, stop });
    });
    void exited.then((code) => reject(new Error(`ferry ${args[0]} exited ${code}: ${stdout}${stderr}`)));
  });
}

/** Cleanups that run after the test, the last registered first, each even when one before it failed. */
function cleanups(t: TestContext): (fn: () => unknown) => void {
  const fns: Array<() => unknown> = [];
  t.after(async () => {
    let failure: { err: unknown } | undefined;
    for (const fn of fns.reverse()) {
      try {
        await fn();
      } catch (err) {
        failure ??= { err };
      }
    }
    if (failure !== undefined) throw failure.err;
  });
  return (fn) => void fns.push(fn);
}

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((r) => probe.close(() => r()));
  return port;
}

async function scrape(url: string, token?: Buffer): Promise<Sample[]> {
  const res = await fetch(url, { headers: token === undefined ? {} : { authorization: `Bearer ${token.toString('hex')}` } });
  assert.equal(res.status, 200, `GET ${url}`);
  return parsePromText(await res.text());
}

/** A histogram's buckets for one label set, in `le` order: cumulative, ending at its count. */
function checkHistogram(s: Sample[], name: string, match: Record<string, string>): void {
  const buckets = s.filter((x) => x.name === `${name}_bucket` && Object.entries(match).every(([k, v]) => x.labels[k] === v));
  assert.equal(buckets.length, LATENCY_BUCKETS_SECONDS.length + 1, `${name} ${JSON.stringify(match)}: one series per bucket and +Inf`);
  const les = buckets.map((b) => (b.labels['le'] === '+Inf' ? Infinity : Number(b.labels['le'])));
  assert.deepEqual(les, [...LATENCY_BUCKETS_SECONDS, Infinity]);
  for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]!.value >= buckets[i - 1]!.value, `${name} ${JSON.stringify(match)}: cumulative`);
  assert.equal(buckets.at(-1)!.value, sumOf(s, `${name}_count`, match), `${name} ${JSON.stringify(match)}: +Inf = count`);
}

/** The ops seen in a scrape of the service's request counter. */
function opsOf(s: Sample[]): string[] {
  return [...new Set(s.filter((x) => x.name === 'ferry_service_requests_total').map((x) => x.labels['op']!))];
}

describe('ferry serve --metrics', () => {
  it("counts and times a ferry:// client's operations, errors and refusals, and the engine's transactions; beyond loopback only with the metrics token", async (t) => {
    const defer = cleanups(t);
    const lab = await makeServiceLab([], { service: false });
    defer(() => lab.cleanup());
    const uuid = (await loadFormat(lab.primary))!.uuid;
    const token = await metricsToken(lab.primary, uuid);
    // Beyond loopback: the endpoint exists only with a token, which the service derives from the volume.
    const d = await startDaemon(['serve', lab.primaryUrl, '--listen', '127.0.0.1:0', '--metrics', '0.0.0.0:0'], /listening on 127\.0\.0\.1:(\d+);.*; metrics on http:\/\/0\.0\.0\.0:(\d+)\/metrics\n/);
    defer(() => d.stop());
    const servicePort = Number(d.match[1]);
    const url = `http://127.0.0.1:${d.match[2]}/metrics`;
    assert.equal((await fetch(url)).status, 401, 'no token: refused');
    assert.equal((await fetch(url, { headers: { authorization: `Bearer ${lab.token}` } })).status, 401, 'the volume token of clients is not the metrics token');
    assert.equal((await fetch(url, { headers: { authorization: `Bearer ${randomBytes(32).toString('hex')}` } })).status, 401);

    const s0 = await scrape(url, token);
    assert.equal(valueOf(s0, 'ferry_service_requests_in_flight'), 0);
    assert.equal(sumOf(s0, 'ferry_service_requests_total'), 0);
    assert.equal(valueOf(s0, 'ferry_service_refused_total', { reason: 'token' }), 0);
    assert.ok(valueOf(s0, 'process_cpu_seconds_total') !== undefined, 'the default process metrics');

    const t0 = performance.now();
    let vol: Volume | undefined = await openVolume(`ferry://127.0.0.1:${servicePort}`, { token: lab.token, uid: 0, gid: 0, gids: [], heartbeatMs: 0, memCacheBytes: 0, lookupCacheMs: 0, serviceClient: { pingMs: 0 } });
    defer(() => vol?.close());
    await vol.mkdir('/d');
    await vol.writeFile('/d/f', randomBytes(100_000));
    assert.equal((await vol.readFile('/d/f')).length, 100_000);
    await assert.rejects(vol.stat('/d/missing'), /ENOENT/);
    await assert.rejects(vol.mkdir('/d'), /EEXIST/);
    const wall = (performance.now() - t0) / 1000;
    const s1 = await scrape(url, token);

    const delta = (name: string, match: Record<string, string> = {}): number => sumOf(s1, name, match) - sumOf(s0, name, match);
    assert.equal(delta('ferry_service_requests_total', { op: 'mkdir' }), 2, 'two mkdir requests');
    assert.ok(delta('ferry_service_requests_total', { op: 'write' }) >= 1, 'the write committed through the service');
    assert.ok(delta('ferry_service_requests_total', { op: 'lookup' }) >= 2, 'lookups');
    for (const op of opsOf(s1)) {
      // Each request is counted once and timed once.
      assert.equal(sumOf(s1, 'ferry_service_request_seconds_count', { op }), sumOf(s1, 'ferry_service_requests_total', { op }), `op ${op}: timed as often as counted`);
      checkHistogram(s1, 'ferry_service_request_seconds', { op });
    }
    const total = delta('ferry_service_requests_total');
    const seconds = delta('ferry_service_request_seconds_sum');
    assert.ok(seconds > 0 && seconds / total <= wall, `mean ${((seconds / total) * 1000).toFixed(2)} ms of ${total} requests within the workload's ${(wall * 1000).toFixed(0)} ms`);
    assert.ok(delta('ferry_service_errors_total', { op: 'lookup', code: 'ENOENT' }) >= 1, 'the missing name: ENOENT of lookup');
    assert.equal(delta('ferry_service_errors_total', { op: 'mkdir', code: 'EEXIST' }), 1, 'the second mkdir: EEXIST');
    const others = s1.filter((x) => x.name === 'ferry_service_errors_total' && x.value > 0 && !['ENOENT', 'EEXIST'].includes(x.labels['code']!));
    assert.deepEqual(others, [], 'no other error');
    assert.equal(valueOf(s1, 'ferry_service_requests_in_flight'), 0);
    assert.ok((valueOf(s1, 'ferry_service_clients') ?? 0) >= 1, 'the client holds a session');
    // The engine's transactions under the service, as the primary's.
    assert.ok(delta('ferry_meta_txn_seconds_count', { engine: 'sqlite', role: 'primary', mode: 'write' }) >= 3, 'write transactions measured');
    assert.ok(delta('ferry_meta_txn_seconds_count', { engine: 'sqlite', role: 'primary', mode: 'read' }) >= 1, 'read transactions measured');
    assert.equal(sumOf(s1, 'ferry_meta_txn_errors_total'), 0, JSON.stringify(s1.filter((x) => x.name === 'ferry_meta_txn_errors_total')));

    // Refusals: a wrong token, a malformed request.
    const post = (auth: string, body: string): Promise<Response> =>
      fetch(`http://127.0.0.1:${servicePort}/v1/op`, { method: 'POST', headers: { authorization: `Bearer ${auth}`, 'content-type': 'application/json' }, body });
    assert.equal((await post(randomBytes(32).toString('hex'), '{}')).status, 401);
    assert.equal((await post(lab.token, 'not json')).status, 400);
    const s2 = await scrape(url, token);
    assert.equal(valueOf(s2, 'ferry_service_refused_total', { reason: 'token' }), 1);
    assert.equal(valueOf(s2, 'ferry_service_refused_total', { reason: 'malformed' }), 1);
    assert.equal(sumOf(s2, 'ferry_service_requests_total'), sumOf(s1, 'ferry_service_requests_total'), 'refused requests are no operations');

    await vol.close();
    vol = undefined;
    assert.equal(await d.stop(), 0, d.output());
    assert.ok(!d.output().includes(token.toString('hex')) && !d.output().includes(lab.token), 'no token in the output');
  });

  it('a 60 ms engine latency puts every mkdir above the 50 ms bucket of ferry_service_request_seconds', async (t) => {
    const defer = cleanups(t);
    const lab = await makeServiceLab([], { service: false });
    defer(() => lab.cleanup());
    const registry = processRegistry();
    // A constant latency: the seed draws nothing that matters.
    const engine = new MetricsEngine(new FaultEngine(await openMetaEngine(lab.primaryUrl), { seed: 1, latencyMs: [60, 60] }), clientMetrics(registry));
    const service = await MetaService.start({ engine, token: Buffer.from(lab.token, 'hex'), host: '127.0.0.1', port: 0, heartbeatMs: 0, metrics: new ServiceMetrics(registry) });
    defer(() => engine.close());
    defer(() => service.close());
    const vol = await openVolume(`ferry://127.0.0.1:${service.port}`, { token: lab.token, uid: 0, gid: 0, gids: [], heartbeatMs: 0, memCacheBytes: 0, lookupCacheMs: 0, serviceClient: { pingMs: 0 } });
    defer(() => vol.close());
    let slowest = 0;
    for (let i = 0; i < 4; i++) {
      const t0 = performance.now();
      await vol.mkdir(`/m${i}`);
      slowest = Math.max(slowest, (performance.now() - t0) / 1000);
    }
    const s = parsePromText(await registry.metrics());
    const le = (b: string): number => sumOf(s, 'ferry_service_request_seconds_bucket', { op: 'mkdir', le: b });
    assert.equal(sumOf(s, 'ferry_service_request_seconds_count', { op: 'mkdir' }), 4);
    assert.equal(le('0.05'), 0, 'no mkdir at or below 50 ms: each waited for at least one 60 ms engine call');
    // The client's wall time bounds what the service measured.
    const bound = LATENCY_BUCKETS_SECONDS.find((b) => b >= slowest)!;
    assert.equal(le(String(bound)), 4, `every mkdir at or below ${bound} s (the slowest took ${(slowest * 1000).toFixed(1)} ms at the client)`);
    assert.ok(sumOf(s, 'ferry_service_request_seconds_sum', { op: 'mkdir' }) >= 4 * 0.06);
    assert.ok(sumOf(s, 'ferry_meta_txn_seconds_bucket', { mode: 'write', le: '0.05' }) === 0, 'the engine histogram saw the latency too');
  });
});

describe('ferry mirror --metrics', () => {
  it('times its calls to the primary (reading the log) and to the replica (applying it), told apart by role', async (t) => {
    const defer = cleanups(t);
    const lab = await makeServiceLab([{ name: 'm', bucket: false }], { service: false, follow: false });
    defer(() => lab.cleanup());
    const port = await freePort();
    ensureBuilt();
    const child = spawn(process.execPath, [CLI, 'mirror', lab.primaryUrl, '--region', 'm', '--metrics', `127.0.0.1:${port}`], {
      env: { ...process.env, FERRY_DEBUG: '' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (x: string) => (stderr += x));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    defer(async () => {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    });
    const url = `http://127.0.0.1:${port}/metrics`;
    const vol = await lab.open('primary');
    for (let i = 0; i < 20; i++) await vol.writeFile(`/f${i}`, randomBytes(1000));
    const last = await lab.primary.lastSeq();
    let s: Sample[] = [];
    for (let i = 0; i < 300; i++) {
      s = await fetch(url).then(
        async (r) => parsePromText(await r.text()),
        () => [],
      );
      if ((valueOf(s, 'ferry_mirror_applied_seq', { region: 'm' }) ?? 0) >= last) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok((valueOf(s, 'ferry_mirror_applied_seq', { region: 'm' }) ?? 0) >= last, `the follower caught up to seq ${last}\n${stderr}`);
    const count = (role: string, mode: string): number => sumOf(s, 'ferry_meta_txn_seconds_count', { engine: 'sqlite', role, mode });
    const batches = valueOf(s, 'ferry_mirror_batches_total', { region: 'm' }) ?? 0;
    assert.ok(batches >= 1, 'batches applied');
    assert.ok(count('primary', 'read') >= batches, `each batch was read from the primary (${count('primary', 'read')} reads, ${batches} batches)`);
    assert.ok(count('replica', 'write') >= batches, `each batch was one replica transaction (${count('replica', 'write')} writes, ${batches} batches)`);
    assert.ok(count('replica', 'read') >= 1, "the replica's position was read");
    for (const role of ['primary', 'replica']) for (const mode of ['read', 'write']) if (count(role, mode) > 0) checkHistogram(s, 'ferry_meta_txn_seconds', { engine: 'sqlite', role, mode });
    assert.equal(sumOf(s, 'ferry_meta_txn_errors_total'), 0);
    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
  });
});
