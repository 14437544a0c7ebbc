/**
 * Epochs and fencing (failover, region/promote.ts). A volume's metadata primary has an epoch: 1 for the engine
 * it was formatted in, one more for each promotion of a mirror's replica. Two logged settings:
 *
 *   setting  ''  'epoch'    EpochRec     on a primary: its epoch and its region (absent: epoch 1, the
 *                                        format record's primary region). Logged, so the new primary's own
 *                                        followers hold it too.
 *   setting  ''  'demoted'  DemotionRec  on a demoted primary: the epoch that replaced it, that primary's
 *                                        region and metadata URL. Logged, so the old primary's other followers
 *                                        apply it and learn where to re-point (region/mirror.ts).
 *
 * The fence: every writing transaction that appends a changelog entry checks 'demoted' in the committed state
 * in the same atomic step as its commit (each engine's commit, meta/core.ts) and fails with EROFS when it is
 * set, having written nothing. A transaction that writes only unlogged kinds (sessions, locks, consumer
 * positions, follower reports) passes: readers of a demoted primary carry on. The check costs no round trip:
 * on Redis it is a GET inside the commit script, on PostgreSQL a statement of the commit function, on SQLite a
 * point read of the open file.
 */

import { FsError } from '../errors.js';
import type { LogEntry, MetaEngine } from './engine.js';
import { deleteMirrorIdentityIn } from './mirror.js';
import { decodeOp, formatRecord, setting } from './records.js';
import { clearServiceAddressesIn } from './service.js';
import type { FormatRec } from './types.js';

export interface EpochRec {
  v: 1;
  epoch: number;
  /** The region whose engine is the primary of this epoch. */
  region: string;
  /** When it was promoted, ms, and the last sequence it had applied of the previous primary's log then. */
  promotedAt: number;
  fromSeq: number;
  /** The previous primary's region, and whether it was fenced by the promotion (false: --force). */
  previous: string;
  fenced: boolean;
}

export interface DemotionRec {
  v: 1;
  /** The epoch that replaced this primary, and its region. */
  epoch: number;
  region: string;
  /** The new primary's metadata URL (secrets kept: followers open it; printed masked). */
  meta: string;
  at: number;
}

/** The epoch of a volume formatted without any promotion. */
export const FIRST_EPOCH = 1;

const epochRecord = setting<EpochRec>('epoch');
const demotionRecord = setting<DemotionRec>('demoted');
/** The setting names, for followers that recognise these records in changelog ops (decodeOp's `name`). */
export const EPOCH_SETTING = epochRecord.key;
export const DEMOTION_SETTING = demotionRecord.key;

export async function readEpoch(engine: MetaEngine): Promise<EpochRec | undefined> {
  return engine.txn((tx) => epochRecord.get(tx), { readonly: true });
}

export async function readDemotion(engine: MetaEngine): Promise<DemotionRec | undefined> {
  return engine.txn((tx) => demotionRecord.get(tx), { readonly: true });
}

/** The epoch an engine's records say it has (FIRST_EPOCH when none was recorded). */
export function epochOf(rec: EpochRec | undefined): number {
  return rec?.epoch ?? FIRST_EPOCH;
}

/** What a demoted primary answers to a write. */
export function demotedError(d: DemotionRec): FsError {
  return new FsError('EROFS', `this metadata engine is no longer the primary: region '${d.region}' is the primary of epoch ${d.epoch} since ${new Date(d.at).toISOString()}; write there`);
}

/** Marks `engine` demoted by epoch `d.epoch`; idempotent for the same epoch, refuses an older one. */
export async function writeDemotion(engine: MetaEngine, d: DemotionRec): Promise<void> {
  await engine.txn(async (tx) => {
    const had = await demotionRecord.get(tx);
    if (had !== undefined && had.epoch >= d.epoch) {
      if (had.epoch === d.epoch && had.region === d.region) return;
      throw new FsError('EROFS', `already demoted by epoch ${had.epoch} (region '${had.region}')`);
    }
    demotionRecord.put(tx, d);
  });
}

/**
 * The promotion's writes on the replica, in one transaction: its epoch, its mirror identity gone (it is a
 * primary now), the previous primary's service addresses gone (that service belongs to the old epoch), the
 * format record as `format` makes it.
 */
export async function commitPromotion(engine: MetaEngine, rec: EpochRec, format: (f: FormatRec) => FormatRec): Promise<void> {
  await engine.txn(async (tx) => {
    const f = await formatRecord.get(tx);
    if (f === undefined) throw new FsError('EINVAL', `no volume in ${engine.description}`);
    formatRecord.put(tx, format(f));
    epochRecord.put(tx, rec);
    deleteMirrorIdentityIn(tx);
    clearServiceAddressesIn(tx);
  });
}

/**
 * Where the fence looks (see the file comment): engines check this record inside their commit's atomic step
 * (a SQLite point read, a read in the Redis commit script, a statement of the PostgreSQL commit function).
 */
export const DEMOTION_ADDRESS = { kind: demotionRecord.kind, part: demotionRecord.part, key: demotionRecord.key } as const;

/** A changelog entry that demotes its primary: the old primary's last (followers stop before applying it). */
export function isDemotion(e: LogEntry): boolean {
  return e.ops.some((op) => {
    const r = decodeOp(op);
    return r.kind === 'setting' && r.name === DEMOTION_SETTING && r.value !== null;
  });
}
