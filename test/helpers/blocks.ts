/** Block objects as older Ferry versions wrote them, for tests that check they still read. */

import { crc32c } from '@node-rs/crc32';
import { BLOCK_HEADER_BYTES, BLOCK_MAGIC } from '../../src/chunk/codec.js';

/** A version 1 uncompressed block exactly as code before version 2 wrote it (pins the old layout). */
export function encodeV1None(plain: Buffer): Buffer {
  const out = Buffer.alloc(BLOCK_HEADER_BYTES + plain.length);
  BLOCK_MAGIC.copy(out, 0);
  out.writeUInt8(1, 4);
  out.writeUInt32LE(crc32c(plain), 8);
  out.writeUInt32LE(plain.length, 12);
  out.writeUInt32LE(plain.length, 16);
  out.writeUInt32LE(crc32c(out.subarray(0, 20)), 20);
  plain.copy(out, BLOCK_HEADER_BYTES);
  return out;
}
