/**
 * A bucket (ObjectStore) as an encoded tier (tier.ts): it answers the stored object's bytes and leaves every
 * check to the reader.
 *
 *   get whole                 GET key                                        -> {offset: 0, data}
 *   get [from, to), head      GET the covering stripes, and at the same time GET [0, header): one round trip,
 *                             two requests (chunk/codec.ts); the header says a whole block (version 1 or 4:
 *                             not striped, so the stripes were fetched from the wrong place) -> GET key whole
 *   get [from, to), no head   GET the covering stripes (the reader holds the verified stripe table)
 *   missing object            undefined (ObjectNotFoundError); any other failure of the store rejects
 *
 * A store's own retries (object/retry.ts) and timeouts apply underneath; this file adds none.
 */

import { blockHeaderBytes, peekBlockWhole, stripeSpan } from '../chunk/codec.js';
import { ObjectNotFoundError, type ObjectStore } from '../object/store.js';
import type { BlockRange, EncodedTier, ObjectPart } from './tier.js';

export class BucketTier implements EncodedTier {
  readonly form = 'encoded';
  readonly name: string;
  readonly store: ObjectStore;

  /** `name`: the bucket's region (reports and errors name it). The tier does not close the store. */
  constructor(name: string, store: ObjectStore) {
    this.name = name;
    this.store = store;
  }

  async get(key: string, plainBytes: number, range: BlockRange | undefined, signal: AbortSignal | undefined): Promise<ObjectPart | undefined> {
    if (range === undefined) return this.whole(key, signal);
    const span = stripeSpan(plainBytes, range.from, range.to);
    const data = this.store.get(key, { offset: span.offset, length: span.length, signal });
    if (!range.head) {
      const bytes = await orMissing(data);
      return bytes === undefined ? undefined : { offset: span.offset, data: bytes };
    }
    const [head, got] = await Promise.allSettled([this.store.get(key, { offset: 0, length: blockHeaderBytes(plainBytes), signal }), data]);
    if (head.status === 'rejected') {
      if (head.reason instanceof ObjectNotFoundError) return undefined;
      throw head.reason;
    }
    if (peekBlockWhole(head.value)) return this.whole(key, signal);
    if (got.status === 'rejected') {
      if (got.reason instanceof ObjectNotFoundError) return undefined;
      throw got.reason;
    }
    return { offset: span.offset, data: got.value, head: head.value };
  }

  private async whole(key: string, signal: AbortSignal | undefined): Promise<ObjectPart | undefined> {
    const data = await orMissing(this.store.get(key, { signal }));
    return data === undefined ? undefined : { offset: 0, data };
  }
}

/** A GET's bytes, or undefined for a missing object. */
async function orMissing(get: Promise<Buffer>): Promise<Buffer | undefined> {
  try {
    return await get;
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return undefined;
    throw err;
  }
}
