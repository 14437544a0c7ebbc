/**
 * Placement and read order for a client in one region of a multi-region volume (DESIGN §6).
 *
 * Placement: the client writes blocks to its own region's bucket and records that region as the slice's
 * `home` — in the slice record and in every chunk reference to it, so a reader knows the home without a
 * lookup (chunk/store.ts ChunkStore `home`; meta/meta.ts Meta.write).
 *
 * Read order for slice S with home H, seen from region R: the buckets the block reader (cache/reader.ts) asks
 * after its tiers in front (memory, disk, ...), in this order:
 *
 *   H = R                          R, then every other bucket
 *   S known copied to R            R, H, then the others
 *   S not (yet) known copied to R  H, the others, R last
 *
 * "Known copied" comes from the slice record's `copies`, which the replicator sets only after every block of
 * S verified in that bucket. A block known not to be replicated is therefore never first asked of a bucket
 * that lacks it; R stays last in that order because the copy may have landed since we looked. A positive
 * answer never changes while the slice lives, so it is kept (up to knownMax ids); a negative one is kept
 * for negativeMs, so a hot unreplicated slice costs one metadata lookup per that period, not one per block.
 * Concurrent lookups of one slice are made once.
 */

import type { BlockSource, SourceStore } from '../cache/reader.js';
import type { SliceRefRec } from '../meta/types.js';
import type { ObjectStore } from '../object/store.js';
import { SingleFlight } from '../util/singleflight.js';

/** Slice ids remembered as copied to this region; past this the memory is cleared and relearned. */
const KNOWN_IDS_MAX = 1_000_000;
const NEGATIVE_MS_DEFAULT = 500;
/** Recent fallback reads kept for reports (the lab prints them). */
const FALLBACKS_KEPT_MAX = 100;

export interface PlacementOptions {
  /** The client's region. */
  region: string;
  primary: string;
  /** Every region's bucket; the client's own first is not required. */
  stores: ReadonlyMap<string, ObjectStore>;
  /** The slice's record (its `copies`), or undefined when it is gone. */
  lookup(id: number): Promise<SliceRefRec | undefined>;
  /** How long "not copied here yet" is believed, ms (default 500). */
  negativeMs?: number;
  /** Closes the stores other than the client's own (the ChunkStore closes that one) with the reader. Default true. */
  closeOthers?: boolean;
  now?: () => number;
}

export interface PlacementStats {
  /** Blocks served per region. */
  reads: Record<string, number>;
  /** Blocks that did not come from the first bucket asked. */
  fallbacks: number;
  /** Blocks whose copy in the client's own region was not (yet) there, so the home bucket served them. */
  homeReads: number;
  /** Copies that were missing, corrupt or unreachable (then the next bucket was tried). */
  badCopies: Record<string, number>;
  lookups: number;
}

export interface FallbackRead {
  key: string;
  region: string;
  position: number;
}

export class RegionPlacement implements BlockSource {
  readonly region: string;
  readonly primary: string;
  private readonly stores: ReadonlyMap<string, ObjectStore>;
  private readonly lookup: (id: number) => Promise<SliceRefRec | undefined>;
  private readonly negativeMs: number;
  private readonly closeOthers: boolean;
  private readonly now: () => number;
  private readonly own: SourceStore;
  /** Every region but the client's, primary first. */
  private readonly others: SourceStore[];
  private known = new Set<number>();
  private readonly notYet = new Map<number, number>();
  private readonly flights = new SingleFlight<number, boolean>();
  readonly stats: PlacementStats = { reads: {}, fallbacks: 0, homeReads: 0, badCopies: {}, lookups: 0 };
  /** The most recent reads that fell back past the first bucket asked. */
  readonly recentFallbacks: FallbackRead[] = [];

  constructor(options: PlacementOptions) {
    this.region = options.region;
    this.primary = options.primary;
    this.stores = options.stores;
    this.lookup = options.lookup;
    this.negativeMs = options.negativeMs ?? NEGATIVE_MS_DEFAULT;
    this.closeOthers = options.closeOthers ?? true;
    this.now = options.now ?? Date.now;
    const own = options.stores.get(options.region);
    if (own === undefined) throw new Error(`assertion failed: no bucket for the client's region ${options.region}`);
    this.own = { region: options.region, store: own };
    const names = [...options.stores.keys()].filter((r) => r !== options.region).sort((a, b) => (a === options.primary ? -1 : b === options.primary ? 1 : 0));
    this.others = names.map((region) => ({ region, store: options.stores.get(region)! }));
  }

  async order(id: number, home: string | undefined, signal?: AbortSignal): Promise<readonly SourceStore[]> {
    const h = home ?? this.primary;
    if (h === this.region || !this.stores.has(h)) return [this.own, ...this.others];
    const homeStore = this.others.find((s) => s.region === h)!;
    const rest = this.others.filter((s) => s.region !== h);
    signal?.throwIfAborted();
    if (await this.copiedHere(id)) return [this.own, homeStore, ...rest];
    return [homeStore, ...rest, this.own];
  }

  onRead(region: string, key: string, position: number): void {
    this.stats.reads[region] = (this.stats.reads[region] ?? 0) + 1;
    if (position === 0) return;
    this.stats.fallbacks++;
    if (region !== this.region) this.stats.homeReads++;
    this.recentFallbacks.push({ key, region, position });
    if (this.recentFallbacks.length > FALLBACKS_KEPT_MAX) this.recentFallbacks.shift();
  }

  onBadCopy(region: string): void {
    this.stats.badCopies[region] = (this.stats.badCopies[region] ?? 0) + 1;
  }

  /** Whether slice `id` is known to have a verified copy in this client's region. */
  private async copiedHere(id: number): Promise<boolean> {
    if (this.known.has(id)) return true;
    const until = this.notYet.get(id);
    if (until !== undefined) {
      if (this.now() < until) return false;
      this.notYet.delete(id);
    }
    return this.flights.do(id, async () => {
      this.stats.lookups++;
      const rec = await this.lookup(id);
      if (rec?.copies?.includes(this.region) === true) {
        if (this.known.size >= KNOWN_IDS_MAX) this.known = new Set();
        this.known.add(id);
        return true;
      }
      if (this.notYet.size >= KNOWN_IDS_MAX) this.notYet.clear();
      this.notYet.set(id, this.now() + this.negativeMs);
      return false;
    });
  }

  async close(): Promise<void> {
    if (!this.closeOthers) return;
    const errors: unknown[] = [];
    for (const s of this.others) await s.store.close().catch((e: unknown) => errors.push(e));
    if (errors.length > 0) throw errors[0];
  }
}
