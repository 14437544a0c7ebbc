/**
 * The replicator as a changelog consumer: registered under its checkpoint's name with the checkpoint's seq as
 * its position, the log is trimmed behind it as it advances; left behind the retention bound, it gets
 * LogTrimmedError and re-bootstraps by itself (a scan of the slice records), copying what the trimmed entries
 * named, instead of failing.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setLogRetention } from '../../src/meta/retention.js';
import { consumerName, loadCheckpoint, type ReplicateEvent } from '../../src/region/replicate.js';
import { badBlocks, makeRegionLab, pseudoRandom, type RegionLab } from './helpers.js';

async function writeFiles(lab: RegionLab, tag: string, n: number): Promise<void> {
  const va = await lab.open('a');
  await va.mkdir(`/${tag}`, { recursive: true });
  for (let i = 0; i < n; i++) await va.writeFile(`/${tag}/f${i}`, pseudoRandom(1000 + i * 3000, i + 1));
  await va.close();
}

describe('the replicator as a changelog consumer', () => {
  let lab: RegionLab;
  before(async () => {
    lab = await makeRegionLab();
  });
  after(() => lab.cleanup());

  it('registers with its checkpoint as position, and the log is trimmed behind it as it advances', async () => {
    await writeFiles(lab, 'one', 8);
    const rep = await lab.replicator();
    const r = await rep.runOnce();
    assert.equal(r.pending, 0);
    const { engine } = await lab.tools();
    const cp = await loadCheckpoint(engine, rep.name);
    const consumers = await engine.listConsumers();
    assert.deepEqual(
      consumers.map((c) => [c.name, c.position]),
      [[consumerName(rep.name), cp!.seq]],
    );
    const { floor, last } = await engine.logBounds();
    assert.equal(floor, cp!.seq, 'trimmed up to the replicator, the only consumer');
    assert.ok(last >= floor);
  });

  it('left behind the retention bound, it re-bootstraps by itself and copies everything', async () => {
    const { engine } = await lab.tools();
    const before = (await loadCheckpoint(engine, (await lab.replicator()).name))!.seq;
    // New files while the replicator is away; then the bound drops the entries it has not read.
    await writeFiles(lab, 'two', 10);
    await setLogRetention(engine, { entriesMax: 3 });
    const pruned = await engine.pruneLog();
    assert.ok(pruned.floor > before, `floor ${pruned.floor} is past the replicator's position ${before}`);
    const events: ReplicateEvent[] = [];
    const rep = await lab.replicator({ onEvent: (e) => events.push(e) });
    const r = await rep.runOnce();
    assert.equal(r.pending, 0);
    assert.ok(events.some((e) => e.type === 'bootstrap'), 'it bootstrapped');
    assert.deepEqual(
      events.filter((e) => e.type === 'error'),
      [],
    );
    const blocks = await lab.liveBlocks();
    assert.deepEqual(await badBlocks(lab.store('b'), blocks), [], 'every block in b, verifying');
    const cp = (await loadCheckpoint(engine, rep.name))!;
    assert.equal(cp.seq, await engine.lastSeq(), 'caught up with the log');
    assert.equal((await engine.listConsumers()).find((c) => c.name === consumerName(rep.name))?.position, cp.seq);
  });
});
