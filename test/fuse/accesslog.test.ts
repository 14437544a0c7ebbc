/**
 * The access log's queues (no mount needed): nothing is kept without readers, each reader gets every line
 * in order, a reader that stops reading loses lines past its bound (counted, and told once it reads again)
 * without slowing the writer, and an idle read answers "#" rather than waiting for ever.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AccessLog, describeArgs, READER_QUEUE_BYTES_MAX } from '../../src/fuse/accesslog.js';

const never = (): boolean => false;

describe('AccessLog', () => {
  it('keeps nothing while no one reads, then one line per operation for each reader', async () => {
    const log = new AccessLog();
    assert.equal(log.active, false);
    log.record('lookup', undefined, 'parent=1,name="a"', -2, 0.001);
    log.open(7);
    log.open(8);
    log.record('mkdir', { uid: 1, gid: 2, pid: 3 }, 'parent=1,name="d",mode=0755', 0, 0.0005);
    log.record('lookup', undefined, 'parent=1,name="x"', -2, 0.25);
    for (const fh of [7, 8]) {
      const text = (await log.read(fh, 1 << 20, never)).toString();
      const lines = text.trimEnd().split('\n');
      assert.equal(lines.length, 2, text);
      assert.match(lines[0]!, /^\S+Z \[uid:1,gid:2,pid:3\] mkdir \(parent=1,name="d",mode=0755\): OK <0\.000500>$/);
      assert.match(lines[1]!, /^\S+Z lookup \(parent=1,name="x"\): ENOENT <0\.250000>$/);
    }
    log.release(7);
    log.release(8);
    assert.equal(log.active, false);
  });

  it('a read smaller than a line gets its head, the next read its tail', async () => {
    const log = new AccessLog();
    log.open(1);
    log.record('read', undefined, 'ino=5,fh=1,size=4096,offset=0', 0, 0.001);
    const a = await log.read(1, 10, never);
    const b = await log.read(1, 1 << 20, never);
    assert.equal(a.length, 10);
    assert.match(Buffer.concat([a, b]).toString(), / read \(ino=5,fh=1,size=4096,offset=0\): OK <0\.001000>\n$/);
  });

  it('drops and counts lines for a reader that stopped reading, and says so when it reads again', async () => {
    const log = new AccessLog();
    log.open(1);
    const args = 'x'.repeat(200);
    const n = Math.ceil(READER_QUEUE_BYTES_MAX / 200) + 100;
    for (let i = 0; i < n; i++) log.record('getattr', undefined, args, 0, 0);
    assert.ok(log.dropped > 0, 'some dropped');
    const first = (await log.read(1, 4096, never)).toString();
    assert.match(first, new RegExp(`^# dropped ${log.dropped} lines`));
  });

  it('an idle read answers "#" after a while; an interrupted one fails with EINTR', async () => {
    const log = new AccessLog();
    log.open(1);
    const t0 = Date.now();
    assert.equal((await log.read(1, 100, never)).toString(), '#\n');
    assert.ok(Date.now() - t0 >= 900);
    await assert.rejects(log.read(1, 100, () => true), { code: 'EINTR' });
    // A line that arrives while a read waits wakes it at once.
    const p = log.read(1, 1000, never);
    setTimeout(() => log.record('statfs', undefined, 'ino=1', 0, 0), 20);
    assert.match((await p).toString(), / statfs \(ino=1\): OK/);
  });

  it('describes arguments by name: numbers, strings, modes in octal; never data', () => {
    const names = [['parent', 'number'], ['name', 'string'], ['mode', 'number'], ['data', 'buffer']] as const;
    assert.equal(describeArgs(names, ['h', 1, 'a"b', 0o644, Buffer.from('secret')], 1), 'parent=1,name="a\\"b",mode=0644');
  });
});
