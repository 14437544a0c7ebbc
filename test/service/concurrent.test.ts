/**
 * Writers in the primary region and in two mirror regions (one full, one metadata-only) work on one directory
 * tree at once; the primary's history is the one serial history, so once the followers caught up, both
 * replicas hold exactly the primary's records, and every client sees the same tree.
 */

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { FsError, type Volume } from '../../src/index.js';
import type { LogOp, MetaEngine } from '../../src/meta/engine.js';
import { verifyMirror } from '../../src/region/mirror.js';
import { mulberry32, randomSeed } from '../../src/util/random.js';
import { makeServiceLab, type ServiceLab } from './helpers.js';

const SEED = process.env['FERRY_SEED'] !== undefined ? Number(process.env['FERRY_SEED']) : randomSeed();
console.log(`service concurrency test: seed ${SEED} (replay with FERRY_SEED=${SEED})`);

const labs: ServiceLab[] = [];
after(async () => {
  for (const l of labs) await l.cleanup();
});

async function workload(vol: Volume, who: string, ops: number, seed: number): Promise<number> {
  const rand = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const dirs = ['/t/a', '/t/b', '/t/c'];
  const names = ['x', 'y', 'z', 'w'];
  let done = 0;
  for (let i = 0; i < ops; i++) {
    const p = `${pick(dirs)}/${pick(names)}`;
    const r = rand();
    try {
      if (r < 0.1) await vol.mkdir(`${pick(dirs)}/sub-${who}-${i}`);
      else if (r < 0.45) await vol.writeFile(p, `${who} ${i}\n`.repeat(1 + Math.floor(rand() * 50)));
      else if (r < 0.55) await vol.appendFile(p, `${who} ${i}\n`);
      else if (r < 0.7) await vol.rename(p, `${pick(dirs)}/${pick(names)}`);
      else if (r < 0.8) await vol.unlink(p);
      else if (r < 0.87) await vol.chmod(p, 0o600 + Math.floor(rand() * 0o100));
      else if (r < 0.94) await vol.setxattr(p, 'user.who', who);
      else await vol.symlink(pick(names), `${pick(dirs)}/l-${who}-${i}`);
      done++;
    } catch (err) {
      // Races between regions answer as POSIX says (ENOENT, EEXIST, ...): the history is serial.
      if (!(err instanceof FsError) || err.code === 'EIO') throw err;
    }
  }
  return done;
}

async function records(engine: MetaEngine): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  await engine.snapshot((op: LogOp) => {
    out.set(JSON.stringify(op.slice(0, 3)), JSON.stringify(op[3]));
  });
  return out;
}

async function tree(vol: Volume, dir = '/t'): Promise<string[]> {
  const out: string[] = [];
  for (const name of await vol.readdir(dir)) {
    const p = `${dir}/${name}`;
    const st = await vol.lstat(p);
    out.push(`${p} ${st.mode.toString(8)} ${st.size} ${st.nlink}`);
    if (st.isDirectory()) out.push(...(await tree(vol, p)));
    else if (st.isFile()) out.push(`  ${(await vol.readFile(p)).toString('base64').slice(0, 64)}`);
  }
  return out;
}

describe('metadata service: concurrent regions', () => {
  it('writers in the primary and two mirror regions end with the same state on the primary and both replicas', async () => {
    const l = await makeServiceLab([
      { name: 'f', bucket: true },
      { name: 'm', bucket: false },
    ]);
    labs.push(l);
    const a = await l.open('primary', { lookupCacheMs: 0 });
    const f = await l.open('f');
    const m = await l.open('m');
    await a.mkdir('/t');
    for (const d of ['a', 'b', 'c']) await a.mkdir(`/t/${d}`);
    await l.settle();
    const done = await Promise.all([workload(a, 'a', 120, SEED), workload(f, 'f', 120, SEED + 1), workload(m, 'm', 120, SEED + 2)]);
    console.log(`operations that succeeded: a ${done[0]}, f ${done[1]}, m ${done[2]}`);
    assert.ok(done.every((n) => n > 30));
    await l.settle();
    const primary = await records(l.primary);
    for (const [name, replica] of l.replicas) {
      const r = await records(replica);
      assert.deepEqual(r, primary, `replica ${name} equals the primary`);
      const v = await verifyMirror(l.primary, replica);
      assert.deepEqual(v.differences, [], `mirror verify of ${name}`);
    }
    const ta = await tree(a);
    assert.deepEqual(await tree(f), ta, 'the full mirror client sees the primary\'s tree');
    assert.deepEqual(await tree(m), ta, 'the metadata-only mirror client sees the primary\'s tree');
    assert.equal(l.service!.stats.multiCommits, 0);
  });
});
