/**
 * Observing a real mount: its /metrics endpoint serves every metric the README names and they move under a
 * workload; `ferry stats` prints lines while a workload runs (and `--json` parses); `/.accesslog` shows an
 * operation made after it was opened, with its arguments, result and duration.
 */

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parsePromText, sumOf, type Sample } from '../../src/obs/promtext.js';
import { addonUnavailable, ferry, makeVolume, removeVolume, sh, startMount, type RunningMount, type Volume } from './helpers.js';

const skip = addonUnavailable();

/** The metric names the README lists for a mount (README "Observe it"); each must be served. */
export const MOUNT_METRICS = [
  'ferry_fuse_ops_total',
  'ferry_fuse_errors_total',
  'ferry_fuse_op_seconds_bucket',
  'ferry_fuse_op_seconds_sum',
  'ferry_fuse_op_seconds_count',
  'ferry_fuse_read_bytes_total',
  'ferry_fuse_written_bytes_total',
  'ferry_fuse_handles',
  'ferry_fuse_accesslog_readers',
  'ferry_fuse_accesslog_dropped_lines_total',
  'ferry_object_request_seconds_bucket',
  'ferry_object_request_seconds_count',
  'ferry_object_errors_total',
  'ferry_object_read_bytes_total',
  'ferry_object_written_bytes_total',
  'ferry_meta_txn_seconds_bucket',
  'ferry_meta_txn_seconds_count',
  'ferry_block_read_hits_total',
  'ferry_block_read_bytes_total',
  'ferry_region_read_bytes_total',
  'process_cpu_seconds_total',
  'process_resident_memory_bytes',
  'nodejs_eventloop_lag_seconds',
  'nodejs_gc_duration_seconds_count',
];

async function until(what: string, fn: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('observing a mount', { skip }, () => {
  let vol: Volume;
  let m: RunningMount;
  let metricsUrl: string;
  const scrape = async (): Promise<Sample[]> => parsePromText(await (await fetch(metricsUrl)).text());

  before(async () => {
    vol = await makeVolume();
    m = await startMount(vol, ['--metrics', '127.0.0.1:0']);
    const u = /metrics on (http:\/\/\S+\/metrics)/.exec(m.log())?.[1];
    assert.ok(u !== undefined, `the mount logs where its metrics are:\n${m.log()}`);
    metricsUrl = u;
  });

  after(async () => {
    await m?.stop();
    if (vol !== undefined) await removeVolume(vol);
  });

  it('serves every metric the README names, and they move under a workload', async () => {
    const s0 = await scrape();
    await sh('head -c 3000000 /dev/urandom > w && cat w > /dev/null && (ls nope 2>/dev/null || true)', vol.mnt);
    const s1 = await scrape();
    const grew = (name: string, match: Record<string, string> = {}): boolean => sumOf(s1, name, match) > sumOf(s0, name, match);
    assert.ok(grew('ferry_fuse_ops_total', { op: 'write' }), 'write ops');
    assert.ok(grew('ferry_fuse_op_seconds_count', { op: 'write' }), 'write latency observed');
    assert.ok(grew('ferry_fuse_errors_total', { op: 'lookup' }), 'a failed lookup is an error');
    assert.ok(sumOf(s1, 'ferry_fuse_written_bytes_total') - sumOf(s0, 'ferry_fuse_written_bytes_total') >= 3_000_000, 'written bytes');
    assert.ok(grew('ferry_object_request_seconds_count', { op: 'put' }), 'object puts');
    assert.ok(sumOf(s1, 'ferry_object_written_bytes_total') - sumOf(s0, 'ferry_object_written_bytes_total') >= 3_000_000, 'object bytes written');
    assert.ok(grew('ferry_meta_txn_seconds_count', { engine: 'sqlite', mode: 'write' }), 'metadata writes');
    assert.ok(grew('process_cpu_seconds_total'), 'cpu');
    // The bucket serves a file written by another client (the SDK through the CLI: ferry cp) ...
    const cp = await ferry(['cp', vol.metaUrl, '/etc/services', ':/svc']);
    assert.equal(cp.code, 0, cp.stderr);
    const s2 = await scrape();
    await sh('cat svc > /dev/null', vol.mnt);
    const s3 = await scrape();
    const d = (name: string, match: Record<string, string> = {}): number => sumOf(s3, name, match) - sumOf(s2, name, match);
    assert.ok(d('ferry_block_read_hits_total', { tier: 'bucket' }) >= 1, 'bucket hits');
    assert.ok(d('ferry_block_read_bytes_total', { tier: 'bucket' }) > 0, 'bucket bytes');
    assert.ok(d('ferry_region_read_bytes_total') > 0, 'region pair bytes');
    assert.ok(d('ferry_object_read_bytes_total') > 0, 'object bytes read');
    assert.ok(d('ferry_fuse_read_bytes_total') > 0, 'fuse bytes read');
    // The garbage collector's histogram has samples only once the mount process collected: small requests
    // (JS objects each, unlike the bulk data above, which lives outside the JS heap) until it has.
    const gc = 'nodejs_gc_duration_seconds_count';
    await until(`${gc} after a garbage collection`, async () => {
      if ((await scrape()).some((x) => x.name === gc)) return true;
      await sh('for i in $(seq 1 300); do echo $i > gc-$i; done; rm -f gc-*', vol.mnt);
      return false;
    }, 120_000);
    const served = await scrape();
    for (const name of MOUNT_METRICS) assert.ok(served.some((x) => x.name === name), `${name} is served`);
  });

  it('ferry stats prints a line per interval while a workload runs; --json lines parse', async () => {
    const work = spawn('bash', ['-c', 'for i in $(seq 1 400); do echo $i > s$((i % 20)); cat s$((i % 20)) > /dev/null; sleep 0.005; done'], { cwd: vol.mnt, stdio: 'ignore' });
    const workDone = new Promise((r) => work.once('exit', r));
    try {
      const text = await ferry(['stats', vol.mnt, '--interval', '0.5', '--count', '3']);
      assert.equal(text.code, 0, text.stderr);
      const lines = text.stdout.trimEnd().split('\n');
      assert.equal(lines.length, 5, text.stdout);
      assert.match(lines[0]!, /fuse.*MiB\/s.*hits % by tier.*object.*meta/);
      assert.match(lines[1]!, /ops\/s.*ms.*read.*write.*memory.*bucket.*req\/s.*txn\/s/);
      for (const l of lines.slice(2)) assert.match(l, /^\d\d:\d\d:\d\d +\d+ /);
      const json = await ferry(['stats', vol.mnt, '--interval', '0.5', '--count', '2', '--json']);
      assert.equal(json.code, 0, json.stderr);
      const objs = json.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { fuse: { opsPerSec: number }; meta: { txnsPerSec: number }; tiers: Record<string, unknown> });
      assert.equal(objs.length, 2);
      assert.ok(objs.some((o) => o.fuse.opsPerSec > 0 && o.meta.txnsPerSec > 0), json.stdout);
      assert.ok('memory' in objs[0]!.tiers && 'bucket' in objs[0]!.tiers);
    } finally {
      work.kill();
      await workDone;
    }
  });

  it('ferry stats refuses a directory that is not a mount, in one line', async () => {
    const r = await ferry(['stats', vol.dir]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^ferry: .* is not a Ferry mount point/);
    const bad = await ferry(['stats', vol.mnt, '--interval', '0']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /invalid --interval '0'/);
  });

  it('.accesslog shows an operation made after it was opened, with arguments, result and duration', async () => {
    const reader: ChildProcess = spawn('cat', ['.accesslog'], { cwd: vol.mnt, stdio: ['ignore', 'pipe', 'pipe'] });
    let got = '';
    reader.stdout!.on('data', (b: Buffer) => (got += b.toString()));
    try {
      await until('the reader to open the access log', async () => sumOf(await scrape(), 'ferry_fuse_accesslog_readers') === 1);
      assert.equal(got, '', 'nothing from before it was opened');
      await sh('mkdir al-dir && printf hello > al-dir/f && cat al-dir/missing 2>/dev/null || true', vol.mnt);
      await until('the lines', () => /write \(/.test(got) && /ENOENT/.test(got));
      const mkdir = got.split('\n').find((l) => / mkdir \(/.test(l));
      assert.ok(mkdir !== undefined, got);
      assert.match(mkdir, /^\d{4}-\d\d-\d\dT\S+Z \[uid:\d+,gid:\d+,pid:\d+\] mkdir \(parent=1,name="al-dir",mode=0[0-7]+\): OK <\d+\.\d{6}>$/);
      assert.match(got, / write \(ino=\d+,fh=\d+,size=5,offset=0\): OK </);
      assert.match(got, / lookup \(parent=\d+,name="missing"\): ENOENT </);
      assert.doesNotMatch(got, /ino=2147483646/, "the access log's own reads are not logged");
    } finally {
      reader.kill();
    }
    if (reader.exitCode === null && reader.signalCode === null) await new Promise((r) => reader.once('exit', r));
    await until('the reader to go', async () => sumOf(await scrape(), 'ferry_fuse_accesslog_readers') === 0);
  });

  it('a reader that stops reading does not block the mount', async () => {
    // The shell opens the access log and never reads it.
    const idle = spawn('bash', ['-c', 'exec 3<.accesslog; sleep 60'], { cwd: vol.mnt, stdio: 'ignore' });
    try {
      await until('the idle reader', async () => sumOf(await scrape(), 'ferry_fuse_accesslog_readers') === 1);
      const t0 = Date.now();
      await sh('for i in $(seq 1 200); do echo $i > idle-$i; done; ls | wc -l > /dev/null', vol.mnt);
      assert.ok(Date.now() - t0 < 30_000);
    } finally {
      idle.kill('SIGKILL');
    }
    await until('the idle reader to go', async () => sumOf(await scrape(), 'ferry_fuse_accesslog_readers') === 0);
  });
});

describe('a mount serving metrics beyond loopback', { skip }, () => {
  it('answers only with the volume token, which no output shows', async (t) => {
    const vol = await makeVolume();
    t.after(() => removeVolume(vol));
    const m = await startMount(vol, ['--metrics', '0.0.0.0:0']);
    t.after(() => m.stop());
    const port = /metrics on http:\/\/[^:]+:(\d+)\/metrics/.exec(m.log())?.[1];
    assert.ok(port !== undefined, m.log());
    const url = `http://127.0.0.1:${port}/metrics`;
    assert.equal((await fetch(url)).status, 401);
    const file = join(vol.dir, 'token');
    const r = await ferry(['metrics-token', vol.metaUrl, '--out', file]);
    assert.equal(r.code, 0, r.stderr);
    const token = (await readFile(file, 'utf8')).trim();
    assert.match(token, /^[0-9a-f]{64}$/);
    assert.equal((await sh(`stat -c %a ${file}`, vol.dir)).trim(), '600');
    const ok = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(ok.status, 200);
    assert.match(await ok.text(), /ferry_fuse_ops_total/);
    for (const text of [m.log(), r.stdout, r.stderr]) assert.ok(!text.includes(token), 'the token is never printed');
  });
});
