/**
 * A damaged block in the bucket is detected by reads (the SDK rejects, never returns wrong bytes; `ferry cat`
 * fails with one line) and by `ferry fsck` (non-zero exit, naming the block key). A read that fails leaves no
 * partial result: `cat` prints nothing of that file, `cp` leaves the destination as it was.
 */

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { CorruptBlockError, FsError, openVolume } from '../../src/index.js';
import { blockHeaderBytes } from '../../src/chunk/codec.js';
import { ensureBuilt, fails, ferry, ok } from './helpers.js';

const BLOCK = 64 << 10;
/** Three full blocks and a tail. */
const FILE_BYTES = 3 * BLOCK + 1234;

let root: string;
let dir: string;
let meta: string;
let bucket: string;
let content: Buffer;

before(() => {
  ensureBuilt();
  root = mkdtempSync(path.join(tmpdir(), 'ferry-corrupt-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

beforeEach(async () => {
  dir = mkdtempSync(path.join(root, 'v-'));
  meta = `sqlite://${dir}/vol.db`;
  bucket = path.join(dir, 'bucket');
  ok(['format', meta, 'corrupt', '--storage', `file://${bucket}`, '--block-size', '64K']);
  content = Buffer.alloc(FILE_BYTES);
  for (let i = 0; i < FILE_BYTES; i++) content[i] = (i * 7 + (i >> 9)) & 0xff;
  const vol = await openVolume(meta, { heartbeatMs: 0 });
  await vol.writeFile('/data.bin', content);
  await vol.writeFile('/other.txt', 'untouched');
  await vol.close();
  assert.match(ok(['fsck', meta]), /volume is clean/);
});

/** The block objects of /data.bin (the 4-block slice), by key. */
function dataBlocks(): Map<string, string> {
  const out = new Map<string, string>();
  for (const rel of readdirSync(path.join(bucket, 'chunks'), { recursive: true }) as string[]) {
    const key = `chunks/${rel}`;
    if (/_\d+_\d+$/.test(key) && /_(65536|1234)$/.test(key)) out.set(key, path.join(bucket, key));
  }
  assert.equal(out.size, 4, `expected the 4 blocks of /data.bin, found ${[...out.keys()].join(', ')}`);
  return out;
}

function blockNamed(index: number): [key: string, file: string] {
  const hit = [...dataBlocks()].find(([k]) => new RegExp(`_${index}_\\d+$`).test(k));
  assert.ok(hit !== undefined);
  return hit;
}

function flipByte(file: string, offset: number): void {
  const b = readFileSync(file);
  b[offset] = b[offset]! ^ 0x01;
  writeFileSync(file, b);
}

/** A fresh SDK client (no cache holds the good copy) must refuse to return the file. */
async function assertReadRejects(damaged: number): Promise<void> {
  const vol = await openVolume(meta, { heartbeatMs: 0, memCacheBytes: 0 });
  try {
    await assert.rejects(vol.readFile('/data.bin'), (err: unknown) => {
      assert.ok(err instanceof FsError && err.code === 'EIO', `unexpected error ${String(err)}`);
      return true;
    });
    // Other blocks still read; the damaged range never yields bytes.
    const fh = await vol.open('/data.bin', 'r');
    try {
      const good = damaged === 0 ? 1 : 0;
      const buf = Buffer.alloc(BLOCK);
      const { bytesRead } = await fh.read(buf, 0, BLOCK, good * BLOCK);
      assert.equal(bytesRead, BLOCK);
      assert.deepEqual(buf, content.subarray(good * BLOCK, (good + 1) * BLOCK));
      await assert.rejects(fh.read(Buffer.alloc(100), 0, 100, damaged * BLOCK + 10));
    } finally {
      await fh.close();
    }
    assert.equal(await vol.readFile('/other.txt', 'utf8'), 'untouched', 'other files are unaffected');
  } finally {
    await vol.close();
  }
}

function assertFsckNames(key: string, detail: RegExp): void {
  const r = ferry(['fsck', meta]);
  assert.equal(r.code, 1, `fsck must fail: ${r.stdout}${r.stderr}`);
  const line = r.stdout.split('\n').find((l) => l.includes(key));
  assert.ok(line !== undefined, `fsck names ${key}:\n${r.stdout}`);
  assert.match(line, detail);
  assert.match(r.stdout, /^fsck: 1 problem\(s\) found/m);
}

describe('a flipped byte in a stored block', () => {
  it('in the payload: reads reject, cat fails cleanly, fsck names the block', async () => {
    const [key, file] = blockNamed(2);
    assert.equal(readFileSync(file)[4], 3, 'new blocks are striped, with identity (codec version 3)');
    flipByte(file, blockHeaderBytes(BLOCK) + 1000);
    await assertReadRejects(2);

    const cat = fails(['cat', meta, '/data.bin'], new RegExp(`no good copy of ${key}: bucket: corrupt \\(stripe 0 checksum mismatch\\)`), { binary: true });
    assert.equal(cat.stdout, '', 'cat prints nothing of a file it cannot read whole');

    assertFsckNames(key, /checksum mismatch/);
    // --fast checks presence only: the object is there.
    assert.equal(ferry(['fsck', meta, '--fast']).code, 0);
  });

  it('in the header', async () => {
    const [key, file] = blockNamed(0);
    flipByte(file, 13); // inside the plain-length field
    await assert.rejects(async () => {
      const vol = await openVolume(meta, { heartbeatMs: 0, memCacheBytes: 0 });
      try {
        await vol.readFile('/data.bin');
      } finally {
        await vol.close();
      }
    }, (err: unknown) => {
      assert.ok(err instanceof FsError && err.code === 'EIO', String(err));
      assert.ok(err.message.includes(`no good copy of ${key}: bucket: corrupt (header checksum mismatch)`), err.message);
      // The store's error stays in the cause chain.
      let cause: unknown = err;
      while (cause instanceof Error && !(cause instanceof CorruptBlockError)) cause = cause.cause;
      assert.ok(cause instanceof CorruptBlockError, 'a CorruptBlockError is the cause');
      return true;
    });
    assertFsckNames(key, /checksum mismatch/);
  });

  it('in the stripe table', async () => {
    const [key, file] = blockNamed(1);
    flipByte(file, 24 + 2);
    await assertReadRejects(1);
    // Version 3: one checksum covers the fixed header and the stripe table.
    assertFsckNames(key, /header checksum mismatch/);
  });

  it('a well-formed block of another index stored under the key', async () => {
    const [, file0] = blockNamed(0);
    const [key, file1] = blockNamed(1);
    // A copy bug: block 0 (same length, every checksum intact) where block 1 belongs.
    writeFileSync(file1, readFileSync(file0));
    await assertReadRejects(1);
    assertFsckNames(key, /identity mismatch: the copy is block 0 of slice \d+, the key names block 1 of slice \d+/);
  });

  it('a truncated block', async () => {
    const [key, file] = blockNamed(3);
    truncateSync(file, 100);
    await assertReadRejects(3);
    assertFsckNames(key, /payload is \d+ bytes, header says/);
  });

  it('a missing block', async () => {
    const [key, file] = blockNamed(2);
    unlinkSync(file);
    await assertReadRejects(2);
    assertFsckNames(key, /: missing from the bucket$/);
    const fast = ferry(['fsck', meta, '--fast']);
    assert.equal(fast.code, 1);
    assert.match(fast.stdout, new RegExp(`block ${key} .*: missing from the bucket`));
  });

  it('a repaired block makes the volume clean again', async () => {
    const [, file] = blockNamed(1);
    const good = readFileSync(file);
    flipByte(file, blockHeaderBytes(BLOCK) + 5);
    assert.equal(ferry(['fsck', meta]).code, 1);
    writeFileSync(file, good);
    assert.match(ok(['fsck', meta]), /volume is clean/);
    const vol = await openVolume(meta, { heartbeatMs: 0 });
    try {
      const back = (await vol.readFile('/data.bin')) as Buffer;
      assert.equal(createHash('sha256').update(back).digest('hex'), createHash('sha256').update(content).digest('hex'));
    } finally {
      await vol.close();
    }
  });
});

describe('a failed read leaves no partial result', () => {
  it('cat: the files before it print whole, nothing of it; one line names the file and the cause', () => {
    const [key, file] = blockNamed(2);
    const [key1, file1] = blockNamed(1);
    const good = readFileSync(file);
    unlinkSync(file);
    const missing = fails(['cat', meta, '/other.txt', '/data.bin', '/other.txt'], undefined, { code: 1, binary: true });
    assert.equal(missing.stdout, 'untouched', 'the first file, whole; nothing of /data.bin');
    assert.equal(missing.stderr, `ferry: cannot read /data.bin: no good copy of ${key}: bucket: missing\n`);

    writeFileSync(file, good);
    flipByte(file1, blockHeaderBytes(BLOCK) + 10);
    const corrupt = fails(['cat', meta, ':/data.bin'], undefined, { code: 1, binary: true });
    assert.equal(corrupt.stdout, '');
    assert.match(corrupt.stderr, new RegExp(`^ferry: cannot read :/data.bin: no good copy of ${key1}: bucket: corrupt \\(.*checksum mismatch`));
  });

  it('cat: a file larger than one read (3 MiB) damaged near its end prints nothing of itself', async () => {
    const large = Buffer.alloc(3 << 20, 'x');
    const vol = await openVolume(meta, { heartbeatMs: 0 });
    await vol.writeFile('/large.bin', large);
    await vol.close();
    // Block 40 of 48 (64 KiB blocks): at 2.5 MiB, past what one streamed read would already have printed.
    const rel = (readdirSync(path.join(bucket, 'chunks'), { recursive: true }) as string[]).find((f) => /_40_65536$/.test(f));
    assert.ok(rel !== undefined);
    unlinkSync(path.join(bucket, 'chunks', rel));
    const r = ferry(['cat', meta, '/other.txt', '/large.bin'], { binary: true });
    assert.equal(r.stdout.length, 'untouched'.length, 'nothing of /large.bin');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^ferry: cannot read \/large\.bin: no good copy of .*_40_65536: bucket: missing\n$/);
  });

  it('cp to a local path: an existing destination keeps its content, a new one is not created, no temporary is left', () => {
    const [key, file] = blockNamed(3);
    unlinkSync(file);
    const out = path.join(dir, 'out');
    mkdirSync(out);
    writeFileSync(path.join(out, 'data.bin'), 'the old content');
    const r = fails(['cp', meta, ':/data.bin', out], undefined, { code: 1 });
    assert.equal(r.stderr, `ferry: cannot read ':/data.bin': no good copy of ${key}: bucket: missing\n`);
    assert.equal(readFileSync(path.join(out, 'data.bin'), 'utf8'), 'the old content');
    assert.deepEqual(readdirSync(out), ['data.bin'], 'no temporary file left');

    // Several sources: the one before the damaged file is copied whole, the damaged one not at all.
    const out2 = path.join(dir, 'out2');
    mkdirSync(out2);
    fails(['cp', meta, ':/other.txt', ':/data.bin', out2], /cannot read ':\/data\.bin'/, { code: 1 });
    assert.deepEqual(readdirSync(out2), ['other.txt']);
    assert.equal(readFileSync(path.join(out2, 'other.txt'), 'utf8'), 'untouched');
    // To a new name.
    fails(['cp', meta, ':/data.bin', path.join(out2, 'renamed.bin')], /cannot read/, { code: 1 });
    assert.deepEqual(readdirSync(out2), ['other.txt']);
  });

  it('with two regions, the error says what each bucket held', async () => {
    const d = mkdtempSync(path.join(root, 'r-'));
    const m = `sqlite://${d}/vol.db`;
    ok(['format', m, 'two', '--region', `a=file://${d}/a`, '--region', `b=file://${d}/b`, '--block-size', '64K']);
    const vol = await openVolume(m, { heartbeatMs: 0 });
    await vol.writeFile('/f.bin', content);
    await vol.close();
    ok(['replicate', m, '--once']);
    const block = (r: string): string => path.join(d, r, (readdirSync(path.join(d, r), { recursive: true }) as string[]).find((f) => /_2_65536$/.test(f))!);
    const key = path.relative(path.join(d, 'a'), block('a'));
    unlinkSync(block('a'));
    flipByte(block('b'), blockHeaderBytes(BLOCK) + 10);
    const r = fails(['cat', m, '/f.bin'], undefined, { code: 1, binary: true });
    assert.equal(r.stdout, '');
    assert.match(r.stderr, new RegExp(`^ferry: cannot read /f.bin: no good copy of ${key}: a: missing, b: corrupt \\(.*checksum mismatch.*\\)$`, 'm'));
  });
});
