/**
 * Egress accounting (DESIGN §10): every client counts the bytes it reads from each region's bucket, by
 * (bucket region -> client region) — the figure a user multiplies by the provider's transfer price.
 *
 *   EgressStore  wraps one region's bucket in a client; counts what its GETs returned (whole and ranged,
 *                retries included: what the provider bills), tagged with that region
 *   EgressMeter  the client's counts: since it started, and per EGRESS_WINDOW_MS window (the last hour kept);
 *                `flush` writes them as the client's egress record (meta/egress.ts), every flushMs and at close;
 *                `ferry status` sums the records per region pair
 *
 * Design choice: one record per client, rewritten whole (a few hundred bytes), rather than counters
 * incremented in shared records: no contention between clients, nothing lost or double-counted when a flush
 * fails (the next one writes the totals again), and a client's last flush is at most flushMs stale. A client
 * killed without closing loses at most flushMs of counts.
 */

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { MetaEngine } from '../meta/engine.js';
import { EGRESS_HOUR_MS, EGRESS_WINDOW_MS, putEgress, type EgressRec } from '../meta/egress.js';
import { canPutChecked, type CallOptions, type GetOptions, type ListOptions, type ListPage, type ObjectInfo, type ObjectStore } from '../object/store.js';

export const EGRESS_FLUSH_MS_DEFAULT = 10_000;

export class EgressMeter {
  /** The client's region. */
  readonly region: string;
  readonly client: string;
  private readonly started = Date.now();
  private readonly total = new Map<string, number>();
  private windows: Array<[number, Map<string, number>]> = [];
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private engine: MetaEngine | undefined;

  constructor(region: string) {
    this.region = region;
    this.client = `${hostname().slice(0, 64)}:${process.pid}:${randomBytes(4).toString('hex')}`;
  }

  add(from: string, bytes: number, now = Date.now()): void {
    if (bytes <= 0) return;
    this.total.set(from, (this.total.get(from) ?? 0) + bytes);
    const t = now - (now % EGRESS_WINDOW_MS);
    let last = this.windows[this.windows.length - 1];
    if (last === undefined || last[0] !== t) {
      last = [t, new Map()];
      this.windows.push(last);
      this.windows = this.windows.filter(([w]) => w + EGRESS_WINDOW_MS > now - EGRESS_HOUR_MS);
    }
    last[1].set(from, (last[1].get(from) ?? 0) + bytes);
    this.dirty = true;
  }

  /** Bytes read per bucket region since this client started. */
  totals(): Map<string, number> {
    return new Map(this.total);
  }

  /** Wraps `store`, the bucket of region `from`. */
  wrap(store: ObjectStore, from: string): ObjectStore {
    return new EgressStore(store, from, this);
  }

  /** Starts flushing to `engine` every `flushMs` (background; failures go to `onError`). */
  start(engine: MetaEngine, flushMs = EGRESS_FLUSH_MS_DEFAULT, onError?: (what: string, err: unknown) => void): void {
    this.engine = engine;
    this.timer = setInterval(() => {
      this.flush().catch((err: unknown) => onError?.('writing egress counters', err));
    }, flushMs);
    this.timer.unref();
  }

  /** Writes the record now if anything changed since the last write (concurrent calls share one write). */
  flush(): Promise<void> {
    if (this.engine === undefined || !this.dirty) return this.flushing ?? Promise.resolve();
    const engine = this.engine;
    this.flushing ??= (async () => {
      try {
        this.dirty = false;
        await putEgress(engine, this.client, this.record(Date.now()));
      } catch (err) {
        this.dirty = true;
        throw err;
      } finally {
        this.flushing = undefined;
      }
    })();
    return this.flushing;
  }

  private record(now: number): EgressRec {
    return {
      version: 1,
      region: this.region,
      started: this.started,
      updated: now,
      total: Object.fromEntries(this.total),
      windows: this.windows.filter(([w]) => w + EGRESS_WINDOW_MS > now - EGRESS_HOUR_MS).map(([w, m]) => [w, Object.fromEntries(m)]),
    };
  }

  /** Stops the timer and writes the last counts (idempotent; a failure is the caller's to report). */
  async close(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}

/** A bucket whose GETs are counted as egress from its region. */
export class EgressStore implements ObjectStore {
  readonly description: string;
  readonly inner: ObjectStore;
  private readonly from: string;
  private readonly meter: EgressMeter;

  constructor(inner: ObjectStore, from: string, meter: EgressMeter) {
    this.inner = inner;
    this.from = from;
    this.meter = meter;
    this.description = inner.description;
  }

  async get(key: string, options?: GetOptions): Promise<Buffer> {
    const data = await this.inner.get(key, options);
    this.meter.add(this.from, data.length);
    return data;
  }
  put(key: string, data: Buffer, options?: CallOptions): Promise<void> {
    return this.inner.put(key, data, options);
  }
  /** CheckedPutter, forwarded (write-back verifies an upload by it instead of a HEAD). */
  putChecked(key: string, data: Buffer, options?: CallOptions): Promise<boolean | undefined> {
    return canPutChecked(this.inner) ? this.inner.putChecked(key, data, options) : this.inner.put(key, data, options).then(() => undefined);
  }
  head(key: string, options?: CallOptions): Promise<ObjectInfo> {
    return this.inner.head(key, options);
  }
  delete(key: string, options?: CallOptions): Promise<void> {
    return this.inner.delete(key, options);
  }
  list(prefix: string, options?: ListOptions): Promise<ListPage> {
    return this.inner.list(prefix, options);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
