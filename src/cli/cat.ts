/**
 * `ferry cat META PATH...`: writes files of the volume to stdout, in order.
 *
 * Nothing partial: every path is checked (exists, not a directory) before the first byte is written, and a
 * file up to CAT_WHOLE_BYTES_MAX is read whole before any of it is written, so a file that cannot be read (a
 * block missing, corrupt or unreachable in every bucket) adds nothing to stdout; the files before it are out
 * whole, and the command fails with one line naming the file and the cause. A larger file is streamed, to
 * keep memory bounded: a read that fails there may follow part of it.
 */

import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { FsError } from '../errors.js';
import { humanBytes, openCliVolume, out, readFailure, readThroughGroup, volumePath, warnIfGroupEmpty } from './util.js';

/** Files up to this size are read whole before any of their bytes is written; larger ones are streamed. */
export const CAT_WHOLE_BYTES_MAX = 64 << 20;

export async function runCat(metaUrl: string, paths: string[], opts: { region?: string; cacheGroup?: string } = {}): Promise<void> {
  const vol = await openCliVolume(metaUrl, { ...(opts.region === undefined ? {} : { region: opts.region }), ...readThroughGroup(opts.cacheGroup) });
  try {
    warnIfGroupEmpty(vol);
    // Every path is checked before the first byte is written, so a typo prints nothing.
    const files: Array<{ path: string; shown: string; size: number }> = [];
    for (const arg of paths) {
      const p = volumePath(arg);
      const st = await vol.stat(p);
      if (st.isDirectory()) throw new FsError('EISDIR', `${arg}: is a directory`);
      files.push({ path: p, shown: arg, size: st.size });
    }
    for (const f of files) {
      if (f.size <= CAT_WHOLE_BYTES_MAX) {
        let data: Buffer;
        try {
          data = await vol.readFile(f.path);
        } catch (err) {
          throw readFailure(f.shown, err);
        }
        await out(data);
      } else {
        try {
          await pipeline(vol.createReadStream(f.path), process.stdout, { end: false });
        } catch (err) {
          throw readFailure(f.shown, err);
        }
      }
    }
  } finally {
    await vol.close();
  }
}

export function register(program: Command): void {
  program
    .command('cat')
    .summary('print files of the volume')
    .description(
      'Write files of the volume to stdout, one after another. A file up to ' +
        `${humanBytes(CAT_WHOLE_BYTES_MAX)} is read whole before any of it is written, so one that cannot be read ` +
        'prints nothing (the files before it print whole) and cat exits 1 naming it; a larger file is streamed, ' +
        'and a read that fails may follow part of it.',
    )
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .argument('<PATH...>', 'paths inside the volume, e.g. /notes.txt or :/notes.txt')
    .option('--region <NAME>', 'the region this client runs in: its bucket is read first (default: the primary)')
    .option('--cache-group <G>', "read blocks through the region's cache group G before the buckets (serving nothing to it)")
    .addHelpText(
      'after',
      '\nExamples:\n  $ ferry cat sqlite:///data/vol.db /notes.txt\n  $ ferry cat sqlite:///data/vol.db /a.csv /b.csv > ab.csv\n  $ ferry cat --cache-group rack1 sqlite:///data/vol.db /big.bin > big.bin',
    )
    .action((meta: string, paths: string[], opts: { region?: string; cacheGroup?: string }) => runCat(meta, paths, opts));
}
