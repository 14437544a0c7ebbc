/**
 * The records of a dump (cli/dump.ts writes the file, cli/load.ts reads it): what a snapshot exports and
 * what a restore accepts. The file format around them (header, trailer, lines) is the CLI's; which records
 * exist, how they are keyed and which hold secrets is known only here.
 *
 * A record from a file is untrusted: `checkRecord` accepts only logged kinds, string parts and keys without
 * NUL, decimal numbers where records are keyed by inode, slice or chunk index, and entry names a file system
 * may hand out. `restoreRecords` checks every record again as it streams them into the engine, so nothing
 * unchecked reaches `restore` whoever calls it.
 */

import { KINDS, UNLOGGED_KINDS, type Json, type Kind, type LogOp, type MetaEngine } from './engine.js';
import { FORMAT_KEY } from './records.js';
import { SECRET_KEY } from './secret.js';
import { nameProblem, type FormatRec } from './types.js';

const LOGGED = new Set<string>(KINDS.filter((k) => !UNLOGGED_KINDS.has(k)));

/** A record that cannot be loaded; the message says why (callers add where it was). */
export class RecordError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RecordError';
  }
}

const numeric = (s: string): boolean => /^(0|[1-9][0-9]{0,15})$/.test(s);

/** The record v as a LogOp, or a RecordError saying what is wrong with it. */
export function checkRecord(v: unknown): LogOp {
  const bad = (what: string): RecordError => new RecordError(what);
  if (!Array.isArray(v) || v.length !== 4) throw bad('expected a record [kind, part, key, value]');
  const [kind, part, key, value] = v as [unknown, unknown, unknown, unknown];
  if (typeof kind !== 'string' || !LOGGED.has(kind)) throw bad(`unknown record kind ${JSON.stringify(kind)}`);
  if (typeof part !== 'string' || typeof key !== 'string') throw bad('part and key must be strings');
  if (value === null || value === undefined) throw bad('a record needs a value');
  if (part.includes('\0') || key.includes('\0')) throw bad('part and key may not hold NUL');
  // Records keyed by numbers (inodes, directories, chunks, slices) must be keyed by decimal numbers.
  if ((kind === 'inode' || kind === 'slice' || kind === 'delslice') && !numeric(key)) throw bad(`${kind} key ${JSON.stringify(key)} is not a number`);
  if ((kind === 'entry' || kind === 'chunk' || kind === 'xattr') && !numeric(part)) throw bad(`${kind} part ${JSON.stringify(part)} is not an inode number`);
  if (kind === 'chunk' && !numeric(key)) throw bad(`chunk key ${JSON.stringify(key)} is not a chunk index`);
  if (kind === 'entry') {
    const why = nameProblem(key);
    if (why !== undefined) throw bad(`entry in directory ${part}: ${why}`);
  }
  return [kind as Kind, part, key, value as Json];
}

/**
 * The format record if `op` is it (checked enough to name the volume and read its blocks), else undefined;
 * a RecordError when it is malformed.
 */
export function formatOfRecord(op: LogOp): FormatRec | undefined {
  const [kind, , key, value] = op;
  if (kind !== 'setting' || key !== FORMAT_KEY) return undefined;
  if (value === null || typeof value !== 'object' || Array.isArray(value) || typeof value['name'] !== 'string' || typeof value['blockBytes'] !== 'number') {
    throw new RecordError('malformed format record');
  }
  return value as unknown as FormatRec;
}

export interface ExportOptions {
  /** Keep the volume secret and the credentials in the format record. */
  keepSecrets: boolean;
  /** The format record as it may be shown (credentials masked); used unless keepSecrets. */
  maskFormat: (f: FormatRec) => FormatRec;
}

/**
 * Every logged record of one consistent snapshot, as a dump holds them: without the volume secret and with
 * the format record masked unless keepSecrets (a volume restored without the secret makes a new one).
 */
export async function exportRecords(engine: MetaEngine, options: ExportOptions, onRecord: (op: LogOp) => Promise<void> | void): Promise<{ seq: number }> {
  return engine.snapshot((op) => {
    if (!options.keepSecrets && op[0] === 'setting') {
      if (op[2] === SECRET_KEY) return undefined;
      const f = op[2] === FORMAT_KEY && op[3] !== null && typeof op[3] === 'object' && !Array.isArray(op[3]) ? (op[3] as unknown as FormatRec) : undefined;
      if (f !== undefined) return onRecord([op[0], op[1], op[2], options.maskFormat(f) as unknown as Json]);
    }
    return onRecord(op);
  });
}

/**
 * Replaces the engine's content by `records` (each checked with checkRecord as it passes) with the changelog
 * starting after seq: engine.restore's atomicity applies.
 */
export async function restoreRecords(engine: MetaEngine, records: AsyncIterable<unknown>, seq: number): Promise<void> {
  async function* checked(): AsyncGenerator<LogOp> {
    for await (const r of records) yield checkRecord(r);
  }
  await engine.restore(checked(), seq);
}
