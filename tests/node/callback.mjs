// A callback request in headless Chromium, a screenshot per step: with the
// operator seated but paused, a patient calls by voice and a second one
// starts a chat behind them; the caller asks "call me back instead" and keeps
// the first place; when the operator goes ready the callback task rings first
// (with the number to dial), is accepted, talked through, ended and wrapped up
// as a callback; the chat behind it rings next.
// Env: CARELINE_URL, CARELINE_USER, CARELINE_PASSWORD, CARELINE_ARTIFACTS.
import { acceptOffer, endAndWrapUp, launchWithMedia, screenshots, signIn, startContact, watch } from './lib.mjs';

const browser = await launchWithMedia(null);
const shot = screenshots('callback');
let failed = false;
try {
  const operator = await (await browser.newContext()).newPage();
  const caller = await (await browser.newContext()).newPage();
  const chatter = await (await browser.newContext()).newPage();
  for (const [p, n] of [[operator, 'operator'], [caller, 'caller'], [chatter, 'chatter']]) watch(p, n, () => { failed = true; });

  // Seated, on a break: nobody is answered yet.
  await signIn(operator, '/operator');
  await operator.waitForSelector('#agent[data-stream=open]');
  await operator.waitForSelector('#seat-form select option', { state: 'attached' });
  await operator.selectOption('#seat-form select[name=seat_id]', { label: 'S01' });
  await operator.click('#seat-form button[type=submit]');
  await operator.waitForFunction(() => document.getElementById('agent-state').textContent.startsWith('paused'));
  await shot(operator, 'operator-paused');

  await startContact(caller, { phone: '9810012345' });
  await startContact(chatter, { phone: '9871100220', mode: 'chat' });
  await caller.waitForSelector('#waiting:not([hidden])');
  await chatter.waitForSelector('#waiting:not([hidden])');
  await shot(caller, 'caller-waiting-first');
  console.log('caller first in the queue, a chat second');

  await caller.click('#callback');
  await caller.waitForSelector('#callback-noted:not([hidden])');
  await shot(caller, 'callback-requested');
  console.log('callback requested');

  await operator.click('#ready');
  await operator.waitForSelector('#offer:not([hidden])');
  // The callback kept its place: it rings before the chat that came after it.
  const title = await operator.textContent('#offer-title');
  if (title !== 'Call the patient back') throw new Error(`the first offer is "${title}", not the callback`);
  await shot(operator, 'callback-task-rings');
  console.log(`offer: ${title}`);

  await acceptOffer(operator);
  const dial = await operator.textContent('#contact-caller');
  if (!dial.includes('+919810012345')) throw new Error(`no number to call back: ${dial}`);
  await caller.waitForSelector('#in-call:not([hidden])');
  await caller.waitForFunction(() => window.careline.call.roster.some((p) => p.role === 'operator' && p.heard));
  await shot(operator, 'calling-back');
  console.log(`called back: ${dial}`);

  await endAndWrapUp(operator, 'callback', 'called back, information given');
  await caller.waitForSelector('#chat[data-state=ended]');
  await shot(operator, 'callback-wrapped-up');
  console.log('callback completed and wrapped up');

  // The chat that waited behind the callback is next.
  await operator.waitForSelector('#offer:not([hidden])');
  if ((await operator.textContent('#offer-title')) !== 'Incoming contact') {
    throw new Error(`next offer: ${await operator.textContent('#offer-title')}`);
  }
  await shot(operator, 'next-contact-rings');
  console.log('the chat rings next');
} catch (e) {
  console.error(String(e?.stack ?? e));
  failed = true;
}
await browser.close();
process.exit(failed ? 1 : 0);
