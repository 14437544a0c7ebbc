/**
 * The object key layout of a volume's data, relative to the volume's prefix (DESIGN.md §4):
 *
 *   chunks/<sliceId / 1e6>/<sliceId / 1e3>/<sliceId>_<blockIndex>_<blockBytes>
 *
 * e.g. slice 1234567, block 2 of 4 MiB: `chunks/1/1234/1234567_2_4194304`. The two directory levels keep any
 * one listing level small; the trailing length lets a reader size its buffer and check a download before it
 * decodes, and lets `fsck`/`gc` know a block's extent from a listing alone.
 */

import { assert } from '../errors.js';

export interface BlockKeyParts {
  sliceId: number;
  blockIndex: number;
  /** Plain (decoded) length of the block. */
  blockBytes: number;
}

export const CHUNKS_PREFIX = 'chunks/';

function assertIndex(name: string, n: number): void {
  assert(Number.isSafeInteger(n) && n >= 0, `${name} must be a non-negative safe integer, got ${n}`);
}

export function blockKey(sliceId: number, blockIndex: number, blockBytes: number): string {
  assertIndex('sliceId', sliceId);
  assertIndex('blockIndex', blockIndex);
  assertIndex('blockBytes', blockBytes);
  return `${CHUNKS_PREFIX}${Math.floor(sliceId / 1e6)}/${Math.floor(sliceId / 1e3)}/${sliceId}_${blockIndex}_${blockBytes}`;
}

const BLOCK_KEY_RE = /^chunks\/(\d{1,16})\/(\d{1,16})\/(\d{1,16})_(\d{1,16})_(\d{1,16})$/;

/**
 * The parts of a block key, or undefined for any string that `blockKey` would not produce exactly (wrong
 * directories, leading zeros, signs, unsafe integers, trailing junk).
 */
export function parseBlockKey(key: string): BlockKeyParts | undefined {
  const m = BLOCK_KEY_RE.exec(key);
  if (m === null) return undefined;
  const sliceId = Number(m[3]);
  const blockIndex = Number(m[4]);
  const blockBytes = Number(m[5]);
  for (const n of [sliceId, blockIndex, blockBytes]) {
    if (!Number.isSafeInteger(n)) return undefined;
  }
  // Round trip: rejects leading zeros and directories that do not match the id.
  if (blockKey(sliceId, blockIndex, blockBytes) !== key) return undefined;
  return { sliceId, blockIndex, blockBytes };
}

const SLASH = 0x2f;
const UNDERSCORE = 0x5f;
const ZERO = 0x30;
const NINE = 0x39;
/** Digits of the largest safe integer: the most a key field may have (as BLOCK_KEY_RE allows). */
const DECIMAL_DIGITS_MAX = 16;

/**
 * Where the decimal field of `key` that starts at `at` and ends before character `end` (-1: at the end of the
 * key) ends, if it is written as blockKey writes a number (no sign, no leading zero, a safe integer) and equals
 * `n` (-1: any number), else -1.
 */
function decimalField(key: string, at: number, n: number, end: number): number {
  let v = 0;
  let i = at;
  for (; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c === end) break;
    if (c < ZERO || c > NINE || i - at >= DECIMAL_DIGITS_MAX) return -1;
    // Past 2^53 the sum rounds, but never down to a safe integer: such a field equals no `n` and fails below.
    v = v * 10 + (c - ZERO);
  }
  const digits = i - at;
  if (digits === 0 || (digits > 1 && key.charCodeAt(at) === ZERO) || !Number.isSafeInteger(v) || (n >= 0 && v !== n)) return -1;
  if (end < 0) return i;
  return i < key.length ? i + 1 : -1;
}

/**
 * Whether `key` is the key of block `blockIndex` of slice `sliceId`: exactly blockKey(sliceId, blockIndex, n)
 * for some length n. Equal to parsing it with parseBlockKey and comparing, but it allocates nothing: the block
 * codec asks it of every copy it verifies (chunk/codec.ts).
 */
export function isBlockKeyOf(key: string, sliceId: number, blockIndex: number): boolean {
  if (!key.startsWith(CHUNKS_PREFIX)) return false;
  let at = decimalField(key, CHUNKS_PREFIX.length, Math.floor(sliceId / 1e6), SLASH);
  if (at >= 0) at = decimalField(key, at, Math.floor(sliceId / 1e3), SLASH);
  if (at >= 0) at = decimalField(key, at, sliceId, UNDERSCORE);
  if (at >= 0) at = decimalField(key, at, blockIndex, UNDERSCORE);
  if (at >= 0) at = decimalField(key, at, -1, -1);
  return at === key.length;
}
