/**
 * Many clients on one volume through the SDK: client processes (test/fixtures/sdk-client.ts, each its own
 * `openVolume`) and this process, on Redis and on PostgreSQL, with one shared file:// bucket.
 *
 * What one client commits, the others see: names and data at once (data on open, after the writer's close),
 * attributes within the lookup cache TTL. Ids never collide. Concurrent appends and renames in one directory
 * lose nothing that was committed. A client killed with SIGKILL leaves a session and an open-but-unlinked
 * file behind; a live client removes both once the session is stale.
 *
 * Locks across clients are not tested here: the engine has no locks yet (issue 3).
 *
 * Needs Redis on 127.0.0.1:6379 (database 11) and PostgreSQL on 127.0.0.1:5432 (database test); each part
 * skips without its server, and fails under CI=true.
 */

import type { Meta } from '../../src/meta/meta.js';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { isFsError } from '../../src/errors.js';
import { formatVolume } from '../../src/meta/meta.js';
import { openMetaEngine } from '../../src/meta/registry.js';
import { openVolume } from '../../src/sdk/open.js';
import type { Volume } from '../../src/sdk/volume.js';
import { postgresEngine, redisEngine, forEachEngine, type SharedEngine } from '../helpers/engines.js';

const CLIENT = fileURLToPath(new URL('../fixtures/sdk-client.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Client processes per engine (this process is one more client). */
const PROCESSES = 3;
/** The clients' lookup cache TTL: attributes changed elsewhere are seen after at most this long. */
const LOOKUP_CACHE_MS = 150;
const HEARTBEAT_MS = 200;
/** When a client is dead: it missed five heartbeats (each session declares it; Meta's default is 5 beats). */
const SESSION_STALE_MS = 5 * HEARTBEAT_MS;
/** A request that takes longer fails the test (and the client is killed). */
const requestTimeoutMs = 20_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

class ClientError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

/** One client process, driven by requests over its stdin. */
class Client {
  readonly child: ChildProcessWithoutNullStreams;
  readonly name: string;
  sid = 0;
  pid = 0;
  readonly #waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  #ready: Promise<void>;
  #seq = 0;
  #stderr = '';
  exited: Promise<NodeJS.Signals | number | null>;

  constructor(name: string, url: string) {
    this.name = name;
    this.child = spawn(process.execPath, ['--import', 'tsx', CLIENT, JSON.stringify({ url, lookupCacheMs: LOOKUP_CACHE_MS, heartbeatMs: HEARTBEAT_MS })], {
      cwd: ROOT,
    });
    let buffered = '';
    let onReady: (() => void) | undefined;
    let onFail: ((e: Error) => void) | undefined;
    this.#ready = new Promise((resolve, reject) => {
      onReady = resolve;
      onFail = reject;
    });
    this.child.stderr.setEncoding('utf8').on('data', (d: string) => (this.#stderr += d));
    this.child.stdout.setEncoding('utf8').on('data', (d: string) => {
      buffered += d;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buffered.substring(0, nl)) as { ready?: boolean; sid?: number; pid?: number; seq?: number; result?: unknown; error?: { code: string; message: string; stack?: string } };
        buffered = buffered.substring(nl + 1);
        if (msg.ready === true) {
          this.sid = msg.sid!;
          this.pid = msg.pid!;
          onReady!();
          continue;
        }
        const w = this.#waiting.get(msg.seq!);
        this.#waiting.delete(msg.seq!);
        if (msg.error !== undefined) w?.reject(new ClientError(msg.error.code, `${this.name}: ${msg.error.message}\n${msg.error.stack ?? ''}`));
        else w?.resolve(msg.result);
      }
    });
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        const e = new Error(`client ${this.name} exited (${signal ?? code}): ${this.#stderr}`);
        onFail!(e);
        for (const w of this.#waiting.values()) w.reject(e);
        this.#waiting.clear();
        resolve(signal ?? code);
      });
    });
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  call<T>(op: string, ...args: Array<string | number>): Promise<T> {
    const seq = ++this.#seq;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`client ${this.name}: ${op} took longer than ${requestTimeoutMs} ms`));
      }, requestTimeoutMs);
      this.#waiting.set(seq, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.child.stdin.write(JSON.stringify({ seq, op, args }) + '\n');
    });
  }

  /** Closes the client's volume (its session ends) and waits for the process to exit. */
  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    await this.call('close').catch(() => undefined);
    await this.exited;
  }
}

function multiclient(engine: SharedEngine): void {
  describe(`${PROCESSES} client processes and this one on one ${engine.name} volume`, () => {
    let url: string;
    let cleanup: () => Promise<void>;
    let dir: string;
    let vol: Volume;
    let clients: Client[] = [];
    /** The client the last test kills (started with the others, to save a process start). */
    let doomed: Client;

    before(async () => {
      ({ url, cleanup } = await engine.fresh());
      dir = mkdtempSync(path.join(tmpdir(), `ferry-mc-${engine.name}-`));
      const e = await openMetaEngine(url, { create: true });
      try {
        await formatVolume(e, { name: 'multi', storage: `file://${dir}/bucket`, blockBytes: 64 << 10, compression: 'none', trashDays: 0 });
      } finally {
        await e.close();
      }
      // It beats like the others: a session judges itself how long it may go without a heartbeat.
      vol = await openVolume(url, { lookupCacheMs: LOOKUP_CACHE_MS, heartbeatMs: HEARTBEAT_MS, memCacheBytes: 8 << 20 });
      clients = Array.from({ length: PROCESSES }, (_, i) => new Client(`c${i}`, url));
      doomed = new Client('doomed', url);
      await Promise.all([...clients, doomed].map((c) => c.ready()));
    });

    after(async () => {
      await Promise.all([...clients, doomed].map((c) => c?.close()));
      await vol?.close();
      await cleanup?.();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    });

    it('every client has its own session, listed by every other', async () => {
      const sids = clients.map((c) => c.sid);
      assert.equal(new Set([...sids, (vol.vfs.meta as Meta).sid]).size, PROCESSES + 1, 'session ids collide');
      const listed = await (vol.vfs.meta as Meta).listSessions();
      for (const c of clients) {
        const s = listed.find((x) => x.sid === c.sid);
        assert.ok(s !== undefined, `session of ${c.name} is listed`);
        assert.equal(s.pid, c.pid);
      }
    });

    it('names and data committed by one client are seen by the others; attributes within the cache TTL', async () => {
      const [a, b] = clients as [Client, Client];
      await a.call('mkdir', '/seen');
      await a.call('writeFile', '/seen/x', 'written by a');
      // A new name and the data behind it: visible at once (nobody has looked the name up before).
      assert.equal(await b.call('readFile', '/seen/x'), 'written by a');
      assert.equal(await vol.readFile('/seen/x', 'utf8'), 'written by a');
      const ino = (await a.call<{ ino: number }>('stat', '/seen/x')).ino;
      assert.equal((await b.call<{ ino: number }>('stat', '/seen/x')).ino, ino);
      assert.equal((await vol.stat('/seen/x')).ino, ino);

      // Attributes: b and this process have the file cached; a changes it.
      await a.call('chmod', '/seen/x', 0o640);
      await a.call('utimes', '/seen/x', 1_000_000, 2_000_000);
      await a.call('setxattr', '/seen/x', 'user.color', 'blue');
      await sleep(LOOKUP_CACHE_MS + 50);
      const st = await b.call<{ mode: number; mtimeMs: number }>('stat', '/seen/x');
      assert.equal(st.mode & 0o7777, 0o640);
      assert.equal(st.mtimeMs, 2_000_000_000);
      assert.equal((await vol.stat('/seen/x')).mode & 0o7777, 0o640);
      assert.equal(await b.call('getxattr', '/seen/x', 'user.color'), 'blue');

      // Data: b has read (and cached) the old bytes; a rewrites the file; b's next open reads the new bytes.
      await a.call('writeFile', '/seen/x', 'rewritten by a, and longer than before');
      assert.equal(await b.call('readFile', '/seen/x'), 'rewritten by a, and longer than before');
      assert.equal(await vol.readFile('/seen/x', 'utf8'), 'rewritten by a, and longer than before');
      // This process writes; a reads.
      await vol.writeFile('/seen/y', Buffer.alloc(200_000, 7));
      assert.equal(await a.call('readFile', '/seen/y'), Buffer.alloc(200_000, 7).toString());

      // Renames and unlinks, seen once the TTL has passed.
      await a.call('stat', '/seen/y');
      await vol.rename('/seen/y', '/seen/z');
      await sleep(LOOKUP_CACHE_MS + 50);
      await assert.rejects(a.call('stat', '/seen/y'), (e: unknown) => e instanceof ClientError && e.code === 'ENOENT');
      assert.equal((await a.call<{ size: number }>('stat', '/seen/z')).size, 200_000);
      await b.call('writeFile', '/seen/gone', 'soon gone');
      await vol.unlink('/seen/gone');
      await sleep(LOOKUP_CACHE_MS + 50);
      await assert.rejects(b.call('readFile', '/seen/gone'), (e: unknown) => e instanceof ClientError && e.code === 'ENOENT');
      assert.deepEqual(await a.call('readdir', '/seen'), ['x', 'z']);
      assert.deepEqual(await b.call('readdir', '/seen'), ['x', 'z']);
    });

    it('ids never collide: concurrent creates from every client, each file holding its own bytes', async () => {
      const perClient = 25;
      await vol.mkdir('/ids');
      const [mine, ...theirs] = await Promise.all([
        Promise.all(
          Array.from({ length: perClient }, async (_, i) => {
            const name = `me-${i}`;
            await vol.writeFile(`/ids/${name}`, name);
            return [name, (await vol.stat(`/ids/${name}`)).ino] as [string, number];
          }),
        ),
        ...clients.map((c) => c.call<Array<[string, number]>>('creates', '/ids', perClient, c.name)),
      ]);
      const reported = new Map([...mine!, ...theirs.flat()]);
      assert.equal(reported.size, (PROCESSES + 1) * perClient);
      assert.equal(new Set(reported.values()).size, reported.size, 'inode ids collide');
      assert.deepEqual((await vol.readdir('/ids')).sort(), [...reported.keys()].sort());
      // A slice id given to two clients would make one file read the other's bytes.
      for (const [name, ino] of reported) {
        assert.equal((await vol.stat(`/ids/${name}`)).ino, ino);
        assert.equal(await vol.readFile(`/ids/${name}`, 'utf8'), name, `content of ${name}`);
      }
    });

    it('concurrent appends from every client lose no committed line', async () => {
      const perClient = 25;
      await vol.writeFile('/log.txt', '');
      const written = await Promise.all(clients.map((c) => c.call<string[]>('appends', '/log.txt', perClient, c.name)));
      const expected = written.flat().sort();
      assert.equal(expected.length, PROCESSES * perClient);
      const content = (await vol.readFile('/log.txt', 'utf8')) as string;
      const lines = content.split(/(?<=\n)/).sort();
      assert.deepEqual(lines, expected, 'the file holds every appended line exactly once');
      assert.equal((await vol.stat('/log.txt')).size, expected.join('').length);
    });

    it('concurrent renames in one directory lose nothing; each contested rename happens exactly once', async () => {
      const own = 10;
      const shared = 30;
      await vol.mkdir('/ren');
      const sharedIno = new Map<number, number>();
      await Promise.all([
        ...Array.from({ length: shared }, async (_, j) => {
          await vol.writeFile(`/ren/s-${j}`, `s-${j}`);
          sharedIno.set(j, (await vol.stat(`/ren/s-${j}`)).ino);
        }),
        ...clients.map((c) => c.call('creates', '/ren', own, c.name)),
      ]);
      const results = await Promise.all(clients.map((c, i) => c.call<{ own: number; won: number[] }>('renames', '/ren', own, c.name, shared, Math.floor((i * shared) / PROCESSES))));
      assert.deepEqual(
        results.flatMap((r) => r.won).sort((x, y) => x - y),
        Array.from({ length: shared }, (_, j) => j),
        'each contested rename succeeded in exactly one client',
      );
      const expected = [
        ...clients.flatMap((c) => Array.from({ length: own }, (_, i) => `${c.name}-${i}.done`)),
        ...results.flatMap((r, i) => r.won.map((j) => `t-${j}-${clients[i]!.name}`)),
      ].sort();
      assert.deepEqual((await vol.readdir('/ren')).sort(), expected);
      for (const [i, r] of results.entries()) {
        for (const j of r.won) {
          const p = `/ren/t-${j}-${clients[i]!.name}`;
          assert.equal((await vol.stat(p)).ino, sharedIno.get(j), `${p} is the same inode`);
          assert.equal(await vol.readFile(p, 'utf8'), `s-${j}`);
        }
      }
    });

    it('locks hold across clients: fcntl ranges and flock, granted to another client after unlock', async () => {
      await vol.writeFile('/locked', 'x');
      const [a, b] = clients;
      assert.equal(await a!.call('setlk', '/locked', 'o1', 'w', 0, 100), null);
      const c = await b!.call<{ type: string; start: number; end: number } | null>('setlk', '/locked', 'o1', 'r', 50, 60);
      assert.deepEqual(c && [c.type, c.start, c.end], ['w', 0, 100], 'the other client sees the write lock');
      assert.equal(await b!.call('setlk', '/locked', 'o1', 'r', 100, 200), null, 'ranges that do not overlap coexist');
      assert.equal(await a!.call('setlk', '/locked', 'o1', 'u', 0, 100), null);
      assert.equal(await b!.call('setlk', '/locked', 'o1', 'w', 0, 100), null, 'granted once the holder unlocked');
      assert.equal(await a!.call('flock', '/locked', 'f1', 'ex'), true);
      assert.equal(await b!.call('flock', '/locked', 'f1', 'sh'), false);
      assert.equal(await a!.call('flock', '/locked', 'f1', 'un'), true);
      assert.equal(await b!.call('flock', '/locked', 'f1', 'sh'), true);
      assert.equal(await a!.call('flock', '/locked', 'f2', 'sh'), true, 'shared with shared');
    });

    it("a client killed with SIGKILL: a live client removes its session and its open-but-unlinked file", async () => {
      const meta = vol.vfs.meta as Meta;
      const bytes = 3 * (64 << 10) + 123;
      await vol.writeFile('/held', Buffer.alloc(bytes, 1));
      // Exact usage: the counters plus every session's changes not merged yet.
      const usedBefore = (await meta.usage()).usedBytes;
      const ino = await doomed.call<number>('hold', '/held');
      assert.equal(await vol.exists('/held'), false, 'the name is gone');
      assert.equal((await meta.getattr(ino)).nlink, 0, 'the inode lives on while the dead-to-be client holds it open');

      // While it beats, its session is not stale.
      await sleep(SESSION_STALE_MS + 200);
      await meta.cleanStaleSessions();
      assert.ok((await meta.listSessions()).some((s) => s.sid === doomed.sid), 'a live session was cleaned');
      assert.equal((await meta.getattr(ino)).nlink, 0);

      doomed.child.kill('SIGKILL');
      assert.equal(await doomed.exited, 'SIGKILL');
      // Dead once it missed its declared number of heartbeats: whichever live client notices first cleans it
      // (the others beat every 200 ms; this one asks too).
      const killed = Date.now();
      while ((await meta.listSessions()).some((s) => s.sid === doomed.sid)) {
        assert.ok(Date.now() - killed < 10 * SESSION_STALE_MS, 'the dead session was not cleaned');
        await sleep(100);
        await meta.cleanStaleSessions();
      }
      assert.ok(Date.now() - killed >= SESSION_STALE_MS - HEARTBEAT_MS - 50, 'cleaned before it could have missed its heartbeats');
      const left = await meta.listSessions();
      assert.ok(!left.some((s) => s.sid === doomed.sid), "the dead client's session is gone");
      for (const c of clients) assert.ok(left.some((s) => s.sid === c.sid), `live client ${c.name} keeps its session`);
      await assert.rejects(meta.getattr(ino), (e: unknown) => isFsError(e, 'ENOENT'), 'the open-but-unlinked inode is destroyed');
      assert.ok((await meta.listDelSlices(Number.MAX_SAFE_INTEGER, 1000)).length > 0, 'its slices wait for gc');
      assert.equal((await meta.usage()).usedBytes, usedBefore - bytes, 'its bytes no longer count as used');
    });

    it('clients that close end their sessions', async () => {
      await Promise.all(clients.map((c) => c.close()));
      const left = await (vol.vfs.meta as Meta).listSessions();
      assert.deepEqual(
        left.map((s) => s.sid),
        [(vol.vfs.meta as Meta).sid],
      );
    });
  });
}

await forEachEngine([redisEngine(11), postgresEngine()], multiclient);
