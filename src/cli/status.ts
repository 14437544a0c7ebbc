/** `ferry status META`: the volume, its usage, client sessions and the changelog position at a glance. */

import type { Command } from 'commander';
import { humanAge, humanBytes, openMetaTools, out, printJson } from './util.js';
import { publicFormat } from './info.js';

/** A session whose heartbeat is older than this is shown as stale (Meta's default session timeout). */
const SESSION_STALE_MS = 300_000;

export async function runStatus(metaUrl: string, opts: { json?: boolean }): Promise<void> {
  const tools = await openMetaTools(metaUrl);
  try {
    const now = Date.now();
    const statfs = await tools.meta.statfs();
    const sessions = (await tools.meta.listSessions()).map((s) => ({ ...s, ageMs: now - s.heartbeat, stale: now - s.heartbeat > SESSION_STALE_MS }));
    const pending = await tools.meta.listDelSlices(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    const lastSeq = await tools.engine.lastSeq();
    const floor = await tools.engine.logFloor();
    const status = {
      volume: publicFormat(tools.format),
      usage: { usedBytes: statfs.usedBytes, capacityBytes: tools.format.capacityBytes, inodes: statfs.inodes },
      pendingDeletion: { slices: pending.length, bytes: pending.reduce((n, d) => n + d.size, 0) },
      sessions,
      changelog: { lastSeq, floor },
    };
    if (opts.json === true) return await printJson(status);
    const lines = [
      `volume:    ${tools.format.name} (${tools.format.uuid})`,
      `storage:   ${status.volume.storage}`,
      `usage:     ${humanBytes(statfs.usedBytes)} of ${humanBytes(tools.format.capacityBytes)}, ${statfs.inodes} inodes`,
      `pending:   ${status.pendingDeletion.slices} released slices (${humanBytes(status.pendingDeletion.bytes)}) awaiting gc`,
      `changelog: last seq ${lastSeq}${floor > 0 ? `, kept after ${floor}` : ''}`,
      `sessions:  ${sessions.length}`,
    ];
    for (const s of sessions) {
      lines.push(
        `  sid ${s.sid}  ${s.host} pid ${s.pid}${s.region === '' ? '' : ` region ${s.region}`}  heartbeat ${humanAge(s.ageMs)} ago${s.stale ? ' (stale)' : ''}`,
      );
    }
    await out(lines.join('\n') + '\n');
  } finally {
    await tools.close();
  }
}

export function register(program: Command): void {
  program
    .command('status')
    .summary('show usage, sessions and changelog position')
    .description('Show the volume, its usage, client sessions (host, pid, region, last heartbeat) and the changelog position.')
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExamples:\n  $ ferry status sqlite:///data/vol.db\n  $ ferry status sqlite:///data/vol.db --json')
    .action((meta: string, opts: { json?: boolean }) => runStatus(meta, opts));
}
