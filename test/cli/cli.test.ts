/**
 * The `ferry` command line, run as a user would: the built dist/cli/main.js in a child process. Every
 * command's happy path, and bad input everywhere: a non-zero exit, one `ferry: ...` line on stderr without a
 * stack trace, and nothing created or changed.
 */

import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync, type Dirent } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openMetaEngine, openVolume } from '../../src/index.js';
import { allFailCleanly, ensureBuilt, failsCleanly, ferry, ok } from './helpers.js';

const COMMANDS = ['format', 'info', 'status', 'config', 'ls', 'cat', 'cp', 'fsck', 'gc', 'dump', 'load', 'dashboard'];

let root: string;
let n = 0;

/** A fresh directory under the suite's temp root. */
function freshDir(): string {
  const d = path.join(root, `t${++n}`);
  mkdirSync(d);
  return d;
}

/** A formatted volume in a fresh directory: { dir, meta, bucket }. */
function newVolume(extra: string[] = []): { dir: string; meta: string; bucket: string } {
  const dir = freshDir();
  const meta = `sqlite://${dir}/vol.db`;
  const bucket = path.join(dir, 'bucket');
  ok(['format', meta, 'testvol', '--storage', `file://${bucket}`, '--block-size', '64K', '--trash-days', '0', ...extra]);
  return { dir, meta, bucket };
}

before(() => {
  ensureBuilt();
  root = mkdtempSync(path.join(tmpdir(), 'ferry-cli-'));
});

after(() => {
  rmSync(root, { recursive: true, force: true });
});

describe('help', () => {
  it('ferry --help lists every command', () => {
    const out = ok(['--help']);
    for (const c of COMMANDS) assert.match(out, new RegExp(`^  ${c} `, 'm'));
  });
  for (const c of COMMANDS) {
    it(`ferry ${c} --help has a description and examples`, () => {
      const out = ok([c, '--help']);
      assert.match(out, new RegExp(`^Usage: ferry ${c} `, 'm'));
      assert.match(out, /Examples:\n  \$ ferry /);
    });
  }
  it('no arguments prints help and exits 2', () => {
    const r = ferry([]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Usage: ferry/);
  });
});

describe('format, info, status', () => {
  it('formats a volume and shows it', () => {
    const dir = freshDir();
    const meta = `sqlite://${dir}/vol.db`;
    const out = ok(['format', meta, 'my-vol', '--storage', `file://${dir}/bucket`, '--block-size', '1M', '--compress', 'zstd', '--trash-days', '3', '--capacity', '10G']);
    assert.match(out, /formatted volume 'my-vol'/);
    assert.ok(statSync(path.join(dir, 'bucket')).isDirectory(), 'bucket directory created');
    const info = JSON.parse(ok(['info', meta, '--json'])) as Record<string, unknown>;
    assert.equal(info['name'], 'my-vol');
    assert.equal(info['blockBytes'], 1 << 20);
    assert.equal(info['compression'], 'zstd');
    assert.equal(info['trashDays'], 3);
    assert.equal(info['capacityBytes'], 10 * 2 ** 30);
    assert.match(ok(['info', meta]), /^name:\s+my-vol$/m);
    const status = JSON.parse(ok(['status', meta, '--json'])) as { volume: { name: string }; sessions: unknown[]; changelog: { lastSeq: number }; usage: { usedBytes: number } };
    assert.equal(status.volume.name, 'my-vol');
    assert.deepEqual(status.sessions, []);
    assert.ok(status.changelog.lastSeq >= 1);
    assert.equal(status.usage.usedBytes, 0);
    assert.match(ok(['status', meta]), /sessions:\s+0/);
  });

  it('accepts a relative sqlite:// URL and file:// bucket', () => {
    const dir = freshDir();
    ok(['format', 'sqlite://rel.db', 'relvol', '--storage', 'file://rb'], { cwd: dir });
    assert.ok(existsSync(path.join(dir, 'rel.db')));
    assert.match(ok(['info', 'sqlite://rel.db'], { cwd: dir }), /relvol/);
  });

  it('never prints a secret in the storage URL (info, status, dump), unless dump --keep-secrets', () => {
    const dir = freshDir();
    const meta = `sqlite://${dir}/vol.db`;
    // A file:// bucket whose directory name looks like a URL with a credential in its query.
    ok(['format', meta, 'secret-vol', '--storage', `file://${dir}/b?token=hunter2`]);
    const outputs = [ok(['info', meta]), ok(['info', meta, '--json']), ok(['status', meta]), ok(['status', meta, '--json']), ok(['dump', meta])];
    for (const o of outputs) {
      assert.doesNotMatch(o, /hunter2/);
      assert.match(o, /token=\*\*\*\*/);
    }
    assert.match(ok(['dump', meta, '--keep-secrets']).split('\n').slice(1).join('\n'), /token=hunter2/);
  });

  it('--force formats an existing volume again', () => {
    const { meta, bucket } = newVolume();
    ok(['format', meta, 'again', '--storage', `file://${bucket}`, '--force']);
    assert.match(ok(['info', meta]), /again/);
  });

  it('status lists the sessions of open clients', async () => {
    const { meta } = newVolume();
    const vol = await openVolume(meta, { region: 'eu-west', heartbeatMs: 0 });
    try {
      const status = JSON.parse(ok(['status', meta, '--json'])) as { sessions: Array<{ pid: number; region: string }> };
      assert.equal(status.sessions.length, 1);
      assert.equal(status.sessions[0]!.pid, process.pid);
      assert.equal(status.sessions[0]!.region, 'eu-west');
      assert.match(ok(['status', meta]), new RegExp(`pid ${process.pid} region eu-west`));
    } finally {
      await vol.close();
    }
  });
});

describe('format refuses bad input and leaves nothing behind', () => {
  const cases: Array<[string, (dir: string) => string[], RegExp]> = [
    ['an invalid name', (d) => ['format', `sqlite://${d}/v.db`, 'Bad_Name', '--storage', `file://${d}/b`], /invalid volume name/],
    ['a name too short', (d) => ['format', `sqlite://${d}/v.db`, 'ab', '--storage', `file://${d}/b`], /invalid volume name/],
    ['a block size that is not a power of two', (d) => ['format', `sqlite://${d}/v.db`, 'vol', '--storage', `file://${d}/b`, '--block-size', '3M'], /invalid --block-size '3M'/],
    ['a block size too large', (d) => ['format', `sqlite://${d}/v.db`, 'vol', '--storage', `file://${d}/b`, '--block-size', '32M'], /invalid --block-size '32M'/],
    ['a malformed size', (d) => ['format', `sqlite://${d}/v.db`, 'vol', '--storage', `file://${d}/b`, '--block-size', 'big'], /invalid --block-size 'big'/],
    ['an unknown compression', (d) => ['format', `sqlite://${d}/v.db`, 'vol', '--storage', `file://${d}/b`, '--compress', 'gzip'], /invalid --compress 'gzip': use none, lz4, zstd/],
    ['bad trash days', (d) => ['format', `sqlite://${d}/v.db`, 'vol', '--storage', `file://${d}/b`, '--trash-days', '-1'], /invalid --trash-days '-1'/],
    ['a mem:// bucket, which dies with the process', (d) => ['format', `sqlite://${d}/v.db`, 'vol', '--storage', 'mem://x'], /mem:\/\/ bucket/],
    ['an unknown storage scheme', (d) => ['format', `sqlite://${d}/v.db`, 'vol', '--storage', 'gopher://x'], /unknown storage scheme/],
    ['a bucket whose parent is missing', (d) => ['format', `sqlite://${d}/v.db`, 'vol', '--storage', `file://${d}/no/such/b`], /does not exist/],
    ['an unknown metadata scheme', (d) => ['format', `mysql://${d}/v.db`, 'vol', '--storage', `file://${d}/b`], /unknown metadata scheme/],
    ['a metadata directory that is missing', (d) => ['format', `sqlite://${d}/nodir/v.db`, 'vol', '--storage', `file://${d}/b`], /cannot create/],
    ['a bucket that is a file', (d) => (writeFileSync(path.join(d, 'f'), 'x'), ['format', `sqlite://${d}/v.db`, 'vol', '--storage', `file://${d}/f`]), /not a directory/],
  ];
  for (const [what, args, pattern] of cases) {
    it(what, async () => {
      const dir = freshDir();
      const a = args(dir);
      await failsCleanly(dir, a, pattern);
      assert.ok(!existsSync(path.join(dir, 'v.db')), 'no database file left behind');
      assert.ok(!existsSync(path.join(dir, 'b')), 'no bucket directory left behind');
    });
  }

  it('an existing volume without --force', async () => {
    const { dir, meta, bucket } = newVolume();
    await failsCleanly(dir, ['format', meta, 'other', '--storage', `file://${bucket}`], /already holds volume 'testvol'.*--force/);
  });

  it('a bucket that already holds volume data', async () => {
    const { dir, bucket } = newVolume();
    const vol = await openVolume(`sqlite://${dir}/vol.db`, { heartbeatMs: 0 });
    await vol.writeFile('/x', 'data');
    await vol.close();
    await failsCleanly(dir, ['format', `sqlite://${dir}/second.db`, 'second', '--storage', `file://${bucket}`], /already holds volume data/);
    assert.ok(!existsSync(path.join(dir, 'second.db')));
  });

  it('a missing required option exits 2 with one line', async () => {
    const dir = freshDir();
    await failsCleanly(dir, ['format', `sqlite://${dir}/v.db`, 'vol'], /--storage/, { code: 2 });
  });
});

describe('bad META everywhere', () => {
  const readers: Array<(meta: string) => string[]> = [
    (m) => ['info', m],
    (m) => ['status', m],
    (m) => ['ls', m],
    (m) => ['cat', m, '/x'],
    (m) => ['cp', m, '/etc/hostname', ':/x'],
    (m) => ['fsck', m],
    (m) => ['gc', m],
    (m) => ['dump', m],
  ];
  for (const cmd of readers) {
    const name = cmd('META')[0]!;
    it(`${name}: unknown scheme, missing file, not a database, empty file, unformatted engine, not a URL`, async () => {
      const dir = freshDir();
      writeFileSync(path.join(dir, 'text.db'), 'hello, not a database\n');
      writeFileSync(path.join(dir, 'empty.db'), '');
      mkdirSync(path.join(dir, 'adir.db'));
      const engine = await openMetaEngine(`sqlite://${dir}/blank.db`, { create: true });
      await engine.close();
      await allFailCleanly(dir, [
        [cmd('foo://bar'), /unknown metadata scheme "foo:"/],
        [cmd('just-a-path.db'), /not a URL/],
        [cmd(`sqlite://${dir}/missing.db`), /does not exist.*ferry format/],
        [cmd(`sqlite://${dir}/text.db`), /not a Ferry volume/],
        [cmd(`sqlite://${dir}/empty.db`), /not a Ferry volume/],
        [cmd(`sqlite://${dir}/adir.db`), /not a file/],
        [cmd(`sqlite://${dir}/blank.db`), /no volume in .*ferry format/],
      ]);
      assert.ok(!existsSync(path.join(dir, 'missing.db')), 'no database created');
    });
  }

  it('a volume whose bucket is gone', async () => {
    const { dir, meta, bucket } = newVolume();
    renameSync(bucket, `${bucket}.moved`);
    const args = [['ls', meta], ['cat', meta, '/x'], ['cp', meta, '/etc/hostname', ':/x'], ['fsck', meta], ['gc', meta]];
    await allFailCleanly(dir, args.map((a) => [a, /bucket .* does not exist/]));
    assert.ok(!existsSync(bucket), 'the bucket was not recreated');
  });
});

describe('ls, cat, cp', () => {
  let vol: { dir: string; meta: string; bucket: string };
  let local: string;

  before(() => {
    vol = newVolume();
    local = freshDir();
    writeFileSync(path.join(local, 'hello.txt'), 'hello ferry\n');
    chmodSync(path.join(local, 'hello.txt'), 0o640);
    mkdirSync(path.join(local, 'tree/sub/deeper'), { recursive: true });
    writeFileSync(path.join(local, 'tree/a.txt'), 'a'.repeat(1000));
    writeFileSync(path.join(local, 'tree/sub/big.bin'), Buffer.alloc(300_000, 7));
    writeFileSync(path.join(local, 'tree/sub/deeper/.hidden'), 'secret');
    symlinkSync('a.txt', path.join(local, 'tree/link'));
    chmodSync(path.join(local, 'tree/sub'), 0o750);
  });

  it('copies a local file into the volume root and back', () => {
    ok(['cp', vol.meta, path.join(local, 'hello.txt'), ':/']);
    assert.equal(ok(['cat', vol.meta, '/hello.txt']), 'hello ferry\n');
    assert.equal(ok(['cat', vol.meta, ':/hello.txt']), 'hello ferry\n', 'the :/ notation works in cat too');
    const back = path.join(local, 'back.txt');
    ok(['cp', vol.meta, ':/hello.txt', back]);
    assert.equal(readFileSync(back, 'utf8'), 'hello ferry\n');
    assert.equal(statSync(back).mode & 0o777, 0o640, 'mode preserved both ways');
    assert.match(ok(['ls', vol.meta, '/', '-l']), /^-rw-r----- +1 .* 12 .* hello\.txt$/m);
  });

  it('copies to a new name, and into an existing directory', () => {
    ok(['cp', vol.meta, path.join(local, 'hello.txt'), ':/renamed.txt']);
    assert.equal(ok(['cat', vol.meta, '/renamed.txt']), 'hello ferry\n');
    ok(['cp', vol.meta, '-r', path.join(local, 'tree'), ':/']);
    ok(['cp', vol.meta, path.join(local, 'hello.txt'), path.join(local, 'back.txt'), ':/tree']);
    assert.equal(ok(['ls', vol.meta, '/tree']), 'a.txt\nback.txt\nhello.txt\nlink\nsub\n');
  });

  it('copies a directory tree recursively, with modes, symlinks and hidden files', () => {
    ok(['cp', vol.meta, '-r', path.join(local, 'tree'), ':/copy']);
    assert.equal(ok(['ls', vol.meta, '/copy']), 'a.txt\nlink\nsub\n');
    assert.equal(ok(['ls', vol.meta, '/copy/sub/deeper']), '', 'dot files hidden without -a');
    assert.equal(ok(['ls', vol.meta, '/copy/sub/deeper', '-a']), '.hidden\n');
    assert.match(ok(['ls', vol.meta, '/copy', '-l']), /^lrwxrwxrwx .* link -> a\.txt$/m);
    assert.match(ok(['ls', vol.meta, '/copy', '-l']), /^drwxr-x--- .* sub$/m);
    assert.equal(ok(['cat', vol.meta, '/copy/link']), 'a'.repeat(1000));
    // And back out, compared byte for byte.
    const out = path.join(local, 'out');
    ok(['cp', vol.meta, '-r', ':/copy', out]);
    assert.deepEqual(readFileSync(path.join(out, 'sub/big.bin')), Buffer.alloc(300_000, 7));
    assert.equal(readFileSync(path.join(out, 'sub/deeper/.hidden'), 'utf8'), 'secret');
    assert.equal(statSync(path.join(out, 'sub')).mode & 0o777, 0o750);
    assert.equal(ok(['ls', vol.meta, '/copy/sub/big.bin']), '/copy/sub/big.bin\n', 'ls of a file names it');
  });

  it('copies inside the volume, and keeps mtime with -p', () => {
    const t = new Date('2020-01-02T03:04:05Z');
    utimesSync(path.join(local, 'hello.txt'), t, t);
    ok(['cp', vol.meta, '-p', path.join(local, 'hello.txt'), ':/dated.txt']);
    assert.match(ok(['ls', vol.meta, '/dated.txt', '-l']), /2020-01-02 03:04/);
    ok(['cp', vol.meta, '-r', ':/copy', ':/copy2']);
    assert.equal(ok(['cat', vol.meta, '/copy2/sub/deeper/.hidden']), 'secret');
    assert.equal(ok(['cat', vol.meta, '/copy2/a.txt', '/hello.txt']), 'a'.repeat(1000) + 'hello ferry\n');
    ok(['cp', vol.meta, ':/hello.txt', ':/hello.txt.bak']);
    assert.equal(ok(['cat', vol.meta, '/hello.txt.bak']), 'hello ferry\n');
  });

  it('overwrites an existing file like cp', () => {
    writeFileSync(path.join(local, 'v1.txt'), 'version one, longer\n');
    writeFileSync(path.join(local, 'v2.txt'), 'v2\n');
    ok(['cp', vol.meta, path.join(local, 'v1.txt'), ':/over.txt']);
    ok(['cp', vol.meta, path.join(local, 'v2.txt'), ':/over.txt']);
    assert.equal(ok(['cat', vol.meta, '/over.txt']), 'v2\n');
  });

  it('the volume passes fsck after all that', () => {
    assert.match(ok(['fsck', vol.meta]), /volume is clean/);
  });

  it('refuses bad paths with one line and changes nothing', async () => {
    const d = vol.dir;
    await failsCleanly(d, ['ls', vol.meta, '/no/such'], /ENOENT/);
    await failsCleanly(d, ['cat', vol.meta, '/nope.txt'], /ENOENT/);
    const r = await failsCleanly(d, ['cat', vol.meta, '/hello.txt', '/nope.txt'], /ENOENT/);
    assert.equal(r.stdout, '', 'cat checks every path before printing');
    await failsCleanly(d, ['cat', vol.meta, '/copy'], /is a directory/);
    await failsCleanly(d, ['cp', vol.meta, path.join(local, 'missing.txt'), ':/'], /cannot stat .*missing\.txt.*no such file/);
    await failsCleanly(d, ['cp', vol.meta, ':/missing.txt', path.join(local, 'x')], /cannot stat ':\/missing\.txt'/);
    assert.ok(!existsSync(path.join(local, 'x')));
    await failsCleanly(d, ['cp', vol.meta, path.join(local, 'tree'), ':/t2'], /-r not specified; omitting directory/);
    await failsCleanly(d, ['cp', vol.meta, path.join(local, 'hello.txt'), path.join(local, 'v1.txt'), ':/hello.txt'], /not a directory/);
    await failsCleanly(d, ['cp', vol.meta, path.join(local, 'hello.txt'), ':/nodir/'], /not an existing directory/);
    await failsCleanly(d, ['cp', vol.meta, path.join(local, 'hello.txt'), ':/nodir/x.txt'], /cannot create/);
    await failsCleanly(d, ['cp', vol.meta, path.join(local, 'hello.txt'), path.join(local, 'x')], /nothing inside the volume/);
    await failsCleanly(d, ['cp', vol.meta, '-r', ':/copy', ':/copy/sub'], /into itself/);
    await failsCleanly(d, ['cp', vol.meta, '-r', path.join(local, 'tree'), ':/hello.txt'], /cannot overwrite non-directory/);
    await failsCleanly(d, ['cp', vol.meta, path.join(local, 'hello.txt')], /needs a SOURCE and a DEST/);
    // A missing source among good ones: nothing is copied at all.
    await failsCleanly(d, ['cp', vol.meta, path.join(local, 'v1.txt'), path.join(local, 'missing.txt'), ':/copy'], /missing\.txt/);
    assert.equal(ok(['ls', vol.meta, '/copy']), 'a.txt\nlink\nsub\n');
  });

  it('unknown options and commands exit 2 with one line', async () => {
    await failsCleanly(vol.dir, ['ls', vol.meta, '--bogus'], /unknown option '--bogus'/, { code: 2 });
    await failsCleanly(vol.dir, ['frobnicate'], /unknown command 'frobnicate'/, { code: 2 });
  });
});

describe('fsck and gc', () => {
  it('gc removes temporary files of puts that never finished, once older than the leak age', () => {
    const { meta, bucket } = newVolume();
    const tmp = path.join(bucket, '.tmp');
    mkdirSync(tmp, { recursive: true });
    writeFileSync(path.join(tmp, 'stale'), 'half a block');
    const twoHoursAgo = (Date.now() - 2 * 3_600_000) / 1000;
    utimesSync(path.join(tmp, 'stale'), twoHoursAgo, twoHoursAgo);
    writeFileSync(path.join(tmp, 'fresh'), 'a put in flight');
    assert.match(ok(['gc', meta]), /1 temporary file\(s\) of unfinished puts removed/);
    assert.deepEqual(readdirSync(tmp), ['fresh']);
    assert.match(ok(['fsck', meta]), /volume is clean/);
  });

  it('fsck warns about drifted usage counters (a client killed before its flush) and --repair recounts them', async () => {
    const { meta } = newVolume();
    const vol = await openVolume(meta, { heartbeatMs: 0 });
    await vol.writeFile('/a', Buffer.alloc(1000, 1));
    await vol.close();
    const engine = await openMetaEngine(meta);
    await engine.txn(async (tx) => {
      tx.put('counter', '', 'usedBytes', 5);
      await Promise.resolve();
    });
    await engine.close();
    const warned = ok(['fsck', meta]);
    assert.match(warned, /^warning: usage counter usedBytes is 5, but files hold 1000 bytes of data/m);
    assert.match(warned, /volume is clean/, 'drifted usage is a warning, not a problem');
    assert.match(ok(['fsck', meta, '--repair']), /repaired: usage counters set to 1000 bytes, 1 inodes/);
    assert.doesNotMatch(ok(['fsck', meta]), /warning/);
  });

  it('gc deletes released slices past the grace period, keeps younger ones', async () => {
    const { meta, bucket } = newVolume();
    const vol = await openVolume(meta, { heartbeatMs: 0 });
    await vol.writeFile('/a', Buffer.alloc(200_000, 1));
    await vol.writeFile('/b', 'small');
    await vol.unlink('/a');
    await vol.close();
    const blocks = (): number => countBlocks(bucket);
    assert.equal(blocks(), 5);
    assert.match(ok(['gc', meta]), /released slices: 0 deleted \(0 B\), 1 in their grace period/);
    assert.equal(blocks(), 5, 'within the default grace period nothing is deleted');
    assert.match(ok(['gc', meta, '--grace', '0']), /released slices: 1 deleted \(195 KiB\), 0 in their grace period/);
    assert.equal(blocks(), 1);
    assert.match(ok(['fsck', meta]), /volume is clean/);
    assert.equal(ok(['cat', meta, '/b']), 'small');
  });

  it('gc empties expired trash', async () => {
    const { meta } = newVolume(['--trash-days', '1', '--force']);
    const vol = await openVolume(meta, { heartbeatMs: 0 });
    await vol.writeFile('/gone', 'bye');
    await vol.unlink('/gone');
    await vol.close();
    // Trashed one hour ago at most: not expired yet.
    assert.match(ok(['gc', meta, '--grace', '0']), /trash: 0 file\(s\) released/);
    assert.match(ok(['fsck', meta]), /volume is clean/);
  });

  it('gc lists leaked objects older than the leak age and deletes them with --delete', async () => {
    const { dir, meta, bucket } = newVolume();
    const vol = await openVolume(meta, { heartbeatMs: 0 });
    await vol.writeFile('/keep', Buffer.alloc(70_000, 3));
    await vol.close();
    const leak = path.join(bucket, 'chunks/0/0/999_0_5');
    mkdirSync(path.dirname(leak), { recursive: true });
    writeFileSync(leak, 'xxxxx');
    const old = new Date(Date.now() - 2 * 3_600_000);
    utimesSync(leak, old, old);
    const young = path.join(bucket, 'chunks/0/0/998_0_5');
    writeFileSync(young, 'yyyyy');
    const before = countBlocks(bucket);
    const out = ok(['gc', meta]);
    assert.match(out, /^leaked: chunks\/0\/0\/999_0_5 \(5 bytes\)$/m);
    assert.match(out, /leaked objects: 1 \(5 B\), run with --delete/);
    assert.match(out, /1 unreferenced object\(s\) younger than the leak age skipped/);
    assert.equal(countBlocks(bucket), before, 'listing deletes nothing');
    assert.match(ok(['gc', meta, '--delete']), /leaked objects: 1 \(5 B\), 1 deleted/);
    assert.ok(!existsSync(leak));
    assert.ok(existsSync(young), 'a young unreferenced object may be a write in flight');
    assert.match(ok(['gc', meta, '--delete', '--leak-age', '0']), /leaked objects: 1 \(5 B\), 1 deleted/);
    assert.equal(ok(['cat', meta, '/keep']).length, 70_000);
    assert.match(ok(['fsck', meta]), /volume is clean/);
    await failsCleanly(dir, ['gc', meta, '--grace', 'soon'], /invalid --grace 'soon'/, { code: 2 });
    await failsCleanly(dir, ['gc', meta, '--leak-age', '-1h'], /invalid --leak-age '-1h'/, { code: 2 });
    await failsCleanly(dir, ['fsck', meta, '--threads', '0'], /invalid --threads '0'/, { code: 2 });
  });

  it('fsck reports metadata damage and exits 1', async () => {
    const { meta } = newVolume();
    const vol = await openVolume(meta, { heartbeatMs: 0 });
    await vol.mkdir('/d');
    await vol.writeFile('/d/f', 'content');
    await vol.close();
    const engine = await openMetaEngine(meta);
    // Damage: an entry naming a missing inode, and a wrong link count on the directory.
    await engine.txn(async (tx) => {
      tx.put('entry', '1', 'ghost', { ino: 9999, type: 'file' });
      const root = (await tx.get<{ nlink: number }>('inode', '', '1'))!;
      tx.put('inode', '', '1', { ...root, nlink: 7 });
    });
    await engine.close();
    const r = ferry(['fsck', meta]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^entry "ghost" in directory 1: points to inode 9999, which does not exist$/m);
    assert.match(r.stdout, /^directory 1: nlink is 7, expected 3/m);
    assert.match(r.stdout, /^counter nextInode is \d+, but inode 9999 exists$/m);
    assert.match(r.stdout, /^fsck: 3 problem\(s\) found/m);
  });
});

describe('dump and load', () => {
  it('round-trips a volume through a dump file', async () => {
    const { dir, meta } = newVolume();
    const vol = await openVolume(meta, { heartbeatMs: 0 });
    await vol.mkdir('/x/y', { recursive: true });
    await vol.writeFile('/x/y/z.txt', 'zzz');
    await vol.symlink('/x/y/z.txt', '/s');
    await vol.setxattr('/x/y/z.txt', 'user.tag', Buffer.from('v'));
    await vol.close();
    const file = path.join(dir, 'vol.dump.jsonl');
    assert.match(ok(['dump', meta, file]), /dumped \d+ records of volume 'testvol' at changelog seq \d+/);
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    const header = JSON.parse(lines[0]!) as { ferry: string; version: number; volume: string };
    assert.deepEqual([header.ferry, header.version, header.volume], ['dump', 1, 'testvol']);
    const trailer = JSON.parse(lines.at(-1)!) as { end: boolean; seq: number; records: number };
    assert.equal(trailer.records, lines.length - 2);
    const status = JSON.parse(ok(['status', meta, '--json'])) as { changelog: { lastSeq: number } };
    assert.equal(trailer.seq, status.changelog.lastSeq, 'the dump is tagged with the changelog seq');

    const meta2 = `sqlite://${dir}/restored.db`;
    assert.match(ok(['load', meta2, file]), new RegExp(`loaded ${trailer.records} records of volume 'testvol' at changelog seq ${trailer.seq}`));
    // Before any client opens a session (which advances the changelog): same position, same records.
    const status2 = JSON.parse(ok(['status', meta2, '--json'])) as { changelog: { lastSeq: number } };
    assert.equal(status2.changelog.lastSeq, trailer.seq);
    const again = ok(['dump', meta2]).trimEnd().split('\n');
    assert.deepEqual(again.slice(1), lines.slice(1));
    assert.match(ok(['fsck', meta2]), /volume is clean/);
    assert.equal(ok(['cat', meta2, '/s']), 'zzz');
    // --force replaces a non-empty engine.
    ok(['load', meta2, file, '--force']);
  });

  it('refuses bad dumps and leaves the target untouched', async () => {
    const { dir, meta } = newVolume();
    const file = path.join(dir, 'good.jsonl');
    ok(['dump', meta, file]);
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    const write = (name: string, content: string): string => {
      const p = path.join(dir, name);
      writeFileSync(p, content);
      return p;
    };
    const target = `sqlite://${dir}/new.db`;
    const bad: Array<[string, string, RegExp]> = [
      ['empty.jsonl', '', /is empty/],
      ['text.jsonl', 'hello world\n', /not a JSON value/],
      ['foreign.jsonl', '{"some":"json"}\n', /not a ferry dump/],
      ['newer.jsonl', lines.map((l, i) => (i === 0 ? l.replace('"version":1', '"version":99') : l)).join('\n'), /dump version 99 is newer/],
      ['truncated.jsonl', lines.slice(0, -1).join('\n'), /without the dump trailer/],
      ['badrec.jsonl', [lines[0], '["bogus","","k",1]', ...lines.slice(1)].join('\n'), /:2: unknown record kind "bogus"/],
      ['count.jsonl', [lines[0], ...lines.slice(2)].join('\n'), /trailer counts/],
      ['junk.jsonl', [...lines, 'junk'].join('\n'), /data after the trailer/],
    ];
    for (const [name, content, pattern] of bad) {
      const p = write(name, content);
      await failsCleanly(dir, ['load', target, p], pattern);
      assert.ok(!existsSync(path.join(dir, 'new.db')), `${name}: no database left behind`);
    }
    await failsCleanly(dir, ['load', target, path.join(dir, 'missing.jsonl')], /does not exist/);
    await failsCleanly(dir, ['load', meta, file], /is not empty \(it holds volume 'testvol'\); use --force/);
    await failsCleanly(dir, ['dump', meta, file], /already exists/);
    await failsCleanly(dir, ['dump', meta, path.join(dir, 'nodir', 'x.jsonl')], /ENOENT/);
  });
});

function countBlocks(bucket: string): number {
  let n = 0;
  const walk = (d: string): void => {
    for (const e of readdirSyncSafe(d)) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else n++;
    }
  };
  walk(path.join(bucket, 'chunks'));
  return n;
}

function readdirSyncSafe(d: string): Dirent[] {
  try {
    return readdirSync(d, { withFileTypes: true });
  } catch {
    return [];
  }
}
