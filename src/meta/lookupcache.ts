/**
 * Client-side cache of names and attributes for path resolution (lookup), so that resolving /a/b/c does not
 * cost engine reads for every component on every call.
 *
 * Consistency: the cache is a layer fed by the effects of this client's committed transactions: every
 * mutation reports what it changed (names removed or moved, inodes whose attributes changed, the attributes
 * it committed) and `apply` consumes that before the mutation returns, so a client always sees its own
 * changes. A mutation that failed is applied too (its outcome may be unknown), without storing anything. Other clients' changes are seen within `ttlMs`, as
 * with the kernel's entry and attribute timeouts. A lookup that raced with a mutation does not store its
 * possibly stale result: results are stored only if no invalidation happened since the lookup began.
 */

import type { Attr } from './types.js';

interface Timed<T> {
  value: T;
  expires: number;
}

/** What one transaction changed, as the lookup cache needs to know it (Meta's mutations report it). */
export interface CacheEffects {
  /** Names removed, replaced or moved: [parent, name]. */
  entries: Array<readonly [parent: number, name: string]>;
  /** Inodes whose attributes (or names in them, for directories) changed. */
  inos: number[];
  /** Attributes as committed, stored when nothing else was invalidated meanwhile. */
  attrs: Attr[];
  /** Anything may have changed (inodes destroyed): drop everything. */
  all: boolean;
}

export class LookupCache {
  readonly ttlMs: number;
  readonly entriesMax: number;
  private readonly attrs = new Map<number, Timed<Attr>>();
  private readonly entries = new Map<string, Timed<number>>();
  /** Bumped by every invalidation. */
  generation = 0;

  constructor(ttlMs: number, entriesMax = 100_000) {
    this.ttlMs = ttlMs;
    this.entriesMax = entriesMax;
  }

  get enabled(): boolean {
    return this.ttlMs > 0;
  }

  attr(ino: number, now: number): Attr | undefined {
    const t = this.attrs.get(ino);
    if (t === undefined) return undefined;
    if (t.expires <= now) {
      this.attrs.delete(ino);
      return undefined;
    }
    return t.value;
  }

  entry(parent: number, name: string, now: number): number | undefined {
    const k = `${parent}/${name}`;
    const t = this.entries.get(k);
    if (t === undefined) return undefined;
    if (t.expires <= now) {
      this.entries.delete(k);
      return undefined;
    }
    return t.value;
  }

  /**
   * When a lookup of `name` in `parent` stops being answered here: the earliest expiry of the directory's
   * attributes, the entry and the entry's attributes (0 when one is missing).
   */
  expiresAt(parent: number, name: string): number {
    const e = this.entries.get(`${parent}/${name}`);
    const p = this.attrs.get(parent);
    const a = e === undefined ? undefined : this.attrs.get(e.value);
    if (e === undefined || p === undefined || a === undefined) return 0;
    return Math.min(e.expires, p.expires, a.expires);
  }

  /** Stores results of a lookup that began at `generation` (dropped if anything was invalidated since). */
  store(generation: number, now: number, attrs: Attr[], entry?: [parent: number, name: string, ino: number]): void {
    if (!this.enabled || generation !== this.generation) return;
    if (this.attrs.size + this.entries.size > this.entriesMax) this.clear();
    const expires = now + this.ttlMs;
    for (const a of attrs) this.attrs.set(a.ino, { value: a, expires });
    if (entry !== undefined) this.entries.set(`${entry[0]}/${entry[1]}`, { value: entry[2], expires });
  }

  /** Drops the attributes of inodes (names unchanged). */
  forget(...inos: number[]): void {
    this.generation++;
    for (const ino of inos) this.attrs.delete(ino);
  }

  /** Drops names (removed or moved) and the attributes of inodes (changed). */
  forgetNames(entries: ReadonlyArray<readonly [parent: number, name: string]>, inos: readonly number[]): void {
    this.generation++;
    for (const [parent, name] of entries) this.entries.delete(`${parent}/${name}`);
    for (const ino of inos) this.attrs.delete(ino);
  }

  /**
   * Consumes the effects of one of this client's transactions, which began when the generation was `gen`:
   * invalidates what it changed; if it committed and nothing else was invalidated since it began, what it
   * committed is the freshest view there is and is stored.
   */
  apply(effects: CacheEffects, gen: number, now: number, committed: boolean): void {
    if (effects.all) this.clear();
    else if (effects.entries.length > 0 || effects.inos.length > 0) this.forgetNames(effects.entries, effects.inos);
    else return;
    if (committed && effects.attrs.length > 0 && this.generation === gen + 1) this.store(this.generation, now, effects.attrs);
  }

  /** Drops everything. */
  clear(): void {
    this.generation++;
    this.attrs.clear();
    this.entries.clear();
  }
}
