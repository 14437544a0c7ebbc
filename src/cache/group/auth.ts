/**
 * Request signatures between cache-group peers (DESIGN §8, §11). Every request carries
 *
 *   x-ferry-volume:  the volume uuid
 *   x-ferry-date:    the sender's clock, ms since the epoch
 *   authorization:   FERRY-HMAC-SHA256 <hex of HMAC-SHA256(key, canonical)>
 *
 *   canonical = "ferry-peer-v1\n" METHOD "\n" PATH-AND-QUERY "\n" RANGE-HEADER-OR-EMPTY "\n" DATE "\n" UUID
 *
 * with key = deriveKey(volume secret, uuid, 'cache-peer') (meta/secret.ts): only a holder of the volume's
 * metadata can sign, a key of one volume signs nothing for another, and the secret itself never crosses the
 * network. A receiver refuses (401) a request with no signature, a bad one, or a date more than
 * PEER_CLOCK_SKEW_MS_MAX away from its own clock (an old request replayed later), and (403) one for another
 * volume. Within the window a captured request can be replayed: every request is an idempotent read or a
 * cache hint (warm, evict) of blocks the replayer already saw, so nothing is gained by it.
 */

import { createHmac, timingSafeEqual } from 'node:crypto';

export const PEER_KEY_PURPOSE = 'cache-peer';
/** How far a request's date may be from the receiver's clock, either way, ms. */
export const PEER_CLOCK_SKEW_MS_MAX = 30_000;
const SCHEME = 'FERRY-HMAC-SHA256';
export const HEADER_VOLUME = 'x-ferry-volume';
export const HEADER_DATE = 'x-ferry-date';
export const HEADER_AUTH = 'authorization';

export interface SignedParts {
  method: string;
  /** Path and query, as sent. */
  path: string;
  /** The Range header, or '' when there is none. */
  range: string;
  date: number;
  uuid: string;
}

function mac(key: Buffer, p: SignedParts): Buffer {
  return createHmac('sha256', key).update(`ferry-peer-v1\n${p.method.toUpperCase()}\n${p.path}\n${p.range}\n${p.date}\n${p.uuid}`).digest();
}

/** The headers that authenticate a request (add Range yourself when `range` is not ''). */
export function signRequest(key: Buffer, p: Omit<SignedParts, 'date'>, now = Date.now()): Record<string, string> {
  const date = Math.floor(now);
  return {
    [HEADER_VOLUME]: p.uuid,
    [HEADER_DATE]: String(date),
    [HEADER_AUTH]: `${SCHEME} ${mac(key, { ...p, date }).toString('hex')}`,
  };
}

export type Refusal = { status: 401 | 403; reason: string };

/**
 * Checks a request's signature: undefined when it is good, else the status and a reason (for the answer; it
 * names what was wrong, never the expected value).
 */
export function verifyRequest(
  key: Buffer,
  uuid: string,
  req: { method: string; path: string; headers: Record<string, string | string[] | undefined> },
  now = Date.now(),
): Refusal | undefined {
  const one = (name: string): string | undefined => {
    const v = req.headers[name];
    return typeof v === 'string' ? v : undefined;
  };
  const auth = one(HEADER_AUTH);
  const dateText = one(HEADER_DATE);
  const volume = one(HEADER_VOLUME);
  if (auth === undefined || dateText === undefined || volume === undefined) return { status: 401, reason: 'unsigned request' };
  if (volume !== uuid) return { status: 403, reason: 'request for another volume' };
  if (!/^\d{1,16}$/.test(dateText)) return { status: 401, reason: 'bad request date' };
  const date = Number(dateText);
  if (Math.abs(now - date) > PEER_CLOCK_SKEW_MS_MAX) return { status: 401, reason: 'request date outside the allowed window (old, replayed, or a clock off by more than 30 s)' };
  const m = /^FERRY-HMAC-SHA256 ([0-9a-f]{64})$/.exec(auth);
  if (m === null) return { status: 401, reason: 'bad signature' };
  const range = one('range') ?? '';
  const expected = mac(key, { method: req.method, path: req.path, range, date, uuid });
  if (!timingSafeEqual(expected, Buffer.from(m[1]!, 'hex'))) return { status: 401, reason: 'bad signature' };
  return undefined;
}
