/**
 * O_APPEND across clients. A client places appended bytes at the end of the file *as it last saw it*; another
 * client may have appended since. Slices are position-independent (their blocks are keyed by slice id), so
 * the commit can move the references to the file's real end instead, inside the transaction that reads the
 * length: no committed append is ever overwritten, and every batch stays contiguous.
 *
 *   assumed:  [ ........ file ........ ][ batch ]            appendAt = assumed end
 *   real:     [ ........ file ........ ][ other ][ batch ]   shift = real length - appendAt
 *
 * A moved reference that crosses a chunk boundary is split in two (same slice, `off` advanced), since a
 * reference lives inside one chunk.
 */

import type { SliceRef } from './slices.js';

export interface ChunkWrite {
  index: number;
  ref: SliceRef;
}

/** The writes moved by `shift` bytes (may be negative: the file shrank), split at chunk boundaries. */
export function shiftWrites(writes: ReadonlyArray<ChunkWrite>, shift: number, chunkBytes: number): ChunkWrite[] {
  if (shift === 0) return [...writes];
  const out: ChunkWrite[] = [];
  for (const { index, ref } of writes) {
    let start = index * chunkBytes + ref.pos + shift;
    if (!Number.isSafeInteger(start) || start < 0) throw new Error(`assertion failed: append moved to ${start}`);
    let off = ref.off;
    let left = ref.len;
    while (left > 0) {
      const i = Math.floor(start / chunkBytes);
      const pos = start - i * chunkBytes;
      const len = Math.min(left, chunkBytes - pos);
      out.push({ index: i, ref: { ...ref, pos, off, len } });
      start += len;
      off += len;
      left -= len;
    }
  }
  return out;
}
