/**
 * The block codec: every block object in a bucket (and every block file in a disk cache) is a fixed header
 * followed by the payload. The header makes a copy self-verifying wherever it lives (file, S3, a peer):
 *
 *   offset  bytes  field
 *        0      4  magic 'FRYB'
 *        4      1  format version (this code writes and accepts only 1)
 *        5      1  compression: 0 none, 1 lz4, 2 zstd
 *        6      2  reserved, zero
 *        8      4  crc32c of the plain (uncompressed) bytes, u32 LE
 *       12      4  plain length, u32 LE
 *       16      4  payload length, u32 LE (catches truncated or padded downloads before decompressing)
 *       20      4  crc32c of bytes 0..19, then of the payload if compressed, u32 LE
 *       24      -  payload: the plain bytes, or their lz4 / zstd compression
 *
 * Two checksums: the object checksum is verified before any header field is used (so a damaged length never
 * sizes a buffer) and catches every change to the stored bytes, even one that would still decompress to the
 * same data; the data checksum covers the plain bytes, is computed once when a block is first written and is
 * checked after every decode, whichever compression a copy uses (so a codec fault cannot pass either).
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
export const BLOCK_FORMAT_VERSION = 1;
export const BLOCK_HEADER_BYTES = 24;
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

/**
 * The checksum stored at offset 20: header bytes 0..19, then the payload when it is compressed. An
 * uncompressed payload is the plain data, already covered by the crc at offset 8: one pass over the block
 * instead of two, on every write and every read.
 */
function objectCrc(object: Buffer): number {
  const head = crc32c(object.subarray(0, 20));
  return object.readUInt8(5) === COMPRESSION_CODE.none ? head : crc32c(object.subarray(BLOCK_HEADER_BYTES), head);
}

/**
 * `plain` framed with a header, compressed with `compression` when that makes it smaller (the header records
 * what was used). The result never shares memory with `plain`.
 */
export function encodeBlock(plain: Buffer, compression: Compression): Buffer {
  assert(plain.length <= BLOCK_PLAIN_BYTES_MAX, `block of ${plain.length} bytes exceeds ${BLOCK_PLAIN_BYTES_MAX}`);
  assert(COMPRESSION_CODE[compression] !== undefined, `unknown compression ${String(compression)}`);
  let used: Compression = 'none';
  let payload: Buffer = plain;
  if (compression !== 'none' && plain.length > 0) {
    const c = codec(compression).compress(plain);
    if (c !== undefined) {
      assert(c.length < plain.length, 'compressed payload not smaller');
      used = compression;
      payload = c;
    }
  }
  const out = Buffer.allocUnsafe(BLOCK_HEADER_BYTES + payload.length);
  BLOCK_MAGIC.copy(out, 0);
  out.writeUInt8(BLOCK_FORMAT_VERSION, 4);
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
 * Like encodeBlock, for a caller that reserved BLOCK_HEADER_BYTES in front of the plain bytes:
 * `framed` = [header space][plain]. Without compression (or when compression does not shrink the block) the
 * header is written in place and `framed` itself is returned — no copy of the block on the write path.
 */
export function encodeBlockFramed(framed: Buffer, compression: Compression): Buffer {
  assert(framed.length >= BLOCK_HEADER_BYTES, 'framed block shorter than its header');
  const plain = framed.subarray(BLOCK_HEADER_BYTES);
  if (compression !== 'none' && plain.length > 0) return encodeBlock(plain, compression);
  assert(plain.length <= BLOCK_PLAIN_BYTES_MAX, `block of ${plain.length} bytes exceeds ${BLOCK_PLAIN_BYTES_MAX}`);
  BLOCK_MAGIC.copy(framed, 0);
  framed.writeUInt8(BLOCK_FORMAT_VERSION, 4);
  framed.writeUInt8(COMPRESSION_CODE.none, 5);
  framed.writeUInt16LE(0, 6);
  framed.writeUInt32LE(crc32c(plain), 8);
  framed.writeUInt32LE(plain.length, 12);
  framed.writeUInt32LE(plain.length, 16);
  framed.writeUInt32LE(objectCrc(framed), 20);
  return framed;
}

/**
 * The verified plain bytes of an encoded block, or CorruptBlockError (naming `key`) when anything about the
 * copy is wrong: too short, bad magic, unknown version, payload length (a truncated or padded download), object
 * checksum, unknown compression, decompression failure, plain length other than `expectedPlainBytes` (when
 * given), data checksum. The result may share memory with `object`.
 */
export function decodeBlock(object: Buffer, key: string, expectedPlainBytes?: number): Buffer {
  const corrupt = (detail: string): CorruptBlockError => new CorruptBlockError(key, detail);
  if (object.length < BLOCK_HEADER_BYTES) throw corrupt(`object of ${object.length} bytes is shorter than a header`);
  if (!object.subarray(0, 4).equals(BLOCK_MAGIC)) throw corrupt('bad magic');
  const version = object.readUInt8(4);
  if (version !== BLOCK_FORMAT_VERSION) throw corrupt(`unknown format version ${version}`);
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
