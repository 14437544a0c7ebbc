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
import { checkRecord as checkRecordValue, formatOfRecord, RecordError, restoreRecords } from '../meta/dumpfile.js';
import type { LogOp, MetaEngine } from '../meta/engine.js';
import { loadFormat } from '../meta/format.js';
import { openMetaEngine } from '../meta/registry.js';
import type { FormatRec } from '../meta/types.js';
import { DUMP_VERSION, type DumpHeader, type DumpTrailer } from './dump.js';
import { checkMetaExists, interruptible, out, sqliteFile } from './util.js';

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

/** The record on line n, or a DumpError saying where and what is wrong with it (meta/dumpfile.ts checks it). */
function checkRecord(file: string, n: number, v: unknown): LogOp {
  try {
    return checkRecordValue(v);
  } catch (e) {
    if (e instanceof RecordError) throw new DumpError(`${file}:${n}: ${e.message}`);
    throw e;
  }
}

/** The format record if rec is it; a DumpError when it is malformed. */
function formatOf(file: string, n: number, rec: LogOp): FormatRec | undefined {
  try {
    return formatOfRecord(rec);
  } catch (e) {
    if (e instanceof RecordError) throw new DumpError(`${file}:${n}: ${e.message}`);
    throw e;
  }
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
      format = formatOf(file, n, rec) ?? format;
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
      await restoreRecords(engine, records(file, trailer.records, signal), trailer.seq);
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
