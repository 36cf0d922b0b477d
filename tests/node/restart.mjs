// The server restarts under a live chat, in headless Chromium: an operator
// talking with a patient and a supervisor watching the wallboard. While the
// server is down each page says it is reconnecting; when it is back each
// reconnects by itself (with backoff), the operator is still on the chat and
// gets the patient's next message, and the patient gets the operator's.
// The test drives the restart: this script prints `restart now` and waits for
// `down` on stdin, then prints `seen reconnecting` and waits for `up`.
// Env: CARELINE_URL, CARELINE_USER (an operator), CARELINE_PASSWORD,
// CARELINE_SUPERVISOR, CARELINE_SUPERVISOR_PASSWORD, CARELINE_ARTIFACTS.
import { createInterface } from 'node:readline';
import { base, launch, screenshots, signIn, takeSeat, watch, wrapUp } from './lib.mjs';

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function expectLine(want) {
  const { value, done } = await lines.next();
  if (done || value.trim() !== want) throw new Error(`expected "${want}" on stdin, got ${done ? 'its end' : value}`);
}

const browser = await launch();
const shot = screenshots('restart');
let failed = false;
try {
  const operator = await (await browser.newContext()).newPage();
  const patient = await (await browser.newContext()).newPage();
  const supervisor = await (await browser.newContext()).newPage();
  for (const [page, name] of [[operator, 'operator'], [patient, 'patient'], [supervisor, 'supervisor']]) {
    watch(page, name, () => { failed = true; });
  }
  await signIn(operator, '/operator');
  await takeSeat(operator);
  await signIn(supervisor, '/supervisor', process.env.CARELINE_SUPERVISOR, process.env.CARELINE_SUPERVISOR_PASSWORD);
  await supervisor.waitForSelector('#wallboard[data-stream=open]');

  await patient.goto(`${base}/call?lang=en`);
  await patient.fill('#start-form input[name=phone]', '9810012345');
  await patient.click('#start-chat');
  await operator.waitForSelector('#offer:not([hidden])');
  await operator.keyboard.press('a');
  await operator.waitForSelector('#contact:not([hidden])');
  await patient.waitForSelector('#chat:not([hidden])');
  await patient.fill('#message-form input[name=body]', 'My mother feels dizzy');
  await patient.click('#message-form button');
  await operator.waitForSelector('#agent-messages li.patient');
  console.log('chatting');

  console.log('restart now');
  await expectLine('down');
  const down = { timeout: 20000 };
  await operator.waitForSelector('#agent[data-stream=reconnecting] #agent-reconnecting:not([hidden])', down);
  await patient.waitForSelector('body[data-stream=reconnecting] #call-reconnecting:not([hidden])', down);
  await supervisor.waitForSelector('#wallboard[data-stream=reconnecting] #wb-reconnecting:not([hidden])', down);
  await shot(operator, 'operator-reconnecting');
  await shot(patient, 'patient-reconnecting');
  await shot(supervisor, 'wallboard-reconnecting');
  console.log('seen reconnecting');
  await expectLine('up');

  // Backoff doubles from 1 s up to 15 s: every page is back within one cap.
  const back = { timeout: 30000 };
  await operator.waitForSelector('#agent[data-stream=open] #agent-reconnecting[hidden]', { ...back, state: 'attached' });
  await patient.waitForSelector('body[data-stream=open] #call-reconnecting[hidden]', { ...back, state: 'attached' });
  await supervisor.waitForSelector('#wallboard[data-stream=open] #wb-reconnecting[hidden]', { ...back, state: 'attached' });
  console.log('reconnected');

  await patient.fill('#message-form input[name=body]', 'She is seventy');
  await patient.click('#message-form button');
  await operator.waitForFunction(() =>
    [...document.querySelectorAll('#agent-messages li.patient')].some((li) => li.textContent === 'She is seventy'));
  const patientLines = await operator.$$eval('#agent-messages li', (l) => l.length);
  if (patientLines !== 2) throw new Error(`the operator's chat shows ${patientLines} messages, not 2`);
  await operator.fill('#agent-message-form input[name=body]', 'Is she drinking enough water?');
  await operator.click('#agent-message-form button');
  await patient.waitForFunction(() =>
    [...document.querySelectorAll('#messages li.staff')].some((li) => li.textContent === 'Is she drinking enough water?'));
  const shown = await patient.$$eval('#messages li', (l) => l.length);
  if (shown !== 3) throw new Error(`the patient's page shows ${shown} messages, not 3 (once each)`);
  await operator.waitForFunction(() => document.getElementById('agent-state').textContent === 'busy');
  await shot(operator, 'operator-after-restart');
  await shot(patient, 'patient-after-restart');
  await shot(supervisor, 'wallboard-after-restart');
  console.log('messages both ways after the restart');

  await operator.keyboard.press('e');
  await operator.waitForSelector('#wrap-up:not([hidden])');
  await wrapUp(operator, 'information');
  await patient.waitForSelector('#chat[data-state=ended]');
  console.log('ended and wrapped up');
} catch (e) {
  console.error(String(e?.stack ?? e));
  failed = true;
}
await browser.close();
process.exit(failed ? 1 : 0);
