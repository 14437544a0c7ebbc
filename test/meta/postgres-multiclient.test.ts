/**
 * Many clients on one PostgreSQL volume: four processes (test/fixtures/pg-meta-client.ts) run Meta on the
 * same schema at once — creates in one directory, appends of slice references to one file, renames of their
 * own files and contended renames of shared ones. Afterwards nothing committed is lost, inode and slice ids
 * never collided, each contended file was renamed by exactly one client, the usage counters match the
 * records, and the changelog is gapless and replays into SQLite to the same state.
 *
 * Needs PostgreSQL on 127.0.0.1:5432 (see postgres.test.ts): skips without it, fails under CI=true.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { LogOp } from '../../src/meta/engine.js';
import { formatVolume, Meta } from '../../src/meta/meta.js';
import type { SliceRef } from '../../src/meta/slices.js';
import { PostgresEngine } from '../../src/meta/postgres.js';
import { SqliteEngine } from '../../src/meta/sqlite.js';
import { ROOT_CTX, ROOT_INO, type SliceRefRec } from '../../src/meta/types.js';
import type { ClientConfig, ClientResult } from '../fixtures/pg-meta-client.js';
import { forEachEngine, postgresEngine } from '../helpers/engines.js';

const PG = postgresEngine();
const PG_URL = PG.base;
const CLIENTS = 4;
const CREATES = 30;
const APPENDS = 15;
const APPEND_BYTES = 1000;
const CONTENDED = 10;
const IN_FLIGHT = 4;
const CHILD_MS_MAX = 60_000;

function runClient(config: ClientConfig): Promise<ClientResult> {
  const script = fileURLToPath(new URL('../fixtures/pg-meta-client.ts', import.meta.url));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, JSON.stringify(config)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: CHILD_MS_MAX,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (code !== 0) reject(new Error(`client ${config.id} exited ${code ?? signal}: ${stderr}`));
      else resolve(JSON.parse(stdout.trim().split('\n').pop()!) as ClientResult);
    });
  });
}

await forEachEngine([PG], () => {
  it(`${CLIENTS} processes on one PostgreSQL volume: concurrent creates, appends and renames lose nothing`, async () => {
    const schema = `ferry_test_${randomBytes(6).toString('hex')}`;
    const url = `${PG_URL}${PG_URL.includes('?') ? '&' : '?'}schema=${schema}`;
    const engine = await PostgresEngine.open(url, { create: true });
    const dir = await mkdtemp(join(tmpdir(), 'ferry-pg-multi-'));
    const replica = new SqliteEngine(join(dir, 'meta.db'), { create: true });
    try {
      await formatVolume(engine, { name: 'multi', storage: 'mem://', blockBytes: 1 << 20, compression: 'none', trashDays: 0 });
      // The whole log is replayed at the end: a registered consumer keeps it from being trimmed before.
      await engine.registerConsumer('test', 0);
      const meta = await Meta.open(engine, { heartbeatMs: 0 });
      const d = await meta.mkdir(ROOT_CTX, ROOT_INO, 'shared', 0o777);
      const appendFile = await meta.create(ROOT_CTX, ROOT_INO, 'appended', 0o644);
      const contended = new Map<number, number>();
      for (let j = 0; j < CONTENDED; j++) contended.set(j, (await meta.create(ROOT_CTX, d.ino, `s-${j}`, 0o644)).ino);

      const results = await Promise.all(
        Array.from({ length: CLIENTS }, (_, id) =>
          runClient({
            url,
            id,
            dir: d.ino,
            appendIno: appendFile.ino,
            creates: CREATES,
            appends: APPENDS,
            appendBytes: APPEND_BYTES,
            contended: CONTENDED,
            inFlight: IN_FLIGHT,
            clients: CLIENTS,
          }),
        ),
      );

      // Creates: every client's files exist (renamed), under distinct inode numbers never used before.
      const allInos = [d.ino, appendFile.ino, ...contended.values(), ...results.flatMap((r) => r.created.map(([, ino]) => ino))];
      assert.equal(new Set(allInos).size, allInos.length, 'inode ids collided');
      const expected = new Map<string, number>();
      for (const r of results) {
        assert.equal(r.created.length, CREATES);
        for (const [name, ino] of r.created) expected.set(name.replace(/^c/, 'm'), ino);
      }

      // Contended renames: each shared file was renamed by exactly one client.
      for (let j = 0; j < CONTENDED; j++) {
        const winners = results.filter((r) => r.won.includes(j)).map((r) => r.id);
        assert.equal(winners.length, 1, `s-${j} renamed by ${winners.length} clients`);
        expected.set(`t-${j}-${winners[0]}`, contended.get(j)!);
      }
      const listing = await meta.readdir(ROOT_CTX, d.ino);
      assert.deepEqual(
        new Map(listing.filter((e) => e.name !== '.' && e.name !== '..').map((e) => [e.name, e.ino])),
        expected,
        'the directory lost or gained entries',
      );
      for (const ino of expected.values()) assert.equal((await meta.getattr(ino)).nlink, 1);

      // Appends: every reference is in the chunk, each client's in its own order, slice ids unique.
      const chunk: SliceRef[] = await meta.readChunk(appendFile.ino, 0);
      assert.equal(chunk.length, CLIENTS * APPENDS, 'appended slice references lost');
      const sliceIds = results.flatMap((r) => r.sliceIds);
      assert.equal(new Set(sliceIds).size, sliceIds.length, 'slice ids collided');
      for (const r of results) {
        assert.deepEqual(
          chunk.filter((ref) => r.sliceIds.includes(ref.id)).map((ref) => ref.id),
          r.sliceIds,
          `client ${r.id}'s appends out of order`,
        );
      }
      assert.equal((await meta.getattr(appendFile.ino)).length, CLIENTS * APPENDS * APPEND_BYTES);

      // Counters agree with the records; the clients' sessions are gone.
      const records: LogOp[] = [];
      const { seq } = await engine.snapshot((op) => {
        records.push(op);
      });
      const inodes = records.filter((r) => r[0] === 'inode');
      const counter = (name: string): unknown => records.find((r) => r[0] === 'counter' && r[2] === name)?.[3];
      assert.equal(counter('inodes'), inodes.length - 2, 'inode counter (root and trash are not counted)');
      const slices = records.filter((r) => r[0] === 'slice').map((r) => r[3] as unknown as SliceRefRec);
      assert.equal(slices.length, sliceIds.length);
      for (const s of slices) assert.equal(s.refs, 1);
      assert.equal(counter('usedBytes'), CLIENTS * APPENDS * APPEND_BYTES);
      assert.deepEqual(
        (await meta.listSessions()).map((s) => s.sid),
        [meta.sid],
      );

      // The changelog is gapless and replays to the same state.
      const log = await engine.readLog(0, 1_000_000);
      assert.deepEqual(
        log.map((e) => e.seq),
        Array.from({ length: seq }, (_, i) => i + 1),
      );
      await replica.applyLog(log);
      const replayed: string[] = [];
      await replica.snapshot((op) => {
        replayed.push(JSON.stringify(op));
      });
      assert.deepEqual(replayed.sort(), records.map((r) => JSON.stringify(r)).sort());
      await meta.close();
    } finally {
      await replica.close();
      await rm(dir, { recursive: true, force: true });
      await engine.close();
      const admin = new pg.Client({ connectionString: PG_URL });
      await admin.connect();
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
    }
  });
});
