/**
 * `ferry format META NAME --storage URL`: creates a volume. Either the volume is created whole, or nothing is
 * left behind: a database file or bucket directory that this run created is removed again on any failure.
 */

import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { Option, type Command } from 'commander';
import { parseRegionArg } from '../region/regions.js';
import type { RegionRec } from '../meta/types.js';
import { BadUsageError, UsageError } from '../errors.js';
import { COMPRESSIONS, parseCompression, type Compression } from '../chunk/codec.js';
import { CHUNKS_PREFIX } from '../chunk/keys.js';
import { formatVolume, loadFormat } from '../meta/meta.js';
import { openMetaEngine } from '../meta/registry.js';
import type { MetaEngine } from '../meta/engine.js';
import { describeStoreUrl, openObjectStore } from '../object/registry.js';
import type { ObjectStore } from '../object/store.js';
import { asBadUsage, checkMetaExists, count, fileBucketDir, out, parseSize, sqliteFile, valueOption } from './util.js';

export const BLOCK_BYTES_MIN = 64 << 10;
export const BLOCK_BYTES_MAX = 16 << 20;
export const TRASH_DAYS_MAX = 3650;

/** Volume names as in JuiceFS: 3 to 63 characters of a-z, 0-9 and '-', not starting or ending with '-'. */
const NAME_RE = /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;

/** The options of `ferry format`, parsed (see register). */
export interface FormatArgs {
  /** One-region volumes; exactly one of storage and region is given. */
  storage?: string;
  /** --region NAME=URL, repeated: a volume with named regions. */
  region?: Array<{ name: string; storage: string }>;
  /** The primary region (default the first --region). */
  primary?: string;
  /** --block-size, bytes. */
  blockSize: number;
  compress: Compression;
  trashDays: number;
  /** --capacity, bytes. */
  capacity?: number;
  force?: boolean;
}

export function checkVolumeName(name: string): void {
  if (!NAME_RE.test(name)) {
    throw new BadUsageError(`invalid volume name '${name}': use 3 to 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit`);
  }
}

/** --block-size: a size that is a power of two from 64K to 16M. */
function parseBlockSize(s: string, what: string): number {
  const n = parseSize(s, what);
  if (n < BLOCK_BYTES_MIN || n > BLOCK_BYTES_MAX || (n & (n - 1)) !== 0) {
    throw new BadUsageError(`invalid ${what} '${s}': use a power of two from 64K to 16M, like 1M or 4M`);
  }
  return n;
}

/** --compress: one of the codec's algorithms (any case). */
function parseCompress(s: string, what: string): Compression {
  try {
    return parseCompression(s);
  } catch {
    throw new BadUsageError(`invalid ${what} '${s}': use ${COMPRESSIONS.join(', ')}`);
  }
}

/** --capacity: a size above 0. */
function parseCapacity(s: string, what: string): number {
  const n = parseSize(s, what);
  if (n <= 0) throw new BadUsageError(`invalid ${what} '${s}': the capacity must be more than 0`);
  return n;
}

/** --region NAME=URL, repeatable: collects the regions in the order given. */
function collectRegion(arg: string, previous: FormatArgs['region']): NonNullable<FormatArgs['region']> {
  const r = asBadUsage(() => parseRegionArg(arg), arg.includes('=') ? `invalid --region '${arg}': ` : '');
  if (previous?.some((p) => p.name === r.name) === true) throw new BadUsageError(`invalid --region '${arg}': region '${r.name}' is given twice`);
  return [...(previous ?? []), r];
}

/**
 * Checks that the bucket is there and writable, creating a file:// directory whose parent exists. Returns the
 * directory it created (for cleanup on failure), if any.
 */
export async function prepareBucket(url: string, force: boolean): Promise<string | undefined> {
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
  // Validate everything that needs no I/O first (option values were checked by the parser, see register).
  checkVolumeName(name);
  const { blockSize: blockBytes, compress: compression, trashDays, capacity: capacityBytes } = args;
  const force = args.force === true;
  // Regions: `--region a=URL --region b=URL [--primary a]`; `--storage URL` is the one-region form (the parser
  // refuses both together).
  let regions: Record<string, RegionRec> | undefined;
  if (args.region !== undefined && args.region.length > 0) {
    regions = {};
    for (const r of args.region) regions[r.name] = { storage: r.storage };
    if (args.primary !== undefined && regions[args.primary] === undefined) {
      throw new BadUsageError(`invalid --primary '${args.primary}': --primary ${args.primary} is not one of the regions given (${Object.keys(regions).join(', ')})`);
    }
  } else if (args.primary !== undefined) {
    throw new BadUsageError('--primary needs --region NAME=URL options');
  }
  const primary = regions === undefined ? undefined : (args.primary ?? Object.keys(regions)[0]!);
  const storage = regions === undefined ? args.storage : regions[primary!]!.storage;
  if (storage === undefined) throw new Error('assertion failed: format without --storage or --region');

  const dbFile = sqliteFile(metaUrl);
  const dbExisted = dbFile !== undefined && existsSync(dbFile);
  if (dbExisted) checkMetaExists(metaUrl);
  let engine: MetaEngine | undefined;
  let bucketsCreated: string[] = [];
  let done = false;
  try {
    engine = await openMetaEngine(metaUrl, { create: true });
    const existing = await loadFormat(engine);
    if (existing !== undefined && !force) {
      throw new UsageError(`${engine.description} already holds volume '${existing.name}' (use --force to format it again, which erases it)`);
    }
    const created: string[] = [];
    try {
      for (const url of regions === undefined ? [storage] : Object.values(regions).flatMap((r) => (r.storage === undefined ? [] : [r.storage]))) {
        const dir = await prepareBucket(url, force);
        if (dir !== undefined) created.push(dir);
      }
    } finally {
      bucketsCreated = created;
    }
    const format = await formatVolume(engine, {
      name,
      storage,
      ...(regions === undefined ? {} : { regions, primary: primary! }),
      blockBytes,
      compression,
      trashDays,
      ...(capacityBytes === undefined ? {} : { capacityBytes }),
      force,
    });
    done = true;
    await out(
      `formatted volume '${format.name}' (uuid ${format.uuid})\n` +
        `  metadata: ${engine.description}\n` +
        (regions === undefined
          ? `  storage:  ${describeStoreUrl(format.storage)}\n`
          : Object.entries(regions).map(([n, r]) => `  region ${n}${n === primary ? ' (primary)' : ''}: ${describeStoreUrl(r.storage ?? '')}\n`).join('')) +
        `  block size ${blockBytes >> 10} KiB, compression ${compression}, trash ${trashDays} day(s)\n`,
    );
  } finally {
    await engine?.close();
    if (!done) {
      for (const dir of bucketsCreated) rmSync(dir, { recursive: true, force: true });
      if (dbFile !== undefined && !dbExisted) for (const f of [dbFile, `${dbFile}-wal`, `${dbFile}-shm`]) rmSync(f, { force: true });
    }
  }
}

export function register(program: Command): void {
  program
    .command('format')
    .summary('create a volume')
    .description(
      'Create a volume: metadata in META (sqlite:///path/volume.db, redis://host:6379/1, postgres://user@host:5432/db), data blocks in the ' +
        'bucket --storage. META that already holds a volume needs --force.',
    )
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .argument('<NAME>', 'volume name: 3-63 characters of a-z, 0-9, -')
    .addOption(new Option('--storage <URL>', 'bucket URL, e.g. file:///data/bucket (a one-region volume)').conflicts(['region', 'primary']))
    .addOption(new Option('--region <NAME=URL>', 'a region and its bucket, e.g. a=file:///data/bucket-a; repeat for each region').argParser(collectRegion))
    .option('--primary <NAME>', 'the primary region (default: the first --region)')
    .addOption(valueOption('--block-size <SIZE>', 'block size, a power of two from 64K to 16M', parseBlockSize, '4M'))
    .addOption(valueOption('--compress <ALGO>', `block compression: ${COMPRESSIONS.join(', ')}`, parseCompress, 'none'))
    .addOption(valueOption('--trash-days <N>', `days deleted files stay in .trash, 0 to ${TRASH_DAYS_MAX} (0 disables the trash)`, count(0, TRASH_DAYS_MAX), '1'))
    .addOption(valueOption('--capacity <SIZE>', 'capacity reported by statfs, e.g. 10T', parseCapacity))
    .option('--force', 'format an existing volume again (erases its metadata) or reuse a non-empty bucket')
    .addHelpText(
      'after',
      `
Examples:
  $ ferry format sqlite:///data/vol.db myvol --storage file:///data/bucket
  $ ferry format sqlite://vol.db myvol --storage file://bucket --block-size 1M --compress zstd --trash-days 0
  $ ferry format redis://127.0.0.1:6379/1 myvol --storage 's3://bucket/vol?endpoint=http://127.0.0.1:9000&path-style=true'
  $ ferry format postgres://ferry@db:5432/ferry?schema=myvol myvol --storage file:///shared/bucket
  $ ferry format sqlite:///data/vol.db myvol --region a=file:///data/bucket-a --region b=file:///data/bucket-b --primary a`,
    )
    .action((meta: string, name: string, opts: FormatArgs, cmd: Command) => {
      // Exactly like a missing required option (exit 2), now that either of two options will do.
      if (opts.storage === undefined && (opts.region === undefined || opts.region.length === 0)) {
        cmd.error("required option '--storage <URL>' not specified (or give --region NAME=URL for each region)", { exitCode: 2, code: 'commander.missingMandatoryOptionValue' });
      }
      return runFormat(meta, name, opts);
    });
}
