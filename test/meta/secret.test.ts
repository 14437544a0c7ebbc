/**
 * The volume secret: made at format, stable, made on first need for an older volume, never printed by any
 * command, left out of a dump unless --keep-secrets, and the root of per-use keys that differ by use and volume.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openMetaEngine } from '../../src/index.js';
import { deriveKey, SECRET_KEY, volumeSecret } from '../../src/meta/secret.js';
import { ensureBuilt, ferry, ok } from '../cli/helpers.js';

let root: string;
before(() => {
  ensureBuilt();
  root = mkdtempSync(path.join(tmpdir(), 'ferry-secret-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

void describe('volume secret', () => {
  void it('is made at format, stable, never printed, and kept out of a dump unless asked', async () => {
    const meta = `sqlite://${root}/v.db`;
    ok(['format', meta, 'vol', '--storage', `file://${root}/b`]);
    const engine = await openMetaEngine(meta);
    let secret: Buffer;
    try {
      secret = await volumeSecret(engine);
      assert.equal(secret.length, 32);
      assert.deepEqual(await volumeSecret(engine), secret, 'the secret is stable');
    } finally {
      await engine.close();
    }
    const shown = [secret.toString('base64'), secret.toString('hex'), secret.toString('base64url')];
    const outputs: string[] = [];
    for (const args of [['info', meta], ['status', meta], ['config', meta], ['region', 'list', meta], ['fsck', meta]]) {
      const r = ferry(args);
      outputs.push(r.stdout, r.stderr);
    }
    ok(['dump', meta, `${root}/masked.jsonl`]);
    ok(['dump', meta, `${root}/kept.jsonl`, '--keep-secrets']);
    const masked = readFileSync(`${root}/masked.jsonl`, 'utf8');
    for (const text of [...outputs, masked]) for (const s of shown) assert.ok(!text.includes(s), `the secret was printed:\n${text}`);
    assert.ok(!masked.includes(`"${SECRET_KEY}"`), 'a masked dump holds no secret record');
    assert.ok(readFileSync(`${root}/kept.jsonl`, 'utf8').includes(secret.toString('base64')), '--keep-secrets keeps it');

    // Loaded from the masked dump: a new secret on first need.
    const meta2 = `sqlite://${root}/v2.db`;
    ok(['load', meta2, `${root}/masked.jsonl`]);
    const e2 = await openMetaEngine(meta2);
    try {
      const fresh = await volumeSecret(e2);
      assert.equal(fresh.length, 32);
      assert.notDeepEqual(fresh, secret);
    } finally {
      await e2.close();
    }
  });

  void it('derives a different key per use and per volume, the same for the same inputs', () => {
    const s = Buffer.alloc(32, 7);
    const a = deriveKey(s, 'u1', 'cache-peer');
    assert.deepEqual(deriveKey(s, 'u1', 'cache-peer'), a);
    assert.notDeepEqual(deriveKey(s, 'u1', 'service-token'), a);
    assert.notDeepEqual(deriveKey(s, 'u2', 'cache-peer'), a);
  });
});
