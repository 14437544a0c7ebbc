/**
 * `ferry fsck META`: checks a volume's metadata invariants and that every block a file needs is in the bucket
 * and verifies. Prints one line per problem and a summary; exits 0 only when the volume is clean.
 *
 * The metadata invariants are meta/check.ts's (one consistent engine snapshot, the one `dump` writes); this
 * file adds the blocks: every block of every live slice exists in its home bucket and decodes (header,
 * checksums, length, identity).
 */

import type { Command } from 'commander';
import { CorruptBlockError } from '../errors.js';
import { createChunkStore } from '../cache/blocks.js';
import type { ChunkStore } from '../chunk/store.js';
import { blockKey } from '../chunk/keys.js';
import { checkMetadata, repairUsage } from '../meta/check.js';
import type { MetaEngine } from '../meta/engine.js';
import type { FormatRec } from '../meta/types.js';
import type { ObjectStore } from '../object/store.js';
import { ObjectNotFoundError } from '../object/store.js';
import { forEachLimit, humanBytes, openTools, out, parseCount, progressBar } from './util.js';
import { sliceHome, volumeRegions } from '../region/regions.js';
import { openOtherRegionStores } from './region.js';

/** Blocks downloaded and verified at once. */
export const FSCK_BLOCKS_IN_FLIGHT_DEFAULT = 16;

export interface FsckOptions {
  /** Only check that block objects exist (HEAD), without downloading and verifying them. */
  fast?: boolean;
  blocksInFlight?: number;
  /** Called with each problem as it is found. */
  onProblem?: (line: string) => void;
  /** Show a progress bar for block verification (on a terminal). */
  progress?: boolean;
  /**
   * Multi-region volumes: the other regions' buckets. Each block is checked in its slice's home bucket, the
   * copy every other one is made from (`ferry replicate --scan` checks the replicas).
   */
  otherStores?: ReadonlyMap<string, ObjectStore>;
}

export interface FsckResult {
  problems: string[];
  /** Not errors: usage counters that differ from a recount (see the header comment). */
  warnings: string[];
  /** The usage counters as recounted from the snapshot, and the files whose `used` is off (with the right value). */
  recount: { usedBytes: number; inodes: number; files: Array<[ino: number, used: number]> };
  inodes: number;
  entries: number;
  slices: number;
  blocks: number;
  blockBytes: number;
  seq: number;
}

/** Runs every check; the caller owns engine and store. */
export async function fsckVolume(engine: MetaEngine, format: FormatRec, store: ObjectStore, options: FsckOptions = {}): Promise<FsckResult> {
  const problems: string[] = [];
  const problem = (line: string): void => {
    problems.push(line);
    options.onProblem?.(line);
  };

  const meta = await checkMetadata(engine, format.chunkBytes, problem);
  const { slices, sliceOwner } = meta;

  // ---- blocks
  const chunkStore = createChunkStore({ store, blockBytes: format.blockBytes, compression: format.compression });
  const regions = volumeRegions(format);
  const homeStores = new Map<string, { store: ObjectStore; chunkStore: ChunkStore }>([[regions.primary, { store, chunkStore }]]);
  for (const [name, s] of options.otherStores ?? []) {
    homeStores.set(name, { store: s, chunkStore: createChunkStore({ store: s, blockBytes: format.blockBytes, compression: format.compression }) });
  }
  const blocks: Array<{ id: number; size: number; index: number }> = [];
  let blockBytes = 0;
  for (const [id, s] of slices) {
    for (let index = 0; index * format.blockBytes < s.size; index++) {
      blocks.push({ id, size: s.size, index });
      blockBytes += chunkStore.blockLength(s.size, index);
    }
  }
  const progress = options.progress === true ? progressBar(blocks.length, 0, 'blocks') : { add: () => undefined, stop: () => undefined };
  try {
    await forEachLimit(blocks, options.blocksInFlight ?? FSCK_BLOCKS_IN_FLIGHT_DEFAULT, async ({ id, size, index }) => {
      const len = chunkStore.blockLength(size, index);
      const key = blockKey(id, index, len);
      const owner = sliceOwner.get(id);
      const home = sliceHome(slices.get(id)?.home, regions);
      const where = `block ${key} (slice ${id}${owner === undefined ? '' : `, inode ${owner}`})`;
      const bucket = homeStores.get(home);
      if (bucket === undefined) {
        if (regions.regions.has(home)) problem(`${where}: no bucket given for its home region ${home}`);
        else problem(`${where}: its home region ${home} is no longer one of the volume's regions`);
        progress.add(1);
        return;
      }
      try {
        if (options.fast === true) {
          await bucket.store.head(key);
        } else {
          await bucket.chunkStore.readBlock(id, size, index);
        }
      } catch (err) {
        if (err instanceof ObjectNotFoundError) problem(`${where}: missing from the bucket${regions.named ? ` of its home region ${home}` : ''}`);
        else if (err instanceof CorruptBlockError) problem(`${where}: ${err.detail}`);
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
    warnings: meta.warnings,
    recount: meta.recount,
    inodes: meta.inodes,
    entries: meta.entries,
    slices: slices.size,
    blocks: blocks.length,
    blockBytes,
    seq: meta.seq,
  };
}

export function fsckSummary(r: FsckResult): string {
  const what = `${r.inodes} inodes, ${r.entries} entries, ${r.slices} slices, ${r.blocks} blocks (${humanBytes(r.blockBytes)}) at changelog seq ${r.seq}`;
  return r.problems.length === 0 ? `fsck: volume is clean: ${what}` : `fsck: ${r.problems.length} problem(s) found: ${what}`;
}

export async function runFsck(metaUrl: string, opts: { fast?: boolean; threads?: string; repair?: boolean }): Promise<void> {
  const blocksInFlight = opts.threads === undefined ? FSCK_BLOCKS_IN_FLIGHT_DEFAULT : parseCount(opts.threads, '--threads', 1, 256);
  const tools = await openTools(metaUrl);
  let otherStores: Map<string, ObjectStore> | undefined;
  try {
    otherStores = await openOtherRegionStores(tools.format);
    const result = await fsckVolume(tools.engine, tools.format, tools.store, {
      otherStores,
      fast: opts.fast === true,
      blocksInFlight,
      progress: true,
      onProblem: (line) => process.stdout.write(`${line}\n`),
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
        'block a file needs exists and verifies. Prints one line per problem; exits 0 only when the volume is clean.',
    )
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .option('--fast', 'only check that block objects exist, without downloading and verifying them')
    .option('--threads <N>', `blocks verified at once (default ${FSCK_BLOCKS_IN_FLIGHT_DEFAULT})`)
    .option('--repair', 'recount the usage counters (bytes, inodes) when they drifted; needs no live clients')
    .addHelpText('after', '\nExamples:\n  $ ferry fsck sqlite:///data/vol.db\n  $ ferry fsck sqlite:///data/vol.db --fast')
    .action((meta: string, opts: { fast?: boolean; threads?: string; repair?: boolean }) => runFsck(meta, opts));
}
