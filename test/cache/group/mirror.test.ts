/**
 * A cache group in a metadata-only mirror region (the lab's region c): two nodes and three readers open the
 * region's replica; the members register there (an unlogged kind, which the replica's read-only wrapper lets
 * through); the readers get the right bytes, and the dataset crosses from region a's bucket once in all, as the
 * egress counters on the replica say.
 */

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { blockHeaderBytes } from '../../../src/chunk/codec.js';
import { formatVolume, openMetaEngine, openVolume, type Volume } from '../../../src/index.js';
import { egressTotals } from '../../../src/meta/egress.js';
import { listMembers } from '../../../src/meta/members.js';
import { MirrorFollower } from '../../../src/region/mirror.js';
import { addRegion } from '../../../src/region/regions.js';
import { MiB, seededBytes } from './helpers.js';

void describe('cache group in a metadata-only mirror region', () => {
  void it('members register on the replica; three readers cause one crossing of the dataset from a to c', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ferry-group-mirror-'));
    const opened: Volume[] = [];
    try {
      await mkdir(join(dir, 'a'));
      const pUrl = `sqlite://${dir}/p.db`;
      const rUrl = `sqlite://${dir}/r.db`;
      const primary = await openMetaEngine(pUrl, { create: true });
      await formatVolume(primary, { name: 'm', storage: '', regions: { a: { storage: `file://${dir}/a` } }, primary: 'a', blockBytes: MiB, compression: 'none', trashDays: 0 });
      await addRegion(primary, 'c', { replica: rUrl });
      const data = seededBytes(3, 8 * MiB);
      const w = await openVolume(pUrl, { heartbeatMs: 0, memCacheBytes: 0 });
      await w.writeFile('/data', data);
      await w.close();
      const replica = await openMetaEngine(rUrl, { create: true });
      const follower = new MirrorFollower({ primary, replica, region: 'c' });
      await follower.prepare();
      await follower.once(new AbortController().signal);

      for (const n of ['n1', 'n2']) {
        opened.push(await openVolume(rUrl, { heartbeatMs: 0, memCacheBytes: 0, cacheDir: join(dir, n), cacheBytes: 64 * MiB, cacheGroup: { group: 'c', listen: { host: '127.0.0.1', port: 0 }, role: 'node' } }));
      }
      assert.equal((await listMembers(replica, { group: 'c' })).length, 2, 'registered on the replica');
      assert.equal((await listMembers(primary, { group: 'c' })).length, 0, 'not on the primary');
      const readers: Volume[] = [];
      for (let i = 0; i < 3; i++) readers.push(await openVolume(rUrl, { heartbeatMs: 0, cacheGroup: { group: 'c', sharing: false } }));
      opened.push(...readers);
      for (const r of await Promise.all(readers.map((r) => r.readFile('/data')))) assert.deepEqual(r, data);

      for (const v of opened) await v.egress!.flush();
      const pairs = await egressTotals(replica);
      assert.deepEqual(pairs.map((p) => [p.from, p.to, p.total]), [['a', 'c', data.length + 8 * blockHeaderBytes(MiB)]], 'the dataset crossed from a to c once');
      await replica.close();
      await primary.close();
    } finally {
      for (const v of opened) await v.close().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
