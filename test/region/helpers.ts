/**
 * A two-region volume for tests: SQLite metadata and bucket directories a/ and b/ in a temporary directory,
 * clients opened in either region (optionally over fault-injecting or counting stores), and checks of what
 * each bucket holds.
 */

import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatVolume, Meta, openMetaEngine, openVolume, type ObjectStore, type OpenVolumeOptions, type Volume } from '../../src/index.js';
import { decodeBlock } from '../../src/chunk/codec.js';
import { blockKey } from '../../src/chunk/keys.js';
import type { MetaEngine } from '../../src/meta/engine.js';
import { FileStore } from '../../src/object/file.js';
import type { CallOptions, GetOptions, ListOptions, ListPage, ObjectInfo } from '../../src/object/store.js';
import { Replicator, type ReplicatorOptions } from '../../src/region/replicate.js';

export interface RegionLab {
  dir: string;
  metaUrl: string;
  bucket(region: 'a' | 'b'): string;
  /** A fresh FileStore on a region's bucket directory. */
  store(region: 'a' | 'b'): ObjectStore;
  open(region: 'a' | 'b', options?: OpenVolumeOptions): Promise<Volume>;
  /** An engine + session-less Meta (closed by cleanup). */
  tools(): Promise<{ engine: MetaEngine; meta: Meta }>;
  replicator(options?: Partial<ReplicatorOptions>): Promise<Replicator>;
  /** Every block key of every live slice, with its plain length. */
  liveBlocks(): Promise<Array<{ key: string; len: number; home: string | undefined }>>;
  cleanup(): Promise<void>;
}

/** `storage`: a region's bucket URL instead of its directory (an unreachable endpoint, say). */
export async function makeRegionLab(opts: { blockBytes?: number; trashDays?: number; storage?: Partial<Record<'a' | 'b', string>> } = {}): Promise<RegionLab> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-regions-'));
  const bucket = (r: 'a' | 'b'): string => join(dir, `bucket-${r}`);
  await mkdir(bucket('a'));
  await mkdir(bucket('b'));
  const metaUrl = `sqlite://${join(dir, 'meta.db')}`;
  const eng = await openMetaEngine(metaUrl, { create: true });
  try {
    await formatVolume(eng, {
      name: 'regions',
      storage: '',
      regions: { a: { storage: opts.storage?.a ?? `file://${bucket('a')}` }, b: { storage: opts.storage?.b ?? `file://${bucket('b')}` } },
      primary: 'a',
      blockBytes: opts.blockBytes ?? 64 << 10,
      compression: 'none',
      trashDays: opts.trashDays ?? 0,
    });
  } finally {
    await eng.close();
  }
  const volumes: Volume[] = [];
  const closers: Array<() => Promise<void>> = [];
  let blockBytes = opts.blockBytes ?? 64 << 10;
  const lab: RegionLab = {
    dir,
    metaUrl,
    bucket,
    store: (r) => new FileStore(bucket(r)),
    async open(region, options = {}) {
      const v = await openVolume(metaUrl, { uid: 0, gid: 0, gids: [], heartbeatMs: 0, memCacheBytes: 0, region, ...options });
      volumes.push(v);
      return v;
    },
    async tools() {
      const engine = await openMetaEngine(metaUrl);
      const meta = await Meta.open(engine, { session: false, heartbeatMs: 0 });
      blockBytes = meta.format.blockBytes;
      closers.push(async () => {
        await meta.close();
        await engine.close();
      });
      return { engine, meta };
    },
    async replicator(options = {}) {
      const { meta } = await lab.tools();
      const stores = new Map<string, ObjectStore>([
        ['a', lab.store('a')],
        ['b', lab.store('b')],
      ]);
      return new Replicator({ meta, stores, ...options });
    },
    async liveBlocks() {
      const { meta } = await lab.tools();
      const out: Array<{ key: string; len: number; home: string | undefined }> = [];
      for (const [id, s] of await meta.listSlices()) {
        for (let i = 0; i * blockBytes < s.size; i++) {
          const len = Math.min(blockBytes, s.size - i * blockBytes);
          out.push({ key: blockKey(id, i, len), len, home: s.home });
        }
      }
      return out;
    },
    async cleanup() {
      for (const v of volumes) await v.close().catch(() => undefined);
      for (const c of closers) await c().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
  return lab;
}

/** Keys of live blocks that a bucket lacks or holds damaged. */
export async function badBlocks(store: ObjectStore, blocks: ReadonlyArray<{ key: string; len: number }>): Promise<string[]> {
  const bad: string[] = [];
  for (const b of blocks) {
    try {
      decodeBlock(await store.get(b.key), b.key, b.len);
    } catch {
      bad.push(b.key);
    }
  }
  return bad;
}

/** Counts the calls that reach a store, by operation. */
export class CountingStore implements ObjectStore {
  readonly description: string;
  readonly inner: ObjectStore;
  readonly calls = { get: 0, put: 0, head: 0, delete: 0, list: 0 };
  constructor(inner: ObjectStore) {
    this.inner = inner;
    this.description = `${inner.description} (counted)`;
  }
  get(key: string, options?: GetOptions): Promise<Buffer> {
    this.calls.get++;
    return this.inner.get(key, options);
  }
  put(key: string, data: Buffer, options?: CallOptions): Promise<void> {
    this.calls.put++;
    return this.inner.put(key, data, options);
  }
  head(key: string, options?: CallOptions): Promise<ObjectInfo> {
    this.calls.head++;
    return this.inner.head(key, options);
  }
  delete(key: string, options?: CallOptions): Promise<void> {
    this.calls.delete++;
    return this.inner.delete(key, options);
  }
  list(prefix: string, options?: ListOptions): Promise<ListPage> {
    this.calls.list++;
    return this.inner.list(prefix, options);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Deterministic bytes (xorshift32) so failures replay. */
export function pseudoRandom(n: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}
