/**
 * Cache-group member records (src/meta/members.ts) on every engine, and through the read-only wrapper of a
 * mirror replica (members of a mirror region register there: the kind is not logged): put, list by group,
 * a stopped heartbeat leaves the group (and is pruned), malformed records are skipped, and the kind stays out
 * of the changelog and of snapshots.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import type { MetaEngine } from '../../src/meta/engine.js';
import { listMembers, putMember, removeMember, type MemberRec } from '../../src/meta/members.js';
import { ReadOnlyEngine } from '../../src/meta/readonly.js';
import { openMetaEngine } from '../../src/meta/registry.js';
import { forEachEngine, postgresEngine, redisEngine } from '../helpers/engines.js';

const root = mkdtempSync(path.join(tmpdir(), 'ferry-members-'));
after(() => rmSync(root, { recursive: true, force: true }));

function member(group: string, address: string, heartbeat: number, over: Partial<MemberRec> = {}): MemberRec {
  return { version: 1, group, address, weight: 1, uuid: 'u-1', host: 'h', pid: 1, started: heartbeat, heartbeat, staleMs: 1000, role: 'node', ...over };
}

async function body(engine: MetaEngine): Promise<void> {
  const now = Date.now();
  const seq0 = await engine.lastSeq();
  await putMember(engine, member('g1', '127.0.0.1:9001', now));
  await putMember(engine, member('g1', '127.0.0.1:9002', now, { weight: 3 }));
  await putMember(engine, member('g1', '127.0.0.1:9003', now - 5000));
  await putMember(engine, member('g2', '[::1]:9001', now));
  await putMember(engine, member('g1.x', '127.0.0.1:9009', now));
  assert.equal(await engine.lastSeq(), seq0, 'member records are not logged');

  const g1 = await listMembers(engine, { group: 'g1', now });
  assert.deepEqual(g1.map((m) => [m.address, m.weight]), [['127.0.0.1:9001', 1], ['127.0.0.1:9002', 3]], 'live members of g1 only');
  assert.deepEqual((await listMembers(engine, { group: 'g2', now })).map((m) => m.address), ['[::1]:9001']);
  assert.equal((await listMembers(engine, { now })).length, 4, 'every live member');
  assert.equal((await listMembers(engine, { group: 'g1', now, stale: true })).length, 3, 'with the one whose heartbeat stopped');

  // A malformed record (another writer of the engine) is skipped.
  await engine.txn(async (tx) => {
    tx.put('member', '', 'g1/evil:1', { version: 1, group: 'g1', address: 'evil:1', weight: -5 });
    tx.put('member', '', 'g1/127.0.0.1:9004', { ...member('g1', '127.0.0.1:9005', now) });
    await Promise.resolve();
  });
  assert.equal((await listMembers(engine, { group: 'g1', now })).length, 2);

  await listMembers(engine, { group: 'g1', now, prune: true });
  assert.equal((await listMembers(engine, { group: 'g1', now, stale: true })).length, 2, 'the stale member was pruned');

  await removeMember(engine, 'g1', '127.0.0.1:9001');
  assert.deepEqual((await listMembers(engine, { group: 'g1', now })).map((m) => m.address), ['127.0.0.1:9002']);

  const kinds = new Set<string>();
  await engine.snapshot((op) => {
    kinds.add(op[0]);
  });
  assert.ok(!kinds.has('member'), 'snapshots leave members out');
}

void describe('cache-group member records', () => {
  void it('sqlite', async () => {
    const engine = await openMetaEngine(`sqlite://${root}/a.db`, { create: true });
    try {
      await body(engine);
    } finally {
      await engine.close();
    }
  });

  void it('through a read-only replica wrapper (members of a mirror region register on its replica)', async () => {
    const inner = await openMetaEngine(`sqlite://${root}/b.db`, { create: true });
    const engine = new ReadOnlyEngine(inner, 'read-only mirror');
    try {
      await body(engine);
      await assert.rejects(engine.txn(async (tx) => {
        tx.put('inode', '', '1', {});
        await Promise.resolve();
      }), /read-only mirror/);
    } finally {
      await engine.close();
    }
  });
});

await forEachEngine([redisEngine(13), postgresEngine()], (shared) => {
  void it(`cache-group member records: ${shared.name}`, async () => {
    const { url, cleanup } = await shared.fresh();
    const engine = await openMetaEngine(url, { create: true });
    try {
      await body(engine);
    } finally {
      await engine.close();
      await cleanup();
    }
  });
});
