/**
 * The dashboard's HTTP endpoint (node:http): one self-contained page (obs/dashboard-page.ts: its script and
 * style inline, nothing fetched from elsewhere) and the JSON it polls. What the JSON holds is the caller's
 * (`snapshot`); this module only serves it, read-only, to whoever may see it:
 *
 *   GET /                 the page
 *   GET /api/status       application/json: snapshot()
 *   GET /favicon.ico      204 (none)
 *   anything else         404; a method other than GET or HEAD: 405
 *
 * Access:
 * - Bound to loopback (127.x, ::1, localhost) it is open to this machine, but answers only requests whose
 *   Host header names a loopback host, so a web page elsewhere cannot read it through DNS rebinding.
 * - Bound anywhere else it refuses to start without a token (the volume's metrics token, obs/token.ts), and
 *   every request must carry `authorization: Bearer <hex token>` or the session cookie. A browser gets the
 *   cookie by opening `/?token=<hex>` once: the answer sets it (HttpOnly, SameSite=Lax) and redirects to the
 *   same path without the query, so the token leaves the address bar. The cookie holds an HMAC of the token,
 *   not the token: it opens this dashboard and nothing else. Tokens and cookies are compared in constant time
 *   and never logged or echoed; requests are logged without their query.
 *
 * Every answer forbids caching, framing and sniffing, and the page's Content-Security-Policy allows only its
 * own inline script and style (by hash) and requests to its own origin.
 */

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DASHBOARD_SCRIPT, DASHBOARD_STYLE, dashboardHtml } from './dashboard-page.js';
import { isLoopback } from './metrics.js';

export const DASHBOARD_COOKIE = 'ferry_dashboard';
/** How long a browser keeps the cookie. */
const COOKIE_MAX_AGE_SECONDS = 24 * 3600;
/** The longest `?token=` value looked at (a token is 32 bytes: 64 hex digits). */
const TOKEN_HEX_MAX = 256;

export interface DashboardOptions {
  host: string;
  port: number;
  /** Required when `host` is not loopback; ignored otherwise. */
  token?: Buffer | undefined;
  /** What /api/status answers (JSON-serialisable; its secrets already masked). */
  snapshot: () => unknown;
  /** How often the page polls, ms. */
  refreshMs: number;
  /** Each request, without its query (the query may hold a token). */
  onRequest?: (method: string, path: string, status: number) => void;
}

export interface DashboardEndpoint {
  /** http://host:port (the port the system chose when 0 was asked). */
  readonly url: string;
  readonly server: Server;
  /** Idempotent. */
  close(): Promise<void>;
}

function sha256Base64(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('base64');
}

const CSP = [
  "default-src 'none'",
  `script-src 'sha256-${sha256Base64(DASHBOARD_SCRIPT)}'`,
  `style-src 'sha256-${sha256Base64(DASHBOARD_STYLE)}'`,
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const COMMON_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

/** The host name of a Host header (`name:port`, `[v6]:port`), lower-cased; undefined when malformed. */
export function hostHeaderName(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+))(?::\d{1,5})?$/.exec(value.trim());
  return m === null ? undefined : (m[1] ?? m[2]!).toLowerCase();
}

function equalBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function cookieOf(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** The hex digits of a token-like value, as bytes; an empty Buffer for anything else. */
function hexBytes(s: string | undefined): Buffer {
  if (s === undefined || s.length > TOKEN_HEX_MAX || !/^(?:[0-9a-fA-F]{2})+$/.test(s)) return Buffer.alloc(0);
  return Buffer.from(s, 'hex');
}

/** Serves the dashboard; beyond loopback without a token it refuses to start. */
export async function serveDashboard(o: DashboardOptions): Promise<DashboardEndpoint> {
  const where = `${o.host.includes(':') ? `[${o.host}]` : o.host}:${o.port}`;
  const loopback = isLoopback(o.host);
  const token = loopback ? undefined : o.token;
  if (!loopback && (token === undefined || token.length === 0)) throw new Error(`the dashboard on ${where} needs a token beyond loopback`);
  const cookie = token === undefined ? undefined : createHmac('sha256', token).update('ferry dashboard cookie').digest();
  const page = dashboardHtml(o.refreshMs);

  const allowed = (req: IncomingMessage): boolean => {
    if (token === undefined || cookie === undefined) return true;
    const bearer = /^Bearer\s+(\S+)\s*$/.exec(req.headers.authorization ?? '');
    if (bearer !== null) return equalBytes(hexBytes(bearer[1]), token);
    return equalBytes(hexBytes(cookieOf(req, DASHBOARD_COOKIE)), cookie);
  };

  const handle = (req: IncomingMessage, res: ServerResponse): number => {
    const send = (status: number, type: string, body: string, headers: Record<string, string> = {}): number => {
      res.writeHead(status, { ...COMMON_HEADERS, 'content-type': type, ...headers }).end(req.method === 'HEAD' ? undefined : body);
      return status;
    };
    if (loopback) {
      const name = hostHeaderName(req.headers.host);
      if (name === undefined || !isLoopback(name)) return send(421, 'text/plain; charset=utf-8', 'this dashboard answers only to a loopback host name (open it as http://127.0.0.1:PORT/)\n');
    }
    const url = new URL(req.url ?? '/', 'http://dashboard.invalid');
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain; charset=utf-8', 'read-only: GET only\n', { allow: 'GET, HEAD' });
    if (token !== undefined && cookie !== undefined && url.searchParams.has('token')) {
      if (!equalBytes(hexBytes(url.searchParams.get('token') ?? ''), token)) return send(401, 'text/plain; charset=utf-8', 'unauthorized: wrong token\n');
      return send(303, 'text/plain; charset=utf-8', 'signed in\n', {
        location: url.pathname,
        'set-cookie': `${DASHBOARD_COOKIE}=${cookie.toString('hex')}; HttpOnly; SameSite=Lax; Path=/; Max-Age=${COOKIE_MAX_AGE_SECONDS}`,
      });
    }
    // Browsers ask for it whatever the page says: nothing, rather than a 404 in their console.
    if (url.pathname === '/favicon.ico') return send(204, 'image/x-icon', '');
    if (url.pathname !== '/' && url.pathname !== '/api/status') return send(404, 'text/plain; charset=utf-8', 'not found (the dashboard is at /)\n');
    if (!allowed(req)) {
      return send(
        401,
        'text/plain; charset=utf-8',
        'unauthorized: open /?token=<token> once in a browser, or send authorization: Bearer <token> ("ferry metrics-token META --out FILE" writes the token)\n',
        { 'www-authenticate': 'Bearer' },
      );
    }
    if (url.pathname === '/') return send(200, 'text/html; charset=utf-8', page, { 'content-security-policy': CSP });
    let body: string;
    try {
      body = JSON.stringify(o.snapshot());
    } catch (err) {
      return send(500, 'application/json', JSON.stringify({ error: err instanceof Error ? err.message : String(err) }));
    }
    return send(200, 'application/json', body);
  };

  const server = createServer((req, res) => {
    const status = handle(req, res);
    o.onRequest?.(req.method ?? '', (req.url ?? '').split('?')[0]!, status);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new Error(`cannot serve the dashboard on ${where}: ${e.message}`)));
    server.listen(o.port, o.host, () => resolve());
  });
  server.on('error', () => undefined);
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${addr.port}`,
    server,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}
