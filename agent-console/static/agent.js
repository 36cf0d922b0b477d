// An agent's seat, offers and contacts (operators and doctors): take a seat,
// go ready, answer the ringing offer, chat, escalate, hand over, end, wrap up.
// Updates arrive as server-sent events from /api/agent/stream, which starts
// (on load and on every reconnect) with a snapshot of the seat: its state,
// the ringing offer, the contacts held. A closed stream is opened again with
// backoff, and the seat panel says it is reconnecting meanwhile.
import { joinCall } from './media.js';

const $ = (sel) => document.querySelector(sel);
let offer = null;     // { contact, until, timer }
let current = null;   // the contact being handled

async function api(path, method = 'POST', json) {
  const response = await fetch(path, {
    method,
    headers: json ? { 'Content-Type': 'application/json' } : {},
    body: json ? JSON.stringify(json) : undefined,
  });
  const body = response.headers.get('content-type')?.includes('json') ? await response.json() : null;
  if (!response.ok) throw new Error(body?.detail || response.statusText);
  return body;
}

function fail(section, error) {
  const p = $(`${section} .error`);
  p.textContent = error ? error.message : '';
  p.hidden = !error;
}

const showState = (s) => { if (s?.state) $('#agent-state').textContent = s.reason ? `${s.state} (${s.reason})` : s.state; };
const run = (section, fn) => async (...args) => {
  fail(section, null);
  try { return await fn(...args); } catch (e) { fail(section, e); }
};

async function seats() {
  const list = await api('/api/seats', 'GET');
  $('#seat-form select[name=seat_id]').append(...list.map((s) => Object.assign(document.createElement('option'),
    { value: s.seat_id, textContent: s.label + (s.is_peak ? ' ★' : '') })));
}

$('#seat-form').addEventListener('submit', run('#agent', async (e) => {
  e.preventDefault();
  showState(await api('/api/agent/session', 'POST', { seat_id: Number(new FormData(e.target).get('seat_id')) }));
}));
$('#ready').addEventListener('click', run('#agent', async () => showState(await api('/api/agent/ready'))));
$('#pause').addEventListener('click', run('#agent', async () =>
  showState(await api('/api/agent/pause', 'POST', { reason: $('#seat-form select[name=reason]').value }))));
$('#leave-seat').addEventListener('click', run('#agent', async () => {
  await api('/api/agent/session', 'DELETE');
  $('#agent-state').textContent = 'logged_out';
}));

function ring(u) {
  if (offer?.contact === u.contact) {
    // The offer already ringing (a snapshot after a reconnect): only its time may differ.
    offer.until = new Date(u.until);
    return;
  }
  unring();
  offer = { contact: u.contact, until: new Date(u.until), callback: u.callback };
  const title = $('#offer-title');
  title.textContent = u.callback ? title.dataset.callback : title.dataset.incoming;
  $('#offer').hidden = false;
  $('#agent-state').textContent = 'offered';
  tone();
  clearInterval(offer.timer);
  const tick = () => { $('#countdown').textContent = Math.max(0, Math.round((offer.until - Date.now()) / 1000)); };
  tick();
  offer.timer = setInterval(tick, 250);
}

function unring() {
  if (offer) clearInterval(offer.timer);
  offer = null;
  $('#offer').hidden = true;
}

// A short ring from the Web Audio API (no file to fetch).
function tone() {
  try {
    const ctx = new AudioContext();
    const osc = ctx.createOscillator();
    osc.frequency.value = 880;
    osc.connect(ctx.destination);
    osc.start();
    osc.stop(ctx.currentTime + 0.3);
  } catch { /* no audio output */ }
}

const accept = run('#agent', async () => {
  if (!offer) return;
  const { contact: id, callback } = offer;
  unring();
  await api(`/api/contacts/${id}/accept`);
  open(id, callback);
});
const decline = run('#agent', async () => {
  if (!offer) return;
  const id = offer.contact;
  unring();
  await api(`/api/contacts/${id}/decline`);
});
$('#accept').addEventListener('click', accept);
$('#decline').addEventListener('click', decline);

// Open contacts (several chats at once), the one in view, and those awaiting wrap-up.
const contacts = new Map(); // id -> { messages, lastId, unread }
const toWrap = [];
const opening = new Set(); // contacts being opened (an accept and a snapshot may both ask)

async function open(id, callback = false) {
  if (contacts.has(id) || opening.has(id)) return;
  opening.add(id);
  let history, contact;
  try {
    history = await api(`/api/contacts/${id}/messages`, 'GET');
    contact = await api(`/api/contacts/${id}`, 'GET');
  } finally {
    opening.delete(id);
  }
  // The number to dial for a callback, and who is calling otherwise.
  const lastId = history.reduce((m, x) => Math.max(m, x.chat_message_id), 0);
  contacts.set(id, { messages: history, lastId, unread: false, phone: contact.caller_phone, callback, channel: contact.channel });
  focus(id);
  if (MESSAGING.includes(contact.channel)) await refreshConversation(id);
  // Written channels have no call to join: the web chat, WhatsApp, SMS.
  if (!TEXT_CHANNELS.includes(contact.channel)) {
    const call = await joinCall({
      contact: id,
      // Doctors consult by video where the patient's side allows it.
      video: location.pathname === '/doctor',
      media: $('#agent-media'),
      onRoster: (roster) => {
        const c = contacts.get(id);
        if (c) c.roster = roster;
        if (current === id) showCall();
        document.dispatchEvent(new CustomEvent('careline:roster', { detail: { contact: id, roster } }));
      },
      onError: (message) => fail('#contact', new Error(message)),
    });
    calls.set(id, call);
    window.careline = { calls };
    showCall();
  }
}

// WhatsApp and SMS: the channel's rules (the 24-hour window, a STOP) and
// each reply's progress, kept fresh while the conversation is in view.
const TEXT_CHANNELS = ['chat', 'whatsapp', 'sms'];
const MESSAGING = ['whatsapp', 'sms'];
const CHANNEL_NAMES = { whatsapp: 'WhatsApp', sms: 'SMS' };

async function refreshConversation(id) {
  const c = contacts.get(id);
  if (!c || !MESSAGING.includes(c.channel)) return;
  c.conversation = await api(`/api/contacts/${id}/conversation`, 'GET');
  if (current === id) {
    showChannel();
    $('#agent-messages').replaceChildren(...c.messages.map(bubble));
  }
}
setInterval(() => {
  if (current) refreshConversation(current).catch((e) => fail('#contact', e));
}, 4000);

function showChannel() {
  const el = $('#contact-channel');
  const conv = contacts.get(current)?.conversation;
  el.hidden = !conv;
  if (!conv) return;
  el.querySelector('strong').textContent = `${CHANNEL_NAMES[conv.channel] ?? conv.channel} ${conv.address}`;
  let rule = '';
  el.classList.remove('warning');
  if (conv.opted_out) {
    rule = el.dataset.stopped;
    el.classList.add('warning');
  } else if (conv.window_closes_at) {
    const closes = new Date(conv.window_closes_at);
    if (closes > new Date()) rule = `${el.dataset.until} ${closes.toLocaleString([], { dateStyle: 'short', timeStyle: 'short' })}`;
    else {
      rule = el.dataset.closed + (conv.templates.length ? `: ${conv.templates.join(', ')}` : '');
      el.classList.add('warning');
    }
  }
  el.querySelector('span').textContent = rule;
}

// A reply's progress in the console's language (the order of `data-state-N`).
function progress(r) {
  const i = r.state === 'failed' || r.delivery === 'failed' ? 6
    : r.delivery === 'read' ? 4
      : r.delivery === 'delivered' ? 3
        : r.delivery === 'sent' || r.state === 'sent' ? 2
          : r.state === 'unknown' ? 5
            : r.state === 'sending' ? 1 : 0;
  const word = $('#agent-messages').getAttribute(`data-state-${i}`) ?? r.state;
  const mark = ['🕓', '🕓', '✓', '✓✓', '✓✓', '?', '⚠'][i];
  return { text: `${mark} ${word}${i === 6 && r.last_error ? `: ${r.last_error}` : ''}`, failed: i === 6, read: i === 4 };
}

// Voice and video calls, by contact.
const calls = new Map();
const held = new Set();

function showCall() {
  const call = calls.get(current);
  $('#agent-call').hidden = !call;
  if (!call) return;
  const roster = contacts.get(current)?.roster ?? [];
  $('#agent-call-with').textContent = roster.filter((p) => p.connected).map((p) => `${p.role}${p.held ? ' (hold)' : ''}`).join(', ');
  const h = held.has(current);
  $('#hold').textContent = `${h ? $('#hold').dataset.resume : $('#hold').dataset.hold} (H)`;
  $('#agent-mute').checked = !call.stream.getAudioTracks()[0]?.enabled;
}

function hangUp(id) {
  calls.get(id)?.leave();
  calls.delete(id);
  held.delete(id);
}

const hold = () => {
  const call = calls.get(current);
  if (!call) return;
  const on = !held.has(current);
  if (on) held.add(current); else held.delete(current);
  call.hold('patient', on);
  showCall();
};
const mute = () => {
  const call = calls.get(current);
  if (!call) return;
  call.mute(call.stream.getAudioTracks()[0]?.enabled);
  showCall();
};
$('#hold').addEventListener('click', hold);
$('#agent-mute').addEventListener('change', mute);

function focus(id) {
  current = id;
  $('#contact').hidden = !id;
  tabs();
  if (id) {
    const c = contacts.get(id);
    c.unread = false;
    $('#contact-id').textContent = id.slice(0, 8);
    const caller = $('#contact-caller');
    caller.hidden = !c.phone;
    caller.querySelector('span').textContent = c.callback ? caller.dataset.callback : caller.dataset.phone;
    caller.querySelector('strong').textContent = c.phone ?? '';
    $('#agent-messages').replaceChildren(...c.messages.map(bubble));
    $('#agent-state').textContent = 'busy';
  }
  showChannel();
  showCall();
  document.dispatchEvent(new CustomEvent('careline:contact', { detail: id }));
}

function tabs() {
  $('#contact-tabs').replaceChildren(...[...contacts.entries()].map(([id, c]) => {
    const b = Object.assign(document.createElement('button'), { type: 'button', textContent: id.slice(0, 8) + (c.unread ? ' •' : '') });
    b.dataset.contact = id;
    b.classList.toggle('active', id === current);
    b.addEventListener('click', () => focus(id));
    return b;
  }));
}

function bubble(m) {
  const li = document.createElement('li');
  li.className = m.sender;
  li.textContent = m.body;
  const id = m.chat_message_id ?? m.id;
  const reply = contacts.get(m.contact_id ?? m.contact)?.conversation?.replies.find((r) => r.chat_message_id === id);
  if (reply) {
    const p = progress(reply);
    const tick = Object.assign(document.createElement('small'), { className: 'tick', textContent: p.text });
    tick.classList.toggle('failed', p.failed);
    tick.classList.toggle('read', p.read);
    li.append(' ', tick);
  }
  return li;
}

function received(u) {
  const c = contacts.get(u.contact);
  if (!c) return;
  // A message may come twice around a reconnect (the snapshot's catch-up and the stream).
  if (u.id && u.id <= c.lastId) return;
  if (u.id) c.lastId = u.id;
  c.messages.push(u);
  if (u.contact === current) $('#agent-messages').append(bubble(u));
  else {
    c.unread = true;
    tabs();
  }
}

$('#agent-message-form').addEventListener('submit', run('#contact', async (e) => {
  e.preventDefault();
  const input = e.target.elements.body;
  const id = current;
  await api(`/api/contacts/${id}/messages`, 'POST', { body: input.value });
  input.value = '';
  await refreshConversation(id);
}));

const end = run('#contact', async () => {
  if (!current) return;
  const id = current;
  await api(`/api/contacts/${id}/end`);
  toWrapUp(id);
});
$('#end').addEventListener('click', end);

$('#escalate-form').addEventListener('submit', run('#contact', async (e) => {
  e.preventDefault();
  const data = new FormData(e.target);
  await api(`/api/contacts/${current}/escalate`, 'POST',
    { specialty: data.get('specialty'), urgent: data.get('urgent') === 'on', note: data.get('note') });
  $('#leave-contact').hidden = false;
}));
$('#leave-contact').addEventListener('click', run('#contact', async () => {
  const id = current;
  await api(`/api/contacts/${id}/leave`);
  toWrapUp(id);
}));

function toWrapUp(id) {
  // Called twice when the stream's `ended` beats the end request's answer.
  if (!contacts.has(id)) return;
  contacts.delete(id);
  hangUp(id);
  toWrap.push(id);
  $('#leave-contact').hidden = true;
  showWrapUp();
  focus(current === id ? ([...contacts.keys()][0] ?? null) : current);
  if (!contacts.size) $('#agent-state').textContent = 'wrap_up';
}

function showWrapUp() {
  $('#wrap-up').hidden = !toWrap.length;
  if (toWrap.length) $('#wrap-up-id').textContent = toWrap[0].slice(0, 8);
  // The contact being wrapped up (or none), for the role's own panels.
  document.dispatchEvent(new CustomEvent('careline:wrap-up', { detail: toWrap[0] ?? null }));
}

const wrapUp = run('#agent', async (e) => {
  e?.preventDefault();
  if (!toWrap.length) return;
  const data = new FormData($('#wrap-up-form'));
  await api(`/api/contacts/${toWrap[0]}/wrap-up`, 'POST', { disposition: data.get('disposition'), note: data.get('note') || null });
  toWrap.shift();
  $('#wrap-up-form').reset();
  showWrapUp();
  if (!contacts.size && !toWrap.length) {
    document.dispatchEvent(new CustomEvent('careline:contact', { detail: null }));
    $('#agent-state').textContent = 'idle';
  }
});
$('#wrap-up-form').addEventListener('submit', wrapUp);

document.addEventListener('keydown', (e) => {
  if (e.target.matches('input, textarea, select') || e.ctrlKey || e.metaKey || e.altKey) return;
  const key = e.key.toLowerCase();
  if (key === 'a') accept();
  else if (key === 'd') decline();
  else if (key === 'e') end();
  else if (key === 'w') wrapUp();
  else if (key === 'h') hold();
  else if (key === 'm') mute();
});

// The seat as the server has it now (GET /api/agent/state, and the stream's
// `snapshot` event): the offer panel, the contacts and their messages, the state.
const applySnapshot = run('#agent', async (s) => {
  if (s.offer) ring({ contact: s.offer.contact_id, until: s.offer.until, callback: s.offer.callback });
  else unring();
  const held = new Map(s.contacts.map((c) => [c.contact_id, c]));
  // Contacts that ended or were taken over while the console was away.
  for (const id of [...contacts.keys()]) {
    if (held.get(id)?.status === 'connected') continue;
    if (held.has(id)) toWrapUp(id);
    else {
      contacts.delete(id);
      hangUp(id);
      focus(current === id ? ([...contacts.keys()][0] ?? null) : current);
    }
  }
  for (const c of s.contacts) {
    if (c.status === 'wrap_up') {
      if (!toWrap.includes(c.contact_id)) toWrap.push(c.contact_id);
      continue;
    }
    const mine = contacts.get(c.contact_id);
    if (!mine) await open(c.contact_id);
    else if ((c.last_message_id ?? 0) > mine.lastId) {
      // Messages sent while the stream was down.
      const missed = await api(`/api/contacts/${c.contact_id}/messages?after=${mine.lastId}`, 'GET');
      for (const m of missed) received({ ...m, contact: c.contact_id, id: m.chat_message_id });
    }
  }
  showWrapUp();
  tabs();
  showState(s);
});

let events = null;
let retry = 1000; // the next reconnect's wait: 1 s, 2 s, 4 s… at most 15 s
let retryTimer = null;

function reconnecting(on) {
  $('#agent-reconnecting').hidden = !on;
  $('#agent').dataset.stream = on ? 'reconnecting' : 'open';
}

function connect() {
  events = new EventSource('/api/agent/stream');
  events.addEventListener('snapshot', (e) => {
    retry = 1000;
    reconnecting(false);
    applySnapshot(JSON.parse(e.data));
  });
  events.addEventListener('update', (e) => {
    const u = JSON.parse(e.data);
    document.dispatchEvent(new CustomEvent('careline:update', { detail: u }));
    if (u.type === 'offer') ring(u);
    else if (u.type === 'withdraw' && offer?.contact === u.contact) unring();
    else if (u.type === 'agent_paused') $('#agent-state').textContent = `paused (${u.reason})`;
    else if (u.type === 'message') received(u);
    else if (u.type === 'ended') toWrapUp(u.contact);
  });
  // A browser retries a dropped stream by itself but gives up for good on an
  // error answer (a 503 while routing is rebuilt): the stream is closed and
  // opened anew here with backoff, whichever it was.
  events.addEventListener('error', () => {
    events.close();
    reconnecting(true);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, retry);
    retry = Math.min(retry * 2, 15000);
  });
}
connect();

seats();
