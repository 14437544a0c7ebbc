/**
 * Random reads through the mount return the file's bytes: seeded random offsets and sizes (from one byte to
 * past a block, across stripe, block and slice edges) compared with a local copy, with the kernel's caches
 * dropped first and after overwrites that left the file made of several slices. The seed is printed; set
 * FERRY_TEST_SEED to replay a run.
 */

import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { addonUnavailable, exec, makeVolume, removeVolume, startMount, type RunningMount, type Volume } from './helpers.js';

const skip = addonUnavailable();
const SEED = Number(process.env['FERRY_TEST_SEED'] ?? randomInt(2 ** 31));

/**
 * argv: seed, mounted file, local copy, reads. Seeded random preads of both files, compared; prints the
 * number of reads and bytes compared, or the first difference.
 */
const READS = `
import os, random, sys
seed, a, b, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
rnd = random.Random(seed)
size = os.path.getsize(b)
assert os.path.getsize(a) == size, (os.path.getsize(a), size)
sizes = [1, 100, 4095, 4096, 4097, 65535, 65536, 65537, 131072, 1 << 20, (1 << 20) + 3]
fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
total = 0
for i in range(n):
    length = rnd.choice(sizes)
    edge = rnd.random() < 0.3
    # a third of the reads start just before a 64 KiB stripe or 1 MiB block edge
    off = (rnd.randrange(size // 65536 + 1) * 65536 - rnd.randrange(1, 64)) if edge else rnd.randrange(size)
    off = max(0, min(off, size - 1))
    x, y = os.pread(fa, length, off), os.pread(fb, length, off)
    if x != y:
        at = next((k for k in range(min(len(x), len(y))) if x[k] != y[k]), min(len(x), len(y)))
        print(f"read {i}: {length} at {off}: {len(x)} bytes, expected {len(y)}; first difference at +{at}")
        sys.exit(1)
    total += len(x)
print(n, total)
`;

/** argv: seed, mounted file, local copy, count: the same random overwrites (pwrite) of both files. */
const OVERWRITES = `
import os, random, sys
seed, a, b, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
rnd = random.Random(seed)
size = os.path.getsize(b)
for path in (a, b):
    r = random.Random(seed)
    fd = os.open(path, os.O_WRONLY)
    for i in range(n):
        length = r.choice([1, 777, 4096, 70000, 300000])
        off = r.randrange(size - length)
        os.pwrite(fd, r.randbytes(length), off)
    os.close(fd)
`;

async function dropCaches(): Promise<void> {
  await exec('sync');
  await writeFile('/proc/sys/vm/drop_caches', '3\n');
}

describe(`random reads through the mount (seed ${SEED}; FERRY_TEST_SEED=${SEED} replays it)`, { skip }, () => {
  let vol: Volume;
  let m: RunningMount;
  let local: string;

  before(async () => {
    vol = await makeVolume({ blockBytes: 1 << 20 });
    m = await startMount(vol);
    local = await mkdtemp(join(tmpdir(), 'ferry-randread-'));
  });

  after(async () => {
    await m?.stop();
    if (vol !== undefined) await removeVolume(vol);
    if (local !== undefined) await rm(local, { recursive: true, force: true });
  });

  it('returns the bytes of a file of several blocks, cold and after overwrites made it several slices', async () => {
    const ref = join(local, 'ref');
    const file = join(vol.mnt, 'f');
    // 12 blocks and a partial one; content from the seed.
    await exec('python3', ['-c', 'import random,sys; open(sys.argv[2],"wb").write(random.Random(int(sys.argv[1])).randbytes(12 * (1 << 20) + 12345))', String(SEED), ref]);
    await exec('cp', [ref, file]);
    const reads = async (seed: number): Promise<string> => {
      await dropCaches();
      return (await exec('python3', ['-c', READS, String(seed), file, ref, '1500'], { maxBuffer: 1 << 20 })).stdout;
    };
    assert.match(await reads(SEED + 1), /^1500 \d+\n$/);
    await exec('python3', ['-c', OVERWRITES, String(SEED + 2), file, ref, '40']);
    assert.match(await reads(SEED + 3), /^1500 \d+\n$/);
    // A fresh mount: nothing of the file in the mount's memory cache either.
    await m.stop();
    m = await startMount(vol);
    assert.match(await reads(SEED + 4), /^1500 \d+\n$/);
  });
});
