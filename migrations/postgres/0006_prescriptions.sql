-- Prescriptions written in tele-consults, as issued (checked against the
-- TPG 2020 rules before they are stored; a refused draft stores nothing).
create table prescription (
    prescription_id text primary key,          -- UUID
    contact_id      text not null references contact (contact_id),
    patient_id      bigint not null references patient (patient_id),
    doctor_id       bigint not null references staff (staff_id),
    mode            text not null check (mode in ('video', 'audio', 'text')),
    kind            text not null check (kind in ('first', 'follow_up')),
    body            text not null,             -- the prescription as JSON
    issued_at       timestamptz not null
);
create index prescription_patient on prescription (patient_id, issued_at);
