/**
 * Warm-up (src/sdk/warmup.ts, `ferry warmup`): through a group of two nodes, a run interrupted half-way and run
 * again fetches only the rest (counted by the bucket's store: each block once in total); --check reports what
 * is held, --evict drops it; without a group it fills a local disk cache.
 */

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Volume } from '../../../src/index.js';
import { planWarmup, runWarmup } from '../../../src/sdk/warmup.js';
import { ensureBuilt, ferryAsync } from '../../cli/helpers.js';
import { makeGroupVolume, MiB, seededBytes, type GroupVolume } from './helpers.js';

const FILE = 12 * MiB;

void describe('warm-up', () => {
  let gv: GroupVolume;
  const nodes: Volume[] = [];
  before(async () => {
    ensureBuilt();
    gv = await makeGroupVolume({ size: FILE, seed: 21, blockBytes: MiB, path: '/ds-a' });
    const w = await gv.open({ memCacheBytes: 0 });
    await w.mkdir('/ds');
    await w.rename('/ds-a', '/ds/a');
    await w.writeFile('/ds/sub-b', seededBytes(22, FILE));
    await w.close();
    for (const n of ['n1', 'n2']) {
      nodes.push(await gv.open({ memCacheBytes: 0, cacheDir: join(gv.dir, n), cacheBytes: 256 * MiB, cacheGroup: { group: 'g', listen: { host: '127.0.0.1', port: 0 }, role: 'node' } }));
    }
    gv.bucket.traffic.gets = 0;
  });
  after(() => gv.cleanup());

  void it('interrupted half-way and run again, it fetches only the rest; check and evict', async () => {
    const vol = await gv.open({ memCacheBytes: 0, cacheGroup: { group: 'g', sharing: false, timeoutMs: 30_000 } });
    const plan = await planWarmup(vol, ['/ds']);
    assert.equal(plan.files.length, 2);
    assert.equal(plan.blocks.length, 24);
    assert.equal(plan.bytes, 2 * FILE);

    const ac = new AbortController();
    let seen = 0;
    await assert.rejects(
      runWarmup(vol, plan, 'warm', {
        parallel: 2,
        signal: ac.signal,
        onProgress: () => {
          if (++seen === 10) ac.abort(new Error('interrupted by the test'));
        },
      }),
      /interrupted by the test/,
    );
    // Requests in flight at the interruption finish on their owners.
    await new Promise((r) => setTimeout(r, 300));
    const first = gv.bucket.traffic.gets;
    assert.ok(first >= 10 && first < 24, `the first run fetched ${first} of 24 blocks`);

    const r = await runWarmup(vol, plan, 'warm', { parallel: 4 });
    assert.equal(r.failed, 0, r.errors.join('\n'));
    assert.equal(r.fetched, 24 - first, 'the second run fetched only the rest');
    assert.equal(r.held, first);
    assert.equal(gv.bucket.traffic.gets, 24, 'each block read from the bucket once in total');

    const check = await runWarmup(vol, plan, 'check');
    assert.deepEqual(check.heldBytes.get('/ds'), { held: 2 * FILE, total: 2 * FILE });

    // The CLI sees the same (another process, the same group).
    const cli = await ferryAsync(['warmup', gv.metaUrl, '/ds/a', '/ds', '--group', 'g', '--check']);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(cli.stdout, '/ds/a: 12.0 MiB of 12.0 MiB cached (100%)\n/ds: 24.0 MiB of 24.0 MiB cached (100%)\n');

    await runWarmup(vol, await planWarmup(vol, ['/ds/a']), 'evict');
    const after = await runWarmup(vol, plan, 'check');
    assert.deepEqual(after.heldBytes.get('/ds'), { held: FILE, total: 2 * FILE }, 'a evicted, sub-b still held');

    // A reader through the group now gets a from the bucket again (via its owner) and sub-b from the cache.
    gv.bucket.traffic.gets = 0;
    const rd = await gv.open({ memCacheBytes: 0, cacheGroup: { group: 'g', sharing: false } });
    assert.deepEqual(await rd.readFile('/ds/sub-b'), seededBytes(22, FILE));
    assert.equal(gv.bucket.traffic.gets, 0);
    await rd.readFile('/ds/a');
    assert.equal(gv.bucket.traffic.gets, 12);
  });

  void it('without a group, it fills a local disk cache (CLI), and a second run fetches nothing', async () => {
    const dir = join(gv.dir, 'local');
    const one = await ferryAsync(['warmup', gv.metaUrl, '/ds/a', '--cache-dir', dir]);
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stdout, /^warmed 12 block\(s\) \(12\.0 MiB\) of 1 file\(s\) in [\d.]+ s: 12 fetched, 0 already cached\n$/);
    const two = await ferryAsync(['warmup', gv.metaUrl, '/ds/a', '--cache-dir', dir]);
    assert.match(two.stdout, /: 0 fetched, 12 already cached\n$/);
    const check = await ferryAsync(['warmup', gv.metaUrl, '/ds', '--cache-dir', dir, '--check']);
    assert.equal(check.stdout, '/ds: 12.0 MiB of 24.0 MiB cached (50%)\n');
    const bad = await ferryAsync(['warmup', gv.metaUrl, '/ds']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /give --group G .* or --cache-dir DIR/);
  });
});
