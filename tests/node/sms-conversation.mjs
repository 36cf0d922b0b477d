// An operator answers an SMS in headless Chromium: no call is joined for a
// written channel, the console names the channel and the number, a reply
// shows how far it got (sent, then delivered), and the patient's STOP is
// shown and refuses the next reply with its reason.
// Env: CARELINE_URL, CARELINE_USER, CARELINE_PASSWORD, CARELINE_PATIENT (the patient's number).
import { acceptOffer, endAndWrapUp, launch, screenshots, signIn, takeSeat, watch } from './lib.mjs';

const patient = process.env.CARELINE_PATIENT;
const browser = await launch();
const shot = screenshots('sms');
let failed = false;
try {
  const page = await (await browser.newContext()).newPage();
  watch(page, 'operator', () => { failed = true; });
  await signIn(page, '/operator');
  await takeSeat(page);
  await acceptOffer(page, false);
  await page.waitForFunction(() => [...document.querySelectorAll('#agent-messages li')].some((l) => l.textContent.includes('fever clinic')));
  await page.waitForSelector('#contact-channel:not([hidden])');
  const channel = await page.textContent('#contact-channel');
  if (!channel.includes('SMS') || !channel.includes(patient)) throw new Error(`the channel line says: ${channel}`);
  // Give a wrongly joined call the time to show itself.
  await page.waitForTimeout(1000);
  if (await page.evaluate(() => (window.careline?.calls?.size ?? 0) > 0)) throw new Error('a call was joined for an SMS');
  if (!(await page.$eval('#agent-call', (e) => e.hidden))) throw new Error('the call panel shows for an SMS');
  console.log('an SMS conversation, no call');

  await page.fill('#agent-message-form input[name=body]', 'Yes, 9 am to 1 pm. Bring your e-health card.');
  await page.click('#agent-message-form button');
  // `sent` when Twilio answers; `delivered` once the test posts Twilio's status callback.
  await page.waitForFunction(() => [...document.querySelectorAll('#agent-messages li.staff .tick')].some((t) => t.textContent.includes('delivered')), null, { timeout: 30000 });
  console.log('the reply shows delivered');
  await shot(page, 'delivered');

  // The test posts the patient's STOP after the delivery: the console shows it within a refresh.
  await page.waitForSelector('#contact-channel.warning', { timeout: 30000 });
  const stopped = await page.textContent('#contact-channel');
  if (!stopped.includes('STOP')) throw new Error(`the channel line says: ${stopped}`);
  await page.fill('#agent-message-form input[name=body]', 'Get well soon');
  await page.click('#agent-message-form button');
  await page.waitForSelector('#contact .error:not([hidden])');
  const refusal = await page.textContent('#contact .error');
  if (!refusal.includes('START')) throw new Error(`the refusal says: ${refusal}`);
  console.log('the STOP is shown and the reply refused');
  await shot(page, 'stopped');
  await endAndWrapUp(page, 'information');
  console.log('wrapped up');
} catch (e) {
  console.error(String(e?.stack ?? e));
  failed = true;
}
await browser.close();
process.exit(failed ? 1 : 0);
