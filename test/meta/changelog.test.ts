/**
 * Changelog replay: a long seeded random workload through `Meta` on engine A; a fresh engine B that only
 * receives A's changelog (applyLog in batches) must end with the same logged records and sequence, and so
 * must an engine C restored from a mid-way snapshot of A plus the log tail. The final state of A is also
 * checked for the invariants the POSIX layer promises (link counts, slice references, usage counters).
 */

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { isFsError } from '../../src/errors.js';
import type { LogOp, MetaEngine } from '../../src/meta/engine.js';
import { formatVolume, Meta } from '../../src/meta/meta.js';
import { dataBytes, type SliceRef } from '../../src/meta/slices.js';
import { SqliteEngine } from '../../src/meta/sqlite.js';
import {
  CHUNK_BYTES,
  FALLOC_KEEP_SIZE,
  FALLOC_PUNCH_HOLE,
  FALLOC_ZERO_RANGE,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  ROOT_CTX,
  ROOT_INO,
  TRASH_INO,
  XATTR_CREATE,
  XATTR_REPLACE,
  type Ctx,
  type EntryRec,
  type FileType,
  type InodeRec,
  type SliceRefRec,
} from '../../src/meta/types.js';
import { mulberry32, randomSeed } from '../../src/util/random.js';
import { collect, iterate } from './engine-conformance.js';

const SEED = Number(process.env['FERRY_SEED'] ?? randomSeed());
console.log(`changelog tests: seed ${SEED} (replay with FERRY_SEED=${SEED})`);

const OPS = 2500;
const LOG_BATCH = 97;
const NAMES = ['a', 'b', 'c', 'd', 'é', 'f\u{1F600}', 'long-' + 'x'.repeat(200)];
const T0 = Date.UTC(2024, 2, 1, 0, 0);

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function freshEngine(): Promise<SqliteEngine> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-changelog-'));
  dirs.push(dir);
  return new SqliteEngine(join(dir, 'meta.db'), { create: true });
}

/** Copies A's changelog after `from` into `to`, in batches. */
async function ship(from: MetaEngine, to: MetaEngine, after: number): Promise<number> {
  let batches = 0;
  for (let seq = after; ; ) {
    const entries = await from.readLog(seq, LOG_BATCH);
    if (entries.length === 0) return batches;
    await to.applyLog(entries);
    seq = entries[entries.length - 1]!.seq;
    batches++;
  }
}

interface Workload {
  engine: SqliteEngine;
  meta: Meta;
  mid: { records: LogOp[]; seq: number };
  counts: Map<string, { ok: number; failed: number }>;
}

/** Runs the random workload; takes a snapshot of A half-way. */
async function runWorkload(seed: number, trashDays: number): Promise<Workload> {
  const random = mulberry32(seed);
  const int = (n: number): number => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const engine = await freshEngine();
  const clock = { now: T0 };
  await formatVolume(engine, { name: 'replay', storage: 'mem://replay', blockBytes: 4 << 20, compression: 'none', trashDays }, T0);
  // B and C read A's whole log afterwards: as a registered consumer, so that no entry is trimmed before.
  await engine.registerConsumer('replay', 0);
  const meta = await Meta.open(engine, { heartbeatMs: 0, now: () => clock.now });
  const user: Ctx = { uid: 1000, gid: 1000, gids: [50] };
  const ctx = (): Ctx => (int(5) === 0 ? user : ROOT_CTX);
  const knownDirs: number[] = [ROOT_INO];
  const open: number[] = [];
  const counts = new Map<string, { ok: number; failed: number }>();
  let mid: { records: LogOp[]; seq: number } | undefined;

  const entries = async (dir: number): Promise<Array<{ name: string; ino: number; type: FileType }>> => {
    try {
      return await meta.readdir(ROOT_CTX, dir);
    } catch (e) {
      if (isFsError(e)) return [];
      throw e;
    }
  };
  const anyEntry = async (): Promise<{ dir: number; name: string; ino: number; type: FileType } | undefined> => {
    const dir = pick(knownDirs);
    const list = await entries(dir);
    if (list.length === 0) return undefined;
    const e = pick(list);
    return { dir, ...e };
  };
  const anyFile = async (): Promise<number | undefined> => {
    for (let tries = 0; tries < 4; tries++) {
      const e = await anyEntry();
      if (e?.type === 'file') return e.ino;
    }
    return undefined;
  };
  const newRef = async (): Promise<{ index: number; ref: SliceRef }> => {
    const index = int(3);
    const pos = int(4) === 0 ? CHUNK_BYTES - 1 - int(5000) : int(20_000);
    const len = 1 + int(Math.min(CHUNK_BYTES - pos, 8000));
    const size = len + int(100);
    return { index, ref: { pos, id: await meta.newSliceId(), size, off: int(size - len + 1), len } };
  };

  const ops: Record<string, () => Promise<unknown>> = {
    mknod: async () => meta.mknod(ctx(), pick(knownDirs), pick(NAMES), pick(['file', 'file', 'fifo', 'socket'] as const), int(0o10000)),
    mkdir: async () => {
      const d = await meta.mkdir(ctx(), pick(knownDirs), pick(NAMES), pick([0o755, 0o777, 0o2775, 0o1777, 0o700]));
      knownDirs.push(d.ino);
    },
    symlink: async () => meta.symlink(ctx(), pick(knownDirs), pick(NAMES), pick(['../x', 'target', 'é/\u{1F600}'])),
    link: async () => {
      const e = await anyEntry();
      if (e !== undefined) await meta.link(ctx(), e.ino, pick(knownDirs), pick(NAMES));
    },
    unlink: async () => {
      const e = await anyEntry();
      await meta.unlink(ctx(), e?.dir ?? pick(knownDirs), e !== undefined && int(4) !== 0 ? e.name : pick(NAMES));
    },
    rmdir: async () => {
      const e = await anyEntry();
      await meta.rmdir(ctx(), e?.dir ?? pick(knownDirs), e !== undefined && int(4) !== 0 ? e.name : pick(NAMES));
    },
    rename: async () => {
      const e = await anyEntry();
      if (e === undefined) return;
      const flags = pick([0, 0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE]);
      await meta.rename(ctx(), e.dir, e.name, pick(knownDirs), pick(NAMES), flags);
    },
    setattr: async () => {
      const e = await anyEntry();
      if (e === undefined) return;
      await meta.setattr(ctx(), e.ino, pick([{ mode: int(0o10000) }, { uid: pick([0, 1000, 7]) }, { gid: pick([0, 50, 1000]) }, { atime: 'now' as const, mtime: T0 + int(1e9) + 0.25 }]));
    },
    setxattr: async () => {
      const e = await anyEntry();
      if (e === undefined) return;
      const value = Buffer.from(Array.from({ length: int(40) }, () => int(256)));
      await meta.setxattr(ctx(), e.ino, pick(['user.a', 'user.b', 'trusted.t', 'security.s']), value, pick([0, 0, XATTR_CREATE, XATTR_REPLACE]));
    },
    removexattr: async () => {
      const e = await anyEntry();
      if (e !== undefined) await meta.removexattr(ctx(), e.ino, pick(['user.a', 'user.b', 'trusted.t']));
    },
    write: async () => {
      const ino = await anyFile();
      if (ino === undefined) return;
      const writes = [await newRef()];
      if (int(3) === 0) writes.push(await newRef());
      await meta.write(ino, writes, int(2) === 0 ? T0 + int(1e6) : undefined);
    },
    truncate: async () => {
      const ino = await anyFile();
      if (ino !== undefined) await meta.truncate(ino, pick([0, int(30_000), CHUNK_BYTES + int(10_000), int(3 * CHUNK_BYTES)]));
    },
    copyFileRange: async () => {
      const a = await anyFile();
      const b = await anyFile();
      if (a !== undefined && b !== undefined) await meta.copyFileRange(a, int(CHUNK_BYTES + 20_000), b, int(CHUNK_BYTES + 20_000), 1 + int(30_000));
    },
    fallocate: async () => {
      const ino = await anyFile();
      const mode = pick([0, FALLOC_KEEP_SIZE, FALLOC_PUNCH_HOLE | FALLOC_KEEP_SIZE, FALLOC_ZERO_RANGE, FALLOC_ZERO_RANGE | FALLOC_KEEP_SIZE, FALLOC_PUNCH_HOLE]);
      if (ino !== undefined) await meta.fallocate(ino, mode, int(40_000), 1 + int(20_000));
    },
    openRelease: async () => {
      if (open.length > 0 && int(2) === 0) {
        await meta.release(open.splice(int(open.length), 1)[0]!);
        return;
      }
      const ino = await anyFile();
      if (ino === undefined) return;
      await meta.open(ROOT_CTX, ino, 4);
      open.push(ino);
    },
    compact: async () => {
      const ino = await anyFile();
      if (ino === undefined) return;
      const chunks = await meta.readChunks(ino);
      if (chunks.length === 0) return;
      const [index, refs] = pick(chunks);
      if (refs.length < 2) return;
      const old = refs.slice(0, 2);
      const start = Math.min(...old.map((r) => r.pos));
      const end = Math.max(...old.map((r) => r.pos + r.len));
      const id = await meta.newSliceId();
      await meta.replaceSlices(ino, index, old, { pos: start, id, size: end - start, off: 0, len: end - start });
    },
    abandon: async () => meta.abandonSlice(await meta.newSliceId(), 1 + int(1000)),
    cleanTrash: async () => meta.cleanTrash(),
  };
  const weights: Array<[string, number]> = [
    ['mknod', 10], ['mkdir', 6], ['symlink', 3], ['link', 4], ['unlink', 8], ['rmdir', 4], ['rename', 10], ['setattr', 5],
    ['setxattr', 4], ['removexattr', 2], ['write', 14], ['truncate', 5], ['copyFileRange', 5], ['fallocate', 4],
    ['openRelease', 4], ['compact', 3], ['abandon', 1], ['cleanTrash', 1],
  ];
  const total = weights.reduce((s, [, w]) => s + w, 0);

  for (let i = 0; i < OPS; i++) {
    if (i === Math.floor(OPS / 2)) mid = await collect(engine);
    clock.now += int(20 * 60_000);
    let r = int(total);
    let name = weights[0]![0];
    for (const [n, w] of weights) {
      if (r < w) {
        name = n;
        break;
      }
      r -= w;
    }
    const c = counts.get(name) ?? { ok: 0, failed: 0 };
    counts.set(name, c);
    try {
      await ops[name]!();
      c.ok++;
    } catch (e) {
      if (!isFsError(e)) throw new Error(`seed ${seed} op ${i} (${name}) failed: ${String(e)}`, { cause: e });
      c.failed++;
    }
  }
  for (const ino of open) await meta.release(ino);
  return { engine, meta, mid: mid!, counts };
}

/** What the POSIX layer promises about its records, checked on a snapshot. */
function checkInvariants(records: LogOp[]): void {
  const inodes = new Map<number, InodeRec>();
  const entries: Array<{ parent: number; name: string; e: EntryRec }> = [];
  const sliceRefs = new Map<number, number>();
  const slices = new Map<number, SliceRefRec>();
  const delslices = new Set<number>();
  const counters = new Map<string, number>();
  const data = new Map<number, number>();
  const pending = { bytes: 0, inodes: 0 };
  for (const [kind, part, key, value] of records) {
    if (kind === 'inode') inodes.set(Number(key), value as unknown as InodeRec);
    else if (kind === 'entry') entries.push({ parent: Number(part), name: key, e: value as unknown as EntryRec });
    else if (kind === 'chunk') {
      for (const r of value as unknown as SliceRef[]) if (r.id !== 0) sliceRefs.set(r.id, (sliceRefs.get(r.id) ?? 0) + 1);
      data.set(Number(part), (data.get(Number(part)) ?? 0) + dataBytes(value as unknown as SliceRef[]));
    } else if (kind === 'usage') {
      const [b, i] = value as [number, number];
      pending.bytes += b;
      pending.inodes += i;
    } else if (kind === 'slice') slices.set(Number(key), value as unknown as SliceRefRec);
    else if (kind === 'delslice') delslices.add(Number(key));
    else if (kind === 'counter') counters.set(key, value as number);
  }
  const links = new Map<number, number>();
  const subdirs = new Map<number, number>();
  for (const { parent, name, e } of entries) {
    const a = inodes.get(e.ino);
    assert.ok(a !== undefined, `entry ${parent}/${name} names missing inode ${e.ino}`);
    assert.equal(a.type, e.type, `entry ${parent}/${name} type`);
    assert.ok(inodes.get(parent)?.type === 'dir', `entry ${name} in non-directory ${parent}`);
    links.set(e.ino, (links.get(e.ino) ?? 0) + 1);
    if (e.type === 'dir') {
      subdirs.set(parent, (subdirs.get(parent) ?? 0) + 1);
      assert.equal(a.parent, parent, `directory ${e.ino} parent`);
    }
  }
  let used = 0;
  for (const [ino, a] of inodes) {
    if (a.type === 'dir') {
      const trashLink = ino === TRASH_INO ? 1 : 0; // .trash is reached by a reserved name, not an entry
      assert.equal(a.nlink, 2 + (subdirs.get(ino) ?? 0), `directory ${ino} nlink`);
      if (ino !== ROOT_INO) assert.equal((links.get(ino) ?? 0) + trashLink, 1, `directory ${ino} names`);
    } else {
      assert.equal(a.nlink, links.get(ino) ?? 0, `inode ${ino} (${a.type}) nlink`);
      assert.ok(a.nlink > 0, `inode ${ino} has no name and is not open`);
    }
    if (a.type === 'file') {
      // Usage counts the data a file holds, not its length: holes are free.
      used += data.get(ino) ?? 0;
      assert.equal(a.used, data.get(ino) ?? 0, `inode ${ino} used`);
    }
  }
  for (const [id, n] of sliceRefs) assert.equal(slices.get(id)?.refs, n, `slice ${id} refs`);
  for (const [id, s] of slices) {
    assert.ok(sliceRefs.has(id), `slice ${id} (refs ${s.refs}) is referenced by no chunk`);
    assert.ok(!delslices.has(id), `slice ${id} is both live and released`);
  }
  // Counters plus the usage records not merged yet (a snapshot holds both).
  assert.equal((counters.get('usedBytes') ?? 0) + pending.bytes, used, 'usedBytes counter');
  assert.equal((counters.get('inodes') ?? 0) + pending.inodes, inodes.size - 2, 'inodes counter');
}

describe('changelog replay', () => {
  for (const trashDays of [0, 1]) {
    it(`a fresh engine fed A's changelog ends equal to A (trashDays ${trashDays}, seed ${SEED})`, async () => {
      const { engine, meta, mid, counts } = await runWorkload(SEED + trashDays, trashDays);
      const b = await freshEngine();
      const c = await freshEngine();
      try {
        console.log(`trashDays ${trashDays}, ops ok/failed: ${[...counts].sort().map(([n, c]) => `${n} ${c.ok}/${c.failed}`).join(', ')}`);
        const ok = [...counts.values()].reduce((s, x) => s + x.ok, 0);
        assert.ok(ok > OPS / 3, `only ${ok} of ${OPS} ops succeeded: ${JSON.stringify([...counts])}`);
        for (const name of ['mkdir', 'write', 'rename', 'unlink', 'copyFileRange']) assert.ok((counts.get(name)?.ok ?? 0) > 0, `no successful ${name}`);

        await meta.flushUsage(); // usage counters are batched; the invariants below compare them
        const final = await collect(engine);
        assert.equal(final.seq, await engine.lastSeq());
        assert.ok(final.seq > OPS / 4, `only ${final.seq} log entries`);
        checkInvariants(final.records);

        const batches = await ship(engine, b, 0);
        assert.ok(batches > 1, 'shipped in several batches');
        assert.equal(await b.lastSeq(), await engine.lastSeq());
        assert.deepEqual(await collect(b), final);

        // Restore a mid-way snapshot, then apply only the tail.
        assert.ok(mid.seq > 0 && mid.seq < final.seq);
        await c.restore(iterate(mid.records), mid.seq);
        assert.deepEqual(await collect(c), mid);
        await ship(engine, c, mid.seq);
        assert.equal(await c.lastSeq(), final.seq);
        assert.deepEqual(await collect(c), final);

        // The replica is a usable volume with the same tree.
        const replica = await Meta.open(b, { session: false });
        assert.deepEqual(await replica.readdir(ROOT_CTX, ROOT_INO, { plus: true }), await meta.readdir(ROOT_CTX, ROOT_INO, { plus: true }));
        await replica.close();
      } finally {
        await meta.close();
        await engine.close();
        await b.close();
        await c.close();
      }
    });
  }
});
