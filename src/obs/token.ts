/**
 * The bearer token of the metrics endpoints (and the dashboard) when they listen beyond loopback: a key
 * derived from the volume secret (meta/secret.ts) for this one use, so anyone who can read the volume's
 * metadata can compute it and nobody else can. It is never printed; clients send it as
 * `authorization: Bearer <hex>` (Prometheus: `authorization: { credentials_file: ... }`).
 */

import type { MetaEngine } from '../meta/engine.js';
import { deriveKey, volumeSecret } from '../meta/secret.js';

export const METRICS_TOKEN_PURPOSE = 'metrics-token';

export async function metricsToken(engine: MetaEngine, uuid: string): Promise<Buffer> {
  return deriveKey(await volumeSecret(engine), uuid, METRICS_TOKEN_PURPOSE);
}
