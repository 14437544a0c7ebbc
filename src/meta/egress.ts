/**
 * Egress records (DESIGN §10): the bytes each client (mount, SDK, CLI tool, cache node) read from each
 * region's bucket, by (bucket region -> client region), in one place:
 *
 *   egress  ''  '<client id>'  EgressRec
 *
 * Each client owns its record and rewrites it whole when it flushes (region/egress.ts: every few seconds and at
 * close): totals since the client started, and the same per EGRESS_WINDOW_MS window for the last hour. A
 * record outlives its client (the volume's totals since start include clients that have gone) until it is
 * older than EGRESS_KEEP_MS. Not logged: live counters, like sessions; a mirror region's clients write them
 * to their replica.
 */

import type { MetaEngine } from './engine.js';

export const EGRESS_WINDOW_MS = 5 * 60_000;
export const EGRESS_HOUR_MS = 60 * 60_000;
/** Records not updated for this long are dropped by `listEgress` with `prune`. */
export const EGRESS_KEEP_MS = 30 * 24 * 60 * 60_000;
const RECORDS_MAX = 10_000;

export interface EgressRec {
  version: 1;
  /** The client's region (the primary's name in a one-region volume). */
  region: string;
  started: number;
  updated: number;
  /** Bytes read since `started`, by bucket region. */
  total: Record<string, number>;
  /** [window start ms, bytes by bucket region] for the windows of the last hour, oldest first. */
  windows: Array<[number, Record<string, number>]>;
}

function isCounts(v: unknown): v is Record<string, number> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  return Object.values(v).every((n) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0);
}

export function parseEgress(rec: unknown): EgressRec | undefined {
  if (rec === null || typeof rec !== 'object') return undefined;
  const r = rec as Partial<EgressRec>;
  if (r.version !== 1 || typeof r.region !== 'string' || typeof r.started !== 'number' || typeof r.updated !== 'number') return undefined;
  if (!isCounts(r.total) || !Array.isArray(r.windows)) return undefined;
  const windows = r.windows.filter((w): w is [number, Record<string, number>] => Array.isArray(w) && typeof w[0] === 'number' && isCounts(w[1]));
  return { version: 1, region: r.region, started: r.started, updated: r.updated, total: r.total, windows };
}

export async function putEgress(engine: MetaEngine, client: string, rec: EgressRec): Promise<void> {
  await engine.txn(async (tx) => {
    tx.put('egress', '', client, rec);
    await Promise.resolve();
  });
}

/** Per (bucket region -> client region): bytes in the last hour and since the first record. */
export interface EgressPair {
  from: string;
  to: string;
  lastHour: number;
  total: number;
}

/** Every client's record summed per region pair (records older than EGRESS_KEEP_MS deleted with `prune`). */
export async function egressTotals(engine: MetaEngine, options: { now?: number; prune?: boolean } = {}): Promise<EgressPair[]> {
  const now = options.now ?? Date.now();
  const rows = await engine.txn((tx) => tx.scan('egress', '', { limit: RECORDS_MAX }), { readonly: true });
  const pairs = new Map<string, EgressPair>();
  const old: string[] = [];
  for (const [client, value] of rows) {
    const r = parseEgress(value);
    if (r === undefined) continue;
    if (now - r.updated > EGRESS_KEEP_MS) old.push(client);
    for (const [from, n] of Object.entries(r.total)) {
      const id = `${from}\0${r.region}`;
      const p = pairs.get(id) ?? { from, to: r.region, lastHour: 0, total: 0 };
      p.total += n;
      pairs.set(id, p);
    }
    for (const [t, counts] of r.windows) {
      if (t + EGRESS_WINDOW_MS <= now - EGRESS_HOUR_MS) continue;
      for (const [from, n] of Object.entries(counts)) {
        const id = `${from}\0${r.region}`;
        const p = pairs.get(id) ?? { from, to: r.region, lastHour: 0, total: 0 };
        p.lastHour += n;
        pairs.set(id, p);
      }
    }
  }
  if (options.prune === true && old.length > 0) {
    await engine.txn(async (tx) => {
      for (const k of old) tx.del('egress', '', k);
      await Promise.resolve();
    });
  }
  return [...pairs.values()].sort((a, b) => (a.from + a.to < b.from + b.to ? -1 : 1));
}
