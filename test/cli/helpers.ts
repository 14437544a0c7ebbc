/**
 * Running the built `ferry` CLI from tests, and comparing a directory's state before and after a command
 * (to assert that a failed command wrote nothing).
 */

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openMetaEngine } from '../../src/index.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
export const LIB = path.join(ROOT, 'dist', 'index.js');

/** The CLI is tested as built (`npm test` builds first); a missing build is built once here. */
export function ensureBuilt(): void {
  if (existsSync(CLI) && existsSync(LIB)) return;
  const r = spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: ROOT, encoding: 'utf8' });
  assert.ok(existsSync(CLI), `build failed: ${r.stdout}${r.stderr}`);
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI; with `binary`, stdout is decoded as latin1 (one char per byte). */
export function ferry(args: string[], options: { cwd?: string; env?: Record<string, string>; binary?: boolean } = {}): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: options.cwd,
    encoding: options.binary === true ? 'latin1' : 'utf8',
    env: { ...process.env, FERRY_DEBUG: '', FERRY_NO_PROGRESS: '1', ...options.env },
    maxBuffer: 64 << 20,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** ferry(), without blocking: for running many independent commands at once. */
export function ferryAsync(args: string[], options: { cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: options.cwd,
      env: { ...process.env, FERRY_DEBUG: '', FERRY_NO_PROGRESS: '1' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Asserts success and returns stdout. */
export function ok(args: string[], options?: { cwd?: string }): string {
  const r = ferry(args, options);
  assert.equal(r.code, 0, `ferry ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** Asserts a clean failure: non-zero exit, exactly one `ferry: ...` line on stderr, no stack trace. */
export function fails(args: string[], pattern?: RegExp, options?: { cwd?: string; code?: number; binary?: boolean }): Run {
  const r = ferry(args, options);
  checkFailure(args, r, pattern, options?.code);
  return r;
}

function checkFailure(args: string[], r: Run, pattern: RegExp | undefined, code: number | undefined): void {
  assert.notEqual(r.code, 0, `ferry ${args.join(' ')} should fail; stdout: ${r.stdout}`);
  if (code !== undefined) assert.equal(r.code, code, `exit code of ferry ${args.join(' ')}`);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `ferry ${args.join(' ')}: expected one stderr line, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^ferry: \S/);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
  assert.doesNotMatch(r.stderr, /unexpected error/, `an unknown error escaped: ${r.stderr}`);
  if (pattern !== undefined) assert.match(lines[0]!, pattern);
}

/** SQLite's side files come and go with connections; they are not state. */
const TRANSIENT = /-(wal|shm)$/;

/**
 * Everything in dir, for before/after comparisons: each file's relative path and content hash, except that a
 * Ferry database is compared by its logical records (opening it may checkpoint and rewrite pages).
 */
export async function dirState(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    for (const e of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (TRANSIENT.test(e.name)) continue;
      if (e.isDirectory()) {
        out[r + '/'] = 'dir';
        await walk(r);
      } else if (e.name.endsWith('.db') && statSync(path.join(dir, r)).size > 0 && isSqlite(path.join(dir, r))) {
        out[r] = await dbState(path.join(dir, r));
      } else {
        out[r] = createHash('sha256').update(readFileSync(path.join(dir, r))).digest('hex');
      }
    }
  };
  await walk('');
  return out;
}

function isSqlite(file: string): boolean {
  return readFileSync(file).subarray(0, 16).toString('latin1') === 'SQLite format 3\0';
}

/**
 * The volume's logged records and changelog position. Sessions are left out by the engine (unlogged), so a
 * client that only reads (`ls`, `cat`) leaves this unchanged.
 */
async function dbState(file: string): Promise<string> {
  const engine = await openMetaEngine(`sqlite://${file}`);
  try {
    const h = createHash('sha256');
    const { seq } = await engine.snapshot((op) => {
      h.update(JSON.stringify(op));
    });
    return `db ${h.digest('hex')} at ${seq}`;
  } finally {
    await engine.close();
  }
}

/** Runs a failing command and asserts that dir is unchanged by it. */
export async function failsCleanly(dir: string, args: string[], pattern?: RegExp, options?: { cwd?: string; code?: number }): Promise<Run> {
  const before = await dirState(dir);
  const r = fails(args, pattern, options);
  assert.deepEqual(await dirState(dir), before, `ferry ${args.join(' ')} changed ${dir}`);
  return r;
}

/** Runs failing commands concurrently (they must not depend on each other) and asserts dir is unchanged. */
export async function allFailCleanly(dir: string, cases: Array<[args: string[], pattern: RegExp]>): Promise<void> {
  const before = await dirState(dir);
  const runs = await Promise.all(cases.map(([args]) => ferryAsync(args)));
  cases.forEach(([args, pattern], i) => checkFailure(args, runs[i]!, pattern, undefined));
  assert.deepEqual(await dirState(dir), before, `a failing command changed ${dir}`);
}
