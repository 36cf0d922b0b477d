// An agent's seat, offers and contacts (operators and doctors): take a seat,
// go ready, answer the ringing offer, chat, escalate, hand over, end, wrap up.
// Updates arrive as server-sent events from /api/agent/stream.
const $ = (sel) => document.querySelector(sel);
let offer = null;     // { contact, until, timer }
let current = null;   // the contact being handled
let wrapping = null;  // the contact being wrapped up

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
  offer = { contact: u.contact, until: new Date(u.until) };
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
  const id = offer.contact;
  unring();
  await api(`/api/contacts/${id}/accept`);
  open(id);
});
const decline = run('#agent', async () => {
  if (!offer) return;
  const id = offer.contact;
  unring();
  await api(`/api/contacts/${id}/decline`);
});
$('#accept').addEventListener('click', accept);
$('#decline').addEventListener('click', decline);

async function open(id) {
  current = id;
  $('#contact').hidden = false;
  $('#contact-id').textContent = id.slice(0, 8);
  $('#agent-state').textContent = 'busy';
  document.dispatchEvent(new CustomEvent('careline:contact', { detail: id }));
  const history = await api(`/api/contacts/${id}/messages`, 'GET');
  $('#agent-messages').replaceChildren(...history.map(bubble));
}

function bubble(m) {
  const li = document.createElement('li');
  li.className = m.sender;
  li.textContent = m.body;
  return li;
}

$('#agent-message-form').addEventListener('submit', run('#contact', async (e) => {
  e.preventDefault();
  const input = e.target.elements.body;
  await api(`/api/contacts/${current}/messages`, 'POST', { body: input.value });
  input.value = '';
}));

const end = run('#contact', async () => {
  if (!current) return;
  await api(`/api/contacts/${current}/end`);
  toWrapUp();
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
  await api(`/api/contacts/${current}/leave`);
  toWrapUp();
}));

function toWrapUp() {
  // Called twice when the stream's `ended` beats the end request's answer.
  if (current) wrapping = current;
  current = null;
  $('#contact').hidden = true;
  $('#leave-contact').hidden = true;
  $('#wrap-up').hidden = false;
  $('#agent-state').textContent = 'wrap_up';
}

const wrapUp = run('#agent', async (e) => {
  e?.preventDefault();
  if (!wrapping) return;
  const data = new FormData($('#wrap-up-form'));
  await api(`/api/contacts/${wrapping}/wrap-up`, 'POST', { disposition: data.get('disposition'), note: data.get('note') || null });
  wrapping = null;
  $('#wrap-up').hidden = true;
  $('#wrap-up-form').reset();
  document.dispatchEvent(new CustomEvent('careline:contact', { detail: null }));
  $('#agent-state').textContent = 'idle';
});
$('#wrap-up-form').addEventListener('submit', wrapUp);

document.addEventListener('keydown', (e) => {
  if (e.target.matches('input, textarea, select') || e.ctrlKey || e.metaKey || e.altKey) return;
  const key = e.key.toLowerCase();
  if (key === 'a') accept();
  else if (key === 'd') decline();
  else if (key === 'e') end();
  else if (key === 'w') wrapUp();
});

const events = new EventSource('/api/agent/stream');
events.addEventListener('update', (e) => {
  const u = JSON.parse(e.data);
  if (u.type === 'offer') ring(u);
  else if (u.type === 'withdraw' && offer?.contact === u.contact) unring();
  else if (u.type === 'agent_paused') $('#agent-state').textContent = `paused (${u.reason})`;
  else if (u.type === 'message' && u.contact === current) $('#agent-messages').append(bubble(u));
  else if (u.type === 'ended' && u.contact === current) toWrapUp();
});
events.addEventListener('open', () => { $('#agent').dataset.stream = 'open'; });

seats();
