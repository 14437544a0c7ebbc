/**
 * SpeculativeReads (meta/speculate.ts): a remembered record is handed out only while fresh, a record that made
 * a speculative attempt conflict is not remembered for a while, and memory stays bounded.
 */

import assert from 'node:assert/strict';
import { it } from 'node:test';
import { SPECULATE_COOL_MS, SPECULATE_ENTRIES_MAX, SPECULATE_FRESH_MS, SPECULATE_VALUE_CHARS_MAX, SpeculativeReads } from '../../src/meta/speculate.js';

it('fresh for FRESH_MS; cooled after a conflict; bounded in count and size', () => {
  let clock = 0;
  const r = new SpeculativeReads<string | null>(() => clock);
  r.remember('a', 'v1', '{"x":1}');
  r.remember('gone', null, undefined);
  assert.deepEqual(r.fresh('a'), { ver: 'v1', raw: '{"x":1}' });
  assert.deepEqual(r.fresh('gone'), { ver: null, raw: undefined }, 'a missing record is remembered as missing');
  clock += SPECULATE_FRESH_MS;
  assert.equal(r.fresh('a'), undefined, 'stale after FRESH_MS');
  r.remember('a', 'v2', '{"x":2}');
  r.conflicted(['a']);
  assert.equal(r.fresh('a'), undefined, 'forgotten by the conflict');
  r.remember('a', 'v3', '{"x":3}');
  assert.equal(r.fresh('a'), undefined, 'not remembered while cooling');
  clock += SPECULATE_COOL_MS;
  r.remember('a', 'v4', '{"x":4}');
  assert.equal(r.fresh('a')?.ver, 'v4', 'remembered again after COOL_MS');
  r.remember('big', 'v', 'x'.repeat(SPECULATE_VALUE_CHARS_MAX + 1));
  assert.equal(r.fresh('big'), undefined, 'a long value is not kept');
  for (let i = 0; i <= SPECULATE_ENTRIES_MAX; i++) r.remember(`k${i}`, 'v', '1');
  assert.equal(r.fresh('a'), undefined, 'the oldest went first');
  assert.equal(r.fresh('k0'), undefined);
  assert.equal(r.fresh(`k${SPECULATE_ENTRIES_MAX}`)?.ver, 'v');
});
