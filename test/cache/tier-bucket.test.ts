import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BucketTier } from '../../src/cache/tier-bucket.js';
import { openObjectStore } from '../../src/object/registry.js';
import type { ObjectStore } from '../../src/object/store.js';
import { flipPlainByte, tierConformance, type TierUnderTest } from './tier-conformance.js';

function bucket(store: ObjectStore, cleanup: () => Promise<void>): TierUnderTest {
  return {
    tier: new BucketTier('a', store),
    hold: (key, _plain, object) => store.put(key, object),
    damage: async (key, plainBytes, at) => {
      const object = Buffer.from(await store.get(key));
      flipPlainByte(object, plainBytes, at);
      await store.put(key, object);
    },
    cleanup,
  };
}

tierConformance('bucket (mem://)', async () => {
  const store = await openObjectStore('mem://');
  return bucket(store, () => store.close());
});

tierConformance('bucket (file://)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-tier-bucket-'));
  const store = await openObjectStore(`file://${dir}`);
  return bucket(store, async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
});
