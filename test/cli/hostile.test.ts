/**
 * Names from the engine are untrusted: any client of a shared engine (or a hand-edited dump) can store an
 * entry named '../../x', 'a/b', '.', '..', '' or one holding NUL. Such a name never becomes a local path
 * (`ferry cp -r :/d /local`) nor reaches a listing; `load` refuses it, `fsck` reports it.
 */

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openMetaEngine, openVolume } from '../../src/index.js';
import { ensureBuilt, ferry, ok } from './helpers.js';

const HOSTILE = ['../../escaped', 'a/b', '.', '..', '', 'nul\u0000name'];

let root: string;
before(() => {
  ensureBuilt();
  root = mkdtempSync(path.join(tmpdir(), 'ferry-hostile-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

/** A volume with /d/ok and one hostile entry in /d that names ok's inode. */
async function volumeWithHostileName(name: string): Promise<{ dir: string; meta: string }> {
  const dir = mkdtempSync(path.join(root, 'v-'));
  const meta = `sqlite://${dir}/vol.db`;
  ok(['format', meta, 'hostile', '--storage', `file://${dir}/bucket`, '--trash-days', '0']);
  const vol = await openVolume(meta, { heartbeatMs: 0 });
  try {
    await vol.mkdir('/d');
    await vol.writeFile('/d/ok', 'fine');
  } finally {
    await vol.close();
  }
  const engine = await openMetaEngine(meta);
  try {
    await engine.txn(async (tx) => {
      const d = (await tx.get<{ ino: number }>('entry', '1', 'd'))!;
      const f = (await tx.get<{ ino: number; type: string }>('entry', String(d.ino), 'ok'))!;
      // SQLite keeps NUL in text; PostgreSQL would refuse it, which is the engines' own guard.
      tx.put('entry', String(d.ino), name, { ino: f.ino, type: 'file' });
    });
  } finally {
    await engine.close();
  }
  return { dir, meta };
}

void describe('hostile entry names', () => {
  for (const name of HOSTILE) {
    void it(`${JSON.stringify(name)}: never a local path nor a listed name; fsck reports it`, async () => {
      const { dir, meta } = await volumeWithHostileName(name);
      const dest = path.join(dir, 'out');
      const cp = ferry(['cp', meta, '-r', ':/d', dest]);
      assert.notEqual(cp.code, 0, 'cp -r refuses a directory holding an invalid name');
      assert.match(cp.stderr, /invalid entry/);
      assert.equal(existsSync(path.join(dir, 'escaped')), false, 'nothing written outside the destination');
      const ls = ferry(['ls', meta, '/d']);
      assert.notEqual(ls.code, 0);
      assert.match(ls.stderr, /invalid entry .*run ferry fsck/);
      const fsck = ferry(['fsck', meta]);
      assert.equal(fsck.code, 1);
      assert.match(fsck.stdout, /invalid name/);
    });
  }

  void it('load refuses a dump holding an invalid name, before touching the engine', async () => {
    const dir = mkdtempSync(path.join(root, 'v-'));
    const meta = `sqlite://${dir}/vol.db`;
    ok(['format', meta, 'dumped', '--storage', `file://${dir}/bucket`]);
    const dump = path.join(dir, 'vol.jsonl');
    ok(['dump', meta, dump]);
    const lines = readFileSync(dump, 'utf8').trimEnd().split('\n');
    for (const [part, key, why] of [['1', '../x', /holds '\/'/], ['1', '..', /reserved name/], ['one', 'x', /not an inode number/]] as const) {
      const records = [...lines.slice(1, -1), JSON.stringify(['entry', part, key, { ino: 1, type: 'dir' }])];
      const trailer = { ...(JSON.parse(lines.at(-1)!) as Record<string, unknown>), records: records.length };
      writeFileSync(dump, [lines[0], ...records, JSON.stringify(trailer)].join('\n') + '\n');
      const target = `sqlite://${dir}/copy-${records.length}-${key.length}.db`;
      const r = ferry(['load', target, dump]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, why);
      assert.equal(existsSync(target.slice('sqlite://'.length)), false, 'nothing created');
    }
  });
});
