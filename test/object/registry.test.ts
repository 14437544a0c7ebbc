import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../../src/errors.js';
import { describeStoreUrl, openObjectStore } from '../../src/object/registry.js';

void describe('openObjectStore', () => {
  void it('rejects unknown schemes and malformed URLs with a UsageError', async () => {
    await assert.rejects(openObjectStore('gopher://x'), (e) => e instanceof UsageError && e.message === 'unknown storage scheme "gopher:" (supported: file, mem, s3)');
    await assert.rejects(openObjectStore('/var/lib/ferry'), (e) => e instanceof UsageError && /has no scheme/.test(e.message));
    await assert.rejects(openObjectStore('file:'), UsageError);
    await assert.rejects(openObjectStore('mem:x'), UsageError);
  });

  void it('opens mem and file stores', async () => {
    const mem = await openObjectStore('mem://reg-test');
    assert.equal(mem.description, 'mem://reg-test');
    await mem.close();
  });
});

void describe('describeStoreUrl', () => {
  void it('masks passwords and secret query parameters', () => {
    assert.equal(describeStoreUrl('s3://AKIA:wJalr/XUtn@bucket.example.com/vol'), 's3://AKIA:****@bucket.example.com/vol');
    assert.equal(
      describeStoreUrl('s3://host/bucket?region=eu&secretKey=abc&access_key=def&token=ghi&sessionPassword=p'),
      's3://host/bucket?region=eu&secretKey=****&access_key=****&token=****&sessionPassword=****',
    );
  });

  void it('leaves URLs without secrets as written', () => {
    for (const url of ['file:///var/lib/ferry', 'mem://', 'mem://x', 's3://bucket/prefix?region=eu-west-1', 'file://rel/dir']) {
      assert.equal(describeStoreUrl(url), url);
    }
  });
});

void describe('describeStoreUrl on URLs the parser rejects', () => {
  void it('still masks the password', () => {
    assert.equal(describeStoreUrl('s3://AKIA:a+b/c@d@host/bucket?secret=x/y'), 's3://AKIA:****@host/bucket?secret=****');
  });
});
