// The doctor's consult panels: consent and notes, and the prescription,
// checked by the server against the TPG 2020 drug lists.
const $ = (sel) => document.querySelector(sel);
let contact = null;

async function api(path, method, json) {
  const response = await fetch(path, {
    method,
    headers: json ? { 'Content-Type': 'application/json' } : {},
    body: json ? JSON.stringify(json) : undefined,
  });
  const body = response.headers.get('content-type')?.includes('json') ? await response.json() : null;
  if (!response.ok) throw Object.assign(new Error(body?.detail || response.statusText), { problem: body });
  return body;
}

document.addEventListener('careline:contact', (e) => {
  contact = e.detail;
  $('#consult').hidden = !contact;
  $('#rx').hidden = !contact;
  $('#follow-up').hidden = !contact;
  $('#follow-slots').replaceChildren();
  if (contact && !$('#rx-items').children.length) addRow();
  $('#transcript').replaceChildren();
  if (contact) {
    // A chat is a text consult; a call is audio until the patient's video is seen.
    api(`/api/contacts/${contact}`, 'GET').then((c) => {
      if (c.channel === 'chat') setMode('text');
      else if (!modeSeen.has(contact)) setMode('audio');
    }).catch(() => {});
    api(`/api/contacts/${contact}/transcript`, 'GET').then((said) => {
      for (const c of said) caption({ ...c, final: true });
    }).catch(() => {});
  }
});

// The live transcript: one line per utterance; partial captions are
// replaced by later ones for the same speaker and start, then by the final.
function caption(c) {
  const key = `${c.participant}|${c.start_ms}`;
  let li = [...$('#transcript').children].find((l) => l.dataset.key === key);
  if (!li) {
    li = Object.assign(document.createElement('li'), { className: c.role === 'doctor' ? 'staff' : c.role });
    li.dataset.key = key;
    $('#transcript').append(li);
  }
  li.dataset.final = c.final ? 'true' : 'false';
  li.textContent = `${c.role}: ${c.text}`;
  // Absent when the server runs without captions (a stored transcript may still show).
  const hint = $('#transcript-hint');
  if (hint) hint.hidden = true;
}
document.addEventListener('careline:update', (e) => {
  if (e.detail.type === 'caption' && e.detail.contact === contact) caption(e.detail);
});

// The consult mode follows the call (TPG 2020: List A only by video): video
// while the patient's camera is on, audio when they switch it off. It is sent
// as the doctor's statement only: the server decides the mode from the call
// and refuses a statement that claims more than it sees.
const modeSeen = new Set();
const setMode = (mode) => { $('#rx-form select[name=mode]').value = mode; };
document.addEventListener('careline:roster', (e) => {
  const { contact: id, roster } = e.detail;
  const patient = roster.find((p) => p.role === 'patient');
  if (id !== contact || !patient?.connected) return;
  modeSeen.add(id);
  setMode(patient.video ? 'video' : 'audio');
});

function addRow() {
  const row = document.createElement('tr');
  for (const name of ['generic', 'strength', 'dose', 'frequency', 'duration']) {
    const input = Object.assign(document.createElement('input'), { name });
    if (name === 'generic') input.setAttribute('list', 'formulary');
    const td = document.createElement('td');
    td.append(input);
    row.append(td);
  }
  const td = document.createElement('td');
  td.append(Object.assign(document.createElement('input'), { type: 'checkbox', name: 'continuing' }));
  row.append(td);
  $('#rx-items').append(row);
}
$('#rx-add').addEventListener('click', addRow);

$('#note-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const data = new FormData(e.target);
  const kind = data.get('consent');
  const consent = kind === 'explicit' ? { kind, by: data.get('by') }
    : kind === 'guardian' ? { kind, name: data.get('by'), relation: data.get('relation') } : { kind };
  const error = $('#consult .error');
  error.hidden = true;
  $('#consult .saved').hidden = true;
  try {
    await api(`/api/contacts/${contact}/consult`, 'PUT', {
      consent,
      recording_consent: data.get('recording_consent') === 'on',
      chief_complaint: data.get('chief_complaint'),
      history: data.get('history'),
      findings: data.get('findings'),
      diagnosis: data.get('diagnosis'),
      advice: data.get('advice'),
    });
    $('#consult .saved').hidden = false;
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
  }
});

$('#rx-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const data = new FormData(e.target);
  const notes = new FormData($('#note-form'));
  const items = [...$('#rx-items').children].map((row) => {
    const v = (n) => row.querySelector(`[name=${n}]`);
    return { generic: v('generic').value, strength: v('strength').value, dose: v('dose').value,
      frequency: v('frequency').value, duration: v('duration').value, continuing: v('continuing').checked };
  }).filter((i) => i.generic.trim());
  const problems = $('#rx .problems');
  problems.hidden = true;
  $('#rx-issued').hidden = true;
  try {
    const rx = await api(`/api/contacts/${contact}/prescriptions`, 'POST', {
      mode: data.get('mode'), kind: data.get('kind'), diagnosis: notes.get('diagnosis'), advice: notes.get('advice'), items,
    });
    const issued = $('#rx-issued');
    issued.textContent = `${issued.dataset.issued}: ${rx.prescription_id.slice(0, 8)} — ${rx.body.items.map(([i]) => i.generic).join(', ')}`;
    issued.hidden = false;
  } catch (err) {
    const list = err.problem?.errors ?? [{ field: '', message: err.message }];
    problems.replaceChildren(...list.map((p) => Object.assign(document.createElement('li'), { textContent: `${p.field}: ${p.message}` })));
    problems.hidden = false;
  }
});

// The follow-up, booked at a free slot into the patient's record, from this consult.
$('#follow-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const data = new FormData(e.target);
  const error = $('#follow-up .error');
  error.hidden = true;
  const fail = (err) => { error.textContent = err.message; error.hidden = false; };
  try {
    const department = data.get('department').trim();
    const slots = await api(`/api/facilities/${data.get('facility_id')}/slots${department ? `?department=${encodeURIComponent(department)}` : ''}`, 'GET');
    const list = $('#follow-slots');
    const local = (iso) => new Date(iso).toLocaleString(document.documentElement.lang === 'hi' ? 'hi-IN' : 'en-IN',
      { timeZone: 'Asia/Kolkata', dateStyle: 'medium', timeStyle: 'short' });
    list.replaceChildren(...slots.slice(0, 20).map((s) => {
      const button = Object.assign(document.createElement('button'), { type: 'button', textContent: list.dataset.book });
      button.addEventListener('click', async () => {
        error.hidden = true;
        try {
          const { patient_id: patient } = await api(`/api/contacts/${contact}`, 'GET');
          if (!patient) throw new Error(e.target.dataset.needPatient);
          await api('/api/appointments', 'POST', { slot_id: s.slot_id, patient_id: patient, contact_id: contact });
          button.replaceWith(Object.assign(document.createElement('strong'), { className: 'booked', textContent: list.dataset.booked }));
        } catch (err) { fail(err); }
      });
      const li = document.createElement('li');
      li.dataset.slot = s.slot_id;
      li.append(`${local(s.starts_at)} · ${s.department} · ${s.capacity - s.booked} `, button);
      return li;
    }));
  } catch (err) { fail(err); }
});
api('/api/facilities', 'GET').then((facilities) => {
  const lang = document.documentElement.lang;
  $('#follow-form select[name=facility_id]').replaceChildren(...facilities.map((f) =>
    Object.assign(document.createElement('option'), { value: f.facility_id, textContent: lang === 'hi' ? f.name_hi : f.name })));
}).catch(() => {});

api('/api/formulary', 'GET').then((drugs) => {
  $('#formulary').replaceChildren(...drugs.filter((d) => d.list !== 'Prohibited')
    .map((d) => Object.assign(document.createElement('option'), { value: d.generic, label: `List ${d.list}` })));
}).catch(() => {});

// After the consult ends, while it is wrapped up: the doctor writes it into
// the patient's HIMS record (the server refuses a second time, and a consult
// still going on).
let ended = null;
document.addEventListener('careline:wrap-up', (e) => {
  if (e.detail === ended) return;
  ended = e.detail;
  $('#hims-record').hidden = !ended;
  $('#hims-record-id').textContent = ended ? ended.slice(0, 8) : '';
  $('#hims-record .error').hidden = true;
  $('#hims-recorded').hidden = true;
  $('#hims-record-button').disabled = false;
});
$('#hims-record-button').addEventListener('click', async () => {
  const error = $('#hims-record .error');
  const done = $('#hims-recorded');
  error.hidden = true;
  try {
    const record = await api(`/api/contacts/${ended}/hims-record`, 'POST');
    done.textContent = `${done.dataset.recorded}: ${record.hims} ${record.encounter_ref}`;
    done.hidden = false;
    $('#hims-record-button').disabled = true;
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
  }
});
