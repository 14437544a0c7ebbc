/**
 * Interrupted commands leave no partial result: `cp` stopped by SIGINT or SIGTERM in the middle of a file
 * removes its temporary (on the local disk or in the volume), leaves the destination as it was, and exits 130
 * with one line; so do `dump FILE` (no FILE, no temporary) and `load` (no database file it created).
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openMetaEngine, openVolume } from '../../src/index.js';
import { CLI, ensureBuilt, ok, type Run } from './helpers.js';

/** Large enough that a copy takes a while (4 MiB moves between checks for a signal), small enough to be quick. */
const BIG_BYTES = 64 << 20;
const POLL_MS = 10;
const WAIT_MS_MAX = 30_000;

let root: string;
let meta: string;
let bucket: string;
let big: Buffer;

before(async () => {
  ensureBuilt();
  root = mkdtempSync(path.join(tmpdir(), 'ferry-interrupt-'));
  meta = `sqlite://${root}/vol.db`;
  bucket = path.join(root, 'bucket');
  ok(['format', meta, 'interrupt', '--storage', `file://${bucket}`, '--block-size', '1M']);
  big = Buffer.alloc(BIG_BYTES);
  for (let i = 0; i < BIG_BYTES; i += 4096) big.writeUInt32LE(i, i);
  const vol = await openVolume(meta, { heartbeatMs: 0 });
  await vol.writeFile('/big.bin', big);
  await vol.writeFile('/kept.bin', 'the old content');
  await vol.close();
});
after(() => rmSync(root, { recursive: true, force: true }));

/** Starts the CLI; `interrupt` resolves once `ready()` holds, then sends `signal`. */
function runUntil(args: string[], ready: () => boolean, signal: NodeJS.Signals): Promise<Run & { interruptedInTime: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, FERRY_DEBUG: '', FERRY_NO_PROGRESS: '1' } });
    let stdout = '';
    let stderr = '';
    let interruptedInTime = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const deadline = Date.now() + WAIT_MS_MAX;
    const timer = setInterval(() => {
      if (ready()) {
        interruptedInTime = child.exitCode === null;
        child.kill(signal);
        clearInterval(timer);
      } else if (Date.now() > deadline || child.exitCode !== null) {
        clearInterval(timer);
      }
    }, POLL_MS);
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(timer);
      resolve({ code, stdout, stderr, interruptedInTime });
    });
  });
}

function tempsIn(dir: string): string[] {
  return readdirSync(dir).filter((n) => /\.ferry-[0-9a-f]{8}$/.test(n));
}

describe('an interrupted cp leaves no partial file', () => {
  it('out of the volume (SIGINT): the temporary is removed, the destination keeps its content, exit 130', async () => {
    const out = path.join(root, 'out');
    mkdirSync(out);
    writeFileSync(path.join(out, 'big.bin'), 'the old content');
    // Interrupt once the temporary holds some data: the copy is under way.
    const started = (): boolean => tempsIn(out).some((n) => (statSync(path.join(out, n), { throwIfNoEntry: false })?.size ?? 0) > 0);
    const r = await runUntil(['cp', meta, ':/big.bin', out], started, 'SIGINT');
    assert.ok(r.interruptedInTime, `the copy finished before it could be interrupted: ${r.stderr}`);
    assert.equal(r.code, 130, r.stderr);
    assert.equal(r.stderr, 'ferry: interrupted (SIGINT)\n');
    assert.deepEqual(readdirSync(out), ['big.bin'], 'no temporary file left');
    assert.equal(readFileSync(path.join(out, 'big.bin'), 'utf8'), 'the old content');
  });

  it('into the volume (SIGTERM): no temporary in the volume, the destination keeps its content, exit 130', async () => {
    const local = path.join(root, 'local-big.bin');
    writeFileSync(local, big);
    const blocks = (): number => readdirSync(path.join(bucket, 'chunks'), { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length;
    const before = blocks();
    const r = await runUntil(['cp', meta, local, ':/kept.bin'], () => blocks() >= before + 4, 'SIGTERM');
    assert.ok(r.interruptedInTime, `the copy finished before it could be interrupted: ${r.stderr}`);
    assert.equal(r.code, 130, r.stderr);
    assert.equal(r.stderr, 'ferry: interrupted (SIGTERM)\n');
    assert.equal(ok(['ls', meta, '/', '-a']), 'big.bin\nkept.bin\n', 'no temporary in the volume');
    assert.equal(ok(['cat', meta, '/kept.bin']), 'the old content');
    assert.match(ok(['fsck', meta]), /volume is clean/);
  });
});

describe('an interrupted dump or load leaves nothing', () => {
  /** Enough records that a dump or load takes most of a second. */
  const RECORDS = 500_000;
  let bigMeta: string;
  let dumpFile: string;

  before(async () => {
    bigMeta = `sqlite://${root}/big.db`;
    ok(['format', bigMeta, 'big', '--storage', `file://${root}/big-bucket`]);
    const engine = await openMetaEngine(bigMeta);
    try {
      await engine.txn(async (tx) => {
        for (let i = 0; i < RECORDS; i++) tx.put('xattr', '1', `user.k${i}`, 'v'.repeat(20));
        await Promise.resolve();
      });
    } finally {
      await engine.close();
    }
    dumpFile = path.join(root, 'whole.jsonl');
    ok(['dump', bigMeta, dumpFile]);
  });

  it('dump FILE (SIGINT): neither FILE nor its temporary is left, exit 130', async () => {
    const out = path.join(root, 'dumps');
    mkdirSync(out);
    const target = path.join(out, 'vol.jsonl');
    const started = (): boolean => readdirSync(out).some((n) => (statSync(path.join(out, n), { throwIfNoEntry: false })?.size ?? 0) > 0);
    const r = await runUntil(['dump', bigMeta, target], started, 'SIGINT');
    assert.ok(r.interruptedInTime, `the dump finished before it could be interrupted: ${r.stdout}${r.stderr}`);
    assert.equal(r.code, 130, r.stderr);
    assert.equal(r.stderr, 'ferry: interrupted (SIGINT)\n');
    assert.deepEqual(readdirSync(out), []);
  });

  it('load (SIGTERM): the database file it created is removed, exit 130', async () => {
    const db = path.join(root, 'restored.db');
    const r = await runUntil(['load', `sqlite://${db}`, dumpFile], () => existsSync(db), 'SIGTERM');
    assert.ok(r.interruptedInTime, `the load finished before it could be interrupted: ${r.stdout}${r.stderr}`);
    assert.equal(r.code, 130, r.stderr);
    assert.equal(r.stderr, 'ferry: interrupted (SIGTERM)\n');
    assert.ok(!existsSync(db) && !existsSync(`${db}-wal`), 'no database file left');
  });
});
