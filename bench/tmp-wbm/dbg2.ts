import { mkdtemp, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { encodeBlock } from '../../src/chunk/codec.js';
import { blockKey } from '../../src/chunk/keys.js';
import { Writeback } from '../../src/cache/writeback.js';
import { FileStore } from '../../src/object/file.js';
import type { ObjectStore } from '../../src/object/store.js';
const root = await mkdtemp(path.join(tmpdir(), 'dbg-'));
const dir = path.join(root, 'wb');
const down: ObjectStore = Object.assign(Object.create(new FileStore(path.join(root, 'bucket'))) as ObjectStore, { put: () => Promise.reject(new Error('bucket down')) });
const wb = new Writeback({ dir, store: down, retryDelayMsMin: 5, retryDelayMsMax: 20, onBackgroundError: (e, w) => console.log(w, String(e)) });
const key = blockKey(9, 1, 70000);
const o = encodeBlock(Buffer.alloc(70000, 4), 'none', key);
console.log(await wb.stage(key, o, 9), await readdir(dir), wb.uploadStats());
const d = Buffer.from(o); d[100]! ^= 1;
await writeFile(path.join(dir, '9_1_70000'), d);
try { console.log(await wb.get(key, 70000, undefined)); } catch (e) { console.log('rejected', String(e)); }
await wb.close();
