/**
 * The block codec: every block object in a bucket (and every block file in a disk cache) is a header followed
 * by the payload. The header makes a copy self-verifying wherever it lives (file, S3, a peer), and from
 * version 3 on it names the block it is, so that a well-formed copy stored under another block's key (a buggy
 * copy, a replica mix-up) fails verification exactly like a damaged one. Four versions, dispatched on byte 4:
 *
 *   version  shape                         identity  written by this code
 *         1  whole (any compression)       no        no: compressed blocks, and all blocks before version 2
 *         2  striped (uncompressed only)   no        no: uncompressed blocks before version 3
 *         3  striped (uncompressed only)   yes       every block stored uncompressed
 *         4  whole (lz4 or zstd)           yes       every block stored compressed
 *
 * Version rules: every version above is accepted, and only those: any other version byte is a corrupt copy (a
 * block of a newer writer is refused, never guessed at). A change to a layout takes a new version number; this
 * code writes only the newest of each shape (3 and 4).
 *
 * Version 1, whole-block:
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
 * Version 2, striped: one crc32c per 64 KiB stripe of the plain bytes, so that any range can be fetched and
 * verified without the rest of the block.
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
 * Version 3, striped with identity: version 2 with the block's identity where version 2 kept fields that it
 * fixes anyway (compression none, stripes of 64 KiB, payload length = P, a checksum of its own for the table),
 * so H and every stripe's offset are version 2's:
 *
 *   offset  bytes  field
 *        0      4  magic 'FRYB'
 *        4      1  format version 3
 *        5      7  slice id, u56 LE (below 2^53; all ones: no block, see Identity)
 *       12      4  plain length P, u32 LE
 *       16      4  block index, u32 LE (all ones: no block)
 *       20      4  crc32c of bytes 0..19, continued over the stripe table (bytes 24..H-1), u32 LE
 *       24     4n  stripe table, as in version 2
 *        H      P  the plain bytes, H = 24 + 4n
 *
 *   ranged read of plain [a, b):   GET [0, H)  and  GET [H + floor(a/64Ki)*64Ki, H + min(ceil(b/64Ki)*64Ki, P))
 *
 * H is a function of P alone in versions 2 and 3, and P is in the block's key (chunk/keys.ts): a reader knows
 * where every stripe lives before it fetches anything, whichever of the two versions it will find, so it sends
 * both GETs at once (one round trip, two requests) and skips the first one when it still holds the verified
 * table (cache/reader.ts remembers tables). A single GET of [0, end of the range) would average half a block
 * for random reads; stripe checksums interleaved with the data would need one GET, but cost a copy of every
 * block on write and on whole reads, and a reader could not tell a whole block from a striped one without its
 * header. Compressed blocks cannot be cut at plain offsets, so they are whole (versions 1 and 4) and are always
 * read whole.
 *
 * Version 4, whole with identity (compressed blocks only):
 *
 *   offset  bytes  field
 *        0      4  magic 'FRYB'
 *        4      1  format version 4
 *        5      1  compression: 1 lz4, 2 zstd
 *        6      2  reserved, zero
 *        8      4  crc32c of the plain (uncompressed) bytes, u32 LE
 *       12      4  plain length, u32 LE
 *       16      4  payload length, u32 LE
 *       20      8  slice id, u64 LE (below 2^53; all ones: no block)
 *       28      4  block index, u32 LE (all ones: no block)
 *       32      4  crc32c of bytes 0..31, then of the payload, u32 LE
 *       36      -  payload: the lz4 / zstd compression of the plain bytes
 *
 * Identity (versions 3 and 4): the slice id and block index the block was encoded for, taken from its key. A
 * reader always knows the key it fetched, so decoding checks that key against the header: it must be the key
 * of that block of that slice, blockKey(slice id, block index, n). Its length n is the plain length every
 * reader expects (it reads it from the key), checked as such. A block encoded for a key that is not a block key
 * (a disk cache holds any key it is given) records no block (all ones) and is accepted only under a key that
 * is not a block key either. Versions 1 and 2 record no identity and are accepted under any key: a misplaced
 * copy of one of them passes.
 *
 * What is verified before what:
 * - Every version: the object is at least 24 bytes and starts with the magic and a known version, before any
 *   other byte is read.
 * - Versions 1 and 4: the payload length against the object's (a truncated or padded download), then the
 *   object checksum, before any other field is used (so a damaged length never sizes a buffer); it catches
 *   every change to the stored bytes, even one that would still decompress to the same data. Then the fields:
 *   compression, reserved bytes, the plain length against the one expected, and (4) the identity against the
 *   key, all before the payload is decompressed. Last the data checksum over the plain bytes, computed once
 *   when the block was first written and checked after every decode (so a codec fault cannot pass either).
 * - Version 2: the header checksum before any other field is used, the table checksum before any stripe
 *   checksum, and each stripe's checksum before its bytes are returned.
 * - Version 3: the header checksum (fixed fields and stripe table in one) before any field is trusted. Where the
 *   table ends follows from the plain length the caller expects (the key's), or without one from the header's
 *   own, bounded by the bytes at hand: it locates bytes already read and sizes nothing. Then the plain length
 *   against the one expected, then the identity against the key, then each stripe's checksum before its bytes
 *   are returned.
 * Every checksum together covers every byte of the object. Compression is kept only when it makes the block
 * smaller. The lz4 and zstd libraries are native addons, loaded on first use so that volumes without
 * compression never load them.
 */

import { createRequire } from 'node:module';
import { crc32c } from '@node-rs/crc32';
import type * as Lz4 from 'lz4-napi';
import type * as ZstdBinding from 'zstd-napi/binding.js';
import { assert, CorruptBlockError, UsageError } from '../errors.js';
import { isBlockKeyOf, parseBlockKey } from './keys.js';

export type Compression = 'none' | 'lz4' | 'zstd';

export const COMPRESSIONS: readonly Compression[] = ['none', 'lz4', 'zstd'];

export const BLOCK_MAGIC = Buffer.from('FRYB', 'latin1');
/** Whole-block blocks without identity: compressed ones, and every block written before version 2. Read only. */
export const BLOCK_FORMAT_WHOLE = 1;
/** Striped blocks without identity: uncompressed blocks written before version 3. Read only. */
export const BLOCK_FORMAT_STRIPED = 2;
/** Striped blocks with identity: every block this code stores uncompressed. */
export const BLOCK_FORMAT_STRIPED_ID = 3;
/** Whole blocks with identity: every block this code stores compressed. */
export const BLOCK_FORMAT_WHOLE_ID = 4;
/** The fixed part of a striped header (versions 2 and 3) and all of version 1's: the least any block holds. */
export const BLOCK_HEADER_BYTES = 24;
/** Version 4's header. */
export const BLOCK_WHOLE_ID_HEADER_BYTES = 36;
/** Version 2 and 3's stripe: the unit of ranged reads and of their verification. */
export const BLOCK_STRIPE_BYTES = 64 * 1024;
const STRIPE_SHIFT = 16;
/** No block is larger than a chunk (64 MiB); a header claiming more is damaged or foreign. */
export const BLOCK_PLAIN_BYTES_MAX = 64 * 1024 * 1024;

const COMPRESSION_CODE: Record<Compression, number> = { none: 0, lz4: 1, zstd: 2 };
const CODE_COMPRESSION: readonly Compression[] = ['none', 'lz4', 'zstd'];

/** Level 1: block compression sits on the write path; higher levels cost far more CPU for a few percent. */
const ZSTD_LEVEL = 1;

/** The identity a header records: slice id and block index, or NO_BLOCK for a key that is not a block key. */
interface Identity {
  sliceId: number;
  blockIndex: number;
}
const NO_BLOCK: Identity = { sliceId: -1, blockIndex: -1 };
const U32_ONES = 0xffffffff;
/** The high part (above the low 32 bits) of a slice id field with every bit set: "no block". */
const U24_ONES = 0xffffff;
/** Slice ids stay below 2^53: their high part (above 32 bits) below 2^21. */
const SLICE_ID_HIGH_LIMIT = 2 ** 21;
const TWO_32 = 2 ** 32;

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

/** Stripes of a striped block of `plainBytes`. */
export function blockStripes(plainBytes: number): number {
  return Math.ceil(plainBytes / BLOCK_STRIPE_BYTES);
}

/** The header of a striped block (version 2 or 3) of `plainBytes`: where its plain bytes start. */
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

/** The identity to record for a block stored under `key`. */
function identityOf(key: string): Identity {
  const parts = parseBlockKey(key);
  return parts === undefined ? NO_BLOCK : { sliceId: parts.sliceId, blockIndex: parts.blockIndex };
}

/** Writes a slice id field: u56 (version 3) or u64 (version 4) LE at `at`; all ones for no block. */
function writeSliceId(out: Buffer, at: number, bytes: 7 | 8, id: Identity): void {
  const none = id.sliceId < 0;
  out.writeUInt32LE(none ? U32_ONES : id.sliceId % TWO_32, at);
  const high = Math.floor(id.sliceId / TWO_32);
  if (bytes === 7) out.writeUIntLE(none ? U24_ONES : high, at + 4, 3);
  else out.writeUInt32LE(none ? U32_ONES : high, at + 4);
}

/**
 * Checks the identity fields of a verified header against `key`: the slice id field at `at` (7 or 8 bytes) and
 * the block index at `indexAt`. Allocates nothing unless the check fails.
 */
function checkIdentity(object: Buffer, at: number, bytes: 7 | 8, indexAt: number, key: string): void {
  const low = object.readUInt32LE(at);
  const high = bytes === 7 ? object.readUIntLE(at + 4, 3) : object.readUInt32LE(at + 4);
  const blockIndex = object.readUInt32LE(indexAt);
  if (low === U32_ONES && high === (bytes === 7 ? U24_ONES : U32_ONES)) {
    if (blockIndex !== U32_ONES) throw new CorruptBlockError(key, `identity of no block with block index ${blockIndex}`);
    if (parseBlockKey(key) === undefined) return;
    throw new CorruptBlockError(key, `identity mismatch: the copy is of no block, ${keyIdentity(key)}`);
  }
  if (high >= SLICE_ID_HIGH_LIMIT) throw new CorruptBlockError(key, `slice id ${high * TWO_32 + low} out of range`);
  const sliceId = high * TWO_32 + low;
  if (isBlockKeyOf(key, sliceId, blockIndex)) return;
  throw new CorruptBlockError(key, `identity mismatch: the copy is block ${blockIndex} of slice ${sliceId}, ${keyIdentity(key)}`);
}

/** What a key names, for an identity mismatch. */
function keyIdentity(key: string): string {
  const parts = parseBlockKey(key);
  return parts === undefined ? 'the key names no block' : `the key names block ${parts.blockIndex} of slice ${parts.sliceId}`;
}

/**
 * Writes a version 3 header for `plain` (to be stored under `key`) into out[at, at + blockHeaderBytes(plain.length));
 * `plain` must not overlap that range (it normally follows it in the same buffer).
 */
function writeStripedHeader(out: Buffer, at: number, plain: Buffer, id: Identity): void {
  const n = blockStripes(plain.length);
  const table = out.subarray(at + BLOCK_HEADER_BYTES, at + BLOCK_HEADER_BYTES + 4 * n);
  for (let i = 0; i < n; i++) {
    table.writeUInt32LE(crc32c(plain.subarray(i * BLOCK_STRIPE_BYTES, Math.min(plain.length, (i + 1) * BLOCK_STRIPE_BYTES))), 4 * i);
  }
  BLOCK_MAGIC.copy(out, at);
  out.writeUInt8(BLOCK_FORMAT_STRIPED_ID, at + 4);
  writeSliceId(out, at + 5, 7, id);
  out.writeUInt32LE(plain.length, at + 12);
  out.writeUInt32LE(id.sliceId < 0 ? U32_ONES : id.blockIndex, at + 16);
  out.writeUInt32LE(crc32c(table, crc32c(out.subarray(at, at + 20))), at + 20);
}

/**
 * `plain` framed for storage under `key` (the block key it will be stored under; any other key records no
 * block): version 4, compressed with `compression`, when that makes it smaller, else version 3 (striped). The
 * result never shares memory with `plain`.
 */
export function encodeBlock(plain: Buffer, compression: Compression, key: string): Buffer {
  assert(plain.length <= BLOCK_PLAIN_BYTES_MAX, `block of ${plain.length} bytes exceeds ${BLOCK_PLAIN_BYTES_MAX}`);
  assert(COMPRESSION_CODE[compression] !== undefined, `unknown compression ${String(compression)}`);
  const id = identityOf(key);
  if (compression !== 'none' && plain.length > 0) {
    const c = codec(compression).compress(plain);
    if (c !== undefined) {
      assert(c.length < plain.length, 'compressed payload not smaller');
      return encodeWhole(plain, compression, c, id);
    }
  }
  const h = blockHeaderBytes(plain.length);
  const out = Buffer.allocUnsafe(h + plain.length);
  plain.copy(out, h);
  writeStripedHeader(out, 0, plain, id);
  return out;
}

/** A version 4 block: `payload` is `plain` compressed with `used`. */
function encodeWhole(plain: Buffer, used: Exclude<Compression, 'none'>, payload: Buffer, id: Identity): Buffer {
  const h = BLOCK_WHOLE_ID_HEADER_BYTES;
  const out = Buffer.allocUnsafe(h + payload.length);
  BLOCK_MAGIC.copy(out, 0);
  out.writeUInt8(BLOCK_FORMAT_WHOLE_ID, 4);
  out.writeUInt8(COMPRESSION_CODE[used], 5);
  out.writeUInt16LE(0, 6);
  out.writeUInt32LE(crc32c(plain), 8);
  out.writeUInt32LE(plain.length, 12);
  out.writeUInt32LE(payload.length, 16);
  writeSliceId(out, 20, 8, id);
  out.writeUInt32LE(id.sliceId < 0 ? U32_ONES : id.blockIndex, 28);
  payload.copy(out, h);
  out.writeUInt32LE(crc32c(payload, crc32c(out.subarray(0, 32))), 32);
  return out;
}

/**
 * Like encodeBlock, for a caller that reserved `frameBytes` (at least blockFrameBytes of its block size) in
 * front of the plain bytes: `framed` = [frameBytes of space][plain]. Without compression (or when compression
 * does not shrink the block) the header is written in place, at the end of the space, and a view of `framed`
 * is returned — no copy of the block on the write path.
 */
export function encodeBlockFramed(framed: Buffer, compression: Compression, frameBytes: number, key: string): Buffer {
  assert(framed.length >= frameBytes, 'framed block shorter than its header space');
  const plain = framed.subarray(frameBytes);
  assert(plain.length <= BLOCK_PLAIN_BYTES_MAX, `block of ${plain.length} bytes exceeds ${BLOCK_PLAIN_BYTES_MAX}`);
  const id = identityOf(key);
  if (compression !== 'none' && plain.length > 0) {
    const c = codec(compression).compress(plain);
    if (c !== undefined) {
      assert(c.length < plain.length, 'compressed payload not smaller');
      return encodeWhole(plain, compression, c, id);
    }
  }
  const h = blockHeaderBytes(plain.length);
  assert(h <= frameBytes, `header of ${h} bytes does not fit in ${frameBytes} bytes of space`);
  writeStripedHeader(framed, frameBytes - h, plain, id);
  return framed.subarray(frameBytes - h);
}

/**
 * The verified plain bytes of an encoded block (any version) fetched under `key`, or CorruptBlockError (naming
 * `key`) when anything about the copy is wrong: too short, bad magic, unknown version, object length (a
 * truncated or padded download), any checksum, unknown compression, decompression failure, plain length other
 * than `expectedPlainBytes` (when given), or (versions 3 and 4) a block other than the one `key` names. The
 * result may share memory with `object`.
 */
export function decodeBlock(object: Buffer, key: string, expectedPlainBytes?: number): Buffer {
  const version = checkMagic(object, key);
  if (version === BLOCK_FORMAT_STRIPED || version === BLOCK_FORMAT_STRIPED_ID) {
    const header =
      version === BLOCK_FORMAT_STRIPED ? checkStripedHeader(object, key, expectedPlainBytes) : checkStripedIdHeader(object, key, expectedPlainBytes);
    const h = blockHeaderBytes(header.plainBytes);
    if (object.length !== h + header.plainBytes) {
      throw new CorruptBlockError(key, `payload is ${object.length - h} bytes, header says ${header.plainBytes}`);
    }
    const plain = object.subarray(h);
    checkStripes(header, 0, plain, key);
    return plain;
  }
  return decodeWhole(object, version, key, expectedPlainBytes);
}

/**
 * The format version byte of an object (or its first bytes) that starts with the block magic, else undefined.
 * Unverified: it may route a read, never vouch for any byte.
 */
export function peekBlockVersion(head: Buffer): number | undefined {
  return head.length > 4 && head.subarray(0, 4).equals(BLOCK_MAGIC) ? head.readUInt8(4) : undefined;
}

/**
 * Whether an object (or its first bytes) starts like a block that can only be read whole (versions 1 and 4:
 * not striped). Unverified, like peekBlockVersion: a ranged reader then fetches the object whole.
 */
export function peekBlockWhole(head: Buffer): boolean {
  const v = peekBlockVersion(head);
  return v === BLOCK_FORMAT_WHOLE || v === BLOCK_FORMAT_WHOLE_ID;
}

/** The format version of an object that starts like a block, or CorruptBlockError. */
function checkMagic(object: Buffer, key: string): number {
  if (object.length < BLOCK_HEADER_BYTES) throw new CorruptBlockError(key, `object of ${object.length} bytes is shorter than a header`);
  if (!object.subarray(0, 4).equals(BLOCK_MAGIC)) throw new CorruptBlockError(key, 'bad magic');
  const version = object.readUInt8(4);
  if (version < BLOCK_FORMAT_WHOLE || version > BLOCK_FORMAT_WHOLE_ID) throw new CorruptBlockError(key, `unknown format version ${version}`);
  return version;
}

/** A version 1 or 4 block: its plain bytes, verified. */
function decodeWhole(object: Buffer, version: number, key: string, expectedPlainBytes: number | undefined): Buffer {
  const corrupt = (detail: string): CorruptBlockError => new CorruptBlockError(key, detail);
  const v4 = version === BLOCK_FORMAT_WHOLE_ID;
  const h = v4 ? BLOCK_WHOLE_ID_HEADER_BYTES : BLOCK_HEADER_BYTES;
  if (object.length < h) throw corrupt(`object of ${object.length} bytes is shorter than a version ${version} header`);
  const crcAt = h - 4;
  const payloadBytes = object.readUInt32LE(16);
  if (object.length !== h + payloadBytes) {
    throw corrupt(`payload is ${object.length - h} bytes, header says ${payloadBytes}`);
  }
  const code = object.readUInt8(5);
  // Version 1 leaves an uncompressed payload to the data checksum; version 4 holds only compressed payloads.
  const head = crc32c(object.subarray(0, crcAt));
  const objectCrc = !v4 && code === COMPRESSION_CODE.none ? head : crc32c(object.subarray(h), head);
  if (objectCrc !== object.readUInt32LE(crcAt)) throw corrupt('object checksum mismatch');
  const compression = CODE_COMPRESSION[code];
  if (compression === undefined) throw corrupt(`unknown compression code ${code}`);
  if (v4 && compression === 'none') throw corrupt('version 4 block with compression code 0');
  if (object.readUInt16LE(6) !== 0) throw corrupt('reserved header bytes are not zero');
  const dataCrc = object.readUInt32LE(8);
  const plainBytes = object.readUInt32LE(12);
  if (expectedPlainBytes !== undefined && plainBytes !== expectedPlainBytes) {
    throw corrupt(`plain length ${plainBytes}, expected ${expectedPlainBytes}`);
  }
  if (plainBytes > BLOCK_PLAIN_BYTES_MAX) throw corrupt(`plain length ${plainBytes} exceeds ${BLOCK_PLAIN_BYTES_MAX}`);
  if (v4) checkIdentity(object, 20, 8, 28, key);
  const payload = object.subarray(h);
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

/** The verified header of a striped block: what a ranged read needs to verify any of its stripes. */
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

/**
 * Checks a version 3 header at the start of `object` (which holds at least the header) fetched under `key`:
 * the checksum over the fixed fields and the table first, then the plain length, then the identity.
 */
function checkStripedIdHeader(object: Buffer, key: string, expectedPlainBytes: number | undefined): StripedHeader {
  const corrupt = (detail: string): CorruptBlockError => new CorruptBlockError(key, detail);
  const claimed = object.readUInt32LE(12);
  // Unverified until the checksum below: it only says which bytes the checksum covers.
  const plainBytes = expectedPlainBytes ?? claimed;
  if (plainBytes > BLOCK_PLAIN_BYTES_MAX) throw corrupt(`plain length ${plainBytes} exceeds ${BLOCK_PLAIN_BYTES_MAX}`);
  const h = blockHeaderBytes(plainBytes);
  if (object.length < h) throw corrupt(`object of ${object.length} bytes is shorter than its ${h}-byte header`);
  const table = object.subarray(BLOCK_HEADER_BYTES, h);
  if (crc32c(table, crc32c(object.subarray(0, 20))) !== object.readUInt32LE(20)) throw corrupt('header checksum mismatch');
  if (claimed !== plainBytes) throw corrupt(`plain length ${claimed}, expected ${plainBytes}`);
  checkIdentity(object, 5, 7, 16, key);
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
 * For a ranged read: the header at the start of a block object fetched under `key` whose plain length is
 * `plainBytes` (as its key says). `head` is the object's first blockHeaderBytes(plainBytes) bytes, or all of a
 * shorter object. Returns the verified header of a striped block (version 2, or 3 recording the block `key`
 * names), `undefined` for a whole block (versions 1 and 4: it can only be read whole), or throws
 * CorruptBlockError.
 */
export function decodeBlockHeader(head: Buffer, key: string, plainBytes: number): StripedHeader | undefined {
  const version = checkMagic(head, key);
  if (version === BLOCK_FORMAT_WHOLE || version === BLOCK_FORMAT_WHOLE_ID) return undefined;
  const h = blockHeaderBytes(plainBytes);
  if (head.length !== h) throw new CorruptBlockError(key, `header of ${head.length} bytes, expected ${h}`);
  return version === BLOCK_FORMAT_STRIPED ? checkStripedHeader(head, key, plainBytes) : checkStripedIdHeader(head, key, plainBytes);
}

/** Stripes [first, end) of a striped block, as plain bytes [plainStart, plainEnd) and object bytes [offset, +length). */
export interface StripeSpan {
  first: number;
  end: number;
  plainStart: number;
  plainEnd: number;
  offset: number;
  length: number;
}

/** The stripes that cover plain bytes [from, to) of a striped block of `plainBytes` (from < to <= plainBytes). */
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
