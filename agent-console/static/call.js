// The patient's page: start a call (voice, video optional) or a chat, see
// the place in the queue, ask for a callback, talk or chat, end. The
// contact's id, token and kind stay in sessionStorage, so a reload (or a
// dropped network) rejoins the same contact, and the same call.
import { joinCall } from './media.js';

const $ = (sel) => document.querySelector(sel);
const lang = document.documentElement.lang;
const saved = JSON.parse(sessionStorage.getItem('careline-contact') || 'null');

async function post(path, json) {
  const response = await fetch(path, {
    method: 'POST',
    headers: json ? { 'Content-Type': 'application/json' } : {},
    body: json ? JSON.stringify(json) : undefined,
  });
  const body = response.headers.get('content-type')?.includes('json') ? await response.json() : null;
  if (!response.ok) throw new Error(body?.detail || response.statusText);
  return body;
}

$('#start-form input[name=emergency]').addEventListener('change', (e) => {
  $('#location').hidden = !e.target.checked;
  if (e.target.checked && navigator.geolocation) {
    navigator.geolocation.getCurrentPosition((p) => {
      const input = $('#location input');
      if (!input.value) input.value = `${p.coords.latitude.toFixed(5)}, ${p.coords.longitude.toFixed(5)}`;
    }, () => {});
  }
});

$('#start-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  const mode = event.submitter?.value === 'call' ? 'call' : 'chat';
  const error = $('#call .error');
  error.hidden = true;
  try {
    const started = await post('/api/contacts', {
      language: lang,
      phone: data.get('phone'),
      channel: mode === 'call' ? 'webrtc' : 'chat',
      emergency: data.get('emergency') === 'on',
      location: data.get('location') || null,
      ehealth_card: data.get('ehealth_card') || null,
      abha_number: data.get('abha_number') || null,
    });
    Object.assign(started, { mode, video: data.get('video') === 'on' });
    sessionStorage.setItem('careline-contact', JSON.stringify(started));
    follow(started);
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
  }
});

let call = null;

async function startCall(id, token, video) {
  try {
    call = await joinCall({
      contact: id,
      token,
      video,
      media: $('#call-media'),
      onRoster: (roster) => {
        $('#call-with').textContent = roster.filter((p) => p.connected && p.heard).map((p) => p.role).join(', ');
      },
      onError: (message) => console.warn('call:', message),
    });
    window.careline = { call };
    $('#in-call').hidden = false;
    $('#video-toggle').hidden = !video;
    $('#mute').onchange = (e) => call.mute(e.target.checked);
    $('#video-off').onchange = (e) => call.video(!e.target.checked);
  } catch (e) {
    const error = $('#waiting .error');
    error.textContent = e.message;
    error.hidden = false;
  }
}

function follow({ contact_id: id, token, mode, video }) {
  $('#call').hidden = true;
  $('#waiting').hidden = false;
  if (mode === 'call') startCall(id, token, video);
  const q = `token=${encodeURIComponent(token)}`;
  // The last message shown: a reconnect asks for the ones after it, so a
  // message is shown once however often the stream drops.
  let lastId = null;
  let events = null;
  let ended = false;
  let retry = 1000; // the next reconnect's wait: 1 s, 2 s, 4 s… at most 15 s
  let retryTimer = null;
  const reconnecting = (on) => {
    $('#call-reconnecting').hidden = !on;
    document.body.dataset.stream = on ? 'reconnecting' : 'open';
  };
  const show = (u) => {
    if (u.type === 'position') {
      $('#position').textContent = u.position;
      $('#wait').textContent = Math.max(1, Math.round(u.estimated_wait_seconds / 60));
    } else if (u.type === 'connected') {
      $('#waiting').hidden = true;
      $('#chat').hidden = false;
    } else if (u.type === 'message') {
      if (lastId !== null && u.id <= lastId) return;
      lastId = u.id;
      const li = document.createElement('li');
      li.className = u.sender;
      li.textContent = u.body;
      $('#messages').append(li);
      $('#chat').hidden = false;
      $('#waiting').hidden = true;
    } else if (u.type === 'callback_scheduled') {
      $('#callback-noted').hidden = false;
    } else if (u.type === 'ended') {
      ended = true;
      events.close();
      reconnecting(false);
      call?.leave();
      call = null;
      sessionStorage.removeItem('careline-contact');
      $('#waiting').hidden = true;
      $('#chat').hidden = false;
      $('#chat-status').textContent = $('#chat').dataset.ended;
      $('#message-form').hidden = true;
      $('#hangup').hidden = true;
      $('#chat').dataset.state = 'ended';
    }
  };
  const connect = () => {
    const after = lastId === null ? '' : `&after=${lastId}`;
    events = new EventSource(`/api/contacts/${id}/stream?${q}${after}`);
    events.addEventListener('snapshot', () => {
      retry = 1000;
      reconnecting(false);
    });
    events.addEventListener('update', (e) => show(JSON.parse(e.data)));
    // A browser retries a dropped stream by itself but gives up for good on
    // an error answer (a 503 while the server restarts): the stream is
    // closed and opened anew here with backoff, whichever it was.
    events.addEventListener('error', () => {
      events.close();
      if (ended) return;
      reconnecting(true);
      clearTimeout(retryTimer);
      retryTimer = setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    });
  };
  connect();
  $('#callback').onclick = async () => {
    await post(`/api/contacts/${id}/callback?${q}`);
    $('#callback-noted').hidden = false;
    $('#callback').hidden = true;
  };
  $('#message-form').onsubmit = async (event) => {
    event.preventDefault();
    const input = event.target.elements.body;
    await post(`/api/contacts/${id}/messages?${q}`, { body: input.value });
    input.value = '';
  };
  $('#hangup').onclick = () => post(`/api/contacts/${id}/hangup?${q}`);
}

if (saved) follow(saved);
