/** `ferry info META`: the volume's format record, with secrets in the storage URL masked. */

import type { Command } from 'commander';
import { describeStoreUrl } from '../object/registry.js';
import { maskUrl } from '../util/url.js';
import type { FormatRec } from '../meta/types.js';
import { humanBytes, openEngine, out, printJson } from './util.js';

/** The format record as shown to users: the storage URLs (the primary's and every region's) masked. */
export function publicFormat(f: FormatRec): FormatRec {
  const masked: FormatRec = { ...f, storage: describeStoreUrl(f.storage) };
  if (f.regions !== undefined) {
    masked.regions = Object.fromEntries(Object.entries(f.regions).map(([name, r]) => [name, { ...r, ...(r.storage === undefined ? {} : { storage: describeStoreUrl(r.storage) }), ...(r.replica === undefined ? {} : { replica: maskUrl(r.replica) }) }]));
  }
  return masked;
}

export async function runInfo(metaUrl: string, opts: { json?: boolean }): Promise<void> {
  const { engine, format } = await openEngine(metaUrl);
  try {
    const f = publicFormat(format);
    if (opts.json === true) return await printJson(f);
    const rows: Array<[string, string]> = [
      ['name', f.name],
      ['uuid', f.uuid],
      ['storage', f.storage],
      ...Object.entries(f.regions ?? {}).map(([name, r]): [string, string] => [`region ${name}`, `${r.storage ?? '(no bucket)'}${r.replica === undefined ? '' : `, replica ${r.replica}`}${name === f.primary ? ' (primary)' : ''}`]),
      ['block size', humanBytes(f.blockBytes)],
      ['chunk size', humanBytes(f.chunkBytes)],
      ['compression', f.compression],
      ['trash days', String(f.trashDays)],
      ['capacity', humanBytes(f.capacityBytes)],
      ['format version', String(f.version)],
      ['created', new Date(f.createdAt).toISOString()],
    ];
    await out(rows.map(([k, v]) => `${(k + ':').padEnd(16)}${v}\n`).join(''));
  } finally {
    await engine.close();
  }
}

export function register(program: Command): void {
  program
    .command('info')
    .summary("show a volume's settings")
    .description("Show a volume's format record: name, uuid, storage (secrets masked), block size, compression, trash days.")
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExamples:\n  $ ferry info sqlite:///data/vol.db\n  $ ferry info sqlite:///data/vol.db --json')
    .action((meta: string, opts: { json?: boolean }) => runInfo(meta, opts));
}
