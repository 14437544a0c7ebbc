/**
 * The changelog's retention bound, a volume setting (record `setting`/''/`logRetention`, logged: a mirror
 * keeps its own log under the same bound). Entries older than ageMsMax, or more than entriesMax behind the
 * newest, are trimmed even when a registered consumer still needs them (that consumer re-bootstraps): the bound
 * keeps a consumer that stopped for good from growing the log without limit.
 *
 *   {"version":1,"ageMsMax":604800000,"entriesMax":10000000}
 *
 * A missing record means the defaults; a field missing from the record means its default.
 */

import type { MetaEngine, Txn } from './engine.js';
import { setting } from './records.js';

export const LOG_RETENTION_KEY = 'logRetention';
export const LOG_RETENTION_VERSION = 1;
export const LOG_RETENTION_AGE_MS_DEFAULT = 7 * 24 * 3600 * 1000;
export const LOG_RETENTION_ENTRIES_DEFAULT = 10_000_000;

export interface LogRetention {
  /** Entries committed longer ago than this are trimmed, ms. */
  ageMsMax: number;
  /** Entries more than this many behind the newest are trimmed. */
  entriesMax: number;
}

interface LogRetentionRec extends Partial<LogRetention> {
  version: number;
}

const retentionRecord = setting<LogRetentionRec>(LOG_RETENTION_KEY);

export const LOG_RETENTION_DEFAULT: Readonly<LogRetention> = { ageMsMax: LOG_RETENTION_AGE_MS_DEFAULT, entriesMax: LOG_RETENTION_ENTRIES_DEFAULT };

/** Throws RangeError naming the bad field. */
export function checkLogRetention(r: Partial<LogRetention>): void {
  if (r.ageMsMax !== undefined && !(Number.isSafeInteger(r.ageMsMax) && r.ageMsMax > 0)) {
    throw new RangeError(`log retention age must be a positive whole number of ms, got ${r.ageMsMax}`);
  }
  if (r.entriesMax !== undefined && !(Number.isSafeInteger(r.entriesMax) && r.entriesMax > 0)) {
    throw new RangeError(`log retention entries must be a positive integer, got ${r.entriesMax}`);
  }
}

/** The volume's bound, inside a transaction (defaults for what is not set). */
export async function readLogRetention(tx: Txn): Promise<LogRetention> {
  const rec = await retentionRecord.get(tx);
  if (rec !== undefined && rec.version > LOG_RETENTION_VERSION) {
    throw new Error(`the volume's log retention setting has version ${rec.version}, newer than this ferry reads (${LOG_RETENTION_VERSION})`);
  }
  return { ageMsMax: rec?.ageMsMax ?? LOG_RETENTION_DEFAULT.ageMsMax, entriesMax: rec?.entriesMax ?? LOG_RETENTION_DEFAULT.entriesMax };
}

export function getLogRetention(engine: MetaEngine): Promise<LogRetention> {
  return engine.txn((tx) => readLogRetention(tx), { readonly: true });
}

/** Changes the fields given, keeps the others; returns the bound now in force. */
export async function setLogRetention(engine: MetaEngine, change: Partial<LogRetention>): Promise<LogRetention> {
  checkLogRetention(change);
  return engine.txn(async (tx) => {
    const next: LogRetention = { ...(await readLogRetention(tx)) };
    if (change.ageMsMax !== undefined) next.ageMsMax = change.ageMsMax;
    if (change.entriesMax !== undefined) next.entriesMax = change.entriesMax;
    retentionRecord.put(tx, { version: LOG_RETENTION_VERSION, ...next });
    return next;
  });
}
