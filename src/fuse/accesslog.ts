/**
 * `/.accesslog` at the mount root: while a process reads it, one line per FUSE operation answered by the
 * mount, in the order they were answered:
 *
 *   2024-12-02T14:01:49.123Z [uid:1000,gid:1000,pid:4242] write (ino=12,fh=3,size=4096,offset=0): OK <0.000215>
 *   <time answered> [caller] op (arguments): OK | ERRNO-NAME <seconds from request to answer>
 *
 * Arguments are the request's numbers and names (inode, parent, name, fh, offset, size, mode, flags, ...),
 * never data. Nothing is formatted or buffered while no one has the file open. Each open handle has its own
 * queue of at most READER_QUEUE_BYTES_MAX bytes: a reader that stops reading never blocks the mount; the lines
 * it misses are dropped and counted (`dropped`, and a "# dropped N lines" line once it reads again).
 *
 * A read takes what is queued (up to the size asked) and, with nothing queued, waits for the next line, for at
 * most READ_IDLE_MS: then it answers a line "#" alone. The file reads like a pipe that never ends, and a read
 * is never pending for long: the addon passes the kernel's interrupt only for lock waits, so a reader killed
 * in a read goes away at the next answer. Operations on the access log itself are not logged (a reader would
 * feed itself).
 */

import { constants } from 'node:os';
import { FsError } from '../errors.js';

/** A reader's queue bound, bytes: past it new lines are dropped (and counted). */
export const READER_QUEUE_BYTES_MAX = 4 << 20;
/** How often a waiting read checks whether its caller gave up, ms. */
export const READ_POLL_MS = 200;
/** A read with nothing to say answers "#\n" after this long, ms. */
export const READ_IDLE_MS = 1000;
const IDLE_LINE = Buffer.from('#\n');
/** Open access-log handles at once. */
export const READERS_MAX = 64;

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** A caller as logged (the addon's; undefined under fuse-native). */
export interface LoggedCaller {
  uid: number;
  gid: number;
  pid: number;
}

interface Reader {
  lines: Buffer[];
  bytes: number;
  dropped: number;
  /** Wakes a read waiting for a line. */
  wake: (() => void) | undefined;
}

export class AccessLog {
  private readonly readers = new Map<number, Reader>();
  /** Lines dropped because a reader's queue was full, since the mount started. */
  dropped = 0;

  /** Whether anyone reads: when false, callers skip formatting altogether. */
  get active(): boolean {
    return this.readers.size > 0;
  }

  get readerCount(): number {
    return this.readers.size;
  }

  isReader(fh: number): boolean {
    return this.readers.has(fh);
  }

  open(fh: number): void {
    if (this.readers.size >= READERS_MAX) throw new FsError('EBUSY', `at most ${READERS_MAX} readers of the access log`);
    this.readers.set(fh, { lines: [], bytes: 0, dropped: 0, wake: undefined });
  }

  release(fh: number): void {
    const r = this.readers.get(fh);
    this.readers.delete(fh);
    r?.wake?.();
  }

  /** Formats and queues one answered operation for every reader (call only when `active`). */
  record(op: string, caller: LoggedCaller | undefined, args: string, res: number, seconds: number): void {
    const who = caller === undefined ? '' : ` [uid:${caller.uid},gid:${caller.gid},pid:${caller.pid}]`;
    const result = res >= 0 ? 'OK' : (ERRNO_NAMES.get(-res) ?? `errno ${-res}`);
    const line = Buffer.from(`${new Date().toISOString()}${who} ${op} (${args}): ${result} <${seconds.toFixed(6)}>\n`);
    for (const r of this.readers.values()) {
      if (r.bytes + line.length > READER_QUEUE_BYTES_MAX) {
        r.dropped++;
        this.dropped++;
        continue;
      }
      r.lines.push(line);
      r.bytes += line.length;
      r.wake?.();
    }
  }

  /** Up to `size` bytes of whole lines (at least one line, cut if longer than size); waits for one if none. */
  async read(fh: number, size: number, interrupted: () => boolean): Promise<Buffer> {
    const idleAt = Date.now() + READ_IDLE_MS;
    for (;;) {
      const r = this.readers.get(fh);
      if (r === undefined) throw new FsError('EBADF');
      if (r.dropped > 0) {
        const note = Buffer.from(`# dropped ${r.dropped} lines (the reader fell behind)\n`);
        r.dropped = 0;
        r.lines.unshift(note);
        r.bytes += note.length;
      }
      if (r.lines.length > 0) return take(r, size);
      if (interrupted()) throw new FsError('EINTR');
      if (Date.now() >= idleAt) return IDLE_LINE.subarray(0, Math.min(size, IDLE_LINE.length));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, READ_POLL_MS);
        function done(): void {
          clearTimeout(timer);
          r!.wake = undefined;
          resolve();
        }
        r.wake = done;
      });
    }
  }
}

function take(r: Reader, size: number): Buffer {
  let n = 0;
  let i = 0;
  for (; i < r.lines.length; i++) {
    const line = r.lines[i]!;
    if (n + line.length > size) break;
    n += line.length;
  }
  const out = r.lines.splice(0, i);
  if (i === 0) {
    // A line longer than the read: its head now, its tail next time.
    const line = r.lines[0]!;
    out.push(line.subarray(0, size));
    r.lines[0] = line.subarray(size);
    n = size;
  }
  r.bytes -= n;
  return Buffer.concat(out, n);
}

/** What the access log needs of a request, taken when it arrives (only while someone reads the log). */
export interface RequestInfo {
  caller: LoggedCaller | undefined;
  /** The inode and handle it names, if any (requests on the access log itself are not logged). */
  ino: number | undefined;
  fh: number | undefined;
  /** Its arguments as `name=value,...`, formatted only if the answer is logged. */
  describe: () => string;
}

/**
 * The loggable arguments of a request, `name=value` joined by commas, from its (name, type) list and values:
 * numbers and strings only (data buffers and lock owners are left out).
 */
export function describeArgs(names: ReadonlyArray<readonly [string, string]>, values: readonly unknown[], from: number): string {
  const parts: string[] = [];
  for (let i = 0; i < names.length; i++) {
    const [name, type] = names[i]!;
    const v = values[from + i];
    if (type === 'number' && typeof v === 'number') parts.push(`${name}=${name === 'mode' ? `0${v.toString(8)}` : v}`);
    else if (type === 'string' && typeof v === 'string') parts.push(`${name}=${JSON.stringify(v)}`);
  }
  return parts.join(',');
}
