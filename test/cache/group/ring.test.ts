/**
 * Weighted rendezvous placement (src/cache/group/ring.ts): shares follow weights, one member joining or leaving
 * moves at most 1.3/N of the keys and only to or from that member, weight 0 drains. Seeded; the seed is printed.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { blockKey } from '../../../src/chunk/keys.js';
import { Ring, type RingMember } from '../../../src/cache/group/ring.js';
import { mulberry32 } from '../../../src/util/random.js';

const SEED = Number(process.env['FERRY_TEST_SEED'] ?? 0x51ed);
const KEYS = 20_000;

function keys(rand: () => number): string[] {
  return Array.from({ length: KEYS }, () => blockKey(Math.floor(rand() * 1e9), Math.floor(rand() * 16), 4 << 20));
}

/** N members at loopback ports, unequal weights in [100, 130). */
function members(n: number, rand: () => number): RingMember[] {
  return Array.from({ length: n }, (_, i) => ({ id: `10.0.${i >> 8}.${i & 255}:${9000 + i}`, weight: 100 + Math.floor(rand() * 30) }));
}

function owners(ring: Ring, ks: string[]): Array<string | undefined> {
  return ks.map((k) => ring.owner(k)?.id);
}

void describe('cache group ring (weighted rendezvous)', () => {
  void it(`one of N joining or leaving moves <= 1.3/N of the keys, all to or from it (seed ${SEED})`, () => {
    const rand = mulberry32(SEED);
    const ks = keys(rand);
    for (let n = 4; n <= 16; n++) {
      const all = members(n, rand);
      const full = owners(new Ring(all), ks);
      for (let leave = 0; leave < n; leave += Math.max(1, Math.floor(n / 3))) {
        const gone = all[leave]!.id;
        const fewer = owners(new Ring(all.filter((m) => m.id !== gone)), ks);
        let moved = 0;
        for (let i = 0; i < ks.length; i++) {
          if (full[i] === fewer[i]) continue;
          moved++;
          // Leaving (full -> fewer) moves only the leaver's keys; joining (fewer -> full) only gives keys to it.
          assert.equal(full[i], gone, `seed ${SEED}: key ${ks[i]} moved between two members that stayed`);
        }
        assert.ok(moved / ks.length <= 1.3 / n, `seed ${SEED}: N=${n}, ${gone} leaving moved ${moved} of ${ks.length} keys (> 1.3/N)`);
        assert.ok(moved > 0, 'the leaver owned something');
      }
    }
  });

  void it(`shares follow weights (seed ${SEED})`, () => {
    const rand = mulberry32(SEED + 1);
    const ks = keys(rand);
    const ms: RingMember[] = [
      { id: 'a:1', weight: 1 },
      { id: 'b:1', weight: 2 },
      { id: 'c:1', weight: 3 },
      { id: 'd:1', weight: 4 },
    ];
    const counts = new Map<string, number>();
    for (const o of owners(new Ring(ms), ks)) counts.set(o!, (counts.get(o!) ?? 0) + 1);
    for (const m of ms) {
      const share = (counts.get(m.id) ?? 0) / ks.length;
      assert.ok(Math.abs(share - m.weight / 10) < 0.02, `seed ${SEED}: ${m.id} owns ${share}, expected ${m.weight / 10}`);
    }
  });

  void it(`weight 0 drains a member, and moves only its keys (seed ${SEED})`, () => {
    const rand = mulberry32(SEED + 2);
    const ks = keys(rand);
    const ms = members(6, rand);
    const before = owners(new Ring(ms), ks);
    const drained = ms.map((m, i) => (i === 2 ? { ...m, weight: 0 } : m));
    const after = owners(new Ring(drained), ks);
    assert.ok(!after.includes(ms[2]!.id), 'a drained member owns nothing');
    for (let i = 0; i < ks.length; i++) if (before[i] !== after[i]) assert.equal(before[i], ms[2]!.id);
    assert.equal(new Ring([{ id: 'x:1', weight: 0 }]).owner(ks[0]!), undefined, 'no owner when every weight is 0');
    assert.equal(new Ring([]).owner(ks[0]!), undefined);
  });

  void it('every client computes the same owner whatever order it lists members in', () => {
    const rand = mulberry32(SEED + 3);
    const ks = keys(rand).slice(0, 2000);
    const ms = members(9, rand);
    assert.deepEqual(owners(new Ring(ms), ks), owners(new Ring([...ms].reverse()), ks));
  });

  void it('rejects bad weights', () => {
    assert.throws(() => new Ring([{ id: 'a:1', weight: -1 }]), /weight must be/);
    assert.throws(() => new Ring([{ id: 'a:1', weight: Number.NaN }]), /weight must be/);
  });
});
