// The supervisor's wallboard, fed by server-sent events from /api/wallboard/stream.
// Calls in progress can be joined: listen (nobody hears the supervisor),
// whisper to the agent, or barge in.
import { joinCall } from './media.js';

const $ = (id) => document.getElementById(id);
const pct = (v) => (v === null || v === undefined ? '–' : `${Math.round(v * 100)}%`);
const secs = (v) => (v === null || v === undefined ? '–' : `${Math.round(v)} s`);

function row(id, f) {
  const cells = $(id).querySelectorAll('td');
  [f.offered, f.answered, f.abandoned, pct(f.service_level), secs(f.asa_seconds), secs(f.aht_seconds)]
    .forEach((v, i) => { cells[i].textContent = v; });
}

function chart(intervals) {
  const svg = $('wb-chart');
  const max = Math.max(1, ...intervals.map((f) => f.offered));
  const w = 480 / intervals.length;
  svg.replaceChildren(...intervals.flatMap((f, i) => {
    const bar = (value, cls, shrink) => {
      const r = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
      const h = (value / max) * 110;
      Object.entries({ x: i * w + shrink, y: 115 - h, width: Math.max(1, w - 2 * shrink), height: h, class: cls })
        .forEach(([k, v]) => r.setAttribute(k, v));
      return r;
    };
    return [bar(f.offered, 'offered', 1), bar(f.answered, 'answered', 3)];
  }));
}

function show(board) {
  $('wb-waiting').textContent = board.waiting;
  $('wb-callbacks').textContent = board.callbacks;
  $('wb-longest').textContent = secs(board.longest_wait_seconds);
  row('wb-interval', board.interval);
  row('wb-today', board.today);
  chart(board.intervals);
  $('wb-shifts').replaceChildren(...board.shifts.map((s) => {
    const li = document.createElement('li');
    const hhmm = (m) => `${String(Math.floor((m % 1440) / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
    const states = Object.entries(s.at_seats).map(([k, n]) => `${k} ${n}`).join(', ');
    li.textContent = `${s.shift} ${hhmm(s.starts_minute)}–${hhmm(s.ends_minute)}: ${s.rostered}${states ? ` (${states})` : ''}`;
    return li;
  }));
  for (const li of document.querySelectorAll('.seats li')) {
    const at = board.agents.find((a) => `S${String(a.seat_id).padStart(2, '0')}` === li.title);
    li.dataset.state = at ? at.state : '';
  }
  $('wb-agents').textContent = ['idle', 'offered', 'busy', 'wrap_up', 'paused']
    .map((s) => `${s} ${board.agents.filter((a) => a.state === s).length}`).join(' · ');
  calls(board.calls);
  alarms(board.ambulance_alarms);
  security(board.security);
  $('wb-status').textContent = `${$('wallboard').dataset.live} ${new Date(board.at).toLocaleTimeString()}`;
  $('wallboard').dataset.updated = board.at;
}

// Ambulance requests dispatch has not taken: the supervisor phones 102/108.
function alarms(list) {
  const box = $('wb-ambulance');
  box.hidden = list.length === 0;
  $('wb-ambulance-list').replaceChildren(...list.map((a) => {
    const li = document.createElement('li');
    li.dataset.request = a.ambulance_request_id;
    li.textContent = `${a.urgency} · ${a.location} · ${Math.round(a.undelivered_seconds / 60)} min · `
      + `${a.attempts} ${box.dataset.tries}${a.last_error ? ` · ${a.last_error}` : ''}`;
    return li;
  }));
}

// Password guessing and break-glass reads: the supervisor follows them up.
function security(list) {
  const box = $('wb-security');
  box.hidden = list.length === 0;
  $('wb-security-list').replaceChildren(...list.map((a) => {
    const li = document.createElement('li');
    li.dataset.kind = a.kind;
    const who = a.username ?? (a.staff_id ? `#${a.staff_id}` : '');
    const patient = a.patient_id ? ` · patient ${a.patient_id}` : '';
    li.textContent = `${new Date(a.at).toLocaleTimeString()} · ${box.getAttribute(`data-${a.kind}`) ?? a.kind} · ${who}${patient} · ${a.detail}`;
    return li;
  }));
}

// The call being monitored, if any.
let monitoring = null; // { contact, call }
window.careline = {};

function button(text, onclick) {
  return Object.assign(document.createElement('button'), { type: 'button', textContent: text, onclick });
}

let lastCalls = [];

function calls(list) {
  lastCalls = list;
  const words = $('wb-calls').dataset;
  $('wb-calls').replaceChildren(...list.map((c) => {
    const li = document.createElement('li');
    li.dataset.contact = c.contact_id;
    li.append(`${c.contact_id.slice(0, 8)} · ${c.channel} · tier ${c.tier} `);
    if (monitoring?.contact === c.contact_id) {
      for (const p of monitoring.call.roster.filter((p) => p.role === 'operator' || p.role === 'doctor')) {
        li.append(button(`${words.whisper}: ${p.id}`, () => monitoring.call.supervise('whisper', p.id)));
      }
      li.append(button(words.barge, () => monitoring.call.supervise('barge')));
      li.append(button(words.listen, () => monitoring.call.supervise('listen')));
      li.append(button('×', stopMonitoring));
    } else {
      li.append(button(words.listen, () => monitor(c.contact_id)));
    }
    return li;
  }));
  if (monitoring && !list.some((c) => c.contact_id === monitoring.contact)) stopMonitoring();
}

async function monitor(contact) {
  stopMonitoring();
  const call = await joinCall({
    contact,
    media: $('wb-media'),
    onRoster: (roster) => {
      $('wb-monitor-status').textContent = roster.filter((p) => p.connected).map((p) => `${p.role} ${p.id}`).join(' · ');
      calls(lastCalls);
    },
  });
  monitoring = { contact, call };
  window.careline.monitoring = monitoring;
  $('wb-monitor').hidden = false;
  calls(lastCalls);
}

function stopMonitoring() {
  monitoring?.call.leave();
  monitoring = null;
  window.careline.monitoring = null;
  $('wb-monitor').hidden = true;
}

// The board comes every 5 s. A dropped stream (a restart, a network blip) is
// opened anew with backoff, and the board says it is reconnecting and stale
// meanwhile; a board the server could not read is said so and kept.
let events = null;
let retry = 1000; // the next reconnect's wait: 1 s, 2 s, 4 s… at most 15 s
let retryTimer = null;
function reconnecting(on) {
  $('wb-reconnecting').hidden = !on;
  // The figures stay, as of their time, but they are not live any more.
  const at = $('wallboard').dataset.updated;
  if (on && at) $('wb-status').textContent = new Date(at).toLocaleTimeString();
  $('wallboard').dataset.stream = on ? 'reconnecting' : 'open';
}
function connect() {
  events = new EventSource('/api/wallboard/stream');
  events.addEventListener('wallboard', (e) => {
    retry = 1000;
    reconnecting(false);
    show(JSON.parse(e.data));
  });
  events.addEventListener('error', (e) => {
    if (e.data) { // the server's own `error` event: the stream stays open
      $('wb-status').textContent = e.data;
      return;
    }
    events.close();
    reconnecting(true);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, retry);
    retry = Math.min(retry * 2, 15000);
  });
}
connect();
