// One operator handles two chats at once in headless Chromium: both offers
// ring and are taken, messages land in the right conversation (the other tab
// is marked unread), and each chat is ended and wrapped up on its own.
// Env: CARELINE_URL, CARELINE_USER, CARELINE_PASSWORD.
import { base, launch, signIn, takeSeat, watch } from './lib.mjs';

const browser = await launch();
let failed = false;
try {
  const operator = await (await browser.newContext()).newPage();
  watch(operator, 'operator', () => { failed = true; });
  await signIn(operator, '/operator');
  await takeSeat(operator);

  const patients = [];
  for (const phone of ['9810000011', '9810000022']) {
    const page = await (await browser.newContext()).newPage();
    watch(page, `patient ${phone}`, () => { failed = true; });
    await page.goto(`${base}/call?lang=en`);
    await page.fill('#start-form input[name=phone]', phone);
    await page.click('#start-chat');
    await operator.waitForSelector('#offer:not([hidden])');
    await operator.keyboard.press('a');
    await page.waitForSelector('#chat:not([hidden])');
    patients.push(page);
  }
  await operator.waitForFunction(() => document.querySelectorAll('#contact-tabs button').length === 2);
  console.log('two chats open');

  // The first patient writes while the second chat is in view.
  await patients[0].fill('#message-form input[name=body]', 'First patient here');
  await patients[0].click('#message-form button');
  await operator.waitForFunction(() => [...document.querySelectorAll('#contact-tabs button')].some((b) => b.textContent.endsWith('•')));
  const inView = await operator.$$eval('#agent-messages li', (l) => l.map((x) => x.textContent));
  if (inView.includes('First patient here')) throw new Error('a message showed in the wrong conversation');
  await operator.click('#contact-tabs button:not(.active)');
  await operator.waitForFunction(() => [...document.querySelectorAll('#agent-messages li')].some((l) => l.textContent === 'First patient here'));
  console.log('message in the right conversation');

  await operator.click('#end');
  await operator.waitForSelector('#wrap-up:not([hidden])');
  await operator.click('#wrap-up-form button');
  await operator.waitForFunction(() => document.querySelectorAll('#contact-tabs button').length === 1 && document.getElementById('wrap-up').hidden);
  await patients[0].waitForSelector('#chat[data-state=ended]');
  const stillOpen = await patients[1].$('#chat[data-state=ended]');
  if (stillOpen) throw new Error('the second chat ended too');
  await operator.click('#end');
  await operator.waitForSelector('#wrap-up:not([hidden])');
  await operator.click('#wrap-up-form button');
  await operator.waitForFunction(() => document.getElementById('agent-state').textContent === 'idle');
  await patients[1].waitForSelector('#chat[data-state=ended]');
  console.log('both wrapped up');
} catch (e) {
  console.error(String(e?.stack ?? e));
  failed = true;
}
await browser.close();
process.exit(failed ? 1 : 0);
