/**
 * Placement in a cache group: which member owns a block key, by weighted rendezvous hashing (highest random
 * weight). Every member scores every key,
 *
 *   score(key, m) = weight(m) / -ln(u(key, m)),   u uniform in (0, 1) from a hash of (member id, key)
 *
 * and the highest score owns the key. Member m then owns a weight(m) / sum(weights) share of the keys, and a
 * membership change moves only the keys it must: a member that joins takes its share from the others (and no
 * key moves between two others), one that leaves gives its keys away (and no other key moves), and a weight
 * change moves keys only to or from that member. Weight 0 owns nothing: the member is drained (clients stop
 * asking it; it still answers what it is asked while it lives).
 *
 * A lookup costs one hash per member: groups are small (tens of members). The member id is its address
 * (meta/members.ts), so a node restarted at the same address owns the same keys.
 */

export interface RingMember {
  readonly id: string;
  readonly weight: number;
}

const TWO_53 = 2 ** 53;

/**
 * A 53-bit hash of a string (cyrb53: two 32-bit multiply-xorshift lanes), uniform enough for placement and
 * far cheaper than a cryptographic hash per (key, member).
 */
export function hash53(s: string, seed = 0): number {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

export class Ring {
  readonly members: readonly RingMember[];
  /** Per member: its id hashed once, seeding the per-key hash. */
  private readonly seeds: number[];

  constructor(members: readonly RingMember[]) {
    const ids = new Set<string>();
    for (const m of members) {
      if (!(Number.isFinite(m.weight) && m.weight >= 0)) throw new RangeError(`member ${m.id}: weight must be a finite number >= 0, got ${m.weight}`);
      if (ids.has(m.id)) throw new Error(`assertion failed: member ${m.id} twice on the ring`);
      ids.add(m.id);
    }
    this.members = [...members];
    this.seeds = this.members.map((m) => hash53(m.id) % 0xffffffff);
  }

  /** The member that owns `key`, or undefined when no member has a weight above 0. */
  owner(key: string): RingMember | undefined {
    let best = -1;
    let bestScore = 0;
    for (let i = 0; i < this.members.length; i++) {
      const w = this.members[i]!.weight;
      if (w <= 0) continue;
      const u = (hash53(key, this.seeds[i]!) + 0.5) / TWO_53;
      const score = w / -Math.log(u);
      // Ties (practically never) go to the lower id, so every client picks the same owner.
      if (score > bestScore || (score === bestScore && best >= 0 && this.members[i]!.id < this.members[best]!.id)) {
        best = i;
        bestScore = score;
      }
    }
    return best < 0 ? undefined : this.members[best];
  }
}
