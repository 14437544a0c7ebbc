/**
 * The ObjectStore contract: what Ferry needs from a bucket. Every store (file, mem, s3) and every wrapper
 * (prefix, retry, faults, metrics) implements exactly this, and test/object/conformance.ts checks it.
 *
 * Keys are UTF-8 strings of `/`-separated segments, no empty segment, no `.` or `..`, no leading `/`, at most
 * 1024 bytes. Objects are immutable in Ferry's use (written once), but `put` over an existing key replaces it
 * atomically: a reader sees the old or the new object whole, never a mix or a prefix.
 */

export interface ObjectInfo {
  key: string;
  /** Bytes. */
  size: number;
  /** Last modification, ms since the epoch. */
  mtime: number;
}

export interface CallOptions {
  signal?: AbortSignal | undefined;
}

export interface GetOptions extends CallOptions {
  /** First byte to return; default 0. */
  offset?: number | undefined;
  /** Bytes to return from offset; default to the end. A range past the end returns the bytes that exist. */
  length?: number | undefined;
  /**
   * A buffer the store may read the answer into, so that a caller copying many objects reuses memory that is
   * already mapped instead of allocating (and page-faulting) a new buffer per object. When the answer fits,
   * a store may return a view of `into`; otherwise, or if it cannot, it returns a new buffer. Either way the
   * caller must not reuse `into` while it holds the answer. Only a hint: stores are free to ignore it.
   */
  into?: Buffer | undefined;
  /**
   * Filled by stores that can with the MD5 the server states for the whole object (an S3 ETag that is a plain
   * MD5: a single-part upload, no KMS or customer-key encryption). The server's claim, not checked against
   * the bytes: good as the Content-MD5 of a copy (see PutCheckedOptions.md5), not as proof of anything.
   */
  digest?: { md5?: Buffer | undefined } | undefined;
}

export interface PutCheckedOptions extends CallOptions {
  /**
   * The MD5 of `data` as stated elsewhere (the source's digest from GetOptions.digest): sent instead of hashing
   * the bytes again. If it is wrong the put still stores `data`: a server that checks Content-MD5 refuses it,
   * and the store then hashes and puts again; one that does not answers a digest that differs (false).
   */
  md5?: Buffer | undefined;
}

export interface ListOptions extends CallOptions {
  /** Only keys strictly greater than this (bytewise). */
  startAfter?: string | undefined;
  /** At most this many objects in one page; default and maximum 1000. */
  limit?: number | undefined;
}

export interface ListPage {
  /** Keys with the prefix, ascending bytewise order. */
  objects: ObjectInfo[];
  /** True when more keys may follow the last one returned (call again with startAfter = last key). */
  more: boolean;
}

export interface ObjectStore {
  /** Where it is, for logs and `ferry info`; secrets masked. */
  readonly description: string;
  /** Whole object or a range. A missing key throws ObjectNotFoundError. */
  get(key: string, options?: GetOptions): Promise<Buffer>;
  /** Create or replace atomically. */
  put(key: string, data: Buffer, options?: CallOptions): Promise<void>;
  /** A missing key throws ObjectNotFoundError. */
  head(key: string, options?: CallOptions): Promise<ObjectInfo>;
  /** Idempotent: deleting a missing key succeeds. */
  delete(key: string, options?: CallOptions): Promise<void>;
  /** One page of keys starting with prefix (prefix '' lists all). */
  list(prefix: string, options?: ListOptions): Promise<ListPage>;
  /** Idempotent; releases sockets and handles. Calls after close fail. */
  close(): Promise<void>;
}

/**
 * Optional capability of stores that stage puts in temporary files (the file store): remove the temporary
 * files older than `olderThanMs` — left by writers killed mid-put, never visible as objects. Wrappers forward
 * it. Returns how many were removed.
 */
export interface TempSweeper {
  sweepTemp(olderThanMs: number): Promise<number>;
}

export function canSweepTemp(store: ObjectStore): store is ObjectStore & TempSweeper {
  return typeof (store as Partial<TempSweeper>).sweepTemp === 'function';
}

/**
 * Optional capability of stores whose server reports a digest of what it stored (S3: the ETag of a single-part
 * PUT of a plaintext or SSE-S3 object is the MD5 of the bytes received). `putChecked` puts like `put`, then
 * answers whether that digest equals the digest of `data`:
 *   true       the server stored exactly these bytes (an end-to-end check that costs no extra call);
 *   false      the server's digest differs, or only looks like one (MinIO with encryption returns random
 *              32-hex ETags): the caller decides, e.g. by reading the copy back;
 *   undefined  the server offered nothing to compare (SSE-KMS, SSE-C, a multipart upload, no ETag).
 * A mismatch is not an error here, for the reason above. Wrappers forward it.
 */
export interface CheckedPutter {
  putChecked(key: string, data: Buffer, options?: PutCheckedOptions): Promise<boolean | undefined>;
}

export function canPutChecked(store: ObjectStore): store is ObjectStore & CheckedPutter {
  return typeof (store as Partial<CheckedPutter>).putChecked === 'function';
}

export const LIST_LIMIT_MAX = 1000;
export const KEY_BYTES_MAX = 1024;

/**
 * The store has no object under the key. Its code is not POSIX ENOENT: a missing block is an I/O error to a
 * reader (EIO), never "no such file".
 */
export class ObjectNotFoundError extends Error {
  readonly code = 'ENOOBJECT';
  readonly key: string;
  constructor(key: string) {
    super(`object not found: ${key}`);
    this.key = key;
    this.name = 'ObjectNotFoundError';
  }
}

export class InvalidKeyError extends Error {
  readonly code = 'EBADKEY';
  readonly key: string;
  constructor(key: string, reason: string) {
    super(`invalid object key ${JSON.stringify(key)}: ${reason}`);
    this.key = key;
    this.name = 'InvalidKeyError';
  }
}

/**
 * A failure that may succeed when tried again (timeouts, resets, 5xx, throttling). Stores throw it (or set
 * `retryable: true` on their own errors); the retry wrapper retries only these. Everything else — not found,
 * invalid key, access denied — is final.
 */
export class TransientError extends Error {
  readonly retryable = true;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TransientError';
  }
}

export function isRetryable(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { retryable?: unknown }).retryable === true;
}

/** Throws InvalidKeyError unless key follows the rules above. */
export function validateKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) throw new InvalidKeyError(String(key), 'empty');
  if (Buffer.byteLength(key) > KEY_BYTES_MAX) throw new InvalidKeyError(key, `longer than ${KEY_BYTES_MAX} bytes`);
  if (key.startsWith('/')) throw new InvalidKeyError(key, 'absolute');
  if (key.includes('\0')) throw new InvalidKeyError(key, 'contains NUL');
  if (key.includes('\\')) throw new InvalidKeyError(key, 'contains a backslash');
  // A lone surrogate has no UTF-8 form: it would be stored as U+FFFD and listed back as a different key.
  if (/\p{Cs}/u.test(key)) throw new InvalidKeyError(key, 'not well-formed UTF-16 (lone surrogate)');
  for (const seg of key.split('/')) {
    if (seg === '' ) throw new InvalidKeyError(key, 'empty segment');
    if (seg === '.' || seg === '..') throw new InvalidKeyError(key, `segment ${seg}`);
  }
}

/** Lists every object under prefix, page by page. */
export async function* listAll(store: ObjectStore, prefix: string, options?: CallOptions & { startAfter?: string }): AsyncGenerator<ObjectInfo> {
  let startAfter = options?.startAfter;
  for (;;) {
    const page = await store.list(prefix, { startAfter, signal: options?.signal });
    for (const o of page.objects) yield o;
    const last = page.objects.at(-1);
    if (!page.more || last === undefined) return;
    startAfter = last.key;
  }
}

/**
 * The order `list` returns: bytewise over the keys' UTF-8 encodings, which equals code point order. Plain `<`
 * compares UTF-16 code units and puts U+10000 and above (surrogate pairs) before U+E000..U+FFFF; this does not.
 */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return utf8Rank(x) - utf8Rank(y);
  }
  return a.length - b.length;
}

/** Moves surrogates (U+D800..U+DFFF) above U+E000..U+FFFF, so code units compare like UTF-8 bytes. */
function utf8Rank(unit: number): number {
  if (unit < 0xd800) return unit;
  return unit < 0xe000 ? unit + 0x2000 : unit - 0x800;
}

// Helpers shared by implementations, so every backend reads GetOptions and ListOptions the same way.

/** The [start, end) byte range a get of an object of `size` bytes returns; throws RangeError on bad options. */
export function resolveRange(size: number, options?: GetOptions): [start: number, end: number] {
  const offset = options?.offset ?? 0;
  const length = options?.length;
  if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`get offset must be an integer >= 0, got ${offset}`);
  if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) {
    throw new RangeError(`get length must be an integer >= 0, got ${length}`);
  }
  const start = Math.min(offset, size);
  const end = length === undefined ? size : Math.min(size, start + length);
  return [start, end];
}

/** The page size a list call uses: default LIST_LIMIT_MAX, larger requests capped to it. */
export function resolveListLimit(limit: number | undefined): number {
  if (limit === undefined) return LIST_LIMIT_MAX;
  if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`list limit must be an integer >= 1, got ${limit}`);
  return Math.min(limit, LIST_LIMIT_MAX);
}
