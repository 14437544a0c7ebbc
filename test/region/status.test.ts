/**
 * The replicator's figures under load (issue 5: backlog in blocks and bytes, lag, copied bytes per region
 * pair, errors and retries), read the ways an operator reads them — `replicationStatus` (what `ferry status`
 * and the metrics endpoint print), `ferry status --json`, and the replicator's own counters — while a writer
 * commits in region a and a replicator copies to b over a slow link that fails calls and goes dark once.
 * While the writer outruns the replicator the backlog and lag are positive and the copied bytes only grow;
 * once the writer stops, everything settles: backlog zero, lag zero, nothing pending, and the copied bytes
 * cover every block in b.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { FaultStore } from '../../src/object/faults.js';
import { RetryStore } from '../../src/object/retry.js';
import { listAll, type ObjectStore } from '../../src/object/store.js';
import { replicationStatus, Replicator, type ReplicationStatus } from '../../src/region/replicate.js';
import { CLI, ensureBuilt } from '../cli/helpers.js';
import { makeRegionLab, pseudoRandom, type RegionLab } from './helpers.js';

const KiB = 1024;
/** The writer's pace: one 96 KiB file (two 64 KiB blocks) every 20 ms, about 4.8 MiB/s, for WRITE_MS. */
const WRITE_MS = 2000;
const FILE_BYTES = 96 * KiB;
const WRITE_GAP_MS = 20;
/**
 * The link to b: 20-40 ms per call and two copies in flight, about 3 MiB/s, well below the writer's pace, so a
 * backlog builds while the writer runs and drains in a few seconds after.
 */
const LINK_LATENCY_MS: readonly [number, number] = [20, 40];
const PARALLEL = 2;
/** Time for the replicator to catch up once the writer stops. */
const SETTLE_MS_MAX = 30_000;

const execFileP = promisify(execFile);

interface Sample {
  at: number;
  status: ReplicationStatus;
  copied: number;
}

describe('replication figures under load', () => {
  let lab: RegionLab;
  before(async () => {
    ensureBuilt();
    lab = await makeRegionLab();
  });
  after(() => lab.cleanup());

  it('backlog and lag grow while a writer outruns the replicator, copied bytes only grow, and all settle at zero', async (t) => {
    const { meta } = await lab.tools();
    const fault = new FaultStore(lab.store('b'), { seed: 7, errorRate: 0.05, latencyMs: LINK_LATENCY_MS });
    const b = new RetryStore(fault, { attemptsMax: 2, backoffMsMin: 1, backoffMsMax: 5, callTimeoutMs: 5000 });
    const stores = new Map<string, ObjectStore>([
      ['a', lab.store('a')],
      ['b', b],
    ]);
    const rep = new Replicator({ meta, stores, parallel: PARALLEL, retries: () => b.stats().retries });
    const stop = new AbortController();
    const following = rep.run({ signal: stop.signal, pollMs: 20 });

    const samples: Sample[] = [];
    const sample = async (): Promise<ReplicationStatus> => {
      const [status] = await replicationStatus(meta);
      assert.ok(status !== undefined, 'a replicator checkpoint exists');
      samples.push({ at: Date.now(), status, copied: status.stats.copiedBytes['a>b'] ?? 0 });
      return status;
    };

    const va = await lab.open('a');
    await va.mkdir('/load');
    const started = Date.now();
    let commits = 0;
    let midCli: Promise<{ stdout: string }> | undefined;
    // b goes dark once mid-run: with two attempts per call, the copies caught in it fail and are retried later.
    const blackout = setTimeout(() => fault.blackout(300), WRITE_MS / 2);
    while (Date.now() - started < WRITE_MS) {
      await va.writeFile(`/load/f${commits}`, pseudoRandom(FILE_BYTES, 1000 + commits));
      commits++;
      if (commits % 10 === 0) await sample();
      if (midCli === undefined && Date.now() - started > WRITE_MS * 0.75) midCli = execFileP(process.execPath, [CLI, 'status', lab.metaUrl, '--json']);
      await new Promise((resolve) => setTimeout(resolve, WRITE_GAP_MS));
    }
    clearTimeout(blackout);
    await va.close();
    const loaded = await sample();

    // While the writer ran: a backlog in blocks and bytes, a lag, and what `ferry status --json` shows too.
    assert.ok(loaded.backlog.blocks > 0 && loaded.backlog.bytes > 0, `backlog at the writer's end: ${JSON.stringify(loaded.backlog)}`);
    assert.ok(loaded.lagSeconds > 0, `lag at the writer's end: ${loaded.lagSeconds}`);
    const mid = JSON.parse((await midCli!).stdout) as { replication: ReplicationStatus[] };
    const midStatus = mid.replication.find((r) => r.name === '*>*');
    assert.ok(midStatus !== undefined && midStatus.backlog.blocks > 0 && midStatus.lagSeconds > 0, `ferry status mid-run: ${JSON.stringify(midStatus)}`);
    assert.ok(midStatus.backlog.blocks <= commits * 2, 'the backlog counts blocks, at most two per committed file');

    // The writer is done: the replicator catches up.
    const settleBy = Date.now() + SETTLE_MS_MAX;
    let settled: ReplicationStatus;
    for (;;) {
      settled = await sample();
      if ((settled.backlog.blocks === 0 && settled.pending === 0 && settled.seq === settled.lastSeq) || Date.now() > settleBy) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    stop.abort();
    await following;
    assert.equal(settled.backlog.blocks, 0, `backlog after the writer stopped: ${JSON.stringify(settled)}`);
    assert.equal(settled.backlog.bytes, 0);
    assert.equal(settled.lagSeconds, 0);
    assert.equal(settled.pending, 0);
    assert.equal(settled.seq, settled.lastSeq, 'the position reached the end of the log');

    // Copied bytes per region pair only grow, and cover every block object in b (retried copies count again).
    for (let i = 1; i < samples.length; i++) assert.ok(samples[i]!.copied >= samples[i - 1]!.copied, `copied bytes fell: ${samples.map((s) => s.copied).join(' ')}`);
    let inB = 0;
    let objectsInB = 0;
    for await (const o of listAll(lab.store('b'), 'chunks/')) {
      inB += o.size;
      objectsInB++;
    }
    assert.equal(objectsInB, commits * 2, 'every block of every file is in b');
    assert.ok(settled.stats.copiedBytes['a>b']! >= inB, `copied a>b ${settled.stats.copiedBytes['a>b']} < ${inB} bytes in b`);
    assert.ok(settled.stats.copiedBlocks >= objectsInB);
    assert.deepEqual(Object.keys(settled.stats.copiedBytes), ['a>b'], 'one region pair');
    // The failing link shows in the counters: retried calls, and copies that failed even so (the blackout).
    assert.ok(settled.stats.retries > 0, `retries: ${settled.stats.retries}`);
    assert.ok(settled.stats.errors > 0, `errors: ${settled.stats.errors} (fault stats ${JSON.stringify(fault.stats())})`);

    // `ferry status` prints the same settled figures.
    const final = JSON.parse((await execFileP(process.execPath, [CLI, 'status', lab.metaUrl, '--json'])).stdout) as { replication: ReplicationStatus[] };
    const fin = final.replication.find((r) => r.name === '*>*');
    assert.equal(fin?.backlog.blocks, 0);
    assert.equal(fin?.lagSeconds, 0);
    assert.equal(fin?.stats.copiedBytes['a>b'], settled.stats.copiedBytes['a>b']);
    assert.equal(fin?.stats.errors, settled.stats.errors);
    assert.equal(fin?.stats.retries, settled.stats.retries);
    const text = (await execFileP(process.execPath, [CLI, 'status', lab.metaUrl])).stdout;
    assert.match(text, /replication at seq (\d+) of \1, lag 0\.0s, backlog 0 blocks/);
    assert.match(text, /copied a -> b [\d.]+ [KMG]i?B; \d+ blocks, errors [1-9]\d*, retries [1-9]\d*/);

    const peak = samples.reduce((m, s) => (s.status.backlog.blocks > m.status.backlog.blocks ? s : m), samples[0]!);
    t.diagnostic(
      `${commits} commits in ${WRITE_MS} ms; peak backlog ${peak.status.backlog.blocks} blocks (${peak.status.backlog.bytes} bytes), ` +
        `lag ${peak.status.lagSeconds.toFixed(2)} s; settled after ${samples.length} samples; counters ${JSON.stringify(settled.stats)}`,
    );
  });
});
