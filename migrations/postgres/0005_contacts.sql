-- Contacts: each call or chat from a patient, from arrival to wrap-up (the
-- call detail record). The routing engine decides who gets a contact; this
-- is what happened, for the consoles, reports and the audit trail.
create table contact (
    contact_id          text primary key,          -- UUID, also the media session's id
    channel             text not null check (channel in ('phone', 'webrtc', 'chat')),
    language            text not null,
    emergency           boolean not null default false,
    tier                bigint not null default 1 check (tier in (1, 2)),
    specialty           text,
    caller_phone        text,
    ehealth_card        text,
    abha_number         text,
    patient_id          bigint references patient (patient_id),
    location            text,                      -- given for an emergency, for the ambulance
    status              text not null check (status in ('waiting', 'connected', 'wrap_up', 'ended', 'abandoned', 'callback')),
    patient_token_hash  text not null unique,      -- SHA-256 of the patient's one-time join token
    created_at          timestamptz not null,
    answered_at         timestamptz,
    answered_by         bigint references staff (staff_id),
    escalated_at        timestamptz,
    doctor_id           bigint references staff (staff_id),
    ended_at            timestamptz,
    disposition         text,
    wrap_up_note        text
);
create index contact_created on contact (created_at);
create index contact_patient on contact (patient_id);

-- Staff who have worked on a contact: they, and only they, may read its patient's record.
create table contact_staff (
    contact_id text not null references contact (contact_id),
    staff_id   bigint not null references staff (staff_id),
    joined_at  timestamptz not null,
    primary key (contact_id, staff_id)
);

-- Messages of a chat contact.
create table chat_message (
    chat_message_id bigint generated always as identity primary key,
    contact_id      text not null references contact (contact_id),
    sender          text not null check (sender in ('patient', 'staff', 'system')),
    staff_id        bigint references staff (staff_id),
    body            text not null,
    created_at      timestamptz not null
);
create index chat_message_contact on chat_message (contact_id, chat_message_id);
