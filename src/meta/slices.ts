/**
 * Slice arithmetic shared by meta (copy_file_range, truncate) and chunk (reads, compaction).
 *
 * A chunk's record is the ordered list of slice references written into it; later references win where they
 * overlap, and uncovered ranges read as zeros:
 *
 *   chunk  0 ............................................................ chunkBytes
 *   ref 1  [pos=0 ------------ len ---------------)
 *   ref 2              [pos --- len ---)                    later wins
 *   ref 3                                    [pos -- len --)  (id 0 = zeros)
 *   view   [ 1        ][ 2            ][ 1   ][ 3          ]
 *
 * A reference reads bytes [off, off+len) of slice `id`, whose stored size is `size`.
 */

export interface SliceRef {
  /** Position inside the chunk. */
  pos: number;
  /** Slice id; 0 means a run of zeros (a hole punched or trimmed by truncate). */
  id: number;
  /** Stored bytes of the whole slice (block keys depend on it). */
  size: number;
  /** Offset inside the slice where this reference starts. */
  off: number;
  len: number;
  /**
   * The slice's home region (whose bucket got its blocks), so a reader needs no lookup to find it; absent in
   * volumes without regions (the primary's bucket). Every copy of a reference keeps it.
   */
  home?: string;
}

/** The visible, non-overlapping pieces of a chunk in position order; gaps are implicit zeros. */
export function visibleSegments(refs: readonly SliceRef[]): SliceRef[] {
  let view: SliceRef[] = [];
  for (const r of refs) {
    if (r.len <= 0) continue;
    const end = r.pos + r.len;
    const next: SliceRef[] = [];
    let placed = false;
    for (const s of view) {
      const sEnd = s.pos + s.len;
      if (sEnd <= r.pos || s.pos >= end) {
        if (!placed && s.pos >= end) {
          next.push(r);
          placed = true;
        }
        next.push(s);
        continue;
      }
      if (s.pos < r.pos) next.push({ ...s, len: r.pos - s.pos });
      if (!placed) {
        next.push(r);
        placed = true;
      }
      if (sEnd > end) next.push({ ...s, pos: end, off: s.off + (end - s.pos), len: sEnd - end });
    }
    if (!placed) next.push(r);
    view = next;
  }
  return view;
}

/** The pieces of `view` that cover [from, to), cut to that range. */
export function cutSegments(view: readonly SliceRef[], from: number, to: number): SliceRef[] {
  const out: SliceRef[] = [];
  for (const s of view) {
    const start = Math.max(s.pos, from);
    const end = Math.min(s.pos + s.len, to);
    if (start < end) out.push({ ...s, pos: start, off: s.off + (start - s.pos), len: end - start });
  }
  return out;
}

/** Bytes of data a chunk's references make visible: holes and zero references (punched, trimmed) are free. */
export function dataBytes(refs: readonly SliceRef[]): number {
  let n = 0;
  for (const s of visibleSegments(refs)) if (s.id !== 0) n += s.len;
  return n;
}
