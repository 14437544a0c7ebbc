/**
 * Egress accounting (src/region/egress.ts, src/meta/egress.ts): clients count bucket bytes per (bucket region
 * -> client region), flush them as their own record, and `ferry status` sums the records per pair for the last
 * hour and since start (clients that have gone included).
 */

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { EGRESS_HOUR_MS, egressTotals } from '../../src/meta/egress.js';
import { openMetaEngine } from '../../src/meta/registry.js';
import { EgressMeter } from '../../src/region/egress.js';
import { MemStore } from '../../src/object/mem.js';
import { ensureBuilt, ok } from '../cli/helpers.js';
import { makeGroupVolume, MiB } from '../cache/group/helpers.js';

const root = mkdtempSync(path.join(tmpdir(), 'ferry-egress-'));
after(() => rmSync(root, { recursive: true, force: true }));

void describe('egress accounting', () => {
  void it('counts per pair, keeps the last hour apart from the total, and sums the clients', async () => {
    const engine = await openMetaEngine(`sqlite://${root}/e.db`, { create: true });
    try {
      const now = Date.now();
      const c = new EgressMeter('c');
      const b = new EgressMeter('b');
      c.add('a', 1000, now - 2 * EGRESS_HOUR_MS);
      c.add('a', 300, now);
      c.add('b', 7, now);
      b.add('a', 50, now);
      c.start(engine, 60_000);
      b.start(engine, 60_000);
      await c.close();
      await b.close();
      assert.deepEqual(await egressTotals(engine, { now }), [
        { from: 'a', to: 'b', lastHour: 50, total: 50 },
        { from: 'a', to: 'c', lastHour: 300, total: 1300 },
        { from: 'b', to: 'c', lastHour: 7, total: 7 },
      ]);
      // A wrapped bucket counts what its GETs return, ranged ones included.
      const m = new EgressMeter('c');
      const inner = new MemStore();
      await inner.put('k', Buffer.alloc(100));
      const s = m.wrap(inner, 'a');
      await s.get('k');
      await s.get('k', { offset: 10, length: 5 });
      assert.deepEqual([...m.totals()], [['a', 105]]);
    } finally {
      await engine.close();
    }
  });

  void it('ferry status shows the totals of clients that read', async () => {
    ensureBuilt();
    const gv = await makeGroupVolume({ size: 3 * MiB, seed: 5, blockBytes: MiB });
    try {
      const v = await gv.open({ memCacheBytes: 0 });
      await v.readFile('/data');
      await v.close();
      const text = ok(['status', gv.metaUrl]);
      assert.match(text, /egress \(bucket region -> client region\):\n {2}default -> default: 3\.00 MiB in the last hour, 3\.00 MiB since start\n/);
      assert.match(text, /cache groups: none/);
    } finally {
      await gv.cleanup();
    }
  });
});
