/**
 * An SDK client rides out a slow metadata engine and one that fails: every operation of a small workload
 * succeeds with the right result, because RetryEngine (above the FaultEngine that `wrapEngine` puts under the
 * client) retries what failed before reaching the engine. Errors after a commit (outcome unknown) are not
 * injected here: those must surface, which test/meta/retry.test.ts checks.
 */

import type { Meta } from '../../src/meta/meta.js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FaultEngine } from '../../src/meta/faults.js';
import type { RetryEngine } from '../../src/meta/retry.js';
import { mulberry32 } from '../../src/util/random.js';
import type { Volume } from '../../src/index.js';
import { makeVolume } from '../helpers/volume.js';

const FILES = 24;

/** Creates, writes, reads, renames, lists and removes; checks every answer against what it wrote. */
async function workload(vol: Volume, tag: string): Promise<number> {
  let ops = 0;
  const dir = `/w-${tag}`;
  await vol.mkdir(dir);
  ops++;
  const content = (i: number): Buffer => Buffer.from(`${tag} file ${i} `.repeat(1 + (i % 7) * 50));
  for (let i = 0; i < FILES; i++) {
    await vol.writeFile(`${dir}/f${i}`, content(i));
    assert.equal((await vol.stat(`${dir}/f${i}`)).size, content(i).length, `size of f${i}`);
    ops += 2;
  }
  for (let i = 0; i < FILES; i++) {
    assert.deepEqual(await vol.readFile(`${dir}/f${i}`), content(i), `content of f${i}`);
    if (i % 2 === 0) await vol.rename(`${dir}/f${i}`, `${dir}/g${i}`);
    if (i % 3 === 0) await vol.setxattr(`${dir}/${i % 2 === 0 ? 'g' : 'f'}${i}`, 'user.i', Buffer.from(String(i)));
    ops += 3;
  }
  for (let i = 0; i < FILES; i += 4) {
    await vol.unlink(`${dir}/g${i}`);
    ops++;
  }
  const expected = Array.from({ length: FILES }, (_, i) => (i % 2 === 0 ? `g${i}` : `f${i}`)).filter((_, i) => i % 4 !== 0);
  assert.deepEqual((await vol.readdir(dir)).sort(), expected.sort());
  for (let i = 3; i < FILES; i += 6) assert.deepEqual(await vol.getxattr(`${dir}/${i % 2 === 0 ? 'g' : 'f'}${i}`, 'user.i'), Buffer.from(String(i)));
  return ops + 2;
}

void describe('an SDK client over a faulty metadata engine', () => {
  void it('a slow engine: every operation succeeds, nothing is retried', async () => {
    let faults: FaultEngine | undefined;
    const t = await makeVolume({
      wrapEngine: (e) => (faults = new FaultEngine(e, { seed: 11, latencyMs: [2, 15], replyLatencyMs: [2, 15] })),
      lookupCacheMs: 0,
    });
    try {
      const ops = await workload(t.vol, 'slow');
      const retry = (t.vol.vfs.meta as Meta).engine as RetryEngine;
      assert.equal(retry.stats().retries, 0);
      assert.ok(faults!.stats().txns > ops, `${faults!.stats().txns} transactions for ${ops} operations`);
    } finally {
      await t.cleanup();
    }
  });

  void it('failures before the commit and a blackout of 1.5 s: every operation succeeds with the right result', async (t) => {
    let faults: FaultEngine | undefined;
    const v = await makeVolume({
      // Every failure before the engine (outcome 'none'): what RetryEngine may retry.
      wrapEngine: (e) => (faults = new FaultEngine(e, { seed: 7, errorRate: 0.15, errorAfterRatio: 0, latencyMs: [0, 3] })),
      engineRetry: { random: mulberry32(7) },
      lookupCacheMs: 0,
    });
    try {
      await workload(v.vol, 'before');
      // The engine goes away while the client works, and comes back.
      const blackoutMs = 1500;
      const started = Date.now();
      faults!.blackout(blackoutMs);
      await workload(v.vol, 'blackout');
      assert.ok(Date.now() - started >= blackoutMs, 'the workload ran through the blackout');
      const retry = (v.vol.vfs.meta as Meta).engine as RetryEngine;
      const s = faults!.stats();
      t.diagnostic(`engine: ${s.txns} txns, ${s.errorsBefore} injected errors, ${s.refused} refused in the blackout; client retries ${retry.stats().retries}`);
      assert.ok(s.errorsBefore > 10, `only ${s.errorsBefore} injected errors`);
      assert.ok(s.refused > 0, 'nothing reached the engine during the blackout');
      assert.equal(s.errorsAfter, 0);
      assert.equal(retry.stats().failures, 0);
      assert.equal(retry.stats().retries, s.errorsBefore + s.refused, 'each refused call was tried again');
    } finally {
      await v.cleanup();
    }
  });
});
