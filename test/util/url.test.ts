/**
 * maskUrl: no secret survives, whatever the URL holds or however broken it is; what is not secret stays
 * readable.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { maskUrl } from '../../src/util/url.js';

/** Passwords and keys that break parsers: each holds one of the characters a URL gives meaning to. */
const SECRETS = ['p@ss', 'pa/ss', 'pa?ss', 'pa#ss', 'pa:ss', 'pa%ss', 'pa%40ss', 'a@b/c?d#e:f%g', 'Sk/+Ab==x'];

void describe('maskUrl', () => {
  void it('masks passwords and secret parameters of every URL kind, parseable or not', () => {
    for (const secret of SECRETS) {
      const urls = [
        `postgres://alice:${secret}@db.example.com:5432/vol?schema=s1`,
        `postgres://alice:${secret}@db.example.com:54x32/vol`,
        `redis://:${secret}@127.0.0.1:6379/1?prefix=v`,
        `redis://${secret}@127.0.0.1:6379/1`,
        `rediss://bob:${secret}@r.example.com:6380/2`,
        `redis+sentinel://s1,s2/master/0?sentinel-password=${secret}&prefix=x`,
        `redis+cluster://u:${secret}@n1:7000,n2:7001`,
        `s3://bucket/prefix?endpoint=http://127.0.0.1:9000&access-key=AK&secret-key=${secret}&region=r`,
        `s3://AK:${secret}@bucket/prefix`,
        `alice:${secret}@db.example.com/vol`,
      ];
      for (const url of urls) {
        const m = maskUrl(url);
        assert.ok(!m.includes(secret), `${url} -> ${m}`);
        assert.match(m, /\*\*\*\*/, `${url} -> ${m}`);
      }
    }
  });

  void it('keeps what is not secret', () => {
    assert.equal(maskUrl('postgres://alice:pw@db:5432/vol?schema=s1'), 'postgres://alice:****@db:5432/vol?schema=s1');
    assert.equal(maskUrl('postgres://alice@db/vol'), 'postgres://alice@db/vol');
    assert.equal(maskUrl('redis://secret@h/1'), 'redis://****@h/1');
    assert.equal(maskUrl('sqlite:///data/vol.db'), 'sqlite:///data/vol.db');
    assert.equal(maskUrl('file:///data/bucket'), 'file:///data/bucket');
    assert.equal(maskUrl('s3://b/p?endpoint=http://h:9000&region=us&secret-key=x'), 's3://b/p?endpoint=http://h:9000&region=us&secret-key=****');
  });
});
