/**
 * Several client processes on one Redis volume (test/fixtures/redis-meta-client.ts): concurrent creates in
 * one directory lose nothing and never share an inode id, concurrent renames of the same names each happen
 * exactly once, and a read-modify-write counter loses no increment while the changelog stays gapless.
 *
 * Needs Redis on 127.0.0.1:6379 (database 11; FERRY_TEST_REDIS_HOST=host:port overrides); skips without it, fails under
 * CI=true.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { formatVolume, Meta } from '../../src/meta/meta.js';
import { openRedisEngine, type RedisEngine } from '../../src/meta/redis.js';
import { ROOT_CTX, ROOT_INO } from '../../src/meta/types.js';
import { forEachEngine, redisEngine } from '../helpers/engines.js';

const REDIS = redisEngine(11);
const REDIS_URL = REDIS.base;
const CLIENT = fileURLToPath(new URL('../fixtures/redis-meta-client.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const PROCESSES = 4;
/** A child that takes longer than this is killed and fails the test. */
const childTimeoutMs = 30_000;

/** Runs one client process; resolves to the JSON it printed. */
function client(args: Array<string | number>, startAt = 0): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, FERRY_START_AT: String(startAt) };
    const child = spawn(process.execPath, ['--import', 'tsx', CLIENT, ...args.map(String)], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), childTimeoutMs);
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`client ${args.slice(0, 2).join(' ')} exited ${code ?? signal}: ${err}`));
      else resolve(JSON.parse(out.trim().split('\n').pop()!));
    });
  });
}

await forEachEngine([REDIS], () => {
  describe(`${PROCESSES} client processes on one Redis volume`, () => {
    const prefix = `ferrytest-mc-${randomBytes(4).toString('hex')}`;
    const url = `${REDIS_URL}?prefix=${prefix}`;
    let engine: RedisEngine;
    let meta: Meta;

    before(async () => {
      engine = await openRedisEngine(url);
      await formatVolume(engine, { name: 'multi', storage: 'mem://multi', blockBytes: 4 << 20, compression: 'none', trashDays: 0 });
      // The log is read back after the clients ran: a registered consumer keeps it from being trimmed before.
      await engine.registerConsumer('test', 0);
      meta = await Meta.open(engine, { heartbeatMs: 0 });
    });
    after(async () => {
      await meta.close();
      await engine.reset();
      await engine.close();
      const admin = new Redis(REDIS_URL);
      await admin.del(`{${prefix}}:epoch`); // the one key reset leaves
      await admin.quit();
    });

    it('concurrent creates in one directory lose nothing and never share an inode id', async () => {
      const perClient = 100;
      const dir = (await meta.mkdir(ROOT_CTX, ROOT_INO, 'creates', 0o777)).ino;
      const results = (await Promise.all(Array.from({ length: PROCESSES }, (_, id) => client(['create', url, id, perClient, dir])))) as Array<Array<[string, number]>>;
      const reported = new Map(results.flat());
      assert.equal(reported.size, PROCESSES * perClient, 'every client reported every create');
      const inos = [...reported.values()];
      assert.equal(new Set(inos).size, inos.length, 'inode ids collide');
      const listed = await meta.readdir(ROOT_CTX, dir);
      assert.deepEqual(new Map(listed.map((e) => [e.name, e.ino])), reported, 'the directory holds exactly the committed creates');
      for (const ino of inos.slice(0, 20)) assert.equal((await meta.getattr(ino)).nlink, 1);
      const st = await meta.statfs();
      assert.equal(st.inodes, PROCESSES * perClient + 1, 'the inode counter lost increments');
    });

    it('concurrent renames of the same names each happen exactly once', async () => {
      const files = 120;
      const src = (await meta.mkdir(ROOT_CTX, ROOT_INO, 'src', 0o777)).ino;
      const dst = (await meta.mkdir(ROOT_CTX, ROOT_INO, 'dst', 0o777)).ino;
      const original = new Map<string, number>();
      for (let i = 0; i < files; i++) original.set(`g${i}`, (await meta.create(ROOT_CTX, src, `f${i}`, 0o644)).ino);
      // All clients start renaming at one moment (process start-up under load varies by seconds).
      const startAt = Date.now() + 3000;
      const results = (await Promise.all(Array.from({ length: PROCESSES }, (_, id) => client(['rename', url, id, files, src, dst], startAt)))) as number[][];
      const done = results.flat().sort((x, y) => x - y);
      assert.deepEqual(
        done,
        Array.from({ length: files }, (_, i) => i),
        'each rename succeeded in exactly one client',
      );
      assert.ok(results.filter((r) => r.length > 0).length > 1, 'the renames were spread over several clients');
      assert.deepEqual(await meta.readdir(ROOT_CTX, src), []);
      const listed = await meta.readdir(ROOT_CTX, dst);
      assert.deepEqual(new Map(listed.map((e) => [e.name, e.ino])), original, 'every file arrived under its new name, same inode');
    });

    it('a read-modify-write counter loses no increment and the changelog stays gapless', async () => {
      const perClient = 60;
      const seq0 = await engine.lastSeq();
      const results = (await Promise.all(Array.from({ length: PROCESSES }, (_, id) => client(['counter', url, id, perClient])))) as number[][];
      const total = PROCESSES * perClient;
      const values = results.flat().sort((x, y) => x - y);
      assert.deepEqual(
        values,
        Array.from({ length: total }, (_, i) => i + 1),
        'each increment saw a distinct value',
      );
      assert.equal(await engine.txn((tx) => tx.get('counter', '', 'shared')), total);
      const counted = await engine.txn((tx) => tx.scan('xattr', 'counted'));
      assert.equal(counted.length, total);
      // The clients' own sessions and Meta bookkeeping are interleaved in the log; the counter's entries
      // carry 1..total in order, and the whole log is gapless.
      const log = await engine.readLog(seq0, 100_000);
      assert.deepEqual(
        log.map((e) => e.seq),
        Array.from({ length: log.length }, (_, i) => seq0 + i + 1),
      );
      const written = log.flatMap((e) => e.ops.filter((op) => op[0] === 'counter' && op[2] === 'shared').map((op) => op[3]));
      assert.deepEqual(
        written,
        Array.from({ length: total }, (_, i) => i + 1),
      );
    });
  });
});
