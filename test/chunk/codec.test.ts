import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crc32c } from '@node-rs/crc32';
import {
  BLOCK_HEADER_BYTES,
  BLOCK_STRIPE_BYTES,
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
import { blockKey, parseBlockKey } from '../../src/chunk/keys.js';
import { CorruptBlockError, UsageError } from '../../src/errors.js';
import { mulberry32, randomSeed } from '../../src/util/random.js';
import { encodeV1None } from '../helpers/blocks.js';

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
        assert.equal(object.length, blockHeaderBytes(bytes) + bytes);
        assert.equal(object[4], 2, 'uncompressed blocks are striped (version 2)');
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
      ['version 3', (b) => b.writeUInt8(3, 4), /unknown format version 3/],
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
      const object = name === 'version 3' || name === 'payload length' ? bad : withObjectCrc(bad);
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

const S = BLOCK_STRIPE_BYTES;


/** Plain bytes [from, to) of `object` (version 2, `plainBytes` long) by the ranged-read protocol. */
function readRange(object: Buffer, plainBytes: number, from: number, to: number): Buffer {
  const header = decodeBlockHeader(object.subarray(0, blockHeaderBytes(plainBytes)), 'k', plainBytes);
  assert.ok(header !== undefined, 'a version 2 header');
  const span = stripeSpan(plainBytes, from, to);
  assert.ok(span.plainStart <= from && to <= span.plainEnd && span.plainStart % S === 0);
  assert.equal(span.offset, blockHeaderBytes(plainBytes) + span.plainStart);
  const data = decodeStripes(header, span, object.subarray(span.offset, span.offset + span.length), 'k');
  return data.subarray(from - span.plainStart, to - span.plainStart);
}

/** Lengths around every stripe edge, a full 4 MiB block, and seeded random ones. */
function edgeLengths(): number[] {
  const rand = mulberry32(SEED ^ 0x2222);
  const out = [0, 1, S - 1, S, S + 1, 2 * S - 1, 2 * S, 2 * S + 1, 4 * MiB - 1, 4 * MiB];
  for (let i = 0; i < 6; i++) out.push(1 + Math.floor(rand() * 4 * MiB));
  return out;
}

void describe('block codec version 2 (striped, uncompressed)', () => {
  void it('header size follows from the plain length alone', () => {
    assert.equal(blockHeaderBytes(0), 24);
    assert.equal(blockHeaderBytes(1), 28);
    assert.equal(blockHeaderBytes(S), 28);
    assert.equal(blockHeaderBytes(S + 1), 32);
    assert.equal(blockHeaderBytes(4 * MiB), 24 + 4 * 64);
    assert.equal(blockStripes(4 * MiB), 64);
    assert.equal(blockFrameBytes(4 * MiB), 280);
  });

  for (const bytes of edgeLengths()) {
    void it(`${bytes} bytes: round trip whole, framed and by ranges at every stripe edge`, () => {
      const plain = randomBytes(SEED + 7 * bytes, bytes);
      const object = encodeBlock(plain, 'none');
      assert.equal(object[4], 2);
      assert.equal(object.length, blockHeaderBytes(bytes) + bytes);
      assert.deepEqual(decodeBlock(object, 'k', bytes), plain);
      // Framed, with the space of this block's size and of a larger block size: the same object.
      for (const frame of [blockHeaderBytes(bytes), blockFrameBytes(4 * MiB), blockFrameBytes(64 * MiB)]) {
        const framed = Buffer.alloc(frame + bytes, 0xee);
        plain.copy(framed, frame);
        const got = encodeBlockFramed(framed, 'none', frame);
        assert.equal(got.buffer, framed.buffer, 'no copy');
        assert.deepEqual(got, object);
      }
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
      for (const [a, b] of ranges) assert.deepEqual(readRange(object, bytes, a, b), plain.subarray(a, b), `range ${a}..${b}`);
    });
  }

  void it('a flipped byte in any stripe or anywhere in the header is detected by whole and ranged reads', () => {
    const bytes = 3 * S + 1000;
    const plain = randomBytes(SEED ^ 0x3333, bytes);
    const object = encodeBlock(plain, 'none');
    const h = blockHeaderBytes(bytes);
    const rand = mulberry32(SEED ^ 0x4444);
    for (let at = 0; at < h; at++) {
      for (const mask of [0x01, 0x03, 0x80, 0xff]) {
        const bad = Buffer.from(object);
        bad[at]! ^= mask;
        assertCorrupt(() => decodeBlock(bad, 'k', bytes), `whole, header flip ${mask} at ${at}`);
        // A damaged version byte may read as version 1: the ranged reader then reads the block whole, which fails.
        let header;
        try {
          header = decodeBlockHeader(bad.subarray(0, h), 'k', bytes);
        } catch (err) {
          assert.ok(err instanceof CorruptBlockError, String(err));
          continue;
        }
        assert.equal(header, undefined, `header flip ${mask} at ${at} passed as version 2`);
        assert.equal(at, 4);
      }
    }
    for (let stripe = 0; stripe < blockStripes(bytes); stripe++) {
      const end = Math.min(bytes, (stripe + 1) * S);
      for (const p of [stripe * S, end - 1, stripe * S + Math.floor(rand() * (end - stripe * S))]) {
        const bad = Buffer.from(object);
        bad[h + p]! ^= 0x01;
        assertCorrupt(() => decodeBlock(bad, 'k', bytes), `whole, flip at plain ${p}`);
        assertCorrupt(() => readRange(bad, bytes, p, p + 1), `range of the byte ${p}`);
        assertCorrupt(() => readRange(bad, bytes, 0, bytes), `range of the block, flip at ${p}`);
        assert.throws(() => readRange(bad, bytes, Math.max(0, stripe * S - 10), Math.min(bytes, end + 10)), /stripe \d+ checksum mismatch/);
        // The other stripes still read.
        for (let other = 0; other < blockStripes(bytes); other++) {
          if (other === stripe) continue;
          const a = other * S;
          const b = Math.min(bytes, a + S);
          assert.deepEqual(readRange(bad, bytes, a, b), plain.subarray(a, b));
        }
      }
    }
  });

  void it('a ranged answer of the wrong length, from the wrong place or for another length is rejected', () => {
    const bytes = 2 * S + 7;
    const plain = randomBytes(SEED ^ 0x5555, bytes);
    const object = encodeBlock(plain, 'none');
    const h = blockHeaderBytes(bytes);
    const header = decodeBlockHeader(object.subarray(0, h), 'k', bytes)!;
    const span = stripeSpan(bytes, S, S + 1);
    assert.deepEqual([span.first, span.end, span.plainStart, span.plainEnd, span.length], [1, 2, S, 2 * S, S]);
    const good = object.subarray(span.offset, span.offset + span.length);
    assert.deepEqual(decodeStripes(header, span, good, 'k'), plain.subarray(S, 2 * S));
    assertCorrupt(() => decodeStripes(header, span, good.subarray(1), 'k'), 'short');
    assertCorrupt(() => decodeStripes(header, span, Buffer.concat([good, Buffer.from([0])]), 'k'), 'long');
    assertCorrupt(() => decodeStripes(header, span, object.subarray(span.offset - 1, span.offset - 1 + span.length), 'k'), 'shifted');
    assertCorrupt(() => decodeStripes(header, span, object.subarray(h, h + S), 'k'), 'stripe 0 for stripe 1');
    // A whole object or a short one given as the header; a header read for another plain length.
    assertCorrupt(() => decodeBlockHeader(object, 'k', bytes), 'whole object as header');
    assertCorrupt(() => decodeBlockHeader(object.subarray(0, h - 1), 'k', bytes), 'short header');
    assertCorrupt(() => decodeBlockHeader(object.subarray(0, blockHeaderBytes(bytes + S)), 'k', bytes + S), 'other length');
    assertCorrupt(() => decodeBlockHeader(Buffer.alloc(h), 'k', bytes), 'zeros');
  });

  void it('fields are checked even with a valid header checksum', () => {
    const bytes = S + 5;
    const good = encodeBlock(randomBytes(SEED ^ 0x6666, bytes), 'none');
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

  void it('version 1 blocks still decode; compressed blocks stay version 1 and are read whole', () => {
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
      const object = encodeBlock(text, c);
      assert.equal(object[4], 1);
      assert.notEqual(object[5], 0);
      // The ranged reader asks for a header's worth; a compressed object may be shorter than that.
      assert.equal(decodeBlockHeader(object.subarray(0, blockHeaderBytes(text.length)), 'k', text.length), undefined);
      assert.deepEqual(decodeBlock(object, 'k', text.length), text);
      const framed = Buffer.alloc(blockFrameBytes(4 * MiB) + text.length);
      text.copy(framed, blockFrameBytes(4 * MiB));
      assert.deepEqual(decodeBlock(encodeBlockFramed(framed, c, blockFrameBytes(4 * MiB)), 'k'), text);
      // Incompressible data is stored striped, framed in place.
      const noise = randomBytes(SEED ^ 0x7777, 3 * S);
      const f2 = Buffer.alloc(blockFrameBytes(4 * MiB) + noise.length);
      noise.copy(f2, blockFrameBytes(4 * MiB));
      const striped = encodeBlockFramed(f2, c, blockFrameBytes(4 * MiB));
      assert.equal(striped.buffer, f2.buffer);
      assert.equal(striped[4], 2);
      assert.deepEqual(decodeBlock(striped, 'k', noise.length), noise);
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

  void it('blockKey asserts safe non-negative integers', () => {
    for (const bad of [-1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER + 1, Infinity]) {
      assert.throws(() => blockKey(bad, 0, 1), /sliceId/);
      assert.throws(() => blockKey(0, bad, 1), /blockIndex/);
      assert.throws(() => blockKey(0, 0, bad), /blockBytes/);
    }
  });
});
