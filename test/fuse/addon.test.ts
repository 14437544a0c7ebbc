/**
 * What Ferry's own FUSE addon (native/fuse) adds over fuse-native, for real: two mounts of one volume, driven
 * from child processes (python for fcntl/flock, coreutils for times, fallocate, setpriv for another user).
 *
 *   - utimens: mtime and atime each as given (touch -m / -a, nanoseconds to the millisecond), UTIME_NOW;
 *   - the caller's identity: files a non-root user creates are that user's; EPERM/EACCES from Meta;
 *   - fcntl byte-range locks and flock: across processes, across two mounts (the metadata engine), blocking
 *     waits, F_GETLK, release on close, no lock left behind by a waiter killed while it waited;
 *   - fallocate (allocate, keep size, punch hole);
 *   - 64-bit inode numbers;
 *   - close-to-open: a change made through the other mount shows after reopen (keep_cache only if unchanged);
 *   - spinning for the next request stops when requests stop (an idle mount uses no CPU).
 */

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { addonUnavailable, exec, makeVolume, removeVolume, sh, startMount, type RunningMount, type Volume } from './helpers.js';

const skip = addonUnavailable();
const LOCKS = join(import.meta.dirname, 'fixtures/locks.py');
const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups'];
/** First inode number of the volume: past 32 bits. */
const BIG_INO = 2 ** 33 + 7;

async function py(cwd: string, ...args: string[]): Promise<string> {
  const { stdout } = await exec('python3', [LOCKS, ...args], { cwd });
  return stdout.trim();
}

/** A process holding a lock until released; resolves once it printed "locked". */
async function hold(cwd: string, ...args: string[]): Promise<{ child: ChildProcess; release(): Promise<void> }> {
  const child = spawn('python3', [LOCKS, ...args], { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  await new Promise<void>((res, rej) => {
    const t = setTimeout(() => rej(new Error(`no lock after 10 s: ${err}`)), 10_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('locked')) {
        clearTimeout(t);
        res();
      }
    });
    void exited.then(() => {
      clearTimeout(t);
      rej(new Error(`holder exited: ${err}`));
    });
  });
  return {
    child,
    async release() {
      child.stdin!.end();
      await exited;
    },
  };
}

/**
 * Starts a step that waits (blocking lock) and resolves once it is about to wait (it printed "waiting");
 * `done` is what it printed after that, when it ends.
 */
async function waiting(cwd: string, ...args: string[]): Promise<{ child: ChildProcess; done: Promise<string> }> {
  const child = spawn('python3', [LOCKS, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const done = new Promise<string>((res) => child.once('exit', () => res(out.replace(/^waiting\n/, '').trim())));
  await new Promise<void>((res, rej) => {
    const t = setTimeout(() => rej(new Error('the waiter did not start within 10 s')), 10_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.startsWith('waiting')) {
        clearTimeout(t);
        res();
      }
    });
  });
  return { child, done };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("ferry mount on Ferry's FUSE addon", { skip }, () => {
  let vol: Volume;
  let m1: RunningMount;
  let m2: RunningMount;
  let mnt1: string;
  let mnt2: string;

  before(async () => {
    vol = await makeVolume({ nextInode: BIG_INO });
    mnt1 = vol.mnt;
    mnt2 = join(vol.dir, 'mnt2');
    await mkdir(mnt2);
    m1 = await startMount(vol, ['--allow-other']);
    m2 = await startMount({ ...vol, mnt: mnt2 }, ['--allow-other']);
    await exec('chmod', ['0777', mnt1]);
  });

  after(async () => {
    await m1?.stop();
    await m2?.stop();
    if (vol !== undefined) {
      await exec('fusermount', ['-uz', mnt2]).catch(() => undefined);
      await removeVolume(vol);
    }
  });

  it('runs on the addon (the mount log says which binding)', () => {
    assert.match(m1.log(), /FUSE binding ferry-fuse/);
  });

  it('sets mtime and atime as utimens gives them (touch -m, touch -a, nanoseconds)', async () => {
    const out = await sh(
      `: > t1
       touch -a -d '2010-01-01 00:00:00' t1
       touch -m -d '2001-02-03 04:05:06.789' t1
       stat -c '%y|%x' t1
       touch -a -d '2012-12-12 12:12:12.5' t1
       stat -c '%y|%x' t1
       python3 -c "import os; os.utime('t1', ns=(1500000000123000000, 1600000000456000000)); s = os.stat('t1'); print(s.st_atime_ns, s.st_mtime_ns)"`,
      mnt1,
    );
    const [first, second, ns] = out.trim().split('\n');
    assert.equal(first, '2001-02-03 04:05:06.789000000 +0000|2010-01-01 00:00:00.000000000 +0000');
    assert.equal(second, '2001-02-03 04:05:06.789000000 +0000|2012-12-12 12:12:12.500000000 +0000');
    assert.equal(ns, '1500000000123000000 1600000000456000000');
  });

  it('sets the current time (UTIME_NOW) for a non-owner with write permission, EPERM for an explicit time', async () => {
    await sh(`: > t2; chmod 0666 t2; touch -d '2001-01-01' t2`, mnt1);
    const before = Number((await sh('stat -c %Y t2', mnt1)).trim());
    assert.equal(before, 978307200);
    await exec('setpriv', [...NOBODY, 'touch', join(mnt1, 't2')]);
    const now = Number((await sh('stat -c %Y t2', mnt1)).trim());
    assert.ok(Math.abs(now - Date.now() / 1000) < 60, `mtime ${now} is now`);
    await assert.rejects(exec('setpriv', [...NOBODY, 'touch', '-d', '2001-01-01', join(mnt1, 't2')]), /Operation not permitted/);
  });

  it('makes files a non-root user creates that user\'s, and checks that user\'s permissions', async () => {
    await sh('mkdir -p own && chmod 0777 own', mnt1);
    const dir = join(mnt1, 'own');
    await exec('setpriv', [...NOBODY, 'bash', '-c', `cd ${dir} && : > f && mkdir d && ln -s f l && mkfifo p`]);
    const owners = await sh(`stat -c '%n %u %g' f d l p`, dir);
    assert.equal(owners, 'f 65534 65534\nd 65534 65534\nl 65534 65534\np 65534 65534\n');
    await sh(': > rootfile && chmod 0644 rootfile', dir);
    await assert.rejects(exec('setpriv', [...NOBODY, 'chmod', '0666', join(dir, 'rootfile')]), /Operation not permitted/);
    await assert.rejects(exec('setpriv', [...NOBODY, 'chown', '65534', join(dir, 'rootfile')]), /Operation not permitted/);
    await assert.rejects(exec('setpriv', [...NOBODY, 'bash', '-c', `echo x >> ${join(dir, 'rootfile')}`]), /Permission denied/);
    // Root may give the file away; the new owner may then change its mode.
    await sh('chown 65534:65534 rootfile', dir);
    await exec('setpriv', [...NOBODY, 'chmod', '0600', join(dir, 'rootfile')]);
    assert.equal((await sh(`stat -c '%a %u' rootfile`, dir)).trim(), '600 65534');
  });

  it('hands out 64-bit inode numbers', async () => {
    const ino = Number((await sh(': > big && stat -c %i big', mnt1)).trim());
    assert.ok(ino >= BIG_INO, `inode ${ino} is past 32 bits`);
    // ls -i and the other mount agree.
    assert.equal(Number((await sh('stat -c %i big', mnt2)).trim()), ino);
  });

  it('allocates with fallocate: extends, keeps the size, punches holes', async () => {
    const out = await sh(
      `fallocate -l 1M fa; stat -c %s fa
       fallocate -n -o 1M -l 1M fa; stat -c %s fa
       head -c 65536 /dev/urandom > fb; fallocate -p -o 4096 -l 8192 fb; stat -c %s fb
       cmp -n 8192 -i 4096:0 fb /dev/zero && echo zeroed
       cmp -n 4096 fb /dev/zero >/dev/null || echo kept`,
      mnt1,
    );
    assert.equal(out, '1048576\n1048576\n65536\nzeroed\nkept\n');
  });

  it('keeps fcntl byte-range locks between processes: conflicts, other ranges, F_GETLK, release on close', async () => {
    const h = await hold(mnt1, 'hold-lockf', 'lk1', '0', '10');
    try {
      assert.equal(await py(mnt1, 'try-lockf', 'lk1', '0', '10'), 'EAGAIN');
      assert.equal(await py(mnt1, 'try-lockf', 'lk1', '5', '1'), 'EAGAIN');
      assert.equal(await py(mnt1, 'try-lockf', 'lk1', '10', '10'), 'ok');
      assert.equal(await py(mnt1, 'getlk', 'lk1', '0', '0'), 'w 0 10');
      assert.equal(await py(mnt1, 'getlk', 'lk1', '20', '5'), 'unlocked');
    } finally {
      await h.release();
    }
    assert.equal(await py(mnt1, 'try-lockf', 'lk1', '0', '10'), 'ok');
    // Read locks share; a write lock waits for them.
    const r1 = await hold(mnt1, 'hold-shared-lockf', 'lk2', '0', '0');
    const r2 = await hold(mnt1, 'hold-shared-lockf', 'lk2', '0', '0');
    assert.equal(await py(mnt1, 'try-lockf', 'lk2', '0', '0'), 'EAGAIN');
    await r1.release();
    await r2.release();
    assert.equal(await py(mnt1, 'try-lockf', 'lk2', '0', '0'), 'ok');
  });

  it('keeps flock between processes and releases it on the last close', async () => {
    const h = await hold(mnt1, 'hold-flock', 'fl1');
    try {
      assert.equal(await py(mnt1, 'try-flock', 'fl1'), 'EAGAIN');
    } finally {
      await h.release();
    }
    assert.equal(await py(mnt1, 'try-flock', 'fl1'), 'ok');
  });

  it('holds fcntl locks and flock across two mounts of one volume (through the metadata engine)', async () => {
    await sh(': > shared', mnt1);
    const a = await hold(mnt1, 'hold-lockf', 'shared', '0', '100');
    const b = await hold(mnt1, 'hold-flock', 'shared');
    try {
      assert.equal(await py(mnt2, 'try-lockf', 'shared', '50', '10'), 'EAGAIN');
      assert.equal(await py(mnt2, 'try-lockf', 'shared', '100', '10'), 'ok');
      assert.equal(await py(mnt2, 'try-flock', 'shared'), 'EAGAIN');
    } finally {
      await a.release();
      await b.release();
    }
    assert.equal(await py(mnt2, 'try-lockf', 'shared', '50', '10'), 'ok');
    assert.equal(await py(mnt2, 'try-flock', 'shared'), 'ok');
  });

  it('lets a blocking lock wait until the holder on the other mount lets go (F_SETLKW, flock)', async () => {
    const a = await hold(mnt1, 'hold-lockf', 'wait1', '0', '0');
    const w = await waiting(mnt2, 'wait-lockf', 'wait1', '0', '0');
    await sleep(600);
    await a.release();
    const out = await w.done;
    assert.match(out, /^locked /);
    assert.ok(Number(out.split(' ')[1]) >= 0.3, `waited ${out}`);

    const b = await hold(mnt2, 'hold-flock', 'wait2');
    const wf = await waiting(mnt1, 'wait-flock', 'wait2');
    await sleep(400);
    await b.release();
    assert.match(await wf.done, /^locked /);
  });

  it('leaves no lock behind when a waiter is killed while it waits', async () => {
    const a = await hold(mnt1, 'hold-lockf', 'kill1', '0', '0');
    const w = await waiting(mnt1, 'wait-lockf', 'kill1', '0', '0');
    await sleep(300);
    w.child.kill('SIGKILL');
    await w.done;
    await a.release();
    await sleep(300);
    assert.equal(await py(mnt2, 'try-lockf', 'kill1', '0', '0'), 'ok');
  });

  it('stops spinning when requests stop: an idle mount uses no CPU after a burst of small files', async () => {
    // After an answer the addon keeps the event loop polling for the next request (50 us); a spin that ends
    // without one must turn it off, or an idle mount would burn a core.
    await sh('mkdir spin && for i in $(seq 1 300); do echo x > spin/f$i; done && ls -l spin > /dev/null', mnt1);
    await sleep(200);
    const ticks = async (): Promise<number> => {
      // utime and stime: fields 14 and 15 of /proc/PID/stat, counted after the command name's ')'.
      const f = (await readFile(`/proc/${m1.child.pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
      return Number(f[11]) + Number(f[12]);
    };
    const first = await ticks();
    await sleep(2000);
    const used = (await ticks()) - first;
    assert.ok(used <= 20, `the idle mount used ${used} clock ticks of CPU in 2 s (100 per second would be a core)`);
  });

  it('shows a change made through the other mount after reopening (close-to-open)', async () => {
    await sh('printf aaaaaaaa > c2o; cat c2o > /dev/null; cat c2o > /dev/null', mnt1);
    await sleep(20);
    await sh('printf bbbbbbbb > c2o', mnt2);
    // Same size, newer mtime: the first mount must not serve its cached pages.
    assert.equal(await sh('cat c2o', mnt1), 'bbbbbbbb');
  });
});
