import { MemoryBlockCache } from '../../src/cache/memory.js';
import { blockCacheConformance } from './conformance.js';

blockCacheConformance(
  'memory',
  async ({ capacityBytes }) => {
    const cache = new MemoryBlockCache({ capacityBytes });
    return { cache, cleanup: () => cache.close() };
  },
  { skip: { 'entries survive reopen': 'a memory cache is gone with its process' } },
);
