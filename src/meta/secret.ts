/**
 * The volume secret: 32 random bytes made at format (or on first need for a volume formatted before it
 * existed), kept as a logged setting so mirror replicas hold it too. It is never printed, never sent, and a
 * dump leaves it out unless --keep-secrets. Anyone who can read the metadata can read it: that is the trust
 * boundary of every network endpoint (cache peers sign requests with a key derived from it, the metadata
 * service checks a token derived from it). Each use takes its own key through `deriveKey`, so a key leaked
 * from one use does not open the others.
 */

import { hkdfSync, randomBytes } from 'node:crypto';
import type { MetaEngine, Txn } from './engine.js';
import { setting } from './records.js';

export const SECRET_KEY = 'secret';
const SECRET_BYTES = 32;

interface SecretRec {
  version: 1;
  /** base64 of SECRET_BYTES random bytes. */
  key: string;
}

const secretRecord = setting<SecretRec>(SECRET_KEY);

function parse(rec: unknown): Buffer | undefined {
  if (rec === null || typeof rec !== 'object') return undefined;
  const r = rec as Partial<SecretRec>;
  if (r.version !== 1 || typeof r.key !== 'string') return undefined;
  const key = Buffer.from(r.key, 'base64');
  return key.length === SECRET_BYTES ? key : undefined;
}

/** Puts a new secret in `tx` (format, load without one). */
export function putNewSecret(tx: Txn): void {
  secretRecord.put(tx, { version: 1, key: randomBytes(SECRET_BYTES).toString('base64') });
}

/**
 * The volume's secret, made on first call if the volume has none (a read-only engine, e.g. a mirror replica
 * before its primary made one, gets an error instead). A malformed record is an error, not replaced: replacing
 * it would lock out every peer that holds the old key.
 */
export async function volumeSecret(engine: MetaEngine): Promise<Buffer> {
  const found: unknown = await engine.txn((tx) => secretRecord.get(tx), { readonly: true });
  if (found !== undefined) {
    const key = parse(found);
    if (key === undefined) throw new Error('the volume secret record is malformed (restore it from a dump made with --keep-secrets, or remove it to make a new one and restart every peer)');
    return key;
  }
  await engine.txn(async (tx) => {
    if ((await secretRecord.get(tx)) === undefined) putNewSecret(tx);
  });
  return volumeSecret(engine);
}

/** A key for one use of the secret ('cache-peer', 'service-token', ...), bound to the volume's uuid. */
export function deriveKey(secret: Buffer, uuid: string, purpose: string, bytes = 32): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, Buffer.from(uuid), Buffer.from(`ferry ${purpose}`), bytes));
}
