/**
 * The bucket replicator under stress: killed with SIGKILL at random points and restarted, and run across a
 * faulty link (latency, failed calls, a blackout, truncated bodies). Either way it must end with every block
 * of every live slice in every bucket, each verifying, and records that say so.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { FaultStore } from '../../src/object/faults.js';
import { RetryStore } from '../../src/object/retry.js';
import { listAll, type CallOptions, type ObjectStore } from '../../src/object/store.js';
import { blockKey } from '../../src/chunk/keys.js';
import { loadCheckpoint, replicationStatus, type ReplicationStatus } from '../../src/region/replicate.js';
import { mulberry32 } from '../../src/util/random.js';
import { CLI, ensureBuilt } from '../cli/helpers.js';
import { badBlocks, CountingStore, makeRegionLab, pseudoRandom, type RegionLab } from './helpers.js';

const KiB = 1024;

/** Small files, files that cross block edges, and a few of many blocks. */
async function writeMixed(lab: RegionLab, seed: number, count: number): Promise<Map<string, Buffer>> {
  const rnd = mulberry32(seed);
  const va = await lab.open('a');
  const files = new Map<string, Buffer>();
  await va.mkdir('/mixed', { recursive: true });
  for (let i = 0; i < count; i++) {
    const kind = rnd();
    const n = kind < 0.6 ? Math.floor(rnd() * 20 * KiB) + 1 : kind < 0.9 ? Math.floor(rnd() * 200 * KiB) + 1 : Math.floor(rnd() * 1024 * KiB) + 512 * KiB;
    const data = pseudoRandom(n, seed * 1000 + i);
    await va.writeFile(`/mixed/f${i}`, data);
    files.set(`/mixed/f${i}`, data);
  }
  await va.close();
  return files;
}

async function checkComplete(lab: RegionLab, files: Map<string, Buffer>): Promise<void> {
  const blocks = await lab.liveBlocks();
  assert.deepEqual(await badBlocks(lab.store('a'), blocks), [], 'every block in a, verifying');
  assert.deepEqual(await badBlocks(lab.store('b'), blocks), [], 'every block in b, verifying');
  const { meta } = await lab.tools();
  for (const [id, s] of await meta.listSlices()) assert.deepEqual(s.copies, ['b'], `slice ${id} recorded as copied`);
  // A client in b with a's bucket gone reads everything, byte for byte.
  const down = new FaultStore(lab.store('a'), { seed: 1 });
  down.setDown(true);
  const vb = await lab.open('b', { stores: { a: new RetryStore(down, { attemptsMax: 1 }) } });
  for (const [p, data] of files) assert.ok((await vb.readFile(p)).equals(data), p);
  await vb.close();
  const [st] = await replicationStatus(meta);
  assert.equal(st?.backlog.blocks, 0);
  assert.equal(st?.pending, 0);
}

function runCli(
  args: string[],
  killAfterMs?: number,
  how: NodeJS.Signals = 'SIGKILL',
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; exitedMs: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, FERRY_DEBUG: '', FERRY_NO_PROGRESS: '1' } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    let signalledAt = 0;
    const timer =
      killAfterMs === undefined
        ? undefined
        : setTimeout(() => {
            signalledAt = performance.now();
            child.kill(how);
          }, killAfterMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (timer !== undefined) clearTimeout(timer);
      // How long after the signal the process ended (0: never signalled).
      resolve({ code, signal, stdout, stderr, exitedMs: signalledAt === 0 ? 0 : performance.now() - signalledAt });
    });
  });
}

describe('replicator killed with SIGKILL', () => {
  let lab: RegionLab;
  before(async () => {
    ensureBuilt();
    lab = await makeRegionLab();
  });
  after(() => lab.cleanup());

  it('resumes after every kill and ends with every block in every bucket, verifying', async (t) => {
    const files = await writeMixed(lab, 11, 60);
    const total = (await lab.liveBlocks()).length;
    const { engine } = await lab.tools();
    const rnd = mulberry32(42);
    // Throttled so that each run is killed mid-copy: the dataset takes several runs' worth of time.
    const args = ['replicate', lab.metaUrl, '--once', '--parallel', '4', '--bwlimit', '1M'];
    let kills = 0;
    const progress: number[] = [];
    // A kill that came before the first mark (a slow start on a busy machine) waits longer the next time.
    let waitMs = 500;
    for (let i = 0; i < 12 && kills < 6; i++) {
      const r = await runCli(args, waitMs + Math.floor(rnd() * 700));
      if (r.signal === 'SIGKILL') kills++;
      else assert.equal(r.code, 0, r.stderr);
      const { meta } = await lab.tools();
      progress.push([...(await meta.listSlices()).values()].filter((s) => s.copies !== undefined).length);
      if (r.signal === 'SIGKILL' && progress[progress.length - 1] === (progress[progress.length - 2] ?? 0)) waitMs = Math.min(waitMs * 2, 8000);
    }
    assert.ok(kills >= 5, `killed ${kills} times`);
    // Work done before a kill is kept: the marked slices only grow.
    for (let i = 1; i < progress.length; i++) assert.ok(progress[i]! >= progress[i - 1]!, `progress ${progress.join(' ')}`);
    const final = await runCli(['replicate', lab.metaUrl, '--once', '--parallel', '8']);
    assert.equal(final.code, 0, final.stderr);
    const copiedLast = Number(/replicated \d+ slice\(s\), (\d+) block/.exec(final.stdout)?.[1]);
    t.diagnostic(`${kills} kills; slices marked copied after each run: ${progress.join(' ')}; the last run copied ${copiedLast} of ${total} blocks`);
    assert.ok(copiedLast < total, `the last run copied ${copiedLast} of ${total} blocks: earlier runs' work was kept`);
    await checkComplete(lab, files);
    const cp = await loadCheckpoint(engine, '*>*');
    assert.equal(cp?.seq, await engine.lastSeq());
    // And a run with nothing left to do copies nothing.
    const idle = await runCli(['replicate', lab.metaUrl, '--once']);
    assert.match(idle.stdout, /replicated 0 slice\(s\), 0 block/);
  });
});

describe('replicator across a faulty link', () => {
  it('replicates a mixed dataset completely and correctly through latency, failed calls, a blackout and truncated bodies', async (t) => {
    const lab = await makeRegionLab();
    try {
      const files = await writeMixed(lab, 23, 50);
      // The link's faults on both sides, scaled down 10x in time: latency 5-20 ms (50-200 ms), a 1 s blackout (10 s).
      const faulty = (region: 'a' | 'b', seed: number): { fault: FaultStore; store: ObjectStore } => {
        const fault = new FaultStore(lab.store(region), { seed, latencyMs: [5, 20], errorRate: 0.1, truncateRate: region === 'a' ? 0.1 : 0.05 });
        return { fault, store: new RetryStore(fault, { attemptsMax: 4, backoffMsMin: 5, backoffMsMax: 100, callTimeoutMs: 5000 }) };
      };
      const a = faulty('a', 101);
      const b = faulty('b', 202);
      const { meta } = await lab.tools();
      const { Replicator } = await import('../../src/region/replicate.js');
      const rep = new Replicator({
        meta,
        stores: new Map([
          ['a', a.store],
          ['b', b.store],
        ]),
        parallel: 8,
        retries: () => (a.store as RetryStore).stats().retries + (b.store as RetryStore).stats().retries,
      });
      const blackout = setTimeout(() => b.fault.blackout(1000), 300);
      const r = await rep.runOnce({ stallMs: 20_000 });
      clearTimeout(blackout);
      assert.equal(r.pending, 0, 'nothing left pending');
      const fa = a.fault.stats();
      const fb = b.fault.stats();
      assert.ok(fa.truncations > 0 && fa.errorsBefore + fa.errorsAfter > 0, `faults in a: ${JSON.stringify(fa)}`);
      assert.ok(fb.refused > 0, `the blackout refused calls: ${JSON.stringify(fb)}`);
      assert.ok(rep.stats.retries > 0);
      t.diagnostic(`faults a ${JSON.stringify(fa)}; b ${JSON.stringify(fb)}; replicator ${JSON.stringify(rep.stats)}`);
      await checkComplete(lab, files);
    } finally {
      await lab.cleanup();
    }
  });
});

/** A store that answers putChecked with a fixed verdict, as an S3 store compares the server's ETag. */
class VerdictStore extends CountingStore {
  verdict: boolean | undefined;
  constructor(inner: ObjectStore, verdict: boolean | undefined) {
    super(inner);
    this.verdict = verdict;
  }
  async putChecked(key: string, data: Buffer, options?: CallOptions): Promise<boolean | undefined> {
    await this.put(key, data, options);
    return this.verdict;
  }
}

describe('--verify put', () => {
  it("takes the store's digest when it matches and reads the copy back when it differs or there is none", async () => {
    for (const [verdict, readsBack] of [[true, false], [undefined, true], [false, true]] as const) {
      const lab = await makeRegionLab();
      try {
        const files = await writeMixed(lab, 5, 12);
        const blocks = (await lab.liveBlocks()).length;
        const b = new VerdictStore(lab.store('b'), verdict);
        const rep = await lab.replicator({ stores: new Map<string, ObjectStore>([['a', lab.store('a')], ['b', b]]), verify: 'put' });
        const r = await rep.runOnce();
        assert.equal(r.pending, 0);
        assert.equal(b.calls.put, blocks);
        assert.equal(b.calls.get, readsBack ? blocks : 0, `verdict ${String(verdict)}: ${b.calls.get} reads of ${blocks} copies`);
        assert.equal(rep.stats.verifyFailures, 0);
        await checkComplete(lab, files);
      } finally {
        await lab.cleanup();
      }
    }
  });
});

describe('the first replication of data written before the replicator started', () => {
  let lab: RegionLab;
  before(async () => {
    ensureBuilt();
    lab = await makeRegionLab();
  });
  after(() => lab.cleanup());

  it('status counts what is not yet copied as backlog, and the copied bytes survive SIGKILL exactly', async (t) => {
    const files = await writeMixed(lab, 23, 40);
    const B = 64 * KiB;
    /** Encoded sizes of the block objects in b, by key. */
    const inB = async (): Promise<Map<string, number>> => {
      const m = new Map<string, number>();
      for await (const o of listAll(lab.store('b'), 'chunks/')) m.set(o.key, o.size);
      return m;
    };
    // Throttled so that each run is killed part-way through the bootstrap.
    const args = ['replicate', lab.metaUrl, '--once', '--parallel', '2', '--bwlimit', '1M'];
    let kills = 0;
    const seen: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await runCli(args, 1500);
      if (r.signal !== 'SIGKILL') {
        assert.equal(r.code, 0, r.stderr);
        break;
      }
      kills++;
      const { meta } = await lab.tools();
      const objects = await inB();
      let blocksLeft = 0;
      let bytesLeft = 0;
      let markedBytes = 0;
      let markedBlocks = 0;
      for (const [id, s] of await meta.listSlices()) {
        const n = Math.ceil(s.size / B);
        if ((s.copies ?? []).includes('b')) {
          markedBlocks += n;
          for (let b = 0; b < n; b++) markedBytes += objects.get(blockKey(id, b, Math.min(B, s.size - b * B)))!;
        } else {
          blocksLeft += n;
          bytesLeft += s.size;
        }
      }
      const st = await runCli(['status', lab.metaUrl, '--json']);
      assert.equal(st.code, 0, st.stderr);
      const rep = (JSON.parse(st.stdout) as { replication: ReplicationStatus[] }).replication.find((x) => x.name === '*>*');
      assert.ok(rep !== undefined, 'a checkpoint after the first run');
      seen.push(`${rep.backlog.blocks}/${blocksLeft} blocks left, lag ${rep.lagSeconds.toFixed(1)} s, copied ${rep.stats.copiedBytes['a>b'] ?? 0}/${markedBytes} bytes`);
      assert.ok(blocksLeft > 0, 'killed before the end');
      assert.equal(rep.backlog.blocks, blocksLeft, `backlog after kill ${kills}: ${JSON.stringify(rep.backlog)}`);
      assert.equal(rep.backlog.bytes, bytesLeft);
      assert.ok(rep.lagSeconds > 0, `lag after kill ${kills}: ${rep.lagSeconds}`);
      // What the killed run recorded as copied is counted, exactly: the counters moved with the marks.
      assert.equal(rep.stats.copiedBytes['a>b'] ?? 0, markedBytes, `copied bytes after kill ${kills}`);
      assert.equal(rep.stats.copiedBlocks, markedBlocks);
    }
    t.diagnostic(`${kills} kills: ${seen.join('; ')}`);
    assert.ok(kills >= 1, 'at least one run was killed mid-way');
    // Finished by a bucket scan: what the killed runs copied and never marked is found and counted there.
    const final = await runCli(['replicate', lab.metaUrl, '--scan', '--once', '--parallel', '8']);
    assert.equal(final.code, 0, final.stderr);
    await checkComplete(lab, files);
    // Every copy counted once over all the runs: the bytes in b, no more, no less.
    const { engine } = await lab.tools();
    const cp = await loadCheckpoint(engine, '*>*');
    const objects = await inB();
    assert.equal(cp?.stats.copiedBytes['a>b'], [...objects.values()].reduce((x, y) => x + y, 0));
    assert.equal(cp?.stats.copiedBlocks, objects.size);
  });
});

describe('replicate --bwlimit interrupted', () => {
  let lab: RegionLab;
  before(async () => {
    ensureBuilt();
    lab = await makeRegionLab();
  });
  after(() => lab.cleanup());

  it('SIGINT stops a bandwidth-limited run at once with exit 130, leaving a checkpoint the next run finishes from', async (t) => {
    const files = await writeMixed(lab, 5, 40);
    const total = (await lab.liveBlocks()).length;
    // At 512 KiB/s the dataset takes far longer than the run is given: the signal lands mid-copy, in the
    // bootstrap (the replicator never ran before).
    const args = ['replicate', lab.metaUrl, '--once', '--parallel', '4', '--bwlimit', '512K'];
    const first = await runCli(args, 3000, 'SIGINT');
    t.diagnostic(`stopped ${first.exitedMs.toFixed(0)} ms after SIGINT: ${first.stderr.trim()}`);
    assert.equal(first.code, 130, `exit code after SIGINT: ${first.code} ${first.signal ?? ''} ${first.stderr}`);
    assert.match(first.stderr, /interrupted \(SIGINT\)/);
    // Promptly: well within the seconds a throttled copy of what is left would take.
    assert.ok(first.exitedMs < 5000, `exited ${first.exitedMs} ms after SIGINT`);
    const { engine, meta } = await lab.tools();
    const cp = await loadCheckpoint(engine, '*>*');
    assert.ok(cp !== undefined, 'a checkpoint was written');
    assert.equal(cp.claimed, undefined, 'nothing left claimed: the unfinished slices are pending');
    const marked = [...(await meta.listSlices()).values()].filter((s) => s.copies !== undefined).length;
    // Copy counters equal what the marks record (written with them), as after a kill.
    let markedBlocks = 0;
    for (const s of (await meta.listSlices()).values()) if (s.copies !== undefined) markedBlocks += Math.ceil(s.size / (64 * KiB));
    assert.equal(cp.stats.copiedBlocks, markedBlocks);
    assert.ok(markedBlocks < total, `${markedBlocks} of ${total} blocks copied before SIGINT`);
    t.diagnostic(`${marked} slices (${markedBlocks} of ${total} blocks) copied before SIGINT; pending ${cp.pending.length}`);
    const final = await runCli(['replicate', lab.metaUrl, '--once', '--parallel', '8']);
    assert.equal(final.code, 0, final.stderr);
    await checkComplete(lab, files);
    // Copies made before the signal and kept by the next run count once: the counters end at the bytes in b.
    let inB = 0;
    for await (const o of listAll(lab.store('b'), 'chunks/')) inB += o.size;
    assert.equal((await loadCheckpoint(engine, '*>*'))?.stats.copiedBytes['a>b'], inB);
  });
});
