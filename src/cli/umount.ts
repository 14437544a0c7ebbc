/**
 * `ferry umount MOUNTPOINT [--force]`: unmounts a Ferry mount. The mount process sees the unmount, flushes
 * and exits. `--force` unmounts lazily, which also clears a mount whose process died ("Transport endpoint is
 * not connected") and detaches one that is busy.
 */

import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { findMount, fusermount } from '../fuse/mount.js';

export async function runUmount(mountpoint: string, o: { force?: boolean }): Promise<void> {
  const abs = path.resolve(mountpoint);
  const m = await findMount(abs);
  if (m === undefined) {
    const dead = await stat(abs).then(
      () => false,
      (err: NodeJS.ErrnoException) => err.code === 'ENOTCONN',
    );
    if (!dead) throw new UsageError(`${abs} is not mounted`);
  } else if (!m.fstype.startsWith('fuse') || (!m.fstype.endsWith('.ferry') && o.force !== true)) {
    throw new UsageError(`${abs} is not a Ferry mount (${m.fstype} from ${m.source}); use umount(8) for it`);
  }
  await fusermount(abs, o.force === true);
}

export function register(program: Command): void {
  program
    .command('umount')
    .alias('unmount')
    .summary('unmount a mounted volume')
    .description('Unmount a volume mounted with `ferry mount`. The mount process flushes open files and exits.')
    .argument('<MOUNTPOINT>', 'where the volume is mounted')
    .option('-f, --force', 'unmount lazily: also when busy, and to clear a mount whose process died')
    .addHelpText('after', '\nExamples:\n  $ ferry umount /mnt/vol\n  $ ferry umount --force /mnt/vol')
    .action((mnt: string, o: { force?: boolean }) => runUmount(mnt, o));
}
