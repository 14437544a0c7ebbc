import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
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

// The configuration the client ships (sdk/open.ts): the block reader never modifies a buffer it put or got.
blockCacheConformance(
  'memory (shareBuffers, as the client runs it)',
  async ({ capacityBytes }) => {
    const cache = new MemoryBlockCache({ capacityBytes, shareBuffers: true });
    return { cache, cleanup: () => cache.close() };
  },
  {
    skip: {
      'entries survive reopen': 'a memory cache is gone with its process',
      'put copies its input': 'shareBuffers keeps the caller\'s buffer: its owner never modifies it (checked below)',
      'get returns a copy': 'shareBuffers returns the cached buffer: its owner never modifies it (checked below)',
    },
  },
);

void describe('MemoryBlockCache with shareBuffers', () => {
  void it('keeps and returns the very buffer put, without a copy', async () => {
    const cache = new MemoryBlockCache({ capacityBytes: 1 << 20, shareBuffers: true });
    const data = Buffer.alloc(4096, 7);
    await cache.put('k', data);
    assert.equal(await cache.get('k'), data);
    assert.equal(cache.stats().bytes, 4096);
  });
});
