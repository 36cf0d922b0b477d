-- The doctor's record of a tele-consult: consent (TPG 2020) and notes.
create table consult_note (
    contact_id        text primary key references contact (contact_id),
    doctor_id         bigint not null references staff (staff_id),
    consent           text not null,            -- JSON: implied, explicit (by whom) or guardian (name, relation, id)
    recording_consent boolean not null default false,
    chief_complaint   text not null default '',
    history           text not null default '',
    findings          text not null default '',
    diagnosis         text not null default '',
    advice            text not null default '',
    updated_at        timestamptz not null
);
