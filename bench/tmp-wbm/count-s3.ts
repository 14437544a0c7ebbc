import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { formatVolume, openMetaEngine, openVolume } from '../../src/index.js';
import { openObjectStore } from '../../src/object/registry.js';
import type { ObjectStore } from '../../src/object/store.js';
import { startS3Server } from '../../test/helpers/s3server.js';
const counts: Record<string, number> = {};
function counting(inner: ObjectStore): ObjectStore {
  return new Proxy(inner, { get(t, p, r) { const v = Reflect.get(t, p, r); if (typeof v === 'function' && ['get','put','head','list','delete','putChecked'].includes(String(p))) return (...a: unknown[]) => { counts[String(p)] = (counts[String(p)] ?? 0) + 1; return (v as Function).apply(t, a); }; return v; } });
}
const s3 = await startS3Server();
const dir = await mkdtemp(path.join(tmpdir(), 'wbm-'));
const metaUrl = 'sqlite://' + path.join(dir, 'm.db');
const e = await openMetaEngine(metaUrl, { create: true });
await formatVolume(e, { name: 'x', storage: s3.url('p'), blockBytes: 4 << 20, compression: 'none', trashDays: 0 });
await e.close();
for (const wb of [false, true]) {
  const vol = await openVolume(metaUrl, { uid: 0, gid: 0, heartbeatMs: 0, store: counting(await openObjectStore(s3.url('p'))), ...(wb ? { writeback: true, cacheDir: dir + '/c' } : {}) });
  for (const k of Object.keys(counts)) delete counts[k];
  const N = 300; const data = Buffer.alloc(4096, 1);
  const t = performance.now();
  for (let i = 0; i < N; i++) await vol.writeFile(`/${wb}${i}`, data);
  const ms = performance.now() - t;
  if (wb) await vol.writeback!.drain();
  console.log(wb ? 'writeback' : 'direct', 'per file', Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, v / N])), 'files/s', (N / ms * 1000).toFixed(0), 'ms/file', (ms / N).toFixed(2));
  await vol.close();
}
await s3.stop();
