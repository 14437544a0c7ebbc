/**
 * The one way a URL (metadata engine, bucket, peer) reaches a message, a log or `ferry info`: with every
 * secret masked, whatever the URL looks like.
 *
 *   scheme://user:PASSWORD@host/path?name=SECRET&...   ->   scheme://user:****@host/path?name=****&...
 *
 * Textual, never through the URL parser: the URLs that most need masking are the ones a parser rejects (a
 * password holding '#', '/', '?' or '@', a mistyped port, a cloud secret key with an unescaped '/'), and a
 * URL that cannot be parsed must be masked all the same. The rules err on the side of masking:
 *   - query parameters whose name looks like a credential (secret, key, token, password, auth, signature,
 *     credential) have their value masked up to the next '&' (a '#' may be part of it: no URL of ours has
 *     a fragment; first, so that an '@' in a secret key
 *     is not taken for the end of a userinfo);
 *   - userinfo runs to the LAST '@' of the URL (a password may hold '@', '/', '?', '#'); after its first ':'
 *     everything is masked; with no ':' it is a user name, kept — except in Redis URLs, where a bare
 *     userinfo is the password (redis://PASSWORD@host), and wherever the "user name" holds a raw '@', '/',
 *     '?' or '#' (no user name does: the whole userinfo is taken for a secret);
 *   - a string without "scheme://" is treated the same (a mistyped "user:pass@host/db" is masked too).
 */

/** Query parameter names whose values are credentials: secret-key, access_key, token, sentinel-password, ... */
const SECRET_PARAM = /secret|key|token|passw|credential|signature|auth/i;
export const MASK = '****';

export function maskUrl(url: string): string {
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)?.[0] ?? '';
  // Secret parameters first: a secret key may hold an '@' that must not be taken for the end of a userinfo.
  let rest = url.substring(scheme.length).replace(/([?&;])([^=&#;]*)=([^&;]*)/g, (param, sep: string, name: string) => (SECRET_PARAM.test(name) ? `${sep}${name}=${MASK}` : param));
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    const info = rest.substring(0, at);
    const colon = info.indexOf(':');
    const user = colon >= 0 ? info.substring(0, colon) : info;
    // A user name holding a raw '@', '/', '?' or '#' is no user name: the userinfo is a mistyped secret.
    if (/[@/?#]/.test(user)) rest = `${MASK}${rest.substring(at)}`;
    else if (colon >= 0) rest = `${user}:${MASK}${rest.substring(at)}`;
    else if (/^rediss?[+:]/i.test(scheme)) rest = `${MASK}${rest.substring(at)}`;
  }
  return scheme + rest;
}
