/**
 * The records of cache-group members (DESIGN §8), in one place:
 *
 *   member  ''  '<group>/<address>'  MemberRec
 *
 * A member (a `ferry cache-node`, or a client that shares its disk cache) puts its record when it starts and
 * again at every heartbeat (a full put, not an update: a replica re-bootstrapped by its follower loses the
 * unlogged kinds, and the next heartbeat brings the record back). A member whose heartbeat is older than the
 * `staleMs` it recorded has left: readers skip it, and `listMembers` with `prune` deletes it. A member that
 * stops cleanly deletes its record at once.
 *
 * The address is the member's identity on the ring (cache/group/ring.ts): a node restarted on the same
 * address owns the same keys, so the cache it kept on disk serves them again.
 *
 * Where members register: in the engine their clients open. The kind is not logged, so a mirror region's
 * members register in the region's replica (ReadOnlyEngine lets unlogged kinds through, as it does for
 * sessions): the group is the region's, its heartbeats stay inside the region, and the group keeps working
 * when the primary is unreachable. Records are untrusted input (anyone who can write the engine can write
 * one): `parseMember` checks every field before use.
 */

import type { MetaEngine } from './engine.js';

export interface MemberRec {
  version: 1;
  group: string;
  /** host:port the member serves on (an IPv6 host in brackets). */
  address: string;
  /** Share of the keys relative to the other members; 0: drains (owns nothing, still answers). */
  weight: number;
  /** The volume the member serves (a member of another volume's group is ignored). */
  uuid: string;
  /** The region the member runs in, if the volume names regions. */
  region?: string;
  host: string;
  pid: number;
  started: number;
  heartbeat: number;
  /** How long after `heartbeat` the member counts as gone, ms. */
  staleMs: number;
  /** 'node': a cache node; 'client': a client sharing its cache. */
  role: 'node' | 'client';
}

/** Group names: what `--group` accepts. */
export const GROUP_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** host:port, with a bracketed IPv6 host. */
const ADDRESS_RE = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):(\d{1,5})$/;
/** The most members one listing returns: a bound on what an engine can make a client hold. */
export const MEMBERS_MAX = 4096;
export const WEIGHT_MAX = 1_000_000;

export function memberKey(group: string, address: string): string {
  return `${group}/${address}`;
}

export function isValidAddress(address: string): boolean {
  const m = ADDRESS_RE.exec(address);
  if (m === null) return false;
  const port = Number(m[2]);
  return port > 0 && port < 65536;
}

/** A checked member record, or undefined for anything malformed. */
export function parseMember(key: string, rec: unknown): MemberRec | undefined {
  if (rec === null || typeof rec !== 'object') return undefined;
  const r = rec as Partial<MemberRec>;
  if (r.version !== 1 || typeof r.group !== 'string' || !GROUP_RE.test(r.group)) return undefined;
  if (typeof r.address !== 'string' || !isValidAddress(r.address) || key !== memberKey(r.group, r.address)) return undefined;
  if (typeof r.weight !== 'number' || !Number.isFinite(r.weight) || r.weight < 0 || r.weight > WEIGHT_MAX) return undefined;
  if (typeof r.uuid !== 'string' || r.uuid.length === 0 || r.uuid.length > 100) return undefined;
  for (const n of [r.heartbeat, r.staleMs, r.started, r.pid]) if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) return undefined;
  if (r.role !== 'node' && r.role !== 'client') return undefined;
  if (r.region !== undefined && typeof r.region !== 'string') return undefined;
  return {
    version: 1,
    group: r.group,
    address: r.address,
    weight: r.weight,
    uuid: r.uuid,
    ...(r.region === undefined ? {} : { region: r.region }),
    host: typeof r.host === 'string' ? r.host.slice(0, 255) : '',
    pid: r.pid!,
    started: r.started!,
    heartbeat: r.heartbeat!,
    staleMs: r.staleMs!,
    role: r.role,
  };
}

export function memberIsStale(m: MemberRec, now: number): boolean {
  return now - m.heartbeat > m.staleMs;
}

/** Puts (or refreshes) a member's record. */
export async function putMember(engine: MetaEngine, rec: MemberRec): Promise<void> {
  await engine.txn(async (tx) => {
    tx.put('member', '', memberKey(rec.group, rec.address), rec);
    await Promise.resolve();
  });
}

export async function removeMember(engine: MetaEngine, group: string, address: string): Promise<void> {
  await engine.txn(async (tx) => {
    tx.del('member', '', memberKey(group, address));
    await Promise.resolve();
  });
}

export interface ListMembersOptions {
  /** Only this group's members. */
  group?: string | undefined;
  /** Also the members whose heartbeat stopped (status shows them). */
  stale?: boolean;
  /** Delete the records of members whose heartbeat stopped (a heartbeat does this, bounded). */
  prune?: boolean;
  now?: number;
}

/** The members (live ones unless `stale`), by group then address; malformed records are skipped. */
export async function listMembers(engine: MetaEngine, options: ListMembersOptions = {}): Promise<MemberRec[]> {
  const now = options.now ?? Date.now();
  const prefix = options.group === undefined ? undefined : `${options.group}/`;
  const rows = await engine.txn(
    (tx) => tx.scan('member', '', { limit: MEMBERS_MAX, ...(prefix === undefined ? {} : { after: prefix.slice(0, -1) + '.' }) }),
    { readonly: true },
  );
  const out: MemberRec[] = [];
  const dead: string[] = [];
  for (const [key, value] of rows) {
    // '/' sorts just after '.', so the scan starts at the group's first key; it ends at the first other one.
    if (prefix !== undefined && !key.startsWith(prefix)) {
      if (key > prefix) break;
      continue;
    }
    const m = parseMember(key, value);
    if (m === undefined) continue;
    const stale = memberIsStale(m, now);
    if (stale) dead.push(key);
    if (!stale || options.stale === true) out.push(m);
  }
  if (options.prune === true && dead.length > 0) {
    await engine.txn(async (tx) => {
      for (const key of dead) {
        // Only if still stale: it may have beaten since the scan.
        const m = parseMember(key, await tx.get('member', '', key));
        if (m !== undefined && memberIsStale(m, Date.now())) tx.del('member', '', key);
      }
    });
  }
  return out;
}
