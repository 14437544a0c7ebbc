/**
 * The `ferry` command line on the shared metadata engines: Redis (database 12, a key prefix of its own) and
 * PostgreSQL (a schema of its own, created and dropped here). The same commands as on SQLite: format (and
 * its refusal to format a volume again without --force), cp in and out, ls, cat, status listing every
 * client's session, fsck, gc, and dump → load into SQLite giving the same tree.
 *
 * Each engine skips without its server, and fails under CI=true.
 */

import type { Meta } from '../../src/meta/meta.js';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openVolume } from '../../src/sdk/open.js';
import type { Volume } from '../../src/sdk/volume.js';
import { postgresEngine, redisEngine, forEachEngine, type SharedEngine } from '../helpers/engines.js';
import { ensureBuilt, fails, ok } from './helpers.js';

/** Every file under a volume directory: path -> "size sha256" (directories as "dir"), for tree comparisons. */
async function tree(vol: Volume, dir = '/'): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await vol.readdir(dir, { withFileTypes: true })) {
    const p = path.posix.join(dir, e.name);
    if (e.isDirectory()) {
      out[p] = 'dir';
      Object.assign(out, await tree(vol, p));
    } else {
      const data = (await vol.readFile(p)) as Buffer;
      out[p] = `${data.length} ${createHash('sha256').update(data).digest('hex')}`;
    }
  }
  return out;
}

function cliSuite(engine: SharedEngine): void {
  describe(`ferry on ${engine.name}`, () => {
    let meta: string;
    let cleanup: () => Promise<void>;
    let dir: string;

    before(async () => {
      ensureBuilt();
      ({ url: meta, cleanup } = await engine.fresh());
      dir = mkdtempSync(path.join(tmpdir(), `ferry-cli-${engine.name}-`));
    });
    after(async () => {
      await cleanup?.();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    });

    it('refuses commands on an engine that holds no volume, saying to format', () => {
      fails(['info', meta], /no volume .*ferry format/);
      fails(['ls', meta, '/'], /no volume .*ferry format/);
    });

    it('formats a volume, and refuses to format it again without --force', () => {
      const first = ok(['format', meta, 'vol-one', '--storage', `file://${dir}/bucket`, '--block-size', '64K', '--trash-days', '0']);
      assert.match(first, /formatted volume 'vol-one'/);
      const uuid = (JSON.parse(ok(['info', meta, '--json'])) as { uuid: string }).uuid;
      fails(['format', meta, 'vol-two', '--storage', `file://${dir}/other`], /already holds volume 'vol-one'.*--force/);
      assert.equal((JSON.parse(ok(['info', meta, '--json'])) as { uuid: string; name: string }).uuid, uuid, 'the refused format changed nothing');
      // --force erases the volume's metadata and starts over (a fresh bucket, so no leftover blocks).
      ok(['cp', meta, `${writeLocal('old.txt', 'old')}`, ':/old.txt']);
      ok(['format', meta, 'vol-two', '--storage', `file://${dir}/bucket2`, '--block-size', '64K', '--trash-days', '0', '--force']);
      const info = JSON.parse(ok(['info', meta, '--json'])) as { uuid: string; name: string };
      assert.equal(info.name, 'vol-two');
      assert.notEqual(info.uuid, uuid);
      assert.equal(ok(['ls', meta, '/']), '', 'the re-formatted volume is empty');
    });

    function writeLocal(rel: string, data: string | Buffer): string {
      const p = path.join(dir, 'local', rel);
      mkdirSync(path.dirname(p), { recursive: true });
      writeFileSync(p, data);
      return p;
    }

    it('cp in and out, ls and cat', () => {
      const big = randomBytes(300_000);
      writeLocal('src/a.txt', 'alpha\n');
      writeLocal('src/sub/big.bin', big);
      writeLocal('src/sub/deeper/empty', '');
      ok(['cp', meta, '-r', path.join(dir, 'local', 'src'), ':/data']);
      assert.deepEqual(ok(['ls', meta, '/data']).trim().split(/\s+/).sort(), ['a.txt', 'sub']);
      assert.match(ok(['ls', meta, '/data/sub', '-l']), /^-rw\S* +1 .* 300000 .*big\.bin$/m);
      assert.equal(ok(['cat', meta, '/data/a.txt']), 'alpha\n');
      const outDir = path.join(dir, 'out');
      ok(['cp', meta, '-r', ':/data', outDir]);
      assert.deepEqual(readFileSync(path.join(outDir, 'sub', 'big.bin')), big);
      assert.equal(readFileSync(path.join(outDir, 'a.txt'), 'utf8'), 'alpha\n');
      assert.equal(readFileSync(path.join(outDir, 'sub', 'deeper', 'empty')).length, 0);
      // Inside the volume: the copy shares the source's blocks.
      ok(['cp', meta, ':/data/sub/big.bin', ':/copy.bin']);
      ok(['cp', meta, ':/copy.bin', path.join(dir, 'copy.bin')]);
      assert.deepEqual(readFileSync(path.join(dir, 'copy.bin')), big);
    });

    it('status lists the session of every live client', async () => {
      const a = await openVolume(meta, { heartbeatMs: 0 });
      const b = await openVolume(meta, { heartbeatMs: 0 });
      try {
        const status = JSON.parse(ok(['status', meta, '--json'])) as { sessions: Array<{ sid: number; pid: number; stale: boolean }>; volume: { name: string } };
        assert.equal(status.volume.name, 'vol-two');
        const sids = status.sessions.map((s) => s.sid).sort((x, y) => x - y);
        assert.deepEqual(sids, [(a.vfs.meta as Meta).sid, (b.vfs.meta as Meta).sid].sort((x, y) => x - y));
        for (const s of status.sessions) {
          assert.equal(s.pid, process.pid);
          assert.equal(s.stale, false);
        }
        assert.match(ok(['status', meta]), new RegExp(`sessions: +2\\n(  sid \\d+ .* pid ${process.pid} .*\\n){2}`));
      } finally {
        await a.close();
        await b.close();
      }
      assert.deepEqual((JSON.parse(ok(['status', meta, '--json'])) as { sessions: unknown[] }).sessions, [], 'closed clients end their sessions');
    });

    it('fsck finds the volume clean; gc runs', () => {
      assert.match(ok(['fsck', meta]), /volume is clean/);
      assert.match(ok(['gc', meta]), /^gc: /);
    });

    it('dump, then load into SQLite: the same tree, and a clean volume', async () => {
      const file = path.join(dir, 'dump.jsonl');
      assert.match(ok(['dump', meta, file]), /dumped \d+ records of volume 'vol-two'/);
      const restored = `sqlite://${dir}/restored.db`;
      assert.match(ok(['load', restored, file]), /loaded \d+ records of volume 'vol-two'/);
      fails(['load', meta, file], /is not empty \(it holds volume 'vol-two'\); use --force/);
      assert.equal(ok(['ls', restored, '/data', '-l']), ok(['ls', meta, '/data', '-l']));
      assert.match(ok(['fsck', restored]), /volume is clean/);
      const src = await openVolume(meta, { heartbeatMs: 0 });
      const dst = await openVolume(restored, { heartbeatMs: 0 });
      try {
        const want = await tree(src);
        assert.ok(Object.keys(want).length >= 5, JSON.stringify(want));
        assert.deepEqual(await tree(dst), want);
      } finally {
        await src.close();
        await dst.close();
      }
    });
  });
}

await forEachEngine([redisEngine(12), postgresEngine()], cliSuite);
