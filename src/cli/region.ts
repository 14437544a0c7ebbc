/**
 * `ferry region list|add|remove META ...`: a volume's regions (DESIGN §2). Adding a region to a one-region
 * volume names the existing bucket 'default' (the primary); removing one refuses while it is the only holder
 * of some slice's blocks.
 */

import type { Command } from 'commander';
import { BadUsageError, UsageError } from '../errors.js';
import type { FormatRec } from '../meta/types.js';
import { describeStoreUrl, openObjectStore } from '../object/registry.js';
import { RetryStore } from '../object/retry.js';
import type { ObjectStore } from '../object/store.js';
import { readEpoch } from '../meta/epoch.js';
import { addRegion, checkRegionName, regionRole, removeRegion, sliceHome, volumeRegions } from '../region/regions.js';
import { prepareReplica } from '../region/mirror.js';
import { maskUrl } from '../util/url.js';
import { prepareBucket } from './format.js';
import { asBadUsage, checkBucket, openEngine, openMetaTools, out, printJson } from './util.js';

/** The buckets of every region but the primary (whose bucket `openTools` opens), wrapped in retries. */
export async function openOtherRegionStores(format: FormatRec): Promise<Map<string, ObjectStore>> {
  const r = volumeRegions(format);
  const stores = new Map<string, ObjectStore>();
  try {
    for (const [name, rec] of r.regions) {
      if (name === r.primary) continue;
      checkBucket(rec.storage);
      stores.set(name, new RetryStore(await openObjectStore(rec.storage)));
    }
  } catch (err) {
    for (const s of stores.values()) await s.close().catch(() => undefined);
    throw err;
  }
  return stores;
}

/** Every region's bucket, wrapped in retries. */
/**
 * Every region's bucket, each with retries. `wrap` goes under the retries (e.g. MetricsStore, which counts
 * each attempt).
 */
export async function openRegionStores(format: FormatRec, wrap: (region: string, store: ObjectStore) => ObjectStore = (_r, s) => s): Promise<Map<string, ObjectStore>> {
  const r = volumeRegions(format);
  const stores = new Map<string, ObjectStore>();
  try {
    for (const [name, rec] of r.regions) {
      checkBucket(rec.storage);
      stores.set(name, new RetryStore(wrap(name, await openObjectStore(rec.storage))));
    }
  } catch (err) {
    for (const s of stores.values()) await s.close().catch(() => undefined);
    throw err;
  }
  return stores;
}

export async function runRegionList(metaUrl: string, opts: { json?: boolean }): Promise<void> {
  const { engine, format } = await openEngine(metaUrl);
  try {
    const r = volumeRegions(format);
    // After a promotion the metadata primary is the epoch's region; `primary` stays the data home (sliceHome).
    const epoch = await readEpoch(engine);
    const rows = [...r.all].map(([name, rec]) => ({
      name,
      primary: name === r.primary,
      metadataPrimary: epoch === undefined ? name === r.primary : name === epoch.region,
      role: regionRole(r, name),
      storage: rec.storage === undefined ? null : describeStoreUrl(rec.storage),
      replica: rec.replica === undefined ? null : maskUrl(rec.replica),
    }));
    if (opts.json === true) return await printJson(rows);
    const width = Math.max(6, ...rows.map((x) => x.name.length)) + 2;
    const roleWidth = Math.max(...rows.map((x) => x.role.length)) + 2;
    await out(
      rows
        .map((x) => `${x.name.padEnd(width)}${x.role.padEnd(roleWidth)}${x.storage ?? '(no bucket: reads the primary\'s)'}${x.replica === null ? '' : `  replica ${x.replica}`}${epoch !== undefined && x.metadataPrimary ? `  metadata primary of epoch ${epoch.epoch}` : ''}\n`)
        .join(''),
    );
  } finally {
    await engine.close();
  }
}

export async function runRegionAdd(metaUrl: string, name: string, url: string | undefined, opts: { force?: boolean; replica?: string }): Promise<void> {
  asBadUsage(() => checkRegionName(name));
  if (url === undefined && opts.replica === undefined) {
    throw new BadUsageError(`region '${name}' needs a bucket URL, a --replica metadata URL, or both`);
  }
  const { engine, format } = await openEngine(metaUrl);
  try {
    if (volumeRegions(format).all.has(name)) throw new UsageError(`volume '${format.name}' already has a region '${name}'`);
    if (url !== undefined) await prepareBucket(url, opts.force === true);
    if (opts.replica !== undefined) await prepareReplica(opts.replica, format, name, opts.force === true);
    const next = await addRegion(engine, name, { ...(url === undefined ? {} : { storage: url }), ...(opts.replica === undefined ? {} : { replica: opts.replica }) });
    const r = volumeRegions(next);
    const what = [url === undefined ? undefined : describeStoreUrl(url), opts.replica === undefined ? undefined : `replica ${maskUrl(opts.replica)}`].filter((x) => x !== undefined).join(', ');
    await out(
      `added region '${name}' (${what}) to volume '${next.name}' as a ${regionRole(r, name)}; regions: ${[...r.all.keys()].join(', ')} (primary ${r.primary})\n` +
        (url === undefined ? '' : `  its bucket fills as \`ferry replicate\` copies the existing blocks\n`) +
        (opts.replica === undefined ? '' : `  its replica fills once \`ferry mirror ${maskUrl(metaUrl)} --region ${name}\` runs; then its clients open ${maskUrl(opts.replica)}\n`),
    );
  } finally {
    await engine.close();
  }
}

export async function runRegionRemove(metaUrl: string, name: string, opts: { force?: boolean }): Promise<void> {
  const tools = await openMetaTools(metaUrl);
  try {
    const r = volumeRegions(tools.format);
    if (!r.all.has(name)) throw new UsageError(`volume '${tools.format.name}' has no region '${name}'`);
    if (name === r.primary) throw new UsageError(`region '${name}' is the primary and cannot be removed`);
    let only = 0;
    for (const s of (await tools.meta.listSlices()).values()) {
      if (sliceHome(s.home, r) === name && (s.copies ?? []).filter((c) => c !== name && r.regions.has(c)).length === 0) only++;
    }
    if (only > 0 && opts.force !== true) {
      throw new UsageError(
        `region '${name}' is the only holder of ${only} slice(s) not yet replicated; run "ferry replicate --once" first, or --force to remove it anyway (their data becomes unreadable)`,
      );
    }
    const next = await removeRegion(tools.engine, name);
    await out(`removed region '${name}' from volume '${next.name}'; regions: ${[...volumeRegions(next).regions.keys()].join(', ')}\n`);
  } finally {
    await tools.close();
  }
}

export function register(program: Command): void {
  const region = program
    .command('region')
    .summary("list or change a volume's regions")
    .description(
      "List, add or remove a volume's regions. A region has a bucket, a metadata replica (a mirror region), or both; clients run in one (--region, or by opening its replica) and write to its bucket.",
    );
  region
    .command('list')
    .description("List the volume's regions with their role (primary, bucket, mirror, metadata-only mirror), buckets and replicas (secrets masked).")
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .option('--json', 'print JSON')
    .action((meta: string, opts: { json?: boolean }) => runRegionList(meta, opts));
  region
    .command('add')
    .description('Add a region with its bucket. A one-region volume first names its bucket region "default" (the primary).')
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .argument('<NAME>', 'region name: 1-32 characters of a-z, 0-9, -')
    .argument('[URL]', 'bucket URL, e.g. file:///data/bucket-b (none: a metadata-only mirror, which reads the primary\'s bucket)')
    .option('--replica <META>', 'metadata URL of the region\'s replica (a mirror region, kept current by "ferry mirror")')
    .option('--force', 'use a bucket that already holds volume data, or a replica that holds another volume')
    .addHelpText(
      'after',
      '\nExamples:\n  $ ferry region add sqlite:///data/vol.db eu file:///data/bucket-eu\n  $ ferry replicate sqlite:///data/vol.db --once\n' +
        '  $ ferry region add sqlite:///data/vol.db far --replica sqlite:///far/replica.db      # metadata-only mirror\n' +
        '  $ ferry mirror sqlite:///data/vol.db --region far',
    )
    .action((meta: string, name: string, url: string | undefined, opts: { force?: boolean; replica?: string }) => runRegionAdd(meta, name, url, opts));
  region
    .command('remove')
    .description('Remove a region (not the primary). Refuses while the region alone holds some slice, unless --force.')
    .argument('<META>', 'metadata URL, e.g. sqlite:///data/vol.db')
    .argument('<NAME>', 'region name')
    .option('--force', 'remove it even if some slices exist only in its bucket')
    .action((meta: string, name: string, opts: { force?: boolean }) => runRegionRemove(meta, name, opts));
}
