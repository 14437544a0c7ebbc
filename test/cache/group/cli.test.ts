/**
 * `ferry cat --cache-group G` and `ferry cp --cache-group G` (separate processes) read a file through the
 * group's node (in this process): right bytes, the node fetched each block once and served the second
 * command from its cache; a bad group name is bad usage (exit 2); a group with no live member warns and
 * reads from the bucket.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Volume } from '../../../src/index.js';
import { CLI, ensureBuilt } from '../../cli/helpers.js';
import { makeGroupVolume, MiB, sha256, type GroupVolume } from './helpers.js';

const BLOCK = 4 * MiB;
const SIZE = 3 * BLOCK - 12345;

/** Runs the CLI without blocking this process (the node it reads through runs here); stdout as bytes. */
function ferry(args: string[]): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, FERRY_DEBUG: '', FERRY_NO_PROGRESS: '1' } });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr }));
  });
}

void describe('cat and cp read through a cache group', () => {
  let gv: GroupVolume;
  let node: Volume;
  before(async () => {
    ensureBuilt();
    gv = await makeGroupVolume({ size: SIZE, seed: 23, blockBytes: BLOCK });
    node = await gv.open({
      memCacheBytes: 0,
      cacheDir: join(gv.dir, 'node'),
      cacheBytes: 256 * MiB,
      cacheGroup: { group: 'g', listen: { host: '127.0.0.1', port: 0 }, role: 'node', timeoutMs: 60_000 },
    });
  });
  after(() => gv.cleanup());

  void it('cat --cache-group, then cp --cache-group: right bytes, each block fetched once, by the node', async () => {
    const cat = await ferry(['cat', '--cache-group', 'g', gv.metaUrl, '/data']);
    assert.equal(cat.code, 0, cat.stderr);
    assert.equal(cat.stderr, '');
    assert.equal(sha256(cat.stdout), gv.digest);
    const owner = node.cacheGroup!.owner!;
    assert.equal(owner.stats.fetched, 3, 'the node fetched the 3 blocks the cat read through it');
    assert.equal(gv.bucket.traffic.gets, 3, 'the node read each block from the bucket once');

    const dest = join(gv.dir, 'copy.bin');
    const cp = await ferry(['cp', '--cache-group', 'g', gv.metaUrl, ':/data', dest]);
    assert.equal(cp.code, 0, cp.stderr);
    assert.equal(sha256(await readFile(dest)), gv.digest);
    assert.equal(owner.stats.fetched, 3, 'nothing fetched again: the cp was served from the node');
    assert.ok(owner.stats.diskHits + owner.stats.memoryHits >= 3, `${owner.stats.diskHits} disk and ${owner.stats.memoryHits} memory answers`);
  });

  void it('a bad group name is bad usage; a group with no live member warns and reads the bucket', async () => {
    const bad = await ferry(['cat', '--cache-group', 'no such group!', gv.metaUrl, '/data']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^ferry: bad cache group name "no such group!"/);
    assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
    assert.equal(bad.stdout.length, 0);

    const empty = await ferry(['cat', '--cache-group', 'nobody', gv.metaUrl, '/data']);
    assert.equal(empty.code, 0, empty.stderr);
    assert.equal(sha256(empty.stdout), gv.digest);
    assert.match(empty.stderr, /cache group 'nobody' has no live member: reading from the buckets/);
  });
});
