/**
 * A volume's regions (DESIGN §2), read from either shape of the format record (meta/types.ts FormatRec), and
 * the transactions that change them (`ferry region add|remove`).
 *
 *   format record                                   volumeRegions()
 *   { storage: U }                                  primary 'default', regions [default -> U], named: false
 *   { storage: U1, regions: {a: U1, b: U2},         primary 'a',       regions [a -> U1, b -> U2], named: true
 *     primary: 'a' }
 *
 * A slice without a `home` lives in the primary's bucket: that is where every client wrote before the volume
 * had regions. The primary cannot be removed, so that rule never changes under a slice.
 */

import { UsageError } from '../errors.js';
import type { MetaEngine } from '../meta/engine.js';
import { loadFormat, updateFormat } from '../meta/format.js';
import type { FormatRec, RegionRec } from '../meta/types.js';

/** The name of the one region of a volume formatted with a plain --storage. */
export const DEFAULT_REGION = 'default';
/** Region names: like volume names, short and safe in metrics labels and checkpoint keys. */
const REGION_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/;

/** A region that has a bucket. */
export type BucketRegion = RegionRec & { storage: string };

export interface VolumeRegions {
  primary: string;
  /**
   * The regions that have a bucket (every one but metadata-only mirrors), the primary first, then the others
   * in the record's order: what placement, the replicator, fsck and gc iterate.
   */
  regions: ReadonlyMap<string, BucketRegion>;
  /** Every region, buckets or not, in the same order (clients' regions, `region list`, mirrors). */
  all: ReadonlyMap<string, RegionRec>;
  /** False for a one-region record without names (`storage` only). */
  named: boolean;
}

export function volumeRegions(format: FormatRec): VolumeRegions {
  if (format.regions === undefined || format.primary === undefined) {
    const one = new Map([[DEFAULT_REGION, { storage: format.storage }]]);
    return { primary: DEFAULT_REGION, regions: one, all: one, named: false };
  }
  const primary = format.regions[format.primary];
  if (primary?.storage === undefined) throw new Error(`assertion failed: primary region ${format.primary} missing from the format record, or without a bucket`);
  const all = new Map<string, RegionRec>([[format.primary, primary]]);
  for (const [name, r] of Object.entries(format.regions)) if (name !== format.primary) all.set(name, r);
  const regions = new Map<string, BucketRegion>();
  for (const [name, r] of all) if (r.storage !== undefined) regions.set(name, { ...r, storage: r.storage });
  return { primary: format.primary, regions, all, named: true };
}

/**
 * The region whose bucket a client of region `name` writes to and reads first: its own, or for a
 * metadata-only mirror (no bucket) the primary's.
 */
export function bucketRegion(r: VolumeRegions, name: string): string {
  return r.regions.has(name) ? name : r.primary;
}

/** What a region is, for `region list` and `status`. */
export function regionRole(r: VolumeRegions, name: string): 'primary' | 'bucket' | 'mirror' | 'metadata-only mirror' {
  const rec = r.all.get(name);
  if (name === r.primary) return 'primary';
  if (rec?.replica === undefined) return 'bucket';
  return rec.storage === undefined ? 'metadata-only mirror' : 'mirror';
}

/** The region a slice's blocks were written to. */
export function sliceHome(home: string | undefined, regions: VolumeRegions): string {
  return home ?? regions.primary;
}

export function checkRegionName(name: string): void {
  if (!REGION_NAME_RE.test(name)) {
    throw new UsageError(`invalid region name '${name}': use 1 to 32 characters of a-z, 0-9 and '-', starting and ending with a letter or digit`);
  }
}

/**
 * The region a client runs in: `wanted` (default the primary). A volume with named regions must have it; in a
 * one-region volume without names any name is taken as a label (recorded in the client's session) and the
 * client uses the one bucket.
 */
export function clientRegion(format: FormatRec, wanted: string | undefined): string {
  const r = volumeRegions(format);
  if (wanted === undefined) return r.primary;
  if (!r.named) return wanted;
  if (!r.all.has(wanted)) {
    throw new UsageError(`volume '${format.name}' has no region '${wanted}' (its regions: ${[...r.all.keys()].join(', ')})`);
  }
  return wanted;
}

/** Parses `NAME=URL` (the --region option of format). */
export function parseRegionArg(arg: string): { name: string; storage: string } {
  const eq = arg.indexOf('=');
  if (eq <= 0 || eq === arg.length - 1) throw new UsageError(`invalid --region '${arg}': use NAME=BUCKET-URL, like a=file:///data/bucket-a`);
  const name = arg.substring(0, eq);
  checkRegionName(name);
  return { name, storage: arg.substring(eq + 1) };
}

/** A format record with the regions `regions` and primary `primary`, `storage` following the primary. */
export function withRegions(format: FormatRec, regions: ReadonlyMap<string, RegionRec>, primary: string): FormatRec {
  const p = regions.get(primary);
  if (p?.storage === undefined) throw new Error(`assertion failed: primary ${primary} not among the regions, or without a bucket`);
  return { ...format, storage: p.storage, regions: Object.fromEntries(regions), primary };
}

/**
 * Adds a region in one transaction. A one-region record without names becomes a named one, its bucket the
 * region DEFAULT_REGION (the primary), so that every existing slice keeps its home.
 */
export async function addRegion(engine: MetaEngine, name: string, rec: RegionRec): Promise<FormatRec> {
  checkRegionName(name);
  if (rec.storage === undefined && rec.replica === undefined) throw new UsageError(`region '${name}' needs a bucket, a replica, or both`);
  return updateFormat(engine, (f) => {
    if (f === undefined) throw new UsageError(`no volume in ${engine.description} (run "ferry format" first)`);
    const r = volumeRegions(f);
    if (r.all.has(name)) throw new UsageError(`volume '${f.name}' already has a region '${name}'`);
    const regions = new Map(r.all);
    regions.set(name, rec);
    return withRegions(f, regions, r.primary);
  });
}

/** Removes a region (never the primary) in one transaction. */
export async function removeRegion(engine: MetaEngine, name: string): Promise<FormatRec> {
  return updateFormat(engine, (f) => {
    if (f === undefined) throw new UsageError(`no volume in ${engine.description} (run "ferry format" first)`);
    const r = volumeRegions(f);
    if (!r.all.has(name)) throw new UsageError(`volume '${f.name}' has no region '${name}'`);
    if (name === r.primary) throw new UsageError(`region '${name}' is the primary and cannot be removed`);
    const regions = new Map(r.all);
    regions.delete(name);
    return withRegions(f, regions, r.primary);
  });
}

/** The format record as stored now (regions change while daemons run). */
export async function reloadFormat(engine: MetaEngine): Promise<FormatRec> {
  const f = await loadFormat(engine);
  if (f === undefined) throw new UsageError(`no volume in ${engine.description}`);
  return f;
}
