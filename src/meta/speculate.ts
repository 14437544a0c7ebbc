/**
 * Speculative reads for optimistic engines (Redis, PostgreSQL): what this client recently read of a record,
 * handed to the first attempt of a writing transaction instead of a read from the server. The engines check
 * every read of an attempt at commit anyway (the value or version it had), so a stale answer costs a
 * conflict and a second attempt with fresh reads, never a wrong commit.
 *
 * Why: a client nearly always reads what it is about to change just before (the kernel looks a name up before
 * it creates, unlinks or renames it; the SDK resolves the path). With those reads remembered, a create in a
 * directory is one round trip: the commit.
 *
 *   readonly read / attempt read ──▶ remember(record, version, raw JSON)
 *   attempt 1 read ──▶ fresh(record)? ──yes──▶ the remembered value, its version checked at commit
 *                                   └─no──▶ a read from the server
 *   commit ──▶ forget what it wrote (its new version is the server's)
 *   conflict of an attempt that speculated ──▶ forget those records, and do not speculate on them for a while
 *
 * Bounded: at most ENTRIES_MAX records of at most VALUE_CHARS_MAX characters, each used for at most FRESH_MS
 * after it was read; records that made a speculative attempt fail are left alone for COOL_MS (a record other
 * clients keep changing, like a shared directory's inode, is then always read).
 */

/** Records remembered at most (the oldest go first). */
export const SPECULATE_ENTRIES_MAX = 10_000;
/** How long after it was read a record is handed to a transaction. */
export const SPECULATE_FRESH_MS = 1000;
/** How long a record that made a speculative attempt conflict is not speculated on. */
export const SPECULATE_COOL_MS = 10_000;
/** Longer records are not remembered (a long chunk list): memory stays under ENTRIES_MAX times this. */
export const SPECULATE_VALUE_CHARS_MAX = 4096;

interface Remembered<V> {
  ver: V;
  /** The record's JSON text (undefined: it was missing): parsed for every use, so no caller shares an object. */
  raw: string | undefined;
  at: number;
}

export class SpeculativeReads<V> {
  private readonly entries = new Map<string, Remembered<V>>();
  private readonly cooling = new Map<string, number>();
  private readonly now: () => number;
  /** Reads answered from memory, and records that then made an attempt conflict (metrics, tests). */
  hits = 0;
  misses = 0;
  /** False: nothing is remembered or handed out (tests that count an operation's reads). */
  enabled = true;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  /** A record as read from the server (raw undefined: missing), with the version the engine checks. */
  remember(id: string, ver: V, raw: string | undefined): void {
    if (!this.enabled) return;
    if (raw !== undefined && raw.length > SPECULATE_VALUE_CHARS_MAX) {
      this.entries.delete(id);
      return;
    }
    if (this.cooling.size > 0) {
      const until = this.cooling.get(id);
      if (until !== undefined) {
        if (until > this.now()) return;
        this.cooling.delete(id);
      }
    }
    this.entries.delete(id); // re-inserted last: the Map's order is the age order
    this.entries.set(id, { ver, raw, at: this.now() });
    if (this.entries.size > SPECULATE_ENTRIES_MAX) this.entries.delete(this.entries.keys().next().value!);
  }

  /** The remembered version and JSON of a record read less than SPECULATE_FRESH_MS ago. */
  fresh(id: string): { ver: V; raw: string | undefined } | undefined {
    if (!this.enabled) return undefined;
    const e = this.entries.get(id);
    if (e === undefined) return undefined;
    if (this.now() - e.at >= SPECULATE_FRESH_MS) {
      this.entries.delete(id);
      return undefined;
    }
    this.hits++;
    return { ver: e.ver, raw: e.raw };
  }

  forget(id: string): void {
    this.entries.delete(id);
  }

  /** The records an attempt speculated on before it conflicted: forgotten, and not remembered for a while. */
  conflicted(ids: Iterable<string>): void {
    const until = this.now() + SPECULATE_COOL_MS;
    for (const id of ids) {
      this.entries.delete(id);
      this.cooling.set(id, until);
      this.misses++;
    }
    if (this.cooling.size > SPECULATE_ENTRIES_MAX) this.cooling.delete(this.cooling.keys().next().value!);
  }
}
