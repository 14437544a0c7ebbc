/**
 * `ferry load META FILE`: restores a dump (see dump.ts for the format) into a metadata engine.
 *
 * The file is read twice, line by line, so memory stays flat whatever its size: the first pass validates every
 * line (header and version, record shapes, the trailer that marks a complete dump) before the engine is
 * touched; the second streams the records into `engine.restore`, which replaces the engine's content in one
 * transaction. A malformed file therefore changes nothing, and a database file this run created is removed;
 * so does SIGINT or SIGTERM (exit 130).
 */

import { createReadStream, existsSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { KINDS, UNLOGGED_KINDS, type Json, type Kind, type LogOp, type MetaEngine } from '../meta/engine.js';
import { loadFormat } from '../meta/meta.js';
import { openMetaEngine } from '../meta/registry.js';
import { nameProblem, type FormatRec } from '../meta/types.js';
import { DUMP_VERSION, type DumpHeader, type DumpTrailer } from './dump.js';
import { checkMetaExists, interruptible, out, sqliteFile } from './util.js';

const LOGGED = new Set<string>(KINDS.filter((k) => !UNLOGGED_KINDS.has(k)));

interface Scan {
  header: DumpHeader;
  trailer: DumpTrailer;
  format: FormatRec;
}

class DumpError extends UsageError {}

/** Lines of a file, numbered from 1. */
async function* lines(file: string): AsyncGenerator<[number, string]> {
  const rl = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  let n = 0;
  for await (const line of rl) yield [++n, line];
}

function parseLine(file: string, n: number, line: string): unknown {
  try {
    return JSON.parse(line) as unknown;
  } catch {
    throw new DumpError(`${file}:${n}: not a JSON value; is this a ferry dump?`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkHeader(file: string, v: unknown): DumpHeader {
  if (!isObject(v) || v['ferry'] !== 'dump') throw new DumpError(`${file}: not a ferry dump (the first line is not a dump header)`);
  const version = v['version'];
  if (typeof version !== 'number' || !Number.isSafeInteger(version)) throw new DumpError(`${file}: the dump header has no version`);
  if (version > DUMP_VERSION) throw new DumpError(`${file}: dump version ${version} is newer than this ferry reads (${DUMP_VERSION}); upgrade ferry`);
  if (version < 1) throw new DumpError(`${file}: unknown dump version ${version}`);
  return v as unknown as DumpHeader;
}

/** The record on line n, or a DumpError saying what is wrong with it. */
function checkRecord(file: string, n: number, v: unknown): LogOp {
  const bad = (what: string): DumpError => new DumpError(`${file}:${n}: ${what}`);
  if (!Array.isArray(v) || v.length !== 4) throw bad('expected a record [kind, part, key, value]');
  const [kind, part, key, value] = v as [unknown, unknown, unknown, unknown];
  if (typeof kind !== 'string' || !LOGGED.has(kind)) throw bad(`unknown record kind ${JSON.stringify(kind)}`);
  if (typeof part !== 'string' || typeof key !== 'string') throw bad('part and key must be strings');
  if (value === null || value === undefined) throw bad('a record needs a value');
  if (part.includes('\0') || key.includes('\0')) throw bad('part and key may not hold NUL');
  // Records keyed by numbers (inodes, directories, chunks, slices) must be keyed by decimal numbers.
  const numeric = (s: string): boolean => /^(0|[1-9][0-9]{0,15})$/.test(s);
  if ((kind === 'inode' || kind === 'slice' || kind === 'delslice') && !numeric(key)) throw bad(`${kind} key ${JSON.stringify(key)} is not a number`);
  if ((kind === 'entry' || kind === 'chunk' || kind === 'xattr') && !numeric(part)) throw bad(`${kind} part ${JSON.stringify(part)} is not an inode number`);
  if (kind === 'chunk' && !numeric(key)) throw bad(`chunk key ${JSON.stringify(key)} is not a chunk index`);
  if (kind === 'entry') {
    const why = nameProblem(key);
    if (why !== undefined) throw bad(`entry in directory ${part}: ${why}`);
  }
  return [kind as Kind, part, key, value as Json];
}

function checkTrailer(file: string, n: number, v: unknown, records: number): DumpTrailer {
  if (!isObject(v) || v['end'] !== true) throw new DumpError(`${file}:${n}: expected a record or the trailer`);
  const seq = v['seq'];
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) throw new DumpError(`${file}:${n}: the trailer has no valid seq`);
  if (v['records'] !== records) throw new DumpError(`${file}:${n}: the trailer counts ${String(v['records'])} records, the file holds ${records}`);
  return v as unknown as DumpTrailer;
}

/** First pass: validates the whole file. */
async function scan(file: string): Promise<Scan> {
  let header: DumpHeader | undefined;
  let trailer: DumpTrailer | undefined;
  let format: FormatRec | undefined;
  let records = 0;
  for await (const [n, line] of lines(file)) {
    if (trailer !== undefined) {
      if (line.trim() === '') continue;
      throw new DumpError(`${file}:${n}: data after the trailer`);
    }
    const v = parseLine(file, n, line);
    if (header === undefined) {
      header = checkHeader(file, v);
      continue;
    }
    if (Array.isArray(v)) {
      const rec = checkRecord(file, n, v);
      records++;
      if (rec[0] === 'setting' && rec[2] === 'format') {
        if (!isObject(rec[3]) || typeof rec[3]['name'] !== 'string' || typeof rec[3]['blockBytes'] !== 'number') {
          throw new DumpError(`${file}:${n}: malformed format record`);
        }
        format = rec[3] as unknown as FormatRec;
      }
      continue;
    }
    trailer = checkTrailer(file, n, v, records);
  }
  if (header === undefined) throw new DumpError(`${file} is empty`);
  if (trailer === undefined) throw new DumpError(`${file} ends without the dump trailer (a truncated dump?)`);
  if (format === undefined) throw new DumpError(`${file} holds no volume (no format record)`);
  return { header, trailer, format };
}

/**
 * Second pass: the records again, checked again (the file could change between the passes). An abort of
 * `signal` ends it with the signal's reason, which rolls the restore back.
 */
async function* records(file: string, expected: number, signal: AbortSignal): AsyncGenerator<LogOp> {
  let count = 0;
  let first = true;
  for await (const [n, line] of lines(file)) {
    signal.throwIfAborted();
    const v = parseLine(file, n, line);
    if (first) {
      first = false;
      continue;
    }
    if (!Array.isArray(v)) break;
    count++;
    yield checkRecord(file, n, v);
  }
  if (count !== expected) throw new DumpError(`${file} changed while it was loaded`);
}

export async function runLoad(metaUrl: string, fileArg: string, opts: { force?: boolean }): Promise<void> {
  const file = path.resolve(fileArg);
  const st = statSync(file, { throwIfNoEntry: false });
  if (st === undefined) throw new UsageError(`${fileArg} does not exist`);
  if (!st.isFile()) throw new UsageError(`${fileArg} is not a file`);
  const { trailer, format } = await scan(file);

  const dbFile = sqliteFile(metaUrl);
  const dbExisted = dbFile !== undefined && existsSync(dbFile);
  if (dbExisted) checkMetaExists(metaUrl);
  let engine: MetaEngine | undefined;
  let where = metaUrl;
  let done = false;
  const removeCreated = (): void => {
    if (!done && dbFile !== undefined && !dbExisted) for (const f of [dbFile, `${dbFile}-wal`, `${dbFile}-shm`]) rmSync(f, { force: true });
  };
  try {
    // SIGINT/SIGTERM roll the restore back (exit 130); a second signal exits at once, removing a created file.
    await interruptible(async (signal) => {
      engine = await openMetaEngine(metaUrl, { create: true });
      // Messages name the engine's description, which masks a password in the URL.
      where = engine.description;
      const existing = await loadFormat(engine);
      if ((existing !== undefined || (await engine.lastSeq()) > 0) && opts.force !== true) {
        throw new UsageError(
          `${where} is not empty${existing === undefined ? '' : ` (it holds volume '${existing.name}')`}; use --force to replace its content`,
        );
      }
      await engine.restore(records(file, trailer.records, signal), trailer.seq);
      done = true;
    }, removeCreated);
  } finally {
    await engine?.close();
    removeCreated();
  }
  await out(`loaded ${trailer.records} records of volume '${format.name}' at changelog seq ${trailer.seq} into ${where}\n`);
  if (format.storage.includes('****')) {
    process.stderr.write(`ferry: note: the dump's storage URL has masked secrets (${format.storage}); dump with --keep-secrets to restore them\n`);
  }
}

export function register(program: Command): void {
  program
    .command('load')
    .summary('restore the metadata from a dump')
    .description(
      'Restore a dump written by "ferry dump" into META (created if needed). The whole file is validated first; the ' +
        'restore is one transaction, so a bad file changes nothing. A non-empty META needs --force.',
    )
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/restored.db')
    .argument('<FILE>', 'a dump written by "ferry dump"')
    .option('--force', 'replace the content of a non-empty META')
    .addHelpText('after', '\nExamples:\n  $ ferry load sqlite:///data/restored.db vol.dump.jsonl\n  $ ferry load sqlite:///data/vol.db vol.dump.jsonl --force')
    .action((meta: string, file: string, opts: { force?: boolean }) => runLoad(meta, file, opts));
}
