/**
 * A fresh volume for a test: SQLite metadata and a file:// bucket in a temporary directory, opened through
 * the SDK as root. `cleanup` closes the volume and removes the directory (idempotent).
 */

import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileStore } from '../../src/object/file.js';
import { RetryStore } from '../../src/object/retry.js';
import type { ObjectStore } from '../../src/object/store.js';
import { formatVolume, openMetaEngine, openVolume, type OpenVolumeOptions, type Volume } from '../../src/index.js';

export interface MakeVolumeOptions extends OpenVolumeOptions {
  /** Block size of the volume (default 64 KiB, so tests cross block edges cheaply). */
  blockBytes?: number;
  trashDays?: number;
  /** Wraps the volume's bucket (tests: a FaultStore between the client and its bucket). */
  wrapStore?: (store: ObjectStore) => ObjectStore;
}

export interface TestVolume {
  vol: Volume;
  /** The temporary directory holding meta.db and bucket/. */
  dir: string;
  metaUrl: string;
  cleanup(): Promise<void>;
}

export async function makeVolume(opts: MakeVolumeOptions = {}): Promise<TestVolume> {
  const { blockBytes = 64 << 10, trashDays = 0, wrapStore, ...open } = opts;
  const dir = await mkdtemp(join(tmpdir(), 'ferry-vol-'));
  const bucket = join(dir, 'bucket');
  await mkdir(bucket);
  const metaUrl = 'sqlite://' + join(dir, 'meta.db');
  const eng = await openMetaEngine(metaUrl, { create: true });
  try {
    await formatVolume(eng, { name: 'test', storage: 'file://' + bucket, blockBytes, compression: 'none', trashDays });
  } finally {
    await eng.close();
  }
  if (wrapStore !== undefined) open.store = wrapStore(new RetryStore(new FileStore(bucket)));
  const vol = await openVolume(metaUrl, { uid: 0, gid: 0, gids: [], heartbeatMs: 0, ...open });
  let done = false;
  return {
    vol,
    dir,
    metaUrl,
    async cleanup() {
      if (done) return;
      done = true;
      try {
        await vol.close();
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}
