/**
 * The dashboard page (obs/dashboard.ts serves it): plain HTML with its style and script inline, nothing
 * loaded from elsewhere (the machines it runs on may have no internet, and the Content-Security-Policy
 * allows nothing else). The script polls /api/status (cli/dashboard.ts says what that holds) and redraws a
 * few tables and line charts.
 *
 * Contract of the script: every value from the JSON reaches the document through `textContent` or an SVG
 * attribute that takes numbers, never through innerHTML or a markup string: names come from the metadata
 * engine, which may hold anything. DASHBOARD_SCRIPT and DASHBOARD_STYLE are constants because the CSP names
 * them by hash; what varies (the refresh interval) travels in a data attribute.
 */

export const DASHBOARD_STYLE = String.raw`
body { font: 14px/1.4 system-ui, sans-serif; margin: 1em 2em; color: #222; background: #fafafa; }
h1 { font-size: 1.4em; margin: 0 0 .2em; }
h2 { font-size: 1.1em; margin: 1.4em 0 .4em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #ddd; padding: .2em .6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; font-weight: 600; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.empty { color: #777; margin: .2em 0; }
.bad { color: #b00; font-weight: 600; }
#state { color: #555; }
#state.error { color: #b00; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; background: #fff; border: 1px solid #ddd; padding: .4em; }
figcaption { font-size: .9em; color: #444; }
svg polyline { fill: none; stroke: #2a6fdb; stroke-width: 1.5; }
svg line { stroke: #ccc; }
`;

export const DASHBOARD_SCRIPT = String.raw`
(function () {
  'use strict';
  var refreshMs = Number(document.body.getAttribute('data-refresh-ms')) || 5000;
  var SVG = 'http://www.w3.org/2000/svg';

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function bytes(n) {
    if (n === null || n === undefined || !isFinite(n)) return '-';
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    var v = Math.abs(n), i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    var s = i === 0 ? String(Math.round(v)) : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2);
    return (n < 0 ? '-' : '') + s + ' ' + units[i];
  }
  function perSec(n) { return bytes(n) + '/s'; }
  /** Seconds of lag, to the millisecond below 1 s: a lag of a few ms must not read as 0. */
  function lag(x) { return fixed(x, x < 1 ? 3 : x < 10 ? 2 : 1) + ' s'; }
  function fixed(n, d) { return n === null || n === undefined || !isFinite(n) ? '-' : Number(n).toFixed(d); }
  function age(ms) {
    if (ms === null || ms === undefined || !isFinite(ms)) return '-';
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 120) return s + 's';
    if (s < 7200) return Math.round(s / 60) + 'm';
    if (s < 172800) return Math.round(s / 3600) + 'h';
    return Math.round(s / 86400) + 'd';
  }
  function time(ms) { return ms ? new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-'; }
  function numeric(v) { return typeof v === 'number'; }

  /** Replaces the content of #id by a table of rows (cells: text, or a Node). */
  function table(id, headers, rows, empty) {
    var box = document.getElementById(id);
    if (rows.length === 0) { box.replaceChildren(el('p', empty, 'empty')); return; }
    var t = el('table'), head = el('tr'), body = el('tbody');
    headers.forEach(function (h) { head.appendChild(el('th', h)); });
    var thead = el('thead'); thead.appendChild(head); t.appendChild(thead);
    rows.forEach(function (r) {
      var tr = el('tr');
      r.forEach(function (c) {
        var td = el('td');
        if (c instanceof Node) td.appendChild(c); else td.textContent = c === null || c === undefined ? '' : String(c);
        if (numeric(c)) td.className = 'n';
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    t.appendChild(body);
    box.replaceChildren(t);
  }
  /** Key-value rows [label, value, element id]. */
  function pairs(id, rows) {
    var box = document.getElementById(id), t = el('table'), body = el('tbody');
    rows.forEach(function (r) {
      var tr = el('tr'); tr.appendChild(el('th', r[0]));
      var td = el('td', r[1]); if (r[2]) td.id = r[2];
      tr.appendChild(td); body.appendChild(tr);
    });
    t.appendChild(body); box.replaceChildren(t);
  }
  function chart(title, t, values, fmt) {
    var w = 320, h = 70, fig = el('figure');
    var pts = [], max = 0, last = null, t0 = t.length ? t[0] : 0, t1 = t.length ? t[t.length - 1] : 1;
    values.forEach(function (v) { if (numeric(v) && v > max) max = v; });
    var svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('width', String(w)); svg.setAttribute('height', String(h));
    svg.setAttribute('viewBox', '0 0 ' + w + ' ' + h);
    var base = document.createElementNS(SVG, 'line');
    base.setAttribute('x1', '0'); base.setAttribute('x2', String(w)); base.setAttribute('y1', String(h - 1)); base.setAttribute('y2', String(h - 1));
    svg.appendChild(base);
    values.forEach(function (v, i) {
      if (!numeric(v)) return;
      last = v;
      var x = t1 > t0 ? ((t[i] - t0) / (t1 - t0)) * (w - 2) + 1 : w - 1;
      var y = h - 2 - (max > 0 ? (v / max) * (h - 6) : 0);
      pts.push(x.toFixed(1) + ',' + y.toFixed(1));
    });
    var line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('points', pts.join(' '));
    svg.appendChild(line);
    fig.appendChild(svg);
    fig.appendChild(el('figcaption', title + ': now ' + (last === null ? '-' : fmt(last)) + ', max ' + fmt(max) +
      (t.length > 1 ? ' over ' + age(t1 - t0) : '')));
    return fig;
  }

  function render(d) {
    var s = d.status, now = d.generatedAt || Date.now();
    document.getElementById('updated').textContent = d.generatedAt ? 'read ' + time(d.generatedAt) + ', every ' + Math.round(d.intervalMs / 1000) + 's' : 'waiting for the first reading';
    if (!s) return;
    var v = s.volume, m = s.metadata;
    document.getElementById('volume-name').textContent = v.name;
    var meta = 'epoch ' + m.epoch + (m.primaryRegion ? ', primary region ' + m.primaryRegion : '');
    if (m.demoted) meta = 'DEMOTED: region ' + m.demoted.region + ' is the primary of epoch ' + m.demoted.epoch + ' (' + m.demoted.meta + '); writes are refused here';
    if (s.replicaOf) meta = 'replica of ' + s.replicaOf.name + ' for region ' + s.replicaOf.region + ', applied seq ' + s.replicaOf.applied + '; ' + meta;
    pairs('overview', [
      ['volume', v.name, 'overview-name'],
      ['uuid', v.uuid],
      ['metadata', d.engine + ' (' + meta + ')', 'metadata'],
      ['storage', v.storage],
      ['used', bytes(s.usage.usedBytes) + ' of ' + bytes(s.usage.capacityBytes), 'used'],
      ['inodes', s.usage.inodes, 'inodes'],
      ['trash', (s.trash.partial ? 'at least ' : '') + s.trash.files + ' file(s), ' + bytes(s.trash.bytes)],
      ['awaiting gc', s.pendingDeletion.slices + ' slice(s), ' + bytes(s.pendingDeletion.bytes)],
      ['changelog', 'last seq ' + s.changelog.lastSeq + ', ' + s.changelog.length + ' entries kept', 'changelog'],
      ['sessions', s.sessions.length, 'sessions-count'],
    ]);

    var r = d.rates, rateRows = [];
    if (r) {
      rateRows.push(['metadata commits', fixed(r.commitsPerSec, 2) + '/s']);
      rateRows.push(['data written (net)', perSec(r.usageBytesPerSec)]);
      rateRows.push(['inodes', fixed(r.inodesPerSec, 2) + '/s']);
      Object.keys(r.copiedBytesPerSec).forEach(function (k) { rateRows.push(['replicated ' + k.replace('>', ' -> '), perSec(r.copiedBytesPerSec[k])]); });
      Object.keys(r.egressBytesPerSec).forEach(function (k) { rateRows.push(['read across ' + k.replace('>', ' -> '), perSec(r.egressBytesPerSec[k])]); });
    }
    if (rateRows.length) pairs('rates', rateRows); else table('rates', [], [], 'after the second reading');

    var hist = d.history, charts = document.getElementById('charts');
    charts.replaceChildren(
      chart('replication lag', hist.t, hist.replicationLagSeconds, lag),
      chart('mirror lag', hist.t, hist.mirrorLagSeconds, lag),
      chart('metadata commits', hist.t, hist.commitsPerSec, function (x) { return fixed(x, 1) + '/s'; }),
      chart('bytes replicated', hist.t, hist.copiedBytesPerSec, perSec),
      chart('bytes read from buckets, all region pairs', hist.t, hist.egressBytesPerSec, perSec)
    );

    var regions = v.regions || {};
    var names = s.regions ? s.regions.names : [];
    table('regions', ['region', 'role', 'bucket', 'replica'], names.map(function (n) {
      var rec = regions[n] || {};
      return [n, s.regions.roles[n], rec.storage || '(reads the primary\'s bucket)', rec.replica || ''];
    }), 'one region (no names): bucket ' + v.storage);

    var repl = (s.replication || []).map(function (x) {
      var copied = Object.keys(x.stats.copiedBytes).map(function (k) { return k.replace('>', ' -> ') + ' ' + bytes(x.stats.copiedBytes[k]); }).join(', ');
      return [x.name, x.seq + ' of ' + x.lastSeq, lag(x.lagSeconds), x.backlog.blocks + (x.backlog.partial ? '+' : '') + ' blocks, ' + bytes(x.backlog.bytes),
        x.pending, copied || 'nothing yet', x.stats.errors + ' / ' + x.stats.retries, age(now - x.updated) + ' ago'];
    });
    if (s.unreplicated) repl.push(['(never run)', '-', '-', s.unreplicated.blocks + ' blocks, ' + bytes(s.unreplicated.bytes), '-', '-', '-', '-']);
    table('replication', ['replicator', 'position', 'lag', 'backlog', 'failing slices', 'copied', 'errors / retries', 'reported'], repl,
      s.regions ? 'no replicator has run' : 'one region: nothing to replicate');

    table('mirrors', ['region', 'role', 'applied seq', 'lag', 'bootstraps', 'reported', 'last error'], (s.mirrors || []).map(function (x) {
      return x.applied === undefined || x.applied === null
        ? [x.region, x.role, 'follower never ran', '-', '-', '-', '']
        : [x.region, x.role, x.applied, x.lagEntries + ' entries / ' + lag(x.lagSeconds), x.bootstraps, age(now - x.updated) + ' ago', x.error || ''];
    }), 'no mirror region');

    table('processes', ['endpoint', 'state', 'FUSE ops', 'FUSE latency', 'read', 'written', 'object requests', 'object latency', 'object errors', 'metadata txns', 'metadata latency', 'block reads by tier'],
      d.processes.map(function (p) {
        var l = p.line;
        if (!l) return [p.target, p.error ? p.error : 'first reading', '', '', '', '', '', '', '', '', '', ''];
        var tiers = Object.keys(l.tiers).map(function (k) { var x = l.tiers[k]; return k + ' ' + (x.hitRatio === null ? '-' : Math.round(x.hitRatio * 100) + '%'); }).join(', ');
        return [p.target, p.error ? p.error : 'up', fixed(l.fuse.opsPerSec, 1) + '/s', fixed(l.fuse.meanLatencyMs, 2) + ' ms', perSec(l.readBytesPerSec), perSec(l.writeBytesPerSec),
          fixed(l.object.requestsPerSec, 1) + '/s', fixed(l.object.meanLatencyMs, 2) + ' ms', fixed(l.object.errorsPerSec, 2) + '/s',
          fixed(l.meta.txnsPerSec, 1) + '/s', fixed(l.meta.meanLatencyMs, 2) + ' ms', tiers];
      }), 'none (ferry dashboard --scrape HOST:PORT reads the /metrics of a mount, replicate or mirror)');

    table('groups', ['group', 'address', 'role', 'weight', 'region', 'host', 'pid', 'heartbeat'], s.cacheGroups.map(function (g) {
      return [g.group, g.address, g.role, g.weight, g.region || '', g.host, g.pid, age(g.ageMs) + ' ago' + (g.stale ? ' (gone)' : '')];
    }), 'no cache group');

    table('egress', ['bucket region', 'client region', 'last hour', 'since start'], s.egress.map(function (e) {
      return [e.from, e.to, bytes(e.lastHour), bytes(e.total)];
    }), 'nothing counted');

    table('sessions', ['sid', 'host', 'pid', 'region', 'version', 'started', 'heartbeat'], s.sessions.map(function (x) {
      return [x.sid, x.host, x.pid, x.region, x.version, time(x.started), age(x.ageMs) + ' ago' + (x.stale ? ' (dead)' : '')];
    }), 'no client session');

    table('consumers', ['consumer', 'position', 'behind', 'updated'], s.changelog.consumers.map(function (c) {
      return [c.name, c.position, c.trimmedPast ? 'behind the trimmed log' : c.behind, age(now - c.updated) + ' ago'];
    }), 'no registered consumer');

    table('errors', ['when', 'what'], d.errors.slice().reverse().map(function (e) { return [time(e.at), e.what]; }), 'none');
  }

  function setState(text, bad) {
    var st = document.getElementById('state');
    st.textContent = text;
    st.className = bad ? 'error' : '';
  }
  function tick() {
    fetch('/api/status', { credentials: 'same-origin', cache: 'no-store' })
      .then(function (res) {
        if (res.status === 401) throw new Error('not signed in: open /?token=... again');
        if (!res.ok) throw new Error('HTTP ' + res.status);
        return res.json();
      })
      .then(function (d) { render(d); setState(d.status ? '' : 'no reading yet', false); })
      .catch(function (e) { setState('cannot refresh: ' + e.message, true); })
      .then(function () { setTimeout(tick, refreshMs); });
  }
  tick();
})();
`;

/** The page; `refreshMs` is how often it polls. */
export function dashboardHtml(refreshMs: number): string {
  if (!Number.isSafeInteger(refreshMs) || refreshMs <= 0) throw new Error(`assertion failed: refreshMs ${refreshMs}`);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Ferry dashboard</title>
<style>${DASHBOARD_STYLE}</style>
</head>
<body data-refresh-ms="${refreshMs}">
<h1>Ferry volume <span id="volume-name">…</span></h1>
<p><span id="updated">loading</span> <span id="state"></span></p>
<h2>Volume</h2><div id="overview"></div>
<h2>Rates</h2><div id="rates"></div>
<h2>Last hour</h2><div id="charts" class="charts"></div>
<h2>Regions</h2><div id="regions"></div>
<h2>Replication</h2><div id="replication"></div>
<h2>Mirrors</h2><div id="mirrors"></div>
<h2>Processes</h2><div id="processes"></div>
<h2>Cache groups</h2><div id="groups"></div>
<h2>Bytes read, bucket region → client region</h2><div id="egress"></div>
<h2>Sessions</h2><div id="sessions"></div>
<h2>Changelog consumers</h2><div id="consumers"></div>
<h2>Recent errors</h2><div id="errors"></div>
<script>${DASHBOARD_SCRIPT}</script>
</body>
</html>
`;
}
