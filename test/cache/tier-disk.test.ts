import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiskBlockCache } from '../../src/cache/disk.js';
import { DISK_TIER } from '../../src/cache/reader.js';
import { CacheTier } from '../../src/cache/tier-cache.js';
import { tierConformance } from './tier-conformance.js';

tierConformance('disk (whole)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-tier-disk-'));
  const cache = new DiskBlockCache({ dir, capacityBytes: 256 << 20, freeSpaceFloorRatio: 0 });
  const tier = new CacheTier({ name: DISK_TIER, cache, fillWith: 'whole' });
  return {
    tier,
    hold: (key, plain) => tier.fill(key, plain.length, { data: plain, start: 0 }, undefined),
    damage: async (key, plainBytes, at) => {
      await cache.flush();
      const file = await readFile(cache.filePath(key));
      file[file.length - plainBytes + at]! ^= 0x01;
      await writeFile(cache.filePath(key), file);
    },
    cleanup: async () => {
      await tier.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});
