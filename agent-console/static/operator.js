// The operator's desk: identify the caller, search facilities and answers,
// register complaints and book appointments. Text comes from the page (the
// server renders it in Hindi or English); this module only moves data.
const lang = document.documentElement.lang;
const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
};
const local = (iso) => new Date(iso).toLocaleString(lang === 'hi' ? 'hi-IN' : 'en-IN',
  { timeZone: 'Asia/Kolkata', dateStyle: 'medium', timeStyle: 'short' });

// The contact being handled, when the console has one (set by agent.js).
export const desk = { contact: null, patient: null };
document.addEventListener('careline:contact', (e) => {
  desk.contact = e.detail;
  if (!e.detail) desk.patient = null;
});

async function api(path, options = {}) {
  const init = { ...options, headers: { Accept: 'application/json', ...(options.headers || {}) } };
  if (options.json !== undefined) {
    init.method = init.method || 'POST';
    init.body = JSON.stringify(options.json);
    init.headers['Content-Type'] = 'application/json';
  }
  const response = await fetch(path, init);
  const body = response.headers.get('content-type')?.includes('json') ? await response.json() : null;
  if (!response.ok) throw Object.assign(new Error(body?.detail || response.statusText), { problem: body });
  return body;
}

function showError(section, error) {
  const p = $('.error', section);
  p.textContent = error ? error.message : '';
  p.hidden = !error;
}

const withContact = (path) => desk.contact ? `${path}${path.includes('?') ? '&' : '?'}contact=${encodeURIComponent(desk.contact)}` : path;

// --- Identification --------------------------------------------------------
const patients = $('#patients');
$('#identify-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  const key = ['card', 'abha', 'phone'].find((k) => data.get(k).trim());
  showError($('#identify'), null);
  patients.replaceChildren();
  patients.dataset.state = 'loading';
  if (!key) return;
  try {
    const found = await api(withContact(`/api/patients?${key}=${encodeURIComponent(data.get(key).trim())}`));
    if (found.length === 0) patients.append(el('p', { className: 'none', textContent: patients.dataset.none }));
    for (const p of found) patients.append(await patientCard(p));
  } catch (error) {
    showError($('#identify'), error);
  }
  patients.dataset.state = 'done';
});

// Scanning the card's QR code with the camera: stills go to the server,
// which reads the code; the card number found fills the search.
$('#scan-card').addEventListener('click', async () => {
  const view = $('#scan-view');
  showError($('#identify'), null);
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' } });
    view.srcObject = stream;
    view.hidden = false;
    await view.play();
    const canvas = document.createElement('canvas');
    let lastProblem = null;
    for (let i = 0; i < 40; i++) {
      await new Promise((r) => setTimeout(r, 400));
      if (!view.videoWidth) continue;
      canvas.width = view.videoWidth;
      canvas.height = view.videoHeight;
      canvas.getContext('2d').drawImage(view, 0, 0);
      const still = await new Promise((r) => canvas.toBlob(r, 'image/png'));
      const response = await fetch('/api/qr', { method: 'POST', body: still, headers: { 'Content-Type': 'image/png' } });
      const body = await response.json().catch(() => null);
      if (response.ok && body.ehealth_card) {
        const form = $('#identify-form');
        form.elements.card.value = body.ehealth_card;
        form.requestSubmit();
        return;
      }
      lastProblem = response.ok ? `no card number in the code: ${body.text}` : body?.detail;
    }
    throw new Error(lastProblem || 'no QR code found');
  } catch (error) {
    showError($('#identify'), error);
  } finally {
    stream?.getTracks().forEach((t) => t.stop());
    view.hidden = true;
  }
});

async function patientCard(p) {
  const [schemes, appointments, contacts] = await Promise.all([
    api(withContact(`/api/patients/${p.patient_id}/schemes`)),
    api(withContact(`/api/patients/${p.patient_id}/appointments`)),
    api(withContact(`/api/patients/${p.patient_id}/contacts`)),
  ]);
  const card = el('article', { className: 'patient', tabIndex: 0 });
  card.dataset.patientId = p.patient_id;
  card.append(
    el('h3', { textContent: p.name }),
    el('p', { textContent: [`${patients.dataset.age}: ${p.age_years ?? '—'}`, p.sex, p.phone, p.ehealth_card, p.abha_number].filter(Boolean).join(' · ') }),
    el('p', { className: 'family', textContent: `${patients.dataset.family}: ${p.family.map((f) => `${f.name} (${f.relation})`).join(', ') || '—'}` }),
    el('p', { className: 'schemes', textContent: `${patients.dataset.schemes}: ${schemes.map((s) => lang === 'hi' ? s.name_hi : s.name).join(', ') || '—'}` }),
    el('p', { className: 'contacts', textContent: `${patients.dataset.contacts}: ${contacts.filter((c) => c.contact_id !== desk.contact).map((c) => `${local(c.created_at)} ${c.channel}${c.disposition ? ` (${c.disposition})` : ''}`).join(', ') || '—'}` }),
    el('p', { className: 'appointments', textContent: `${patients.dataset.appointments}: ${appointments.filter((a) => a.status === 'booked').map((a) => `${local(a.slot.starts_at)} ${a.slot.department}`).join(', ') || '—'}` }),
  );
  card.addEventListener('click', () => selectPatient(p, card));
  if (!desk.patient) selectPatient(p, card);
  return card;
}

function selectPatient(p, card) {
  desk.patient = p;
  // The contact now knows who called.
  if (desk.contact) api(`/api/contacts/${desk.contact}/patient`, { json: { patient_id: p.patient_id } }).catch(() => {});
  for (const c of document.querySelectorAll('.patient')) c.classList.toggle('selected', c === card);
  // The first card is selected before it is on the page.
  card.classList.add('selected');
}

// --- Facilities and answers ------------------------------------------------
const facilityTable = $('#facilities');
const bedNames = JSON.parse(facilityTable.dataset.beds);
$('#facility-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const params = new URLSearchParams();
  for (const [k, v] of new FormData(event.target)) if (v.trim()) params.set(k, v.trim());
  const found = await api(`/api/facilities?${params}`);
  const rows = found.map((f) => el('tr', {},
    el('td', {}, el('strong', { textContent: lang === 'hi' ? f.name_hi : f.name }), el('br'),
      el('small', { textContent: `${f.address} · ${f.opening_hours}${f.phone ? ` · ${f.phone}` : ''}` })),
    el('td', { className: 'beds', textContent: f.beds.map((b) => `${bedNames[b.bed_type] ?? b.bed_type} ${b.vacant}/${b.total}`).join(', ') || '—' }),
    el('td', { textContent: (lang === 'hi' ? f.services_hi : f.services).join(', ') })));
  facilityTable.tBodies[0].replaceChildren(...rows);
  facilityTable.hidden = false;
});

$('#faq-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const q = new FormData(event.target).get('q').trim();
  const found = await api(`/api/faq?q=${encodeURIComponent(q)}`);
  $('#answers').replaceChildren(...found.flatMap((f) => [
    el('dt', { textContent: lang === 'hi' ? f.question_hi : f.question_en }),
    el('dd', { textContent: lang === 'hi' ? f.answer_hi : f.answer_en }),
  ]));
});

// --- Complaints ---------------------------------------------------------------
async function fillChoices() {
  const [categories, facilities] = await Promise.all([api('/api/complaint-categories'), api('/api/facilities')]);
  const category = $('#complaint-form select[name=category]');
  category.append(...categories.map((c) => el('option', { value: c.code, textContent: lang === 'hi' ? c.name_hi : c.name_en })));
  for (const select of document.querySelectorAll('select[name=facility_id]')) {
    select.append(...facilities.map((f) => el('option', { value: f.facility_id, textContent: lang === 'hi' ? f.name_hi : f.name })));
  }
}

$('#complaint-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  const section = $('#complaint');
  showError(section, null);
  try {
    const c = await api('/api/complaints', { json: {
      category: data.get('category'),
      facility_id: data.get('facility_id') ? Number(data.get('facility_id')) : null,
      patient_id: desk.patient?.patient_id ?? null,
      contact_id: desk.contact,
      description: data.get('description'),
    } });
    const ticket = $('#ticket');
    ticket.replaceChildren(`${ticket.dataset.ticket}: `, el('strong', { className: 'ticket-number', textContent: c.ticket }),
      ` · ${ticket.dataset.due}: ${local(c.due_at)}`);
    ticket.hidden = false;
    event.target.reset();
    loadReminders();
  } catch (error) {
    showError(section, error);
  }
});

// --- Appointments -------------------------------------------------------------
$('#slot-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  const section = $('#appointment');
  showError(section, null);
  const department = data.get('department').trim();
  const slots = await api(`/api/facilities/${data.get('facility_id')}/slots${department ? `?department=${encodeURIComponent(department)}` : ''}`);
  const list = $('#slots');
  list.replaceChildren(...slots.slice(0, 40).map((s) => {
    const button = el('button', { type: 'button', textContent: list.dataset.book });
    button.addEventListener('click', async () => {
      if (!desk.patient) return showError(section, new Error(event.target.dataset.needPatient));
      try {
        await api('/api/appointments', { json: { slot_id: s.slot_id, patient_id: desk.patient.patient_id, contact_id: desk.contact } });
        button.replaceWith(el('strong', { className: 'booked', textContent: list.dataset.booked }));
      } catch (error) {
        showError(section, error);
      }
    });
    return el('li', {}, `${local(s.starts_at)} · ${s.department} · ${s.capacity - s.booked} `, button);
  }));
});

// --- Reminders ----------------------------------------------------------------
async function loadReminders() {
  const due = await api('/api/complaint-tasks/due');
  $('#due-tasks').replaceChildren(...due.map((t) => el('li', { textContent: `${t.ticket}: ${t.note} (${local(t.due_at)})` })));
}

fillChoices();
loadReminders();
setInterval(loadReminders, 60_000);
