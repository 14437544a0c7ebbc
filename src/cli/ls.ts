/** `ferry ls META [PATH]`: lists a directory of the volume (or names one file), like ls(1). */

import type { Command } from 'commander';
import type { Stats } from '../sdk/stats.js';
import type { Volume } from '../sdk/volume.js';
import { openCliVolume, out, volumePath } from './util.js';

const TYPE_CHAR: Array<[(s: Stats) => boolean, string]> = [
  [(s) => s.isDirectory(), 'd'],
  [(s) => s.isSymbolicLink(), 'l'],
  [(s) => s.isFIFO(), 'p'],
  [(s) => s.isSocket(), 's'],
  [(s) => s.isCharacterDevice(), 'c'],
  [(s) => s.isBlockDevice(), 'b'],
];

/** `drwxr-xr-x`-style mode string, with setuid, setgid and sticky bits. */
export function modeString(st: Stats): string {
  const type = TYPE_CHAR.find(([is]) => is(st))?.[1] ?? '-';
  const m = st.mode;
  const rwx = (shift: number, special: number, ch: string): string => {
    const x = (m >> shift) & 1;
    const s = (m & special) !== 0;
    return ((m >> (shift + 2)) & 1 ? 'r' : '-') + ((m >> (shift + 1)) & 1 ? 'w' : '-') + (s ? (x ? ch : ch.toUpperCase()) : x ? 'x' : '-');
  };
  return type + rwx(6, 0o4000, 's') + rwx(3, 0o2000, 's') + rwx(0, 0o1000, 't');
}

function timeString(d: Date): string {
  const iso = d.toISOString();
  return `${iso.substring(0, 10)} ${iso.substring(11, 16)}`;
}

async function longLine(vol: Volume, full: string, name: string): Promise<string[]> {
  const st = await vol.lstat(full);
  const target = st.isSymbolicLink() ? ` -> ${await vol.readlink(full)}` : '';
  return [modeString(st), String(st.nlink), String(st.uid), String(st.gid), String(st.size), timeString(st.mtime), name + target];
}

/** Right-aligns numeric columns like ls -l. */
function columns(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : i >= 1 && i <= 4 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' '))
    .join('\n');
}

export async function runLs(metaUrl: string, pathArg: string | undefined, opts: { long?: boolean; all?: boolean; region?: string }): Promise<void> {
  const p = volumePath(pathArg ?? '/');
  const vol = await openCliVolume(metaUrl, opts.region === undefined ? {} : { region: opts.region });
  try {
    // Like ls(1): a symlink named on the command line is followed, except in a long listing.
    const st = opts.long === true ? await vol.lstat(p) : await vol.stat(p);
    let names: Array<[full: string, name: string]>;
    if (st.isDirectory()) {
      const base = p === '/' ? '' : p;
      names = (await vol.readdir(p))
        .filter((n) => opts.all === true || !n.startsWith('.'))
        .sort()
        .map((n) => [`${base}/${n}`, n]);
    } else {
      names = [[p, pathArg ?? p]];
    }
    if (names.length === 0) return;
    if (opts.long !== true) {
      await out(names.map(([, n]) => n).join('\n') + '\n');
      return;
    }
    const rows: string[][] = [];
    for (const [full, name] of names) rows.push(await longLine(vol, full, name));
    await out(columns(rows) + '\n');
  } finally {
    await vol.close();
  }
}

export function register(program: Command): void {
  program
    .command('ls')
    .summary('list a directory of the volume')
    .description('List a directory of the volume (PATH is inside the volume, "/" by default), like ls(1).')
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .argument('[PATH]', 'path inside the volume, e.g. /data or :/data', '/')
    .option('-l, --long', 'long listing: mode, links, owner, group, size, mtime')
    .option('-a, --all', 'include names starting with "."')
    .option('--region <NAME>', 'the region this client runs in: its bucket is read first (default: the primary)')
    .addHelpText('after', '\nExamples:\n  $ ferry ls sqlite:///data/vol.db\n  $ ferry ls sqlite:///data/vol.db /datasets -l')
    .action((meta: string, path: string, opts: { long?: boolean; all?: boolean; region?: string }) => runLs(meta, path, opts));
}
