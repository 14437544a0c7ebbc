import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemStore } from '../../src/object/mem.js';
import { PrefixStore } from '../../src/object/prefix.js';
import { InvalidKeyError, ObjectNotFoundError } from '../../src/object/store.js';
import { objectStoreConformance } from './conformance.js';

objectStoreConformance('prefix over mem', async () => {
  const inner = new MemStore();
  // Neighbours just outside the prefix that a listing must never show.
  await inner.put('vol0/x', Buffer.from('no'));
  await inner.put('vol1-x', Buffer.from('no'));
  await inner.put('vol10/x', Buffer.from('no'));
  const store = new PrefixStore(inner, 'vol1/');
  return { store, cleanup: () => store.close() };
});

void describe('PrefixStore', () => {
  void it('stores key k as prefix + k and lists it as k', async () => {
    const inner = new MemStore();
    const store = new PrefixStore(inner, 'team/vol1/');
    await store.put('a/b', Buffer.from('x'));
    assert.deepEqual(await inner.get('team/vol1/a/b'), Buffer.from('x'));
    assert.deepEqual((await store.list('a')).objects.map((o) => o.key), ['a/b']);
    assert.equal((await store.head('a/b')).key, 'a/b');
  });

  void it('names the caller key in ObjectNotFoundError', async () => {
    const store = new PrefixStore(new MemStore(), 'vol1/');
    await assert.rejects(store.get('nope'), (err: unknown) => err instanceof ObjectNotFoundError && err.key === 'nope');
  });

  void it('rejects keys that would leave the prefix and bad prefixes', async () => {
    const store = new PrefixStore(new MemStore(), 'vol1/');
    await assert.rejects(store.put('../vol2/x', Buffer.from('x')), InvalidKeyError);
    assert.throws(() => new PrefixStore(new MemStore(), 'vol1'), RangeError);
    assert.throws(() => new PrefixStore(new MemStore(), '/'), InvalidKeyError);
    assert.throws(() => new PrefixStore(new MemStore(), 'a/../'), InvalidKeyError);
  });
});
