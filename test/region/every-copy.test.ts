/**
 * Every copy is checked (issue 13): `ferry fsck` verifies the replicas that slice records say are in place, not
 * only the home bucket's copies, and `ferry replicate --scan --check` (or `--scan --verify full`) reads every
 * replica and copies again the ones that do not verify. The damage is what a listing cannot see: a replica
 * with the right size and a flipped byte, and a well-formed block of another key stored under this key.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FileStore } from '../../src/object/file.js';
import { ensureBuilt, fails, ferry, ok } from '../cli/helpers.js';
import { badBlocks, pseudoRandom } from './helpers.js';

const KiB = 1024;

/** Block files in a bucket directory: key (relative path) -> absolute path, sorted by key. */
function blockFiles(bucket: string): Array<{ key: string; file: string; len: number }> {
  const out: Array<{ key: string; file: string; len: number }> = [];
  for (const e of readdirSync(path.join(bucket, 'chunks'), { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const file = path.join(e.parentPath, e.name);
    out.push({ key: path.relative(bucket, file), file, len: Number(e.name.split('_')[2]) });
  }
  return out.sort((x, y) => (x.key < y.key ? -1 : 1));
}

describe('every copy is checked', () => {
  let dir: string;
  let meta: string;
  const bucket = (r: string): string => path.join(dir, `bucket-${r}`);
  /** The replicas damaged by `damage()`, by kind. */
  let flipped: { key: string; file: string; len: number };
  let swapped: { key: string; file: string; len: number };
  let deleted: { key: string; file: string; len: number };

  /** Damages three replicas in b: a flipped byte, another block's object under this key, one deleted. */
  function damage(): void {
    const full = blockFiles(bucket('b')).filter((b) => b.len === 64 * KiB);
    assert.ok(full.length >= 4, `${full.length} full blocks in b`);
    [flipped, swapped, deleted] = [full[0]!, full[1]!, full[2]!];
    const buf = readFileSync(flipped.file);
    buf[buf.length - 100]! ^= 0x01;
    writeFileSync(flipped.file, buf);
    // Same length, well-formed, checksums fine: only the identity in its header says it is another block.
    writeFileSync(swapped.file, readFileSync(full[3]!.file));
    unlinkSync(deleted.file);
  }

  before(() => {
    ensureBuilt();
    dir = mkdtempSync(path.join(tmpdir(), 'ferry-every-copy-'));
    meta = `sqlite://${dir}/vol.db`;
    ok(['format', meta, 'copies', '--region', `a=file://${bucket('a')}`, '--region', `b=file://${bucket('b')}`, '--primary', 'a', '--block-size', '64K', '--trash-days', '0']);
    const local = path.join(dir, 'data.bin');
    writeFileSync(local, pseudoRandom(300 * KiB + 5, 31));
    ok(['cp', meta, local, ':/data.bin']);
    writeFileSync(local, pseudoRandom(130 * KiB, 32));
    ok(['cp', meta, local, ':/more.bin']);
    ok(['replicate', meta, '--once']);
    assert.match(ok(['fsck', meta]), /volume is clean/);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('fsck reports a corrupt, a misplaced and a missing replica, naming region and key, and exits 1', () => {
    assert.match(ok(['fsck', meta]), /volume is clean/);
    damage();
    const r = ferry(['fsck', meta]);
    assert.equal(r.code, 1, `fsck passed with damaged replicas: ${r.stdout}`);
    const lines = r.stdout.split('\n');
    const line = (key: string): string => lines.find((l) => l.includes(key)) ?? `(no line for ${key} in:\n${r.stdout})`;
    assert.match(line(flipped.key), /its replica in region b is corrupt: .*checksum mismatch/);
    assert.match(line(swapped.key), /its replica in region b is corrupt: identity mismatch: the copy is block \d+ of slice \d+/);
    assert.match(line(deleted.key), /missing from its replica in region b/);
    assert.match(r.stdout, /fsck: 3 problem\(s\) found/);
    assert.match(r.stdout, / 8 blocks \(.*\), 16 copies checked/);
    // The home bucket alone is clean; b alone is not; a name that is no region is bad usage.
    assert.match(ok(['fsck', meta, '--region', 'a']), /volume is clean: .* 8 blocks .* at changelog/);
    const onlyB = ferry(['fsck', meta, '--region', 'b']);
    assert.equal(onlyB.code, 1);
    assert.match(onlyB.stdout, /3 problem\(s\) found/);
    const fast = ferry(['fsck', meta, '--fast']);
    assert.equal(fast.code, 1);
    assert.match(fast.stdout, /1 problem\(s\) found/, 'HEAD finds only the missing one');
    fails(['fsck', meta, '--region', 'nope'], /invalid --region 'nope': volume 'copies' has no region 'nope'/, { code: 2 });
  });

  it('replicate --scan --check copies the bad replicas again, verified; fsck is clean after', async () => {
    const out = ok(['replicate', meta, '--scan', '--check', '--once']);
    assert.match(out, /scan: .*3 blocks copied, 0 slice\(s\) failed/);
    assert.match(ok(['fsck', meta]), /volume is clean/);
    const b = new FileStore(bucket('b'));
    assert.deepEqual(await badBlocks(b, [flipped, swapped, deleted]), []);
    await b.close();
  });

  it('replicate --scan --verify full also reads every replica', () => {
    damage();
    assert.match(ok(['replicate', meta, '--scan', '--verify', 'full', '--once']), /scan: .*3 blocks copied, 0 slice\(s\) failed/);
    assert.match(ok(['fsck', meta]), /volume is clean/);
    // Without either, a scan compares listings only (and says so); --check needs --scan.
    fails(['replicate', meta, '--check', '--once'], /--check needs --scan/, { code: 2 });
  });

  it('a corrupt home copy is reported as such, and copied back from a replica by --scan --check', () => {
    const home = blockFiles(bucket('a')).find((b) => b.len === 64 * KiB)!;
    const buf = readFileSync(home.file);
    buf[buf.length - 1]! ^= 0xff;
    writeFileSync(home.file, buf);
    const r = ferry(['fsck', meta]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, new RegExp(`block ${home.key.replaceAll('/', '\\/')} .*: .*checksum mismatch`));
    assert.doesNotMatch(r.stdout.split('\n').find((l) => l.includes(home.key)) ?? '', /replica/);
    // --scan --check copies it back from the replica, which verifies.
    assert.match(ok(['replicate', meta, '--scan', '--check', '--once']), /scan: .*\(1 bad\), 1 blocks copied, 0 slice\(s\) failed/);
    assert.match(ok(['fsck', meta]), /volume is clean/);
  });
});
