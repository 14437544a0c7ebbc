/**
 * Seeded randomness for fault injection and jitter, so a failing run can be replayed from its seed.
 * Not for anything secret.
 */

import { randomInt } from 'node:crypto';

/** mulberry32: a tiny 32-bit PRNG; the same seed always yields the same sequence of floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A fresh seed in [0, 2^32), to be printed by whoever uses it. */
export function randomSeed(): number {
  return randomInt(0, 2 ** 32);
}
