/**
 * S3Store: an ObjectStore in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, R2, GCS interop, OSS, ...),
 * through @aws-sdk/client-s3. Loaded only when a URL asks for `s3:` (see registry.ts).
 *
 *   s3://[ACCESS_KEY:SECRET_KEY@]BUCKET[/PREFIX][?endpoint=URL&region=R&path-style=true|false
 *        &direct=true|false&access-key=K&secret-key=S&session-token=T]
 *
 * Key `k` is stored as `PREFIX/k`. Credentials come from the URL, else the SDK's default chain (the
 * environment's AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the AWS profile, instance roles); they never
 * appear in `description` or in error messages.
 *
 * Why the client is configured as it is:
 * - `maxAttempts: 1`: the SDK's retries are off; Ferry's RetryStore retries, with one policy for every store.
 *   This store only classifies failures: 5xx, throttling, timeouts and socket errors are `retryable`.
 * - `requestChecksumCalculation` / `responseChecksumValidation: 'WHEN_REQUIRED'`: with the SDK's defaults
 *   a streamed upload is sent `aws-chunked` with a trailing CRC, which S3-compatible servers that do not
 *   speak that framing store verbatim (1 MiB streamed to s3rver comes back as 1,048,630 bytes). Integrity comes
 *   from Content-MD5 on every PUT and part (checked by every S3 implementation) and from the block codec's
 *   own CRCs, which are verified after every download.
 * - Bodies are sent as `UNSIGNED-PAYLOAD` (SigV4 signs the headers, not a SHA-256 of the body): hashing every
 *   body costs as much CPU as the MD5 that Content-MD5 already takes, and buys nothing here. Integrity against
 *   damage comes from Content-MD5 (and the ETag compared with it, see putChecked) and the block codec's CRCs;
 *   over TLS the channel protects the body; over plain http nothing protects the answers to GETs either, so a
 *   signed request body would not make such a link safe against an active attacker. AWS S3, MinIO and Ceph
 *   accept it on PUT and UploadPart.
 * - With an explicit endpoint, whole-object GETs and single-part PUTs skip the SDK's middleware stack
 *   (s3direct.ts: the SDK's signer over node:http, a third of the client CPU per request); `direct=false`
 *   in the URL (option `direct: false`) sends them through the SDK like every other call.
 * - Our own keep-alive agents with a bounded socket count, so that `close()` can release them.
 * - AWS_CA_BUNDLE is not read (the JavaScript SDK ignores it, unlike the aws CLI): an https endpoint is
 *   checked against Node's CA store; add a private CA with NODE_EXTRA_CA_CERTS.
 */

import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { assert, UsageError } from '../errors.js';
import { S3Direct } from './s3direct.js';
import {
  resolveListLimit,
  validateKey,
  ObjectNotFoundError,
  type CallOptions,
  type GetOptions, type PutCheckedOptions,
  type ListOptions,
  type ListPage,
  type ObjectInfo,
  type ObjectStore,
} from './store.js';

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface S3StoreOptions {
  bucket: string;
  /** '' or whole key segments ending in '/', like 'vol1/'. */
  prefix?: string | undefined;
  /** http(s)://host[:port] of an S3-compatible server; default AWS S3 for the region. */
  endpoint?: string | undefined;
  /** Default: the SDK's (AWS_REGION, the profile), or us-east-1 when an endpoint is given. */
  region?: string | undefined;
  /** Bucket in the path rather than the host name; default true for an IP or localhost endpoint, else false. */
  forcePathStyle?: boolean | undefined;
  /** Default: the SDK's credential chain. */
  credentials?: S3Credentials | undefined;
  /** For logs, secrets masked; default built from the fields above. */
  description?: string | undefined;
  /** Sockets per endpoint, the pool's limit; default SOCKETS_MAX. */
  socketsMax?: number | undefined;
  /** Objects larger than this go up in parts; default MULTIPART_THRESHOLD_BYTES. */
  multipartThresholdBytes?: number | undefined;
  /** Size of a part (the last may be smaller); default PART_BYTES. At least PART_BYTES_MIN. */
  partBytes?: number | undefined;
  /** Parts of one object uploading at once; default PARTS_IN_FLIGHT_MAX. */
  partsInFlightMax?: number | undefined;
  /** Send Content-MD5 with every PUT and part, so the server rejects a body damaged on the way; default true. */
  contentMd5?: boolean | undefined;
  /**
   * With an explicit endpoint, send whole-object GETs and single-part PUTs without the SDK's middleware stack
   * (s3direct.ts); default true. Other calls, and every call to AWS's own endpoints, go through the SDK.
   */
  direct?: boolean | undefined;
}

/** Sockets per agent: bounds concurrent requests to one endpoint; more requests queue in the agent. */
export const SOCKETS_MAX = 64;
/** Idle keep-alive sockets kept per agent. */
const FREE_SOCKETS_MAX = 16;
/** TCP (and TLS) connect. */
const CONNECT_TIMEOUT_MS = 10_000;
/** From sending a request to its response headers, the upload of the body included. */
const REQUEST_TIMEOUT_MS = 120_000;
/** A socket silent this long (e.g. mid-download) is dropped. */
const SOCKET_IDLE_TIMEOUT_MS = 60_000;
export const MULTIPART_THRESHOLD_BYTES = 16 * 1024 * 1024;
export const PART_BYTES = 8 * 1024 * 1024;
/** S3's smallest part (but the last). */
export const PART_BYTES_MIN = 5 * 1024 * 1024;
/** S3's most parts in one upload. */
const PARTS_MAX = 10_000;
export const PARTS_IN_FLIGHT_MAX = 4;
/** Time to abort a failed multipart upload (best effort: a bucket lifecycle rule cleans up what remains). */
const ABORT_UPLOAD_TIMEOUT_MS = 10_000;

/**
 * A failure of an S3 call, with the server's error code (`AccessDenied`, `SlowDown`, ...) or the socket's
 * (`ECONNRESET`, ...) and the HTTP status when there was one. `retryable` tells RetryStore whether to try again.
 */
export class S3StoreError extends Error {
  readonly code: string;
  readonly status: number | undefined;
  readonly retryable: boolean;
  constructor(message: string, code: string, status: number | undefined, retryable: boolean, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'S3StoreError';
    this.code = code;
    this.status = status;
    this.retryable = retryable;
  }
}

export class S3Store implements ObjectStore {
  readonly description: string;
  readonly bucket: string;
  readonly prefix: string;
  private readonly client: S3Client;
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent;
  private readonly multipartThresholdBytes: number;
  private readonly partBytes: number;
  private readonly partsInFlightMax: number;
  private readonly contentMd5: boolean;
  private readonly direct: S3Direct | undefined;
  /** Strings never to show in a message: the secret and session token when we hold them. */
  private readonly secrets: string[];
  private closed = false;

  constructor(options: S3StoreOptions) {
    const prefix = options.prefix ?? '';
    if (prefix !== '') {
      if (!prefix.endsWith('/')) throw new RangeError(`s3 prefix must end with '/', got ${JSON.stringify(prefix)}`);
      validateKey(prefix.substring(0, prefix.length - 1));
    }
    if (options.bucket === '') throw new RangeError('s3 bucket name is empty');
    this.bucket = options.bucket;
    this.prefix = prefix;
    this.multipartThresholdBytes = options.multipartThresholdBytes ?? MULTIPART_THRESHOLD_BYTES;
    this.partBytes = options.partBytes ?? PART_BYTES;
    this.partsInFlightMax = options.partsInFlightMax ?? PARTS_IN_FLIGHT_MAX;
    this.contentMd5 = options.contentMd5 ?? true;
    const socketsMax = options.socketsMax ?? SOCKETS_MAX;
    positiveInteger('socketsMax', socketsMax);
    positiveInteger('partsInFlightMax', this.partsInFlightMax);
    positiveInteger('multipartThresholdBytes', this.multipartThresholdBytes);
    positiveInteger('partBytes', this.partBytes);
    if (this.partBytes < PART_BYTES_MIN) throw new RangeError(`partBytes must be >= ${PART_BYTES_MIN} (S3's smallest part), got ${this.partBytes}`);
    if (this.multipartThresholdBytes < this.partBytes) {
      throw new RangeError(`multipartThresholdBytes must be >= partBytes (${this.partBytes}), got ${this.multipartThresholdBytes}`);
    }

    const endpoint = options.endpoint;
    let forcePathStyle = options.forcePathStyle;
    let parsed: URL | undefined;
    if (endpoint !== undefined) {
      try {
        parsed = new URL(endpoint);
      } catch {
        throw new UsageError(`s3 endpoint ${JSON.stringify(endpoint)} is not a URL; try http://127.0.0.1:9000`);
      }
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
        throw new UsageError(`s3 endpoint ${JSON.stringify(endpoint)} must start with http:// or https://`);
      }
      // A virtual-hosted bucket name cannot prefix an IP address or localhost.
      forcePathStyle ??= /^(\d+\.\d+\.\d+\.\d+|\[.*\]|localhost)$/i.test(parsed.hostname);
    }
    const credentials = options.credentials;
    this.secrets = [credentials?.secretAccessKey, credentials?.sessionToken].filter((s): s is string => s !== undefined && s.length >= 4);
    this.description = options.description ?? describeS3(options.bucket, prefix, endpoint, options.region);

    const region = options.region ?? (endpoint === undefined ? undefined : 'us-east-1');
    this.httpAgent = new http.Agent({ keepAlive: true, maxSockets: socketsMax, maxFreeSockets: FREE_SOCKETS_MAX });
    this.httpsAgent = new https.Agent({ keepAlive: true, maxSockets: socketsMax, maxFreeSockets: FREE_SOCKETS_MAX });
    this.client = new S3Client({
      ...(region === undefined ? {} : { region }),
      ...(endpoint === undefined ? {} : { endpoint }),
      ...(forcePathStyle === undefined ? {} : { forcePathStyle }),
      ...(credentials === undefined ? {} : { credentials }),
      maxAttempts: 1,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        httpAgent: this.httpAgent,
        httpsAgent: this.httpsAgent,
        connectionTimeout: CONNECT_TIMEOUT_MS,
        requestTimeout: REQUEST_TIMEOUT_MS,
        throwOnRequestTimeout: true,
        socketTimeout: SOCKET_IDLE_TIMEOUT_MS,
      },
    });
    // Before signing (finalizeRequest): the signer takes a body hash already in the headers as given.
    this.client.middlewareStack.add(
      (next) => (args) => {
        const request = args.request as { headers?: Record<string, string>; body?: unknown };
        if (request.headers !== undefined && Buffer.isBuffer(request.body) && request.body.length > 0) request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
        return next(args);
      },
      { step: 'build', name: 'ferryUnsignedPayload' },
    );
    this.direct =
      options.direct !== false && parsed !== undefined && region !== undefined && (parsed.pathname === '/' || parsed.pathname === '')
        ? new S3Direct({
            endpoint: parsed,
            bucket: options.bucket,
            forcePathStyle: forcePathStyle ?? false,
            region,
            credentials: this.client.config.credentials,
            httpAgent: this.httpAgent,
            httpsAgent: this.httpsAgent,
            requestTimeoutMs: REQUEST_TIMEOUT_MS,
            socketIdleTimeoutMs: SOCKET_IDLE_TIMEOUT_MS,
          })
        : undefined;
  }

  async get(key: string, options?: GetOptions): Promise<Buffer> {
    this.enter(key, options);
    const signal = options?.signal;
    const offset = options?.offset ?? 0;
    const length = options?.length;
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`get offset must be an integer >= 0, got ${offset}`);
    if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) {
      throw new RangeError(`get length must be an integer >= 0, got ${length}`);
    }
    if (length === 0) {
      await this.head(key, options); // No byte range is empty in HTTP; still, a missing key must throw.
      return Buffer.alloc(0);
    }
    // Range is inclusive; a range past the end is cut to the object by the server.
    const range = offset === 0 && length === undefined ? undefined : `bytes=${offset}-${length === undefined ? '' : offset + length - 1}`;
    const direct = this.direct;
    if (range === undefined && direct !== undefined) {
      return this.call('get', key, signal, async () => {
        const res = await direct.get(this.prefix + key, signal);
        const length = res.headers['content-length'];
        const data = await readBody(key, res.body, length === undefined ? undefined : Number(length), signal, options?.into);
        if (options?.digest !== undefined) options.digest.md5 = etagMd5(header(res.headers, 'etag'), header(res.headers, 'x-amz-server-side-encryption'), header(res.headers, 'x-amz-server-side-encryption-customer-algorithm'));
        return data;
      });
    }
    const answer = await this.call('get', key, signal, async () => {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.prefix + key, ...(range === undefined ? {} : { Range: range }) }),
        withSignal(signal),
      );
      const data = await readBody(key, out.Body, out.ContentLength, signal, range === undefined ? options?.into : undefined);
      if (range === undefined && options?.digest !== undefined) options.digest.md5 = etagMd5(out.ETag, out.ServerSideEncryption, out.SSECustomerAlgorithm);
      return { contentRange: out.ContentRange, data };
    }).catch((err: unknown) => {
      // 416: the range starts at or after the end of the object, so no bytes exist there.
      if (err instanceof S3StoreError && (err.status === 416 || err.code === 'InvalidRange')) return undefined;
      throw err;
    });
    if (answer === undefined) return Buffer.alloc(0);
    const { contentRange, data } = answer;
    if (range === undefined) return data;
    // Trust Content-Range, not our request: a server may send more than asked (s3rver answers bytes=0-0 with
    // the whole object) or ignore Range altogether (200, no Content-Range, the whole object).
    const sentFrom = contentRange === undefined ? 0 : contentRangeStart(contentRange);
    if (sentFrom === undefined || sentFrom > offset) {
      throw new S3StoreError(
        `s3 get ${JSON.stringify(key)} in ${this.description}: asked for ${range}, got Content-Range ${JSON.stringify(contentRange)}`,
        'BadContentRange',
        undefined,
        false,
      );
    }
    const from = Math.min(offset - sentFrom, data.length);
    const to = length === undefined ? data.length : Math.min(data.length, from + length);
    return from === 0 && to === data.length ? data : data.subarray(from, to);
  }

  async put(key: string, data: Buffer, options?: CallOptions): Promise<void> {
    await this.putOnce(key, data, options, false);
  }

  /**
   * CheckedPutter: a single-part PUT answers with an ETag that S3 defines as the MD5 of the bytes it received
   * for plaintext and SSE-S3 objects; compared with the MD5 sent as Content-MD5, it proves the server stored
   * exactly these bytes even on servers that ignore Content-MD5 (s3rver does). Not a digest, or not comparable:
   * see CheckedPutter.
   */
  async putChecked(key: string, data: Buffer, options?: PutCheckedOptions): Promise<boolean | undefined> {
    if (options?.md5 === undefined) return this.putOnce(key, data, options, true);
    try {
      return await this.putOnce(key, data, options, true);
    } catch (err) {
      // The stated digest was not the bytes' (a source whose ETag only looks like an MD5): hash them instead.
      if (err instanceof S3StoreError && (err.code === 'BadDigest' || err.code === 'InvalidDigest')) return this.putOnce(key, data, { ...options, md5: undefined }, true);
      throw err;
    }
  }

  private async putOnce(key: string, data: Buffer, options: PutCheckedOptions | undefined, check: boolean): Promise<boolean | undefined> {
    this.enter(key, options);
    const signal = options?.signal;
    if (data.length > this.multipartThresholdBytes) {
      // A multipart ETag is a digest of the parts' digests; each part was sent with its Content-MD5.
      await this.putMultipart(key, data, signal);
      return undefined;
    }
    // Sent from the caller's buffer, no copy (as FileStore): a caller must not change it while the put runs.
    // If one does, the Content-MD5 taken first no longer matches and the server refuses the body.
    const md5 = options?.md5 ?? (this.contentMd5 || check ? createHash('md5').update(data).digest() : undefined);
    const direct = this.direct;
    if (direct !== undefined) {
      const res = await this.call('put', key, signal, async () => {
        const answer = await direct.put(this.prefix + key, data, this.contentMd5 && md5 !== undefined ? md5.toString('base64') : undefined, signal);
        answer.body.resume();
        return answer;
      });
      if (!check || md5 === undefined) return undefined;
      const h = res.headers;
      return etagMatches(header(h, 'etag'), header(h, 'x-amz-server-side-encryption'), header(h, 'x-amz-server-side-encryption-customer-algorithm'), md5);
    }
    const out = await this.call('put', key, signal, () =>
      this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.prefix + key,
          Body: data,
          ContentLength: data.length,
          ...(this.contentMd5 && md5 !== undefined ? { ContentMD5: md5.toString('base64') } : {}),
        }),
        withSignal(signal),
      ),
    );
    if (!check || md5 === undefined) return undefined;
    return etagMatches(out.ETag, out.ServerSideEncryption, out.SSECustomerAlgorithm, md5);
  }

  async head(key: string, options?: CallOptions): Promise<ObjectInfo> {
    this.enter(key, options);
    const signal = options?.signal;
    const out = await this.call('head', key, signal, () =>
      this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }), withSignal(signal)),
    );
    return { key, size: out.ContentLength ?? 0, mtime: out.LastModified?.getTime() ?? 0 };
  }

  async delete(key: string, options?: CallOptions): Promise<void> {
    this.enter(key, options);
    const signal = options?.signal;
    try {
      // S3 answers 204 for a missing key too.
      await this.call('delete', key, signal, () =>
        this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }), withSignal(signal)),
      );
    } catch (err) {
      if (err instanceof ObjectNotFoundError) return; // Some S3-compatible servers answer 404 instead.
      throw err;
    }
  }

  async list(prefix: string, options?: ListOptions): Promise<ListPage> {
    this.enter(undefined, options);
    const signal = options?.signal;
    const limit = resolveListLimit(options?.limit);
    const startAfter = options?.startAfter;
    // StartAfter rather than continuation tokens: the caller pages by key, and a key is valid on any server.
    // encoding-type=url keeps keys with control characters legal in the XML answer.
    const out = await this.call('list', prefix, signal, () =>
      this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: this.prefix + prefix,
          MaxKeys: limit,
          EncodingType: 'url',
          ...(startAfter === undefined ? {} : { StartAfter: this.prefix + startAfter }),
        }),
        withSignal(signal),
      ),
    );
    const encoded = out.EncodingType === 'url';
    const objects: ObjectInfo[] = [];
    for (const o of out.Contents ?? []) {
      if (o.Key === undefined) continue;
      const full = encoded ? decodeListKey(o.Key) : o.Key;
      assert(full.startsWith(this.prefix + prefix), `s3 list of ${JSON.stringify(this.prefix + prefix)} returned ${JSON.stringify(full)}`);
      objects.push({ key: full.substring(this.prefix.length), size: o.Size ?? 0, mtime: o.LastModified?.getTime() ?? 0 });
    }
    assert(objects.length <= limit, `s3 list returned ${objects.length} keys for a limit of ${limit}`);
    const more = out.IsTruncated === true;
    // A truncated page with no key gives the caller nothing to continue after; S3 never sends one.
    assert(!more || objects.length > 0, 's3 list returned an empty page marked truncated');
    return { objects, more };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.destroy();
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }

  /**
   * One upload in parts of `partBytes`, at most `partsInFlightMax` at a time. The object appears whole when
   * the upload completes, never before. On any failure the remaining parts are cancelled and the upload is
   * aborted, so its parts stop costing storage.
   */
  private async putMultipart(key: string, data: Buffer, signal: AbortSignal | undefined): Promise<void> {
    const Key = this.prefix + key;
    const partBytes = Math.max(this.partBytes, Math.ceil(data.length / PARTS_MAX));
    const partsCount = Math.ceil(data.length / partBytes);
    const created = await this.call('put', key, signal, () =>
      this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key }), withSignal(signal)),
    );
    const UploadId = created.UploadId;
    if (UploadId === undefined) throw new S3StoreError(`s3 put ${JSON.stringify(key)}: the server started a multipart upload without an id`, 'NoUploadId', undefined, true);
    const cancel = new AbortController();
    const partSignal = signal === undefined ? cancel.signal : AbortSignal.any([signal, cancel.signal]);
    const parts = new Array<CompletedPart | undefined>(partsCount).fill(undefined);
    try {
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < partsCount && !partSignal.aborted) {
          const i = next++;
          const chunk = data.subarray(i * partBytes, Math.min(data.length, (i + 1) * partBytes));
          const PartNumber = i + 1;
          const md5 = this.md5Of(chunk);
          const out = await this.call('put', key, signal, () =>
            this.client.send(
              new UploadPartCommand({ Bucket: this.bucket, Key, UploadId, PartNumber, Body: chunk, ContentLength: chunk.length, ...md5 }),
              withSignal(partSignal),
            ),
          );
          if (out.ETag === undefined) throw new S3StoreError(`s3 put ${JSON.stringify(key)}: part ${PartNumber} has no ETag`, 'NoETag', undefined, true);
          parts[i] = { PartNumber, ETag: out.ETag };
        }
      };
      const workers = Array.from({ length: Math.min(this.partsInFlightMax, partsCount) }, worker);
      // Stop the other workers at the first failure rather than upload parts that will be thrown away.
      await Promise.all(workers.map((w) => w.catch((err: unknown) => {
        cancel.abort();
        throw err;
      })));
      signal?.throwIfAborted();
      const completed = parts.filter((p): p is CompletedPart => p !== undefined);
      assert(completed.length === partsCount, `s3 put ${key}: ${partsCount - completed.length} of ${partsCount} parts missing`);
      await this.call('put', key, signal, () =>
        this.client.send(
          new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId, MultipartUpload: { Parts: completed } }),
          withSignal(signal),
        ),
      );
    } catch (err) {
      cancel.abort();
      // Not under the caller's signal, which may be what failed the put.
      await this.client
        .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId }), { abortSignal: AbortSignal.timeout(ABORT_UPLOAD_TIMEOUT_MS) })
        .catch(() => undefined);
      throw err;
    }
  }

  /** Runs one SDK exchange; its failure becomes the store's error (mapError). */
  private async call<T>(op: string, key: string, signal: AbortSignal | undefined, exchange: () => Promise<T>): Promise<T> {
    try {
      return await exchange();
    } catch (err) {
      throw this.mapError(err, op, key, signal);
    }
  }

  private md5Of(data: Buffer): { ContentMD5?: string } {
    return this.contentMd5 ? { ContentMD5: createHash('md5').update(data).digest('base64') } : {};
  }

  private enter(key: string | undefined, options: CallOptions | undefined): void {
    if (this.closed) throw new Error(`object store ${this.description} is closed`);
    options?.signal?.throwIfAborted();
    if (key !== undefined) validateKey(key);
  }

  /** The store's error for an SDK or socket failure: see classifyS3Error. Secrets are scrubbed from messages. */
  private mapError(err: unknown, op: string, key: string, signal: AbortSignal | undefined): unknown {
    if (signal?.aborted) return signal.reason;
    if (err instanceof S3StoreError) return err;
    const { code, status, retryable, notFound } = classifyS3Error(err);
    if (notFound) return new ObjectNotFoundError(key);
    const detail = err instanceof Error && err.message !== '' && err.message !== code ? `: ${err.message}` : '';
    let hint = '';
    if (status === 403) hint = '; check the access key and secret (URL, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the AWS profile) and the bucket policy';
    else if (code === 'NoSuchBucket') hint = `; create bucket ${this.bucket} first`;
    else if (code === 'CredentialsProviderError') hint = '; give credentials in the URL, the environment or the AWS profile';
    const what = `s3 ${op} ${JSON.stringify(key)} in ${this.description} failed: ${code}${status === undefined ? '' : ` (HTTP ${status})`}${detail}${hint}`;
    return new S3StoreError(this.scrub(what), code, status, retryable, { cause: err });
  }

  private scrub(text: string): string {
    let out = text;
    for (const secret of this.secrets) out = out.split(secret).join('****');
    return out;
  }
}

/**
 * Whether a single-part PUT's ETag is the MD5 of the bytes sent: undefined when it cannot be (SSE-KMS and SSE-C
 * ETags are not MD5s of the data, as AWS documents; neither is anything but 32 hex digits).
 */
function etagMatches(etag: string | undefined, sse: string | undefined, sseCustomer: string | undefined, md5: Buffer): boolean | undefined {
  return etagMd5(etag, sse, sseCustomer)?.equals(md5);
}

/** The MD5 an ETag states, when it is one: not for KMS or customer-key encryption, nor a multipart digest. */
function etagMd5(etag: string | undefined, sse: string | undefined, sseCustomer: string | undefined): Buffer | undefined {
  if ((sse !== undefined && sse !== 'AES256') || sseCustomer !== undefined) return undefined;
  const hex = /^"?([0-9a-f]{32})"?$/i.exec(etag ?? '')?.[1];
  return hex === undefined ? undefined : Buffer.from(hex, 'hex');
}

function header(headers: http.IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** HTTP statuses worth another try: timeouts, throttling, server errors. */
const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);
/** S3 error codes worth another try, whatever their status (RequestTimeout comes with a 400). */
const RETRYABLE_CODES = new Set([
  'RequestTimeout', 'RequestTimeoutException', 'SlowDown', 'Throttling', 'ThrottlingException', 'TooManyRequestsException',
  'RequestLimitExceeded', 'InternalError', 'ServiceUnavailable', 'RequestTimeTooSkewed', 'TimeoutError',
]);
/** Socket and DNS failures worth another try. */
const RETRYABLE_SOCKET_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'EAI_AGAIN',
  'ENOTCONN', 'UND_ERR_SOCKET', 'ERR_STREAM_PREMATURE_CLOSE', 'EPROTO',
]);

export interface S3ErrorClass {
  /** The S3 error code, the socket error code, or the error's name. */
  code: string;
  status: number | undefined;
  retryable: boolean;
  /** The key (not the bucket) is missing. */
  notFound: boolean;
}

/**
 * Sorts an SDK or socket error: NoSuchKey / 404 → not found; 5xx, throttling, request timeouts and socket
 * resets → retryable; anything else (403 access denied, 400 bad request, a missing bucket) → final.
 */
export function classifyS3Error(err: unknown): S3ErrorClass {
  const status = statusOf(err);
  const e = (typeof err === 'object' && err !== null ? err : {}) as { name?: unknown; code?: unknown; Code?: unknown; $retryable?: unknown };
  const socketCode = typeof e.code === 'string' ? e.code : undefined;
  const name = typeof e.Code === 'string' ? e.Code : typeof e.name === 'string' ? e.name : 'Error';
  const code = name === 'Error' && socketCode !== undefined ? socketCode : name;
  if (code === 'NoSuchBucket') return { code, status, retryable: false, notFound: false };
  if (code === 'NoSuchKey' || code === 'NotFound' || (status === 404 && code !== 'NoSuchUpload')) {
    return { code, status, retryable: false, notFound: true };
  }
  const retryable =
    (status !== undefined && RETRYABLE_STATUS.has(status)) ||
    RETRYABLE_CODES.has(code) ||
    (socketCode !== undefined && RETRYABLE_SOCKET_CODES.has(socketCode)) ||
    (typeof e.$retryable === 'object' && e.$retryable !== null) ||
    /socket hang up/i.test(err instanceof Error ? err.message : '');
  return { code, status, retryable, notFound: false };
}

/**
 * A key from a listing sent with encoding-type=url: S3 encodes it like a form field (space as '+', '+' as
 * %2B), so '+' is decoded before the %-escapes.
 */
export function decodeListKey(encoded: string): string {
  return decodeURIComponent(encoded.replace(/\+/g, ' '));
}

/** The parts of an `s3://` URL; see the module comment. Throws UsageError on a malformed URL. */
export function parseS3Url(url: string): S3StoreOptions {
  const match = /^s3:\/\/([^?#]*)(?:\?([^#]*))?$/i.exec(url);
  if (match === null) throw new UsageError(`storage URL must look like s3://bucket[/prefix][?endpoint=URL&region=R]; got ${describeForError(url)}`);
  let rest = match[1]!;
  const query = match[2] ?? '';
  let credentials: S3Credentials | undefined;
  // userinfo ends at the last '@' before the query: a secret key may hold '/' and '+' unescaped.
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    const info = rest.substring(0, at);
    rest = rest.substring(at + 1);
    const colon = info.indexOf(':');
    if (colon < 0) throw new UsageError(`storage URL ${describeForError(url)}: credentials must look like ACCESS_KEY:SECRET_KEY@bucket`);
    credentials = { accessKeyId: decode(info.substring(0, colon), url), secretAccessKey: decode(info.substring(colon + 1), url) };
  }
  const slash = rest.indexOf('/');
  const bucket = decode(slash < 0 ? rest : rest.substring(0, slash), url);
  let prefix = slash < 0 ? '' : decode(rest.substring(slash + 1), url);
  if (bucket === '') throw new UsageError(`storage URL ${describeForError(url)} names no bucket; try s3://bucket/prefix`);
  if (prefix !== '' && !prefix.endsWith('/')) prefix += '/';
  if (prefix !== '') {
    try {
      validateKey(prefix.substring(0, prefix.length - 1));
    } catch (err) {
      throw new UsageError(`storage URL ${describeForError(url)}: bad prefix: ${(err as Error).message}`);
    }
  }

  const options: S3StoreOptions = { bucket, prefix };
  let accessKey: string | undefined;
  let secretKey: string | undefined;
  let sessionToken: string | undefined;
  for (const param of query === '' ? [] : query.split('&')) {
    const eq = param.indexOf('=');
    const name = decode(eq < 0 ? param : param.substring(0, eq), url);
    const value = eq < 0 ? '' : decode(param.substring(eq + 1), url);
    switch (name) {
      case 'endpoint':
        options.endpoint = value;
        break;
      case 'region':
        options.region = value;
        break;
      case 'path-style':
        if (value !== 'true' && value !== 'false') throw new UsageError(`storage URL ${describeForError(url)}: path-style must be true or false`);
        options.forcePathStyle = value === 'true';
        break;
      case 'direct':
        // The lean GET/PUT path for explicit endpoints (s3direct.ts); false sends every call through the SDK.
        if (value !== 'true' && value !== 'false') throw new UsageError(`storage URL ${describeForError(url)}: direct must be true or false`);
        options.direct = value === 'true';
        break;
      case 'access-key':
        accessKey = value;
        break;
      case 'secret-key':
        secretKey = value;
        break;
      case 'session-token':
        sessionToken = value;
        break;
      default:
        throw new UsageError(
          `storage URL ${describeForError(url)}: unknown parameter ${JSON.stringify(name)} (known: endpoint, region, path-style, direct, access-key, secret-key, session-token)`,
        );
    }
  }
  if (accessKey !== undefined || secretKey !== undefined) {
    if (credentials !== undefined) throw new UsageError(`storage URL ${describeForError(url)} gives credentials twice (before '@' and as parameters)`);
    if (accessKey === undefined || secretKey === undefined) throw new UsageError(`storage URL ${describeForError(url)}: access-key and secret-key go together`);
    credentials = { accessKeyId: accessKey, secretAccessKey: secretKey };
  }
  if (sessionToken !== undefined) {
    if (credentials === undefined) throw new UsageError(`storage URL ${describeForError(url)}: session-token needs an access key and secret`);
    credentials.sessionToken = sessionToken;
  }
  if (credentials !== undefined) options.credentials = credentials;
  return options;
}

function decode(s: string, url: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new UsageError(`storage URL ${describeForError(url)} has a malformed %-escape`);
  }
}

/** Only the scheme and bucket of a URL we failed to parse: we cannot tell where its secrets are. */
function describeForError(url: string): string {
  const host = /^s3:\/\/(?:[^?#]*@)?([^/?#]*)/i.exec(url)?.[1];
  return JSON.stringify(host === undefined ? 's3://…' : `s3://${host}/…`);
}

function describeS3(bucket: string, prefix: string, endpoint: string | undefined, region: string | undefined): string {
  const params = [endpoint === undefined ? '' : `endpoint=${endpoint}`, region === undefined ? '' : `region=${region}`].filter((p) => p !== '');
  return `s3://${bucket}/${prefix}${params.length === 0 ? '' : `?${params.join('&')}`}`;
}

/** The SDK's send options: `abortSignal` may not be present as undefined. */
function withSignal(signal: AbortSignal | undefined): { abortSignal?: AbortSignal } {
  return signal === undefined ? {} : { abortSignal: signal };
}

function positiveInteger(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be an integer >= 1, got ${value}`);
}

function statusOf(err: unknown): number | undefined {
  const status = (err as { $metadata?: { httpStatusCode?: unknown } } | null)?.$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

/** START of `bytes START-END/TOTAL`, or undefined when the header says something else. */
function contentRangeStart(header: string): number | undefined {
  const match = /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(header.trim());
  if (match === null) return undefined;
  const start = Number(match[1]);
  return Number.isSafeInteger(start) ? start : undefined;
}

/**
 * The whole body, in one buffer of the announced length: chunks are kept and copied once. A body shorter or
 * longer than Content-Length is a broken transfer (retryable), never data.
 */
async function readBody(key: string, body: unknown, contentLength: number | undefined, signal: AbortSignal | undefined, into?: Buffer): Promise<Buffer> {
  if (body === undefined || body === null) {
    if (contentLength === undefined || contentLength === 0) return Buffer.alloc(0);
    throw new S3StoreError(`s3 get ${JSON.stringify(key)}: no body for ${contentLength} bytes`, 'NoBody', undefined, true);
  }
  const chunks: Buffer[] = [];
  let received = 0;
  if (body instanceof Readable) {
    const onAbort = (): void => {
      body.destroy(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        chunks.push(chunk);
        received += chunk.length;
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  } else {
    const bytes = await (body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray();
    chunks.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    received = bytes.byteLength;
  }
  if (contentLength !== undefined && received !== contentLength) {
    throw new S3StoreError(`s3 get ${JSON.stringify(key)}: body of ${received} bytes, Content-Length ${contentLength}`, 'ShortBody', undefined, true);
  }
  // The caller's buffer when the body fits (GetOptions.into); else unpooled: a small object must not pin a
  // shared 8 KiB slab for as long as the caller keeps it.
  const out = into !== undefined && into.length >= received ? into.subarray(0, received) : Buffer.allocUnsafeSlow(received);
  let at = 0;
  for (const chunk of chunks) {
    chunk.copy(out, at);
    at += chunk.length;
  }
  return out;
}
