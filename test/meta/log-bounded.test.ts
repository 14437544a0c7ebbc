/**
 * The changelog stays bounded on every engine while consumers lag (issue 11's demonstration).
 *
 * A Meta workload of FERRY_LOG_OPS operations (default LOG_OPS_DEFAULT; the issue's run is 200,000) runs on
 * the primary engine with the retention bound set to a tenth of that many entries. Two mirror-like
 * consumers, each replaying the log into a SQLite replica, are registered before the first commit:
 *
 *   ops        0 ........ 30% ....... 35% ....... 80% ........ 100%
 *   near       follows    pauses      catches up and follows
 *   far        follows    pauses ..................  resumes: its position is behind the floor, so readLog
 *                                                    throws LogTrimmedError and it re-bootstraps (snapshot,
 *                                                    restore, the log after the snapshot)
 *
 * After every batch the log's length (last - floor) is sampled. Nothing trims during the run but the engine
 * itself: the background prune started by every LOG_PRUNE_EVERY_ENTRIES-th commit. Asserted: while both
 * follow, the log holds about what they have not read (plus what accumulates until the next prune); while one
 * lags, never much more than the retention bound; at the end (after a prune such as gc's) nothing; both
 * replicas equal the primary.
 */

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isFsError } from '../../src/errors.js';
import { LOG_PRUNE_EVERY_ENTRIES } from '../../src/meta/core.js';
import { LogTrimmedError, type LogOp, type MetaEngine } from '../../src/meta/engine.js';
import { formatVolume, Meta } from '../../src/meta/meta.js';
import { PostgresEngine } from '../../src/meta/postgres.js';
import { openRedisEngine } from '../../src/meta/redis.js';
import { setLogRetention } from '../../src/meta/retention.js';
import { SqliteEngine } from '../../src/meta/sqlite.js';
import { ROOT_CTX, ROOT_INO } from '../../src/meta/types.js';
import { mulberry32 } from '../../src/util/random.js';
import { forEachEngine, postgresEngine, redisEngine } from '../helpers/engines.js';
import { collect, iterate } from './engine-conformance.js';

/** Per engine, under about 20 s on two shared cores (PostgreSQL is the slowest). */
const LOG_OPS_DEFAULT = 4000;
const OPS = Number(process.env['FERRY_LOG_OPS'] ?? LOG_OPS_DEFAULT);
/** Operations in flight (each worker its own directory, so they do not fail each other's). */
const WORKERS = 8;
/** Operations between two samples of the log's length (and steps of the consumers). */
const BATCH = 200;
const RETENTION_ENTRIES = Math.max(1500, Math.round(OPS / 10));
/** What the log may hold beyond its bound: the entries until the next background prune, one skipped while another ran, a batch. */
const SLACK = 2 * LOG_PRUNE_EVERY_ENTRIES + BATCH;
const READ_PAGE = 1000;

if (!Number.isSafeInteger(OPS) || OPS < 1000) throw new Error(`FERRY_LOG_OPS must be an integer >= 1000, got ${process.env['FERRY_LOG_OPS']}`);

/** A metadata mirror in miniature: replays the primary's log into a replica, re-bootstrapping when left behind. */
class Mirror {
  position = 0;
  rebootstraps = 0;
  readonly name: string;
  private readonly primary: MetaEngine;
  readonly replica: SqliteEngine;

  constructor(name: string, primary: MetaEngine, replica: SqliteEngine) {
    this.name = name;
    this.primary = primary;
    this.replica = replica;
  }

  async catchUp(): Promise<void> {
    for (;;) {
      let entries;
      try {
        entries = await this.primary.readLog(this.position, READ_PAGE);
      } catch (err) {
        if (!(err instanceof LogTrimmedError)) throw err;
        await this.rebootstrap();
        continue;
      }
      if (entries.length === 0) break;
      await this.replica.applyLog(entries);
      this.position = entries[entries.length - 1]!.seq;
      await this.primary.advanceConsumer(this.name, this.position);
    }
  }

  /** Register first (nothing after the floor is trimmed from now on), then the snapshot, then its seq. */
  private async rebootstrap(): Promise<void> {
    this.rebootstraps++;
    await this.primary.registerConsumer(this.name, 0);
    const records: LogOp[] = [];
    const { seq } = await this.primary.snapshot((op) => {
      records.push(op);
    });
    await this.replica.restore(iterate(records), seq);
    this.position = seq;
    await this.primary.advanceConsumer(this.name, seq);
  }
}

/** A seeded mix of creates, writes, renames, unlinks, xattrs and mkdirs in a directory of its own. */
class Worker {
  private readonly meta: Meta;
  private readonly w: number;
  private readonly random: () => number;
  private home: number | undefined;
  private readonly dirs: number[] = [];
  private readonly files: Array<{ dir: number; name: string; ino: number }> = [];
  private n = 0;

  constructor(meta: Meta, w: number) {
    this.meta = meta;
    this.w = w;
    this.random = mulberry32(0x10c + w);
  }

  async run(ops: number, done: () => void): Promise<void> {
    const { meta, files, dirs } = this;
    const int = (k: number): number => Math.floor(this.random() * k);
    if (this.home === undefined) {
      this.home = (await meta.mkdir(ROOT_CTX, ROOT_INO, `w${this.w}`, 0o755)).ino;
      dirs.push(this.home);
    }
    for (let i = 0; i < ops; i++) {
      const choice = int(20);
      try {
        if (choice < 6 || files.length < 5) {
          const dir = dirs[int(dirs.length)]!;
          const name = `f${this.n++}`;
          files.push({ dir, name, ino: (await meta.create(ROOT_CTX, dir, name, 0o644)).ino });
        } else if (choice < 10) {
          const f = files[int(files.length)]!;
          const len = 1 + int(1 << 16);
          await meta.write(f.ino, [{ index: 0, ref: { pos: int(1 << 20), id: await meta.newSliceId(), size: len, off: 0, len } }]);
        } else if (choice < 13) {
          const f = files[int(files.length)]!;
          const to = dirs[int(dirs.length)]!;
          const name = `f${this.n++}`;
          await meta.rename(ROOT_CTX, f.dir, f.name, to, name);
          f.dir = to;
          f.name = name;
        } else if (choice < 16) {
          const [f] = files.splice(int(files.length), 1);
          await meta.unlink(ROOT_CTX, f!.dir, f!.name);
        } else if (choice < 19 || dirs.length >= 20) {
          await meta.setxattr(ROOT_CTX, files[int(files.length)]!.ino, `user.k${int(3)}`, Buffer.from(`v${i}`));
        } else {
          dirs.push((await meta.mkdir(ROOT_CTX, this.home, `d${this.n++}`, 0o755)).ino);
        }
      } catch (err) {
        if (!isFsError(err)) throw err;
      }
      done();
    }
  }
}

interface Run {
  seqs: number;
  maxFollowing: number;
  maxLagging: number;
  final: number;
  rebootstraps: { near: number; far: number };
  seconds: number;
}

async function demonstrate(primary: MetaEngine, dir: string): Promise<Run> {
  const started = Date.now();
  const near = new Mirror('mirror:near', primary, new SqliteEngine(join(dir, 'near.db'), { create: true }));
  const far = new Mirror('mirror:far', primary, new SqliteEngine(join(dir, 'far.db'), { create: true }));
  try {
    await primary.registerConsumer(near.name, 0);
    await primary.registerConsumer(far.name, 0);
    await formatVolume(primary, { name: 'bounded', storage: 'mem://bounded', blockBytes: 4 << 20, compression: 'none', trashDays: 0 });
    await setLogRetention(primary, { entriesMax: RETENTION_ENTRIES });
    const meta = await Meta.open(primary, { heartbeatMs: 0, lookupCacheMs: 0 });
    let finished = 0;
    let maxFollowing = 0;
    let maxLagging = 0;
    try {
      // Batches: every worker does its part of BATCH operations; then the log is sampled and consumers step.
      const workers = Array.from({ length: WORKERS }, (_, w) => new Worker(meta, w));
      const perWorker = Math.ceil(BATCH / WORKERS);
      while (finished < OPS) {
        const share = Math.min(perWorker, Math.ceil((OPS - finished) / WORKERS));
        await Promise.all(workers.map((w) => w.run(share, () => finished++)));
        const at = finished / OPS;
        const nearFollows = at < 0.3 || at >= 0.35;
        const farFollows = at < 0.3 || at >= 0.8;
        if (nearFollows) await near.catchUp();
        if (farFollows) await far.catchUp();
        const { floor, last } = await primary.logBounds();
        // Before anyone lagged; from then on the log may hold up to the bound until the prunes after the
        // consumers caught up drain it.
        if (at < 0.3) maxFollowing = Math.max(maxFollowing, last - floor);
        else maxLagging = Math.max(maxLagging, last - floor);
      }
    } finally {
      await meta.close();
    }
    await near.catchUp();
    await far.catchUp();
    // What gc or a client's heartbeat does now and then: both consumers are at the end, nothing is needed.
    while ((await primary.pruneLog()).more);
    const { floor, last } = await primary.logBounds();
    const want = await collect(primary);
    assert.deepEqual(await collect(near.replica), want, 'the near replica equals the primary');
    assert.deepEqual(await collect(far.replica), want, 'the far replica equals the primary');
    return {
      seqs: last,
      maxFollowing,
      maxLagging,
      final: last - floor,
      rebootstraps: { near: near.rebootstraps, far: far.rebootstraps },
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    await near.replica.close();
    await far.replica.close();
  }
}

function check(name: string, r: Run, diagnostic: (msg: string) => void): void {
  const line =
    `${name}: ${OPS} ops, ${r.seqs} entries; log length max ${r.maxFollowing} while the consumers follow, ` +
    `${r.maxLagging} from when one lags (bound ${RETENTION_ENTRIES}), ${r.final} at the end; re-bootstraps near ${r.rebootstraps.near}, ` +
    `far ${r.rebootstraps.far}; ${r.seconds.toFixed(1)} s`;
  diagnostic(line);
  assert.ok(r.seqs >= OPS * 0.8, `only ${r.seqs} entries for ${OPS} operations`);
  assert.ok(r.maxFollowing <= LOG_PRUNE_EVERY_ENTRIES + SLACK, `the log grew to ${r.maxFollowing} entries while both consumers followed`);
  assert.ok(r.maxLagging <= RETENTION_ENTRIES + SLACK, `the log grew to ${r.maxLagging} entries, past the bound ${RETENTION_ENTRIES} + ${SLACK}`);
  assert.ok(r.maxLagging >= RETENTION_ENTRIES / 2, `the lagging consumer kept only ${r.maxLagging} entries: did the log keep what it needed?`);
  assert.equal(r.final, 0, 'both consumers caught up: nothing left to keep');
  assert.equal(r.rebootstraps.near, 0, 'the near consumer never fell behind the bound');
  assert.ok(r.rebootstraps.far >= 1, 'the far consumer fell behind the bound and re-bootstrapped');
}

await forEachEngine([redisEngine(14), postgresEngine()], (shared) => {
  describe(`the changelog stays bounded under ${OPS} metadata operations while consumers lag`, () => {
    it(shared.name, async (t) => {
      const dir = await mkdtemp(join(tmpdir(), 'ferry-logbound-'));
      const { url, cleanup } = await shared.fresh();
      const primary = shared.name === 'redis' ? await openRedisEngine(url) : await PostgresEngine.open(url, { create: true });
      try {
        check(shared.name, await demonstrate(primary, dir), (m) => t.diagnostic(m));
      } finally {
        await primary.close();
        await cleanup();
        await rm(dir, { recursive: true, force: true });
      }
    });
  });
});

// After the servers were checked: the SQLite case blocks the event loop, which would starve their checks.
describe(`the changelog stays bounded under ${OPS} metadata operations while consumers lag`, () => {
  it('sqlite', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'ferry-logbound-'));
    const primary = new SqliteEngine(join(dir, 'primary.db'), { create: true });
    try {
      check('sqlite', await demonstrate(primary, dir), (m) => t.diagnostic(m));
    } finally {
      await primary.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
