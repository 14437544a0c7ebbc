/**
 * The metadata service behind a bad network and a crashing process:
 *   - through the fault proxy (50 ms each way, connections reset at random — requests and answers lost — and a
 *     10 s blackout), every write either completes exactly once or fails with a clear error: never twice
 *     (a mkdir applied twice would answer EEXIST, an append applied twice would repeat its line, a rename
 *     applied twice would answer ENOENT);
 *   - the service SIGKILLed mid-operation (in a child process, over and over) leaves every acknowledged write
 *     committed and none half-done: the primary passes fsck's checks of links and counts, and every write the
 *     client saw acknowledged is there.
 */

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import { FsError, openVolume, type Volume } from '../../src/index.js';
import { FaultProxy } from '../../src/net/faultproxy.js';
import { mulberry32, randomSeed } from '../../src/util/random.js';
import { ensureBuilt, CLI } from '../cli/helpers.js';
import { makeServiceLab, type ServiceLab } from './helpers.js';

const SEED = process.env['FERRY_SEED'] !== undefined ? Number(process.env['FERRY_SEED']) : randomSeed();
console.log(`service fault tests: seed ${SEED} (replay with FERRY_SEED=${SEED})`);

const labs: ServiceLab[] = [];
after(async () => {
  for (const l of labs) await l.cleanup();
});

/**
 * Runs `n` writes through `vol`: mkdir /w/dI, append "I\n" to /w/log, rename of a file along a chain. Returns
 * which were acknowledged; asserts that no failure is the sign of a repeat.
 */
async function writes(vol: Volume, n: number, onStep?: (i: number) => Promise<void> | void): Promise<{ acked: Set<number>; failed: Map<number, string>; renamed: number }> {
  const acked = new Set<number>();
  const failed = new Map<number, string>();
  let at = 0; // the chain's current name: /w/r<at>
  for (let i = 1; i <= n; i++) {
    await onStep?.(i);
    const kind = i % 3;
    try {
      if (kind === 0) await vol.mkdir(`/w/d${i}`);
      else if (kind === 1) await vol.appendFile('/w/log', `${i}\n`);
      else {
        await vol.rename(`/w/r${at}`, `/w/r${i}`);
        at = i;
      }
      acked.add(i);
    } catch (err) {
      if (!(err instanceof FsError)) throw err;
      // A repeat would show as one of these; an unreachable service as EIO with a message saying so.
      assert.notEqual(err.code, 'EEXIST', `write ${i} was applied twice: ${err.message}`);
      assert.notEqual(err.code, 'ENOENT', `write ${i} was applied twice: ${err.message}`);
      assert.equal(err.code, 'EIO', `write ${i}: ${err.message}`);
      assert.match(err.message, /did not answer|may or may not/);
      failed.set(i, err.message);
      if (kind === 2) {
        // The outcome is unknown to the client: find where the chain is now.
        if (await vol.exists(`/w/r${i}`)) at = i;
      }
    }
  }
  return { acked, failed, renamed: at };
}

/** The state after `writes`: each acknowledged write there once, failed ones at most once. */
async function checkOnce(vol: Volume, n: number, r: Awaited<ReturnType<typeof writes>>): Promise<void> {
  const lines = (await vol.readFile('/w/log', 'utf8')).split('\n').filter((x) => x !== '');
  const counts = new Map<string, number>();
  for (const l of lines) counts.set(l, (counts.get(l) ?? 0) + 1);
  for (const [l, c] of counts) assert.equal(c, 1, `append ${l} is in the log ${c} times`);
  const names = new Set(await vol.readdir('/w'));
  for (let i = 1; i <= n; i++) {
    if (!r.acked.has(i)) continue;
    if (i % 3 === 0) assert.ok(names.has(`d${i}`), `acknowledged mkdir ${i} is missing`);
    if (i % 3 === 1) assert.ok(counts.has(String(i)), `acknowledged append ${i} is missing`);
  }
  const chain = [...names].filter((x) => /^r\d+$/.test(x));
  assert.deepEqual(chain, [`r${r.renamed}`], 'the renamed file exists once, under its last name');
}

describe('metadata service: faults', () => {
  it('through the fault proxy (50 ms each way, resets, a 10 s blackout) writes complete once or fail clearly, never twice', async () => {
    const l = await makeServiceLab([]);
    labs.push(l);
    const proxy = await FaultProxy.start({ targetPort: l.service!.port, seed: SEED, upLatencyMs: 50, downLatencyMs: 50, chunkResetRate: 0.08 });
    try {
      const vol = await openVolume(`ferry://127.0.0.1:${proxy.port}`, { token: l.token, uid: 0, gid: 0, memCacheBytes: 0, serviceClient: { pingMs: 0, attemptMs: 2000 } });
      await vol.mkdir('/w');
      await vol.writeFile('/w/r0', 'chain');
      await vol.writeFile('/w/log', '');
      const n = 60;
      const rand = mulberry32(SEED);
      const blackoutAt = 10 + Math.floor(rand() * 30);
      const r = await writes(vol, n, (i) => {
        if (i === blackoutAt) proxy.blackout(10_000, rand() < 0.5 ? 'stall' : 'cut');
      });
      const st = proxy.stats();
      console.log(`fault proxy: ${st.resets} resets, ${st.refused} refused; ${r.acked.size} acknowledged, ${r.failed.size} failed; service deduplicated ${l.service!.stats.deduplicated}`);
      assert.ok(st.resets > 0, 'the proxy did reset connections');
      assert.ok(r.acked.size >= n - 5, `most writes completed (the 10 s blackout is inside the retry window): ${[...r.failed.values()].join('; ')}`);
      proxy.heal();
      await checkOnce(vol, n, r);
      // And on the primary, directly.
      const p = await l.open('primary', { lookupCacheMs: 0 });
      await checkOnce(p, n, r);
      await vol.close();
    } finally {
      await proxy.close();
    }
  });

  it('the service SIGKILLed mid-operation leaves every acknowledged write committed and none half-done', async () => {
    ensureBuilt();
    const l = await makeServiceLab([], { service: false });
    labs.push(l);
    const port = 20000 + Math.floor(mulberry32(SEED + 7)() * 20000);
    let child: ChildProcess | undefined;
    const start = async (): Promise<void> => {
      child = spawn(process.execPath, [CLI, 'serve', l.primaryUrl, '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
      // Ready once it printed its line.
      const [chunk] = (await once(child.stdout!, 'data')) as [Buffer];
      assert.match(chunk.toString(), /listening on/);
    };
    await start();
    const vol = await openVolume(`ferry://127.0.0.1:${port}`, { token: l.token, uid: 0, gid: 0, memCacheBytes: 0, serviceClient: { pingMs: 0, attemptMs: 2000 } });
    try {
      await vol.mkdir('/w');
      await vol.writeFile('/w/r0', 'chain');
      await vol.writeFile('/w/log', '');
      const rand = mulberry32(SEED + 1);
      const kills: number[] = [];
      let restarting: Promise<void> | undefined;
      const r = await writes(vol, 90, (i) => {
        if (i % 15 === 7) {
          // Kill at a random moment while the next writes are in flight, restart soon after.
          const delay = Math.floor(rand() * 40);
          restarting = (async () => {
            await new Promise((res) => setTimeout(res, delay));
            child!.kill('SIGKILL');
            await once(child!, 'exit');
            kills.push(i);
            await new Promise((res) => setTimeout(res, 100 + Math.floor(rand() * 400)));
            await start();
          })();
        }
      });
      await restarting;
      console.log(`service killed ${kills.length} times; ${r.acked.size} writes acknowledged, ${r.failed.size} failed`);
      assert.ok(kills.length >= 5);
      assert.equal(r.failed.size, 0, `every write completed after the restarts: ${[...r.failed.values()].join('; ')}`);
      await checkOnce(vol, 90, r);
      const p = await l.open('primary', { lookupCacheMs: 0 });
      await checkOnce(p, 90, r);
    } finally {
      await vol.close().catch(() => undefined);
      child?.kill('SIGKILL');
    }
    // None half-done: fsck finds the primary consistent.
    const fsck = spawn(process.execPath, [CLI, 'fsck', l.primaryUrl], { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    fsck.stdout!.on('data', (b: Buffer) => (text += b.toString()));
    fsck.stderr!.on('data', (b: Buffer) => (text += b.toString()));
    const [code] = (await once(fsck, 'exit')) as [number];
    assert.equal(code, 0, `fsck: ${text}`);
  });
});
