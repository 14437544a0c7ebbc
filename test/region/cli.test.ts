/**
 * The region commands end to end through the built CLI: format with regions, cp/cat with --region, replicate
 * --once, status, region add (the replicator bootstraps the new region) and remove, fsck and gc over every
 * bucket, and the one-line errors.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ensureBuilt, fails, ferry, ok } from '../cli/helpers.js';
import { pseudoRandom } from './helpers.js';

function countFiles(dir: string): number {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length;
}

describe('ferry region commands', () => {
  let dir: string;
  let meta: string;
  const bucket = (r: string): string => path.join(dir, `bucket-${r}`);
  before(() => {
    ensureBuilt();
    dir = mkdtempSync(path.join(tmpdir(), 'ferry-region-cli-'));
    meta = `sqlite://${dir}/vol.db`;
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('formats with regions, writes in one and reads in the other before and after replicate', () => {
    const outp = ok(['format', meta, 'regvol', '--region', `a=file://${bucket('a')}`, '--region', `b=file://${bucket('b')}`, '--primary', 'b', '--block-size', '64K', '--trash-days', '0']);
    assert.match(outp, /region b \(primary\)/);
    assert.match(ok(['region', 'list', meta]), /^b\s+primary\s+file:.*\na\s+bucket\s+file:/);
    const local = path.join(dir, 'data.bin');
    const data = pseudoRandom(300_000, 9);
    writeFileSync(local, data);
    ok(['cp', meta, '--region', 'a', local, ':/data.bin']);
    assert.equal(countFiles(bucket('b')), 0, 'written to a only');
    assert.ok(countFiles(bucket('a')) >= 5);
    const before = ferry(['cat', meta, '--region', 'b', '/data.bin'], { binary: true });
    assert.equal(before.code, 0, before.stderr);
    assert.ok(Buffer.from(before.stdout, 'latin1').equals(data), 'b reads a\'s blocks before replication');
    assert.match(ok(['status', meta]), /replication: never run \(start "ferry replicate"\); backlog 5 blocks \(293 KiB\) not yet copied/);
    assert.match(ok(['replicate', meta, '--once']), /replicated 1 slice\(s\), 5 block\(s\).*0 pending.*a -> b 293 KiB/);
    assert.equal(countFiles(bucket('b')), 5);
    const status = ok(['status', meta]);
    assert.match(status, /regions:\s+b \(primary\), a \(bucket\)/);
    assert.match(status, /replication at seq (\d+) of \1, lag 0\.0s, backlog 0 blocks/);
    const st = JSON.parse(ok(['status', meta, '--json'])) as { replication: Array<{ stats: { copiedBytes: Record<string, number> } }> };
    assert.ok((st.replication[0]?.stats.copiedBytes['a>b'] ?? 0) > 0);
    const afterRep = ferry(['cat', meta, '--region', 'b', '/data.bin'], { binary: true });
    assert.ok(Buffer.from(afterRep.stdout, 'latin1').equals(data));
    assert.match(ok(['fsck', meta]), /volume is clean/);
    assert.match(ok(['info', meta]), /region a:\s+file:/);
  });

  it('region add bootstraps the new bucket on the next replicate; remove refuses the only holder', () => {
    ok(['region', 'add', meta, 'c', `file://${bucket('c')}`]);
    assert.match(ok(['replicate', meta, '--once']), /replicated 1 slice\(s\), 5 block\(s\)/);
    assert.equal(countFiles(bucket('c')), 5);
    // A file written in c only (replication not run): c is its only holder.
    const local = path.join(dir, 'c.bin');
    writeFileSync(local, pseudoRandom(1000, 3));
    ok(['cp', meta, '--region', 'c', local, ':/c.bin']);
    fails(['region', 'remove', meta, 'c'], /only holder of 1 slice/);
    ok(['replicate', meta, '--once', '--to', 'a,b']);
    ok(['region', 'remove', meta, 'c']);
    assert.doesNotMatch(ok(['region', 'list', meta]), /^c /m);
    const cat = ferry(['cat', meta, '--region', 'a', '/c.bin'], { binary: true });
    assert.ok(Buffer.from(cat.stdout, 'latin1').equals(pseudoRandom(1000, 3)), 'readable after its home region left');
  });

  it('gc deletes released slices in every bucket', () => {
    ok(['cp', meta, '--region', 'a', path.join(dir, 'data.bin'), ':/again.bin']);
    ok(['replicate', meta, '--once']);
    const before = countFiles(bucket('a')) + countFiles(bucket('b'));
    ferry(['cp', meta, path.join(dir, 'c.bin'), ':/again.bin']); // overwrite: the old slice is released
    assert.match(ok(['gc', meta, '--grace', '0']), /released slices: 1 deleted/);
    assert.equal(countFiles(bucket('a')) + countFiles(bucket('b')), before - 10 + 1);
  });

  it('errors are one line', () => {
    fails(['cat', meta, '--region', 'x', '/data.bin'], /has no region 'x' \(its regions: b, a\)/);
    fails(['format', `sqlite://${dir}/v2.db`, 'vol2', '--storage', `file://${dir}/s`, '--region', `a=file://${dir}/x`], /option '--storage <URL>' cannot be used with option '--region <NAME=URL>'/, { code: 2 });
    fails(['format', `sqlite://${dir}/v2.db`, 'vol2', '--region', 'bad name=file:///x'], /invalid region name/);
    fails(['format', `sqlite://${dir}/v2.db`, 'vol2', '--region', `a=file://${dir}/x`, '--primary', 'z'], /--primary z is not one of/);
    fails(['region', 'remove', meta, 'b'], /primary and cannot be removed/);
    fails(['replicate', meta, '--once', '--to', 'nope'], /has no region 'nope'/);
  });
});
