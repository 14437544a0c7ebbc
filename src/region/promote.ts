/**
 * Failover: `ferry mirror promote REPLICA-META` turns a mirror region's replica into the volume's metadata
 * primary of a new epoch (meta/epoch.ts).
 *
 *   old primary reachable                          old primary unreachable (--force)
 *   ─────────────────────                          ─────────────────────────────────
 *   1. demote it: 'demoted' = {epoch N+1, region,  1. (nothing can be written there: it is NOT fenced; if it
 *      replica URL} — from this commit on it          comes back, its clients may write to it until an
 *      refuses every logged write (the fence)         operator demotes it: `promote` again, or stop it)
 *   2. apply its log up to the demotion to the     2. the replica keeps what it applied: commits of the old
 *      replica: nothing acknowledged is lost          primary after that seq are lost (printed: the applied seq
 *                                                      and the primary's newest seq the follower last saw)
 *   3. on the replica, one transaction: 'epoch' = {N+1, region}, mirror identity gone (ReadOnlyEngine no longer
 *      applies: it is a primary), the old primary's service addresses gone, the region's `replica` field gone
 *
 * Regions and buckets: the format record's `primary` names the data home — the bucket of slices without a
 * `home` (region/regions.ts) — and stays as it was: moving it would move every such slice's home. A full
 * mirror keeps its bucket (its clients write there, with their region as home); a metadata-only mirror keeps
 * reading and writing the old primary's bucket, which stays the data home. The metadata primary is the region
 * of the newest epoch record.
 *
 * The follower of the promoted region must be stopped (it stops by itself at the demotion entry, and refuses
 * to start on a promoted replica); the other regions' followers re-point (region/mirror.ts).
 */

import { UsageError } from '../errors.js';
import { LogTrimmedError, type LogEntry, type MetaEngine } from '../meta/engine.js';
import { commitPromotion, epochOf, isDemotion, readDemotion, readEpoch, writeDemotion, type EpochRec } from '../meta/epoch.js';
import { loadFormat } from '../meta/format.js';
import { mirrorConsumer, readMirrorIdentity, readMirrorSeen } from '../meta/mirror.js';
import { openMetaEngine } from '../meta/registry.js';
import { maskUrl } from '../util/url.js';
import { BATCH_ENTRIES } from './mirror.js';

export interface PromoteOptions {
  /** The replica's metadata URL: recorded in the old primary's demotion so its other followers find it. */
  replicaUrl: string;
  replica: MetaEngine;
  /** The old primary's URL (default: the one the follower recorded in the replica's identity). */
  primaryUrl?: string | undefined;
  force?: boolean | undefined;
  open?: (url: string) => Promise<MetaEngine>;
  now?: number;
}

export interface PromoteResult {
  region: string;
  epoch: number;
  /** The region that was the primary, and whether it was fenced (false: --force with it unreachable). */
  previous: string;
  fenced: boolean;
  /** Why it could not be fenced. */
  unreachable?: string;
  /** The last seq of the old primary's history the new primary holds; entries copied by the promotion itself. */
  applied: number;
  caughtUp: number;
  /** The old primary's newest seq as the follower last saw it, and when (--force: how far behind it was). */
  lastSeen?: { seq: number; at: number };
}

export async function promoteReplica(o: PromoteOptions): Promise<PromoteResult> {
  const replica = o.replica;
  const now = o.now ?? Date.now();
  const open = o.open ?? ((url: string) => openMetaEngine(url));
  const format = await loadFormat(replica);
  if (format === undefined) throw new UsageError(`no volume in ${replica.description}`);
  const id = await readMirrorIdentity(replica);
  if (id === undefined) {
    const e = await readEpoch(replica);
    // Promoted with --force earlier: fence the old primary now that it is back (it must be given: --primary).
    if (e !== undefined && !e.fenced && o.primaryUrl !== undefined) return fenceLater(o, e, format.uuid, open);
    throw new UsageError(
      e === undefined
        ? `${replica.description} is not a mirror replica (or its bootstrap was interrupted): nothing to promote`
        : `${replica.description} is already the primary of epoch ${e.epoch} (region '${e.region}')`,
    );
  }
  const region = id.region;
  const epoch = epochOf(await readEpoch(replica)) + 1;
  const primaryUrl = o.primaryUrl ?? id.primaryMeta;

  let old: MetaEngine | undefined;
  let unreachable: string | undefined;
  let other: string | undefined;
  if (primaryUrl === undefined) unreachable = 'the replica does not record its primary\'s URL (give --primary OLD-META)';
  else {
    try {
      old = await open(primaryUrl);
      other = (await loadFormat(old))?.uuid;
    } catch (err) {
      await old?.close().catch(() => undefined);
      old = undefined;
      unreachable = `${maskUrl(primaryUrl)} cannot be reached (${err instanceof Error ? err.message : String(err)})`;
    }
  }
  try {
    if (old !== undefined && other !== format.uuid) throw new UsageError(`${maskUrl(primaryUrl!)} does not hold volume '${format.name}': give the old primary's URL with --primary`);
    if (old === undefined && o.force !== true) {
      throw new UsageError(`the old primary ${unreachable}: promote with --force only if it is lost (it is not fenced then, and its commits after the replica's are lost)`);
    }
    let caughtUp = 0;
    if (old !== undefined) {
      const d = await readDemotion(old);
      if (d !== undefined && !(d.epoch === epoch && d.region === region)) {
        throw new UsageError(`the old primary was already demoted by epoch ${d.epoch} (region '${d.region}'): follow that primary instead`);
      }
      const [mine, bounds] = await Promise.all([replica.lastSeq(), old.logBounds()]);
      if (mine < bounds.floor) {
        throw new UsageError(`the replica (at seq ${mine}) is behind what the old primary's log keeps (after ${bounds.floor}): let its follower bootstrap it first`);
      }
      // The fence first: from here on nothing new is committed there, so the copy below is complete.
      await writeDemotion(old, { v: 1, epoch, region, meta: o.replicaUrl, at: now });
      caughtUp = await copyUpToDemotion(old, replica);
      await old.removeConsumer(mirrorConsumer(region)).catch(() => false);
    }
    const seen = await readMirrorSeen(replica);
    const applied = await replica.lastSeq();
    const rec: EpochRec = { v: 1, epoch, region, promotedAt: now, fromSeq: applied, previous: id.primary, fenced: old !== undefined };
    await commitPromotion(replica, rec, (f) => {
      const regions = { ...(f.regions ?? {}) };
      const r = regions[region];
      if (r !== undefined) {
        const rest = { ...r };
        delete rest.replica;
        regions[region] = rest;
      }
      return f.regions === undefined ? f : { ...f, regions };
    });
    return {
      region,
      epoch,
      previous: id.primary,
      fenced: old !== undefined,
      ...(unreachable === undefined || old !== undefined ? {} : { unreachable }),
      applied,
      caughtUp,
      ...(seen === undefined ? {} : { lastSeen: { seq: seen.primaryLast, at: seen.at } }),
    };
  } finally {
    await old?.close();
  }
}

/** Applies the old primary's entries after the replica's position up to (not including) the demotion. */
async function copyUpToDemotion(old: MetaEngine, replica: MetaEngine): Promise<number> {
  const d = await readDemotion(old);
  if (d === undefined) throw new Error('assertion failed: the old primary is not demoted');
  let copied = 0;
  for (;;) {
    const after = await replica.lastSeq();
    let entries: LogEntry[];
    try {
      entries = await old.readLog(after, BATCH_ENTRIES);
    } catch (err) {
      if (err instanceof LogTrimmedError) throw new UsageError(`the old primary's log no longer holds what the replica lacks (${err.message}); it is fenced: bootstrap the replica from it and promote again`);
      throw err;
    }
    const cut = entries.findIndex(isDemotion);
    const take = cut >= 0 ? entries.slice(0, cut) : entries;
    if (take.length > 0) await replica.applyLog(take);
    copied += take.length;
    if (cut >= 0 || entries.length === 0) return copied;
  }
}

/**
 * After a promotion with --force: the old primary came back; demote it now (a replica that is already a primary,
 * given --primary). What it committed after the promoted replica's position stays only there: lost to the volume.
 */
async function fenceLater(o: PromoteOptions, e: EpochRec, uuid: string, open: (url: string) => Promise<MetaEngine>): Promise<PromoteResult> {
  const old = await open(o.primaryUrl!);
  try {
    if ((await loadFormat(old))?.uuid !== uuid) throw new UsageError(`${maskUrl(o.primaryUrl!)} does not hold this volume`);
    const d = await readDemotion(old);
    if (d !== undefined && d.epoch > e.epoch) throw new UsageError(`the old primary was already demoted by epoch ${d.epoch} (region '${d.region}')`);
    await writeDemotion(old, { v: 1, epoch: e.epoch, region: e.region, meta: o.replicaUrl, at: o.now ?? Date.now() });
    const lost = (await old.lastSeq()) - 1 - e.fromSeq;
    return { region: e.region, epoch: e.epoch, previous: e.previous, fenced: true, applied: e.fromSeq, caughtUp: 0, lastSeen: { seq: e.fromSeq + Math.max(0, lost), at: Date.now() } };
  } finally {
    await old.close();
  }
}
