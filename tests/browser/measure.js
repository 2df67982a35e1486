// The performance page against an admin-api given as ADMIN, for docs/BENCHMARKS.md (not part of
// ctest; tests/browser/measure.sh fills a database and runs it):
//
// - every range the page offers, opened cold RUNS times (a new browser context each time, cache
//   empty): the time from navigation start until every figure, chart and the table are drawn
//   (window.__amReady), the bytes on the wire (DevTools protocol), the requests made and the
//   slowest API answer;
// - the live table while metrics arrive at LIVE_RATE a second for LIVE_SECONDS (posted to the
//   admin-api, which wakes the stream as the collector does): whether the newest is shown within
//   2 s of the last post, the rows kept, layouts a second and the tab's main-thread busy time
//   (CDP Performance.getMetrics: LayoutCount, TaskDuration).
//
// Usage: ADMIN=http://127.0.0.1:8080 [RUNS=5] [RANGES=15m,1h,24h,7d] [LIVE_SECONDS=10] node measure.js
// It exits 1 when a target is missed: interactive within 1 s (median) and under 300 KB on first
// load for every range; the live table caught up, bounded and batched (at most 6 layouts a second).
'use strict';

const { chromium } = require('playwright-core');

const ADMIN = process.env.ADMIN || 'http://127.0.0.1:8080';
const RANGES = (process.env.RANGES || '15m,1h,24h,7d').split(',');
const RUNS = Number(process.env.RUNS || 5);
const LIVE_SECONDS = Number(process.env.LIVE_SECONDS || 10);
const LIVE_RATE = Number(process.env.LIVE_RATE || 100);

const median = (xs) => {
  const s = xs.slice().sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function once(browser, range) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  let bytes = 0;
  let requests = 0;
  cdp.on('Network.requestWillBeSent', () => { requests++; });
  cdp.on('Network.loadingFinished', (e) => { bytes += e.encodedDataLength; });
  await page.goto(`${ADMIN}/performance?range=${range}`, { waitUntil: 'load' });
  await page.waitForSelector('body[data-state="ready"], body[data-state="error"]', { timeout: 60000 });
  const state = await page.getAttribute('body', 'data-state');
  const r = await page.evaluate(() => ({
    tti: window.__amReady || performance.now(),
    api: Math.max(0, ...performance.getEntriesByType('resource')
      .filter((e) => e.name.includes('/api/')).map((e) => e.responseEnd - e.startTime)),
    approx: /approximate/.test(document.getElementById('range-text').textContent),
  }));
  const count = await page.getAttribute('#f-count', 'data-value');
  await context.close();
  return Object.assign(r, { bytes, requests, state, count });
}

async function post(n) {
  const now = Date.now() / 1000;
  const r = await fetch(`${ADMIN}/api/llm-backends/metrics`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ timestamp: now, model: 'phi3:mini', backend: 'ollama', latency_seconds: 0.5 + (n % 10) / 10,
      tokens: 40, tokens_per_second: 35, status: 'ok', intent: 'measure', request_id: `measure-${n}` }),
  });
  if (r.status !== 201) throw new Error(`POST answered ${r.status}`);
  return (await r.json()).id;
}

// Metrics at LIVE_RATE a second, each posted on its own schedule (a load generator's clock, not a
// synchronisation): the admin-api notifies the stream after each insert.
async function live(browser) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${ADMIN}/performance?range=1h`, { waitUntil: 'load' });
  await page.waitForSelector('body[data-state="ready"]', { timeout: 60000 });
  await page.waitForSelector('body[data-live="on"]', { timeout: 10000 });
  const cdp = await context.newCDPSession(page);
  await cdp.send('Performance.enable');
  const metric = async (name) => (await cdp.send('Performance.getMetrics')).metrics.find((m) => m.name === name).value;
  const busy0 = await metric('TaskDuration');
  const layouts0 = await metric('LayoutCount');
  const t0 = Date.now();
  const total = Math.round(LIVE_SECONDS * LIVE_RATE);
  const posts = [];
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / LIVE_RATE;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((res) => setTimeout(res, wait));
    posts.push(post(i));
  }
  const ids = await Promise.all(posts);
  const newest = Math.max(...ids);
  const tLast = Date.now();
  let lag = -1;
  try {
    await page.waitForFunction((id) => Number(document.querySelector('#calls tbody tr')?.dataset.id) >= id,
      newest, { timeout: 2000, polling: 20 });
    lag = Date.now() - tLast;
  } catch (e) { /* reported below */ }
  const secs = (Date.now() - t0) / 1000;
  const cpu = (await metric('TaskDuration') - busy0) / secs;
  const layouts = (await metric('LayoutCount') - layouts0) / secs;
  const rows = await page.$$eval('#calls tbody tr', (trs) => trs.length);
  await context.close();
  return { total, secs: (tLast - t0) / 1000, lag, cpu, layouts, rows };
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  let missed = 0;
  for (const range of RANGES) {
    const runs = [];
    for (let i = 0; i < RUNS; i++) runs.push(await once(browser, range));
    const ttis = runs.map((r) => r.tti).sort((a, b) => a - b);
    const tti = median(ttis);
    const bytes = median(runs.map((r) => r.bytes));
    const ok = tti < 1000 && bytes < 300 * 1000 && runs.every((r) => r.state === 'ready');
    if (!ok) missed++;
    console.log(`range ${range}: ${runs[0].count} calls${runs[0].approx ? ' (percentiles approximate)' : ''}, ` +
      `state ${[...new Set(runs.map((r) => r.state))].join('/')}; interactive median ${tti.toFixed(0)} ms ` +
      `(${ttis.map((t) => t.toFixed(0)).join(', ')}); first load ${(bytes / 1000).toFixed(1)} KB ` +
      `(${(bytes / 1024).toFixed(1)} KiB) in ${runs[0].requests} requests; slowest API answer median ` +
      `${median(runs.map((r) => r.api)).toFixed(0)} ms; ${ok ? 'met' : 'MISSED'} (< 1000 ms, < 300 KB)`);
  }
  if (LIVE_SECONDS > 0) {
    const l = await live(browser);
    const ok = l.lag >= 0 && l.rows === 200 && l.layouts <= 6;
    if (!ok) missed++;
    console.log(`live: ${l.total} metrics posted in ${l.secs.toFixed(1)} s (${(l.total / l.secs).toFixed(0)}/s); ` +
      `newest shown ${l.lag >= 0 ? l.lag + ' ms' : 'not within 2 s'} after the last post; ${l.rows} rows kept; ` +
      `${l.layouts.toFixed(1)} layouts/s; main thread busy ${(l.cpu * 100).toFixed(1)} % of the time; ` +
      `${ok ? 'met' : 'MISSED'} (shown within 2 s, 200 rows, <= 6 layouts/s)`);
  }
  await browser.close();
  process.exit(missed ? 1 : 0);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
