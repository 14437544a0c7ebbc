/**
 * The slice catalogue: which slices are live (`slice`: size, reference count, home region, verified copies)
 * and which were released and wait out their grace period before gc deletes their objects (`delslice`). Used
 * by the writers (new ids, abandoned slices), the POSIX layer (references taken and dropped inside its
 * transactions), gc (released slices) and the bucket replicator (copies).
 *
 *   write ─▶ newSliceId ─▶ blocks stored ─▶ commit: slice{refs:1} ──▶ more refs (copy_file_range, compaction)
 *                                  │ failed                               │ last ref dropped
 *                                  ▼                                      ▼
 *                          abandonSlice ──────────────────────────▶ delslice{time} ─▶ gc deletes ─▶ dropDelSlice
 */

import type { MetaEngine, Txn, TxnOptions } from './engine.js';
import { IdPool } from './ids.js';
import { delslices, slices } from './records.js';
import type { DelSliceRec, SliceRefRec } from './types.js';

const SLICE_BATCH = 1000;
const SCAN_PAGE = 1000;

/** Runs a transaction the way its owner does (Meta's, which records the commit's seq for read-your-writes). */
export type TxnRunner = <R>(fn: (tx: Txn) => Promise<R>, options?: TxnOptions) => Promise<R>;

export class SliceCatalogue {
  private readonly ids: IdPool;
  private readonly txn: TxnRunner;
  private readonly now: () => number;

  constructor(engine: MetaEngine, txn: TxnRunner, now: () => number) {
    this.ids = new IdPool(engine, 'nextSlice', SLICE_BATCH);
    this.txn = txn;
    this.now = now;
  }

  newSliceId(): Promise<number> {
    return this.ids.take();
  }

  // ---- inside the caller's transaction

  /** Records a newly written slice's first reference, or one more reference of a known one (its home kept). */
  async refWritten(tx: Txn, id: number, size: number, home: string | undefined): Promise<void> {
    const s = await slices.get(tx, id);
    slices.put(tx, id, s === undefined ? { size, refs: 1, ...(home === undefined ? {} : { home }) } : { ...s, size, refs: s.refs + 1 });
  }

  /** Records a new slice with one reference (compaction's merged slice). */
  putNew(tx: Txn, id: number, size: number, home: string | undefined): void {
    slices.put(tx, id, { size, refs: 1, ...(home === undefined ? {} : { home }) } satisfies SliceRefRec);
  }

  /** One more reference to a live slice (id 0, zeros, is no slice). */
  async ref(tx: Txn, id: number, size: number): Promise<void> {
    if (id === 0) return;
    const s = await slices.get(tx, id);
    if (s === undefined) throw new Error(`assertion failed: reference to unknown slice ${id}`);
    if (s.size !== size) throw new Error(`assertion failed: slice ${id} size ${s.size} != ${size}`);
    slices.put(tx, id, { ...s, refs: s.refs + 1 });
  }

  /** One reference less; the last one releases the slice for deletion after the grace period. */
  async unref(tx: Txn, id: number): Promise<void> {
    if (id === 0) return;
    const s = await slices.get(tx, id);
    if (s === undefined) return;
    if (s.refs > 1) {
      slices.put(tx, id, { ...s, refs: s.refs - 1 });
      return;
    }
    slices.del(tx, id);
    delslices.put(tx, id, { size: s.size, time: this.now() } satisfies DelSliceRec);
  }

  /** unref of each id in turn (an id listed twice loses two references), their records read at once. */
  async unrefAll(tx: Txn, ids: readonly number[]): Promise<void> {
    // One read per slice, all at once; unref below finds them in the transaction.
    await Promise.all([...new Set(ids)].filter((id) => id !== 0).map((id) => slices.get(tx, id)));
    for (const id of ids) await this.unref(tx, id);
  }

  // ---- transactions of their own

  /** Marks a stored slice that will never be committed (a failed write) for deletion after the grace period. */
  async abandonSlice(id: number, size: number): Promise<void> {
    await this.txn(async (tx) => {
      if ((await slices.get(tx, id)) !== undefined) return;
      delslices.put(tx, id, { size, time: this.now() } satisfies DelSliceRec);
    });
  }

  /** Released slices whose grace period ended before `before` (ms). */
  async listDelSlices(before: number, limit = SCAN_PAGE): Promise<Array<{ id: number; size: number; time: number }>> {
    const out: Array<{ id: number; size: number; time: number }> = [];
    let after: number | undefined;
    while (out.length < limit) {
      const rows = await this.txn((tx) => delslices.scan(tx, { after, limit: SCAN_PAGE }), { readonly: true });
      for (const [id, v] of rows) if (v.time < before && out.length < limit) out.push({ id, size: v.size, time: v.time });
      if (rows.length < SCAN_PAGE) break;
      after = rows[rows.length - 1]![0];
    }
    return out;
  }

  /** Forgets a released slice once its objects are deleted. */
  async dropDelSlice(id: number): Promise<void> {
    await this.txn(async (tx) => {
      delslices.del(tx, id);
      await Promise.resolve();
    });
  }

  /** The records of some slices (undefined: released or never committed), a page per read. */
  async getSlices(ids: readonly number[]): Promise<Map<number, SliceRefRec | undefined>> {
    const out = new Map<number, SliceRefRec | undefined>();
    for (let i = 0; i < ids.length; i += SCAN_PAGE) {
      const page = ids.slice(i, i + SCAN_PAGE);
      const recs = await this.txn(async (tx) => Promise.all(page.map((id) => slices.get(tx, id))), { readonly: true });
      page.forEach((id, k) => out.set(id, recs[k]));
    }
    return out;
  }

  /**
   * Records verified copies of slices in more regions (the bucket replicator), in one transaction. Returns
   * the ids that are gone entirely — neither live nor awaiting deletion — whose objects gc may already have
   * deleted everywhere: the caller deletes the copies it just made of those. `also` runs last in the same
   * transaction, told those ids (the replicator writes its checkpoint there, so its counters move with its marks).
   */
  async addSliceCopies(marks: ReadonlyArray<{ id: number; regions: readonly string[] }>, also?: (tx: Txn, gone: readonly number[]) => void): Promise<number[]> {
    if (marks.length === 0) return [];
    return this.txn(async (tx) => {
      const gone: number[] = [];
      for (const { id, regions } of marks) {
        const s = await slices.get(tx, id);
        if (s === undefined) {
          if ((await delslices.get(tx, id)) === undefined) gone.push(id);
          continue;
        }
        const have = new Set(s.copies ?? []);
        const add = regions.filter((r) => r !== s.home && !have.has(r));
        if (add.length === 0) continue;
        slices.put(tx, id, { ...s, copies: [...have, ...add].sort() } satisfies SliceRefRec);
      }
      also?.(tx, gone);
      return gone;
    });
  }

  /** Every live slice: id -> {size, refs, home, copies}. */
  async listSlices(): Promise<Map<number, SliceRefRec>> {
    const out = new Map<number, SliceRefRec>();
    let after: number | undefined;
    for (;;) {
      const rows = await this.txn((tx) => slices.scan(tx, { after, limit: SCAN_PAGE }), { readonly: true });
      for (const [id, v] of rows) out.set(id, v);
      if (rows.length < SCAN_PAGE) return out;
      after = rows[rows.length - 1]![0];
    }
  }
}

/**
 * Removes from slice records the regions `keep` does not return (copies found missing by a bucket scan),
 * in one transaction.
 */
export async function removeSliceCopies(engine: MetaEngine, ids: readonly number[], keep: (id: number, rec: SliceRefRec & { copies: string[] }) => string[]): Promise<void> {
  await engine.txn(async (tx) => {
    for (const id of ids) {
      const s = await slices.get(tx, id);
      if (s?.copies === undefined) continue;
      const kept = keep(id, { ...s, copies: s.copies });
      if (kept.length !== s.copies.length) slices.put(tx, id, { ...s, copies: kept } satisfies SliceRefRec);
    }
  });
}
