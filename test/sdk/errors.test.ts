/**
 * What the SDK throws when the bucket fails: an FsError with code EIO (as a disk's I/O error, and as the
 * mount answers), keeping the store's own words in the message and the original error as the cause. Never
 * the store's error class, and never wrong bytes.
 */

import assert from 'node:assert/strict';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { FsError, openVolume } from '../../src/index.js';
import { FaultStore } from '../../src/object/faults.js';
import { FileStore } from '../../src/object/file.js';
import { RetryStore } from '../../src/object/retry.js';
import { makeVolume } from '../helpers/volume.js';

const data = Buffer.alloc(100_000, 7);

function isEio(pattern: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof FsError, `an FsError, got ${String(err)}`);
    assert.equal(err.code, 'EIO');
    assert.match(err.message, pattern);
    assert.ok(err.cause !== undefined, 'the store error is kept as the cause');
    return true;
  };
}

void describe('SDK errors from the bucket', () => {
  void it('a bucket that fails every call is EIO on read, naming the failure', async () => {
    const t = await makeVolume();
    try {
      await t.vol.writeFile('/f', data);
      const faults = new FaultStore(new FileStore(join(t.dir, 'bucket')), { seed: 1 });
      faults.setDown(true);
      const vol = await openVolume(t.metaUrl, {
        uid: 0,
        gid: 0,
        heartbeatMs: 0,
        store: new RetryStore(faults, { backoffMsMin: 1, backoffMsMax: 2, attemptsMax: 2 }),
      });
      try {
        await assert.rejects(vol.readFile('/f'), isEio(/EIO: i\/o error \(.+\), (read|open) '\/f'/));
        faults.setDown(false);
        assert.ok((await vol.readFile('/f')).equals(data), 'reads again once the bucket is back');
      } finally {
        await vol.close();
      }
    } finally {
      await t.cleanup();
    }
  });

  void it('a damaged or missing block is EIO naming what the bucket holds, never wrong bytes', async () => {
    const t = await makeVolume();
    try {
      await t.vol.writeFile('/f', data);
      const blocks: string[] = [];
      for (const e of await readdir(join(t.dir, 'bucket'), { recursive: true, withFileTypes: true })) {
        if (e.isFile() && !e.parentPath.includes('.tmp')) blocks.push(join(e.parentPath, e.name));
      }
      assert.equal(blocks.length, 2, 'two 64 KiB blocks');
      const fresh = async (): Promise<Buffer> => {
        const vol = await openVolume(t.metaUrl, { uid: 0, gid: 0, heartbeatMs: 0, memCacheBytes: 0 });
        try {
          return await vol.readFile('/f');
        } finally {
          await vol.close();
        }
      };
      await writeFile(blocks[0]!, 'garbage');
      await assert.rejects(fresh(), isEio(/\(no good copy of chunks\/\S+: bucket: corrupt \(object of 7 bytes is shorter than a header\)\), read '\/f'/));
      await rm(blocks[0]!);
      // A missing block is called missing, not corrupt.
      await assert.rejects(fresh(), isEio(/^EIO: i\/o error \(no good copy of chunks\/\S+: bucket: missing\), read '\/f'$/));
    } finally {
      await t.cleanup();
    }
  });
});

void describe('SDK errors from the metadata engine', () => {
  void it('an engine that fails is EIO with the engine error as the cause, on every kind of call', async () => {
    const { FaultEngine, EngineUnavailableError } = await import('../../src/meta/faults.js');
    let engine: InstanceType<typeof FaultEngine> | undefined;
    // Few quick retries: the engine stays down for every call below.
    const t = await makeVolume({ wrapEngine: (e) => (engine = new FaultEngine(e, { seed: 3 })), lookupCacheMs: 0, engineRetry: { attemptsMax: 2, retryMsMax: 50 } });
    try {
      await t.vol.writeFile('/f', data);
      engine!.setDown(true);
      const calls: Array<[string, () => Promise<unknown>]> = [
        ['stat', () => t.vol.stat('/f')],
        ['readFile', () => t.vol.readFile('/f')],
        ['writeFile', () => t.vol.writeFile('/g', 'x')],
        ['readdir', () => t.vol.readdir('/')],
        ['mkdir', () => t.vol.mkdir('/d')],
        ['rename', () => t.vol.rename('/f', '/h')],
      ];
      for (const [name, call] of calls) {
        await assert.rejects(call(), (err: unknown) => {
          assert.ok(err instanceof FsError, `${name}: an FsError, got ${String(err)}`);
          assert.equal(err.code, 'EIO', name);
          let c: unknown = err;
          while (c instanceof Error && !(c instanceof EngineUnavailableError)) c = c.cause;
          assert.ok(c instanceof EngineUnavailableError, `${name}: the engine's error is in the cause chain`);
          return true;
        });
      }
      engine!.setDown(false);
      assert.deepEqual(await t.vol.readFile('/f'), data, 'back up: nothing was lost');
    } finally {
      await t.cleanup();
    }
  });
});
