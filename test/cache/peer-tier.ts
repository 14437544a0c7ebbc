/**
 * A stand-in for the region's cache group (DESIGN §8) in one small file: an encoded tier (src/cache/tier.ts)
 * over an in-memory map of block objects, with switches for what a real owner node can do to a reader:
 *
 *   serving = false    it holds nothing (a miss)          down = true     every get rejects (owner unreachable)
 *   corrupt = true     every answer has one byte flipped  delayMs = N     answers after N ms (for concurrency)
 *
 * It answers exactly as the contract's table says (whole object, or header + stripes) and verifies nothing:
 * the reader must.
 */

import { blockHeaderBytes, encodeBlock, peekBlockWhole, stripeSpan } from '../../src/chunk/codec.js';
import type { BlockRange, EncodedTier, ObjectPart } from '../../src/cache/tier.js';

export class PeerTier implements EncodedTier {
  readonly form = 'encoded';
  readonly name: string;
  readonly objects = new Map<string, Buffer>();
  serving = true;
  down = false;
  corrupt = false;
  delayMs = 0;
  /** Every get, and the keys asked. */
  gets = 0;
  asked: string[] = [];

  constructor(name = 'peer') {
    this.name = name;
  }

  /** The owner holds block `key` (stored as a writer would: codec version 3, or `object` as given). */
  hold(key: string, plain: Buffer, object: Buffer = encodeBlock(plain, 'none', key)): void {
    this.objects.set(key, object);
  }

  async get(key: string, plainBytes: number, range: BlockRange | undefined, signal: AbortSignal | undefined): Promise<ObjectPart | undefined> {
    this.gets++;
    this.asked.push(key);
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    signal?.throwIfAborted();
    if (this.down) throw new Error(`cache group: owner of ${key} unreachable`);
    const object = this.objects.get(key);
    if (!this.serving || object === undefined) return undefined;
    if (range === undefined || peekBlockWhole(object)) return { offset: 0, data: this.spoil(object) };
    const span = stripeSpan(plainBytes, range.from, range.to);
    return {
      offset: span.offset,
      data: this.spoil(object.subarray(span.offset, span.offset + span.length)),
      head: range.head ? object.subarray(0, blockHeaderBytes(plainBytes)) : undefined,
    };
  }

  /** The bytes to answer: as held, or a copy with its last byte flipped. */
  private spoil(bytes: Buffer): Buffer {
    if (!this.corrupt) return bytes;
    const bad = Buffer.from(bytes);
    bad[bad.length - 1]! ^= 0x01;
    return bad;
  }
}
