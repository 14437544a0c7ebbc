/**
 * Metadata mirrors (region/mirror.ts), on every engine as primary and as replica:
 *   - with a follower running beside a random workload, the replica's state at any moment equals the
 *     primary's state at the replica's applied sequence (never a state the primary did not have); after the
 *     workload it equals the primary's, `verifyMirror` agrees, and a planted difference is reported;
 *   - a follower behind a trimmed log re-bootstraps by itself and ends equal;
 *   - clients of the replica run in the mirror region, read what the primary wrote, and may not write.
 * The follower killed with SIGKILL, and a follower behind a faulty network, are in mirror-faults.test.ts.
 */

import type { Meta } from '../../src/meta/meta.js';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FsError, formatVolume, openMetaEngine, openVolume, type Volume } from '../../src/index.js';
import type { LogOp, MetaEngine } from '../../src/meta/engine.js';
import { MirrorFollower, verifyMirror } from '../../src/region/mirror.js';
import { FaultStore } from '../../src/object/faults.js';
import { FileStore } from '../../src/object/file.js';
import { addRegion } from '../../src/region/regions.js';
import { setLogRetention } from '../../src/meta/retention.js';
import { mulberry32, randomSeed } from '../../src/util/random.js';
import { forEachEngine, postgresEngine, redisEngine, type SharedEngine } from '../helpers/engines.js';

type Loc = { url: string; cleanup(): Promise<void> };
interface EngineKind {
  name: string;
  fresh(): Promise<Loc>;
}

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const sqlite: EngineKind = {
  name: 'sqlite',
  async fresh() {
    const d = await mkdtemp(join(tmpdir(), 'ferry-mirror-meta-'));
    return { url: `sqlite://${d}/meta.db`, cleanup: () => rm(d, { recursive: true, force: true }) };
  },
};

const SEED = process.env['FERRY_SEED'] !== undefined ? Number(process.env['FERRY_SEED']) : randomSeed();
console.log(`mirror tests: seed ${SEED} (replay with FERRY_SEED=${SEED})`);

/** The primary's logged state after applying its log up to `seq` (the test keeps the whole log). */
async function stateAt(primary: MetaEngine, seq: number): Promise<Map<string, string>> {
  const state = new Map<string, string>();
  for (let after = 0; after < seq; ) {
    const entries = await primary.readLog(after, 1000);
    if (entries.length === 0) break;
    for (const e of entries) {
      if (e.seq > seq) return state;
      for (const op of e.ops) {
        const id = JSON.stringify(op.slice(0, 3));
        if (op[3] === null) state.delete(id);
        else state.set(id, JSON.stringify(op[3]));
      }
      after = e.seq;
    }
  }
  return state;
}

async function snapshotOf(engine: MetaEngine): Promise<{ seq: number; state: Map<string, string> }> {
  const state = new Map<string, string>();
  const { seq } = await engine.snapshot((op: LogOp) => {
    state.set(JSON.stringify(op.slice(0, 3)), JSON.stringify(op[3]));
  });
  return { seq, state };
}

/** A formatted primary with region a (bucket) and mirror region m (replica `replicaUrl`, no bucket). */
async function mirrored(primaryUrl: string, replicaUrl: string): Promise<{ dir: string; engine: MetaEngine }> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-mirror-'));
  dirs.push(dir);
  await mkdir(join(dir, 'a'));
  const engine = await openMetaEngine(primaryUrl, { create: true });
  await formatVolume(engine, { name: 'mirrored', storage: '', regions: { a: { storage: `file://${dir}/a` } }, primary: 'a', blockBytes: 64 << 10, compression: 'none', trashDays: 1 });
  await addRegion(engine, 'm', { replica: replicaUrl });
  // The test's own consumer keeps the whole log, to rebuild the primary's state at any sequence.
  await engine.registerConsumer('test:model', 0);
  return { dir, engine };
}

/** A random workload through the SDK: directories, files written and rewritten, renames, unlinks, attributes. */
async function workload(vol: Volume, ops: number, seed: number, onStep: (i: number) => Promise<void>): Promise<void> {
  const rand = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const names = ['a', 'b', 'c', 'd'];
  for (let i = 0; i < ops; i++) {
    const p = `/${pick(names)}/${pick(names)}`;
    const r = rand();
    try {
      if (r < 0.15) await vol.mkdir(`/${pick(names)}`, { recursive: true });
      else if (r < 0.5) await vol.writeFile(p, Buffer.alloc(Math.floor(rand() * 150_000), i & 0xff));
      else if (r < 0.6) await vol.appendFile(p, `line ${i}\n`);
      else if (r < 0.7) await vol.rename(p, `/${pick(names)}/${pick(names)}`);
      else if (r < 0.8) await vol.unlink(p);
      else if (r < 0.87) await vol.truncate(p, Math.floor(rand() * 50_000));
      else if (r < 0.93) await vol.chmod(p, 0o600 + Math.floor(rand() * 0o100));
      else await vol.setxattr(p, 'user.k', String(i));
    } catch (err) {
      if (!(err instanceof FsError)) throw err;
    }
    await onStep(i);
  }
}

function mirrorSuite(primaryKind: EngineKind, replicaKind: EngineKind): void {
  describe(`mirror: ${primaryKind.name} primary, ${replicaKind.name} replica`, () => {
    it('the replica is always the primary at its applied sequence, ends equal, and verify finds a planted difference', async () => {
      const p = await primaryKind.fresh();
      const r = await replicaKind.fresh();
      const { engine: primary } = await mirrored(p.url, r.url);
      const replica = await openMetaEngine(r.url, { create: true });
      const vol = await openVolume(p.url, { heartbeatMs: 0, memCacheBytes: 0 });
      const follower = new MirrorFollower({ primary, replica, region: 'm', pollMs: 1 });
      const stop = new AbortController();
      try {
        await follower.prepare();
        const running = follower.run(stop.signal);
        const rand = mulberry32(SEED ^ 0x5eed);
        let checks = 0;
        await workload(vol, 160, SEED, async () => {
          if (rand() > 0.08) return;
          // At a random moment: the replica's state equals the primary's at the replica's seq.
          const snap = await snapshotOf(replica);
          const want = await stateAt(primary, snap.seq);
          assert.deepEqual(snap.state, want, `replica at seq ${snap.seq} is not the primary's state at ${snap.seq} (seed ${SEED})`);
          checks++;
        });
        await (vol.vfs.meta as Meta).flushUsage();
        stop.abort();
        await running;
        const s = await follower.once();
        assert.equal(s.applied, await primary.lastSeq());
        assert.ok(checks > 0, 'checked at least once during the workload');
        const v = await verifyMirror(primary, replica);
        assert.deepEqual(v.differences, []);
        assert.equal(v.replicaSeq, v.seq);

        // A planted difference: verify reports it and exits non-zero (the CLI's test) — here, its lines.
        await replica.txn(async (tx) => {
          const [key, rec] = (await tx.scan<Record<string, unknown>>('inode', '', { limit: 1 }))[0]!;
          tx.put('inode', '', key, { ...rec, mode: 0o1777 });
        });
        const planted = await verifyMirror(primary, replica);
        assert.ok(planted.differences.some((d) => /^differs: \["inode",""/.test(d)), planted.differences.join('\n'));
        // The planting was a commit of the replica's own: it is also ahead of every state the primary had.
        assert.ok(planted.differences.some((d) => /past the primary's newest/.test(d)), planted.differences.join('\n'));
      } finally {
        stop.abort();
        await vol.close();
        await replica.close();
        await primary.close();
        await p.cleanup();
        await r.cleanup();
      }
    });

    it('a follower behind the retention bound re-bootstraps by itself and ends equal', async () => {
      const p = await primaryKind.fresh();
      const r = await replicaKind.fresh();
      const { engine: primary } = await mirrored(p.url, r.url);
      await primary.removeConsumer('test:model');
      const replica = await openMetaEngine(r.url, { create: true });
      const vol = await openVolume(p.url, { heartbeatMs: 0, memCacheBytes: 0 });
      try {
        const follower = new MirrorFollower({ primary, replica, region: 'm' });
        await follower.once();
        assert.equal(follower.stats.bootstraps, 1, 'an empty replica is bootstrapped');
        // The follower stops; the primary moves on and trims past the follower's position (retention: 20 entries).
        await setLogRetention(primary, { entriesMax: 20 });
        for (let i = 0; i < 60; i++) await vol.writeFile(`/f${i}`, `x${i}`);
        await (vol.vfs.meta as Meta).flushUsage();
        while ((await primary.pruneLog()).more);
        const { floor } = await primary.logBounds();
        assert.ok(floor > follower.stats.applied, `the log was trimmed past the follower (floor ${floor}, follower ${follower.stats.applied})`);
        const again = new MirrorFollower({ primary, replica, region: 'm' });
        await again.once();
        assert.equal(again.stats.bootstraps, 1, 're-bootstrapped');
        assert.deepEqual((await verifyMirror(primary, replica)).differences, []);
      } finally {
        await vol.close();
        await replica.close();
        await primary.close();
        await p.cleanup();
        await r.cleanup();
      }
    });
  });
}

describe('mirror clients', () => {
  it("run in the mirror region, read the primary's files once applied, may not write, and the mount's reads keep close-to-open", async () => {
    const p = await sqlite.fresh();
    const r = await sqlite.fresh();
    const { engine: primary } = await mirrored(p.url, r.url);
    const replica = await openMetaEngine(r.url, { create: true });
    const writer = await openVolume(p.url, { heartbeatMs: 0 });
    const follower = new MirrorFollower({ primary, replica, region: 'm' });
    try {
      const data = Buffer.alloc(300_000);
      for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i, i);
      await writer.mkdir('/d');
      await writer.writeFile('/d/f', data);
      await follower.once();
      const reader = await openVolume(r.url, { heartbeatMs: 0 });
      try {
        assert.equal((reader.vfs.meta as Meta).sid > 0, true);
        assert.deepEqual(await reader.readFile('/d/f'), data, 'read byte for byte through the primary bucket');
        assert.deepEqual(await reader.readdir('/d'), ['f']);
        await assert.rejects(reader.writeFile('/d/g', 'no'), (e: unknown) => e instanceof FsError && e.code === 'EROFS' && /primary region 'a'/.test(e.message));
        await assert.rejects(reader.mkdir('/x'), (e: unknown) => e instanceof FsError && e.code === 'EROFS');
        await assert.rejects(reader.unlink('/d/f'), (e: unknown) => e instanceof FsError && e.code === 'EROFS');
        // A change on the primary shows once applied, at the next open.
        await writer.writeFile('/d/f', 'changed');
        assert.deepEqual(await reader.readFile('/d/f'), data, 'not applied yet: the replica is a prefix of the past');
        await follower.once();
        assert.equal(await reader.readFile('/d/f', 'utf8'), 'changed');
        await assert.rejects(openVolume(r.url, { region: 'a' }), /replica of region 'm'/);
      } finally {
        await reader.close();
      }
    } finally {
      await writer.close();
      await replica.close();
      await primary.close();
      await p.cleanup();
      await r.cleanup();
    }
  });
});

describe('metadata-only mirror data', () => {
  it("reads through the primary's bucket into its disk cache and keeps serving cached blocks while that bucket is down", async () => {
    const p = await sqlite.fresh();
    const r = await sqlite.fresh();
    const { engine: primary, dir } = await mirrored(p.url, r.url);
    const replica = await openMetaEngine(r.url, { create: true });
    const writer = await openVolume(p.url, { heartbeatMs: 0 });
    const follower = new MirrorFollower({ primary, replica, region: 'm' });
    const cacheDir = join(dir, 'cache-m');
    try {
      const data = Buffer.alloc(700_000);
      for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i * 7, i);
      await writer.writeFile('/f', data);
      await follower.once();
      const bucket = new FaultStore(new FileStore(join(dir, 'a')), { seed: 1 });
      const open = () => openVolume(r.url, { heartbeatMs: 0, memCacheBytes: 0, cacheDir, stores: { a: bucket } });
      const first = await open();
      try {
        assert.deepEqual(await first.readFile('/f'), data, "first read from the primary's bucket");
      } finally {
        await first.close();
      }
      bucket.setDown(true);
      const second = await open();
      try {
        assert.deepEqual(await second.readFile('/f'), data, "the primary's bucket is down: the disk cache serves every block");
        await writer.writeFile('/g', 'not cached anywhere');
        await follower.once();
        await assert.rejects(second.readFile('/g'), (e: unknown) => e instanceof FsError && e.code === 'EIO', 'an uncached block fails cleanly, it is not invented');
      } finally {
        await second.close();
      }
    } finally {
      await writer.close();
      await replica.close();
      await primary.close();
      await p.cleanup();
      await r.cleanup();
    }
  });
});

mirrorSuite(sqlite, sqlite);
await forEachEngine([redisEngine(14), postgresEngine()], (engine: SharedEngine) => {
  // Each shared engine once as primary (replica SQLite) and once as replica (primary SQLite); Redis -> PostgreSQL too.
  mirrorSuite(engine, sqlite);
  mirrorSuite(sqlite, engine);
  if (engine.name === 'redis') mirrorSuite(engine, postgresEngine());
});
