-- Who found which patient from which contact (a lookup by card, ABHA, phone,
-- HIMS id or complaint ticket, or a registration): before the contact is
-- identified, only these results are open to its staff (see access.rs).
create table contact_lookup (
    contact_id text not null references contact (contact_id),
    staff_id   bigint not null references staff (staff_id),
    patient_id bigint not null references patient (patient_id),
    created_at timestamptz not null,
    primary key (contact_id, staff_id, patient_id)
);
create index contact_lookup_patient on contact_lookup (patient_id, staff_id);
create index contact_staff_staff on contact_staff (staff_id);
create index audit_log_patient_action on audit_log (patient_id, action);
