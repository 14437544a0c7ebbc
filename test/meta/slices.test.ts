import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cutSegments, visibleSegments, type SliceRef } from '../../src/meta/slices.js';
import { mulberry32, randomSeed } from '../../src/util/random.js';

const SEED = Number(process.env['FERRY_SEED'] ?? randomSeed());
console.log(`slices tests: seed ${SEED} (replay with FERRY_SEED=${SEED})`);

const ref = (pos: number, id: number, len: number, off = 0, size = 1000): SliceRef => ({ pos, id, size, off, len });

/** What each byte of a chunk reads: [slice id, offset in the slice], or undefined for an implicit zero. */
type Model = Array<[number, number] | undefined>;

function modelOf(refs: readonly SliceRef[], bytes: number): Model {
  const m: Model = new Array<[number, number] | undefined>(bytes).fill(undefined);
  for (const r of refs) for (let i = 0; i < r.len; i++) m[r.pos + i] = [r.id, r.off + i];
  return m;
}

function assertWellFormed(view: readonly SliceRef[]): void {
  for (let i = 0; i < view.length; i++) {
    const s = view[i]!;
    assert.ok(s.len > 0, `empty segment ${JSON.stringify(s)}`);
    if (i > 0) {
      const p = view[i - 1]!;
      assert.ok(p.pos + p.len <= s.pos, `segments overlap or are out of order: ${JSON.stringify(p)} ${JSON.stringify(s)}`);
    }
  }
}

describe('visibleSegments', () => {
  it('no references: nothing visible', () => {
    assert.deepEqual(visibleSegments([]), []);
  });

  it('one reference is visible as it is', () => {
    assert.deepEqual(visibleSegments([ref(10, 1, 5, 2)]), [ref(10, 1, 5, 2)]);
  });

  it('a later reference over the whole of an earlier one hides it', () => {
    assert.deepEqual(visibleSegments([ref(10, 1, 5), ref(0, 2, 100)]), [ref(0, 2, 100)]);
    assert.deepEqual(visibleSegments([ref(10, 1, 5), ref(10, 2, 5)]), [ref(10, 2, 5)]);
  });

  it('a later reference inside an earlier one splits it, moving the right part’s offset', () => {
    assert.deepEqual(visibleSegments([ref(0, 1, 100, 7), ref(40, 2, 10)]), [ref(0, 1, 40, 7), ref(40, 2, 10), ref(50, 1, 50, 57)]);
  });

  it('partial overlaps on either side trim the earlier reference', () => {
    assert.deepEqual(visibleSegments([ref(10, 1, 20), ref(0, 2, 15)]), [ref(0, 2, 15), ref(15, 1, 15, 5)]);
    assert.deepEqual(visibleSegments([ref(10, 1, 20), ref(25, 2, 15)]), [ref(10, 1, 15), ref(25, 2, 15)]);
  });

  it('disjoint references come out in position order, gaps left implicit', () => {
    assert.deepEqual(visibleSegments([ref(50, 1, 10), ref(0, 2, 10), ref(20, 3, 5)]), [ref(0, 2, 10), ref(20, 3, 5), ref(50, 1, 10)]);
  });

  it('adjacent references stay separate', () => {
    assert.deepEqual(visibleSegments([ref(0, 1, 10), ref(10, 2, 10)]), [ref(0, 1, 10), ref(10, 2, 10)]);
  });

  it('a later reference spanning several earlier ones replaces all it covers', () => {
    const refs = [ref(0, 1, 10), ref(10, 2, 10), ref(20, 3, 10), ref(30, 4, 10)];
    assert.deepEqual(visibleSegments([...refs, ref(5, 9, 30)]), [ref(0, 1, 5), ref(5, 9, 30), ref(35, 4, 5, 5)]);
  });

  it('zero references (id 0) hide data like any other reference', () => {
    assert.deepEqual(visibleSegments([ref(0, 1, 100), { pos: 30, id: 0, size: 0, off: 0, len: 70 }]), [
      ref(0, 1, 30),
      { pos: 30, id: 0, size: 0, off: 0, len: 70 },
    ]);
  });

  it('zero-length references are ignored', () => {
    assert.deepEqual(visibleSegments([ref(0, 1, 10), ref(5, 2, 0)]), [ref(0, 1, 10)]);
  });

  it('does not modify its input', () => {
    const refs = [ref(0, 1, 100, 3), ref(40, 2, 10)];
    const copy = structuredClone(refs);
    visibleSegments(refs);
    assert.deepEqual(refs, copy);
  });

  it(`matches a byte-array model on random reference lists (seed ${SEED})`, () => {
    const random = mulberry32(SEED);
    const int = (n: number): number => Math.floor(random() * n);
    const bytes = 64;
    for (let round = 0; round < 3000; round++) {
      const refs: SliceRef[] = [];
      const count = int(12);
      for (let i = 0; i < count; i++) {
        const pos = int(bytes);
        const len = int(bytes - pos + 1); // 0 allowed
        refs.push({ pos, id: int(4) === 0 ? 0 : i + 1, size: 200, off: int(100), len });
      }
      const view = visibleSegments(refs);
      assertWellFormed(view);
      assert.deepEqual(modelOf(view, bytes), modelOf(refs, bytes), `seed ${SEED} round ${round}: ${JSON.stringify(refs)}`);
    }
  });
});

describe('cutSegments', () => {
  const view = [ref(0, 1, 10, 100), ref(20, 2, 10), ref(30, 3, 10, 5)];

  it('cuts segments to the range and moves offsets', () => {
    assert.deepEqual(cutSegments(view, 5, 25), [ref(5, 1, 5, 105), ref(20, 2, 5)]);
    assert.deepEqual(cutSegments(view, 25, 35), [ref(25, 2, 5, 5), ref(30, 3, 5, 5)]);
  });

  it('a range over a gap or empty range gives nothing', () => {
    assert.deepEqual(cutSegments(view, 10, 20), []);
    assert.deepEqual(cutSegments(view, 5, 5), []);
    assert.deepEqual(cutSegments(view, 50, 60), []);
  });

  it('a range covering everything returns the view', () => {
    assert.deepEqual(cutSegments(view, 0, 1000), view);
  });

  it(`matches a byte-array model on random views and ranges (seed ${SEED})`, () => {
    const random = mulberry32(SEED ^ 0x5eed);
    const int = (n: number): number => Math.floor(random() * n);
    const bytes = 64;
    for (let round = 0; round < 2000; round++) {
      const refs: SliceRef[] = [];
      for (let i = int(8); i > 0; i--) {
        const pos = int(bytes);
        refs.push({ pos, id: i, size: 200, off: int(100), len: 1 + int(bytes - pos) });
      }
      const v = visibleSegments(refs);
      const from = int(bytes + 1);
      const to = from + int(bytes + 1 - from);
      const cut = cutSegments(v, from, to);
      assertWellFormed(cut);
      const whole = modelOf(v, bytes);
      const expected = whole.map((b, i) => (i >= from && i < to ? b : undefined));
      assert.deepEqual(modelOf(cut, bytes), expected, `seed ${SEED} round ${round}: [${from}, ${to}) of ${JSON.stringify(v)}`);
    }
  });
});
