// The supervisor's wallboard, fed by server-sent events from /api/wallboard/stream.
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
  $('wb-status').textContent = `${$('wallboard').dataset.live} ${new Date(board.at).toLocaleTimeString()}`;
  $('wallboard').dataset.updated = board.at;
}

const events = new EventSource('/api/wallboard/stream');
events.addEventListener('wallboard', (e) => show(JSON.parse(e.data)));
events.onerror = () => { $('wb-status').textContent = '…'; };
