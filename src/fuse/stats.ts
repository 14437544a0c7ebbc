/**
 * Live counters of a mount, in the process's metrics registry (obs/metrics.ts): operations, errors and a
 * latency histogram per FUSE operation, bytes read and written, open handles. Rendered in Prometheus' text
 * format for `--metrics` (everything) and for the virtual file `/.stats` at the mount root (`statsText`: the
 * same without histogram buckets and help lines, which is what `ferry stats` reads and diffs).
 *
 * Other layers' counters (block store, caches: `addSource`) keep their older names (`ferry_chunk_*`,
 * `ferry_mem_cache_*`, `ferry_disk_cache_*`, as gauges) in both renderings.
 */

import { Registry } from 'prom-client';
import { counterOf, FuseMetrics, gaugeOf } from '../obs/metrics.js';

export class MountStats {
  readonly started = Date.now();
  readonly registry: Registry;
  private readonly fuse: FuseMetrics;
  bytesRead = 0;
  bytesWritten = 0;
  /** Handles open now (files and the virtual files). */
  handlesOpen = 0;
  /** Other layers' counters (block store, caches), read at every render. */
  private readonly sources: Array<() => Record<string, number>> = [];

  /** `registry`: the process's (default: a registry of its own, without process metrics). */
  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    this.fuse = new FuseMetrics(registry);
    counterOf(registry, 'ferry_fuse_read_bytes_total', 'Bytes answered to FUSE reads', [], () => [[{}, this.bytesRead]]);
    counterOf(registry, 'ferry_fuse_written_bytes_total', 'Bytes taken from FUSE writes', [], () => [[{}, this.bytesWritten]]);
    gaugeOf(registry, 'ferry_fuse_handles', 'Handles open now', () => this.handlesOpen);
    gaugeOf(registry, 'ferry_fuse_uptime_seconds', 'Seconds since the mount started', () => (Date.now() - this.started) / 1000);
  }

  addSource(source: () => Record<string, number>): void {
    this.sources.push(source);
  }

  record(op: string, failed: boolean, seconds: number): void {
    this.fuse.record(op, failed, seconds);
  }

  /** The sources' counters as `ferry_<name>` gauges (with `extra`, e.g. usage from statfs). */
  legacyText(extra: Record<string, number> = {}): string {
    const lines: string[] = [];
    for (const source of this.sources) extra = { ...extra, ...source() };
    for (const [k, v] of Object.entries(extra)) lines.push(`# TYPE ferry_${k} gauge`, `ferry_${k} ${v}`);
    return lines.length === 0 ? '' : lines.join('\n') + '\n';
  }

  /** Everything, for /metrics. */
  async render(extra: Record<string, number> = {}): Promise<string> {
    const text = await this.registry.metrics();
    return (text.endsWith('\n') ? text : text + '\n') + this.legacyText(extra);
  }

  /** What `/.stats` shows: `render` without help lines and histogram buckets (sums and counts stay). */
  async statsText(extra: Record<string, number> = {}): Promise<string> {
    const full = await this.render(extra);
    return full
      .split('\n')
      .filter((l) => !l.startsWith('# HELP') && !/^\w+_bucket\{/.test(l))
      .join('\n');
  }
}
