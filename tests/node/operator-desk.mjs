// The operator's desk in headless Chromium, on a demo server: identify a
// caller by phone, read family and schemes, search facilities in Hindi and by
// vacant ICU bed, find an approved answer, register a complaint and book an
// appointment. Env: CARELINE_URL, CARELINE_USER, CARELINE_PASSWORD, CARELINE_ARTIFACTS.
import { base, launch, signIn, takeSeat, watch } from './lib.mjs';
import { mkdirSync } from 'node:fs';

const browser = await launch();
let failed = false;
try {
  const context = await browser.newContext({ locale: 'en-IN' });
  const page = await context.newPage();
  watch(page, 'page', () => { failed = true; });
  await signIn(page, '/operator');

  // Patient records are read from a contact: take a seat and answer a chat first.
  await takeSeat(page);
  const caller = await browser.newContext();
  const started = await caller.request.post(`${base}/api/contacts`, { data: { language: 'en', phone: '9810012345', channel: 'chat' } });
  if (!started.ok()) throw new Error(`contact not started: ${await started.text()}`);
  await page.waitForSelector('#offer:not([hidden])');
  await page.keyboard.press('a');
  await page.waitForSelector('#contact:not([hidden])');

  // Identify by phone: the whole family shares it.
  await page.fill('#identify-form input[name=phone]', '98100 12345');
  await page.click('#identify-form button[type=submit]');
  await page.waitForSelector('#patients[data-state=done] .patient');
  const names = await page.$$eval('.patient h3', (hs) => hs.map((h) => h.textContent));
  console.log(`patients ${names.join(', ')}`);
  if (!names.includes('Ramesh Kumar')) throw new Error('Ramesh Kumar not found by phone');
  const ramesh = page.locator('.patient:has(h3:text-is("Ramesh Kumar"))');
  const family = await ramesh.locator('.family').textContent();
  const schemes = await ramesh.locator('.schemes').textContent();
  console.log(`family ${family} | ${schemes}`);
  if (!family.includes('Savitri Devi') || !schemes.includes('Delhi Arogya Kosh')) throw new Error('family or schemes missing');
  await ramesh.click();

  // Facilities with a vacant ICU bed; then a search in Hindi.
  await page.selectOption('#facility-form select[name=vacant_bed]', 'icu');
  await page.click('#facility-form button');
  await page.waitForSelector('#facilities tbody tr');
  const first = await page.textContent('#facilities tbody tr td.beds');
  console.log(`icu first ${first}`);
  await page.selectOption('#facility-form select[name=vacant_bed]', '');
  await page.fill('#facility-form input[name=q]', 'मोहल्ला');
  await page.click('#facility-form button');
  await page.waitForFunction(() => document.querySelectorAll('#facilities tbody tr').length === 2);

  await page.fill('#faq-form input[name=q]', 'ambulance');
  await page.click('#faq-form button');
  await page.waitForSelector('#answers dd');
  const answer = await page.textContent('#answers dd');
  if (!answer.includes('102')) throw new Error(`answer without 102: ${answer}`);

  // A complaint gets a ticket number to read out.
  await page.selectOption('#complaint-form select[name=category]', 'medicine_unavailable');
  await page.selectOption('#complaint-form select[name=facility_id]', { label: 'Guru Teg Bahadur Hospital' });
  await page.fill('#complaint-form textarea', 'Anti-rabies vaccine was not available at the emergency.');
  await page.click('#complaint-form button');
  await page.waitForSelector('.ticket-number');
  const ticket = await page.textContent('.ticket-number');
  console.log(`ticket ${ticket}`);
  if (!/^CL-\d{6}-[A-Z2-9]{6}$/.test(ticket)) throw new Error(`bad ticket ${ticket}`);

  // An appointment at Lok Nayak, general medicine.
  await page.selectOption('#slot-form select[name=facility_id]', { label: 'Lok Nayak Hospital' });
  await page.fill('#slot-form input[name=department]', 'general medicine');
  await page.click('#slot-form button');
  await page.waitForSelector('#slots li button');
  await page.click('#slots li button');
  await page.waitForSelector('#slots .booked');
  console.log('appointment booked');
  await page.click('#end');
  await page.waitForSelector('#wrap-up:not([hidden])');
  await page.selectOption('#wrap-up-form select[name=disposition]', 'appointment');
  await page.click('#wrap-up-form button');
  await page.waitForSelector('#wrap-up[hidden]', { state: 'attached' });
  console.log('wrapped up');
  if (process.env.CARELINE_ARTIFACTS) {
    mkdirSync(process.env.CARELINE_ARTIFACTS, { recursive: true });
    await page.screenshot({ path: `${process.env.CARELINE_ARTIFACTS}/operator-desk.png`, fullPage: true });
  }
} catch (e) {
  console.error(String(e?.stack ?? e));
  failed = true;
}
await browser.close();
process.exit(failed ? 1 : 0);
