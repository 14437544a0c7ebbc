import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crc32c } from '@node-rs/crc32';
import {
  BLOCK_HEADER_BYTES,
  COMPRESSIONS,
  type Compression,
  decodeBlock,
  encodeBlock,
  loadCompression,
  parseCompression,
} from '../../src/chunk/codec.js';
import { blockKey, parseBlockKey } from '../../src/chunk/keys.js';
import { CorruptBlockError, UsageError } from '../../src/errors.js';
import { mulberry32, randomSeed } from '../../src/util/random.js';

const SEED = process.env['FERRY_SEED'] === undefined ? randomSeed() : Number(process.env['FERRY_SEED']);
console.log(`codec test seed ${SEED} (replay with FERRY_SEED=${SEED})`);

const MiB = 1024 * 1024;

function randomBytes(seed: number, bytes: number): Buffer {
  const rand = mulberry32(seed);
  const b = Buffer.allocUnsafe(bytes);
  let i = 0;
  for (; i + 4 <= bytes; i += 4) b.writeUInt32LE(Math.floor(rand() * 2 ** 32), i);
  for (; i < bytes; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

/** Text-like data that every compressor shrinks. */
function compressibleBytes(bytes: number): Buffer {
  const words = ['ferry ', 'block ', 'slice ', 'chunk ', 'inode ', '0123456789 ', '\n'];
  const b = Buffer.allocUnsafe(bytes);
  const rand = mulberry32(SEED ^ 0x5a5a);
  let i = 0;
  while (i < bytes) i += b.write(words[Math.floor(rand() * words.length)]!, i);
  return b;
}

function assertCorrupt(fn: () => unknown, what: string): void {
  assert.throws(fn, (err: unknown) => err instanceof CorruptBlockError && err.key === 'k', what);
}

/** The object with its object checksum recomputed, so that a check after it is what fails. */
/** Recomputes the object checksum as the codec defines it (the payload is included only when compressed). */
function withObjectCrc(object: Buffer): Buffer {
  const head = crc32c(object.subarray(0, 20));
  object.writeUInt32LE(object.readUInt8(5) === 0 ? head : crc32c(object.subarray(BLOCK_HEADER_BYTES), head), 20);
  return object;
}

void describe('block codec', () => {
  void it('crc32c matches the standard check value', () => {
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
    assert.equal(crc32c(Buffer.alloc(0)), 0);
  });

  for (const compression of COMPRESSIONS) {
    for (const bytes of [0, 1, 4 * MiB]) {
      void it(`${compression}: random ${bytes} bytes round trip, stored uncompressed`, () => {
        const plain = randomBytes(SEED + bytes, bytes);
        const object = encodeBlock(plain, compression);
        assert.equal(object.length, BLOCK_HEADER_BYTES + bytes);
        assert.equal(object[5], 0, 'incompressible data is stored as none');
        assert.deepEqual(decodeBlock(object, 'k', bytes), plain);
      });

      void it(`${compression}: compressible ${bytes} bytes round trip`, () => {
        const plain = compressibleBytes(bytes);
        const object = encodeBlock(plain, compression);
        if (compression !== 'none' && bytes > 1000) {
          assert.ok(object.length < plain.length / 2, `${compression} shrinks text: ${object.length}`);
          assert.notEqual(object[5], 0);
        }
        assert.deepEqual(decodeBlock(object, 'k', bytes), plain);
        assert.deepEqual(decodeBlock(object, 'k'), plain);
      });
    }

    void it(`${compression}: every single-byte flip in header and payload is detected`, () => {
      const plain = compressibleBytes(600);
      const object = encodeBlock(plain, compression);
      assert.equal(object[5], compression === 'none' ? 0 : compression === 'lz4' ? 1 : 2);
      for (let i = 0; i < object.length; i++) {
        for (const mask of [0x01, 0x80, 0xff]) {
          const bad = Buffer.from(object);
          bad[i]! ^= mask;
          assertCorrupt(() => decodeBlock(bad, 'k', 600), `flip ${mask} at ${i}`);
        }
      }
    });

    void it(`${compression}: every truncation and an extra byte are detected`, () => {
      const object = encodeBlock(compressibleBytes(600), compression);
      for (let n = 0; n < object.length; n++) assertCorrupt(() => decodeBlock(object.subarray(0, n), 'k'), `truncated to ${n}`);
      assertCorrupt(() => decodeBlock(Buffer.concat([object, Buffer.from([0])]), 'k'), 'padded');
    });

    void it(`${compression}: a plain length other than expected is detected`, () => {
      const object = encodeBlock(compressibleBytes(600), compression);
      assertCorrupt(() => decodeBlock(object, 'k', 599), 'expected 599');
      assertCorrupt(() => decodeBlock(object, 'k', 601), 'expected 601');
      assertCorrupt(() => decodeBlock(object, 'k', 0), 'expected 0');
    });
  }

  void it('the encoded block never shares memory with the input', () => {
    const plain = randomBytes(SEED, 100);
    const object = encodeBlock(plain, 'none');
    plain.fill(0);
    assert.notDeepEqual(decodeBlock(object, 'k'), plain);
  });

  void it('unknown version, compression code, reserved bits and lengths are rejected even with a valid object checksum', () => {
    const good = encodeBlock(compressibleBytes(600), 'lz4');
    const cases: Array<[string, (b: Buffer) => void, RegExp]> = [
      ['version 2', (b) => b.writeUInt8(2, 4), /unknown format version 2/],
      ['compression 3', (b) => b.writeUInt8(3, 5), /unknown compression code 3/],
      ['reserved', (b) => b.writeUInt16LE(1, 6), /reserved/],
      ['payload length', (b) => b.writeUInt32LE(b.readUInt32LE(16) - 1, 16), /payload is/],
      ['plain length', (b) => b.writeUInt32LE(700, 12), /lz4 decompression failed|plain length/],
      ['huge plain length', (b) => b.writeUInt32LE(0xffffffff, 12), /exceeds/],
      ['none with compressed payload', (b) => b.writeUInt8(0, 5), /uncompressed payload/],
      ['zstd for an lz4 payload', (b) => b.writeUInt8(2, 5), /zstd decompression failed/],
      ['data crc', (b) => b.writeUInt32LE((b.readUInt32LE(8) ^ 1) >>> 0, 8), /data checksum mismatch/],
    ];
    for (const [name, mutate, message] of cases) {
      const bad = Buffer.from(good);
      mutate(bad);
      const object = name === 'version 2' || name === 'payload length' ? bad : withObjectCrc(bad);
      assert.throws(() => decodeBlock(object, 'k'), (err: unknown) => err instanceof CorruptBlockError && message.test(err.message), name);
    }
    assertCorrupt(() => decodeBlock(Buffer.from('not a ferry block at all, no'), 'k'), 'bad magic');
    assert.throws(() => decodeBlock(Buffer.alloc(10), 'k'), /shorter than a header/);
  });

  void it('parseCompression accepts the known names and explains an unknown one', () => {
    for (const c of COMPRESSIONS) assert.equal(parseCompression(c), c);
    assert.equal(parseCompression(' LZ4 '), 'lz4');
    assert.throws(() => parseCompression('gzip'), (err: unknown) => err instanceof UsageError && /gzip.*none, lz4, zstd/.test(err.message));
    for (const c of COMPRESSIONS) loadCompression(c as Compression);
  });
});

void describe('block keys', () => {
  void it('follow the documented layout', () => {
    assert.equal(blockKey(1234567, 2, 4194304), 'chunks/1/1234/1234567_2_4194304');
    assert.equal(blockKey(0, 0, 1), 'chunks/0/0/0_0_1');
    assert.equal(blockKey(999, 0, 1), 'chunks/0/0/999_0_1');
    assert.equal(blockKey(1000, 0, 1), 'chunks/0/1/1000_0_1');
  });

  void it('round trip', () => {
    const rand = mulberry32(SEED);
    const ids = [0, 1, 999, 1000, 999_999, 1_000_000, 2 ** 32, Number.MAX_SAFE_INTEGER];
    for (let i = 0; i < 200; i++) ids.push(Math.floor(rand() * Number.MAX_SAFE_INTEGER));
    for (const id of ids) {
      const parts = { sliceId: id, blockIndex: id % 17, blockBytes: 1 + (id % 4194304) };
      assert.deepEqual(parseBlockKey(blockKey(parts.sliceId, parts.blockIndex, parts.blockBytes)), parts);
    }
  });

  void it('parseBlockKey rejects anything blockKey would not produce', () => {
    const junk = [
      '',
      'chunks/',
      'chunks/0/0/0_0',
      'chunks/0/0/0_0_1_2',
      'chunks/0/0/00_0_1',
      'chunks/0/0/0_01_1',
      'chunks/00/0/0_0_1',
      'chunks/1/0/0_0_1',
      'chunks/0/1/0_0_1',
      'chunks/0/0/1000_0_1',
      'chunks/0/0/-1_0_1',
      'chunks/0/0/1.5_0_1',
      'chunks/0/0/0_0_1 ',
      ' chunks/0/0/0_0_1',
      '/chunks/0/0/0_0_1',
      'prefix/chunks/0/0/0_0_1',
      'chunks/0/0/0_0_1/',
      'chunks/0/0/0_0_0x1',
      'chunks/9007199/9007199254/9007199254740992_0_1',
      'chunks/0/0/0_0_99999999999999999',
      'chunks/0/0/0_0_1\n',
    ];
    for (const k of junk) assert.equal(parseBlockKey(k), undefined, JSON.stringify(k));
  });

  void it('blockKey asserts safe non-negative integers', () => {
    for (const bad of [-1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER + 1, Infinity]) {
      assert.throws(() => blockKey(bad, 0, 1), /sliceId/);
      assert.throws(() => blockKey(0, bad, 1), /blockIndex/);
      assert.throws(() => blockKey(0, 0, bad), /blockBytes/);
    }
  });
});
