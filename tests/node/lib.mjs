// Shared by the browser tests: Debian's Chromium with the flags this machine
// needs, and signing in through the login page.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

export const base = process.env.CARELINE_URL;

export function launch(extraArgs = []) {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run', ...extraArgs],
    timeout: 30000,
  });
}

/// Signs in as CARELINE_USER on `page` (English pages) and waits for the role's console at `home`.
export async function signIn(page, home, user = process.env.CARELINE_USER, password = process.env.CARELINE_PASSWORD) {
  await page.goto(`${base}/?lang=en`);
  await page.fill('input[name=username]', user);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');
  await page.waitForURL(`${base}${home}`);
}

/// Fails the script on any uncaught error in `page`.
export function watch(page, name, onError) {
  page.setDefaultTimeout(15000);
  page.on('pageerror', (e) => { console.error(`${name} page error: ${e}`); onError(); });
}

/// Takes `seat` (the first free one when absent) on an agent console and goes ready.
export async function takeSeat(page, seat = null) {
  await page.waitForSelector('#agent[data-stream=open]');
  await page.waitForSelector('#seat-form select option', { state: 'attached' });
  if (seat) await page.selectOption('#seat-form select[name=seat_id]', { label: seat });
  await page.click('#seat-form button[type=submit]');
  await page.waitForFunction(() => document.getElementById('agent-state').textContent.startsWith('paused'));
  await page.click('#ready');
  await page.waitForFunction(() => document.getElementById('agent-state').textContent === 'idle');
}

/// Chromium with a fake camera and a fake microphone playing `speech` (a WAV;
/// a beep when absent), media permissions granted, loopback ICE and autoplay.
export function launchWithMedia(speech = process.env.CARELINE_SPEECH) {
  return launch([
    '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream',
    ...(speech ? [`--use-file-for-fake-audio-capture=${speech}`] : []),
    '--allow-loopback-in-peer-connection',
    '--autoplay-policy=no-user-gesture-required',
  ]);
}

/// A screenshot per step of a story, numbered in order, into CARELINE_ARTIFACTS
/// as `STORY-NN-step.png` (nothing when the variable is unset).
export function screenshots(story) {
  const dir = process.env.CARELINE_ARTIFACTS;
  if (dir) mkdirSync(dir, { recursive: true });
  let n = 0;
  return async (page, step) => {
    n += 1;
    if (dir) await page.screenshot({ path: `${dir}/${story}-${String(n).padStart(2, '0')}-${step}.png`, fullPage: true });
  };
}

/// Polls `check` (an async function returning a value or a falsy one) every
/// 250 ms until it gives a truthy value or `ms` pass; returns the last value.
export async function until(check, ms = 15000) {
  const deadline = Date.now() + ms;
  let value = await check();
  while (!value && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    value = await check();
  }
  return value;
}

/// Inbound RTP of an agent's first call (or the patient's call when `patient`):
/// audio bytes and the highest audio level per track, and video bytes.
export function inbound(page, patient = false) {
  return page.evaluate(async (patient) => {
    const call = patient ? window.careline.call : [...window.careline.calls.values()][0];
    const out = { audio: [], level: 0, video: 0 };
    (await call.pc.getStats()).forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      if (s.kind === 'audio') {
        out.audio.push(s.bytesReceived ?? 0);
        out.level = Math.max(out.level, s.audioLevel ?? 0);
      } else out.video += s.bytesReceived ?? 0;
    });
    return out;
  }, patient);
}

/// The patient starts a contact on /call: `mode` 'call' or 'chat', with an
/// optional e-health card number and video.
export async function startContact(page, { phone, card = null, mode = 'call', video = false }) {
  await page.goto(`${base}/call?lang=en`);
  await page.fill('#start-form input[name=phone]', phone);
  if (card) await page.fill('#start-form input[name=ehealth_card]', card);
  if (video) await page.check('#start-form input[name=video]');
  await page.click(mode === 'call' ? '#start-call' : '#start-chat');
  await page.waitForSelector('#waiting:not([hidden]), #chat:not([hidden])');
  if (mode === 'call') await page.waitForFunction(() => window.careline?.call?.pc.connectionState === 'connected');
}

/// Accepts the ringing offer on an agent console by keyboard; for a call, waits
/// until the agent's peer connection to the server is up.
export async function acceptOffer(page, call = true) {
  await page.waitForSelector('#offer:not([hidden])');
  await page.keyboard.press('a');
  await page.waitForSelector('#contact:not([hidden])');
  if (call) {
    await page.waitForFunction(() => [...(window.careline?.calls?.values() ?? [])][0]?.pc.connectionState === 'connected');
  }
}

/// Ends the contact in view (E) and wraps it up with `disposition`; fails on a refusal.
export async function endAndWrapUp(page, disposition, note = '') {
  await page.keyboard.press('e');
  await wrapUp(page, disposition, note);
}

/// Wraps up the first contact awaiting wrap-up with `disposition`; fails on a refusal.
export async function wrapUp(page, disposition, note = '') {
  await page.waitForSelector('#wrap-up:not([hidden])');
  await page.selectOption('#wrap-up-form select[name=disposition]', disposition);
  if (note) await page.fill('#wrap-up-form input[name=note]', note);
  await page.click('#wrap-up-form button');
  await page.waitForSelector('#wrap-up[hidden], #agent .error:not([hidden])', { state: 'attached' });
  const problem = await page.$eval('#agent .error', (p) => (p.hidden ? '' : p.textContent));
  if (problem) throw new Error(`wrap-up refused: ${problem}`);
}
