/**
 * Listings with attributes (readdirplus) and the extended-attribute answers of a mount, for real: what a
 * listing shows is what the engine holds (sizes, modes, times, link counts), this mount's own changes show
 * at once (also between two requests of one listing), another client's once the timeouts ran out, and
 * `ls -l` of a directory costs a few requests, not a lookup and getxattr calls per name. Counts of requests
 * come from the mount's /.stats.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openVolume, type Volume as SdkVolume } from '../../src/index.js';
import { addonUnavailable, makeVolume, removeVolume, sh, startMount, type RunningMount, type Volume } from './helpers.js';

const skip = addonUnavailable();

/** The mount's operation counters (ferry_fuse_ops_total) by op. */
async function opCounts(mnt: string): Promise<Map<string, number>> {
  const text = await sh('cat .stats', mnt);
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^ferry_fuse_ops_total\{op="(\w+)"\} (\d+)$/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}

/** Operations counted while fn ran (the .stats reads themselves are not counted apart: lookup/open/read/release of .stats). */
async function opsDuring(mnt: string, fn: () => Promise<unknown>): Promise<Map<string, number>> {
  const before = await opCounts(mnt);
  await fn();
  const after = await opCounts(mnt);
  const out = new Map<string, number>();
  for (const [op, n] of after) if (n - (before.get(op) ?? 0) > 0) out.set(op, n - (before.get(op) ?? 0));
  return out;
}

/** name -> "mode size nlink mtime(s)" of each entry of dir as `os.scandir` + `lstat` sees it through the mount. */
const SCAN = `
import os, sys, json
out = {}
for e in os.scandir(sys.argv[1]):
    st = e.stat(follow_symlinks=False)
    out[e.name] = f"{st.st_mode:o} {st.st_size} {st.st_nlink} {int(st.st_mtime)} {st.st_ino}"
print(json.dumps(out, sort_keys=True))
`;

async function scan(dir: string): Promise<Record<string, string>> {
  return JSON.parse(await sh(`python3 -c '${SCAN}' "${dir}"`, '/')) as Record<string, string>;
}

/** The same, as the engine holds it (another client: the SDK). */
async function truth(v: SdkVolume, dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of await v.readdir(dir)) {
    const st = await v.lstat(`${dir}/${name}`);
    out[name] = `${st.mode.toString(8)} ${st.size} ${st.nlink} ${Math.floor(st.mtimeMs / 1000)} ${st.ino}`;
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)));
}

describe('listings with attributes and xattr answers through the mount', { skip }, () => {
  let vol: Volume;
  let m: RunningMount;
  let sdk: SdkVolume;

  before(async () => {
    vol = await makeVolume();
    m = await startMount(vol, ['--attr-timeout', '1', '--entry-timeout', '1']);
    sdk = await openVolume(vol.metaUrl);
  });

  after(async () => {
    await sdk?.close();
    await m?.stop();
    if (vol !== undefined) await removeVolume(vol);
  });

  it('lists entries with their attributes: ls -l costs a few requests, not a lookup and getxattr calls per name', async () => {
    await sh(`mkdir many && cd many && for i in $(seq 1 1500); do : > f$i; done && mkdir d1 d2 && mkdir d1/x d1/y && printf abc > f1 && chmod 0600 f2 && ln -s f1 link && touch -d @1000000000 f3`, vol.mnt);
    // Past the timeouts: what the kernel and the mount kept of the creates has expired.
    await new Promise((r) => setTimeout(r, 1200));
    let listing = '';
    const ops = await opsDuring(vol.mnt, async () => (listing = await sh('ls -l --time-style=+%s many', vol.mnt)));
    assert.ok((ops.get('readdirplus') ?? 0) >= 1, `listed with attributes: ${JSON.stringify([...ops])}`);
    assert.ok((ops.get('readdirplus') ?? 0) <= 10, `in a few requests: ${JSON.stringify([...ops])}`);
    assert.ok((ops.get('lookup') ?? 0) <= 5, `no lookup per name: ${JSON.stringify([...ops])}`);
    assert.equal(ops.get('getxattr') ?? 0, 0, `no getxattr reaches the mount's JS (ACL and SELinux names are the addon's): ${JSON.stringify([...ops])}`);
    // name -> "mode links size mtime" as ls -l prints them
    const rows = new Map(
      listing.trim().split('\n').slice(1).map((l) => {
        const f = l.split(/\s+/);
        return [f.slice(6).join(' '), [f[0], f[1], f[4], f[5]].join(' ')] as const;
      }),
    );
    assert.equal(rows.size, 1500 + 3, 'every entry listed');
    assert.match(rows.get('f1')!, /^-rw-r--r-- 1 3 \d+$/);
    assert.match(rows.get('f2')!, /^-rw------- 1 0 \d+$/);
    assert.equal(rows.get('f3'), '-rw-r--r-- 1 0 1000000000');
    assert.match(rows.get('d1')!, /^drwxr-xr-x 4 \d+ \d+$/);
    assert.match(rows.get('link -> f1')!, /^lrwxrwxrwx 1 2 \d+$/);
    // Every attribute as the engine holds it.
    assert.deepEqual(await scan(`${vol.mnt}/many`), await truth(sdk, '/many'));
  });

  it("shows this mount's own changes at once, also between two requests of one listing", async () => {
    await sh(`mkdir own && cd own && for i in $(seq 1 2000); do : > f$i; done`, vol.mnt);
    await scan(`${vol.mnt}/own`); // the listing and the kernel's entries are fresh now
    await sh(`cd own && chmod 0640 f5 && printf hello > f6 && touch -d @1200000000 f7 && mkdir sub && mkdir sub/a && rm f8 && : > new`, vol.mnt);
    const got = await scan(`${vol.mnt}/own`);
    assert.deepEqual(got, await truth(sdk, '/own'));
    assert.match(got['f5']!, /^100640 /);
    assert.match(got['f6']!, /^100644 5 /);
    assert.match(got['f7']!, /^100644 0 1 1200000000 /);
    assert.match(got['sub']!, /^40755 \d+ 3 /);
    assert.equal(got['f8'], undefined);
    assert.ok(got['new'] !== undefined);
    // A change between two requests of one listing (the first request covers fewer than 1,000 of these
    // names): the rest of the listing carries it, and the kernel does not take older attributes back.
    const mid = `
import os, sys
d = sys.argv[1]
it = os.scandir(d)
first = [next(it) for _ in range(5)]
os.chmod(os.path.join(d, "f1990"), 0o604)
with open(os.path.join(d, "f1991"), "w") as f: f.write("12345678")
rest = {e.name: e for e in it}
for n in ("f1990", "f1991"):
    st = os.lstat(os.path.join(d, n))
    print(n, oct(st.st_mode), st.st_size)
`;
    assert.equal(await sh(`python3 -c '${mid}' "${vol.mnt}/own"`, '/'), 'f1990 0o100604 0\nf1991 0o100644 8\n');
  });

  it("shows another client's changes once the timeouts ran out", async () => {
    await sh(`mkdir other && cd other && for i in $(seq 1 50); do : > f$i; done && mkdir d`, vol.mnt);
    const before = await scan(`${vol.mnt}/other`);
    assert.deepEqual(before, await truth(sdk, '/other'));
    await sdk.chmod('/other/f1', 0o600);
    await sdk.writeFile('/other/f2', Buffer.from('from another client'));
    await sdk.utimes('/other/f3', 1300000000, 1300000000);
    await sdk.mkdir('/other/d/sub');
    await sdk.unlink('/other/f4');
    await sdk.writeFile('/other/added', Buffer.from('x'));
    // The kernel's timeouts (1 s) and the mount's kept listing (as long): the changes show after both.
    await new Promise((r) => setTimeout(r, 2200));
    const got = await scan(`${vol.mnt}/other`);
    assert.deepEqual(got, await truth(sdk, '/other'));
    assert.match(got['f1']!, /^100600 /);
    assert.match(got['f2']!, /^100644 19 /);
    assert.match(got['f3']!, /^100644 0 1 1300000000 /);
    assert.match(got['d']!, /^40755 \d+ 3 /);
    assert.equal(got['f4'], undefined);
    assert.ok(got['added'] !== undefined);
  });

  it('sets, reads, lists and removes extended attributes; answers the names it keeps no values for', async () => {
    const script = `
import os, errno, sys
p = sys.argv[1]
open(p, "w").close()
def err(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
print("get none", err(lambda: os.getxattr(p, "user.a")))
os.setxattr(p, "user.a", b"one")
print("get", os.getxattr(p, "user.a"))
os.setxattr(p, "user.b", b"x" * 2000)
print("list", sorted(os.listxattr(p)))
print("create existing", err(lambda: os.setxattr(p, "user.a", b"two", os.XATTR_CREATE)))
os.setxattr(p, "user.a", b"two", os.XATTR_REPLACE)
print("replaced", os.getxattr(p, "user.a"))
os.removexattr(p, "user.a")
print("after remove", err(lambda: os.getxattr(p, "user.a")), sorted(os.listxattr(p)))
print("remove missing", err(lambda: os.removexattr(p, "user.a")))
print("selinux get", err(lambda: os.getxattr(p, "security.selinux")))
print("selinux set", err(lambda: os.setxattr(p, "security.selinux", b"system_u:object_r:x:s0")))
print("acl get", err(lambda: os.getxattr(p, "system.posix_acl_access")))
print("acl default get", err(lambda: os.getxattr(os.path.dirname(p), "system.posix_acl_default")))
print("acl set", err(lambda: os.setxattr(p, "system.posix_acl_access", b"\\x02\\x00\\x00\\x00")))
print("caps get", err(lambda: os.getxattr(p, "security.capability")))
`;
    const out = await sh(`mkdir xa && python3 -c '${script}' "${vol.mnt}/xa/f"`, vol.mnt);
    assert.equal(
      out,
      [
        'get none ENODATA',
        "get b'one'",
        "list ['user.a', 'user.b']",
        'create existing EEXIST',
        "replaced b'two'",
        "after remove ENODATA ['user.b']",
        'remove missing ENODATA',
        'selinux get ENOTSUP',
        'selinux set ENOTSUP',
        'acl get ENOTSUP',
        'acl default get ENOTSUP',
        'acl set ENOTSUP',
        'caps get ENODATA',
        '',
      ].join('\n'),
    );
    // Set elsewhere (the SDK keeps any name): the mount neither lists nor answers it.
    await sdk.setxattr('/xa/f', 'security.selinux', Buffer.from('label'));
    await sdk.setxattr('/xa/f', 'user.c', Buffer.from('sdk'));
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal(await sh(`python3 -c 'import os; print(sorted(os.listxattr("xa/f")), os.getxattr("xa/f", "user.c"))'`, vol.mnt), "['user.b', 'user.c'] b'sdk'\n");
  });
});
