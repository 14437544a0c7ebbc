/**
 * The metadata service over TLS (`ferry serve --tls-cert --tls-key`, clients at ferrys://), with a
 * self-signed certificate made by the openssl CLI in the test:
 *   - a client that trusts it (the SDK's serviceClient.ca; the CLI's FERRY_TLS_CA) works, token checks and all;
 *   - one that does not trust it, or reaches it under a name the certificate does not hold, fails at once
 *     with an error that says so and names FERRY_TLS_CA — no retries;
 *   - a ferry:// (plain) client at the TLS port, and a ferrys:// client at a plain service, are told which
 *     scheme to use.
 */

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FsError, openMetaEngine, openVolume, type OpenVolumeOptions } from '../../src/index.js';
import type { MetaEngine } from '../../src/meta/engine.js';
import { MetaService } from '../../src/service/server.js';
import { CLI, ensureBuilt } from '../cli/helpers.js';
import { makeServiceLab, type ServiceLab } from './helpers.js';

/** A self-signed certificate and its key (PEM files in dir) for the given subjectAltName. */
function selfSigned(dir: string, name: string, san: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`, '-addext', `subjectAltName=${san}`],
    { stdio: 'ignore' },
  );
  return { cert, key };
}

/** The built CLI in a child process, without blocking this one (the service under test runs here). */
function ferry(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, FERRY_DEBUG: '', FERRY_NO_PROGRESS: '1', FERRY_TLS_CA: '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('metadata service over TLS', () => {
  let lab: ServiceLab;
  let engine: MetaEngine;
  let service: MetaService;
  let wrongName: MetaService;
  let good: { cert: string; key: string };
  let url: string;
  const base = (): OpenVolumeOptions => ({ token: lab.token, uid: 0, gid: 0, gids: [], heartbeatMs: 0, memCacheBytes: 0 });

  before(async () => {
    ensureBuilt();
    lab = await makeServiceLab([]);
    good = selfSigned(lab.dir, 'ferry-test', 'IP:127.0.0.1,DNS:localhost');
    const other = selfSigned(lab.dir, 'elsewhere', 'DNS:elsewhere.example');
    engine = await openMetaEngine(lab.primaryUrl);
    const tls = async (c: { cert: string; key: string }): Promise<{ cert: Buffer; key: Buffer }> => ({ cert: await readFile(c.cert), key: await readFile(c.key) });
    const common = { engine, token: Buffer.from(lab.token, 'hex'), host: '127.0.0.1', port: 0, heartbeatMs: 0 };
    service = await MetaService.start({ ...common, tls: await tls(good) });
    wrongName = await MetaService.start({ ...common, tls: await tls(other) });
    url = `ferrys://127.0.0.1:${service.port}`;
  });
  after(async () => {
    await service.close();
    await wrongName.close();
    await engine.close();
    await lab.cleanup();
  });

  it('a client that trusts the certificate reads and writes; the token is still checked', async () => {
    const v = await openVolume(url, { ...base(), serviceClient: { pingMs: 0, ca: await readFile(good.cert) } });
    try {
      await v.writeFile('/over-tls', 'secret');
      assert.equal(await v.readFile('/over-tls', 'utf8'), 'secret');
    } finally {
      await v.close();
    }
    await assert.rejects(
      openVolume(url, { ...base(), token: 'ab'.repeat(32), serviceClient: { pingMs: 0, ca: await readFile(good.cert) } }),
      (e: unknown) => e instanceof FsError && e.code === 'EACCES' && /refused the volume token/.test(e.message),
    );
  });

  it('a client that does not trust it, or reaches it by a name it does not hold, fails at once saying so', async () => {
    for (const [what, target, ca] of [
      ['no CA given', url, undefined],
      ['certificate for another name', `ferrys://127.0.0.1:${wrongName.port}`, await readFile(good.cert)],
    ] as const) {
      const t0 = Date.now();
      await assert.rejects(
        openVolume(target, { ...base(), serviceClient: { pingMs: 0, ...(ca === undefined ? {} : { ca }) } }),
        (e: unknown) => e instanceof FsError && /presented a certificate this client does not trust/.test(e.message) && /FERRY_TLS_CA=FILE/.test(e.message),
        what,
      );
      assert.ok(Date.now() - t0 < 5000, `${what}: no retries (${Date.now() - t0} ms)`);
    }
  });

  it('the wrong scheme is named: ferry:// at a TLS service, ferrys:// at a plain one', async () => {
    await assert.rejects(openVolume(`ferry://127.0.0.1:${service.port}`, { ...base(), serviceClient: { pingMs: 0 } }), /speaks TLS: address it as ferrys:\/\/HOST:PORT/);
    await assert.rejects(openVolume(`ferrys://127.0.0.1:${lab.service!.port}`, { ...base(), serviceClient: { pingMs: 0 } }), /does not speak TLS: address it as ferry:\/\/HOST:PORT/);
  });

  it('the CLI trusts the certificate named by FERRY_TLS_CA, and fails in one line without it', async () => {
    const env = { FERRY_TOKEN: lab.token };
    const r = await ferry(['ls', url, '/'], { ...env, FERRY_TLS_CA: good.cert });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /over-tls/);
    const noCa = await ferry(['ls', url, '/'], env);
    assert.notEqual(noCa.code, 0);
    const lines = noCa.stderr.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, `one line: ${noCa.stderr}`);
    assert.match(lines[0]!, /^ferry: .*does not trust.*FERRY_TLS_CA=FILE/);
    assert.doesNotMatch(noCa.stderr, new RegExp(lab.token), 'the token is not printed');
  });
});
