import { encodeBlock, decodeBlock } from '../../src/chunk/codec.js';
import { blockKey } from '../../src/chunk/keys.js';
const key = blockKey(9, 1, 70000);
const o = encodeBlock(Buffer.alloc(70000, 4), 'none', key);
const d = Buffer.from(o); d[100]! ^= 1;
try { decodeBlock(d, key, 70000); console.log('no error'); } catch (e) { console.log(String(e)); }
