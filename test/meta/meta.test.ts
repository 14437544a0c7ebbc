/** The POSIX layer `Meta` over the SQLite engine: names, rename rules, permissions, xattrs, open files, trash, sessions, data. */

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, describe, it } from 'node:test';
import { isFsError, type ErrnoCode } from '../../src/errors.js';
import { formatVolume, Meta, type MetaOptions } from '../../src/meta/meta.js';
import type { SliceRef } from '../../src/meta/slices.js';
import { SqliteEngine } from '../../src/meta/sqlite.js';
import {
  CHUNK_BYTES,
  FALLOC_KEEP_SIZE,
  FALLOC_PUNCH_HOLE,
  FALLOC_ZERO_RANGE,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  ROOT_CTX,
  ROOT_INO,
  R_OK,
  TRASH_INO,
  TRASH_NAME,
  W_OK,
  XATTR_CREATE,
  XATTR_REPLACE,
  X_OK,
  type Ctx,
} from '../../src/meta/types.js';

const root = ROOT_CTX;
const user: Ctx = { uid: 1000, gid: 1000, gids: [] };
const other: Ctx = { uid: 1001, gid: 1001, gids: [] };
const C = CHUNK_BYTES;
const T0 = Date.UTC(2024, 0, 15, 10, 30);

const dirs: string[] = [];
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

interface Vol {
  engine: SqliteEngine;
  meta: Meta;
  path: string;
  /** The fake clock every Meta of this volume reads; tests move it. */
  clock: { now: number };
  /** Another client on the same engine. */
  client(options?: MetaOptions): Promise<Meta>;
}

async function volume(trashDays = 0, options: MetaOptions = {}): Promise<Vol> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-meta-'));
  dirs.push(dir);
  const path = join(dir, 'meta.db');
  const engine = new SqliteEngine(path, { create: true });
  closers.push(() => engine.close());
  const clock = { now: T0 };
  await formatVolume(engine, { name: 'test', storage: 'mem://test', blockBytes: 4 << 20, compression: 'none', trashDays }, T0);
  const client = async (o: MetaOptions = {}): Promise<Meta> => {
    const m = await Meta.open(engine, { heartbeatMs: 0, now: () => clock.now, ...o });
    closers.push(() => m.close());
    return m;
  };
  const meta = await client(options);
  return { engine, meta, path, clock, client };
}

async function rejectsWith(p: Promise<unknown>, code: ErrnoCode, what = ''): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isFsError(e), `${what}: expected FsError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, what);
    return true;
  });
}

async function names(meta: Meta, ino: number, ctx: Ctx = root): Promise<string[]> {
  return (await meta.readdir(ctx, ino)).map((e) => e.name);
}

async function gone(meta: Meta, ino: number): Promise<void> {
  await rejectsWith(meta.getattr(ino), 'ENOENT', `inode ${ino} should be gone`);
}

/** A file with one stored slice of `len` bytes at offset 0 of chunk `index`. */
async function fileWithSlice(meta: Meta, parent: number, name: string, len = 1000, index = 0): Promise<{ ino: number; ref: SliceRef }> {
  const f = await meta.create(root, parent, name, 0o644);
  const ref: SliceRef = { pos: 0, id: await meta.newSliceId(), size: len, off: 0, len };
  await meta.write(f.ino, [{ index, ref }]);
  return { ino: f.ino, ref };
}

async function delSliceIds(meta: Meta): Promise<number[]> {
  return (await meta.listDelSlices(Number.MAX_SAFE_INTEGER)).map((d) => d.id);
}

describe('Meta: format and open', () => {
  it('format twice refuses without force; with force it starts over', async () => {
    const v = await volume();
    const f = await v.meta.create(root, ROOT_INO, 'f', 0o644);
    const opts = { name: 'again', storage: 'mem://x', blockBytes: 4 << 20, compression: 'none' as const, trashDays: 0 };
    await rejectsWith(formatVolume(v.engine, opts), 'EEXIST');
    assert.equal((await v.meta.lookup(root, ROOT_INO, 'f')).ino, f.ino, 'the refused format changed nothing');
    const fresh = await formatVolume(v.engine, { ...opts, force: true });
    assert.equal(fresh.name, 'again');
    assert.notEqual(fresh.uuid, v.meta.format.uuid);
    const m = await v.client();
    assert.equal(m.format.name, 'again');
    await rejectsWith(m.lookup(root, ROOT_INO, 'f'), 'ENOENT');
    assert.deepEqual(await names(m, ROOT_INO), []);
  });

  it('open of an engine without a volume fails with EINVAL', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ferry-meta-'));
    dirs.push(dir);
    const engine = new SqliteEngine(join(dir, 'empty.db'), { create: true });
    closers.push(() => engine.close());
    await rejectsWith(Meta.open(engine), 'EINVAL');
  });

  it('a fresh volume has root (1) and .trash (2) and nothing else', async () => {
    const { meta } = await volume();
    const r = await meta.getattr(ROOT_INO);
    assert.equal(r.type, 'dir');
    assert.equal(r.nlink, 2);
    assert.equal((await meta.lookup(root, ROOT_INO, TRASH_NAME)).ino, TRASH_INO);
    assert.deepEqual(await names(meta, ROOT_INO), [], '.trash is not listed');
    assert.equal((await meta.lookup(root, ROOT_INO, '..')).ino, ROOT_INO);
    const s = await meta.statfs();
    assert.equal(s.inodes, 0);
    assert.equal(s.usedBytes, 0);
  });
});

describe('Meta: names', () => {
  it('mknod creates nodes of every type with the caller as owner', async () => {
    const { meta } = await volume();
    const f = await meta.mknod(user, ROOT_INO, 'file', 'file', 0o640);
    assert.equal(f.type, 'file');
    assert.equal(f.mode, 0o640);
    assert.equal(f.uid, 1000);
    assert.equal(f.gid, 1000);
    assert.equal(f.nlink, 1);
    assert.equal(f.length, 0);
    assert.deepEqual(await meta.getattr(f.ino), f);
    assert.deepEqual(await meta.lookup(user, ROOT_INO, 'file'), f);
    const fifo = await meta.mknod(root, ROOT_INO, 'fifo', 'fifo', 0o600);
    const dev = await meta.mknod(root, ROOT_INO, 'dev', 'chr', 0o600, { rdev: 0x0501 });
    assert.equal(fifo.type, 'fifo');
    assert.equal(dev.rdev, 0x0501);
    assert.deepEqual(await names(meta, ROOT_INO), ['dev', 'fifo', 'file']);
    assert.equal(new Set([f.ino, fifo.ino, dev.ino]).size, 3);
    await rejectsWith(meta.mknod(root, ROOT_INO, 'file', 'file', 0o644), 'EEXIST');
    await rejectsWith(meta.mknod(root, ROOT_INO, TRASH_NAME, 'file', 0o644), 'EEXIST', '.trash is reserved in the root');
    await rejectsWith(meta.mknod(root, f.ino, 'x', 'file', 0o644), 'ENOTDIR');
    await rejectsWith(meta.mknod(root, 9999, 'x', 'file', 0o644), 'ENOENT');
    await rejectsWith(meta.mknod(root, ROOT_INO, 'a/b', 'file', 0o644), 'EINVAL');
    await rejectsWith(meta.mknod(root, ROOT_INO, '', 'file', 0o644), 'EINVAL');
    await rejectsWith(meta.lookup(root, ROOT_INO, 'missing'), 'ENOENT');
  });

  it('mkdir counts links: 2 for the new dir, +1 for its parent; lookup of . and ..', async () => {
    const { meta } = await volume();
    const a = await meta.mkdir(root, ROOT_INO, 'a', 0o755);
    assert.equal(a.nlink, 2);
    assert.equal(a.parent, ROOT_INO);
    assert.equal((await meta.getattr(ROOT_INO)).nlink, 3);
    const b = await meta.mkdir(root, a.ino, 'b', 0o755);
    assert.equal((await meta.getattr(a.ino)).nlink, 3);
    assert.equal((await meta.lookup(root, b.ino, '..')).ino, a.ino);
    assert.equal((await meta.lookup(root, b.ino, '.')).ino, b.ino);
    await meta.create(root, a.ino, 'file', 0o644);
    assert.equal((await meta.getattr(a.ino)).nlink, 3, 'files do not add links to the parent');
  });

  it('symlink stores its target; readlink returns it; readlink of a file is EINVAL', async () => {
    const { meta } = await volume();
    const s = await meta.symlink(user, ROOT_INO, 'ln', '../tärget/x');
    assert.equal(s.type, 'symlink');
    assert.equal(s.length, Buffer.byteLength('../tärget/x'));
    assert.equal(await meta.readlink(s.ino), '../tärget/x');
    const f = await meta.create(root, ROOT_INO, 'f', 0o644);
    await rejectsWith(meta.readlink(f.ino), 'EINVAL');
    await rejectsWith(meta.symlink(root, ROOT_INO, 'empty', ''), 'ENOENT');
    await rejectsWith(meta.symlink(root, ROOT_INO, 'long', 'x'.repeat(4096)), 'ENAMETOOLONG');
  });

  it('link adds names and counts them; unlink removes one at a time; the last one frees the inode', async () => {
    const { meta } = await volume();
    const d = await meta.mkdir(root, ROOT_INO, 'd', 0o755);
    const f = await meta.create(root, ROOT_INO, 'f', 0o644);
    assert.equal((await meta.link(root, f.ino, ROOT_INO, 'g')).nlink, 2);
    assert.equal((await meta.link(root, f.ino, d.ino, 'h')).nlink, 3);
    assert.equal((await meta.lookup(root, d.ino, 'h')).ino, f.ino);
    await rejectsWith(meta.link(root, f.ino, ROOT_INO, 'g'), 'EEXIST');
    await rejectsWith(meta.link(root, d.ino, ROOT_INO, 'dirlink'), 'EPERM', 'hard link to a directory');
    await meta.unlink(root, ROOT_INO, 'f');
    assert.equal((await meta.getattr(f.ino)).nlink, 2);
    await meta.unlink(root, d.ino, 'h');
    assert.equal((await meta.getattr(f.ino)).nlink, 1);
    assert.equal((await meta.lookup(root, ROOT_INO, 'g')).ino, f.ino);
    await meta.unlink(root, ROOT_INO, 'g');
    await gone(meta, f.ino);
    await rejectsWith(meta.unlink(root, ROOT_INO, 'g'), 'ENOENT');
    await rejectsWith(meta.link(root, f.ino, ROOT_INO, 'again'), 'ENOENT');
  });

  it('unlink of a directory is EISDIR; rmdir of a file is ENOTDIR; rmdir of a non-empty directory is ENOTEMPTY', async () => {
    const { meta } = await volume();
    const d = await meta.mkdir(root, ROOT_INO, 'd', 0o755);
    await meta.create(root, ROOT_INO, 'f', 0o644);
    await meta.create(root, d.ino, 'inner', 0o644);
    await rejectsWith(meta.unlink(root, ROOT_INO, 'd'), 'EISDIR');
    await rejectsWith(meta.rmdir(root, ROOT_INO, 'f'), 'ENOTDIR');
    await rejectsWith(meta.rmdir(root, ROOT_INO, 'd'), 'ENOTEMPTY');
    await rejectsWith(meta.rmdir(root, ROOT_INO, 'missing'), 'ENOENT');
    await rejectsWith(meta.rmdir(root, ROOT_INO, '.'), 'EINVAL');
    await rejectsWith(meta.rmdir(root, d.ino, '..'), 'ENOTEMPTY');
    await meta.unlink(root, d.ino, 'inner');
    assert.equal((await meta.getattr(ROOT_INO)).nlink, 3);
    await meta.rmdir(root, ROOT_INO, 'd');
    await gone(meta, d.ino);
    assert.equal((await meta.getattr(ROOT_INO)).nlink, 2);
    await rejectsWith(meta.mknod(root, d.ino, 'x', 'file', 0o644), 'ENOENT', 'create in a removed directory');
  });

  it('names of 256 bytes are ENAMETOOLONG; 255 bytes are fine (bytes, not characters)', async () => {
    const { meta } = await volume();
    const ok = 'a'.repeat(255);
    const long = 'a'.repeat(256);
    const longUtf8 = 'é'.repeat(128); // 128 characters, 256 bytes
    const f = await meta.create(root, ROOT_INO, ok, 0o644);
    assert.equal((await meta.lookup(root, ROOT_INO, ok)).ino, f.ino);
    for (const name of [long, longUtf8]) {
      await rejectsWith(meta.create(root, ROOT_INO, name, 0o644), 'ENAMETOOLONG', 'create');
      await rejectsWith(meta.mkdir(root, ROOT_INO, name, 0o755), 'ENAMETOOLONG', 'mkdir');
      await rejectsWith(meta.lookup(root, ROOT_INO, name), 'ENAMETOOLONG', 'lookup');
      await rejectsWith(meta.link(root, f.ino, ROOT_INO, name), 'ENAMETOOLONG', 'link');
      await rejectsWith(meta.symlink(root, ROOT_INO, name, 'x'), 'ENAMETOOLONG', 'symlink');
      await rejectsWith(meta.rename(root, ROOT_INO, ok, ROOT_INO, name), 'ENAMETOOLONG', 'rename');
      await rejectsWith(meta.unlink(root, ROOT_INO, name), 'ENAMETOOLONG', 'unlink');
    }
  });

  it('readdir lists names in bytewise order, pages with after/limit, and gives attributes with plus', async () => {
    const { meta } = await volume();
    const d = await meta.mkdir(root, ROOT_INO, 'd', 0o755);
    const all = ['b', 'A', 'é', '10', '9', 'a'];
    for (const n of all) await meta.create(root, d.ino, n, 0o644);
    const sorted = ['10', '9', 'A', 'a', 'b', 'é'];
    assert.deepEqual(await names(meta, d.ino), sorted);
    const page1 = await meta.readdir(root, d.ino, { limit: 4 });
    const page2 = await meta.readdir(root, d.ino, { limit: 4, after: page1[3]!.name });
    assert.deepEqual([...page1, ...page2].map((e) => e.name), sorted);
    const plus = await meta.readdir(root, d.ino, { plus: true });
    for (const e of plus) {
      assert.equal(e.type, 'file');
      assert.equal(e.attr?.ino, e.ino);
      assert.equal(e.attr?.type, 'file');
    }
    const f = await meta.create(root, ROOT_INO, 'f', 0o644);
    await rejectsWith(meta.readdir(root, f.ino), 'ENOTDIR');
  });
});

describe('Meta: rename', () => {
  it('moves a name; the source name disappears', async () => {
    const { meta } = await volume();
    const f = await meta.create(root, ROOT_INO, 'a', 0o644);
    await meta.rename(root, ROOT_INO, 'a', ROOT_INO, 'b');
    await rejectsWith(meta.lookup(root, ROOT_INO, 'a'), 'ENOENT');
    assert.equal((await meta.lookup(root, ROOT_INO, 'b')).ino, f.ino);
  });

  it('over an existing file: the old target is gone when it had no other link', async () => {
    const { meta } = await volume();
    const a = await fileWithSlice(meta, ROOT_INO, 'a');
    const b = await fileWithSlice(meta, ROOT_INO, 'b');
    await meta.rename(root, ROOT_INO, 'a', ROOT_INO, 'b');
    assert.equal((await meta.lookup(root, ROOT_INO, 'b')).ino, a.ino);
    assert.deepEqual(await names(meta, ROOT_INO), ['b']);
    await gone(meta, b.ino);
    assert.deepEqual(await delSliceIds(meta), [b.ref.id], "the old target's slice is released");
    assert.equal((await meta.statfs()).inodes, 1);
  });

  it('over an existing file with another link: the old target keeps one link less', async () => {
    const { meta } = await volume();
    const a = await meta.create(root, ROOT_INO, 'a', 0o644);
    const b = await meta.create(root, ROOT_INO, 'b', 0o644);
    await meta.link(root, b.ino, ROOT_INO, 'b2');
    await meta.rename(root, ROOT_INO, 'a', ROOT_INO, 'b');
    assert.equal((await meta.lookup(root, ROOT_INO, 'b')).ino, a.ino);
    assert.equal((await meta.getattr(b.ino)).nlink, 1);
    assert.equal((await meta.lookup(root, ROOT_INO, 'b2')).ino, b.ino);
  });

  it('a directory over an empty directory replaces it; parent link counts follow', async () => {
    const { meta } = await volume();
    const p = await meta.mkdir(root, ROOT_INO, 'p', 0o755);
    const q = await meta.mkdir(root, ROOT_INO, 'q', 0o755);
    const x = await meta.mkdir(root, p.ino, 'x', 0o755);
    const y = await meta.mkdir(root, q.ino, 'y', 0o755);
    await meta.rename(root, p.ino, 'x', q.ino, 'y');
    await gone(meta, y.ino);
    assert.equal((await meta.lookup(root, q.ino, 'y')).ino, x.ino);
    assert.equal((await meta.getattr(p.ino)).nlink, 2, 'source parent lost a subdirectory');
    assert.equal((await meta.getattr(q.ino)).nlink, 3, 'target parent has one subdirectory still');
    assert.equal((await meta.getattr(x.ino)).parent, q.ino);
    assert.equal((await meta.lookup(root, x.ino, '..')).ino, q.ino);
    // Same parent: one directory fewer.
    await meta.mkdir(root, ROOT_INO, 'e1', 0o755);
    await meta.mkdir(root, ROOT_INO, 'e2', 0o755);
    const before = (await meta.getattr(ROOT_INO)).nlink;
    await meta.rename(root, ROOT_INO, 'e1', ROOT_INO, 'e2');
    assert.equal((await meta.getattr(ROOT_INO)).nlink, before - 1);
  });

  it('over a non-empty directory is ENOTEMPTY', async () => {
    const { meta } = await volume();
    await meta.mkdir(root, ROOT_INO, 'a', 0o755);
    const b = await meta.mkdir(root, ROOT_INO, 'b', 0o755);
    await meta.create(root, b.ino, 'inside', 0o644);
    await rejectsWith(meta.rename(root, ROOT_INO, 'a', ROOT_INO, 'b'), 'ENOTEMPTY');
    assert.deepEqual(await names(meta, ROOT_INO), ['a', 'b']);
  });

  it('a directory over a file is ENOTDIR; a file over a directory is EISDIR', async () => {
    const { meta } = await volume();
    await meta.mkdir(root, ROOT_INO, 'd', 0o755);
    await meta.create(root, ROOT_INO, 'f', 0o644);
    await rejectsWith(meta.rename(root, ROOT_INO, 'd', ROOT_INO, 'f'), 'ENOTDIR');
    await rejectsWith(meta.rename(root, ROOT_INO, 'f', ROOT_INO, 'd'), 'EISDIR');
  });

  it('a directory into itself or its own subdirectory is EINVAL', async () => {
    const { meta } = await volume();
    const a = await meta.mkdir(root, ROOT_INO, 'a', 0o755);
    const b = await meta.mkdir(root, a.ino, 'b', 0o755);
    const c = await meta.mkdir(root, b.ino, 'c', 0o755);
    await rejectsWith(meta.rename(root, ROOT_INO, 'a', c.ino, 'x'), 'EINVAL');
    await rejectsWith(meta.rename(root, ROOT_INO, 'a', a.ino, 'x'), 'EINVAL');
    await rejectsWith(meta.rename(root, ROOT_INO, 'a', b.ino, 'x', RENAME_NOREPLACE), 'EINVAL');
    // Exchanging a directory with a name inside it is the same loop, seen from the other side.
    await rejectsWith(meta.rename(root, b.ino, 'c', ROOT_INO, 'a', RENAME_EXCHANGE), 'EINVAL');
    assert.equal((await meta.getattr(a.ino)).parent, ROOT_INO);
  });

  it('between two hard links of one inode it does nothing; both names remain', async () => {
    const { meta } = await volume();
    const f = await meta.create(root, ROOT_INO, 'a', 0o644);
    await meta.link(root, f.ino, ROOT_INO, 'b');
    const seq = await meta.engine.lastSeq();
    await meta.rename(root, ROOT_INO, 'a', ROOT_INO, 'b');
    assert.deepEqual(await names(meta, ROOT_INO), ['a', 'b']);
    assert.equal((await meta.getattr(f.ino)).nlink, 2);
    assert.equal(await meta.engine.lastSeq(), seq, 'no write at all');
  });

  it('RENAME_NOREPLACE fails with EEXIST over an existing name and moves to a free one', async () => {
    const { meta } = await volume();
    const a = await meta.create(root, ROOT_INO, 'a', 0o644);
    const b = await meta.create(root, ROOT_INO, 'b', 0o644);
    await rejectsWith(meta.rename(root, ROOT_INO, 'a', ROOT_INO, 'b', RENAME_NOREPLACE), 'EEXIST');
    assert.equal((await meta.lookup(root, ROOT_INO, 'b')).ino, b.ino);
    await meta.rename(root, ROOT_INO, 'a', ROOT_INO, 'c', RENAME_NOREPLACE);
    assert.equal((await meta.lookup(root, ROOT_INO, 'c')).ino, a.ino);
    await rejectsWith(meta.rename(root, ROOT_INO, 'c', ROOT_INO, 'd', RENAME_NOREPLACE | RENAME_EXCHANGE), 'EINVAL');
    await rejectsWith(meta.rename(root, ROOT_INO, 'c', ROOT_INO, 'd', 8), 'EINVAL');
  });

  it('RENAME_EXCHANGE swaps a file and a directory across parents; link counts and .. follow', async () => {
    const { meta } = await volume();
    const p = await meta.mkdir(root, ROOT_INO, 'p', 0o755);
    const q = await meta.mkdir(root, ROOT_INO, 'q', 0o755);
    const f = await meta.create(root, p.ino, 'f', 0o644);
    const d = await meta.mkdir(root, q.ino, 'd', 0o755);
    assert.equal((await meta.getattr(q.ino)).nlink, 3);
    await meta.rename(root, p.ino, 'f', q.ino, 'd', RENAME_EXCHANGE);
    const pf = await meta.lookup(root, p.ino, 'f');
    const qd = await meta.lookup(root, q.ino, 'd');
    assert.equal(pf.ino, d.ino);
    assert.equal(pf.type, 'dir');
    assert.equal(qd.ino, f.ino);
    assert.equal(qd.type, 'file');
    assert.deepEqual(
      (await meta.readdir(root, p.ino)).map((e) => [e.name, e.type]),
      [['f', 'dir']],
      'the entry records its new type',
    );
    assert.equal((await meta.getattr(p.ino)).nlink, 3, 'p gained a subdirectory');
    assert.equal((await meta.getattr(q.ino)).nlink, 2, 'q lost its subdirectory');
    assert.equal((await meta.getattr(d.ino)).parent, p.ino);
    assert.equal((await meta.lookup(root, d.ino, '..')).ino, p.ino);
    assert.equal((await meta.getattr(f.ino)).nlink, 1);
    await rejectsWith(meta.rename(root, p.ino, 'f', q.ino, 'missing', RENAME_EXCHANGE), 'ENOENT');
  });

  it('a missing source is ENOENT; . and .. are EBUSY; the root .trash name is EPERM', async () => {
    const { meta } = await volume();
    await meta.create(root, ROOT_INO, 'f', 0o644);
    await rejectsWith(meta.rename(root, ROOT_INO, 'missing', ROOT_INO, 'x'), 'ENOENT');
    await rejectsWith(meta.rename(root, ROOT_INO, '.', ROOT_INO, 'x'), 'EBUSY');
    await rejectsWith(meta.rename(root, ROOT_INO, 'f', ROOT_INO, '..'), 'EBUSY');
    await rejectsWith(meta.rename(root, ROOT_INO, 'f', ROOT_INO, TRASH_NAME), 'EPERM');
    await rejectsWith(meta.rename(root, ROOT_INO, 'f', 9999, 'x'), 'ENOENT');
  });
});

describe('Meta: permissions', () => {
  it('creating in a 0755 root-owned directory is EACCES for another user', async () => {
    const { meta } = await volume();
    const d = await meta.mkdir(root, ROOT_INO, 'd', 0o755);
    const f = await meta.create(root, d.ino, 'f', 0o644);
    for (const p of [
      meta.create(user, d.ino, 'x', 0o644),
      meta.mkdir(user, d.ino, 'x', 0o755),
      meta.symlink(user, d.ino, 'x', 't'),
      meta.link(user, f.ino, d.ino, 'x'),
      meta.unlink(user, d.ino, 'f'),
      meta.rename(user, d.ino, 'f', d.ino, 'g'),
    ]) {
      await rejectsWith(p, 'EACCES');
    }
    await meta.setattr(root, ROOT_INO, { mode: 0o755 });
    await rejectsWith(meta.create(user, ROOT_INO, 'x', 0o644), 'EACCES', 'root directory set to 0755');
    const mine = await meta.mkdir(root, ROOT_INO, 'mine', 0o755);
    await meta.setattr(root, mine.ino, { uid: 1000 });
    await meta.create(user, mine.ino, 'x', 0o644);
  });

  it('lookup needs X on the directory; readdir needs R', async () => {
    const { meta } = await volume();
    const rOnly = await meta.mkdir(root, ROOT_INO, 'r', 0o744);
    const xOnly = await meta.mkdir(root, ROOT_INO, 'x', 0o711);
    await meta.create(root, rOnly.ino, 'f', 0o644);
    const g = await meta.create(root, xOnly.ino, 'g', 0o644);
    await rejectsWith(meta.lookup(user, rOnly.ino, 'f'), 'EACCES');
    assert.deepEqual(await names(meta, rOnly.ino, user), ['f']);
    assert.equal((await meta.lookup(user, xOnly.ino, 'g')).ino, g.ino);
    await rejectsWith(meta.readdir(user, xOnly.ino), 'EACCES');
    // Group bits apply to members, supplementary groups included.
    await meta.setattr(root, xOnly.ino, { gid: 50, mode: 0o751 });
    await rejectsWith(meta.readdir(user, xOnly.ino), 'EACCES');
    assert.deepEqual(await names(meta, xOnly.ino, { uid: 1000, gid: 1000, gids: [50] }), ['g']);
  });

  it('access checks R, W and X; root may do everything but execute a file with no x bit', async () => {
    const { meta } = await volume();
    const f = await meta.create(user, ROOT_INO, 'f', 0o640);
    await meta.access(user, f.ino, R_OK | W_OK);
    await rejectsWith(meta.access(user, f.ino, X_OK), 'EACCES');
    await rejectsWith(meta.access(other, f.ino, R_OK), 'EACCES');
    await meta.access(other, f.ino, 0);
    await meta.access(root, f.ino, R_OK | W_OK);
    await rejectsWith(meta.access(root, f.ino, X_OK), 'EACCES');
    await meta.setattr(user, f.ino, { mode: 0o641 });
    await meta.access(root, f.ino, X_OK);
  });

  it('chmod by a non-owner is EPERM; the owner may', async () => {
    const { meta } = await volume();
    const f = await meta.create(user, ROOT_INO, 'f', 0o644);
    await rejectsWith(meta.setattr(other, f.ino, { mode: 0o777 }), 'EPERM');
    assert.equal((await meta.setattr(user, f.ino, { mode: 0o600 })).mode, 0o600);
    assert.equal((await meta.setattr(root, f.ino, { mode: 0o4755 })).mode, 0o4755);
    // A non-root owner outside the file's group cannot set the setgid bit.
    await meta.setattr(root, f.ino, { gid: 50 });
    assert.equal((await meta.setattr(user, f.ino, { mode: 0o2755 })).mode, 0o755);
  });

  it('chown by a non-root user is EPERM; chgrp only to a group the owner is in', async () => {
    const { meta } = await volume();
    const f = await meta.create(user, ROOT_INO, 'f', 0o644);
    await rejectsWith(meta.setattr(user, f.ino, { uid: 1001 }), 'EPERM');
    await rejectsWith(meta.setattr(user, f.ino, { gid: 50 }), 'EPERM', 'group not in gids');
    await rejectsWith(meta.setattr(other, f.ino, { gid: 1001 }), 'EPERM', 'not the owner');
    const member: Ctx = { uid: 1000, gid: 1000, gids: [50] };
    assert.equal((await meta.setattr(member, f.ino, { gid: 50 })).gid, 50);
    assert.equal((await meta.setattr(user, f.ino, { uid: 1000 })).uid, 1000, 'chown to oneself is allowed');
    const a = await meta.setattr(root, f.ino, { uid: 7, gid: 8 });
    assert.equal(a.uid, 7);
    assert.equal(a.gid, 8);
  });

  it('chown clears set-user-id and group-executable set-group-id bits of a file', async () => {
    const { meta } = await volume();
    const f = await meta.create(root, ROOT_INO, 'f', 0o6755);
    assert.equal((await meta.setattr(root, f.ino, { uid: 5 })).mode, 0o755);
  });

  it('sticky directory: another user cannot unlink or rename your file; the owner can', async () => {
    const { meta } = await volume();
    const tmp = await meta.mkdir(root, ROOT_INO, 'tmp', 0o1777);
    const f = await meta.create(user, tmp.ino, 'f', 0o666);
    await meta.create(other, tmp.ino, 'o', 0o666);
    await rejectsWith(meta.unlink(other, tmp.ino, 'f'), 'EPERM');
    await rejectsWith(meta.rename(other, tmp.ino, 'f', tmp.ino, 'g'), 'EPERM');
    await rejectsWith(meta.rename(other, tmp.ino, 'o', tmp.ino, 'f'), 'EPERM', 'replacing it');
    await rejectsWith(meta.rename(other, tmp.ino, 'o', tmp.ino, 'f', RENAME_EXCHANGE), 'EPERM', 'exchanging with it');
    assert.equal((await meta.lookup(root, tmp.ino, 'f')).ino, f.ino);
    await meta.rename(user, tmp.ino, 'f', tmp.ino, 'g');
    await meta.unlink(user, tmp.ino, 'g');
    await gone(meta, f.ino);
    await meta.unlink(root, tmp.ino, 'o');
  });

  it('setgid directory: new entries take its group; new subdirectories inherit the bit', async () => {
    const { meta } = await volume();
    const d = await meta.mkdir(root, ROOT_INO, 'shared', 0o2777);
    await meta.setattr(root, d.ino, { gid: 50 });
    const f = await meta.create(user, d.ino, 'f', 0o644);
    assert.equal(f.gid, 50);
    const sub = await meta.mkdir(user, d.ino, 'sub', 0o755);
    assert.equal(sub.gid, 50);
    assert.equal(sub.mode, 0o2755);
    const deeper = await meta.create(user, sub.ino, 'g', 0o644);
    assert.equal(deeper.gid, 50);
    const plain = await meta.create(user, ROOT_INO, 'plain', 0o644);
    assert.equal(plain.gid, 1000);
  });

  it('utimes to now needs write permission; explicit times need ownership', async () => {
    const { meta, clock } = await volume();
    const f = await meta.create(user, ROOT_INO, 'f', 0o666);
    clock.now = T0 + 5000;
    const a = await meta.setattr(other, f.ino, { atime: 'now', mtime: 'now' });
    assert.equal(a.atime, T0 + 5000);
    assert.equal(a.mtime, T0 + 5000);
    await rejectsWith(meta.setattr(other, f.ino, { mtime: 1234 }), 'EPERM');
    assert.equal((await meta.setattr(user, f.ino, { mtime: 1234, atime: 1235.5 })).mtime, 1234);
    assert.equal((await meta.getattr(f.ino)).atime, 1235.5);
    await meta.setattr(user, f.ino, { mode: 0o644 });
    await rejectsWith(meta.setattr(other, f.ino, { mtime: 'now' }), 'EACCES', 'no write permission');
  });
});

describe('Meta: extended attributes', () => {
  it('set, get, list and remove; flags and missing names', async () => {
    const { meta } = await volume();
    const f = await meta.create(user, ROOT_INO, 'f', 0o644);
    const bin = Buffer.from([0, 1, 2, 255, 254]);
    await meta.setxattr(user, f.ino, 'user.a', Buffer.from('one'));
    await meta.setxattr(user, f.ino, 'user.b', bin);
    await meta.setxattr(user, f.ino, 'user.empty', Buffer.alloc(0));
    assert.deepEqual(await meta.getxattr(user, f.ino, 'user.a'), Buffer.from('one'));
    assert.deepEqual(await meta.getxattr(user, f.ino, 'user.b'), bin);
    assert.deepEqual(await meta.getxattr(user, f.ino, 'user.empty'), Buffer.alloc(0));
    assert.deepEqual(await meta.listxattr(user, f.ino), ['user.a', 'user.b', 'user.empty']);
    await rejectsWith(meta.setxattr(user, f.ino, 'user.a', Buffer.from('x'), XATTR_CREATE), 'EEXIST');
    await rejectsWith(meta.setxattr(user, f.ino, 'user.c', Buffer.from('x'), XATTR_REPLACE), 'ENODATA');
    await meta.setxattr(user, f.ino, 'user.a', Buffer.from('two'), XATTR_REPLACE);
    await meta.setxattr(user, f.ino, 'user.c', Buffer.from('new'), XATTR_CREATE);
    assert.deepEqual(await meta.getxattr(user, f.ino, 'user.a'), Buffer.from('two'));
    await rejectsWith(meta.getxattr(user, f.ino, 'user.missing'), 'ENODATA');
    await meta.removexattr(user, f.ino, 'user.a');
    await rejectsWith(meta.getxattr(user, f.ino, 'user.a'), 'ENODATA');
    await rejectsWith(meta.removexattr(user, f.ino, 'user.a'), 'ENODATA');
    assert.deepEqual(await meta.listxattr(user, f.ino), ['user.b', 'user.c', 'user.empty']);
    for (const bad of ['os2.x', 'noprefix', 'User.a']) {
      await rejectsWith(meta.setxattr(user, f.ino, bad, Buffer.from('x')), 'ENOTSUP', bad);
      await rejectsWith(meta.getxattr(user, f.ino, bad), 'ENOTSUP', bad);
    }
    await rejectsWith(meta.setxattr(user, f.ino, 'user.big', Buffer.alloc(65537)), 'ERANGE');
    await rejectsWith(meta.setxattr(user, f.ino, 'user.a\0b', Buffer.from('x')), 'EINVAL', 'NUL in a name');
    await rejectsWith(meta.setxattr(user, f.ino, '', Buffer.from('x')), 'EINVAL', 'empty name');
  });

  it('user attributes follow file permissions; trusted attributes are root only', async () => {
    const { meta } = await volume();
    const f = await meta.create(user, ROOT_INO, 'f', 0o644);
    await rejectsWith(meta.setxattr(other, f.ino, 'user.a', Buffer.from('x')), 'EACCES');
    await meta.setxattr(user, f.ino, 'user.a', Buffer.from('x'));
    assert.deepEqual(await meta.getxattr(other, f.ino, 'user.a'), Buffer.from('x'));
    await rejectsWith(meta.setxattr(user, f.ino, 'trusted.t', Buffer.from('x')), 'EPERM');
    await meta.setxattr(root, f.ino, 'trusted.t', Buffer.from('x'));
    await rejectsWith(meta.getxattr(user, f.ino, 'trusted.t'), 'ENODATA');
    assert.deepEqual(await meta.listxattr(user, f.ino), ['user.a']);
    assert.deepEqual(await meta.listxattr(root, f.ino), ['trusted.t', 'user.a']);
  });

  it('attributes go with their inode', async () => {
    const { meta, engine } = await volume();
    const f = await meta.create(root, ROOT_INO, 'f', 0o644);
    await meta.setxattr(root, f.ino, 'user.a', Buffer.from('x'));
    await meta.unlink(root, ROOT_INO, 'f');
    assert.deepEqual(await engine.txn((tx) => tx.scan('xattr', String(f.ino))), []);
  });
});

describe('Meta: open files', () => {
  it('an unlinked open file stays readable until its last release, then its slices are released', async () => {
    const { meta } = await volume(0);
    const { ino, ref } = await fileWithSlice(meta, ROOT_INO, 'f');
    await meta.open(root, ino, R_OK);
    await meta.open(root, ino, R_OK | W_OK);
    assert.ok(meta.isOpen(ino));
    await meta.unlink(root, ROOT_INO, 'f');
    await rejectsWith(meta.lookup(root, ROOT_INO, 'f'), 'ENOENT');
    const a = await meta.getattr(ino);
    assert.equal(a.nlink, 0);
    assert.equal(a.length, ref.len);
    assert.deepEqual(await meta.readChunk(ino, 0), [ref]);
    assert.deepEqual(await delSliceIds(meta), []);
    await meta.release(ino);
    assert.equal((await meta.getattr(ino)).nlink, 0, 'one open remains');
    await meta.release(ino);
    assert.ok(!meta.isOpen(ino));
    await gone(meta, ino);
    assert.deepEqual(await meta.readChunk(ino, 0), []);
    assert.deepEqual(await delSliceIds(meta), [ref.id]);
    assert.equal((await meta.listSlices()).size, 0);
    const s = await meta.statfs();
    assert.equal(s.inodes, 0);
    assert.equal(s.usedBytes, 0);
  });

  it('open checks the access mask; writing a directory is EISDIR', async () => {
    const { meta } = await volume();
    const f = await meta.create(root, ROOT_INO, 'f', 0o644);
    await rejectsWith(meta.open(user, f.ino, W_OK), 'EACCES');
    assert.ok(!meta.isOpen(f.ino));
    await rejectsWith(meta.open(root, ROOT_INO, W_OK), 'EISDIR');
    await rejectsWith(meta.open(root, 9999, R_OK), 'ENOENT');
  });

  it('close releases what is still open: an unlinked open file goes with it', async () => {
    const v = await volume(0);
    const m = await v.client();
    const { ino, ref } = await fileWithSlice(m, ROOT_INO, 'f');
    await m.open(root, ino, R_OK);
    await m.unlink(root, ROOT_INO, 'f');
    assert.equal((await v.meta.listSessions()).length, 2);
    await m.close();
    await m.close();
    await gone(v.meta, ino);
    assert.deepEqual(await delSliceIds(v.meta), [ref.id]);
    assert.deepEqual(
      (await v.meta.listSessions()).map((s) => s.sid),
      [v.meta.sid],
    );
  });
});

describe('Meta: trash', () => {
  it('with trashDays 1 an unlinked file waits in .trash/<hour>; cleanTrash after 2 days releases it', async () => {
    const { meta, clock } = await volume(1);
    const d = await meta.mkdir(root, ROOT_INO, 'd', 0o755);
    const { ino, ref } = await fileWithSlice(meta, d.ino, 'f');
    await meta.unlink(root, d.ino, 'f');
    await rejectsWith(meta.lookup(root, d.ino, 'f'), 'ENOENT');
    const trash = await meta.lookup(root, ROOT_INO, TRASH_NAME);
    assert.equal(trash.ino, TRASH_INO);
    assert.deepEqual(await names(meta, TRASH_INO), ['2024-01-15-10']);
    const hour = await meta.lookup(root, TRASH_INO, '2024-01-15-10');
    assert.equal(hour.type, 'dir');
    assert.equal((await meta.getattr(TRASH_INO)).nlink, 3);
    const trashed = `${d.ino}-${ino}-f`;
    assert.deepEqual(await names(meta, hour.ino), [trashed]);
    const a = await meta.lookup(root, hour.ino, trashed);
    assert.equal(a.ino, ino);
    assert.equal(a.nlink, 1);
    assert.deepEqual(await meta.readChunk(ino, 0), [ref], 'data kept');
    assert.deepEqual(await delSliceIds(meta), []);
    // A second file in the same hour shares the hour directory.
    await meta.create(root, ROOT_INO, 'g', 0o644);
    clock.now += 60_000;
    await meta.unlink(root, ROOT_INO, 'g');
    assert.equal((await names(meta, hour.ino)).length, 2);
    assert.equal(await meta.cleanTrash(T0 + 3_600_000), 0, 'too early');
    assert.equal(await meta.cleanTrash(T0 + 2 * 86_400_000), 2);
    await gone(meta, ino);
    await gone(meta, hour.ino);
    assert.deepEqual(await names(meta, TRASH_INO), []);
    assert.equal((await meta.getattr(TRASH_INO)).nlink, 2);
    assert.deepEqual(await delSliceIds(meta), [ref.id]);
    const s = await meta.statfs();
    assert.equal(s.inodes, 1, 'only d is left');
    assert.equal(s.usedBytes, 0);
  });

  it('a file replaced by rename goes to the trash too', async () => {
    const { meta } = await volume(1);
    const a = await meta.create(root, ROOT_INO, 'a', 0o644);
    const b = await meta.create(root, ROOT_INO, 'b', 0o644);
    await meta.rename(root, ROOT_INO, 'a', ROOT_INO, 'b');
    assert.equal((await meta.lookup(root, ROOT_INO, 'b')).ino, a.ino);
    const hour = await meta.lookup(root, TRASH_INO, '2024-01-15-10');
    assert.deepEqual(await names(meta, hour.ino), [`${ROOT_INO}-${b.ino}-b`]);
  });

  it('trash names are cut to 255 bytes on a character boundary and can be looked up', async () => {
    const { meta } = await volume(1);
    // Whatever the length of the "<parent>-<ino>-" prefix, one of these is cut inside a two-byte character.
    for (const name of ['é'.repeat(127) + 'a', 'a' + 'é'.repeat(127), '\u{1F600}'.repeat(63) + 'abc']) {
      assert.equal(Buffer.byteLength(name), 255);
      await meta.create(root, ROOT_INO, name, 0o644);
      await meta.unlink(root, ROOT_INO, name);
    }
    const hour = await meta.lookup(root, TRASH_INO, '2024-01-15-10');
    const listed = await names(meta, hour.ino);
    assert.equal(listed.length, 3);
    for (const n of listed) {
      assert.ok(Buffer.byteLength(n) <= 255, `trash name of ${Buffer.byteLength(n)} bytes`);
      assert.ok(!n.includes('\uFFFD'), 'trash name holds a broken character');
      await meta.lookup(root, hour.ino, n);
    }
  });

  it('with trashDays 0 an unlinked file is gone at once and nothing goes to .trash', async () => {
    const { meta } = await volume(0);
    const { ino, ref } = await fileWithSlice(meta, ROOT_INO, 'f');
    await meta.unlink(root, ROOT_INO, 'f');
    await gone(meta, ino);
    assert.deepEqual(await names(meta, TRASH_INO), []);
    assert.deepEqual(await delSliceIds(meta), [ref.id]);
  });

  it('unlinking a file inside the trash deletes it for good', async () => {
    const { meta } = await volume(1);
    const f = await meta.create(root, ROOT_INO, 'f', 0o644);
    await meta.unlink(root, ROOT_INO, 'f');
    const hour = await meta.lookup(root, TRASH_INO, '2024-01-15-10');
    await meta.unlink(root, hour.ino, `${ROOT_INO}-${f.ino}-f`);
    await gone(meta, f.ino);
  });
});

describe('Meta: sessions', () => {
  it('a stale session is cleaned by another client, with its open-but-unlinked files', async () => {
    const v = await volume(0, { sessionStaleMs: 1000 });
    const b = await v.client({ sessionStaleMs: 10 });
    assert.notEqual(b.sid, v.meta.sid);
    const { ino, ref } = await fileWithSlice(b, ROOT_INO, 'f');
    const kept = await fileWithSlice(b, ROOT_INO, 'kept');
    await b.open(root, ino, R_OK);
    await b.unlink(root, ROOT_INO, 'f');
    assert.equal((await v.meta.getattr(ino)).nlink, 0);
    assert.equal(await v.meta.cleanStaleSessions(), 0, 'not stale yet');
    assert.equal((await v.meta.listSessions()).length, 2);
    v.clock.now += 5000;
    await v.meta.heartbeat(); // refreshes the first client only (and would clean b)
    assert.deepEqual(
      (await v.meta.listSessions()).map((s) => s.sid),
      [v.meta.sid],
    );
    await gone(v.meta, ino);
    assert.deepEqual(await delSliceIds(v.meta), [ref.id]);
    assert.equal((await v.meta.getattr(kept.ino)).nlink, 1, 'files not held open stay');
    assert.equal(await v.meta.cleanStaleSessions(), 0, 'own session is never stale to itself');
  });

  it('cleanStaleSessions returns how many sessions it removed', async () => {
    const v = await volume(0, { sessionStaleMs: 1000 });
    await v.client({ sessionStaleMs: 1000 });
    await v.client({ sessionStaleMs: 1000 });
    v.clock.now += 2000;
    assert.equal(await v.meta.cleanStaleSessions(), 2);
    assert.equal((await v.meta.listSessions()).length, 1);
  });
});

describe('Meta: data', () => {
  it('write records slice references per chunk, extends the length and counts slices', async () => {
    const { meta, clock } = await volume();
    const f = await meta.create(root, ROOT_INO, 'f', 0o644);
    const id1 = await meta.newSliceId();
    const id2 = await meta.newSliceId();
    assert.ok(id2 > id1);
    const r1: SliceRef = { pos: 0, id: id1, size: 4096, off: 0, len: 4096 };
    const r2: SliceRef = { pos: 100, id: id2, size: 500, off: 0, len: 500 };
    clock.now = T0 + 10;
    const { attr, longest } = await meta.write(f.ino, [
      { index: 0, ref: r1 },
      { index: 0, ref: r2 },
    ]);
    assert.equal(longest, 2);
    assert.equal(attr.length, 4096);
    assert.equal(attr.mtime, T0 + 10);
    assert.deepEqual(await meta.readChunk(f.ino, 0), [r1, r2]);
    const r3: SliceRef = { pos: C - 10, id: await meta.newSliceId(), size: 10, off: 0, len: 10 };
    const r4: SliceRef = { pos: 0, id: await meta.newSliceId(), size: 20, off: 0, len: 20 };
    const w = await meta.write(f.ino, [
      { index: 0, ref: r3 },
      { index: 1, ref: r4 },
    ]);
    assert.equal(w.attr.length, C + 20);
    assert.deepEqual(await meta.readChunks(f.ino), [
      [0, [r1, r2, r3]],
      [1, [r4]],
    ]);
    const slices = await meta.listSlices();
    assert.deepEqual(slices.get(id1), { size: 4096, refs: 1 });
    assert.equal(slices.size, 4);
    // Usage counts data: r2 lies inside r1, and the hole between r1 and r3 is free.
    assert.equal((await meta.statfs()).usedBytes, 4096 + 10 + 20);
    assert.equal((await meta.getattr(f.ino)).used, 4096 + 10 + 20);
    await assert.rejects(meta.write(f.ino, [{ index: 0, ref: { pos: C - 1, id: 99, size: 2, off: 0, len: 2 } }]), /assertion failed/);
    await rejectsWith(meta.write(ROOT_INO, [{ index: 0, ref: r1 }]), 'EBADF');
  });

  it('truncate down inside a chunk appends a zero reference and releases the chunks beyond', async () => {
    const { meta } = await volume();
    const f = await meta.create(root, ROOT_INO, 'f', 0o644);
    const a: SliceRef = { pos: 0, id: await meta.newSliceId(), size: 5000, off: 0, len: 5000 };
    const b: SliceRef = { pos: C - 1000, id: await meta.newSliceId(), size: 3000, off: 0, len: 1000 };
    const c: SliceRef = { pos: 0, id: b.id, size: 3000, off: 1000, len: 2000 };
    const d: SliceRef = { pos: 0, id: await meta.newSliceId(), size: 100, off: 0, len: 100 };
    await meta.write(f.ino, [
      { index: 0, ref: a },
      { index: 0, ref: b },
      { index: 1, ref: c },
      { index: 2, ref: d },
    ]);
    assert.equal((await meta.getattr(f.ino)).length, 2 * C + 100);
    assert.equal((await meta.listSlices()).get(b.id)?.refs, 2);
    const t = await meta.truncate(f.ino, 3000);
    assert.equal(t.length, 3000);
    assert.deepEqual(await meta.readChunk(f.ino, 0), [a, b, { pos: 3000, id: 0, size: 0, off: 0, len: C - 3000 }]);
    assert.deepEqual(await meta.readChunk(f.ino, 1), []);
    assert.deepEqual(await meta.readChunk(f.ino, 2), []);
    assert.deepEqual(await delSliceIds(meta), [d.id], 'b is still referenced from chunk 0');
    assert.equal((await meta.listSlices()).get(b.id)?.refs, 1);
    assert.equal((await meta.statfs()).usedBytes, 3000);
    // Truncating on a chunk edge needs no zero reference.
    await meta.truncate(f.ino, 0);
    assert.deepEqual(await meta.readChunks(f.ino), []);
    assert.deepEqual((await delSliceIds(meta)).sort((x, y) => x - y), [a.id, b.id, d.id].sort((x, y) => x - y));
    assert.equal((await meta.statfs()).usedBytes, 0);
  });

  it('truncate up extends the length without touching chunks; bad targets fail', async () => {
    const { meta } = await volume();
    const f = await fileWithSlice(meta, ROOT_INO, 'f', 100);
    const t = await meta.truncate(f.ino, 3 * C);
    assert.equal(t.length, 3 * C);
    assert.deepEqual(await meta.readChunks(f.ino), [[0, [f.ref]]]);
    assert.equal((await meta.statfs()).usedBytes, 100, 'the hole truncate adds holds no data');
    await rejectsWith(meta.truncate(ROOT_INO, 0), 'EISDIR');
    const s = await meta.symlink(root, ROOT_INO, 's', 't');
    await rejectsWith(meta.truncate(s.ino, 0), 'EINVAL');
    await rejectsWith(meta.truncate(f.ino, -1), 'EINVAL');
    await rejectsWith(meta.truncate(f.ino, 1.5), 'EINVAL');
  });

  it('fallocate: extend, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE; PUNCH_HOLE without KEEP_SIZE is ENOTSUP', async () => {
    const { meta } = await volume();
    const f = await fileWithSlice(meta, ROOT_INO, 'f', 1000);
    assert.equal((await meta.fallocate(f.ino, 0, 0, 500)).length, 1000, 'inside the file: no change');
    assert.equal((await meta.fallocate(f.ino, 0, 900, 1100)).length, 2000);
    assert.equal((await meta.fallocate(f.ino, FALLOC_KEEP_SIZE, 0, 10_000)).length, 2000);
    assert.equal((await meta.statfs()).usedBytes, 1000, 'nothing is reserved: the extension is a hole');
    await rejectsWith(meta.fallocate(f.ino, FALLOC_PUNCH_HOLE, 0, 10), 'ENOTSUP');
    await rejectsWith(meta.fallocate(f.ino, FALLOC_PUNCH_HOLE | FALLOC_ZERO_RANGE | FALLOC_KEEP_SIZE, 0, 10), 'EINVAL');
    await rejectsWith(meta.fallocate(f.ino, 0x100, 0, 10), 'ENOTSUP');
    await rejectsWith(meta.fallocate(f.ino, 0, 0, 0), 'EINVAL');
    await rejectsWith(meta.fallocate(f.ino, 0, -1, 10), 'EINVAL');
    const p = await meta.fallocate(f.ino, FALLOC_PUNCH_HOLE | FALLOC_KEEP_SIZE, 100, 200);
    assert.equal(p.length, 2000);
    assert.deepEqual(await meta.readChunk(f.ino, 0), [f.ref, { pos: 100, id: 0, size: 0, off: 0, len: 200 }]);
    // A hole past the end only covers up to the end.
    await meta.fallocate(f.ino, FALLOC_PUNCH_HOLE | FALLOC_KEEP_SIZE, 1900, 500);
    assert.deepEqual((await meta.readChunk(f.ino, 0)).at(-1), { pos: 1900, id: 0, size: 0, off: 0, len: 100 });
    const z = await meta.fallocate(f.ino, FALLOC_ZERO_RANGE, 1500, 1000);
    assert.equal(z.length, 2500);
    assert.deepEqual((await meta.readChunk(f.ino, 0)).at(-1), { pos: 1500, id: 0, size: 0, off: 0, len: 500 });
    assert.equal((await meta.statfs()).usedBytes, 800, 'the punched 200 bytes are free');
    await rejectsWith(meta.fallocate(ROOT_INO, 0, 0, 10), 'EISDIR');
  });

  it('copyFileRange shares slices; releasing both files moves the slice to delslice', async () => {
    const { meta } = await volume(0);
    const src = await fileWithSlice(meta, ROOT_INO, 'src', 1000);
    const dst = await meta.create(root, ROOT_INO, 'dst', 0o644);
    assert.equal(await meta.copyFileRange(src.ino, 100, dst.ino, 0, 500), 500);
    assert.deepEqual(await meta.readChunk(dst.ino, 0), [{ pos: 0, id: src.ref.id, size: 1000, off: 100, len: 500 }]);
    assert.deepEqual((await meta.listSlices()).get(src.ref.id), { size: 1000, refs: 2 });
    assert.equal((await meta.getattr(dst.ino)).length, 500);
    assert.equal((await meta.statfs()).usedBytes, 1500);
    assert.equal(await meta.copyFileRange(src.ino, 900, dst.ino, 0, 500), 100, 'short at the source end');
    assert.equal(await meta.copyFileRange(src.ino, 1000, dst.ino, 0, 500), 0, 'at the end');
    assert.deepEqual((await meta.listSlices()).get(src.ref.id), { size: 1000, refs: 3 });
    await meta.unlink(root, ROOT_INO, 'src');
    assert.deepEqual((await meta.listSlices()).get(src.ref.id), { size: 1000, refs: 2 });
    assert.deepEqual(await delSliceIds(meta), []);
    await meta.unlink(root, ROOT_INO, 'dst');
    assert.equal((await meta.listSlices()).size, 0);
    assert.deepEqual(await delSliceIds(meta), [src.ref.id]);
    assert.equal((await meta.statfs()).usedBytes, 0);
  });

  it('copyFileRange covers old destination bytes where the source has holes', async () => {
    const { meta } = await volume();
    const src = await meta.create(root, ROOT_INO, 'src', 0o644);
    const s1: SliceRef = { pos: 100, id: await meta.newSliceId(), size: 100, off: 0, len: 100 };
    await meta.write(src.ino, [{ index: 0, ref: s1 }]);
    await meta.truncate(src.ino, 400);
    const dst = await fileWithSlice(meta, ROOT_INO, 'dst', 1000);
    assert.equal(await meta.copyFileRange(src.ino, 0, dst.ino, 0, 400), 400);
    assert.deepEqual(await meta.readChunk(dst.ino, 0), [
      dst.ref,
      { pos: 0, id: 0, size: 0, off: 0, len: 100 },
      { pos: 100, id: s1.id, size: 100, off: 0, len: 100 },
      { pos: 200, id: 0, size: 0, off: 0, len: 200 },
    ]);
    await rejectsWith(meta.copyFileRange(dst.ino, 0, dst.ino, 100, 200), 'EINVAL', 'overlap in one file');
    assert.equal(await meta.copyFileRange(dst.ino, 0, dst.ino, 500, 200), 200);
    await rejectsWith(meta.copyFileRange(src.ino, 0, ROOT_INO, 0, 10), 'EISDIR');
  });

  it('copyFileRange across chunk edges splits references at destination chunk edges', async () => {
    const { meta } = await volume();
    const src = await meta.create(root, ROOT_INO, 'src', 0o644);
    const a: SliceRef = { pos: C - 100, id: await meta.newSliceId(), size: 100, off: 0, len: 100 };
    const b: SliceRef = { pos: 0, id: await meta.newSliceId(), size: 100, off: 0, len: 100 };
    await meta.write(src.ino, [
      { index: 0, ref: a },
      { index: 1, ref: b },
    ]);
    const dst = await meta.create(root, ROOT_INO, 'dst', 0o644);
    assert.equal(await meta.copyFileRange(src.ino, C - 100, dst.ino, C - 50, 200), 200);
    assert.deepEqual(await meta.readChunks(dst.ino), [
      [0, [{ pos: C - 50, id: a.id, size: 100, off: 0, len: 50 }]],
      [
        1,
        [
          { pos: 0, id: a.id, size: 100, off: 50, len: 50 },
          { pos: 50, id: b.id, size: 100, off: 0, len: 100 },
        ],
      ],
    ]);
    assert.equal((await meta.getattr(dst.ino)).length, C + 150);
    assert.deepEqual((await meta.listSlices()).get(a.id), { size: 100, refs: 3 });
  });

  it('replaceSlices swaps a matching prefix for a compacted slice, and refuses a changed chunk', async () => {
    const { meta, engine } = await volume();
    const f = await meta.create(root, ROOT_INO, 'f', 0o644);
    const refs: SliceRef[] = [];
    for (let i = 0; i < 3; i++) refs.push({ pos: i * 100, id: await meta.newSliceId(), size: 100, off: 0, len: 100 });
    for (const ref of refs) await meta.write(f.ino, [{ index: 0, ref }]);
    const compact: SliceRef = { pos: 0, id: await meta.newSliceId(), size: 200, off: 0, len: 200 };
    assert.equal(await meta.replaceSlices(f.ino, 0, refs.slice(0, 2), compact), true);
    assert.deepEqual(await meta.readChunk(f.ino, 0), [compact, refs[2]]);
    const slices = await meta.listSlices();
    assert.deepEqual(slices.get(compact.id), { size: 200, refs: 1 });
    assert.equal(slices.has(refs[0]!.id), false);
    assert.deepEqual((await delSliceIds(meta)).sort((x, y) => x - y), [refs[0]!.id, refs[1]!.id]);
    const seq = await engine.lastSeq();
    const again: SliceRef = { pos: 0, id: await meta.newSliceId(), size: 200, off: 0, len: 200 };
    assert.equal(await meta.replaceSlices(f.ino, 0, refs.slice(0, 2), again), false, 'the chunk changed');
    assert.equal(await meta.replaceSlices(f.ino, 0, [compact, refs[2]!, refs[2]!], again), false, 'longer than the chunk');
    assert.equal(await meta.replaceSlices(f.ino, 0, [{ ...compact, len: 199 }], again), false, 'a different length');
    assert.equal(await engine.lastSeq(), seq, 'a refused replace writes nothing');
    assert.deepEqual(await meta.readChunk(f.ino, 0), [compact, refs[2]]);
  });

  it('abandonSlice marks an uncommitted slice for deletion; dropDelSlice forgets it', async () => {
    const { meta, clock } = await volume();
    const id = await meta.newSliceId();
    await meta.abandonSlice(id, 123);
    assert.deepEqual(await meta.listDelSlices(T0 + 1), [{ id, size: 123, time: T0 }]);
    assert.deepEqual(await meta.listDelSlices(T0), [], 'grace period: only older than `before`');
    await meta.dropDelSlice(id);
    assert.deepEqual(await meta.listDelSlices(Number.MAX_SAFE_INTEGER), []);
    // A committed slice is not abandoned.
    const f = await fileWithSlice(meta, ROOT_INO, 'f', 10);
    clock.now += 1;
    await meta.abandonSlice(f.ref.id, 10);
    assert.deepEqual(await delSliceIds(meta), []);
  });

  it('statfs follows creates, writes, truncates and deletes', async () => {
    const { meta } = await volume();
    const s0 = await meta.statfs();
    assert.equal(s0.inodes, 0);
    assert.equal(s0.usedBytes, 0);
    assert.equal(s0.bsize, 4096);
    assert.equal(s0.bfree, s0.blocks);
    const d = await meta.mkdir(root, ROOT_INO, 'd', 0o755);
    const f = await fileWithSlice(meta, d.ino, 'f', 10_000);
    await meta.symlink(root, d.ino, 's', 'target');
    let s = await meta.statfs();
    assert.equal(s.inodes, 3);
    assert.equal(s.usedBytes, 10_000);
    assert.equal(s.bfree, s.blocks - Math.ceil(10_000 / 4096));
    assert.equal(s.ffree, s.files - 3);
    await meta.truncate(f.ino, 5000);
    assert.equal((await meta.statfs()).usedBytes, 5000);
    await meta.link(root, f.ino, ROOT_INO, 'hard');
    assert.equal((await meta.statfs()).inodes, 3, 'a hard link is no new inode');
    await meta.unlink(root, d.ino, 'f');
    await meta.unlink(root, ROOT_INO, 'hard');
    await meta.unlink(root, d.ino, 's');
    await meta.rmdir(root, ROOT_INO, 'd');
    s = await meta.statfs();
    assert.equal(s.inodes, 0);
    assert.equal(s.usedBytes, 0);
  });
  it("close waits for the timer's usage flush in flight: no counts lost when the engine closes next", async () => {
    const { engine, meta } = await volume();
    // The same engine, where the next writing transaction once armed is 50 ms late, and which refuses work
    // once "closed".
    let closed = false;
    let slowNext = false;
    const slow = new Proxy(engine, {
      get(target, key) {
        if (key === 'txn') {
          return async (fn: Parameters<SqliteEngine['txn']>[0], o?: { readonly?: boolean }) => {
            if (o?.readonly !== true && slowNext) {
              slowNext = false;
              await new Promise((r) => setTimeout(r, 50));
            }
            if (closed) throw new Error('engine closed');
            return target.txn(fn, o);
          };
        }
        const v: unknown = Reflect.get(target, key, target);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const m = await Meta.open(slow, { heartbeatMs: 0, usageFlushMs: 5 });
    await m.create(root, ROOT_INO, 'f', 0o644);
    slowNext = true;
    await new Promise((r) => setTimeout(r, 20)); // the timer fired: its flush waits in the slow engine
    await m.close();
    closed = true; // as a client closes its engine right after Meta
    await new Promise((r) => setTimeout(r, 100));
    assert.equal((await meta.statfs()).inodes, 1);
  });
});
