/**
 * Deferred deletion in every bucket (DESIGN §4): a released slice (`delslice` record) keeps its objects for
 * the grace period; after it, its blocks are deleted in every region's bucket, and only then is the record
 * dropped. So a region that lags never finds a block gone while metadata it may still be showing names it,
 * and an interrupted run leaves the record behind to be finished next time (deletes are idempotent).
 *
 * `ferry gc` and `ferry replicate --grace` both run this; running both at once is harmless.
 */

import { blockKey } from '../chunk/keys.js';
import type { Meta } from '../meta/meta.js';
import type { ObjectStore } from '../object/store.js';

export interface DeleteReleasedResult {
  slices: number;
  bytes: number;
}

/** Block keys of a slice of `size` bytes cut into blocks of `blockBytes`. */
export function sliceBlockKeys(id: number, size: number, blockBytes: number): string[] {
  const keys: string[] = [];
  for (let i = 0; i * blockBytes < size; i++) keys.push(blockKey(id, i, Math.min(blockBytes, size - i * blockBytes)));
  return keys;
}

/**
 * Deletes the objects of slices released before `now - graceMs` from every store, then their records.
 * `slicesInFlight` slices are handled at once; `onDeleted` is told each one.
 */
export async function deleteReleasedSlices(
  meta: Meta,
  stores: readonly ObjectStore[],
  options: { graceMs: number; now?: number; slicesInFlight?: number; onDeleted?: (id: number, size: number) => void },
): Promise<DeleteReleasedResult> {
  const now = options.now ?? Date.now();
  const due = await meta.listDelSlices(now - options.graceMs + 1, Number.MAX_SAFE_INTEGER);
  const result: DeleteReleasedResult = { slices: 0, bytes: 0 };
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < due.length) {
      const d = due[next++]!;
      try {
        const keys = sliceBlockKeys(d.id, d.size, meta.format.blockBytes);
        await Promise.all(stores.map(async (store) => {
          for (const key of keys) await store.delete(key);
        }));
        await meta.dropDelSlice(d.id);
        result.slices++;
        result.bytes += d.size;
        options.onDeleted?.(d.id, d.size);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.slicesInFlight ?? 16) }, () => worker()));
  if (failure !== undefined) throw failure.err;
  return result;
}
