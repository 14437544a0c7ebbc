/**
 * FaultProxy: a userspace TCP proxy that puts a bad network between a client and a loopback server, for tests
 * and benchmarks (the kernel's netem is not available here). Faults change at run time and are drawn from a
 * seeded PRNG, so a failing run can be replayed from its seed (given the same order of connections and chunks).
 *
 *   client ──▶ 127.0.0.1:port ──▶ [up pump: delay, stall, cap] ──▶ target host:port
 *          ◀──                  ◀── [down pump: delay, stall, cap] ◀──
 *
 * Each direction of each connection is a pump: a chunk read from one socket is stamped with its delivery time
 * (arrival + latency + jitter, never earlier than the chunk before it, since TCP does not reorder), waits for
 * that time, waits out a stalling blackout, takes tokens from the connection's and the proxy's bandwidth
 * buckets, and is written to the other socket. Latency therefore adds delay without cutting throughput, as on a
 * real long link. A pump holds at most QUEUE_BYTES_MAX; past it, the source socket is paused (back-pressure).
 *
 * Faults:
 * - latency: `upLatencyMs` (client → target) and `downLatencyMs` (target → client), plus `jitterMs` drawn
 *   uniformly in [0, jitterMs] per chunk.
 * - bandwidth: `connectionBytesPerSecond` per connection and direction, `totalBytesPerSecond` shared by all
 *   (token buckets; 0 = unlimited).
 * - resets: `connectionResetRate` is the probability that a new connection is doomed; it is reset (both
 *   sockets, RST) after a number of forwarded bytes drawn uniformly in [0, resetAfterBytesMax].
 *   `chunkResetRate` is the probability that any one forwarded chunk resets its connection instead.
 * - blackouts: `blackout(ms, mode)` — for ms, every new connection is reset at accept, and existing ones are
 *   either stalled (mode 'stall': nothing flows, then everything resumes) or cut (mode 'cut': reset now).
 *
 * Only loopback targets are accepted (127.0.0.0/8, ::1, localhost): this is a test tool, and the machines it
 * runs on forbid traffic elsewhere.
 */

import net from 'node:net';
import { mulberry32 } from '../util/random.js';
import { sleep } from '../util/sleep.js';
import { TokenBucket } from '../util/tokenbucket.js';

export interface ProxyFaults {
  /** Added delay client → target, ms; default 0. */
  upLatencyMs: number;
  /** Added delay target → client, ms; default 0. */
  downLatencyMs: number;
  /** Extra delay per chunk drawn uniformly in [0, jitterMs]; default 0. */
  jitterMs: number;
  /** Cap per connection and direction, bytes/s; 0 = none (default). */
  connectionBytesPerSecond: number;
  /** Cap on all traffic through the proxy, both directions together, bytes/s; 0 = none (default). */
  totalBytesPerSecond: number;
  /** Probability in [0, 1] that a new connection is reset after a random number of bytes; default 0. */
  connectionResetRate: number;
  /** A doomed connection is reset after uniform [0, resetAfterBytesMax] forwarded bytes; default 64 KiB. */
  resetAfterBytesMax: number;
  /** Probability in [0, 1] that a forwarded chunk resets its connection; default 0. */
  chunkResetRate: number;
}

export interface FaultProxyOptions extends Partial<ProxyFaults> {
  /** Where connections go: a loopback address (127.0.0.0/8, ::1 or localhost). */
  targetHost?: string | undefined;
  targetPort: number;
  /** PRNG seed for every random fault; default 1. */
  seed?: number | undefined;
}

export type BlackoutMode = 'stall' | 'cut';

export interface ProxyStats {
  /** Connections accepted (refused ones included). */
  connections: number;
  /** Connections open now. */
  active: number;
  /** Bytes forwarded client → target. */
  bytesUp: number;
  /** Bytes forwarded target → client. */
  bytesDown: number;
  /** Connections reset by a fault (doomed connection, chunk reset, cut by a blackout). */
  resets: number;
  /** Connections reset at accept because a blackout was on. */
  refused: number;
}

/** Bytes a pump holds before it pauses its source socket. */
const QUEUE_BYTES_MAX = 1 << 20;
/** Largest piece written at once under a bandwidth cap, so a big chunk trickles out rather than bursts. */
const CAPPED_PIECE_BYTES_MAX = 16 * 1024;
/** Burst of a bandwidth bucket, as a fraction of a second's worth of bytes (and at least one piece). */
const BURST_SECONDS = 0.02;
const RESET_AFTER_BYTES_DEFAULT = 64 * 1024;

const DEFAULT_FAULTS: ProxyFaults = {
  upLatencyMs: 0,
  downLatencyMs: 0,
  jitterMs: 0,
  connectionBytesPerSecond: 0,
  totalBytesPerSecond: 0,
  connectionResetRate: 0,
  resetAfterBytesMax: RESET_AFTER_BYTES_DEFAULT,
  chunkResetRate: 0,
};

/** True for 127.0.0.0/8, ::1, ::ffff:127.x.y.z and `localhost`. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  const h = host.replace(/^\[|\]$/g, '');
  if (net.isIPv4(h)) return h.startsWith('127.');
  if (net.isIPv6(h)) {
    // The URL parser writes an IPv6 address in its one canonical form: ::1, ::ffff:7f00:1 for ::ffff:127.0.0.1.
    const canonical = new URL(`http://[${h}]/`).hostname;
    return canonical === '[::1]' || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(canonical);
  }
  return false;
}

export class FaultProxy {
  readonly targetHost: string;
  readonly targetPort: number;
  readonly seed: number;
  private readonly server: net.Server;
  private readonly random: () => number;
  private readonly faults: ProxyFaults;
  private readonly total: TokenBucket;
  private readonly connections = new Set<Connection>();
  private readonly counters = { connections: 0, bytesUp: 0, bytesDown: 0, resets: 0, refused: 0 };
  private blackoutUntil = 0;
  private blackoutTimer: NodeJS.Timeout | undefined;
  private readonly blackoutWaiters: Array<() => void> = [];
  private listenPort = 0;
  private closing: Promise<void> | undefined;

  private constructor(options: FaultProxyOptions) {
    const host = options.targetHost ?? '127.0.0.1';
    if (!isLoopback(host)) throw new RangeError(`fault proxy target must be a loopback address (127.0.0.0/8 or ::1), got ${JSON.stringify(host)}`);
    if (!Number.isSafeInteger(options.targetPort) || options.targetPort <= 0 || options.targetPort > 65535) {
      throw new RangeError(`fault proxy target port must be 1..65535, got ${options.targetPort}`);
    }
    this.targetHost = host === 'localhost' ? '127.0.0.1' : host.replace(/^\[|\]$/g, '');
    this.targetPort = options.targetPort;
    this.seed = options.seed ?? 1;
    this.random = mulberry32(this.seed);
    this.faults = { ...DEFAULT_FAULTS };
    this.total = new TokenBucket(0);
    this.setFaults(options);
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.accept(socket));
  }

  /** Starts a proxy on 127.0.0.1 at a free port. */
  static async start(options: FaultProxyOptions): Promise<FaultProxy> {
    const proxy = new FaultProxy(options);
    await new Promise<void>((resolve, reject) => {
      proxy.server.once('error', reject);
      proxy.server.listen(0, '127.0.0.1', () => {
        proxy.server.off('error', reject);
        resolve();
      });
    });
    proxy.listenPort = (proxy.server.address() as net.AddressInfo).port;
    return proxy;
  }

  get host(): string {
    return '127.0.0.1';
  }

  get port(): number {
    return this.listenPort;
  }

  /** `http://127.0.0.1:PORT`, for pointing an HTTP client (an S3 endpoint) through the proxy. */
  get url(): string {
    return `http://127.0.0.1:${this.listenPort}`;
  }

  /** Changes faults for what flows from now on; fields left out keep their value. */
  setFaults(changes: Partial<ProxyFaults>): void {
    const next = { ...this.faults };
    for (const name of Object.keys(DEFAULT_FAULTS) as Array<keyof ProxyFaults>) {
      const v = changes[name];
      if (v === undefined) continue;
      if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v)) throw new RangeError(`fault ${name} must be a finite number >= 0, got ${String(v)}`);
      if (name.endsWith('Rate') && v > 1) throw new RangeError(`fault ${name} is a probability in [0, 1], got ${v}`);
      next[name] = v;
    }
    Object.assign(this.faults, next);
    this.total.setRate(next.totalBytesPerSecond, burstOf(next.totalBytesPerSecond));
    for (const c of this.connections) c.setRate(next.connectionBytesPerSecond);
  }

  /** No faults at all (a blackout in progress ends too). */
  heal(): void {
    this.setFaults(DEFAULT_FAULTS);
    this.endBlackout();
  }

  get currentFaults(): Readonly<ProxyFaults> {
    return { ...this.faults };
  }

  /**
   * For `ms`, resets every new connection at accept; existing connections are stalled (nothing flows until the
   * blackout ends) or cut (reset now). A second call extends or shortens the blackout to end ms from now.
   */
  blackout(ms: number, mode: BlackoutMode = 'stall'): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) throw new RangeError(`blackout must last a finite number of ms >= 0, got ${ms}`);
    this.blackoutUntil = performance.now() + ms;
    clearTimeout(this.blackoutTimer);
    this.blackoutTimer = setTimeout(() => this.endBlackout(), ms);
    if (mode === 'cut') {
      for (const c of [...this.connections]) {
        this.counters.resets++;
        c.reset();
      }
    }
  }

  endBlackout(): void {
    clearTimeout(this.blackoutTimer);
    this.blackoutTimer = undefined;
    this.blackoutUntil = 0;
    for (const wake of this.blackoutWaiters.splice(0)) wake();
  }

  get blackedOut(): boolean {
    return this.blackoutUntil > performance.now();
  }

  stats(): ProxyStats {
    return { ...this.counters, active: this.connections.size };
  }

  /** Stops listening and destroys every connection. Idempotent. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.endBlackout();
      for (const c of [...this.connections]) c.destroy();
      this.server.close(() => resolve());
    });
    return this.closing;
  }

  private accept(client: net.Socket): void {
    this.counters.connections++;
    if (this.closing !== undefined || this.blackedOut) {
      if (this.closing === undefined) this.counters.refused++;
      client.on('error', () => undefined);
      client.resetAndDestroy();
      return;
    }
    // Every accept draws the same two values, so the faults depend only on the seed and the order of events.
    const doomed = this.random() < this.faults.connectionResetRate;
    const resetAfter = Math.floor(this.random() * (this.faults.resetAfterBytesMax + 1));
    const upstream = net.connect({ host: this.targetHost, port: this.targetPort, allowHalfOpen: true });
    const conn = new Connection(this, client, upstream, doomed ? resetAfter : Infinity);
    this.connections.add(conn);
    conn.onClosed = () => this.connections.delete(conn);
    client.resume();
  }

  // Internal interface for Connection and Pump.

  /** @internal */
  faultsNow(): ProxyFaults {
    return this.faults;
  }

  /** @internal */
  draw(): number {
    return this.random();
  }

  /** @internal */
  totalBucket(): TokenBucket {
    return this.total;
  }

  /** @internal */
  count(direction: 'up' | 'down', bytes: number): void {
    if (direction === 'up') this.counters.bytesUp += bytes;
    else this.counters.bytesDown += bytes;
  }

  /** @internal */
  countReset(): void {
    this.counters.resets++;
  }

  /** @internal Resolves when no stalling blackout is on. */
  async untilFlowing(): Promise<void> {
    while (this.blackedOut) await new Promise<void>((resolve) => this.blackoutWaiters.push(resolve));
  }
}

function burstOf(bytesPerSecond: number): number | undefined {
  return bytesPerSecond > 0 ? Math.max(CAPPED_PIECE_BYTES_MAX, Math.ceil(bytesPerSecond * BURST_SECONDS)) : undefined;
}

/** One proxied connection: two sockets and a pump each way. */
class Connection {
  onClosed: (() => void) | undefined;
  private readonly proxy: FaultProxy;
  private readonly client: net.Socket;
  private readonly upstream: net.Socket;
  private readonly up: Pump;
  private readonly down: Pump;
  /** Forwarded bytes (both ways) after which a doomed connection is reset; Infinity when not doomed. */
  private readonly resetAfterBytes: number;
  private forwarded = 0;
  private done = false;
  private closedSockets = 0;

  constructor(proxy: FaultProxy, client: net.Socket, upstream: net.Socket, resetAfterBytes: number) {
    this.proxy = proxy;
    this.client = client;
    this.upstream = upstream;
    this.resetAfterBytes = resetAfterBytes;
    const rate = proxy.faultsNow().connectionBytesPerSecond;
    this.up = new Pump(this, 'up', client, upstream, new TokenBucket(rate, burstOf(rate)));
    this.down = new Pump(this, 'down', upstream, client, new TokenBucket(rate, burstOf(rate)));
    // A failure on one side is passed on as a reset of the other, as a real broken path would look.
    client.on('error', () => this.reset());
    upstream.on('error', () => this.reset());
    const onClose = (): void => {
      if (++this.closedSockets === 2) this.finish();
    };
    client.on('close', onClose);
    upstream.on('close', onClose);
    if (resetAfterBytes === 0) queueMicrotask(() => this.faultReset());
  }

  get faults(): ProxyFaults {
    return this.proxy.faultsNow();
  }

  get owner(): FaultProxy {
    return this.proxy;
  }

  setRate(bytesPerSecond: number): void {
    this.up.bucket.setRate(bytesPerSecond, burstOf(bytesPerSecond));
    this.down.bucket.setRate(bytesPerSecond, burstOf(bytesPerSecond));
  }

  /** Called by a pump for each piece it forwards; false when the connection was reset instead. */
  forward(direction: 'up' | 'down', bytes: number): boolean {
    if (this.done) return false;
    if (this.faults.chunkResetRate > 0 && this.proxy.draw() < this.faults.chunkResetRate) {
      this.faultReset();
      return false;
    }
    if (this.forwarded + bytes > this.resetAfterBytes) {
      this.faultReset();
      return false;
    }
    this.forwarded += bytes;
    this.proxy.count(direction, bytes);
    return true;
  }

  /** Reset by an injected fault: counted. */
  faultReset(): void {
    if (this.done) return;
    this.proxy.countReset();
    this.reset();
  }

  /** RST both ways (the sockets' close events finish the connection). */
  reset(): void {
    if (this.done) return;
    this.done = true;
    this.up.stop();
    this.down.stop();
    for (const s of [this.client, this.upstream]) {
      s.on('error', () => undefined);
      if (!s.destroyed) s.resetAndDestroy();
    }
    this.finish();
  }

  destroy(): void {
    this.done = true;
    this.up.stop();
    this.down.stop();
    this.client.destroy();
    this.upstream.destroy();
    this.finish();
  }

  /** A pump saw its source end and delivered everything: half-close toward the destination. */
  ended(): void {
    if (this.up.finished && this.down.finished) {
      this.done = true;
      this.finish();
    }
  }

  private finished = false;
  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.onClosed?.();
  }
}

interface Item {
  chunk: Buffer;
  /** performance.now() at which the chunk may be delivered. */
  at: number;
}

/** One direction of a connection. */
class Pump {
  readonly bucket: TokenBucket;
  finished = false;
  private readonly conn: Connection;
  private readonly direction: 'up' | 'down';
  private readonly source: net.Socket;
  private readonly dest: net.Socket;
  private readonly queue: Item[] = [];
  private queuedBytes = 0;
  private lastAt = 0;
  private sourceEnded = false;
  private stopped = false;
  private wake: (() => void) | undefined;

  constructor(conn: Connection, direction: 'up' | 'down', source: net.Socket, dest: net.Socket, bucket: TokenBucket) {
    this.conn = conn;
    this.direction = direction;
    this.source = source;
    this.dest = dest;
    this.bucket = bucket;
    source.on('data', (chunk: Buffer) => this.push(chunk));
    source.on('end', () => {
      this.sourceEnded = true;
      this.poke();
    });
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    this.poke();
  }

  private push(chunk: Buffer): void {
    if (this.stopped) return;
    const f = this.conn.faults;
    const latency = this.direction === 'up' ? f.upLatencyMs : f.downLatencyMs;
    const jitter = f.jitterMs > 0 ? this.conn.owner.draw() * f.jitterMs : 0;
    // TCP delivers in order: a chunk never overtakes the one before it.
    const at = Math.max(this.lastAt, performance.now() + latency + jitter);
    this.lastAt = at;
    this.queue.push({ chunk, at });
    this.queuedBytes += chunk.length;
    if (this.queuedBytes > QUEUE_BYTES_MAX) this.source.pause();
    this.poke();
  }

  private poke(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private async run(): Promise<void> {
    try {
      for (;;) {
        if (this.stopped) return;
        const item = this.queue.shift();
        if (item === undefined) {
          if (this.sourceEnded) {
            this.finished = true;
            if (!this.dest.destroyed) this.dest.end();
            this.conn.ended();
            return;
          }
          await new Promise<void>((resolve) => (this.wake = resolve));
          continue;
        }
        const wait = item.at - performance.now();
        if (wait > 0) await sleep(wait);
        await this.conn.owner.untilFlowing();
        await this.deliver(item.chunk);
        this.queuedBytes -= item.chunk.length;
        if (this.queuedBytes <= QUEUE_BYTES_MAX / 2 && this.source.isPaused() && !this.source.destroyed) this.source.resume();
      }
    } catch {
      this.conn.reset();
    }
  }

  private async deliver(chunk: Buffer): Promise<void> {
    const capped = !this.bucket.unlimited || !this.conn.owner.totalBucket().unlimited;
    const pieceMax = capped ? CAPPED_PIECE_BYTES_MAX : chunk.length;
    for (let off = 0; off < chunk.length; off += pieceMax) {
      const piece = chunk.subarray(off, Math.min(chunk.length, off + pieceMax));
      await this.bucket.take(piece.length);
      await this.conn.owner.totalBucket().take(piece.length);
      // A stall may begin while we waited for tokens.
      await this.conn.owner.untilFlowing();
      if (this.stopped || this.dest.destroyed) return;
      if (!this.conn.forward(this.direction, piece.length)) return;
      if (!this.dest.write(piece)) await waitDrain(this.dest);
    }
  }
}

function waitDrain(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}
