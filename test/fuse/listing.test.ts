/**
 * The mount's listings (src/fuse/listing.ts), no mount needed: entries laid out as the addon takes them
 * (NUL-ended names, stat records), ranges cut exactly at the kernel's buffer size, answers that wait for the
 * entries they can hold while the listing fills, freshness per entry, and a failed listing failing its waiters.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RECORDS } from '../../src/fuse/boundary.js';
import { Listing, STAT_FIELDS } from '../../src/fuse/listing.js';
import { putStat, toFuseStat } from '../../src/fuse/stat.js';
import { TYPE_BITS, type Attr } from '../../src/meta/types.js';

function attr(ino: number, over: Partial<Attr> = {}): Attr {
  return {
    ino, type: 'file', mode: 0o644, uid: 1, gid: 2, atime: 1000.5, mtime: 2000.25, ctime: 3000, nlink: 1, length: ino * 10, parent: 1, rdev: 0,
    ...over,
  } as Attr;
}

/** Fills a plus listing with "." and ".." and n files named f<i> (multi-byte names every 7th). */
function listing(n: number): Listing {
  const d = new Listing(100, 7, true);
  d.add('.', 1, TYPE_BITS.dir, attr(1, { type: 'dir' }));
  d.add('..', 1, TYPE_BITS.dir, attr(1, { type: 'dir' }));
  for (let i = 0; i < n; i++) d.add(i % 7 === 0 ? `é-${i}` : `f${i}`, 10 + i, TYPE_BITS.file, attr(10 + i));
  return d;
}

/** The kernel's size of a direntplus record for a name of `bytes` bytes. */
const rec = (bytes: number): number => (152 + bytes + 7) & ~7;

describe('Listing', () => {
  it('lays out names NUL-ended and stat records as toFuseStat would give them, growing as entries come', () => {
    const d = listing(1000);
    d.finish();
    const v = d.viewPlus(0, d.size, 150);
    const names = v.nameBytes.toString('utf8').split('\0');
    assert.equal(names.pop(), '');
    assert.deepEqual(names, d.names);
    assert.equal(v.attrs.length, d.size * STAT_FIELDS);
    const st = toFuseStat(attr(10 + 500));
    assert.deepEqual([...v.attrs.subarray((2 + 500) * STAT_FIELDS, (3 + 500) * STAT_FIELDS)], RECORDS.stat.map((k) => st[k]));
    const one = new Float64Array(STAT_FIELDS);
    putStat(one, 0, attr(3, { type: 'dir', nlink: 4, trashed: true }));
    assert.deepEqual([...one], RECORDS.stat.map((k) => toFuseStat(attr(3, { type: 'dir', nlink: 4, trashed: true }))[k]));
    assert.equal(v.ageMs, 50);
  });

  it('cuts a readdirplus answer exactly where the kernel buffer is full', () => {
    const d = new Listing(0, 0, true);
    const names = ['.', '..', 'a'.repeat(8), 'b'.repeat(9), 'ü'.repeat(20), 'c'];
    names.forEach((n, i) => d.add(n, 10 + i, TYPE_BITS.file, attr(10 + i)));
    d.finish();
    const sizes = names.map((n) => rec(Buffer.byteLength(n)));
    assert.deepEqual(sizes, [160, 160, 160, 168, 192, 160]);
    let total = 0;
    for (let i = 0; i < names.length; i++) {
      total += sizes[i]!;
      assert.equal(d.plusEnd(0, total), i + 1, `${total} bytes hold ${i + 1} entries`);
      assert.equal(d.plusEnd(0, total - 1), i, `${total - 1} bytes hold ${i}`);
    }
    assert.equal(d.plusEnd(3, sizes[3]! + sizes[4]!), 5);
    assert.equal(d.plusEnd(names.length, 1 << 20), names.length);
    const v = d.viewPlus(3, 5, 0);
    assert.equal(v.nameBytes.toString('utf8'), `${names[3]}\0${names[4]}\0`);
    assert.equal(v.attrs.length, 2 * STAT_FIELDS);
  });

  it('answers once the entries a request can hold are in, or the listing is complete', async () => {
    const d = new Listing(0, 0, true);
    let answered = false;
    const p = d.until(() => d.plusReady(0, 10 * rec(2))).then(() => (answered = true));
    for (let i = 0; i < 5; i++) d.add(`f${i}`, 10 + i, TYPE_BITS.file, attr(10 + i));
    d.added();
    await new Promise((r) => setImmediate(r));
    assert.equal(answered, false, 'five entries do not fill the buffer');
    for (let i = 5; i < 12; i++) d.add(`f${i}`, 10 + i, TYPE_BITS.file, attr(10 + i));
    d.added();
    await p;
    assert.equal(d.plusEnd(0, 10 * rec(2)), 10);
    // The end of the directory: whatever is in answers.
    let tail = false;
    const q = d.until(() => d.plusReady(11, 10 * rec(3))).then(() => (tail = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(tail, false);
    d.finish();
    await q;
    assert.equal(d.plusEnd(11, 10 * rec(3)), 12);
  });

  it('a listing that failed fails the requests that wait for it', async () => {
    const d = new Listing(0, 0, false);
    const p = d.until(() => d.rangeReady(0, 4096));
    d.finish(new Error('engine down'));
    await assert.rejects(p, /engine down/);
    await assert.rejects(d.until(() => false), /engine down/);
  });

  it('knows how fresh each entry is; an entry without attributes keeps its inode and goes out with mode 0', () => {
    const d = listing(10);
    d.finish();
    assert.equal(d.fresh(0, d.size, 150, 100, 7), true);
    assert.equal(d.fresh(0, d.size, 250, 100, 7), false, 'older than the TTL');
    assert.equal(d.fresh(0, d.size, 150, 100, 8), false, 'a change of this client since');
    d.setAttr(5, undefined, 200, 8);
    assert.equal(d.hasAttr(5), false);
    const v = d.viewPlus(5, 6, 200);
    assert.equal(v.attrs[RECORDS.stat.indexOf('ino')], d.inos[5]);
    assert.equal(v.attrs[RECORDS.stat.indexOf('mode')], 0);
    assert.equal(d.fresh(5, 6, 250, 100, 8), true);
    assert.equal(d.viewPlus(4, 6, 250).ageMs, 150, 'the oldest entry of the range');
  });

  it('cuts a plain answer at what the buffer could hold at most', () => {
    const d = new Listing(0, 0, false);
    for (let i = 0; i < 100; i++) d.add(`f${i}`, i + 2, TYPE_BITS.file);
    assert.equal(d.rangeReady(0, 4096), false);
    d.finish();
    const r = d.range(90, 4096);
    assert.deepEqual(r.names, d.names.slice(90));
    assert.deepEqual(r.inos, d.inos.slice(90));
  });
});
