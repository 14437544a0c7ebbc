/**
 * Locks of a ferry:// client across restarts of the metadata service (service/heldlocks.ts). Locks live in
 * the engine under the client's session on the service; a restarted service has none for it, so the client
 * takes what it holds again on its new session, noticed at its next answer (a ping at the latest):
 *   - graceful restart (the service's close drops its sessions' locks): the client holds its byte-range
 *     locks and flocks again, and another client is refused them again;
 *   - a service killed with SIGKILL leaves the old session's records, which refuse the client's own request
 *     until that session is judged dead; the client waits that out and then holds them under its new
 *     session, and meanwhile nobody else gets them;
 *   - open files are registered again too.
 */

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { Meta } from '../../src/meta/meta.js';
import type { LockConflict } from '../../src/meta/locks.js';
import { RemoteMeta, ServiceClient } from '../../src/service/client.js';
import { makeServiceLab, type ServiceLab } from './helpers.js';

const FIXTURE = join(fileURLToPath(new URL('.', import.meta.url)), 'fixtures', 'serve.ts');
const ctx = { uid: 0, gid: 0, gids: [] };
const labs: ServiceLab[] = [];
const children: ChildProcess[] = [];
after(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const l of labs) await l.cleanup();
});

async function until(what: string, ok: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function startChild(l: ServiceLab, port: number): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, l.primaryUrl, l.token, String(port), '100'], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const [chunk] = (await once(child.stdout!, 'data')) as [Buffer];
  const m = /listening (\d+)/.exec(chunk.toString());
  assert.ok(m !== null, `the service said: ${chunk.toString()}`);
  return { child, port: Number(m[1]) };
}

/** A ferry:// client that pings often, so it notices a new service quickly. */
async function remote(url: string): Promise<RemoteMeta> {
  return RemoteMeta.open(new ServiceClient({ addresses: [url], token: labs[labs.length - 1]!.token, pingMs: 100, attemptMs: 1000, backoff: { baseMs: 20, capMs: 200 } }), { lookupCacheMs: 0 });
}

/** Whether `other` is refused A's byte range and flock, by a session other than `notSid`. */
async function refused(other: Meta, ino: number, notSid?: number): Promise<LockConflict | undefined> {
  const c = await other.getlk(ino, 'other', 'w', 10, 20);
  if (c === undefined || c.sid === notSid) return undefined;
  return c;
}

describe('metadata service: locks across restarts', () => {
  it('graceful restart: the client holds its locks (and open files) again, and others are refused them again', async () => {
    const l = await makeServiceLab([]);
    labs.push(l);
    const port = l.service!.port;
    const a = await remote(l.serviceUrl());
    const other = await Meta.open(l.primary, { heartbeatMs: 0, lookupCacheMs: 0 });
    try {
      const f = await a.create(ctx, 1, 'f', 0o644);
      await a.open(ctx, f.ino, 0, f);
      assert.equal(await a.setlk(f.ino, 'a-proc', 'w', 0, 100, 7), undefined);
      assert.equal(await a.flock(f.ino, 'a-file', 'ex', 7), true);
      const before = await refused(other, f.ino);
      assert.equal(before?.pid, 7);
      assert.equal(await other.flock(f.ino, 'other', 'ex', 9), false);

      await l.stopService();
      await l.startService(port);
      await until('the client took its byte-range lock again', async () => (await refused(other, f.ino, before!.sid)) !== undefined);
      const again = (await refused(other, f.ino))!;
      assert.equal(again.pid, 7);
      assert.deepEqual([again.start, again.end, again.type], [0, 100, 'w']);
      await a.sessionRestored();
      assert.equal(await other.flock(f.ino, 'other', 'ex', 9), false, 'the flock is held again');
      // The open file was registered again on the new session: the client's own unlink keeps it while open.
      await a.unlink(ctx, 1, 'f');
      assert.equal((await other.getattr(f.ino)).nlink, 0, 'kept for its open handle');

      assert.equal(await a.setlk(f.ino, 'a-proc', 'u', 0, 100, 7), undefined);
      assert.equal(await a.flock(f.ino, 'a-file', 'un', 7), true);
      assert.equal(await other.setlk(f.ino, 'other', 'w', 10, 20, 9), undefined, 'free once the client unlocked');
      assert.equal(await other.flock(f.ino, 'other', 'ex', 9), true);
    } finally {
      await a.close();
      await other.close();
    }
  });

  it('SIGKILL: the old session holds the locks until it is judged dead, then the client holds them again; nobody else gets them', async () => {
    const l = await makeServiceLab([], { service: false });
    labs.push(l);
    const first = await startChild(l, 0);
    const a = await remote(`ferry://127.0.0.1:${first.port}`);
    const other = await Meta.open(l.primary, { heartbeatMs: 0, lookupCacheMs: 0 });
    try {
      const f = await a.create(ctx, 1, 'g', 0o644);
      assert.equal(await a.setlk(f.ino, 'a-proc', 'w', 0, 100, 7), undefined);
      assert.equal(await a.flock(f.ino, 'a-file', 'sh', 7), true);
      const old = (await refused(other, f.ino))!;
      first.child.kill('SIGKILL');
      await once(first.child, 'exit');
      await startChild(l, first.port);
      // Until the old session is cleaned (stale 0.5 s after its last beat), its records refuse everyone, the
      // client included; then the client's new session holds the lock.
      let sawOld = false;
      await until('the client holds its lock under its new session', async () => {
        const c = await other.getlk(f.ino, 'other', 'w', 10, 20);
        if (c?.sid === old.sid) sawOld = true;
        return c !== undefined && c.sid !== old.sid;
      });
      assert.ok(sawOld, "the killed service's session still held the lock at first");
      const now = (await refused(other, f.ino))!;
      assert.equal(now.pid, 7);
      await a.sessionRestored();
      assert.equal(await other.flock(f.ino, 'other', 'ex', 9), false, 'the flock (shared) is held again: an exclusive one is refused');
      assert.equal(await other.flock(f.ino, 'other2', 'sh', 9), true, 'a shared flock is compatible');
      assert.equal(await other.flock(f.ino, 'other2', 'un', 9), true);
      assert.equal(await a.setlk(f.ino, 'a-proc', 'u', 0, 100, 7), undefined);
      assert.equal(await other.setlk(f.ino, 'other', 'w', 10, 20, 9), undefined);
    } finally {
      await a.close();
      await other.close();
    }
  });
});
