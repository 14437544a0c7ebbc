/**
 * `ferry load --force` is all or nothing on every engine: a load killed with SIGKILL at random moments leaves
 * the engine holding, for whoever opens it next, either the old volume whole or the new one whole — never a
 * mixture, never nothing. (On Redis the new volume is written beside the live keys and switched in; an open
 * finishes a switch that a kill interrupted.)
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openMetaEngine, openVolume } from '../../src/index.js';
import type { LogOp } from '../../src/meta/engine.js';
import { mulberry32, randomSeed } from '../../src/util/random.js';
import { forEachEngine, postgresEngine, redisEngine } from '../helpers/engines.js';
import { CLI, ensureBuilt, ok } from './helpers.js';

const SEED = process.env['FERRY_SEED'] !== undefined ? Number(process.env['FERRY_SEED']) : randomSeed();
console.log(`load-atomic: seed ${SEED} (replay with FERRY_SEED=${SEED})`);
const KILLS = 8;

let root: string;
let dumpOld: string;
let dumpNew: string;

/** A SQLite volume with `files` files (and their blocks in a bucket nobody reads here), dumped to a file. */
async function makeDump(name: string, files: number): Promise<string> {
  const meta = `sqlite://${root}/${name}.db`;
  ok(['format', meta, name, '--storage', `file://${root}/${name}-bucket`]);
  const vol = await openVolume(meta, { heartbeatMs: 0 });
  try {
    for (let d = 0; d < Math.ceil(files / 100); d++) {
      await vol.mkdir(`/d${d}`);
      for (let f = 0; f < 100 && d * 100 + f < files; f++) await vol.writeFile(`/d${d}/f${f}`, `${name} ${d} ${f}`);
    }
  } finally {
    await vol.close();
  }
  const file = `${root}/${name}.jsonl`;
  ok(['dump', meta, file]);
  return file;
}

/** The engine's logged records, as a map (opening the engine finishes an interrupted switch). */
async function contentOf(url: string): Promise<Map<string, string>> {
  const engine = await openMetaEngine(url);
  try {
    const state = new Map<string, string>();
    await engine.snapshot((op: LogOp) => {
      state.set(JSON.stringify(op.slice(0, 3)), JSON.stringify(op[3]));
    });
    return state;
  } finally {
    await engine.close();
  }
}

function sameContent(a: Map<string, string>, b: Map<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/** Runs `ferry load --force`; with `killAfterMs`, SIGKILLs it then. Resolves with its exit code and duration. */
function load(url: string, file: string, killAfterMs?: number): Promise<{ code: number | null; ms: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [CLI, 'load', url, file, '--force'], { env: { ...process.env, FERRY_DEBUG: '' } });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, ms: Date.now() - t0, stderr });
    });
  });
}

before(async () => {
  ensureBuilt();
  root = mkdtempSync(path.join(tmpdir(), 'ferry-load-atomic-'));
  dumpOld = await makeDump('old-vol', 150);
  dumpNew = await makeDump('new-vol', 2500);
});
after(() => rmSync(root, { recursive: true, force: true }));

function suite(name: string, fresh: () => Promise<{ url: string; cleanup(): Promise<void> }>): void {
  describe(`load --force killed at random moments (${name})`, () => {
    it('leaves the old volume or the new one, whole', async () => {
      const loc = await fresh();
      try {
        const rand = mulberry32(SEED);
        ok(['load', loc.url, dumpNew, ...(name === 'sqlite' ? [] : ['--force'])]);
        const contentNew = await contentOf(loc.url);
        const full = await load(loc.url, dumpOld);
        assert.equal(full.code, 0, full.stderr);
        const contentOld = await contentOf(loc.url);
        assert.ok(contentNew.size > 5 * contentOld.size, 'the new volume is the larger one');
        // Timing: a whole load of the new volume, from spawn to exit.
        const timing = await load(loc.url, dumpNew);
        assert.equal(timing.code, 0, timing.stderr);
        const seen = { old: 0, new: 0 };
        for (let i = 0; i < KILLS; i++) {
          // Start from the old volume each time.
          const back = await load(loc.url, dumpOld);
          assert.equal(back.code, 0, back.stderr);
          const killAt = Math.floor(rand() * timing.ms);
          await load(loc.url, dumpNew, killAt);
          const now = await contentOf(loc.url);
          if (sameContent(now, contentOld)) seen.old++;
          else if (sameContent(now, contentNew)) seen.new++;
          else assert.fail(`killed after ${killAt} ms (of ${timing.ms}): the engine holds neither volume (${now.size} records; old ${contentOld.size}, new ${contentNew.size})`);
        }
        console.log(`${name}: ${KILLS} kills within a ${timing.ms} ms load: old volume ${seen.old}, new volume ${seen.new}`);
      } finally {
        await loc.cleanup();
      }
    });
  });
}

suite('sqlite', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-load-atomic-sqlite-'));
  return Promise.resolve({ url: `sqlite://${dir}/vol.db`, cleanup: () => Promise.resolve(rmSync(dir, { recursive: true, force: true })) });
});
await forEachEngine([redisEngine(11), postgresEngine()], (engine) => suite(engine.name, () => engine.fresh()));
