// A doctor takes an escalated chat in headless Chromium, records consent and
// notes, and prescribes. A chat is a text consult, as the server decides: a
// List A drug on a first consult is refused (only by video), claiming video
// is refused naming `mode`, and the same drug as a refill of continuing
// medication on a follow-up is issued.
// Env: CARELINE_URL, CARELINE_USER, CARELINE_PASSWORD, CARELINE_ARTIFACTS.
import { mkdirSync } from 'node:fs';
import { launch, signIn, watch } from './lib.mjs';

const browser = await launch();
let failed = false;
try {
  const page = await (await browser.newContext()).newPage();
  watch(page, 'doctor', () => { failed = true; });
  await signIn(page, '/doctor');
  await page.waitForSelector('#agent[data-stream=open]');
  await page.waitForSelector('#seat-form select option', { state: 'attached' });
  await page.selectOption('#seat-form select[name=seat_id]', { label: 'S02' });
  await page.click('#seat-form button[type=submit]');
  await page.click('#ready');
  await page.waitForSelector('#offer:not([hidden])');
  await page.keyboard.press('a');
  await page.waitForSelector('#consult:not([hidden])');
  await page.waitForSelector('#agent-messages li.system');
  console.log(`note from the operator: ${await page.textContent('#agent-messages li.system')}`);

  await page.check('#note-form input[name=recording_consent]');
  await page.fill('#note-form input[name=chief_complaint]', 'Cough and fever for three days');
  await page.fill('#note-form input[name=diagnosis]', 'Acute bronchitis');
  await page.fill('#note-form textarea[name=advice]', 'Steam inhalation, fluids');
  await page.click('#note-form button[type=submit]');
  await page.waitForSelector('#consult .saved:not([hidden])');
  console.log('notes saved');

  const row = '#rx-items tr:first-child';
  await page.fill(`${row} input[name=generic]`, 'amoxicillin');
  await page.fill(`${row} input[name=strength]`, '500 mg');
  await page.fill(`${row} input[name=dose]`, '1 capsule');
  await page.fill(`${row} input[name=frequency]`, 'three times a day');
  await page.fill(`${row} input[name=duration]`, '5 days');
  // The page takes the mode from the contact: a chat is text.
  await page.waitForFunction(() => document.querySelector('#rx-form select[name=mode]').value === 'text');
  await page.click('#rx-form button[type=submit]');
  await page.waitForSelector('#rx .problems:not([hidden])');
  console.log(`refused as text: ${await page.textContent('#rx .problems')}`);
  // Claiming video on a chat: the server refuses the claim itself.
  await page.selectOption('#rx-form select[name=mode]', 'video');
  await page.click('#rx-form button[type=submit]');
  await page.waitForFunction(() => /^mode: /.test(document.querySelector('#rx .problems').textContent));
  console.log(`claimed video refused: ${await page.textContent('#rx .problems')}`);
  await page.selectOption('#rx-form select[name=mode]', 'text');
  await page.selectOption('#rx-form select[name=kind]', 'follow_up');
  await page.check(`${row} input[name=continuing]`);
  await page.click('#rx-form button[type=submit]');
  await page.waitForSelector('#rx-issued:not([hidden])');
  console.log(`issued: ${await page.textContent('#rx-issued')}`);
  if (process.env.CARELINE_ARTIFACTS) {
    mkdirSync(process.env.CARELINE_ARTIFACTS, { recursive: true });
    await page.screenshot({ path: `${process.env.CARELINE_ARTIFACTS}/doctor-consult.png`, fullPage: true });
  }
} catch (e) {
  console.error(String(e?.stack ?? e));
  failed = true;
}
await browser.close();
process.exit(failed ? 1 : 0);
