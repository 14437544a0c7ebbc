/**
 * O_APPEND across clients (meta/append.ts): appends committed with a stale view of the file's end move to
 * the real end, split at chunk boundaries; and two SDK clients on one SQLite volume appending in turn, each
 * with a stale length, lose nothing.
 */

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { shiftWrites } from '../../src/meta/append.js';
import { formatVolume, Meta } from '../../src/meta/meta.js';
import { SqliteEngine } from '../../src/meta/sqlite.js';
import { ROOT_CTX, ROOT_INO, type SliceRefRec } from '../../src/meta/types.js';
import { openVolume } from '../../src/sdk/open.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('shiftWrites', () => {
  const C = 100;
  it('moves references by the shift, keeping slice, size and offset', () => {
    assert.deepEqual(shiftWrites([{ index: 0, ref: { pos: 10, id: 7, size: 20, off: 0, len: 20 } }], 30, C), [{ index: 0, ref: { pos: 40, id: 7, size: 20, off: 0, len: 20 } }]);
    assert.deepEqual(shiftWrites([{ index: 1, ref: { pos: 10, id: 7, size: 20, off: 5, len: 10 } }], -60, C), [{ index: 0, ref: { pos: 50, id: 7, size: 20, off: 5, len: 10 } }]);
  });
  it('splits a reference that lands across chunk boundaries, advancing off', () => {
    assert.deepEqual(shiftWrites([{ index: 0, ref: { pos: 50, id: 9, size: 250, off: 0, len: 250, home: 'eu' } }], 40, C), [
      { index: 0, ref: { pos: 90, id: 9, size: 250, off: 0, len: 10, home: 'eu' } },
      { index: 1, ref: { pos: 0, id: 9, size: 250, off: 10, len: 100, home: 'eu' } },
      { index: 2, ref: { pos: 0, id: 9, size: 250, off: 110, len: 100, home: 'eu' } },
      { index: 3, ref: { pos: 0, id: 9, size: 250, off: 210, len: 40, home: 'eu' } },
    ]);
  });
  it('a shift to before the start of the file is an assertion failure', () => {
    assert.throws(() => shiftWrites([{ index: 0, ref: { pos: 5, id: 1, size: 1, off: 0, len: 1 } }], -6, C), /assertion failed/);
  });
});

async function sqliteVolume(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-append-'));
  dirs.push(dir);
  const engine = new SqliteEngine(join(dir, 'meta.db'), { create: true });
  await formatVolume(engine, { name: 'app', storage: `file://${dir}/bucket`, blockBytes: 64 << 10, compression: 'none', trashDays: 0 });
  await engine.close();
  return `sqlite://${dir}/meta.db`;
}

describe('Meta.write with appendAt', () => {
  it('lands at the real end of the file, across a chunk boundary, counting each piece as a reference', async () => {
    const url = await sqliteVolume();
    const engine = new SqliteEngine(url.substring('sqlite://'.length));
    const meta = await Meta.open(engine, { heartbeatMs: 0 });
    try {
      const C = meta.chunkBytes;
      const f = await meta.create(ROOT_CTX, ROOT_INO, 'log', 0o644);
      await meta.truncate(f.ino, C - 2);
      const id = await meta.newSliceId();
      // This client believes the file ends at C - 10; it really ends at C - 2.
      const r = await meta.write(f.ino, [{ index: 0, ref: { pos: C - 10, id, size: 5, off: 0, len: 5 } }], undefined, C - 10);
      assert.equal(r.shift, 8);
      assert.deepEqual(r.indexes.sort(), [0, 1]);
      assert.equal(r.attr.length, C + 3);
      assert.deepEqual((await meta.readChunk(f.ino, 0)).at(-1), { pos: C - 2, id, size: 5, off: 0, len: 2 });
      assert.deepEqual(await meta.readChunk(f.ino, 1), [{ pos: 0, id, size: 5, off: 2, len: 3 }]);
      assert.equal((await engine.txn((tx) => tx.get<SliceRefRec>('slice', '', String(id))))?.refs, 2);
      // Without appendAt, positions are kept as given.
      const id2 = await meta.newSliceId();
      const w = await meta.write(f.ino, [{ index: 0, ref: { pos: 0, id: id2, size: 1, off: 0, len: 1 } }]);
      assert.equal(w.shift, 0);
      assert.equal(w.attr.length, C + 3);
    } finally {
      await meta.close();
      await engine.close();
    }
  });
});

describe('two SDK clients appending to one file', () => {
  it('interleaved appends with buffered data and stale lengths lose nothing', async () => {
    const url = await sqliteVolume();
    const a = await openVolume(url, { heartbeatMs: 0, lookupCacheMs: 0 });
    const b = await openVolume(url, { heartbeatMs: 0, lookupCacheMs: 0 });
    try {
      await a.writeFile('/log', 'start\n');
      const ha = await a.open('/log', 'a');
      const hb = await b.open('/log', 'a');
      const expected = ['start\n'];
      // Both buffer several appends against the same stale end before either commits.
      for (let i = 0; i < 5; i++) {
        await ha.write(`a${i}\n`);
        await hb.write(`b${i}\n`);
        expected.push(`a${i}\n`, `b${i}\n`);
      }
      await ha.close();
      await hb.close();
      // A large append from each, crossing block boundaries, committed one after the other.
      const big = (c: string): string => c.repeat(150_000) + '\n';
      await a.appendFile('/log', big('x'));
      await b.appendFile('/log', big('y'));
      expected.push(big('x'), big('y'));
      const content = (await b.readFile('/log', 'utf8')) as string;
      assert.equal(content.length, expected.join('').length);
      assert.deepEqual(content.split(/(?<=\n)/).sort(), expected.sort());
      assert.ok(content.startsWith('start\na0\na1\na2\na3\na4\n'), "each client's buffered run stays contiguous");
    } finally {
      await a.close();
      await b.close();
    }
  });
});
