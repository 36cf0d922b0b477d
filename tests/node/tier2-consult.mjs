// Issue 6's tier-2 story in three headless Chromium contexts with fake
// microphone (CARELINE_SPEECH) and camera, a screenshot per step: a patient
// with an email address (demo Fatima Begum) calls with video; the operator
// answers, identifies her by card number and escalates; the doctor accepts and
// all three talk; the operator briefs the doctor with the patient on hold,
// hands over and leaves; the doctor records consent (with recording; the
// call's captions appear); with the patient's camera off the consult is audio
// and a List A drug is refused (and so is the doctor claiming video: the
// server decides the mode), with it on again the same prescription is
// issued; a prohibited drug is refused with its reason; a follow-up is booked
// at a free slot; the doctor ends, records the consult in the patient's HIMS
// record from the wrap-up, and wraps up. Prints `contact ID` for the Rust
// side, which checks the mail, the HIMS record and the FHIR bundle.
// Env: CARELINE_URL, CARELINE_USER and CARELINE_PASSWORD (the operator), CARELINE_DOCTOR_PASSWORD,
// CARELINE_SPEECH, CARELINE_ARTIFACTS.
import { acceptOffer, inbound, launchWithMedia, screenshots, signIn, startContact, takeSeat, until, watch, wrapUp } from './lib.mjs';

const browser = await launchWithMedia();
const shot = screenshots('tier2-consult');
let failed = false;

/// Fills the first prescription row, submits, and returns the problems shown (empty when issued).
async function prescribe(doctor, generic, { strength, dose, frequency, duration }) {
  const row = '#rx-items tr:first-child';
  await doctor.fill(`${row} input[name=generic]`, generic);
  await doctor.fill(`${row} input[name=strength]`, strength);
  await doctor.fill(`${row} input[name=dose]`, dose);
  await doctor.fill(`${row} input[name=frequency]`, frequency);
  await doctor.fill(`${row} input[name=duration]`, duration);
  await doctor.click('#rx-form button[type=submit]');
  await doctor.waitForSelector('#rx .problems:not([hidden]), #rx-issued:not([hidden])');
  return doctor.$eval('#rx .problems', (p) => (p.hidden ? '' : p.textContent));
}
const mode = (doctor) => doctor.$eval('#rx-form select[name=mode]', (s) => s.value);

try {
  const operator = await (await browser.newContext()).newPage();
  const doctor = await (await browser.newContext()).newPage();
  const patient = await (await browser.newContext()).newPage();
  for (const [p, n] of [[operator, 'operator'], [doctor, 'doctor'], [patient, 'patient']]) watch(p, n, () => { failed = true; });
  await signIn(operator, '/operator');
  await signIn(doctor, '/doctor', 'dr.mehta', process.env.CARELINE_DOCTOR_PASSWORD);
  await takeSeat(operator, 'S01');
  await takeSeat(doctor, 'S02');
  await shot(doctor, 'doctor-ready');
  console.log('operator and doctor ready');

  await startContact(patient, { phone: '9871100220', card: 'DL-EHC-220871', video: true });
  await shot(patient, 'patient-calls-with-video');
  await acceptOffer(operator);
  const contact = await operator.evaluate(() => [...window.careline.calls.keys()][0]);
  console.log(`contact ${contact}`);

  // The operator identifies the caller: the contact now names the patient.
  await operator.fill('#identify-form input[name=card]', 'DL-EHC-220871');
  await operator.click('#identify-form button[type=submit]');
  await operator.waitForSelector('#patients[data-state=done] .patient');
  await operator.click('#patients .patient:first-child');
  await operator.waitForSelector('#patients .patient.selected');
  const identified = await until(() => operator.evaluate(async (id) => (await (await fetch(`/api/contacts/${id}`)).json()).patient_id, contact));
  if (!identified) throw new Error('the contact does not name the patient');
  console.log(`identified ${await operator.textContent('#patients .patient.selected h3')}`);
  await shot(operator, 'operator-identifies');

  await operator.selectOption('#escalate-form select[name=specialty]', 'general');
  await operator.fill('#escalate-form input[name=note]', 'Chest pain since morning, diabetic');
  await operator.click('#escalate-form button[type=submit]');
  await operator.waitForSelector('#leave-contact:not([hidden])');
  await shot(operator, 'operator-escalates');
  await doctor.waitForSelector('#offer:not([hidden])');
  await shot(doctor, 'doctor-offer-rings');
  await acceptOffer(doctor);
  await doctor.waitForFunction(() => {
    const roster = [...window.careline.calls.values()][0].roster;
    return ['patient', 'operator'].every((r) => roster.some((p) => p.role === r && p.heard));
  });
  const media = await until(async () => {
    const m = await inbound(doctor);
    return m.audio.filter((b) => b > 3000).length >= 2 && m.video > 20000 ? m : null;
  }, 15000);
  if (!media) throw new Error(`the doctor does not hear both or see the patient: ${JSON.stringify(await inbound(doctor))}`);
  console.log(`three talk: the doctor hears two voices and gets ${media.video} bytes of the patient's video`);
  console.log(`note from the operator: ${await doctor.textContent('#agent-messages li.system')}`);
  await shot(doctor, 'three-talk');

  // The operator briefs the doctor while the patient is on hold.
  await operator.keyboard.press('h');
  await patient.waitForFunction(() => window.careline.call.roster.every((p) => !p.heard));
  await doctor.waitForFunction(() => {
    const roster = [...window.careline.calls.values()][0].roster;
    return !roster.find((p) => p.role === 'patient').heard && roster.find((p) => p.role === 'operator').heard;
  });
  await shot(operator, 'briefing-on-hold');
  console.log('briefing with the patient on hold');
  await operator.keyboard.press('h');
  await patient.waitForFunction(() => window.careline.call.roster.filter((p) => p.heard).length === 2);

  // The operator hands over, leaves and wraps up their part.
  await operator.click('#leave-contact');
  await operator.waitForFunction(() => window.careline.calls.size === 0);
  await doctor.waitForFunction(() => ![...window.careline.calls.values()][0].roster.some((p) => p.role === 'operator'));
  await patient.waitForFunction(() => window.careline.call.roster.map((p) => p.role).join() === 'doctor');
  await wrapUp(operator, 'escalated');
  console.log('operator left; patient and doctor remain');
  await shot(patient, 'patient-with-doctor');

  // Consent (implied: the patient started the consult), and to recording.
  await doctor.check('#note-form input[name=recording_consent]');
  await doctor.fill('#note-form input[name=chief_complaint]', 'Chest pain since morning');
  await doctor.fill('#note-form textarea[name=history]', 'Type 2 diabetes for 10 years');
  await doctor.fill('#note-form input[name=diagnosis]', 'Angina to be ruled out');
  await doctor.fill('#note-form textarea[name=advice]', 'Visit the nearest hospital today');
  await doctor.click('#note-form button[type=submit]');
  await doctor.waitForSelector('#consult .saved:not([hidden])');
  console.log('consent recorded');
  // With consent, the call is transcribed: captions appear on the doctor's page.
  await doctor.waitForFunction(() => [...document.querySelectorAll('#transcript li[data-final=true]')]
    .some((li) => /chest|pain|father|diabetes|sixty|years/i.test(li.textContent)), null, { timeout: 45000 });
  const said = await doctor.$$eval('#transcript li[data-final=true]', (lis) => lis.map((li) => li.textContent));
  console.log(`captions: ${said.join(' | ')}`);
  await shot(doctor, 'consent-and-captions');

  // The patient switches the camera off: the consult is audio, and List A is refused.
  const amoxicillin = { strength: '500 mg', dose: '1 capsule', frequency: 'three times a day', duration: '5 days' };
  await patient.check('#video-off');
  await doctor.waitForFunction(() => document.querySelector('#rx-form select[name=mode]').value === 'audio');
  const audio = await prescribe(doctor, 'amoxicillin', amoxicillin);
  if (!/AMOXICILLIN is on List A/.test(audio)) throw new Error(`List A by audio not refused: "${audio}"`);
  console.log(`audio consult, refused: ${audio}`);
  await shot(doctor, 'list-a-refused-on-audio');
  // Claiming video while the camera is off: the server sees an audio consult and refuses the claim.
  await doctor.selectOption('#rx-form select[name=mode]', 'video');
  const claimed = await prescribe(doctor, 'amoxicillin', amoxicillin);
  if (!/^mode: this is an audio consult/.test(claimed)) throw new Error(`a claimed video was not refused: "${claimed}"`);
  console.log(`claimed video with the camera off, refused: ${claimed}`);
  await doctor.selectOption('#rx-form select[name=mode]', 'audio');

  // The camera on again: a video consult, and the same prescription is issued.
  await patient.uncheck('#video-off');
  await doctor.waitForFunction(() => document.querySelector('#rx-form select[name=mode]').value === 'video');
  const video = await prescribe(doctor, 'amoxicillin', amoxicillin);
  if (video) throw new Error(`refused by video: ${video}`);
  console.log(`video consult (${await mode(doctor)}), issued: ${await doctor.textContent('#rx-issued')}`);
  await shot(doctor, 'list-a-issued-on-video');

  // A prohibited drug is refused on any consult, with the reason.
  const prohibited = await prescribe(doctor, 'alprazolam', { strength: '0.5 mg', dose: '1 tablet', frequency: 'at night', duration: '7 days' });
  if (!/ALPRAZOLAM/.test(prohibited) || !/NDPS/.test(prohibited)) throw new Error(`prohibited drug not refused with its reason: "${prohibited}"`);
  console.log(`prohibited, refused: ${prohibited}`);
  await shot(doctor, 'prohibited-refused');

  // The follow-up, at a free slot.
  await doctor.selectOption('#follow-form select[name=facility_id]', { label: 'Lok Nayak Hospital' });
  await doctor.fill('#follow-form input[name=department]', 'general medicine');
  await doctor.click('#follow-form button[type=submit]');
  await doctor.waitForSelector('#follow-slots li button');
  const slot = await doctor.getAttribute('#follow-slots li:first-child', 'data-slot');
  await doctor.click('#follow-slots li:first-child button');
  await doctor.waitForSelector('#follow-slots .booked, #follow-up .error:not([hidden])');
  const problem = await doctor.$eval('#follow-up .error', (p) => (p.hidden ? '' : p.textContent));
  if (problem) throw new Error(`follow-up refused: ${problem}`);
  console.log(`follow-up booked: slot ${slot}, ${await doctor.textContent('#follow-slots li:first-child')}`);
  await shot(doctor, 'follow-up-booked');

  await doctor.keyboard.press('e');
  // The ended consult into Fatima's HIMS record, from the wrap-up.
  await doctor.waitForSelector('#hims-record:not([hidden])');
  await doctor.click('#hims-record-button');
  await doctor.waitForSelector('#hims-recorded:not([hidden]), #hims-record .error:not([hidden])');
  const refused = await doctor.$eval('#hims-record .error', (p) => (p.hidden ? '' : p.textContent));
  if (refused) throw new Error(`HIMS record refused: ${refused}`);
  console.log(`hims record: ${await doctor.textContent('#hims-recorded')}`);
  await shot(doctor, 'consult-recorded-in-hims');
  await wrapUp(doctor, 'information', 'follow-up at Lok Nayak');
  if (!(await doctor.$eval('#hims-record', (c) => c.hidden))) throw new Error('the HIMS card stayed after wrap-up');
  await patient.waitForSelector('#chat[data-state=ended]');
  await shot(doctor, 'consult-wrapped-up');
  await shot(patient, 'patient-consult-ended');
  console.log('consult ended');
} catch (e) {
  console.error(String(e?.stack ?? e));
  failed = true;
}
await browser.close();
process.exit(failed ? 1 : 0);
