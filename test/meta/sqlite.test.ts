import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SqliteEngine } from '../../src/meta/sqlite.js';
import type { MetaEngine } from '../../src/meta/engine.js';
import { metaEngineConformance } from './engine-conformance.js';

metaEngineConformance('sqlite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-sqlite-'));
  const path = join(dir, 'meta.db');
  const engine = new SqliteEngine(path, { create: true });
  return {
    engine,
    reopen: () => Promise.resolve(new SqliteEngine(path)),
    cleanup: async () => {
      await engine.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe('SqliteEngine', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  async function tempPath(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'ferry-sqlite-'));
    dirs.push(dir);
    return join(dir, 'meta.db');
  }

  const increments = 100;
  const increment = (engine: MetaEngine): Promise<void> =>
    engine.txn(async (tx) => {
      const c = (await tx.get<number>('counter', '', 'c')) ?? 0;
      await new Promise((resolve) => setImmediate(resolve));
      tx.put('counter', '', 'c', c + 1);
    });

  async function assertCounterAndGaplessLog(engine: MetaEngine, total: number): Promise<void> {
    assert.equal(await engine.txn((tx) => tx.get('counter', '', 'c')), total, 'lost updates');
    assert.equal(await engine.lastSeq(), total);
    const log = await engine.readLog(0, 10 * total);
    assert.deepEqual(
      log.map((e) => e.seq),
      Array.from({ length: total }, (_, i) => i + 1),
    );
    assert.deepEqual(
      log.map((e) => e.ops[0]?.[3]),
      Array.from({ length: total }, (_, i) => i + 1),
      'each entry holds the counter value its transaction wrote',
    );
  }

  it('two engines on one file in one process lose no update and keep the log gapless', async () => {
    const path = await tempPath();
    const a = new SqliteEngine(path, { create: true });
    const b = new SqliteEngine(path);
    try {
      const work: Array<Promise<void>> = [];
      for (let i = 0; i < increments; i++) work.push(increment(a), increment(b));
      await Promise.all(work);
      await assertCounterAndGaplessLog(a, 2 * increments);
      await assertCounterAndGaplessLog(b, 2 * increments);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('an engine opens on a file while another engine of this process holds a transaction open across an await', async () => {
    const path = await tempPath();
    const a = new SqliteEngine(path, { create: true });
    let b: SqliteEngine | undefined;
    try {
      await a.txn(async (tx) => {
        tx.put('counter', '', 'c', 1);
        await new Promise((resolve) => setImmediate(resolve));
        // Before the fix the constructor's schema statements waited on a's write lock: SQLITE_BUSY after busy_timeout.
        const started = Date.now();
        b = new SqliteEngine(path);
        assert.ok(Date.now() - started < 1000, 'opening waited for the other engine\'s transaction');
      });
      assert.equal(await b!.txn((tx) => tx.get('counter', '', 'c')), 1);
    } finally {
      await a.close();
      await b?.close();
    }
  });

  it('two processes on one file lose no update and keep the log gapless', async () => {
    const path = await tempPath();
    const engine = new SqliteEngine(path, { create: true });
    try {
      const module = fileURLToPath(new URL('../../src/meta/sqlite.ts', import.meta.url));
      const script = `
        import { SqliteEngine } from ${JSON.stringify(module)};
        const e = new SqliteEngine(${JSON.stringify(path)});
        const inc = () => e.txn(async (tx) => {
          const c = (await tx.get('counter', '', 'c')) ?? 0;
          await new Promise((r) => setImmediate(r));
          tx.put('counter', '', 'c', c + 1);
        });
        await Promise.all(Array.from({ length: ${increments} }, inc));
        await e.close();`;
      const run = (): Promise<void> =>
        new Promise((resolve, reject) => {
          const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'inherit', 'pipe'] });
          let stderr = '';
          child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
          child.on('error', reject);
          child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`child exited ${code}: ${stderr}`))));
        });
      await Promise.all([run(), run()]);
      await assertCounterAndGaplessLog(engine, 2 * increments);
    } finally {
      await engine.close();
    }
  });

  it('opening a missing file without create throws and creates nothing', async () => {
    const path = await tempPath();
    assert.throws(() => new SqliteEngine(path));
    assert.equal(existsSync(path), false);
    const e = new SqliteEngine(path, { create: true });
    await e.close();
    assert.equal(existsSync(path), true);
  });

  it('a closed engine refuses transactions', async () => {
    const e = new SqliteEngine(await tempPath(), { create: true });
    await e.close();
    await assert.rejects(
      e.txn(() => Promise.resolve(1)),
      /closed/,
    );
  });
});
