/**
 * The volume's format record: reading it, creating a volume (format), and changing it in one transaction
 * (regions). The record's shape is types.ts's FormatRec; region/regions.ts interprets its region fields.
 */

import { randomUUID } from 'node:crypto';
import { FsError } from '../errors.js';
import type { MetaEngine } from './engine.js';
import { counters, formatRecord, inodes } from './records.js';
import { putNewSecret } from './secret.js';
import { CHUNK_BYTES, FIRST_FREE_INO, FORMAT_VERSION, ROOT_INO, TRASH_INO, type FormatRec, type InodeRec, type RegionRec } from './types.js';

/** st_size of a directory. */
export const DIR_BYTES = 4096;

export interface FormatOptions {
  name: string;
  /** The one bucket of a one-region volume; with `regions`, ignored (the primary's bucket is used). */
  storage: string;
  /** Named regions and their buckets (a multi-region volume); `primary` defaults to the first. */
  regions?: Record<string, RegionRec>;
  primary?: string;
  blockBytes: number;
  compression: FormatRec['compression'];
  trashDays: number;
  capacityBytes?: number;
  force?: boolean;
}

/** Reads the format record; undefined on an engine that holds no volume. */
export async function loadFormat(engine: MetaEngine): Promise<FormatRec | undefined> {
  return engine.txn((tx) => formatRecord.get(tx), { readonly: true });
}

/**
 * Replaces the format record by what `change` makes of the current one (undefined: no volume), in one
 * transaction; `change` may throw to change nothing. Returns the record written.
 */
export async function updateFormat(engine: MetaEngine, change: (current: FormatRec | undefined) => FormatRec): Promise<FormatRec> {
  return engine.txn(async (tx) => {
    const next = change(await formatRecord.get(tx));
    formatRecord.put(tx, next);
    return next;
  });
}

/** A new directory inode. */
export function dirInode(parent: number, mode: number, now: number): InodeRec {
  return { type: 'dir', mode, uid: 0, gid: 0, atime: now, mtime: now, ctime: now, nlink: 2, length: DIR_BYTES, rdev: 0, parent };
}

export async function formatVolume(engine: MetaEngine, opts: FormatOptions, now = Date.now()): Promise<FormatRec> {
  const existing = await loadFormat(engine);
  if (existing !== undefined) {
    if (!opts.force) throw new FsError('EEXIST', `volume "${existing.name}" already exists here (use --force to overwrite it)`);
    await engine.reset();
  }
  let regions: Pick<FormatRec, 'storage' | 'regions' | 'primary'> = { storage: opts.storage };
  if (opts.regions !== undefined) {
    const primary = opts.primary ?? Object.keys(opts.regions)[0];
    const p = primary === undefined ? undefined : opts.regions[primary];
    if (p?.storage === undefined) throw new FsError('EINVAL', `primary region ${JSON.stringify(primary)} is not one of the volume's regions, or has no bucket`);
    regions = { storage: p.storage, regions: { ...opts.regions }, primary: primary! };
  }
  const format: FormatRec = {
    name: opts.name,
    uuid: randomUUID(),
    ...regions,
    blockBytes: opts.blockBytes,
    chunkBytes: CHUNK_BYTES,
    compression: opts.compression,
    trashDays: opts.trashDays,
    capacityBytes: opts.capacityBytes ?? 2 ** 50,
    version: FORMAT_VERSION,
    createdAt: now,
  };
  await engine.txn(async (tx) => {
    formatRecord.put(tx, format);
    putNewSecret(tx);
    inodes.put(tx, ROOT_INO, dirInode(ROOT_INO, 0o777, now));
    inodes.put(tx, TRASH_INO, dirInode(ROOT_INO, 0o555, now));
    counters.put(tx, 'nextInode', FIRST_FREE_INO);
    counters.put(tx, 'nextSlice', 1);
    counters.put(tx, 'usedBytes', 0);
    counters.put(tx, 'inodes', 0);
    await Promise.resolve();
  });
  return format;
}
