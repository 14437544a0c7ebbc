/**
 * `npm start`: the two-region lab (DESIGN §12) on the embedded defaults, no servers. In a fresh temporary
 * directory: SQLite metadata shared by both regions, and regions `a` (primary) and `b`, each with a bucket
 * directory.
 *
 *   writer in a ──blocks──▶ bucket-a ──ferry replicate──▶ bucket-b ◀──reads── reader in b
 *        └──────────── metadata (SQLite) ───────────────────────────────┘
 *
 * It writes a small dataset in a, reads it in b before replication (every block falls back to the home bucket
 * a), replicates, reads it again (every block from b's own bucket), then keeps a writer committing in a while
 * the replicator follows the changelog and a reader in b reads each new file at once — printing the lag and
 * which reads fell back to the home bucket. Finally a's bucket "goes down" and b still reads everything, and
 * fsck and gc run over both buckets. Everything is verified by sha256.
 *
 * A third region, c, is a metadata-only mirror (DESIGN §2, §7): its own SQLite replica, kept current by a
 * follower while the writer in a commits (the lab prints the lag from commit to applied in c), and no bucket
 * (c reads a's). A reader in c lists and reads the dataset from its replica, and goes on doing so while the
 * primary's metadata file is gone. Then c runs a cache group of two nodes: three readers read the dataset
 * through it, and the egress counters show what crossed from a to c (each block once).
 *
 * FERRY_LAB_HOLD=1 holds the lab in its steady phase for watching it (`ferry status`, `ferry dashboard`): when
 * the phase starts it prints a line `  hold        META-URL: ...`, and the writer in a goes on committing (the
 * replicator and c's follower following) until a line or end of file arrives on stdin (at most HOLD_MS_MAX),
 * then the lab carries on as usual with the files written meanwhile. Without it the lab prints what it always
 * did and never reads stdin.
 */

import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatVolume, openMetaEngine, openVolume, type Volume } from '../index.js';
import { fsckSummary, fsckVolume } from '../cli/fsck.js';
import { gcVolume } from '../cli/gc.js';
import { humanBytes, openTools } from '../cli/util.js';
import { FaultStore } from '../object/faults.js';
import { FileStore } from '../object/file.js';
import { RetryStore } from '../object/retry.js';
import type { RegionPlacement } from '../region/placement.js';
import type { BlockReader } from '../cache/reader.js';
import { replicationStatus, Replicator } from '../region/replicate.js';
import { MirrorFollower } from '../region/mirror.js';
import { addRegion } from '../region/regions.js';
import { rename } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { egressTotals } from '../meta/egress.js';
import { loadFormat } from '../meta/format.js';
import { registerServiceAddress } from '../meta/service.js';
import { promoteReplica } from '../region/promote.js';
import { MetaService } from '../service/server.js';
import { serviceToken } from '../service/token.js';

const BINARY_BYTES = 3 << 20;
/** Files the steady writer commits, and the pause between them. */
const STEADY_FILES = 24;
const STEADY_PAUSE_MS = 120;
/** How many commits later each steady file is read again (by then it has been replicated). */
const STEADY_LAG_FILES = 5;
/** The longest FERRY_LAB_HOLD keeps the steady phase going without an answer on stdin. */
const HOLD_MS_MAX = 300_000;

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

/** Deterministic pseudo-random bytes (xorshift32), so the demo's checksum is the same on every run. */
function pseudoRandom(n: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i + 4 <= n; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.writeUInt32LE(x, i);
  }
  for (let i = n - (n % 4); i < n; i++) out[i] = i & 0xff;
  return out;
}

async function countFiles(dir: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) n++;
  return n;
}

/** The read-order counters of a client (the block source of its ChunkStore's reader). */
function placementOf(vol: Volume): RegionPlacement {
  return (vol.vfs.chunks.reads as BlockReader).source as RegionPlacement;
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function readAll(vol: Volume, expected: Record<string, string>): Promise<{ failures: string[]; bytes: number }> {
  const failures: string[] = [];
  let bytes = 0;
  for (const [p, sum] of Object.entries(expected)) {
    const data = await vol.readFile(p);
    bytes += data.length;
    if (sha256(data) !== sum) failures.push(p);
  }
  return { failures, bytes };
}

/**
 * Resolves at the first line or end of stdin, or after `ms`; stdin is let go then, so that it keeps nothing
 * running.
 */
function stdinOrTimeout(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      process.stdin.off('data', done).off('end', done).off('error', done);
      process.stdin.pause();
      process.stdin.destroy();
      resolve();
    };
    const timer = setTimeout(done, ms);
    process.stdin.on('data', done).on('end', done).on('error', done);
    process.stdin.resume();
  });
}

async function main(): Promise<void> {
  const hold = process.env['FERRY_LAB_HOLD'] === '1';
  const started = Date.now();
  const dir = await mkdtemp(path.join(tmpdir(), 'ferry-lab-'));
  const dbFile = path.join(dir, 'meta.db');
  const bucketA = path.join(dir, 'bucket-a');
  const bucketB = path.join(dir, 'bucket-b');
  const metaUrl = `sqlite://${dbFile}`;
  await mkdir(bucketA);
  await mkdir(bucketB);
  const out: string[] = [];
  const say = (line = ''): void => {
    out.push(line);
    process.stdout.write(line + '\n');
  };

  // 1. Format: two regions, a the primary; blocks of 1 MiB compressed with zstd when that helps.
  const engine = await openMetaEngine(metaUrl, { create: true });
  const format = await formatVolume(engine, {
    name: 'lab',
    storage: '',
    regions: { a: { storage: `file://${bucketA}` }, b: { storage: `file://${bucketB}` } },
    primary: 'a',
    blockBytes: 1 << 20,
    compression: 'zstd',
    trashDays: 0,
  });
  const replicaFile = path.join(dir, 'replica-c.db');
  const replicaUrl = `sqlite://${replicaFile}`;
  await addRegion(engine, 'c', { replica: replicaUrl });
  await engine.close();
  say(`Ferry two-region lab: volume '${format.name}' (${format.uuid})`);
  say();
  say(`  metadata    ${dbFile}  (shared by both regions)`);
  say(`  region a    ${bucketA}  (primary)`);
  say(`  region b    ${bucketB}`);
  say(`  region c    ${replicaFile}  (metadata-only mirror: its own replica, a's bucket)`);

  // The follower of c's replica: bootstraps it, then follows the primary's changelog until the lab ends.
  const mirrorPrimary = await openMetaEngine(metaUrl);
  const mirrorReplica = await openMetaEngine(replicaUrl, { create: true });
  const mirror = new MirrorFollower({ primary: mirrorPrimary, replica: mirrorReplica, region: 'c', pollMs: 1 });
  await mirror.prepare();
  const mirrorStop = new AbortController();
  const mirroring = mirror.run(mirrorStop.signal);

  // 2. A writer in region a.
  const va = await openVolume(metaUrl, { region: 'a' });
  const text: Record<string, string> = {
    '/docs/readme.txt': 'Ferry keeps file data as immutable, checksummed blocks in a bucket per region\nand everything else in one metadata engine.\n',
    '/docs/notes/todo.txt': '- write in region a\n- read in region b\n- replicate\n',
    '/data/config.json': JSON.stringify({ model: 'tiny', epochs: 3, lr: 0.001 }, null, 2) + '\n',
  };
  await va.mkdir('/docs/notes', { recursive: true });
  await va.mkdir('/data', { recursive: true });
  await va.mkdir('/logs');
  for (const [p, content] of Object.entries(text)) await va.writeFile(p, content);
  let log = '';
  for (let i = 1; i <= 100; i++) {
    const line = `step ${i}: loss ${(1 / i).toFixed(4)}\n`;
    await va.appendFile('/logs/train.log', line);
    log += line;
  }
  const blob = pseudoRandom(BINARY_BYTES, 2024);
  const blobSum = sha256(blob);
  await va.writeFile('/data/weights.bin', blob);
  await va.symlink('/data/weights.bin', '/latest.bin');
  await va.link('/docs/readme.txt', '/readme-link.txt');
  await va.vfs.drain();
  const expected: Record<string, string> = { ...Object.fromEntries(Object.entries(text).map(([p, c]) => [p, sha256(c)])) };
  expected['/logs/train.log'] = sha256(log);
  expected['/data/weights.bin'] = blobSum;
  expected['/latest.bin'] = blobSum;
  expected['/readme-link.txt'] = sha256(text['/docs/readme.txt']!);
  say(`  wrote in a  4 directories, 5 files (${humanBytes(BINARY_BYTES)} binary, sha256 ${blobSum.substring(0, 16)}...), a symlink, a hard link,`);
  say(`              100 appends to /logs/train.log; bucket a holds ${await countFiles(bucketA)} objects, bucket b ${await countFiles(bucketB)}`);

  const tools = await openTools(metaUrl);
  const lag = async (): Promise<{ seconds: number; blocks: number; bytes: number }> => {
    const [s] = await replicationStatus(tools.meta);
    return { seconds: s?.lagSeconds ?? 0, blocks: s?.backlog.blocks ?? 0, bytes: s?.backlog.bytes ?? 0 };
  };
  const failures: string[] = [];
  const expectedC: Record<string, string> = { ...expected };
  try {
    // 3. A reader in region b before replication: every block comes from its home bucket, a.
    const vb1 = await openVolume(metaUrl, { region: 'b', memCacheBytes: 0 });
    const r1 = await readAll(vb1, expected);
    failures.push(...r1.failures.map((p) => `${p} (b, before replication)`));
    const p1 = placementOf(vb1).stats;
    await vb1.close();
    say(`  read in b   ${Object.keys(expected).length} files (${humanBytes(r1.bytes)}) before replication: ${r1.failures.length === 0 ? 'all match' : 'MISMATCH'};` +
      ` ${p1.reads['a'] ?? 0} blocks from home bucket a, ${p1.reads['b'] ?? 0} from b`);

    // 4. Replicate: a -> b, every copy verified.
    // Blocks whose slice records do not yet name a copy in b.
    const missingInB = async (): Promise<number> => {
      let n = 0;
      for (const s of (await tools.meta.listSlices()).values()) if (!(s.copies ?? []).includes('b')) n += Math.ceil(s.size / format.blockBytes);
      return n;
    };
    const before = await missingInB();
    const stores = (): Map<string, FileStore> => new Map([['a', new FileStore(bucketA)], ['b', new FileStore(bucketB)]]);
    const rep = new Replicator({ meta: tools.meta, stores: stores() });
    const t0 = Date.now();
    const r = await rep.runOnce();
    say(`  replicate   ${r.slicesCopied} slices, ${r.blocksCopied} blocks (${humanBytes(rep.stats.copiedBytes['a>b'] ?? 0)} a -> b) in ${Date.now() - t0} ms, every copy read back and compared;` +
      ` ${r.pending} pending`);
    const after = await lag();
    say(`              backlog ${before} blocks before, ${await missingInB()} after; lag ${after.seconds.toFixed(1)} s; bucket b holds ${await countFiles(bucketB)} objects`);

    // 5. A new reader in b: everything from its own bucket.
    const vb2 = await openVolume(metaUrl, { region: 'b', memCacheBytes: 0 });
    const r2 = await readAll(vb2, expected);
    failures.push(...r2.failures.map((p) => `${p} (b, after replication)`));
    const p2 = placementOf(vb2).stats;
    await vb2.close();
    say(`  read in b   again after replication: ${r2.failures.length === 0 ? 'all match' : 'MISMATCH'}; ${p2.reads['b'] ?? 0} blocks from b, ${p2.reads['a'] ?? 0} from a`);

    // 6. Steady state: a writer commits in a while the replicator follows the changelog and a reader in b
    //    reads each new file as soon as it is committed.
    const lags: number[] = [];
    const mirrorLags: number[] = [];
    const follower = new Replicator({
      meta: tools.meta,
      stores: stores(),
      onEvent: (e) => {
        if (e.type === 'page' && e.slices > 0) lags.push(e.lagMs);
      },
    });
    const stop = new AbortController();
    const following = follower.run({ signal: stop.signal, pollMs: 20 });
    const vb3 = await openVolume(metaUrl, { region: 'b', memCacheBytes: 0 });
    let steadyFallbacks = 0;
    let laterOwn = 0;
    let laterHome = 0;
    const fellBack: string[] = [];
    const written: Array<{ p: string; sum: string }> = [];
    await va.mkdir('/steady');
    let holding = false;
    if (hold) {
      holding = true;
      say(`  hold        ${metaUrl}: replicating and mirroring while the writer in a commits; a line or end of file on stdin goes on`);
      void stdinOrTimeout(HOLD_MS_MAX).then(() => {
        holding = false;
      });
    }
    for (let i = 0; i < STEADY_FILES || holding; i++) {
      const data = pseudoRandom(200_000 + (i % STEADY_FILES) * 10_000, 7000 + i);
      const p = `/steady/part-${String(i).padStart(3, '0')}.bin`;
      await va.writeFile(p, data);
      const committedAt = Date.now();
      const seq = va.vfs.meta.committedSeq;
      written.push({ p, sum: sha256(data) });
      // Commit in a to applied in c's replica.
      while (mirror.stats.applied < seq && Date.now() - committedAt < 5000) await new Promise((resolve) => setTimeout(resolve, 1));
      mirrorLags.push(Date.now() - committedAt);
      // Read at once in b: the copy may not be there yet, then the home bucket serves it.
      const pl = placementOf(vb3).stats;
      const homeBefore = pl.reads['a'] ?? 0;
      const got = await vb3.readFile(p);
      if (sha256(got) !== sha256(data)) failures.push(`${p} (b, steady)`);
      const fromA = (pl.reads['a'] ?? 0) - homeBefore;
      if (fromA > 0) {
        steadyFallbacks++;
        if (fellBack.length < 3) fellBack.push(path.basename(p));
      }
      // A file committed STEADY_LAG_FILES earlier has been replicated by now: b's own bucket serves it.
      const older = written[i - STEADY_LAG_FILES];
      if (older !== undefined) {
        const a0 = pl.reads['a'] ?? 0;
        const b0 = pl.reads['b'] ?? 0;
        if (sha256(await vb3.readFile(older.p)) !== older.sum) failures.push(`${older.p} (b, steady, later)`);
        laterOwn += (pl.reads['b'] ?? 0) - b0;
        laterHome += (pl.reads['a'] ?? 0) - a0;
      }
      await new Promise((resolve) => setTimeout(resolve, STEADY_PAUSE_MS));
    }
    // Let the follower catch up, then stop it.
    for (let i = 0; i < 100 && (await lag()).blocks > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    stop.abort();
    await following;
    await vb3.close();
    lags.sort((x, y) => x - y);
    say(`  steady      ${written.length} files committed in a every ${STEADY_PAUSE_MS} ms while the replicator follows the changelog;`);
    say(`              read in b at once: ${steadyFallbacks} of ${written.length} fell back to home bucket a` +
      `${fellBack.length > 0 ? ` (${fellBack.join(', ')}${steadyFallbacks > fellBack.length ? ', ...' : ''})` : ''} (not replicated yet)`);
    say(`              read in b ${STEADY_LAG_FILES} commits later: ${laterOwn} blocks from b's own bucket, ${laterHome} from a`);
    say(`              replication lag (commit to verified copy) p50 ${percentile(lags, 50).toFixed(0)} ms, max ${percentile(lags, 100).toFixed(0)} ms; backlog at the end ${(await lag()).blocks} blocks`);
    mirrorLags.sort((x, y) => x - y);
    say(`              mirror lag (commit in a to applied in c's replica) p50 ${percentile(mirrorLags, 50).toFixed(0)} ms, max ${percentile(mirrorLags, 100).toFixed(0)} ms`);
    for (const w of written) expectedC[w.p] = w.sum;

    // 7. Region a's bucket goes down: b reads everything from its own copies.
    const down = new FaultStore(new FileStore(bucketA), { seed: 1 });
    down.setDown(true);
    const vb4 = await openVolume(metaUrl, { region: 'b', memCacheBytes: 0, stores: { a: new RetryStore(down, { attemptsMax: 1 }) } });
    const r4 = await readAll(vb4, expected);
    failures.push(...r4.failures.map((p) => `${p} (b, a down)`));
    await vb4.close();
    say(`  a down      bucket a refuses every call; b still reads all ${Object.keys(expected).length} files: ${r4.failures.length === 0 ? 'all match' : 'MISMATCH'}`);

    // 8. fsck (every copy verified: the home bucket's and b's replicas) and gc (released slices deleted in both
    //    buckets).
    await va.close();
    const fsck = await fsckVolume(tools.engine, tools.format, tools.store, { otherStores: new Map([['b', new FileStore(bucketB)]]) });
    const objectsBefore = (await countFiles(bucketA)) + (await countFiles(bucketB));
    const gc = await gcVolume(tools, { graceMs: 0, leakAgeMs: 3_600_000, otherStores: new Map([['b', new FileStore(bucketB)]]) });
    const objects = (await countFiles(bucketA)) + (await countFiles(bucketB));
    say(`  fsck        ${fsckSummary(fsck).replace(/^fsck: /, '')}`);
    for (const p of fsck.problems) say(`              ${p}`);
    say(`  gc          deleted ${gc.slicesDeleted} released slices (compacted appends) in both buckets: ${objectsBefore} -> ${objects} objects`);
    if (fsck.problems.length > 0) failures.push('fsck');
  } finally {
    await tools.close();
    await va.close().catch(() => undefined);
  }

  // 9. Region c: a reader on its replica (no flags: the replica says which region it serves), then the
  //    primary's metadata file goes away and c reads on.
  try {
    await mirror.once();
  } finally {
    mirrorStop.abort();
    await mirroring;
    await mirrorReplica.close();
    await mirrorPrimary.close();
  }
  const readInC = async (): Promise<{ failures: string[]; bytes: number; listed: number }> => {
    const vc = await openVolume(replicaUrl, { memCacheBytes: 0 });
    try {
      const listed = (await vc.readdir('/steady')).length;
      return { ...(await readAll(vc, expectedC)), listed };
    } finally {
      await vc.close();
    }
  };
  const c1 = await readInC();
  failures.push(...c1.failures.map((p) => `${p} (c)`));
  say(`  read in c   ${Object.keys(expectedC).length} files (${humanBytes(c1.bytes)}) from its replica, /steady lists ${c1.listed}: ${c1.failures.length === 0 ? 'all match' : 'MISMATCH'}; blocks from a's bucket`);
  const away = [dbFile, `${dbFile}-wal`, `${dbFile}-shm`].filter((f) => existsSync(f));
  for (const f of away) await rename(f, `${f}.away`);
  try {
    const c2 = await readInC();
    failures.push(...c2.failures.map((p) => `${p} (c, primary metadata gone)`));
    say(`  a meta off  ${path.basename(dbFile)} moved away: c still lists and reads all ${Object.keys(expectedC).length} files from its replica: ${c2.failures.length === 0 ? 'all match' : 'MISMATCH'}`);
  } finally {
    for (const f of away) await rename(`${f}.away`, f);
  }

  // 10. Region c's cache group: two cache nodes and three readers, all on c's replica. The readers ask the
  //     block's owner in the group; an owner that misses fetches from a's bucket once, and the egress counters
  //     say how much crossed from a to c.
  const group = await (async () => {
    const counters = await openMetaEngine(replicaUrl);
    const aToC = async (): Promise<number> => (await egressTotals(counters)).find((p) => p.from === 'a' && p.to === 'c')?.total ?? 0;
    const vols: Volume[] = [];
    try {
      const before = await aToC();
      const nodes: Volume[] = [];
      for (const n of [1, 2]) {
        nodes.push(await openVolume(replicaUrl, {
          heartbeatMs: 0, memCacheBytes: 0, cacheDir: path.join(dir, `cache-c-node${n}`), cacheBytes: 1 << 30,
          cacheGroup: { group: 'c', listen: { host: '127.0.0.1', port: 0 }, role: 'node' },
        }));
      }
      vols.push(...nodes);
      const readers = await Promise.all([1, 2, 3].map(() => openVolume(replicaUrl, { heartbeatMs: 0, memCacheBytes: 0, cacheGroup: { group: 'c', sharing: false } })));
      vols.push(...readers);
      // The first reader pulls the dataset into the group; the other two then read it at once, together.
      const results = [await readAll(readers[0]!, expectedC), ...(await Promise.all(readers.slice(1).map((r) => readAll(r, expectedC))))];
      for (const v of vols) await v.egress?.flush();
      const crossed = (await aToC()) - before;
      let hits = 0;
      let misses = 0;
      for (const n of nodes) {
        const st = n.cacheGroup?.owner?.stats;
        if (st !== undefined) {
          hits += st.memoryHits + st.diskHits;
          misses += st.fetched;
        }
      }
      return { failures: results.flatMap((r) => r.failures), delivered: results.reduce((a, r) => a + r.bytes, 0), crossed, hits, misses };
    } finally {
      for (const v of vols) await v.close().catch(() => undefined);
      await counters.close();
    }
  })();
  failures.push(...group.failures.map((p) => `${p} (c, cache group)`));
  const dataset = c1.bytes;
  say(`  group in c  2 cache nodes, 3 readers read all ${Object.keys(expectedC).length} files (${humanBytes(group.delivered)} delivered): ${group.failures.length === 0 ? 'all match' : 'MISMATCH'}`);
  say(`              crossed a -> c: ${humanBytes(group.crossed)} of blocks (the files hold ${humanBytes(dataset)}, zstd-compressed in the bucket); ` +
    `the nodes answered ${group.hits + group.misses === 0 ? 'n/a' : `${((100 * group.hits) / (group.hits + group.misses)).toFixed(0)}%`} of block requests from their caches (${group.hits}; ${group.misses} fetched from a, each block once)`);

  // 11. Writes in region c through a's metadata service, then failover: a's metadata goes away, c is promoted
  //     (--force: a cannot be fenced then), a comes back and is fenced; a's old client is refused.
  const fo = await (async () => {
    const svcEngine = await openMetaEngine(metaUrl);
    const uuid = (await loadFormat(svcEngine))!.uuid;
    const service = await MetaService.start({ engine: svcEngine, token: Buffer.from(await serviceToken(svcEngine, uuid), 'hex'), host: '127.0.0.1', port: 0 });
    await registerServiceAddress(svcEngine, `ferry://127.0.0.1:${service.port}`);
    const fp = await openMetaEngine(metaUrl);
    const fr = await openMetaEngine(replicaUrl);
    const follower = new MirrorFollower({ primary: fp, replica: fr, region: 'c', pollMs: 1, primaryUrl: metaUrl, reportMs: 0 });
    const stop = new AbortController();
    const following = follower.run(stop.signal).catch(() => undefined);
    const aClient = await openVolume(metaUrl, { heartbeatMs: 0, memCacheBytes: 0, lookupCacheMs: 0 });
    let cClient: Volume | undefined;
    try {
      await follower.once();
      cClient = await openVolume(replicaUrl, { heartbeatMs: 0, memCacheBytes: 0, serviceClient: { pingMs: 0 } });
      const t0 = Date.now();
      await cClient.writeFile('/from-c.txt', 'written in region c\n');
      const writeMs = Date.now() - t0;
      const inC = (await cClient.readFile('/from-c.txt')).toString() === 'written in region c\n';
      const inA = (await aClient.readFile('/from-c.txt')).toString() === 'written in region c\n';
      await cClient.close();
      cClient = undefined;
      stop.abort();
      await following;
      await service.close();
      await svcEngine.close();
      await fp.close();
      // a's metadata is lost: its file moves away; c is promoted with --force.
      const away = [dbFile, `${dbFile}-wal`, `${dbFile}-shm`].filter((f) => existsSync(f));
      for (const f of away) await rename(f, `${f}.lost`);
      const forced = await promoteReplica({ replicaUrl, replica: fr, primaryUrl: metaUrl, force: true });
      const newC = await openVolume(replicaUrl, { heartbeatMs: 0, memCacheBytes: 0, region: 'c' });
      await newC.writeFile('/after-failover.txt', 'the new primary accepts writes\n');
      await newC.close();
      // a comes back: `ferry mirror promote` again fences it; its old client is refused from then on.
      for (const f of away) await rename(`${f}.lost`, f);
      await promoteReplica({ replicaUrl, replica: fr, primaryUrl: metaUrl });
      const refused = await aClient.writeFile('/too-late.txt', 'x').then(
        () => 'accepted (NOT fenced)',
        (err: unknown) => (err instanceof Error ? err.message.replace(/^EROFS: [^(]*\((.*)\).*$/, 'EROFS: $1') : String(err)),
      );
      const readOn = (await aClient.readFile('/from-c.txt')).length > 0;
      return { writeMs, inC, inA, forced, refused, readOn };
    } finally {
      await cClient?.close().catch(() => undefined);
      stop.abort();
      await following;
      await aClient.close().catch(() => undefined);
      await fr.close();
      await follower.close();
    }
  })();
  if (!fo.inC || !fo.inA) failures.push('/from-c.txt (written in c)');
  if (!fo.refused.startsWith('EROFS')) failures.push("a's old client was not refused after the failover");
  say(`  write in c  /from-c.txt through a's metadata service in ${fo.writeMs} ms: read back at once in c (${fo.inC ? 'match' : 'MISMATCH'}) and in a (${fo.inA ? 'match' : 'MISMATCH'})`);
  say(`  promote c   a's metadata moved away; c promoted with --force: primary of epoch ${fo.forced.epoch} at seq ${fo.forced.applied} (a not fenced: its commits after that seq are lost); c accepts writes`);
  say(`  fenced      a came back and was demoted; a's old client writing: ${fo.refused}; reading: ${fo.readOn ? 'carries on' : 'FAILED'}`);
  say(`  verified    every read by sha256: ${failures.length === 0 ? 'all match' : `MISMATCH in ${failures.join(', ')}`}`);
  say(`  time        ${Date.now() - started} ms`);

  const cli = path.relative(process.cwd(), path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js'));
  say();
  say('Look around:');
  say(`  node ${cli} status ${metaUrl}`);
  say(`  node ${cli} region list ${metaUrl}`);
  say(`  node ${cli} cat ${metaUrl} --region b /docs/readme.txt`);
  say(`  node ${cli} ls ${replicaUrl} /steady          # region c, from its replica`);
  say(`  node ${cli} status ${replicaUrl}          # c, the primary of epoch 2 now`);
  say(`  node ${cli} cp ${replicaUrl} --region b ./some-file :/from-b.txt && node ${cli} replicate ${replicaUrl} --once   # writes go to c now`);
  say();
  say(`Remove it with: rm -rf ${dir}`);
  if (failures.length > 0) process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`ferry lab: ${err instanceof Error ? err.message : String(err)}\n`);
  if (process.env['FERRY_DEBUG'] === '1' && err instanceof Error) process.stderr.write(`${err.stack ?? ''}\n`);
  process.exitCode = 1;
});
