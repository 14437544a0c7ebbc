/**
 * The block codec: every block object in a bucket (and every block file in a disk cache) is a header followed
 * by the payload. The header makes a copy self-verifying wherever it lives (file, S3, a peer). Two versions,
 * dispatched on byte 4; this code writes both and accepts both:
 *
 * Version 1, whole-block (compressed blocks; every block written before version 2):
 *
 *   offset  bytes  field
 *        0      4  magic 'FRYB'
 *        4      1  format version 1
 *        5      1  compression: 0 none, 1 lz4, 2 zstd
 *        6      2  reserved, zero
 *        8      4  crc32c of the plain (uncompressed) bytes, u32 LE
 *       12      4  plain length, u32 LE
 *       16      4  payload length, u32 LE (catches truncated or padded downloads before decompressing)
 *       20      4  crc32c of bytes 0..19, then of the payload if compressed, u32 LE
 *       24      -  payload: the plain bytes, or their lz4 / zstd compression
 *
 * Version 2, striped (every uncompressed block): one crc32c per 64 KiB stripe of the plain bytes, so that any
 * range can be fetched and verified without the rest of the block.
 *
 *   offset  bytes  field
 *        0      4  magic 'FRYB'
 *        4      1  format version 2
 *        5      1  compression: 0 (version 2 holds only uncompressed payloads)
 *        6      1  log2 of the stripe size: 16 (64 KiB), the only value accepted
 *        7      1  reserved, zero
 *        8      4  crc32c of the stripe table (bytes 24..H-1), u32 LE
 *       12      4  plain length P, u32 LE
 *       16      4  payload length, u32 LE (= P)
 *       20      4  crc32c of bytes 0..19, u32 LE (so the table is covered through the field at 8)
 *       24     4n  stripe table: crc32c of stripe i = plain bytes [i*64Ki, min((i+1)*64Ki, P)), n = ceil(P/64Ki)
 *        H      P  the plain bytes, H = 24 + 4n
 *
 *   ranged read of plain [a, b):   GET [0, H)  and  GET [H + floor(a/64Ki)*64Ki, H + min(ceil(b/64Ki)*64Ki, P))
 *
 * H is a function of P alone, and P is in the block's key (chunk/keys.ts): a reader knows where every stripe
 * lives before it fetches anything, so it sends both GETs at once (one round trip, two requests) and skips the
 * first one when it still holds the verified table (cache/reader.ts remembers tables). A single GET of [0, end of
 * the range) would average half a block for random reads; stripe checksums interleaved with the data would
 * need one GET, but cost a copy of every block on write and on whole reads, and a reader could not tell a
 * version 1 block from a version 2 one without its header. Compressed blocks cannot be cut at plain offsets, so
 * they stay version 1 and are always read whole.
 *
 * Version 1 has two checksums: the object checksum is verified before any header field is used (so a damaged
 * length never sizes a buffer) and catches every change to the stored bytes, even one that would still
 * decompress to the same data; the data checksum covers the plain bytes, is computed once when a block is
 * first written and is checked after every decode (so a codec fault cannot pass either). Version 2: the header
 * checksum is verified before any other field is used, the table checksum before any stripe checksum, and each
 * stripe's checksum before its bytes are returned; together they cover every byte of the object.
 * Compression is kept only when it makes the block smaller.
 * The lz4 and zstd libraries are native addons, loaded on first use so that volumes without compression
 * never load them.
 */

import { createRequire } from 'node:module';
import { crc32c } from '@node-rs/crc32';
import type * as Lz4 from 'lz4-napi';
import type * as ZstdBinding from 'zstd-napi/binding.js';
import { assert, CorruptBlockError, UsageError } from '../errors.js';

export type Compression = 'none' | 'lz4' | 'zstd';

export const COMPRESSIONS: readonly Compression[] = ['none', 'lz4', 'zstd'];

export const BLOCK_MAGIC = Buffer.from('FRYB', 'latin1');
/** Whole-block blocks: compressed ones, and every block written before version 2. */
export const BLOCK_FORMAT_WHOLE = 1;
/** Striped blocks: every uncompressed block. */
export const BLOCK_FORMAT_STRIPED = 2;
/** The fixed part of every version's header (all of version 1's). */
export const BLOCK_HEADER_BYTES = 24;
/** Version 2's stripe: the unit of ranged reads and of their verification. */
export const BLOCK_STRIPE_BYTES = 64 * 1024;
const STRIPE_SHIFT = 16;
/** No block is larger than a chunk (64 MiB); a header claiming more is damaged or foreign. */
export const BLOCK_PLAIN_BYTES_MAX = 64 * 1024 * 1024;

const COMPRESSION_CODE: Record<Compression, number> = { none: 0, lz4: 1, zstd: 2 };
const CODE_COMPRESSION: readonly Compression[] = ['none', 'lz4', 'zstd'];

/** Level 1: block compression sits on the write path; higher levels cost far more CPU for a few percent. */
const ZSTD_LEVEL = 1;

/** For the CLI and volume settings: a Compression, or a UsageError naming the accepted values. */
export function parseCompression(s: string): Compression {
  const c = s.trim().toLowerCase();
  if ((COMPRESSIONS as readonly string[]).includes(c)) return c as Compression;
  throw new UsageError(`unknown compression '${s}': use one of ${COMPRESSIONS.join(', ')}`);
}

interface Codec {
  /** The compressed bytes if strictly smaller than `plain`, else undefined. */
  compress(plain: Buffer): Buffer | undefined;
  /** Exactly `plainBytes` bytes, or throws (any error: the caller reports corruption). */
  decompress(payload: Buffer, plainBytes: number): Buffer;
}

const requireNative = createRequire(import.meta.url);
const codecs = new Map<Compression, Codec>();

function loadNative<T>(pkg: string, compression: Compression): T {
  try {
    return requireNative(pkg) as T;
  } catch (err) {
    throw new Error(`compression '${compression}' needs the npm package ${pkg}, which failed to load: ${String(err)}`, {
      cause: err,
    });
  }
}

function makeLz4(): Codec {
  const lz4 = loadNative<typeof Lz4>('lz4-napi', 'lz4');
  return {
    compress(plain) {
      const c = lz4.compressSync(plain);
      return c.length < plain.length ? c : undefined;
    },
    decompress(payload, plainBytes) {
      // lz4-napi prepends the plain size (u32 LE) and allocates what it says: check it first so that a damaged
      // payload can never ask for more than the header (already verified) allows.
      if (payload.length < 4 || payload.readUInt32LE(0) !== plainBytes) throw new Error('lz4 size prefix mismatch');
      return lz4.uncompressSync(payload);
    },
  };
}

function makeZstd(): Codec {
  const zstd = loadNative<typeof ZstdBinding>('zstd-napi/binding.js', 'zstd');
  // The binding's one-shot calls are synchronous, so one context of each kind serves every call.
  const cctx = new zstd.CCtx();
  const dctx = new zstd.DCtx();
  return {
    compress(plain) {
      // A destination one byte smaller than the input: zstd fails when the result would not be smaller, which
      // is exactly when we store the block uncompressed.
      const dst = Buffer.allocUnsafe(plain.length - 1);
      let n: number;
      try {
        n = cctx.compress(dst, plain, ZSTD_LEVEL);
      } catch {
        return undefined;
      }
      return dst.subarray(0, n);
    },
    decompress(payload, plainBytes) {
      // Decoding into a buffer of the verified plain size bounds memory whatever the frame header claims.
      const dst = Buffer.allocUnsafe(plainBytes);
      const n = dctx.decompress(dst, payload);
      if (n !== plainBytes) throw new Error(`zstd produced ${n} bytes`);
      return dst;
    },
  };
}

function codec(compression: Exclude<Compression, 'none'>): Codec {
  let c = codecs.get(compression);
  if (c === undefined) {
    c = compression === 'lz4' ? makeLz4() : makeZstd();
    codecs.set(compression, c);
  }
  return c;
}

/** Loads the library a compression needs now, so that a volume fails at open rather than at its first write. */
export function loadCompression(compression: Compression): void {
  if (compression !== 'none') codec(compression);
}

/** Stripes of a version 2 block of `plainBytes`. */
export function blockStripes(plainBytes: number): number {
  return Math.ceil(plainBytes / BLOCK_STRIPE_BYTES);
}

/** The header of a version 2 block of `plainBytes`: where its plain bytes start. */
export function blockHeaderBytes(plainBytes: number): number {
  return BLOCK_HEADER_BYTES + 4 * blockStripes(plainBytes);
}

/**
 * The space a caller of encodeBlockFramed reserves in front of up to `blockBytes` plain bytes: the largest
 * header such a block needs.
 */
export function blockFrameBytes(blockBytes: number): number {
  return blockHeaderBytes(blockBytes);
}

/**
 * The version 1 checksum stored at offset 20: header bytes 0..19, then the payload when it is compressed. An
 * uncompressed payload is the plain data, already covered by the crc at offset 8.
 */
function objectCrc(object: Buffer): number {
  const head = crc32c(object.subarray(0, 20));
  return object.readUInt8(5) === COMPRESSION_CODE.none ? head : crc32c(object.subarray(BLOCK_HEADER_BYTES), head);
}

/**
 * Writes a version 2 header for `plain` into out[at, at + blockHeaderBytes(plain.length)); `plain` must not
 * overlap that range (it normally follows it in the same buffer).
 */
function writeStripedHeader(out: Buffer, at: number, plain: Buffer): void {
  const n = blockStripes(plain.length);
  const table = out.subarray(at + BLOCK_HEADER_BYTES, at + BLOCK_HEADER_BYTES + 4 * n);
  for (let i = 0; i < n; i++) {
    table.writeUInt32LE(crc32c(plain.subarray(i * BLOCK_STRIPE_BYTES, Math.min(plain.length, (i + 1) * BLOCK_STRIPE_BYTES))), 4 * i);
  }
  BLOCK_MAGIC.copy(out, at);
  out.writeUInt8(BLOCK_FORMAT_STRIPED, at + 4);
  out.writeUInt8(COMPRESSION_CODE.none, at + 5);
  out.writeUInt8(STRIPE_SHIFT, at + 6);
  out.writeUInt8(0, at + 7);
  out.writeUInt32LE(crc32c(table), at + 8);
  out.writeUInt32LE(plain.length, at + 12);
  out.writeUInt32LE(plain.length, at + 16);
  out.writeUInt32LE(crc32c(out.subarray(at, at + 20)), at + 20);
}

/**
 * `plain` framed with a header: version 1 compressed with `compression` when that makes it smaller, else
 * version 2 (striped). The result never shares memory with `plain`.
 */
export function encodeBlock(plain: Buffer, compression: Compression): Buffer {
  assert(plain.length <= BLOCK_PLAIN_BYTES_MAX, `block of ${plain.length} bytes exceeds ${BLOCK_PLAIN_BYTES_MAX}`);
  assert(COMPRESSION_CODE[compression] !== undefined, `unknown compression ${String(compression)}`);
  if (compression !== 'none' && plain.length > 0) {
    const c = codec(compression).compress(plain);
    if (c !== undefined) {
      assert(c.length < plain.length, 'compressed payload not smaller');
      return encodeWhole(plain, compression, c);
    }
  }
  const h = blockHeaderBytes(plain.length);
  const out = Buffer.allocUnsafe(h + plain.length);
  plain.copy(out, h);
  writeStripedHeader(out, 0, plain);
  return out;
}

/** A version 1 block: `payload` is `plain` compressed with `used`. */
function encodeWhole(plain: Buffer, used: Exclude<Compression, 'none'>, payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(BLOCK_HEADER_BYTES + payload.length);
  BLOCK_MAGIC.copy(out, 0);
  out.writeUInt8(BLOCK_FORMAT_WHOLE, 4);
  out.writeUInt8(COMPRESSION_CODE[used], 5);
  out.writeUInt16LE(0, 6);
  out.writeUInt32LE(crc32c(plain), 8);
  out.writeUInt32LE(plain.length, 12);
  out.writeUInt32LE(payload.length, 16);
  payload.copy(out, BLOCK_HEADER_BYTES);
  out.writeUInt32LE(objectCrc(out), 20);
  return out;
}

/**
 * Like encodeBlock, for a caller that reserved `frameBytes` (at least blockFrameBytes of its block size) in
 * front of the plain bytes: `framed` = [frameBytes of space][plain]. Without compression (or when compression
 * does not shrink the block) the header is written in place, at the end of the space, and a view of `framed`
 * is returned — no copy of the block on the write path.
 */
export function encodeBlockFramed(framed: Buffer, compression: Compression, frameBytes: number): Buffer {
  assert(framed.length >= frameBytes, 'framed block shorter than its header space');
  const plain = framed.subarray(frameBytes);
  if (compression !== 'none' && plain.length > 0) {
    const c = codec(compression).compress(plain);
    if (c !== undefined) {
      assert(c.length < plain.length, 'compressed payload not smaller');
      return encodeWhole(plain, compression, c);
    }
  }
  assert(plain.length <= BLOCK_PLAIN_BYTES_MAX, `block of ${plain.length} bytes exceeds ${BLOCK_PLAIN_BYTES_MAX}`);
  const h = blockHeaderBytes(plain.length);
  assert(h <= frameBytes, `header of ${h} bytes does not fit in ${frameBytes} bytes of space`);
  writeStripedHeader(framed, frameBytes - h, plain);
  return framed.subarray(frameBytes - h);
}

/**
 * The verified plain bytes of an encoded block (either version), or CorruptBlockError (naming `key`) when
 * anything about the copy is wrong: too short, bad magic, unknown version, object length (a truncated or
 * padded download), any checksum, unknown compression, decompression failure, plain length other than
 * `expectedPlainBytes` (when given). The result may share memory with `object`.
 */
export function decodeBlock(object: Buffer, key: string, expectedPlainBytes?: number): Buffer {
  const version = checkMagic(object, key);
  if (version === BLOCK_FORMAT_STRIPED) {
    const header = checkStripedHeader(object, key, expectedPlainBytes);
    const h = blockHeaderBytes(header.plainBytes);
    if (object.length !== h + header.plainBytes) {
      throw new CorruptBlockError(key, `payload is ${object.length - h} bytes, header says ${header.plainBytes}`);
    }
    const plain = object.subarray(h);
    checkStripes(header, 0, plain, key);
    return plain;
  }
  return decodeWhole(object, key, expectedPlainBytes);
}

/**
 * The format version byte of an object (or its first bytes) that starts with the block magic, else undefined.
 * Unverified: it may route a read (a version 1 block is fetched whole), never vouch for any byte.
 */
export function peekBlockVersion(head: Buffer): number | undefined {
  return head.length > 4 && head.subarray(0, 4).equals(BLOCK_MAGIC) ? head.readUInt8(4) : undefined;
}

/** The format version of an object that starts like a block, or CorruptBlockError. */
function checkMagic(object: Buffer, key: string): number {
  if (object.length < BLOCK_HEADER_BYTES) throw new CorruptBlockError(key, `object of ${object.length} bytes is shorter than a header`);
  if (!object.subarray(0, 4).equals(BLOCK_MAGIC)) throw new CorruptBlockError(key, 'bad magic');
  const version = object.readUInt8(4);
  if (version !== BLOCK_FORMAT_WHOLE && version !== BLOCK_FORMAT_STRIPED) throw new CorruptBlockError(key, `unknown format version ${version}`);
  return version;
}

function decodeWhole(object: Buffer, key: string, expectedPlainBytes: number | undefined): Buffer {
  const corrupt = (detail: string): CorruptBlockError => new CorruptBlockError(key, detail);
  const payloadBytes = object.readUInt32LE(16);
  if (object.length !== BLOCK_HEADER_BYTES + payloadBytes) {
    throw corrupt(`payload is ${object.length - BLOCK_HEADER_BYTES} bytes, header says ${payloadBytes}`);
  }
  if (objectCrc(object) !== object.readUInt32LE(20)) throw corrupt('object checksum mismatch');
  const code = object.readUInt8(5);
  const compression = CODE_COMPRESSION[code];
  if (compression === undefined) throw corrupt(`unknown compression code ${code}`);
  if (object.readUInt16LE(6) !== 0) throw corrupt('reserved header bytes are not zero');
  const dataCrc = object.readUInt32LE(8);
  const plainBytes = object.readUInt32LE(12);
  if (expectedPlainBytes !== undefined && plainBytes !== expectedPlainBytes) {
    throw corrupt(`plain length ${plainBytes}, expected ${expectedPlainBytes}`);
  }
  if (plainBytes > BLOCK_PLAIN_BYTES_MAX) throw corrupt(`plain length ${plainBytes} exceeds ${BLOCK_PLAIN_BYTES_MAX}`);
  const payload = object.subarray(BLOCK_HEADER_BYTES);
  let plain: Buffer;
  if (compression === 'none') {
    if (payloadBytes !== plainBytes) throw corrupt(`uncompressed payload of ${payloadBytes} bytes, header says ${plainBytes}`);
    plain = payload;
  } else {
    if (payloadBytes >= plainBytes) throw corrupt(`${compression} payload of ${payloadBytes} bytes is not smaller than ${plainBytes}`);
    const c = codec(compression);
    try {
      plain = c.decompress(payload, plainBytes);
    } catch (err) {
      throw corrupt(`${compression} decompression failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (plain.length !== plainBytes) throw corrupt(`${compression} decompressed to ${plain.length} bytes, header says ${plainBytes}`);
  }
  if (crc32c(plain) !== dataCrc) throw corrupt('data checksum mismatch');
  return plain;
}

/** The verified header of a version 2 block: what a ranged read needs to verify any of its stripes. */
export interface StripedHeader {
  readonly plainBytes: number;
  /** crc32c of each stripe, u32 LE (verified against the header). */
  readonly table: Buffer;
}

/** Checks a version 2 header at the start of `object` (which holds at least the header). */
function checkStripedHeader(object: Buffer, key: string, expectedPlainBytes: number | undefined): StripedHeader {
  const corrupt = (detail: string): CorruptBlockError => new CorruptBlockError(key, detail);
  if (crc32c(object.subarray(0, 20)) !== object.readUInt32LE(20)) throw corrupt('header checksum mismatch');
  const code = object.readUInt8(5);
  if (code !== COMPRESSION_CODE.none) throw corrupt(`version 2 block with compression code ${code}`);
  const shift = object.readUInt8(6);
  if (shift !== STRIPE_SHIFT) throw corrupt(`stripe size 2^${shift}, expected 2^${STRIPE_SHIFT}`);
  if (object.readUInt8(7) !== 0) throw corrupt('reserved header bytes are not zero');
  const plainBytes = object.readUInt32LE(12);
  if (object.readUInt32LE(16) !== plainBytes) throw corrupt(`payload length ${object.readUInt32LE(16)}, plain length ${plainBytes}`);
  if (expectedPlainBytes !== undefined && plainBytes !== expectedPlainBytes) {
    throw corrupt(`plain length ${plainBytes}, expected ${expectedPlainBytes}`);
  }
  if (plainBytes > BLOCK_PLAIN_BYTES_MAX) throw corrupt(`plain length ${plainBytes} exceeds ${BLOCK_PLAIN_BYTES_MAX}`);
  const h = blockHeaderBytes(plainBytes);
  if (object.length < h) throw corrupt(`object of ${object.length} bytes is shorter than its ${h}-byte header`);
  const table = object.subarray(BLOCK_HEADER_BYTES, h);
  if (crc32c(table) !== object.readUInt32LE(8)) throw corrupt('stripe table checksum mismatch');
  return { plainBytes, table };
}

/** Checks `data` = the plain bytes of stripes first, first+1, ... (all of them to the end of `data`). */
function checkStripes(header: StripedHeader, first: number, data: Buffer, key: string): void {
  const S = BLOCK_STRIPE_BYTES;
  for (let at = 0, i = first; at < data.length; at += S, i++) {
    if (crc32c(data.subarray(at, Math.min(data.length, at + S))) !== header.table.readUInt32LE(4 * i)) {
      throw new CorruptBlockError(key, `stripe ${i} checksum mismatch`);
    }
  }
}

/**
 * For a ranged read: the header at the start of a block object whose plain length is `plainBytes` (as its key
 * says). `head` is the object's first blockHeaderBytes(plainBytes) bytes, or all of a shorter object. Returns
 * the verified header of a version 2 block, `undefined` for a version 1 block (it can only be read whole), or
 * throws CorruptBlockError.
 */
export function decodeBlockHeader(head: Buffer, key: string, plainBytes: number): StripedHeader | undefined {
  const version = checkMagic(head, key);
  if (version === BLOCK_FORMAT_WHOLE) return undefined;
  const h = blockHeaderBytes(plainBytes);
  if (head.length !== h) throw new CorruptBlockError(key, `header of ${head.length} bytes, expected ${h}`);
  return checkStripedHeader(head, key, plainBytes);
}

/** Stripes [first, end) of a version 2 block, as plain bytes [plainStart, plainEnd) and object bytes [offset, +length). */
export interface StripeSpan {
  first: number;
  end: number;
  plainStart: number;
  plainEnd: number;
  offset: number;
  length: number;
}

/** The stripes that cover plain bytes [from, to) of a version 2 block of `plainBytes` (from < to <= plainBytes). */
export function stripeSpan(plainBytes: number, from: number, to: number): StripeSpan {
  assert(Number.isSafeInteger(from) && Number.isSafeInteger(to) && 0 <= from && from < to && to <= plainBytes, `range ${from}..${to} of a ${plainBytes}-byte block`);
  const S = BLOCK_STRIPE_BYTES;
  const first = Math.floor(from / S);
  const end = Math.ceil(to / S);
  const plainStart = first * S;
  const plainEnd = Math.min(plainBytes, end * S);
  return { first, end, plainStart, plainEnd, offset: blockHeaderBytes(plainBytes) + plainStart, length: plainEnd - plainStart };
}

/**
 * The verified plain bytes of `span`, given `data` = what a ranged GET of [span.offset, +span.length) returned
 * (a short or long answer is corruption), or CorruptBlockError. The result is `data`.
 */
export function decodeStripes(header: StripedHeader, span: StripeSpan, data: Buffer, key: string): Buffer {
  assert(span.plainEnd <= header.plainBytes, `stripes up to ${span.plainEnd} of a ${header.plainBytes}-byte block`);
  if (data.length !== span.length) throw new CorruptBlockError(key, `range of ${data.length} bytes, expected ${span.length}`);
  checkStripes(header, span.first, data, key);
  return data;
}
