// A patient's chat from /call to an operator and back, in two headless
// Chromium contexts: offer rings, accept by keyboard, messages both ways,
// the patient reloads and rejoins, the operator ends and wraps up.
// A screenshot per step. Env: CARELINE_URL, CARELINE_USER, CARELINE_PASSWORD, CARELINE_ARTIFACTS.
import { base, launch, screenshots, signIn, takeSeat, watch, wrapUp } from './lib.mjs';

const browser = await launch();
const shot = screenshots('chat-flow');
let failed = false;
try {
  const operator = await (await browser.newContext()).newPage();
  const patient = await (await browser.newContext()).newPage();
  watch(operator, 'operator', () => { failed = true; });
  watch(patient, 'patient', () => { failed = true; });
  await signIn(operator, '/operator');
  await takeSeat(operator);
  await shot(operator, 'operator-ready');
  console.log('operator ready');

  await patient.goto(`${base}/call?lang=en`);
  await patient.fill('#start-form input[name=phone]', '9810012345');
  await patient.click('#start-chat');
  await patient.waitForSelector('#waiting:not([hidden]), #chat:not([hidden])');
  await shot(patient, 'patient-waiting');
  console.log('patient waiting');

  await operator.waitForSelector('#offer:not([hidden])');
  const countdown = Number(await operator.textContent('#countdown'));
  console.log(`offer rings, ${countdown} s left`);
  await shot(operator, 'offer-rings');
  await operator.keyboard.press('a');
  await operator.waitForSelector('#contact:not([hidden])');
  await patient.waitForSelector('#chat:not([hidden])');
  await shot(patient, 'patient-connected');
  console.log('connected');

  await patient.fill('#message-form input[name=body]', 'My son has had a fever since yesterday');
  await patient.click('#message-form button');
  await operator.waitForSelector('#agent-messages li.patient');
  await operator.fill('#agent-message-form input[name=body]', 'How old is he?');
  await operator.click('#agent-message-form button');
  await patient.waitForSelector('#messages li.staff');
  await shot(operator, 'operator-messages');
  await shot(patient, 'patient-messages');
  console.log('messages both ways');

  // A reload rejoins the same contact with its messages.
  await patient.reload();
  await patient.waitForFunction(() => document.querySelectorAll('#messages li').length === 2);
  await shot(patient, 'patient-rejoined');
  console.log('patient rejoined after reload');

  await operator.keyboard.press('e');
  await operator.waitForSelector('#wrap-up:not([hidden])');
  await shot(operator, 'wrap-up');
  await wrapUp(operator, 'information');
  await patient.waitForSelector('#chat[data-state=ended]');
  await shot(operator, 'wrapped-up');
  await shot(patient, 'patient-ended');
  console.log('ended and wrapped up');
} catch (e) {
  console.error(String(e?.stack ?? e));
  failed = true;
}
await browser.close();
process.exit(failed ? 1 : 0);
