/**
 * The serving side of a cache-group member: HTTP/1.1 with keep-alive (node:http), every request signed
 * (auth.ts). Routes, all under /v1/block/<block key> (a key exactly as chunk/keys.ts writes it, else 400):
 *
 *   GET     whole            200, the block's codec object (chunk/codec.ts) as the owner holds it
 *   GET     Range: bytes=a-b 206, object bytes [a, b]; with ?head=1 the object's first H bytes come first,
 *                            H = blockHeaderBytes(plainBytes) in `x-ferry-head-bytes` (one round trip for
 *                            what a bucket needs two GETs for)
 *   POST                     204 once the owner holds the block (fetched along its read order if it had not);
 *                            `x-ferry-warm: held | fetched` says which (a warm-up run again fetches nothing twice)
 *   HEAD                     200 when the owner holds the block now, 404 when not (nothing is fetched)
 *   DELETE                   204, the owner no longer holds it
 *
 *   404  no good copy anywhere the owner looked     502  the owner could not fetch it (a bucket unreachable)
 *   401  unsigned, badly signed or out-of-window    403  another volume's request    400  not a block key
 *
 * The owner (BlockProvider) verifies what it serves, but the client verifies again (the reader decodes every
 * encoded answer): the network and this process are not trusted with the bytes. Concurrent requests for one
 * block are one fetch (the provider single-flights).
 */

import { AsyncLocalStorage } from 'node:async_hooks';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { blockHeaderBytes, peekBlockWhole } from '../../chunk/codec.js';
import { parseBlockKey, type BlockKeyParts } from '../../chunk/keys.js';
import { CorruptBlockError } from '../../errors.js';
import { verifyRequest } from './auth.js';

/**
 * Set while a member serves a peer's request: the block reader's cache-group tier (tier-peer.ts) then asks no
 * other member, so a request makes at most one hop whatever the members' views of the ring are (two members
 * that each think the other owns a block would otherwise ask each other until a timeout).
 */
export const servingPeer = new AsyncLocalStorage<true>();

/** Where a member's blocks come from: its caches, then its read order (owner.ts). */
export interface BlockProvider {
  /** The whole codec object of a block, fetched if not held; undefined when no good copy exists anywhere. */
  object(key: string, parts: BlockKeyParts): Promise<Buffer | undefined>;
  /**
   * Optional: object bytes [from, to) of a striped block and its header, both verified, when they can be had
   * without the whole object (owner.ts: a recent object, or the disk cache read by stripes); undefined sends
   * the request down the whole path (`object`).
   */
  range?(key: string, parts: BlockKeyParts, from: number, to: number): Promise<{ head: Buffer; data: Buffer } | undefined>;
  /**
   * Optional: the whole verified object for one response when it is held (no fetch), in a buffer lent until
   * `release(sent)`: called once the response is over, sent true when it was handed to the kernel whole, false
   * when it was aborted; undefined sends the request down the `object` path.
   */
  lend?(key: string, parts: BlockKeyParts): Promise<{ object: Buffer; release: (sent: boolean) => void } | undefined>;
  /** Whether the block is held now (no fetch). */
  holds(key: string, parts: BlockKeyParts): Promise<boolean>;
  /** Makes sure the block is held: it was already, it was fetched now, or no good copy exists. */
  warm(key: string, parts: BlockKeyParts): Promise<'held' | 'fetched' | 'missing'>;
  evict(key: string, parts: BlockKeyParts): Promise<void>;
}

export interface PeerServerOptions {
  uuid: string;
  /** deriveKey(secret, uuid, 'cache-peer'). */
  key: Buffer;
  provider: BlockProvider;
  /** A request that failed for a reason of the owner's own (not a refusal): for its log. */
  onError?: (err: unknown, key: string) => void;
  now?: () => number;
}

export interface PeerServerStats {
  requests: number;
  refused: number;
  bytesServed: number;
  errors: number;
}

const PREFIX = '/v1/block/';
const RANGE_RE = /^bytes=(\d{1,15})-(\d{1,15})$/;
/** Idle keep-alive connections are kept this long (clients reuse them for the next block). */
const KEEP_ALIVE_MS = 65_000;

export class PeerServer {
  readonly stats: PeerServerStats = { requests: 0, refused: 0, bytesServed: 0, errors: 0 };
  private readonly options: PeerServerOptions;
  private readonly server: Server;
  private closing: Promise<void> | undefined;

  constructor(options: PeerServerOptions) {
    this.options = options;
    this.server = createServer({ keepAlive: true, keepAliveTimeout: KEEP_ALIVE_MS }, (req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.stats.errors++;
        if (!res.headersSent) res.writeHead(500).end();
        else res.destroy();
        options.onError?.(err, req.url ?? '');
      });
    });
    this.server.keepAliveTimeout = KEEP_ALIVE_MS;
  }

  /** Listens; resolves with the bound address (port 0 picks one). */
  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  private handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    return servingPeer.run(true, () => this.serve(req, res));
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.stats.requests++;
    const url = req.url ?? '';
    const method = req.method ?? '';
    const refusal = verifyRequest(this.options.key, this.options.uuid, { method, path: url, headers: req.headers }, (this.options.now ?? Date.now)());
    if (refusal !== undefined) return this.refuse(res, refusal.status, refusal.reason);
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const query = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
    if (!path.startsWith(PREFIX)) return this.refuse(res, 404, 'no such route');
    const key = path.slice(PREFIX.length);
    const parts = parseBlockKey(key);
    if (parts === undefined) return this.refuse(res, 400, 'not a block key of this volume');
    const p = this.options.provider;
    switch (method) {
      case 'HEAD':
        res.writeHead((await p.holds(key, parts)) ? 200 : 404).end();
        return;
      case 'DELETE':
        await p.evict(key, parts);
        res.writeHead(204).end();
        return;
      case 'POST': {
        let got;
        try {
          got = await p.warm(key, parts);
        } catch (err) {
          this.stats.errors++;
          this.options.onError?.(err, key);
          res.writeHead(err instanceof CorruptBlockError ? 404 : 502, { 'content-type': 'text/plain' }).end(err instanceof Error ? err.message : 'fetch failed');
          return;
        }
        res.writeHead(got === 'missing' ? 404 : 204, { 'x-ferry-warm': got }).end();
        return;
      }
      case 'GET':
        break;
      default:
        return this.refuse(res, 405, 'method not allowed');
    }
    const range = req.headers.range;
    const asked = range === undefined ? undefined : RANGE_RE.exec(range);
    const from = asked == null ? NaN : Number(asked[1]);
    const to = asked == null ? NaN : Number(asked[2]) + 1;
    const wantHead = query.get('head') === '1';
    let object: Buffer | undefined;
    try {
      // A few stripes of a block are read (and verified) without the whole object when the provider can.
      const part = range === undefined || !(from < to) || p.range === undefined ? undefined : await p.range(key, parts, from, to);
      if (part !== undefined) {
        this.sendRange(res, part.data, wantHead ? part.head : undefined);
        return;
      }
      const lent = range === undefined && p.lend !== undefined ? await p.lend(key, parts) : undefined;
      if (lent !== undefined) {
        this.stats.bytesServed += lent.object.length;
        // 'finish': the last bytes were handed to the kernel, so the buffer may be reused; a 'close' before it
        // is an aborted response (the provider then drops the buffer).
        res.once('finish', () => lent.release(true));
        res.once('close', () => lent.release(false));
        res.writeHead(200, { 'content-length': lent.object.length }).end(lent.object);
        return;
      }
      object = await p.object(key, parts);
    } catch (err) {
      this.stats.errors++;
      this.options.onError?.(err, key);
      res.writeHead(err instanceof CorruptBlockError ? 404 : 502, { 'content-type': 'text/plain' }).end(err instanceof Error ? err.message : 'fetch failed');
      return;
    }
    if (object === undefined) {
      res.writeHead(404).end();
      return;
    }
    // A block that is not striped (codec version 1 or 4) is answered whole, as the tier contract allows.
    if (range === undefined || peekBlockWhole(object)) {
      this.stats.bytesServed += object.length;
      res.writeHead(200, { 'content-length': object.length }).end(object);
      return;
    }
    if (!(from < to && to <= object.length)) return this.refuse(res, 416, 'bad range');
    this.sendRange(res, object.subarray(from, to), wantHead ? object.subarray(0, Math.min(object.length, blockHeaderBytes(parts.blockBytes))) : undefined);
  }

  /** 206 with `body`, preceded by the object's header `head` when asked (its length in x-ferry-head-bytes). */
  private sendRange(res: ServerResponse, body: Buffer, head: Buffer | undefined): void {
    const headBytes = head?.length ?? 0;
    this.stats.bytesServed += body.length + headBytes;
    res.writeHead(206, { 'content-length': headBytes + body.length, 'x-ferry-head-bytes': headBytes });
    // Headers, the object's header and the body leave in one write.
    res.cork();
    if (head !== undefined && headBytes > 0) res.write(head);
    res.end(body);
    res.uncork();
  }

  private refuse(res: ServerResponse, status: number, reason: string): void {
    this.stats.refused++;
    res.writeHead(status, { 'content-type': 'text/plain' }).end(reason + '\n');
  }

  /** Idempotent: stops listening and closes every connection. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    return this.closing;
  }
}
