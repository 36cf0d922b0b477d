// The supervisor's wallboard in headless Chromium: live figures arrive by
// server-sent events, the chart is drawn, and the CSV export downloads.
// Env: CARELINE_URL, CARELINE_USER, CARELINE_PASSWORD, CARELINE_ARTIFACTS.
import { launch, signIn, watch } from './lib.mjs';
import { mkdirSync, readFileSync } from 'node:fs';

const browser = await launch();
let failed = false;
try {
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  watch(page, 'page', () => { failed = true; });
  await signIn(page, '/supervisor');
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
