/**
 * The write-back part of `ferry status`: per staging area (a write-back client's cache directory, see
 * meta/staging.ts), the blocks committed in the metadata but not yet uploaded to the bucket, and whether its
 * client is running. A staging area whose client is gone still holds those blocks on its host's disk: they
 * upload when a client of the volume next opens that cache directory.
 */

import type { MetaEngine } from '../meta/engine.js';
import { listStaging, STAGING_STALE_MS } from '../meta/staging.js';
import { humanAge, humanBytes } from './util.js';

export interface WritebackClientStatus {
  host: string;
  pid: number;
  dir: string;
  region: string;
  blocks: number;
  bytes: number;
  /** Age of the oldest pending block, ms. */
  oldestAgeMs: number | undefined;
  updatedAgoMs: number;
  /** False when its client stopped reporting (killed, or closed with uploads left). */
  running: boolean;
}

export interface WritebackStatus {
  /** Blocks pending upload in every staging area, and their bytes. */
  blocks: number;
  bytes: number;
  clients: WritebackClientStatus[];
}

/** Strings from the engine are untrusted: no control characters reach a terminal. */
function printable(s: string): string {
  return s.replace(/[\p{Cc}\p{Cf}]/gu, '?');
}

export async function writebackStatus(engine: MetaEngine, now: number): Promise<WritebackStatus> {
  const clients = (await listStaging(engine)).map((r) => ({
    host: printable(r.host),
    pid: r.pid,
    dir: printable(r.dir),
    region: printable(r.region),
    blocks: r.blocks,
    bytes: r.bytes,
    oldestAgeMs: r.oldest === null ? undefined : Math.max(0, now - r.oldest),
    updatedAgoMs: Math.max(0, now - r.updated),
    running: now - r.updated <= STAGING_STALE_MS,
  }));
  return { blocks: clients.reduce((n, c) => n + c.blocks, 0), bytes: clients.reduce((n, c) => n + c.bytes, 0), clients };
}

export function writebackLines(st: WritebackStatus): string[] {
  if (st.clients.length === 0) return ['uploads:   none pending (write-back)'];
  return [
    `uploads:   ${st.blocks} block(s) (${humanBytes(st.bytes)}) committed but not yet in the bucket, staged by ${st.clients.length} write-back client(s):`,
    ...st.clients.map(
      (c) =>
        `  ${c.host} pid ${c.pid} ${c.dir}: ${c.blocks} block(s) (${humanBytes(c.bytes)})` +
        `${c.oldestAgeMs === undefined ? '' : `, oldest ${humanAge(c.oldestAgeMs)}`}, reported ${humanAge(c.updatedAgoMs)} ago` +
        (c.running ? '' : ` — its client is not running: open that cache dir on ${c.host} (ferry mount ... --cache-dir) to upload them`),
    ),
  ];
}
