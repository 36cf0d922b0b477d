// The operator scans a caller's e-health card QR code with the camera (a
// fake camera playing CARELINE_CARD_VIDEO, a Y4M of the card's code): the
// server reads the code and the desk finds the patient by the card number.
// Env: CARELINE_URL, CARELINE_USER, CARELINE_PASSWORD, CARELINE_CARD_VIDEO.
import { base, launch, signIn, takeSeat, watch } from './lib.mjs';

const browser = await launch([
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  `--use-file-for-fake-video-capture=${process.env.CARELINE_CARD_VIDEO}`,
]);
let failed = false;
try {
  const page = await (await browser.newContext()).newPage();
  watch(page, 'operator', () => { failed = true; });
  await signIn(page, '/operator');
  await takeSeat(page);
  const caller = await browser.newContext();
  const started = await caller.request.post(`${base}/api/contacts`, { data: { language: 'en', phone: '9810099999', channel: 'chat' } });
  if (!started.ok()) throw new Error(`contact not started: ${await started.text()}`);
  await page.waitForSelector('#offer:not([hidden])');
  await page.keyboard.press('a');
  await page.waitForSelector('#contact:not([hidden])');

  await page.click('#scan-card');
  await page.waitForSelector('#patients[data-state=done] .patient, #identify .error:not([hidden])', { timeout: 30000 });
  const problem = await page.$eval('#identify .error', (p) => (p.hidden ? '' : p.textContent));
  if (problem) throw new Error(`scan failed: ${problem}`);
  const card = await page.inputValue('#identify-form input[name=card]');
  const names = await page.$$eval('.patient h3', (hs) => hs.map((h) => h.textContent));
  console.log(`scanned card ${card}: ${names.join(', ')}`);
  if (card !== 'DL-EHC-100234' || !names.includes('Ramesh Kumar')) throw new Error('the scanned card did not find Ramesh Kumar');
  if (!(await page.$eval('#scan-view', (v) => v.hidden))) throw new Error('the camera is still on');
} catch (e) {
  console.error(String(e?.stack ?? e));
  failed = true;
}
await browser.close();
process.exit(failed ? 1 : 0);
