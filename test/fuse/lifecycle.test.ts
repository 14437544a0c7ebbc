/**
 * The life of a mount: clear errors for bad mount points, background mode, `ferry umount`, SIGTERM while
 * busy, read-only mounts, and a mount killed with SIGKILL that `ferry umount --force` clears.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { exec, ferry, fuseUnavailable, makeVolume, removeVolume, sh, startMount, unmountQuietly, type Volume } from './helpers.js';

const skip = fuseUnavailable();

async function waitGone(pid: number, ms = 15_000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; ) {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

describe('ferry mount lifecycle', { skip }, () => {
  const vols: Volume[] = [];
  const pids: number[] = [];
  const fresh = async (): Promise<Volume> => {
    const v = await makeVolume();
    vols.push(v);
    return v;
  };

  afterEach(async () => {
    for (const pid of pids.splice(0)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const v of vols.splice(0)) await removeVolume(v);
  });

  it('refuses a missing, non-empty or already mounted mount point with a clear error', async () => {
    const v = await fresh();
    let r = await ferry(['mount', v.metaUrl, join(v.dir, 'nowhere')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^ferry: mount point .*nowhere does not exist/m);
    await writeFile(join(v.mnt, 'x'), 'x');
    r = await ferry(['mount', v.metaUrl, v.mnt]);
    assert.match(r.stderr, /is not empty/);
    await exec('rm', [join(v.mnt, 'x')]);
    r = await ferry(['mount', v.metaUrl, join(v.dir, 'meta.db')]);
    assert.match(r.stderr, /is not a directory/);
    const m = await startMount(v);
    try {
      r = await ferry(['mount', '-d', v.metaUrl, v.mnt]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /is already mounted .*ferry umount/);
      r = await ferry(['umount', join(v.dir, 'bucket')]);
      assert.match(r.stderr, /is not mounted/);
    } finally {
      await m.stop();
    }
    assert.equal(await m.exited, 0);
  });

  it('mounts in the background (-d), and exits after ferry umount with the data flushed', async () => {
    const v = await fresh();
    const r = await ferry(['mount', '-d', v.metaUrl, v.mnt, '--log', join(v.dir, 'mount.log')]);
    assert.equal(r.code, 0, r.stderr);
    const pid = Number(/pid (\d+)/.exec(r.stderr)?.[1]);
    assert.ok(pid > 0, r.stderr);
    pids.push(pid);
    await sh(`head -c 3000000 /dev/urandom > f && sha256sum f > ../sum`, v.mnt);
    const u = await ferry(['umount', v.mnt]);
    assert.equal(u.code, 0, u.stderr);
    assert.ok(await waitGone(pid), 'the mount process exits after ferry umount');
    // remount and check the bytes
    const m = await startMount(v);
    try {
      await sh(`cd mnt && sha256sum -c ../sum`, v.dir);
    } finally {
      await m.stop();
    }
  });

  it('unmounts lazily on SIGTERM while a file is open, and exits', async () => {
    const v = await fresh();
    const m = await startMount(v);
    await sh(`echo data > held`, v.mnt);
    const holder = spawn('bash', ['-c', 'exec 3<held; echo open; sleep 30'], { cwd: v.mnt, stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      await new Promise((r) => holder.stdout.once('data', r));
      m.child.kill('SIGTERM');
      assert.equal(await m.exited, 0, m.log());
      assert.match(m.log(), /busy.*lazily/s);
    } finally {
      holder.kill('SIGKILL');
    }
    await unmountQuietly(v.mnt);
  });

  it('reads right under parallel streaming readers, and stops cleanly (SIGTERM) while their answers are in flight', async () => {
    // Long read answers leave from the addon's reply threads, often as views of cached blocks: parallel readers
    // must each get the right bytes, and teardown must wait for answers still being written.
    const v = await fresh();
    const m = await startMount(v);
    await sh('head -c 48M /dev/urandom > ../big.src && cp ../big.src big && sha256sum < ../big.src > ../big.sum', v.mnt);
    const sums = await sh('for i in 1 2 3; do sha256sum < big & done; wait', v.mnt);
    const want = await sh('cat ../big.sum', v.mnt);
    assert.deepEqual(sums.trim().split('\n'), [want.trim(), want.trim(), want.trim()]);
    const readers = spawn('bash', ['-c', 'for i in 1 2 3; do (while cat big > /dev/null 2>&1; do :; done) & done; echo go; wait'], {
      cwd: v.mnt,
      stdio: ['ignore', 'pipe', 'ignore'],
      detached: true,
    });
    try {
      await new Promise((r) => readers.stdout.once('data', r));
      await new Promise((r) => setTimeout(r, 500));
      m.child.kill('SIGTERM');
      assert.equal(await m.exited, 0, m.log());
    } finally {
      try {
        process.kill(-readers.pid!, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    await unmountQuietly(v.mnt);
  });

  it('mounts read-only', async () => {
    const v = await fresh();
    let m = await startMount(v);
    await sh(`echo x > f`, v.mnt);
    await m.stop();
    m = await startMount(v, ['--read-only']);
    try {
      const out = await sh(`cat f; (echo y > f) 2>&1 || true; (mkdir d) 2>&1 || true`, v.mnt);
      assert.match(out, /^x\n.*Read-only file system.*\n.*Read-only file system/s);
    } finally {
      await m.stop();
    }
  });

  it('clears a mount killed with SIGKILL with ferry umount --force, remounts, and fsck is clean', async () => {
    const v = await fresh();
    let m = await startMount(v);
    await sh(`mkdir -p a/b && head -c 2500000 /dev/urandom > a/b/f && echo small > a/s && sha256sum a/b/f a/s > ../sums`, v.mnt);
    m.child.kill('SIGKILL');
    await m.exited;
    const dead = await exec('stat', [v.mnt]).then(
      () => 'alive',
      (e: Error & { stderr?: string }) => e.stderr ?? '',
    );
    assert.match(dead, /Transport endpoint is not connected/);
    let r = await ferry(['mount', v.metaUrl, v.mnt]);
    assert.match(r.stderr, /dead mount.*ferry umount --force/);
    r = await ferry(['umount', '--force', v.mnt]);
    assert.equal(r.code, 0, r.stderr);
    m = await startMount(v);
    try {
      await sh(`cd mnt && sha256sum -c ../sums`, v.dir);
    } finally {
      await m.stop();
    }
    const f = await ferry(['fsck', v.metaUrl]);
    assert.equal(f.code, 0, f.stdout + f.stderr);
  });
});
