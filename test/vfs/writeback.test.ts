/**
 * Write-back (cache/writeback.ts through the SDK): a closed file is staged on local disk and committed at once,
 * its blocks upload in the background, and nothing is lost on the way:
 *
 * - a client reads its own staged blocks before they are uploaded;
 * - a bucket that is down while uploads are pending delays them (retries with backoff) and loses nothing;
 * - a client killed (SIGKILL) between commit and upload leaves the blocks staged: fsck reports them pending,
 *   not lost, status shows them, and the next client to open the cache dir uploads them; then every closed
 *   (or fsynced) file reads back byte for byte from a client without the cache, and fsck is clean.
 *
 * Real engines (SQLite, Redis) and real buckets (file://, s3rver); random data is seeded (the seed is printed).
 */

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { fsckVolume } from '../../src/cli/fsck.js';
import { gcVolume } from '../../src/cli/gc.js';
import { openTools } from '../../src/cli/util.js';
import { writebackStatus } from '../../src/cli/writeback-status.js';
import { CHUNKS_PREFIX } from '../../src/chunk/keys.js';
import { formatVolume, openMetaEngine, openVolume } from '../../src/index.js';
import type { MetaEngine } from '../../src/meta/engine.js';
import { loadFormat } from '../../src/meta/meta.js';
import { listStaging } from '../../src/meta/staging.js';
import { FaultStore } from '../../src/object/faults.js';
import { FileStore } from '../../src/object/file.js';
import { openObjectStore } from '../../src/object/registry.js';
import { listAll, type ObjectStore } from '../../src/object/store.js';
import { mulberry32 } from '../../src/util/random.js';
import { redisEngine } from '../helpers/engines.js';
import { startS3Server, type S3Server } from '../helpers/s3server.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLIENT = fileURLToPath(new URL('../fixtures/writeback-client.ts', import.meta.url));
const BLOCK = 64 << 10;
const SEED = Number(process.env['WRITEBACK_SEED'] ?? Date.now() % 1_000_000);
console.log(`writeback test seed ${SEED} (WRITEBACK_SEED=${SEED} to replay)`);

/** Fast retries and reports, so that tests wait milliseconds, not seconds. */
const QUICK = { retryDelayMsMin: 10, retryDelayMsMax: 100, reportIntervalMs: 20 };

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

function seeded(seed: number): (n: number) => Buffer {
  const random = mulberry32(seed);
  return (n) => {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(random() * 256);
    return b;
  };
}

async function blockObjects(store: ObjectStore): Promise<number> {
  let n = 0;
  for await (const o of listAll(store, CHUNKS_PREFIX)) if (o.size > 0) n++;
  return n;
}

async function fsck(engine: MetaEngine, store: ObjectStore): Promise<{ problems: string[]; pending: string[] }> {
  const format = (await loadFormat(engine))!;
  const r = await fsckVolume(engine, format, store);
  return { problems: r.problems, pending: r.pending };
}

interface Place {
  /** Metadata URL of a fresh volume and the bucket URL it was formatted with. */
  metaUrl: string;
  storage: string;
  dir: string;
  cleanup(): Promise<void>;
}

async function sqliteFilePlace(): Promise<Place> {
  const dir = await mkdtemp(path.join(tmpdir(), 'ferry-wb-'));
  await mkdir(path.join(dir, 'bucket'));
  const storage = 'file://' + path.join(dir, 'bucket');
  const metaUrl = 'sqlite://' + path.join(dir, 'meta.db');
  const eng = await openMetaEngine(metaUrl, { create: true });
  await formatVolume(eng, { name: 'wb', storage, blockBytes: BLOCK, compression: 'none', trashDays: 0 });
  await eng.close();
  return { metaUrl, storage, dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

describe('write-back: reads before upload, and a bucket that is down', () => {
  let place: Place;
  before(async () => {
    place = await sqliteFilePlace();
  });
  after(async () => {
    await place.cleanup();
  });

  it('needs a cache directory: a one-line error without one', async () => {
    await assert.rejects(openVolume(place.metaUrl, { writeback: true }), /write-back needs a local cache directory \(--cache-dir DIR\)/);
    const r = await cli('mount', '--writeback', place.metaUrl, path.join(place.dir, 'mnt'));
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'ferry: --writeback needs --cache-dir DIR: blocks are staged there until they are uploaded (see --help)\n');
  });

  it('commits while the bucket is down, serves its own staged blocks, and uploads everything once the bucket is back', async () => {
    const fault = new FaultStore(new FileStore(path.join(place.dir, 'bucket')), { seed: SEED });
    const cacheDir = path.join(place.dir, 'cache');
    const vol = await openVolume(place.metaUrl, { uid: 0, gid: 0, heartbeatMs: 0, store: fault, cacheDir, writeback: true, writebackOptions: QUICK, memCacheBytes: 0 });
    const bucket = new FileStore(path.join(place.dir, 'bucket'));
    const engine = await openMetaEngine(place.metaUrl);
    const bytes = seeded(SEED);
    const files = new Map<string, Buffer>();
    try {
      fault.setDown(true);
      let blocks = 0;
      for (let i = 0; i < 12; i++) {
        const size = i % 3 === 2 ? BLOCK * 2 + 777 * i : 1 + 997 * i;
        const data = bytes(size);
        await vol.writeFile(`/f${i}`, data);
        files.set(`/f${i}`, data);
        blocks += Math.ceil(size / BLOCK);
      }
      // Every close returned with the bucket down: committed, staged, nothing in the bucket.
      assert.equal(await blockObjects(bucket), 0);
      assert.equal(vol.writeback!.uploadStats().pendingBlocks, blocks);
      // This client reads them from the staging area.
      for (const [name, data] of files) assert.equal(sha(await vol.readFile(name)), sha(data), `${name} read back before upload`);
      // The uploads are being tried and failing: retried with backoff, none given up.
      const t0 = Date.now();
      while (vol.writeback!.uploadStats().uploadFailures < 3) {
        assert.ok(Date.now() - t0 < 10_000, 'uploads are retried');
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.equal(vol.writeback!.uploadStats().pendingBlocks, blocks);
      // Status and fsck see them as pending upload, not lost.
      while ((await listStaging(engine)).reduce((n, r) => n + r.blocks, 0) !== blocks) await new Promise((r) => setTimeout(r, 10));
      const status = await writebackStatus(engine, Date.now());
      assert.equal(status.blocks, blocks);
      assert.equal(status.clients.length, 1);
      assert.equal(status.clients[0]!.dir, cacheDir);
      assert.equal(status.clients[0]!.running, true);
      const pendingCheck = await fsck(engine, bucket);
      assert.deepEqual(pendingCheck.problems, []);
      assert.equal(pendingCheck.pending.length, blocks);

      // gc judges leaks by listing the bucket: a committed block that is not there yet is nothing to it.
      const tools = await openTools(place.metaUrl);
      try {
        const gc = await gcVolume(tools, { delete: true, graceMs: 0, leakAgeMs: 0 });
        assert.equal(gc.leaked, 0);
      } finally {
        await tools.close();
      }

      fault.setDown(false);
      assert.equal(await vol.writeback!.drain(20_000), true, 'every staged block uploads once the bucket is back');
      assert.equal(await blockObjects(bucket), blocks);
      const staged = (await readdir(path.join(cacheDir, vol.info.uuid, 'writeback'))).filter((n) => /^\d/.test(n));
      assert.deepEqual(staged, [], 'uploaded blocks leave the staging area');
    } finally {
      await vol.close();
    }
    // Another client, without the cache, reads every file from the bucket.
    const other = await openVolume(place.metaUrl, { uid: 0, gid: 0, heartbeatMs: 0, memCacheBytes: 0 });
    try {
      for (const [name, data] of files) assert.equal(sha(await other.readFile(name)), sha(data), `${name} from the bucket`);
    } finally {
      await other.close();
    }
    const tools = await openTools(place.metaUrl);
    try {
      const gc = await gcVolume(tools, { delete: true, graceMs: 0, leakAgeMs: 0 });
      assert.equal(gc.leaked, 0, 'uploaded blocks belong to committed slices');
    } finally {
      await tools.close();
    }
    const clean = await fsck(engine, bucket);
    assert.deepEqual(clean, { problems: [], pending: [] });
    assert.deepEqual(await listStaging(engine), [], 'the status record is gone once nothing is pending');
    await engine.close();
    await bucket.close();
  });
});

/** Runs the write-back client until it reports `ready`, then SIGKILLs it; returns what it reported. */
async function killAfterCommit(metaUrl: string, cacheDir: string, files: number, seed: number): Promise<{ written: Map<string, string>; blocks: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CLIENT, JSON.stringify({ url: metaUrl, cacheDir, files, seed })], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const written = new Map<string, string>();
  const blocks = await new Promise<number>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      let nl;
      while ((nl = out.indexOf('\n')) >= 0) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        const [tag, a, b] = line.split(' ');
        if ((tag === 'W' || tag === 'S') && a !== undefined && b !== undefined) written.set(a, b);
        if (tag === 'ready') {
          // Killed between commit and upload: every file above is committed, no block is in the bucket.
          child.kill('SIGKILL');
          resolve(Number(a));
        }
      }
    });
    child.on('exit', (code, sig) => {
      if (sig !== 'SIGKILL') reject(new Error(`the write-back client exited (${code ?? sig}) before it was killed: ${err}`));
    });
  });
  await new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));
  return { written, blocks };
}

/** Runs the CLI from source: its exit code and output. */
function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), ...args], { cwd: ROOT }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

async function crashAndRecover(metaUrl: string, storage: string, cacheDir: string, viaCli = false): Promise<void> {
  const files = 10;
  const { written, blocks } = await killAfterCommit(metaUrl, cacheDir, files, SEED);
  assert.equal(written.size, files + 1);
  const engine = await openMetaEngine(metaUrl);
  const bucket = await openObjectStore(storage);
  try {
    assert.equal(await blockObjects(bucket), 0, 'the kill came before any upload');
    // Pending, not lost: fsck and status name the client that holds them.
    const before = await fsck(engine, bucket);
    assert.deepEqual(before.problems, []);
    assert.equal(before.pending.length, blocks);
    const status = await writebackStatus(engine, Date.now());
    assert.equal(status.blocks, blocks);
    if (viaCli) {
      // What a user sees: status names the host and cache dir; fsck lists the blocks as pending and exits 0.
      const st = await cli('status', metaUrl);
      assert.equal(st.code, 0, st.stderr);
      assert.match(st.stdout, new RegExp(`uploads: +${blocks} block\\(s\\) .* committed but not yet in the bucket, staged by 1 write-back client`));
      assert.ok(st.stdout.includes(` pid `) && st.stdout.includes(cacheDir), st.stdout);
      const fs = await cli('fsck', metaUrl);
      assert.equal(fs.code, 0, fs.stdout + fs.stderr);
      assert.equal(fs.stdout.split('\n').filter((l) => l.startsWith('pending: ')).length, blocks);
      assert.match(fs.stdout, new RegExp(`fsck: volume is clean: .*; ${blocks} block\\(s\\) pending upload by write-back clients`));
    }

    // The next client that opens the cache dir (here without write-back) uploads them.
    const next = await openVolume(metaUrl, { uid: 0, gid: 0, heartbeatMs: 0, cacheDir, writebackOptions: QUICK, writebackCloseWaitMs: 0 });
    try {
      assert.equal(next.writeback?.uploadStats().recovered, blocks);
      assert.equal(await next.writeback.drain(30_000), true);
    } finally {
      await next.close();
    }
    assert.equal(await blockObjects(bucket), blocks);

    // Every closed or fsynced file reads back byte for byte, from a client without the cache.
    const reader = await openVolume(metaUrl, { uid: 0, gid: 0, heartbeatMs: 0, memCacheBytes: 0 });
    try {
      for (const [name, digest] of written) assert.equal(sha(await reader.readFile(name)), digest, name);
    } finally {
      await reader.close();
    }
    assert.deepEqual(await fsck(engine, bucket), { problems: [], pending: [] });
    assert.deepEqual(await listStaging(engine), []);
  } finally {
    await bucket.close();
    await engine.close();
  }
}

describe('write-back: SIGKILL between commit and upload', () => {
  it('sqlite and a file:// bucket: restart uploads, every file reads back, fsck clean', async () => {
    const place = await sqliteFilePlace();
    try {
      await crashAndRecover(place.metaUrl, place.storage, path.join(place.dir, 'cache'), true);
    } finally {
      await place.cleanup();
    }
  });

  describe('redis and an s3rver bucket', () => {
    let s3: S3Server;
    const redis = redisEngine(11);
    before(async () => {
      s3 = await startS3Server();
    });
    after(async () => {
      await s3.stop();
    });

    it('restart uploads, every file reads back, fsck clean', async () => {
      const why = await redis.unreachable();
      if (why !== undefined) {
        if (process.env['CI'] === 'true') assert.fail(why);
        return;
      }
      const { url, cleanup } = await redis.fresh();
      const dir = await mkdtemp(path.join(tmpdir(), 'ferry-wb-'));
      try {
        const storage = s3.url(`wb-${SEED}-${Date.now()}`);
        const eng = await openMetaEngine(url, { create: true });
        await formatVolume(eng, { name: 'wb', storage, blockBytes: BLOCK, compression: 'none', trashDays: 0 });
        await eng.close();
        await crashAndRecover(url, storage, path.join(dir, 'cache'));
      } finally {
        await rm(dir, { recursive: true, force: true });
        await cleanup();
      }
    });
  });
});
