/**
 * A client's view of its cache group, and a member's registration in it (records: meta/members.ts).
 *
 *   GroupView         lists the group's live members every refreshMs and keeps the ring (ring.ts) they make;
 *                     a failed refresh keeps the last ring (the group works on while the engine is away)
 *   GroupRegistration puts the member's record at once, then again every heartbeatMs; every PRUNE_EVERY beats it
 *                     also deletes the records of members whose heartbeat stopped; `leave` deletes its own
 *
 * Only members of the same volume (uuid) are placed on the ring: a group name reused by another volume's
 * nodes in a shared engine never receives this volume's requests (they would refuse them anyway, auth.ts).
 */

import { hostname } from 'node:os';
import type { MetaEngine } from '../../meta/engine.js';
import { listMembers, putMember, removeMember, type MemberRec } from '../../meta/members.js';
import { Ring } from './ring.js';

export const GROUP_REFRESH_MS_DEFAULT = 2000;
export const MEMBER_HEARTBEAT_MS_DEFAULT = 2000;
/** A member counts as gone after this many missed heartbeats. */
export const MEMBER_STALE_BEATS = 5;
const PRUNE_EVERY = 10;

export interface GroupViewOptions {
  engine: MetaEngine;
  group: string;
  uuid: string;
  refreshMs?: number | undefined;
  onError?: ((what: string, err: unknown) => void) | undefined;
}

export class GroupView {
  readonly group: string;
  private readonly options: GroupViewOptions;
  private current = new Ring([]);
  private list: MemberRec[] = [];
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  private closed = false;

  constructor(options: GroupViewOptions) {
    this.options = options;
    this.group = options.group;
  }

  /** The first listing (awaited: a client starts with its group known), then one every refreshMs. */
  async start(): Promise<void> {
    await this.refresh().catch((err: unknown) => this.options.onError?.(`listing cache group ${this.group}`, err));
    if (this.closed) return;
    this.timer = setInterval(() => {
      this.refresh().catch((err: unknown) => this.options.onError?.(`listing cache group ${this.group}`, err));
    }, this.options.refreshMs ?? GROUP_REFRESH_MS_DEFAULT);
    this.timer.unref();
  }

  /** Lists the members now (concurrent calls share one listing). */
  refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        const members = (await listMembers(this.options.engine, { group: this.group })).filter((m) => m.uuid === this.options.uuid);
        this.list = members;
        this.current = new Ring(members.map((m) => ({ id: m.address, weight: m.weight })));
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  ring(): Ring {
    return this.current;
  }

  members(): readonly MemberRec[] {
    return this.list;
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
  }
}

export interface RegistrationOptions {
  engine: MetaEngine;
  group: string;
  address: string;
  weight: number;
  uuid: string;
  region?: string | undefined;
  role: MemberRec['role'];
  heartbeatMs?: number | undefined;
  onError?: ((what: string, err: unknown) => void) | undefined;
}

export class GroupRegistration {
  private readonly options: RegistrationOptions;
  private readonly started = Date.now();
  private readonly heartbeatMs: number;
  private timer: NodeJS.Timeout | undefined;
  private beats = 0;
  private beating: Promise<void> | undefined;
  private left: Promise<void> | undefined;

  private constructor(options: RegistrationOptions) {
    this.options = options;
    this.heartbeatMs = options.heartbeatMs ?? MEMBER_HEARTBEAT_MS_DEFAULT;
  }

  /** Registers now (a failure rejects: a member that cannot register serves nobody), then beats. */
  static async join(options: RegistrationOptions): Promise<GroupRegistration> {
    const r = new GroupRegistration(options);
    await putMember(options.engine, r.record(Date.now()));
    r.timer = setInterval(() => {
      r.beating ??= r.beat().finally(() => (r.beating = undefined));
    }, r.heartbeatMs);
    r.timer.unref();
    return r;
  }

  private record(now: number): MemberRec {
    const o = this.options;
    return {
      version: 1,
      group: o.group,
      address: o.address,
      weight: o.weight,
      uuid: o.uuid,
      ...(o.region === undefined ? {} : { region: o.region }),
      host: hostname(),
      pid: process.pid,
      started: this.started,
      heartbeat: now,
      staleMs: MEMBER_STALE_BEATS * this.heartbeatMs,
      role: o.role,
    };
  }

  private async beat(): Promise<void> {
    try {
      await putMember(this.options.engine, this.record(Date.now()));
      if (++this.beats % PRUNE_EVERY === 0) await listMembers(this.options.engine, { group: this.options.group, prune: true });
    } catch (err) {
      this.options.onError?.('cache group heartbeat', err);
    }
  }

  /** Idempotent: stops beating and removes the record (best effort: a record left behind goes stale). */
  leave(): Promise<void> {
    this.left ??= (async () => {
      if (this.timer !== undefined) clearInterval(this.timer);
      await this.beating;
      await removeMember(this.options.engine, this.options.group, this.options.address).catch((err: unknown) => this.options.onError?.('leaving the cache group', err));
    })();
    return this.left;
  }
}
