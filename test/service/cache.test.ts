/**
 * A ferry:// client's own lookup cache and its fused requests (service/client.ts):
 *   - it sees each of its own changes at once, however long its cache timeout, and a repeated path walk costs
 *     no request;
 *   - another client's change is seen once the timeout has passed (a clock of the test's);
 *   - open(2) with O_CREAT is one request (openCreate) in every case the SDK meets: a new file, an existing
 *     one (opened, O_TRUNC truncates), O_EXCL on an existing name, a symlink (followed; a dangling one creates
 *     its target), a trailing slash;
 *   - a retried openCreate is applied once, from memory and, after a restart of the service, from its
 *     request record.
 */

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Client } from 'undici';
import { FsError, type Volume } from '../../src/index.js';
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

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (e instanceof FsError) return e.code;
    throw e;
  }
}

/** What a path looks like (or its error code). */
async function view(v: Volume, p: string): Promise<unknown> {
  try {
    const st = await v.lstat(p);
    return { mode: st.mode, size: st.size, nlink: st.nlink, uid: st.uid, mtimeMs: st.mtimeMs };
  } catch (e) {
    if (e instanceof FsError) return e.code;
    throw e;
  }
}

describe("metadata service: the client's lookup cache", () => {
  it('sees its own changes at once with a minute-long timeout; a repeated walk costs no request', async () => {
    const l = await lab();
    const v = await l.open('service', { lookupCacheMs: 60_000 });
    const p = await l.open('primary', { lookupCacheMs: 0 });
    const paths = ['/d', '/d/e', '/d/f', '/d/g', '/d/h', '/d/s', '/d/e/x'];
    const same = async (what: string): Promise<void> => {
      for (const x of paths) assert.deepEqual(await view(v, x), await view(p, x), `${what}: ${x}`);
    };
    await v.mkdir('/d');
    await v.mkdir('/d/e');
    await same('mkdir');
    await v.writeFile('/d/f', 'abc');
    await same('create + write');
    assert.deepEqual(await requestsOf(v, () => v.stat('/d/f')), {}, 'a cached walk asks nothing');
    await v.appendFile('/d/f', 'defg');
    await same('append');
    await v.chmod('/d/f', 0o600);
    await same('chmod');
    await v.utimes('/d/f', 1000, 2000);
    await same('utimes');
    await v.truncate('/d/f', 2);
    await same('truncate');
    await v.link('/d/f', '/d/h');
    await same('link');
    await v.symlink('f', '/d/s');
    await same('symlink');
    await v.rename('/d/f', '/d/g');
    await same('rename');
    assert.equal(await code(v.stat('/d/f')), 'ENOENT', 'the old name is gone at once');
    await v.writeFile('/d/e/x', 'x');
    await v.rename('/d/h', '/d/e/x');
    await same('rename over a file in another directory');
    await v.unlink('/d/g');
    await same('unlink');
    assert.equal((await v.stat('/d/e/x')).nlink, 1, 'the other name of the unlinked file shows one link');
    await v.unlink('/d/s');
    await v.unlink('/d/e/x');
    await v.rmdir('/d/e');
    await same('rmdir');
    assert.deepEqual(await v.readdir('/d'), []);
  });

  it("sees another client's change once its timeout has passed", async () => {
    const l = await lab();
    const p = await l.open('primary', { lookupCacheMs: 0 });
    await p.writeFile('/f', 'x');
    let clock = 1_000_000;
    const client = new ServiceClient({ addresses: [l.serviceUrl()], token: l.token, pingMs: 0 });
    const m = await RemoteMeta.open(client, { lookupCacheMs: 1000, now: () => clock });
    try {
      const a = await m.lookup(root, 1, 'f');
      assert.equal(a.mode & 0o777, 0o666 & ~0o022);
      await p.chmod('/f', 0o600);
      const requests = client.stats.requests;
      const cached = await m.lookup(root, 1, 'f');
      assert.equal(client.stats.requests, requests, 'answered by the cache');
      assert.equal(cached.mode, a.mode, 'within the timeout the cached attributes stand');
      assert.equal((await m.getattrCached(a.ino)).mode, a.mode);
      clock += 1001;
      assert.equal((await m.lookup(root, 1, 'f')).mode & 0o777, 0o600, 'past the timeout the change is seen');
      await p.rename('/f', '/g');
      assert.equal((await m.lookup(root, 1, 'f')).ino, a.ino, 'a cached name stands within the timeout');
      clock += 1001;
      assert.equal(await code(m.lookup(root, 1, 'f')), 'ENOENT');
      assert.equal((await m.lookup(root, 1, 'g')).ino, a.ino);
      // getattr always asks: fresh attributes (close-to-open).
      await p.chmod('/g', 0o640);
      assert.equal((await m.getattr(a.ino)).mode & 0o777, 0o640);
    } finally {
      await m.close();
    }
  });
});

describe('metadata service: open(2) with O_CREAT in one request', () => {
  it('creates, opens an existing file, truncates, refuses O_EXCL, follows symlinks: one openCreate each', async () => {
    const l = await lab();
    const v = await l.open('service');
    await v.mkdir('/d');
    await v.stat('/d'); // the directory in the cache
    let fh: Awaited<ReturnType<Volume['open']>> | undefined;
    assert.deepEqual(
      await requestsOf(v, async () => {
        fh = await v.open('/d/new', 'wx', 0o640);
      }),
      { openCreate: 1 },
      'a new file: one request',
    );
    await fh!.writeFile('hello');
    await fh!.close();
    assert.equal((await v.stat('/d/new')).mode & 0o777, 0o640 & ~0o022);
    assert.equal(await code(v.open('/d/new', 'wx')), 'EEXIST');
    // A failed create may have changed the directory (its outcome is what the engine says): forgotten.
    await v.stat('/d');
    const reqs = await requestsOf(v, async () => {
      const h = await v.open('/d/new', 'a');
      await h.writeFile(' world');
      await h.close();
    });
    assert.equal(reqs['openCreate'], 1, `an existing file: one openCreate (${JSON.stringify(reqs)})`);
    assert.equal(reqs['lookup'], undefined, 'no lookup');
    assert.equal(await v.readFile('/d/new', 'utf8'), 'hello world');
    await (await v.open('/d/new', 'w')).close();
    assert.equal((await v.stat('/d/new')).size, 0, 'O_TRUNC of an existing file');
    await v.writeFile('/d/new', 'again');
    await v.symlink('new', '/d/link');
    await v.appendFile('/d/link', '!');
    assert.equal(await v.readFile('/d/new', 'utf8'), 'again!', 'O_CREAT follows a symlink to an existing file');
    assert.equal(await code(v.open('/d/link', 'wx')), 'EEXIST', 'O_EXCL does not follow a symlink');
    await v.symlink('/d/target', '/d/dangling');
    await v.writeFile('/d/dangling', 'made');
    assert.equal(await v.readFile('/d/target', 'utf8'), 'made', 'a dangling symlink: its target is created');
    assert.equal(await code(v.open('/d', 'w')), 'EISDIR');
    assert.equal(await code(v.open('/d/missing/', 'w')), 'EISDIR');
    assert.equal(await code(v.open('/d/nodir/x', 'w')), 'ENOENT');
    const p = await l.open('primary', { lookupCacheMs: 0 });
    assert.deepEqual((await p.readdir('/d')).sort(), ['dangling', 'link', 'new', 'target']);
    assert.equal(await p.readFile('/d/new', 'utf8'), 'again!');
  });

  it('a retried openCreate is applied once: from memory, and from its record after a restart of the service', async () => {
    const l = await lab();
    const v = await l.open('primary', { lookupCacheMs: 0 });
    await v.mkdir('/r');
    const dir = (await v.stat('/r')).ino;
    const port = l.service!.port;
    const send = async (n: number, name: string): Promise<{ ok: boolean; r?: { attr: Attr; created: boolean; opened: boolean }; code?: string }> => {
      // A connection per request: the service restarts in between.
      const c = new Client(`http://127.0.0.1:${port}`);
      try {
        const res = await c.request({
          path: '/v1/op',
          method: 'POST',
          headers: { authorization: `Bearer ${l.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ op: 'openCreate', args: [root, dir, name, 0o644, 2, 1], c: 'retrying-client', n }),
        });
        return (await res.body.json()) as { ok: boolean; r?: { attr: Attr; created: boolean; opened: boolean } };
      } finally {
        await c.close();
      }
    };
    const first = await send(1, 'once');
    assert.equal(first.ok, true);
    assert.equal(first.r!.created, true);
    const dedup = l.service!.stats.deduplicated;
    assert.deepEqual(await send(1, 'once'), first, 'a retry gets the same answer');
    assert.equal(l.service!.stats.deduplicated, dedup + 1);
    assert.equal((await send(2, 'once')).code, 'EEXIST', 'a new request with the same arguments is a new create');
    await l.stopService();
    await l.startService(port);
    const again = await send(1, 'once');
    assert.equal(again.ok, true, `after a restart: ${JSON.stringify(again)}`);
    assert.equal(again.r!.created, true, 'answered as the create it was');
    assert.equal(again.r!.attr.ino, first.r!.attr.ino);
    assert.deepEqual(await v.readdir('/r'), ['once']);
  });
});
