/**
 * The region's cache group as an encoded tier (tier.ts), between the local disk cache and the buckets: a block
 * is asked of its owner (ring.ts over the group's live members, group/view.ts) over HTTP keep-alive (undici),
 * signed (group/auth.ts), as group/server.ts describes:
 *
 *   get whole             GET /v1/block/<key>                          200 -> {offset: 0, data}
 *   get [from, to), head  GET ...?head=1, Range: the covering stripes  206 -> {offset, data, head} (one request)
 *   get [from, to)        GET ..., Range: the covering stripes         206 -> {offset, data}
 *   404                   undefined (not anywhere the owner looked: the reader goes on to the buckets)
 *
 * A member is skipped while it is unhealthy: for `unhealthyMs` after it failed to answer within `timeoutMs`
 * (down, hung, reset mid-transfer, an HTTP error) or answered a copy the reader found bad (`answeredBad`).
 * A skipped owner is a miss here, so the reader reads storage directly: a bad member costs speed, never bytes
 * (the reader verifies every answer), and at most one timeout per unhealthy period per client.
 * A client that is itself a member (`self`) never asks itself: its own disk tier was asked already; and while
 * it serves another member's request (server.ts servingPeer) it asks no member at all (one hop, no loops).
 */

import { Agent } from 'undici';
import { blockHeaderBytes, stripeSpan } from '../chunk/codec.js';
import { signRequest } from './group/auth.js';
import { servingPeer } from './group/server.js';
import type { Ring, RingMember } from './group/ring.js';
import type { BlockRange, EncodedTier, ObjectPart } from './tier.js';

export const GROUP_TIER = 'group';
export const PEER_TIMEOUT_MS_DEFAULT = 3000;
export const PEER_UNHEALTHY_MS_DEFAULT = 30_000;
/** Connections kept per member (each carries one request at a time). */
export const PEER_CONNECTIONS_MAX_DEFAULT = 16;

export interface PeerTierOptions {
  /** The ring of the group's live members, now (GroupView.ring). */
  ring: () => Ring;
  uuid: string;
  /** deriveKey(secret, uuid, 'cache-peer'). */
  key: Buffer;
  /** This client's own member address, when it is one. */
  self?: string | undefined;
  /** A request that has not completed in this long fails (the member is then unhealthy), ms. */
  timeoutMs?: number | undefined;
  unhealthyMs?: number | undefined;
  connectionsMax?: number | undefined;
  /** A member became unhealthy, and why (the client's log). */
  onUnhealthy?: ((address: string, err: unknown) => void) | undefined;
  now?: () => number;
}

export interface PeerTierStats {
  requests: number;
  /** Answers and their bytes. */
  answers: number;
  bytes: number;
  /** Owner unhealthy or this client itself: not asked. */
  skipped: number;
  failures: number;
  /** Members currently unhealthy. */
  unhealthy: number;
}

export class PeerError extends Error {
  readonly address: string;
  constructor(address: string, message: string, options?: { cause?: unknown }) {
    super(`cache group member ${address}: ${message}`, options);
    this.name = 'PeerError';
    this.address = address;
  }
}

export class PeerTier implements EncodedTier {
  readonly form = 'encoded';
  readonly name = GROUP_TIER;
  private readonly options: PeerTierOptions;
  private self: string | undefined;
  private readonly timeoutMs: number;
  private readonly unhealthyMs: number;
  private readonly now: () => number;
  private readonly agent: Agent;
  /** address -> until when it is skipped. */
  private readonly sick = new Map<string, number>();
  private readonly counters = { requests: 0, answers: 0, bytes: 0, skipped: 0, failures: 0 };
  private closing: Promise<void> | undefined;

  constructor(options: PeerTierOptions) {
    this.options = options;
    this.timeoutMs = options.timeoutMs ?? PEER_TIMEOUT_MS_DEFAULT;
    this.unhealthyMs = options.unhealthyMs ?? PEER_UNHEALTHY_MS_DEFAULT;
    this.now = options.now ?? Date.now;
    this.self = options.self;
    for (const [n, v] of [['timeoutMs', this.timeoutMs], ['unhealthyMs', this.unhealthyMs]] as const) {
      if (!Number.isSafeInteger(v) || v <= 0) throw new RangeError(`${n} must be an integer > 0, got ${v}`);
    }
    this.agent = new Agent({
      connections: options.connectionsMax ?? PEER_CONNECTIONS_MAX_DEFAULT,
      keepAliveTimeout: 60_000,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      connectTimeout: this.timeoutMs,
    });
  }

  get peerStats(): PeerTierStats {
    const now = this.now();
    let unhealthy = 0;
    for (const until of this.sick.values()) if (until > now) unhealthy++;
    return { ...this.counters, unhealthy };
  }

  /** The member that owns `key` and would be asked now, if any. */
  ownerOf(key: string): RingMember | undefined {
    const owner = this.options.ring().owner(key);
    if (owner === undefined || owner.id === this.self) return undefined;
    return owner;
  }

  /** This client's own member address (known once it serves). */
  setSelf(address: string | undefined): void {
    this.self = address;
  }

  isHealthy(address: string): boolean {
    const until = this.sick.get(address);
    if (until === undefined) return true;
    if (until > this.now()) return false;
    this.sick.delete(address);
    return true;
  }

  async get(key: string, plainBytes: number, range: BlockRange | undefined, signal: AbortSignal | undefined): Promise<ObjectPart | undefined> {
    const owner = servingPeer.getStore() === true ? undefined : this.ownerOf(key);
    if (owner === undefined || !this.isHealthy(owner.id)) {
      this.counters.skipped++;
      return undefined;
    }
    const span = range === undefined ? undefined : stripeSpan(plainBytes, range.from, range.to);
    const path = `/v1/block/${key}${range?.head === true ? '?head=1' : ''}`;
    const rangeHeader = span === undefined ? '' : `bytes=${span.offset}-${span.offset + span.length - 1}`;
    const headers: Record<string, string> = signRequest(this.options.key, { method: 'GET', path, range: rangeHeader, uuid: this.options.uuid }, this.now());
    if (rangeHeader !== '') headers['range'] = rangeHeader;
    this.counters.requests++;
    try {
      const body = await this.request(owner.id, 'GET', path, headers, blockHeaderBytes(plainBytes) + plainBytes + 64, signal);
      if (body === undefined) return undefined;
      const { status, data, headBytes } = body;
      this.counters.answers++;
      this.counters.bytes += data.length;
      if (status === 200) return { offset: 0, data };
      if (span === undefined || headBytes > data.length) throw new PeerError(owner.id, 'answered a range that was not asked');
      return { offset: span.offset, data: data.subarray(headBytes), head: headBytes > 0 ? data.subarray(0, headBytes) : undefined };
    } catch (err) {
      if (signal?.aborted !== true) this.markUnhealthy(owner.id, err);
      throw err;
    }
  }

  /**
   * One signed request to `address`: its body (at most `bytesMax`), or undefined on 404; rejects on any other
   * status, a timeout, a reset, or more bytes than `bytesMax`.
   */
  async request(
    address: string,
    method: 'GET' | 'POST' | 'HEAD' | 'DELETE',
    path: string,
    headers: Record<string, string>,
    bytesMax: number,
    signal: AbortSignal | undefined,
  ): Promise<{ status: number; data: Buffer; headBytes: number; warm: string | undefined } | undefined> {
    const deadline = AbortSignal.timeout(this.timeoutMs);
    const both = signal === undefined ? deadline : AbortSignal.any([signal, deadline]);
    let res;
    try {
      res = await this.agent.request({ origin: `http://${address}`, path, method, headers, signal: both });
    } catch (err) {
      throw this.failure(address, err, deadline);
    }
    try {
      if (res.statusCode === 404) {
        await res.body.dump();
        return undefined;
      }
      if (res.statusCode !== 200 && res.statusCode !== 206 && res.statusCode !== 204) {
        const text = (await res.body.text()).slice(0, 200).trim();
        throw new PeerError(address, `HTTP ${res.statusCode}${text === '' ? '' : ` (${text})`}`);
      }
      const declared = Number(res.headers['content-length'] ?? NaN);
      if (Number.isFinite(declared) && declared > bytesMax) throw new PeerError(address, `answered ${declared} bytes, at most ${bytesMax} expected`);
      // With a declared length the body is copied once, into a buffer of that size (else gathered, then joined).
      const into = Number.isSafeInteger(declared) && declared > 0 ? Buffer.allocUnsafe(declared) : undefined;
      const chunks: Buffer[] = [];
      let n = 0;
      for await (const c of res.body) {
        const chunk = c as Buffer;
        if (n + chunk.length > (into?.length ?? bytesMax)) throw new PeerError(address, `answered more than ${into?.length ?? bytesMax} bytes`);
        if (into !== undefined) chunk.copy(into, n);
        else chunks.push(chunk);
        n += chunk.length;
      }
      if (into !== undefined && n !== into.length) throw new PeerError(address, `answered ${n} of the ${into.length} bytes it declared`);
      const headBytes = Number(res.headers['x-ferry-head-bytes'] ?? 0);
      const warm = res.headers['x-ferry-warm'];
      return {
        status: res.statusCode,
        data: into ?? (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, n)),
        headBytes: Number.isSafeInteger(headBytes) && headBytes >= 0 ? headBytes : 0,
        warm: typeof warm === 'string' ? warm : undefined,
      };
    } catch (err) {
      res.body.destroy();
      throw err instanceof PeerError ? err : this.failure(address, err, deadline);
    }
  }

  private failure(address: string, err: unknown, deadline: AbortSignal): PeerError {
    if (deadline.aborted) return new PeerError(address, `no answer within ${this.timeoutMs} ms`, { cause: err });
    return new PeerError(address, err instanceof Error ? err.message : String(err), { cause: err });
  }

  /**
   * Asks the owner of `key` to hold it ('held': it did already, 'fetched': it does now), whether it holds it
   * ('check': 'held' or 'missing'), or to drop it ('evict'); undefined when the group has no owner for it.
   * Rejects when the owner cannot answer (warm-up reports it; it does not mark the member unhealthy).
   */
  async ask(key: string, what: 'warm' | 'check' | 'evict', signal?: AbortSignal): Promise<'held' | 'fetched' | 'missing' | 'evicted' | undefined> {
    const owner = this.ownerOf(key);
    if (owner === undefined) return undefined;
    const method = what === 'warm' ? 'POST' : what === 'check' ? 'HEAD' : 'DELETE';
    const path = `/v1/block/${key}`;
    const headers = signRequest(this.options.key, { method, path, range: '', uuid: this.options.uuid }, this.now());
    const r = await this.request(owner.id, method, path, headers, 1024, signal);
    if (r === undefined) return 'missing';
    if (what === 'evict') return 'evicted';
    if (what === 'check') return 'held';
    return r.warm === 'held' ? 'held' : 'fetched';
  }

  answeredBad(key: string, err: unknown): void {
    const owner = this.ownerOf(key);
    if (owner !== undefined) this.markUnhealthy(owner.id, err);
  }

  private markUnhealthy(address: string, err: unknown): void {
    this.counters.failures++;
    const was = this.isHealthy(address);
    this.sick.set(address, this.now() + this.unhealthyMs);
    if (was) this.options.onUnhealthy?.(address, err);
  }

  /** Idempotent: closes the connections. */
  close(): Promise<void> {
    this.closing ??= this.agent.destroy().catch(() => undefined);
    return this.closing;
  }
}
