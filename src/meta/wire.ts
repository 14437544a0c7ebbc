/**
 * Counts what an engine sends to its server: the figure that decides a metadata operation's cost once the
 * server is a network hop away (and, on a shared server, how many operations it can serve at all).
 *
 *   requests  what the client writes and then waits on: one command, one pipeline (MULTI/EXEC included), one
 *             SQL query (a multi-statement query is one)
 *   commands  what the server executes: each command of a pipeline, each query
 *   waits     requests sent while no other request of this engine was in flight: the operation's sequential
 *             round trips (requests sent together, or while others are out, overlap them). With one operation
 *             at a time, waits × RTT is the network time it pays.
 *
 * Engines count on their drivers' single entry points (ioredis's sendCommand, node-postgres's query), so the
 * figures cover every call, hot path or not; SQLite counts statements as commands (no network: waits stay 0).
 * Read by test/meta/roundtrips.test.ts (per-operation counts that must not creep up) and bench/meta.ts.
 */

export interface WireCounts {
  requests: number;
  commands: number;
  waits: number;
}

export class WireCounter implements WireCounts {
  requests = 0;
  commands = 0;
  waits = 0;
  private inFlight = 0;

  /** A request of `commands` commands was sent; call the returned function once when its reply arrived. */
  sent(commands: number): () => void {
    this.requests++;
    this.commands += commands;
    if (this.inFlight === 0) this.waits++;
    this.inFlight++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.inFlight--;
    };
  }

  /** Commands the server executes without a request of their own (a pipeline's later commands, SQLite statements). */
  more(commands: number): void {
    this.commands += commands;
  }

  snapshot(): WireCounts {
    return { requests: this.requests, commands: this.commands, waits: this.waits };
  }

  /** What was counted since `before` (a snapshot). */
  since(before: WireCounts): WireCounts {
    return { requests: this.requests - before.requests, commands: this.commands - before.commands, waits: this.waits - before.waits };
  }
}

/** The shape of an ioredis client this module needs: every command, pipelined or not, passes sendCommand. */
interface SendsCommands {
  sendCommand(command: { promise: Promise<unknown> }, stream?: unknown, ...rest: unknown[]): unknown;
}

/**
 * Counts every command of an ioredis client (standalone or Cluster). A pipeline (and MULTI/EXEC, and ioredis's
 * auto-pipelining) hands each of its commands to sendCommand with the same stream object: the first one makes
 * the request, the others add commands to it; the request is answered when its last command is.
 */
export function countRedisCommands(client: SendsCommands, counter: WireCounter): void {
  const send = client.sendCommand.bind(client);
  const pipelines = new WeakMap<object, { left: number; done: () => void }>();
  client.sendCommand = (command, stream, ...rest) => {
    const r = send(command, stream, ...rest);
    const piped = typeof stream === 'object' && stream !== null && (stream as { isPipeline?: unknown }).isPipeline === true;
    if (!piped) {
      const done = counter.sent(1);
      command.promise.then(done, done);
      return r;
    }
    let p = pipelines.get(stream);
    if (p === undefined) {
      p = { left: 0, done: counter.sent(1) };
      counter.commands--; // sent(1) counted this first command; it is counted below with the others
      pipelines.set(stream, p);
    }
    counter.more(1);
    p.left++;
    const entry = p;
    const settle = (): void => {
      if (--entry.left === 0) entry.done();
    };
    command.promise.then(settle, settle);
    return r;
  };
}

/** The shape of a node-postgres client this module needs (Client and PoolClient). */
interface RunsQueries {
  query: (...args: never[]) => unknown;
}

/**
 * Counts every query of a node-postgres client: one request and one command each (a multi-statement query
 * included). Both calling forms are covered: the promise form, and the callback form the pool's own
 * `pool.query` uses.
 */
export function countPgQueries(client: RunsQueries, counter: WireCounter): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const done = counter.sent(1);
    const last = args.length > 0 ? args[args.length - 1] : undefined;
    if (typeof last === 'function') {
      const callback = last as (...a: unknown[]) => unknown;
      args[args.length - 1] = (...a: unknown[]) => {
        done();
        return callback(...a);
      };
      return query(...args);
    }
    const r = query(...args);
    if (r !== null && typeof r === 'object' && typeof (r as { then?: unknown }).then === 'function') (r as Promise<unknown>).then(done, done);
    else done();
    return r;
  };
}
