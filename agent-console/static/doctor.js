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
  if (contact && !$('#rx-items').children.length) addRow();
  $('#transcript').replaceChildren();
  if (contact) {
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
  $('#transcript-hint').hidden = true;
}
document.addEventListener('careline:update', (e) => {
  if (e.detail.type === 'caption' && e.detail.contact === contact) caption(e.detail);
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

api('/api/formulary', 'GET').then((drugs) => {
  $('#formulary').replaceChildren(...drugs.filter((d) => d.list !== 'Prohibited')
    .map((d) => Object.assign(document.createElement('option'), { value: d.generic, label: `List ${d.list}` })));
}).catch(() => {});
