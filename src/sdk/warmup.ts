/**
 * Warm-up (DESIGN §8): the blocks of some files and trees, fetched ahead of the readers that will want them.
 *
 *   resolve   PATH... -> files (trees walked) -> each file's visible slice pieces -> the blocks they touch
 *             (deduplicated: a block shared by two files is warmed once)
 *   warm      with a cache group: each block's owner is asked to hold it (POST; it fetches it along its read
 *             order if it does not, group/server.ts); without one: the block is read through this client's reader,
 *             which fills its local disk cache
 *   check     how many bytes of each path are held (the owners' HEAD, or the local disk cache's index)
 *   evict     each block dropped by its owner (DELETE), or from the local disk cache
 *
 * Bounded parallelism; stops at the signal. Resumable by construction: a block already held is answered
 * 'held' without a fetch, so a run after an interrupted one fetches only the rest.
 */

import { blockKey } from '../chunk/keys.js';
import type { CacheTier } from '../cache/tier-cache.js';
import { DISK_TIER, type BlockReader } from '../cache/reader.js';
import type { DiskBlockCache } from '../cache/disk.js';
import { UsageError } from '../errors.js';
import { visibleSegments } from '../meta/slices.js';
import type { Volume } from './volume.js';

export const WARMUP_PARALLEL_DEFAULT = 8;

export interface WarmupBlock {
  key: string;
  slice: number;
  plainBytes: number;
  home: string | undefined;
}

export interface WarmupFile {
  path: string;
  /** The path the user named (a file, or the tree it is in). */
  root: string;
  blocks: WarmupBlock[];
  bytes: number;
}

export interface WarmupPlan {
  files: WarmupFile[];
  /** Unique blocks, in file order. */
  blocks: WarmupBlock[];
  bytes: number;
}

export interface WarmupOptions {
  parallel?: number;
  signal?: AbortSignal;
  /** After each block: its bytes, and the files that it completed. */
  onProgress?: (bytes: number, files: number) => void;
}

export interface WarmupResult {
  blocks: number;
  bytes: number;
  /** Blocks fetched now, and blocks that were held already. */
  fetched: number;
  held: number;
  /** Blocks no copy was found of, or whose owner could not answer (the first few reasons). */
  failed: number;
  errors: string[];
  /** check: bytes held per named path. */
  heldBytes: Map<string, { held: number; total: number }>;
}

/** The files under `paths` and the blocks they read. */
export async function planWarmup(vol: Volume, paths: readonly string[]): Promise<WarmupPlan> {
  const files: WarmupFile[] = [];
  const seen = new Set<string>();
  const blocks: WarmupBlock[] = [];
  const blockBytes = vol.info.blockBytes;
  const meta = vol.vfs.meta;
  const walk = async (path: string, root: string): Promise<void> => {
    const st = await vol.lstat(path);
    if (st.isDirectory()) {
      for (const name of (await vol.readdir(path)).sort()) await walk(path === '/' ? `/${name}` : `${path}/${name}`, root);
      return;
    }
    if (!st.isFile()) return;
    const file: WarmupFile = { path, root, blocks: [], bytes: 0 };
    for (const [, refs] of await meta.readChunks(st.ino)) {
      for (const s of visibleSegments(refs)) {
        if (s.id === 0 || s.len <= 0) continue;
        const first = Math.floor(s.off / blockBytes);
        const last = Math.floor((s.off + s.len - 1) / blockBytes);
        for (let i = first; i <= last; i++) {
          const plainBytes = Math.min(blockBytes, s.size - i * blockBytes);
          const b: WarmupBlock = { key: blockKey(s.id, i, plainBytes), slice: s.id, plainBytes, home: s.home };
          file.blocks.push(b);
          file.bytes += plainBytes;
          if (!seen.has(b.key)) {
            seen.add(b.key);
            blocks.push(b);
          }
        }
      }
    }
    files.push(file);
  };
  for (const p of paths) await walk(p, p);
  return { files, blocks, bytes: blocks.reduce((n, b) => n + b.plainBytes, 0) };
}

/** The local disk cache of a volume opened with `cacheDir`, for warm-up without a group. */
function localDisk(vol: Volume): DiskBlockCache {
  const t = (vol.vfs.chunks.reads as BlockReader).tier(DISK_TIER) as CacheTier | undefined;
  if (t === undefined) throw new UsageError('warm-up without --group fills a local disk cache: give --cache-dir');
  return t.cache as DiskBlockCache;
}

/** Runs `what` over the plan's blocks; see the header. */
export async function runWarmup(vol: Volume, plan: WarmupPlan, what: 'warm' | 'check' | 'evict', options: WarmupOptions = {}): Promise<WarmupResult> {
  const group = vol.cacheGroup;
  const disk = group === undefined ? localDisk(vol) : undefined;
  const reads = vol.vfs.chunks.reads;
  const result: WarmupResult = { blocks: 0, bytes: 0, fetched: 0, held: 0, failed: 0, errors: [], heldBytes: new Map() };
  const held = new Set<string>();
  // Blocks left per file, for the files counter of the progress.
  const left = new Map<WarmupFile, number>();
  const filesOf = new Map<string, WarmupFile[]>();
  for (const f of plan.files) {
    const unique = new Set(f.blocks.map((b) => b.key));
    left.set(f, unique.size);
    for (const k of unique) filesOf.set(k, [...(filesOf.get(k) ?? []), f]);
    if (unique.size === 0) options.onProgress?.(0, 1);
  }
  const one = async (b: WarmupBlock): Promise<void> => {
    let got: 'held' | 'fetched' | 'missing' | 'evicted' | undefined;
    try {
      if (group !== undefined) {
        got = await group.tier.ask(b.key, what, options.signal);
        if (got === undefined) throw new UsageError(`cache group '${group.group}' has no live member to own ${b.key}`);
      } else if (what === 'check') {
        got = (await disk!.has(b.key)) ? 'held' : 'missing';
      } else if (what === 'evict') {
        await disk!.delete(b.key);
        got = 'evicted';
      } else {
        const had = await disk!.has(b.key);
        await reads.readBlock(b.key, b.plainBytes, b.slice, b.home, options.signal);
        got = had ? 'held' : 'fetched';
      }
    } catch (err) {
      if (options.signal?.aborted === true) throw err;
      result.failed++;
      if (result.errors.length < 5) result.errors.push(`${b.key}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (got === 'fetched') result.fetched++;
    else if (got === 'held') {
      result.held++;
      held.add(b.key);
    } else if (got === 'missing' && what === 'warm') {
      result.failed++;
      if (result.errors.length < 5) result.errors.push(`${b.key}: no good copy anywhere`);
    }
    result.blocks++;
    result.bytes += b.plainBytes;
    let done = 0;
    for (const f of filesOf.get(b.key) ?? []) {
      const n = left.get(f)! - 1;
      left.set(f, n);
      if (n === 0) done++;
    }
    options.onProgress?.(b.plainBytes, done);
  };
  const queue = plan.blocks[Symbol.iterator]();
  const worker = async (): Promise<void> => {
    for (let next = queue.next(); next.done !== true; next = queue.next()) {
      options.signal?.throwIfAborted();
      await one(next.value);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.parallel ?? WARMUP_PARALLEL_DEFAULT) }, () => worker()));
  if (what === 'check') {
    for (const f of plan.files) {
      const r = result.heldBytes.get(f.root) ?? { held: 0, total: 0 };
      for (const b of f.blocks) {
        r.total += b.plainBytes;
        if (held.has(b.key)) r.held += b.plainBytes;
      }
      result.heldBytes.set(f.root, r);
    }
  }
  return result;
}
