/**
 * A transaction over any committed-state reader: buffers writes in memory, serves reads from the buffer
 * first, and merges buffered writes into scans. The engine core hands `writes` to the engine's commit.
 *
 * Reads of the committed state are kept for the attempt: a record or a range read twice costs one read (and
 * a read started early, beside others, is found by the code that needs it later). An attempt sees one value
 * per record whatever commits meanwhile; engines that check reads at commit check that value.
 */

import { compareKeys, type Json, type Kind, type LogOp, type ScanOptions, type Txn } from './engine.js';

/** An engine's read primitives over its committed state (as seen by one transaction attempt). */
export interface Reader {
  get(kind: Kind, part: string, key: string): Promise<Json | undefined>;
  /** `extra`: how many more rows than options.limit to fetch, so buffered deletes cannot shorten a page. */
  scan(kind: Kind, part: string, options: ScanOptions | undefined, extra: number): Promise<Array<[string, Json]>>;
  /**
   * Optional: Txn.getFollowing in one round trip: the record and the one its `field` names (undefined
   * `refKey` when the first is missing or names none), and that record.
   */
  getFollowing?(kind: Kind, part: string, key: string, field: string, refKind: Kind, refPart: string): Promise<{ value: Json | undefined; refKey: string | undefined; ref: Json | undefined }>;
}

/** The key a record's `field` names (a number or a string), or undefined (see Txn.getFollowing). */
export function refKeyOf(value: Json | undefined, field: string): string | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const v = value[field];
  if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v);
  if (typeof v === 'string') return v;
  return undefined;
}

const sep = '\u0000';

export class OverlayTxn implements Txn {
  /** Buffered writes in order of first touch; value null = delete. */
  readonly writes = new Map<string, LogOp>();

  private readonly reader: Reader;
  /** Committed-state reads of this attempt, by address (gets) or by the exact range asked (scans). */
  private readonly got = new Map<string, Promise<Json | undefined>>();
  private readonly scanned = new Map<string, Promise<Array<[string, Json]>>>();

  constructor(reader: Reader) {
    this.reader = reader;
  }

  async get<T = Json>(kind: Kind, part: string, key: string): Promise<T | undefined> {
    const id = kind + sep + part + sep + key;
    const w = this.writes.get(id);
    if (w !== undefined) return w[3] === null ? undefined : (w[3] as T);
    let p = this.got.get(id);
    if (p === undefined) {
      p = this.reader.get(kind, part, key);
      this.got.set(id, p);
    }
    return (await p) as T | undefined;
  }

  async getFollowing<A = Json, B = Json>(kind: Kind, part: string, key: string, field: string, refKind: Kind, refPart: string): Promise<[A | undefined, B | undefined]> {
    const id = kind + sep + part + sep + key;
    const follow = this.reader.getFollowing;
    if (this.writes.has(id) || this.got.has(id) || follow === undefined) {
      const a = await this.get<Json>(kind, part, key);
      const refKey = refKeyOf(a, field);
      return [a as A | undefined, refKey === undefined ? undefined : await this.get<B>(refKind, refPart, refKey)];
    }
    const both = follow.call(this.reader, kind, part, key, field, refKind, refPart);
    const first = both.then((r) => r.value);
    first.catch(() => undefined); // its failure is reported by `both` below (and by any later get of it)
    this.got.set(id, first);
    const r = await both;
    if (r.refKey === undefined) return [r.value as A | undefined, undefined];
    const refId = refKind + sep + refPart + sep + r.refKey;
    // The transaction's own write of the second record, or its earlier read, wins over the one just read.
    if (!this.writes.has(refId) && !this.got.has(refId)) this.got.set(refId, Promise.resolve(r.ref));
    return [r.value as A | undefined, await this.get<B>(refKind, refPart, r.refKey)];
  }

  /** The committed state of one range (see Reader.scan), read once per attempt. */
  private base(kind: Kind, part: string, options: ScanOptions | undefined, extra: number): Promise<Array<[string, Json]>> {
    const id = [kind, part, options?.after ?? '', options?.after === undefined ? 0 : 1, options?.limit ?? -1, extra].join(sep);
    let p = this.scanned.get(id);
    if (p === undefined) {
      p = this.reader.scan(kind, part, options, extra);
      this.scanned.set(id, p);
    }
    return p;
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
    const base = await this.base(kind, part, options, mine.length);
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
