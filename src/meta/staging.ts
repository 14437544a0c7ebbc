/**
 * Write-back status records: what each write-back staging area (a client's `<cache dir>/<volume>/writeback`,
 * cache/writeback.ts) holds that is committed in the metadata but not yet in the bucket:
 *
 *   staging  ''  '<staging id>'  StagingRec
 *
 * The client that owns the staging area rewrites its record whole when what is pending changes (about once a
 * second) and at least every few seconds while anything is pending, and deletes it when nothing is. A client
 * killed before its uploads leaves its record behind, so `ferry status` can say which host and directory
 * still hold data, and `ferry fsck` can tell a block that is pending upload from a lost one; the next client
 * that opens that cache directory uploads the blocks and updates the same record (the id lives in the
 * directory). Not logged: live state of a client, like sessions.
 */

import type { MetaEngine } from './engine.js';

/** Records read at once by `listStaging` (one per staging area: a bound on clients, not on blocks). */
const RECORDS_MAX = 10_000;
/** A record not rewritten for this long belongs to a client that is not running (it refreshes every 10 s). */
export const STAGING_STALE_MS = 60_000;

export interface StagingRec {
  version: 1;
  host: string;
  pid: number;
  /** The client's cache directory on that host (--cache-dir; its staging area is <dir>/<volume uuid>/writeback). */
  dir: string;
  /** The client's region ('' in a one-region volume). */
  region: string;
  updated: number;
  /** Blocks staged and not yet uploaded, and their object bytes. */
  blocks: number;
  bytes: number;
  /** When the oldest of them was staged, ms since the epoch. */
  oldest: number | null;
  /** Their slice ids, ascending; `partial`: only the lowest ones (the list is bounded). */
  slices: number[];
  partial: boolean;
}

const ID_RE = /^[0-9a-f]{16,64}$/;

function count(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** A record read from the engine, checked (it is untrusted input), or undefined when malformed. */
export function parseStaging(rec: unknown): StagingRec | undefined {
  if (rec === null || typeof rec !== 'object') return undefined;
  const r = rec as Partial<StagingRec>;
  if (r.version !== 1 || typeof r.host !== 'string' || typeof r.dir !== 'string' || typeof r.region !== 'string') return undefined;
  if (!count(r.pid) || !count(r.updated) || !count(r.blocks) || !count(r.bytes) || typeof r.partial !== 'boolean') return undefined;
  if (r.oldest !== null && !count(r.oldest)) return undefined;
  if (!Array.isArray(r.slices) || !r.slices.every(count)) return undefined;
  return {
    version: 1,
    host: r.host,
    pid: r.pid,
    dir: r.dir,
    region: r.region,
    updated: r.updated,
    blocks: r.blocks,
    bytes: r.bytes,
    oldest: r.oldest ?? null,
    slices: r.slices,
    partial: r.partial,
  };
}

function checkId(id: string): void {
  if (!ID_RE.test(id)) throw new Error(`assertion failed: bad staging id ${JSON.stringify(id)}`);
}

/** Writes a staging area's record, or deletes it when nothing is pending. */
export async function putStaging(engine: MetaEngine, id: string, rec: StagingRec): Promise<void> {
  checkId(id);
  await engine.txn(async (tx) => {
    if (rec.blocks === 0) tx.del('staging', '', id);
    else tx.put('staging', '', id, { ...rec });
    await Promise.resolve();
  });
}

/** Every staging area's record with anything pending (malformed ones skipped), by id. */
export async function listStaging(engine: MetaEngine): Promise<Array<StagingRec & { id: string }>> {
  const rows = await engine.txn((tx) => tx.scan('staging', '', { limit: RECORDS_MAX }), { readonly: true });
  const out: Array<StagingRec & { id: string }> = [];
  for (const [id, value] of rows) {
    const r = parseStaging(value);
    if (r !== undefined && ID_RE.test(id) && r.blocks > 0) out.push({ ...r, id });
  }
  return out;
}

/**
 * Whether slice `id` may have blocks staged by one of `recs` and not yet uploaded: listed, or beyond the list
 * of a partial record (its slices are listed lowest first).
 */
export function stagedBy(recs: ReadonlyArray<StagingRec & { id: string }>, id: number): (StagingRec & { id: string }) | undefined {
  for (const r of recs) {
    if (r.partial ? id >= (r.slices[0] ?? 0) : binaryHas(r.slices, id)) return r;
  }
  return undefined;
}

function binaryHas(sorted: readonly number[], v: number): boolean {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < v) lo = mid + 1;
    else hi = mid;
  }
  return sorted[lo] === v;
}
