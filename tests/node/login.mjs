// Signs a demo account in through the login page in headless Chromium, checks
// the landing page, a wrong password's message and the Hindi switch.
// Env: CARELINE_URL, CARELINE_USER, CARELINE_PASSWORD, CARELINE_ARTIFACTS (screenshots).
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const base = process.env.CARELINE_URL;
const user = process.env.CARELINE_USER;
const password = process.env.CARELINE_PASSWORD;
const artifacts = process.env.CARELINE_ARTIFACTS;

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  timeout: 30000,
});
const fail = async (message) => {
  console.error(message);
  await browser.close();
  process.exit(1);
};
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(15000);
  await page.goto(`${base}/`);
  await page.fill('input[name=username]', user);
  await page.fill('input[name=password]', 'not the password');
  await page.click('button[type=submit]');
  await page.waitForSelector('.error:not([hidden])');
  const error = await page.textContent('.error');
  if (!error.trim()) await fail('no message for a wrong password');

  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');
  await page.waitForURL(`${base}/operator`);
  const title = await page.textContent('#console-title');
  const lang = await page.evaluate(() => document.documentElement.lang);
  console.log(`landed ${new URL(page.url()).pathname} lang=${lang} title=${title}`);

  await page.click('a.lang');
  const other = lang === 'hi' ? 'en' : 'hi';
  await page.waitForFunction((l) => document.documentElement.lang === l, other);
  const switched = await page.textContent('#console-title');
  console.log(`switched lang=${other} title=${switched}`);
  const [hindi, english] = lang === 'hi' ? [title, switched] : [switched, title];
  if (!/[\u0900-\u097F]/.test(hindi)) await fail(`Hindi title is not in Devanagari: ${hindi}`);
  if (!/operator/i.test(english)) await fail(`unexpected English title ${english}`);
  if (artifacts) {
    mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: `${artifacts}/operator-hi.png` });
  }

  await page.click('#logout');
  await page.waitForURL(`${base}/`);
  console.log('signed out');
} catch (e) {
  await fail(String(e?.stack ?? e));
}
await browser.close();
