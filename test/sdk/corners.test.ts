/**
 * The POSIX corners of test/fuse/posix-corners.test.ts through the SDK, where Vfs (not a kernel) applies the
 * rules: explicit times on an open file win over its close, a non-owner's write clears set-id bits, an open
 * unlinked file has no links (trash on), and usage counts data, not length.
 */

import type { Meta } from '../../src/meta/meta.js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { makeVolume } from '../helpers/volume.js';

void describe('SDK: POSIX corners', () => {
  void it('utimes on an open handle before close sets the mtime', async () => {
    const t = await makeVolume();
    try {
      const fh = await t.vol.open('/f', 'w');
      await fh.write(Buffer.alloc(100_000, 1));
      await fh.utimes(1000, 2000);
      await fh.close();
      const st = await t.vol.stat('/f');
      assert.equal(st.mtimeMs, 2_000_000);
      assert.equal(st.atimeMs, 1_000_000);
      assert.equal(st.size, 100_000);
    } finally {
      await t.cleanup();
    }
  });

  void it("a non-owner's write clears set-uid, and set-gid with group execute", async () => {
    const t = await makeVolume();
    try {
      const other = t.vol.as({ uid: 1000, gid: 1000, gids: [] });
      for (const [mode, after] of [[0o4777, 0o777], [0o2777, 0o777], [0o6777, 0o777], [0o2767, 0o2767]] as const) {
        await t.vol.writeFile('/s', 'x');
        await t.vol.chmod('/s', mode);
        const fh = await other.open('/s', 'a');
        await fh.write('more');
        await fh.close();
        assert.equal((await t.vol.stat('/s')).mode & 0o7777, after, mode.toString(8));
      }
      // Root's writes keep them (CAP_FSETID).
      await t.vol.chmod('/s', 0o4755);
      await t.vol.appendFile('/s', 'root');
      assert.equal((await t.vol.stat('/s')).mode & 0o7777, 0o4755);
    } finally {
      await t.cleanup();
    }
  });

  void it('an open file whose last name went to the trash has nlink 0', async () => {
    const t = await makeVolume({ trashDays: 1 });
    try {
      const fh = await t.vol.open('/f', 'w+');
      await fh.write('abc');
      await t.vol.link('/f', '/g');
      await t.vol.unlink('/f');
      assert.equal((await fh.stat()).nlink, 1);
      await t.vol.unlink('/g');
      assert.equal((await fh.stat()).nlink, 0);
      assert.equal((await fh.readFile('utf8')), 'abc');
      const [hour] = await t.vol.readdir('/.trash');
      const [name] = await t.vol.readdir(`/.trash/${hour!}`);
      // Restored from the trash, it has a name again.
      await t.vol.rename(`/.trash/${hour!}/${name!}`, '/back');
      assert.equal((await fh.stat()).nlink, 1);
      await fh.close();
    } finally {
      await t.cleanup();
    }
  });

  void it('usage counts data: holes are free, punched and trimmed bytes are released', async () => {
    const t = await makeVolume({ trashDays: 1 });
    try {
      const meta = t.vol.vfs.meta as Meta;
      const fh = await t.vol.open('/sparse', 'w');
      await fh.truncate(999_999_999_999_999);
      await fh.write(Buffer.alloc(8192, 1), 0, 8192, 500_000_000_000);
      await fh.close();
      assert.equal((await meta.usage()).usedBytes, 8192);
      const st = await t.vol.stat('/sparse');
      assert.equal(st.size, 999_999_999_999_999);
      assert.equal(st.blocks, 16, 'st_blocks counts the data');
      await t.vol.unlink('/sparse');
      const fs = await t.vol.statfs();
      assert.ok(fs.bavail > fs.blocks - 10, 'the trash holds a huge sparse file, df stays honest');
      assert.deepEqual(await meta.trashUsage(), { files: 1, bytes: 8192, partial: false });
      await t.vol.writeFile('/d', Buffer.alloc(10_000, 2));
      await t.vol.truncate('/d', 4000);
      assert.equal((await meta.usage()).usedBytes, 8192 + 4000);
    } finally {
      await t.cleanup();
    }
  });
});
