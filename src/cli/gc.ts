/**
 * `ferry gc META`: the volume's deferred deletions, and a census of objects nothing refers to.
 *
 *   1. trash   files in .trash longer than the volume's trash days are released (their slices join 2.)
 *   2. slices  released slices older than --grace: their block objects are deleted in every region's
 *              bucket, then the record (region/deletion.ts, shared with `ferry replicate --grace`)
 *   3. leaks   block objects under chunks/ (in every region's bucket) that belong to no live or released slice (an upload whose
 *              commit never happened: a crashed writer) and are older than --leak-age, so a write in
 *              flight is never counted; listed, and deleted only with --delete
 *
 *   4. log     the changelog is trimmed behind its registered consumers and the retention bound
 *              (engine.pruneLog, a bounded batch per call, up to GC_PRUNE_CALLS_MAX calls)
 *
 * Steps 1, 2 and 4 are the normal life of a volume and always run; step 3 deletes only when asked because it
 * judges objects by their absence from the metadata. Every step is idempotent: an interrupted gc is simply
 * run again.
 */

import type { Command } from 'commander';
import { createChunkStore } from '../cache/blocks.js';
import { CHUNKS_PREFIX, parseBlockKey } from '../chunk/keys.js';
import { canSweepTemp, listAll, type ObjectStore } from '../object/store.js';
import { deleteReleasedSlices } from '../region/deletion.js';
import { openOtherRegionStores } from './region.js';
import { count, forEachLimit, humanBytes, log, openTools, out, parseDuration, valueOption, type Tools } from './util.js';

export const GC_GRACE_DEFAULT = '1h';
export const GC_LEAK_AGE_DEFAULT = '1h';
/** Slices deleted at once. */
export const GC_DELETES_IN_FLIGHT_DEFAULT = 16;
const GC_DELETES_IN_FLIGHT_MAX = 256;
/** pruneLog calls of one gc (each drops at most LOG_PRUNE_ENTRIES_MAX entries): a bound on its work. */
export const GC_PRUNE_CALLS_MAX = 1000;

export interface GcOptions {
  /** Delete leaked objects (otherwise they are only listed). */
  delete?: boolean;
  /** Released slices younger than this keep their objects, ms. */
  graceMs: number;
  /** Unreferenced objects younger than this are presumed in flight, ms. */
  leakAgeMs: number;
  deletesInFlight?: number;
  now?: number;
  onLeak?: (key: string, bytes: number) => void;
  /**
   * The other regions' buckets (multi-region volumes): released slices are deleted in each, and each is
   * searched for leaks. `tools.store` is the primary's.
   */
  otherStores?: ReadonlyMap<string, ObjectStore>;
}

export interface GcResult {
  /** Sessions of dead clients removed (with what they held open). */
  sessionsCleaned: number;
  trashReleased: number;
  slicesDeleted: number;
  sliceBytesDeleted: number;
  slicesWaiting: number;
  leaked: number;
  leakedBytes: number;
  leakedDeleted: number;
  young: number;
  foreign: number;
  /** Temporary files of puts that never finished (killed writers), removed from the buckets. */
  tempSwept: number;
  /** Changelog entries trimmed (behind every consumer, or past the retention bound). */
  logTrimmed: number;
}

export async function gcVolume(tools: Tools, options: GcOptions): Promise<GcResult> {
  const { meta, store, format } = tools;
  const now = options.now ?? Date.now();
  const inFlight = options.deletesInFlight ?? GC_DELETES_IN_FLIGHT_DEFAULT;
  const chunks = createChunkStore({ store, blockBytes: format.blockBytes, compression: format.compression });
  const r: GcResult = {
    sessionsCleaned: 0,
    trashReleased: 0,
    slicesDeleted: 0,
    sliceBytesDeleted: 0,
    slicesWaiting: 0,
    leaked: 0,
    leakedBytes: 0,
    leakedDeleted: 0,
    young: 0,
    foreign: 0,
    tempSwept: 0,
    logTrimmed: 0,
  };

  // Dead clients first: their open-but-unlinked files become garbage now, their usage records are merged.
  r.sessionsCleaned = await meta.cleanStaleSessions();
  r.trashReleased = await meta.cleanTrash(now);

  const stores = [store, ...(options.otherStores?.values() ?? [])];
  const deleted = await deleteReleasedSlices(meta, stores, {
    graceMs: options.graceMs,
    now,
    slicesInFlight: inFlight,
    onDeleted: (id, size) => log().debug({ slice: id, bytes: size }, 'deleted released slice'),
  });
  r.slicesDeleted = deleted.slices;
  r.sliceBytesDeleted = deleted.bytes;

  // Read after the deletions: what is still pending keeps its objects.
  const known = new Map<number, number>(); // slice id -> size, live or pending deletion
  for (const [id, s] of await meta.listSlices()) known.set(id, s.size);
  const pending = await meta.listDelSlices(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  for (const d of pending) known.set(d.id, d.size);
  r.slicesWaiting = pending.length;

  const toDelete: Array<[ObjectStore, string]> = [];
  for (const bucket of stores) for await (const o of listAll(bucket, CHUNKS_PREFIX)) {
    const parts = parseBlockKey(o.key);
    if (parts === undefined) {
      r.foreign++;
      continue;
    }
    const size = known.get(parts.sliceId);
    const expected =
      size !== undefined && parts.blockIndex * format.blockBytes < size && chunks.blockLength(size, parts.blockIndex) === parts.blockBytes;
    if (expected) continue;
    if (now - o.mtime < options.leakAgeMs) {
      r.young++;
      continue;
    }
    r.leaked++;
    r.leakedBytes += o.size;
    options.onLeak?.(o.key, o.size);
    if (options.delete === true) toDelete.push([bucket, o.key]);
  }
  await forEachLimit(toDelete, inFlight, async ([bucket, key]) => {
    await bucket.delete(key);
    r.leakedDeleted++;
  });
  // Half-written temporary files are never objects, so no reader can need them: swept without --delete.
  for (const bucket of stores) if (canSweepTemp(bucket)) r.tempSwept += await bucket.sweepTemp(options.leakAgeMs);
  for (let calls = 0; calls < GC_PRUNE_CALLS_MAX; calls++) {
    const p = await tools.engine.pruneLog();
    r.logTrimmed += p.trimmed;
    if (!p.more) break;
  }
  return r;
}

export function gcSummary(r: GcResult, deleting: boolean): string {
  const parts = [
    `sessions: ${r.sessionsCleaned} dead client session(s) cleaned; trash: ${r.trashReleased} file(s) released`,
    `released slices: ${r.slicesDeleted} deleted (${humanBytes(r.sliceBytesDeleted)}), ${r.slicesWaiting} in their grace period`,
    `leaked objects: ${r.leaked} (${humanBytes(r.leakedBytes)})${r.leaked === 0 ? '' : deleting ? `, ${r.leakedDeleted} deleted` : ', run with --delete to remove them'}`,
  ];
  if (r.young > 0) parts.push(`${r.young} unreferenced object(s) younger than the leak age skipped`);
  if (r.tempSwept > 0) parts.push(`${r.tempSwept} temporary file(s) of unfinished puts removed`);
  if (r.logTrimmed > 0) parts.push(`${r.logTrimmed} changelog entries trimmed`);
  if (r.foreign > 0) parts.push(`${r.foreign} object(s) under chunks/ that are not Ferry blocks left alone`);
  return `gc: ${parts.join('; ')}`;
}

/** The options of `ferry gc`, parsed (see register). */
export interface GcCliOptions {
  delete?: boolean;
  /** --grace, ms. */
  grace: number;
  /** --leak-age, ms. */
  leakAge: number;
  threads?: number;
}

export async function runGc(metaUrl: string, opts: GcCliOptions): Promise<void> {
  const graceMs = opts.grace;
  const leakAgeMs = opts.leakAge;
  const deletesInFlight = opts.threads ?? GC_DELETES_IN_FLIGHT_DEFAULT;
  const tools = await openTools(metaUrl);
  let otherStores: Map<string, ObjectStore> | undefined;
  try {
    otherStores = await openOtherRegionStores(tools.format);
    const deleting = opts.delete === true;
    const r = await gcVolume(tools, {
      otherStores,
      delete: deleting,
      graceMs,
      leakAgeMs,
      deletesInFlight,
      onLeak: (key, bytes) => process.stdout.write(`leaked: ${key} (${bytes} bytes)\n`),
    });
    await out(gcSummary(r, deleting) + '\n');
  } finally {
    for (const s of otherStores?.values() ?? []) await s.close().catch(() => undefined);
    await tools.close();
  }
}

export function register(program: Command): void {
  program
    .command('gc')
    .summary('delete released data and find leaked objects')
    .description(
      'Empty expired trash, delete the objects of released slices older than --grace, and list leaked block objects ' +
        '(no slice refers to them) older than --leak-age; --delete removes the leaked objects too. Also trims the ' +
        'changelog behind its consumers (see "ferry config").',
    )
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .option('--delete', 'also delete leaked objects (otherwise they are only listed)')
    .addOption(valueOption('--grace <DURATION>', 'keep objects of slices released less than this long ago (e.g. 0, 30m, 1h, 2d)', parseDuration, GC_GRACE_DEFAULT))
    .addOption(valueOption('--leak-age <DURATION>', 'ignore unreferenced objects younger than this (writes in flight)', parseDuration, GC_LEAK_AGE_DEFAULT))
    .addOption(valueOption('--threads <N>', `deletions at once, 1 to ${GC_DELETES_IN_FLIGHT_MAX} (default ${GC_DELETES_IN_FLIGHT_DEFAULT})`, count(1, GC_DELETES_IN_FLIGHT_MAX)))
    .addHelpText('after', '\nExamples:\n  $ ferry gc sqlite:///data/vol.db\n  $ ferry gc sqlite:///data/vol.db --delete --grace 0')
    .action((meta: string, opts: GcCliOptions) => runGc(meta, opts));
}
