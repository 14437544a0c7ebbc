/**
 * The addon on FUSE's low-level API: the kernel speaks Ferry's inode numbers and caches entries and attributes
 * (1 s by default). What that must not break, for real, with a second client (the SDK, in this process, on
 * the same SQLite volume; it never touches the mount point):
 *   - hard links are one kernel inode: a write through one name shows at once through the other (size,
 *     nlink, content) even with attributes cached;
 *   - another client's rename and unlink show once the entry timeout (plus Meta's lookup cache TTL) ran out;
 *   - another client's append shows at the next open, size included (open drops the kernel's attributes of
 *     a file that changed);
 *   - 1 MiB read and write requests (FUSE_MAX_PAGES, which libfuse 2.9 does not negotiate by itself);
 *   - many files: create, list (readdir across several kernel buffers), stat, unlink.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openVolume, type Volume as SdkVolume } from '../../src/index.js';
import { addonUnavailable, makeVolume, removeVolume, sh, startMount, type RunningMount, type Volume } from './helpers.js';

const skip = addonUnavailable();
/** The mount's entry timeout plus Meta's lookup cache TTL (1 s each by default), and some slack. */
const OTHERS_VISIBLE_MS = 3500;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('ferry mount on the low-level API (kernel caching)', { skip }, () => {
  let vol: Volume;
  let m: RunningMount;
  let sdk: SdkVolume;

  before(async () => {
    vol = await makeVolume();
    m = await startMount(vol);
    sdk = await openVolume(vol.metaUrl);
  });

  after(async () => {
    await sdk?.close();
    await m?.stop();
    if (vol !== undefined) await removeVolume(vol);
  });

  it('shows a write through one hard link at once through the other, with attributes cached', async () => {
    const out = await sh(
      [
        'mkdir ll && printf 1234 > ll/a && ln ll/a ll/b',
        // Both names' entries and attributes are now in the kernel's cache.
        "stat -c '%i %s %h' ll/a ll/b",
        'printf 56789 >> ll/a',
        "stat -c '%s %h' ll/b && cat ll/b && echo",
        'rm ll/a',
        "stat -c '%h' ll/b",
        "python3 -c \"import os; fd = os.open('ll/b', os.O_WRONLY); os.pwrite(fd, b'X', 0); os.close(fd)\"",
        'cat ll/b',
      ].join(' && '),
      vol.mnt,
    );
    const [a, b, ...rest] = out.split('\n');
    const [inoA, sizeA, nlinkA] = a!.split(' ');
    assert.equal(b, `${inoA} ${sizeA} ${nlinkA}`, 'one inode behind both names');
    assert.equal(`${sizeA} ${nlinkA}`, '4 2');
    assert.deepEqual(rest, ['9 2', '123456789', '1', 'X23456789']);
  });

  it("shows another client's rename and unlink once the entry timeout ran out", async () => {
    await sh('mkdir oc && echo x > oc/x && echo z > oc/z && stat oc/x oc/z > /dev/null', vol.mnt);
    const t0 = Date.now();
    await sdk.rename('/oc/x', '/oc/y');
    await sdk.unlink('/oc/z');
    let seen = '';
    while (Date.now() - t0 < OTHERS_VISIBLE_MS + 2000) {
      seen = await sh('ls oc | tr "\\n" " "; for f in x y z; do test -e oc/$f && printf "$f " || printf -- "-$f "; done', vol.mnt);
      if (seen === 'y -x y -z ') break;
      await sleep(100);
    }
    const took = Date.now() - t0;
    assert.equal(seen, 'y -x y -z ');
    assert.ok(took < OTHERS_VISIBLE_MS, `visible after ${took} ms`);
  });

  it("shows another client's append at the next open, size included", async () => {
    await sh('printf abcd > app && cat app > /dev/null && stat -c %s app > /dev/null', vol.mnt);
    await sdk.appendFile('/app', 'efgh');
    // Right away (well within the attribute timeout): the open sees the change and drops the cached size.
    assert.equal(await sh('cat app; echo " $(stat -c %s app)"', vol.mnt), 'abcdefgh 8\n');
  });

  it('carries a 1 MiB write and a 1 MiB read in one request each (FUSE_MAX_PAGES)', async () => {
    const count = async (op: string): Promise<number> => {
      const text = await sh('cat .stats', vol.mnt);
      return Number(new RegExp(`ferry_fuse_ops_total\\{op="${op}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
    };
    // Reading .stats counts too: the reads one look costs are measured first and taken off.
    const r0 = await count('read');
    const [w1, r1] = [await count('write'), await count('read')];
    await sh('dd if=/dev/urandom of=big bs=1M count=8 status=none && dd if=big of=/dev/null bs=1M iflag=direct status=none', vol.mnt);
    const [w2, r2] = [await count('write'), await count('read')];
    assert.equal(w2 - w1, 8, 'writes');
    assert.equal(r2 - r1 - (r1 - r0), 8, 'reads');
  });

  it('creates, lists, stats and unlinks many files', async () => {
    const n = 3000;
    const out = await sh(
      `python3 -c "
import os
os.mkdir('many')
for i in range(${n}):
    fd = os.open(f'many/file-with-a-longish-name-{i:05d}', os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644); os.write(fd, str(i).encode()); os.close(fd)
names = sorted(os.listdir('many'))
assert len(names) == ${n}, len(names)
assert len(set(names)) == ${n}
for i in range(${n}):
    st = os.stat(f'many/file-with-a-longish-name-{i:05d}')
    assert st.st_size == len(str(i)), (i, st.st_size)
with open('many/file-with-a-longish-name-01234') as f: assert f.read() == '1234'
for name in names: os.unlink('many/' + name)
print(len(os.listdir('many')))
os.rmdir('many')
print('ok')
"`,
      vol.mnt,
    );
    assert.equal(out, '0\nok\n');
  });
});
