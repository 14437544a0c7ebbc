import { MemoryBlockCache } from '../../src/cache/memory.js';
import { MEMORY_TIER } from '../../src/cache/reader.js';
import { CacheTier } from '../../src/cache/tier-cache.js';
import { tierConformance } from './tier-conformance.js';

// As the client ships it (sdk/open.ts): buffers shared, stripes kept.
tierConformance(
  'memory (shareBuffers, stripes)',
  async () => {
    const tier = new CacheTier({ name: MEMORY_TIER, cache: new MemoryBlockCache({ capacityBytes: 64 << 20, shareBuffers: true }), fillWith: 'stripes' });
    return { tier, hold: (key, plain) => tier.fill(key, plain.length, { data: plain, start: 0 }, undefined), cleanup: () => tier.close() };
  },
  { skip: { 'a damaged copy is never answered as good bytes': 'process memory holds no stored copy to damage' } },
);

tierConformance(
  'memory (copies, stripes)',
  async () => {
    const tier = new CacheTier({ name: MEMORY_TIER, cache: new MemoryBlockCache({ capacityBytes: 64 << 20 }), fillWith: 'stripes' });
    return { tier, hold: (key, plain) => tier.fill(key, plain.length, { data: plain, start: 0 }, undefined), cleanup: () => tier.close() };
  },
  { skip: { 'a damaged copy is never answered as good bytes': 'process memory holds no stored copy to damage' } },
);
