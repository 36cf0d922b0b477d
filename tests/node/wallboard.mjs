// The supervisor's wallboard in headless Chromium: live figures arrive by
// server-sent events, the chart is drawn, and the CSV export downloads.
// Env: CARELINE_URL, CARELINE_USER, CARELINE_PASSWORD, CARELINE_ARTIFACTS.
import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync } from 'node:fs';

const base = process.env.CARELINE_URL;
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  timeout: 30000,
});
let failed = false;
try {
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on('pageerror', (e) => { console.error(`page error: ${e}`); failed = true; });
  await page.goto(`${base}/?lang=en`);
  await page.fill('input[name=username]', process.env.CARELINE_USER);
  await page.fill('input[name=password]', process.env.CARELINE_PASSWORD);
  await page.click('button[type=submit]');
  await page.waitForURL(`${base}/supervisor`);
  await page.waitForSelector('#wallboard[data-updated]');
  const waiting = await page.textContent('#wb-waiting');
  const longest = await page.textContent('#wb-longest');
  const offered = await page.textContent('#wb-today td');
  const bars = await page.$$eval('#wb-chart rect', (r) => r.length);
  const shifts = await page.$$eval('#wb-shifts li', (l) => l.map((x) => x.textContent));
  console.log(`waiting ${waiting} longest ${longest} offered ${offered} bars ${bars}`);
  console.log(`shifts ${shifts.join(' | ')}`);
  const first = await page.getAttribute('#wallboard', 'data-updated');
  await page.waitForFunction((t) => document.getElementById('wallboard').dataset.updated !== t, first, { timeout: 12000 });
  console.log('pushed again');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#wb-export')]);
  const csv = readFileSync(await download.path(), 'utf8');
  console.log(`csv lines ${csv.trim().split('\n').length}`);
  if (process.env.CARELINE_ARTIFACTS) {
    mkdirSync(process.env.CARELINE_ARTIFACTS, { recursive: true });
    await page.screenshot({ path: `${process.env.CARELINE_ARTIFACTS}/wallboard.png`, fullPage: true });
  }
} catch (e) {
  console.error(String(e?.stack ?? e));
  failed = true;
}
await browser.close();
process.exit(failed ? 1 : 0);
