/**
 * A volume with a metadata service for tests: a SQLite primary with region a (bucket), mirror regions with
 * their own SQLite replicas (followed in-process, as the mirror tests do), and the service running in-process
 * on a loopback port next to the primary, registered in the volume.
 */

import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatVolume, openMetaEngine, openVolume, type OpenVolumeOptions, type Volume } from '../../src/index.js';
import type { MetaEngine } from '../../src/meta/engine.js';
import { loadFormat } from '../../src/meta/meta.js';
import { registerServiceAddress } from '../../src/meta/service.js';
import { MirrorFollower } from '../../src/region/mirror.js';
import { addRegion } from '../../src/region/regions.js';
import { MetaService } from '../../src/service/server.js';
import { serviceToken } from '../../src/service/token.js';

export interface MirrorSpec {
  name: string;
  /** A full mirror (own bucket) or metadata-only (none). */
  bucket: boolean;
}

export interface ServiceLab {
  dir: string;
  primaryUrl: string;
  replicaUrl(region: string): string;
  primary: MetaEngine;
  replicas: Map<string, MetaEngine>;
  service: MetaService | undefined;
  token: string;
  /** ferry://127.0.0.1:PORT of the running service. */
  serviceUrl(): string;
  startService(port?: number): Promise<MetaService>;
  stopService(): Promise<void>;
  /** A client in the primary region (direct engine), in a mirror region (its replica), or of the service. */
  open(where: 'primary' | 'service' | string, options?: OpenVolumeOptions): Promise<Volume>;
  /** Waits until every replica has applied the primary's newest seq. */
  settle(): Promise<void>;
  cleanup(): Promise<void>;
}

export async function makeServiceLab(mirrors: MirrorSpec[] = [{ name: 'm', bucket: false }], opts: { service?: boolean; follow?: boolean } = {}): Promise<ServiceLab> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-service-'));
  await mkdir(join(dir, 'bucket-a'));
  const primaryUrl = `sqlite://${join(dir, 'primary.db')}`;
  const replicaUrl = (r: string): string => `sqlite://${join(dir, `replica-${r}.db`)}`;
  const primary = await openMetaEngine(primaryUrl, { create: true });
  await formatVolume(primary, { name: 'served', storage: '', regions: { a: { storage: `file://${join(dir, 'bucket-a')}` } }, primary: 'a', blockBytes: 64 << 10, compression: 'none', trashDays: 0 });
  for (const m of mirrors) {
    if (m.bucket) await mkdir(join(dir, `bucket-${m.name}`));
    await addRegion(primary, m.name, { replica: replicaUrl(m.name), ...(m.bucket ? { storage: `file://${join(dir, `bucket-${m.name}`)}` } : {}) });
  }
  const token = await serviceToken(primary, (await loadFormat(primary))!.uuid);
  const replicas = new Map<string, MetaEngine>();
  const followers: Array<{ f: MirrorFollower; stop: AbortController; done: Promise<void> }> = [];
  for (const m of mirrors) {
    const replica = await openMetaEngine(replicaUrl(m.name), { create: true });
    replicas.set(m.name, replica);
    const f = new MirrorFollower({ primary, replica, region: m.name, pollMs: 1 });
    await f.prepare();
    if (opts.follow !== false) {
      const stop = new AbortController();
      const done = f.run(stop.signal).catch(() => undefined);
      followers.push({ f, stop, done });
    }
  }
  const volumes: Volume[] = [];
  const lab: ServiceLab = {
    dir,
    primaryUrl,
    replicaUrl,
    primary,
    replicas,
    service: undefined,
    token,
    serviceUrl: () => `ferry://127.0.0.1:${lab.service!.port}`,
    async startService(port = 0) {
      const engine = await openMetaEngine(primaryUrl);
      const svc = await MetaService.start({ engine, token: Buffer.from(token, 'hex'), host: '127.0.0.1', port, heartbeatMs: 0 });
      const close = svc.close.bind(svc);
      svc.close = async () => {
        await close();
        await engine.close();
      };
      lab.service = svc;
      await registerServiceAddress(primary, `ferry://127.0.0.1:${svc.port}`);
      return svc;
    },
    async stopService() {
      await lab.service?.close();
      lab.service = undefined;
    },
    async open(where, options = {}) {
      const base: OpenVolumeOptions = { uid: 0, gid: 0, gids: [], heartbeatMs: 0, memCacheBytes: 0, serviceClient: { pingMs: 0 }, ...options };
      const url = where === 'primary' ? primaryUrl : where === 'service' ? lab.serviceUrl() : replicaUrl(where);
      const v = await openVolume(url, where === 'service' ? { token, ...base } : base);
      volumes.push(v);
      return v;
    },
    async settle() {
      const last = await primary.lastSeq();
      for (const r of replicas.values()) while ((await r.lastSeq()) < last) await new Promise((res) => setTimeout(res, 2));
    },
    async cleanup() {
      for (const v of volumes) await v.close().catch(() => undefined);
      await lab.stopService().catch(() => undefined);
      for (const f of followers) f.stop.abort();
      await Promise.all(followers.map((f) => f.done));
      for (const r of replicas.values()) await r.close().catch(() => undefined);
      await primary.close().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
  if (opts.service !== false) {
    await lab.startService();
    // The registration is a logged setting: mirror clients see it once their replica applied it.
    if (opts.follow !== false) await lab.settle();
  }
  return lab;
}
