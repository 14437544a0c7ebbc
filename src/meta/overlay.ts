/**
 * A transaction over any committed-state reader: buffers writes in memory, serves reads from the buffer
 * first, and merges buffered writes into scans. The engine core hands `writes` to the engine's commit.
 */

import { compareKeys, type Json, type Kind, type LogOp, type ScanOptions, type Txn } from './engine.js';

/** An engine's read primitives over its committed state (as seen by one transaction attempt). */
export interface Reader {
  get(kind: Kind, part: string, key: string): Promise<Json | undefined>;
  /** `extra`: how many more rows than options.limit to fetch, so buffered deletes cannot shorten a page. */
  scan(kind: Kind, part: string, options: ScanOptions | undefined, extra: number): Promise<Array<[string, Json]>>;
}

const sep = '\u0000';

export class OverlayTxn implements Txn {
  /** Buffered writes in order of first touch; value null = delete. */
  readonly writes = new Map<string, LogOp>();

  private readonly reader: Reader;

  constructor(reader: Reader) {
    this.reader = reader;
  }

  async get<T = Json>(kind: Kind, part: string, key: string): Promise<T | undefined> {
    const w = this.writes.get(kind + sep + part + sep + key);
    if (w !== undefined) return w[3] === null ? undefined : (w[3] as T);
    return (await this.reader.get(kind, part, key)) as T | undefined;
  }

  put(kind: Kind, part: string, key: string, value: object | string | number | boolean): void {
    if (value === null || value === undefined) throw new Error('assertion failed: put of null (use del)');
    const id = kind + sep + part + sep + key;
    this.writes.delete(id); // keep map order = order of last write
    this.writes.set(id, [kind, part, key, value as Json]);
  }

  del(kind: Kind, part: string, key: string): void {
    const id = kind + sep + part + sep + key;
    this.writes.delete(id);
    this.writes.set(id, [kind, part, key, null]);
  }

  async scan<T = Json>(kind: Kind, part: string, options?: ScanOptions): Promise<Array<[string, T]>> {
    const mine: LogOp[] = [];
    for (const w of this.writes.values()) {
      if (w[0] === kind && w[1] === part && (options?.after === undefined || compareKeys(w[2], options.after) > 0)) mine.push(w);
    }
    const base = await this.reader.scan(kind, part, options, mine.length);
    if (mine.length === 0) return base as Array<[string, T]>;
    const merged = new Map<string, Json>(base);
    for (const [, , key, value] of mine) {
      if (value === null) merged.delete(key);
      else merged.set(key, value);
    }
    // When the base page was cut by its limit, keys beyond its last one may exist in the engine: only
    // buffered keys up to that point are safe to include.
    const lastBase = base.length > 0 && options?.limit !== undefined && base.length >= options.limit + mine.length ? base[base.length - 1]![0] : undefined;
    let out = [...merged.entries()].sort((a, b) => compareKeys(a[0], b[0]));
    if (lastBase !== undefined) out = out.filter(([k]) => compareKeys(k, lastBase) <= 0);
    if (options?.limit !== undefined) out = out.slice(0, options.limit);
    return out as Array<[string, T]>;
  }
}
