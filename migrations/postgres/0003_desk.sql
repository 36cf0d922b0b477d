-- The information desk and the built-in HIMS link: facilities with beds,
-- medicine stock and services; approved answers; health schemes a family is
-- mapped to; complaints with service levels and follow-up tasks; appointment
-- slots and appointments.

create table facility (
    facility_id   bigint generated always as identity primary key,
    code          text not null unique,   -- the HIMS facility code
    name          text not null,
    name_hi       text not null,
    kind          text not null check (kind in ('hospital', 'polyclinic', 'mohalla_clinic', 'dispensary')),
    district      text not null,
    address       text not null,
    phone         text,
    latitude      double precision,
    longitude     double precision,
    opening_hours text not null,          -- as told to callers, e.g. `24x7`, `Mon-Sat 08:00-14:00`
    services      text not null default '', -- comma-separated, English
    services_hi   text not null default '', -- the same in Hindi
    updated_at    timestamptz not null
);
create index facility_district on facility (district);

create table facility_beds (
    facility_id bigint not null references facility (facility_id),
    bed_type    text not null check (bed_type in ('general', 'icu', 'ventilator', 'oxygen', 'maternity', 'paediatric')),
    total       bigint not null check (total >= 0),
    vacant      bigint not null check (vacant >= 0 and vacant <= total),
    updated_at  timestamptz not null,
    primary key (facility_id, bed_type)
);

create table medicine_stock (
    facility_id bigint not null references facility (facility_id),
    medicine    text not null,            -- generic name in capitals
    quantity    bigint not null check (quantity >= 0),
    unit        text not null,
    updated_at  timestamptz not null,
    primary key (facility_id, medicine)
);
create index medicine_stock_medicine on medicine_stock (medicine);

-- Approved answers to common questions, in both languages.
create table faq (
    faq_id      bigint generated always as identity primary key,
    topic       text not null,
    question_en text not null,
    answer_en   text not null,
    question_hi text not null,
    answer_hi   text not null,
    updated_at  timestamptz not null,
    unique (topic, question_en)
);

create table scheme (
    code        text primary key,
    name        text not null,
    name_hi     text not null,
    description text not null
);

create table patient_scheme (
    patient_id  bigint not null references patient (patient_id),
    scheme_code text not null references scheme (code),
    primary key (patient_id, scheme_code)
);

create table complaint_category (
    code      text primary key,
    name_en   text not null,
    name_hi   text not null,
    sla_hours bigint not null check (sla_hours > 0)
);

create table complaint (
    complaint_id bigint generated always as identity primary key,
    ticket       text not null unique,    -- read to the caller, e.g. CL-261124-K7QF2M
    category     text not null references complaint_category (code),
    facility_id  bigint references facility (facility_id),
    patient_id   bigint references patient (patient_id),
    contact_id   text,
    description  text not null,
    status       text not null check (status in ('open', 'in_progress', 'resolved', 'closed')),
    created_by   bigint not null references staff (staff_id),
    created_at   timestamptz not null,
    due_at       timestamptz not null,
    resolved_at  timestamptz
);
create index complaint_due on complaint (status, due_at);

create table complaint_task (
    task_id      bigint generated always as identity primary key,
    complaint_id bigint not null references complaint (complaint_id),
    note         text not null,
    due_at       timestamptz not null,
    done_at      timestamptz,
    created_by   bigint not null references staff (staff_id),
    created_at   timestamptz not null
);
create index complaint_task_due on complaint_task (done_at, due_at);

create table slot (
    slot_id     bigint generated always as identity primary key,
    facility_id bigint not null references facility (facility_id),
    department  text not null,
    starts_at   timestamptz not null,
    ends_at     timestamptz not null,
    capacity    bigint not null check (capacity > 0),
    booked      bigint not null default 0 check (booked >= 0 and booked <= capacity),
    check (ends_at > starts_at),
    unique (facility_id, department, starts_at)
);
create index slot_start on slot (facility_id, starts_at);

create table appointment (
    appointment_id bigint generated always as identity primary key,
    slot_id        bigint not null references slot (slot_id),
    patient_id     bigint not null references patient (patient_id),
    contact_id     text,
    booked_by      bigint not null references staff (staff_id),
    status         text not null check (status in ('booked', 'cancelled', 'fulfilled', 'noshow')),
    created_at     timestamptz not null,
    cancelled_at   timestamptz
);
create unique index appointment_once on appointment (slot_id, patient_id) where status = 'booked';
create index appointment_patient on appointment (patient_id);

-- Every routing event, in order: the history reports are built from (like
-- Asterisk's queue_log), and what a restarted node replays.
create table routing_event (
    routing_event_id bigint generated always as identity primary key,
    node             text not null,
    at               timestamptz not null,
    kind             text not null,
    contact_id       text,
    agent_id         bigint,
    body             text not null        -- the event as JSON
);
create index routing_event_at on routing_event (at);
