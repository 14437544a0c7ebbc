/**
 * `ferry fsck META`: checks a volume's metadata invariants and that every block a file needs is in the bucket
 * and verifies. Prints one line per problem and a summary; exits 0 only when the volume is clean.
 *
 * Metadata comes from one consistent engine snapshot (the same one `dump` writes), so the checks see a state
 * the volume really had even while clients write; the session tables (not in snapshots) are read next to it.
 * Checked, record by record:
 *
 *   entries   the parent is a directory, the child inode exists, the entry's type is the inode's
 *   dirs      named by exactly one entry (root and .trash by none); `parent` is that entry's directory;
 *             nlink = 2 + subdirectories
 *   others    nlink = entries naming it; nlink 0 only while a session holds the file open
 *   chunks    belong to an existing regular file; every reference lies inside its chunk and its slice,
 *             names a live slice of the same size (not one released for deletion)
 *   slices    refs = references from chunks (> 0); not also released
 *   counters  nextInode > every inode, nextSlice > every slice id; usage: usedBytes = the data bytes files
 *             hold (holes free), inodes = inode records - 2, each plus the usage records clients have not
 *             merged yet; a file's `used` = its data bytes. Usage is only a warning (`--repair` recounts)
 *   blocks    every block of every live slice exists and decodes (header, checksums, length)
 *
 * Memory grows with the namespace (a few dozen bytes per inode and entry), which suits the embedded engine.
 */

import type { Command } from 'commander';
import { CorruptBlockError } from '../errors.js';
import { createChunkStore } from '../cache/blocks.js';
import type { ChunkStore } from '../chunk/store.js';
import { blockKey } from '../chunk/keys.js';
import type { MetaEngine } from '../meta/engine.js';
import { dataBytes, type SliceRef } from '../meta/slices.js';
import { ROOT_INO, TRASH_INO, nameProblem, type DelSliceRec, type EntryRec, type FileType, type FormatRec, type InodeRec, type SliceRefRec } from '../meta/types.js';
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

interface Inode {
  type: FileType;
  nlink: number;
  parent: number;
  length: number;
  used: number | undefined;
}

interface Entry {
  parent: number;
  name: string;
  ino: number;
  type: FileType;
}

const num = (k: string): number => Number(k);

/** Runs every check; the caller owns engine and store. */
export async function fsckVolume(engine: MetaEngine, format: FormatRec, store: ObjectStore, options: FsckOptions = {}): Promise<FsckResult> {
  const problems: string[] = [];
  const problem = (line: string): void => {
    problems.push(line);
    options.onProblem?.(line);
  };

  // Sessions first: a file opened and unlinked after this read shows as an orphan only on a busy volume.
  const sustained = new Set<number>();
  await engine.txn(
    async (tx) => {
      for (const [sid] of await tx.scan('session', '')) for (const [ino] of await tx.scan('sustained', sid)) sustained.add(num(ino));
    },
    { readonly: true },
  );

  const inodes = new Map<number, Inode>();
  const entries: Entry[] = [];
  const chunks: Array<{ ino: number; index: number; refs: SliceRef[] }> = [];
  const slices = new Map<number, SliceRefRec>();
  const delslices = new Map<number, DelSliceRec>();
  const counters = new Map<string, number>();
  const pendingUsage = { bytes: 0, inodes: 0 };
  const xattrInos = new Set<number>();
  const { seq } = await engine.snapshot(([kind, part, key, value]) => {
    switch (kind) {
      case 'inode': {
        const v = value as unknown as InodeRec;
        inodes.set(num(key), { type: v.type, nlink: v.nlink, parent: v.parent, length: v.length, used: v.used });
        break;
      }
      case 'entry': {
        const v = value as unknown as EntryRec;
        entries.push({ parent: num(part), name: key, ino: v.ino, type: v.type });
        break;
      }
      case 'chunk':
        chunks.push({ ino: num(part), index: num(key), refs: value as unknown as SliceRef[] });
        break;
      case 'slice':
        slices.set(num(key), value as unknown as SliceRefRec);
        break;
      case 'delslice':
        delslices.set(num(key), value as unknown as DelSliceRec);
        break;
      case 'counter':
        counters.set(key, value as number);
        break;
      case 'usage': {
        const [b, i] = value as [number, number];
        pendingUsage.bytes += b;
        pendingUsage.inodes += i;
        break;
      }
      case 'xattr':
        xattrInos.add(num(part));
        break;
      default:
        break;
    }
  });

  // ---- entries and inodes
  const named = new Map<number, number>(); // ino -> entries naming it
  const subdirs = new Map<number, number>(); // dir ino -> directory entries in it
  const dirParent = new Map<number, number>(); // dir ino -> the directory whose entry names it
  for (const e of entries) {
    const where = `entry ${JSON.stringify(e.name)} in directory ${e.parent}`;
    const bad = nameProblem(e.name);
    if (bad !== undefined) problem(`${where}: invalid name (${bad}); clients refuse to list the directory`);
    const p = inodes.get(e.parent);
    if (p === undefined) problem(`${where}: the directory (inode ${e.parent}) does not exist`);
    else if (p.type !== 'dir') problem(`${where}: inode ${e.parent} is a ${p.type}, not a directory`);
    const a = inodes.get(e.ino);
    if (a === undefined) {
      problem(`${where}: points to inode ${e.ino}, which does not exist`);
      continue;
    }
    if (a.type !== e.type) problem(`${where}: says ${e.type}, inode ${e.ino} is a ${a.type}`);
    named.set(e.ino, (named.get(e.ino) ?? 0) + 1);
    if (a.type === 'dir') {
      subdirs.set(e.parent, (subdirs.get(e.parent) ?? 0) + 1);
      dirParent.set(e.ino, e.parent);
    }
  }
  for (const special of [ROOT_INO, TRASH_INO]) {
    const a = inodes.get(special);
    if (a === undefined) problem(`inode ${special} (${special === ROOT_INO ? 'root' : '.trash'}) does not exist`);
    else if (a.type !== 'dir') problem(`inode ${special} (${special === ROOT_INO ? 'root' : '.trash'}) is a ${a.type}, not a directory`);
  }
  for (const [ino, a] of inodes) {
    const n = named.get(ino) ?? 0;
    if (a.type === 'dir') {
      const special = ino === ROOT_INO || ino === TRASH_INO;
      if (special) {
        if (n !== 0) problem(`directory ${ino} (${ino === ROOT_INO ? 'root' : '.trash'}) is named by ${n} entries`);
        if (a.parent !== ROOT_INO) problem(`directory ${ino}: parent is ${a.parent}, expected ${ROOT_INO}`);
      } else if (n !== 1) {
        problem(`directory ${ino} is named by ${n} entries (expected 1)`);
      } else if (dirParent.get(ino) !== a.parent) {
        problem(`directory ${ino}: parent is ${a.parent}, but its entry is in directory ${dirParent.get(ino)!}`);
      }
      const want = 2 + (subdirs.get(ino) ?? 0);
      if (a.nlink !== want) problem(`directory ${ino}: nlink is ${a.nlink}, expected ${want} (2 + subdirectories)`);
    } else if (a.nlink !== n) {
      if (a.nlink === 0 && n === 0) {
        if (!sustained.has(ino)) problem(`inode ${ino} (${a.type}) has no links and no session holds it open (orphan)`);
      } else {
        problem(`inode ${ino} (${a.type}): nlink is ${a.nlink}, but ${n} entries name it`);
      }
    }
  }
  for (const ino of xattrInos) if (!inodes.has(ino)) problem(`extended attributes of inode ${ino}, which does not exist`);

  // ---- chunks and slices
  const C = format.chunkBytes;
  const refCount = new Map<number, number>();
  const sliceOwner = new Map<number, number>();
  for (const c of chunks) {
    const where = `chunk ${c.index} of inode ${c.ino}`;
    const a = inodes.get(c.ino);
    if (a === undefined) problem(`${where}: the inode does not exist`);
    else if (a.type !== 'file') problem(`${where}: inode is a ${a.type}, not a file`);
    if (!Array.isArray(c.refs)) {
      problem(`${where}: malformed slice list`);
      continue;
    }
    for (const r of c.refs) {
      const ref = `${where}, slice ${r.id} [pos ${r.pos} len ${r.len}]`;
      if (!(r.pos >= 0 && r.len > 0 && r.pos + r.len <= C)) problem(`${ref}: reaches outside the chunk`);
      if (r.id === 0) continue;
      if (!(r.off >= 0 && r.off + r.len <= r.size)) problem(`${ref}: reads [${r.off}, ${r.off + r.len}) of a ${r.size}-byte slice`);
      refCount.set(r.id, (refCount.get(r.id) ?? 0) + 1);
      if (!sliceOwner.has(r.id)) sliceOwner.set(r.id, c.ino);
      const s = slices.get(r.id);
      if (s === undefined) {
        problem(delslices.has(r.id) ? `${ref}: the slice was released for deletion but is still referenced` : `${ref}: the slice does not exist`);
      } else if (s.size !== r.size) {
        problem(`${ref}: the reference says ${r.size} bytes, the slice has ${s.size}`);
      }
    }
  }
  for (const [id, s] of slices) {
    const n = refCount.get(id) ?? 0;
    if (s.refs !== n) problem(`slice ${id}: refs is ${s.refs}, but ${n} chunk references name it`);
    if (delslices.has(id)) problem(`slice ${id} is both live and released for deletion`);
  }

  // ---- counters
  // Loops, not Math.max(...): spreading a million ids would overflow the stack.
  let maxIno = 0;
  for (const ino of inodes.keys()) maxIno = Math.max(maxIno, ino);
  for (const e of entries) maxIno = Math.max(maxIno, e.ino);
  let maxSlice = 0;
  for (const m of [slices, delslices, refCount]) for (const id of m.keys()) maxSlice = Math.max(maxSlice, id);
  const nextInode = counters.get('nextInode');
  const nextSlice = counters.get('nextSlice');
  if (nextInode === undefined || !(nextInode > maxIno)) problem(`counter nextInode is ${String(nextInode)}, but inode ${maxIno} exists`);
  if (nextSlice === undefined || !(nextSlice > maxSlice)) problem(`counter nextSlice is ${String(nextSlice)}, but slice ${maxSlice} exists`);
  const dataOf = new Map<number, number>();
  for (const c of chunks) if (Array.isArray(c.refs)) dataOf.set(c.ino, (dataOf.get(c.ino) ?? 0) + dataBytes(c.refs));
  let fileBytes = 0;
  const warnings: string[] = [];
  const usedWrong: Array<[number, number]> = [];
  for (const [ino, a] of inodes) {
    if (a.type !== 'file') continue;
    const data = dataOf.get(ino) ?? 0;
    fileBytes += data;
    if (a.used !== undefined && a.used !== data) {
      warnings.push(`inode ${ino}: used is ${a.used}, but its chunks hold ${data} bytes of data`);
      usedWrong.push([ino, data]);
    }
  }
  const usedBytes = (counters.get('usedBytes') ?? 0) + pendingUsage.bytes;
  if (usedBytes !== fileBytes) warnings.push(`usage counter usedBytes is ${usedBytes}, but files hold ${fileBytes} bytes of data`);
  const inodeCount = (counters.get('inodes') ?? 0) + pendingUsage.inodes;
  if (inodeCount !== inodes.size - 2) warnings.push(`usage counter inodes is ${inodeCount}, but ${inodes.size - 2} inodes exist besides root and .trash`);

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
    warnings,
    recount: { usedBytes: fileBytes, inodes: inodes.size - 2, files: usedWrong },
    inodes: inodes.size,
    entries: entries.length,
    slices: slices.size,
    blocks: blocks.length,
    blockBytes,
    seq,
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
      const live = await tools.engine.txn((tx) => tx.scan('session', ''), { readonly: true });
      if (live.length > 0) {
        process.stdout.write(`not repaired: ${live.length} client session(s) are live and may hold unflushed usage changes\n`);
      } else {
        const { usedBytes, inodes, files } = result.recount;
        await tools.engine.txn(async (tx) => {
          tx.put('counter', '', 'usedBytes', usedBytes);
          tx.put('counter', '', 'inodes', inodes);
          for (const [ino, used] of files) {
            const a = await tx.get<InodeRec>('inode', '', String(ino));
            if (a !== undefined) tx.put('inode', '', String(ino), { ...a, used });
          }
        });
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
