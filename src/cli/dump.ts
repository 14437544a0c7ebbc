/**
 * `ferry dump META [FILE]`: a consistent snapshot of the volume's metadata as streamed JSON, one value per line,
 * so neither dump nor load ever holds the whole volume in memory:
 *
 *   {"ferry":"dump","version":1,"volume":"myvol","uuid":"...","secrets":"masked","format":{...}}   header
 *   ["inode","","1",{"type":"dir",...}]                                       one record per line:
 *   ["entry","1","notes.txt",{"ino":3,"type":"file"}]                         [kind, part, key, value]
 *   ...
 *   {"end":true,"seq":1234,"records":5678}                                    trailer
 *
 * The records are every logged record of one engine snapshot (client sessions and locks are not part of it);
 * `seq` is the changelog sequence that snapshot reflects, so a mirror can continue from seq + 1. The seq sits
 * in the trailer because the snapshot fixes it while streaming; the trailer also marks the dump complete, and
 * `load` refuses a file without it (a truncated dump). Secrets in the storage URL are masked unless
 * --keep-secrets is given; the header's copy of the format record is always masked.
 */

import { createWriteStream, existsSync, renameSync, rmSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { exportRecords } from '../meta/dumpfile.js';
import type { LogOp } from '../meta/engine.js';
import type { FormatRec } from '../meta/types.js';
import { publicFormat } from './info.js';
import { interruptible, openEngine } from './util.js';

export const DUMP_VERSION = 1;

export interface DumpHeader {
  ferry: 'dump';
  version: number;
  volume: string;
  uuid: string;
  /** 'masked': the storage URL in the format record had its secrets replaced by ****. */
  secrets: 'masked' | 'kept';
  /** When the dump was written, ISO 8601. */
  time: string;
  format: FormatRec;
}

export interface DumpTrailer {
  end: true;
  seq: number;
  records: number;
}

/** Writes a line; waits for a full stream to drain. An abort of `signal` ends the dump with its reason. */
function writeLine(stream: Writable, line: string, signal: AbortSignal): Promise<void> | undefined {
  signal.throwIfAborted();
  if (stream.write(line + '\n')) return undefined;
  return new Promise((resolve, reject) => {
    const done = (): void => {
      stream.off('drain', onDrain);
      stream.off('error', onError);
      signal.removeEventListener('abort', onAbort);
    };
    const onDrain = (): void => {
      done();
      resolve();
    };
    const onError = (err: Error): void => {
      done();
      reject(err);
    };
    const onAbort = (): void => {
      done();
      reject(signal.reason);
    };
    stream.once('drain', onDrain);
    stream.once('error', onError);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function finish(stream: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.once('error', reject);
    stream.end(() => resolve());
  });
}

export async function runDump(metaUrl: string, file: string | undefined, opts: { keepSecrets?: boolean }): Promise<void> {
  const target = file === undefined ? undefined : path.resolve(file);
  if (target !== undefined && existsSync(target)) throw new UsageError(`${target} already exists; dump writes a new file`);
  const { engine, format } = await openEngine(metaUrl);
  // A file is written under a temporary name and renamed when complete: a failed or interrupted dump leaves nothing.
  const tmp = target === undefined ? undefined : `${target}.tmp-${process.pid}`;
  let stream: Writable = process.stdout;
  let fileStream: WriteStream | undefined;
  let done = false;
  const removeTemp = (): void => {
    if (!done && tmp !== undefined) rmSync(tmp, { force: true });
  };
  try {
    // SIGINT/SIGTERM stop the dump at its next line (exit 130); a second signal exits at once. Either way the
    // temporary file goes.
    await interruptible(async (signal) => {
      if (tmp !== undefined) {
        const fsx = createWriteStream(tmp, { flags: 'wx' });
        fileStream = fsx;
        await new Promise<void>((resolve, reject) => {
          fsx.once('open', () => resolve());
          fsx.once('error', reject);
        });
        stream = fsx;
      }
      const keep = opts.keepSecrets === true;
      const header: DumpHeader = {
        ferry: 'dump',
        version: DUMP_VERSION,
        volume: format.name,
        uuid: format.uuid,
        secrets: keep ? 'kept' : 'masked',
        time: new Date().toISOString(),
        format: publicFormat(format),
      };
      await writeLine(stream, JSON.stringify(header), signal);
      let records = 0;
      // The volume secret stays out and the storage URL is masked unless kept (meta/dumpfile.ts).
      const { seq } = await exportRecords(engine, { keepSecrets: keep, maskFormat: publicFormat }, (op: LogOp) => {
        records++;
        return writeLine(stream, JSON.stringify(op), signal);
      });
      const trailer: DumpTrailer = { end: true, seq, records };
      await writeLine(stream, JSON.stringify(trailer), signal);
      if (fileStream !== undefined) {
        await finish(fileStream);
        renameSync(tmp!, target!);
        done = true;
        process.stdout.write(`dumped ${records} records of volume '${format.name}' at changelog seq ${seq} to ${target!}\n`);
      }
      done = true;
    }, removeTemp);
  } finally {
    await engine.close();
    if (!done) fileStream?.destroy();
    removeTemp();
  }
}

export function register(program: Command): void {
  program
    .command('dump')
    .summary('write the metadata as streamed JSON')
    .description(
      "Write a consistent snapshot of the volume's metadata as JSON lines (header, one record per line, trailer with the " +
        'changelog seq) to FILE, or to stdout. Secrets in the storage URL are masked unless --keep-secrets.',
    )
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .argument('[FILE]', 'output file (default: stdout); must not exist')
    .option('--keep-secrets', 'keep credentials in the storage URL (the dump can then restore a working volume)')
    .addHelpText('after', '\nExamples:\n  $ ferry dump sqlite:///data/vol.db vol.dump.jsonl\n  $ ferry dump sqlite:///data/vol.db | gzip > vol.dump.jsonl.gz')
    .action((meta: string, file: string | undefined, opts: { keepSecrets?: boolean }) => runDump(meta, file, opts));
}
