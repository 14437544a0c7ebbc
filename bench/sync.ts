/**
 * `ferry sync` beside `rclone sync` (Debian's rclone: its defaults, and at Ferry's parallelism) for the same objects between the same
 * two local S3 servers (s3rver): 1,000 objects of 64 KiB plus 4 of 64 MiB, each tool into its own empty bucket.
 *
 *   npm run build && node --import tsx bench/sync.ts [--small N] [--large N] [--parallel N]
 *
 * rclone is configured through environment variables (remotes SRC and DST: type s3, provider Other,
 * path-style, s3rver's keys); it is skipped with a note when it is not installed (apt-get install rclone).
 */

import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { S3Store } from '../src/object/s3.js';
import { PARALLEL_DEFAULT } from '../src/region/sync.js';
import { listAll } from '../src/object/store.js';
import { Limiter } from '../src/util/limiter.js';
import { mulberry32 } from '../src/util/random.js';
import { rcloneEnv, S3RVER_ACCESS_KEY, S3RVER_SECRET_KEY, startS3Server, type S3Server } from '../test/helpers/s3server.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const SMALL_BYTES = 64 * 1024;
const LARGE_BYTES = 64 * 1024 * 1024;
const LOAD_PARALLEL = 16;

const { values } = parseArgs({
  options: { small: { type: 'string', default: '1000' }, large: { type: 'string', default: '4' }, parallel: { type: 'string' } },
});
const smallCount = Number(values.small);
const largeCount = Number(values.large);

function store(server: S3Server, bucket: string): S3Store {
  return new S3Store({
    bucket,
    endpoint: server.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: S3RVER_ACCESS_KEY, secretAccessKey: S3RVER_SECRET_KEY },
  });
}

function data(seed: number, bytes: number): Buffer {
  const rnd = mulberry32(seed);
  const b = Buffer.allocUnsafe(bytes);
  for (let i = 0; i + 4 <= bytes; i += 4) b.writeUInt32LE(Math.floor(rnd() * 2 ** 32), i);
  return b;
}

async function load(server: S3Server): Promise<number> {
  const s = store(server, 'src');
  const limiter = new Limiter(LOAD_PARALLEL);
  let bytes = 0;
  const jobs: Promise<void>[] = [];
  for (let i = 0; i < smallCount; i++) {
    jobs.push(limiter.run(() => s.put(`small/${String(i).padStart(5, '0')}`, data(i, SMALL_BYTES))));
    bytes += SMALL_BYTES;
  }
  for (let i = 0; i < largeCount; i++) {
    jobs.push(limiter.run(() => s.put(`large/${i}`, data(1_000_000 + i, LARGE_BYTES))));
    bytes += LARGE_BYTES;
  }
  await Promise.all(jobs);
  await s.close();
  return bytes;
}

async function count(server: S3Server, bucket: string): Promise<{ objects: number; bytes: number }> {
  const s = store(server, bucket);
  let objects = 0;
  let bytes = 0;
  for await (const o of listAll(s, '')) {
    objects++;
    bytes += o.size;
  }
  await s.close();
  return { objects, bytes };
}

function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'inherit', 'inherit'] });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve((performance.now() - t0) / 1000) : reject(new Error(`${cmd} exited with ${code}`))));
  });
}

const srcServer = await startS3Server({ buckets: ['src'] });
const dstServer = await startS3Server({ buckets: ['ferry', 'rclone0', 'rclone1'] });
try {
  process.stdout.write(`loading ${smallCount} × 64 KiB + ${largeCount} × 64 MiB into ${srcServer.endpoint} ... `);
  const t0 = performance.now();
  const total = await load(srcServer);
  process.stdout.write(`${(total / 2 ** 20).toFixed(0)} MiB in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);

  const ferryArgs = ['sync', srcServer.url('', 'src'), dstServer.url('', 'ferry')];
  if (values.parallel !== undefined) ferryArgs.push('--parallel', values.parallel);
  const ferrySecs = await timed(process.env['FERRY_BENCH_WRAP'] ?? process.execPath, [...(process.env['FERRY_BENCH_WRAP'] === undefined ? [] : [process.execPath]), CLI, ...ferryArgs], { ...process.env, FERRY_NO_PROGRESS: '1' });
  const ferryGot = await count(dstServer, 'ferry');

  // rclone at its defaults (4 transfers, 8 checkers) and at Ferry's parallelism.
  const parallel = values.parallel ?? String(PARALLEL_DEFAULT);
  const rclone: Array<{ args: string[]; secs: number; got: { objects: number; bytes: number } }> = [];
  const rcloneVersion = spawnSync('rclone', ['version'], { encoding: 'utf8' });
  if (rcloneVersion.status === 0) {
    const env = rcloneEnv(srcServer.endpoint, dstServer.endpoint);
    for (const [i, extra] of [[], ['--transfers', parallel, '--checkers', parallel]].entries()) {
      const args = ['sync', ...extra, 'SRC:src', `DST:rclone${i}`];
      rclone.push({ args, secs: await timed('rclone', args, env), got: await count(dstServer, `rclone${i}`) });
    }
  }

  const mib = total / 2 ** 20;
  const line = (name: string, secs: number, got: { objects: number; bytes: number }): string =>
    `${name.padEnd(12)} ${secs.toFixed(2).padStart(7)} s  ${(mib / secs).toFixed(1).padStart(6)} MiB/s  ${got.objects} objects, ${got.bytes} bytes${got.bytes === total ? '' : '  (INCOMPLETE)'}`;
  process.stdout.write(`\n${smallCount + largeCount} objects, ${mib.toFixed(0)} MiB, s3rver → s3rver\n`);
  process.stdout.write(line('ferry sync', ferrySecs, ferryGot) + `  (--parallel ${parallel})\n`);
  if (rclone.length > 0) {
    process.stdout.write(`${rcloneVersion.stdout.split('\n')[0]}, remotes: type s3, provider Other, path-style (s3rver)\n`);
    for (const r of rclone) process.stdout.write(line('rclone sync', r.secs, r.got) + `  (rclone ${r.args.join(' ')})\n`);
    process.stdout.write(`ferry sync is ${(rclone[1]!.secs / ferrySecs).toFixed(2)}× rclone at equal parallelism (${parallel}), ${(rclone[0]!.secs / ferrySecs).toFixed(2)}× rclone's defaults\n`);
  } else {
    process.stdout.write('rclone sync   skipped: rclone is not installed (apt-get install rclone)\n');
  }
} finally {
  await Promise.allSettled([srcServer.stop(), dstServer.stop()]);
}
