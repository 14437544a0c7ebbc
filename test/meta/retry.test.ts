/**
 * RetryEngine: what it retries (failures whose outcome is known: nothing committed; reads and idempotent
 * calls whatever happened), what it never retries (a writing commit whose answer was lost, a restore, a
 * snapshot that already handed out records), and its bounds (attempts, total time).
 */

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { EngineUnavailableError, type LogOp, type MetaEngine } from '../../src/meta/engine.js';
import { FaultEngine } from '../../src/meta/faults.js';
import { engineRetryable, RetryEngine } from '../../src/meta/retry.js';
import { SqliteEngine } from '../../src/meta/sqlite.js';
import { mulberry32 } from '../../src/util/random.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function sqlite(): Promise<SqliteEngine> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-retry-'));
  dirs.push(dir);
  return new SqliteEngine(join(dir, 'meta.db'), { create: true });
}

/** Fast waits: the tests are about what is retried, not how long the waits are. */
const quick = { backoff: { baseMs: 1, capMs: 5 }, random: mulberry32(1) };

void describe('RetryEngine', () => {
  void it('classifies: outcome none is retryable everywhere, unknown only for reads and idempotent calls', () => {
    const none = new EngineUnavailableError('x', 'none');
    const unknown = new EngineUnavailableError('x', 'unknown');
    assert.equal(engineRetryable(none, 'once'), true);
    assert.equal(engineRetryable(unknown, 'once'), false);
    assert.equal(engineRetryable(unknown, 'read'), true);
    assert.equal(engineRetryable(unknown, 'idempotent'), true);
    assert.equal(engineRetryable(new Error('ENOENT'), 'read'), false);
    assert.equal(engineRetryable(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }), 'read'), false, 'raw driver errors are the engine core’s to classify');
  });

  void it('a write that failed before the engine is retried and commits once', async () => {
    const faults = new FaultEngine(await sqlite(), { seed: 3, errorRate: 0.5, errorAfterRatio: 0 });
    const engine = new RetryEngine(faults, quick);
    try {
      for (let i = 0; i < 40; i++) {
        const { seq } = await engine.commit(async (tx) => {
          tx.put('counter', '', 'n', i);
          await Promise.resolve();
        });
        assert.equal(seq, i + 1, 'each commit logged exactly once');
      }
      assert.ok(faults.stats().errorsBefore > 5);
      assert.equal(engine.stats().retries, faults.stats().errorsBefore);
      assert.equal(await engine.lastSeq(), 40);
    } finally {
      await engine.close();
    }
  });

  void it('a write whose answer was lost after the commit is not retried: the error surfaces, the commit stands', async () => {
    const inner = await sqlite();
    const faults = new FaultEngine(inner, { seed: 5, errorRate: 1, errorAfterRatio: 1 });
    const engine = new RetryEngine(faults, quick);
    try {
      let runs = 0;
      await assert.rejects(
        engine.commit(async (tx) => {
          runs++;
          tx.put('inode', '', '1', { a: 1 });
          await Promise.resolve();
        }),
        (e: unknown) => e instanceof EngineUnavailableError && e.outcome === 'unknown',
      );
      assert.equal(runs, 1);
      assert.equal(engine.stats().retries, 0);
      // A read after the same kind of failure is retried (it changes nothing): still failing here, it gives
      // up after its attempts.
      await assert.rejects(engine.txn((tx) => tx.get('inode', '', '1'), { readonly: true }), EngineUnavailableError);
      assert.equal(engine.stats().failures, 1);
    } finally {
      await engine.close();
    }
    const check = new SqliteEngine(inner.path);
    try {
      assert.deepEqual(await check.txn((tx) => tx.get('inode', '', '1')), { a: 1 }, 'the commit landed');
      assert.equal(await check.lastSeq(), 1);
    } finally {
      await check.close();
    }
  });

  void it('gives up after attemptsMax attempts, and when the next wait would pass retryMsMax', async () => {
    const faults = new FaultEngine(await sqlite(), { seed: 1 });
    faults.setDown(true);
    const counted = new RetryEngine(faults, { ...quick, attemptsMax: 4 });
    await assert.rejects(counted.lastSeq(), EngineUnavailableError);
    assert.deepEqual(counted.stats(), { retries: 3, failures: 1 });
    assert.equal(faults.stats().refused, 4);

    const timed = new RetryEngine(faults, { backoff: { baseMs: 40, capMs: 40 }, random: () => 0.99, retryMsMax: 200, attemptsMax: 1000 });
    const started = Date.now();
    await assert.rejects(timed.logBounds(), EngineUnavailableError);
    const took = Date.now() - started;
    assert.ok(took < 400, `gave up after ${took} ms`);
    assert.ok(timed.stats().retries >= 3 && timed.stats().retries <= 6, `${timed.stats().retries} retries within 200 ms of 39 ms waits`);
    faults.setDown(false);
    await faults.close();
  });

  void it('rides out a blackout: calls made during it succeed once the engine is back', async () => {
    const faults = new FaultEngine(await sqlite(), { seed: 2 });
    const engine = new RetryEngine(faults, { backoff: { baseMs: 20, capMs: 100 }, random: mulberry32(2) });
    try {
      faults.blackout(400);
      const started = Date.now();
      await engine.registerConsumer('c', 0);
      const { seq } = await engine.commit(async (tx) => {
        tx.put('inode', '', '1', { a: 1 });
        await Promise.resolve();
      });
      assert.ok(Date.now() - started >= 390);
      assert.equal(seq, 1);
      assert.deepEqual((await engine.listConsumers()).map((c) => [c.name, c.position]), [['c', 0]]);
    } finally {
      await engine.close();
    }
  });

  void it('a snapshot is retried only before it handed out a record; a restore never', async () => {
    const inner = await sqlite();
    await inner.txn(async (tx) => {
      tx.put('inode', '', '1', { a: 1 });
      tx.put('inode', '', '2', { a: 2 });
      await Promise.resolve();
    });
    let failFirst = true;
    let failMid = false;
    // Fails the way the core reports an unreachable server: before any record, or after the first.
    const flaky: MetaEngine = Object.create(inner) as MetaEngine;
    flaky.snapshot = async (onRecord) => {
      if (failFirst) {
        failFirst = false;
        throw new EngineUnavailableError('down', 'none');
      }
      return inner.snapshot(async (op) => {
        await onRecord(op);
        if (failMid) throw new EngineUnavailableError('lost mid-way', 'none');
      });
    };
    flaky.restore = () => Promise.reject(new EngineUnavailableError('down', 'none'));
    const engine = new RetryEngine(flaky, quick);
    const seen: LogOp[] = [];
    await engine.snapshot((op) => {
      seen.push(op);
    });
    assert.equal(seen.length, 2, 'retried before any record: every record once');
    failMid = true;
    seen.length = 0;
    await assert.rejects(
      engine.snapshot((op) => {
        seen.push(op);
      }),
      /lost mid-way/,
    );
    assert.equal(seen.length, 1, 'not retried after a record was handed out');
    await assert.rejects(engine.restore((async function* () {})(), 0), /down/);
    assert.equal(engine.stats().retries, 1);
    await inner.close();
  });
});
