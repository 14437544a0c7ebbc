/**
 * `ferry format META NAME --storage URL`: creates a volume. Either the volume is created whole, or nothing is
 * left behind: a database file or bucket directory that this run created is removed again on any failure.
 */

import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { parseCompression } from '../chunk/codec.js';
import { CHUNKS_PREFIX } from '../chunk/keys.js';
import { formatVolume, loadFormat } from '../meta/meta.js';
import { openMetaEngine } from '../meta/registry.js';
import type { MetaEngine } from '../meta/engine.js';
import { describeStoreUrl, openObjectStore } from '../object/registry.js';
import type { ObjectStore } from '../object/store.js';
import { checkMetaExists, fileBucketDir, out, parseCount, parseSize, sqliteFile } from './util.js';

export const BLOCK_BYTES_MIN = 64 << 10;
export const BLOCK_BYTES_MAX = 16 << 20;
export const TRASH_DAYS_MAX = 3650;

/** Volume names as in JuiceFS: 3 to 63 characters of a-z, 0-9 and '-', not starting or ending with '-'. */
const NAME_RE = /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;

export interface FormatArgs {
  storage: string;
  blockSize: string;
  compress: string;
  trashDays: string;
  capacity?: string;
  force?: boolean;
}

export function checkVolumeName(name: string): void {
  if (!NAME_RE.test(name)) {
    throw new UsageError(`invalid volume name '${name}': use 3 to 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit`);
  }
}

export function checkBlockBytes(n: number): void {
  if (n < BLOCK_BYTES_MIN || n > BLOCK_BYTES_MAX || (n & (n - 1)) !== 0) {
    throw new UsageError(`invalid block size ${n}: must be a power of two from 64K to 16M`);
  }
}

/**
 * Checks that the bucket is there and writable, creating a file:// directory whose parent exists. Returns the
 * directory it created (for cleanup on failure), if any.
 */
async function prepareBucket(url: string, force: boolean): Promise<string | undefined> {
  let created: string | undefined;
  // Validates the scheme and the URL's shape before anything is created.
  await (await openObjectStore(url)).close();
  if (/^mem:/i.test(url)) throw new UsageError(`a mem:// bucket lives in one process's memory and is gone when it exits; use file:///path for a volume`);
  const fileDir = fileBucketDir(url);
  if (fileDir !== undefined) {
    const st = statSync(fileDir, { throwIfNoEntry: false });
    if (st === undefined) {
      const parent = path.dirname(fileDir);
      if (statSync(parent, { throwIfNoEntry: false })?.isDirectory() !== true) {
        throw new UsageError(`bucket directory ${fileDir} cannot be created: ${parent} does not exist`);
      }
      mkdirSync(fileDir);
      created = fileDir;
    } else if (!st.isDirectory()) {
      throw new UsageError(`bucket ${fileDir} is not a directory`);
    }
  }
  let store: ObjectStore | undefined;
  try {
    store = await openObjectStore(url);
    // Reachable, listable and writable: list, then put and delete a probe object.
    const page = await store.list(CHUNKS_PREFIX, { limit: 1 });
    if (page.objects.length > 0 && !force) {
      throw new UsageError(
        `bucket ${describeStoreUrl(url)} already holds volume data (${page.objects[0]!.key}); use an empty bucket, or --force to reuse it`,
      );
    }
    const probe = `.ferry-probe-${randomUUID()}`;
    await store.put(probe, Buffer.from('ferry'));
    await store.delete(probe);
    return created;
  } catch (err) {
    if (created !== undefined) rmSync(created, { recursive: true, force: true });
    if (err instanceof UsageError) throw err;
    throw new UsageError(`cannot use bucket ${describeStoreUrl(url)}: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    await store?.close();
  }
}

export async function runFormat(metaUrl: string, name: string, args: FormatArgs): Promise<void> {
  // Validate everything that needs no I/O first.
  checkVolumeName(name);
  const blockBytes = parseSize(args.blockSize, 'block size');
  checkBlockBytes(blockBytes);
  const compression = parseCompression(args.compress);
  const trashDays = parseCount(args.trashDays, 'trash days', 0, TRASH_DAYS_MAX);
  const capacityBytes = args.capacity === undefined ? undefined : parseSize(args.capacity, 'capacity');
  if (capacityBytes !== undefined && capacityBytes <= 0) throw new UsageError('capacity must be more than 0');
  const force = args.force === true;

  const dbFile = sqliteFile(metaUrl);
  const dbExisted = dbFile !== undefined && existsSync(dbFile);
  if (dbExisted) checkMetaExists(metaUrl);
  let engine: MetaEngine | undefined;
  let bucketCreated: string | undefined;
  let done = false;
  try {
    engine = await openMetaEngine(metaUrl, { create: true });
    const existing = await loadFormat(engine);
    if (existing !== undefined && !force) {
      throw new UsageError(`${metaUrl} already holds volume '${existing.name}' (use --force to format it again, which erases it)`);
    }
    bucketCreated = await prepareBucket(args.storage, force);
    const format = await formatVolume(engine, {
      name,
      storage: args.storage,
      blockBytes,
      compression,
      trashDays,
      ...(capacityBytes === undefined ? {} : { capacityBytes }),
      force,
    });
    done = true;
    await out(
      `formatted volume '${format.name}' (uuid ${format.uuid})\n` +
        `  metadata: ${metaUrl}\n  storage:  ${describeStoreUrl(format.storage)}\n` +
        `  block size ${blockBytes >> 10} KiB, compression ${compression}, trash ${trashDays} day(s)\n`,
    );
  } finally {
    await engine?.close();
    if (!done) {
      if (bucketCreated !== undefined) rmSync(bucketCreated, { recursive: true, force: true });
      if (dbFile !== undefined && !dbExisted) for (const f of [dbFile, `${dbFile}-wal`, `${dbFile}-shm`]) rmSync(f, { force: true });
    }
  }
}

export function register(program: Command): void {
  program
    .command('format')
    .summary('create a volume')
    .description('Create a volume: metadata in META (sqlite:///path/volume.db), data blocks in the bucket --storage.')
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .argument('<NAME>', 'volume name: 3-63 characters of a-z, 0-9, -')
    .requiredOption('--storage <URL>', 'bucket URL, e.g. file:///data/bucket')
    .option('--block-size <SIZE>', 'block size, a power of two from 64K to 16M', '4M')
    .option('--compress <ALGO>', 'block compression: none, lz4 or zstd', 'none')
    .option('--trash-days <N>', 'days deleted files stay in .trash (0 disables the trash)', '1')
    .option('--capacity <SIZE>', 'capacity reported by statfs, e.g. 10T')
    .option('--force', 'format an existing volume again (erases its metadata) or reuse a non-empty bucket')
    .addHelpText(
      'after',
      `
Examples:
  $ ferry format sqlite:///data/vol.db myvol --storage file:///data/bucket
  $ ferry format sqlite://vol.db myvol --storage file://bucket --block-size 1M --compress zstd --trash-days 0`,
    )
    .action((meta: string, name: string, opts: FormatArgs) => runFormat(meta, name, opts));
}
