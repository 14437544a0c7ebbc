/**
 * Meta.committedSeq: the changelog seq of the newest entry this client's own transactions appended, which a
 * client of a mirror region hands on to wait for its replica (read-your-writes). Reads and failed
 * operations leave it alone; another client's commits do not move it.
 */

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { isFsError } from '../../src/errors.js';
import { formatVolume, Meta } from '../../src/meta/meta.js';
import { SqliteEngine } from '../../src/meta/sqlite.js';
import { ROOT_CTX, ROOT_INO } from '../../src/meta/types.js';

it('Meta.committedSeq follows this client’s own commits, and only those', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-seq-'));
  const engine = new SqliteEngine(join(dir, 'meta.db'), { create: true });
  try {
    await formatVolume(engine, { name: 'seq', storage: 'mem://seq', blockBytes: 1 << 20, compression: 'none', trashDays: 0 });
    const a = await Meta.open(engine, { heartbeatMs: 0, usageFlushMs: 0 });
    const b = await Meta.open(engine, { heartbeatMs: 0, usageFlushMs: 0 });
    try {
      assert.equal(a.committedSeq, 0, 'opening a session logs nothing');
      const f = await a.create(ROOT_CTX, ROOT_INO, 'f', 0o644);
      const afterCreate = a.committedSeq;
      assert.ok(afterCreate > 0);
      // The create's own entry names the new file.
      const [entry] = await engine.readLog(afterCreate - 1, 1);
      assert.ok(entry!.ops.some((op) => op[0] === 'entry' && op[2] === 'f'), JSON.stringify(entry));
      await a.getattr(f.ino);
      await a.lookup(ROOT_CTX, ROOT_INO, 'f');
      await assert.rejects(a.unlink(ROOT_CTX, ROOT_INO, 'missing'), (e: unknown) => isFsError(e, 'ENOENT'));
      assert.equal(a.committedSeq, afterCreate, 'reads and failures leave it');
      await b.mkdir(ROOT_CTX, ROOT_INO, 'by-b', 0o755);
      assert.equal(a.committedSeq, afterCreate, "another client's commit does not move it");
      assert.ok(b.committedSeq > afterCreate);
      await a.rename(ROOT_CTX, ROOT_INO, 'f', ROOT_INO, 'g');
      assert.ok(a.committedSeq > b.committedSeq);
      assert.ok(a.committedSeq <= (await engine.lastSeq()));
    } finally {
      await a.close();
      await b.close();
    }
  } finally {
    await engine.close();
    await rm(dir, { recursive: true, force: true });
  }
});
