/**
 * `ferry dashboard`: access rules of the endpoint (open on loopback to loopback host names only; beyond it a
 * bearer token or the cookie that `/?token=` sets, never echoed), no secret in the page, the JSON or the log,
 * the rates of a scraped /metrics, and the page itself in a real browser (Debian's chromium driven by
 * playwright-core): it shows the volume, its regions, numbers that move after a write, and hostile names
 * from the engine as text; and the page during the two-region lab (`npm start`, held in its steady phase).
 * Volumes are SQLite files with file:// buckets in a temporary directory.
 */

import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { chromium, type Page } from 'playwright-core';
import { Counter, Registry } from 'prom-client';
import { DashboardSampler, parseScrapeTarget, volumeRates } from '../../src/cli/dashboard.js';
import { gatherStatus } from '../../src/cli/status.js';
import { openMetaTools } from '../../src/cli/util.js';
import { formatVolume, openMetaEngine, openVolume } from '../../src/index.js';
import { putEgress } from '../../src/meta/egress.js';
import { putMember } from '../../src/meta/members.js';
import { DASHBOARD_COOKIE, hostHeaderName, serveDashboard } from '../../src/obs/dashboard.js';
import { serveMetrics } from '../../src/obs/metrics.js';
import { metricsToken } from '../../src/obs/token.js';
import { addRegion } from '../../src/region/regions.js';
import { CLI, ensureBuilt, ok, ROOT } from '../cli/helpers.js';

const CHROMIUM = '/usr/bin/chromium';
/** A secret with every character a URL gives meaning to, and the pieces a half-masked URL would show. */
const SECRET = 'Zq8@x/Yw?r#T:v%41Kp';
const PIECES = ['Zq8', 'Yw', '41Kp', SECRET, encodeURIComponent(SECRET)];
/** Names an engine may hold: markup that runs script if a page ever parses it. */
const HOSTILE_REGION = '<img src=x onerror="window.__pwned=1">';
const HOSTILE_HOST = '"><script>window.__pwned=2</script>&amp;';

interface Fixture {
  dir: string;
  metaUrl: string;
  uuid: string;
  cleanup(): Promise<void>;
}

/**
 * A volume with regions: `east` (the primary) and `west` (file:// buckets), `south` (an S3 bucket whose URL
 * holds a secret key; nothing listens there) and `far` (a metadata-only mirror whose replica URL holds a
 * password),
 * plus an egress record and a cache-group member whose names are hostile markup.
 */
async function fixture(): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-dash-'));
  await mkdir(join(dir, 'east'));
  await mkdir(join(dir, 'west'));
  const metaUrl = `sqlite://${join(dir, 'meta.db')}`;
  const engine = await openMetaEngine(metaUrl, { create: true });
  let uuid: string;
  try {
    const f = await formatVolume(engine, { name: 'dashvol', storage: `file://${join(dir, 'east')}`, regions: { east: { storage: `file://${join(dir, 'east')}` } }, blockBytes: 64 << 10, compression: 'none', trashDays: 0 });
    uuid = f.uuid;
    await addRegion(engine, 'west', { storage: `file://${join(dir, 'west')}` });
    await addRegion(engine, 'south', { storage: `s3://bucket/p?endpoint=http://127.0.0.1:1&access-key=AKIA1&secret-key=${encodeURIComponent(SECRET)}&region=us-east-1&path-style=true` });
    await addRegion(engine, 'far', { replica: `postgres://alice:${SECRET}@127.0.0.1:1/vol` });
    const now = Date.now();
    await putEgress(engine, 'client-1', { version: 1, region: HOSTILE_REGION, started: now, updated: now, total: { east: 4321 }, windows: [[now, { east: 4321 }]] });
    await putMember(engine, { version: 1, group: 'gpu', address: '127.0.0.1:1', weight: 1, uuid, region: HOSTILE_REGION, host: HOSTILE_HOST, pid: 1, started: now, heartbeat: now, staleMs: 3_600_000, role: 'node' });
  } finally {
    await engine.close();
  }
  return { dir, metaUrl, uuid, cleanup: () => rm(dir, { recursive: true, force: true }) };
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

function assertNoSecret(what: string, text: string): void {
  for (const p of PIECES) assert.ok(!text.includes(p), `${what} holds ${JSON.stringify(p)}`);
}

/** `ferry dashboard` as a process; resolves with its URL once it listens. */
function startCli(args: string[]): Promise<{ child: ChildProcessWithoutNullStreams; url: string; output: () => string }> {
  ensureBuilt();
  const child = spawn(process.execPath, [CLI, 'dashboard', ...args], { env: { ...process.env, FERRY_LOG_LEVEL: 'debug', FERRY_DEBUG: '' } });
  let stdout = '';
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      const m = /on (http:\/\/\S+?)\/(\s|$)/.exec(stdout);
      if (m !== null) resolve({ child, url: m[1]!, output: () => stdout + stderr });
    });
    child.on('exit', (code) => reject(new Error(`ferry dashboard exited ${code}: ${stdout}${stderr}`)));
  });
}

async function stopCli(child: ChildProcessWithoutNullStreams): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const done = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  return done;
}

/**
 * Waits until the text of `selector` satisfies `ok`, polling from here: the page's CSP forbids the string
 * evaluation that page.waitForFunction polls with.
 */
async function waitForText(page: Page, selector: string, ok: (text: string) => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let text = '';
  for (;;) {
    text = await page.locator(selector).innerText();
    if (ok(text)) return;
    if (Date.now() > deadline) assert.fail(`${selector} still shows ${JSON.stringify(text)} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('dashboard endpoint access', () => {
  it('refuses to listen beyond loopback without a token', async () => {
    await assert.rejects(serveDashboard({ host: '0.0.0.0', port: 0, snapshot: () => ({}), refreshMs: 1000 }), /needs a token beyond loopback/);
    await assert.rejects(serveDashboard({ host: '0.0.0.0', port: 0, token: Buffer.alloc(0), snapshot: () => ({}), refreshMs: 1000 }), /needs a token beyond loopback/);
  });

  it('on loopback: open, but only to a loopback Host; read-only; 404 elsewhere', async () => {
    const ep = await serveDashboard({ host: '127.0.0.1', port: 0, snapshot: () => ({ hello: 'world' }), refreshMs: 1000 });
    try {
      const res = await fetch(`${ep.url}/api/status`);
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { hello: 'world' });
      const page = await fetch(`${ep.url}/`);
      assert.equal(page.status, 200);
      assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'none'.*script-src 'sha256-/);
      assert.equal(page.headers.get('cache-control'), 'no-store');
      assert.equal((await fetch(`${ep.url}/other`)).status, 404);
      assert.equal((await fetch(`${ep.url}/api/status`, { method: 'POST' })).status, 405);
      // A page served from elsewhere whose name resolves to 127.0.0.1 (DNS rebinding) sends its own Host.
      const rebound = await rawGet(ep.url, '/api/status', { host: 'attacker.example:80' });
      assert.equal(rebound.status, 421);
      assert.equal(hostHeaderName('[::1]:9575'), '::1');
      assert.equal(hostHeaderName('LOCALHOST'), 'localhost');
      assert.equal(hostHeaderName('a:b:c'), undefined);
    } finally {
      await ep.close();
      await ep.close();
    }
  });

  it('beyond loopback: bearer token or the cookie from /?token=, never echoed', async () => {
    const token = randomBytes(32);
    const hex = token.toString('hex');
    const lines: string[] = [];
    const ep = await serveDashboard({ host: '0.0.0.0', port: 0, token, snapshot: () => ({ ok: true }), refreshMs: 1000, onRequest: (m, p, s) => lines.push(`${m} ${p} ${s}`) });
    const base = `http://127.0.0.1:${new URL(ep.url).port}`;
    try {
      const seen: string[] = [];
      const check = async (res: Response): Promise<Response> => {
        seen.push(JSON.stringify([...res.headers]), await res.clone().text());
        return res;
      };
      assert.equal((await check(await fetch(`${base}/`))).status, 401);
      assert.equal((await check(await fetch(`${base}/api/status`))).status, 401);
      assert.equal((await check(await fetch(`${base}/api/status`, { headers: { authorization: `Bearer ${randomBytes(32).toString('hex')}` } }))).status, 401);
      assert.equal((await check(await fetch(`${base}/api/status`, { headers: { authorization: 'Bearer zz' } }))).status, 401);
      // The token as a cookie is no cookie: the cookie holds an HMAC of it.
      assert.equal((await check(await fetch(`${base}/api/status`, { headers: { cookie: `${DASHBOARD_COOKIE}=${hex}` } }))).status, 401);
      const ok = await check(await fetch(`${base}/api/status`, { headers: { authorization: `Bearer ${hex}` } }));
      assert.equal(ok.status, 200);
      assert.deepEqual(await ok.json(), { ok: true });

      assert.equal((await check(await fetch(`${base}/?token=${randomBytes(32).toString('hex')}`, { redirect: 'manual' }))).status, 401);
      const signIn = await check(await fetch(`${base}/?token=${hex}`, { redirect: 'manual' }));
      assert.equal(signIn.status, 303);
      assert.equal(signIn.headers.get('location'), '/');
      const setCookie = signIn.headers.get('set-cookie') ?? '';
      assert.match(setCookie, new RegExp(`^${DASHBOARD_COOKIE}=[0-9a-f]{64}; HttpOnly; SameSite=Lax; Path=/`));
      const cookie = setCookie.split(';')[0]!;
      const withCookie = await check(await fetch(`${base}/api/status`, { headers: { cookie: `other=1; ${cookie}` } }));
      assert.equal(withCookie.status, 200);
      assert.equal((await check(await fetch(`${base}/`, { headers: { cookie } }))).status, 200);
      // Beyond loopback any Host is fine (the token is the check).
      assert.equal((await rawGet(base, '/api/status', { host: 'dash.example', authorization: `Bearer ${hex}` })).status, 200);

      for (const text of [...seen, ...lines]) assert.ok(!text.includes(hex), `the token was echoed: ${text}`);
      assert.ok(lines.includes('GET / 303'), lines.join('\n'));
    } finally {
      await ep.close();
    }
  });
});

/** A GET with exactly these headers (fetch will not send another Host). */
async function rawGet(base: string, path: string, headers: Record<string, string>): Promise<{ status: number }> {
  const { request } = await import('node:http');
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, headers, method: 'GET' }, (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0 });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('dashboard readings', () => {
  it('parses --scrape targets', () => {
    assert.equal(parseScrapeTarget('127.0.0.1:9567'), 'http://127.0.0.1:9567/metrics');
    assert.equal(parseScrapeTarget(':9567'), 'http://127.0.0.1:9567/metrics');
    assert.equal(parseScrapeTarget('http://10.0.0.1:9567'), 'http://10.0.0.1:9567/metrics');
    assert.equal(parseScrapeTarget('http://10.0.0.1:9567/stats'), 'http://10.0.0.1:9567/stats');
    assert.throws(() => parseScrapeTarget('ftp://x/metrics'), /use HOST:PORT or an http/);
    assert.throws(() => parseScrapeTarget('nonsense'), /use HOST:PORT/);
  });

  it('rates between readings, and a scraped /metrics (token sent) and an unreachable one', async (t) => {
    const defer = cleanups(t);
    const fx = await fixture();
    defer(() => fx.cleanup());
    const tools = await openMetaTools(fx.metaUrl);
    defer(() => tools.close());
    const token = await metricsToken(tools.engine, fx.uuid);
    // A process's metrics endpoint beyond loopback (it requires the token), counting FUSE operations.
    const registry = new Registry();
    const ops = new Counter({ name: 'ferry_fuse_ops_total', help: 'ops', labelNames: ['op'], registers: [registry] });
    const ep = await serveMetrics(registry, { host: '0.0.0.0', port: 0, token });
    defer(() => ep.close());
    const port = new URL(ep.url).port;
    const closed = await serveMetrics(new Registry(), { host: '127.0.0.1', port: 0 });
    const closedUrl = `${closed.url}/metrics`;
    await closed.close();

    const errors: string[] = [];
    const sampler = new DashboardSampler(tools, { intervalMs: 60_000, scrape: [`http://127.0.0.1:${port}/metrics`, closedUrl], token, onError: (w) => errors.push(w) });
    defer(() => sampler.close());
    await sampler.readOnce();
    const first = sampler.snapshot();
    assert.equal(first.rates, null);
    assert.equal(first.status?.volume.name, 'dashvol');
    assert.equal(first.history.t.length, 1);

    const before = first.status!;
    const vol = await openVolume(fx.metaUrl, { uid: 0, gid: 0, gids: [], heartbeatMs: 0, region: 'east' });
    defer(() => vol.close());
    await vol.writeFile('/a', randomBytes(100_000));
    ops.inc({ op: 'read' }, 500);
    await new Promise((r) => setTimeout(r, 50));
    await sampler.readOnce();
    const second = sampler.snapshot();
    const r = second.rates!;
    assert.ok(r.commitsPerSec > 0 && r.usageBytesPerSec > 0 && r.inodesPerSec > 0, JSON.stringify(r));
    // The same figures as gathering the status directly.
    const direct = await gatherStatus(tools, Date.now());
    assert.equal(second.status!.usage.inodes, direct.usage.inodes);
    assert.deepEqual(volumeRates(before, direct, 1).usageBytesPerSec, direct.usage.usedBytes - before.usage.usedBytes);
    assert.equal(second.history.t.length, 2);
    assert.equal(second.history.commitsPerSec[0], null);

    const [up, down] = second.processes;
    assert.equal(up?.error, undefined, JSON.stringify(up));
    assert.ok((up?.line?.fuse.opsPerSec ?? 0) > 0, JSON.stringify(up));
    assert.match(down?.error ?? '', /unreachable \(ECONNREFUSED\)/);
    assert.ok(second.errors.some((e) => e.what.includes('ECONNREFUSED')), JSON.stringify(second.errors));
    assert.equal(errors.filter((e) => e.includes('ECONNREFUSED')).length, 1, 'the same failure is reported once');
    assertNoSecret('the snapshot', JSON.stringify(second));
  });
});

describe('ferry dashboard', () => {
  it('serves no secret: the JSON, the page and the log (URLs with passwords and secret keys in the volume)', async (t) => {
    const defer = cleanups(t);
    const fx = await fixture();
    defer(() => fx.cleanup());
    const { child, url, output } = await startCli([fx.metaUrl, '--listen', '127.0.0.1:0', '--interval', '1']);
    defer(() => stopCli(child));
    const json = await (await fetch(`${url}/api/status`)).text();
    const data = JSON.parse(json) as { status: { regions: { names: string[] }; volume: { regions: Record<string, { storage?: string; replica?: string }> } } };
    assert.deepEqual(data.status.regions.names, ['east', 'west', 'south', 'far']);
    assert.match(data.status.volume.regions['far']!.replica!, /alice:\*\*\*\*@/);
    const page = await (await fetch(`${url}/`)).text();
    for (const [what, text] of [['JSON', json], ['page', page]] as const) assertNoSecret(what, text);
    assert.equal(await stopCli(child), 0);
    assertNoSecret('the output', output());
    assert.match(output(), /dashboard request/, 'requests are logged at debug');
  });

  it('shows the volume in a real browser, moves after a write, renders hostile names as text', async (t) => {
    if (!existsSync(CHROMIUM)) {
      if (process.env['CI'] === 'true') assert.fail(`${CHROMIUM} is missing: apt-get install chromium`);
      t.skip(`${CHROMIUM} is missing: apt-get install chromium`);
      return;
    }
    const defer = cleanups(t);
    const fx = await fixture();
    defer(() => fx.cleanup());
    const engine = await openMetaEngine(fx.metaUrl);
    const token = (await metricsToken(engine, fx.uuid)).toString('hex');
    await engine.close();
    // A replicator to west that has caught up and stopped: what is written next is its backlog, with a lag.
    ok(['replicate', fx.metaUrl, '--once', '--to', 'west']);
    // Beyond loopback, so the browser signs in with /?token= and then holds only the cookie.
    const { child, url, output } = await startCli([fx.metaUrl, '--listen', '0.0.0.0:0', '--interval', '1']);
    defer(() => stopCli(child));
    const base = `http://127.0.0.1:${new URL(url).port}`;

    const profile = await mkdtemp(join(tmpdir(), 'ferry-chromium-'));
    defer(() => rm(profile, { recursive: true, force: true }));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    defer(() => context.close());
    const page = context.pages()[0] ?? (await context.newPage());
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });

    await page.goto(`${base}/?token=${token}`);
    assert.equal(page.url(), `${base}/`, 'the token left the address bar');
    await waitForText(page, '#volume-name', (x) => x === 'dashvol');
    assert.equal(await page.evaluate('document.cookie'), '', 'the cookie is HttpOnly');
    const regions = await page.locator('#regions').innerText();
    for (const r of ['east', 'west', 'south', 'far', 'metadata-only mirror']) assert.ok(regions.includes(r), `region ${r} shown:\n${regions}`);
    assert.equal(await page.locator('#inodes').innerText(), '0');
    assert.equal(await page.locator('#sessions-count').innerText(), '0');

    // Hostile names are shown as they are, as text: no element made of them, no script run.
    const egress = await page.locator('#egress').innerText();
    assert.ok(egress.includes(HOSTILE_REGION), egress);
    const groups = await page.locator('#groups').innerText();
    assert.ok(groups.includes(HOSTILE_HOST) && groups.includes(HOSTILE_REGION), groups);
    assert.equal(await page.locator('img').count(), 0);
    assert.equal(await page.locator('script').count(), 1);
    assert.equal(await page.evaluate('typeof window.__pwned'), 'undefined');

    // A client writes: its session and the new inode appear within a few readings.
    const vol = await openVolume(fx.metaUrl, { uid: 0, gid: 0, gids: [], heartbeatMs: 0, region: 'east' });
    defer(() => vol.close());
    await vol.writeFile('/model.bin', randomBytes(300_000));
    await waitForText(page, '#inodes', (x) => x === '1');
    await waitForText(page, '#sessions-count', (x) => x === '1');
    // The file's inode and its data are two commits: a reading may fall between them.
    await waitForText(page, '#used', (x) => x.startsWith('293 KiB of '));
    assert.match(await page.locator('#rates').innerText(), /metadata commits/);
    // The written blocks wait for the stopped replicator: a lag that grows, drawn in the chart.
    await waitForText(page, '#replication', (x) => /\*>west\s.*[1-9]\d* blocks, 293 KiB/.test(x));
    await waitForText(page, '#charts', (x) => Number(/replication lag: now ([\d.]+) s/.exec(x)?.[1] ?? 0) > 0);
    const lagLine = await page.locator('#charts figure').first().locator('polyline').getAttribute('points');
    assert.ok(new Set((lagLine ?? '').split(' ').map((p) => p.split(',')[1])).size > 1, `the lag chart moves: ${lagLine}`);
    assert.match(await page.locator('#egress').innerText(), /east\s+<img src=x onerror="window.__pwned=1">\s+4.22 KiB\s+4.22 KiB/);
    assert.equal(await page.locator('#charts svg').count(), 5);

    const shot = join(tmpdir(), `ferry-dashboard-${process.pid}.png`);
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`# screenshot: ${shot}`);
    assert.deepEqual(pageErrors, []);
    assertNoSecret('the page', await page.content());
    assert.equal(await stopCli(child), 0);
    assert.ok(!output().includes(token), 'the token is not logged');
    assertNoSecret('the output', output());
  });
});

/**
 * The lab (`npm start`, src/demo/main.ts) held in its steady phase (FERRY_LAB_HOLD=1): it prints its metadata
 * URL and keeps writing in a, replicating to b and mirroring to c until its stdin closes. Meanwhile a browser
 * watches `ferry dashboard` of it; the dashboard stops before the lab goes on (the lab later moves its
 * metadata file away), and the lab must then finish as it always does.
 */
describe('ferry dashboard during the two-region lab', () => {
  it('shows each region, a lag chart that is not flat at zero and the bytes across region pairs while the lab replicates', async (t) => {
    if (!existsSync(CHROMIUM)) {
      if (process.env['CI'] === 'true') assert.fail(`${CHROMIUM} is missing: apt-get install chromium`);
      t.skip(`${CHROMIUM} is missing: apt-get install chromium`);
      return;
    }
    ensureBuilt();
    const defer = cleanups(t);
    const started = Date.now();
    const lab = spawn(process.execPath, [join(ROOT, 'dist', 'demo', 'main.js')], { cwd: ROOT, env: { ...process.env, FERRY_LAB_HOLD: '1', FERRY_DEBUG: '' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let labOut = '';
    let labErr = '';
    lab.stdout.setEncoding('utf8').on('data', (d: string) => (labOut += d));
    lab.stderr.setEncoding('utf8').on('data', (d: string) => (labErr += d));
    const labExit = new Promise<number | null>((resolve) => lab.once('exit', (code) => resolve(code)));
    const labState = { dir: undefined as string | undefined };
    defer(async () => {
      if (lab.exitCode === null && lab.signalCode === null) lab.kill('SIGKILL');
      await labExit;
      // Only the lab's own temporary directory.
      const dir = labState.dir;
      if (dir !== undefined && dir.startsWith(join(tmpdir(), 'ferry-lab-'))) await rm(dir, { recursive: true, force: true });
    });
    const deadline = Date.now() + 90_000;
    const holdLine = /^ {2}hold +(sqlite:\/\/\S+): /m;
    while (!holdLine.test(labOut)) {
      if (lab.exitCode !== null || Date.now() > deadline) assert.fail(`the lab did not hold (exit ${lab.exitCode}):\n${labOut}\n${labErr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const metaUrl = holdLine.exec(labOut)![1]!;
    labState.dir = dirname(metaUrl.substring('sqlite://'.length));
    const held = Date.now();

    const { child, url } = await startCli([metaUrl, '--listen', '127.0.0.1:0', '--interval', '1']);
    defer(() => stopCli(child));
    const profile = await mkdtemp(join(tmpdir(), 'ferry-chromium-'));
    defer(() => rm(profile, { recursive: true, force: true }));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    defer(() => context.close());
    const page = context.pages()[0] ?? (await context.newPage());
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });
    await page.goto(`${url}/`);
    await waitForText(page, '#volume-name', (x) => x === 'lab');

    // Each region, with its role.
    await waitForText(page, '#regions', (x) => x.includes('metadata-only mirror'));
    const rows = await page.locator('#regions tbody tr').allInnerTexts();
    assert.deepEqual(rows.map((r) => r.split('\t')[0]), ['a', 'b', 'c'], rows.join('\n'));
    assert.match(rows[0]!, /^a\tprimary\tfile:\/\//);
    assert.match(rows[2]!, /^c\tmetadata-only mirror\t/);
    // The replicator following the writer: copies from a to b; the mirror of c.
    await waitForText(page, '#replication', (x) => /a -> b [\d.]+ [KM]iB/.test(x));
    await waitForText(page, '#mirrors', (x) => /^c\s/m.test(x));

    // A lag chart not flat at zero: a reading that found a slice not yet copied (the writer commits every
    // ~120 ms, the replicator copies within tens of ms; a reading each second meets one now and then). Its
    // line then leaves the baseline (the chart scales to its maximum).
    const lagCaption = '#charts figure:first-child figcaption';
    const lagLine = page.locator('#charts figure').first().locator('polyline');
    const heights = async (): Promise<Set<string>> => new Set(((await lagLine.getAttribute('points')) ?? '').split(' ').map((p) => p.split(',')[1] ?? ''));
    for (const end = Date.now() + 90_000; (await heights()).size < 2; ) {
      if (Date.now() > end) assert.fail(`the replication lag chart stayed flat: ${await page.locator(lagCaption).innerText()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(Number(/max ([\d.]+) s/.exec(await page.locator(lagCaption).innerText())?.[1] ?? 0) > 0, await page.locator(lagCaption).innerText());

    // Bytes across region pairs: b's readers read a's bucket before the copies were there.
    await waitForText(page, '#egress', (x) => /^a\s+b\s+[\d.]+ [KM]iB\s+[\d.]+ [KM]iB/m.test(x));

    const shot = join(tmpdir(), `ferry-dashboard-lab-${process.pid}.png`);
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`# screenshot: ${shot}`);
    const seen = {
      lag: await page.locator(lagCaption).innerText(),
      mirrorLag: await page.locator('#charts figure:nth-child(2) figcaption').innerText(),
      egress: (await page.locator('#egress tbody').innerText()).replace(/\s+/g, ' '),
    };
    assert.deepEqual(pageErrors, []);
    await context.close();
    assert.equal(await stopCli(child), 0);

    // The lab goes on, and ends as it always does.
    const watched = Date.now();
    lab.stdin.end();
    const code = await labExit;
    assert.equal(code, 0, `the lab failed:\n${labOut}\n${labErr}`);
    const steady = Number(/steady +(\d+) files committed in a/.exec(labOut)?.[1]);
    assert.ok(steady >= 24, labOut);
    assert.match(labOut, /backlog at the end 0 blocks/);
    assert.match(labOut, /verified +every read by sha256: all match/);
    assert.doesNotMatch(labOut + labErr, /mismatch|differ|FAIL/i);
    t.diagnostic(`lab to hold ${((held - started) / 1000).toFixed(1)} s, watched ${((watched - held) / 1000).toFixed(1)} s, rest of the lab ${((Date.now() - watched) / 1000).toFixed(1)} s; ${steady} steady files; ${seen.lag}; ${seen.mirrorLag}; egress ${seen.egress}`);
  });
});
