/**
 * A client's (or a cache node's) part in a cache group, built in two steps around its block reader:
 *
 *   prepareCacheGroup   the group's key, its view (live members -> ring) and the tier to put in the reader
 *                       between the local disk cache and the buckets (tier-peer.ts)
 *   startSharing        (unless --no-sharing) serves the member's own caches to the group (server.ts over
 *                       owner.ts, through the reader) and registers the member with a heartbeat (view.ts)
 *
 * `close` leaves the group (record removed), stops serving, and stops the view; the reader closes the tier.
 */

import { networkInterfaces } from 'node:os';
import type { MetaEngine } from '../../meta/engine.js';
import { GROUP_RE, isValidAddress, WEIGHT_MAX, type MemberRec } from '../../meta/members.js';
import { deriveKey, volumeSecret } from '../../meta/secret.js';
import type { BlockReads } from '../../chunk/store.js';
import { UsageError } from '../../errors.js';
import type { DiskBlockCache } from '../disk.js';
import { PeerTier, type PeerTierOptions } from '../tier-peer.js';
import { PEER_KEY_PURPOSE } from './auth.js';
import { OwnerBlocks } from './owner.js';
import { PeerServer } from './server.js';
import { GroupRegistration, GroupView } from './view.js';

export interface CacheGroupOptions {
  group: string;
  /** Serve this member's caches to the group (default true); false: consume only (--no-sharing). */
  sharing?: boolean | undefined;
  /** Where to serve (sharing): default port 0 on this machine's first non-internal IPv4 address. */
  listen?: { host: string; port: number } | undefined;
  /** The address others reach this member at, when it differs from where it listens (NAT, 0.0.0.0). */
  advertise?: string | undefined;
  /** Share of the group's keys (default 1; 0 drains). */
  weight?: number | undefined;
  role?: MemberRec['role'] | undefined;
  /** View refresh and heartbeat periods, ms (tests shorten them). */
  refreshMs?: number | undefined;
  heartbeatMs?: number | undefined;
  /** PeerTier tuning: request timeout and how long a failed member is skipped. */
  timeoutMs?: number | undefined;
  unhealthyMs?: number | undefined;
}

/** Checks group options; throws UsageError naming the bad one. */
export function checkCacheGroupOptions(o: CacheGroupOptions): void {
  if (!GROUP_RE.test(o.group)) throw new UsageError(`bad cache group name ${JSON.stringify(o.group)}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  if (o.weight !== undefined && !(Number.isFinite(o.weight) && o.weight >= 0 && o.weight <= WEIGHT_MAX)) throw new UsageError(`bad weight ${o.weight}: a number from 0 to ${WEIGHT_MAX}`);
  if (o.advertise !== undefined && !isValidAddress(o.advertise)) throw new UsageError(`bad advertised address ${JSON.stringify(o.advertise)}: HOST:PORT`);
}

/** This machine's first non-internal IPv4 address, else loopback. */
export function defaultHost(): string {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

function hostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

export class CacheGroupMember {
  readonly group: string;
  readonly tier: PeerTier;
  readonly view: GroupView;
  /** Set once sharing started. */
  address: string | undefined;
  server: PeerServer | undefined;
  owner: OwnerBlocks | undefined;
  private registration: GroupRegistration | undefined;
  private readonly engine: MetaEngine;
  private readonly uuid: string;
  private readonly key: Buffer;
  private readonly options: CacheGroupOptions;
  private readonly onError: (what: string, err: unknown) => void;
  private closing: Promise<void> | undefined;

  private constructor(engine: MetaEngine, uuid: string, key: Buffer, options: CacheGroupOptions, onError: (what: string, err: unknown) => void) {
    this.engine = engine;
    this.uuid = uuid;
    this.key = key;
    this.options = options;
    this.group = options.group;
    this.onError = onError;
    this.view = new GroupView({ engine, group: options.group, uuid, refreshMs: options.refreshMs, onError });
    const tierOptions: PeerTierOptions = {
      ring: () => this.view.ring(),
      uuid,
      key,
      timeoutMs: options.timeoutMs,
      unhealthyMs: options.unhealthyMs,
      onUnhealthy: (address, err) => onError(`cache group member ${address} (skipped for a while)`, err),
    };
    this.tier = new PeerTier(tierOptions);
  }

  /** Step one: the key and the view (first listing awaited), and the tier for the reader. */
  static async prepare(engine: MetaEngine, uuid: string, options: CacheGroupOptions, onError: (what: string, err: unknown) => void): Promise<CacheGroupMember> {
    checkCacheGroupOptions(options);
    const key = deriveKey(await volumeSecret(engine), uuid, PEER_KEY_PURPOSE);
    const m = new CacheGroupMember(engine, uuid, key, options, onError);
    await m.view.start();
    return m;
  }

  /** Step two (sharing): serve `reads` (and its disk cache as stored) to the group, and register. */
  async startSharing(reads: BlockReads, disk: DiskBlockCache | undefined, region: string | undefined): Promise<void> {
    const o = this.options;
    this.owner = new OwnerBlocks({ reader: reads, disk });
    this.server = new PeerServer({ uuid: this.uuid, key: this.key, provider: this.owner, onError: (err, key) => this.onError(`serving ${key} to the cache group`, err) });
    const listen = o.listen ?? { host: defaultHost(), port: 0 };
    let bound;
    try {
      bound = await this.server.listen(listen.port, listen.host);
    } catch (err) {
      throw new UsageError(`cannot serve the cache group on ${hostPort(listen.host, listen.port)}: ${err instanceof Error ? err.message : String(err)}`);
    }
    this.address = o.advertise ?? hostPort(listen.host === '0.0.0.0' || listen.host === '::' ? defaultHost() : listen.host, bound.port);
    this.tier.setSelf(this.address);
    this.registration = await GroupRegistration.join({
      engine: this.engine,
      group: this.group,
      address: this.address,
      weight: o.weight ?? 1,
      uuid: this.uuid,
      region,
      role: o.role ?? 'client',
      heartbeatMs: o.heartbeatMs,
      onError: this.onError,
    });
    await this.view.refresh().catch(() => undefined);
  }

  /** Idempotent: leaves the group, stops serving and listing. The reader closes the tier. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.registration?.leave();
      await this.server?.close();
      this.view.close();
    })();
    return this.closing;
  }
}
