/**
 * The metadata service's token: a key derived from the volume secret (meta/secret.ts) for this one use, so
 * whoever can read the metadata (the primary, a mirror replica) can compute it, and a leaked token opens
 * neither the cache peers nor another volume. It travels as `authorization: Bearer <64 hex>`; it is never
 * printed or logged — `ferry token` writes it to a 0600 file for clients that have only a `ferry://` URL.
 */

import { timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { UsageError } from '../errors.js';
import type { MetaEngine } from '../meta/engine.js';
import { deriveKey, volumeSecret } from '../meta/secret.js';

export const TOKEN_PURPOSE = 'service-token';
const TOKEN_HEX_RE = /^[0-9a-f]{64}$/;

/** The volume's service token (64 hex characters). */
export async function serviceToken(engine: MetaEngine, uuid: string): Promise<string> {
  return deriveKey(await volumeSecret(engine), uuid, TOKEN_PURPOSE).toString('hex');
}

/** Whether `given` (an authorization header) carries `token`, compared in constant time. */
export function tokenMatches(header: string | undefined, token: Buffer): boolean {
  if (header === undefined || !header.startsWith('Bearer ')) return false;
  const hex = header.slice(7).trim();
  if (!TOKEN_HEX_RE.test(hex)) return false;
  const got = Buffer.from(hex, 'hex');
  return got.length === token.length && timingSafeEqual(got, token);
}

/**
 * The token for a client given only a `ferry://` URL: `explicit` (an option), else FERRY_TOKEN, else the
 * file named by `tokenFile` or FERRY_TOKEN_FILE. Undefined when none is given.
 */
export async function clientToken(explicit?: string, tokenFile?: string): Promise<string | undefined> {
  const check = (t: string, where: string): string => {
    const s = t.trim().toLowerCase();
    if (!TOKEN_HEX_RE.test(s)) throw new UsageError(`the metadata service token from ${where} is not 64 hex characters (get one with "ferry token META --out FILE")`);
    return s;
  };
  if (explicit !== undefined) return check(explicit, 'the options');
  const env = process.env['FERRY_TOKEN'];
  if (env !== undefined && env !== '') return check(env, 'FERRY_TOKEN');
  const file = tokenFile ?? process.env['FERRY_TOKEN_FILE'];
  if (file === undefined || file === '') return undefined;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read the token file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return check(text, file);
}
