/**
 * The changelog from the command line: `ferry config` shows and sets the retention bound and removes a
 * consumer; `ferry status` shows the log's bounds, the bound and every registered consumer; `ferry gc`
 * trims the log behind the consumers.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openMetaEngine } from '../../src/index.js';
import { ensureBuilt, fails, ok } from './helpers.js';

interface StatusJson {
  changelog: {
    lastSeq: number;
    floor: number;
    length: number;
    retention: { ageMsMax: number; entriesMax: number };
    consumers: Array<{ name: string; position: number; behind: number; trimmedPast: boolean }>;
  };
}

let root: string;
before(() => {
  ensureBuilt();
  root = mkdtempSync(path.join(tmpdir(), 'ferry-cli-log-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

describe('the changelog in the CLI', () => {
  it('config sets the retention bound, status shows consumers and bounds, gc trims behind the consumers', async () => {
    const meta = `sqlite://${root}/vol.db`;
    ok(['format', meta, 'logvol', '--storage', `file://${root}/bucket`, '--trash-days', '0']);
    assert.match(ok(['config', meta]), /log retention: 7 day\(s\) or 10000000 entries/);
    assert.match(ok(['config', meta, '--log-retention-days', '0.5', '--log-retention-entries', '1000']), /log retention: 0\.500 day\(s\) or 1000 entries/);
    assert.deepEqual(JSON.parse(ok(['config', meta, '--json'])), { logRetention: { ageMsMax: 43_200_000, entriesMax: 1000 } });
    fails(['config', meta, '--log-retention-days', '-1'], /invalid --log-retention-days/);
    fails(['config', meta, '--log-retention-entries', '0'], /invalid --log-retention-entries/);
    fails(['config', meta, '--remove-consumer', 'nobody'], /no changelog consumer named 'nobody'/);

    // Some history, and two consumers at different places in it.
    const engine = await openMetaEngine(meta);
    try {
      for (let i = 0; i < 20; i++) {
        await engine.txn(async (tx) => {
          tx.put('xattr', '1', `user.k${i}`, 'dg==');
          await Promise.resolve();
        });
      }
      const last = await engine.lastSeq();
      await engine.registerConsumer('mirror:eu', last - 15);
      await engine.registerConsumer('replicate:*>*', last - 5);
    } finally {
      await engine.close();
    }
    let status = JSON.parse(ok(['status', meta, '--json'])) as StatusJson;
    const last = status.changelog.lastSeq;
    assert.equal(status.changelog.floor, 0);
    assert.equal(status.changelog.length, last);
    assert.deepEqual(status.changelog.retention, { ageMsMax: 43_200_000, entriesMax: 1000 });
    assert.deepEqual(
      status.changelog.consumers.map((c) => [c.name, c.position, c.behind, c.trimmedPast]),
      [
        ['mirror:eu', last - 15, 15, false],
        ['replicate:*>*', last - 5, 5, false],
      ],
    );
    const text = ok(['status', meta]);
    assert.match(text, new RegExp(`changelog: last seq ${last} \\(${last} entries\\); retention 0\\.500 day`));
    assert.match(text, new RegExp(`consumer mirror:eu at seq ${last - 15}, 15 behind, updated`));

    // gc trims behind the slowest consumer; once it is removed, behind the other.
    assert.match(ok(['gc', meta]), new RegExp(`${last - 15} changelog entries trimmed`));
    status = JSON.parse(ok(['status', meta, '--json'])) as StatusJson;
    assert.deepEqual([status.changelog.floor, status.changelog.length], [last - 15, 15]);
    assert.match(ok(['config', meta, '--remove-consumer', 'mirror:eu']), /consumer 'mirror:eu' removed/);
    ok(['gc', meta]);
    status = JSON.parse(ok(['status', meta, '--json'])) as StatusJson;
    assert.deepEqual([status.changelog.floor, status.changelog.consumers.map((c) => c.name)], [last - 5, ['replicate:*>*']]);

    // A consumer behind the floor is shown as such.
    const again = await openMetaEngine(meta);
    try {
      await again.registerConsumer('mirror:old', 1);
    } finally {
      await again.close();
    }
    assert.match(ok(['status', meta]), /consumer mirror:old at seq 1, behind the trimmed log \(it re-bootstraps\)/);
  });
});
