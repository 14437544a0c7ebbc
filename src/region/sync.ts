/**
 * Generic sync (DESIGN §7): make DST hold what SRC holds, between any two object stores (a local tree is a
 * file store). `ferry sync` is the command; this is the engine, usable in-process (mem:// stores in tests).
 *
 *   listing SRC ──┐  (page by page, next page prefetched; both in bytewise key order)
 *                 ├─ merge-join ─▶ per key: copy │ check │ skip │ delete-later
 *   listing DST ──┘                        │
 *                                 bounded tasks (Limiter: `parallel` at once, a byte budget for memory)
 *
 * Per key, after the include/exclude filter (an excluded key is left alone on both sides):
 *   only in SRC                  → copy
 *   in both, sizes differ        → copy
 *   in both, same size, --check  → read both, copy if the bytes differ; else skip
 *   in both, same size           → skip (no modification times: a store cannot give a copy its source's
 *                                  mtime, so size is the quick test and --check the sure one)
 *   only in DST, --delete        → delete, after the copy phase has finished with no failure (like rclone:
 *                                  a failed copy might mean a misread source, and deleting then would lose data)
 *
 * Every copy is verified: the source's bytes must match its listed size (else re-read; a changed object is
 * accepted when a fresh head agrees). With --check the copy is read back at once and compared byte for byte
 * (a mismatch retries the copy, COPY_ATTEMPTS_MAX tries). Otherwise DST's size is read back after the copy
 * phase, whichever is fewer requests: a head per copied key, or one more listing of both stores (1,000 keys a
 * request, which on small objects saves a third of all requests); a key that does not verify is copied again,
 * for VERIFY_ROUNDS_MAX rounds, then counted as failed. Transport retries are the stores' business (wrap them
 * in RetryStore).
 *
 * Resume: each put is atomic (the store contract: a reader sees the old or the new object whole), so an
 * interrupted run leaves only complete objects, and a rerun's merge-join skips them: it copies the remainder.
 * On abort (the `signal`, e.g. SIGINT) in-flight calls are cancelled and awaited before `run` settles, so the
 * stores get to clean up (a file store removes its temp file, S3 aborts a multipart upload).
 *
 * Large objects: an object is copied through one buffer (the S3 store uploads it in parts itself). Objects
 * above `objectBytesMax` (default 1 GiB) are reported as failed ("too large"), not copied; memory is bounded
 * by a byte budget (`bytesInFlightMax`, default 256 MiB) that every copy or check takes before reading (an
 * object larger than the budget runs alone).
 */

import { defaultMaxListeners, setMaxListeners } from 'node:events';
import { assert } from '../errors.js';
import { compareKeys, ObjectNotFoundError, type ObjectInfo, type ObjectStore } from '../object/store.js';
import { Limiter } from '../util/limiter.js';
import { TokenBucket } from '../util/tokenbucket.js';

export const PARALLEL_DEFAULT = 16;
export const OBJECT_BYTES_MAX_DEFAULT = 1 << 30;
export const BYTES_IN_FLIGHT_MAX_DEFAULT = 256 << 20;
/** Tries of one copy whose verification failed (a short read, a size mismatch after the put). */
const COPY_ATTEMPTS_MAX = 3;
/** Rounds of read-back after the copy phase: verify, copy again what failed, verify again, ... */
const VERIFY_ROUNDS_MAX = 3;
/** Copied keys held for the read-back; past this, the read-back lists both stores and checks every key. */
const VERIFY_KEYS_HELD_MAX = 100_000;
/** Keys a list request returns (the store contract's page), to weigh a re-listing against heads. */
const LIST_PAGE_KEYS = 1000;
/** Keys to delete held in memory; past this, the delete phase lists both stores again instead. */
const DELETE_KEYS_HELD_MAX = 100_000;
/**
 * Abort listeners one running task holds on the run's signal at most: a bandwidth wait, or a store call on each
 * side (--check reads both at once). Tasks queued behind the limiter hold none.
 */
const SIGNAL_LISTENERS_PER_TASK_MAX = 2;
/** Abort listeners the two listings hold: a page requested and the next one prefetched, on each side. */
const SIGNAL_LISTENERS_LISTING_MAX = 4;
/** Failures whose details are kept for the report (all are counted). */
const ERRORS_KEPT_MAX = 100;
/** Tasks queued behind the running ones, per unit of parallelism: keeps listing ahead without holding a bucket. */
const QUEUED_TASKS_PER_SLOT = 4;

// ---------------------------------------------------------------- filters

export interface FilterRule {
  kind: 'include' | 'exclude';
  pattern: string;
}

/**
 * rclone-like filter: rules are tried in the order given and the first match decides; when any include rule
 * exists, a key no rule matches is excluded, otherwise it is included.
 *
 * Glob syntax: `*` any run of characters within a segment, `**` any run including '/', `?` one character
 * within a segment, `[abc]` / `[!abc]` / `[a-z]` a class, `{a,b}` alternatives, `\x` a literal x. A pattern
 * starting with '/' is anchored at the root; otherwise it matches the key's tail at a segment boundary
 * (`*.jpg` matches `a/b/c.jpg`). A pattern ending in '/' matches everything under such a directory.
 */
export function compileFilter(rules: readonly FilterRule[]): (key: string) => boolean {
  if (rules.length === 0) return () => true;
  const compiled = rules.map((r) => ({ include: r.kind === 'include', re: globToRegExp(r.pattern) }));
  const fallback = !rules.some((r) => r.kind === 'include');
  return (key) => {
    for (const r of compiled) if (r.re.test(key)) return r.include;
    return fallback;
  };
}

export function globToRegExp(glob: string): RegExp {
  if (glob === '') throw new RangeError('empty filter pattern');
  let p = glob;
  let head = '(?:^|/)';
  if (p.startsWith('/')) {
    head = '^';
    p = p.substring(1);
  }
  let tail = '$';
  if (p.endsWith('/')) tail = '/.*$';
  let out = '';
  let braces = 0;
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '\\') {
      const next = p[++i];
      if (next === undefined) throw new RangeError(`filter pattern ${JSON.stringify(glob)} ends with a lone backslash`);
      out += escapeRe(next);
    } else if (c === '*') {
      if (p[i + 1] === '*') {
        i++;
        out += '.*';
      } else {
        out += '[^/]*';
      }
    } else if (c === '?') {
      out += '[^/]';
    } else if (c === '[') {
      const end = p.indexOf(']', i + 2);
      if (end < 0) throw new RangeError(`filter pattern ${JSON.stringify(glob)} has an unclosed [`);
      let body = p.substring(i + 1, end);
      if (body.startsWith('!')) body = '^' + body.substring(1);
      out += `[${body.replace(/[\\\]]/g, '\\$&')}]`;
      i = end;
    } else if (c === '{') {
      braces++;
      out += '(?:';
    } else if (c === '}' && braces > 0) {
      braces--;
      out += ')';
    } else if (c === ',' && braces > 0) {
      out += '|';
    } else if (c === '/' && i === p.length - 1) {
      // The trailing slash is in `tail`.
    } else {
      out += escapeRe(c);
    }
  }
  if (braces !== 0) throw new RangeError(`filter pattern ${JSON.stringify(glob)} has an unclosed {`);
  return new RegExp(head + out + tail, 'u');
}

function escapeRe(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

// ---------------------------------------------------------------- the engine

export interface SyncOptions {
  /** Remove DST keys absent from SRC (only after a copy phase without failures). */
  delete?: boolean | undefined;
  /** Compare the content of same-size objects, and read every copy back. */
  check?: boolean | undefined;
  /** Which keys take part; default all. */
  filter?: ((key: string) => boolean) | undefined;
  /** Copies, checks and deletes at once; default PARALLEL_DEFAULT. */
  parallel?: number | undefined;
  /** Decide and report, change nothing. */
  dryRun?: boolean | undefined;
  /** Cap on bytes written to DST per second; 0 or undefined = none. Paid per object before its put. */
  bytesPerSecond?: number | undefined;
  objectBytesMax?: number | undefined;
  bytesInFlightMax?: number | undefined;
  signal?: AbortSignal | undefined;
  /** One call per decision and outcome; must not throw. */
  onEvent?: ((event: SyncEvent) => void) | undefined;
}

export type SyncEvent =
  | { type: 'copy'; key: string; bytes: number; reason: CopyReason; dryRun: boolean }
  | { type: 'delete'; key: string; dryRun: boolean }
  | { type: 'fail'; key: string; op: 'copy' | 'check' | 'delete'; error: unknown };

/** Why a key is copied: absent from DST, another size, other bytes (--check), or a copy that did not verify. */
export type CopyReason = 'new' | 'size' | 'content' | 'verify';

export interface SyncStats {
  /** Objects listed in SRC (after the filter). */
  srcObjects: number;
  srcBytes: number;
  /** Both listings read to the end. */
  listed: boolean;
  /** Copies decided so far (objects, bytes): the progress bar's total. */
  toCopy: number;
  toCopyBytes: number;
  copied: number;
  copiedBytes: number;
  /** Copies made again because the first did not verify (not counted in `copied` twice). */
  recopied: number;
  /** Equal in both (by size, or by content with check). */
  skipped: number;
  /** Same-size pairs whose content was compared. */
  checked: number;
  deleted: number;
  failed: number;
  /** Deletions not done because the copy phase had failures. */
  deletesSkipped: number;
  seconds: number;
}

export interface SyncFailure {
  key: string;
  op: 'copy' | 'check' | 'delete' | 'list';
  message: string;
}

export interface SyncResult extends SyncStats {
  /** The first ERRORS_KEPT_MAX failures. */
  failures: SyncFailure[];
  dryRun: boolean;
}

/** An object this sync will not copy (too large): a failure of that key, not of the run. */
export class SyncObjectError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SyncObjectError';
  }
}

export class Syncer {
  private readonly src: ObjectStore;
  private readonly dst: ObjectStore;
  private readonly deleteExtra: boolean;
  private readonly check: boolean;
  private readonly filter: (key: string) => boolean;
  private readonly parallel: number;
  private readonly dryRun: boolean;
  private readonly objectBytesMax: number;
  /** The caller's signal, forwarded to `signal` while the run lasts. */
  private readonly callerSignal: AbortSignal | undefined;
  /**
   * The run's own signal, which every wait and store call listens to: up to `parallel` tasks share it, more
   * than the 10 listeners past which Node warns of a leak, so it declares its real bound instead (and the
   * caller's signal, which may have other users, gets one listener).
   */
  private readonly aborter = new AbortController();
  private readonly signal: AbortSignal = this.aborter.signal;
  private readonly onEvent: (event: SyncEvent) => void;
  private readonly limiter: Limiter;
  private readonly budget: ByteBudget;
  private readonly bandwidth: TokenBucket;
  private readonly counters: Omit<SyncStats, 'seconds'> = {
    srcObjects: 0,
    srcBytes: 0,
    listed: false,
    toCopy: 0,
    toCopyBytes: 0,
    copied: 0,
    copiedBytes: 0,
    recopied: 0,
    skipped: 0,
    checked: 0,
    deleted: 0,
    failed: 0,
    deletesSkipped: 0,
  };
  private readonly failures: SyncFailure[] = [];
  /** Keys written since the last read-back, with the size written; see verifyWritten. */
  private written = new Map<string, number>();
  private writtenOverflow = false;
  private dstObjects = 0;
  private started = 0;
  private ran = false;

  constructor(src: ObjectStore, dst: ObjectStore, options: SyncOptions = {}) {
    this.src = src;
    this.dst = dst;
    this.deleteExtra = options.delete ?? false;
    this.check = options.check ?? false;
    this.filter = options.filter ?? (() => true);
    this.parallel = options.parallel ?? PARALLEL_DEFAULT;
    if (!Number.isSafeInteger(this.parallel) || this.parallel < 1) throw new RangeError(`parallel must be an integer >= 1, got ${this.parallel}`);
    this.dryRun = options.dryRun ?? false;
    this.objectBytesMax = options.objectBytesMax ?? OBJECT_BYTES_MAX_DEFAULT;
    this.callerSignal = options.signal;
    setMaxListeners(Math.max(defaultMaxListeners, this.parallel * SIGNAL_LISTENERS_PER_TASK_MAX + SIGNAL_LISTENERS_LISTING_MAX), this.signal);
    this.onEvent = options.onEvent ?? (() => undefined);
    this.limiter = new Limiter(this.parallel);
    this.budget = new ByteBudget(options.bytesInFlightMax ?? BYTES_IN_FLIGHT_MAX_DEFAULT);
    this.bandwidth = new TokenBucket(options.bytesPerSecond ?? 0, Math.max(1, options.bytesPerSecond ?? 0));
  }

  /** A snapshot of the counters, for a progress bar. */
  stats(): SyncStats {
    return { ...this.counters, seconds: this.started === 0 ? 0 : (performance.now() - this.started) / 1000 };
  }

  /**
   * Runs the sync once. Per-object failures are counted and reported in the result (the caller decides the
   * exit code); a failed listing or an abort rejects, after every task in flight has settled.
   */
  async run(): Promise<SyncResult> {
    assert(!this.ran, 'a Syncer runs once');
    this.ran = true;
    this.started = performance.now();
    const caller = this.callerSignal;
    const forward = (): void => this.aborter.abort(caller?.reason);
    if (caller?.aborted === true) forward();
    else caller?.addEventListener('abort', forward, { once: true });
    try {
      return await this.phases();
    } finally {
      caller?.removeEventListener('abort', forward);
    }
  }

  /** The copy phase, the read-back rounds and the delete phase (see the header). */
  private async phases(): Promise<SyncResult> {
    const tasks = new TaskPool(this.limiter, this.parallel * QUEUED_TASKS_PER_SLOT);
    const deletes: string[] = [];
    let deletesOverflow = false;
    try {
      await this.join(async (s, d) => {
        if (s !== undefined) {
          this.counters.srcObjects++;
          this.counters.srcBytes += s.size;
        }
        if (d !== undefined) this.dstObjects++;
        if (s !== undefined && d === undefined) {
          await tasks.add(() => this.copy(s, 'new'));
        } else if (s !== undefined && d !== undefined) {
          if (s.size !== d.size) await tasks.add(() => this.copy(s, 'size'));
          else if (this.check) await tasks.add(() => this.compare(s));
          else this.counters.skipped++;
        } else if (d !== undefined && this.deleteExtra) {
          if (deletes.length < DELETE_KEYS_HELD_MAX) deletes.push(d.key);
          else deletesOverflow = true;
        }
      });
      this.counters.listed = true;
    } finally {
      await tasks.drain();
    }
    this.signal.throwIfAborted();
    for (let round = 1; this.written.size > 0 || this.writtenOverflow; round++) {
      await this.verifyWritten(tasks, round === VERIFY_ROUNDS_MAX);
      this.signal.throwIfAborted();
    }

    if (this.deleteExtra) {
      if (this.counters.failed > 0) {
        this.counters.deletesSkipped = deletesOverflow ? -1 : deletes.length;
      } else if (!deletesOverflow) {
        try {
          for (const key of deletes) await tasks.add(() => this.remove(key));
        } finally {
          await tasks.drain();
        }
      } else {
        // Too many to hold: list both again now that the copies are done, and delete what SRC lacks.
        try {
          await this.join(async (s, d) => {
            if (s === undefined && d !== undefined) await tasks.add(() => this.remove(d.key));
          });
        } finally {
          await tasks.drain();
        }
      }
      this.signal.throwIfAborted();
    }
    return { ...this.stats(), failures: [...this.failures], dryRun: this.dryRun };
  }

  /** Merge-join of both listings (filtered), calling `visit` once per key in bytewise order. */
  private async join(visit: (s: ObjectInfo | undefined, d: ObjectInfo | undefined) => Promise<void>): Promise<void> {
    const srcList = listSorted(this.src, this.filter, this.signal);
    const dstList = listSorted(this.dst, this.filter, this.signal);
    try {
      let s = await srcList.next();
      let d = await dstList.next();
      while (s.done !== true || d.done !== true) {
        this.signal.throwIfAborted();
        const c = s.done === true ? 1 : d.done === true ? -1 : compareKeys(s.value.key, d.value.key);
        if (c < 0) {
          await visit(s.value as ObjectInfo, undefined);
          s = await srcList.next();
        } else if (c > 0) {
          await visit(undefined, d.value as ObjectInfo);
          d = await dstList.next();
        } else {
          await visit(s.value as ObjectInfo, d.value as ObjectInfo);
          [s, d] = await Promise.all([srcList.next(), dstList.next()]);
        }
      }
    } finally {
      await Promise.allSettled([srcList.return(undefined), dstList.return(undefined)]);
    }
  }

  /**
   * Reads back the size of every key written since the last call (heads, or a listing of both stores when that
   * takes fewer requests) and copies again each one that does not match; in the last round, such a key fails.
   */
  private async verifyWritten(tasks: TaskPool, last: boolean): Promise<void> {
    const written = this.written;
    const overflow = this.writtenOverflow;
    this.written = new Map();
    this.writtenOverflow = false;
    const mismatch = async (key: string, expected: number, actual: number | undefined): Promise<void> => {
      const problem = actual === undefined ? 'is missing from the destination after the copy' : `the destination holds ${actual} bytes, ${expected} were written`;
      if (last) this.fail(key, 'copy', new Error(`copy does not verify after ${VERIFY_ROUNDS_MAX} tries: ${problem}`));
      else await tasks.add(() => this.copy({ key, size: expected, mtime: 0 }, 'verify'));
    };
    const listRequests = Math.ceil(this.counters.srcObjects / LIST_PAGE_KEYS) + Math.ceil((this.dstObjects + written.size) / LIST_PAGE_KEYS);
    try {
      if (!overflow && written.size <= listRequests) {
        for (const [key, size] of written) {
          await tasks.add(async () => {
            let actual: number | undefined;
            try {
              actual = (await this.dst.head(key, { signal: this.signal })).size;
            } catch (err) {
              if (!(err instanceof ObjectNotFoundError)) {
                this.fail(key, 'copy', err);
                return;
              }
            }
            if (actual !== size) await mismatch(key, size, actual);
          });
        }
      } else {
        await this.join(async (s, d) => {
          if (s === undefined) return;
          const size = written.get(s.key);
          // Without the held keys (overflow), every key of SRC must be in DST whole.
          if (size === undefined && !(overflow && s.size <= this.objectBytesMax)) return;
          const expected = size ?? s.size;
          if (d?.size !== expected) await mismatch(s.key, expected, d?.size);
        });
      }
    } finally {
      await tasks.drain();
    }
  }

  private async copy(info: ObjectInfo, reason: CopyReason, data?: Buffer): Promise<void> {
    if (reason !== 'verify') {
      this.counters.toCopy++;
      this.counters.toCopyBytes += info.size;
    }
    const key = info.key;
    try {
      if (info.size > this.objectBytesMax) {
        throw new SyncObjectError(`${info.size} bytes is more than the ${this.objectBytesMax} bytes ferry sync copies in one object`);
      }
      if (this.dryRun) {
        this.onEvent({ type: 'copy', key, bytes: info.size, reason, dryRun: true });
        this.counters.copied++;
        this.counters.copiedBytes += info.size;
        return;
      }
      const bytes = await this.budget.with(info.size * (this.check ? 2 : 1), async () => {
        let size = info.size;
        let body = data;
        for (let attempt = 1; ; attempt++) {
          const options = { signal: this.signal };
          if (body === undefined) {
            body = await this.src.get(key, options);
            if (body.length !== size) {
              // A short read, or the object changed after the listing: a fresh head tells which.
              const now = await this.src.head(key, options);
              if (now.size !== body.length) {
                body = undefined;
                if (attempt < COPY_ATTEMPTS_MAX) continue;
                throw new Error(`read ${now.size === size ? 'a short body' : 'a body of the wrong size'} from the source ${COPY_ATTEMPTS_MAX} times`);
              }
              size = now.size;
            }
          }
          await this.bandwidth.take(body.length, this.signal);
          await this.dst.put(key, body, options);
          if (!this.check) {
            // Read back after the copy phase (verifyWritten), in fewer requests than a head here.
            if (this.written.size < VERIFY_KEYS_HELD_MAX) this.written.set(key, body.length);
            else this.writtenOverflow = true;
            return body.length;
          }
          const problem = await this.readBack(key, body);
          if (problem === undefined) return body.length;
          if (attempt >= COPY_ATTEMPTS_MAX) throw new Error(`copy does not verify after ${COPY_ATTEMPTS_MAX} tries: ${problem}`);
        }
      });
      if (reason === 'verify') {
        this.counters.recopied++;
      } else {
        this.counters.copied++;
        this.counters.copiedBytes += bytes;
      }
      this.onEvent({ type: 'copy', key, bytes, reason, dryRun: false });
    } catch (err) {
      this.fail(key, 'copy', err);
    }
  }

  /** --check: why the copy at `key` in DST is not `body`, or undefined when it verifies. */
  private async readBack(key: string, body: Buffer): Promise<string | undefined> {
    const back = await this.dst.get(key, { signal: this.signal });
    if (!back.equals(body)) return `the destination's bytes differ from those written (${back.length} bytes read back)`;
    return undefined;
  }

  /** --check of a same-size pair: copy when the bytes differ. */
  private async compare(info: ObjectInfo): Promise<void> {
    let differs: Buffer | undefined;
    try {
      if (info.size > this.objectBytesMax) {
        throw new SyncObjectError(`${info.size} bytes is more than the ${this.objectBytesMax} bytes ferry sync compares in one object`);
      }
      differs = await this.budget.with(info.size * 2, async () => {
        const [a, b] = await Promise.all([this.src.get(info.key, { signal: this.signal }), this.dst.get(info.key, { signal: this.signal })]);
        this.counters.checked++;
        return a.equals(b) ? undefined : a;
      });
    } catch (err) {
      this.fail(info.key, 'check', err);
      return;
    }
    if (differs === undefined) this.counters.skipped++;
    // The source's bytes are reused unless the source changed size since the listing (copy re-reads then).
    else await this.copy(info, 'content', differs.length === info.size ? differs : undefined);
  }

  private async remove(key: string): Promise<void> {
    try {
      if (!this.dryRun) await this.dst.delete(key, { signal: this.signal });
      this.counters.deleted++;
      this.onEvent({ type: 'delete', key, dryRun: this.dryRun });
    } catch (err) {
      this.fail(key, 'delete', err);
    }
  }

  private fail(key: string, op: 'copy' | 'check' | 'delete', err: unknown): void {
    // An abort is not a failure of this key: run() rethrows it once the tasks have settled.
    if (this.signal.aborted) return;
    this.counters.failed++;
    if (this.failures.length < ERRORS_KEPT_MAX) this.failures.push({ key, op, message: err instanceof Error ? err.message : String(err) });
    this.onEvent({ type: 'fail', key, op, error: err });
  }
}

/** A listing failed: the run cannot tell what to copy, so it stops (after the tasks in flight settle). */
export class SyncListError extends Error {
  constructor(store: ObjectStore, cause: unknown) {
    const message = cause instanceof Error ? cause.message : String(cause);
    // Store errors usually name the store already.
    super(message.includes(store.description) ? `listing failed: ${message}` : `cannot list ${store.description}: ${message}`, { cause });
    this.name = 'SyncListError';
  }
}

/** Convenience: one sync run. */
export function syncStores(src: ObjectStore, dst: ObjectStore, options: SyncOptions = {}): Promise<SyncResult> {
  return new Syncer(src, dst, options).run();
}

/**
 * Every object of the store that passes the filter, in strictly increasing bytewise order (asserted: the
 * merge-join is wrong otherwise), with the next page requested while this one is consumed.
 */
async function* listSorted(store: ObjectStore, filter: (key: string) => boolean, signal: AbortSignal | undefined): AsyncGenerator<ObjectInfo> {
  let pending: Promise<{ objects: ObjectInfo[]; more: boolean }> | undefined = store.list('', { signal });
  let previous: string | undefined;
  try {
    while (pending !== undefined) {
      let page: { objects: ObjectInfo[]; more: boolean };
      try {
        page = await pending;
      } catch (err) {
        if (signal?.aborted === true) throw err;
        throw new SyncListError(store, err);
      }
      pending = undefined;
      const last = page.objects.at(-1);
      if (page.more && last !== undefined) {
        pending = store.list('', { startAfter: last.key, signal });
        pending.catch(() => undefined); // Observed when awaited; this only keeps an abandoned page from being "unhandled".
      }
      for (const o of page.objects) {
        if (previous !== undefined && compareKeys(previous, o.key) >= 0) {
          throw new Error(`${store.description} listed ${JSON.stringify(o.key)} after ${JSON.stringify(previous)}: not in bytewise order`);
        }
        previous = o.key;
        if (filter(o.key)) yield o;
      }
    }
  } finally {
    await pending?.catch(() => undefined);
  }
}

/**
 * Runs tasks through the limiter with a bounded queue: `add` waits while `queuedMax` tasks are waiting or
 * running, so the listing never runs further ahead than that. A task must not reject (the syncer catches and
 * counts its failures); `drain` waits for all of them.
 */
class TaskPool {
  private readonly limiter: Limiter;
  private readonly queuedMax: number;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(limiter: Limiter, queuedMax: number) {
    this.limiter = limiter;
    this.queuedMax = queuedMax;
  }

  async add(task: () => Promise<void>): Promise<void> {
    while (this.inFlight.size >= this.queuedMax) await Promise.race(this.inFlight);
    const p: Promise<void> = this.limiter.run(task).then(
      () => {
        this.inFlight.delete(p);
      },
      (err: unknown) => {
        this.inFlight.delete(p);
        assert(false, `a sync task rejected: ${String(err)}`);
      },
    );
    this.inFlight.add(p);
  }

  async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }
}

/** A budget of bytes held in memory at once: FIFO, and a request above the budget runs alone. */
class ByteBudget {
  private readonly max: number;
  private used = 0;
  private readonly waiting: Array<{ bytes: number; go: () => void }> = [];

  constructor(max: number) {
    if (!(max > 0)) throw new RangeError(`bytesInFlightMax must be > 0, got ${max}`);
    this.max = max;
  }

  async with<T>(bytes: number, fn: () => Promise<T>): Promise<T> {
    const n = Math.min(bytes, this.max);
    if (this.waiting.length > 0 || this.used + n > this.max) await new Promise<void>((go) => this.waiting.push({ bytes: n, go }));
    else this.used += n;
    try {
      return await fn();
    } finally {
      this.used -= n;
      while (this.waiting.length > 0 && this.used + this.waiting[0]!.bytes <= this.max) {
        const next = this.waiting.shift()!;
        this.used += next.bytes;
        next.go();
      }
    }
  }
}
