/** File locks in the metadata engine (meta/locks.ts, Meta.getlk/setlk/flock): ranges, conflicts, sessions. */

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, describe, it } from 'node:test';
import { LOCK_EOF, posixConflict, setRange, subtractRange, type LockRange } from '../../src/meta/locks.js';
import { formatVolume, Meta, type MetaOptions } from '../../src/meta/meta.js';
import { SqliteEngine } from '../../src/meta/sqlite.js';
import { ROOT_CTX, ROOT_INO } from '../../src/meta/types.js';

const T0 = Date.UTC(2024, 0, 15, 10, 30);
const dirs: string[] = [];
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function volume(): Promise<{ engine: SqliteEngine; clock: { now: number }; client(o?: MetaOptions): Promise<Meta> }> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-locks-'));
  dirs.push(dir);
  const engine = new SqliteEngine(join(dir, 'meta.db'), { create: true });
  closers.push(() => engine.close());
  await formatVolume(engine, { name: 'locks', storage: 'mem://locks', blockBytes: 4 << 20, compression: 'none', trashDays: 0 }, T0);
  const clock = { now: T0 };
  return {
    engine,
    clock,
    async client(o: MetaOptions = {}) {
      const m = await Meta.open(engine, { heartbeatMs: 0, now: () => clock.now, ...o });
      closers.push(() => m.close());
      return m;
    },
  };
}

describe('lock ranges', () => {
  it('sets, splits and merges one owner\'s ranges as POSIX says', () => {
    let r: LockRange[] = [];
    r = setRange(r, 0, 100, 'r');
    assert.deepEqual(r, [[0, 100, 'r']]);
    r = setRange(r, 40, 60, 'w');
    assert.deepEqual(r, [[0, 40, 'r'], [40, 60, 'w'], [60, 100, 'r']]);
    r = setRange(r, 40, 60, 'r');
    assert.deepEqual(r, [[0, 100, 'r']], 'adjacent ranges of one type merge');
    r = setRange(r, 10, 20, 'u');
    assert.deepEqual(r, [[0, 10, 'r'], [20, 100, 'r']]);
    r = setRange(r, 0, LOCK_EOF, 'u');
    assert.deepEqual(r, []);
    assert.deepEqual(subtractRange([[0, 10, 'w']], 10, 20), [[0, 10, 'w']], 'end is exclusive');
  });

  it('finds conflicts: writes conflict with anything, reads only with writes', () => {
    const others = [{ sid: 1, pid: 7, ranges: [[0, 10, 'r'], [20, 30, 'w']] as LockRange[] }];
    assert.equal(posixConflict(others, 'r', 0, 10), undefined);
    assert.deepEqual(posixConflict(others, 'w', 5, 6), { type: 'r', start: 0, end: 10, pid: 7, sid: 1 });
    assert.deepEqual(posixConflict(others, 'r', 25, LOCK_EOF), { type: 'w', start: 20, end: 30, pid: 7, sid: 1 });
    assert.equal(posixConflict(others, 'w', 10, 20), undefined);
  });
});

describe('Meta locks', () => {
  it('keeps POSIX locks between owners and clients, with F_GETLK and unlock', async () => {
    const v = await volume();
    const a = await v.client();
    const b = await v.client();
    const f = await a.create(ROOT_CTX, ROOT_INO, 'f', 0o644);
    assert.equal(await a.setlk(f.ino, 'o1', 'w', 0, 100, 11), undefined);
    assert.equal(await a.setlk(f.ino, 'o1', 'w', 50, 200, 11), undefined, 'an owner never conflicts with itself');
    assert.deepEqual(await a.setlk(f.ino, 'o2', 'r', 150, 160, 12), { type: 'w', start: 0, end: 200, pid: 11, sid: a.sid });
    assert.deepEqual(await b.getlk(f.ino, 'o1', 'r', 199, 300), { type: 'w', start: 0, end: 200, pid: 11, sid: a.sid }, 'same owner name, other client: another owner');
    assert.equal(await b.setlk(f.ino, 'o1', 'w', 200, LOCK_EOF, 13), undefined);
    assert.equal(await a.setlk(f.ino, 'o1', 'u', 0, 100), undefined);
    assert.equal(await b.getlk(f.ino, 'x', 'w', 0, 100), undefined);
    assert.equal(await a.setlk(f.ino, 'o1', 'u', 0, LOCK_EOF), undefined);
    assert.equal(await a.setlk(f.ino, 'o2', 'w', 0, 200, 12), undefined);
  });

  it('keeps flocks: shared with shared, exclusive alone, conversion, unlock', async () => {
    const v = await volume();
    const a = await v.client();
    const b = await v.client();
    const f = await a.create(ROOT_CTX, ROOT_INO, 'f', 0o644);
    assert.equal(await a.flock(f.ino, 'file1', 'sh'), true);
    assert.equal(await b.flock(f.ino, 'file2', 'sh'), true);
    assert.equal(await b.flock(f.ino, 'file2', 'ex'), false, 'a shared lock elsewhere blocks conversion');
    assert.equal(await a.flock(f.ino, 'file1', 'un'), true);
    assert.equal(await b.flock(f.ino, 'file2', 'ex'), true);
    assert.equal(await a.flock(f.ino, 'file1', 'sh'), false);
    // POSIX locks and flocks do not see each other.
    assert.equal(await a.setlk(f.ino, 'p', 'w', 0, LOCK_EOF), undefined);
  });

  it('drops a session\'s locks when it closes and when it is cleaned as stale', async () => {
    const v = await volume();
    const a = await v.client({ sessionStaleMs: 1000 });
    const b = await v.client({ sessionStaleMs: 1000 });
    const c = await v.client({ sessionStaleMs: 1000 });
    const f = await a.create(ROOT_CTX, ROOT_INO, 'f', 0o644);
    assert.equal(await b.setlk(f.ino, 'o', 'w', 0, LOCK_EOF, 1), undefined);
    assert.equal(await b.flock(f.ino, 'o', 'ex'), true);
    assert.notEqual(await a.setlk(f.ino, 'x', 'w', 0, 1), undefined);
    await b.close();
    assert.equal(await a.setlk(f.ino, 'x', 'w', 0, 1), undefined, 'closed: its locks are gone');
    assert.equal(await a.flock(f.ino, 'x', 'ex'), true);
    assert.equal(await a.setlk(f.ino, 'x', 'u', 0, LOCK_EOF), undefined);
    assert.equal(await a.flock(f.ino, 'x', 'un'), true);

    // c "dies" holding locks: it stops beating, and a live client cleans it up once it is stale.
    assert.equal(await c.setlk(f.ino, 'o', 'r', 0, 10, 2), undefined);
    assert.equal(await c.flock(f.ino, 'o', 'sh'), true);
    assert.notEqual(await a.setlk(f.ino, 'x', 'w', 0, 1), undefined);
    v.clock.now += 5000;
    await a.heartbeat();
    assert.equal(await a.setlk(f.ino, 'x', 'w', 0, 1), undefined, 'stale session: its locks are gone');
    assert.equal(await a.flock(f.ino, 'x', 'ex'), true);
    const left = await v.engine.txn((tx) => tx.scan('lock', `s${c.sid}`), { readonly: true });
    assert.deepEqual(left, []);
  });

  it('rejects bad ranges', async () => {
    const v = await volume();
    const a = await v.client();
    await assert.rejects(a.setlk(ROOT_INO + 100, 'o', 'w', 10, 5), /bad lock range/);
    await assert.rejects(a.getlk(ROOT_INO + 100, 'o', 'w', -1, 5), /bad lock range/);
  });
});
