/**
 * Opens an ObjectStore from a URL. Backends register by scheme and load lazily, so a heavy SDK is imported
 * only when a URL asks for it.
 *
 *   file:///abs/dir       FileStore at /abs/dir
 *   file://rel/dir        FileStore at rel/dir, relative to the current directory
 *   mem://NAME            MemStore shared by every open of NAME in this process
 *   mem://                a fresh private MemStore
 *   s3://bucket[/prefix]?endpoint=URL&region=R&path-style=true
 *                         S3Store (see s3.ts for credentials and every parameter)
 */

import path from 'node:path';
import { UsageError } from '../errors.js';
import { maskUrl } from '../util/url.js';
import type { ObjectStore } from './store.js';

export interface OpenStoreOptions {
  /** file: fsync every put before it resolves; default false. */
  fsync?: boolean | undefined;
}

const SUPPORTED = 'file, mem, s3';

export async function openObjectStore(url: string, options: OpenStoreOptions = {}): Promise<ObjectStore> {
  const scheme = schemeOf(url);
  const rest = url.substring(scheme.length + 1);
  switch (scheme) {
    case 'file': {
      const { FileStore } = await import('./file.js');
      return new FileStore(filePath(url, rest), { fsync: options.fsync });
    }
    case 'mem': {
      if (!rest.startsWith('//')) throw new UsageError(`storage URL ${JSON.stringify(maskUrl(url))} must look like mem://NAME or mem://`);
      const { MemStore } = await import('./mem.js');
      return new MemStore(rest.substring(2));
    }
    case 's3': {
      // Imported here, not at the top: the S3 SDK loads only for s3: URLs.
      // The AWS SDK warns at load, on several lines of stderr, that it wants Node >= 22; Ferry supports 20.
      process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
      const { S3Store, parseS3Url } = await import('./s3.js');
      return new S3Store({ ...parseS3Url(url), description: describeStoreUrl(url) });
    }
    // Other remote schemes go here, each importing its module (and SDK) only when asked for.
    default:
      throw new UsageError(`unknown storage scheme "${scheme}:" (supported: ${SUPPORTED})`);
  }
}

/**
 * The directory a file: storage URL names, resolved as openObjectStore resolves it; undefined for any other
 * URL. A FileStore lists a missing directory as empty and creates it on its first put, so a caller that must
 * tell a moved or deleted bucket from an empty one checks the directory itself.
 */
export function fileStoreDir(url: string): string | undefined {
  try {
    return schemeOf(url) === 'file' ? filePath(url, url.substring('file:'.length)) : undefined;
  } catch {
    return undefined;
  }
}

/** The URL for logs and `ferry info`, secrets masked (see util/url.ts). */
export function describeStoreUrl(url: string): string {
  return maskUrl(url);
}

function schemeOf(url: string): string {
  const match = /^([a-z][a-z0-9+.-]*):/i.exec(url);
  if (match === null) throw new UsageError(`storage URL ${JSON.stringify(maskUrl(url))} has no scheme; try file:///path/to/dir or mem://name`);
  return match[1]!.toLowerCase();
}

function filePath(url: string, rest: string): string {
  if (!rest.startsWith('//') || rest.length === 2) {
    throw new UsageError(`storage URL ${JSON.stringify(maskUrl(url))} must look like file:///absolute/dir or file://relative/dir`);
  }
  let p: string;
  try {
    p = decodeURIComponent(rest.substring(2));
  } catch {
    throw new UsageError(`storage URL ${JSON.stringify(maskUrl(url))} has a malformed %-escape`);
  }
  return path.resolve(p);
}
