/** `ferry cat META PATH...`: writes files of the volume to stdout, in order. */

import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { FsError } from '../errors.js';
import { openCliVolume, volumePath } from './util.js';

export async function runCat(metaUrl: string, paths: string[], opts: { region?: string } = {}): Promise<void> {
  const vol = await openCliVolume(metaUrl, opts.region === undefined ? {} : { region: opts.region });
  try {
    // Every path is checked before the first byte is written, so a typo prints nothing.
    const files = paths.map(volumePath);
    for (const [i, p] of files.entries()) {
      if ((await vol.stat(p)).isDirectory()) throw new FsError('EISDIR', `${paths[i]!}: is a directory`);
    }
    for (const p of files) await pipeline(vol.createReadStream(p), process.stdout, { end: false });
  } finally {
    await vol.close();
  }
}

export function register(program: Command): void {
  program
    .command('cat')
    .summary('print files of the volume')
    .description('Write files of the volume to stdout, one after another.')
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .argument('<PATH...>', 'paths inside the volume, e.g. /notes.txt or :/notes.txt')
    .option('--region <NAME>', 'the region this client runs in: its bucket is read first (default: the primary)')
    .addHelpText('after', '\nExamples:\n  $ ferry cat sqlite:///data/vol.db /notes.txt\n  $ ferry cat sqlite:///data/vol.db /a.csv /b.csv > ab.csv')
    .action((meta: string, paths: string[], opts: { region?: string }) => runCat(meta, paths, opts));
}
