#!/usr/bin/env node
/**
 * The `ferry` command. Each command lives in its own module with a `register(program)`; this file wires them
 * up and owns the one error boundary: every failure becomes `ferry: <one line>` on stderr and a non-zero exit.
 * A stack trace is printed only with FERRY_DEBUG=1.
 *
 *   0    success
 *   1    the command failed (a missing file, an unreadable block, a volume that fails fsck, ...)
 *   2    bad usage: an unknown command or option, a missing argument, a bad option value, options that do
 *        not go together (commander's errors and BadUsageError; see the option parsers in util.ts)
 *   130  interrupted by SIGINT or SIGTERM, after cleaning up (InterruptedError)
 */

import { Command, CommanderError } from 'commander';
import { register as registerCacheNode } from './cachenode.js';
import { register as registerCat } from './cat.js';
import { register as registerConfig } from './config.js';
import { register as registerCp } from './cp.js';
import { register as registerDashboard } from './dashboard.js';
import { register as registerDump } from './dump.js';
import { register as registerFormat } from './format.js';
import { register as registerFsck } from './fsck.js';
import { register as registerGc } from './gc.js';
import { register as registerInfo } from './info.js';
import { register as registerLoad } from './load.js';
import { register as registerLs } from './ls.js';
import { register as registerMirror } from './mirror.js';
import { register as registerMount } from './mount.js';
import { register as registerRegion } from './region.js';
import { register as registerReplicate } from './replicate.js';
import { register as registerServe } from './serve.js';
import { register as registerStats } from './stats.js';
import { register as registerMetricsToken } from './metrics-token.js';
import { register as registerStatus } from './status.js';
import { register as registerSync } from './sync.js';
import { register as registerUmount } from './umount.js';
import { register as registerWarmup } from './warmup.js';
import { BadUsageError } from '../errors.js';
import { EXIT_INTERRUPTED, InterruptedError, oneLine, reportError } from './util.js';

export const VERSION = '0.1.0';

/** Exit code for bad usage (unknown option, missing argument, bad option value), as in most Unix tools. */
const EXIT_USAGE = 2;

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('ferry')
    .description(
      'Ferry: a distributed POSIX file system on object storage.\nMETA is a metadata URL: sqlite:///abs/path.db, sqlite://relative.db,\n' +
        'redis://[:pass@]host:6379/db[?prefix=NAME] or postgres://user[:pass]@host:5432/db[?schema=NAME].'
    )
    .version(VERSION, '-V, --version')
    .configureOutput({
      // One line, like every other error: "ferry: unknown option '--x' (see ferry --help)".
      outputError: (str, write) => write(`ferry: ${oneLine(str.replace(/^error: /, ''))} (see --help)\n`),
    })
    .exitOverride();
  for (const register of [registerFormat, registerInfo, registerStatus, registerConfig, registerLs, registerCat, registerCp, registerFsck, registerGc, registerDump, registerLoad, registerMount, registerUmount, registerSync, registerRegion, registerReplicate, registerMirror, registerCacheNode, registerWarmup, registerServe, registerStats, registerDashboard, registerMetricsToken]) {
    register(program);
  }
  // Subcommands inherit the output configuration, but not exitOverride.
  for (const cmd of program.commands) cmd.exitOverride();
  program.addHelpText(
    'after',
    `
Examples:
  $ ferry format sqlite:///data/vol.db myvol --storage file:///data/bucket
  $ ferry cp sqlite:///data/vol.db -r ./photos :/photos
  $ ferry ls sqlite:///data/vol.db /photos -l
  $ ferry fsck sqlite:///data/vol.db`,
  );
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  if (argv.length <= 2) {
    program.outputHelp({ error: true });
    return EXIT_USAGE;
  }
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version "errors" are successful exits; the parser already printed its message.
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      return err.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    if (err instanceof BadUsageError) {
      // Worded like the parser's own errors, which it is in all but where it was caught.
      process.stderr.write(`ferry: ${oneLine(err.message)} (see --help)\n`);
      if (process.env['FERRY_DEBUG'] === '1' && err.stack !== undefined) process.stderr.write(err.stack + '\n');
      return EXIT_USAGE;
    }
    reportError(err);
    return err instanceof InterruptedError ? EXIT_INTERRUPTED : 1;
  }
}

// A closed stdout (`ferry cat ... | head`) ends the command quietly, like other Unix tools.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  reportError(err);
  process.exit(1);
});

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    reportError(err);
    process.exitCode = 1;
  },
);
