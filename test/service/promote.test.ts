/**
 * Failover (region/promote.ts, meta/epoch.ts):
 *   - a mirror promoted while the old primary runs: every write to the old primary — a direct client, a client
 *     of its service, a mirror client writing through that service, a client opened afterwards — is refused
 *     with EROFS naming the new primary; readers carry on; the new primary holds everything the old one
 *     acknowledged and accepts writes; the promoted region's follower stops; the other mirror follows the new
 *     primary (bootstraps from it);
 *   - --force with the old primary's SQLite file moved away: refused without --force; with it the new primary
 *     accepts writes, the commits it had not applied are lost (and reported), and the other mirror finds the
 *     new primary by probing the regions' replicas.
 */

import assert from 'node:assert/strict';
import { rename } from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import { FsError, openMetaEngine, openVolume, type Volume } from '../../src/index.js';
import type { MetaEngine } from '../../src/meta/engine.js';
import { MirrorFollower, PromotedError, verifyMirror } from '../../src/region/mirror.js';
import { promoteReplica } from '../../src/region/promote.js';
import { makeServiceLab, type ServiceLab } from './helpers.js';
import { ensureBuilt, ferry } from '../cli/helpers.js';

const labs: ServiceLab[] = [];
const engines: MetaEngine[] = [];
const volumes: Volume[] = [];
after(async () => {
  for (const v of volumes) await v.close().catch(() => undefined);
  for (const e of engines) await e.close().catch(() => undefined);
  for (const l of labs) await l.cleanup();
});

const base = { uid: 0, gid: 0, gids: [] as number[], heartbeatMs: 0, memCacheBytes: 0, lookupCacheMs: 0 };

async function engine(url: string): Promise<MetaEngine> {
  const e = await openMetaEngine(url);
  engines.push(e);
  return e;
}

async function vol(url: string, options: Record<string, unknown> = {}): Promise<Volume> {
  const v = await openVolume(url, { ...base, ...options });
  volumes.push(v);
  return v;
}

async function refused(p: Promise<unknown>, what: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof FsError, `${what}: ${String(e)}`);
    assert.equal(e.code, 'EROFS', `${what}: ${e.message}`);
    assert.match(e.message, /region 'c' is the primary of epoch 2/, what);
    return true;
  });
}

describe('failover: ferry mirror promote', () => {
  ensureBuilt();
  it('fences a running old primary (direct, service, mirror and new clients); the new primary has every acknowledged write; the other mirror follows it', async () => {
    const l = await makeServiceLab([{ name: 'c', bucket: false }, { name: 'b', bucket: true }], { follow: false });
    labs.push(l);
    const fc = new MirrorFollower({ primary: l.primary, replica: l.replicas.get('c')!, region: 'c', primaryUrl: l.primaryUrl, pollMs: 1 });
    const fb = new MirrorFollower({ primary: l.primary, replica: l.replicas.get('b')!, region: 'b', primaryUrl: l.primaryUrl, pollMs: 1 });
    await fc.once();
    // b's follower runs throughout (its mirror clients wait for it): it meets the demotion and re-points by itself.
    const stopB = new AbortController();
    const runningB = fb.run(stopB.signal);
    const direct = await vol(l.primaryUrl);
    const served = await vol(l.serviceUrl(), { token: l.token, serviceClient: { pingMs: 0 } });
    const mirrorB = await vol(l.replicaUrl('b'), { serviceClient: { pingMs: 0 } });
    await direct.writeFile('/before', 'one');
    await mirrorB.writeFile('/from-b', 'two');
    await fc.once();
    // Acknowledged by the old primary, not yet applied in c: the promotion copies it (the old primary is reachable).
    await served.writeFile('/late', 'three');

    const replicaC = await engine(l.replicaUrl('c'));
    const r = await promoteReplica({ replicaUrl: l.replicaUrl('c'), replica: replicaC, primaryUrl: l.primaryUrl });
    assert.equal(r.epoch, 2);
    assert.equal(r.fenced, true);
    assert.ok(r.caughtUp >= 1, `the promotion copied what c lacked (${r.caughtUp})`);

    await refused(direct.writeFile('/x', 'x'), 'a direct client of the old primary');
    await refused(direct.mkdir('/d'), 'a direct client of the old primary (mkdir)');
    await refused(served.writeFile('/y', 'y'), 'a client of the old primary\'s service');
    await refused(mirrorB.mkdir('/z'), 'a mirror client writing through the old service');
    const fresh = await vol(l.primaryUrl);
    await refused(fresh.rename('/before', '/after'), 'a client opened after the demotion');
    assert.equal((await direct.readFile('/before')).toString(), 'one', 'readers of the old primary carry on');

    const c = await vol(l.replicaUrl('c'), { region: 'c' });
    assert.equal((await c.readFile('/late')).toString(), 'three', 'nothing the old primary acknowledged is lost');
    await c.writeFile('/new', 'four');
    await c.mkdir('/dir');
    // status and region list say which engine is the primary of which epoch, and that the old one was demoted.
    const st = JSON.parse(ferry(['status', l.replicaUrl('c'), '--json']).stdout) as { metadata: { epoch: number; primaryRegion: string } };
    assert.deepEqual([st.metadata.epoch, st.metadata.primaryRegion], [2, 'c']);
    const old = ferry(['status', l.primaryUrl, '--json']);
    assert.equal((JSON.parse(old.stdout) as { metadata: { demoted?: { epoch: number; region: string } } }).metadata.demoted?.region, 'c', old.stderr);
    assert.match(ferry(['status', l.primaryUrl]).stdout, /^metadata: +DEMOTED — region 'c' is the primary of epoch 2/m);
    assert.match(ferry(['region', 'list', l.replicaUrl('c')]).stdout, /^c\s.*metadata primary of epoch 2$/m);
    await assert.rejects(fc.once(), PromotedError, 'the promoted region\'s follower stops');

    const newLast = await replicaC.lastSeq();
    for (let i = 0; (await l.replicas.get('b')!.lastSeq()) < newLast || fb.primaryEngine === l.primary; i++) {
      assert.ok(i < 1000, 'b re-points to the new primary within 10 s');
      await new Promise((res) => setTimeout(res, 10));
    }
    stopB.abort();
    await runningB;
    const v = await verifyMirror(fb.primaryEngine, l.replicas.get('b')!);
    assert.deepEqual(v.differences, []);
    const readB = await vol(l.replicaUrl('b'), { mirrorWrites: false });
    assert.equal((await readB.readFile('/new')).toString(), 'four', 'b follows the new primary');
    await fb.close();
  });

  it('--force without the old primary: the new side accepts writes, the unapplied commits are lost and reported, the other mirror probes its way to the new primary', async () => {
    const l = await makeServiceLab([{ name: 'c', bucket: false }, { name: 'b', bucket: true }], { follow: false, service: false });
    labs.push(l);
    const fc = new MirrorFollower({ primary: l.primary, replica: l.replicas.get('c')!, region: 'c', primaryUrl: l.primaryUrl, pollMs: 1, reportMs: 0 });
    const direct = await vol(l.primaryUrl);
    await direct.writeFile('/kept', 'one');
    await fc.once();
    await direct.writeFile('/lost', 'two'); // never reaches c
    const fb = new MirrorFollower({ primary: l.primary, replica: l.replicas.get('b')!, region: 'b', primaryUrl: l.primaryUrl, pollMs: 1 });
    await fb.once();
    await direct.close();
    await l.primary.close();
    const file = l.primaryUrl.slice('sqlite://'.length);
    await rename(file, `${file}.gone`);

    const replicaC = await engine(l.replicaUrl('c'));
    await assert.rejects(promoteReplica({ replicaUrl: l.replicaUrl('c'), replica: replicaC }), /--force/);
    const r = await promoteReplica({ replicaUrl: l.replicaUrl('c'), replica: replicaC, force: true });
    assert.equal(r.fenced, false);
    assert.equal(r.epoch, 2);
    assert.ok(r.lastSeen !== undefined && r.lastSeen.seq === r.applied, `the follower's last sight of the primary is reported (${JSON.stringify(r.lastSeen)})`);

    const c = await vol(l.replicaUrl('c'), { region: 'c' });
    assert.equal((await c.readFile('/kept')).toString(), 'one');
    await assert.rejects(c.readFile('/lost'), (e: unknown) => e instanceof FsError && e.code === 'ENOENT', 'the commit c had not applied is lost');
    await c.writeFile('/new', 'three');

    // b's primary is gone: its follower finds c among the regions' replicas and bootstraps from it.
    const fb2 = new MirrorFollower({ primary: l.primary, replica: l.replicas.get('b')!, region: 'b', pollMs: 1 });
    await fb2.once();
    assert.deepEqual((await verifyMirror(fb2.primaryEngine, l.replicas.get('b')!)).differences, []);
    const readB = await vol(l.replicaUrl('b'), { mirrorWrites: false });
    assert.equal((await readB.readFile('/new')).toString(), 'three');
    await fb2.close();
  });
});
