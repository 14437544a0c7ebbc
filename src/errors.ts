/**
 * One error type for file-system failures, carrying a POSIX code name, and one mapping to errno numbers used
 * at every boundary (SDK, FUSE, CLI). Unknown errors become EIO there.
 */

export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EMLINK: 31,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOLCK: 37,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  ENOTSUP: 95,
  ETIMEDOUT: 110,
  EDQUOT: 122,
} as const;

export type ErrnoCode = keyof typeof ERRNO;

const KEEP_STACKS = process.env['FERRY_DEBUG'] === '1';

export class FsError extends Error {
  readonly code: ErrnoCode;
  readonly errno: number;
  syscall: string | undefined;
  path: string | undefined;

  constructor(code: ErrnoCode, message?: string, options?: { cause?: unknown; syscall?: string; path?: string }) {
    // ENOENT, EEXIST and the like are answers, not faults, and a negative lookup makes one per call: their stack
    // would cost more than the lookup. EIO (an unexpected failure) keeps its stack, and FERRY_DEBUG=1 keeps all.
    const limit = Error.stackTraceLimit;
    if (code !== 'EIO' && !KEEP_STACKS) Error.stackTraceLimit = 0;
    super(message ?? code, options?.cause === undefined ? undefined : { cause: options.cause });
    Error.stackTraceLimit = limit;
    this.name = 'FsError';
    this.code = code;
    this.errno = ERRNO[code];
    this.syscall = options?.syscall;
    this.path = options?.path;
  }
}

export function fsError(code: ErrnoCode, message?: string): FsError {
  return new FsError(code, message ?? code);
}

export function isFsError(err: unknown, code?: ErrnoCode): err is FsError {
  return err instanceof FsError && (code === undefined || err.code === code);
}

/** The positive errno for any error; anything that is not an FsError is EIO. */
export function toErrno(err: unknown): number {
  return err instanceof FsError ? err.errno : ERRNO.EIO;
}

/** A stored copy of a block failed verification (checksum, header, length, identity). Never returned as data. */
export class CorruptBlockError extends Error {
  readonly code = 'ECORRUPT';
  readonly key: string;
  /** What is wrong, without the key: 'stripe 2 checksum mismatch'; for NoGoodCopyError, what each bucket said. */
  readonly detail: string;
  constructor(key: string, detail: string, options?: { cause?: unknown }) {
    super(`corrupt block ${key}: ${detail}`, options);
    this.key = key;
    this.detail = detail;
    this.name = 'CorruptBlockError';
  }
}

/**
 * A read found no good copy of block `key` although every bucket answered: each copy is missing or corrupt,
 * and `detail` says which, bucket by bucket (`a: missing, b: corrupt (stripe 0 checksum mismatch)`). The block
 * is lost or damaged wherever it should be (fsck's finding). A CorruptBlockError, so that everything that tells
 * a bad block from an I/O failure (the SDK and the mount answer EIO for both) needs no new case; its message
 * does not call a missing block corrupt. When a bucket could not be asked, the read fails with FsError EIO and
 * the same words instead: the block may be fine there.
 */
export class NoGoodCopyError extends CorruptBlockError {
  constructor(key: string, detail: string, options?: { cause?: unknown }) {
    super(key, detail, options);
    this.name = 'NoGoodCopyError';
    this.message = noGoodCopyMessage(key, detail);
  }
}

/** The words of a read that found no good copy of block `key`, whatever its error class. */
export function noGoodCopyMessage(key: string, detail: string): string {
  return `no good copy of ${key}: ${detail}`;
}

/** A user-facing error: the CLI prints only its message, on one line, and exits non-zero. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * The command line itself is wrong: a bad option value, an unknown region name, options that do not go
 * together. Known before anything is changed; the CLI exits 2 for it (bad usage), as for an unknown option.
 */
export class BadUsageError extends UsageError {
  constructor(message: string) {
    super(message);
    this.name = 'BadUsageError';
  }
}

/** Programmer errors: a failed assertion is a bug, not a condition to handle. */
export function assert(cond: unknown, message = 'assertion failed'): asserts cond {
  if (!cond) throw new Error(`assertion failed: ${message}`);
}
