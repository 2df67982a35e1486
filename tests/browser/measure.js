// Time to interactive of the performance page per range, against an admin-api given as ADMIN
// (for docs/BENCHMARKS.md; not part of ctest). Usage: ADMIN=http://127.0.0.1:8080 node measure.js
'use strict';

const { chromium } = require('playwright-core');

const ADMIN = process.env.ADMIN || 'http://127.0.0.1:8080';
const RANGES = (process.env.RANGES || '15m,1h,24h,7d').split(',');
const RUNS = Number(process.env.RUNS || 3);

async function once(browser, range) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  let bytes = 0;
  cdp.on('Network.loadingFinished', (e) => { bytes += e.encodedDataLength; });
  await page.goto(`${ADMIN}/performance?range=${range}`, { waitUntil: 'load' });
  await page.waitForSelector('body[data-state="ready"], body[data-state="error"]', { timeout: 60000 });
  const state = await page.getAttribute('body', 'data-state');
  const tti = await page.evaluate(() => window.__amReady || performance.now());
  const count = await page.getAttribute('#f-count', 'data-value');
  await context.close();
  return { tti, bytes, state, count };
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  for (const range of RANGES) {
    const runs = [];
    for (let i = 0; i < RUNS; i++) runs.push(await once(browser, range));
    const ttis = runs.map((r) => r.tti).sort((a, b) => a - b);
    console.log(`range ${range}: ${runs[0].count} calls, state ${runs.map((r) => r.state).join('/')}, ` +
      `interactive ${ttis.map((t) => t.toFixed(0)).join(', ')} ms (median ${ttis[Math.floor(ttis.length / 2)].toFixed(0)}), ` +
      `${(runs[0].bytes / 1024).toFixed(0)} KiB first load`);
  }
  await browser.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
