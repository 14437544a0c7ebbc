/**
 * IdPool: ids are unique across clients allocating at once, and a client that allocates fast takes bigger
 * batches, so the counter record every client read-modify-writes is written a bounded number of times.
 */

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { BATCH_GROWTH_MAX, IdPool, REFILL_MS_MIN } from '../../src/meta/ids.js';
import { SqliteEngine } from '../../src/meta/sqlite.js';

it('ids are unique across pools; fast allocation grows the batch (bounded), slow allocation keeps it', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-ids-'));
  const engine = new SqliteEngine(join(dir, 'meta.db'), { create: true });
  try {
    let clock = 0;
    const now = (): number => clock;
    const fast = new IdPool(engine, 'nextInode', 10, now);
    const other = new IdPool(engine, 'nextInode', 10, now);
    const seen = new Set<number>();
    const take = async (p: IdPool, n: number): Promise<void> => {
      for (let i = 0; i < n; i++) {
        const id = await p.take();
        assert.ok(!seen.has(id), `id ${id} handed out twice`);
        seen.add(id);
      }
    };
    // Without the clock moving every refill is "fast": batches 10 (first), 20, 40, ... up to 10 * BATCH_GROWTH_MAX.
    const ids = 10 * BATCH_GROWTH_MAX * 4;
    await Promise.all([take(fast, ids), take(other, 25)]);
    const doublings = Math.log2(BATCH_GROWTH_MAX);
    // 10 + 20 + ... + 10 * 2^doublings, then full batches.
    const grown = 10 * (2 ** (doublings + 1) - 1);
    assert.equal(fast.refills, doublings + 1 + Math.ceil((ids - grown) / (10 * BATCH_GROWTH_MAX)));
    // A slow client (a refill per REFILL_MS_MIN or more) keeps its batch: one refill per 10 ids.
    const slow = new IdPool(engine, 'nextInode', 10, now);
    for (let r = 0; r < 5; r++) {
      clock += REFILL_MS_MIN;
      await take(slow, 10);
    }
    assert.equal(slow.refills, 5);
  } finally {
    await engine.close();
    await rm(dir, { recursive: true, force: true });
  }
});
