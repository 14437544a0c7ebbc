/**
 * `ferry mount` for real: one mount serves every case in this file, driven by ordinary tools (cp, tar, rsync,
 * git, python) from child processes, and compared with the same steps on a local directory.
 */

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exec, fuseUnavailable, makeVolume, removeVolume, sh, startMount, type RunningMount, type Volume } from './helpers.js';

const skip = fuseUnavailable();
const STEPS = join(import.meta.dirname, 'fixtures/posix-steps.py');

/** A tree with files of edge sizes (empty, one byte, block edges, several blocks), nesting and links. */
const MAKE_TREE = `
mkdir -p t/a/b/c t/empty t/'with space'
: > t/zero
printf x > t/one
head -c 1048575 /dev/urandom > t/a/block-minus-1
head -c 1048577 /dev/urandom > t/a/block-plus-1
head -c 5000000 /dev/urandom > t/a/b/five-mb
for i in $(seq 1 40); do head -c $((i * 997)) /dev/urandom > t/a/b/c/small-$i; done
echo hello > t/'with space'/'file name'
ln -s a/b/five-mb t/link-to-file
ln -s a t/link-to-dir
ln t/one t/one-hardlink
chmod 0600 t/one; chmod 0750 t/a/b
`;

/** Content, type, mode and symlink targets of every entry, sorted (no times, no inode numbers). */
const MANIFEST = `find . -mindepth 1 -printf '%P %y %m %s %l\\n' | sort; find . -type f -print0 | sort -z | xargs -0 -r sha256sum`;

describe('ferry mount', { skip }, () => {
  let vol: Volume;
  let m: RunningMount;
  let local: string;

  before(async () => {
    vol = await makeVolume();
    m = await startMount(vol, ['--allow-other']);
    local = await mkdtemp(join(tmpdir(), 'ferry-local-'));
    await exec('chmod', ['0755', local]);
  });

  after(async () => {
    await m?.stop();
    if (vol !== undefined) await removeVolume(vol);
    if (local !== undefined) await rm(local, { recursive: true, force: true });
  });

  it('copies a tree in and out byte for byte (cp -a)', async () => {
    await sh(MAKE_TREE, local);
    const want = await sh(`cd t && ${MANIFEST}`, local);
    await sh(`cp -a t "${vol.mnt}/cp"`, local);
    assert.equal(await sh(`cd cp && ${MANIFEST}`, vol.mnt), want);
    await sh(`cp -a "${vol.mnt}/cp" back`, local);
    assert.equal(await sh(`cd back && ${MANIFEST}`, local), want);
    // hard links stay one inode through the mount
    const inos = await sh(`stat -c %i cp/one cp/one-hardlink`, vol.mnt);
    const [a, b] = inos.trim().split('\n');
    assert.equal(a, b);
  });

  it('round-trips tar and rsync -a', async () => {
    const want = await sh(`cd t && ${MANIFEST}`, local);
    await sh(`mkdir "${vol.mnt}/tar" && tar -C t -cf - . | tar -C "${vol.mnt}/tar" -xf -`, local);
    assert.equal(await sh(`cd tar && ${MANIFEST}`, vol.mnt), want);
    await sh(`mkdir tar-back && tar -C "${vol.mnt}/tar" -cf - . | tar -C tar-back -xf -`, local);
    assert.equal(await sh(`cd tar-back && ${MANIFEST}`, local), want);

    await sh(`rsync -a t/ "${vol.mnt}/rsync/"`, local);
    assert.equal(await sh(`cd rsync && ${MANIFEST}`, vol.mnt), want);
    await sh(`rsync -a "${vol.mnt}/rsync/" rsync-back/`, local);
    assert.equal(await sh(`cd rsync-back && ${MANIFEST}`, local), want);
  });

  it('behaves like a local directory for POSIX calls and their errors', async () => {
    const l = join(local, 'posix');
    const f = join(vol.mnt, 'posix');
    await mkdir(l);
    await sh(`mkdir posix`, vol.mnt);
    const want = (await exec('python3', [STEPS], { cwd: l })).stdout;
    const got = (await exec('python3', [STEPS], { cwd: f })).stdout;
    assert.ok(want.split('\n').length > 70, want);
    assert.deepEqual(got.split('\n'), want.split('\n'));
  });

  it('gives an unprivileged user EACCES and EPERM as a local directory does', async () => {
    const prepare = `
      mkdir -p p/closed p/exec p/sticky
      echo secret > p/secret; chmod 0600 p/secret
      echo public > p/public; chmod 0644 p/public
      echo x > p/closed/x; chmod 0700 p/closed
      echo f > p/exec/f; chmod 0711 p/exec
      chmod 1777 p/sticky; echo r > p/sticky/rootfile; chmod 0666 p/sticky/rootfile
      echo o > p/sticky/open; chmod 0666 p/sticky/open
      chmod 0755 p
    `;
    const l = join(local, 'perm');
    await mkdir(l);
    await sh(`chmod 0755 perm`, local);
    await sh(`mkdir perm && chmod 0755 perm`, vol.mnt);
    await sh(prepare, l);
    await sh(prepare, join(vol.mnt, 'perm'));
    const run = async (cwd: string): Promise<string> =>
      (await exec('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '/usr/bin/python3', STEPS, 'nonroot'], { cwd })).stdout;
    const want = await run(l);
    assert.match(want, /read 0600 root file: EACCES/);
    assert.match(want, /chmod root file: EPERM/);
    assert.deepEqual((await run(join(vol.mnt, 'perm'))).split('\n'), want.split('\n'));
  });

  it('shows a write through one hard link at once through the other', async () => {
    const out = await sh(
      `mkdir hl && echo one > hl/a && ln hl/a hl/b && stat -c '%s %h' hl/b && echo more >> hl/a && stat -c '%s %h %i' hl/a | cut -d' ' -f1,2 && stat -c '%s %h' hl/b && cat hl/b && ln hl/b hl/c && stat -c %h hl/a`,
      vol.mnt,
    );
    assert.equal(out, '4 2\n9 2\n9 2\none\nmore\n3\n');
  });

  it('runs git init, commit, branch and checkout inside the mount', async () => {
    const env = { GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@e', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@e', GIT_CONFIG_NOSYSTEM: '1', HOME: local };
    const out = await sh(
      `mkdir repo && cd repo && git init -q -b main . && echo v1 > f.txt && mkdir sub && echo s > sub/s.txt && git add . && git commit -qm one &&
       git checkout -qb feature && echo v2 > f.txt && git rm -q sub/s.txt && git commit -qam two &&
       git checkout -q main && cat f.txt sub/s.txt && git checkout -q feature && cat f.txt && test ! -e sub && git log --format=%s | tr '\\n' ' ' && git fsck --no-progress 2>&1 | grep -v '^dangling' || true; git status --porcelain`,
      vol.mnt,
      env,
    );
    assert.equal(out, 'v1\ns\nv2\ntwo one ');
  });

  it('serves live counters in /.stats', async () => {
    const text = await sh(`cat .stats`, vol.mnt);
    assert.match(text, /ferry_fuse_ops_total\{op="write"\} \d+/);
    assert.match(text, /ferry_fuse_written_bytes_total [1-9]\d*/);
    // the block store's and caches' counters too
    assert.match(text, /ferry_chunk_\w+ \d+/);
    assert.match(text, /ferry_mem_cache_\w+ \d+/);
    // not listed, so copies of the mount root do not pick it up
    assert.doesNotMatch(await sh(`ls -a`, vol.mnt), /\.stats/);
  });

  it('keeps files it unlinked readable until the last close, then leaves no trace', async () => {
    const out = await sh(
      `mkdir ul && echo keep > ul/f && exec 3<ul/f && rm ul/f && cat <&3 && exec 3<&- && sleep 0.2 && ls -a ul | tr '\\n' ' '`,
      vol.mnt,
    );
    assert.equal(out, 'keep\n. .. ');
  });
});
