// A patient's chat from /call to an operator and back, in two headless
// Chromium contexts: offer rings, accept by keyboard, messages both ways,
// the patient reloads and rejoins, the operator ends and wraps up.
// Env: CARELINE_URL, CARELINE_USER, CARELINE_PASSWORD, CARELINE_ARTIFACTS.
import { base, launch, signIn, watch } from './lib.mjs';
import { mkdirSync } from 'node:fs';

const browser = await launch();
let failed = false;
const shots = process.env.CARELINE_ARTIFACTS;
try {
  const operator = await (await browser.newContext()).newPage();
  const patient = await (await browser.newContext()).newPage();
  watch(operator, 'operator', () => { failed = true; });
  watch(patient, 'patient', () => { failed = true; });
  await signIn(operator, '/operator');
  await operator.waitForSelector('#agent[data-stream=open]');
  await operator.waitForSelector('#seat-form select option', { state: 'attached' });
  await operator.click('#seat-form button[type=submit]');
  await operator.waitForFunction(() => document.getElementById('agent-state').textContent.startsWith('paused'));
  await operator.click('#ready');
  await operator.waitForFunction(() => document.getElementById('agent-state').textContent === 'idle');
  console.log('operator ready');

  await patient.goto(`${base}/call?lang=en`);
  await patient.fill('#start-form input[name=phone]', '9810012345');
  await patient.click('#start-chat');
  await patient.waitForSelector('#waiting:not([hidden]), #chat:not([hidden])');
  console.log('patient waiting');

  await operator.waitForSelector('#offer:not([hidden])');
  const countdown = Number(await operator.textContent('#countdown'));
  console.log(`offer rings, ${countdown} s left`);
  await operator.keyboard.press('a');
  await operator.waitForSelector('#contact:not([hidden])');
  await patient.waitForSelector('#chat:not([hidden])');
  console.log('connected');

  await patient.fill('#message-form input[name=body]', 'My son has had a fever since yesterday');
  await patient.click('#message-form button');
  await operator.waitForSelector('#agent-messages li.patient');
  await operator.fill('#agent-message-form input[name=body]', 'How old is he?');
  await operator.click('#agent-message-form button');
  await patient.waitForSelector('#messages li.staff');
  console.log('messages both ways');

  // A reload rejoins the same contact with its messages.
  await patient.reload();
  await patient.waitForFunction(() => document.querySelectorAll('#messages li').length === 2);
  console.log('patient rejoined after reload');

  await operator.keyboard.press('e');
  await operator.waitForSelector('#wrap-up:not([hidden])');
  await operator.selectOption('#wrap-up-form select[name=disposition]', 'information');
  await operator.click('#wrap-up-form button');
  await operator.waitForSelector('#wrap-up[hidden], #agent .error:not([hidden])', { state: 'attached' });
  const problem = await operator.$eval('#agent .error', (p) => (p.hidden ? '' : p.textContent));
  if (problem) throw new Error(`wrap-up refused: ${problem}`);
  await patient.waitForSelector('#chat[data-state=ended]');
  console.log('ended and wrapped up');
  if (shots) {
    mkdirSync(shots, { recursive: true });
    await patient.screenshot({ path: `${shots}/patient-chat.png`, fullPage: true });
  }
} catch (e) {
  console.error(String(e?.stack ?? e));
  failed = true;
}
await browser.close();
process.exit(failed ? 1 : 0);
