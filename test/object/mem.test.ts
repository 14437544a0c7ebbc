import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemStore } from '../../src/object/mem.js';
import { openObjectStore } from '../../src/object/registry.js';
import { objectStoreConformance } from './conformance.js';

objectStoreConformance('mem', async () => {
  const store = await openObjectStore('mem://');
  return { store, cleanup: () => store.close() };
});

void describe('MemStore', () => {
  void it('stores opened by the same name share objects; mem:// alone is private', async () => {
    const name = `shared-${process.pid}-${Date.now()}`;
    const a = await openObjectStore(`mem://${name}`);
    const b = await openObjectStore(`mem://${name}`);
    await a.put('k', Buffer.from('v'));
    assert.deepEqual(await b.get('k'), Buffer.from('v'));
    await a.close();
    assert.deepEqual(await b.get('k'), Buffer.from('v'), 'closing one handle keeps the bucket');
    const c = await openObjectStore('mem://');
    const d = await openObjectStore('mem://');
    await c.put('k', Buffer.from('v'));
    assert.deepEqual((await d.list('')).objects, []);
    MemStore.forget(name);
    assert.deepEqual((await (await openObjectStore(`mem://${name}`)).list('')).objects, []);
  });
});
