/**
 * The README's first command: `npm start` runs the two-region lab (src/demo/main.ts) on the embedded defaults.
 * It must finish, and every verdict it prints must be the good one.
 */

import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { ensureBuilt, ROOT } from './helpers.js';

void describe('npm start (the two-region lab)', () => {
  void it('runs to the end with every read verified, replication caught up, fsck clean', async () => {
    ensureBuilt();
    const r = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'demo', 'main.js')], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    const [code, stdout, stderr] = [r.status, r.stdout, r.stderr];
    const dir = /Remove it with: rm -rf (\S+)/.exec(stdout)?.[1];
    try {
      assert.equal(code, 0, `the lab failed:\n${stdout}\n${stderr}`);
      assert.match(stdout, /read in b +7 files .* before replication: all match/);
      assert.match(stdout, /replicate .* 0 pending/);
      assert.match(stdout, /read in b +again after replication: all match; \d+ blocks from b, 0 from a/);
      assert.match(stdout, /backlog at the end 0 blocks/);
      assert.match(stdout, /a down .* b still reads all 7 files: all match/);
      assert.match(stdout, /fsck +volume is clean/);
      assert.match(stdout, /mirror lag \(commit in a to applied in c's replica\) p50 \d+ ms/);
      assert.match(stdout, /read in c +\d+ files .* from its replica, \/steady lists \d+: all match/);
      assert.match(stdout, /a meta off .* c still lists and reads all \d+ files from its replica: all match/);
      assert.match(stdout, /group in c +2 cache nodes, 3 readers read all \d+ files .*: all match/);
      assert.match(stdout, /crossed a -> c: [\d.]+ [KM]iB of blocks .* \d+ fetched from a, each block once/);
      assert.match(stdout, /write in c +\/from-c\.txt through a's metadata service in \d+ ms: read back at once in c \(match\) and in a \(match\)/);
      assert.match(stdout, /promote c +a's metadata moved away; c promoted with --force: primary of epoch 2 at seq \d+ .*c accepts writes/);
      assert.match(stdout, /fenced +a came back and was demoted; a's old client writing: EROFS: .*region 'c' is the primary of epoch 2.*; reading: carries on/);
      assert.match(stdout, /verified +every read by sha256: all match/);
      assert.doesNotMatch(stdout + stderr, /mismatch|differ|FAIL/i);
    } finally {
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    }
  });
});
