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
