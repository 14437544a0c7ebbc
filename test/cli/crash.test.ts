/**
 * Crash safety: a writer killed with SIGKILL mid-way leaves a volume that `ferry fsck` passes, where every
 * file closed before the kill reads back exactly.
 *
 * The writer is a child process using the built SDK. It creates, overwrites, renames and deletes files, and
 * reports each operation on stdout with a synchronous write: `begin NAME...` before it starts, `mid NAME`
 * halfway through writing a large file, then `W NAME SHA256` / `R FROM TO` / `D NAME` once the operation
 * returned (for writes: after close). The parent kills it at the first `mid` after a number of completed
 * operations, so the kill lands while blocks are being uploaded and before their commit. The names of that unfinished operation may hold anything, but must still read without an
 * error; every other name must be exactly as last reported.
 */

import type { Meta } from '../../src/meta/meta.js';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { isFsError } from '../../src/errors.js';
import { openVolume } from '../../src/index.js';
import { ensureBuilt, ferry, LIB, ok } from './helpers.js';

const WRITER = `
import { openVolume } from ${JSON.stringify(pathToFileURL(LIB).href)};
import { createHash, randomBytes } from 'node:crypto';
import { writeSync } from 'node:fs';

const say = (line) => writeSync(1, line + '\\n');
let seed = Number(process.env.CRASH_SEED) >>> 0 || 1;
const rnd = () => {
  seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
  return seed / 2 ** 32;
};
const vol = await openVolume(process.env.CRASH_META, { uid: 0, gid: 0 });
for (const d of ['/a', '/b', '/c']) await vol.mkdir(d, { recursive: true });
const files = [];
const pick = () => files[Math.floor(rnd() * files.length)];

async function write(name) {
  // Mostly small files; some span many 64 KiB blocks and are written in pieces, so blocks upload early.
  const size = rnd() < 0.7 ? Math.floor(rnd() * 20000) : 100000 + Math.floor(rnd() * 1100000);
  const data = randomBytes(size);
  say('begin ' + name);
  const fh = await vol.open(name, 'w', 0o644);
  for (let off = 0; off < size; off += 50000) {
    await fh.write(data, off, Math.min(50000, size - off), off);
    // Halfway through a large file, once the full blocks had time to upload, none of them committed: a good
    // moment to die. The second pause lets the parent's SIGKILL land before the close commits.
    if (size > 300000 && off < size / 2 && off + 50000 >= size / 2) {
      await new Promise((r) => setTimeout(r, 200));
      say('mid ' + name);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  await fh.close();
  say('W ' + name + ' ' + createHash('sha256').update(data).digest('hex'));
}

for (let i = 0; ; i++) {
  const r = rnd();
  if (files.length > 3 && r < 0.1) {
    const name = pick();
    say('begin ' + name);
    await vol.unlink(name);
    files.splice(files.indexOf(name), 1);
    say('D ' + name);
  } else if (files.length > 3 && r < 0.2) {
    const from = pick();
    const to = '/c/r' + i;
    say('begin ' + from + ' ' + to);
    await vol.rename(from, to);
    files.splice(files.indexOf(from), 1, to);
    say('R ' + from + ' ' + to);
  } else if (files.length > 3 && r < 0.35) {
    await write(pick());
  } else {
    const name = ['/a', '/b', '/c'][i % 3] + '/f' + i;
    await write(name);
    files.push(name);
  }
}
`;

interface Outcome {
  /** name -> sha256 of the content last reported closed. */
  files: Map<string, string>;
  deleted: Set<string>;
  /** Names of the operation that was running when the writer died. */
  inflight: string[];
  completed: number;
}

/**
 * Runs the writer and kills it with SIGKILL once `killAfter` operations have completed: at once ('any': the
 * kill lands wherever the writer is), or at the next `mid` ('mid': uploads done, commit not).
 */
function runWriter(meta: string, seed: number, killAfter: number, at: 'any' | 'mid'): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', WRITER], {
      env: { ...process.env, CRASH_META: meta, CRASH_SEED: String(seed) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const o: Outcome = { files: new Map(), deleted: new Set(), inflight: [], completed: 0 };
    let buf = '';
    let stderr = '';
    let killed = false;
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const [op, a, b] = buf.substring(0, nl).split(' ') as [string, string, string | undefined];
        buf = buf.substring(nl + 1);
        // Lines that arrive after the kill was sent are still true: the writer got that far.
        if (op === 'begin') {
          o.inflight = b === undefined ? [a] : [a, b];
          continue;
        }
        if (op === 'mid') {
          if (at === 'mid' && o.completed >= killAfter && !killed) {
            killed = true;
            child.kill('SIGKILL');
          }
          continue;
        }
        o.inflight = [];
        o.completed++;
        if (op === 'W') o.files.set(a, b!);
        else if (op === 'D') {
          o.files.delete(a);
          o.deleted.add(a);
        } else if (op === 'R') {
          o.files.set(b!, o.files.get(a)!);
          o.files.delete(a);
          o.deleted.add(a);
        }
        if (at === 'any' && o.completed >= killAfter && !killed) {
          killed = true;
          child.kill('SIGKILL');
        }
      }
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`writer exited by itself (${code}): ${stderr}`));
      else resolve(o);
    });
  });
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function verify(meta: string, o: Outcome): Promise<void> {
  const vol = await openVolume(meta, { heartbeatMs: 0, memCacheBytes: 0 });
  try {
    for (const [name, sum] of o.files) {
      if (o.inflight.includes(name)) continue;
      assert.equal(sha((await vol.readFile(name)) as Buffer), sum, `${name} reads back as closed`);
    }
    for (const name of o.deleted) {
      if (o.inflight.includes(name) || o.files.has(name)) continue;
      assert.equal(await vol.exists(name), false, `${name} was deleted or renamed away`);
    }
    for (const name of o.inflight) {
      // Interrupted: any content (old, new, truncated, absent) — but never a read error.
      try {
        await vol.readFile(name);
      } catch (err) {
        if (!isFsError(err, 'ENOENT')) throw err;
      }
    }
  } finally {
    await vol.close();
  }
}

let root: string;
before(() => {
  ensureBuilt();
  root = mkdtempSync(path.join(tmpdir(), 'ferry-crash-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

describe('a writer killed with SIGKILL', () => {
  for (const [seed, killAfter, at] of [
    [11, 6, 'any'],
    [22, 31, 'mid'],
    [33, 77, 'mid'],
  ] as const) {
    it(`leaves a clean volume (seed ${seed}, killed ${at === 'mid' ? 'mid-upload ' : ''}after ${killAfter} operations)`, async () => {
      const dir = mkdtempSync(path.join(root, 'v-'));
      const meta = `sqlite://${dir}/vol.db`;
      ok(['format', meta, 'crash', '--storage', `file://${dir}/bucket`, '--block-size', '64K']);
      const o = await runWriter(meta, seed, killAfter, at);
      assert.ok(o.completed >= killAfter);
      assert.ok(o.files.size > 0);

      const fsck = ferry(['fsck', meta]);
      assert.equal(fsck.code, 0, `fsck after the crash:\n${fsck.stdout}${fsck.stderr}`);
      assert.match(fsck.stdout, /volume is clean/);
      // Usage changes are recorded with each commit, not batched in memory: a killed client loses none.
      assert.doesNotMatch(fsck.stdout, /warning/, 'usage counters drifted');
      await verify(meta, o);

      // The dead writer's uploads that never committed are leaks: gc removes them and nothing that is live.
      const gc = ok(['gc', meta, '--delete', '--grace', '0', '--leak-age', '0']);
      const leaked = Number(/leaked objects: (\d+)/.exec(gc)?.[1]);
      if (at === 'mid') assert.ok(leaked > 0, `the kill landed mid-upload, so uploaded blocks leaked: ${gc}`);
      assert.match(ok(['fsck', meta]), /volume is clean/);
      await verify(meta, o);
    });
  }
});

const HOLDER = `
import { openVolume } from ${JSON.stringify(pathToFileURL(LIB).href)};
const vol = await openVolume(process.env.HOLD_META, { uid: 0, gid: 0, heartbeatMs: 1000 });
await vol.writeFile('/a', Buffer.alloc(1000, 1));
await vol.writeFile('/held', Buffer.alloc(5000, 2));
const fh = await vol.open('/held', 'r');
await vol.unlink('/held');
// Written last: its usage change is still unmerged when the process dies.
await vol.writeFile('/b', Buffer.alloc(300, 3));
process.stdout.write('ready\\n');
setInterval(() => fh, 1000);
`;

describe('a client killed with SIGKILL while it holds an unlinked file open', () => {
  it('is shown dead once it missed 5 heartbeats, cleaned by the next client, and leaves exact usage counters', async () => {
    const dir = mkdtempSync(path.join(root, 'h-'));
    const meta = `sqlite://${dir}/vol.db`;
    ok(['format', meta, 'hold', '--storage', `file://${dir}/bucket`, '--trash-days', '0']);
    const child = spawn(process.execPath, ['--input-type=module', '-e', HOLDER], { env: { ...process.env, HOLD_META: meta }, stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => (d.toString().includes('ready') ? resolve() : undefined));
      child.on('exit', (code) => reject(new Error(`holder exited (${code})`)));
    });
    child.kill('SIGKILL');
    const killed = Date.now();
    await new Promise((r) => child.once('close', r));

    assert.doesNotMatch(ok(['status', meta]), /dead/, 'not dead before it missed its heartbeats');
    const fsck = ok(['fsck', meta]);
    assert.match(fsck, /volume is clean/, 'the held inode is kept for the session that holds it');
    assert.doesNotMatch(fsck, /warning/, 'usage: counters plus the dead client\'s unmerged changes are exact');

    await new Promise((r) => setTimeout(r, Math.max(0, killed + 5500 - Date.now()))); // 5 heartbeats of 1 s, and some
    const status = ok(['status', meta]);
    assert.match(status, /sessions: +1\n.*\(dead/);
    assert.match(status, /usage: +6\.15 KiB/, 'a, b and the held file, still held by its (dead) client');

    // The next client to start cleans the dead one up: the held file goes, usage comes out exact.
    const vol = await openVolume(meta, { heartbeatMs: 0 });
    try {
      assert.equal((await (vol.vfs.meta as Meta).listSessions()).length, 1);
    } finally {
      await vol.close();
    }
    const after = ok(['status', meta]);
    assert.match(after, /sessions: +0/);
    assert.match(after, /usage: +1\.27 KiB/);
    const fsck2 = ok(['fsck', meta]);
    assert.match(fsck2, /volume is clean/);
    assert.doesNotMatch(fsck2, /warning/);
    assert.match(ok(['gc', meta]), /sessions: 0 dead/);
  });
});
