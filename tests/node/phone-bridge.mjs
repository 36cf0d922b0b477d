// A phone caller bridged to an operator in headless Chromium: the operator
// accepts the phone contact, hears the caller through the server's mixer
// (getStats: the inbound audio level of the caller's slot), talks, holds and
// resumes the caller, then ends the call. What the caller heard is checked by
// the test (tests/tests/e2e/phone.rs) from the RTP it received; this script
// prints each phase as it begins so the test can cut the recording by time.
// Env: CARELINE_URL, CARELINE_USER, CARELINE_PASSWORD, CARELINE_SPEECH (the
// operator's fake microphone).
import { acceptOffer, endAndWrapUp, inbound, launchWithMedia, signIn, takeSeat, until, watch } from './lib.mjs';

const browser = await launchWithMedia(process.env.CARELINE_SPEECH);
let failed = false;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const roster = (page) => page.evaluate(() => [...window.careline.calls.values()][0].roster);

try {
  const operator = await (await browser.newContext()).newPage();
  watch(operator, 'operator', () => { failed = true; });
  await signIn(operator, '/operator');
  await takeSeat(operator);
  console.log('operator ready');

  await operator.waitForSelector('#offer:not([hidden])', { timeout: 40000 });
  await acceptOffer(operator);
  const contact = await operator.evaluate(() => [...window.careline.calls.keys()][0]);
  // The phone line joins the call as the patient, heard on a slot of its own.
  const line = await until(async () => (await roster(operator)).find((p) => p.id === 'patient' && p.heard));
  if (!line) throw new Error(`the phone line is not in the call: ${JSON.stringify(await roster(operator))}`);
  console.log(`talking ${contact}`);

  // The caller's tone reaches the operator's browser.
  const heard = await until(async () => {
    const s = await inbound(operator);
    return s.level > 0.05 && s;
  });
  if (!heard) throw new Error(`the operator does not hear the caller: ${JSON.stringify(await inbound(operator))}`);
  console.log(`operator hears the caller: audio level ${heard.level.toFixed(3)}`);
  await sleep(3000);

  // Hold (H): the caller hears hold music, the operator hears nobody.
  await operator.keyboard.press('h');
  await operator.waitForFunction(() => [...window.careline.calls.values()][0].roster.some((p) => p.id === 'patient' && p.held));
  console.log('held');
  await sleep(3000);
  await operator.keyboard.press('h');
  await operator.waitForFunction(() => [...window.careline.calls.values()][0].roster.some((p) => p.id === 'patient' && p.heard));
  console.log('resumed');
  await sleep(3000);

  // Ending the contact hangs up the phone leg (the caller gets a BYE).
  console.log('ending');
  await endAndWrapUp(operator, 'information', 'phone caller bridged');
  console.log('wrapped up');
} catch (e) {
  console.error(e);
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
