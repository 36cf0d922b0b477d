// Shared by the browser tests: Debian's Chromium with the flags this machine
// needs, and signing in through the login page.
import { chromium } from 'playwright-core';

export const base = process.env.CARELINE_URL;

export function launch(extraArgs = []) {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run', ...extraArgs],
    timeout: 30000,
  });
}

/// Signs in as CARELINE_USER on `page` (English pages) and waits for the role's console at `home`.
export async function signIn(page, home, user = process.env.CARELINE_USER, password = process.env.CARELINE_PASSWORD) {
  await page.goto(`${base}/?lang=en`);
  await page.fill('input[name=username]', user);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');
  await page.waitForURL(`${base}${home}`);
}

/// Fails the script on any uncaught error in `page`.
export function watch(page, name, onError) {
  page.setDefaultTimeout(15000);
  page.on('pageerror', (e) => { console.error(`${name} page error: ${e}`); onError(); });
}

/// Takes `seat` (the first free one when absent) on an agent console and goes ready.
export async function takeSeat(page, seat = null) {
  await page.waitForSelector('#agent[data-stream=open]');
  await page.waitForSelector('#seat-form select option', { state: 'attached' });
  if (seat) await page.selectOption('#seat-form select[name=seat_id]', { label: seat });
  await page.click('#seat-form button[type=submit]');
  await page.waitForFunction(() => document.getElementById('agent-state').textContent.startsWith('paused'));
  await page.click('#ready');
  await page.waitForFunction(() => document.getElementById('agent-state').textContent === 'idle');
}
