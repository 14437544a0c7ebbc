/**
 * Metadata mirrors (DESIGN §7): a replica engine in a far region kept equal to a prefix of the primary's
 * history by one-way log shipping, so that the region's clients answer lookups, stats and listings locally.
 *
 *   primary engine ──readLog(applied, BATCH)──▶ follower ──applyLog(batch)──▶ replica engine
 *        ▲  consumer 'mirror:<region>' at `applied`      (one replica transaction per batch, which also
 *        └──────── advanceConsumer, report ◀───────────    appends the batch to the replica's own log
 *                                                          under the same seqs: replica.lastSeq() = applied)
 *
 * States of the follower:
 *
 *   start ─▶ identity ok, same volume and region, replica.lastSeq() <= primary's ─▶ follow
 *      │                                                                              │ LogTrimmedError
 *      └─▶ otherwise ─▶ bootstrap: register consumer at the primary's newest seq L,   │ (fell behind the
 *                        snapshot at S >= L (spooled to a file), replica.restore(S),  │  retention bound)
 *                        identity written, consumer advanced to S ─▶ follow ◀─────────┘ ─▶ bootstrap
 *
 * Invariants. The replica always holds the primary's state at some sequence: a batch is applied in one
 * transaction, and the entries are redo records of resulting state, in order. During a bootstrap the replica
 * holds no identity (clients refuse to open it) until the restore is complete. The follower keeps no state of
 * its own: its position is the replica's lastSeq(), so a SIGKILL at any point resumes from what the replica
 * committed, and a restarted replica is asked again.
 *
 * Pipelining: the next batch is read from the primary while the current one is applied, so a WAN round trip
 * is paid per batch (BATCH_ENTRIES entries), not per entry, and a follower that keeps up polls again at once
 * after a batch (pollMs only after an empty answer): lag is about one round trip, not a poll interval.
 */

import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { UsageError } from '../errors.js';
import { ConsumerNotFoundError, LogTrimmedError, type LogEntry, type LogOp, type MetaEngine } from '../meta/engine.js';
import { loadFormat } from '../meta/meta.js';
import { FIRST_EPOCH, epochOf, isDemotion, readDemotion, readEpoch } from '../meta/epoch.js';
import { clearMirrorIdentity, listMirrorReports, mirrorConsumer, readMirrorIdentity, writeMirrorIdentity, writeMirrorReport, writeMirrorSeen, type MirrorReport } from '../meta/mirror.js';
import { openMetaEngine } from '../meta/registry.js';
import type { FormatRec, MirrorIdentity } from '../meta/types.js';
import { sleep } from '../util/sleep.js';
import { maskUrl } from '../util/url.js';
import { volumeRegions } from './regions.js';

/** Entries read from the primary per round trip and applied per replica transaction. */
export const BATCH_ENTRIES = 1000;
/** Pause after a poll that found nothing new, ms (a poll that found entries is followed at once). */
export const POLL_MS_DEFAULT = 5;
/** How often the follower moves its consumer position and report on the primary, and prunes the replica's log. */
export const REPORT_MS_DEFAULT = 1000;
/** Backoff after a failed step (primary or replica unreachable), ms. */
const BACKOFF_MS_MIN = 100;
const BACKOFF_MS_MAX = 5000;
/** Demoted primaries followed in a row to find the current one. */
const REPOINT_HOPS_MAX = 8;

export type MirrorEvent =
  | { type: 'bootstrap'; seq: number; records: number; ms: number; why: string }
  | { type: 'applied'; from: number; to: number; entries: number }
  | { type: 'error'; error: unknown }
  | { type: 'repoint'; epoch: number; region: string; meta: string; why: string };

export interface MirrorStats {
  region: string;
  /** The last primary seq the replica applied, and its commit time (0: unknown). */
  applied: number;
  appliedTime: number;
  /** The primary's newest seq as last seen. */
  primaryLast: number;
  bootstraps: number;
  entriesApplied: number;
  batches: number;
  errors: number;
  lastError: string | undefined;
}

export interface MirrorOptions {
  primary: MetaEngine;
  replica: MetaEngine;
  /** The mirror region (whose clients open the replica). */
  region: string;
  batchEntries?: number;
  pollMs?: number;
  reportMs?: number;
  onEvent?: (e: MirrorEvent) => void;
  now?: () => number;
  /** The primary's metadata URL: kept in the replica's identity (for `ferry mirror promote`). */
  primaryUrl?: string;
  /** Opens a metadata URL (a new primary after a failover, a region's replica when probing). Default openMetaEngine. */
  open?: (url: string) => Promise<MetaEngine>;
}

/** The follower of the replica that a promotion turned (or is turning) into the primary: it must stop. */
export class PromotedError extends UsageError {
  constructor(region: string, epoch: number) {
    super(`the replica of region '${region}' was promoted to primary of epoch ${epoch}: this follower stops (it must not write to a primary)`);
  }
}

export class MirrorFollower {
  readonly region: string;
  readonly consumer: string;
  readonly stats: MirrorStats;
  private primary: MetaEngine;
  private primaryUrl: string | undefined;
  private readonly replica: MetaEngine;
  private readonly open: (url: string) => Promise<MetaEngine>;
  /** Primaries this follower opened itself (after a re-point): closed by close(). */
  private readonly owned: MetaEngine[] = [];
  /** Bumped at each re-point (once() recomputes its target). */
  private switches = 0;
  private readonly batch: number;
  private readonly pollMs: number;
  private readonly reportMs: number;
  private readonly onEvent: (e: MirrorEvent) => void;
  private readonly now: () => number;
  private format: FormatRec | undefined;
  private ready = false;
  private lastReport = 0;

  constructor(o: MirrorOptions) {
    this.primary = o.primary;
    this.primaryUrl = o.primaryUrl;
    this.open = o.open ?? ((url) => openMetaEngine(url));
    this.replica = o.replica;
    this.region = o.region;
    this.consumer = mirrorConsumer(o.region);
    this.batch = o.batchEntries ?? BATCH_ENTRIES;
    this.pollMs = o.pollMs ?? POLL_MS_DEFAULT;
    this.reportMs = o.reportMs ?? REPORT_MS_DEFAULT;
    this.onEvent = o.onEvent ?? (() => undefined);
    this.now = o.now ?? Date.now;
    this.stats = { region: o.region, applied: 0, appliedTime: 0, primaryLast: 0, bootstraps: 0, entriesApplied: 0, batches: 0, errors: 0, lastError: undefined };
  }

  /** Checks the replica and bootstraps it when it does not hold a usable prefix of the primary's history. */
  async prepare(): Promise<void> {
    const promoted = await readEpoch(this.replica);
    if (promoted?.region === this.region) throw new PromotedError(this.region, promoted.epoch);
    let format: FormatRec | undefined;
    try {
      format = await loadFormat(this.primary);
    } catch (err) {
      // The primary cannot be reached: it may have been lost and a mirror promoted with --force.
      if (!(await this.probe())) throw err;
      format = await loadFormat(this.primary);
    }
    // Follow whichever is primary: a demoted one names its successor (a chain of promotions, at most a few).
    for (let hops = 0; hops < REPOINT_HOPS_MAX; hops++) {
      const d = await readDemotion(this.primary);
      if (d === undefined) break;
      if (d.region === this.region) throw new PromotedError(this.region, d.epoch);
      await this.repoint(d.meta, d.epoch, d.region, `the primary was demoted by epoch ${d.epoch}`);
      format = await loadFormat(this.primary);
    }
    if (format === undefined) throw new UsageError(`no volume in ${this.primary.description}`);
    const r = volumeRegions(format);
    const rec = r.all.get(this.region);
    if (rec?.replica === undefined) {
      throw new UsageError(`volume '${format.name}' has no mirror region '${this.region}' (add one with "ferry region add META ${this.region} [BUCKET] --replica REPLICA-META")`);
    }
    this.format = format;
    const why = await this.bootstrapReason(format);
    if (why !== undefined) await this.bootstrap(why);
    else {
      this.stats.applied = await this.replica.lastSeq();
      await this.primary.registerConsumer(this.consumer, this.stats.applied);
    }
    this.ready = true;
  }

  private async bootstrapReason(format: FormatRec): Promise<string | undefined> {
    const id = await readMirrorIdentity(this.replica);
    if (id === undefined) return 'the replica holds no mirror (empty, or a bootstrap was interrupted)';
    if (id.volume !== format.uuid) return `the replica mirrors another volume (${id.name}, ${id.volume})`;
    if (id.region !== this.region) return `the replica serves region '${id.region}'`;
    // After a failover the replica's position may not be in the new primary's history (the old primary may
    // have committed past what the new one applied): always start again from the new primary's snapshot.
    const epoch = epochOf(await readEpoch(this.primary));
    if ((id.epoch ?? FIRST_EPOCH) !== epoch) return `the primary is of epoch ${epoch}, the replica followed epoch ${id.epoch ?? FIRST_EPOCH}`;
    const [mine, theirs] = await Promise.all([this.replica.lastSeq(), this.primary.logBounds()]);
    if (mine > theirs.last) return `the replica is ahead of the primary (${mine} > ${theirs.last}): the primary was reset or restored`;
    if (mine < theirs.floor) return `the primary's log no longer holds entry ${mine + 1} (kept after ${theirs.floor})`;
    return undefined;
  }

  /**
   * Copies the primary's state at one sequence into the replica: registers first (so nothing after the
   * snapshot can be trimmed meanwhile), spools the snapshot to a file (restore needs its seq up front), then
   * restores, writes the identity last and advances.
   */
  private async bootstrap(why: string): Promise<void> {
    const t0 = this.now();
    const format = this.format!;
    const { last } = await this.primary.logBounds();
    await this.primary.registerConsumer(this.consumer, last);
    await clearMirrorIdentity(this.replica).catch(() => undefined);
    const dir = await mkdtemp(path.join(tmpdir(), 'ferry-mirror-'));
    try {
      const file = path.join(dir, 'snapshot.jsonl');
      const w = createWriteStream(file);
      let records = 0;
      const { seq } = await this.primary.snapshot(async (op) => {
        records++;
        if (!w.write(JSON.stringify(op) + '\n')) await once(w, 'drain');
      });
      w.end();
      await once(w, 'finish');
      await this.replica.restore(readSpool(file), seq);
      const epoch = epochOf(await readEpoch(this.primary));
      const id: MirrorIdentity = {
        volume: format.uuid,
        name: format.name,
        region: this.region,
        primary: volumeRegions(format).primary,
        bootstrapped: this.now(),
        epoch,
        ...(this.primaryUrl === undefined ? {} : { primaryMeta: this.primaryUrl }),
      };
      await writeMirrorIdentity(this.replica, id);
      await this.primary.advanceConsumer(this.consumer, seq);
      this.stats.applied = seq;
      this.stats.appliedTime = 0;
      this.stats.bootstraps++;
      this.onEvent({ type: 'bootstrap', seq, records, ms: this.now() - t0, why });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * Applies what the primary has after `applied`, batch by batch, until a read finds nothing new. Returns the
   * entries applied. A LogTrimmedError (the follower fell behind the retention bound) re-bootstraps.
   */
  async catchUp(signal?: AbortSignal): Promise<number> {
    if (!this.ready) await this.prepare();
    let applied = 0;
    let next: Promise<LogEntry[]> = this.read(this.stats.applied);
    try {
      for (;;) {
        signal?.throwIfAborted();
        let entries: LogEntry[];
        try {
          entries = await next;
        } catch (err) {
          if (!(err instanceof LogTrimmedError)) throw err;
          await this.bootstrap(`fell behind the primary's retention bound (${err.message})`);
          next = this.read(this.stats.applied);
          continue;
        }
        if (entries.length === 0) break;
        // A demotion is the old primary's last entry: apply what came before it, never the demotion itself (the
        // replica of the promoted region must not be fenced; the others re-point and bootstrap).
        const cut = entries.findIndex(isDemotion);
        if (cut >= 0) {
          next.catch(() => undefined);
          if (cut > 0) await this.apply(entries.slice(0, cut));
          applied += cut;
          this.ready = false;
          await this.prepare();
          next = this.read(this.stats.applied);
          continue;
        }
        const first = entries[0]!.seq;
        const lastEntry = entries[entries.length - 1]!;
        // Read the next batch while this one is applied: one round trip per batch, overlapped.
        next = this.read(lastEntry.seq);
        await this.apply(entries);
        applied += entries.length;
        this.onEvent({ type: 'applied', from: first, to: lastEntry.seq, entries: entries.length });
        if (entries.length < this.batch) {
          // A short batch was the primary's newest: the read in flight most likely finds nothing.
          const more = await next;
          if (more.length === 0) break;
          next = Promise.resolve(more);
        }
      }
    } finally {
      next.catch(() => undefined);
    }
    await this.maybeReport(false);
    return applied;
  }

  private async apply(entries: LogEntry[]): Promise<void> {
    const lastEntry = entries[entries.length - 1]!;
    try {
      await this.replica.applyLog(entries);
    } catch (err) {
      // A gap because the replica was promoted under this follower: say so, rather than the gap.
      const promoted = await readEpoch(this.replica).catch(() => undefined);
      if (promoted?.region === this.region) throw new PromotedError(this.region, promoted.epoch);
      throw err;
    }
    this.stats.applied = lastEntry.seq;
    this.stats.appliedTime = lastEntry.time;
    this.stats.primaryLast = Math.max(this.stats.primaryLast, lastEntry.seq);
    this.stats.entriesApplied += entries.length;
    this.stats.batches++;
  }

  /** Follows the primary at `url` from now on (opened here, closed by close()). */
  private async repoint(url: string, epoch: number, region: string, why: string): Promise<void> {
    const next = await this.open(url);
    try {
      const f = await loadFormat(next);
      const id = await readMirrorIdentity(this.replica);
      if (f === undefined || (id !== undefined && f.uuid !== id.volume)) throw new UsageError(`the new primary ${maskUrl(url)} does not hold this volume`);
    } catch (err) {
      await next.close();
      throw err;
    }
    this.owned.push(next);
    this.primary = next;
    this.primaryUrl = url;
    this.switches++;
    this.onEvent({ type: 'repoint', epoch, region, meta: maskUrl(url), why });
  }

  /**
   * The primary is unreachable: looks through the volume's other regions' replicas (from the replica's own
   * format record) for one promoted to a newer epoch than the replica follows, and re-points there. True when
   * it found one.
   */
  private async probe(): Promise<boolean> {
    const [format, id] = await Promise.all([loadFormat(this.replica), readMirrorIdentity(this.replica)]);
    if (format === undefined || id === undefined) return false;
    const mine = id.epoch ?? FIRST_EPOCH;
    for (const [region, rec] of volumeRegions(format).all) {
      if (region === this.region || rec.replica === undefined) continue;
      let engine: MetaEngine | undefined;
      try {
        engine = await this.open(rec.replica);
        const e = await readEpoch(engine);
        if (e === undefined || e.region !== region || e.epoch <= mine || (await readMirrorIdentity(engine)) !== undefined) continue;
      } catch {
        continue;
      } finally {
        await engine?.close();
      }
      await this.repoint(rec.replica, mine, region, `the primary is unreachable and region '${region}' was promoted`);
      return true;
    }
    return false;
  }

  /** Closes the primaries this follower opened after re-pointing (not the one it was given). Idempotent. */
  async close(): Promise<void> {
    for (const e of this.owned.splice(0)) await e.close();
  }

  /** The primary followed now (changes on a re-point). */
  get primaryEngine(): MetaEngine {
    return this.primary;
  }

  private read(after: number): Promise<LogEntry[]> {
    const p = this.primary.readLog(after, this.batch);
    p.catch(() => undefined); // awaited by the loop; this keeps a prefetch that is dropped from being unhandled
    return p;
  }

  /** Catches up to the primary's newest seq as of this call (and what came meanwhile), then reports. */
  async once(signal?: AbortSignal): Promise<MirrorStats> {
    if (!this.ready) await this.prepare();
    for (;;) {
      const switches = this.switches;
      const target = await this.primary.lastSeq();
      this.stats.primaryLast = Math.max(this.stats.primaryLast, target);
      while (this.stats.applied < target && switches === this.switches) {
        signal?.throwIfAborted();
        await this.catchUp(signal);
      }
      if (switches === this.switches) break;
    }
    await this.maybeReport(true);
    return { ...this.stats };
  }

  /** Follows until the signal aborts; rides out an unreachable primary or replica with a capped backoff. */
  async run(signal: AbortSignal): Promise<void> {
    let backoff = BACKOFF_MS_MIN;
    while (!signal.aborted) {
      try {
        const n = await this.catchUp(signal);
        backoff = BACKOFF_MS_MIN;
        if (this.stats.lastError !== undefined) {
          this.stats.lastError = undefined;
          await this.maybeReport(true);
        }
        if (n === 0) await sleep(this.pollMs, signal).catch(() => undefined);
      } catch (err) {
        if (signal.aborted) break;
        if (err instanceof PromotedError) throw err;
        this.stats.errors++;
        this.stats.lastError = err instanceof Error ? err.message : String(err);
        this.onEvent({ type: 'error', error: err });
        // Whatever failed (the primary, the replica, a batch), the next step starts from the replica's lastSeq.
        this.ready = false;
        await this.maybeReport(true).catch(() => undefined);
        await sleep(backoff, signal).catch(() => undefined);
        backoff = Math.min(BACKOFF_MS_MAX, backoff * 2);
      }
    }
    await this.maybeReport(true).catch(() => undefined);
  }

  /** Moves the consumer position, writes the report and prunes the replica's own log, at most every reportMs. */
  private async maybeReport(force: boolean): Promise<void> {
    const now = this.now();
    if (!force && now - this.lastReport < this.reportMs) return;
    this.lastReport = now;
    const s = this.stats;
    if (this.ready) {
      try {
        await this.primary.advanceConsumer(this.consumer, s.applied);
      } catch (err) {
        if (!(err instanceof ConsumerNotFoundError)) throw err;
        // Removed by an administrator (ferry config --remove-consumer): claim the log again from here.
        await this.primary.registerConsumer(this.consumer, s.applied);
      }
      // The replica's log is a copy nobody consumes: it needs none of it.
      await this.replica.pruneLog();
      await writeMirrorSeen(this.replica, { primaryLast: s.primaryLast, at: now });
    }
    const report: MirrorReport = {
      region: this.region,
      applied: s.applied,
      appliedTime: s.appliedTime,
      updated: now,
      bootstraps: s.bootstraps,
      ...(s.lastError === undefined ? {} : { error: s.lastError, errorTime: now }),
    };
    await writeMirrorReport(this.primary, report);
  }
}

async function* readSpool(file: string): AsyncGenerator<LogOp> {
  const rl = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  for await (const line of rl) if (line !== '') yield JSON.parse(line) as LogOp;
}

/**
 * Checks a replica URL for `region add --replica`: it must open (a SQLite file is created), and hold nothing,
 * or a mirror of this volume for this region, unless `force` (the follower then replaces what it holds).
 */
export async function prepareReplica(url: string, format: FormatRec, region: string, force: boolean): Promise<void> {
  let engine: MetaEngine;
  try {
    engine = await openMetaEngine(url, { create: true });
  } catch (err) {
    throw new UsageError(`cannot use replica ${maskUrl(url)}: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    const held = await loadFormat(engine);
    if (held === undefined || force) return;
    const id = await readMirrorIdentity(engine);
    if (id !== undefined && id.volume === format.uuid && id.region === region) return;
    throw new UsageError(
      `replica ${maskUrl(url)} already holds volume '${held.name}'${id === undefined ? '' : ` (a mirror for region '${id.region}')`}; use an empty one, or --force to replace it`,
    );
  } finally {
    await engine.close();
  }
}

// ---------------------------------------------------------------- verify

/** A record's identity in digests: kind, part and key. */
const recordId = (op: LogOp): string => JSON.stringify([op[0], op[1], op[2]]);
const digest = (value: unknown): string => createHash('sha256').update(JSON.stringify(value)).digest('base64').slice(0, 22);

export interface VerifyResult {
  /** The sequence both sides were compared at (the primary's snapshot). */
  seq: number;
  /** The replica's applied sequence when its snapshot was taken. */
  replicaSeq: number;
  records: number;
  /** One line per differing record. */
  differences: string[];
}

/**
 * Compares the replica with the primary without stopping either: the replica's snapshot at R, then the
 * primary's at P >= R; the primary's log entries (R, P] are applied to the replica's digests, which must then
 * equal the primary's. A difference means the replica's state at R was not the primary's state at R. Memory:
 * one short digest per record.
 */
export async function verifyMirror(primary: MetaEngine, replica: MetaEngine, maxDifferences = 100): Promise<VerifyResult> {
  const mine = new Map<string, string>();
  const { seq: replicaSeq } = await replica.snapshot((op) => {
    mine.set(recordId(op), digest(op[3]));
  });
  const theirs = new Map<string, string>();
  const { seq } = await primary.snapshot((op) => {
    theirs.set(recordId(op), digest(op[3]));
  });
  const differences: string[] = [];
  const say = (line: string): void => {
    if (differences.length < maxDifferences) differences.push(line);
  };
  // A replica past the primary's newest seq holds commits the primary never had (its own, or a primary that
  // was reset): no state of the primary to compare it with but the newest.
  if (seq < replicaSeq) say(`the replica is at seq ${replicaSeq}, past the primary's newest ${seq}: it holds commits the primary never had`);
  for (let after = replicaSeq; after < seq; ) {
    let entries: LogEntry[];
    try {
      entries = await primary.readLog(after, BATCH_ENTRIES);
    } catch (err) {
      if (err instanceof LogTrimmedError) {
        throw new UsageError(`the primary's log no longer holds what the replica lacks (it is at ${replicaSeq}, the log kept after ${err.floor}): let the follower catch up and verify again`);
      }
      throw err;
    }
    if (entries.length === 0) break;
    for (const e of entries) {
      if (e.seq > seq) break;
      for (const op of e.ops) {
        if (op[3] === null) mine.delete(recordId(op));
        else mine.set(recordId(op), digest(op[3]));
      }
      after = e.seq;
    }
    if (entries[entries.length - 1]!.seq >= seq) break;
  }
  for (const [id, d] of theirs) {
    const m = mine.get(id);
    if (m === undefined) say(`missing in the replica: ${id}`);
    else if (m !== d) say(`differs: ${id}`);
  }
  for (const id of mine.keys()) if (!theirs.has(id)) say(`only in the replica: ${id}`);
  return { seq, replicaSeq, records: theirs.size, differences };
}

// ---------------------------------------------------------------- status

export interface MirrorStatus {
  region: string;
  role: 'mirror' | 'metadata-only mirror';
  /** The replica's applied sequence as its follower last reported (undefined: never ran). */
  applied: number | undefined;
  lagEntries: number | undefined;
  /** Age of the oldest entry the replica lacks (0 when caught up). */
  lagSeconds: number | undefined;
  bootstraps: number;
  /** When the follower last reported, ms. */
  updated: number | undefined;
  error: string | undefined;
}

/** Each mirror region's state, from its follower's report and the primary's log (no replica is contacted). */
export async function mirrorStatus(primary: MetaEngine, format: FormatRec, now = Date.now()): Promise<MirrorStatus[]> {
  const r = volumeRegions(format);
  const reports = await listMirrorReports(primary);
  const { last } = await primary.logBounds();
  const out: MirrorStatus[] = [];
  for (const [region, rec] of r.all) {
    if (rec.replica === undefined) continue;
    const rep = reports.get(region);
    let lagSeconds: number | undefined;
    if (rep !== undefined) {
      lagSeconds = 0;
      if (rep.applied < last) {
        const next = await primary.readLog(rep.applied, 1).catch(() => []);
        lagSeconds = next[0] === undefined ? undefined : Math.max(0, (now - next[0].time) / 1000);
      }
    }
    out.push({
      region,
      role: rec.storage === undefined ? 'metadata-only mirror' : 'mirror',
      applied: rep?.applied,
      lagEntries: rep === undefined ? undefined : Math.max(0, last - rep.applied),
      lagSeconds,
      bootstraps: rep?.bootstraps ?? 0,
      updated: rep?.updated,
      error: rep?.error,
    });
  }
  return out;
}
