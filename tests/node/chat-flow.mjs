// A patient's chat from /call to an operator and back, in two headless
// Chromium contexts: offer rings (and rings on after the operator's page
// reloads), accept by keyboard, messages both ways, the patient reloads and
// rejoins, the operator reloads and still gets the patient's messages, the
// operator ends and wraps up.
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
  // A reload while it rings: the console's snapshot restores the offer and its countdown.
  await operator.reload();
  await operator.waitForSelector('#agent[data-stream=open]');
  await operator.waitForSelector('#offer:not([hidden])');
  const left = Number(await operator.textContent('#countdown'));
  if (!(left > 0 && left <= countdown)) throw new Error(`after a reload the offer shows ${left} s, before it ${countdown} s`);
  await shot(operator, 'offer-rings-after-reload');
  console.log(`offer rings on after the operator's reload, ${left} s left`);
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

  // The operator reloads: the chat and its messages come back, and the patient's next message arrives.
  await operator.reload();
  await operator.waitForSelector('#agent[data-stream=open]');
  await operator.waitForFunction(() => document.querySelectorAll('#agent-messages li').length === 2);
  await patient.fill('#message-form input[name=body]', 'He is four');
  await patient.click('#message-form button');
  await operator.waitForFunction(() =>
    [...document.querySelectorAll('#agent-messages li.patient')].some((li) => li.textContent === 'He is four'));
  const state = await operator.textContent('#agent-state');
  if (state !== 'busy') throw new Error(`after a reload the operator's state shows ${state}`);
  await shot(operator, 'operator-reloaded');
  console.log('operator reloaded and got the next message');

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
