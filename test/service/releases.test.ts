/**
 * What rides along in a ferry:// client's requests (service/client.ts, protocol.ts level 3):
 *   - requests per operation, so that they cannot creep back: create (open wx + close) 1, write+close of a new
 *     file 2 (create at open, commit at close), rename 1; close(2) sends nothing of its own;
 *   - a release rides along with the next request, whatever it is; one still queued when the volume closes is
 *     sent then, and no open-file record is left behind;
 *   - the service applies a release id once per session: a repeated request, an id below the client's floor
 *     and a release of another session are skipped;
 *   - a queued release is not lost, nor misapplied, across a restart of the service: the new session keeps
 *     the files still open, and their later release frees them; one whose request got no answer (a blackout)
 *     is sent again;
 *   - a cached name in its second half-life is revalidated by the next request and stays cached.
 */

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Client } from 'undici';
import { FsError, openVolume, type Volume } from '../../src/index.js';
import { FaultProxy } from '../../src/net/faultproxy.js';
import { sessions, sustained } from '../../src/meta/records.js';
import type { Attr } from '../../src/meta/types.js';
import { RemoteMeta, ServiceClient } from '../../src/service/client.js';
import { makeServiceLab, type ServiceLab } from './helpers.js';

const labs: ServiceLab[] = [];
after(async () => {
  for (const l of labs) await l.cleanup();
});

async function lab(): Promise<ServiceLab> {
  const l = await makeServiceLab([]);
  labs.push(l);
  return l;
}

const root = { uid: 0, gid: 0, gids: [] };

function remoteOf(v: Volume): RemoteMeta {
  const m = v.vfs.meta;
  assert.ok(m instanceof RemoteMeta, 'a ferry:// volume runs on RemoteMeta');
  return m;
}

/** The requests `fn` made, by operation. */
async function requestsOf(v: Volume, fn: () => Promise<unknown>): Promise<Record<string, number>> {
  const stats = remoteOf(v).client.stats.byOp;
  const before = { ...stats };
  await fn();
  const out: Record<string, number> = {};
  for (const [k, n] of Object.entries(stats)) if (n !== (before[k] ?? 0)) out[k] = n - (before[k] ?? 0);
  return out;
}

/** Inodes held open-but-unlinked by any session (`sustained` records), as [session, inode]. */
async function heldOpen(l: ServiceLab): Promise<Array<[number, number]>> {
  return l.primary.txn(
    async (tx) => {
      const out: Array<[number, number]> = [];
      for (const [sid] of await sessions.scan(tx)) for (const [ino] of await sustained.scan(tx, sid)) out.push([sid, ino]);
      return out;
    },
    { readonly: true },
  );
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (e instanceof FsError) return e.code;
    throw e;
  }
}

describe('metadata service: requests per operation', () => {
  it('create costs one request, write+close of a new file two, rename one; close(2) none of its own', async () => {
    const l = await lab();
    // A long cache timeout: a slow machine must not turn a cached walk into a lookup mid-test.
    const v = await l.open('service', { lookupCacheMs: 60_000 });
    const data = Buffer.alloc(4096, 7);
    await v.mkdir('/d');
    await (await v.open('/d/warm', 'wx')).close();
    await v.writeFile('/d/warm-w', data); // slice ids fetched
    for (let i = 0; i < 5; i++) {
      const reqs = await requestsOf(v, async () => (await v.open(`/d/c${i}`, 'wx')).close());
      assert.deepEqual(reqs, { openCreate: 1 }, `create ${i}`);
    }
    for (let i = 0; i < 5; i++) {
      const reqs = await requestsOf(v, () => v.writeFile(`/d/w${i}`, data));
      assert.deepEqual(reqs, { openCreate: 1, write: 1 }, `write+close ${i}`);
    }
    for (let i = 0; i < 5; i++) {
      const reqs = await requestsOf(v, () => v.rename(`/d/c${i}`, `/d/r${i}`));
      assert.deepEqual(reqs, { rename: 1 }, `rename ${i}`);
    }
    const stats = remoteOf(v).client.stats;
    assert.equal(stats.byOp['release'], undefined, 'no release request of its own');
    assert.ok(stats.releasesCarried >= 11, `the closes rode along (${stats.releasesCarried})`);
    const p = await l.open('primary', { lookupCacheMs: 0 });
    assert.deepEqual((await p.readdir('/d')).sort(), ['r0', 'r1', 'r2', 'r3', 'r4', 'w0', 'w1', 'w2', 'w3', 'w4', 'warm', 'warm-w']);
    assert.deepEqual(await p.readFile('/d/w3'), data);
  });
});

describe('metadata service: releases ride along', () => {
  it('a release goes with the next request; one still queued goes at the close of the volume; no open-file record is left', async () => {
    const l = await lab();
    const v = await l.open('service', { lookupCacheMs: 60_000 });
    const p = await l.open('primary', { lookupCacheMs: 0 });
    const stats = remoteOf(v).client.stats;
    await v.mkdir('/d');
    for (const name of ['a', 'b']) await v.writeFile(`/d/${name}`, name);
    const a = await v.open('/d/a', 'r');
    const b = await v.open('/d/b', 'r');
    const inoA = a.ino;
    const inoB = b.ino;
    await v.unlink('/d/a');
    await v.unlink('/d/b');
    assert.deepEqual((await heldOpen(l)).map(([, i]) => i).sort(), [inoA, inoB].sort(), 'unlinked while open: both held by the session');
    // A close sends nothing; the next request (a read here) carries its release.
    let carried = stats.releasesCarried;
    assert.deepEqual(await requestsOf(v, () => a.close()), {}, 'close(2) makes no request');
    assert.equal(stats.releasesCarried, carried, 'queued, not sent');
    await v.readdir('/d');
    assert.equal(stats.releasesCarried, carried + 1, 'carried by the next request');
    assert.deepEqual((await heldOpen(l)).map(([, i]) => i), [inoB], 'a is freed');
    assert.equal(await code(p.vfs.meta.getattr(inoA)), 'ENOENT', 'its inode destroyed');
    // The last close right before the volume's: sent by the close, with retries, not left to `bye` alone.
    carried = stats.releasesCarried;
    await b.close();
    await v.close();
    assert.equal(stats.releasesCarried, carried + 1, 'the queue was sent at the close');
    assert.deepEqual(await heldOpen(l), [], 'no open-file record left behind');
    assert.equal(await code(p.vfs.meta.getattr(inoB)), 'ENOENT');
  });

  it('the service applies each release id once per session, none below the floor, none of another session', async () => {
    const l = await lab();
    const p = await l.open('primary', { lookupCacheMs: 0 });
    const port = l.service!.port;
    const c = new Client(`http://127.0.0.1:${port}`);
    let n = 0;
    const send = async (op: string, args: unknown[], rl?: unknown): Promise<{ ok: boolean; r?: unknown; sid?: string; rla?: number; code?: string }> => {
      const mutating = op !== 'releases';
      const res = await c.request({
        path: '/v1/op',
        method: 'POST',
        headers: { authorization: `Bearer ${l.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ op, args, c: 'releasing-client', ...(mutating ? { n: ++n } : {}), ...(rl === undefined ? {} : { rl }) }),
      });
      return (await res.body.json()) as { ok: boolean; r?: unknown; sid?: string; rla?: number };
    };
    try {
      const created = await send('openCreate', [root, 1, 'f', 0o644, 2, 1]);
      assert.equal(created.ok, true);
      const ino = (created.r as { attr: Attr }).attr.ino;
      const sid = created.sid!;
      assert.equal((await send('open', [root, ino, 4])).ok, true, 'opened a second time');
      assert.equal((await send('unlink', [root, 1, 'f'])).ok, true);
      const held = async (): Promise<boolean> => (await heldOpen(l)).some(([, i]) => i === ino);
      assert.ok(await held(), 'unlinked while open twice: held');
      const once = { s: sid, f: 1, r: [[1, ino]] };
      assert.equal((await send('releases', [], once)).rla, 1, 'taken');
      assert.equal((await send('releases', [], once)).rla, 1, 'a repeat is answered as taken');
      assert.ok(await held(), 'released once: still open once');
      assert.equal((await send('releases', [], { s: `${sid.split('.')[0]}.999999`, f: 1, r: [[2, ino]] })).rla, 1);
      assert.ok(await held(), "another session's release is skipped");
      assert.equal((await send('releases', [], { s: sid, f: 2, r: [[1, ino]] })).rla, 1);
      assert.ok(await held(), 'an id below the floor is skipped');
      // A release rides along with any request, and the operation still runs: a failing one included.
      const failing = await send('unlink', [root, 1, 'missing'], { s: sid, f: 2, r: [[2, ino]] });
      assert.equal(failing.code, 'ENOENT');
      assert.equal(failing.rla, 1, 'taken with a POSIX error answer too');
      assert.ok(!(await held()), 'the last release frees the file');
      assert.equal(await code(p.vfs.meta.getattr(ino)), 'ENOENT');
      const bad = await send('releases', [], { s: sid, f: 2, r: [[0, ino]] });
      assert.equal(bad.ok, false, 'a malformed release list is refused');
    } finally {
      await c.close();
    }
  });

  it('a queued release is neither lost nor misapplied across a restart of the service', async () => {
    const l = await lab();
    const v = await l.open('service', { lookupCacheMs: 60_000 });
    const remote = remoteOf(v);
    await v.writeFile('/f', 'data');
    const h1 = await v.open('/f', 'r');
    const h2 = await v.open('/f', 'r');
    const ino = h1.ino;
    const port = l.service!.port;
    await l.stopService();
    await l.startService(port);
    // Closed while the client still believes in the old session: queued for it.
    await h1.close();
    // An answer from the new session (a request that carries nothing): the client registers again what it
    // still holds open (h2), and drops the queued release, which belonged to the old session.
    await remote.client.call('ping', []);
    await remote.sessionRestored();
    await v.unlink('/f');
    assert.deepEqual((await heldOpen(l)).map(([, i]) => i), [ino], 'the new session holds the file open for h2');
    assert.equal(await h2.readFile('utf8'), 'data');
    await h2.close();
    await v.readdir('/');
    assert.deepEqual(await heldOpen(l), [], "h2's release, after the restart, frees it");
    const p = await l.open('primary', { lookupCacheMs: 0 });
    assert.equal(await code(p.vfs.meta.getattr(ino)), 'ENOENT');
  });

  it('a release whose request got no answer is sent again, with its id, once the service answers', async () => {
    const l = await lab();
    const proxy = await FaultProxy.start({ targetPort: l.service!.port });
    try {
      const v = await openVolume(`ferry://127.0.0.1:${proxy.port}`, {
        token: l.token,
        uid: 0,
        gid: 0,
        gids: [],
        heartbeatMs: 0,
        memCacheBytes: 0,
        lookupCacheMs: 60_000,
        serviceClient: { pingMs: 0, attemptMs: 300, retryMsMax: 600, backoff: { baseMs: 50, capMs: 100 } },
      });
      try {
        const stats = remoteOf(v).client.stats;
        await v.writeFile('/f', 'data');
        const h = await v.open('/f', 'r');
        const ino = h.ino;
        await v.unlink('/f');
        assert.deepEqual((await heldOpen(l)).map(([, i]) => i), [ino]);
        // Every connection cut for 2 s: the request that carries the release (the linger timer's) fails.
        proxy.blackout(2000, 'cut');
        await h.close();
        const deadline = Date.now() + 15_000;
        while ((await heldOpen(l)).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        assert.ok(stats.failures >= 1, `the request carrying the release failed at least once (${JSON.stringify(stats)})`);
        assert.deepEqual(await heldOpen(l), [], 'the release arrived after the blackout: the file is freed');
        const p = await l.open('primary', { lookupCacheMs: 0 });
        assert.equal(await code(p.vfs.meta.getattr(ino)), 'ENOENT');
      } finally {
        await v.close();
      }
    } finally {
      await proxy.close();
    }
  });
});

describe("metadata service: a path in use stays in the client's cache", () => {
  it('a name answered in its second half-life is revalidated by the next request', async () => {
    const l = await lab();
    const p = await l.open('primary', { lookupCacheMs: 0 });
    await p.mkdir('/d');
    let clock = 1_000_000;
    const client = new ServiceClient({ addresses: [l.serviceUrl()], token: l.token, pingMs: 0 });
    const m = await RemoteMeta.open(client, { lookupCacheMs: 1000, now: () => clock });
    try {
      const d = await m.lookup(root, 1, 'd');
      clock += 400;
      await m.lookup(root, 1, 'd');
      await m.statfs();
      assert.equal(client.stats.revalidations, 0, 'in its first half-life: nothing asked');
      clock += 200;
      const requests = client.stats.requests;
      await m.lookup(root, 1, 'd');
      assert.equal(client.stats.requests, requests, 'answered by the cache');
      await m.statfs();
      assert.equal(client.stats.revalidations, 1, 'revalidated with the next request');
      clock += 600; // past the first answer's timeout
      const again = client.stats.requests;
      assert.equal((await m.lookup(root, 1, 'd')).ino, d.ino);
      assert.equal(client.stats.requests, again, 'still answered by the cache');
      // Another client's change arrives with a revalidation (within the timeout, as before).
      await p.chmod('/d', 0o700);
      await m.statfs(); // carries the revalidation the last lookup queued
      assert.equal(client.stats.revalidations, 2);
      const last = client.stats.requests;
      assert.equal((await m.lookup(root, 1, 'd')).mode & 0o777, 0o700, 'the revalidated attributes');
      assert.equal(client.stats.requests, last, 'from the cache');
    } finally {
      await m.close();
    }
  });
});
