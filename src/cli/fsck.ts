/**
 * `ferry fsck META`: checks a volume's metadata invariants and that every block a file needs is in the bucket
 * and verifies. Prints one line per problem and a summary; exits 0 only when the volume is clean.
 *
 * The metadata invariants are meta/check.ts's (one consistent engine snapshot, the one `dump` writes); this
 * file adds the blocks: every copy of every block of every live slice that the metadata says exists — in its
 * home bucket and in the bucket of each region its slice record lists as holding a copy (`copies`, set by the
 * replicator, which readers trust) — is present and decodes (header, checksums, length, identity). `--region`
 * narrows the check to one region's bucket; by default every region's bucket is checked.
 *
 * Write-back: a block that a write-back client committed but has not uploaded yet is missing from the bucket
 * and held on that client's disk; when a staging record (meta/staging.ts) names its slice, fsck reports it as
 * pending upload (`pending`), not as a problem.
 */

import type { Command } from 'commander';
import { BadUsageError, CorruptBlockError } from '../errors.js';
import { createChunkStore } from '../cache/blocks.js';
import { blockKey } from '../chunk/keys.js';
import { decodeBlock } from '../chunk/codec.js';
import { checkMetadata, repairUsage } from '../meta/check.js';
import type { MetaEngine } from '../meta/engine.js';
import type { FormatRec } from '../meta/types.js';
import type { ObjectStore } from '../object/store.js';
import { ObjectNotFoundError } from '../object/store.js';
import { forEachLimit, humanBytes, openTools, out, parseCount, progressBar } from './util.js';
import { sliceHome, volumeRegions } from '../region/regions.js';
import { openOtherRegionStores } from './region.js';
import { listStaging, stagedBy } from '../meta/staging.js';

/** Blocks downloaded and verified at once. */
export const FSCK_BLOCKS_IN_FLIGHT_DEFAULT = 16;

export interface FsckOptions {
  /** Only check that block objects exist (HEAD), without downloading and verifying them. */
  fast?: boolean;
  blocksInFlight?: number;
  /** Called with each problem as it is found. */
  onProblem?: (line: string) => void;
  /** Called with each block found pending upload by a write-back client (not a problem). */
  onPending?: (line: string) => void;
  /** Show a progress bar for block verification (on a terminal). */
  progress?: boolean;
  /**
   * Multi-region volumes: the other regions' buckets. Each block is checked in its slice's home bucket and in
   * every region's bucket that its slice record says holds a copy.
   */
  otherStores?: ReadonlyMap<string, ObjectStore>;
  /** Only the copies in these regions' buckets (default: every region's). */
  regions?: readonly string[];
}

export interface FsckResult {
  problems: string[];
  /** Blocks missing from their home bucket that a write-back client staged and has not uploaded yet. */
  pending: string[];
  /** Not errors: usage counters that differ from a recount (see the header comment). */
  warnings: string[];
  /** The usage counters as recounted from the snapshot, and the files whose `used` is off (with the right value). */
  recount: { usedBytes: number; inodes: number; files: Array<[ino: number, used: number]> };
  inodes: number;
  entries: number;
  slices: number;
  blocks: number;
  blockBytes: number;
  /** Copies checked: a block counts once per bucket it was checked in. */
  copies: number;
  seq: number;
}

/** Runs every check; the caller owns engine and store. */
export async function fsckVolume(engine: MetaEngine, format: FormatRec, store: ObjectStore, options: FsckOptions = {}): Promise<FsckResult> {
  const problems: string[] = [];
  const problem = (line: string): void => {
    problems.push(line);
    options.onProblem?.(line);
  };

  const pending: string[] = [];
  const meta = await checkMetadata(engine, format.chunkBytes, problem);
  const { slices, sliceOwner } = meta;
  const staged = await listStaging(engine);

  // ---- blocks
  const chunkStore = createChunkStore({ store, blockBytes: format.blockBytes, compression: format.compression });
  const regions = volumeRegions(format);
  const buckets = new Map<string, ObjectStore>([[regions.primary, store], ...(options.otherStores ?? [])]);
  const only = options.regions === undefined ? undefined : new Set(options.regions);
  /** One check per copy the metadata says exists: the home bucket's, and each recorded replica's. */
  const copies: Array<{ id: number; size: number; index: number; region: string; home: boolean }> = [];
  let blockCount = 0;
  let blockBytes = 0;
  for (const [id, s] of slices) {
    const home = sliceHome(s.home, regions);
    // A copy recorded in a region that has since left the volume is no longer read by anyone.
    const holders = [home, ...(s.copies ?? []).filter((r) => r !== home && regions.regions.has(r))].filter((r) => only === undefined || only.has(r));
    for (let index = 0; index * format.blockBytes < s.size; index++) {
      blockCount++;
      blockBytes += chunkStore.blockLength(s.size, index);
      for (const region of holders) copies.push({ id, size: s.size, index, region, home: region === home });
    }
  }
  const progress = options.progress === true ? progressBar(copies.length, 0, 'blocks') : { add: () => undefined, stop: () => undefined };
  try {
    await forEachLimit(copies, options.blocksInFlight ?? FSCK_BLOCKS_IN_FLIGHT_DEFAULT, async ({ id, size, index, region, home }) => {
      const len = chunkStore.blockLength(size, index);
      const key = blockKey(id, index, len);
      const owner = sliceOwner.get(id);
      const where = `block ${key} (slice ${id}${owner === undefined ? '' : `, inode ${owner}`})`;
      // Which copy: the home one, or a replica the slice record says is in place.
      const copy = !regions.named ? 'the bucket' : home ? `the bucket of its home region ${region}` : `its replica in region ${region}`;
      const bucket = buckets.get(region);
      if (bucket === undefined) {
        if (!home) problem(`${where}: no bucket given for region ${region}, which holds a replica`);
        else if (regions.regions.has(region)) problem(`${where}: no bucket given for its home region ${region}`);
        else problem(`${where}: its home region ${region} is no longer one of the volume's regions`);
        progress.add(1);
        return;
      }
      try {
        if (options.fast === true) {
          await bucket.head(key);
        } else {
          // Decoded against the key it was read under: checksums, length and identity, this bucket's copy only.
          decodeBlock(await bucket.get(key), key, len);
        }
      } catch (err) {
        const stager = err instanceof ObjectNotFoundError && home ? stagedBy(staged, id) : undefined;
        if (stager !== undefined) {
          const line = `${where}: not yet uploaded to ${copy}: staged by the write-back client on ${stager.host} (${stager.dir}), pending upload`;
          pending.push(line);
          options.onPending?.(line);
        } else if (err instanceof ObjectNotFoundError) problem(`${where}: missing from ${copy}`);
        else if (err instanceof CorruptBlockError) problem(`${where}: ${home ? '' : `${copy} is corrupt: `}${err.detail}`);
        else throw err;
      } finally {
        progress.add(1);
      }
    });
  } finally {
    progress.stop();
  }
  return {
    problems,
    pending,
    warnings: meta.warnings,
    recount: meta.recount,
    inodes: meta.inodes,
    entries: meta.entries,
    slices: slices.size,
    blocks: blockCount,
    blockBytes,
    copies: copies.length,
    seq: meta.seq,
  };
}

export function fsckSummary(r: FsckResult): string {
  const copies = r.copies === r.blocks ? '' : `, ${r.copies} copies checked`;
  const what = `${r.inodes} inodes, ${r.entries} entries, ${r.slices} slices, ${r.blocks} blocks (${humanBytes(r.blockBytes)})${copies} at changelog seq ${r.seq}`;
  const pending = r.pending.length === 0 ? '' : `; ${r.pending.length} block(s) pending upload by write-back clients`;
  return r.problems.length === 0 ? `fsck: volume is clean: ${what}${pending}` : `fsck: ${r.problems.length} problem(s) found: ${what}${pending}`;
}

/**
 * `--region NAME|all` against the volume's regions: the regions whose buckets are checked (undefined: all).
 * Only regions with a bucket hold copies.
 */
export function fsckRegions(format: FormatRec, arg: string | undefined): string[] | undefined {
  if (arg === undefined || arg === 'all') return undefined;
  const regions = volumeRegions(format);
  const names = arg.split(',').map((x) => x.trim());
  for (const name of names) {
    if (regions.regions.has(name)) continue;
    const why = regions.all.has(name) ? `region '${name}' has no bucket (a metadata-only mirror holds no copies)` : `volume '${format.name}' has no region '${name}'`;
    throw new BadUsageError(`invalid --region '${arg}': ${why} (regions with a bucket: ${[...regions.regions.keys()].join(', ')}, or all)`);
  }
  return names;
}

export async function runFsck(metaUrl: string, opts: { fast?: boolean; threads?: string; repair?: boolean; region?: string }): Promise<void> {
  const blocksInFlight = opts.threads === undefined ? FSCK_BLOCKS_IN_FLIGHT_DEFAULT : parseCount(opts.threads, '--threads', 1, 256);
  const tools = await openTools(metaUrl);
  let otherStores: Map<string, ObjectStore> | undefined;
  try {
    const regions = fsckRegions(tools.format, opts.region);
    otherStores = await openOtherRegionStores(tools.format);
    const result = await fsckVolume(tools.engine, tools.format, tools.store, {
      otherStores,
      ...(regions === undefined ? {} : { regions }),
      fast: opts.fast === true,
      blocksInFlight,
      progress: true,
      onProblem: (line) => process.stdout.write(`${line}\n`),
      onPending: (line) => process.stdout.write(`pending: ${line}\n`),
    });
    for (const w of result.warnings) process.stdout.write(`warning: ${w}${opts.repair === true ? '' : ' (--repair recounts)'}\n`);
    if (opts.repair === true && result.warnings.length > 0) {
      // Dead sessions go first: their cleanup merges their usage records, so none is left beside the recount.
      await tools.meta.cleanStaleSessions();
      const r = await repairUsage(tools.engine, result.recount);
      if (!r.repaired) {
        process.stdout.write(`not repaired: ${r.liveSessions} client session(s) are live and may hold unflushed usage changes\n`);
      } else {
        const { usedBytes, inodes } = result.recount;
        process.stdout.write(`repaired: usage counters set to ${usedBytes} bytes, ${inodes} inodes\n`);
      }
    }
    await out(fsckSummary(result) + '\n');
    if (result.problems.length > 0) process.exitCode = 1;
  } finally {
    for (const st of otherStores?.values() ?? []) await st.close().catch(() => undefined);
    await tools.close();
  }
}

export function register(program: Command): void {
  program
    .command('fsck')
    .summary('check metadata invariants and verify every block')
    .description(
      'Check the volume: metadata invariants (entries, link counts, parents, slice references, counters) and that every ' +
        'block a file needs exists and verifies, in its home bucket and in every region\'s bucket that the metadata says holds a ' +
        'copy. Prints one line per problem; exits 0 only when the volume is clean.',
    )
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .option('--fast', 'only check that block objects exist, without downloading and verifying them')
    .option('--threads <N>', `blocks verified at once (default ${FSCK_BLOCKS_IN_FLIGHT_DEFAULT})`)
    .option('--repair', 'recount the usage counters (bytes, inodes) when they drifted; needs no live clients')
    .option('--region <NAME|all>', "only the copies in these regions' buckets (comma-separated; default all: the home copy and every replica)")
    .addHelpText('after', '\nExamples:\n  $ ferry fsck sqlite:///data/vol.db\n  $ ferry fsck sqlite:///data/vol.db --fast\n  $ ferry fsck sqlite:///data/vol.db --region b')
    .action((meta: string, opts: { fast?: boolean; threads?: string; repair?: boolean; region?: string }) => runFsck(meta, opts));
}
