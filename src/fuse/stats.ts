/**
 * Live counters of a mount: operations, errors and time per FUSE operation, bytes read and written. Rendered
 * in Prometheus' text format, both for the virtual file `/.stats` at the mount root and for `--metrics`.
 */

interface OpCounter {
  count: number;
  errors: number;
  seconds: number;
}

export class MountStats {
  readonly started = Date.now();
  private readonly ops = new Map<string, OpCounter>();
  bytesRead = 0;
  bytesWritten = 0;
  /** Handles open now (files and .stats). */
  handlesOpen = 0;
  /** Other layers' counters (block store, caches), read at every render. */
  private readonly sources: Array<() => Record<string, number>> = [];

  addSource(source: () => Record<string, number>): void {
    this.sources.push(source);
  }

  record(op: string, failed: boolean, seconds: number): void {
    let c = this.ops.get(op);
    if (c === undefined) {
      c = { count: 0, errors: 0, seconds: 0 };
      this.ops.set(op, c);
    }
    c.count++;
    if (failed) c.errors++;
    c.seconds += seconds;
  }

  /** Prometheus text exposition of every counter (names prefixed ferry_fuse_). */
  render(extra: Record<string, number> = {}): string {
    const lines: string[] = [];
    const ops = [...this.ops.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    lines.push('# TYPE ferry_fuse_ops_total counter');
    for (const [op, c] of ops) lines.push(`ferry_fuse_ops_total{op="${op}"} ${c.count}`);
    lines.push('# TYPE ferry_fuse_errors_total counter');
    for (const [op, c] of ops) if (c.errors > 0) lines.push(`ferry_fuse_errors_total{op="${op}"} ${c.errors}`);
    lines.push('# TYPE ferry_fuse_op_seconds_total counter');
    for (const [op, c] of ops) lines.push(`ferry_fuse_op_seconds_total{op="${op}"} ${c.seconds.toFixed(6)}`);
    lines.push('# TYPE ferry_fuse_read_bytes_total counter', `ferry_fuse_read_bytes_total ${this.bytesRead}`);
    lines.push('# TYPE ferry_fuse_written_bytes_total counter', `ferry_fuse_written_bytes_total ${this.bytesWritten}`);
    lines.push('# TYPE ferry_fuse_handles gauge', `ferry_fuse_handles ${this.handlesOpen}`);
    lines.push('# TYPE ferry_fuse_uptime_seconds gauge', `ferry_fuse_uptime_seconds ${((Date.now() - this.started) / 1000).toFixed(1)}`);
    for (const source of this.sources) extra = { ...extra, ...source() };
    for (const [k, v] of Object.entries(extra)) lines.push(`# TYPE ferry_${k} gauge`, `ferry_${k} ${v}`);
    return lines.join('\n') + '\n';
  }
}
