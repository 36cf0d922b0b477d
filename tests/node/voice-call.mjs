// A patient's voice call from /call to an operator, through the server's
// SFU, in headless Chromium with a fake microphone playing CARELINE_SPEECH
// (a WAV of espeak-ng speech). Checks, in the operator's browser, that the
// patient's audio arrives (getStats: bytes and audio level), and on the
// server, that the audio it decodes (the tap, read as 100 ms loudness
// levels) follows the spoken file's loudness envelope.
// Env: CARELINE_URL, CARELINE_USER, CARELINE_PASSWORD, CARELINE_SPEECH.
import { base, launchWithMedia, signIn, takeSeat, watch } from './lib.mjs';
import { readFileSync } from 'node:fs';

const speech = process.env.CARELINE_SPEECH;
const browser = await launchWithMedia(speech);
let failed = false;

/// 100 ms RMS envelope of a 16-bit PCM WAV.
function envelope(path) {
  const wav = readFileSync(path);
  let offset = 12;
  let rate = 16000;
  let channels = 1;
  while (offset + 8 <= wav.length) {
    const id = wav.toString('ascii', offset, offset + 4);
    const size = wav.readUInt32LE(offset + 4);
    if (id === 'fmt ') {
      channels = wav.readUInt16LE(offset + 10);
      rate = wav.readUInt32LE(offset + 12);
    } else if (id === 'data') {
      const samples = [];
      for (let i = offset + 8; i + 1 < offset + 8 + size && i + 1 < wav.length; i += 2 * channels) samples.push(wav.readInt16LE(i) / 32768);
      const step = rate / 10;
      const env = [];
      for (let i = 0; i + step <= samples.length; i += step) {
        let sum = 0;
        for (let j = i; j < i + step; j++) sum += samples[j] * samples[j];
        env.push(Math.sqrt(sum / step));
      }
      return env;
    }
    offset += 8 + size + (size % 2);
  }
  throw new Error('no data chunk in the WAV');
}

/// The best normalised correlation of `levels` against the (looped) `env`, over all lags.
function bestCorrelation(levels, env) {
  const n = levels.length;
  const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
  const ml = mean(levels);
  let best = -1;
  for (let lag = 0; lag < env.length; lag++) {
    const ref = levels.map((_, i) => env[(lag + i) % env.length]);
    const mr = mean(ref);
    let num = 0, dl = 0, dr = 0;
    for (let i = 0; i < n; i++) {
      num += (levels[i] - ml) * (ref[i] - mr);
      dl += (levels[i] - ml) ** 2;
      dr += (ref[i] - mr) ** 2;
    }
    if (dl > 0 && dr > 0) best = Math.max(best, num / Math.sqrt(dl * dr));
  }
  return best;
}

try {
  const operator = await (await browser.newContext()).newPage();
  const patient = await (await browser.newContext()).newPage();
  watch(operator, 'operator', () => { failed = true; });
  watch(patient, 'patient', () => { failed = true; });
  await signIn(operator, '/operator');
  await takeSeat(operator);
  console.log('operator ready');

  await patient.goto(`${base}/call?lang=en`);
  await patient.fill('#start-form input[name=phone]', '9810012345');
  await patient.click('#start-call');
  await patient.waitForSelector('#waiting:not([hidden])');
  await patient.waitForFunction(() => window.careline?.call?.pc.connectionState === 'connected');
  console.log('patient waiting, connected to the server');

  await operator.waitForSelector('#offer:not([hidden])');
  await operator.keyboard.press('a');
  await operator.waitForSelector('#agent-call:not([hidden])');
  await operator.waitForFunction(() => [...(window.careline?.calls?.values() ?? [])][0]?.pc.connectionState === 'connected');
  await patient.waitForSelector('#in-call:not([hidden])');
  console.log('operator in the call');

  // The patient's voice reaches the operator's browser.
  let bytes = 0, level = 0;
  for (let i = 0; i < 40 && !(bytes > 20000 && level > 0.01); i++) {
    await new Promise((r) => setTimeout(r, 500));
    ({ bytes, level } = await operator.evaluate(async () => {
      const call = [...window.careline.calls.values()][0];
      const stats = await call.pc.getStats();
      let bytes = 0, level = 0;
      stats.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') {
          bytes += s.bytesReceived ?? 0;
          level = Math.max(level, s.audioLevel ?? 0);
        }
      });
      return { bytes, level };
    }));
  }
  if (!(bytes > 20000 && level > 0.01)) throw new Error(`the operator hears nothing: ${bytes} bytes, level ${level}`);
  console.log(`operator receives the patient: ${bytes} bytes, audio level ${level.toFixed(3)}`);

  // The server's decoded audio of the patient follows the spoken file.
  const contact = await operator.evaluate(() => [...window.careline.calls.keys()][0]);
  const levels = await operator.evaluate(async (id) => {
    const got = [];
    const events = new EventSource(`/api/contacts/${id}/media/levels`);
    events.addEventListener('level', (e) => {
      const l = JSON.parse(e.data);
      if (l.participant === 'patient') got.push(l.rms);
    });
    await new Promise((r) => setTimeout(r, 8000));
    events.close();
    return got;
  }, contact);
  const env = envelope(speech);
  const r = bestCorrelation(levels, env);
  const loud = levels.filter((x) => x > 0.01).length;
  console.log(`server tap: ${levels.length} levels, ${loud} loud, envelope correlation ${r.toFixed(2)}`);
  if (levels.length < 50 || loud < 10) throw new Error('the server tap got no speech');
  if (r < 0.5) throw new Error(`the server tap does not follow the spoken file (r = ${r.toFixed(2)})`);

  // A supervisor listens in from the wallboard, whispers to the operator, then barges in.
  const supervisor = await (await browser.newContext()).newPage();
  watch(supervisor, 'supervisor', () => { failed = true; });
  await signIn(supervisor, '/supervisor', 'meera', process.env.CARELINE_SUPERVISOR_PASSWORD);
  await supervisor.click(`#wb-calls li[data-contact="${contact}"] button`);
  await supervisor.waitForFunction(() => window.careline.monitoring?.call.pc.connectionState === 'connected');
  const sup = (role) => patient.evaluate((r) => window.careline.call.roster.find((p) => p.role === r)?.heard, role);
  await operator.waitForFunction(() => [...window.careline.calls.values()][0].roster.some((p) => p.role === 'supervisor'));
  if (await sup('supervisor')) throw new Error('the patient hears a supervisor who only listens');
  await supervisor.click('#wb-calls button:has-text("Whisper")');
  await operator.waitForFunction(() => [...window.careline.calls.values()][0].roster.some((p) => p.role === 'supervisor' && p.heard));
  if (await sup('supervisor')) throw new Error('the patient hears the whisper');
  console.log('supervisor listens and whispers to the operator only');
  await supervisor.click('#wb-calls button:has-text("Barge")');
  await patient.waitForFunction(() => window.careline.call.roster.some((p) => p.role === 'supervisor' && p.heard));
  let supBytes = 0;
  for (let i = 0; i < 20 && supBytes < 5000; i++) {
    await new Promise((r) => setTimeout(r, 500));
    supBytes = await supervisor.evaluate(async () => {
      let bytes = 0;
      (await window.careline.monitoring.call.pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') bytes += s.bytesReceived ?? 0;
      });
      return bytes;
    });
  }
  if (supBytes < 5000) throw new Error(`the supervisor hears nothing (${supBytes} bytes)`);
  console.log(`supervisor barged in, hearing ${supBytes} bytes`);
  await supervisor.close();

  // Hold silences the patient for the operator, resume brings them back.
  await operator.keyboard.press('h');
  await patient.waitForFunction(() => window.careline.call.roster.every((p) => !p.heard));
  await operator.keyboard.press('h');
  await patient.waitForFunction(() => window.careline.call.roster.some((p) => p.heard && p.role === 'operator'));
  console.log('held and resumed');

  // A reload rejoins the same call, and the operator hears the patient again.
  const received = () => operator.evaluate(async () => {
    let bytes = 0;
    (await [...window.careline.calls.values()][0].pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') bytes += s.bytesReceived ?? 0;
    });
    return bytes;
  });
  await patient.reload();
  await patient.waitForFunction(() => window.careline?.call?.pc.connectionState === 'connected');
  const before = await received();
  let after = before;
  for (let i = 0; i < 20 && after - before < 5000; i++) {
    await new Promise((r) => setTimeout(r, 500));
    after = await received();
  }
  if (after - before < 5000) throw new Error(`no audio after the patient's reload (${after - before} bytes)`);
  console.log(`patient reloaded and rejoined the call: ${after - before} more bytes`);

  await operator.keyboard.press('e');
  await operator.waitForSelector('#wrap-up:not([hidden])');
  await patient.waitForSelector('#chat[data-state=ended]');
  await operator.waitForFunction(() => window.careline.calls.size === 0);
  console.log('call ended');
} catch (e) {
  console.error(String(e?.stack ?? e));
  failed = true;
}
await browser.close();
process.exit(failed ? 1 : 0);
