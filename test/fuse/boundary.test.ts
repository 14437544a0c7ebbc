/**
 * The addon's boundary table, checked on both sides (no mount needed):
 *   - the C side as written: native/fuse/src/layout.h and layout.c, parsed, state the table that
 *     src/fuse/boundary.ts states (ops and their codes, the header, each operation's arguments and reply
 *     values by name, order and type, the records' fields);
 *   - the C side as built: the addon's `layout` export states it too (skipped when the addon is not built;
 *     after changing the C table, rebuild: npm rebuild @ferryfs/fuse);
 *   - the TS side: AddonFuse, driven through a fake addon that calls it as the C table says, hands each
 *     argument to the FuseOps parameter its name says, and answers with its values in the reply's order
 *     (records field by field).
 * Moving an argument on one side only fails one of these.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { HEADER, OPS, RECORDS, type AddonConstant, type AddonLayout, type Caller, type FerryFuseAddon, type FuseLock, type FuseOps, type FuseStat, type FuseStatfs, type OpName } from '../../src/fuse/boundary.js';
import { AddonFuse } from '../../src/fuse/native.js';

const SRC = join(import.meta.dirname, '../../native/fuse/src');

type Pairs = Array<[string, string]>;
/** The table as boundary.ts states it, in the addon's export shape. */
function tsLayout(): AddonLayout & { ops: string[] } {
  const args: Record<string, Pairs> = {};
  const reply: Record<string, Pairs> = {};
  for (const [op, l] of Object.entries(OPS)) {
    args[op] = l.args.map(([n, t]) => [n, t]);
    if ('reply' in l) reply[op] = l.reply.map(([n, t]) => [n, t]);
  }
  const records = Object.fromEntries(Object.entries(RECORDS).map(([k, v]) => [k, [...v]]));
  return { ops: Object.keys(OPS), header: HEADER.map(([n, t]) => [n, t]), args, reply, records };
}

// ------------------------------------------------------------------------------------------ C source

/** The X(...) entries of `#define NAME(X)` in text, each as its arguments (strings unquoted). */
function xMacro(text: string, name: string): string[][] {
  const start = text.indexOf(`#define ${name}(X)`);
  assert.ok(start >= 0, `layout.h defines ${name}`);
  const out: string[][] = [];
  for (const line of text.slice(start).split('\n').slice(1)) {
    const m = /^\s*X\(([^)]*)\)/.exec(line);
    if (m !== null) out.push(m[1]!.split(',').map((s) => s.trim().replace(/^"(.*)"$/, '$1')));
    if (!line.trimEnd().endsWith('\\')) break;
  }
  assert.ok(out.length > 0, `${name} has entries`);
  return out;
}

/** The rows `[OP_X] = { A, B },` of the array `name` in layout.c, by op id. */
function rows(text: string, name: string): Map<string, string[]> {
  const start = text.indexOf(`${name}[OP_COUNT]`);
  assert.ok(start >= 0, `layout.c defines ${name}`);
  const body = text.slice(start, text.indexOf('\n};', start));
  const out = new Map<string, string[]>();
  for (const m of body.matchAll(/^\s*\[(OP_\w+)\]\s*=\s*\{([^}]*)\},?\s*$/gm)) {
    out.set(m[1]!, m[2]!.split(',').map((s) => s.trim()).filter((s) => s !== ''));
  }
  return out;
}

/** The table as native/fuse/src/layout.h and layout.c state it. */
function cSourceLayout(): AddonLayout & { ops: string[] } {
  const h = readFileSync(join(SRC, 'layout.h'), 'utf8');
  const c = readFileSync(join(SRC, 'layout.c'), 'utf8');
  const types = new Map(xMacro(h, 'FF_TYPES').map(([id, name]) => [id!, name!]));
  const desc = (entries: string[][]): Map<string, [string, string]> =>
    new Map(entries.map(([id, name, type]) => {
      assert.ok(types.has(type!), `${id}'s type ${type} is one of FF_TYPES`);
      return [id!, [name!, types.get(type!)!]];
    }));
  const argDesc = desc(xMacro(h, 'FF_ARGS'));
  const valueDesc = desc(xMacro(h, 'FF_VALUES'));
  const ops = xMacro(h, 'FF_OPS');
  const pairs = (ids: string[], d: Map<string, [string, string]>): Pairs =>
    ids.map((id) => {
      assert.ok(d.has(id), `${id} is declared in layout.h`);
      return d.get(id)!;
    });
  const header = /HEADER\[\]\s*=\s*\{([^}]*)\}/.exec(c);
  assert.ok(header !== null, 'layout.c defines HEADER');
  const argRows = rows(c, 'OP_ARGS');
  const replyRows = rows(c, 'OP_REPLY');
  const args: Record<string, Pairs> = {};
  const reply: Record<string, Pairs> = {};
  for (const [id, name] of ops) {
    args[name!] = pairs(argRows.get(id!) ?? [], argDesc);
    if (id !== 'OP_INIT' && id !== 'OP_DONE') reply[name!] = pairs(replyRows.get(id!) ?? [], valueDesc);
  }
  for (const id of [...argRows.keys(), ...replyRows.keys()]) assert.ok(ops.some(([o]) => o === id), `${id} is one of FF_OPS`);
  const fields = (name: string): string[] => xMacro(h, name).map(([, n]) => n!);
  return {
    ops: ops.map(([, name]) => name!),
    header: pairs(header[1]!.split(',').map((s) => s.trim()), argDesc),
    args,
    reply,
    records: { stat: fields('FF_STAT_FIELDS'), statfs: fields('FF_STATFS_FIELDS'), lock: fields('FF_LOCK_FIELDS') },
  };
}

function loadAddon(): FerryFuseAddon | undefined {
  try {
    return createRequire(import.meta.url)('@ferryfs/fuse') as FerryFuseAddon;
  } catch {
    return undefined;
  }
}

describe('the FUSE boundary table: C and TS state the same one', () => {
  it('native/fuse/src/layout.h and layout.c, as written, state the table of src/fuse/boundary.ts', () => {
    const c = cSourceLayout();
    const ts = tsLayout();
    assert.deepEqual(c.ops, ts.ops, 'the operations, in op code order');
    assert.deepEqual(c.header, ts.header, 'the header of every call');
    for (const op of ts.ops) {
      assert.deepEqual(c.args[op], ts.args[op], `${op}'s arguments`);
      assert.deepEqual(c.reply[op], ts.reply[op], `${op}'s reply values`);
    }
    assert.deepEqual(c.records, ts.records, 'the records');
  });

  const addon = loadAddon();
  it('the addon, as built, states the table of src/fuse/boundary.ts', { skip: addon === undefined ? 'the addon is not built' : false }, () => {
    const ts = tsLayout();
    assert.deepEqual(addon!.ops, ts.ops, 'the operations, in op code order');
    const { header, args, reply, records } = addon!.layout;
    const stale = ' (after a change to the C table, rebuild the addon: npm rebuild @ferryfs/fuse)';
    assert.deepEqual(header, ts.header, 'the header' + stale);
    for (const op of ts.ops) {
      assert.deepEqual(args[op], ts.args[op], `${op}'s arguments${stale}`);
      assert.deepEqual(reply[op], ts.reply[op], `${op}'s reply values${stale}`);
    }
    assert.deepEqual(Object.keys(args).sort(), [...ts.ops].sort());
    assert.deepEqual(Object.keys(reply).sort(), Object.keys(ts.reply).sort());
    assert.deepEqual(records, ts.records, 'the records' + stale);
  });
});

// ------------------------------------------------------------------------------------------ TS side

/** Linux's values, for when the addon is not built (its own are used when it is). */
const LINUX_CONSTANTS: Record<AddonConstant, number> = {
  OPEN_KEEP_CACHE: 1, OPEN_DIRECT_IO: 2, OPEN_NONSEEKABLE: 4, F_RDLCK: 0, F_WRLCK: 1, F_UNLCK: 2, LOCK_SH: 1, LOCK_EX: 2, LOCK_NB: 4, LOCK_UN: 8,
  SET_ATTR_MODE: 1, SET_ATTR_UID: 2, SET_ATTR_GID: 4, SET_ATTR_SIZE: 8, SET_ATTR_ATIME: 16, SET_ATTR_MTIME: 32, SET_ATTR_ATIME_NOW: 128, SET_ATTR_MTIME_NOW: 256,
};
const K = loadAddon()?.constants ?? LINUX_CONSTANTS;

const OWNER = 0xfeedface12345678n;
const OWNER_HEX = 'feedface12345678';
const DATA = Buffer.from('request bytes');
const CALLER = { uid: 501, gid: 502, pid: 503 };
const STAT: FuseStat = { mode: 0o100644, uid: 11, gid: 12, size: 13, nlink: 14, ino: 15, rdev: 16, blksize: 17, blocks: 18, atime: 19.5, mtime: 20.5, ctime: 21.5, dev: 0 };
const STATFS: FuseStatfs = { bsize: 31, frsize: 32, blocks: 33, bfree: 34, bavail: 35, files: 36, ffree: 37, favail: 38, fsid: 39, flag: 40, namemax: 41 };

/**
 * One value per argument name, all different where a swap could go unseen. Those read as flags or codes
 * are valid values of their kind; the cases below override them where a different value takes another path.
 */
const V = {
  ino: 1001, parent: 1002, name: 'the-name', newParent: 1003, newName: 'the-new-name', target: 'the-target', fh: 1004, flags: 1005,
  mask: 1006, datasync: 1007, mode: 1008, rdev: 1009, size: 1010, offset: 1011, length: 1012, data: DATA, lockOwner: OWNER,
  flockRelease: 3, flockOp: K.LOCK_EX, fallocateMode: 1013, sleep: 4, lockType: K.F_WRLCK, lockStart: 1014, lockLength: 1015, lockPid: 1016,
  toSet: K.SET_ATTR_MODE | K.SET_ATTR_UID | K.SET_ATTR_GID | K.SET_ATTR_SIZE | K.SET_ATTR_ATIME | K.SET_ATTR_MTIME,
  setMode: 1017, setUid: 1018, setGid: 1019, setSize: 1020, setAtimeMs: 1021.25, setMtimeMs: 1022.75,
};
const LOCK: FuseLock = { type: 'w', start: V.lockStart, end: V.lockStart + V.lockLength, pid: V.lockPid };
const record = <R>(fields: readonly (keyof R)[], r: R): unknown[] => fields.map((f) => r[f]);

interface Case {
  /** Argument values that differ from V. */
  with?: Record<string, unknown>;
  /** The FuseOps call expected (method and arguments after the caller). */
  call: [keyof FuseOps, ...unknown[]];
  /** What that call resolves to. */
  result?: unknown;
  /** The reply expected: result, and values by name (placed in OPS[op].reply's order to compare). */
  reply: { res: number; values?: Record<string, unknown> };
  /** The inode the mount must drop from the kernel's attribute cache. */
  invalidates?: number;
}

type RequestOp = Exclude<OpName, 'init' | 'done'>;
const CASES: Record<RequestOp, Case[]> = {
  lookup: [{ call: ['lookup', V.parent, V.name], result: STAT, reply: { res: 0, values: { attr: record(RECORDS.stat, STAT) } } }],
  getattr: [{ call: ['getattr', V.ino], result: STAT, reply: { res: 0, values: { attr: record(RECORDS.stat, STAT) } } }],
  setattr: [
    {
      call: ['setattr', V.ino, { mode: V.setMode, uid: V.setUid, gid: V.setGid, size: V.setSize, atime: V.setAtimeMs, mtime: V.setMtimeMs }],
      result: STAT,
      reply: { res: 0, values: { attr: record(RECORDS.stat, STAT) } },
    },
    { with: { toSet: K.SET_ATTR_ATIME_NOW | K.SET_ATTR_MTIME }, call: ['setattr', V.ino, { atime: 'now', mtime: V.setMtimeMs }], result: STAT, reply: { res: 0, values: { attr: record(RECORDS.stat, STAT) } } },
  ],
  readlink: [{ call: ['readlink', V.ino], result: 'link-target', reply: { res: 0, values: { target: 'link-target' } } }],
  mknod: [{ call: ['mknod', V.parent, V.name, V.mode, V.rdev], result: STAT, reply: { res: 0, values: { attr: record(RECORDS.stat, STAT) } } }],
  mkdir: [{ call: ['mkdir', V.parent, V.name, V.mode], result: STAT, reply: { res: 0, values: { attr: record(RECORDS.stat, STAT) } } }],
  unlink: [{ call: ['unlink', V.parent, V.name], reply: { res: 0 } }],
  rmdir: [{ call: ['rmdir', V.parent, V.name], reply: { res: 0 } }],
  symlink: [{ call: ['symlink', V.parent, V.name, V.target], result: STAT, reply: { res: 0, values: { attr: record(RECORDS.stat, STAT) } } }],
  rename: [{ call: ['rename', V.parent, V.name, V.newParent, V.newName, 0], reply: { res: 0 } }],
  link: [{ call: ['link', V.ino, V.newParent, V.newName], result: STAT, reply: { res: 0, values: { attr: record(RECORDS.stat, STAT) } } }],
  open: [
    { call: ['open', V.ino, V.flags], result: { fh: 71, keepCache: true }, reply: { res: 0, values: { fh: 71, openFlags: K.OPEN_KEEP_CACHE } } },
    { call: ['open', V.ino, V.flags], result: { fh: 72, directIo: true }, reply: { res: 0, values: { fh: 72, openFlags: K.OPEN_DIRECT_IO } }, invalidates: V.ino },
  ],
  read: [{ call: ['read', V.fh, V.size, V.offset], result: Buffer.from('answer'), reply: { res: 6, values: { data: Buffer.from('answer') } } }],
  write: [{ call: ['write', V.fh, DATA, V.size, V.offset], result: 9, reply: { res: 9 } }],
  flush: [{ call: ['flush', V.fh, OWNER_HEX], reply: { res: 0 } }],
  release: [
    { call: ['release', V.fh, OWNER_HEX], reply: { res: 0 } },
    { with: { flockRelease: 0 }, call: ['release', V.fh, undefined], reply: { res: 0 } },
  ],
  fsync: [{ call: ['fsync', V.fh], reply: { res: 0 } }],
  opendir: [{ call: ['opendir', V.ino], result: 73, reply: { res: 0, values: { fh: 73, openFlags: 0 } } }],
  readdir: [
    {
      call: ['readdir', V.ino, V.fh, V.offset, V.size],
      result: { names: ['a', 'b'], inos: [5, 6], modes: [0o40000, 0o100000] },
      reply: { res: 0, values: { names: ['a', 'b'], inos: [5, 6], modes: [0o40000, 0o100000] } },
    },
  ],
  readdirplus: [
    {
      call: ['readdirplus', V.ino, V.fh, V.offset, V.size],
      result: { nameBytes: Buffer.from('a\0b\0'), attrs: new Float64Array(RECORDS.stat.length * 2).fill(7), ageMs: 12.5 },
      reply: { res: 0, values: { nameBytes: Buffer.from('a\0b\0'), attrs: new Float64Array(RECORDS.stat.length * 2).fill(7), ageMs: 12.5 } },
    },
  ],
  releasedir: [{ call: ['releasedir', V.fh], reply: { res: 0 } }],
  fsyncdir: [{ call: ['fsyncdir'], reply: { res: 0 } }],
  statfs: [{ call: ['statfs'], result: STATFS, reply: { res: 0, values: { statfs: record(RECORDS.statfs, STATFS) } } }],
  setxattr: [{ call: ['setxattr', V.ino, V.name, DATA, V.flags], reply: { res: 0 } }],
  getxattr: [{ call: ['getxattr', V.ino, V.name], result: Buffer.from('xv'), reply: { res: 0, values: { value: Buffer.from('xv') } } }],
  listxattr: [{ call: ['listxattr', V.ino], result: ['user.a', 'user.b'], reply: { res: 0, values: { names: ['user.a', 'user.b'] } } }],
  removexattr: [{ call: ['removexattr', V.ino, V.name], reply: { res: 0 } }],
  access: [{ call: ['access', V.ino, V.mask], reply: { res: 0 } }],
  create: [
    {
      call: ['create', V.parent, V.name, V.mode, V.flags],
      result: { attr: STAT, open: { fh: 74, keepCache: true } },
      reply: { res: 0, values: { attr: record(RECORDS.stat, STAT), fh: 74, openFlags: K.OPEN_KEEP_CACHE } },
    },
  ],
  getlk: [
    {
      call: ['getlk', V.fh, LOCK, OWNER_HEX],
      result: { type: 'r', start: 10, end: 30, pid: 99 },
      reply: { res: 0, values: { lock: record(RECORDS.lock, { type: K.F_RDLCK, start: 10, length: 20, pid: 99 }) } },
    },
    { call: ['getlk', V.fh, LOCK, OWNER_HEX], result: undefined, reply: { res: 0, values: { lock: [K.F_UNLCK] } } },
  ],
  setlk: [
    { call: ['setlk', V.fh, LOCK, OWNER_HEX, true], reply: { res: 0 } },
    { with: { sleep: 0, lockType: K.F_RDLCK }, call: ['setlk', V.fh, { ...LOCK, type: 'r' }, OWNER_HEX, false], reply: { res: 0 } },
  ],
  flock: [
    { call: ['flock', V.fh, 'ex', true, OWNER_HEX], reply: { res: 0 } },
    { with: { flockOp: K.LOCK_SH | K.LOCK_NB }, call: ['flock', V.fh, 'sh', false, OWNER_HEX], reply: { res: 0 } },
  ],
  fallocate: [{ call: ['fallocate', V.fh, V.fallocateMode, V.offset, V.length], reply: { res: 0 } }],
};

/** An AddonFuse on a fake addon, over FuseOps that record their calls and resolve to `result`. */
function harness(): {
  send(op: OpName, values: Record<string, unknown>): number;
  calls: unknown[][];
  replies: Map<number, { res: number; values: unknown[] }>;
  invalidated: number[];
  setResult(v: unknown): void;
} {
  const calls: unknown[][] = [];
  const replies = new Map<number, { res: number; values: unknown[] }>();
  const invalidated: number[] = [];
  let result: unknown;
  let dispatch: ((...a: unknown[]) => void) | undefined;
  const fake: FerryFuseAddon = {
    mount: (_mnt, _args, d) => {
      dispatch = d;
      return {};
    },
    unmount: () => undefined,
    exit: () => undefined,
    close: () => undefined,
    reply: (id, res, ...values) => {
      assert.ok(!replies.has(id), `one reply to request ${id}`);
      replies.set(id, { res, values });
      return true;
    },
    interrupted: () => false,
    invalidate: (_h, ino) => {
      invalidated.push(ino);
      return 0;
    },
    ops: Object.keys(OPS),
    layout: { header: [], args: {}, reply: {}, records: {} },
    constants: K,
  };
  const ops = new Proxy({} as FuseOps, {
    get: (_t, method: string) => {
      if (method === 'run') {
        return (_op: string, fn: () => Promise<unknown>, done: (res: number, v?: unknown) => void) =>
          fn().then((v) => done(0, v), (err: unknown) => assert.fail(`the operation failed: ${String(err)}`));
      }
      return (...args: unknown[]) => {
        calls.push([method, ...args]);
        return Promise.resolve(result);
      };
    },
  });
  const mountArgs = { fsname: 't', attrTimeoutSec: 1, entryTimeoutSec: 1, negativeTimeoutSec: 0, maxWriteBytes: 1 << 20, maxReadBytes: 1 << 20, readAheadBytes: 1 << 20 };
  const fuse = new AddonFuse(fake, '/nowhere', ops, mountArgs, (msg, err) => assert.fail(`${msg}: ${String(err)}`));
  fuse.mount(() => undefined);
  let nextId = 1;
  return {
    calls,
    replies,
    invalidated,
    setResult: (v) => (result = v),
    // As the C side calls it: the header, then the operation's arguments in the table's order.
    send(op, values) {
      const id = nextId++;
      const header: Record<string, unknown> = { op: Object.keys(OPS).indexOf(op), id, ...CALLER };
      dispatch!(...HEADER.map(([n]) => header[n]), ...OPS[op].args.map(([n]) => {
        assert.ok(n in values, `the test has a value for ${op}'s ${n}`);
        return values[n];
      }));
      return id;
    },
  };
}

describe('AddonFuse reads the table by name', () => {
  it('has a case for every request of the table', () => {
    assert.deepEqual(Object.keys(CASES).sort(), Object.keys(OPS).filter((op) => op !== 'init' && op !== 'done').sort());
  });

  for (const [op, cases] of Object.entries(CASES) as Array<[RequestOp, Case[]]>) {
    it(`${op}: each argument reaches the parameter its name says; the reply's values are in the table's order`, async () => {
      for (const k of cases) {
        const h = harness();
        h.setResult(k.result);
        const id = h.send(op, { ...V, ...k.with });
        await new Promise((r) => setImmediate(r));
        assert.equal(h.calls.length, 1, `${op} makes one FuseOps call`);
        const [method, ...rest] = h.calls[0]!;
        assert.equal(method, k.call[0]);
        // statfs and fsyncdir take no caller.
        const [caller, ...args] = method === 'statfs' || method === 'fsyncdir' ? [undefined, ...rest] : rest;
        if (caller !== undefined) {
          const c = caller as Caller;
          assert.deepEqual({ uid: c.uid, gid: c.gid, pid: c.pid }, CALLER, `${op}'s caller`);
        }
        assert.deepEqual(args, k.call.slice(1), `${op}'s arguments`);
        const got = h.replies.get(id);
        assert.ok(got !== undefined, `${op} is answered`);
        const names = 'reply' in OPS[op] ? OPS[op].reply.map(([n]) => n) : [];
        const want = names.map((n) => k.reply.values?.[n]);
        assert.deepEqual(got, { res: k.reply.res, values: want }, `${op}'s reply`);
        assert.deepEqual(h.invalidated, k.invalidates === undefined ? [] : [k.invalidates], `${op}'s invalidations`);
      }
    });
  }
});
