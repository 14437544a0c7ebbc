/**
 * Where the volume's metadata service listens (`ferry serve --advertise`): a logged setting, so it reaches
 * mirror replicas with the rest of the volume and a mirror client finds the primary's service through its
 * replica with no further flags.
 *
 *   setting  ''  'service'  ServiceRec  { v: 1, addresses: ['ferry://host:port' | 'ferrys://host:port', ...] }
 *
 * `ferrys://` is the TLS form. Addresses come from the engine: untrusted, checked by `parseServiceAddress`
 * before a client connects.
 */

import type { MetaEngine, Txn } from './engine.js';

const SERVICE_KEY = 'service';
/** Addresses kept at most (the newest registrations win). */
export const SERVICE_ADDRESSES_MAX = 8;

interface ServiceRec {
  v: 1;
  addresses: string[];
}

/** A service address as given on the command line or stored: scheme, host and port. */
export interface ServiceAddress {
  tls: boolean;
  host: string;
  port: number;
}

/** Parses `ferry://host:port` / `ferrys://host:port` (IPv6 as [addr]); undefined when it is not one. */
export function parseServiceAddress(s: string): ServiceAddress | undefined {
  const m = /^(ferrys?):\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})\/?$/.exec(s);
  if (m === null) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  return { tls: m[1] === 'ferrys', host: m[2]!, port };
}

export function formatServiceAddress(a: ServiceAddress): string {
  return `${a.tls ? 'ferrys' : 'ferry'}://${a.host}:${a.port}`;
}

/** The registered addresses, valid ones only, newest first. */
export async function readServiceAddresses(engine: MetaEngine): Promise<string[]> {
  const rec = await engine.txn((tx) => tx.get<ServiceRec>('setting', '', SERVICE_KEY), { readonly: true });
  if (rec === undefined || rec === null || !Array.isArray(rec.addresses)) return [];
  return rec.addresses.filter((a): a is string => typeof a === 'string' && parseServiceAddress(a) !== undefined);
}

/** Registers an address (moved to the front when already there); idempotent. */
export async function registerServiceAddress(engine: MetaEngine, address: string): Promise<void> {
  if (parseServiceAddress(address) === undefined) throw new RangeError(`bad service address ${JSON.stringify(address)}`);
  await engine.txn(async (tx) => {
    const rec = await tx.get<ServiceRec>('setting', '', SERVICE_KEY);
    const old = Array.isArray(rec?.addresses) ? rec.addresses.filter((a) => typeof a === 'string') : [];
    if (old[0] === address) return;
    const addresses = [address, ...old.filter((a) => a !== address)].slice(0, SERVICE_ADDRESSES_MAX);
    tx.put('setting', '', SERVICE_KEY, { v: 1, addresses } satisfies ServiceRec);
  });
}

/** Removes an address; false when it was not registered. */
export async function unregisterServiceAddress(engine: MetaEngine, address: string): Promise<boolean> {
  return engine.txn(async (tx) => {
    const rec = await tx.get<ServiceRec>('setting', '', SERVICE_KEY);
    const old = Array.isArray(rec?.addresses) ? rec.addresses : [];
    if (!old.includes(address)) return false;
    tx.put('setting', '', SERVICE_KEY, { v: 1, addresses: old.filter((a) => a !== address) } satisfies ServiceRec);
    return true;
  });
}

/** Inside a caller's transaction (a promotion): the registered services belong to the previous primary. */
export function clearServiceAddressesIn(tx: Txn): void {
  tx.del('setting', '', SERVICE_KEY);
}
