/**
 * Block objects as older Ferry versions wrote them, for tests that check they still read. Each function is an
 * independent copy of the old writer (not a call into src/), so that a change to the codec cannot change the
 * fixtures with it.
 */

import { createRequire } from 'node:module';
import { crc32c } from '@node-rs/crc32';
import type * as Lz4 from 'lz4-napi';
import type * as ZstdBinding from 'zstd-napi/binding.js';

const MAGIC = Buffer.from('FRYB', 'latin1');
const FIXED = 24;
const STRIPE = 64 * 1024;
const requireNative = createRequire(import.meta.url);

/** A version 1 uncompressed block exactly as code before version 2 wrote it (pins the old layout). */
export function encodeV1None(plain: Buffer): Buffer {
  const out = Buffer.alloc(FIXED + plain.length);
  MAGIC.copy(out, 0);
  out.writeUInt8(1, 4);
  out.writeUInt32LE(crc32c(plain), 8);
  out.writeUInt32LE(plain.length, 12);
  out.writeUInt32LE(plain.length, 16);
  out.writeUInt32LE(crc32c(out.subarray(0, 20)), 20);
  plain.copy(out, FIXED);
  return out;
}

/**
 * A version 1 compressed block as code before version 3 wrote every compressed block (lz4 or zstd level 1),
 * or undefined when the compression would not make it smaller (that code then wrote version 2).
 */
export function encodeV1Compressed(plain: Buffer, compression: 'lz4' | 'zstd'): Buffer | undefined {
  if (plain.length === 0) return undefined;
  let payload: Buffer;
  if (compression === 'lz4') {
    payload = (requireNative('lz4-napi') as typeof Lz4).compressSync(plain);
    if (payload.length >= plain.length) return undefined;
  } else {
    const zstd = requireNative('zstd-napi/binding.js') as typeof ZstdBinding;
    const dst = Buffer.allocUnsafe(plain.length - 1);
    try {
      payload = dst.subarray(0, new zstd.CCtx().compress(dst, plain, 1));
    } catch {
      return undefined;
    }
  }
  const out = Buffer.alloc(FIXED + payload.length);
  MAGIC.copy(out, 0);
  out.writeUInt8(1, 4);
  out.writeUInt8(compression === 'lz4' ? 1 : 2, 5);
  out.writeUInt32LE(crc32c(plain), 8);
  out.writeUInt32LE(plain.length, 12);
  out.writeUInt32LE(payload.length, 16);
  payload.copy(out, FIXED);
  out.writeUInt32LE(crc32c(payload, crc32c(out.subarray(0, 20))), 20);
  return out;
}

/** A version 2 (striped, no identity) block exactly as code before version 3 wrote every uncompressed block. */
export function encodeV2(plain: Buffer): Buffer {
  const n = Math.ceil(plain.length / STRIPE);
  const h = FIXED + 4 * n;
  const out = Buffer.alloc(h + plain.length);
  for (let i = 0; i < n; i++) out.writeUInt32LE(crc32c(plain.subarray(i * STRIPE, Math.min(plain.length, (i + 1) * STRIPE))), FIXED + 4 * i);
  MAGIC.copy(out, 0);
  out.writeUInt8(2, 4);
  out.writeUInt8(0, 5);
  out.writeUInt8(16, 6);
  out.writeUInt32LE(crc32c(out.subarray(FIXED, h)), 8);
  out.writeUInt32LE(plain.length, 12);
  out.writeUInt32LE(plain.length, 16);
  out.writeUInt32LE(crc32c(out.subarray(0, 20)), 20);
  plain.copy(out, h);
  return out;
}
