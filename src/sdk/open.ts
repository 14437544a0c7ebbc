/**
 * The composition root for clients: URL -> engine (in RetryEngine) -> Meta; format -> bucket -> ChunkStore
 * (writes) over a BlockReader (reads: memory -> disk -> buckets, cache/blocks.ts) -> Vfs -> Volume.
 * `openVolume` is what `import { openVolume } from 'ferryfs'` gives.
 *
 * In a volume with several regions the client runs in one (`region`, default the primary): it writes to that
 * region's bucket and reads through a RegionPlacement over every region's bucket (region/placement.ts). The
 * other regions' buckets are opened without a probe, so a client keeps working in its region while another
 * region is unreachable. Its own bucket is probed, but need not answer either: a client whose bucket is
 * missing or unreachable opens behind a GateStore (object/gate.ts), so that its reads fall through to the
 * other regions at once and its writes fail at once with an error naming the bucket, until a later probe
 * finds the bucket back. A one-region volume has nothing to fall through to: its bucket must answer.
 */

import { stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { maskUrl } from '../util/url.js';
import { openMetaEngine } from '../meta/registry.js';
import type { MetaEngine } from '../meta/engine.js';
import { RetryEngine, type EngineRetryOptions } from '../meta/retry.js';
import { loadFormat, Meta, type MetaOptions } from '../meta/meta.js';
import type { Ctx } from '../meta/types.js';
import { BucketUnreachableError, GateStore, GATE_PROBE_TIMEOUT_MS_DEFAULT, probeWithin } from '../object/gate.js';
import { fileStoreDir, openObjectStore } from '../object/registry.js';
import { RetryStore } from '../object/retry.js';
import type { ObjectStore } from '../object/store.js';
import { loadCompression } from '../chunk/codec.js';
import { createChunkStore } from '../cache/blocks.js';
import { MemoryBlockCache } from '../cache/memory.js';
import type { DiskBlockCacheOptions } from '../cache/disk.js';
import { Writeback, type WritebackOptions } from '../cache/writeback.js';
import { putStaging } from '../meta/staging.js';
import { Vfs, type VfsOptions } from '../vfs/vfs.js';
import { Volume } from './volume.js';
import { RegionPlacement } from '../region/placement.js';
import { bucketRegion, clientRegion, volumeRegions } from '../region/regions.js';
import { readMirrorIdentity } from '../meta/mirror.js';
import { ReadOnlyEngine } from '../meta/readonly.js';
import { CacheGroupMember, type CacheGroupOptions } from '../cache/group/member.js';
import { EgressMeter } from '../region/egress.js';
import type { MetaApi } from '../meta/api.js';
import { parseServiceAddress, readServiceAddresses } from '../meta/service.js';
import { RemoteMeta, ServiceClient, type ServiceClientOptions } from '../service/client.js';
import { MirrorWriteMeta } from '../service/mirror.js';
import { clientToken, serviceToken } from '../service/token.js';
import type { Registry } from 'prom-client';
import { clientMetrics, type ClientMetrics } from '../obs/metrics.js';
import { MetricsEngine } from '../meta/metrics.js';
import { MetricsStore } from '../object/metrics.js';
import { BUCKET_TIER } from '../cache/reader.js';

export type DiskCacheTuning = Pick<DiskBlockCacheOptions, 'pendingWriteBytesMax' | 'writesInFlightMax' | 'putWaitMsMax' | 'freeSpaceFloorRatio'>;
export type WritebackTuning = Pick<WritebackOptions, 'uploadsInFlightMax' | 'retryDelayMsMin' | 'retryDelayMsMax' | 'freeSpaceFloorRatio' | 'reportIntervalMs' | 'keepAliveMs'>;

/** How long closing a write-back volume waits for its pending uploads by default, ms (the rest upload at the next open). */
export const WRITEBACK_CLOSE_WAIT_MS_DEFAULT = 30_000;

export interface OpenVolumeOptions extends VfsOptions {
  /** Region this client runs in (default: the primary). */
  region?: string;
  /** Identity for permission checks; default this process's uid/gid. */
  uid?: number;
  gid?: number;
  gids?: number[];
  /** Applied to modes of new files and directories; default 0o022. */
  umask?: number;
  /** Memory block cache, bytes (default 128 MiB; 0 disables). */
  memCacheBytes?: number;
  /** Local disk block cache directory (default: none). */
  cacheDir?: string;
  cacheBytes?: number;
  /** Tuning of the disk cache's write queue and free-space floor (DiskBlockCache's defaults otherwise). */
  cacheOptions?: DiskCacheTuning;
  /**
   * Write-back (needs `cacheDir`): the blocks of a file are staged durably in the cache directory when it is
   * closed or synced, its metadata is committed at once, and the blocks upload in the background
   * (cache/writeback.ts). Until then only this client (and the next one to open the cache directory) can read
   * them. Without it, blocks an earlier write-back run left in `cacheDir` are still uploaded.
   */
  writeback?: boolean;
  /** How long `close()` waits for pending uploads, ms (default 30 s); what is left uploads at the next open. */
  writebackCloseWaitMs?: number;
  /** Tuning of the write-back uploads (cache/writeback.ts's defaults otherwise). */
  writebackOptions?: WritebackTuning;
  /**
   * Reads of at most this many bytes of an uncached block fetch only the stripes they need (BlockReader's
   * default: a quarter of the block size); 0 makes every read fetch whole blocks.
   */
  rangeReadBytesMax?: number;
  /** Use this store instead of the one in the format record (tests, fault injection). */
  store?: ObjectStore;
  /**
   * Use these buckets, by region name, instead of the format record's (tests, fault injection); regions not
   * named are opened from the record. The volume closes them.
   */
  stores?: Readonly<Record<string, ObjectStore>>;
  /**
   * Wraps the metadata engine opened from the URL (tests: a FaultEngine between the client and its engine).
   * The RetryEngine sits above what it returns. The volume closes it.
   */
  wrapEngine?: (engine: MetaEngine) => MetaEngine;
  /** How calls that failed because the engine was unreachable are retried (RetryEngine's defaults otherwise). */
  engineRetry?: EngineRetryOptions;
  /** Session heartbeat period, ms. */
  heartbeatMs?: number;
  /** How long after its last heartbeat this client counts as dead, ms (Meta's default: 5 heartbeats). */
  sessionStaleMs?: number;
  /** How long names and attributes seen by lookups are reused, ms; 0 disables (Meta's default 1 s). */
  lookupCacheMs?: number;
  /**
   * Join this cache group of the client's region (DESIGN §8): blocks missing from the local caches are asked of
   * their owner in the group before the buckets; unless `sharing: false`, this client also serves its disk
   * cache to the group (which needs `cacheDir`) and registers as a member.
   */
  cacheGroup?: CacheGroupOptions;
  /** How often this client writes its egress counters to the engine, ms (region/egress.ts; default 10 s). */
  egressFlushMs?: number;
  /**
   * The volume token for a `ferry://` metadata URL (default FERRY_TOKEN, else the file named by `tokenFile`
   * or FERRY_TOKEN_FILE). A mirror client derives it from its replica.
   */
  token?: string;
  tokenFile?: string;
  /** A mirror client sends its writes to the primary's metadata service when the volume names one (default true). */
  mirrorWrites?: boolean;
  /** How long a mirror client's write waits for its replica to apply it, ms (service/mirror.ts's default). */
  applyWaitMs?: number;
  /** Tuning of the metadata service client (timeouts, retries, ping; tests). */
  serviceClient?: Partial<Omit<ServiceClientOptions, 'addresses' | 'token' | 'region'>>;
  /**
   * The process's metrics registry (obs/metrics.ts): when given, object requests, metadata transactions and
   * block reads of this volume are measured there. None by default (an SDK user pays nothing).
   */
  metrics?: Registry;
}

/** Wraps a bucket's bare store: measured (when metrics are on) below the retries, which are counted too. */
function storeWrapper(cm: ClientMetrics | undefined): (region: string, inner: ObjectStore) => ObjectStore {
  return (region, inner) => {
    if (cm === undefined) return new RetryStore(inner);
    const bucket = inner.description;
    return new RetryStore(new MetricsStore(inner, cm, region), { onRetry: () => cm.objectRetries.inc({ region, bucket }) });
  };
}

/** Opens the bucket named in a format record, wrapped in retries; fails clearly if it is unreachable. */
export async function openBucket(url: string, wrap: (inner: ObjectStore) => ObjectStore = (inner) => new RetryStore(inner)): Promise<ObjectStore> {
  const inner = await openObjectStore(url);
  try {
    await inner.list('', { limit: 1 });
  } catch (err) {
    await inner.close();
    throw new UsageError(`cannot reach the bucket ${maskUrl(url)}: ${err instanceof Error ? err.message : String(err)}`);
  }
  return wrap(inner);
}

/**
 * Resolves when `store` answers a listing (and, for a file:// `url`, its directory exists: a FileStore lists a
 * missing one as empty, so a moved bucket would look like an empty one); rejects saying why not.
 */
async function probeBucket(store: ObjectStore, url: string | undefined, signal: AbortSignal): Promise<void> {
  const dir = url === undefined ? undefined : fileStoreDir(url);
  if (dir !== undefined) {
    const st = await stat(dir).catch(() => undefined);
    if (st === undefined) throw new Error(`bucket directory ${dir} does not exist`);
    if (!st.isDirectory()) throw new Error(`bucket ${dir} is not a directory`);
  }
  await store.list('', { limit: 1, signal });
}

/**
 * The client's own bucket in a volume with other regions (`injected`: the caller's store for it, else the
 * one `url` names). Probed for at most GATE_PROBE_TIMEOUT_MS_DEFAULT; one that does not answer is returned
 * behind a shut GateStore rather than failing the open (see the header), and reported to `onUnreachable`.
 */
async function openOwnBucket(
  region: string,
  url: string,
  injected: ObjectStore | undefined,
  onUnreachable: (err: Error) => void,
  wrap: (inner: ObjectStore) => ObjectStore = (inner) => new RetryStore(inner),
): Promise<ObjectStore> {
  const inner = injected ?? (await openObjectStore(url));
  // A store from the URL is probed bare, as openBucket does: its retries would only delay the answer.
  const probe = (signal: AbortSignal): Promise<void> => probeBucket(inner, injected === undefined ? url : undefined, signal);
  const failure = await probeWithin(probe, GATE_PROBE_TIMEOUT_MS_DEFAULT);
  const store = injected ?? wrap(inner);
  if (failure === undefined) return store;
  const name = `the bucket of region ${region} (${injected === undefined ? maskUrl(url) : injected.description})`;
  onUnreachable(new BucketUnreachableError(name, failure));
  return new GateStore(store, { name, reason: failure, probe });
}

/** Whether a metadata URL names a metadata service (`ferry://HOST:PORT[,HOST2:PORT]`, `ferrys://` with TLS). */
export function isServiceUrl(url: string): boolean {
  return /^ferrys?:\/\//i.test(url);
}

/** The addresses of a `ferry://HOST:PORT[,HOST2:PORT...]` URL, each as `ferry://HOST:PORT`. */
export function serviceUrlAddresses(url: string): string[] {
  const m = /^(ferrys?):\/\/(.*)$/i.exec(url);
  if (m === null) throw new UsageError(`not a metadata service URL: ${maskUrl(url)}`);
  const scheme = m[1]!.toLowerCase();
  const out = m[2]!.replace(/\/$/, '').split(',').map((hp) => `${scheme}://${hp.trim()}`);
  for (const a of out) if (parseServiceAddress(a) === undefined) throw new UsageError(`bad metadata service address ${JSON.stringify(a)} in ${maskUrl(url)} (expected ${scheme}://HOST:PORT[,HOST2:PORT])`);
  return out;
}

function serviceClientOptions(options: OpenVolumeOptions, addresses: string[], token: string, region: string | undefined): ServiceClientOptions {
  return { ...options.serviceClient, addresses, token, region };
}

export async function openVolume(metaUrl: string, options: OpenVolumeOptions = {}): Promise<Volume> {
  let engine: MetaEngine | undefined;
  let meta: MetaApi | undefined;
  let store: ObjectStore | undefined;
  const others = new Map<string, ObjectStore>();
  let group: CacheGroupMember | undefined;
  let writeback: Writeback | undefined;
  const cm = options.metrics === undefined ? undefined : clientMetrics(options.metrics);
  const wrapStore = storeWrapper(cm);
  // Stores the caller made (tests) are measured, not wrapped in retries they did not ask for.
  const observe = (region: string, s: ObjectStore | undefined): ObjectStore | undefined => (s === undefined || cm === undefined ? s : new MetricsStore(s, cm, region));
  try {
    if (options.writeback === true && options.cacheDir === undefined) {
      throw new UsageError('write-back needs a local cache directory (--cache-dir DIR): blocks are staged there until they are uploaded');
    }
    let region: string | undefined;
    let readOnlyReason: string | undefined;
    if (isServiceUrl(metaUrl)) {
      // A client of the metadata service: no engine, no database credentials; the volume token instead.
      const addresses = serviceUrlAddresses(metaUrl);
      const token = await clientToken(options.token, options.tokenFile);
      if (token === undefined) throw new UsageError(`a client of ${metaUrl.split(',')[0]} needs the volume token: set FERRY_TOKEN or FERRY_TOKEN_FILE (make the file with "ferry token META --out FILE" where the metadata is)`);
      const remote = await RemoteMeta.open(new ServiceClient(serviceClientOptions(options, addresses, token, options.region)), { lookupCacheMs: options.lookupCacheMs });
      meta = remote;
      region = clientRegion(remote.format, options.region);
    } else {
      const opened = await openMetaEngine(metaUrl);
      engine = new RetryEngine(options.wrapEngine?.(opened) ?? opened, options.engineRetry);
      // The region is checked before a session is opened, so a mistyped --region leaves no trace.
      const stored = await loadFormat(engine);
      // A mirror region's replica: its clients run in that region, and nothing they do may change the replica
      // (it must stay a copy of the primary's history). Writes go to the primary's metadata service when the
      // volume names one; without one they are refused.
      const mirror = stored === undefined ? undefined : await readMirrorIdentity(engine);
      // Measured from here (two reads unmeasured), labelled with the role the identity says the engine has.
      if (cm !== undefined) engine = new MetricsEngine(engine, cm, { role: mirror === undefined ? 'primary' : 'replica' });
      const metaOptions: MetaOptions = { replica: mirror !== undefined };
      if (options.heartbeatMs !== undefined) metaOptions.heartbeatMs = options.heartbeatMs;
      if (options.sessionStaleMs !== undefined) metaOptions.sessionStaleMs = options.sessionStaleMs;
      if (options.lookupCacheMs !== undefined) metaOptions.lookupCacheMs = options.lookupCacheMs;
      if (mirror !== undefined && stored !== undefined) {
        if (options.region !== undefined && options.region !== mirror.region) {
          throw new UsageError(`${engine.description} is the replica of region '${mirror.region}': its clients run there (not in '${options.region}')`);
        }
        const services = options.mirrorWrites === false ? [] : await readServiceAddresses(engine);
        region = clientRegion(stored, mirror.region);
        metaOptions.region = region;
        if (services.length === 0) {
          readOnlyReason = `read-only mirror of volume '${mirror.name}' in region '${mirror.region}': write through the primary region '${mirror.primary}'`;
          meta = await Meta.open(new ReadOnlyEngine(engine, readOnlyReason), metaOptions);
        } else {
          // The replica's secret gives the token; the service is reached only when the client first writes,
          // so reads work with the primary down.
          const token = options.token ?? (await serviceToken(engine, stored.uuid));
          const guard = `mirror of volume '${mirror.name}' in region '${mirror.region}': its metadata writes go through the primary's service`;
          const local = await Meta.open(new ReadOnlyEngine(engine, guard), { ...metaOptions, lookupCacheMs: 0 });
          // Its reads are the replica's: no lookup cache on the service's side of it.
          const remote = RemoteMeta.withFormat(new ServiceClient(serviceClientOptions(options, services, token, region)), stored, { lookupCacheMs: 0 });
          meta = new MirrorWriteMeta({ local, remote, replica: engine, region, applyWaitMs: options.applyWaitMs });
        }
      } else {
        region = stored === undefined ? options.region : clientRegion(stored, options.region);
        if (region !== undefined) metaOptions.region = region;
        meta = await Meta.open(engine, metaOptions);
      }
    }
    const format = meta.format;
    loadCompression(format.compression);
    const regions = volumeRegions(format);
    // A one-region volume has one bucket, whatever region name the client gave (a label for its session); a
    // metadata-only mirror has none and reads the primary's.
    const here = regions.named ? bucketRegion(regions, region ?? regions.primary) : regions.primary;
    const multi = regions.named && regions.regions.size > 1;
    const url = regions.regions.get(here)!.storage;
    const injected = observe(here, options.stores?.[here] ?? options.store);
    // Reported where background failures go (the mount's and the CLI's log); the SDK alone warns once.
    const warn = options.onBackgroundError ?? ((what: string, err: unknown) => process.emitWarning(`ferry: ${what} failed: ${err instanceof Error ? err.message : String(err)}`));
    const meter = new EgressMeter(region ?? regions.primary);
    const wrapHere = (inner: ObjectStore): ObjectStore => wrapStore(here, inner);
    store = meter.wrap(multi ? await openOwnBucket(here, url, injected, (err) => warn(`the probe of region ${here}'s bucket`, err), wrapHere) : (injected ?? (await openBucket(url, wrapHere))), here);
    let placement: RegionPlacement | undefined;
    if (multi) {
      for (const [name, r] of regions.regions) {
        if (name !== here) others.set(name, meter.wrap(observe(name, options.stores?.[name]) ?? wrapStore(name, await openObjectStore(r.storage)), name));
      }
      const m = meta;
      placement = new RegionPlacement({
        region: here,
        primary: regions.primary,
        stores: new Map([[here, store], ...others]),
        lookup: async (id) => (await m.getSlices([id])).get(id),
      });
    }
    const memBytes = options.memCacheBytes ?? 128 << 20;
    let diskCache;
    if (options.cacheDir !== undefined) {
      const { DiskBlockCache } = await import('../cache/disk.js');
      diskCache = new DiskBlockCache({
        ...options.cacheOptions,
        dir: path.join(options.cacheDir, format.uuid),
        capacityBytes: options.cacheBytes ?? 10 * 2 ** 30,
      });
    }
    if (options.cacheDir !== undefined) {
      // Per region in a volume with several: staged blocks belong in the bucket of the region that wrote them
      // (their slices' home), so a client of another region opening this cache dir leaves them alone.
      const dir = path.join(options.cacheDir, format.uuid, multi ? `writeback-${here}` : 'writeback');
      // Without write-back, a staging area left by an earlier run is opened only to upload what it holds.
      if (options.writeback === true || Writeback.hasStaged(dir)) {
        const e = engine;
        const client = { host: os.hostname(), pid: process.pid, dir: path.resolve(options.cacheDir), region: region ?? '' };
        writeback = new Writeback({
          ...options.writebackOptions,
          dir,
          store,
          onBackgroundError: (err, what) => warn(what, err),
          ...(e === undefined
            ? {}
            : {
                onState: (st) => putStaging(e, writeback!.id, { version: 1, ...client, updated: Date.now(), blocks: st.blocks, bytes: st.bytes, oldest: st.oldest ?? null, slices: st.slices, partial: st.partial }),
              }),
        });
      }
    }
    if (options.cacheGroup !== undefined) {
      if (engine === undefined) throw new UsageError('a cache group needs the metadata engine (members register there): not available through a ferry:// service yet');
      if (options.cacheGroup.sharing !== false && diskCache === undefined) {
        throw new UsageError(`sharing a cache group needs a disk cache (--cache-dir), or consume only with --no-sharing`);
      }
      group = await CacheGroupMember.prepare(engine, format.uuid, options.cacheGroup, warn);
    }
    const chunks = createChunkStore({
      store,
      home: regions.named ? here : undefined,
      source: placement,
      blockBytes: format.blockBytes,
      compression: format.compression,
      memCache: memBytes > 0 ? new MemoryBlockCache({ capacityBytes: memBytes, shareBuffers: true }) : undefined,
      diskCache,
      staging: writeback,
      writeback: options.writeback === true,
      extraTiers: group === undefined ? undefined : [group.tier],
      ...(options.rangeReadBytesMax === undefined ? {} : { rangeReadBytesMax: options.rangeReadBytesMax }),
      ...(cm === undefined ? {} : { onServed: servedCounter(cm, here, region ?? regions.primary) }),
    });
    if (group !== undefined && options.cacheGroup?.sharing !== false) {
      try {
        await group.startSharing(chunks.reads, diskCache, regions.named ? here : undefined);
      } catch (err) {
        await group.close();
        await chunks.close().catch(() => undefined);
        throw err;
      }
    }
    const vfs = new Vfs(meta, chunks, readOnlyReason === undefined ? options : { ...options, readOnlyReason });
    const info = os.userInfo();
    const ctx: Ctx = { uid: options.uid ?? info.uid, gid: options.gid ?? info.gid, gids: options.gids ?? [] };
    const m = meta;
    const g = group;
    const e = engine;
    const wb = writeback;
    const vol = new Volume(vfs, ctx, options.umask ?? 0o022, async () => {
      try {
        await vfs.close();
        // Closed files are staged; give their uploads a bounded time (what is left uploads at the next open).
        await wb?.drain(options.writebackCloseWaitMs ?? WRITEBACK_CLOSE_WAIT_MS_DEFAULT);
      } finally {
        await g?.close();
        await meter.close().catch((err: unknown) => warn('writing egress counters', err));
        await m.close();
        await chunks.close();
        await e?.close();
      }
    });
    vol.cacheGroup = group;
    vol.egress = meter;
    vol.writeback = writeback;
    // A ferry:// client has no engine to keep its egress counters in: they stay in the process (metrics).
    if (engine !== undefined) meter.start(engine, options.egressFlushMs, warn);
    return vol;
  } catch (err) {
    await writeback?.close().catch(() => undefined);
    await group?.close().catch(() => undefined);
    await meta?.close().catch(() => undefined);
    await store?.close().catch(() => undefined);
    for (const s of others.values()) await s.close().catch(() => undefined);
    await engine?.close();
    throw err;
  }
}

/** Counts a served read: hits and bytes per tier, and bytes per (bucket region -> client region) pair. */
function servedCounter(cm: ClientMetrics, ownBucket: string, client: string): (tier: string, region: string | undefined, bytes: number) => void {
  return (tier, region, bytes) => {
    cm.blockReadHits.inc({ tier });
    cm.blockReadBytes.inc({ tier }, bytes);
    if (region !== undefined) cm.regionReadBytes.inc({ from: region === BUCKET_TIER ? ownBucket : region, to: client }, bytes);
  };
}
