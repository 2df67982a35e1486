/* The performance page: reads the admin-api's summary, timeseries, list and stream endpoints. */
'use strict';

(function () {
  const API = '/api/llm-backends/metrics';
  const FILTERS = ['model', 'backend', 'source', 'intent', 'status'];
  const RANGES = { '15m': 15 * 60e3, '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3 };
  const BUCKETS = [['1m', 60e3], ['5m', 300e3], ['1h', 3600e3], ['1d', 86400e3]];
  const MAX_POINTS = 400;     /* points per chart at most */
  const HOURLY_FROM = 12 * 3600e3; /* ranges this long chart whole hours, read from the hourly rollups */
  const MAX_ROWS = 200;       /* rows kept in the recent-calls table */
  const REFRESH_MS = 30e3;    /* figures and charts of a relative range are refreshed this often */
  const POLL_MS = 2000;       /* list polling when the stream is not available */
  const FLUSH_MS = 500;       /* live rows reach the table at most this often */
  const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563'];

  const $ = (sel) => document.querySelector(sel);
  const form = $('#filters');
  const tbody = $('#calls tbody');
  const charts = {};
  let view = null;            /* what the URL asks for: filters, range, breakdown */
  let generation = 0;         /* answers of an older load are ignored */
  let liveSource = null;
  let pollTimer = 0;
  let refreshTimer = 0;
  let pending = [];           /* live rows waiting for the next animation frame */
  let frameAsked = false;
  let lastFlush = -Infinity;
  let maxId = 0;
  const seen = new Set();

  /* ---- the view in the URL ---- */

  function readView() {
    const q = new URLSearchParams(location.search);
    const v = { range: q.get('range') || '1h', since: q.get('since') || '', until: q.get('until') || '',
      breakdown: q.get('breakdown') === 'stage' ? 'stage' : 'intent',
      costBy: q.get('cost_by') === 'session_id' ? 'session_id' : 'user_id' };
    if (!(v.range in RANGES) && v.range !== 'custom') v.range = '1h';
    for (const f of FILTERS) v[f] = q.get(f) || '';
    if (v.status !== 'ok' && v.status !== 'error') v.status = '';
    return v;
  }

  function writeView(v, push) {
    const q = new URLSearchParams();
    for (const f of FILTERS) if (v[f]) q.set(f, v[f]);
    q.set('range', v.range);
    if (v.range === 'custom') {
      if (v.since) q.set('since', v.since);
      if (v.until) q.set('until', v.until);
    }
    if (v.breakdown !== 'intent') q.set('breakdown', v.breakdown);
    if (v.costBy !== 'user_id') q.set('cost_by', v.costBy);
    const url = location.pathname + '?' + q.toString();
    if (url !== location.pathname + location.search) history[push ? 'pushState' : 'replaceState'](null, '', url);
  }

  /* ISO time (UTC) to the value of a datetime-local input, in local time. */
  function toLocalInput(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return '';
    const p = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
  }

  function fillForm(v) {
    for (const f of FILTERS) form.elements[f].value = v[f];
    form.elements.range.value = v.range;
    form.elements.since.value = v.since ? toLocalInput(v.since) : '';
    form.elements.until.value = v.until ? toLocalInput(v.until) : '';
    form.classList.toggle('is-custom', v.range === 'custom');
    $('#breakdown').value = v.breakdown;
    $('#costby').value = v.costBy;
  }

  function formView() {
    const v = { range: form.elements.range.value, breakdown: $('#breakdown').value, costBy: $('#costby').value,
      since: '', until: '' };
    for (const f of FILTERS) v[f] = form.elements[f].value.trim();
    if (v.range === 'custom') {
      const s = new Date(form.elements.since.value), u = new Date(form.elements.until.value);
      /* Starting a custom range from a relative one keeps the times it showed. */
      v.since = isNaN(s) ? new Date(Date.now() - 3600e3).toISOString() : s.toISOString();
      v.until = isNaN(u) ? new Date().toISOString() : u.toISOString();
    }
    return v;
  }

  /* The [since, until) of a view, in ms, and the bucket for its charts. */
  function rangeOf(v) {
    let until = Date.now(), since = until - (RANGES[v.range] || 3600e3);
    if (v.range === 'custom') {
      const s = Date.parse(v.since), u = Date.parse(v.until);
      if (!isNaN(u)) until = u;
      since = !isNaN(s) ? s : until - 3600e3;
    }
    let bucket = BUCKETS[BUCKETS.length - 1];
    const least = until - since >= HOURLY_FROM ? 3600e3 : 0;
    for (const b of BUCKETS) if (b[1] >= least && (until - since) / b[1] <= MAX_POINTS) { bucket = b; break; }
    return { since, until, bucket: bucket[0], bucketMs: bucket[1], live: v.range !== 'custom' };
  }

  function query(v, r, extra) {
    const q = new URLSearchParams();
    q.set('since', new Date(r.since).toISOString());
    q.set('until', new Date(r.until).toISOString());
    for (const f of FILTERS) if (v[f]) q.set(f, v[f]);
    for (const k in extra) q.set(k, extra[k]);
    return q.toString();
  }

  /* ---- fetching ---- */

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function getJSON(url) {
    let r;
    try {
      r = await fetch(url, { headers: { Accept: 'application/json' } });
    } catch (e) {
      throw new ApiError(0, 'the admin-api cannot be reached');
    }
    let body = null;
    try { body = await r.json(); } catch (e) { /* an error page without JSON */ }
    if (!r.ok) throw new ApiError(r.status, (body && body.error) || r.statusText || 'request failed');
    return body;
  }

  function describe(err) {
    if (err.status === 503) return `The database is not available (503: ${err.message}). Figures will return when it does.`;
    if (err.status) return `The admin-api answered ${err.status}: ${err.message}`;
    return err.message;
  }

  function notice(text, isError) {
    const n = $('#notice');
    n.textContent = text || '';
    n.hidden = !text;
    n.classList.toggle('error', !!isError);
  }

  /* ---- formatting ---- */

  const num = new Intl.NumberFormat('en-US');
  function fmtSec(v) {
    if (v == null) return '–';
    if (v < 1) return (v * 1000).toFixed(v < 0.01 ? 1 : 0) + ' ms';
    return v.toFixed(v < 10 ? 2 : 1) + ' s';
  }
  const fmtRate = (v) => (v == null ? '–' : (v * 100).toFixed(v < 0.1 ? 2 : 1) + ' %');
  const fmtNum = (v, d) => (v == null ? '–' : d ? v.toFixed(d) : num.format(v));
  function fmtTime(iso, withDate) {
    const d = new Date(iso);
    if (isNaN(d)) return iso || '';
    const t = d.toLocaleTimeString('en-GB', { hour12: false });
    return withDate ? d.toLocaleDateString('en-CA') + ' ' + t : t;
  }
  const FORMAT = { count: (v) => fmtNum(v), error_rate: fmtRate, latency_p50: fmtSec, latency_p95: fmtSec,
    latency_p99: fmtSec, tokens_per_second_p50: (v) => fmtNum(v, 1), ttft_p50: fmtSec, total_tokens: (v) => fmtNum(v),
    cost_usd: fmtUSD };

  /* ---- cost ---- */

  /* Estimated cost in US dollars: cents from $0.01 up, two significant digits below. */
  function fmtUSD(v) {
    if (v == null) return '–';
    if (v === 0) return '$0';
    if (v < 0.01) return '$' + v.toPrecision(2);
    return '$' + v.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }
  const costHead = () => '<th class="n" title="estimated from token counts and the model prices">Cost</th>';
  const costCell = (g) => `<td class="n" data-cost="${g.cost_usd == null ? '' : g.cost_usd}">${fmtUSD(g.cost_usd)}</td>`;

  /* ---- headline figures ---- */

  function renderFigures(summary) {
    const g = (summary.groups && summary.groups[0]) || {};
    for (const dd of document.querySelectorAll('.figures dd')) {
      const k = dd.dataset.key, v = g[k] == null ? null : g[k];
      dd.dataset.value = v == null ? '' : String(v);
      dd.textContent = FORMAT[k](v);
    }
    const approx = summary.percentiles === 'approximate' ? ' · percentiles approximate (hourly rollups)' : '';
    $('#range-text').textContent = `${fmtTime(summary.since, true)} – ${fmtTime(summary.until, true)}` +
      (g.count === 0 ? ' · no calls in this range' : '') + approx;
  }

  /* ---- charts ---- */

  function setEmpty(panel, text) {
    const e = panel.querySelector('.empty');
    e.textContent = text || '';
    e.hidden = !text;
    const c = panel.querySelector('.chart');
    if (c) c.hidden = !!text;
  }

  function timeTick(r) {
    const long = r.until - r.since > 36 * 3600e3;
    return (value) => {
      const d = new Date(value);
      return long ? d.toLocaleDateString('en-GB', { day: '2-digit', month: 'short' }) + ' ' +
        d.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit' })
        : d.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit' });
    };
  }

  function lineChart(id, datasets, r, yTitle) {
    const options = {
      animation: false, responsive: true, maintainAspectRatio: false, parsing: false, normalized: true,
      interaction: { mode: 'nearest', axis: 'x', intersect: false },
      scales: {
        x: { type: 'linear', min: r.since, max: r.until, ticks: { callback: timeTick(r), maxTicksLimit: 8 } },
        y: { beginAtZero: true, title: { display: true, text: yTitle } },
      },
      plugins: { legend: { labels: { boxWidth: 12 } },
        tooltip: { callbacks: { title: (items) => items.length ? fmtTime(new Date(items[0].parsed.x), true) : '' } } },
      elements: { point: { radius: 0, hitRadius: 6 }, line: { borderWidth: 1.5 } },
    };
    return upsert(id, 'line', { datasets }, options);
  }

  function upsert(key, type, data, options, canvas) {
    const old = charts[key];
    if (old && old.config.type === type) {
      old.data = data;
      old.options = options;
      old.update('none');
      return old;
    }
    if (old) old.destroy();
    charts[key] = new Chart(canvas || document.getElementById(key), { type, data, options });
    return charts[key];
  }

  function ds(label, points, i, extra) {
    return Object.assign({ label, data: points, borderColor: COLORS[i % COLORS.length],
      backgroundColor: COLORS[i % COLORS.length], spanGaps: false }, extra || {});
  }

  function renderSeries(ts, r) {
    const pts = ts.points || [];
    const lat = $('#c-latency').closest('.panel'), rate = $('#c-rate').closest('.panel');
    const empty = pts.length ? '' : 'No calls in this range.';
    setEmpty(lat, empty);
    setEmpty(rate, empty);
    const at = (p) => Date.parse(p.bucket);
    const sec = r.bucketMs / 1000;
    lineChart('c-latency', [
      ds('p50', pts.map((p) => ({ x: at(p), y: p.latency_p50 })), 0),
      ds('p95', pts.map((p) => ({ x: at(p), y: p.latency_p95 })), 3),
      ds('p99', pts.map((p) => ({ x: at(p), y: p.latency_p99 })), 1),
    ], r, 'seconds');
    /* The API leaves empty buckets out; for the rate they are zeros, not gaps to draw across. */
    const byBucket = new Map(pts.map((p) => [at(p), p]));
    const req = [], err = [];
    if (pts.length) {
      for (let t = Math.floor(r.since / r.bucketMs) * r.bucketMs; t < r.until; t += r.bucketMs) {
        const p = byBucket.get(t);
        req.push({ x: t, y: p ? p.count / sec : 0 });
        err.push({ x: t, y: p ? p.errors / sec : 0 });
      }
    }
    lineChart('c-rate', [
      ds('requests/s', req, 0, { fill: true, backgroundColor: 'rgba(37,99,235,.15)' }),
      ds('errors/s', err, 1),
    ], r, `per second (${r.bucket} buckets)`);
  }

  function renderTps(ts, r) {
    const pts = ts.points || [];
    setEmpty($('#c-tps').closest('.panel'), pts.length ? '' : 'No calls in this range.');
    const by = new Map();
    for (const p of pts) {
      const k = p.group == null ? '(none)' : p.group;
      if (!by.has(k)) by.set(k, []);
      by.get(k).push({ x: Date.parse(p.bucket), y: p.tokens_per_second_p50 });
    }
    lineChart('c-tps', [...by].map(([k, d], i) => ds(k, d, i)), r, 'tokens/s');
  }

  function barOptions(yTitle, horizontal) {
    return { animation: false, responsive: true, maintainAspectRatio: false, indexAxis: horizontal ? 'y' : 'x',
      scales: { [horizontal ? 'x' : 'y']: { beginAtZero: true, title: { display: true, text: yTitle } } },
      plugins: { legend: { display: !horizontal, labels: { boxWidth: 12 } } } };
  }

  const label = (g) => (g.group == null ? '(none)' : g.group);

  function renderCompare(id, summary) {
    const panel = document.getElementById(id);
    const groups = summary.groups || [];
    setEmpty(panel, groups.length ? '' : 'No calls in this range.');
    panel.querySelector('.scroll').hidden = !groups.length;
    upsert(id, 'bar', { labels: groups.map(label), datasets: [
      ds('p50', groups.map((g) => g.latency_p50), 0),
      ds('p95', groups.map((g) => g.latency_p95), 3),
      ds('p99', groups.map((g) => g.latency_p99), 1),
    ] }, barOptions('latency (s)'), panel.querySelector('canvas'));
    const table = panel.querySelector('table');
    const rows = groups.map((g) => `<tr><td>${esc(label(g))}</td><td class="n">${fmtNum(g.count)}</td>` +
      `<td class="n ${g.errors ? 'st-error' : ''}">${fmtRate(g.error_rate)}</td><td class="n">${fmtSec(g.latency_p50)}</td>` +
      `<td class="n">${fmtSec(g.latency_p95)}</td><td class="n">${fmtSec(g.latency_p99)}</td>` +
      `<td class="n">${fmtNum(g.tokens_per_second_p50, 1)}</td><td class="n">${fmtSec(g.ttft_p50)}</td>` +
      `<td class="n">${fmtNum(g.total_tokens)}</td>${costCell(g)}</tr>`).join('');
    table.innerHTML = '<thead><tr><th></th><th class="n">Calls</th><th class="n">Errors</th><th class="n">p50</th>' +
      '<th class="n">p95</th><th class="n">p99</th><th class="n">Tokens/s</th><th class="n">TTFT p50</th>' +
      '<th class="n">Tokens</th>' + costHead() + '</tr></thead><tbody>' + rows + '</tbody>';
    const list = document.getElementById('dl-' + id.slice(4));
    if (list) mergeOptions(list, groups.map((g) => g.group).filter((x) => x != null));
  }

  function renderBreakdown(summary, by) {
    const panel = $('#c-breakdown').closest('.panel');
    const groups = summary.groups || [];
    setEmpty(panel, groups.length ? '' : 'No calls in this range.');
    upsert('c-breakdown', 'bar', { labels: groups.map(label), datasets: [
      ds('calls', groups.map((g) => g.count - g.errors), 0, { stack: 's' }),
      ds('errors', groups.map((g) => g.errors), 1, { stack: 's' }),
    ] }, Object.assign(barOptions('calls', true), { plugins: { legend: { display: true, labels: { boxWidth: 12 } } },
      scales: { x: { stacked: true, beginAtZero: true, title: { display: true, text: 'calls' } }, y: { stacked: true } } }));
    if (by === 'intent') mergeOptions($('#dl-intent'), groups.map((g) => g.group).filter((x) => x != null));
  }

  /* The groups of highest cost (summary with top=COST_TOP), by user or by session. */
  const COST_TOP = 20;

  function renderCostBy(summary) {
    const panel = document.getElementById('cost-by');
    const groups = (summary.groups || []).slice().sort((a, b) => Number(b.cost_usd) - Number(a.cost_usd) || b.count - a.count);
    setEmpty(panel, groups.length ? '' : 'No calls in this range.');
    panel.querySelector('.scroll').hidden = !groups.length;
    const rows = groups.map((g) => `<tr><td>${esc(label(g))}</td><td class="n">${fmtNum(g.count)}</td>` +
      `<td class="n">${fmtNum(g.total_tokens)}</td>${costCell(g)}</tr>`).join('');
    panel.querySelector('table').innerHTML = '<thead><tr><th></th><th class="n">Calls</th><th class="n">Tokens</th>' +
      costHead() + '</tr></thead><tbody>' + rows + '</tbody>';
  }

  function mergeOptions(list, values) {
    const have = new Set([...list.options].map((o) => o.value));
    for (const v of values) {
      if (have.has(v)) continue;
      const o = document.createElement('option');
      o.value = v;
      list.appendChild(o);
    }
  }

  /* ---- recent calls ---- */

  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  }

  function cell(tr, text, cls) {
    const td = document.createElement('td');
    td.textContent = text == null ? '' : text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function rowOf(m) {
    const tr = document.createElement('tr');
    tr.dataset.id = m.id;
    tr._metric = m;
    cell(tr, fmtTime(m.timestamp, view.range === '7d' || view.range === 'custom'));
    cell(tr, m.model);
    cell(tr, m.backend);
    cell(tr, fmtSec(m.latency_seconds), 'n');
    cell(tr, fmtNum(m.tokens != null ? m.tokens : m.tokens_generated), 'n');
    cell(tr, fmtNum(m.tokens_per_second, 1), 'n');
    cell(tr, fmtSec(m.ttft_seconds), 'n');
    cell(tr, m.status === 'error' ? 'error' + (m.error_type ? ` (${m.error_type})` : '') : m.status,
      m.status === 'error' ? 'st-error' : 'st-ok');
    cell(tr, m.source);
    cell(tr, m.intent);
    cell(tr, m.session_id);
    const td = cell(tr, '');
    if (m.request_id) {
      const a = document.createElement('a');
      a.href = '#';
      a.className = 'req';
      a.textContent = m.request_id;
      a.dataset.request = m.request_id;
      td.appendChild(a);
    }
    return tr;
  }

  function setRows(list) {
    seen.clear();
    pending = [];
    const frag = document.createDocumentFragment();
    for (const m of list.slice(0, MAX_ROWS)) {
      seen.add(m.id);
      if (m.id > maxId) maxId = m.id;
      frag.appendChild(rowOf(m));
    }
    tbody.replaceChildren(frag);
    updateEmpty();
  }

  function updateEmpty() {
    const e = $('#calls-empty');
    const none = !tbody.firstChild;
    e.hidden = !none;
    e.textContent = none ? 'No calls in this range' + (view && rangeOf(view).live ? ' yet; new ones appear here as they are made.' : '.') : '';
  }

  /*
   * Live rows are queued and added in one DOM update at most every FLUSH_MS,
   * on an animation frame, whatever their rate: a table of 200 rows costs a
   * layout per update, which 60 updates a second would spend all the time on.
   */
  function queueRow(m) {
    if (seen.has(m.id)) return;
    seen.add(m.id);
    if (m.id > maxId) maxId = m.id;
    pending.push(m);
    if (pending.length > MAX_ROWS) pending.splice(0, pending.length - MAX_ROWS);
    if (!frameAsked) {
      frameAsked = true;
      const wait = Math.max(0, lastFlush + FLUSH_MS - performance.now());
      setTimeout(() => requestAnimationFrame(flushRows), wait);
    }
  }

  function flushRows(now) {
    frameAsked = false;
    lastFlush = now;
    if (!pending.length) return;
    /* A few new rows flash; a flood does not (the animation would keep the page repainting). */
    const flash = pending.length <= 3;
    const frag = document.createDocumentFragment();
    for (let i = pending.length - 1; i >= 0; i--) {
      const tr = rowOf(pending[i]);
      if (flash) tr.className = 'new';
      frag.appendChild(tr);
    }
    pending = [];
    tbody.insertBefore(frag, tbody.firstChild);
    while (tbody.rows.length > MAX_ROWS) {
      const last = tbody.lastChild;
      seen.delete(Number(last.dataset.id));
      last.remove();
    }
    updateEmpty();
  }

  function setLive(mode, text) {
    const el = $('#live');
    el.className = 'live ' + mode;
    el.textContent = text;
    document.body.dataset.live = mode;
  }

  function stopLive() {
    if (liveSource) liveSource.close();
    liveSource = null;
    clearTimeout(pollTimer);
    pollTimer = 0;
  }

  function streamFilters() {
    const q = new URLSearchParams();
    for (const f of FILTERS) if (view[f]) q.set(f, view[f]);
    return q;
  }

  function startLive(gen) {
    stopLive();
    if (!rangeOf(view).live) {
      setLive('off', 'live updates off for a custom range');
      return;
    }
    if (!window.EventSource) return startPolling(gen, 'this browser has no EventSource');
    const q = streamFilters();
    if (maxId) q.set('since_id', String(maxId));
    const es = new EventSource(API + '/stream?' + q.toString());
    liveSource = es;
    let opened = false;
    es.onopen = () => {
      opened = true;
      setLive('on', 'live');
    };
    es.addEventListener('metric', (e) => {
      try { queueRow(JSON.parse(e.data)); } catch (err) { /* a malformed event is skipped */ }
    });
    es.addEventListener('dropped', (e) => {
      let d = {};
      try { d = JSON.parse(e.data); } catch (err) { /* ignored */ }
      $('#recent-note').textContent = `(${d.count || 'some'} live calls skipped: ${d.reason || 'dropped'})`;
    });
    es.onerror = () => {
      if (gen !== generation) return;
      if (es.readyState === EventSource.CLOSED) {
        /* The stream answered with an error (not there yet, or full): fall back to polling. */
        es.close();
        liveSource = null;
        startPolling(gen, opened ? 'the live stream closed' : 'the live stream is not available');
      } else {
        setLive('poll', 'reconnecting…');
      }
    };
  }

  function startPolling(gen, why) {
    setLive('poll', `polling every ${POLL_MS / 1000} s (${why})`);
    const tick = async () => {
      if (gen !== generation) return;
      try {
        const q = streamFilters();
        q.set('limit', '100');
        const list = await getJSON(API + '?' + q.toString());
        if (gen !== generation) return;
        for (const m of list.slice().reverse()) if (m.id > maxId || !seen.has(m.id)) queueRow(m);
      } catch (e) { /* the next tick tries again; load() shows lasting errors */ }
      pollTimer = setTimeout(tick, POLL_MS);
    };
    pollTimer = setTimeout(tick, POLL_MS);
  }

  /* ---- details ---- */

  function showDetail(title, node) {
    const d = $('#detail');
    d.querySelector('h2').textContent = title;
    d.querySelector('.body').replaceChildren(node);
    if (!d.open) d.showModal();
  }

  function recordTable(m) {
    const t = document.createElement('table');
    t.className = 'kv';
    for (const k of Object.keys(m)) {
      const tr = t.insertRow();
      const th = document.createElement('th');
      th.textContent = k;
      tr.appendChild(th);
      cell(tr, m[k] == null ? 'null' : String(m[k]));
    }
    return t;
  }

  async function showRequest(id) {
    showDetail(`Request ${id}`, document.createTextNode('Loading…'));
    try {
      const list = await getJSON(API + '?' + new URLSearchParams({ request_id: id, limit: '1000' }).toString());
      if (!list.length) return showDetail(`Request ${id}`, document.createTextNode('No calls stored for this request.'));
      const wrap = document.createElement('div');
      wrap.className = 'scroll';
      const t = document.createElement('table');
      t.id = 'request-calls';
      t.innerHTML = '<thead><tr><th>Time</th><th>Stage</th><th>Model</th><th>Backend</th><th class="n">Latency</th>' +
        '<th class="n">Tokens</th><th class="n">Tokens/s</th><th class="n">TTFT</th><th>Status</th><th>Source</th></tr></thead>';
      const body = t.createTBody();
      for (const m of list.slice().reverse()) {
        const tr = body.insertRow();
        cell(tr, fmtTime(m.timestamp, true));
        cell(tr, m.stage);
        cell(tr, m.model);
        cell(tr, m.backend);
        cell(tr, fmtSec(m.latency_seconds), 'n');
        cell(tr, fmtNum(m.tokens), 'n');
        cell(tr, fmtNum(m.tokens_per_second, 1), 'n');
        cell(tr, fmtSec(m.ttft_seconds), 'n');
        cell(tr, m.status, m.status === 'error' ? 'st-error' : 'st-ok');
        cell(tr, m.source);
      }
      wrap.appendChild(t);
      const p = document.createElement('p');
      p.textContent = `${list.length} call${list.length === 1 ? '' : 's'}, oldest first.`;
      const box = document.createElement('div');
      box.append(p, wrap);
      showDetail(`Request ${id}`, box);
    } catch (e) {
      showDetail(`Request ${id}`, document.createTextNode(describe(e)));
    }
  }

  tbody.addEventListener('click', (e) => {
    const a = e.target.closest('a.req');
    if (a) {
      e.preventDefault();
      showRequest(a.dataset.request);
      return;
    }
    const tr = e.target.closest('tr');
    if (tr && tr._metric) showDetail(`Call ${tr._metric.id}`, recordTable(tr._metric));
  });

  /* ---- loading a view ---- */

  /*
   * Each request asks only for what its part draws (figures=...): percentiles are the costly
   * part of a long range, and the tokens/s chart needs none of the latency ones.
   */

  async function load() {
    const gen = ++generation;
    clearTimeout(refreshTimer);
    const r = rangeOf(view);
    document.body.dataset.state = 'loading';
    document.body.dataset.since = new Date(r.since).toISOString();
    document.body.dataset.until = new Date(r.until).toISOString();
    const by = view.breakdown;
    /* A part that cannot be loaded says why in its own place. */
    const part = (url, render, panel) => getJSON(url).then((s) => gen === generation && render(s), (e) => {
      if (gen === generation && panel) {
        setEmpty(panel, 'Not available: ' + describe(e));
        const t = panel.querySelector('.scroll');
        if (t) t.hidden = true;
      }
      throw e;
    });
    const panelOf = (id) => document.getElementById(id).closest('.panel');
    const jobs = [
      part(API + '/summary?' + query(view, r, {}), renderFigures, null),
      part(API + '/timeseries?' + query(view, r, { bucket: r.bucket, figures: 'latency' }), (s) => renderSeries(s, r), null)
        .catch((e) => { setEmpty(panelOf('c-latency'), 'Not available: ' + describe(e)); setEmpty(panelOf('c-rate'), 'Not available: ' + describe(e)); throw e; }),
      part(API + '/timeseries?' + query(view, r, { bucket: r.bucket, group_by: 'model', figures: 'tokens_per_second' }),
        (s) => renderTps(s, r), panelOf('c-tps')),
      part(API + '/summary?' + query(view, r, { group_by: 'model' }), (s) => renderCompare('cmp-model', s), panelOf('cmp-model')),
      part(API + '/summary?' + query(view, r, { group_by: 'backend' }), (s) => renderCompare('cmp-backend', s), panelOf('cmp-backend')),
      part(API + '/summary?' + query(view, r, { group_by: by, figures: 'counts' }), (s) => renderBreakdown(s, by), panelOf('c-breakdown')),
      part(API + '/summary?' + query(view, r, { group_by: view.costBy, figures: 'counts', top: String(COST_TOP) }),
        renderCostBy, document.getElementById('cost-by')),
    ];
    /* The table first (the stream resumes after its newest id), then live updates. */
    const listed = getJSON(API + '?' + query(view, r, { limit: '100' })).then((list) => {
      if (gen !== generation) return;
      maxId = 0;
      setRows(list);
      startLive(gen);
    }, (e) => {
      if (gen !== generation) return;
      stopLive();
      setLive('off', 'no live updates');
      const el = $('#calls-empty');
      el.textContent = 'Recent calls are not available: ' + describe(e);
      el.hidden = false;
      throw e;
    });
    jobs.push(listed);
    const results = await Promise.allSettled(jobs);
    if (gen !== generation) return;
    const failed = results.filter((x) => x.status === 'rejected').map((x) => x.reason);
    if (failed.length) {
      notice(describe(failed[0]) + ' Trying again every 10 s.', true);
      document.body.dataset.state = 'error';
      refreshTimer = setTimeout(load, 10e3);
      return;
    }
    notice('');
    document.body.dataset.state = 'ready';
    if (!window.__amReady) window.__amReady = performance.now();
    if (r.live) refreshTimer = setTimeout(refresh, REFRESH_MS);
  }

  /* Figures and charts of a relative range follow the clock; the table is live already. */
  async function refresh() {
    const gen = generation;
    const r = rangeOf(view);
    try {
      const [sum, ts, tps, m, b, br, cb] = await Promise.all([
        getJSON(API + '/summary?' + query(view, r, {})),
        getJSON(API + '/timeseries?' + query(view, r, { bucket: r.bucket, figures: 'latency' })),
        getJSON(API + '/timeseries?' + query(view, r, { bucket: r.bucket, group_by: 'model', figures: 'tokens_per_second' })),
        getJSON(API + '/summary?' + query(view, r, { group_by: 'model' })),
        getJSON(API + '/summary?' + query(view, r, { group_by: 'backend' })),
        getJSON(API + '/summary?' + query(view, r, { group_by: view.breakdown, figures: 'counts' })),
        getJSON(API + '/summary?' + query(view, r, { group_by: view.costBy, figures: 'counts', top: String(COST_TOP) })),
      ]);
      if (gen !== generation) return;
      document.body.dataset.since = new Date(r.since).toISOString();
      document.body.dataset.until = new Date(r.until).toISOString();
      requestAnimationFrame(() => {
        renderFigures(sum);
        renderSeries(ts, r);
        renderTps(tps, r);
        renderCompare('cmp-model', m);
        renderCompare('cmp-backend', b);
        renderBreakdown(br, view.breakdown);
        renderCostBy(cb);
      });
      notice('');
    } catch (e) {
      if (gen === generation) notice(describe(e), true);
    }
    if (gen === generation) refreshTimer = setTimeout(refresh, REFRESH_MS);
  }

  function apply(push) {
    view = formView();
    form.classList.toggle('is-custom', view.range === 'custom');
    writeView(view, push);
    load();
  }

  form.addEventListener('change', () => apply(true));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    apply(true);
  });
  $('#breakdown').addEventListener('change', () => apply(true));
  $('#costby').addEventListener('change', () => apply(true));
  $('#clear').addEventListener('click', () => {
    for (const f of FILTERS) form.elements[f].value = '';
    apply(true);
  });
  window.addEventListener('popstate', () => {
    view = readView();
    fillForm(view);
    load();
  });

  /* ---- firing alerts (GET /api/llm-backends/alerts?state=firing), whatever the view ---- */

  const ALERTS_MS = 30e3;     /* the firing alerts are read again this often */

  function renderAlerts(rules) {
    const box = $('#alerts');
    const ul = box.querySelector('ul');
    ul.replaceChildren(...rules.map((a) => {
      const li = document.createElement('li');
      const scope = Object.entries(a.scope || {}).map(([k, v]) => `${k}=${v}`).join(', ') || 'all calls';
      const value = a.last_value == null ? 'no value' : Number(a.last_value.toPrecision(4));
      li.dataset.id = a.id;
      li.append(document.createElement('strong'), ' ', document.createElement('span'));
      li.firstChild.textContent = a.name;
      li.lastChild.className = 'muted';
      li.lastChild.textContent = `${a.metric} ${value} ${a.op} ${a.threshold} over ${a.window_seconds} s ` +
        `(${scope}, ${a.last_calls} calls), firing since ${fmtTime(a.state_since, true)}`;
      return li;
    }));
    box.hidden = rules.length === 0;
  }

  /* The panel stays as it was when the alerts cannot be read: the rest of the page says why. */
  async function loadAlerts() {
    try {
      renderAlerts(await getJSON('/api/llm-backends/alerts?state=firing'));
    } catch (e) { /* shown by the figures' notice when the database is away */ }
    setTimeout(loadAlerts, ALERTS_MS);
  }

  function start() {
    if (!window.Chart) {
      notice('The chart library did not load; reload the page.', true);
      return;
    }
    Chart.defaults.font.size = 11;
    view = readView();
    fillForm(view);
    writeView(view, false);
    load();
    loadAlerts();
  }
  start();
})();
