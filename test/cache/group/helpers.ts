/**
 * A volume for cache-group tests: SQLite metadata and a file bucket in a temporary directory, one file of
 * seeded pseudo-random bytes written, and the bucket behind a CountingStore that every client and node of the
 * test shares (so "bytes read from the bucket" is counted by the store, whoever read them).
 */

import { createCipheriv, createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatVolume, openMetaEngine, openVolume, type OpenVolumeOptions, type Volume } from '../../../src/index.js';
import { CountingStore } from '../../../src/object/counting.js';
import { FileStore } from '../../../src/object/file.js';
import { RetryStore } from '../../../src/object/retry.js';

export const MiB = 1 << 20;

/** `n` seeded bytes (AES-CTR keystream: fast, and the same for the same seed). */
export function seededBytes(seed: number, n: number): Buffer {
  const key = createHash('sha256').update(`ferry test ${seed}`).digest().subarray(0, 16);
  const c = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(n)), c.final()]);
}

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

export interface GroupVolume {
  dir: string;
  metaUrl: string;
  bucketDir: string;
  bucket: CountingStore;
  size: number;
  digest: string;
  /** A client of the volume over the counted bucket (closed by cleanup). */
  open(options?: OpenVolumeOptions): Promise<Volume>;
  cleanup(): Promise<void>;
}

export async function makeGroupVolume(opts: { size: number; seed: number; blockBytes?: number; path?: string }): Promise<GroupVolume> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-group-'));
  const bucketDir = join(dir, 'bucket');
  await mkdir(bucketDir);
  const metaUrl = 'sqlite://' + join(dir, 'meta.db');
  const eng = await openMetaEngine(metaUrl, { create: true });
  try {
    await formatVolume(eng, { name: 'grp', storage: 'file://' + bucketDir, blockBytes: opts.blockBytes ?? 4 * MiB, compression: 'none', trashDays: 0 });
  } finally {
    await eng.close();
  }
  const bucket = new CountingStore(new RetryStore(new FileStore(bucketDir)));
  const opened: Volume[] = [];
  const open = async (options: OpenVolumeOptions = {}): Promise<Volume> => {
    // The shared store must outlive each client: closing a client closes its store, so each gets a view.
    const v = await openVolume(metaUrl, { uid: 0, gid: 0, gids: [], heartbeatMs: 0, store: unclosable(bucket), ...options });
    opened.push(v);
    return v;
  };
  const data = seededBytes(opts.seed, opts.size);
  const w = await open({ memCacheBytes: 0 });
  await w.writeFile(opts.path ?? '/data', data);
  await w.close();
  bucket.traffic.gets = 0;
  bucket.traffic.getBytes = 0;
  return {
    dir,
    metaUrl,
    bucketDir,
    bucket,
    size: opts.size,
    digest: sha256(data),
    open,
    async cleanup() {
      for (const v of opened) await v.close().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The store, with close() a no-op (several clients share it). */
function unclosable(store: CountingStore): CountingStore {
  const view = Object.create(store) as CountingStore;
  view.close = () => Promise.resolve();
  return view;
}

/** Reads a whole file through the SDK's stream and hashes it. */
export async function digestOf(vol: Volume, path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of vol.createReadStream(path, { highWaterMark: 4 * MiB })) h.update(chunk as Buffer);
  return h.digest('hex');
}
