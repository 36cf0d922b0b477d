-- Ambulance requests raised from a contact, and their delivery to the
-- dispatch service's webhook.
create table ambulance_request (
    ambulance_request_id text primary key,      -- UUID
    contact_id    text not null references contact (contact_id),
    patient_id    integer references patient (patient_id),
    requested_by  integer not null references staff (staff_id),
    location      text not null,
    urgency       text not null check (urgency in ('critical', 'urgent', 'routine')),
    note          text not null default '',
    created_at    text not null,
    delivered_at  text,
    attempts      integer not null default 0,
    last_error    text
);
