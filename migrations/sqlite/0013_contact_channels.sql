-- WhatsApp and SMS contacts: the contact table's channel check admits them.
-- SQLite changes a CHECK only by rebuilding the table
-- (https://www.sqlite.org/lang_altertable.html#otheralter). Its recipe turns
-- foreign keys off, which is a no-op inside a transaction, and sqlx runs each
-- migration in one. So the references are deferred to the commit instead
-- (`defer_foreign_keys`): the old table is copied aside and dropped (its
-- children's rows are orphans for a moment, counted), the new `contact` is
-- created under the same name and filled, which gives every child row its
-- parent again (the count drops back), and the commit checks that none is
-- left. The tables that refer to `contact` name it, so they refer to the
-- rebuilt table.
pragma defer_foreign_keys = on;
create table contact_before_0013 as select * from contact;
drop table contact;
create table contact (
    contact_id          text primary key,          -- UUID, also the media session's id
    channel             text not null check (channel in ('phone', 'webrtc', 'chat', 'whatsapp', 'sms')),
    language            text not null,
    emergency           boolean not null default false,
    tier                integer not null default 1 check (tier in (1, 2)),
    specialty           text,
    caller_phone        text,
    ehealth_card        text,
    abha_number         text,
    patient_id          integer references patient (patient_id),
    location            text,                      -- given for an emergency, for the ambulance
    status              text not null check (status in ('waiting', 'connected', 'wrap_up', 'ended', 'abandoned', 'callback')),
    patient_token_hash  text not null unique,      -- SHA-256 of the patient's one-time join token
    created_at          text not null,
    answered_at         text,
    answered_by         integer references staff (staff_id),
    escalated_at        text,
    doctor_id           integer references staff (staff_id),
    ended_at            text,
    disposition         text,
    wrap_up_note        text
);
insert into contact (contact_id, channel, language, emergency, tier, specialty, caller_phone, ehealth_card,
    abha_number, patient_id, location, status, patient_token_hash, created_at, answered_at, answered_by,
    escalated_at, doctor_id, ended_at, disposition, wrap_up_note)
select contact_id, channel, language, emergency, tier, specialty, caller_phone, ehealth_card,
    abha_number, patient_id, location, status, patient_token_hash, created_at, answered_at, answered_by,
    escalated_at, doctor_id, ended_at, disposition, wrap_up_note from contact_before_0013;
drop table contact_before_0013;
create index contact_created on contact (created_at);
create index contact_patient on contact (patient_id);
