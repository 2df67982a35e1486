// Browser test of the performance page in headless Chromium (tests/integration/page.sh runs it).
//
// Environment: ADMIN (base URL of an admin-api with known metrics), ADMIN_DOWN
// (an admin-api whose database cannot be reached), COLLECTOR_BUS and LOAD_BIN
// (to publish one metric on the bus), ARTEFACTS (folder for screenshots),
// EXPECT_COUNT (metrics page.sh stored in the last hour), EXPECT_REQUEST
// (a request id with EXPECT_REQUEST_CALLS calls), EXPECT_ALERT (the one alert rule firing).
'use strict';

const { chromium } = require('playwright-core');
const { spawn } = require('child_process');
const path = require('path');

const env = (k) => {
  if (!process.env[k]) throw new Error(`${k} is not set`);
  return process.env[k];
};
const ADMIN = env('ADMIN');
const ARTEFACTS = env('ARTEFACTS');
const FIGURES = ['count', 'error_rate', 'latency_p50', 'latency_p95', 'latency_p99',
  'tokens_per_second_p50', 'ttft_p50', 'total_tokens', 'cost_usd'];

let failures = 0;
function check(desc, ok, detail) {
  if (ok) {
    console.log(`ok   ${desc}`);
  } else {
    failures++;
    console.log(`FAIL ${desc}${detail ? ': ' + detail : ''}`);
  }
}

async function getJSON(p) {
  const r = await fetch(ADMIN + p);
  if (!r.ok) throw new Error(`${p}: ${r.status}`);
  return r.json();
}

function sameNumber(shown, want) {
  if (want === null || want === undefined) return shown === '';
  return shown !== '' && Math.abs(Number(shown) - want) <= 1e-9 * Math.max(1, Math.abs(want));
}

// The page's figures against the summary endpoint over the range the page used.
async function checkFigures(page, filters, desc) {
  const since = await page.getAttribute('body', 'data-since');
  const until = await page.getAttribute('body', 'data-until');
  const q = new URLSearchParams(Object.assign({ since, until }, filters));
  const want = (await getJSON('/api/llm-backends/metrics/summary?' + q)).groups[0];
  for (const k of FIGURES) {
    const shown = await page.getAttribute(`#f-${k}`, 'data-value');
    const text = (await page.textContent(`#f-${k}`)).trim();
    check(`${desc}: ${k} shown as the summary's (${want[k]} -> "${text}")`,
      sameNumber(shown, want[k]) && text !== '', `page ${shown}, summary ${want[k]}`);
  }
  return want;
}

// The intent breakdown's bars (calls and errors stacked) against the summary grouped by intent.
async function checkBreakdown(page, desc) {
  const since = await page.getAttribute('body', 'data-since');
  const until = await page.getAttribute('body', 'data-until');
  const want = (await getJSON('/api/llm-backends/metrics/summary?' +
    new URLSearchParams({ since, until, group_by: 'intent' }))).groups;
  const shown = await page.evaluate(() => {
    const d = Chart.getChart('c-breakdown').data;
    return d.labels.map((l, i) => [l, d.datasets[0].data[i] + d.datasets[1].data[i], d.datasets[1].data[i]]);
  });
  const expect = want.map((g) => [g.group == null ? '(none)' : g.group, g.count, g.errors]);
  check(`${desc}: the intent breakdown shows the summary's counts and errors`,
    JSON.stringify(shown) === JSON.stringify(expect), `page ${JSON.stringify(shown)}, summary ${JSON.stringify(expect)}`);
}

// The model comparison's cost column against the summary grouped by model (page.sh prices phi3:mini only).
async function checkCostByModel(page, desc) {
  const since = await page.getAttribute('body', 'data-since');
  const until = await page.getAttribute('body', 'data-until');
  const want = (await getJSON('/api/llm-backends/metrics/summary?' +
    new URLSearchParams({ since, until, group_by: 'model' }))).groups.map((g) => [g.group, g.cost_usd]);
  const shown = await page.$$eval('#cmp-model table tbody tr',
    (trs) => trs.map((t) => [t.cells[0].textContent, Number(t.querySelector('[data-cost]').dataset.cost)]));
  check(`${desc}: the model comparison shows the summary's cost by model`,
    JSON.stringify(shown) === JSON.stringify(want) && want.some((g) => g[1] > 0) && want.some((g) => g[1] === 0),
    `page ${JSON.stringify(shown)}, summary ${JSON.stringify(want)}`);
}

// The cost by user and by session: the summary's groups of highest cost (at most 20), highest first.
async function checkCostBy(page, desc) {
  for (const by of ['session_id', 'user_id']) {
    await page.selectOption('#costby', by);
    await ready(page);
    const since = await page.getAttribute('body', 'data-since');
    const until = await page.getAttribute('body', 'data-until');
    const groups = (await getJSON('/api/llm-backends/metrics/summary?' +
      new URLSearchParams({ since, until, group_by: by, figures: 'counts' }))).groups;
    const want = groups.sort((a, b) => Number(b.cost_usd) - Number(a.cost_usd) || b.count - a.count)
      .slice(0, 20).map((g) => [g.group == null ? '(none)' : g.group, g.count, Number(g.cost_usd)]);
    const shown = await page.$$eval('#cost-by table tbody tr', (trs) => trs.map((t) =>
      [t.cells[0].textContent, Number(t.cells[1].textContent.replace(/[^0-9]/g, '')), Number(t.querySelector('[data-cost]').dataset.cost)]));
    check(`${desc}: cost by ${by} shows the summary's groups of highest cost`,
      JSON.stringify(shown) === JSON.stringify(want) && want.length > 0 && want[0][2] > 0,
      `page ${JSON.stringify(shown)}, summary ${JSON.stringify(want)}`);
  }
}

// The request-rate chart integrates to the summary's count: every call is in one bucket.
async function checkRate(page, count, desc) {
  const r = await page.evaluate(() => {
    const c = Chart.getChart('c-rate');
    const d = c.data.datasets[0].data;
    const step = d.length > 1 ? d[1].x - d[0].x : 0;
    return { sum: d.reduce((a, p) => a + p.y, 0) * step / 1000, step, title: c.options.scales.y.title.text };
  });
  check(`${desc}: the request rate adds up to the summary's count (${count})`,
    Math.abs(r.sum - count) < 1e-6 * Math.max(1, count), `${r.sum} over buckets of ${r.step} ms`);
  return r;
}

// The firing-alerts panel lists the rules the alerts endpoint says are firing, and only those.
async function checkAlerts(page) {
  const want = env('EXPECT_ALERT');
  await page.waitForSelector('#alerts:not([hidden]) li', { timeout: 5000 }).catch(() => {});
  const shown = await page.$$eval('#alerts:not([hidden]) li strong', (s) => s.map((e) => e.textContent));
  check(`the firing-alerts panel shows ${want} only`, shown.join(',') === want, shown.join(',') || 'nothing');
  const text = await page.$eval('#alerts li', (li) => li.textContent).catch(() => '');
  check('a firing alert says its metric, threshold and window', /request_rate .* > 0\.001 over 3600 s/.test(text), text);
}

async function ready(page) {
  await page.waitForSelector('body[data-state="ready"]', { timeout: 15000 });
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    // The CI flags of headless Chromium: on a loaded machine a renderer that is slow to
    // answer must not be throttled or put to sleep as a background tab would be.
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run',
      '--disable-dev-shm-usage', '--disable-renderer-backgrounding',
      '--disable-background-timer-throttling', '--disable-backgrounding-occluded-windows',
      '--disable-hang-monitor'],
  });
  let closing = false;
  browser.on('disconnected', () => {
    if (!closing) console.error('chromium exited before the test ended');
  });
  const consoleErrors = [];
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  page.on('crash', () => console.error('the page\'s renderer crashed'));

  // First load: bytes over the wire (CDP) and time until the page has drawn its data.
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  let bytes = 0;
  const perUrl = new Map();
  const urls = new Map();
  cdp.on('Network.responseReceived', (e) => urls.set(e.requestId, e.response.url));
  cdp.on('Network.loadingFinished', (e) => {
    bytes += e.encodedDataLength;
    const u = (urls.get(e.requestId) || '?').replace(ADMIN, '').split('?')[0];
    if (u.startsWith('data:')) return;
    perUrl.set(u, (perUrl.get(u) || 0) + e.encodedDataLength);
  });
  const t0 = Date.now();
  const nav = await page.goto(ADMIN + '/', { waitUntil: 'load' });
  await ready(page);
  const wall = Date.now() - t0;
  const tti = await page.evaluate(() => window.__amReady);
  const firstBytes = bytes;
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: false });
  console.log(`first load: ${firstBytes} bytes transferred (${(firstBytes / 1024).toFixed(1)} KiB); ` +
    `interactive (data drawn) ${tti.toFixed(0)} ms after navigation start; ${wall} ms wall clock from goto`);
  console.log('  by path: ' + [...perUrl].map(([u, n]) => `${u} ${n}`).join(', '));
  check('first load under 300 KB', firstBytes < 300 * 1000, `${firstBytes} bytes`);
  check('/ redirects to /performance', nav.url().startsWith(ADMIN + '/performance'), nav.url());
  check('the range is in the URL', new URL(page.url()).searchParams.get('range') === '1h', page.url());

  // Headline figures equal the summary endpoint's for the same range.
  const all = await checkFigures(page, {}, 'last hour');
  check('the figures count what page.sh stored', all.count === Number(env('EXPECT_COUNT')),
    `${all.count} != ${process.env.EXPECT_COUNT}`);
  const rows = await page.$$eval('#calls tbody tr', (trs) => trs.length);
  check('the table lists the stored calls', rows === Math.min(100, all.count), `${rows} rows`);
  for (const id of ['#c-latency', '#c-rate', '#c-tps', '#c-breakdown']) {
    const drawn = await page.$eval(id, (c) => !c.closest('.chart').hidden && c.width > 0);
    check(`chart ${id} is drawn`, drawn);
  }
  await checkBreakdown(page, 'last hour');
  await checkAlerts(page);
  await checkRate(page, all.count, 'last hour');
  const cmpRows = await page.$$eval('#cmp-model table tbody tr', (trs) => trs.map((t) => t.cells[0].textContent));
  check('the model comparison lists both models', cmpRows.join(',') === 'llama3.1:8b,phi3:mini', cmpRows.join(','));
  await checkCostByModel(page, 'last hour');
  await checkCostBy(page, 'last hour');
  await page.screenshot({ path: path.join(ARTEFACTS, 'page-laptop.png'), fullPage: true });

  // A metric published on the bus shows up in the live table within two seconds.
  await page.waitForSelector('body[data-live="on"]', { timeout: 5000 });
  const before = await page.$$eval('#calls tbody tr', (trs) => Math.max(0, ...trs.map((t) => Number(t.dataset.id))));
  const t1 = Date.now();
  const load = spawn(env('LOAD_BIN'), ['--url', env('COLLECTOR_BUS'), '--count', '1', '--source-id', 'page-test-live'],
    { stdio: 'ignore' });
  let seenAfter = -1;
  try {
    await page.waitForFunction((max) => [...document.querySelectorAll('#calls tbody tr')]
      .some((t) => Number(t.dataset.id) > max), before, { timeout: 2000, polling: 20 });
    seenAfter = Date.now() - t1;
  } catch (e) { /* reported below */ }
  await new Promise((res) => (load.exitCode !== null ? res() : load.on('exit', res)));
  console.log(`live: the published metric appeared ${seenAfter >= 0 ? seenAfter + ' ms' : 'not within 2 s'} after the publisher started`);
  check('a metric published on the bus appears in the table within 2 s', seenAfter >= 0 && seenAfter <= 2000);

  // A row shows the whole record; a request id shows every call of the request.
  await page.click('#calls tbody tr:first-child td:nth-child(2)');
  await page.waitForSelector('#detail[open] table.kv');
  const fields = await page.$$eval('#detail table.kv th', (ths) => ths.map((t) => t.textContent));
  check('a row opens the whole record', ['id', 'timestamp', 'request_id', 'session_id', 'stage', 'error_type']
    .every((f) => fields.includes(f)), fields.join(','));
  await page.click('#detail .close');
  const reqId = env('EXPECT_REQUEST');
  await page.click(`#calls a.req[data-request="${reqId}"]`);
  await page.waitForSelector('#detail[open] #request-calls');
  const reqRows = await page.$$eval('#request-calls tbody tr', (trs) => trs.length);
  check('a request id opens all calls of the request', reqRows === Number(env('EXPECT_REQUEST_CALLS')), `${reqRows} rows`);
  await page.screenshot({ path: path.join(ARTEFACTS, 'page-request.png') });
  await page.click('#detail .close');

  // A filter changes figures, charts and table, goes into the URL and survives a reload.
  const tpsBefore = await page.evaluate(() => Chart.getChart('c-tps').data.datasets.length);
  await page.fill('input[name=model]', 'llama3.1:8b');
  await page.press('input[name=model]', 'Enter');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('model') === 'llama3.1:8b');
  await ready(page);
  const filtered = async (desc) => {
    const models = await page.$$eval('#calls tbody tr', (trs) => [...new Set(trs.map((t) => t.cells[1].textContent))]);
    check(`${desc}: the table shows only the chosen model`, models.join(',') === 'llama3.1:8b', models.join(','));
    const f = await checkFigures(page, { model: 'llama3.1:8b' }, desc);
    check(`${desc}: the filtered count is smaller`, f.count > 0 && f.count < all.count, `${f.count} of ${all.count}`);
    const tps = await page.evaluate(() => Chart.getChart('c-tps').data.datasets.map((d) => d.label));
    check(`${desc}: the tokens/s chart shows only the chosen model`, tps.join(',') === 'llama3.1:8b', `${tps} (was ${tpsBefore} series)`);
  };
  await filtered('model filter');
  await page.selectOption('select[name=status]', 'error');
  await ready(page);
  const statuses = await page.$$eval('#calls tbody tr', (trs) => [...new Set(trs.map((t) => t.cells[7].className))]);
  check('status filter: only errors listed', statuses.join(',') === 'st-error', statuses.join(','));
  await page.selectOption('select[name=status]', '');
  await ready(page);
  await page.reload({ waitUntil: 'load' });
  await ready(page);
  check('the filter survives a reload (form)', (await page.inputValue('input[name=model]')) === 'llama3.1:8b');
  await filtered('after reload');
  await page.screenshot({ path: path.join(ARTEFACTS, 'page-filtered.png'), fullPage: true });

  // The long ranges: hourly buckets (the API reads them from the rollups), the same figures.
  for (const range of ['24h', '7d']) {
    await page.goto(ADMIN + `/performance?range=${range}`, { waitUntil: 'load' });
    await ready(page);
    const f = await checkFigures(page, {}, range);
    check(`${range}: the figures count what page.sh stored, and more`, f.count > Number(env('EXPECT_COUNT')),
      `${f.count}`);
    await checkBreakdown(page, range);
    const rate = await checkRate(page, f.count, range);
    check(`${range}: charts in hourly buckets`, rate.step === 3600e3 && /1h buckets/.test(rate.title),
      `${rate.step} ms, "${rate.title}"`);
  }

  // No data in range: words, not a blank page.
  await page.goto(ADMIN + '/performance?range=15m&model=no-such-model', { waitUntil: 'load' });
  await ready(page);
  const emptyText = await page.textContent('#calls-empty');
  check('an empty range says so', /No calls in this range/.test(emptyText) && await page.isVisible('#calls-empty'), emptyText);
  check('an empty range shows 0 requests', (await page.textContent('#f-count')).trim() === '0');
  check('charts of an empty range say so', await page.isVisible('.panel:has(#c-latency) .empty'));

  // 100 metrics a second for 5 s: the table keeps up, the tab's main thread stays mostly idle.
  await page.goto(ADMIN + '/performance?range=15m', { waitUntil: 'load' });
  await ready(page);
  await page.waitForSelector('body[data-live="on"]', { timeout: 5000 });
  const perf = await context.newCDPSession(page);
  await perf.send('Performance.enable');
  const metric = async (name) => (await perf.send('Performance.getMetrics')).metrics.find((m) => m.name === name).value;
  const busy = () => metric('TaskDuration');
  const busy0 = await busy();
  const layouts0 = await metric('LayoutCount');
  const t2 = Date.now();
  const burst = spawn(env('LOAD_BIN'), ['--url', env('COLLECTOR_BUS'), '--count', '500', '--rate', '100',
    '--source-id', 'page-test-burst'], { stdio: 'ignore' });
  const burstExit = await new Promise((res) => burst.on('exit', res));
  // Rows arrive in id order; a metric's timestamp is its start, so the newest is the highest id.
  const newest = Math.max(...(await getJSON('/api/llm-backends/metrics?limit=1000')).map((m) => m.id));
  let caughtUp = true;
  try {
    await page.waitForFunction((id) => Number(document.querySelector('#calls tbody tr')?.dataset.id) === id,
      newest, { timeout: 2000 });
  } catch (e) { caughtUp = false; }
  const secs = (Date.now() - t2) / 1000;
  const cpu = (await busy() - busy0) / secs;
  const layoutRate = (await metric('LayoutCount') - layouts0) / secs;
  const kept = await page.$$eval('#calls tbody tr', (trs) => trs.length);
  console.log(`burst: 500 metrics at 100/s; the tab's main thread was busy ${(cpu * 100).toFixed(1)} % of the time; ` +
    `${layoutRate.toFixed(1)} layouts/s; ${kept} rows kept`);
  check('burst published', burstExit === 0);
  check('the live table keeps up with 100 metrics/s (newest row shown)', caughtUp);
  check('the live table stays bounded at 200 rows', kept === 200, `${kept} rows`);
  // Batching is what keeps the tab calm: a few layouts a second, not one per metric or per frame.
  // Task time is wall-clock time, so on a crowded machine it only gets a loose bound.
  check('live rows are batched (at most 6 layouts/s at 100 metrics/s)', layoutRate <= 6, `${layoutRate.toFixed(1)}/s`);
  check('the tab does not run away at 100 metrics/s (main thread busy < 80 %)', cpu < 0.8, `${(cpu * 100).toFixed(1)} %`);

  // A phone: one column, nothing wider than the screen.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  const pp = await phone.newPage();
  pp.on('console', (m) => { if (m.type() === 'error') consoleErrors.push('phone: ' + m.text()); });
  pp.on('pageerror', (e) => consoleErrors.push('phone: ' + String(e)));
  await pp.goto(ADMIN + '/performance?range=1h', { waitUntil: 'load' });
  await ready(pp);
  const overflow = await pp.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check('the phone layout fits the screen width', overflow <= 0, `${overflow}px too wide`);
  await pp.screenshot({ path: path.join(ARTEFACTS, 'page-phone.png'), fullPage: true });
  await phone.close();

  check('no console errors', consoleErrors.length === 0, consoleErrors.join(' | '));

  // Database down: the API's 503 error in words.
  if (process.env.ADMIN_DOWN) {
    const down = await browser.newPage();
    await down.goto(process.env.ADMIN_DOWN + '/performance', { waitUntil: 'load' });
    await down.waitForSelector('body[data-state="error"]', { timeout: 15000 });
    const text = await down.textContent('#notice');
    check('database down: the 503 error is shown in words', /503/.test(text) && /database unavailable/.test(text), text);
    await down.screenshot({ path: path.join(ARTEFACTS, 'page-db-down.png') });
    await down.close();
  }

  closing = true;
  await browser.close();
  console.log(`screenshots: ${ARTEFACTS}`);
  if (failures) {
    console.log(`${failures} check(s) failed`);
    process.exit(1);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
