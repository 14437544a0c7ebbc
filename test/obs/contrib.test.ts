/**
 * contrib/: the Grafana dashboard is valid JSON and the Prometheus alert rules valid YAML (parsed by Python's
 * yaml module, which the machines have; under CI=true its absence fails), and every metric either names is
 * one that Ferry serves: the client, FUSE, metadata service and process families from the registries
 * themselves, the replicator's, the mirror's and the service's others from their commands' sources.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { clientMetrics, processRegistry, ServiceMetrics } from '../../src/obs/metrics.js';
import { MountStats } from '../../src/fuse/stats.js';

const REPO = join(import.meta.dirname, '../..');
const exec = promisify(execFile);

/** Every metric name Ferry serves, with the suffixes a histogram adds. */
async function servedNames(): Promise<Set<string>> {
  const registry = processRegistry();
  clientMetrics(registry);
  new MountStats(registry);
  new ServiceMetrics(registry);
  const names = new Set<string>();
  for (const m of registry.getMetricsAsArray()) {
    const name = (m as unknown as { name: string }).name;
    names.add(name);
    for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
  }
  names.add('ferry_fuse_accesslog_readers');
  names.add('ferry_fuse_accesslog_dropped_lines_total');
  for (const f of ['src/cli/replicate.ts', 'src/cli/mirror.ts', 'src/cli/serve.ts']) {
    for (const m of (await readFile(join(REPO, f), 'utf8')).matchAll(/'(ferry_(?:replication|mirror|service)_[a-z_]+)'/g)) names.add(m[1]!);
  }
  // The cache node names its own metrics from a prefix: ferry_cache_node_ + each gauge('x')/counter('x').
  const node = await readFile(join(REPO, 'src/cli/cachenode.ts'), 'utf8');
  for (const m of node.matchAll(/\b(?:gauge|counter)\('([a-z_]+)'/g)) names.add(`ferry_cache_node_${m[1]!}`);
  for (const m of node.matchAll(/'(ferry_cache_node_[a-z_]+)'/g)) names.add(m[1]!);
  return names;
}

function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\b((?:ferry|process|nodejs)_[a-z0-9_]+)\b/g)].map((m) => m[1]!);
}

describe('README', () => {
  it('names only metrics that are served', async () => {
    const readme = await readFile(join(REPO, 'README.md'), 'utf8');
    const section = readme.substring(readme.indexOf('### Observe it'), readme.indexOf('###', readme.indexOf('### Observe it') + 5));
    // The sentence about renamed metrics names the old names on purpose.
    const current = section.replace(/Renamed:[^]*?names\./, '');
    const named = new Set(metricNames(current).filter((n) => !n.endsWith('_')));
    assert.ok(named.size >= 30, `names found: ${[...named].join(' ')}`);
    const served = await servedNames();
    for (const n of named) assert.ok(served.has(n), `README names ${n}, which is not served`);
  });
});

describe('contrib', () => {
  it('the Grafana dashboard parses and charts only served metrics', async () => {
    const dash = JSON.parse(await readFile(join(REPO, 'contrib/grafana-dashboard.json'), 'utf8')) as { title: string; panels: Array<{ title: string; targets: Array<{ expr: string }> }> };
    assert.equal(dash.title, 'Ferry');
    assert.ok(dash.panels.length >= 10);
    const served = await servedNames();
    for (const p of dash.panels) {
      assert.ok(p.targets.length > 0, p.title);
      for (const t of p.targets) for (const n of metricNames(t.expr)) assert.ok(served.has(n), `panel "${p.title}": ${n} is not served`);
    }
    for (const needed of ['ferry_replication_lag_seconds', 'ferry_mirror_lag_seconds', 'ferry_region_read_bytes_total', 'ferry_fuse_op_seconds_bucket']) {
      assert.ok(dash.panels.some((p) => p.targets.some((t) => t.expr.includes(needed))), `a panel charts ${needed}`);
    }
  });

  it('the alert rules parse and cover lag, a growing backlog, verification failures and a re-bootstrap', async (t) => {
    let json: string;
    try {
      ({ stdout: json } = await exec('python3', ['-c', 'import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))', join(REPO, 'contrib/prometheus-alerts.yml')]));
    } catch (err) {
      const why = `python3 with yaml is needed to parse the rules: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`;
      if (process.env['CI'] === 'true') throw new Error(why);
      t.skip(why);
      return;
    }
    const doc = JSON.parse(json) as { groups: Array<{ name: string; rules: Array<{ alert: string; expr: string; for?: string; labels: { severity: string }; annotations: { summary: string } }> }> };
    const rules = doc.groups.flatMap((g) => g.rules);
    const served = await servedNames();
    for (const r of rules) {
      assert.match(r.alert, /^Ferry[A-Za-z]+$/);
      assert.ok(['warning', 'critical'].includes(r.labels.severity), r.alert);
      assert.ok(r.annotations.summary.length > 0, r.alert);
      for (const n of metricNames(r.expr)) assert.ok(served.has(n), `${r.alert}: ${n} is not served`);
    }
    const find = (re: RegExp): (typeof rules)[number] | undefined => rules.find((r) => re.test(r.expr));
    assert.ok(find(/ferry_replication_lag_seconds\) > \d+/), 'replication lag past a bound');
    assert.ok(find(/ferry_mirror_lag_seconds\) > \d+/), 'mirror lag past a bound');
    assert.equal(find(/deriv\(ferry_replication_backlog_bytes\[10m\]\)/)?.for, '10m', 'backlog growing for 10 minutes');
    assert.ok(find(/increase\(ferry_replication_verify_failures_total/), 'verification failures');
    assert.ok(find(/increase\(ferry_mirror_bootstraps_total/), 'a mirror re-bootstrapping');
  });
});
