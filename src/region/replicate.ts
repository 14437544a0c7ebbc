/**
 * The bucket replicator (DESIGN §7, `ferry replicate`): copies every slice's blocks from its home bucket to
 * the bucket of every other region, verifies each copy, and records the result in the slice's record
 * (`copies`), which is what readers use to pick a bucket (region/placement.ts).
 *
 * Steady state follows the changelog from a checkpoint; it never lists a bucket:
 *
 *   checkpoint.seq ──readLog(page)──▶ slice ops (new slices, refs changes, our own marks)
 *        ▲                                │ keep slices whose op lacks a target in `copies`
 *        │                                ▼
 *        │                        current records (getSlices): gone → skip; copies → what is missing
 *        │                                │
 *        │                                ▼
 *        │            block queue ──▶ `parallel` workers: get from home (verify: decode + CRC, else the next
 *        │            (big blocks    holder) → put to each missing region → verify the copy (the server's
 *        │             spread out)   digest, else a read-back) → count
 *        │                                │ every block of a slice done
 *        │                                ▼
 *        └──── save checkpoint ◀──── addSliceCopies (batched, logged)   failures → checkpoint.pending
 *
 * Changelog consumer: the replicator is registered in the engine as `replicate:<name>`, and its position is
 * the checkpoint's seq, written in the checkpoint's own transaction: the log is kept behind it (within the
 * volume's retention bound), and trimmed as it advances (a prune after each pass that moved it).
 *
 * Durability: the checkpoint (kind `replica`, unlogged: it is this primary's progress, not volume state)
 * advances only past pages whose slices are all marked copied or listed in `pending`, which the next pass
 * retries first. Marks are written in batches as slices complete, so a replicator killed at any point
 * (SIGKILL) loses nothing: a restarted replicator skips every slice whose record already names the copy. Before
 * each batch of work the checkpoint also names the slices being copied (`claimed`); a restarted replicator
 * first reads each block of those (and of the pending ones) in the destination, keeping a copy that verifies
 * instead of transferring the block again. Other slices cost no such check.
 *
 * Bootstrap: with no checkpoint, after the log was trimmed past it (LogTrimmedError: it fell behind the
 * retention bound), or when a region appears that the checkpoint did not cover, every live slice record is
 * scanned (metadata only) and what it lacks copied, before following the log from the sequence read before
 * the scan. The consumer is registered before that sequence is read, so the entries after it stay. `scanBuckets` (`--scan`) lists and diffs the buckets instead, for repair:
 * it finds copies that records claim but buckets lack (or hold with the wrong size), and with `check` also reads
 * and decodes every copy against its key (a flipped byte, another block's object), copying bad ones again.
 *
 * Counters: each copy counts once, when its slice is marked, in the mark's transaction (with the checkpoint),
 * so they survive SIGKILL; a copy a killed run made is counted by the run that finds it in place and marks it.
 * An AbortSignal (SIGINT) stops the work at once; finished slices are marked, unfinished ones become pending.
 *
 * Deletions: with `graceMs`, released slices older than the grace period are deleted in every bucket
 * (region/deletion.ts, shared with `ferry gc`). A slice released while it was being copied is skipped; a copy
 * that lands after gc deleted the slice everywhere is deleted again by the replicator (addSliceCopies reports
 * such slices), and failing that, gc's leak census finds it.
 */

import { CorruptBlockError, UsageError } from '../errors.js';
import { blockFrameBytes, decodeBlock } from '../chunk/codec.js';
import { blockKey, CHUNKS_PREFIX, parseBlockKey } from '../chunk/keys.js';
import { LogTrimmedError, type MetaEngine } from '../meta/engine.js';
import { removeSliceCopies } from '../meta/catalogue.js';
import { listReplicaCheckpoints, loadReplicaCheckpoint, putReplicaCheckpoint, saveReplicaCheckpoint } from '../meta/checkpoints.js';
import { slicesSet } from '../meta/records.js';
import type { Meta } from '../meta/meta.js';
import type { FormatRec, SliceRefRec } from '../meta/types.js';
import { sleep } from '../util/sleep.js';
import { canPutChecked, listAll, ObjectNotFoundError, type ObjectStore } from '../object/store.js';
import { TokenBucket } from '../util/tokenbucket.js';
import { deleteReleasedSlices, sliceBlockKeys } from './deletion.js';
import { reloadFormat, sliceHome, volumeRegions, type BucketRegion, type VolumeRegions } from './regions.js';

export const PARALLEL_DEFAULT = 16;
export type VerifyMode = 'full' | 'size' | 'put';
export const VERIFY_MODES: readonly VerifyMode[] = ['full', 'size', 'put'];
export const VERIFY_DEFAULT: VerifyMode = 'put';
/** Changelog entries read per page. */
export const PAGE_ENTRIES_DEFAULT = 1000;
/** Slices marked copied per metadata transaction. */
const MARK_BATCH_MAX = 64;
/** Completed slices wait at most this long to be marked, so a kill loses little finished work. */
const MARK_DELAY_MS_MAX = 200;
/** Failed slices carried in the checkpoint; past this the position stops advancing until they succeed. */
const PENDING_MAX = 100_000;
/** Put-and-verify attempts per block and region (each put is itself retried by the store's RetryStore). */
const COPY_ATTEMPTS_MAX = 3;
/** Slices per batch of a bootstrap (each batch is claimed in the checkpoint first). */
const BOOTSTRAP_BATCH = 1000;
/** Entries `replicationStatus` reads ahead to measure the backlog. */
const BACKLOG_ENTRIES_MAX = 10_000;
const CHECKPOINT_VERSION = 1;

/** The durable state of one replicator (kind `replica`, key = its name). */
export interface ReplicaCheckpoint {
  version: number;
  /** Every slice committed in entries <= seq is copied, or listed in `pending`. */
  seq: number;
  /** Commit time of entry `seq`, ms (0 before any). */
  time: number;
  /** The destination regions this position covers; a region not listed here makes the next pass bootstrap. */
  regions: string[];
  /** Slices whose copy failed, retried first by the next pass. */
  pending: number[];
  /** Slices being copied when this was written: a restarted replicator checks what of them is in place. */
  claimed?: number[];
  /** When this record was written, ms. */
  updated: number;
  stats: ReplicaCounters;
}

/**
 * Counters since the first run under a checkpoint's name. The copy counters count each block copy once, when
 * its slice is marked copied, and are written in the transaction of that mark (with the checkpoint), so they
 * survive any kill exactly: a copy made by a killed run and found in place by the next one counts once, a copy
 * of a slice that failed counts when a later pass completes the slice.
 */
export interface ReplicaCounters {
  copiedBlocks: number;
  /** Encoded bytes copied, by "from>to" region pair. */
  copiedBytes: Record<string, number>;
  /** Block copies that failed (after the store's retries); the slice went to `pending`. */
  errors: number;
  /** Store calls retried (from the stores' RetryStore counters, when given). */
  retries: number;
  /** Copies that read back different from what was put. */
  verifyFailures: number;
  /** Source copies that failed verification (another holder was used). */
  badSources: number;
  slicesCopied: number;
  deletedSlices: number;
}

export type ReplicateEvent =
  | { type: 'bootstrap'; slices: number }
  /** A page of the log done; lagMs: from the commit of its oldest slice to now (that slice's replication lag). */
  | { type: 'page'; seq: number; slices: number; copied: number; failed: number; lagMs: number }
  | { type: 'error'; key?: string; region?: string; error: unknown }
  | { type: 'deleted'; slices: number; bytes: number };

export interface ReplicatorOptions {
  /** A Meta without a session on the volume's primary engine. */
  meta: Meta;
  /** Buckets by region name (wrapped in retries by the caller). Regions missing here are opened with `openStore`. */
  stores: ReadonlyMap<string, ObjectStore>;
  openStore?: (region: string, rec: BucketRegion) => Promise<ObjectStore>;
  /** Only slices whose home is one of these. */
  from?: readonly string[] | undefined;
  /** Only copies to these regions. */
  to?: readonly string[] | undefined;
  /** Block copies in flight (default 16). */
  parallel?: number;
  /** Cap on bytes put per second across all destinations; 0 = none. */
  bytesPerSecond?: number;
  /**
   * How a copy is checked after its put (the source copy is always decoded and checked first):
   *   'put' (default)   the server's digest of what it stored, when the store gives one (CheckedPutter): an S3
   *                     put carries Content-MD5 and the ETag answered, the MD5 of the bytes the server received,
   *                     must equal it; no extra call. Without such an answer (a file store, SSE-KMS, an ETag
   *                     that is no digest as with MinIO's encryption, one that differs) the copy is read back as
   *                     with 'full';
   *   'full'            read it back and compare every byte;
   *   'size'            HEAD it and compare the size (a weaker check, for stores where reads cost).
   * Readers verify every block they read in any case and fall through to the home bucket on a bad copy.
   */
  verify?: VerifyMode;
  /** Propagate deletions: released slices older than this are deleted in every bucket. Undefined: leave to gc. */
  graceMs?: number | undefined;
  /** Checkpoint name (default derived from from/to). */
  name?: string;
  pageEntries?: number;
  /** Retries so far across the stores (RetryStore.stats), for the counters. */
  retries?: () => number;
  onEvent?: (e: ReplicateEvent) => void;
  now?: () => number;
  /**
   * Stops the work at once when aborted (a bandwidth wait, the store calls in flight, the next block): what is
   * complete is marked, the slices left unfinished go to the checkpoint's pending list (or, in a bootstrap,
   * stay for the next one), and the running pass rejects with the signal's reason.
   */
  signal?: AbortSignal;
}

export interface PassResult {
  /** The position reached. */
  seq: number;
  slicesCopied: number;
  blocksCopied: number;
  /** Slices still pending after this pass. */
  pending: number;
}

interface SliceJob {
  id: number;
  size: number;
  home: string;
  /** Regions this pass copies to. */
  need: string[];
  /** Regions that hold verified copies (possible sources besides home). */
  holders: string[];
  remaining: number;
  failed: boolean;
  /** Copies made of this slice's blocks, counted when the slice is marked. */
  copiedBlocks: number;
  copiedBytes: Record<string, number>;
}

/** The changelog consumer a replicator registers as, for its checkpoint name. */
export function consumerName(checkpoint: string): string {
  return `replicate:${checkpoint}`;
}

/** The checkpoint name for a from/to filter: '*>*' replicates everything. */
export function checkpointName(from?: readonly string[], to?: readonly string[]): string {
  const part = (l?: readonly string[]): string => (l === undefined || l.length === 0 ? '*' : [...l].sort().join(','));
  return `${part(from)}>${part(to)}`;
}

export async function loadCheckpoint(engine: MetaEngine, name: string): Promise<ReplicaCheckpoint | undefined> {
  return loadReplicaCheckpoint<ReplicaCheckpoint>(engine, name);
}

export async function listCheckpoints(engine: MetaEngine): Promise<Array<[string, ReplicaCheckpoint]>> {
  return listReplicaCheckpoints<ReplicaCheckpoint>(engine);
}

/** `c` plus the copies counted in `jobs` (a new object). */
function addCopies(c: ReplicaCounters, jobs: readonly SliceJob[]): ReplicaCounters {
  const out = { ...c, copiedBytes: { ...c.copiedBytes } };
  for (const job of jobs) {
    out.slicesCopied++;
    out.copiedBlocks += job.copiedBlocks;
    for (const [pair, n] of Object.entries(job.copiedBytes)) out.copiedBytes[pair] = (out.copiedBytes[pair] ?? 0) + n;
  }
  return out;
}

function emptyCounters(): ReplicaCounters {
  return { copiedBlocks: 0, copiedBytes: {}, errors: 0, retries: 0, verifyFailures: 0, badSources: 0, slicesCopied: 0, deletedSlices: 0 };
}

export class Replicator {
  readonly name: string;
  private readonly meta: Meta;
  private readonly engine: MetaEngine;
  private readonly stores: Map<string, ObjectStore>;
  private readonly opened = new Set<string>();
  private readonly openStore: ((region: string, rec: BucketRegion) => Promise<ObjectStore>) | undefined;
  private readonly from: ReadonlySet<string> | undefined;
  private readonly to: ReadonlySet<string> | undefined;
  private readonly parallel: number;
  private readonly bucket: TokenBucket;
  private readonly verify: VerifyMode;
  private readonly graceMs: number | undefined;
  private readonly pageEntries: number;
  private readonly retries: (() => number) | undefined;
  private readonly onEvent: (e: ReplicateEvent) => void;
  private readonly now: () => number;
  private readonly signal: AbortSignal | undefined;
  private counters: ReplicaCounters = emptyCounters();
  private retriesAtStart = 0;
  private countersLoaded = false;
  private regions!: VolumeRegions;
  private format!: FormatRec;
  /**
   * Until this process's first pass ends: slices a predecessor claimed or left pending, whose blocks may
   * already be in place.
   */
  private resumeIds = new Set<number>();
  /** Slices a bucket scan found a bad copy of: their good copies are kept and, not being copies made, not counted. */
  private readonly repairIds = new Set<number>();
  /** The checkpoint as last written (or read): the slice marks write it again with their counters. */
  private saved: ReplicaCheckpoint | undefined;
  /** Blocks and bytes queued or in flight in the current page. */
  readonly inFlight = { blocks: 0, bytes: 0 };

  constructor(options: ReplicatorOptions) {
    this.meta = options.meta;
    this.engine = options.meta.engine;
    this.stores = new Map(options.stores);
    this.openStore = options.openStore;
    this.from = options.from === undefined || options.from.length === 0 ? undefined : new Set(options.from);
    this.to = options.to === undefined || options.to.length === 0 ? undefined : new Set(options.to);
    this.parallel = options.parallel ?? PARALLEL_DEFAULT;
    if (!Number.isSafeInteger(this.parallel) || this.parallel < 1) throw new RangeError(`parallel must be an integer >= 1, got ${this.parallel}`);
    this.bucket = new TokenBucket(options.bytesPerSecond ?? 0, Math.max(4 << 20, Math.ceil((options.bytesPerSecond ?? 0) / 10)));
    this.verify = options.verify ?? VERIFY_DEFAULT;
    this.graceMs = options.graceMs;
    this.pageEntries = options.pageEntries ?? PAGE_ENTRIES_DEFAULT;
    this.retries = options.retries;
    this.onEvent = options.onEvent ?? (() => undefined);
    this.now = options.now ?? Date.now;
    this.signal = options.signal;
    this.name = options.name ?? checkpointName(options.from, options.to);
  }

  /** Counters since the volume's first replicator run under this name (persisted in the checkpoint). */
  get stats(): ReplicaCounters {
    return { ...this.counters, copiedBytes: { ...this.counters.copiedBytes }, retries: this.counters.retries + this.retriesNow() };
  }

  private retriesNow(): number {
    return (this.retries?.() ?? 0) - this.retriesAtStart;
  }

  /** Reloads the format record (regions change while the replicator runs) and opens new regions' buckets. */
  private async refreshRegions(): Promise<void> {
    this.format = await reloadFormat(this.engine);
    this.regions = volumeRegions(this.format);
    for (const name of [...this.from ?? [], ...this.to ?? []]) {
      if (!this.regions.regions.has(name)) throw new UsageError(`volume '${this.format.name}' has no region '${name}' (its regions: ${[...this.regions.regions.keys()].join(', ')})`);
    }
    const dests = new Set(this.destinations());
    for (const [name, rec] of this.regions.regions) {
      if (this.stores.has(name)) continue;
      if (this.openStore === undefined) {
        // A source-only region without a bucket given is skipped as a holder; a destination cannot be.
        if (dests.has(name)) throw new UsageError(`no bucket given for region '${name}'`);
        continue;
      }
      this.stores.set(name, await this.openStore(name, rec));
      this.opened.add(name);
    }
  }

  /** The destination regions this replicator serves, sorted. */
  private destinations(): string[] {
    return [...this.regions.regions.keys()].filter((r) => this.to === undefined || this.to.has(r)).sort();
  }

  private targetsOf(home: string, copies: readonly string[] | undefined): string[] {
    if (this.from !== undefined && !this.from.has(home)) return [];
    if (!this.regions.regions.has(home)) return [];
    const have = new Set(copies ?? []);
    return this.destinations().filter((r) => r !== home && !have.has(r));
  }

  /** Writes the checkpoint; `claimed` names the slices about to be copied (none: the position is clean). */
  private async saveCheckpoint(cp: ReplicaCheckpoint, claimed?: readonly number[]): Promise<void> {
    const rec: ReplicaCheckpoint = { ...cp, updated: this.now(), stats: this.stats };
    delete rec.claimed;
    if (claimed !== undefined && claimed.length > 0) rec.claimed = [...claimed];
    // The consumer's position moves with the checkpoint, atomically (registered again if it was removed).
    await saveReplicaCheckpoint(this.engine, this.name, rec, consumerName(this.name), rec.seq);
    this.saved = rec;
  }

  private async checkpoint(): Promise<ReplicaCheckpoint | undefined> {
    const cp = await loadCheckpoint(this.engine, this.name);
    if (!this.countersLoaded) {
      this.countersLoaded = true;
      if (cp !== undefined) {
        this.counters = { ...emptyCounters(), ...cp.stats, copiedBytes: { ...cp.stats.copiedBytes } };
        this.resumeIds = new Set([...(cp.claimed ?? []), ...cp.pending]);
      }
      this.retriesAtStart = this.retries?.() ?? 0;
    }
    if (cp !== undefined && cp.version > CHECKPOINT_VERSION) throw new UsageError(`replica checkpoint '${this.name}' has version ${cp.version}, newer than this ferry supports`);
    this.saved = cp;
    return cp;
  }

  /**
   * One pass: bootstrap if needed, retry pending slices, then follow the log up to `untilSeq` (default: as far
   * as it goes). Returns where it got.
   */
  async pass(untilSeq = Number.MAX_SAFE_INTEGER): Promise<PassResult> {
    await this.refreshRegions();
    const result: PassResult = { seq: 0, slicesCopied: 0, blocksCopied: 0, pending: 0 };
    // Read first: the first call loads the counters persisted by earlier runs.
    let cp = await this.checkpoint();
    const startSeq = cp?.seq ?? 0;
    const blocksBefore = this.counters.copiedBlocks;
    const slicesBefore = this.counters.slicesCopied;
    const dests = this.destinations();
    if (this.regions.regions.size < 2) {
      // Nothing to copy: keep the position current so a region added later bootstraps from here.
      const seq = await this.engine.lastSeq();
      await this.saveCheckpoint({ version: CHECKPOINT_VERSION, seq, time: 0, regions: dests, pending: [], updated: 0, stats: this.counters });
      return { ...result, seq };
    }
    if (cp === undefined || dests.some((r) => !cp!.regions.includes(r))) cp = await this.bootstrap(dests, cp);

    if (cp.pending.length > 0) {
      const failed = await this.replicateSlices(cp.pending);
      cp = { ...cp, pending: failed };
      await this.saveCheckpoint(cp);
    }
    for (;;) {
      this.signal?.throwIfAborted();
      if (cp.seq >= untilSeq) break;
      let entries;
      try {
        entries = await this.engine.readLog(cp.seq, Math.min(this.pageEntries, untilSeq - cp.seq));
      } catch (err) {
        if (!(err instanceof LogTrimmedError)) throw err;
        cp = await this.bootstrap(dests, cp);
        continue;
      }
      if (entries.length === 0) break;
      const ids = new Set<number>();
      let oldest = Number.POSITIVE_INFINITY;
      for (const e of entries) {
        for (const [id, rec] of slicesSet(e.ops)) {
          if (this.targetsOf(sliceHome(rec.home, this.regions), rec.copies).length > 0) {
            ids.add(id);
            oldest = Math.min(oldest, e.time);
          }
        }
      }
      if (ids.size > 0) await this.saveCheckpoint(cp, [...ids]);
      const failed = ids.size === 0 ? [] : await this.replicateSlices([...ids]);
      const last = entries[entries.length - 1]!;
      const pending: number[] = [...new Set([...cp.pending, ...failed])];
      if (pending.length > PENDING_MAX) {
        // Too much is failing to keep a list of it: hold the position, so the page is read again next pass.
        this.onEvent({ type: 'error', error: new Error(`${pending.length} slices failed to copy; holding the position at ${cp.seq}`) });
        break;
      }
      // Stopped part-way (aborted): the slices left unfinished are in `failed`, so pending, like failures.
      cp = { ...cp, seq: last.seq, time: last.time, pending };
      await this.saveCheckpoint(cp);
      this.onEvent({
        type: 'page',
        seq: last.seq,
        slices: ids.size,
        copied: ids.size - failed.length,
        failed: failed.length,
        lagMs: ids.size === 0 ? 0 : Math.max(0, this.now() - oldest),
      });
    }
    this.resumeIds.clear();
    if (this.graceMs !== undefined) await this.deleteReleased();
    if (cp.seq > startSeq) {
      // The position moved: what no consumer needs any more can go (bounded work; more after the next pass).
      await this.engine.pruneLog().catch((err: unknown) => this.onEvent({ type: 'error', error: err }));
    }
    result.seq = cp.seq;
    result.pending = cp.pending.length;
    result.blocksCopied = this.counters.copiedBlocks - blocksBefore;
    result.slicesCopied = this.counters.slicesCopied - slicesBefore;
    return result;
  }

  /** Scans every live slice record and copies what is missing; returns the checkpoint to follow the log from. */
  private async bootstrap(dests: string[], cp: ReplicaCheckpoint | undefined): Promise<ReplicaCheckpoint> {
    // Registered (or moved back to the position it has) before reading the sequence to follow from, so no
    // prune can trim the entries after that sequence while the scan runs.
    await this.engine.registerConsumer(consumerName(this.name), cp?.seq ?? 0);
    const seq = await this.engine.lastSeq();
    const slices = await this.meta.listSlices();
    const todo: Array<{ id: number; size: number }> = [];
    for (const [id, s] of slices) if (this.targetsOf(sliceHome(s.home, this.regions), s.copies).length > 0) todo.push({ id, size: s.size });
    // Slices of many blocks spread over the batches rather than bunched in one (see interleave).
    const ids = interleave(todo, (t) => t.size > this.format.blockBytes).map((t) => t.id);
    this.onEvent({ type: 'bootstrap', slices: ids.length });
    // Commit time of entry `seq` (every slice scanned was committed by then): the lag `status` shows for them.
    // A log that keeps nothing (no consumer before this one) gives none: then they are at least as old as now.
    const time = seq === 0 ? 0 : ((await this.engine.readLog(seq - 1, 1).catch(() => []))[0]?.time ?? this.now());
    // Until it ends, the saved record keeps the old regions (or none), so a restart bootstraps again (and
    // `status` counts every slice record as backlog); each batch is claimed first, so that restart checks the
    // batch that was in flight.
    const during: ReplicaCheckpoint = cp ?? { version: CHECKPOINT_VERSION, seq, time, regions: [], pending: [], updated: 0, stats: this.counters };
    const failed: number[] = [];
    for (let i = 0; i < ids.length; i += BOOTSTRAP_BATCH) {
      const batch = ids.slice(i, i + BOOTSTRAP_BATCH);
      await this.saveCheckpoint(during, batch);
      failed.push(...(await this.replicateSlices(batch)));
      if (this.stopped()) {
        // Stopped: the slices of the batch left unfinished are pending (a restart checks what of them is in
        // place); the rest is found again by the next bootstrap, which this record still asks for.
        await this.saveCheckpoint({ ...during, pending: [...new Set([...during.pending, ...failed])] });
        this.signal?.throwIfAborted();
      }
    }
    const next: ReplicaCheckpoint = {
      version: CHECKPOINT_VERSION,
      // Never move back: entries between an older position and `seq` hold nothing the scan did not see.
      seq: Math.max(seq, cp?.seq ?? 0),
      time,
      regions: dests,
      pending: [...new Set([...(cp?.pending ?? []), ...failed])],
      updated: 0,
      stats: this.counters,
    };
    await this.saveCheckpoint(next);
    return next;
  }

  /** Copies what each slice lacks; marks the slices done; returns the ids that failed. */
  private async replicateSlices(ids: readonly number[]): Promise<number[]> {
    const recs = await this.meta.getSlices(ids);
    const jobs: SliceJob[] = [];
    for (const id of ids) {
      const s = recs.get(id);
      if (s === undefined) continue; // released (or never committed): nothing to copy
      const home = sliceHome(s.home, this.regions);
      const need = this.targetsOf(home, s.copies);
      if (need.length === 0) continue;
      const blocks = Math.ceil(s.size / this.format.blockBytes);
      jobs.push({ id, size: s.size, home, need, holders: [home, ...(s.copies ?? [])], remaining: blocks, failed: false, copiedBlocks: 0, copiedBytes: {} });
    }
    if (jobs.length === 0) return [];
    const B = this.format.blockBytes;
    const blocks: Array<{ job: SliceJob; index: number }> = [];
    for (const job of jobs) for (let index = 0; index * B < job.size; index++) blocks.push({ job, index });
    const queue = interleave(blocks, ({ job, index }) => Math.min(B, job.size - index * B) * 2 >= B);
    for (const { job, index } of queue) {
      this.inFlight.blocks++;
      this.inFlight.bytes += Math.min(B, job.size - index * B);
    }

    const marks: SliceJob[] = [];
    let marking: Promise<void> = Promise.resolve();
    let markFailure: { err: unknown } | undefined;
    let markedAt = this.now();
    // Marks are written one batch at a time, in order, while the workers go on copying.
    const flushMarks = (): Promise<void> => {
      markedAt = this.now();
      if (marks.length === 0) return marking;
      const batch = marks.splice(0, marks.length);
      marking = marking.then(async () => {
        if (markFailure !== undefined) return;
        let counted: ReplicaCheckpoint['stats'] | undefined;
        const gone = await this.meta.addSliceCopies(
          batch.map((j) => ({ id: j.id, regions: j.need })),
          (tx, goneIds) => {
            // The copies of these slices are counted in the transaction that marks them (a retried transaction
            // runs this again and starts over).
            const done = batch.filter((j) => !goneIds.includes(j.id));
            counted = addCopies(this.stats, done);
            if (this.saved !== undefined) putReplicaCheckpoint(tx, this.name, { ...this.saved, updated: this.now(), stats: counted });
          },
        );
        if (counted !== undefined) {
          this.counters = addCopies(this.counters, batch.filter((j) => !gone.includes(j.id)));
          if (this.saved !== undefined) this.saved = { ...this.saved, stats: counted };
        }
        for (const id of gone) {
          const job = jobs.find((j) => j.id === id);
          if (job !== undefined) await this.deleteCopies(job).catch((err: unknown) => this.onEvent({ type: 'error', error: err }));
        }
      }).catch((err: unknown) => {
        markFailure ??= { err };
      });
      return marking;
    };

    // Each worker holds at most one buffer; the pool lives as long as this batch, so an idle follower keeps none.
    const pool = new BufferPool(blockFrameBytes(B) + B);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < queue.length && !this.stopped()) {
        const { job, index } = queue[next++]!;
        const len = Math.min(B, job.size - index * B);
        try {
          if (!job.failed) await this.copyBlock(job, index, pool);
        } catch (err) {
          // A copy cut short by the signal is no error: the slice is left for the next run.
          if (!job.failed && !this.stopped()) {
            this.counters.errors++;
            this.onEvent({ type: 'error', key: blockKey(job.id, index, len), error: err });
          }
          job.failed = true;
        } finally {
          this.inFlight.blocks--;
          this.inFlight.bytes -= len;
        }
        if (--job.remaining === 0 && !job.failed) {
          marks.push(job);
          if (marks.length >= MARK_BATCH_MAX) await flushMarks();
          else if (this.now() - markedAt >= MARK_DELAY_MS_MAX) void flushMarks();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.parallel, queue.length) }, () => worker()));
    // Blocks never started (stopped by the signal) leave their slices unfinished.
    for (const { job, index } of queue.slice(next)) {
      this.inFlight.blocks--;
      this.inFlight.bytes -= Math.min(B, job.size - index * B);
    }
    await flushMarks();
    // Slices whose mark failed are copied but not recorded: the caller must not move past them.
    if (markFailure !== undefined) throw markFailure.err;
    return jobs.filter((j) => j.failed || j.remaining > 0).map((j) => j.id);
  }

  private store(region: string): ObjectStore {
    const s = this.stores.get(region);
    if (s === undefined) throw new Error(`assertion failed: no store for region ${region}`);
    return s;
  }

  /** Reads block `index` of a job's slice from a holder (verified), puts it to every needed region, verifies. */
  private async copyBlock(job: SliceJob, index: number, pool: BufferPool): Promise<void> {
    const len = Math.min(this.format.blockBytes, job.size - index * this.format.blockBytes);
    const key = blockKey(job.id, index, len);
    let need = job.need;
    const resumed = this.resumeIds.has(job.id);
    if (resumed || this.repairIds.has(job.id)) {
      // A copy already in place that verifies is kept, a bad or absent one is copied. Put by a killed run (whose
      // count was never recorded, its slice unmarked), it counts as a copy; found by a bucket scan, it does not.
      const present = await Promise.all(need.map(async (region) => {
        try {
          const o = await this.store(region).get(key, { signal: this.signal });
          decodeBlock(o, key, len);
          return o.length;
        } catch {
          return undefined;
        }
      }));
      let inPlace = false;
      if (resumed) {
        present.forEach((n, i) => {
          if (n === undefined) return;
          this.countCopy(job, need[i]!, n);
          inPlace = true;
        });
      }
      need = need.filter((_, i) => present[i] === undefined);
      if (need.length === 0) {
        if (inPlace) job.copiedBlocks++;
        return;
      }
    }
    const into = pool.take();
    try {
      let object: Buffer | undefined;
      let md5: Buffer | undefined;
      const failures: string[] = [];
      for (const holder of job.holders) {
        try {
          const digest: { md5?: Buffer | undefined } = {};
          const o = await this.store(holder).get(key, { signal: this.signal, into, digest });
          decodeBlock(o, key, len);
          object = o;
          md5 = digest.md5;
          break;
        } catch (err) {
          this.signal?.throwIfAborted();
          if (err instanceof CorruptBlockError) this.counters.badSources++;
          failures.push(`${holder}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      if (object === undefined) throw new Error(`block ${key}: no good source copy (${failures.join('; ')})`);
      const obj = object;
      await Promise.all(need.map(async (region) => {
        await this.bucket.take(obj.length, this.signal);
        await this.putVerified(region, key, obj, md5);
        this.countCopy(job, region, obj.length);
      }));
      job.copiedBlocks++;
    } finally {
      pool.give(into);
    }
  }

  /** The signal aborted: start nothing new. */
  private stopped(): boolean {
    return this.signal?.aborted === true;
  }

  private countCopy(job: SliceJob, region: string, bytes: number): void {
    const pair = `${job.home}>${region}`;
    job.copiedBytes[pair] = (job.copiedBytes[pair] ?? 0) + bytes;
  }

  /**
   * Puts a copy and proves it. `md5` is the source's stated digest of the object (GetOptions.digest): sent as
   * the copy's Content-MD5 instead of hashing the bytes again. The chain holds without trusting it: the bytes
   * in hand passed their block checksum, and a copy whose server digest is not `md5` is read back and compared.
   */
  private async putVerified(region: string, key: string, object: Buffer, md5?: Buffer): Promise<void> {
    const store = this.store(region);
    let last: unknown;
    for (let attempt = 1; attempt <= COPY_ATTEMPTS_MAX; attempt++) {
      // 'put': done when the server's digest of what it stored is ours; without that answer (a store that
      // cannot give one, an ETag that is no digest, one that differs) the copy is read back as with 'full'.
      if (this.verify === 'put' && canPutChecked(store)) {
        if ((await store.putChecked(key, object, { signal: this.signal, md5 })) === true) return;
      } else {
        await store.put(key, object, { signal: this.signal });
      }
      try {
        if (this.verify !== 'size') {
          const back = await store.get(key, { signal: this.signal });
          if (back.equals(object)) return;
          last = new CorruptBlockError(key, `the copy in ${region} read back ${back.length} bytes that differ from the ${object.length} put`);
        } else {
          const info = await store.head(key);
          if (info.size === object.length) return;
          last = new CorruptBlockError(key, `the copy in ${region} is ${info.size} bytes, ${object.length} were put`);
        }
      } catch (err) {
        if (!(err instanceof ObjectNotFoundError)) throw err;
        last = new CorruptBlockError(key, `the copy in ${region} is missing right after it was put`);
      }
      this.counters.verifyFailures++;
    }
    throw last;
  }

  /** Deletes the copies this replicator made of a slice that is gone everywhere else. */
  private async deleteCopies(job: SliceJob): Promise<void> {
    const keys = sliceBlockKeys(job.id, job.size, this.format.blockBytes);
    for (const region of job.need) {
      for (const key of keys) await this.store(region).delete(key);
    }
  }

  /**
   * Deletes released slices past the grace period in every bucket (DESIGN §4). Only a replicator that serves
   * every region does this (no --from/--to): a deletion must reach every bucket before its record goes.
   */
  async deleteReleased(): Promise<number> {
    if (this.graceMs === undefined || this.from !== undefined || this.to !== undefined) return 0;
    if ([...this.regions.regions.keys()].some((n) => !this.stores.has(n))) return 0;
    const r = await deleteReleasedSlices(this.meta, [...this.regions.regions.keys()].map((n) => this.store(n)), { graceMs: this.graceMs, now: this.now() });
    this.counters.deletedSlices += r.slices;
    if (r.slices > 0) this.onEvent({ type: 'deleted', slices: r.slices, bytes: r.bytes });
    return r.slices;
  }

  /**
   * `--once`: copies everything committed up to now, retrying failed slices until they succeed or no pass has
   * made progress for `stallMs`. Returns the slices still pending (0: all done).
   */
  async runOnce(options: { stallMs?: number; signal?: AbortSignal } = {}): Promise<PassResult> {
    const target = await this.engine.lastSeq();
    const stallMs = options.stallMs ?? 60_000;
    let progressAt = this.now();
    let backoffMs = 100;
    const total = { slicesCopied: 0, blocksCopied: 0 };
    const add = (r: PassResult): PassResult => {
      total.slicesCopied += r.slicesCopied;
      total.blocksCopied += r.blocksCopied;
      return { ...r, ...total };
    };
    for (;;) {
      options.signal?.throwIfAborted();
      const p = await this.pass(target);
      const r = add(p);
      // Done: step over the entries our own marks added, so the position ends at the log's end.
      if (r.pending === 0 && r.seq >= target) return add(await this.pass(await this.engine.lastSeq()));
      if (p.blocksCopied > 0 || p.slicesCopied > 0) {
        progressAt = this.now();
        backoffMs = 100;
      }
      if (this.now() - progressAt > stallMs) return r;
      await sleep(backoffMs, options.signal);
      backoffMs = Math.min(5000, backoffMs * 2);
    }
  }

  /** Follows the log until `signal` aborts: a pass, then a pause of `pollMs` when it found nothing to do. */
  async run(options: { signal: AbortSignal; pollMs?: number }): Promise<void> {
    const pollMs = options.pollMs ?? 500;
    let backoffMs = pollMs;
    while (!options.signal.aborted) {
      try {
        const r = await this.pass();
        backoffMs = pollMs;
        await sleep(r.blocksCopied > 0 ? 0 : pollMs, options.signal).catch(() => undefined);
      } catch (err) {
        if (options.signal.aborted) break;
        this.counters.errors++;
        this.onEvent({ type: 'error', error: err });
        await sleep(backoffMs, options.signal).catch(() => undefined);
        backoffMs = Math.min(30_000, backoffMs * 2);
      }
    }
  }

  /**
   * `--scan`: lists every bucket, and for each live slice copies the blocks a destination lacks (or holds
   * with a size other than the source's), then records the copies that are complete. With `check` it also
   * reads every copy the listings show and decodes it against its key (checksums, length, identity), so a
   * damaged copy of the right size, or a well-formed block of another key, is copied again from a good one.
   * Bootstrap or repair; the changelog position is left alone.
   */
  async scanBuckets(options: { check?: boolean } = {}): Promise<{ listed: number; checked: number; bad: number; copied: number; failed: number[] }> {
    await this.refreshRegions();
    await this.checkpoint();
    const listings = new Map<string, Map<string, number>>();
    let listed = 0;
    for (const name of this.regions.regions.keys()) {
      const m = new Map<string, number>();
      for await (const o of listAll(this.store(name), CHUNKS_PREFIX)) {
        if (parseBlockKey(o.key) !== undefined) m.set(o.key, o.size);
      }
      listed += m.size;
      listings.set(name, m);
    }
    const slices = await this.meta.listSlices();
    const B = this.format.blockBytes;
    const copiedBefore = this.counters.copiedBlocks;
    /** Per slice: the destinations whose listing shows every block at the source's size. */
    const listedWhole = new Map<number, string[]>();
    const lacking = new Set<number>();
    for (const [id, s] of slices) {
      const home = sliceHome(s.home, this.regions);
      if (this.from !== undefined && !this.from.has(home)) continue;
      const homeList = listings.get(home);
      if (homeList === undefined) continue;
      const whole: string[] = [];
      for (const region of this.destinations()) {
        if (region === home) continue;
        const list = listings.get(region)!;
        let ok = true;
        for (const key of sliceBlockKeys(id, s.size, B)) {
          const size = list.get(key);
          if (size === undefined || size !== homeList.get(key)) ok = false;
        }
        if (ok) whole.push(region);
        else lacking.add(id);
      }
      listedWhole.set(id, whole);
    }
    // Copies the listings show whole, read and decoded when asked: bad ones join what is lacking.
    const bad = new Map<number, Set<string>>();
    /** Home copies found bad: copied back from a replica that verifies, once the replicas are repaired. */
    const homeBad: Array<{ id: number; region: string; key: string; len: number }> = [];
    let checked = 0;
    let badCopies = 0;
    if (options.check === true) {
      const reads: Array<{ id: number; region: string; key: string; len: number }> = [];
      const dests = new Set(this.destinations());
      for (const [id, whole] of listedWhole) {
        const { size, home } = slices.get(id)!;
        // The home copy too, when this replicator may write there: a bad one is copied back from a replica.
        const homeRegion = sliceHome(home, this.regions);
        for (const region of dests.has(homeRegion) ? [homeRegion, ...whole] : whole) {
          for (let b = 0; b * B < size; b++) {
            const len = Math.min(B, size - b * B);
            reads.push({ id, region, key: blockKey(id, b, len), len });
          }
        }
      }
      let next = 0;
      const reader = async (): Promise<void> => {
        while (next < reads.length && !this.stopped()) {
          const { id, region, key, len } = reads[next++]!;
          try {
            decodeBlock(await this.store(region).get(key), key, len);
          } catch (err) {
            if (!(err instanceof CorruptBlockError) && !(err instanceof ObjectNotFoundError)) throw err;
            badCopies++;
            this.onEvent({ type: 'error', key, region, error: err });
            if (region === sliceHome(slices.get(id)!.home, this.regions)) {
              homeBad.push({ id, region, key, len });
              continue;
            }
            let set = bad.get(id);
            if (set === undefined) bad.set(id, (set = new Set()));
            set.add(region);
          } finally {
            checked++;
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.parallel, reads.length) }, () => reader()));
      this.signal?.throwIfAborted();
    }
    const complete: Array<{ id: number; regions: string[] }> = [];
    const good = new Map<number, string[]>();
    for (const [id, whole] of listedWhole) {
      const g = whole.filter((r) => bad.get(id)?.has(r) !== true);
      good.set(id, g);
      if (g.length > 0) complete.push({ id, regions: g });
      if (g.length < whole.length) lacking.add(id);
    }
    const repair = [...lacking];
    // Records that claim a copy the bucket lacks (or holds bad) are corrected first, so the copy is made and
    // readers stop asking that bucket first.
    await this.forgetCopies(repair, good);
    for (let i = 0; i < complete.length; i += MARK_BATCH_MAX) {
      const batch = complete.slice(i, i + MARK_BATCH_MAX);
      // Copies a killed run made of the slices it had claimed were never counted (their slices were not
      // marked): they count now, with the mark, like the ones a resumed pass finds in place.
      const found: SliceJob[] = [];
      for (const { id, regions } of batch) {
        if (!this.resumeIds.has(id)) continue;
        const s = slices.get(id)!;
        const job: SliceJob = { id, size: s.size, home: sliceHome(s.home, this.regions), need: [], holders: [], remaining: 0, failed: false, copiedBlocks: 0, copiedBytes: {} };
        for (const region of regions) {
          if ((s.copies ?? []).includes(region)) continue;
          for (const key of sliceBlockKeys(id, s.size, B)) this.countCopy(job, region, listings.get(region)?.get(key) ?? 0);
        }
        if (Object.keys(job.copiedBytes).length > 0) {
          job.copiedBlocks = Math.ceil(s.size / B);
          found.push(job);
        }
      }
      let counted: ReplicaCounters | undefined;
      await this.meta.addSliceCopies(batch, (tx) => {
        if (found.length === 0) return;
        counted = addCopies(this.stats, found);
        if (this.saved !== undefined) putReplicaCheckpoint(tx, this.name, { ...this.saved, updated: this.now(), stats: counted });
      });
      if (counted !== undefined) {
        this.counters = addCopies(this.counters, found);
        if (this.saved !== undefined) this.saved = { ...this.saved, stats: counted };
      }
    }
    // Only the blocks that are absent or bad in a destination are copied; the good ones stay.
    for (const id of repair) this.repairIds.add(id);
    let failed: number[];
    try {
      failed = await this.replicateSlices(repair);
    } finally {
      this.repairIds.clear();
    }
    this.signal?.throwIfAborted();
    if (homeBad.length > 0) {
      const recs = await this.meta.getSlices([...new Set(homeBad.map((h) => h.id))]);
      for (const { id, region, key, len } of homeBad) {
        const holders = (recs.get(id)?.copies ?? []).filter((r) => this.stores.has(r));
        let done = false;
        for (const holder of holders) {
          try {
            const o = await this.store(holder).get(key, { signal: this.signal });
            decodeBlock(o, key, len);
            await this.bucket.take(o.length, this.signal);
            await this.putVerified(region, key, o);
            // Not a slice mark: counted at once, persisted with the next checkpoint.
            this.counters.copiedBytes[`${holder}>${region}`] = (this.counters.copiedBytes[`${holder}>${region}`] ?? 0) + o.length;
            this.counters.copiedBlocks++;
            done = true;
            break;
          } catch (err) {
            this.signal?.throwIfAborted();
            this.onEvent({ type: 'error', key, region: holder, error: err });
          }
        }
        if (!done) {
          this.counters.errors++;
          this.onEvent({ type: 'error', key, region, error: new Error(`block ${key}: the home copy in ${region} is bad and no replica verifies`) });
          if (!failed.includes(id)) failed.push(id);
        }
      }
    }
    return { listed, checked, bad: badCopies, copied: this.counters.copiedBlocks - copiedBefore, failed };
  }

  /**
   * Removes from slice records the destinations the scan found lacking or bad: every destination of this
   * replicator but those in `good` (regions it does not serve are left alone).
   */
  private async forgetCopies(ids: readonly number[], good: ReadonlyMap<number, readonly string[]>): Promise<void> {
    const dests = new Set(this.destinations());
    for (let i = 0; i < ids.length; i += MARK_BATCH_MAX) {
      const page = ids.slice(i, i + MARK_BATCH_MAX);
      await removeSliceCopies(this.engine, page, (id, s) => s.copies.filter((region) => !dests.has(region) || (good.get(id) ?? []).includes(region)));
    }
  }

  /** Closes the buckets this replicator opened itself. */
  async close(): Promise<void> {
    for (const name of this.opened) await this.stores.get(name)?.close();
    this.opened.clear();
  }
}

/**
 * `items` reordered so that the big ones are spread evenly among the others, each group in its own order. A
 * small object costs the servers mostly per request, a big one mostly per byte: mixed, both kinds of work
 * overlap (and the two servers stay busy) instead of a phase of small requests and then one of large bodies,
 * which is how blocks come when small and large files were written together (large slices take the highest
 * ids). Measured with 1,000 × 64 KiB and 64 × 4 MiB blocks between two s3rver servers: see bench/replicate.ts.
 */
export function interleave<T>(items: readonly T[], big: (item: T) => boolean): T[] {
  const large = items.filter(big);
  if (large.length === 0 || large.length === items.length) return [...items];
  const small = items.filter((x) => !big(x));
  const out: T[] = [];
  let l = 0;
  let s = 0;
  for (let i = 0; i < items.length; i++) {
    // Take a big one whenever the big ones fall behind their share of the positions so far.
    if (l < large.length && (s >= small.length || l * items.length <= i * large.length)) out.push(large[l++]!);
    else out.push(small[s++]!);
  }
  return out;
}

export interface ReplicationStatus {
  name: string;
  seq: number;
  lastSeq: number;
  /** Seconds between the oldest commit not yet replicated and now (0 when caught up). */
  lagSeconds: number;
  backlog: { slices: number; blocks: number; bytes: number; /** true when the log was read only partly */ partial: boolean };
  pending: number;
  updated: number;
  stats: ReplicaCounters;
}

/**
 * What each replicator still has to do, measured from the metadata: what the slice records say is not yet
 * copied, whenever it was written. Once a replicator has bootstrapped, that is the slices committed after its
 * position (up to BACKLOG_ENTRIES_MAX log entries) plus its pending ones; while it bootstraps (its checkpoint
 * does not cover every destination yet) or after the log was trimmed past it, every slice record is read.
 * The lag is that of the oldest slice still to copy: its first log entry's commit time, else (written before
 * the position) the checkpoint's time, when it is known.
 */
export async function replicationStatus(meta: Meta, now = Date.now()): Promise<ReplicationStatus[]> {
  const engine = meta.engine;
  const format = await reloadFormat(engine);
  const regions = volumeRegions(format);
  const lastSeq = await engine.lastSeq();
  const out: ReplicationStatus[] = [];
  let all: Map<number, SliceRefRec> | undefined;
  for (const [name, cp] of await listCheckpoints(engine)) {
    const [fromPart, toPart] = name.split('>');
    const from = fromPart === '*' || fromPart === undefined ? undefined : new Set(fromPart.split(','));
    const to = toPart === '*' || toPart === undefined ? undefined : new Set(toPart.split(','));
    const ids = new Set<number>([...cp.pending, ...(cp.claimed ?? [])]);
    /** Commit time of the first entry naming each slice: the lag is that of the oldest slice still to copy. */
    const firstSeen = new Map<number, number>();
    let partial = false;
    // Bootstrapping: the slices at or before its position are not all copied yet.
    let everySlice = [...regions.regions.keys()].some((r) => (to === undefined || to.has(r)) && !cp.regions.includes(r));
    if (cp.seq < lastSeq) {
      let after = cp.seq;
      try {
        while (after < lastSeq) {
          const entries = await engine.readLog(after, Math.min(1000, BACKLOG_ENTRIES_MAX - (after - cp.seq)));
          if (entries.length === 0) break;
          for (const e of entries) {
            for (const [id] of slicesSet(e.ops)) {
              ids.add(id);
              if (!firstSeen.has(id)) firstSeen.set(id, e.time);
            }
          }
          after = entries[entries.length - 1]!.seq;
          if (after - cp.seq >= BACKLOG_ENTRIES_MAX) {
            partial = after < lastSeq;
            break;
          }
        }
      } catch (err) {
        if (!(err instanceof LogTrimmedError)) throw err;
        // Behind the retention bound: it re-bootstraps from the slice records, so they are the backlog.
        everySlice = true;
      }
    }
    let recs: Map<number, SliceRefRec | undefined>;
    if (everySlice) {
      all ??= await meta.listSlices();
      recs = all;
      partial = false;
    } else {
      recs = await meta.getSlices([...ids]);
    }
    const backlog = { slices: 0, blocks: 0, bytes: 0, partial };
    let lagSeconds = 0;
    for (const [id, s] of recs) {
      if (s === undefined) continue;
      const home = sliceHome(s.home, regions);
      if (from !== undefined && !from.has(home)) continue;
      const have = new Set(s.copies ?? []);
      const need = [...regions.regions.keys()].filter((r) => r !== home && !have.has(r) && (to === undefined || to.has(r)));
      if (need.length === 0) continue;
      backlog.slices++;
      // A slice committed at or before the position: at least as old as the position's commit.
      const since = firstSeen.get(id) ?? (cp.time > 0 ? cp.time : now);
      lagSeconds = Math.max(lagSeconds, (now - since) / 1000);
      backlog.blocks += Math.ceil(s.size / format.blockBytes) * need.length;
      backlog.bytes += s.size * need.length;
    }
    out.push({ name, seq: cp.seq, lastSeq, lagSeconds, backlog, pending: cp.pending.length, updated: cp.updated, stats: cp.stats });
  }
  return out;
}

/** What no replicator has copied yet, from every slice record (for a volume whose replicator never ran). */
export async function unreplicatedBacklog(meta: Meta): Promise<{ slices: number; blocks: number; bytes: number }> {
  const format = await reloadFormat(meta.engine);
  const regions = volumeRegions(format);
  const backlog = { slices: 0, blocks: 0, bytes: 0 };
  if (regions.regions.size < 2) return backlog;
  for (const s of (await meta.listSlices()).values()) {
    const home = sliceHome(s.home, regions);
    const have = new Set(s.copies ?? []);
    const need = [...regions.regions.keys()].filter((r) => r !== home && !have.has(r)).length;
    if (need === 0) continue;
    backlog.slices++;
    backlog.blocks += Math.ceil(s.size / format.blockBytes) * need;
    backlog.bytes += s.size * need;
  }
  return backlog;
}

/**
 * Buffers of one size for objects read only to be copied: a fresh 4 MiB buffer per block costs more in page
 * faults and GC than moving its bytes (measured: about half of the client's CPU of a copy went to the copy
 * into new buffers and to hashing). Given back after the copy is put and proven; never shrinks while in use.
 */
class BufferPool {
  private readonly free: Buffer[] = [];
  private readonly bytes: number;

  constructor(bytes: number) {
    this.bytes = bytes;
  }

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.bytes);
  }

  give(b: Buffer): void {
    this.free.push(b);
  }
}
