// Issue 5's tier-1 story in headless Chromium, a screenshot per step: a
// patient calls by voice (fake microphone playing CARELINE_SPEECH) with their
// e-health card number; the operator signs in, takes a seat, accepts, hears
// the patient (getStats: bytes and audio level), identifies them by card
// number, answers a question about vacant ICU beds from the desk, registers a
// complaint (ticket number) and wraps up; a supervisor's wallboard then shows
// the answered call and the service level of the interval and the day.
// Env: CARELINE_URL, CARELINE_USER and CARELINE_PASSWORD (the operator),
// CARELINE_SUPERVISOR_PASSWORD, CARELINE_SPEECH, CARELINE_ARTIFACTS.
import { acceptOffer, base, endAndWrapUp, inbound, launchWithMedia, screenshots, signIn, takeSeat, until, watch } from './lib.mjs';

const browser = await launchWithMedia();
const shot = screenshots('tier1-call');
let failed = false;
/// The half-hour of the day in Delhi (what the wallboard's interval is).
const interval = (t) => Math.floor(((t / 60000 + 330) % 1440) / 30);
try {
  const operator = await (await browser.newContext()).newPage();
  const patient = await (await browser.newContext()).newPage();
  watch(operator, 'operator', () => { failed = true; });
  watch(patient, 'patient', () => { failed = true; });

  await signIn(operator, '/operator');
  await shot(operator, 'operator-signed-in');
  await takeSeat(operator, 'S01');
  await shot(operator, 'operator-ready');
  console.log('operator ready at S01');

  const called = Date.now();
  await patient.goto(`${base}/call?lang=en`);
  await patient.fill('#start-form input[name=phone]', '9810012345');
  await patient.fill('#start-form input[name=ehealth_card]', 'DL-EHC-100234');
  await shot(patient, 'patient-call-form');
  await patient.click('#start-call');
  await patient.waitForSelector('#waiting:not([hidden]), #chat:not([hidden])');
  await patient.waitForFunction(() => window.careline?.call?.pc.connectionState === 'connected');
  await shot(patient, 'patient-waiting');

  await operator.waitForSelector('#offer:not([hidden])');
  await shot(operator, 'offer-rings');
  await acceptOffer(operator);
  await patient.waitForSelector('#in-call:not([hidden])');
  const contact = await operator.evaluate(() => [...window.careline.calls.keys()][0]);
  console.log(`contact ${contact}`);

  // The patient's voice reaches the operator's browser through the server.
  const heard = await until(async () => {
    const s = await inbound(operator);
    const bytes = s.audio.reduce((a, b) => a + b, 0);
    return bytes > 20000 && s.level > 0.01 ? { bytes, level: s.level } : null;
  }, 20000);
  if (!heard) throw new Error(`the operator hears nothing: ${JSON.stringify(await inbound(operator))}`);
  console.log(`operator hears the patient: ${heard.bytes} bytes, audio level ${heard.level.toFixed(3)}`);
  await shot(operator, 'operator-in-call');
  await shot(patient, 'patient-in-call');

  // Identification by the card number the patient reads out; misheard first.
  await operator.fill('#identify-form input[name=card]', 'DL#EHC#100234');
  await operator.click('#identify-form button[type=submit]');
  await operator.waitForSelector('#identify .error:not([hidden])');
  const misheard = await operator.textContent('#identify .error');
  if (!misheard.includes('is not an e-health card number')) throw new Error(`bad card number: ${misheard}`);
  console.log(`bad card refused: ${misheard}`);
  await shot(operator, 'bad-card-number');
  await operator.fill('#identify-form input[name=card]', 'DL-EHC-100234');
  await operator.click('#identify-form button[type=submit]');
  await operator.waitForSelector('#patients[data-state=done] .patient');
  await operator.click('#patients .patient:first-child');
  await operator.waitForSelector('#patients .patient.selected');
  const who = await operator.textContent('#patients .patient.selected h3');
  if (who !== 'Ramesh Kumar') throw new Error(`card DL-EHC-100234 found ${who}`);
  console.log(`identified ${who}: ${await operator.textContent('#patients .patient.selected .family')}`);
  await shot(operator, 'identified-by-card');

  // "Is there an ICU bed free anywhere?" answered from the information desk.
  await operator.selectOption('#facility-form select[name=vacant_bed]', 'icu');
  await operator.click('#facility-form button[type=submit]');
  await operator.waitForSelector('#facilities:not([hidden]) tbody tr');
  const beds = await operator.$$eval('#facilities tbody tr', (rows) => rows.map((r) => `${r.querySelector('strong').textContent}: ${r.querySelector('td.beds').textContent}`));
  if (!beds.length || !beds.every((b) => /ICU [1-9]\d*\//.test(b))) throw new Error(`facilities without a vacant ICU bed: ${beds}`);
  console.log(`vacant ICU beds: ${beds[0]}`);
  await shot(operator, 'bed-availability');

  // A complaint, with a ticket number to read out.
  await operator.selectOption('#complaint-form select[name=category]', 'medicine_unavailable');
  await operator.selectOption('#complaint-form select[name=facility_id]', { label: 'Guru Teg Bahadur Hospital' });
  await operator.fill('#complaint-form textarea[name=description]', 'Insulin was out of stock at the hospital pharmacy for a week.');
  await operator.click('#complaint-form button[type=submit]');
  await operator.waitForSelector('#ticket:not([hidden]) .ticket-number');
  const ticket = await operator.textContent('.ticket-number');
  if (!/^CL-\d{6}-[A-Z2-9]{6}$/.test(ticket)) throw new Error(`bad ticket ${ticket}`);
  console.log(`ticket ${ticket}`);
  await shot(operator, 'complaint-ticket');

  await endAndWrapUp(operator, 'complaint', `ticket ${ticket}`);
  await patient.waitForSelector('#chat[data-state=ended]');
  await shot(operator, 'wrapped-up');
  await shot(patient, 'patient-call-ended');
  console.log('ended and wrapped up');

  // The supervisor's wallboard: the answered call and the service level.
  const supervisor = await (await browser.newContext()).newPage();
  watch(supervisor, 'supervisor', () => { failed = true; });
  await signIn(supervisor, '/supervisor', 'meera', process.env.CARELINE_SUPERVISOR_PASSWORD);
  await supervisor.waitForSelector('#wallboard[data-updated]');
  const cells = (row) => supervisor.$$eval(`${row} td`, (tds) => tds.map((td) => td.textContent));
  await supervisor.waitForFunction(() => document.querySelectorAll('#wb-today td')[1].textContent === '1');
  const today = await cells('#wb-today');
  console.log(`today: offered ${today[0]}, answered ${today[1]}, abandoned ${today[2]}, service level ${today[3]}, ASA ${today[4]}`);
  if (today.slice(0, 4).join() !== '1,1,0,100%') throw new Error(`today's figures ${today}`);
  // The interval is the half hour the call came in, unless the clock crossed into the next one since.
  if (interval(called) === interval(Date.parse(await supervisor.getAttribute('#wallboard', 'data-updated')))) {
    const now = await cells('#wb-interval');
    if (now.slice(0, 4).join() !== '1,1,0,100%') throw new Error(`this interval's figures ${now}`);
    console.log(`this interval: answered ${now[1]}, service level ${now[3]}`);
  } else {
    console.log('the half hour turned during the call: the interval row is the next one');
  }
  await shot(supervisor, 'wallboard');
} catch (e) {
  console.error(String(e?.stack ?? e));
  failed = true;
}
await browser.close();
process.exit(failed ? 1 : 0);
