/**
 * The cache-group protocol over real HTTP (src/cache/group/server.ts, src/cache/tier-peer.ts): the client tier
 * passes the tier conformance suite against a real server; a server refuses unsigned, badly signed, old,
 * other-volume and non-block-key requests; a member that is down, hangs, resets mid-transfer or serves a
 * corrupt copy costs the reader a fall-through to the bucket (never wrong bytes) and is skipped for a while.
 */

import assert from 'node:assert/strict';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { Client, request } from 'undici';
import { createChunkStore } from '../../../src/cache/blocks.js';
import { signRequest } from '../../../src/cache/group/auth.js';
import { Ring } from '../../../src/cache/group/ring.js';
import { PeerServer, type BlockProvider } from '../../../src/cache/group/server.js';
import type { BlockReader } from '../../../src/cache/reader.js';
import { PeerTier } from '../../../src/cache/tier-peer.js';
import { blockKey, type BlockKeyParts } from '../../../src/chunk/keys.js';
import { deriveKey } from '../../../src/meta/secret.js';
import { MemStore } from '../../../src/object/mem.js';
import { mulberry32 } from '../../../src/util/random.js';
import { CountingStore } from '../../region/helpers.js';
import { flipPlainByte, tierConformance } from '../tier-conformance.js';

const UUID = 'vol-uuid-1';
const SECRET = Buffer.alloc(32, 9);
const KEY = deriveKey(SECRET, UUID, 'cache-peer');

/** A provider over a map of codec objects, with switches for what a bad member does. */
class HeldBlocks implements BlockProvider {
  readonly objects = new Map<string, Buffer>();
  corrupt = false;
  asked = 0;
  object(key: string): Promise<Buffer | undefined> {
    this.asked++;
    const o = this.objects.get(key);
    if (o === undefined || !this.corrupt) return Promise.resolve(o);
    const bad = Buffer.from(o);
    bad[bad.length - 1]! ^= 1;
    return Promise.resolve(bad);
  }
  holds(key: string): Promise<boolean> {
    return Promise.resolve(this.objects.has(key));
  }
  warm(key: string): Promise<'held' | 'missing'> {
    return Promise.resolve(this.objects.has(key) ? 'held' : 'missing');
  }
  evict(key: string, _parts: BlockKeyParts): Promise<void> {
    this.objects.delete(key);
    return Promise.resolve();
  }
}

async function serve(provider: BlockProvider, key = KEY, uuid = UUID): Promise<{ server: PeerServer; address: string }> {
  const server = new PeerServer({ uuid, key, provider });
  const a = await server.listen(0, '127.0.0.1');
  return { server, address: `127.0.0.1:${a.port}` };
}

function tierFor(address: string, over: { timeoutMs?: number; unhealthyMs?: number } = {}): PeerTier {
  return new PeerTier({ ring: () => new Ring([{ id: address, weight: 1 }]), uuid: UUID, key: KEY, ...over });
}

tierConformance('cache group peer over HTTP', async () => {
  const held = new HeldBlocks();
  const { server, address } = await serve(held);
  const tier = tierFor(address);
  return {
    tier,
    hold: (key: string, _plain: Buffer, object: Buffer) => Promise.resolve(void held.objects.set(key, Buffer.from(object))),
    damage: (key: string, plainBytes: number, at: number) => Promise.resolve(flipPlainByte(held.objects.get(key)!, plainBytes, at)),
    cleanup: async () => {
      await tier.close();
      await server.close();
    },
  };
});

function randomBytes(seed: number, n: number): Buffer {
  const rand = mulberry32(seed);
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

void describe('peer requests are authenticated', () => {
  const servers: PeerServer[] = [];
  after(async () => {
    for (const s of servers) await s.close();
  });

  void it('refuses unsigned, badly signed, old, other-volume and non-block-key requests; serves a good one', async () => {
    const held = new HeldBlocks();
    const key = blockKey(42, 0, 5);
    held.objects.set(key, Buffer.from('hello'));
    const { server, address } = await serve(held);
    servers.push(server);
    // A Client sends the path as given (a URL would resolve its dot segments).
    const client = new Client(`http://${address}`);
    after(() => client.close());
    const get = async (path: string, headers: Record<string, string>): Promise<[number, string]> => {
      const r = await client.request({ path, method: 'GET', headers });
      return [r.statusCode, await r.body.text()];
    };
    const path = `/v1/block/${key}`;
    const good = signRequest(KEY, { method: 'GET', path, range: '', uuid: UUID });
    assert.deepEqual(await get(path, good), [200, 'hello']);

    const [unsigned] = await get(path, {});
    assert.equal(unsigned, 401, 'unsigned');
    const bad = { ...good, authorization: good['authorization']!.replace(/.$/, (c) => (c === '0' ? '1' : '0')) };
    assert.equal((await get(path, bad))[0], 401, 'a flipped signature');
    assert.equal((await get(`${path}?head=1`, good))[0], 401, 'a signature of another path');
    const old = signRequest(KEY, { method: 'GET', path, range: '', uuid: UUID }, Date.now() - 60_000);
    const [status, why] = await get(path, old);
    assert.equal(status, 401, 'a request replayed a minute later');
    assert.match(why, /window/);
    const future = signRequest(KEY, { method: 'GET', path, range: '', uuid: UUID }, Date.now() + 60_000);
    assert.equal((await get(path, future))[0], 401, 'a date far ahead');

    // Another volume: its own uuid and key; or this volume's uuid with the other volume's key.
    const otherKey = deriveKey(SECRET, 'vol-uuid-2', 'cache-peer');
    assert.equal((await get(path, signRequest(otherKey, { method: 'GET', path, range: '', uuid: 'vol-uuid-2' })))[0], 403, 'another volume');
    assert.equal((await get(path, signRequest(otherKey, { method: 'GET', path, range: '', uuid: UUID })))[0], 401, "another volume's key");

    // Keys that are not this volume's block keys, signed correctly.
    for (const k of ['../other/chunks/0/0/42_0_5', 'chunks/0/0/042_0_5', 'chunks/0/1/42_0_5', 'chunks/0/0/42_0_5/../../x', 'setting']) {
      const p = `/v1/block/${k}`;
      assert.equal((await get(p, signRequest(KEY, { method: 'GET', path: p, range: '', uuid: UUID })))[0], 400, k);
    }
    assert.equal(held.asked, 1, 'only the good request reached the provider');
    assert.ok(server.stats.refused >= 10);
  });

  void it('a range is signed: the same signature with another Range header is refused', async () => {
    const held = new HeldBlocks();
    const key = blockKey(43, 0, 5);
    held.objects.set(key, Buffer.from('hello'));
    const { server, address } = await serve(held);
    servers.push(server);
    const path = `/v1/block/${key}`;
    const h = signRequest(KEY, { method: 'GET', path, range: 'bytes=0-1', uuid: UUID });
    const ok = await request(`http://${address}${path}`, { headers: { ...h, range: 'bytes=0-1' } });
    assert.equal(ok.statusCode, 206);
    assert.equal(await ok.body.text(), 'he');
    const moved = await request(`http://${address}${path}`, { headers: { ...h, range: 'bytes=0-4' } });
    assert.equal(moved.statusCode, 401);
    await moved.body.dump();
  });
});

const KiB = 1024;
const B = 256 * KiB;
const ID = 9001;
const SIZE = 3 * B + 1000;
const content = randomBytes(0xcafe, SIZE);
const blockLen = (i: number): number => Math.min(B, SIZE - i * B);
const keyOf = (i: number): string => blockKey(ID, i, blockLen(i));

/** A reader memory -> group (one member at `address`) -> bucket, with the slice written to the bucket. */
async function readerVia(address: string, over: { timeoutMs?: number; unhealthyMs?: number } = {}) {
  const bucket = new CountingStore(new MemStore());
  const tier = tierFor(address, over);
  const bad: string[] = [];
  const chunks = createChunkStore({ store: bucket, blockBytes: B, compression: 'none', extraTiers: [tier], onBadCopy: (t, _k, err) => bad.push(`${t}: ${String(err)}`) });
  for (let i = 0; i * B < SIZE; i++) await chunks.putBlock(ID, i, content.subarray(i * B, i * B + blockLen(i)));
  bucket.calls.get = 0;
  const read = async (off: number, len: number): Promise<Buffer> => {
    const out = Buffer.alloc(len);
    await chunks.readSlice(ID, SIZE, off, len, out, 0);
    return out;
  };
  return { bucket, tier, chunks, reader: chunks.reads as BlockReader, bad, read };
}

void describe('a bad member costs speed, never bytes', () => {
  void it('a member serving corrupt copies: the bucket serves, the member is skipped for a while', async () => {
    const held = new HeldBlocks();
    const { server, address } = await serve(held);
    const r = await readerVia(address);
    try {
      const { encodeBlock } = await import('../../../src/chunk/codec.js');
      for (let i = 0; i * B < SIZE; i++) held.objects.set(keyOf(i), encodeBlock(content.subarray(i * B, i * B + blockLen(i)), 'none', keyOf(i)));
      held.corrupt = true;
      assert.deepEqual(await r.read(0, SIZE), content);
      assert.ok(r.bad.some((b) => /^group: .*corrupt/i.test(b)), r.bad.join('\n'));
      assert.equal(r.tier.isHealthy(address), false, 'the member is skipped now');
      const asked = held.asked;
      assert.deepEqual(await r.read(0, 100), content.subarray(0, 100));
      assert.equal(held.asked, asked, 'not asked while unhealthy');
      // Once healthy again and serving good copies, it serves.
      held.corrupt = false;
      const healed = await readerVia(address);
      try {
        assert.deepEqual(await healed.read(0, SIZE), content);
        assert.equal(healed.bucket.calls.get, 0, 'all from the member');
      } finally {
        await healed.chunks.close();
      }
    } finally {
      await r.chunks.close();
      await server.close();
    }
  });

  void it('a member that is down, one that hangs, one that resets mid-transfer: right bytes from the bucket, within the timeout', async () => {
    // Down: nothing listens on the port.
    const probe = createNetServer();
    await new Promise<void>((res) => probe.listen(0, '127.0.0.1', () => res()));
    const downPort = (probe.address() as { port: number }).port;
    await new Promise<void>((res) => probe.close(() => res()));
    // Hangs: accepts and never answers. Resets: answers headers and half a body, then drops the connection.
    const sockets: Socket[] = [];
    const hang: NetServer = createNetServer((s) => void sockets.push(s));
    const reset: NetServer = createNetServer((s) => {
      s.once('data', () => {
        s.write('HTTP/1.1 200 OK\r\ncontent-length: 300000\r\n\r\n' + 'x'.repeat(1000));
        setTimeout(() => s.destroy(), 20);
      });
    });
    for (const s of [hang, reset]) await new Promise<void>((res) => s.listen(0, '127.0.0.1', () => res()));
    const port = (s: NetServer): number => (s.address() as { port: number }).port;
    try {
      for (const [what, address] of [['down', `127.0.0.1:${downPort}`], ['hung', `127.0.0.1:${port(hang)}`], ['reset', `127.0.0.1:${port(reset)}`]] as const) {
        const r = await readerVia(address, { timeoutMs: 500 });
        try {
          const t0 = Date.now();
          assert.deepEqual(await r.read(0, SIZE), content, what);
          const ms = Date.now() - t0;
          assert.ok(ms < 3000, `${what}: read in ${ms} ms (one timeout of 500 ms at most, then skipped)`);
          assert.equal(r.tier.isHealthy(address), false, `${what}: marked unhealthy`);
          assert.ok(r.bucket.calls.get >= 4, `${what}: the bucket served`);
          assert.ok(r.bad.every((b) => /^group: .*cache group member/.test(b)), r.bad.join('\n'));
        } finally {
          await r.chunks.close();
        }
      }
    } finally {
      for (const s of sockets) s.destroy();
      for (const s of [hang, reset]) await new Promise<void>((res) => s.close(() => res()));
    }
  });
});
