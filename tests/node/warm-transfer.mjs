// The warm transfer by voice and video, in three headless Chromium contexts
// with fake microphone (CARELINE_SPEECH) and camera: a patient calls with
// video; the operator answers and escalates; the doctor accepts and all
// three talk; the operator holds the patient to brief the doctor, resumes,
// and leaves; the doctor records consent (with recording), the call's
// captions appear on the doctor's page, and the doctor ends.
// Env: CARELINE_URL, CARELINE_USER and CARELINE_PASSWORD (the operator), CARELINE_DOCTOR_PASSWORD,
// CARELINE_SPEECH, CARELINE_ARTIFACTS.
import { base, launch, signIn, takeSeat, watch } from './lib.mjs';
import { mkdirSync } from 'node:fs';

const browser = await launch([
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  `--use-file-for-fake-audio-capture=${process.env.CARELINE_SPEECH}`,
  '--allow-loopback-in-peer-connection',
  '--autoplay-policy=no-user-gesture-required',
]);
const shots = process.env.CARELINE_ARTIFACTS;
if (shots) mkdirSync(shots, { recursive: true });
const shot = (page, name) => (shots ? page.screenshot({ path: `${shots}/warm-transfer-${name}.png`, fullPage: true }) : null);
let failed = false;


/// Inbound bytes per kind and per track of the agent's first call.
const inbound = (page) => page.evaluate(async () => {
  const call = [...window.careline.calls.values()][0];
  const out = { audio: [], video: 0 };
  (await call.pc.getStats()).forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    if (s.kind === 'audio') out.audio.push(s.bytesReceived ?? 0);
    else out.video += s.bytesReceived ?? 0;
  });
  return out;
});
const heardBy = (page, expr) => page.evaluate(expr);

try {
  const operator = await (await browser.newContext()).newPage();
  const doctor = await (await browser.newContext()).newPage();
  const patient = await (await browser.newContext()).newPage();
  for (const [p, n] of [[operator, 'operator'], [doctor, 'doctor'], [patient, 'patient']]) watch(p, n, () => { failed = true; });
  await signIn(operator, '/operator');
  await signIn(doctor, '/doctor', 'dr.mehta', process.env.CARELINE_DOCTOR_PASSWORD);
  await takeSeat(operator, 'S01');
  await takeSeat(doctor, 'S02');
  console.log('operator and doctor ready');

  await patient.goto(`${base}/call?lang=en`);
  await patient.fill('#start-form input[name=phone]', '9810012345');
  await patient.check('#start-form input[name=video]');
  await patient.click('#start-call');
  await patient.waitForFunction(() => window.careline?.call?.pc.connectionState === 'connected');
  await operator.waitForSelector('#offer:not([hidden])');
  await operator.keyboard.press('a');
  await operator.waitForFunction(() => [...(window.careline?.calls?.values() ?? [])][0]?.pc.connectionState === 'connected');
  console.log('operator answered');
  await shot(operator, '1-operator-answers');

  await operator.selectOption('#escalate-form select[name=specialty]', 'general');
  await operator.fill('#escalate-form input[name=note]', 'Chest pain since morning, diabetic');
  await operator.click('#escalate-form button[type=submit]');
  await doctor.waitForSelector('#offer:not([hidden])');
  await doctor.keyboard.press('a');
  await doctor.waitForFunction(() => [...(window.careline?.calls?.values() ?? [])][0]?.pc.connectionState === 'connected');
  await doctor.waitForFunction(() => {
    const roster = [...window.careline.calls.values()][0].roster;
    return ['patient', 'operator'].every((r) => roster.some((p) => p.role === r && p.heard));
  });
  let media = { audio: [], video: 0 };
  for (let i = 0; i < 30; i++) {
    await new Promise((r) => setTimeout(r, 500));
    media = await inbound(doctor);
    if (media.audio.filter((b) => b > 3000).length >= 2 && media.video > 20000) break;
  }
  if (media.audio.filter((b) => b > 3000).length < 2) throw new Error(`the doctor does not hear both: ${media.audio}`);
  if (media.video < 20000) throw new Error(`the doctor gets no video from the patient: ${media.video} bytes`);
  console.log(`three talk: the doctor hears two voices and gets ${media.video} bytes of the patient's video`);
  await shot(doctor, '2-doctor-joins');

  // The operator briefs the doctor while the patient is on hold.
  await operator.keyboard.press('h');
  await patient.waitForFunction(() => window.careline.call.roster.every((p) => !p.heard));
  await doctor.waitForFunction(() => {
    const roster = [...window.careline.calls.values()][0].roster;
    return !roster.find((p) => p.role === 'patient').heard && roster.find((p) => p.role === 'operator').heard;
  });
  console.log('briefing with the patient on hold');
  await operator.keyboard.press('h');
  await patient.waitForFunction(() => window.careline.call.roster.filter((p) => p.heard).length === 2);

  // The operator hands over and leaves.
  await operator.click('#leave-contact');
  await operator.waitForFunction(() => window.careline.calls.size === 0);
  await doctor.waitForFunction(() => ![...window.careline.calls.values()][0].roster.some((p) => p.role === 'operator'));
  await patient.waitForFunction(() => window.careline.call.roster.map((p) => p.role).join() === 'doctor');
  console.log('operator left; patient and doctor remain');
  await shot(patient, '3-patient-with-doctor');

  // Consent, with recording.
  await doctor.check('#note-form input[name=recording_consent]');
  await doctor.fill('#note-form input[name=chief_complaint]', 'Chest pain since morning');
  await doctor.fill('#note-form input[name=diagnosis]', 'Angina to be ruled out');
  await doctor.fill('#note-form textarea[name=advice]', 'Visit the nearest hospital today');
  await doctor.click('#note-form button[type=submit]');
  await doctor.waitForSelector('#consult .saved:not([hidden])');
  await new Promise((r) => setTimeout(r, 3000));
  console.log('consent recorded');
  // With consent, the call is transcribed: captions appear on the doctor's page.
  await doctor.waitForFunction(() => [...document.querySelectorAll('#transcript li[data-final=true]')]
    .some((li) => /chest|pain|father|diabetes|sixty|years/i.test(li.textContent)), null, { timeout: 45000 });
  const said = await doctor.$$eval('#transcript li[data-final=true]', (lis) => lis.map((li) => li.textContent));
  console.log(`captions: ${said.join(' | ')}`);
  await shot(doctor, '4-consent');
  await doctor.keyboard.press('e');
  await doctor.waitForSelector('#wrap-up:not([hidden])');
  await patient.waitForSelector('#chat[data-state=ended]');
  console.log('consult ended');
} catch (e) {
  console.error(String(e?.stack ?? e));
  failed = true;
}
await browser.close();
process.exit(failed ? 1 : 0);
