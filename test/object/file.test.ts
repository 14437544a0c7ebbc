import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile, mkdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { FileStore } from '../../src/object/file.js';
import { openObjectStore } from '../../src/object/registry.js';
import { InvalidKeyError } from '../../src/object/store.js';
import { objectStoreConformance } from './conformance.js';

async function tempDir(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), 'ferry-file-'));
}

objectStoreConformance(
  'file',
  async () => {
    const dir = await tempDir();
    const store = await openObjectStore(`file://${dir}`);
    return { store, cleanup: async () => { await store.close(); await rm(dir, { recursive: true, force: true }); } };
  },
  {
    skip: {
      // A file system cannot hold a file "a" and a directory "a" at once. Ferry's key layout never needs it.
      'a key may also be the prefix of a longer key': 'a file cannot also be a directory',
    },
  },
);

void describe('FileStore', () => {
  void it('never lists the .tmp folder and reserves its name', async () => {
    const dir = await tempDir();
    try {
      const store = new FileStore(dir);
      await store.put('k', Buffer.from('x'));
      await writeFile(path.join(dir, '.tmp', 'leftover'), 'partial');
      assert.deepEqual((await store.list('')).objects.map((o) => o.key), ['k']);
      assert.deepEqual((await store.list('.tmp/')).objects, []);
      await assert.rejects(store.put('.tmp/x', Buffer.from('x')), InvalidKeyError);
      await assert.rejects(store.get('.tmp/leftover'), InvalidKeyError);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it('delete prunes emptied directories but never the root', async () => {
    const dir = await tempDir();
    try {
      const store = new FileStore(dir, { fsync: true });
      await store.put('a/b/c/d', Buffer.from('x'));
      await store.put('a/e', Buffer.from('y'));
      await store.delete('a/b/c/d');
      assert.deepEqual((await readdir(path.join(dir, 'a'))).sort(), ['e']);
      await store.delete('a/e');
      assert.deepEqual((await readdir(dir)).filter((n) => n !== '.tmp'), []);
      assert.ok((await stat(dir)).isDirectory());
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it('leaves no temp files behind', async () => {
    const dir = await tempDir();
    try {
      const store = new FileStore(dir);
      await Promise.all(Array.from({ length: 20 }, (_, i) => store.put(`t/${i % 3}`, Buffer.alloc(1000, i))));
      await mkdir(path.join(dir, 't', '9')); // An empty directory is no object.
      assert.deepEqual(await readdir(path.join(dir, '.tmp')), []);
      assert.deepEqual((await store.list('t/')).objects.map((o) => o.key), ['t/0', 't/1', 't/2']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it('file://relative/dir resolves against the current directory', async () => {
    const dir = await tempDir();
    const cwd = process.cwd();
    try {
      process.chdir(dir);
      const store = await openObjectStore('file://rel/store');
      await store.put('k', Buffer.from('x'));
      assert.ok((await stat(path.join(dir, 'rel', 'store', 'k'))).isFile());
      assert.equal(store.description, `file://${path.join(dir, 'rel', 'store')}`);
    } finally {
      process.chdir(cwd);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
