/**
 * The mirror follower under faults:
 *   - `ferry mirror` killed with SIGKILL at random points (bootstrap included), again and again while a writer
 *     commits on the primary, then restarted: the replica ends equal to the primary (`ferry mirror verify`
 *     exits 0), and a planted difference makes `verify` exit 1;
 *   - a follower reaching a Redis primary through the fault proxy (latency 50–200 ms, connection resets, a
 *     10 s blackout) converges once the writer stops.
 */

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { formatVolume, openMetaEngine, openVolume } from '../../src/index.js';
import { RetryEngine } from '../../src/meta/retry.js';
import { FaultProxy } from '../../src/net/faultproxy.js';
import { MirrorFollower, verifyMirror } from '../../src/region/mirror.js';
import { addRegion } from '../../src/region/regions.js';
import { mulberry32, randomSeed } from '../../src/util/random.js';
import { ensureBuilt, CLI } from '../cli/helpers.js';
import { forEachEngine, redisEngine, type SharedEngine } from '../helpers/engines.js';

const SEED = process.env['FERRY_SEED'] !== undefined ? Number(process.env['FERRY_SEED']) : randomSeed();
console.log(`mirror fault tests: seed ${SEED} (replay with FERRY_SEED=${SEED})`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let root: string;
before(async () => {
  ensureBuilt();
  root = await mkdtemp(join(tmpdir(), 'ferry-mirror-faults-'));
});
after(() => rm(root, { recursive: true, force: true }));

async function volume(primaryUrl: string, replicaUrl: string): Promise<string> {
  const dir = await mkdtemp(join(root, 'v-'));
  await mkdir(join(dir, 'a'));
  const e = await openMetaEngine(primaryUrl, { create: true });
  try {
    await formatVolume(e, { name: 'faulty', storage: '', regions: { a: { storage: `file://${dir}/a` } }, primary: 'a', blockBytes: 64 << 10, compression: 'none', trashDays: 0 });
    await addRegion(e, 'm', { replica: replicaUrl });
  } finally {
    await e.close();
  }
  return dir;
}

/** A writer committing small files on the primary until stopped. */
function writer(url: string, seed: number): { stop(): Promise<number> } {
  let stopped = false;
  let n = 0;
  const done = (async () => {
    const vol = await openVolume(url, { heartbeatMs: 0, memCacheBytes: 0 });
    const rand = mulberry32(seed);
    try {
      await vol.mkdir('/w', { recursive: true });
      while (!stopped) {
        const name = `/w/f${Math.floor(rand() * 200)}`;
        if (rand() < 0.2) await vol.rm(name, { force: true });
        else await vol.writeFile(name, `${n} `.repeat(1 + Math.floor(rand() * 500)));
        n++;
        await sleep(2);
      }
    } finally {
      await vol.close();
    }
  })();
  return {
    async stop() {
      stopped = true;
      await done;
      return n;
    },
  };
}

describe('mirror follower killed with SIGKILL', () => {
  it('ends equal to the primary after kills at random points, and verify exits 1 on a planted difference', async () => {
    const meta = `sqlite://${root}/kill-primary.db`;
    const replicaUrl = `sqlite://${root}/kill-replica.db`;
    await volume(meta, replicaUrl);
    const w = writer(meta, SEED);
    const rand = mulberry32(SEED ^ 0xdead);
    let kills = 0;
    try {
      for (let i = 0; i < 6; i++) {
        const child = spawn(process.execPath, [CLI, 'mirror', meta, '--region', 'm'], { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        // The first run bootstraps: some kills land inside it.
        await sleep(50 + Math.floor(rand() * 700));
        if (child.exitCode !== null) assert.fail(`the follower exited by itself (${child.exitCode}): ${err}`);
        child.kill('SIGKILL');
        await new Promise((r) => child.once('close', r));
        kills++;
      }
    } finally {
      await w.stop();
    }
    assert.equal(kills, 6);
    const once = spawnSync(process.execPath, [CLI, 'mirror', meta, '--region', 'm', '--once'], { encoding: 'utf8' });
    assert.equal(once.status, 0, once.stderr);
    const verify = spawnSync(process.execPath, [CLI, 'mirror', 'verify', meta, '--region', 'm'], { encoding: 'utf8' });
    assert.equal(verify.status, 0, verify.stdout + verify.stderr);
    assert.match(verify.stdout, /the replica \(at seq (\d+)\) equals the primary: \d+ records compared at seq \1/);

    const replica = await openMetaEngine(replicaUrl);
    try {
      await replica.txn(async (tx) => {
        const [key, rec] = (await tx.scan<Record<string, unknown>>('entry', '1', { limit: 1 }))[0]!;
        tx.put('entry', '1', key, { ...rec, ino: 999_999 });
      });
    } finally {
      await replica.close();
    }
    const planted = spawnSync(process.execPath, [CLI, 'mirror', 'verify', meta, '--region', 'm'], { encoding: 'utf8' });
    assert.equal(planted.status, 1, planted.stdout + planted.stderr);
    assert.match(planted.stdout, /^differs: \["entry","1",/m);
  });
});

function proxied(engine: SharedEngine): void {
  describe(`mirror follower behind a faulty network (${engine.name} primary)`, () => {
    it('converges through latency 50-200 ms, connection resets and a 10 s blackout', async () => {
      const loc = await engine.fresh();
      const replicaUrl = `sqlite://${root}/proxied-replica-${engine.name}.db`;
      await volume(loc.url, replicaUrl);
      const target = new URL(loc.url);
      const proxy = await FaultProxy.start({ targetPort: Number(target.port || 6379), seed: SEED });
      const through = loc.url.replace(`:${target.port}`, `:${proxy.port}`);
      const primary = new RetryEngine(await openMetaEngine(through));
      const replica = await openMetaEngine(replicaUrl, { create: true });
      const follower = new MirrorFollower({ primary, replica, region: 'm' });
      const stop = new AbortController();
      const w = writer(loc.url, SEED + 1);
      let running: Promise<void> | undefined;
      try {
        // Bootstrapped on a clean link (a Redis snapshot costs round trips per directory: far from the
        // primary, bootstrap near it), then the faults come while it follows.
        await follower.once();
        proxy.setFaults({ upLatencyMs: 25, downLatencyMs: 25, jitterMs: 150, connectionResetRate: 0.2, resetAfterBytesMax: 256 << 10, chunkResetRate: 0.005 });
        running = follower.run(stop.signal);
        await sleep(2000);
        proxy.blackout(10_000, 'cut');
        await sleep(11_000);
        await sleep(1000);
        const written = await w.stop();
        assert.ok(written > 20, `the writer committed during the faults (${written})`);
        const direct = await openMetaEngine(loc.url);
        try {
          const last = await direct.lastSeq();
          const deadline = Date.now() + 60_000;
          while (follower.stats.applied < last) {
            assert.ok(Date.now() < deadline, `the follower did not converge: at ${follower.stats.applied} of ${last}`);
            await sleep(100);
          }
          stop.abort();
          await running;
          assert.deepEqual((await verifyMirror(direct, replica)).differences, []);
        } finally {
          await direct.close();
        }
        assert.ok(proxy.stats().resets > 0, 'the proxy reset connections');
        console.log(`${engine.name}: follower errors ${follower.stats.errors}, resets ${proxy.stats().resets}, bootstraps ${follower.stats.bootstraps}`);
      } finally {
        stop.abort();
        await running?.catch(() => undefined);
        await w.stop().catch(() => 0);
        await replica.close();
        await primary.close();
        await proxy.close();
        await loc.cleanup();
      }
    });
  });
}

await forEachEngine([redisEngine(14)], proxied);
