/**
 * Opens a MetaEngine from a URL. Engines register by scheme and load lazily (a Redis or PostgreSQL driver is
 * imported only when a URL asks for it).
 *
 *   sqlite:///abs/path.db     SQLite file at /abs/path.db
 *   sqlite://relative.db      SQLite file relative to the current directory
 *   redis://[[user]:pass@]host[:port][/db][?prefix=NAME]   Redis (rediss:// TLS; redis+sentinel://, redis+cluster://)
 *   postgres://user[:pass]@host:port/db[?schema=NAME&sslmode=MODE]   PostgreSQL (postgresql:// too)
 */

import path from 'node:path';
import { UsageError } from '../errors.js';
import { maskUrl } from '../util/url.js';
import type { MetaEngine } from './engine.js';

export interface OpenMetaOptions {
  /** Create the database if missing (format only); everything else requires an existing volume. */
  create?: boolean;
}

const SUPPORTED = 'sqlite, postgres, redis';

export async function openMetaEngine(url: string, options: OpenMetaOptions = {}): Promise<MetaEngine> {
  const m = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(url);
  if (m === null) throw new UsageError(`metadata URL ${JSON.stringify(maskUrl(url))} is not a URL (try sqlite:///path/to/volume.db)`);
  const scheme = m[1]!.toLowerCase();
  const rest = m[2]!;
  switch (scheme) {
    case 'sqlite':
    case 'sqlite3': {
      const file = rest.split('?')[0]!;
      if (file === '' || file === '/') throw new UsageError(`metadata URL ${JSON.stringify(maskUrl(url))} names no file`);
      const abs = path.resolve(decodeURIComponent(file));
      const { SqliteEngine } = await import('./sqlite.js');
      try {
        return new SqliteEngine(abs, { create: options.create ?? false });
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === 'SQLITE_CANTOPEN' || (err instanceof TypeError && /does not exist/.test(err.message))) {
          throw new UsageError(
            options.create ? `cannot create ${abs}: does its directory exist and is it writable?` : `no volume at ${maskUrl(url)}: ${abs} does not exist (run "ferry format" first)`,
          );
        }
        if (code === 'SQLITE_NOTADB') throw new UsageError(`${abs} is not a SQLite database`);
        throw err;
      }
    }
    case 'postgres':
    case 'postgresql': {
      const { PostgresEngine } = await import('./postgres.js');
      return PostgresEngine.open(url, { create: options.create ?? false });
    }
    case 'redis':
    case 'rediss':
    case 'redis+sentinel':
    case 'rediss+sentinel':
    case 'redis+cluster':
    case 'rediss+cluster': {
      const { openRedisEngine } = await import('./redis.js');
      return openRedisEngine(url);
    }
    default:
      throw new UsageError(`unknown metadata scheme "${scheme}:" (supported: ${SUPPORTED})`);
  }
}
