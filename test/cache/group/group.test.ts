/**
 * A cache group in one process, over real HTTP: four clients reading the same 256 MiB through a group of two
 * nodes cause 256 MiB of bucket reads in total, counted by the bucket's store (each block fetched once, by
 * its owner); every client gets the right bytes and reads nothing from the bucket itself.
 */

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { blockHeaderBytes } from '../../../src/chunk/codec.js';
import { openMetaEngine, type Volume } from '../../../src/index.js';
import { egressTotals } from '../../../src/meta/egress.js';
import { digestOf, makeGroupVolume, MiB, type GroupVolume } from './helpers.js';

const SIZE = 256 * MiB;
const BLOCK = 4 * MiB;
/** Generous: the whole group shares this process's event loop (a timeout would send a client to the bucket). */
const TIMEOUT_MS = 60_000;

void describe('cache group: four clients, two nodes, one process', () => {
  let gv: GroupVolume;
  before(async () => {
    gv = await makeGroupVolume({ size: SIZE, seed: 16, blockBytes: BLOCK });
  });
  after(() => gv.cleanup());

  void it('256 MiB read by four clients through two nodes: 256 MiB read from the bucket, by the nodes', async () => {
    const nodes: Volume[] = [];
    for (const n of ['n1', 'n2']) {
      nodes.push(
        await gv.open({
          memCacheBytes: 0,
          cacheDir: join(gv.dir, n),
          cacheBytes: 1024 * MiB,
          cacheGroup: { group: 'g', listen: { host: '127.0.0.1', port: 0 }, role: 'node', timeoutMs: TIMEOUT_MS },
        }),
      );
    }
    const clients: Volume[] = [];
    for (let i = 0; i < 4; i++) clients.push(await gv.open({ memCacheBytes: 32 * MiB, cacheGroup: { group: 'g', sharing: false, timeoutMs: TIMEOUT_MS } }));
    for (const c of clients) assert.equal(c.cacheGroup?.view.members().length, 2, 'each client sees both nodes');

    const digests = await Promise.all(clients.map((c) => digestOf(c, '/data')));
    for (const d of digests) assert.equal(d, gv.digest, 'right bytes');

    const blocks = SIZE / BLOCK;
    const t = gv.bucket.traffic;
    assert.equal(t.gets, blocks, `one GET per block (${t.gets} GETs for ${blocks} blocks)`);
    assert.equal(t.getBytes, SIZE + blocks * blockHeaderBytes(BLOCK), `${t.getBytes} bytes read from the bucket: each block once (its header included)`);
    for (const c of clients) {
      assert.equal(c.stats().chunks.blocksRead, 0, 'a client read no block from the bucket');
      assert.equal(c.cacheGroup?.tier.peerStats.failures, 0);
    }
    const fetched = nodes.map((n) => n.cacheGroup!.owner!.stats.fetched);
    assert.equal(fetched[0]! + fetched[1]!, blocks, 'the nodes fetched every block once between them');
    assert.ok(fetched[0]! > 0 && fetched[1]! > 0, `both nodes own blocks: ${fetched.join(' + ')}`);

    // The egress counters say the same: every byte read from the bucket was counted once, by the nodes.
    for (const v of [...nodes, ...clients]) await v.egress!.flush();
    const engine = await openMetaEngine(gv.metaUrl);
    try {
      const pairs = await egressTotals(engine);
      assert.deepEqual(pairs, [{ from: 'default', to: 'default', lastHour: t.getBytes, total: t.getBytes }]);
    } finally {
      await engine.close();
    }
    for (const c of clients) assert.equal(c.egress!.totals().size, 0, 'clients read nothing from the bucket');
  });
});
