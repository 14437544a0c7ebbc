/**
 * `npm start`: a tour of Ferry on the embedded defaults, no servers. Formats a volume in a fresh temporary
 * directory (SQLite metadata + a bucket directory), writes a small dataset through the SDK, reads it all back
 * verified by sha256, runs fsck, and prints what happened, where the files are and commands to look around.
 */

import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatVolume, openMetaEngine, openVolume } from '../index.js';
import { fsckSummary, fsckVolume } from '../cli/fsck.js';
import { gcVolume } from '../cli/gc.js';
import { humanBytes, openTools } from '../cli/util.js';

const BINARY_BYTES = 3 << 20;

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

async function main(): Promise<void> {
  const started = Date.now();
  const dir = await mkdtemp(path.join(tmpdir(), 'ferry-demo-'));
  const dbFile = path.join(dir, 'meta.db');
  const bucket = path.join(dir, 'bucket');
  const metaUrl = `sqlite://${dbFile}`;
  const storage = `file://${bucket}`;
  await mkdir(bucket);

  // 1. Format: metadata in SQLite, blocks of 1 MiB compressed with zstd when that helps.
  const engine = await openMetaEngine(metaUrl, { create: true });
  const format = await formatVolume(engine, { name: 'demo', storage, blockBytes: 1 << 20, compression: 'zstd', trashDays: 1 });
  await engine.close();

  // 2. Write a small dataset through the SDK.
  const vol = await openVolume(metaUrl);
  const text: Record<string, string> = {
    '/docs/readme.txt': 'Ferry keeps file data as immutable, checksummed blocks in a bucket\nand everything else in a metadata engine.\n',
    '/docs/notes/todo.txt': '- format a volume\n- copy a dataset in\n- run fsck\n',
    '/data/config.json': JSON.stringify({ model: 'tiny', epochs: 3, lr: 0.001 }, null, 2) + '\n',
  };
  await vol.mkdir('/docs/notes', { recursive: true });
  await vol.mkdir('/data', { recursive: true });
  await vol.mkdir('/logs');
  for (const [p, content] of Object.entries(text)) await vol.writeFile(p, content);
  let log = '';
  for (let i = 1; i <= 100; i++) {
    const line = `step ${i}: loss ${(1 / i).toFixed(4)}\n`;
    await vol.appendFile('/logs/train.log', line);
    log += line;
  }
  const blob = pseudoRandom(BINARY_BYTES, 2024);
  const blobSum = sha256(blob);
  await vol.writeFile('/data/weights.bin', blob);
  await vol.symlink('/data/weights.bin', '/latest.bin');
  await vol.link('/docs/readme.txt', '/readme-link.txt');

  // 3. Read everything back and verify.
  const expected: Record<string, string> = { ...Object.fromEntries(Object.entries(text).map(([p, c]) => [p, sha256(c)])) };
  expected['/logs/train.log'] = sha256(log);
  expected['/data/weights.bin'] = blobSum;
  expected['/latest.bin'] = blobSum; // through the symlink
  expected['/readme-link.txt'] = sha256(text['/docs/readme.txt']!); // the hard link
  const failures: string[] = [];
  let bytesVerified = 0;
  for (const [p, sum] of Object.entries(expected)) {
    const data = (await vol.readFile(p)) as Buffer;
    bytesVerified += data.length;
    if (sha256(data) !== sum) failures.push(p);
  }
  if ((await vol.readlink('/latest.bin')) !== '/data/weights.bin') failures.push('/latest.bin (symlink target)');
  if ((await vol.stat('/readme-link.txt')).nlink !== 2) failures.push('/readme-link.txt (nlink)');
  await vol.close();

  // 4. fsck: metadata invariants, and every block downloaded and verified.
  // 5. gc with no grace period: the 100 small appends were compacted into one slice; the released slices'
  //    objects go now instead of after the usual hour.
  const objectsBefore = await countFiles(bucket);
  const tools = await openTools(metaUrl);
  let fsck;
  let gc;
  try {
    fsck = await fsckVolume(tools.engine, tools.format, tools.store);
    gc = await gcVolume(tools, { graceMs: 0, leakAgeMs: 3_600_000 });
  } finally {
    await tools.close();
  }
  const objects = await countFiles(bucket);

  const cli = path.relative(process.cwd(), path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js'));
  const ok = failures.length === 0 && fsck.problems.length === 0;
  const lines = [
    `Ferry demo: volume '${format.name}' (${format.uuid})`,
    '',
    `  formatted   metadata ${dbFile}`,
    `              bucket   ${bucket}  (1 MiB blocks, zstd)`,
    `  wrote       4 directories, 5 files (${humanBytes(BINARY_BYTES)} binary, sha256 ${blobSum.substring(0, 16)}...),`,
    `              1 symlink (/latest.bin), 1 hard link (/readme-link.txt); 100 appends to /logs/train.log`,
    `  verified    ${Object.keys(expected).length} reads by sha256 (${humanBytes(bytesVerified)}): ${failures.length === 0 ? 'all match' : `MISMATCH in ${failures.join(', ')}`}`,
    `  fsck        ${fsckSummary(fsck).replace(/^fsck: /, '')}`,
    ...fsck.problems.map((p) => `              ${p}`),
    `  gc          deleted ${gc.slicesDeleted} released slices (compacted appends): ${objectsBefore} -> ${objects} objects in the bucket`,
    `  time        ${Date.now() - started} ms`,
    '',
    'Look around:',
    `  node ${cli} ls ${metaUrl} / -l`,
    `  node ${cli} cat ${metaUrl} /docs/readme.txt`,
    `  node ${cli} fsck ${metaUrl}`,
    '',
    `Remove it with: rm -rf ${dir}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  if (!ok) process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`ferry demo: ${err instanceof Error ? err.message : String(err)}\n`);
  if (process.env['FERRY_DEBUG'] === '1' && err instanceof Error) process.stderr.write(`${err.stack ?? ''}\n`);
  process.exitCode = 1;
});
