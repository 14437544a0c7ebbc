/**
 * The composition root for clients: URL -> engine -> Meta; format -> bucket -> ChunkStore with caches ->
 * Vfs -> Volume. `openVolume` is what `import { openVolume } from 'ferryfs'` gives.
 */

import os from 'node:os';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { openMetaEngine } from '../meta/registry.js';
import { Meta } from '../meta/meta.js';
import type { Ctx } from '../meta/types.js';
import { openObjectStore } from '../object/registry.js';
import { RetryStore } from '../object/retry.js';
import type { ObjectStore } from '../object/store.js';
import { ChunkStore } from '../chunk/store.js';
import { loadCompression } from '../chunk/codec.js';
import { MemoryBlockCache } from '../cache/memory.js';
import { Vfs, type VfsOptions } from '../vfs/vfs.js';
import { Volume } from './volume.js';

export interface OpenVolumeOptions extends VfsOptions {
  /** Region this client runs in (default: the primary). */
  region?: string;
  /** Identity for permission checks; default this process's uid/gid. */
  uid?: number;
  gid?: number;
  gids?: number[];
  /** Applied to modes of new files and directories; default 0o022. */
  umask?: number;
  /** Memory block cache, bytes (default 128 MiB; 0 disables). */
  memCacheBytes?: number;
  /** Local disk block cache directory (default: none). */
  cacheDir?: string;
  cacheBytes?: number;
  /** Use this store instead of the one in the format record (tests, fault injection). */
  store?: ObjectStore;
  /** Session heartbeat period, ms. */
  heartbeatMs?: number;
}

/** Opens the bucket named in a format record, wrapped in retries; fails clearly if it is unreachable. */
export async function openBucket(url: string): Promise<ObjectStore> {
  const inner = await openObjectStore(url);
  try {
    await inner.list('', { limit: 1 });
  } catch (err) {
    await inner.close();
    throw new UsageError(`cannot reach the bucket ${url}: ${err instanceof Error ? err.message : String(err)}`);
  }
  return new RetryStore(inner);
}

export async function openVolume(metaUrl: string, options: OpenVolumeOptions = {}): Promise<Volume> {
  const engine = await openMetaEngine(metaUrl);
  let meta: Meta | undefined;
  let store: ObjectStore | undefined;
  try {
    meta = await Meta.open(engine, { ...(options.region === undefined ? {} : { region: options.region }), ...(options.heartbeatMs === undefined ? {} : { heartbeatMs: options.heartbeatMs }) });
    const format = meta.format;
    loadCompression(format.compression);
    store = options.store ?? (await openBucket(format.storage));
    const memBytes = options.memCacheBytes ?? 128 << 20;
    let diskCache;
    if (options.cacheDir !== undefined) {
      const { DiskBlockCache } = await import('../cache/disk.js');
      diskCache = new DiskBlockCache({ dir: path.join(options.cacheDir, format.uuid), capacityBytes: options.cacheBytes ?? 10 * 2 ** 30 });
    }
    const chunks = new ChunkStore({
      store,
      blockBytes: format.blockBytes,
      compression: format.compression,
      memCache: memBytes > 0 ? new MemoryBlockCache({ capacityBytes: memBytes, shareBuffers: true }) : undefined,
      diskCache,
    });
    const vfs = new Vfs(meta, chunks, options);
    const info = os.userInfo();
    const ctx: Ctx = { uid: options.uid ?? info.uid, gid: options.gid ?? info.gid, gids: options.gids ?? [] };
    const m = meta;
    return new Volume(vfs, ctx, options.umask ?? 0o022, async () => {
      try {
        await vfs.close();
      } finally {
        await m.close();
        await chunks.close();
        await engine.close();
      }
    });
  } catch (err) {
    await meta?.close().catch(() => undefined);
    await store?.close().catch(() => undefined);
    await engine.close();
    throw err;
  }
}
