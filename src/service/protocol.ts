/**
 * The metadata service's wire protocol (version 1): one HTTP request per metadata operation.
 *
 *   POST /v1/op                          authorization: Bearer <token, 64 hex>
 *   { "op": "create", "args": [...],     c: the client's id (fixed for its life), g: its region,
 *     "c": "<client>", "g": "region",    n: the request number — mutating operations only; a retry sends the
 *     "n": 17, "drop": [12, 15] }           same n, and the service answers it instead of applying it twice
 *                                        drop: numbers of earlier requests whose answers the client has seen
 *   200 { "ok": true, "r": <result>, "seq": 123, "a": 1, "sid": "..." }
 *   200 { "ok": false, "code": "ENOENT", "message": "..." }     a POSIX answer: final
 *   401 { "ok": false, "code": "EAUTH", ... }                   bad or missing token: final
 *   503 { "ok": false, "code": "EAGAIN", ... }                  the engine did not answer: retry (same n)
 *
 * `seq` is the changelog seq of the newest commit the operation made (0: none): a client of a mirror region
 * waits for its replica to reach it. `a` says the operation left a request record (the client lists n in a
 * later `drop`). `sid` names the client's session on the service: when it changes, the service lost the
 * client's open files (a restart), and the client registers them again. `fx` (answers to mutating
 * operations, POSIX errors included) is what the operation's transactions changed, as the lookup cache needs
 * it (meta/lookupcache.ts CacheEffects): the client's own cache forgets and stores exactly what a Meta in its
 * place would, so it sees its own writes at once.
 *
 * Level 2 (hello answers `proto`): `fx`, `lookup`'s `pair` argument (answers [directory, entry] attributes),
 * `openCreate` (open(2) with O_CREAT in one request). A client needs a service of PROTOCOL_LEVEL_MIN or newer.
 *
 * Level 3: what rides along in any request, so that bookkeeping costs no round trip of its own.
 *   rl: { "s": "<sid>", "f": 40, "r": [[41, 1234], ...] }   releases (close(2)) queued since the last request:
 *        [release id, inode]. Applied before the operation, whatever the operation answers; each id at most
 *        once per session (a retried or repeated request's releases are skipped), ids below the floor `f`
 *        are known applied (the client saw their answers) and skipped too; all of them skipped when `s` is
 *        not the client's session now (the opens they drop went with a lost session, and the client does
 *        not register them again). The answer says `rla: 1` (POSIX errors included): a service without it
 *        ignored them, and the client sends them as `release` requests.
 *   rv: [[parent, "name"], ...]   names the client resolved from its cache and will soon need again: looked
 *        up after the operation and answered as `rv: [[dir attr, entry attr] | null, ...]` (null: not found
 *        or not readable), so that a path in use is revalidated without a lookup request of its own.
 *   `releases` is a request carrying nothing else (the queue flushed after RELEASE_LINGER_MS, or at close).
 *
 * Buffers travel as base64 (setxattr's value, getxattr's answer); Maps as arrays of pairs (getSlices). Every
 * argument is checked against the operation's schema before it reaches Meta: a peer is untrusted input.
 */

import { ERRNO, type ErrnoCode } from '../errors.js';
import type { CacheEffects } from '../meta/lookupcache.js';
import type { Attr } from '../meta/types.js';

export const PROTOCOL_PATH = '/v1/op';
/** What `hello` answers as `proto` (see the file comment); services before it answered none. */
export const PROTOCOL_LEVEL = 3;
/** The oldest level a client of this version works with (level 2: releases are sent as requests of their own). */
export const PROTOCOL_LEVEL_MIN = 2;
/** A request body larger than this is refused (a write of many slices is well under it). */
export const REQUEST_BYTES_MAX = 4 << 20;
/** Request numbers a client lists in one `drop`, at most. */
export const DROP_MAX = 256;
/** Slice ids handed out per `sliceIds` request, at most. */
export const SLICE_IDS_MAX = 1000;
/** Releases riding along in one request (`rl.r`), at most. */
export const RELEASES_PER_REQUEST_MAX = 1024;
/** Names revalidated along with one request (`rv`), at most. */
export const REVALIDATE_PER_REQUEST_MAX = 16;

/** The argument kinds an operation's schema uses. */
export type ArgKind =
  | 'ctx'
  | 'ino'
  | 'int' // a safe integer >= 0
  | 'sint' // any safe integer
  | 'str'
  | 'buf' // base64 string -> Buffer
  | 'obj' // a plain object (Meta checks its fields)
  | 'arr'
  | 'any';

export interface OpSpec {
  /** Changes the volume (or this client's state on the service): carries a request number. */
  mutating: boolean;
  /** Required arguments, then optional ones. */
  args: ArgKind[];
  optional?: ArgKind[];
}

/** Every operation of the protocol. Names match MetaApi's members, plus the service's own. */
export const OPS: Readonly<Record<string, OpSpec>> = {
  hello: { mutating: false, args: [] },
  ping: { mutating: false, args: [] },
  bye: { mutating: false, args: [] },
  getattr: { mutating: false, args: ['ino'] },
  getattrCached: { mutating: false, args: ['ino'] },
  access: { mutating: false, args: ['ctx', 'ino', 'int'] },
  setattr: { mutating: true, args: ['ctx', 'ino', 'obj'] },
  lookup: { mutating: false, args: ['ctx', 'ino', 'str'], optional: ['int'] },
  readdir: { mutating: false, args: ['ctx', 'ino'], optional: ['obj'] },
  readlink: { mutating: false, args: ['ino'] },
  statfs: { mutating: false, args: [] },
  mknod: { mutating: true, args: ['ctx', 'ino', 'str', 'str', 'int'], optional: ['obj'] },
  mkdir: { mutating: true, args: ['ctx', 'ino', 'str', 'int'] },
  create: { mutating: true, args: ['ctx', 'ino', 'str', 'int'] },
  symlink: { mutating: true, args: ['ctx', 'ino', 'str', 'str'] },
  link: { mutating: true, args: ['ctx', 'ino', 'ino', 'str'] },
  unlink: { mutating: true, args: ['ctx', 'ino', 'str'] },
  rmdir: { mutating: true, args: ['ctx', 'ino', 'str'] },
  rename: { mutating: true, args: ['ctx', 'ino', 'str', 'ino', 'str'], optional: ['int'] },
  open: { mutating: true, args: ['ctx', 'ino', 'int'], optional: ['obj'] },
  /** ctx, parent, name, mode, access mask, exclusive (1) */
  openCreate: { mutating: true, args: ['ctx', 'ino', 'str', 'int', 'int', 'int'] },
  reopen: { mutating: true, args: ['ino', 'int'] },
  release: { mutating: true, args: ['ino'] },
  /** Nothing but what rides along (`rl`): the release queue's own flush. */
  releases: { mutating: false, args: [] },
  sliceIds: { mutating: false, args: ['int'] },
  readChunk: { mutating: false, args: ['ino', 'int'] },
  readChunks: { mutating: false, args: ['ino'] },
  write: { mutating: true, args: ['ino', 'arr'], optional: ['int', 'int'] },
  truncate: { mutating: true, args: ['ino', 'int'] },
  fallocate: { mutating: true, args: ['ino', 'int', 'int', 'int'] },
  copyFileRange: { mutating: true, args: ['ino', 'int', 'ino', 'int', 'int'] },
  replaceSlices: { mutating: true, args: ['ino', 'int', 'arr', 'obj'] },
  abandonSlice: { mutating: true, args: ['int', 'int'] },
  getSlices: { mutating: false, args: ['arr'] },
  setxattr: { mutating: true, args: ['ctx', 'ino', 'str', 'buf'], optional: ['int'] },
  getxattr: { mutating: false, args: ['ctx', 'ino', 'str'] },
  listxattr: { mutating: false, args: ['ctx', 'ino'] },
  removexattr: { mutating: true, args: ['ctx', 'ino', 'str'] },
  getlk: { mutating: false, args: ['ino', 'str', 'str', 'int'], optional: ['int'] },
  setlk: { mutating: true, args: ['ino', 'str', 'str', 'int'], optional: ['int', 'int'] },
  flock: { mutating: true, args: ['ino', 'str', 'str'], optional: ['int'] },
};

export interface OpRequest {
  op: string;
  args: unknown[];
  c: string;
  g?: string;
  n?: number;
  drop?: number[];
  /** Releases riding along (see the file comment). */
  rl?: RideAlongReleases;
  /** Names to revalidate after the operation (see the file comment). */
  rv?: Array<[number, string]>;
}

/** `rl` of a request: the session the releases belong to, the floor, and [release id, inode] pairs. */
export interface RideAlongReleases {
  s: string;
  f: number;
  r: Array<[number, number]>;
}

/** `rv` of an answer: [directory, entry] attributes per name asked, null where the lookup failed. */
export type Revalidated = Array<[Attr, Attr] | null>;

/** CacheEffects on the wire. */
export type WireEffects = CacheEffects;

export type OpReply =
  | { ok: true; r: unknown; seq: number; a?: 1; sid?: string; fx?: WireEffects; rla?: 1; rv?: Revalidated }
  | { ok: false; code: string; message: string; fx?: WireEffects; rla?: 1 };

/** Effects that make a client's cache forget everything (an answer whose effects are not known). */
export function allEffects(): WireEffects {
  return { entries: [], inos: [], attrs: [], all: true };
}

/** Names and inodes one answer's effects may list; more make the client forget everything. */
export const EFFECTS_ITEMS_MAX = 10_000;

/**
 * `acc` with one more transaction's effects after it (acc may be undefined). Attributes a later transaction
 * changed or committed again replace earlier ones; an uncommitted transaction's attributes are not kept
 * (LookupCache.apply stores none of those either).
 */
export function addEffects(acc: WireEffects | undefined, fx: CacheEffects, committed: boolean): WireEffects {
  const out: WireEffects = acc === undefined ? { entries: [], inos: [], attrs: [], all: false } : acc;
  if (fx.all || out.all || out.entries.length + out.inos.length + fx.entries.length + fx.inos.length > EFFECTS_ITEMS_MAX) return allEffects();
  const newer = new Set<number>([...fx.inos, ...(committed ? fx.attrs.map((a) => a.ino) : [])]);
  out.attrs = out.attrs.filter((a) => !newer.has(a.ino));
  out.entries.push(...fx.entries);
  out.inos.push(...fx.inos);
  if (committed) out.attrs.push(...fx.attrs);
  return out;
}

function isAttr(v: unknown): v is Attr {
  const a = v as Partial<Attr> | null;
  return a !== null && typeof a === 'object' && isInt(a.ino) && a.ino >= 1 && typeof a.type === 'string' && isInt(a.mode) && isInt(a.length);
}

/** Effects from a service's answer, checked (a malformed list makes the client forget everything). */
export function decodeEffects(v: unknown): CacheEffects | undefined {
  if (v === undefined || v === null) return undefined;
  const o = v as Partial<Record<keyof CacheEffects, unknown>>;
  if (typeof o !== 'object' || o.all === true) return allEffects();
  const entries = o.entries;
  const inos = o.inos;
  const attrs = o.attrs;
  const ok =
    Array.isArray(entries) &&
    Array.isArray(inos) &&
    Array.isArray(attrs) &&
    entries.length + inos.length <= EFFECTS_ITEMS_MAX &&
    attrs.length <= EFFECTS_ITEMS_MAX &&
    entries.every((e) => Array.isArray(e) && e.length === 2 && isInt(e[0]) && typeof e[1] === 'string') &&
    inos.every((i) => isInt(i)) &&
    attrs.every(isAttr);
  if (!ok) return allEffects();
  return { entries: entries as Array<[number, string]>, inos: inos as number[], attrs: attrs as Attr[], all: false };
}

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v);
}

function checkArg(kind: ArgKind, v: unknown): unknown {
  switch (kind) {
    case 'ctx': {
      const c = v as { uid?: unknown; gid?: unknown; gids?: unknown } | null;
      if (c === null || typeof c !== 'object' || !isInt(c.uid) || c.uid < 0 || !isInt(c.gid) || c.gid < 0) return undefined;
      if (!Array.isArray(c.gids) || c.gids.length > 1024 || !c.gids.every((g) => isInt(g) && g >= 0)) return undefined;
      return { uid: c.uid, gid: c.gid, gids: c.gids as number[] };
    }
    case 'ino':
      return isInt(v) && v >= 1 ? v : undefined;
    case 'int':
      return isInt(v) && v >= 0 ? v : undefined;
    case 'sint':
      return isInt(v) ? v : undefined;
    case 'str':
      return typeof v === 'string' && v.length <= 65536 ? v : undefined;
    case 'buf':
      return typeof v === 'string' && /^[A-Za-z0-9+/]*={0,2}$/.test(v) ? Buffer.from(v, 'base64') : undefined;
    case 'obj':
      return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : undefined;
    case 'arr':
      return Array.isArray(v) ? v : undefined;
    case 'any':
      return v;
  }
}

/**
 * The request's arguments checked and decoded for its operation (missing optional ones stay undefined, and
 * `null` for an optional one means "not given"), or a reason why not.
 */
export function decodeArgs(spec: OpSpec, args: unknown): unknown[] | string {
  if (!Array.isArray(args)) return 'args must be an array';
  const opt = spec.optional ?? [];
  if (args.length < spec.args.length || args.length > spec.args.length + opt.length) return `expected ${spec.args.length}..${spec.args.length + opt.length} arguments, got ${args.length}`;
  const out: unknown[] = [];
  for (let i = 0; i < args.length; i++) {
    const kind = i < spec.args.length ? spec.args[i]! : opt[i - spec.args.length]!;
    if (i >= spec.args.length && (args[i] === null || args[i] === undefined)) {
      out.push(undefined);
      continue;
    }
    const v = checkArg(kind, args[i]);
    if (v === undefined) return `argument ${i + 1} is not a valid ${kind}`;
    out.push(v);
  }
  return out;
}

/** `rl` of a request checked (undefined: absent), or a reason why it is malformed. */
export function checkReleases(v: unknown): RideAlongReleases | undefined | string {
  if (v === undefined) return undefined;
  const o = v as Partial<Record<keyof RideAlongReleases, unknown>> | null;
  if (o === null || typeof o !== 'object' || typeof o.s !== 'string' || o.s.length > 200 || !isInt(o.f) || o.f < 0 || !Array.isArray(o.r)) return 'bad rl';
  if (o.r.length > RELEASES_PER_REQUEST_MAX) return `more than ${RELEASES_PER_REQUEST_MAX} releases in one request`;
  if (!o.r.every((x) => Array.isArray(x) && x.length === 2 && isInt(x[0]) && x[0] >= 1 && isInt(x[1]) && x[1] >= 1)) return 'bad rl';
  return { s: o.s, f: o.f, r: o.r as Array<[number, number]> };
}

/** `rv` of a request checked (undefined: absent), or a reason why it is malformed. */
export function checkRevalidate(v: unknown): Array<[number, string]> | undefined | string {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length > REVALIDATE_PER_REQUEST_MAX) return 'bad rv';
  if (!v.every((x) => Array.isArray(x) && x.length === 2 && isInt(x[0]) && x[0] >= 1 && typeof x[1] === 'string' && x[1].length > 0 && x[1].length <= 255)) return 'bad rv';
  return v as Array<[number, string]>;
}

/** `rv` of an answer checked against what was asked (undefined: malformed or absent; nothing is stored). */
export function decodeRevalidated(v: unknown, asked: number): Revalidated | undefined {
  if (!Array.isArray(v) || v.length !== asked) return undefined;
  if (!v.every((x) => x === null || (Array.isArray(x) && x.length === 2 && isAttr(x[0]) && isAttr(x[1])))) return undefined;
  return v as Revalidated;
}

/** Whether a code from the wire is one FsError carries (anything else becomes EIO). */
export function isErrnoCode(code: unknown): code is ErrnoCode {
  return typeof code === 'string' && Object.hasOwn(ERRNO, code);
}
