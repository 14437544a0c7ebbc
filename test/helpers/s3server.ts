/**
 * A local S3 server (the npm package s3rver) for tests, benches and the lab, on a free loopback port with its
 * own temporary directory.
 *
 * It runs in a child process because s3rver must run under `node --openssl-legacy-provider` on Node 20: it
 * encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 only offers through the legacy
 * provider, so without the flag every listing that has a second page answers 500. The flag cannot be turned
 * on inside a running process, hence the child.
 *
 *   parent                                  child (node --openssl-legacy-provider -e CHILD_SCRIPT)
 *     spawn ──────────────────────────────▶   new S3rver({ port, directory, configureBuckets }).run()
 *     reads one line {"port":N} ◀───────────   prints the port it listens on
 *     stop(): closes the child's stdin ────▶   stdin ends: closes the server, exits 0
 *
 * The child also exits when the parent dies (its stdin ends), so a crashed test leaves no server behind.
 * Run by hand for the lab or a bench (`node --import tsx test/helpers/s3server.ts [bucket...]`), it prints the
 * endpoint and a store URL and serves until interrupted.
 *
 * s3rver knows one access key, S3RVER_ACCESS_KEY (any other is a 403 InvalidAccessKeyId); it does not check
 * signature V4, so a wrong secret goes unnoticed.
 */

import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

/** s3rver's built-in account. */
export const S3RVER_ACCESS_KEY = 'S3RVER';
export const S3RVER_SECRET_KEY = 'S3RVER';

/** Time for the child to load s3rver and listen before we give up on it. */
const START_MS_MAX = 15_000;
/** Time for the child to close its server and exit before it is killed. */
const STOP_MS_MAX = 5_000;
/** The child's stderr kept for error messages. */
const STDERR_BYTES_MAX = 8 * 1024;

export interface S3ServerOptions {
  /** Buckets created before the server answers; default ['ferry-test']. */
  buckets?: string[];
  /** Port to listen on; default 0 (a free one). Pass a stopped server's port to restart it there. */
  port?: number;
}

export interface S3Server {
  /** `http://127.0.0.1:PORT`. */
  readonly endpoint: string;
  readonly port: number;
  /** The server process's pid (benches read its CPU time from /proc). */
  readonly pid: number;
  /** The buckets created at start. */
  readonly buckets: readonly string[];
  /**
   * An `s3://` URL for a bucket (default the first) and optional prefix that opens a store on this server,
   * with s3rver's credentials in the query.
   */
  url(prefix?: string, bucket?: string): string;
  /** Stops the server and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

/** CommonJS, run by `node -e`; argv: s3rver's module path, directory, port, buckets as JSON. */
const CHILD_SCRIPT = `
const [modulePath, directory, port, buckets] = process.argv.slice(1);
const S3rver = require(modulePath);
const server = new S3rver({
  address: '127.0.0.1',
  port: Number(port),
  directory,
  silent: true,
  configureBuckets: JSON.parse(buckets).map((name) => ({ name })),
});
server.run().then(
  (address) => process.stdout.write(JSON.stringify({ port: address.port }) + '\\n'),
  (err) => { console.error(err); process.exit(1); },
);
process.stdin.on('end', () => server.close(() => process.exit(0)));
process.stdin.resume();
`;

export async function startS3Server(options: S3ServerOptions = {}): Promise<S3Server> {
  const buckets = options.buckets ?? ['ferry-test'];
  const requestedPort = options.port ?? 0;
  if (buckets.length === 0) throw new RangeError('startS3Server needs at least one bucket');
  const directory = await mkdtemp(path.join(tmpdir(), 'ferry-s3rver-'));
  const modulePath = createRequire(import.meta.url).resolve('s3rver');
  const child = spawn(
    process.execPath,
    ['--openssl-legacy-provider', '-e', CHILD_SCRIPT, modulePath, directory, String(requestedPort), JSON.stringify(buckets)],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    stderr = (stderr + text).slice(-STDERR_BYTES_MAX);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.stdin.on('error', () => undefined); // EPIPE when the child is already gone; its exit tells us.

  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`s3rver did not start within ${START_MS_MAX} ms; stderr: ${stderr}`)), START_MS_MAX);
      let stdout = '';
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (text: string) => {
        stdout += text;
        const newline = stdout.indexOf('\n');
        if (newline < 0) return;
        clearTimeout(timer);
        try {
          const { port: p } = JSON.parse(stdout.substring(0, newline)) as { port: unknown };
          if (typeof p !== 'number' || !Number.isSafeInteger(p) || p <= 0) throw new Error(`bad port ${String(p)}`);
          resolve(p);
        } catch (err) {
          reject(new Error(`s3rver printed ${JSON.stringify(stdout)} instead of its port`, { cause: err }));
        }
      });
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`s3rver exited at start (code ${code}, signal ${signal}); stderr: ${stderr}`));
      });
    });
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    await rm(directory, { recursive: true, force: true });
    throw err;
  }

  const endpoint = `http://127.0.0.1:${port}`;
  let stopping: Promise<void> | undefined;
  return {
    endpoint,
    port,
    pid: child.pid!,
    buckets,
    url(prefix = '', bucket = buckets[0]!) {
      const at = prefix === '' ? '' : `/${prefix}`;
      return `s3://${bucket}${at}?endpoint=${encodeURIComponent(endpoint)}&region=us-east-1&path-style=true` +
        `&access-key=${S3RVER_ACCESS_KEY}&secret-key=${S3RVER_SECRET_KEY}`;
    },
    stop() {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.stdin.end();
          const timer = setTimeout(() => child.kill('SIGKILL'), STOP_MS_MAX);
          await exited;
          clearTimeout(timer);
        }
        await rm(directory, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const buckets = process.argv.slice(2);
  const server = await startS3Server(buckets.length === 0 ? {} : { buckets });
  process.stdout.write(`endpoint ${server.endpoint}\nstore    ${server.url()}\n`);
  const stop = (): void => {
    void server.stop().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

/**
 * Environment for `rclone` with remotes SRC and DST on two s3rver endpoints, configured by variables only
 * (no config file). AWS_CA_BUNDLE is removed: rclone's S3 backend fails at start when it names a bundle its
 * HTTP transport cannot take, as it does on these machines.
 */
export function rcloneEnv(src: string, dst: string): NodeJS.ProcessEnv {
  const remote = (name: string, endpoint: string): Record<string, string> => ({
    [`RCLONE_CONFIG_${name}_TYPE`]: 's3',
    [`RCLONE_CONFIG_${name}_PROVIDER`]: 'Other',
    [`RCLONE_CONFIG_${name}_ENDPOINT`]: endpoint,
    [`RCLONE_CONFIG_${name}_ACCESS_KEY_ID`]: S3RVER_ACCESS_KEY,
    [`RCLONE_CONFIG_${name}_SECRET_ACCESS_KEY`]: S3RVER_SECRET_KEY,
    [`RCLONE_CONFIG_${name}_FORCE_PATH_STYLE`]: 'true',
    [`RCLONE_CONFIG_${name}_REGION`]: 'us-east-1',
  });
  const env: NodeJS.ProcessEnv = { ...process.env, RCLONE_CONFIG: '/dev/null', ...remote('SRC', src), ...remote('DST', dst) };
  delete env['AWS_CA_BUNDLE'];
  return env;
}

