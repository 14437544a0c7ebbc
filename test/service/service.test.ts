/**
 * The metadata service (service/server.ts) and its clients:
 *   - a mirror client's every write operation goes through the service and is visible at once in its own
 *     region (read-your-writes) and on the primary;
 *   - a ferry:// client works without engine credentials;
 *   - requests without the token, or with another volume's token, are refused;
 *   - without a registered service a mirror client still refuses writes with EROFS.
 */

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { FsError, openVolume, type Volume } from '../../src/index.js';
import { RemoteMeta, ServiceClient } from '../../src/service/client.js';
import { makeServiceLab, type ServiceLab } from './helpers.js';

const labs: ServiceLab[] = [];
after(async () => {
  for (const l of labs) await l.cleanup();
});

async function lab(...args: Parameters<typeof makeServiceLab>): Promise<ServiceLab> {
  const l = await makeServiceLab(...args);
  labs.push(l);
  return l;
}

/** What a path looks like to a client: its type, mode, size, content, xattr, link target. */
async function view(v: Volume, p: string): Promise<unknown> {
  let st: Awaited<ReturnType<Volume['lstat']>>;
  try {
    st = await v.lstat(p);
  } catch (e) {
    if (e instanceof FsError) return e.code;
    throw e;
  }
  const out: Record<string, unknown> = { mode: st.mode, size: st.size, nlink: st.nlink };
  if (st.isFile()) out['data'] = (await v.readFile(p)).toString('base64');
  if (st.isSymbolicLink()) out['target'] = await v.readlink(p);
  if (!st.isSymbolicLink()) out['xattr'] = await v.getxattr(p, 'user.k').then((b) => b.toString(), (e: unknown) => (e instanceof FsError ? e.code : e));
  return out;
}

describe('metadata service: writes from mirror clients', () => {
  for (const full of [false, true]) {
    it(`every write of a ${full ? 'full' : 'metadata-only'} mirror client is visible at once in the mirror and on the primary`, async () => {
      const l = await lab([{ name: 'm', bucket: full }]);
      const m = await l.open('m');
      // The primary's client without a lookup cache: a name it resolved stays cached for a second otherwise.
      const p = await l.open('primary', { lookupCacheMs: 0 });
      assert.equal(m.vfs.readOnly, undefined, 'a mirror with a service is writable');
      const paths: string[] = [];
      const check = async (what: string, ...ps: string[]): Promise<void> => {
        for (const x of ps) if (!paths.includes(x)) paths.push(x);
        for (const x of paths) {
          // At once in the mirror (no settle: the write waited for the replica), and on the primary.
          assert.deepEqual(await view(m, x), await view(p, x), `${what}: ${x} differs between the mirror and the primary`);
        }
      };
      await m.mkdir('/d');
      await check('mkdir', '/d');
      assert.equal((await m.stat('/d')).isDirectory(), true);
      await m.writeFile('/d/f', 'hello from m');
      await check('create + write + close', '/d/f');
      assert.equal(await m.readFile('/d/f', 'utf8'), 'hello from m');
      await m.writeFile('/d/big', Buffer.alloc(200_000, 7));
      await check('write of several blocks', '/d/big');
      await m.rename('/d/f', '/d/g');
      await check('rename', '/d/f', '/d/g');
      assert.deepEqual(await m.readdir('/d'), ['big', 'g']);
      await m.chmod('/d/g', 0o600);
      await check('setattr');
      assert.equal((await m.stat('/d/g')).mode & 0o777, 0o600);
      await m.link('/d/g', '/d/h');
      await check('link', '/d/h');
      assert.equal((await m.stat('/d/g')).nlink, 2);
      await m.symlink('g', '/d/s');
      await check('symlink', '/d/s');
      assert.equal(await m.readlink('/d/s'), 'g');
      await m.setxattr('/d/g', 'user.k', 'v1');
      await check('setxattr');
      assert.equal((await m.getxattr('/d/g', 'user.k')).toString(), 'v1');
      await m.truncate('/d/big', 1000);
      await check('truncate');
      await m.appendFile('/d/g', ' and more');
      await check('append');
      assert.equal(await m.readFile('/d/g', 'utf8'), 'hello from m and more');
      await m.unlink('/d/h');
      await check('unlink');
      await m.mkdir('/d/e');
      await m.rmdir('/d/e');
      await check('rmdir', '/d/e');
      assert.equal(await m.stat('/d/e').catch((e: unknown) => (e as FsError).code), 'ENOENT');
      // The primary's own writes reach the mirror through the follower as before.
      await p.writeFile('/d/from-a', 'a');
      await l.settle();
      assert.equal(await m.readFile('/d/from-a', 'utf8'), 'a');
      // Data went to the region's own bucket (full) or the primary's (metadata-only): the slices say so.
      const refs = await p.vfs.meta.readChunk((await p.stat('/d/g')).ino, 0);
      assert.ok(refs.length > 0);
      const homes = new Set([...(await p.vfs.meta.getSlices(refs.map((r) => r.id))).values()].map((s) => s?.home));
      assert.deepEqual([...homes], [full ? 'm' : 'a']);
      assert.equal(l.service!.stats.multiCommits, 0, 'every operation committed in one transaction');
    });
  }

  it('a write that the replica does not apply in time fails with EIO naming the lag; without a service, EROFS', async () => {
    const l = await lab([{ name: 'm', bucket: false }], { follow: false });
    // The follower is not running: the registration has not reached the replica, so this client is read-only.
    const ro = await l.open('m');
    assert.notEqual(ro.vfs.readOnly, undefined);
    await assert.rejects(ro.mkdir('/x'), (e: unknown) => e instanceof FsError && e.code === 'EROFS');
    // Once the replica knows the service (one catch-up), writes go through but the replica stays behind.
    const { MirrorFollower } = await import('../../src/region/mirror.js');
    await new MirrorFollower({ primary: l.primary, replica: l.replicas.get('m')!, region: 'm' }).once();
    const m = await l.open('m', { applyWaitMs: 300 });
    await assert.rejects(m.mkdir('/x'), (e: unknown) => e instanceof FsError && e.code === 'EIO' && /replica of region 'm' has not applied it within 300 ms/.test(e.message) && /entries behind/.test(e.message));
    const p = await l.open('primary');
    assert.equal((await p.stat('/x')).isDirectory(), true, 'the write itself is committed on the primary');
  });
});

describe('metadata service: ferry:// clients and tokens', () => {
  it('a ferry:// client reads and writes without engine credentials', async () => {
    const l = await lab([]);
    const c = await l.open('service');
    const p = await l.open('primary');
    await c.mkdir('/x');
    await c.writeFile('/x/f', 'via the service');
    await c.rename('/x/f', '/x/g');
    await c.setxattr('/x/g', 'user.k', Buffer.from([0, 1, 2, 255]));
    assert.equal(await p.readFile('/x/g', 'utf8'), 'via the service');
    assert.deepEqual(await c.getxattr('/x/g', 'user.k'), Buffer.from([0, 1, 2, 255]));
    assert.deepEqual(await c.readdir('/x'), ['g']);
    await assert.rejects(c.mkdir('/x'), (e: unknown) => e instanceof FsError && e.code === 'EEXIST');
    assert.ok(c.vfs.meta.committedSeq > 0);
    // A client with FERRY_TOKEN in its environment, no option.
    process.env['FERRY_TOKEN'] = l.token;
    try {
      const e = await openVolume(l.serviceUrl(), { uid: 0, gid: 0, memCacheBytes: 0, serviceClient: { pingMs: 0 } });
      assert.equal(await e.readFile('/x/g', 'utf8'), 'via the service');
      await e.close();
    } finally {
      delete process.env['FERRY_TOKEN'];
    }
  });

  it('refuses a request without the token, with a wrong one, and with another volume\'s token', async () => {
    const l = await lab([]);
    const other = await lab([]);
    const url = `http://127.0.0.1:${l.service!.port}/v1/op`;
    const body = JSON.stringify({ op: 'hello', args: [], c: 'testclient01' });
    for (const auth of [undefined, 'Bearer ' + '0'.repeat(64), 'Bearer ' + other.token, 'Basic ' + l.token, 'Bearer ' + l.token.slice(0, 62)]) {
      const res = await fetch(url, { method: 'POST', body, headers: auth === undefined ? {} : { authorization: auth } });
      assert.equal(res.status, 401, `auth ${auth === undefined ? 'none' : auth.slice(0, 12)} refused`);
      const text = await res.text();
      assert.ok(!text.includes(l.token), 'the answer does not echo a token');
    }
    const ok = await fetch(url, { method: 'POST', body, headers: { authorization: `Bearer ${l.token}` } });
    assert.equal(ok.status, 200);
    // Through the client: EACCES at once, not retried.
    const client = new ServiceClient({ addresses: [l.serviceUrl()], token: other.token, pingMs: 0 });
    await assert.rejects(RemoteMeta.open(client), (e: unknown) => e instanceof FsError && e.code === 'EACCES' && /refused the volume token/.test(e.message));
    await client.close();
    assert.ok(l.service!.stats.refused >= 6);
    // A ferry:// client with no token at all is told where to get one.
    await assert.rejects(openVolume(l.serviceUrl(), {}), /needs the volume token/);
  });
});
