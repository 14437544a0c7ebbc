/**
 * The records of metadata mirrors (region/mirror.ts), in one place:
 *
 *   on a replica     mirror  ''  'identity'         MirrorIdentity: which volume it mirrors, for which region
 *   on a replica     mirror  ''  'seen'             MirrorSeen: the primary's newest seq its follower last saw
 *   on the primary   mirror  ''  'report:<region>'  MirrorReport: its follower's last report (applied seq, error)
 *
 * Neither is logged: the identity describes the copy, not the volume (a replica's own changelog must stay the
 * primary's, entry for entry), and a report is the follower's progress, like a replicator's checkpoint.
 */

import type { MetaEngine, Txn } from './engine.js';
import { mirrors } from './records.js';
import type { MirrorIdentity } from './types.js';

const IDENTITY_KEY = 'identity';
const REPORT_PREFIX = 'report:';
const SEEN_KEY = 'seen';

/** A follower's last report to the primary. */
export interface MirrorReport {
  region: string;
  /** The last primary sequence the replica applied, and that entry's commit time (0: unknown). */
  applied: number;
  appliedTime: number;
  /** When the follower last reported, ms. */
  updated: number;
  /** Bootstraps since the follower started. */
  bootstraps: number;
  /** The last error, and when; cleared by the next success. */
  error?: string;
  errorTime?: number;
}

/** The replica's identity, or undefined when the engine is no replica (or is being bootstrapped). */
export async function readMirrorIdentity(engine: MetaEngine): Promise<MirrorIdentity | undefined> {
  return (await engine.txn((tx) => mirrors.get(tx, IDENTITY_KEY), { readonly: true })) as MirrorIdentity | undefined;
}

export async function writeMirrorIdentity(engine: MetaEngine, id: MirrorIdentity): Promise<void> {
  await engine.txn(async (tx) => {
    mirrors.put(tx, IDENTITY_KEY, id);
    await Promise.resolve();
  });
}

/** Inside a caller's transaction (a promotion): the engine is no replica any more. */
export function deleteMirrorIdentityIn(tx: Txn): void {
  mirrors.del(tx, IDENTITY_KEY);
}

export async function clearMirrorIdentity(engine: MetaEngine): Promise<void> {
  await engine.txn(async (tx) => {
    mirrors.del(tx, IDENTITY_KEY);
    await Promise.resolve();
  });
}

/** What a follower last saw of its primary, kept on the replica (a promotion says how far behind it was). */
export interface MirrorSeen {
  /** The primary's newest seq as last seen, and when. */
  primaryLast: number;
  at: number;
}

export async function writeMirrorSeen(replica: MetaEngine, seen: MirrorSeen): Promise<void> {
  await replica.txn(async (tx) => {
    mirrors.put(tx, SEEN_KEY, seen);
    await Promise.resolve();
  });
}

export async function readMirrorSeen(replica: MetaEngine): Promise<MirrorSeen | undefined> {
  return (await replica.txn((tx) => mirrors.get(tx, SEEN_KEY), { readonly: true })) as MirrorSeen | undefined;
}

export async function writeMirrorReport(primary: MetaEngine, report: MirrorReport): Promise<void> {
  await primary.txn(async (tx) => {
    mirrors.put(tx, REPORT_PREFIX + report.region, report);
    await Promise.resolve();
  });
}

/** Every follower's last report, by region. */
export async function listMirrorReports(primary: MetaEngine): Promise<Map<string, MirrorReport>> {
  const rows = (await primary.txn((tx) => mirrors.scan(tx), { readonly: true })) as Array<[string, MirrorReport]>;
  const out = new Map<string, MirrorReport>();
  for (const [k, v] of rows) if (k.startsWith(REPORT_PREFIX)) out.set(k.slice(REPORT_PREFIX.length), v);
  return out;
}

/** The changelog consumer name of the follower of `region`. */
export function mirrorConsumer(region: string): string {
  return `mirror:${region}`;
}
