import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { formatVolume, openMetaEngine, openVolume } from '../../src/index.js';
import { FileStore } from '../../src/object/file.js';
import type { ObjectStore } from '../../src/object/store.js';
import { FaultStore } from '../../src/object/faults.js';

const counts: Record<string, number> = {};
function counting(inner: ObjectStore): ObjectStore {
  return new Proxy(inner, { get(t, p, r) { const v = Reflect.get(t, p, r); if (typeof v === 'function' && ['get','put','head','list','delete','putChecked'].includes(String(p))) return (...a: unknown[]) => { counts[String(p)] = (counts[String(p)] ?? 0) + 1; return (v as Function).apply(t, a); }; return v; } });
}
const dir = await mkdtemp(path.join(tmpdir(), 'wbm-'));
const metaUrl = 'sqlite://' + path.join(dir, 'm.db');
const e = await openMetaEngine(metaUrl, { create: true });
await formatVolume(e, { name: 'x', storage: 'file://' + dir + '/b', blockBytes: 4 << 20, compression: 'none', trashDays: 0 });
const txns = { n: 0 };
const ecounts: Record<string, number> = {};
const wb = process.argv[2] === 'wb';
const fault = new FaultStore(new FileStore(dir + '/b'), { seed: 1 });
if (process.argv[3] === 'down') fault.setDown(true);
const vol = await openVolume(metaUrl, { ...(wb ? { writeback: true, cacheDir: dir + '/cache' } : {}), uid: 0, gid: 0, heartbeatMs: 0, store: counting(fault), wrapEngine: (eng) => new Proxy(eng, { get(t, p, r) { const v = Reflect.get(t, p, r); if (typeof v === 'function') return (...a: unknown[]) => { txns.n++; ecounts[String(p)] = (ecounts[String(p)] ?? 0) + 1; return (v as Function).apply(t, a); }; return v; } }) });
const N = 500;
const data = Buffer.alloc(4096, 7);
for (const k of Object.keys(counts)) delete counts[k];
txns.n = 0; for (const k of Object.keys(ecounts)) delete ecounts[k];
const t = performance.now();
for (let i = 0; i < N; i++) await vol.writeFile('/f' + i, data);
const ms = performance.now() - t;
console.log('per file: object calls', Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, v / N])), 'engine calls', Object.fromEntries(Object.entries(ecounts).map(([k, v]) => [k, v / N])), 'files/s', (N / ms * 1000).toFixed(0));
if (wb) console.log(vol.writeback!.uploadStats());
fault.setDown(false);
await vol.close();
