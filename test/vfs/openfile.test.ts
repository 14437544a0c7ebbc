/**
 * An open file keeps its attributes and slice lists: reading an unchanged open file costs engine calls per
 * chunk, not per read (it cost two per read: the attributes and the chunk's slice list). This client's own
 * changes show at once through every handle; another client's at the next open (close-to-open).
 */

import type { Meta } from '../../src/meta/meta.js';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { formatVolume, openMetaEngine, openVolume, type Volume } from '../../src/index.js';
import { FaultEngine } from '../../src/meta/faults.js';
import { forEachEngine, postgresEngine, redisEngine, type SharedEngine } from '../helpers/engines.js';

const MiB = 1 << 20;
/** 256 MiB: four 64 MiB chunks. */
const FILE_BYTES = 256 * MiB;
const READ_BYTES = MiB;

function openFileSuite(engine: Pick<SharedEngine, 'fresh'> & { name: string }): void {
  describe(`open files on ${engine.name}`, () => {
    let dir: string;
    let url: string;
    let cleanup: () => Promise<void>;
    let counted: FaultEngine | undefined;
    let vol: Volume;
    let other: Volume;

    before(async () => {
      ({ url, cleanup } = await engine.fresh());
      dir = await mkdtemp(join(tmpdir(), 'ferry-openfile-'));
      await mkdir(join(dir, 'bucket'));
      const e = await openMetaEngine(url, { create: true });
      try {
        await formatVolume(e, { name: 'openfile', storage: `file://${dir}/bucket`, blockBytes: 4 * MiB, compression: 'none', trashDays: 0 });
      } finally {
        await e.close();
      }
      // The FaultEngine injects nothing here: it counts the transactions the client sends.
      vol = await openVolume(url, { heartbeatMs: 0, memCacheBytes: 0, wrapEngine: (e) => (counted = new FaultEngine(e, { seed: 1 })) });
      other = await openVolume(url, { heartbeatMs: 0, lookupCacheMs: 0 });
    });

    after(async () => {
      await vol?.close();
      await other?.close();
      await cleanup?.();
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    });

    it(`reading a ${FILE_BYTES / MiB} MiB file in ${READ_BYTES / MiB} MiB reads costs engine calls per chunk, not per read`, async () => {
      const w = await vol.open('/big', 'w');
      const block = Buffer.alloc(8 * MiB);
      for (let i = 0; i < block.length; i += 4096) block.writeUInt32LE(i, i);
      for (let off = 0; off < FILE_BYTES; off += block.length) await w.write(block, 0, block.length, off);
      await w.close();
      // Background work of the writes (the usage merge, compaction) is not the reads'.
      await (vol.vfs.meta as Meta).flushUsage();
      await vol.vfs.drain();

      const before = counted!.stats().txns;
      const r = await vol.open('/big', 'r');
      const buf = Buffer.alloc(READ_BYTES);
      let reads = 0;
      for (let off = 0; off < FILE_BYTES; off += READ_BYTES) {
        const { bytesRead } = await r.read(buf, 0, READ_BYTES, off);
        assert.equal(bytesRead, READ_BYTES);
        assert.equal(buf.readUInt32LE(4096), (off % block.length) + 4096);
        reads++;
      }
      await r.close();
      const calls = counted!.stats().txns - before;
      const chunks = FILE_BYTES / (64 * MiB);
      console.log(`${engine.name}: ${reads} reads of ${READ_BYTES} bytes, ${chunks} chunks: ${calls} engine calls (open, close included)`);
      // Open and close (a lookup and the attributes), then one slice list per chunk.
      assert.ok(calls <= chunks + 4, `${calls} engine calls for ${reads} reads of ${chunks} chunks`);
    });

    it("this client's changes show at once through every handle; another client's at the next open", async () => {
      await vol.writeFile('/f', 'one');
      const r1 = await vol.open('/f', 'r');
      assert.equal(await r1.readFile('utf8'), 'one');
      // Own change through another handle: seen at once by r1.
      await vol.writeFile('/f', 'two!', { flag: 'r+' });
      assert.equal(await r1.readFile('utf8'), 'two!');
      await vol.truncate('/f', 2);
      assert.equal(await r1.readFile('utf8'), 'tw');
      // Another client's change: r1 keeps its view until the file is opened again.
      await other.writeFile('/f', 'three');
      assert.equal(await r1.readFile('utf8'), 'tw', 'close-to-open: an open file keeps its view');
      const r2 = await vol.open('/f', 'r');
      assert.equal(await r2.readFile('utf8'), 'three', 'a new open sees the change');
      assert.equal(await r1.readFile('utf8'), 'three', 'and so does every handle of this client on the file');
      await r1.close();
      await r2.close();
    });
  });
}

const sqlite = {
  name: 'sqlite',
  async fresh(): Promise<{ url: string; cleanup(): Promise<void> }> {
    const d = await mkdtemp(join(tmpdir(), 'ferry-openfile-meta-'));
    return { url: `sqlite://${d}/meta.db`, cleanup: () => rm(d, { recursive: true, force: true }) };
  },
};
openFileSuite(sqlite);
await forEachEngine([redisEngine(13), postgresEngine()], openFileSuite);
