/**
 * No command prints a secret, whatever the URL looks like: every command that takes a metadata or bucket URL
 * is fed URLs whose password or secret key holds '@ / ? # : %' (parseable or not: a mistyped port, an
 * unescaped '#'), pointing at servers that are not there, and neither stdout, stderr nor the mount's log may
 * hold the secret or a recognisable piece of it.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ensureBuilt, ferryAsync, type Run } from './helpers.js';

/** One secret with every character a URL gives meaning to; its pieces are what a half-masked URL would show. */
const SECRET = 'Zq8@x/Yw?r#T:v%41Kp';
const PIECES = ['Zq8', 'Yw', '41Kp', SECRET, encodeURIComponent(SECRET)];

let root: string;
before(() => {
  ensureBuilt();
  root = mkdtempSync(path.join(tmpdir(), 'ferry-secrets-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

/** Metadata URLs at closed ports (nothing answers), each holding the secret. */
const METAS = [
  `postgres://alice:${SECRET}@127.0.0.1:1/vol`,
  `postgres://alice:${SECRET}@127.0.0.1:5x432/vol`,
  `redis://:${SECRET}@127.0.0.1:1/3`,
  `redis://${SECRET}@127.0.0.1:1/3`,
  `rediss://bob:${SECRET}@127.0.0.1:1/2?prefix=v`,
  `redis+sentinel://127.0.0.1:1/master/0?sentinel-password=${SECRET}`,
];
/** Bucket URLs holding the secret (a closed endpoint). */
const BUCKETS = [
  `s3://bucket/p?endpoint=http://127.0.0.1:1&access-key=AKIA1&secret-key=${SECRET}&region=us-east-1&path-style=true`,
  `s3://AKIA1:${SECRET}@bucket/p?endpoint=http://127.0.0.1:1`,
];

function clean(what: string, r: Run, extra = ''): void {
  const text = `${r.stdout}\n${r.stderr}\n${extra}`;
  for (const p of PIECES) assert.ok(!text.includes(p), `${what} printed ${JSON.stringify(p)}:\n${text}`);
  assert.notEqual(r.code, 0, `${what} should fail (nothing answers there)`);
}

void describe('no command prints a secret', () => {
  void it('metadata URLs: every command', async () => {
    const dump = path.join(root, 'dump.jsonl');
    writeFileSync(dump, '');
    const mnt = path.join(root, 'mnt');
    const log = path.join(root, 'mount.log');
    const every = (meta: string): string[][] => [
      ['format', meta, 'vol', '--storage', `file://${root}/b`],
      ['info', meta],
      ['status', meta],
      ['ls', meta, '/'],
      ['cat', meta, '/x'],
      ['cp', meta, ':/x', path.join(root, 'x')],
      ['fsck', meta],
      ['gc', meta],
      ['dump', meta, path.join(root, 'out.jsonl')],
      ['load', meta, dump],
      ['region', 'list', meta],
      ['region', 'add', meta, 'far', `file://${root}/far`],
      ['replicate', meta, '--once'],
      ['mount', meta, mnt, '--log', log],
    ];
    // Every command with one URL of each engine; the other URL shapes through the commands that parse and
    // connect differently (format creates, info and status only read).
    const commands = [
      ...every(METAS[1]!),
      ...every(METAS[2]!),
      ...METAS.flatMap((meta) => [['format', meta, 'vol', '--storage', `file://${root}/b`], ['info', meta], ['status', meta]]),
    ];
    const runs: Run[] = new Array<Run>(commands.length);
    let next = 0;
    // Each command waits for a connection that is refused or times out: many at once, bounded.
    await Promise.all(
      Array.from({ length: 12 }, async () => {
        while (next < commands.length) {
          const i = next++;
          runs[i] = await ferryAsync(commands[i]!);
        }
      }),
    );
    const mountLog = existsSync(log) ? readFileSync(log, 'utf8') : '';
    runs.forEach((r, i) => clean(`${commands[i]!.slice(0, 2).join(' ')}`, r, mountLog));
  });

  void it('bucket URLs: format, region add, sync', async () => {
    const meta = `sqlite://${root}/vol.db`;
    for (const bucket of BUCKETS) {
      const commands: string[][] = [
        ['format', meta, 'vol', '--storage', bucket],
        ['format', `sqlite://${root}/vol2.db`, 'vol', '--region', `a=${bucket}`],
        ['sync', bucket, `file://${root}/dst`],
        ['sync', `file://${root}`, bucket],
      ];
      const runs = await Promise.all(commands.map((c) => ferryAsync(c)));
      runs.forEach((r, i) => clean(`${commands[i]!.slice(0, 2).join(' ')} with ${bucket.slice(0, 12)}`, r));
    }
  });
});
