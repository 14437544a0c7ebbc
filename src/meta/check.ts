/**
 * The metadata half of `ferry fsck`: the invariants of the records, checked over one consistent engine
 * snapshot (the one `dump` writes), and the usage recount `fsck --repair` writes back. The block half
 * (every block of every live slice is stored and verifies) is cli/fsck.ts's, fed by `slices` below.
 *
 *   entries   the parent is a directory, the child inode exists, the entry's type is the inode's
 *   dirs      named by exactly one entry (root and .trash by none); `parent` is that entry's directory;
 *             nlink = 2 + subdirectories
 *   others    nlink = entries naming it; nlink 0 only while a session holds the file open
 *   chunks    belong to an existing regular file; every reference lies inside its chunk and its slice,
 *             names a live slice of the same size (not one released for deletion)
 *   slices    refs = references from chunks (> 0); not also released
 *   counters  nextInode > every inode, nextSlice > every slice id; usage: usedBytes = the data bytes files
 *             hold (holes free), inodes = inode records - 2, each plus the usage records clients have not
 *             merged yet; a file's `used` = its data bytes. Usage is only a warning (`--repair` recounts)
 *
 * Memory grows with the namespace (a few dozen bytes per inode and entry), which suits the embedded engine.
 */

import type { MetaEngine } from './engine.js';
import { counters, decodeOp, inodes as inodeRecs, sessions, sustained as sustainedRecs } from './records.js';
import { dataBytes, type SliceRef } from './slices.js';
import { ROOT_INO, TRASH_INO, nameProblem, type DelSliceRec, type FileType, type SliceRefRec } from './types.js';

export interface MetadataCheck {
  /** Not errors: usage counters that differ from a recount. */
  warnings: string[];
  /** The usage counters as recounted from the snapshot, and the files whose `used` is off (with the right value). */
  recount: UsageRecount;
  inodes: number;
  entries: number;
  /** Every live slice, and the first inode whose chunks name it (for messages). */
  slices: Map<number, SliceRefRec>;
  sliceOwner: Map<number, number>;
  /** The changelog seq of the snapshot checked. */
  seq: number;
}

export interface UsageRecount {
  usedBytes: number;
  inodes: number;
  files: Array<[ino: number, used: number]>;
}

interface Inode {
  type: FileType;
  nlink: number;
  parent: number;
  used: number | undefined;
}

interface Entry {
  parent: number;
  name: string;
  ino: number;
  type: FileType;
}

/** Checks every record invariant; each problem goes to `problem` as found, one line naming the record. */
export async function checkMetadata(engine: MetaEngine, chunkBytes: number, problem: (line: string) => void): Promise<MetadataCheck> {
  // Sessions first: a file opened and unlinked after this read shows as an orphan only on a busy volume.
  const sustained = new Set<number>();
  await engine.txn(
    async (tx) => {
      for (const [sid] of await sessions.scan(tx)) for (const [ino] of await sustainedRecs.scan(tx, sid)) sustained.add(ino);
    },
    { readonly: true },
  );

  const inodes = new Map<number, Inode>();
  const entries: Entry[] = [];
  const chunks: Array<{ ino: number; index: number; refs: SliceRef[] }> = [];
  const slices = new Map<number, SliceRefRec>();
  const delslices = new Map<number, DelSliceRec>();
  const counterValues = new Map<string, number>();
  const pendingUsage = { bytes: 0, inodes: 0 };
  const xattrInos = new Set<number>();
  const { seq } = await engine.snapshot((op) => {
    const r = decodeOp(op);
    if (r.kind !== 'other' && r.value === null) return;
    switch (r.kind) {
      case 'inode': {
        const v = r.value!;
        inodes.set(r.ino, { type: v.type, nlink: v.nlink, parent: v.parent, used: v.used });
        break;
      }
      case 'entry':
        entries.push({ parent: r.parent, name: r.name, ino: r.value!.ino, type: r.value!.type });
        break;
      case 'chunk':
        chunks.push({ ino: r.ino, index: r.index, refs: r.value! });
        break;
      case 'slice':
        slices.set(r.id, r.value!);
        break;
      case 'delslice':
        delslices.set(r.id, r.value!);
        break;
      case 'counter':
        counterValues.set(r.name, r.value!);
        break;
      case 'usage': {
        const [b, i] = r.value!;
        pendingUsage.bytes += b;
        pendingUsage.inodes += i;
        break;
      }
      case 'xattr':
        xattrInos.add(r.ino);
        break;
      default:
        break;
    }
  });

  // ---- entries and inodes
  const named = new Map<number, number>(); // ino -> entries naming it
  const subdirs = new Map<number, number>(); // dir ino -> directory entries in it
  const dirParent = new Map<number, number>(); // dir ino -> the directory whose entry names it
  for (const e of entries) {
    const where = `entry ${JSON.stringify(e.name)} in directory ${e.parent}`;
    const bad = nameProblem(e.name);
    if (bad !== undefined) problem(`${where}: invalid name (${bad}); clients refuse to list the directory`);
    const p = inodes.get(e.parent);
    if (p === undefined) problem(`${where}: the directory (inode ${e.parent}) does not exist`);
    else if (p.type !== 'dir') problem(`${where}: inode ${e.parent} is a ${p.type}, not a directory`);
    const a = inodes.get(e.ino);
    if (a === undefined) {
      problem(`${where}: points to inode ${e.ino}, which does not exist`);
      continue;
    }
    if (a.type !== e.type) problem(`${where}: says ${e.type}, inode ${e.ino} is a ${a.type}`);
    named.set(e.ino, (named.get(e.ino) ?? 0) + 1);
    if (a.type === 'dir') {
      subdirs.set(e.parent, (subdirs.get(e.parent) ?? 0) + 1);
      dirParent.set(e.ino, e.parent);
    }
  }
  for (const special of [ROOT_INO, TRASH_INO]) {
    const a = inodes.get(special);
    if (a === undefined) problem(`inode ${special} (${special === ROOT_INO ? 'root' : '.trash'}) does not exist`);
    else if (a.type !== 'dir') problem(`inode ${special} (${special === ROOT_INO ? 'root' : '.trash'}) is a ${a.type}, not a directory`);
  }
  for (const [ino, a] of inodes) {
    const n = named.get(ino) ?? 0;
    if (a.type === 'dir') {
      const special = ino === ROOT_INO || ino === TRASH_INO;
      if (special) {
        if (n !== 0) problem(`directory ${ino} (${ino === ROOT_INO ? 'root' : '.trash'}) is named by ${n} entries`);
        if (a.parent !== ROOT_INO) problem(`directory ${ino}: parent is ${a.parent}, expected ${ROOT_INO}`);
      } else if (n !== 1) {
        problem(`directory ${ino} is named by ${n} entries (expected 1)`);
      } else if (dirParent.get(ino) !== a.parent) {
        problem(`directory ${ino}: parent is ${a.parent}, but its entry is in directory ${dirParent.get(ino)!}`);
      }
      const want = 2 + (subdirs.get(ino) ?? 0);
      if (a.nlink !== want) problem(`directory ${ino}: nlink is ${a.nlink}, expected ${want} (2 + subdirectories)`);
    } else if (a.nlink !== n) {
      if (a.nlink === 0 && n === 0) {
        if (!sustained.has(ino)) problem(`inode ${ino} (${a.type}) has no links and no session holds it open (orphan)`);
      } else {
        problem(`inode ${ino} (${a.type}): nlink is ${a.nlink}, but ${n} entries name it`);
      }
    }
  }
  for (const ino of xattrInos) if (!inodes.has(ino)) problem(`extended attributes of inode ${ino}, which does not exist`);

  // ---- chunks and slices
  const C = chunkBytes;
  const refCount = new Map<number, number>();
  const sliceOwner = new Map<number, number>();
  for (const c of chunks) {
    const where = `chunk ${c.index} of inode ${c.ino}`;
    const a = inodes.get(c.ino);
    if (a === undefined) problem(`${where}: the inode does not exist`);
    else if (a.type !== 'file') problem(`${where}: inode is a ${a.type}, not a file`);
    if (!Array.isArray(c.refs)) {
      problem(`${where}: malformed slice list`);
      continue;
    }
    for (const r of c.refs) {
      const ref = `${where}, slice ${r.id} [pos ${r.pos} len ${r.len}]`;
      if (!(r.pos >= 0 && r.len > 0 && r.pos + r.len <= C)) problem(`${ref}: reaches outside the chunk`);
      if (r.id === 0) continue;
      if (!(r.off >= 0 && r.off + r.len <= r.size)) problem(`${ref}: reads [${r.off}, ${r.off + r.len}) of a ${r.size}-byte slice`);
      refCount.set(r.id, (refCount.get(r.id) ?? 0) + 1);
      if (!sliceOwner.has(r.id)) sliceOwner.set(r.id, c.ino);
      const s = slices.get(r.id);
      if (s === undefined) {
        problem(delslices.has(r.id) ? `${ref}: the slice was released for deletion but is still referenced` : `${ref}: the slice does not exist`);
      } else if (s.size !== r.size) {
        problem(`${ref}: the reference says ${r.size} bytes, the slice has ${s.size}`);
      }
    }
  }
  for (const [id, s] of slices) {
    const n = refCount.get(id) ?? 0;
    if (s.refs !== n) problem(`slice ${id}: refs is ${s.refs}, but ${n} chunk references name it`);
    if (delslices.has(id)) problem(`slice ${id} is both live and released for deletion`);
  }

  // ---- counters
  // Loops, not Math.max(...): spreading a million ids would overflow the stack.
  let maxIno = 0;
  for (const ino of inodes.keys()) maxIno = Math.max(maxIno, ino);
  for (const e of entries) maxIno = Math.max(maxIno, e.ino);
  let maxSlice = 0;
  for (const m of [slices, delslices, refCount]) for (const id of m.keys()) maxSlice = Math.max(maxSlice, id);
  const nextInode = counterValues.get('nextInode');
  const nextSlice = counterValues.get('nextSlice');
  if (nextInode === undefined || !(nextInode > maxIno)) problem(`counter nextInode is ${String(nextInode)}, but inode ${maxIno} exists`);
  if (nextSlice === undefined || !(nextSlice > maxSlice)) problem(`counter nextSlice is ${String(nextSlice)}, but slice ${maxSlice} exists`);
  const dataOf = new Map<number, number>();
  for (const c of chunks) if (Array.isArray(c.refs)) dataOf.set(c.ino, (dataOf.get(c.ino) ?? 0) + dataBytes(c.refs));
  let fileBytes = 0;
  const warnings: string[] = [];
  const usedWrong: Array<[number, number]> = [];
  for (const [ino, a] of inodes) {
    if (a.type !== 'file') continue;
    const data = dataOf.get(ino) ?? 0;
    fileBytes += data;
    if (a.used !== undefined && a.used !== data) {
      warnings.push(`inode ${ino}: used is ${a.used}, but its chunks hold ${data} bytes of data`);
      usedWrong.push([ino, data]);
    }
  }
  const usedBytes = (counterValues.get('usedBytes') ?? 0) + pendingUsage.bytes;
  if (usedBytes !== fileBytes) warnings.push(`usage counter usedBytes is ${usedBytes}, but files hold ${fileBytes} bytes of data`);
  const inodeCount = (counterValues.get('inodes') ?? 0) + pendingUsage.inodes;
  if (inodeCount !== inodes.size - 2) warnings.push(`usage counter inodes is ${inodeCount}, but ${inodes.size - 2} inodes exist besides root and .trash`);

  return {
    warnings,
    recount: { usedBytes: fileBytes, inodes: inodes.size - 2, files: usedWrong },
    inodes: inodes.size,
    entries: entries.length,
    slices,
    sliceOwner,
    seq,
  };
}

/**
 * Writes a recount into the usage counters and the files' `used`, unless a client session is live (it may
 * hold usage changes not yet recorded): then nothing is written and the number of live sessions returned.
 * Callers clean dead sessions first (their cleanup merges their usage records).
 */
export async function repairUsage(engine: MetaEngine, recount: UsageRecount): Promise<{ repaired: true } | { repaired: false; liveSessions: number }> {
  const live = (await engine.txn((tx) => sessions.scan(tx), { readonly: true })).length;
  if (live > 0) return { repaired: false, liveSessions: live };
  await engine.txn(async (tx) => {
    counters.put(tx, 'usedBytes', recount.usedBytes);
    counters.put(tx, 'inodes', recount.inodes);
    for (const [ino, used] of recount.files) {
      const a = await inodeRecs.get(tx, ino);
      if (a !== undefined) inodeRecs.put(tx, ino, { ...a, used });
    }
  });
  return { repaired: true };
}
