/**
 * POSIX semantics through the SDK (`openVolume` -> Volume): renames, permissions, links, sparse files,
 * truncation, overwrites across block and chunk edges, appends, concurrent readers, symlinks, xattrs,
 * streams and copies. Volumes use 64 KiB blocks so block edges are cheap to cross; chunks are 64 MiB.
 */

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir as readLocalDir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import { openVolume, type Volume } from '../../src/index.js';
import { CHUNK_BYTES, RENAME_EXCHANGE, RENAME_NOREPLACE, XATTR_CREATE, XATTR_REPLACE } from '../../src/meta/types.js';
import { makeVolume, type TestVolume } from '../helpers/volume.js';

const B = 64 << 10; // block size of the test volumes
const C = CHUNK_BYTES;
const U1 = { uid: 1000, gid: 1000, gids: [] };
const U2 = { uid: 1001, gid: 1001, gids: [] };

const code = (c: string): { code: string } => ({ code: c });

async function read(vol: Volume, path: string): Promise<Buffer> {
  return (await vol.readFile(path)) as Buffer;
}

async function readRange(vol: Volume, path: string, pos: number, len: number): Promise<Buffer> {
  const fh = await vol.open(path, 'r');
  try {
    const buf = Buffer.alloc(len);
    let done = 0;
    while (done < len) {
      const { bytesRead } = await fh.read(buf, done, len - done, pos + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return buf.subarray(0, done);
  } finally {
    await fh.close();
  }
}

async function writeAt(vol: Volume, path: string, pos: number, data: Buffer, flags = 'r+'): Promise<void> {
  const fh = await vol.open(path, flags);
  try {
    await fh.write(data, 0, data.length, pos);
  } finally {
    await fh.close();
  }
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function countObjects(dir: string): Promise<number> {
  const entries = await readLocalDir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).length;
}

/** One fresh volume for each describe block. */
function withVolume(opts: Parameters<typeof makeVolume>[0] = {}): { get: () => TestVolume } {
  let tv: TestVolume | undefined;
  before(async () => {
    tv = await makeVolume(opts);
  });
  after(async () => {
    await tv?.cleanup();
  });
  return {
    get: () => {
      assert.ok(tv !== undefined, 'volume not ready');
      return tv;
    },
  };
}

describe('rename', () => {
  const v = withVolume();
  let vol: Volume;
  let n = 0;
  /** A fresh directory per case so cases do not see each other's names. */
  async function dir(): Promise<string> {
    vol = v.get().vol;
    const d = `/r${n++}`;
    await vol.mkdir(d);
    return d;
  }

  it('moves a file to a new name in the same directory', async () => {
    const d = await dir();
    await vol.writeFile(`${d}/a`, 'alpha');
    const ino = (await vol.stat(`${d}/a`)).ino;
    await vol.rename(`${d}/a`, `${d}/b`);
    await assert.rejects(vol.stat(`${d}/a`), code('ENOENT'));
    assert.equal(await vol.readFile(`${d}/b`, 'utf8'), 'alpha');
    assert.equal((await vol.stat(`${d}/b`)).ino, ino, 'rename keeps the inode');
    assert.deepEqual(await vol.readdir(d), ['b']);
  });

  it('replaces an existing file and releases the old one', async () => {
    const d = await dir();
    await vol.writeFile(`${d}/a`, 'new');
    await vol.writeFile(`${d}/b`, 'old contents');
    const before = await vol.statfs();
    await vol.rename(`${d}/a`, `${d}/b`);
    assert.equal(await vol.readFile(`${d}/b`, 'utf8'), 'new');
    assert.deepEqual(await vol.readdir(d), ['b']);
    const afterFs = await vol.statfs();
    assert.equal(afterFs.ffree, before.ffree + 1, 'the replaced inode is freed');
  });

  it('replaces an existing empty directory with a directory', async () => {
    const d = await dir();
    await vol.mkdir(`${d}/src`);
    await vol.writeFile(`${d}/src/f`, 'x');
    await vol.mkdir(`${d}/dst`);
    const nlink = (await vol.stat(d)).nlink;
    await vol.rename(`${d}/src`, `${d}/dst`);
    assert.deepEqual(await vol.readdir(d), ['dst']);
    assert.equal(await vol.readFile(`${d}/dst/f`, 'utf8'), 'x');
    assert.equal((await vol.stat(d)).nlink, nlink - 1, 'one subdirectory fewer');
  });

  it('fails with ENOTEMPTY over a non-empty directory', async () => {
    const d = await dir();
    await vol.mkdir(`${d}/src`);
    await vol.mkdir(`${d}/dst`);
    await vol.writeFile(`${d}/dst/keep`, 'k');
    await assert.rejects(vol.rename(`${d}/src`, `${d}/dst`), code('ENOTEMPTY'));
    assert.deepEqual(await vol.readdir(d), ['dst', 'src']);
    assert.equal(await vol.readFile(`${d}/dst/keep`, 'utf8'), 'k');
  });

  it('fails with ENOTDIR moving a directory over a file', async () => {
    const d = await dir();
    await vol.mkdir(`${d}/dir`);
    await vol.writeFile(`${d}/file`, 'f');
    await assert.rejects(vol.rename(`${d}/dir`, `${d}/file`), code('ENOTDIR'));
    assert.ok((await vol.stat(`${d}/dir`)).isDirectory());
    assert.equal(await vol.readFile(`${d}/file`, 'utf8'), 'f');
  });

  it('fails with EISDIR moving a file over a directory', async () => {
    const d = await dir();
    await vol.mkdir(`${d}/dir`);
    await vol.writeFile(`${d}/file`, 'f');
    await assert.rejects(vol.rename(`${d}/file`, `${d}/dir`), code('EISDIR'));
    assert.ok((await vol.stat(`${d}/dir`)).isDirectory());
    assert.ok((await vol.stat(`${d}/file`)).isFile());
  });

  it('fails with EINVAL moving a directory into itself or below itself', async () => {
    const d = await dir();
    await vol.mkdir(`${d}/a/b/c`, { recursive: true });
    await assert.rejects(vol.rename(`${d}/a`, `${d}/a/x`), code('EINVAL'));
    await assert.rejects(vol.rename(`${d}/a`, `${d}/a/b/x`), code('EINVAL'));
    await assert.rejects(vol.rename(`${d}/a`, `${d}/a/b/c/x`), code('EINVAL'));
    assert.ok((await vol.stat(`${d}/a/b/c`)).isDirectory());
    assert.deepEqual(await vol.readdir(d), ['a']);
  });

  it('moves files and directories across directories, keeping link counts', async () => {
    const d = await dir();
    await vol.mkdir(`${d}/from`);
    await vol.mkdir(`${d}/to`);
    await vol.writeFile(`${d}/from/f`, 'file');
    await vol.mkdir(`${d}/from/sub`);
    await vol.writeFile(`${d}/from/sub/inner`, 'inner');
    assert.equal((await vol.stat(`${d}/from`)).nlink, 3);
    assert.equal((await vol.stat(`${d}/to`)).nlink, 2);
    await vol.rename(`${d}/from/f`, `${d}/to/f2`);
    await vol.rename(`${d}/from/sub`, `${d}/to/sub`);
    assert.deepEqual(await vol.readdir(`${d}/from`), []);
    assert.deepEqual(await vol.readdir(`${d}/to`), ['f2', 'sub']);
    assert.equal(await vol.readFile(`${d}/to/f2`, 'utf8'), 'file');
    assert.equal(await vol.readFile(`${d}/to/sub/inner`, 'utf8'), 'inner');
    assert.equal((await vol.stat(`${d}/from`)).nlink, 2);
    assert.equal((await vol.stat(`${d}/to`)).nlink, 3);
    // '..' of the moved directory follows it.
    assert.equal((await vol.stat(`${d}/to/sub/..`)).ino, (await vol.stat(`${d}/to`)).ino);
    await vol.rmdir(`${d}/from`);
  });

  it('is a no-op between two hard links of one inode', async () => {
    const d = await dir();
    await vol.writeFile(`${d}/a`, 'same');
    await vol.link(`${d}/a`, `${d}/b`);
    await vol.rename(`${d}/a`, `${d}/b`);
    assert.deepEqual(await vol.readdir(d), ['a', 'b'], 'both names stay');
    assert.equal((await vol.stat(`${d}/a`)).nlink, 2);
    assert.equal(await vol.readFile(`${d}/b`, 'utf8'), 'same');
  });

  it('fails with ENOENT when the source is missing', async () => {
    const d = await dir();
    await assert.rejects(vol.rename(`${d}/missing`, `${d}/x`), code('ENOENT'));
    await assert.rejects(vol.rename(`${d}/no/such`, `${d}/x`), code('ENOENT'));
    await vol.writeFile(`${d}/a`, 'a');
    await assert.rejects(vol.rename(`${d}/a`, `${d}/no/such`), code('ENOENT'));
    assert.equal(await vol.readFile(`${d}/a`, 'utf8'), 'a');
  });

  it('RENAME_NOREPLACE fails with EEXIST on an existing target and moves otherwise', async () => {
    const d = await dir();
    await vol.writeFile(`${d}/a`, 'a');
    await vol.writeFile(`${d}/b`, 'b');
    await vol.mkdir(`${d}/dir`);
    await assert.rejects(vol.rename(`${d}/a`, `${d}/b`, RENAME_NOREPLACE), code('EEXIST'));
    await assert.rejects(vol.rename(`${d}/a`, `${d}/dir`, { noReplace: true }), code('EEXIST'));
    assert.equal(await vol.readFile(`${d}/a`, 'utf8'), 'a');
    assert.equal(await vol.readFile(`${d}/b`, 'utf8'), 'b');
    await vol.rename(`${d}/a`, `${d}/c`, RENAME_NOREPLACE);
    assert.deepEqual(await vol.readdir(d), ['b', 'c', 'dir']);
  });

  it('RENAME_EXCHANGE swaps two files atomically', async () => {
    const d = await dir();
    await vol.writeFile(`${d}/a`, 'AAA');
    await vol.writeFile(`${d}/b`, 'BB');
    const ia = (await vol.stat(`${d}/a`)).ino;
    const ib = (await vol.stat(`${d}/b`)).ino;
    await vol.rename(`${d}/a`, `${d}/b`, RENAME_EXCHANGE);
    assert.equal(await vol.readFile(`${d}/a`, 'utf8'), 'BB');
    assert.equal(await vol.readFile(`${d}/b`, 'utf8'), 'AAA');
    assert.equal((await vol.stat(`${d}/a`)).ino, ib);
    assert.equal((await vol.stat(`${d}/b`)).ino, ia);
  });

  it('RENAME_EXCHANGE swaps a file and a directory across directories', async () => {
    const d = await dir();
    await vol.mkdir(`${d}/p`);
    await vol.mkdir(`${d}/q`);
    await vol.writeFile(`${d}/p/file`, 'F');
    await vol.mkdir(`${d}/q/sub`);
    await vol.writeFile(`${d}/q/sub/inner`, 'I');
    await vol.rename(`${d}/p/file`, `${d}/q/sub`, { exchange: true });
    assert.ok((await vol.stat(`${d}/p/file`)).isDirectory());
    assert.equal(await vol.readFile(`${d}/p/file/inner`, 'utf8'), 'I');
    assert.equal(await vol.readFile(`${d}/q/sub`, 'utf8'), 'F');
    assert.equal((await vol.stat(`${d}/p`)).nlink, 3, 'p gained a subdirectory');
    assert.equal((await vol.stat(`${d}/q`)).nlink, 2, 'q lost one');
    assert.equal((await vol.stat(`${d}/p/file/..`)).ino, (await vol.stat(`${d}/p`)).ino);
  });

  it('RENAME_EXCHANGE fails with ENOENT when the target is missing, and rejects both flags with EINVAL', async () => {
    const d = await dir();
    await vol.writeFile(`${d}/a`, 'a');
    await assert.rejects(vol.rename(`${d}/a`, `${d}/none`, RENAME_EXCHANGE), code('ENOENT'));
    await assert.rejects(vol.rename(`${d}/a`, `${d}/a2`, RENAME_EXCHANGE | RENAME_NOREPLACE), code('EINVAL'));
    assert.deepEqual(await vol.readdir(d), ['a']);
  });

  it('RENAME_EXCHANGE refuses to put a directory below itself', async () => {
    const d = await dir();
    await vol.mkdir(`${d}/top/child`, { recursive: true });
    await vol.writeFile(`${d}/top/child/f`, 'f');
    await assert.rejects(vol.rename(`${d}/top`, `${d}/top/child/f`, RENAME_EXCHANGE), code('EINVAL'));
    await assert.rejects(vol.rename(`${d}/top/child/f`, `${d}/top`, RENAME_EXCHANGE), code('EINVAL'));
    assert.equal(await vol.readFile(`${d}/top/child/f`, 'utf8'), 'f');
  });
});

describe('permissions and the sticky bit (non-root)', () => {
  const v = withVolume();
  let root: Volume;
  let u1: Volume;
  let u2: Volume;
  before(async () => {
    root = v.get().vol;
    u1 = root.as(U1);
    u2 = root.as(U2);
    await root.chmod('/', 0o755);
    await root.mkdir('/home/u1', { recursive: true });
    await root.chown('/home/u1', U1.uid, U1.gid);
    await root.mkdir('/tmp', { mode: 0o777 });
    await root.chmod('/tmp', 0o1777);
  });

  it('fails with EACCES creating in a 0755 root-owned directory', async () => {
    await assert.rejects(u1.writeFile('/x', 'x'), code('EACCES'));
    await assert.rejects(u1.mkdir('/d'), code('EACCES'));
    await assert.rejects(u1.symlink('/home', '/l'), code('EACCES'));
    await assert.rejects(u1.rename('/home', '/home2'), code('EACCES'));
    await assert.rejects(root.stat('/x'), code('ENOENT'));
    // Root is not limited by the mode.
    await root.writeFile('/x', 'x');
    await root.unlink('/x');
  });

  it('lets the owner create in their own directory; new files belong to them', async () => {
    await u1.writeFile('/home/u1/mine', 'hello', { mode: 0o640 });
    const st = await u1.stat('/home/u1/mine');
    assert.equal(st.uid, U1.uid);
    assert.equal(st.gid, U1.gid);
    assert.equal(st.mode & 0o7777, 0o640);
    await assert.rejects(u2.writeFile('/home/u1/other', 'x'), code('EACCES'));
  });

  it('fails with EACCES reading another user\'s 0600 file; root and the owner read it', async () => {
    await u1.writeFile('/home/u1/secret', 'top secret', { mode: 0o600 });
    await assert.rejects(u2.readFile('/home/u1/secret'), code('EACCES'));
    await assert.rejects(u2.open('/home/u1/secret', 'r+'), code('EACCES'));
    assert.equal(await u1.readFile('/home/u1/secret', 'utf8'), 'top secret');
    assert.equal(await root.readFile('/home/u1/secret', 'utf8'), 'top secret');
    // Group bits apply to members of the file's group.
    await u1.chmod('/home/u1/secret', 0o640);
    const member = root.as({ uid: 1002, gid: 5, gids: [U1.gid] });
    assert.equal(await member.readFile('/home/u1/secret', 'utf8'), 'top secret');
    await assert.rejects(member.writeFile('/home/u1/secret', 'x'), code('EACCES'));
    await assert.rejects(u2.readFile('/home/u1/secret'), code('EACCES'));
  });

  it('denies a directory without r (readdir) or x (lookup)', async () => {
    await u1.mkdir('/home/u1/private', { mode: 0o700 });
    await u1.writeFile('/home/u1/private/f', 'f');
    await assert.rejects(u2.readdir('/home/u1/private'), code('EACCES'));
    await assert.rejects(u2.stat('/home/u1/private/f'), code('EACCES'));
    await u1.chmod('/home/u1/private', 0o711);
    await assert.rejects(u2.readdir('/home/u1/private'), code('EACCES'));
    assert.ok((await u2.stat('/home/u1/private/f')).isFile(), 'x alone allows lookup');
  });

  it('fails with EPERM on chmod, chown and utimes by a non-owner', async () => {
    await u1.writeFile('/home/u1/owned', 'o');
    await u1.chmod('/home/u1/owned', 0o666);
    await assert.rejects(u2.chmod('/home/u1/owned', 0o777), code('EPERM'));
    await assert.rejects(u2.chown('/home/u1/owned', U2.uid, U2.gid), code('EPERM'));
    await assert.rejects(u1.chown('/home/u1/owned', U2.uid, U1.gid), code('EPERM'), 'only root gives files away');
    await assert.rejects(u2.utimes('/home/u1/owned', 1000, 1000), code('EPERM'));
    assert.equal((await root.stat('/home/u1/owned')).mode & 0o777, 0o666);
    await u1.chmod('/home/u1/owned', 0o600);
    assert.equal((await root.stat('/home/u1/owned')).mode & 0o777, 0o600);
    await root.chown('/home/u1/owned', U2.uid, U2.gid);
    const st = await root.stat('/home/u1/owned');
    assert.deepEqual([st.uid, st.gid], [U2.uid, U2.gid]);
  });

  it('in a sticky 1777 directory, another user can neither unlink nor rename my file; I can', async () => {
    await u1.writeFile('/tmp/u1file', 'mine');
    await u2.writeFile('/tmp/u2file', 'theirs');
    await assert.rejects(u2.unlink('/tmp/u1file'), code('EPERM'));
    await assert.rejects(u2.rename('/tmp/u1file', '/tmp/stolen'), code('EPERM'));
    await assert.rejects(u2.rename('/tmp/u2file', '/tmp/u1file'), code('EPERM'), 'nor replace it');
    await u1.mkdir('/tmp/u1dir');
    await assert.rejects(u2.rmdir('/tmp/u1dir'), code('EPERM'));
    assert.equal(await u1.readFile('/tmp/u1file', 'utf8'), 'mine');
    await u1.rename('/tmp/u1file', '/tmp/u1renamed');
    await u1.unlink('/tmp/u1renamed');
    await u1.rmdir('/tmp/u1dir');
    // Root may remove anyone's files.
    await root.unlink('/tmp/u2file');
    assert.deepEqual(await root.readdir('/tmp'), []);
  });

  it('without the sticky bit, anyone with write access to the directory may unlink', async () => {
    await root.mkdir('/shared', { mode: 0o777 });
    await root.chmod('/shared', 0o777);
    await u1.writeFile('/shared/f', 'f');
    await u2.unlink('/shared/f');
    await assert.rejects(root.stat('/shared/f'), code('ENOENT'));
  });
});

describe('hard links', () => {
  const v = withVolume();

  it('share one inode: nlink, writes through either name, unlink of one keeps the other', async () => {
    const { vol } = v.get();
    await vol.mkdir('/hl');
    await vol.writeFile('/hl/a', 'original');
    await vol.mkdir('/hl/sub');
    await vol.link('/hl/a', '/hl/sub/b');
    const sa = await vol.stat('/hl/a');
    const sb = await vol.stat('/hl/sub/b');
    assert.equal(sa.ino, sb.ino);
    assert.equal(sa.nlink, 2);
    assert.equal(sb.nlink, 2);
    await writeAt(vol, '/hl/sub/b', 0, Buffer.from('ORIG'));
    assert.equal(await vol.readFile('/hl/a', 'utf8'), 'ORIGinal');
    await vol.link('/hl/a', '/hl/c');
    assert.equal((await vol.stat('/hl/c')).nlink, 3);
    await vol.unlink('/hl/a');
    await assert.rejects(vol.stat('/hl/a'), code('ENOENT'));
    assert.equal((await vol.stat('/hl/sub/b')).nlink, 2);
    await vol.unlink('/hl/c');
    const left = await vol.stat('/hl/sub/b');
    assert.equal(left.nlink, 1);
    assert.equal(await vol.readFile('/hl/sub/b', 'utf8'), 'ORIGinal');
  });

  it('fails with EEXIST on an existing name, EPERM for a directory, ENOENT for a missing source', async () => {
    const { vol } = v.get();
    await vol.mkdir('/hl2');
    await vol.writeFile('/hl2/a', 'a');
    await vol.writeFile('/hl2/b', 'b');
    await assert.rejects(vol.link('/hl2/a', '/hl2/b'), code('EEXIST'));
    await assert.rejects(vol.link('/hl2', '/hl2/dirlink'), code('EPERM'));
    await assert.rejects(vol.link('/hl2/none', '/hl2/c'), code('ENOENT'));
    assert.equal((await vol.stat('/hl2/a')).nlink, 1);
  });
});

describe('file data: sparse files, truncate, overwrites, appends, concurrency', () => {
  const v = withVolume();

  it('a write at 10 MiB leaves a zero-filled hole and sets the size', async () => {
    const { vol } = v.get();
    const at = 10 << 20;
    await writeAt(vol, '/sparse', at, Buffer.from('tail'), 'w');
    assert.equal((await vol.stat('/sparse')).size, at + 4);
    const all = await read(vol, '/sparse');
    assert.equal(all.length, at + 4);
    assert.ok(all.subarray(0, at).every((b) => b === 0), 'the hole reads as zeros');
    assert.equal(all.subarray(at).toString(), 'tail');
    assert.ok((await readRange(vol, '/sparse', 3 << 20, 1000)).every((b) => b === 0));
  });

  it('truncate shrinks and grows; bytes beyond a shrink are zeros after growing', async () => {
    const { vol } = v.get();
    const data = randomBytes(3 * B + 123);
    await vol.writeFile('/trunc', data);
    await vol.truncate('/trunc', B + 7);
    assert.equal((await vol.stat('/trunc')).size, B + 7);
    assert.deepEqual(await read(vol, '/trunc'), data.subarray(0, B + 7));
    await vol.truncate('/trunc', 4 * B);
    const grown = await read(vol, '/trunc');
    assert.equal(grown.length, 4 * B);
    assert.deepEqual(grown.subarray(0, B + 7), data.subarray(0, B + 7));
    assert.ok(grown.subarray(B + 7).every((b) => b === 0), 'old bytes must not reappear');
    // Through a handle, and to zero.
    const fh = await vol.open('/trunc', 'r+');
    await fh.truncate(10);
    assert.equal((await fh.stat()).size, 10);
    await fh.truncate(0);
    await fh.close();
    assert.equal((await read(vol, '/trunc')).length, 0);
    await assert.rejects(vol.truncate('/', 0), code('EISDIR'));
    await assert.rejects(vol.truncate('/none', 0), code('ENOENT'));
  });

  it('truncate sees writes still buffered in an open handle', async () => {
    const { vol } = v.get();
    const fh = await vol.open('/trunc-buffered', 'w');
    await fh.write(Buffer.alloc(2 * B, 0x41), 0, 2 * B, 0);
    await vol.truncate('/trunc-buffered', 100);
    await fh.write(Buffer.from('Z'), 0, 1, 200);
    await fh.close();
    const got = await read(vol, '/trunc-buffered');
    const want = Buffer.alloc(201);
    want.fill(0x41, 0, 100);
    want[200] = 0x5a;
    assert.deepEqual(got, want);
  });

  it('overwrites inside a block and across block edges', async () => {
    const { vol } = v.get();
    const model = randomBytes(5 * B);
    await vol.writeFile('/over', model);
    const edits: Array<[number, number]> = [
      [1000, 100], // inside block 0
      [B - 50, 100], // across the 0|1 edge
      [2 * B - 10, 2 * B + 20], // across two edges
      [0, B], // exactly one block
      [5 * B - 5, 50], // past the end: extends
    ];
    const fh = await vol.open('/over', 'r+');
    let expect = Buffer.from(model);
    for (const [pos, len] of edits) {
      const patch = randomBytes(len);
      await fh.write(patch, 0, len, pos);
      if (pos + len > expect.length) expect = Buffer.concat([expect, Buffer.alloc(pos + len - expect.length)]);
      patch.copy(expect, pos);
    }
    // Reads through the writing handle see the buffered edits.
    const mid = Buffer.alloc(300);
    await fh.read(mid, 0, 300, B - 150);
    assert.deepEqual(mid, expect.subarray(B - 150, B + 150));
    await fh.close();
    assert.equal(sha(await read(vol, '/over')), sha(expect));
  });

  it('overwrites and reads across the 64 MiB chunk edge (sparse file)', async () => {
    const { vol } = v.get();
    const first = randomBytes(300);
    await writeAt(vol, '/edge', C - 150, first, 'w');
    assert.equal((await vol.stat('/edge')).size, C + 150);
    assert.deepEqual(await readRange(vol, '/edge', C - 150, 300), first);
    const patch = randomBytes(100);
    await writeAt(vol, '/edge', C - 50, patch);
    const expect = Buffer.from(first);
    patch.copy(expect, 100);
    assert.deepEqual(await readRange(vol, '/edge', C - 150, 300), expect);
    assert.deepEqual(await readRange(vol, '/edge', C - 1000, 850), Buffer.alloc(850), 'the hole before the edit');
    // Shrink to inside the first chunk, then grow past the edge again: zeros only.
    await vol.truncate('/edge', C - 100);
    await vol.truncate('/edge', C + 100);
    const back = await readRange(vol, '/edge', C - 150, 250);
    assert.deepEqual(back.subarray(0, 50), expect.subarray(0, 50));
    assert.ok(back.subarray(50).every((b) => b === 0));
  });

  it('a file larger than a chunk round-trips, and is patched across the chunk edge', async () => {
    const { vol } = v.get();
    const size = C + (6 << 20) + 12345; // ~70 MiB
    const data = randomBytes(size);
    await vol.writeFile('/big', data);
    assert.equal((await vol.stat('/big')).size, size);
    const back = await read(vol, '/big');
    assert.equal(back.length, size);
    assert.ok(back.equals(data), 'the file reads back exactly');
    const patch = randomBytes(3 * B);
    await writeAt(vol, '/big', C - B - 17, patch);
    patch.copy(data, C - B - 17);
    assert.deepEqual(await readRange(vol, '/big', C - 2 * B, 5 * B), data.subarray(C - 2 * B, C + 3 * B));
    assert.ok((await read(vol, '/big')).equals(data));
    await vol.unlink('/big');
  });

  it('appends with flag "a" and appendFile, ignoring the position given', async () => {
    const { vol } = v.get();
    await vol.writeFile('/app', 'one');
    await vol.appendFile('/app', '-two');
    const fh = await vol.open('/app', 'a');
    await fh.write(Buffer.from('-three'), 0, 6, 0); // O_APPEND: position is ignored
    await fh.write('-four');
    await fh.close();
    assert.equal(await vol.readFile('/app', 'utf8'), 'one-two-three-four');
    await vol.appendFile('/app-new', 'created');
    assert.equal(await vol.readFile('/app-new', 'utf8'), 'created');
    // Appends across a block edge.
    await vol.appendFile('/app-new', Buffer.alloc(B, 0x61));
    await vol.appendFile('/app-new', 'end');
    const all = await read(vol, '/app-new');
    assert.equal(all.length, 7 + B + 3);
    assert.equal(all.subarray(-3).toString(), 'end');
  });

  it('two handles appending interleave without overwriting each other', async () => {
    const { vol } = v.get();
    await vol.writeFile('/app2', '');
    const h1 = await vol.open('/app2', 'a');
    const h2 = await vol.open('/app2', 'a');
    const parts: string[] = [];
    for (let i = 0; i < 20; i++) {
      const h = i % 2 === 0 ? h1 : h2;
      const s = `${i % 2 === 0 ? 'A' : 'B'}${i};`;
      parts.push(s);
      await h.write(s);
    }
    await h1.close();
    await h2.close();
    assert.equal(await vol.readFile('/app2', 'utf8'), parts.join(''));
  });

  it('ten concurrent readers of one file all get the same bytes', async () => {
    const { vol } = v.get();
    const data = randomBytes(20 * B + 99);
    await vol.writeFile('/shared-read', data);
    const results = await Promise.all(Array.from({ length: 10 }, () => read(vol, '/shared-read')));
    for (const r of results) assert.ok(r.equals(data));
    // A second client with cold caches: concurrent misses of the same blocks.
    const other = await openVolume(v.get().metaUrl, { uid: 0, gid: 0, gids: [], heartbeatMs: 0 });
    try {
      const cold = await Promise.all(Array.from({ length: 10 }, () => read(other, '/shared-read')));
      for (const r of cold) assert.ok(r.equals(data));
    } finally {
      await other.close();
    }
  });

  it('an unlinked file stays readable through an open handle until the last close', async () => {
    const { vol } = v.get();
    const data = randomBytes(3 * B);
    await vol.writeFile('/doomed', data);
    const inodesBefore = await vol.statfs();
    const fh = await vol.open('/doomed', 'r');
    await vol.unlink('/doomed');
    await assert.rejects(vol.stat('/doomed'), code('ENOENT'));
    assert.deepEqual(await vol.readdir('/').then((n) => n.includes('doomed')), false);
    assert.equal((await fh.stat()).nlink, 0);
    assert.ok(((await fh.readFile()) as Buffer).equals(data));
    assert.equal((await vol.statfs()).ffree, inodesBefore.ffree, 'still held');
    await fh.close();
    assert.equal((await vol.statfs()).ffree, inodesBefore.ffree + 1, 'released at close');
  });

  it('O_EXCL ("wx") fails with EEXIST on an existing file or symlink', async () => {
    const { vol } = v.get();
    await vol.writeFile('/excl', 'keep');
    await assert.rejects(vol.open('/excl', 'wx'), code('EEXIST'));
    await assert.rejects(vol.writeFile('/excl', 'clobber', { flag: 'wx' }), code('EEXIST'));
    await vol.symlink('/nowhere', '/excl-link');
    await assert.rejects(vol.open('/excl-link', 'wx'), code('EEXIST'));
    assert.equal(await vol.readFile('/excl', 'utf8'), 'keep');
    await vol.writeFile('/excl-new', 'fresh', { flag: 'wx' });
    assert.equal(await vol.readFile('/excl-new', 'utf8'), 'fresh');
  });

  it('stat reports the size of writes still buffered before close', async () => {
    const { vol } = v.get();
    const fh = await vol.open('/buffered', 'w');
    await fh.write(Buffer.alloc(1000, 1), 0, 1000, 0);
    assert.equal((await vol.stat('/buffered')).size, 1000);
    assert.equal((await fh.stat()).size, 1000);
    await fh.write(Buffer.alloc(10, 2), 0, 10, 5000);
    assert.equal((await vol.stat('/buffered')).size, 5010);
    await fh.close();
    assert.equal((await vol.stat('/buffered')).size, 5010);
  });

  it('reading opens need r, writing opens need w; handles refuse the other direction', async () => {
    const { vol } = v.get();
    await vol.writeFile('/rw', 'data');
    const r = await vol.open('/rw', 'r');
    await assert.rejects(r.write('x'), code('EBADF'));
    await r.close();
    const w = await vol.open('/rw', 'r+');
    await w.write('D');
    await w.close();
    const wo = await vol.open('/rw', 'a');
    await assert.rejects(wo.read(Buffer.alloc(4), 0, 4, 0), code('EBADF'));
    await wo.close();
    assert.equal(await vol.readFile('/rw', 'utf8'), 'Data');
    await assert.rejects(vol.open('/', 'w'), code('EISDIR'));
    await assert.rejects(vol.readFile('/'), code('EISDIR'));
  });
});

describe('names: readdir, mkdir, rm, symlinks, limits', () => {
  const v = withVolume();

  it('readdir lists names and, with withFileTypes, their types', async () => {
    const { vol } = v.get();
    await vol.mkdir('/rd');
    await vol.writeFile('/rd/file', 'f');
    await vol.mkdir('/rd/dir');
    await vol.symlink('file', '/rd/link');
    assert.deepEqual((await vol.readdir('/rd')).sort(), ['dir', 'file', 'link']);
    const ents = await vol.readdir('/rd', { withFileTypes: true });
    const byName = new Map(ents.map((e) => [e.name, e]));
    assert.equal(byName.size, 3);
    assert.ok(byName.get('file')!.isFile());
    assert.ok(byName.get('dir')!.isDirectory());
    assert.ok(byName.get('link')!.isSymbolicLink());
    assert.ok(!byName.get('link')!.isFile());
    assert.equal(byName.get('dir')!.parentPath, '/rd');
    await assert.rejects(vol.readdir('/rd/file'), code('ENOTDIR'));
    await assert.rejects(vol.readdir('/none'), code('ENOENT'));
    assert.ok(!(await vol.readdir('/')).includes('.trash'), 'the trash is hidden');
  });

  it('readdir pages through large directories', async () => {
    const { vol } = v.get();
    await vol.mkdir('/many');
    const names = Array.from({ length: 1500 }, (_, i) => `f${String(i).padStart(4, '0')}`);
    for (const n of names) await vol.writeFile(`/many/${n}`, '');
    assert.deepEqual((await vol.readdir('/many')).sort(), names);
  });

  it('mkdir: recursive creates parents and returns the first created; plain mkdir reports EEXIST/ENOENT', async () => {
    const { vol } = v.get();
    assert.equal(await vol.mkdir('/mk/a/b/c', { recursive: true }), '/mk');
    assert.equal(await vol.mkdir('/mk/a/b/c', { recursive: true }), undefined);
    assert.equal(await vol.mkdir('/mk/a/x/y', { recursive: true }), '/mk/a/x');
    assert.ok((await vol.stat('/mk/a/x/y')).isDirectory());
    await assert.rejects(vol.mkdir('/mk/a'), code('EEXIST'));
    await assert.rejects(vol.mkdir('/mk/none/z'), code('ENOENT'));
    await vol.writeFile('/mk/file', 'f');
    await assert.rejects(vol.mkdir('/mk/file/sub', { recursive: true }), code('ENOTDIR'));
    await assert.rejects(vol.mkdir('/mk/file', { recursive: true }), code('EEXIST'));
    assert.equal((await vol.stat('/mk/a')).mode & 0o777, 0o755, 'umask 022 applied');
    assert.equal((await vol.stat('/mk/a')).nlink, 4, '. plus b and x');
  });

  it('rm: recursive removes a tree; without recursive a directory is refused; force ignores missing', async () => {
    const { vol } = v.get();
    await vol.mkdir('/tree/a/b', { recursive: true });
    await vol.writeFile('/tree/a/f1', '1');
    await vol.writeFile('/tree/a/b/f2', '2');
    await vol.symlink('/tree/a', '/tree/link-to-a');
    const before = await vol.statfs();
    await assert.rejects(vol.rm('/tree'), code('EISDIR'));
    await assert.rejects(vol.rmdir('/tree'), code('ENOTEMPTY'));
    await vol.rm('/tree', { recursive: true });
    await assert.rejects(vol.stat('/tree'), code('ENOENT'));
    assert.equal((await vol.statfs()).ffree, before.ffree + 6, 'six inodes released');
    await assert.rejects(vol.rm('/tree'), code('ENOENT'));
    await vol.rm('/tree', { force: true });
  });

  it('symlinks: relative, absolute, into directories, dangling, loops, readlink, lstat', async () => {
    const { vol } = v.get();
    await vol.mkdir('/sl/d', { recursive: true });
    await vol.writeFile('/sl/d/target', 'through the link');
    await vol.symlink('d/target', '/sl/rel');
    await vol.symlink('/sl/d/target', '/sl/abs');
    await vol.symlink('d', '/sl/dirlink');
    await vol.symlink('../sl/./d/target', '/sl/d/../dots');
    assert.equal(await vol.readFile('/sl/rel', 'utf8'), 'through the link');
    assert.equal(await vol.readFile('/sl/abs', 'utf8'), 'through the link');
    assert.equal(await vol.readFile('/sl/dirlink/target', 'utf8'), 'through the link');
    assert.equal(await vol.readFile('/sl/dots', 'utf8'), 'through the link');
    assert.equal(await vol.readlink('/sl/rel'), 'd/target');
    assert.equal(await vol.readlink('/sl/abs'), '/sl/d/target');
    const l = await vol.lstat('/sl/rel');
    assert.ok(l.isSymbolicLink());
    assert.equal(l.size, 'd/target'.length);
    assert.equal(l.mode & 0o777, 0o777);
    const s = await vol.stat('/sl/rel');
    assert.ok(s.isFile());
    assert.equal(s.ino, (await vol.stat('/sl/d/target')).ino);
    // Writing through a symlink writes the target.
    await vol.writeFile('/sl/abs', 'rewritten');
    assert.equal(await vol.readFile('/sl/d/target', 'utf8'), 'rewritten');
    assert.ok((await vol.lstat('/sl/abs')).isSymbolicLink());
    // Dangling.
    await vol.symlink('nothing-here', '/sl/dangling');
    await assert.rejects(vol.stat('/sl/dangling'), code('ENOENT'));
    assert.ok((await vol.lstat('/sl/dangling')).isSymbolicLink());
    assert.equal(await vol.readlink('/sl/dangling'), 'nothing-here');
    // Creating through a dangling link creates its target.
    await vol.writeFile('/sl/dangling', 'now it exists');
    assert.equal(await vol.readFile('/sl/nothing-here', 'utf8'), 'now it exists');
    // Loops.
    await vol.symlink('loop-b', '/sl/loop-a');
    await vol.symlink('loop-a', '/sl/loop-b');
    await vol.symlink('self', '/sl/self');
    await assert.rejects(vol.stat('/sl/loop-a'), code('ELOOP'));
    await assert.rejects(vol.readFile('/sl/self'), code('ELOOP'));
    await assert.rejects(vol.stat('/sl/loop-a/x'), code('ELOOP'));
    assert.ok((await vol.lstat('/sl/loop-a')).isSymbolicLink());
    // readlink of a non-link; a symlink over an existing name.
    await assert.rejects(vol.readlink('/sl/d/target'), code('EINVAL'));
    await assert.rejects(vol.symlink('x', '/sl/rel'), code('EEXIST'));
    // unlink removes the link, not its target.
    await vol.unlink('/sl/rel');
    assert.equal(await vol.readFile('/sl/d/target', 'utf8'), 'rewritten');
    // A trailing slash on a link to a file is ENOTDIR.
    await assert.rejects(vol.stat('/sl/abs/'), code('ENOTDIR'));
    assert.ok((await vol.stat('/sl/dirlink/')).isDirectory());
  });

  it('fails with ENAMETOOLONG for a 256-byte name; 255 bytes is fine', async () => {
    const { vol } = v.get();
    const long = 'n'.repeat(256);
    const ok = 'n'.repeat(255);
    await assert.rejects(vol.writeFile(`/${long}`, 'x'), code('ENAMETOOLONG'));
    await assert.rejects(vol.mkdir(`/${long}`), code('ENAMETOOLONG'));
    await assert.rejects(vol.stat(`/${long}`), code('ENAMETOOLONG'));
    await assert.rejects(vol.symlink('x', `/${long}`), code('ENAMETOOLONG'));
    // Multi-byte characters count as bytes: 128 two-byte characters are 256 bytes.
    await assert.rejects(vol.writeFile(`/${'é'.repeat(128)}`, 'x'), code('ENAMETOOLONG'));
    await vol.writeFile(`/${ok}`, 'x');
    assert.equal(await vol.readFile(`/${ok}`, 'utf8'), 'x');
    await vol.unlink(`/${ok}`);
  });

  it('fails with ENOTDIR for a path through a file', async () => {
    const { vol } = v.get();
    await vol.writeFile('/plain', 'p');
    await assert.rejects(vol.stat('/plain/x'), code('ENOTDIR'));
    await assert.rejects(vol.writeFile('/plain/x', 'x'), code('ENOTDIR'));
    await assert.rejects(vol.mkdir('/plain/x'), code('ENOTDIR'));
    await assert.rejects(vol.readdir('/plain'), code('ENOTDIR'));
    await assert.rejects(vol.rmdir('/plain'), code('ENOTDIR'));
    await assert.rejects(vol.unlink('/plain/x'), code('ENOTDIR'));
    await assert.rejects(vol.stat('/plain/'), code('ENOTDIR'));
  });

  it('unlink of a directory is EISDIR, rmdir of a file ENOTDIR, of a missing name ENOENT', async () => {
    const { vol } = v.get();
    await vol.mkdir('/ud');
    await assert.rejects(vol.unlink('/ud'), code('EISDIR'));
    await assert.rejects(vol.rmdir('/ud/none'), code('ENOENT'));
    await assert.rejects(vol.unlink('/ud/none'), code('ENOENT'));
    await vol.rmdir('/ud');
    await assert.rejects(vol.stat('/ud'), code('ENOENT'));
  });
});

describe('attributes: xattrs, statfs, utimes, chmod, chown', () => {
  const v = withVolume();

  it('xattrs: set, get, list, remove, with XATTR_CREATE and XATTR_REPLACE', async () => {
    const { vol } = v.get();
    await vol.writeFile('/xa', 'x');
    await vol.setxattr('/xa', 'user.color', 'blue');
    assert.equal((await vol.getxattr('/xa', 'user.color')).toString(), 'blue');
    await assert.rejects(vol.setxattr('/xa', 'user.color', 'red', XATTR_CREATE), code('EEXIST'));
    await vol.setxattr('/xa', 'user.color', 'red', XATTR_REPLACE);
    assert.equal((await vol.getxattr('/xa', 'user.color')).toString(), 'red');
    await assert.rejects(vol.setxattr('/xa', 'user.size', 'big', XATTR_REPLACE), code('ENODATA'));
    await vol.setxattr('/xa', 'user.size', Buffer.from([0, 1, 2, 255]), XATTR_CREATE);
    assert.deepEqual(await vol.getxattr('/xa', 'user.size'), Buffer.from([0, 1, 2, 255]));
    assert.deepEqual((await vol.listxattr('/xa')).sort(), ['user.color', 'user.size']);
    await vol.removexattr('/xa', 'user.color');
    await assert.rejects(vol.getxattr('/xa', 'user.color'), code('ENODATA'));
    await assert.rejects(vol.removexattr('/xa', 'user.color'), code('ENODATA'));
    assert.deepEqual(await vol.listxattr('/xa'), ['user.size']);
    await assert.rejects(vol.setxattr('/xa', 'bogus.ns', 'v'), code('ENOTSUP'));
    await assert.rejects(vol.getxattr('/none', 'user.size'), code('ENOENT'));
    // Permission: another user cannot set xattrs on a file they cannot write.
    await vol.chmod('/xa', 0o644);
    await assert.rejects(vol.as(U1).setxattr('/xa', 'user.mine', 'v'), code('EACCES'));
    assert.deepEqual(await vol.as(U1).getxattr('/xa', 'user.size'), Buffer.from([0, 1, 2, 255]));
    // Attributes go with the inode.
    await vol.unlink('/xa');
    await vol.writeFile('/xa', 'again');
    assert.deepEqual(await vol.listxattr('/xa'), []);
  });

  it('statfs reports capacity and tracks bytes and inodes in use', async () => {
    const { vol } = v.get();
    const s0 = await vol.statfs();
    assert.equal(s0.bsize, 4096);
    assert.ok(s0.blocks > 0 && s0.bfree <= s0.blocks && s0.bavail <= s0.blocks);
    assert.ok(s0.files > 0 && s0.ffree <= s0.files);
    await vol.writeFile('/sf', Buffer.alloc(1 << 20, 7));
    const s1 = await vol.statfs();
    assert.equal(s1.bfree, s0.bfree - (1 << 20) / 4096);
    assert.equal(s1.ffree, s0.ffree - 1);
    await vol.unlink('/sf');
    const s2 = await vol.statfs();
    assert.equal(s2.bfree, s0.bfree);
    assert.equal(s2.ffree, s0.ffree);
    await assert.rejects(vol.statfs('/none'), code('ENOENT'));
  });

  it('utimes sets atime and mtime from seconds or Dates; writes move mtime forward', async () => {
    const { vol } = v.get();
    await vol.writeFile('/ut', 'u');
    await vol.utimes('/ut', 1_000_000, 2_000_000.5);
    let st = await vol.stat('/ut');
    assert.equal(st.atimeMs, 1_000_000_000);
    assert.equal(st.mtimeMs, 2_000_000_500);
    assert.equal(st.mtime.getTime(), 2_000_000_500);
    const d = new Date('2020-02-02T02:02:02.000Z');
    await vol.utimes('/ut', d, d);
    st = await vol.stat('/ut');
    assert.equal(st.mtime.toISOString(), d.toISOString());
    assert.equal(st.atime.toISOString(), d.toISOString());
    await vol.appendFile('/ut', 'more');
    st = await vol.stat('/ut');
    assert.ok(st.mtimeMs > d.getTime(), 'a write updates mtime');
    assert.ok(st.ctimeMs >= st.mtimeMs);
  });

  it('chmod sets permission and special bits; chown sets owner and group (-1 keeps)', async () => {
    const { vol } = v.get();
    await vol.writeFile('/cm', 'c');
    assert.equal((await vol.stat('/cm')).mode, 0o100644, 'regular file, umask applied');
    await vol.chmod('/cm', 0o4751);
    assert.equal((await vol.stat('/cm')).mode & 0o7777, 0o4751);
    await vol.chmod('/cm', 0o600);
    assert.equal((await vol.stat('/cm')).mode & 0o7777, 0o600);
    await vol.chown('/cm', 42, 43);
    let st = await vol.stat('/cm');
    assert.deepEqual([st.uid, st.gid], [42, 43]);
    await vol.chown('/cm', -1, 44);
    st = await vol.stat('/cm');
    assert.deepEqual([st.uid, st.gid], [42, 44]);
    // chmod on a symlink changes the target.
    await vol.symlink('cm', '/cm-link');
    await vol.chmod('/cm-link', 0o640);
    assert.equal((await vol.stat('/cm')).mode & 0o7777, 0o640);
    assert.equal((await vol.lstat('/cm-link')).mode & 0o777, 0o777);
    await assert.rejects(vol.chmod('/none', 0o600), code('ENOENT'));
    // A directory's mode.
    await vol.mkdir('/cm-dir', { mode: 0o700 });
    assert.equal((await vol.stat('/cm-dir')).mode, 0o040700);
  });
});

describe('streams and copies', () => {
  const v = withVolume();

  it('createWriteStream and createReadStream round-trip a few MiB through pipeline', async () => {
    const { vol } = v.get();
    const pieces = Array.from({ length: 50 }, (_, i) => randomBytes(50_000 + i * 997));
    const whole = Buffer.concat(pieces);
    await pipeline(Readable.from(pieces), vol.createWriteStream('/stream'));
    assert.equal((await vol.stat('/stream')).size, whole.length);
    const got: Buffer[] = [];
    await pipeline(
      vol.createReadStream('/stream', { highWaterMark: 100_000 }),
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          got.push(chunk);
          cb();
        },
      }),
    );
    assert.equal(sha(Buffer.concat(got)), sha(whole));
    // A byte range (end is inclusive).
    const part: Buffer[] = [];
    for await (const c of vol.createReadStream('/stream', { start: B - 10, end: 3 * B + 9 })) part.push(c as Buffer);
    assert.deepEqual(Buffer.concat(part), whole.subarray(B - 10, 3 * B + 10));
    // A missing file fails the stream with ENOENT.
    await assert.rejects(pipeline(vol.createReadStream('/no-stream'), new Writable({ write: (_c, _e, cb) => cb() })), code('ENOENT'));
  });

  it('copyFile shares blocks; modifying the copy leaves the source unchanged', async () => {
    const { vol, dir } = v.get();
    const data = randomBytes(10 * B + 5);
    await vol.writeFile('/orig', data);
    const objectsBefore = await countObjects(join(dir, 'bucket'));
    await vol.copyFile('/orig', '/copy');
    assert.equal(await countObjects(join(dir, 'bucket')), objectsBefore, 'no block was copied');
    assert.ok((await read(vol, '/copy')).equals(data));
    assert.notEqual((await vol.stat('/copy')).ino, (await vol.stat('/orig')).ino);
    await writeAt(vol, '/copy', B - 3, Buffer.from('CHANGED'));
    await vol.truncate('/copy', 5 * B);
    assert.ok((await read(vol, '/orig')).equals(data), 'the source is unchanged');
    const copy = await read(vol, '/copy');
    assert.equal(copy.length, 5 * B);
    assert.equal(copy.subarray(B - 3, B + 4).toString(), 'CHANGED');
    // The source can go; the copy keeps its shared blocks.
    await vol.unlink('/orig');
    assert.deepEqual((await read(vol, '/copy')).subarray(0, B - 3), data.subarray(0, B - 3));
  });

  it('copyFile with COPYFILE_EXCL fails with EEXIST; a missing source is ENOENT; a copy of buffered data sees it', async () => {
    const { vol } = v.get();
    await vol.writeFile('/c1', 'one');
    await vol.writeFile('/c2', 'two');
    await assert.rejects(vol.copyFile('/c1', '/c2', 1), code('EEXIST'));
    assert.equal(await vol.readFile('/c2', 'utf8'), 'two');
    await assert.rejects(vol.copyFile('/none', '/c3'), code('ENOENT'));
    await vol.copyFile('/c1', '/c2');
    assert.equal(await vol.readFile('/c2', 'utf8'), 'one', 'a plain copy replaces');
    const fh = await vol.open('/c1', 'r+');
    await fh.write('ONE', 0);
    await vol.copyFile('/c1', '/c4');
    await fh.close();
    assert.equal(await vol.readFile('/c4', 'utf8'), 'ONE');
  });
});

describe('cases the differential test found (regressions)', () => {
  const v = withVolume();

  it('O_CREAT through a symlink to the root or a directory is EISDIR', async () => {
    const { vol } = v.get();
    await vol.symlink('.', '/dot');
    await vol.mkdir('/somedir');
    await vol.symlink('/somedir', '/to-dir');
    await assert.rejects(vol.writeFile('/dot', 'x'), code('EISDIR'));
    await assert.rejects(vol.open('/to-dir', 'w+'), code('EISDIR'));
    await assert.rejects(vol.copyFile('/dot', '/x'), code('EISDIR'));
  });

  it('a symlink chain of dangling links is followed on create, and a create loop is ELOOP', async () => {
    const { vol } = v.get();
    await vol.mkdir('/chain');
    await vol.symlink('l2', '/chain/l1');
    await vol.symlink('/chain/target', '/chain/l2');
    await vol.writeFile('/chain/l1', 'made');
    assert.equal(await vol.readFile('/chain/target', 'utf8'), 'made');
    await vol.symlink('cyc2', '/chain/cyc1');
    await vol.symlink('cyc1', '/chain/cyc2');
    await assert.rejects(vol.writeFile('/chain/cyc1', 'x'), code('ELOOP'));
  });

  it('mkdir recursive over a dangling symlink: ENOENT as the last name, ENOTDIR before it', async () => {
    const { vol } = v.get();
    await vol.symlink('missing', '/dangle');
    await assert.rejects(vol.mkdir('/dangle', { recursive: true }), code('ENOENT'));
    await assert.rejects(vol.mkdir('/dangle/sub', { recursive: true }), code('ENOTDIR'));
    await assert.rejects(vol.stat('/missing'), code('ENOENT'), 'nothing was created');
  });

  it('link to an existing name is EEXIST even when the source is a directory', async () => {
    const { vol } = v.get();
    await vol.mkdir('/ldir');
    await vol.writeFile('/lfile', 'f');
    await assert.rejects(vol.link('/ldir', '/lfile'), code('EEXIST'));
    await assert.rejects(vol.link('/ldir', '/lnew'), code('EPERM'));
  });

  it('renaming an entry over one of its own ancestors is ENOTEMPTY, whatever its type', async () => {
    const { vol } = v.get();
    await vol.mkdir('/anc/sub', { recursive: true });
    await vol.writeFile('/anc/sub/f', 'f');
    await assert.rejects(vol.rename('/anc/sub/f', '/anc'), code('ENOTEMPTY'));
    await assert.rejects(vol.rename('/anc/sub', '/anc'), code('ENOTEMPTY'));
    assert.equal(await vol.readFile('/anc/sub/f', 'utf8'), 'f');
  });

  it('copyFile gives the copy the source mode, is a no-op onto the same inode, and leaves the target of a directory source alone', async () => {
    const { vol } = v.get();
    await vol.writeFile('/cm-src', 'source');
    await vol.chmod('/cm-src', 0o4751);
    await vol.writeFile('/cm-dst', 'old');
    await vol.chmod('/cm-dst', 0o600);
    await vol.copyFile('/cm-src', '/cm-dst');
    assert.equal((await vol.stat('/cm-dst')).mode & 0o7777, 0o4751);
    await vol.copyFile('/cm-src', '/cm-new');
    assert.equal((await vol.stat('/cm-new')).mode & 0o7777, 0o4751, 'no umask on a copy');
    await vol.copyFile('/cm-src', '/cm-src');
    assert.equal(await vol.readFile('/cm-src', 'utf8'), 'source', 'copying a file onto itself keeps it');
    await vol.link('/cm-src', '/cm-hard');
    await vol.copyFile('/cm-src', '/cm-hard');
    assert.equal(await vol.readFile('/cm-hard', 'utf8'), 'source');
    await assert.rejects(vol.copyFile('/cm-src', '/cm-src', 1), code('EEXIST'));
    await vol.mkdir('/cm-dir');
    await assert.rejects(vol.copyFile('/cm-dir', '/cm-dst'), code('EISDIR'));
    assert.equal(await vol.readFile('/cm-dst', 'utf8'), 'source', 'the destination is untouched');
  });

  it('zero-length reads and writes succeed at once, as in fs/promises', async () => {
    const { vol } = v.get();
    await vol.mkdir('/zl');
    const d = await vol.open('/zl', 'r');
    assert.equal((await d.read(Buffer.alloc(0), 0, 0, 10)).bytesRead, 0);
    await assert.rejects(d.read(Buffer.alloc(1), 0, 1, 0), code('EISDIR'));
    await d.close();
    await vol.writeFile('/zl/f', 'abc');
    const r = await vol.open('/zl/f', 'r');
    assert.equal((await r.write(Buffer.alloc(0), 0, 0, 5)).bytesWritten, 0);
    await r.close();
    assert.equal((await vol.stat('/zl/f')).size, 3);
  });

  it('a removed directory stays valid for its open handle (nlink 0) until closed', async () => {
    const { vol } = v.get();
    await vol.mkdir('/gone');
    const before = await vol.statfs();
    const fh = await vol.open('/gone', 'r');
    await vol.rmdir('/gone');
    await assert.rejects(vol.stat('/gone'), code('ENOENT'));
    const st = await fh.stat();
    assert.ok(st.isDirectory());
    assert.equal(st.nlink, 0);
    assert.equal((await vol.statfs()).ffree, before.ffree, 'still held');
    await fh.close();
    assert.equal((await vol.statfs()).ffree, before.ffree + 1, 'released at close');
    // The same when a rename replaces an open empty directory.
    await vol.mkdir('/rep-src');
    await vol.mkdir('/rep-dst');
    const h2 = await vol.open('/rep-dst', 'r');
    await vol.rename('/rep-src', '/rep-dst');
    assert.equal((await h2.stat()).nlink, 0);
    await h2.close();
  });
});
