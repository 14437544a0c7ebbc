import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crc32c } from '@node-rs/crc32';
import {
  BLOCK_STRIPE_BYTES,
  BLOCK_WHOLE_ID_HEADER_BYTES,
  COMPRESSIONS,
  type Compression,
  blockFrameBytes,
  blockHeaderBytes,
  blockStripes,
  decodeBlock,
  decodeBlockHeader,
  decodeStripes,
  encodeBlock,
  encodeBlockFramed,
  loadCompression,
  parseCompression,
  stripeSpan,
} from '../../src/chunk/codec.js';
import { blockKey, isBlockKeyOf, parseBlockKey } from '../../src/chunk/keys.js';
import { CorruptBlockError, UsageError } from '../../src/errors.js';
import { mulberry32, randomSeed } from '../../src/util/random.js';
import { encodeV1Compressed, encodeV1None, encodeV2 } from '../helpers/blocks.js';

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

/** The key of block 0 of slice 7 of `bytes` bytes: what most cases store and read. */
function key7(bytes: number): string {
  return blockKey(7, 0, bytes);
}

function assertCorrupt(fn: () => unknown, what: string, key = 'k'): void {
  assert.throws(fn, (err: unknown) => err instanceof CorruptBlockError && err.key === key, what);
}

/**
 * Recomputes the object checksum of a whole block as the codec defines it, so that a check after it is what
 * fails: version 1 at 20 over bytes 0..19 (and the payload when compressed), version 4 at 32 over 0..31 and
 * the payload.
 */
function withObjectCrc(object: Buffer): Buffer {
  const v4 = object[4] === 4;
  const h = v4 ? BLOCK_WHOLE_ID_HEADER_BYTES : 24;
  const head = crc32c(object.subarray(0, h - 4));
  object.writeUInt32LE(!v4 && object.readUInt8(5) === 0 ? head : crc32c(object.subarray(h), head), h - 4);
  return object;
}

/** Recomputes a version 3 header checksum (bytes 0..19, then the stripe table), as withObjectCrc does. */
function withHeaderCrc(object: Buffer, plainBytes: number): Buffer {
  object.writeUInt32LE(crc32c(object.subarray(24, blockHeaderBytes(plainBytes)), crc32c(object.subarray(0, 20))), 20);
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
        const object = encodeBlock(plain, compression, key7(bytes));
        assert.equal(object.length, blockHeaderBytes(bytes) + bytes);
        assert.equal(object[4], 3, 'incompressible data is stored striped (version 3)');
        assert.deepEqual(decodeBlock(object, key7(bytes), bytes), plain);
      });

      void it(`${compression}: compressible ${bytes} bytes round trip`, () => {
        const plain = compressibleBytes(bytes);
        const object = encodeBlock(plain, compression, key7(bytes));
        if (compression !== 'none' && bytes > 1000) {
          assert.ok(object.length < plain.length / 2, `${compression} shrinks text: ${object.length}`);
          assert.equal(object[4], 4, 'compressed blocks are whole (version 4)');
          assert.notEqual(object[5], 0);
        }
        assert.deepEqual(decodeBlock(object, key7(bytes), bytes), plain);
        assert.deepEqual(decodeBlock(object, key7(bytes)), plain);
      });
    }

    void it(`${compression}: every single-byte flip in header and payload is detected`, () => {
      const plain = compressibleBytes(600);
      const object = encodeBlock(plain, compression, key7(600));
      assert.equal(object[4], compression === 'none' ? 3 : 4);
      if (compression !== 'none') assert.equal(object[5], compression === 'lz4' ? 1 : 2);
      for (let i = 0; i < object.length; i++) {
        for (const mask of [0x01, 0x80, 0xff]) {
          const bad = Buffer.from(object);
          bad[i]! ^= mask;
          assertCorrupt(() => decodeBlock(bad, key7(600), 600), `flip ${mask} at ${i}`, key7(600));
        }
      }
    });

    void it(`${compression}: every truncation and an extra byte are detected`, () => {
      const object = encodeBlock(compressibleBytes(600), compression, key7(600));
      for (let n = 0; n < object.length; n++) assertCorrupt(() => decodeBlock(object.subarray(0, n), key7(600)), `truncated to ${n}`, key7(600));
      assertCorrupt(() => decodeBlock(Buffer.concat([object, Buffer.from([0])]), key7(600)), 'padded', key7(600));
    });

    void it(`${compression}: a plain length other than expected is detected`, () => {
      const object = encodeBlock(compressibleBytes(600), compression, key7(600));
      assertCorrupt(() => decodeBlock(object, key7(600), 599), 'expected 599', key7(600));
      assertCorrupt(() => decodeBlock(object, key7(600), 601), 'expected 601', key7(600));
      assertCorrupt(() => decodeBlock(object, key7(600), 0), 'expected 0', key7(600));
    });
  }

  void it('the encoded block never shares memory with the input', () => {
    const plain = randomBytes(SEED, 100);
    const object = encodeBlock(plain, 'none', key7(100));
    plain.fill(0);
    assert.notDeepEqual(decodeBlock(object, key7(100)), plain);
  });

  for (const [version, make] of [
    [1, (p: Buffer) => encodeV1Compressed(p, 'lz4')!],
    [4, (p: Buffer) => encodeBlock(p, 'lz4', key7(p.length))],
  ] as const) {
    void it(`version ${version}: unknown version, compression code, reserved bits and lengths are rejected even with a valid object checksum`, () => {
      const key = key7(600);
      const good = make(compressibleBytes(600));
      assert.equal(good[4], version);
      const cases: Array<[string, (b: Buffer) => void, RegExp]> = [
        ['version 0', (b) => b.writeUInt8(0, 4), /unknown format version 0/],
        ['version 5', (b) => b.writeUInt8(5, 4), /unknown format version 5/],
        ['compression 3', (b) => b.writeUInt8(3, 5), /unknown compression code 3/],
        ['reserved', (b) => b.writeUInt16LE(1, 6), /reserved/],
        ['payload length', (b) => b.writeUInt32LE(b.readUInt32LE(16) - 1, 16), /payload is/],
        ['plain length', (b) => b.writeUInt32LE(700, 12), /lz4 decompression failed|plain length/],
        ['huge plain length', (b) => b.writeUInt32LE(0xffffffff, 12), /exceeds/],
        ['none with compressed payload', (b) => b.writeUInt8(0, 5), version === 1 ? /uncompressed payload/ : /version 4 block with compression code 0/],
        ['zstd for an lz4 payload', (b) => b.writeUInt8(2, 5), /zstd decompression failed/],
        ['data crc', (b) => b.writeUInt32LE((b.readUInt32LE(8) ^ 1) >>> 0, 8), /data checksum mismatch/],
      ];
      for (const [name, mutate, message] of cases) {
        const bad = Buffer.from(good);
        mutate(bad);
        const object = name.startsWith('version') || name === 'payload length' ? bad : withObjectCrc(bad);
        assert.throws(() => decodeBlock(object, key), (err: unknown) => err instanceof CorruptBlockError && message.test(err.message), name);
      }
      assertCorrupt(() => decodeBlock(Buffer.from('not a ferry block at all, no'), 'k'), 'bad magic');
      assert.throws(() => decodeBlock(Buffer.alloc(10), 'k'), /shorter than a header/);
    });
  }

  void it('parseCompression accepts the known names and explains an unknown one', () => {
    for (const c of COMPRESSIONS) assert.equal(parseCompression(c), c);
    assert.equal(parseCompression(' LZ4 '), 'lz4');
    assert.throws(() => parseCompression('gzip'), (err: unknown) => err instanceof UsageError && /gzip.*none, lz4, zstd/.test(err.message));
    for (const c of COMPRESSIONS) loadCompression(c as Compression);
  });
});

const S = BLOCK_STRIPE_BYTES;

/** Plain bytes [from, to) of a striped `object` (`plainBytes` long) stored under `key`, by the ranged-read protocol. */
function readRange(object: Buffer, plainBytes: number, from: number, to: number, key: string): Buffer {
  const header = decodeBlockHeader(object.subarray(0, blockHeaderBytes(plainBytes)), key, plainBytes);
  assert.ok(header !== undefined, 'a striped header');
  const span = stripeSpan(plainBytes, from, to);
  assert.ok(span.plainStart <= from && to <= span.plainEnd && span.plainStart % S === 0);
  assert.equal(span.offset, blockHeaderBytes(plainBytes) + span.plainStart);
  const data = decodeStripes(header, span, object.subarray(span.offset, span.offset + span.length), key);
  return data.subarray(from - span.plainStart, to - span.plainStart);
}

/** Lengths around every stripe edge, a full 4 MiB block, and seeded random ones. */
function edgeLengths(): number[] {
  const rand = mulberry32(SEED ^ 0x2222);
  const out = [0, 1, S - 1, S, S + 1, 2 * S - 1, 2 * S, 2 * S + 1, 4 * MiB - 1, 4 * MiB];
  for (let i = 0; i < 6; i++) out.push(1 + Math.floor(rand() * 4 * MiB));
  return out;
}

/** The striped versions: 2 as written before identity (a fixture, read only), 3 as written now. */
const STRIPED: ReadonlyArray<[version: 2 | 3, encode: (plain: Buffer, key: string) => Buffer]> = [
  [2, (plain) => encodeV2(plain)],
  [3, (plain, key) => encodeBlock(plain, 'none', key)],
];

void describe('block codec, striped versions 2 and 3 (uncompressed)', () => {
  void it('header size follows from the plain length alone, the same in both versions', () => {
    assert.equal(blockHeaderBytes(0), 24);
    assert.equal(blockHeaderBytes(1), 28);
    assert.equal(blockHeaderBytes(S), 28);
    assert.equal(blockHeaderBytes(S + 1), 32);
    assert.equal(blockHeaderBytes(4 * MiB), 24 + 4 * 64);
    assert.equal(blockStripes(4 * MiB), 64);
    assert.equal(blockFrameBytes(4 * MiB), 280);
    for (const bytes of [0, 1, S, 3 * S + 5]) {
      const plain = randomBytes(SEED ^ bytes, bytes);
      for (const [version, encode] of STRIPED) assert.equal(encode(plain, key7(bytes)).length, blockHeaderBytes(bytes) + bytes, `version ${version}`);
    }
  });

  for (const bytes of edgeLengths()) {
    void it(`${bytes} bytes: round trip whole, framed and by ranges at every stripe edge`, () => {
      const plain = randomBytes(SEED + 7 * bytes, bytes);
      const key = key7(bytes);
      const object = encodeBlock(plain, 'none', key);
      assert.equal(object[4], 3);
      assert.equal(object.length, blockHeaderBytes(bytes) + bytes);
      assert.deepEqual(decodeBlock(object, key, bytes), plain);
      // Framed, with the space of this block's size and of a larger block size: the same object.
      for (const frame of [blockHeaderBytes(bytes), blockFrameBytes(4 * MiB), blockFrameBytes(64 * MiB)]) {
        const framed = Buffer.alloc(frame + bytes, 0xee);
        plain.copy(framed, frame);
        const got = encodeBlockFramed(framed, 'none', frame, key);
        assert.equal(got.buffer, framed.buffer, 'no copy');
        assert.deepEqual(got, object);
      }
      const old = encodeV2(plain);
      assert.deepEqual(decodeBlock(old, key, bytes), plain, 'version 2');
      if (bytes === 0) {
        assert.throws(() => stripeSpan(0, 0, 0), /range/);
        return;
      }
      const edges = new Set<number>([0, 1, bytes - 1, bytes]);
      for (let e = S; e < bytes + S; e += S) for (const d of [-1, 0, 1]) if (e + d > 0 && e + d < bytes) edges.add(e + d);
      const sorted = [...edges].sort((a, b) => a - b);
      const rand = mulberry32(SEED + bytes);
      const ranges: Array<[number, number]> = [[0, bytes]];
      for (const a of sorted) for (const b of sorted) if (a < b && (b - a <= 2 * S + 2 || a === 0 || b === bytes)) ranges.push([a, b]);
      for (let i = 0; i < 50; i++) {
        const a = Math.floor(rand() * bytes);
        ranges.push([a, a + 1 + Math.floor(rand() * Math.min(bytes - a, 256 * 1024))]);
      }
      for (const [a, b] of ranges) {
        assert.deepEqual(readRange(object, bytes, a, b, key), plain.subarray(a, b), `range ${a}..${b}`);
        assert.deepEqual(readRange(old, bytes, a, b, key), plain.subarray(a, b), `version 2, range ${a}..${b}`);
      }
    });
  }

  for (const [version, encode] of STRIPED) {
    void it(`version ${version}: a flipped byte in any stripe or anywhere in the header is detected by whole and ranged reads`, () => {
      const bytes = 3 * S + 1000;
      const key = key7(bytes);
      const plain = randomBytes(SEED ^ 0x3333, bytes);
      const object = encode(plain, key);
      assert.equal(object[4], version);
      const h = blockHeaderBytes(bytes);
      const rand = mulberry32(SEED ^ 0x4444);
      for (let at = 0; at < h; at++) {
        for (const mask of [0x01, 0x03, 0x80, 0xff]) {
          const bad = Buffer.from(object);
          bad[at]! ^= mask;
          assertCorrupt(() => decodeBlock(bad, key, bytes), `whole, header flip ${mask} at ${at}`, key);
          // A damaged version byte may read as a whole version: the ranged reader then reads the block whole, which fails.
          let header;
          try {
            header = decodeBlockHeader(bad.subarray(0, h), key, bytes);
          } catch (err) {
            assert.ok(err instanceof CorruptBlockError, String(err));
            continue;
          }
          assert.equal(header, undefined, `header flip ${mask} at ${at} passed as striped`);
          assert.equal(at, 4);
        }
      }
      for (let stripe = 0; stripe < blockStripes(bytes); stripe++) {
        const end = Math.min(bytes, (stripe + 1) * S);
        for (const p of [stripe * S, end - 1, stripe * S + Math.floor(rand() * (end - stripe * S))]) {
          const bad = Buffer.from(object);
          bad[h + p]! ^= 0x01;
          assertCorrupt(() => decodeBlock(bad, key, bytes), `whole, flip at plain ${p}`, key);
          assertCorrupt(() => readRange(bad, bytes, p, p + 1, key), `range of the byte ${p}`, key);
          assertCorrupt(() => readRange(bad, bytes, 0, bytes, key), `range of the block, flip at ${p}`, key);
          assert.throws(() => readRange(bad, bytes, Math.max(0, stripe * S - 10), Math.min(bytes, end + 10), key), /stripe \d+ checksum mismatch/);
          // The other stripes still read.
          for (let other = 0; other < blockStripes(bytes); other++) {
            if (other === stripe) continue;
            const a = other * S;
            const b = Math.min(bytes, a + S);
            assert.deepEqual(readRange(bad, bytes, a, b, key), plain.subarray(a, b));
          }
        }
      }
    });

    void it(`version ${version}: a ranged answer of the wrong length, from the wrong place or for another length is rejected`, () => {
      const bytes = 2 * S + 7;
      const key = key7(bytes);
      const plain = randomBytes(SEED ^ 0x5555, bytes);
      const object = encode(plain, key);
      const h = blockHeaderBytes(bytes);
      const header = decodeBlockHeader(object.subarray(0, h), key, bytes)!;
      const span = stripeSpan(bytes, S, S + 1);
      assert.deepEqual([span.first, span.end, span.plainStart, span.plainEnd, span.length], [1, 2, S, 2 * S, S]);
      const good = object.subarray(span.offset, span.offset + span.length);
      assert.deepEqual(decodeStripes(header, span, good, key), plain.subarray(S, 2 * S));
      assertCorrupt(() => decodeStripes(header, span, good.subarray(1), key), 'short', key);
      assertCorrupt(() => decodeStripes(header, span, Buffer.concat([good, Buffer.from([0])]), key), 'long', key);
      assertCorrupt(() => decodeStripes(header, span, object.subarray(span.offset - 1, span.offset - 1 + span.length), key), 'shifted', key);
      assertCorrupt(() => decodeStripes(header, span, object.subarray(h, h + S), key), 'stripe 0 for stripe 1', key);
      // A whole object or a short one given as the header; a header read for another plain length.
      assertCorrupt(() => decodeBlockHeader(object, key, bytes), 'whole object as header', key);
      assertCorrupt(() => decodeBlockHeader(object.subarray(0, h - 1), key, bytes), 'short header', key);
      assertCorrupt(() => decodeBlockHeader(object.subarray(0, blockHeaderBytes(bytes + S)), key, bytes + S), 'other length', key);
      assertCorrupt(() => decodeBlockHeader(Buffer.alloc(h), key, bytes), 'zeros', key);
    });
  }

  void it('version 2: fields are checked even with a valid header checksum', () => {
    const bytes = S + 5;
    const good = encodeV2(randomBytes(SEED ^ 0x6666, bytes));
    const h = blockHeaderBytes(bytes);
    const cases: Array<[string, (b: Buffer) => void, RegExp]> = [
      ['compression', (b) => b.writeUInt8(1, 5), /compression code 1/],
      ['stripe size', (b) => b.writeUInt8(17, 6), /stripe size/],
      ['reserved', (b) => b.writeUInt8(1, 7), /reserved/],
      ['table crc', (b) => b.writeUInt32LE((b.readUInt32LE(8) ^ 1) >>> 0, 8), /stripe table checksum mismatch/],
      ['plain length', (b) => b.writeUInt32LE(bytes - 1, 12), /payload length|plain length/],
      ['both lengths', (b) => (b.writeUInt32LE(bytes + 1, 12), b.writeUInt32LE(bytes + 1, 16)), /plain length|payload/],
      ['huge lengths', (b) => (b.writeUInt32LE(0xffffffff, 12), b.writeUInt32LE(0xffffffff, 16)), /exceeds/],
    ];
    for (const [name, mutate, message] of cases) {
      const bad = Buffer.from(good);
      mutate(bad);
      bad.writeUInt32LE(crc32c(bad.subarray(0, 20)), 20);
      const is = (err: unknown): boolean => err instanceof CorruptBlockError && message.test(err.message);
      assert.throws(() => decodeBlock(bad, 'k'), is, `whole: ${name}`);
      assert.throws(() => decodeBlockHeader(bad.subarray(0, h), 'k', bytes), (err: unknown) => err instanceof CorruptBlockError, `header: ${name}`);
    }
  });

  void it('version 3: fields are checked even with a valid header checksum', () => {
    const bytes = S + 5;
    const key = key7(bytes);
    const good = encodeBlock(randomBytes(SEED ^ 0x6666, bytes), 'none', key);
    const h = blockHeaderBytes(bytes);
    const cases: Array<[string, (b: Buffer) => void, RegExp]> = [
      ['plain length', (b) => b.writeUInt32LE(bytes - 1, 12), /plain length \d+, expected/],
      ['huge plain length', (b) => b.writeUInt32LE(0xffffffff, 12), /plain length|exceeds/],
      ['slice id', (b) => b.writeUInt32LE(8, 5), /identity mismatch: the copy is block 0 of slice 8, the key names block 0 of slice 7/],
      ['slice id above 2^53', (b) => b.writeUIntLE(0x200000, 9, 3), /slice id \d+ out of range/],
      ['block index', (b) => b.writeUInt32LE(1, 16), /identity mismatch: the copy is block 1 of slice 7/],
      ['no block', (b) => (b.writeUInt32LE(0xffffffff, 5), b.writeUIntLE(0xffffff, 9, 3), b.writeUInt32LE(0xffffffff, 16)), /identity mismatch: the copy is of no block/],
      ['no block with an index', (b) => (b.writeUInt32LE(0xffffffff, 5), b.writeUIntLE(0xffffff, 9, 3)), /no block with block index 0/],
    ];
    for (const [name, mutate, message] of cases) {
      const bad = Buffer.from(good);
      mutate(bad);
      assert.throws(() => decodeBlock(bad, key, bytes), /header checksum mismatch/, `${name}, checksum not updated`);
      withHeaderCrc(bad, name.includes('plain length') ? bytes : bad.readUInt32LE(12));
      const is = (err: unknown): boolean => err instanceof CorruptBlockError && message.test(err.message);
      assert.throws(() => decodeBlock(bad, key, bytes), is, `whole: ${name}`);
      assert.throws(() => decodeBlockHeader(bad.subarray(0, h), key, bytes), is, `header: ${name}`);
    }
  });

  void it('version 1 blocks still decode (uncompressed and compressed), and are read whole', () => {
    for (const bytes of [0, 1, S, 3 * S + 11]) {
      const plain = randomBytes(SEED ^ bytes, bytes);
      const old = encodeV1None(plain);
      assert.deepEqual(decodeBlock(old, 'k', bytes), plain);
      assert.equal(decodeBlockHeader(old.subarray(0, blockHeaderBytes(bytes)), 'k', bytes), undefined);
      const flipped = Buffer.from(old);
      if (bytes > 0) {
        flipped[flipped.length - 1]! ^= 1;
        assertCorrupt(() => decodeBlock(flipped, 'k', bytes), 'v1 data flip');
      }
    }
    const text = compressibleBytes(3 * S);
    for (const c of ['lz4', 'zstd'] as const) {
      const old = encodeV1Compressed(text, c)!;
      assert.equal(old[4], 1);
      assert.deepEqual(decodeBlock(old, key7(text.length), text.length), text);
      assert.equal(decodeBlockHeader(old.subarray(0, blockHeaderBytes(text.length)), key7(text.length), text.length), undefined);
    }
  });

  void it('compressed blocks are version 4 and read whole; incompressible ones are striped, framed in place', () => {
    const text = compressibleBytes(3 * S);
    const key = key7(text.length);
    for (const c of ['lz4', 'zstd'] as const) {
      const object = encodeBlock(text, c, key);
      assert.equal(object[4], 4);
      assert.notEqual(object[5], 0);
      // The ranged reader asks for a header's worth; a compressed object may be shorter than that.
      assert.equal(decodeBlockHeader(object.subarray(0, blockHeaderBytes(text.length)), key, text.length), undefined);
      assert.deepEqual(decodeBlock(object, key, text.length), text);
      const framed = Buffer.alloc(blockFrameBytes(4 * MiB) + text.length);
      text.copy(framed, blockFrameBytes(4 * MiB));
      assert.deepEqual(decodeBlock(encodeBlockFramed(framed, c, blockFrameBytes(4 * MiB), key), key), text);
      const noise = randomBytes(SEED ^ 0x7777, 3 * S);
      const f2 = Buffer.alloc(blockFrameBytes(4 * MiB) + noise.length);
      noise.copy(f2, blockFrameBytes(4 * MiB));
      const striped = encodeBlockFramed(f2, c, blockFrameBytes(4 * MiB), key);
      assert.equal(striped.buffer, f2.buffer);
      assert.equal(striped[4], 3);
      assert.deepEqual(decodeBlock(striped, key, noise.length), noise);
    }
  });
});

void describe('block identity (versions 3 and 4)', () => {
  /** Keys a block of slice 7, block 2, `n` bytes must not pass under (n: the plain length every reader expects). */
  const others = (n: number): string[] => [blockKey(9, 2, n), blockKey(7, 1, n), blockKey(7, 3, n), blockKey(7_000_007, 2, n), blockKey(0, 2, n), 'k', `${blockKey(7, 2, n)}#1`];

  for (const c of COMPRESSIONS) {
    void it(`${c}: a well-formed block decodes only under the key it was encoded for`, () => {
      for (const plain of [compressibleBytes(3 * S + 9), randomBytes(SEED ^ 0x8888, S + 1)]) {
        const n = plain.length;
        const own = blockKey(7, 2, n);
        const object = encodeBlock(plain, c, own);
        assert.deepEqual(decodeBlock(object, own, n), plain);
        const striped = object[4] === 3;
        const header = decodeBlockHeader(object.subarray(0, blockHeaderBytes(n)), own, n);
        assert.equal(header !== undefined, striped);
        for (const key of others(n)) {
          const misplaced = (err: unknown): boolean =>
            err instanceof CorruptBlockError && err.key === key && /identity mismatch: the copy is block 2 of slice 7, the key names (block \d+ of slice \d+|no block)/.test(err.message);
          assert.throws(() => decodeBlock(object, key, n), misplaced, `whole under ${key}`);
          assert.throws(() => decodeBlock(object, key), misplaced, `whole under ${key}, no length given`);
          if (striped) assert.throws(() => decodeBlockHeader(object.subarray(0, blockHeaderBytes(n)), key, n), misplaced, `header under ${key}`);
        }
        // The same block and slice under a key of another length: the length every reader expects fails first.
        assertCorrupt(() => decodeBlock(object, blockKey(7, 2, n + 1), n + 1), 'another length', blockKey(7, 2, n + 1));
      }
    });
  }

  void it('the header records slice id and block index where the layout says, for any safe slice id', () => {
    for (const id of [0, 1, 999_999, 2 ** 32 - 1, 2 ** 32, 2 ** 48 + 5, Number.MAX_SAFE_INTEGER]) {
      const plain = randomBytes(SEED ^ 0x9999, 100);
      const key = blockKey(id, 5, 100);
      const v3 = encodeBlock(plain, 'none', key);
      assert.equal(v3[4], 3);
      assert.equal(v3.readUInt32LE(5) + v3.readUIntLE(9, 3) * 2 ** 32, id);
      assert.equal(v3.readUInt32LE(12), 100);
      assert.equal(v3.readUInt32LE(16), 5);
      assert.equal(v3.readUInt32LE(20), crc32c(v3.subarray(24, blockHeaderBytes(100)), crc32c(v3.subarray(0, 20))));
      assert.deepEqual(decodeBlock(v3, key, 100), plain);
      const text = compressibleBytes(5000);
      const zkey = blockKey(id, 5, text.length);
      const v4 = encodeBlock(text, 'zstd', zkey);
      assert.equal(v4[4], 4);
      assert.equal(v4.readUInt32LE(20) + v4.readUInt32LE(24) * 2 ** 32, id);
      assert.equal(v4.readUInt32LE(28), 5);
      assert.equal(v4.length, BLOCK_WHOLE_ID_HEADER_BYTES + v4.readUInt32LE(16));
      assert.deepEqual(decodeBlock(v4, zkey, text.length), text);
    }
  });

  void it('a block encoded for a key that is not a block key records no block, and passes only under such keys', () => {
    const plain = randomBytes(SEED ^ 0xaaaa, 2 * S);
    for (const c of COMPRESSIONS) {
      const object = encodeBlock(c === 'none' ? plain : compressibleBytes(2 * S), c, 'a/b');
      const n = object.readUInt32LE(12);
      if (object[4] === 3) {
        assert.equal(object.readUInt32LE(5), 0xffffffff);
        assert.equal(object.readUIntLE(9, 3), 0xffffff);
        assert.equal(object.readUInt32LE(16), 0xffffffff);
      } else {
        assert.equal(object.readUInt32LE(20), 0xffffffff);
        assert.equal(object.readUInt32LE(24), 0xffffffff);
        assert.equal(object.readUInt32LE(28), 0xffffffff);
      }
      assert.equal(decodeBlock(object, 'a/b', n).length, n);
      assert.equal(decodeBlock(object, 'other', n).length, n);
      assert.throws(() => decodeBlock(object, blockKey(7, 0, n), n), /identity mismatch: the copy is of no block, the key names block 0 of slice 7/);
    }
  });

  void it('versions 1 and 2 record no identity: they pass under any key', () => {
    const plain = randomBytes(SEED ^ 0xbbbb, S + 3);
    const text = compressibleBytes(3 * S);
    for (const key of [key7(plain.length), blockKey(9, 4, plain.length), 'k']) {
      assert.deepEqual(decodeBlock(encodeV2(plain), key, plain.length), plain);
      assert.deepEqual(decodeBlock(encodeV1None(plain), key, plain.length), plain);
      assert.deepEqual(decodeBlock(encodeV1Compressed(text, 'zstd')!, key, text.length), text);
    }
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

  void it('isBlockKeyOf agrees with parseBlockKey', () => {
    const rand = mulberry32(SEED ^ 0xcccc);
    const ids = [0, 1, 999, 1000, 999_999, 1_000_000, 2 ** 32, Number.MAX_SAFE_INTEGER];
    for (let i = 0; i < 200; i++) ids.push(Math.floor(rand() * Number.MAX_SAFE_INTEGER));
    for (const id of ids) {
      const key = blockKey(id, id % 17, 1 + (id % 4194304));
      assert.ok(isBlockKeyOf(key, id, id % 17), key);
      assert.ok(!isBlockKeyOf(key, id + 1, id % 17), `${key} is not slice ${id + 1}`);
      assert.ok(!isBlockKeyOf(key, id, (id % 17) + 1), `${key} is not block ${(id % 17) + 1}`);
      if (id > 0) assert.ok(!isBlockKeyOf(key, id - 1, id % 17));
    }
    const junk = ['', 'chunks/', 'chunks/0/0/0_0', 'chunks/0/0/00_0_1', 'chunks/0/0/0_01_1', 'chunks/0/0/0_0_01', 'chunks/00/0/0_0_1', 'chunks/1/0/0_0_1',
      'chunks/0/1/0_0_1', 'chunks/0/0/0_0_1 ', ' chunks/0/0/0_0_1', 'chunks/0/0/0_0_1/', 'chunks/0/0/0_0_1_2', 'chunks/0/0/0_0_', 'chunks/0/0/0_0_99999999999999999',
      'chunks/0/0/0_0_9007199254740993', 'chunks/0/0/0_0_1#0', 'chunks/0/0/0__1', 'chunks/0/0/-0_0_1'];
    for (const k of junk) {
      assert.equal(parseBlockKey(k), undefined, k);
      assert.ok(!isBlockKeyOf(k, 0, 0), JSON.stringify(k));
    }
    assert.ok(isBlockKeyOf('chunks/0/0/0_0_9007199254740991', 0, 0));
    assert.ok(isBlockKeyOf('chunks/9007199254/9007199254740/9007199254740991_3_1', Number.MAX_SAFE_INTEGER, 3));
  });

  void it('blockKey asserts safe non-negative integers', () => {
    for (const bad of [-1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER + 1, Infinity]) {
      assert.throws(() => blockKey(bad, 0, 1), /sliceId/);
      assert.throws(() => blockKey(0, bad, 1), /blockIndex/);
      assert.throws(() => blockKey(0, 0, bad), /blockBytes/);
    }
  });
});
