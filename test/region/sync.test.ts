import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FaultProxy } from '../../src/net/faultproxy.js';
import { FileStore } from '../../src/object/file.js';
import { MemStore } from '../../src/object/mem.js';
import { openObjectStore } from '../../src/object/registry.js';
import { RetryStore } from '../../src/object/retry.js';
import { listAll, type GetOptions, type ObjectStore } from '../../src/object/store.js';
import { compileFilter, globToRegExp, syncStores, Syncer } from '../../src/region/sync.js';
import { mulberry32 } from '../../src/util/random.js';
import { startS3Server, type S3Server } from '../helpers/s3server.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function ferry(args: string[]): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    env: { ...process.env, FERRY_DEBUG: '', FERRY_NO_PROGRESS: '1' },
    maxBuffer: 64 << 20,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Summary {
  copied: number;
  skipped: number;
  deleted: number;
  failed: number;
  bytes: number;
}

function summaryOf(stdout: string): Summary {
  const m = /copied (\d+), skipped (\d+), deleted (\d+), failed (\d+), bytes (\d+)/.exec(stdout);
  assert.ok(m !== null, `no summary line in ${JSON.stringify(stdout)}`);
  return { copied: Number(m[1]), skipped: Number(m[2]), deleted: Number(m[3]), failed: Number(m[4]), bytes: Number(m[5]) };
}

function sync(args: string[]): Summary {
  const r = ferry(['sync', ...args]);
  assert.equal(r.code, 0, `ferry sync ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  assert.equal(r.stderr, '');
  return summaryOf(r.stdout);
}

/** Asserts a clean failure: non-zero exit (`code` when given), one `ferry: ...` line on stderr, no stack. */
function failsCleanly(args: string[], pattern: RegExp, code?: number): void {
  const r = ferry(['sync', ...args]);
  assert.notEqual(r.code, 0);
  if (code !== undefined) assert.equal(r.code, code, `exit code of ferry sync ${args.join(' ')}: ${r.stderr}`);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^ferry: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /^\s+at |unexpected error/m);
}

const tmp = mkdtempSync(path.join(tmpdir(), 'ferry-sync-test-'));
let dirs = 0;
function freshDir(): string {
  return path.join(tmp, `d${++dirs}`);
}

/** Deterministic content of `size` bytes for `name`. */
function content(name: string, size: number, salt = 0): Buffer {
  const rnd = mulberry32(Number.parseInt(createHash('sha256').update(name).digest('hex').substring(0, 8), 16) + salt);
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

function writeTree(dir: string, files: Record<string, Buffer>): void {
  for (const [name, data] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), data);
  }
}

/** key → sha256 of every object. */
async function snapshot(store: ObjectStore): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const o of listAll(store, '')) out.set(o.key, createHash('sha256').update(await store.get(o.key)).digest('hex'));
  return out;
}

async function snapshotDir(dir: string): Promise<Map<string, string>> {
  const store = new FileStore(dir);
  try {
    return await snapshot(store);
  } finally {
    await store.close();
  }
}

function sampleFiles(n: number, size: (i: number) => number): Record<string, Buffer> {
  const files: Record<string, Buffer> = {};
  for (let i = 0; i < n; i++) {
    const name = `d${i % 7}/sub${i % 3}/f${String(i).padStart(4, '0')}.bin`;
    files[name] = content(name, size(i));
  }
  return files;
}

after(() => rmSync(tmp, { recursive: true, force: true }));

describe('filters', () => {
  it('globs: * within a segment, ** across, ? one char, classes, alternatives, anchoring', () => {
    const cases: Array<[string, string, boolean]> = [
      ['*.jpg', 'a.jpg', true],
      ['*.jpg', 'x/y/a.jpg', true],
      ['*.jpg', 'a.jpg/b', false],
      ['/*.jpg', 'x/a.jpg', false],
      ['/*.jpg', 'a.jpg', true],
      ['x/*', 'x/a', true],
      ['x/*', 'x/a/b', false],
      ['x/**', 'x/a/b', true],
      ['x/**', 'y/x/a', true],
      ['/x/**', 'y/x/a', false],
      ['tmp/', 'a/tmp/b/c', true],
      ['tmp/', 'a/tmpx/b', false],
      ['f?.txt', 'f1.txt', true],
      ['f?.txt', 'f/.txt', false],
      ['f[0-3].txt', 'f2.txt', true],
      ['f[!0-3].txt', 'f2.txt', false],
      ['*.{jpg,png}', 'p/q.png', true],
      ['*.{jpg,png}', 'p/q.gif', false],
      ['a\\*b', 'a*b', true],
      ['a\\*b', 'axb', false],
      ['a.b', 'axb', false],
    ];
    for (const [glob, key, want] of cases) assert.equal(globToRegExp(glob).test(key), want, `${glob} vs ${key}`);
    assert.throws(() => globToRegExp('a{b'), /unclosed/);
    assert.throws(() => globToRegExp('[ab'), /unclosed/);
  });

  it('first match wins; any include excludes the unmatched', () => {
    const f = compileFilter([
      { kind: 'exclude', pattern: 'secret/**' },
      { kind: 'include', pattern: '*.jpg' },
    ]);
    assert.equal(f('a.jpg'), true);
    assert.equal(f('secret/a.jpg'), false);
    assert.equal(f('a.txt'), false);
    const onlyExcludes = compileFilter([{ kind: 'exclude', pattern: '*.tmp' }]);
    assert.equal(onlyExcludes('a.txt'), true);
    assert.equal(onlyExcludes('d/a.tmp'), false);
    const g = compileFilter([
      { kind: 'include', pattern: 'keep/**' },
      { kind: 'exclude', pattern: '*.jpg' },
    ]);
    assert.equal(g('keep/a.jpg'), true, 'order as given: the include comes first');
  });
});

describe('sync engine (in-process)', () => {
  it('mem → file, across several list pages; a second run copies nothing', async () => {
    const src = new MemStore('');
    const files = sampleFiles(2300, (i) => (i * 37) % 700);
    for (const [k, v] of Object.entries(files)) await src.put(k, v);
    const dir = freshDir();
    const dst = new FileStore(dir);
    const r1 = await syncStores(src, dst, { parallel: 8 });
    assert.equal(r1.copied, 2300);
    assert.equal(r1.failed, 0);
    assert.equal(r1.srcObjects, 2300);
    assert.deepEqual(await snapshot(dst), await snapshot(src));
    const r2 = await syncStores(src, dst);
    assert.equal(r2.copied, 0);
    assert.equal(r2.skipped, 2300);
    await src.close();
    await dst.close();
  });

  it('a failed copy is counted and reported, and --delete then deletes nothing', async () => {
    const src = new MemStore('');
    const dst = new MemStore('');
    for (const k of ['a', 'b', 'c']) await src.put(k, Buffer.from(k));
    await dst.put('extra', Buffer.from('x'));
    const broken: ObjectStore = Object.assign(Object.create(src) as ObjectStore, {
      get: (key: string, o?: GetOptions) => (key === 'b' ? Promise.reject(new Error('disk on fire')) : src.get(key, o)),
    });
    const events: string[] = [];
    const r = await syncStores(broken, dst, { delete: true, onEvent: (e) => events.push(`${e.type} ${e.key}`) });
    assert.equal(r.copied, 2);
    assert.equal(r.failed, 1);
    assert.equal(r.deleted, 0);
    assert.equal(r.deletesSkipped, 1);
    assert.deepEqual(r.failures, [{ key: 'b', op: 'copy', message: 'disk on fire' }]);
    assert.ok(events.includes('fail b'));
    assert.ok((await dst.head('extra')).size === 1, 'not deleted after a failed copy');
  });

  it('a short read is retried; an object above the size limit fails clearly', async () => {
    const src = new MemStore('');
    const dst = new MemStore('');
    await src.put('big', Buffer.alloc(5000, 1));
    await src.put('small', Buffer.alloc(100, 2));
    let shortReads = 1;
    const flaky: ObjectStore = Object.assign(Object.create(src) as ObjectStore, {
      get: async (key: string, o?: GetOptions) => {
        const b = await src.get(key, o);
        return key === 'small' && shortReads-- > 0 ? b.subarray(0, 50) : b;
      },
    });
    const r = await syncStores(flaky, dst, { objectBytesMax: 4096 });
    assert.equal(r.copied, 1);
    assert.equal(r.failed, 1);
    assert.match(r.failures[0]!.message, /5000 bytes is more than the 4096 bytes/);
    assert.ok((await dst.get('small')).equals(Buffer.alloc(100, 2)));
  });

  it('a copy that lands damaged is caught by the read-back (listing or heads) and copied again', async () => {
    for (const preexisting of [0, 2500]) {
      const src = new MemStore('');
      const inner = new MemStore('');
      for (let i = 0; i < preexisting; i++) {
        await src.put(`old/${i}`, Buffer.from('o'));
        await inner.put(`old/${i}`, Buffer.from('o'));
      }
      for (const k of ['a', 'b', 'c']) await src.put(k, Buffer.alloc(100, k));
      let damaged = 0;
      const lossy: ObjectStore = Object.assign(Object.create(inner) as ObjectStore, {
        put: (key: string, data: Buffer) => (key === 'b' && damaged++ < 1 ? inner.put(key, data.subarray(0, 10)) : inner.put(key, data)),
      });
      const r = await syncStores(src, lossy);
      assert.equal(r.failed, 0);
      assert.equal(r.copied, 3);
      assert.equal(r.recopied, 1, `with ${preexisting} objects already there`);
      assert.deepEqual(await snapshot(inner), await snapshot(src));
    }
    // A destination that damages every put: the copy fails after the verify rounds, with the reason.
    const src = new MemStore('');
    await src.put('x', Buffer.alloc(50, 1));
    const inner = new MemStore('');
    const broken: ObjectStore = Object.assign(Object.create(inner) as ObjectStore, {
      put: (key: string, data: Buffer) => inner.put(key, data.subarray(1)),
    });
    const r = await syncStores(src, broken);
    assert.equal(r.failed, 1);
    assert.match(r.failures[0]!.message, /does not verify after 3 tries: the destination holds 49 bytes, 50 were written/);
  });

  it('dry run changes nothing and reports each decision', async () => {
    const src = new MemStore('');
    const dst = new MemStore('');
    await src.put('new', Buffer.from('1'));
    await src.put('resized', Buffer.from('22'));
    await dst.put('resized', Buffer.from('2'));
    await dst.put('gone', Buffer.from('3'));
    const events: string[] = [];
    const r = await syncStores(src, dst, {
      delete: true,
      dryRun: true,
      onEvent: (e) => events.push(e.type === 'copy' ? `copy ${e.key} ${e.reason}` : `${e.type} ${e.key}`),
    });
    assert.deepEqual(events.sort(), ['copy new new', 'copy resized size', 'delete gone']);
    assert.equal(r.copied, 2);
    assert.equal(r.deleted, 1);
    assert.deepEqual([...(await snapshot(dst)).keys()], ['gone', 'resized']);
  });

  it('an abort stops the run; what was copied is whole, and a rerun copies the rest', async () => {
    const src = new MemStore('');
    for (let i = 0; i < 200; i++) await src.put(`k${String(i).padStart(3, '0')}`, content(`k${i}`, 1000));
    const dst = new MemStore('');
    const abort = new AbortController();
    const syncer = new Syncer(src, dst, {
      parallel: 4,
      signal: abort.signal,
      onEvent: () => {
        if (syncer.stats().copied >= 50) abort.abort(new Error('stop'));
      },
    });
    await assert.rejects(syncer.run(), /stop/);
    const landed = await snapshot(dst);
    const want = await snapshot(src);
    assert.ok(landed.size >= 50 && landed.size < 200, `${landed.size} landed`);
    for (const [k, h] of landed) assert.equal(h, want.get(k), `${k} is whole`);
    const r = await syncStores(src, dst);
    assert.equal(r.copied, 200 - landed.size);
    assert.equal(r.skipped, landed.size);
    assert.deepEqual(await snapshot(dst), want);
  });
});

describe('the run signal', () => {
  it('many tasks waiting on one abort signal raise no MaxListenersExceededWarning', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(`${w.name}: ${w.message}`);
    };
    process.on('warning', onWarning);
    try {
      const src = new MemStore('');
      for (let i = 0; i < 100; i++) await src.put(`k${String(i).padStart(3, '0')}`, content(`k${i}`, 1000));
      const abort = new AbortController();
      // 32 copies at once, each waiting for bandwidth with the run's signal: more than Node's 10 listeners.
      const syncer = new Syncer(src, new MemStore(''), { parallel: 32, bytesPerSecond: 20_000, signal: abort.signal });
      setTimeout(() => abort.abort(new Error('stop')), 200);
      await assert.rejects(syncer.run(), /stop/);
      await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
      assert.deepEqual(warnings, []);
      assert.equal(abort.signal.aborted, true);
    } finally {
      process.off('warning', onWarning);
    }
  });
});

describe('ferry sync (CLI)', () => {
  before(() => {
    assert.ok(existsSync(CLI), `build first (npm run build): ${CLI} is missing`);
  });

  it('file → file between local trees; a rerun copies nothing; --delete removes extras', () => {
    const a = freshDir();
    const b = freshDir();
    const files = sampleFiles(120, (i) => (i % 10) * 1000 + 1);
    writeTree(a, files);
    const s1 = sync([a, b, '--parallel', '4']);
    assert.equal(s1.copied, 120);
    assert.equal(s1.bytes, Object.values(files).reduce((n, f) => n + f.length, 0));
    assert.ok(!existsSync(path.join(b, '.tmp')), 'no temp directory left in the destination tree');
    const s2 = sync([a, b]);
    assert.deepEqual([s2.copied, s2.skipped], [0, 120]);

    writeTree(b, { 'extra.txt': Buffer.from('x'), 'd0/extra': Buffer.from('y') });
    rmSync(path.join(a, 'd1'), { recursive: true });
    const s3 = sync([`file://${a}`, `file://${b}`]);
    assert.equal(s3.deleted, 0, 'no --delete, nothing deleted');
    const s4 = sync([a, b, '--delete']);
    const inD1 = Object.keys(files).filter((k) => k.startsWith('d1/')).length;
    assert.equal(s4.deleted, 2 + inD1);
    assert.ok(!existsSync(path.join(b, 'extra.txt')));
  });

  it('--include / --exclude in the order given; excluded keys in DST survive --delete', async () => {
    const a = freshDir();
    const b = freshDir();
    writeTree(a, {
      'p/1.jpg': Buffer.from('1'),
      'p/2.png': Buffer.from('2'),
      'p/tmp/3.jpg': Buffer.from('3'),
      'q.jpg': Buffer.from('4'),
      'notes.txt': Buffer.from('5'),
    });
    writeTree(b, { 'keep.txt': Buffer.from('kept') });
    const s = sync([a, b, '--exclude', 'tmp/**', '--include', '*.jpg', '--include', '*.png', '--delete']);
    assert.equal(s.copied, 3);
    assert.deepEqual([...(await snapshotDir(b)).keys()], ['keep.txt', 'p/1.jpg', 'p/2.png', 'q.jpg']);
  });

  it('--check finds a planted difference (same size, one byte) and fixes it', async () => {
    const a = freshDir();
    const b = freshDir();
    const files = sampleFiles(30, () => 4096);
    writeTree(a, files);
    sync([a, b]);
    const victim = Object.keys(files)[17]!;
    const planted = Buffer.from(files[victim]!);
    planted[1234] = planted[1234]! ^ 0x40;
    writeFileSync(path.join(b, victim), planted);
    assert.deepEqual(sync([a, b]).copied, 0, 'same size: not seen without --check');
    const s = sync([a, b, '--check']);
    assert.equal(s.copied, 1);
    assert.equal(s.skipped, 29);
    assert.deepEqual(await snapshotDir(b), await snapshotDir(a));
    assert.equal(sync([a, b, '--check']).copied, 0);
  });

  it('--dry-run prints decisions and writes nothing', () => {
    const a = freshDir();
    const b = freshDir();
    writeTree(a, { x: Buffer.from('1'), 'y/z': Buffer.from('22') });
    const r = ferry(['sync', a, b, '--dry-run']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /would copy x \(1 bytes, new\)/);
    assert.match(r.stdout, /would copy y\/z \(2 bytes, new\)/);
    assert.match(r.stdout, /dry run: would have copied 2/);
    assert.ok(!existsSync(b));
  });

  it('bad input: one line, non-zero exit, nothing written', () => {
    const a = freshDir();
    writeTree(a, { f: Buffer.from('1') });
    const b = freshDir();
    failsCleanly(['gopher://host/x', b], /unknown storage scheme "gopher:"/);
    failsCleanly([a, 'gopher://host/x'], /destination: unknown storage scheme/);
    failsCleanly([path.join(tmp, 'no-such-dir'), b], /does not exist/);
    failsCleanly([path.join(a, 'f'), b], /not a directory/);
    // Bad usage (exit 2): known from the command line alone.
    failsCleanly([a, path.join(a, 'inner')], /overlap/, 2);
    failsCleanly([a, b, '--parallel', '0'], /invalid --parallel '0': use a whole number from 1 to 1024/, 2);
    failsCleanly([a, b, '--bwlimit', 'fast'], /invalid --bwlimit 'fast'/, 2);
    failsCleanly([a, b, '--include', 'a{b'], /invalid --include 'a\{b': .*unclosed \{/, 2);
    assert.ok(!existsSync(b), 'the destination was not created');
  });

  it('resumes after SIGKILL: the rerun copies only the remainder, and the result is identical', async () => {
    const a = freshDir();
    const b = freshDir();
    const files = sampleFiles(300, () => 8192);
    writeTree(a, files);
    // 8 KiB objects at 400 KiB/s: ~6 s for all, so the kill lands mid-run.
    const child = spawn(process.execPath, [CLI, 'sync', a, b, '--parallel', '4', '--bwlimit', '400K'], {
      env: { ...process.env, FERRY_NO_PROGRESS: '1' },
      stdio: 'ignore',
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const countIn = (d: string): number => {
      try {
        return readdirSync(d, { recursive: true, withFileTypes: true }).filter((e) => e.isFile() && !e.parentPath.includes('.tmp')).length;
      } catch {
        return 0;
      }
    };
    const deadline = Date.now() + 20_000;
    while (countIn(b) < 80 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await exited;
    const landed = await snapshotDir(b);
    assert.ok(landed.size >= 80 && landed.size < 300, `${landed.size} objects landed before the kill`);
    const want = await snapshotDir(a);
    for (const [k, h] of landed) assert.equal(h, want.get(k), `${k} is whole after the kill`);
    const s = sync([a, b]);
    assert.equal(s.copied, 300 - landed.size);
    assert.equal(s.skipped, landed.size);
    assert.deepEqual(await snapshotDir(b), want);
  });

  it('SIGINT cancels cleanly: exit 130, no temp files, and a rerun finishes', async () => {
    const a = freshDir();
    const b = freshDir();
    writeTree(a, sampleFiles(100, () => 8192));
    const child = spawn(process.execPath, [CLI, 'sync', a, b, '--parallel', '2', '--bwlimit', '200K'], {
      env: { ...process.env, FERRY_NO_PROGRESS: '1' },
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    const code = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    // Interrupt once copying is under way (its SIGINT handler is installed by then), however slowly a
    // loaded machine starts the CLI; at 200K/s the 800 KiB tree takes about 4 s.
    const landed = (): number => {
      try {
        return readdirSync(b, { recursive: true, withFileTypes: true }).filter((e) => e.isFile() && !e.parentPath.includes('.tmp')).length;
      } catch {
        return 0;
      }
    };
    const deadline = Date.now() + 20_000;
    while (landed() < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGINT');
    assert.equal(await code, 130);
    assert.match(stdout, /interrupted; run again to resume/);
    assert.ok(!existsSync(path.join(b, '.tmp')), 'temp files cleaned up');
    const s = sync([a, b]);
    assert.ok(s.copied > 0 && s.skipped > 0, JSON.stringify(s));
    assert.deepEqual(await snapshotDir(b), await snapshotDir(a));
  });

  it('SIGINT with many copies in flight prints no MaxListenersExceededWarning', async () => {
    const a = freshDir();
    const b = freshDir();
    writeTree(a, sampleFiles(100, () => 8192));
    // The default --parallel (16): every copy waits for bandwidth on the run's one abort signal.
    const child = spawn(process.execPath, [CLI, 'sync', a, b, '--bwlimit', '100K'], { env: { ...process.env, FERRY_NO_PROGRESS: '1' } });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const code = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    const landed = (): number => {
      try {
        return readdirSync(b, { recursive: true, withFileTypes: true }).filter((e) => e.isFile() && !e.parentPath.includes('.tmp')).length;
      } catch {
        return 0;
      }
    };
    const deadline = Date.now() + 20_000;
    while (landed() < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGINT');
    assert.equal(await code, 130);
    assert.doesNotMatch(stderr, /MaxListenersExceededWarning|memory leak/);
    assert.equal(stderr, '');
  });

  it('a later run removes the stale temporary files a killed run left in .tmp/, and keeps young ones', () => {
    const a = freshDir();
    const b = freshDir();
    writeTree(a, { x: Buffer.from('data') });
    // What a SIGKILLed run leaves: its puts' temporaries, named as the file store names them.
    const tmpDir = path.join(b, '.tmp');
    mkdirSync(tmpDir, { recursive: true });
    writeFileSync(path.join(tmpDir, '0123456789abcdef-0'), 'half an object');
    writeFileSync(path.join(tmpDir, '0123456789abcdef-1'), 'another half');
    const twoHoursAgo = (Date.now() - 2 * 3_600_000) / 1000;
    for (const n of ['0123456789abcdef-0', '0123456789abcdef-1']) utimesSync(path.join(tmpDir, n), twoHoursAgo, twoHoursAgo);
    writeFileSync(path.join(tmpDir, 'fedcba9876543210-0'), 'a put of another run, in flight');

    const dry = ferry(['sync', a, b, '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(readdirSync(tmpDir).length, 3, 'a dry run changes nothing');

    const r = ferry(['sync', a, b]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /copied 1, .*; removed 2 stale temporary file\(s\) of an earlier run$/m);
    assert.deepEqual(readdirSync(tmpDir), ['fedcba9876543210-0'], 'only the young temporary is left');
    assert.equal(sync([a, b]).copied, 0);
  });

  describe('with S3', () => {
    let s3: S3Server;
    before(async () => {
      s3 = await startS3Server({ buckets: ['sync-a', 'sync-b'] });
    });
    after(async () => {
      await s3.stop();
    });

    it('file → s3 → file, a 20 MiB object in parts included; reruns copy nothing', async () => {
      const a = freshDir();
      const files = sampleFiles(40, (i) => i * 517);
      files['big/blob'] = content('big', 20 << 20);
      writeTree(a, files);
      const url = s3.url('copy', 'sync-a');
      assert.equal(sync([a, url]).copied, 41);
      assert.equal(sync([a, url]).copied, 0);
      const back = freshDir();
      assert.equal(sync([url, back, '--check']).copied, 41);
      assert.deepEqual(await snapshotDir(back), await snapshotDir(a));
      const store = await openObjectStore(url);
      try {
        assert.deepEqual(await snapshot(store), await snapshotDir(a));
      } finally {
        await store.close();
      }
    });

    it('through the fault proxy (latency, resets) with RetryStore: completes and verifies', async () => {
      const proxy = await FaultProxy.start({
        targetPort: s3.port,
        seed: 7,
        upLatencyMs: 5,
        downLatencyMs: 10,
        jitterMs: 10,
        connectionResetRate: 0.3,
        resetAfterBytesMax: 256 * 1024,
      });
      const src = new MemStore('');
      const files = sampleFiles(80, (i) => 1000 + i * 900);
      files['big'] = content('big-through-proxy', 3 << 20);
      for (const [k, v] of Object.entries(files)) await src.put(k, v);
      const viaProxy = s3.url('proxied', 'sync-b').replace(encodeURIComponent(s3.endpoint), encodeURIComponent(proxy.url));
      const retries = { n: 0 };
      const dst = new RetryStore(await openObjectStore(viaProxy), {
        attemptsMax: 10,
        backoffMsMin: 5,
        backoffMsMax: 200,
        random: mulberry32(3),
        onRetry: () => retries.n++,
      });
      try {
        const r = await syncStores(src, dst, { parallel: 8, check: true });
        assert.equal(r.failed, 0, JSON.stringify(r.failures));
        assert.equal(r.copied, 81);
        assert.ok(proxy.stats().resets > 0, 'the proxy reset some connections');
        assert.ok(retries.n > 0, 'the retry wrapper retried');
        const direct = await openObjectStore(s3.url('proxied', 'sync-b'));
        try {
          assert.deepEqual(await snapshot(direct), await snapshot(src));
        } finally {
          await direct.close();
        }
      } finally {
        await dst.close();
        await proxy.close();
        await src.close();
      }
    });
  });
});
