/**
 * One client sees its own writes at once, whatever runs beside them: a stat or read right after a write
 * reports it, even while a flush (a read's, a close's) is committing that client's buffers. Both races below
 * returned a size without a write already acknowledged, which the FUSE mount handed to the kernel (a file
 * that reads shorter than what was just written to it).
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FaultStore } from '../../src/object/faults.js';
import { FaultEngine } from '../../src/meta/faults.js';
import { makeVolume } from '../helpers/volume.js';

const KiB = 1024;

void describe('a client sees its own writes', () => {
  void it('a write that lands while a flush waits for its commit keeps its length', async () => {
    // Slow uploads: the flush below waits for one while the second write arrives.
    const t = await makeVolume({ wrapStore: (s) => new FaultStore(s, { seed: 1, latencyMs: [40, 40] }) });
    const vol = t.vol;
    try {
      const fh = await vol.open('/f', 'w+');
      const a = Buffer.alloc(100 * KiB, 1);
      const b = Buffer.alloc(64 * KiB, 2);
      await fh.write(a, 0, a.length, 0);
      const flushing = vol.vfs.flushIno(fh.ino); // as a read or another descriptor's close would
      await fh.write(b, 0, b.length, a.length); // acknowledged while the flush still waits for its upload
      assert.equal((await fh.stat()).size, a.length + b.length, 'stat during the flush');
      await flushing;
      assert.equal((await fh.stat()).size, a.length + b.length, 'stat after the flush');
      assert.equal((await vol.stat('/f')).size, a.length + b.length, 'path stat after the flush');
      const back = await fh.read(Buffer.alloc(b.length), 0, b.length, a.length);
      assert.equal(back.bytesRead, b.length);
      assert.deepEqual(back.buffer, b);
      await fh.close();
      assert.equal((await vol.stat('/f')).size, a.length + b.length, 'after close');
    } finally {
      await t.cleanup();
    }
  });

  void it('a flush that runs while a write waits for its slice id does not drop the write', async () => {
    // The FUSE addon hands JS a WRITE and then a READ of the same file in one turn: the READ's flush found
    // the writer the WRITE had just created, still empty, and dropped it; the WRITE then buffered into the
    // dropped writer: acknowledged, never committed.
    const t = await makeVolume();
    try {
      const fh = await t.vol.open('/f', 'w+');
      const data = Buffer.alloc(50_000, 7);
      const writing = t.vol.vfs.write(fh.vfsHandle, data, 0);
      const flushing = t.vol.vfs.flushIno(fh.ino);
      await Promise.all([writing, flushing]);
      assert.equal((await fh.stat()).size, data.length, 'stat after the write');
      const back = await fh.read(Buffer.alloc(data.length), 0, data.length, 0);
      assert.equal(back.bytesRead, data.length);
      await fh.close();
      assert.deepEqual(await t.vol.readFile('/f'), data, 'committed at close');
    } finally {
      await t.cleanup();
    }
  });

  void it('a stat whose engine read overlaps a flush still reports the write', async () => {
    let engine: FaultEngine | undefined;
    const t = await makeVolume({
      wrapEngine: (e) => (engine = new FaultEngine(e, { seed: 2 })),
      lookupCacheMs: 0,
    });
    try {
      const fh = await t.vol.open('/f', 'w+');
      const a = Buffer.alloc(200 * KiB, 1);
      await fh.write(a, 0, a.length, 0);
      await fh.sync();
      const b = Buffer.alloc(64 * KiB, 2);
      await fh.write(b, 0, b.length, a.length); // buffered: the engine still says 200 KiB
      // The stat reads the engine now (200 KiB) and gets the answer 50 ms later; meanwhile a flush commits the
      // write and drops it from the writer. Reads only: the flush's commit is not slowed.
      engine!.setLatency(undefined, [50, 50]);
      const stat = fh.stat();
      engine!.setLatency(undefined, undefined);
      await t.vol.vfs.flushIno(fh.ino);
      assert.equal((await stat).size, a.length + b.length);
      await fh.close();
    } finally {
      await t.cleanup();
    }
  });
});
