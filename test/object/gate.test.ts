/**
 * GateStore (src/object/gate.ts): a shut gate fails every call at once, naming the bucket and why, without
 * touching the store; a call after the probe interval probes again (one probe at a time, bounded); the first
 * probe that answers opens the gate for good, after which it is the store itself (the conformance suite).
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FaultStore } from '../../src/object/faults.js';
import { BucketUnreachableError, GateStore, probeWithin, type GateOptions } from '../../src/object/gate.js';
import { MemStore } from '../../src/object/mem.js';
import { isRetryable } from '../../src/object/store.js';
import { objectStoreConformance } from './conformance.js';

objectStoreConformance('gate opened by its first probe, over mem', async () => {
  const store = new GateStore(new MemStore(), { name: 'mem', reason: new Error('down at open'), probe: () => Promise.resolve(), probeIntervalMs: 0 });
  return { store, cleanup: () => store.close() };
});

/** A gate over a FaultStore (which counts the calls that reach it), with a scripted probe and a hand clock. */
function gated(options: Partial<GateOptions> = {}): { gate: GateStore; inner: FaultStore; clock: { ms: number }; probes: () => number; answer: { ok: boolean } } {
  const inner = new FaultStore(new MemStore(), { seed: 1 });
  const clock = { ms: 0 };
  const answer = { ok: false };
  let probes = 0;
  const gate = new GateStore(inner, {
    name: 'the bucket of region a (mem://a)',
    reason: new Error('connect ECONNREFUSED'),
    probe: async () => {
      probes++;
      await new Promise((r) => setTimeout(r, 5));
      if (!answer.ok) throw new Error(`still down (probe ${probes})`);
    },
    probeIntervalMs: 1000,
    now: () => clock.ms,
    ...options,
  });
  return { gate, inner, clock, probes: () => probes, answer };
}

function calls(gate: GateStore): Array<[string, () => Promise<unknown>]> {
  return [
    ['get', () => gate.get('k')],
    ['put', () => gate.put('k', Buffer.from('v'))],
    ['head', () => gate.head('k')],
    ['delete', () => gate.delete('k')],
    ['list', () => gate.list('')],
    ['putChecked', () => gate.putChecked('k', Buffer.from('v'))],
    ['sweepTemp', () => gate.sweepTemp(0)],
  ];
}

void describe('GateStore', () => {
  void it('shut: every call fails at once with BucketUnreachableError naming the bucket and why, and never reaches the store', async () => {
    const { gate, inner, probes } = gated();
    for (const [op, call] of calls(gate)) {
      await assert.rejects(call(), (err: unknown) => {
        assert.ok(err instanceof BucketUnreachableError, `${op}: ${String(err)}`);
        assert.equal(err.message, 'the bucket of region a (mem://a) is unreachable: connect ECONNREFUSED');
        assert.equal(err.code, 'EUNREACHABLE');
        assert.equal(err.bucket, 'the bucket of region a (mem://a)');
        assert.ok(err.cause instanceof Error);
        assert.equal(isRetryable(err), false, 'final for the retry wrapper');
        return true;
      });
    }
    assert.equal(inner.stats().calls, 0);
    assert.equal(probes(), 0, 'no probe before the interval has passed');
    assert.equal(gate.isOpen, false);
  });

  void it('after the interval a call probes first: a failed probe gives the new reason, one that answers opens the gate for good', async () => {
    const { gate, inner, clock, probes, answer } = gated();
    clock.ms = 1000;
    await assert.rejects(gate.get('k'), /is unreachable: still down \(probe 1\)/);
    assert.equal(probes(), 1);
    clock.ms = 1500;
    await assert.rejects(gate.get('k'), /still down \(probe 1\)/, 'not again within the interval');
    assert.equal(probes(), 1);
    answer.ok = true;
    clock.ms = 2000;
    await gate.put('k', Buffer.from('v'));
    assert.equal(gate.isOpen, true);
    assert.deepEqual(await gate.get('k'), Buffer.from('v'));
    // Open for good: later failures are the store's own, and nothing probes again.
    answer.ok = false;
    clock.ms = 10_000;
    inner.setDown(true);
    await assert.rejects(gate.get('k'), /injected fault: store down/);
    assert.equal(probes(), 2);
  });

  void it('calls that arrive during a probe wait for that one probe', async () => {
    const { gate, clock, probes, answer } = gated();
    clock.ms = 1000;
    const failed = await Promise.allSettled(Array.from({ length: 20 }, () => gate.get('k')));
    assert.ok(failed.every((r) => r.status === 'rejected' && r.reason instanceof BucketUnreachableError && /probe 1\)/.test(r.reason.message)));
    assert.equal(probes(), 1);
    answer.ok = true;
    clock.ms = 2000;
    const passed = await Promise.allSettled(Array.from({ length: 20 }, () => gate.list('')));
    assert.ok(passed.every((r) => r.status === 'fulfilled'));
    assert.equal(probes(), 2);
  });

  void it('a probe that never answers counts as failed after probeTimeoutMs', async () => {
    const { gate, clock } = gated({ probe: () => new Promise<void>(() => undefined), probeTimeoutMs: 50 });
    clock.ms = 1000;
    const t0 = performance.now();
    await assert.rejects(gate.get('k'), /is unreachable: no answer within 50 ms/);
    assert.ok(performance.now() - t0 < 2000);
  });

  void it('probeWithin: undefined when the probe answers, else why not; it never rejects', async () => {
    assert.equal(await probeWithin(() => Promise.resolve(), 100), undefined);
    const err = new Error('refused');
    assert.equal(await probeWithin(() => Promise.reject(err), 100), err);
    let aborted = false;
    const why = await probeWithin((signal) => new Promise<void>((_, reject) => signal.addEventListener('abort', () => ((aborted = true), reject(signal.reason as Error)))), 20);
    assert.match(String(why), /no answer within 20 ms/);
    assert.ok(aborted, "the probe's signal aborts at the timeout");
  });

  void it('rejects invalid options with a precise message', () => {
    const base = { name: 'b', reason: 'r', probe: () => Promise.resolve() };
    assert.throws(() => new GateStore(new MemStore(), { ...base, probeIntervalMs: -1 }), /probeIntervalMs must be an integer >= 0, got -1/);
    assert.throws(() => new GateStore(new MemStore(), { ...base, probeTimeoutMs: 1.5 }), /probeTimeoutMs must be an integer >= 0, got 1.5/);
  });
});
