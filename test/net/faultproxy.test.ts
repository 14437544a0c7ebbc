import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { FaultProxy, isLoopback } from '../../src/net/faultproxy.js';

/** A server that echoes (mode 'echo') or swallows and counts (mode 'sink') what it receives. */
interface TestServer {
  port: number;
  received: number;
  sockets: Set<net.Socket>;
  close(): Promise<void>;
}

async function startServer(mode: 'echo' | 'sink'): Promise<TestServer> {
  const sockets = new Set<net.Socket>();
  const state = { received: 0 };
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => {
      state.received += d.length;
      if (mode === 'echo') s.write(d);
    });
    s.on('end', () => s.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    get received() {
      return state.received;
    },
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Writes `bytes` and waits for that many bytes to come back; resolves with the elapsed ms. */
function roundTrip(s: net.Socket, bytes = 16): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let got = 0;
    const onData = (d: Buffer): void => {
      got += d.length;
      if (got >= bytes) {
        s.off('data', onData);
        s.off('error', reject);
        resolve(performance.now() - t0);
      }
    };
    s.on('data', onData);
    s.once('error', reject);
    s.write(Buffer.alloc(bytes, 7));
  });
}

/** Resolves with the error code the socket fails with, or 'closed' if it closes cleanly. */
function outcome(s: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    s.once('close', () => setImmediate(() => resolve('closed')));
  });
}

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('FaultProxy', () => {
  let echo: TestServer;
  let sink: TestServer;
  before(async () => {
    echo = await startServer('echo');
    sink = await startServer('sink');
  });
  after(async () => {
    await echo.close();
    await sink.close();
  });

  it('forwards both ways unchanged when no fault is set', async () => {
    const proxy = await FaultProxy.start({ targetPort: echo.port });
    try {
      const s = await connect(proxy.port);
      const payload = Buffer.from(Array.from({ length: 300_000 }, (_, i) => i % 251));
      const back: Buffer[] = [];
      let got = 0;
      await new Promise<void>((resolve) => {
        s.on('data', (d: Buffer) => {
          back.push(d);
          got += d.length;
          if (got === payload.length) resolve();
        });
        s.write(payload);
      });
      assert.ok(Buffer.concat(back).equals(payload));
      s.end();
      await until(() => proxy.stats().active === 0);
      const st = proxy.stats();
      assert.equal(st.connections, 1);
      assert.equal(st.bytesUp, payload.length);
      assert.equal(st.bytesDown, payload.length);
      assert.equal(st.resets, 0);
    } finally {
      await proxy.close();
    }
  });

  it('adds latency per direction (round trip through an echo server)', async () => {
    const proxy = await FaultProxy.start({ targetPort: echo.port });
    try {
      const s = await connect(proxy.port);
      await roundTrip(s); // warm up
      const base = await roundTrip(s);
      proxy.setFaults({ upLatencyMs: 40, downLatencyMs: 60, jitterMs: 10 });
      const rtts: number[] = [];
      for (let i = 0; i < 5; i++) rtts.push(await roundTrip(s));
      const min = Math.min(...rtts);
      assert.ok(min >= 99, `round trip with 40 + 60 ms added: ${rtts.map((r) => r.toFixed(1)).join(', ')} ms (base ${base.toFixed(1)})`);
      assert.ok(Math.max(...rtts) < 400, `round trips ${rtts.join(', ')}`);
      proxy.setFaults({ upLatencyMs: 0, downLatencyMs: 0, jitterMs: 0 });
      assert.ok((await roundTrip(s)) < 50, 'latency removed at run time');
      s.destroy();
    } finally {
      await proxy.close();
    }
  });

  it('caps bandwidth: 1 MiB at 2 MiB/s takes at least ~0.4 s', async () => {
    const proxy = await FaultProxy.start({ targetPort: sink.port, connectionBytesPerSecond: 2 << 20 });
    try {
      const start = sink.received;
      const s = await connect(proxy.port);
      const t0 = performance.now();
      s.write(Buffer.alloc(1 << 20, 1));
      await until(() => sink.received - start >= 1 << 20, 5000);
      const secs = (performance.now() - t0) / 1000;
      assert.ok(secs >= 0.4, `took ${secs.toFixed(3)} s`);
      assert.ok(secs < 1.0, `took ${secs.toFixed(3)} s; the cap is too strict`);
      s.destroy();
    } finally {
      await proxy.close();
    }
  });

  it('caps total bandwidth across connections', async () => {
    const proxy = await FaultProxy.start({ targetPort: sink.port, totalBytesPerSecond: 2 << 20 });
    try {
      const start = sink.received;
      const a = await connect(proxy.port);
      const b = await connect(proxy.port);
      const t0 = performance.now();
      a.write(Buffer.alloc(512 << 10, 1));
      b.write(Buffer.alloc(512 << 10, 2));
      await until(() => sink.received - start >= 1 << 20, 5000);
      const secs = (performance.now() - t0) / 1000;
      assert.ok(secs >= 0.4, `two connections of 512 KiB under a 2 MiB/s total cap took ${secs.toFixed(3)} s`);
      a.destroy();
      b.destroy();
    } finally {
      await proxy.close();
    }
  });

  it('resets doomed connections and counts them; a seed replays the same choices', async () => {
    const runOnce = async (seed: number): Promise<string[]> => {
      const proxy = await FaultProxy.start({ targetPort: echo.port, seed, connectionResetRate: 0.5, resetAfterBytesMax: 100 });
      const outcomes: string[] = [];
      try {
        for (let i = 0; i < 12; i++) {
          const s = await connect(proxy.port);
          const done = outcome(s);
          const rt = roundTrip(s, 200).then(() => 'ok', (err: NodeJS.ErrnoException) => err.code ?? 'error');
          const r = await Promise.race([rt, done]);
          outcomes.push(r);
          s.destroy();
        }
        const st = proxy.stats();
        assert.equal(st.resets, outcomes.filter((o) => o !== 'ok').length);
        assert.ok(st.resets > 0 && st.resets < 12, `resets ${st.resets} of 12 at rate 0.5`);
      } finally {
        await proxy.close();
      }
      return outcomes;
    };
    const first = await runOnce(42);
    assert.ok(first.every((o) => o === 'ok' || o === 'ECONNRESET'), first.join(','));
    assert.deepEqual(await runOnce(42), first);
  });

  it('resets per chunk', async () => {
    const proxy = await FaultProxy.start({ targetPort: echo.port, chunkResetRate: 1 });
    try {
      const s = await connect(proxy.port);
      const done = outcome(s);
      s.write('hello');
      assert.equal(await done, 'ECONNRESET');
      await until(() => proxy.stats().active === 0);
      assert.equal(proxy.stats().resets, 1);
    } finally {
      await proxy.close();
    }
  });

  it('blackout (stall): new connections are reset, existing ones wait, then everything recovers', async () => {
    const proxy = await FaultProxy.start({ targetPort: echo.port });
    try {
      const s = await connect(proxy.port);
      await roundTrip(s);
      proxy.blackout(300, 'stall');
      assert.ok(proxy.blackedOut);
      const fresh = await connect(proxy.port).then((c) => outcome(c), (err: NodeJS.ErrnoException) => err.code ?? 'error');
      assert.equal(fresh, 'ECONNRESET');
      const stalled = await roundTrip(s);
      assert.ok(stalled >= 250, `a round trip during a 300 ms stall took ${stalled.toFixed(0)} ms`);
      assert.ok(!proxy.blackedOut);
      assert.ok((await roundTrip(s)) < 50, 'flows again after the blackout');
      const again = await connect(proxy.port);
      assert.ok((await roundTrip(again)) < 50, 'new connections are accepted again');
      assert.equal(proxy.stats().refused, 1);
      s.destroy();
      again.destroy();
    } finally {
      await proxy.close();
    }
  });

  it('blackout (cut): existing connections are reset at once', async () => {
    const proxy = await FaultProxy.start({ targetPort: echo.port });
    try {
      const s = await connect(proxy.port);
      await roundTrip(s);
      const done = outcome(s);
      proxy.blackout(200, 'cut');
      assert.equal(await done, 'ECONNRESET');
      assert.equal(proxy.stats().resets, 1);
      await new Promise((r) => setTimeout(r, 250));
      const again = await connect(proxy.port);
      assert.ok((await roundTrip(again)) < 50);
      again.destroy();
    } finally {
      await proxy.close();
    }
  });

  it('close() destroys every connection, stops listening and is idempotent', async () => {
    const proxy = await FaultProxy.start({ targetPort: echo.port, upLatencyMs: 1000 });
    const a = await connect(proxy.port);
    const b = await connect(proxy.port);
    a.write('queued behind a long delay');
    await until(() => proxy.stats().active === 2);
    const ends = [outcome(a), outcome(b)];
    await Promise.all([proxy.close(), proxy.close()]);
    await proxy.close();
    await Promise.all(ends);
    assert.equal(proxy.stats().active, 0);
    await assert.rejects(connect(proxy.port), /ECONNREFUSED/);
    // The echo server's side of both connections goes away too.
    await until(() => echo.sockets.size === 0);
  });

  it('accepts only loopback targets', async () => {
    for (const host of ['127.0.0.1', '127.3.2.1', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', 'localhost']) assert.ok(isLoopback(host), host);
    for (const host of ['10.0.0.1', '8.8.8.8', '::2', '::ffff:10.0.0.1', 'example.com', '128.0.0.1', '']) assert.ok(!isLoopback(host), host);
    await assert.rejects(FaultProxy.start({ targetHost: '192.168.1.1', targetPort: 80 }), /loopback/);
    await assert.rejects(FaultProxy.start({ targetPort: 0 }), /port/);
    await assert.rejects(FaultProxy.start({ targetPort: echo.port, connectionResetRate: 2 }), /probability/);
  });

  it('a connection to a target that is down is reset', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const deadPort = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const proxy = await FaultProxy.start({ targetPort: deadPort });
    try {
      const s = await connect(proxy.port);
      const r = await outcome(s);
      assert.ok(r === 'ECONNRESET' || r === 'closed', r);
      await until(() => proxy.stats().active === 0);
    } finally {
      await proxy.close();
    }
  });
});
