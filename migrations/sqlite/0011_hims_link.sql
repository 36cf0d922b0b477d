-- The HIMS link. With a FHIR R4 server as the HIMS, Careline keeps a working
-- copy of the records it touched (patients, facilities, slots, appointments)
-- under its own ids, and `hims_ref` says which server resource each one is.
-- `consult_record` is the consult written into the HIMS record: once per
-- contact, with what was sent and where the server put the Encounter.
create table hims_ref (
    kind       text not null check (kind in ('facility', 'slot', 'appointment')),
    local_id   integer not null,
    fhir_id    text not null,                  -- e.g. `Slot/123`
    created_at text not null,
    primary key (kind, local_id),
    unique (kind, fhir_id)
);

create table consult_record (
    contact_id    text primary key references contact (contact_id),
    hims          text not null,               -- `builtin`, or the FHIR server's base URL
    encounter_ref text not null,               -- `Encounter/42` on the server, a `urn:uuid:` built in
    bundle        text not null,               -- the transaction Bundle, as JSON
    recorded_by   integer not null references staff (staff_id),
    recorded_at   text not null
);
