-- The information desk and the built-in HIMS link: facilities with beds,
-- medicine stock and services; approved answers; health schemes a family is
-- mapped to; complaints with service levels and follow-up tasks; appointment
-- slots and appointments.

create table facility (
    facility_id   integer primary key autoincrement,
    code          text not null unique,   -- the HIMS facility code
    name          text not null,
    name_hi       text not null,
    kind          text not null check (kind in ('hospital', 'polyclinic', 'mohalla_clinic', 'dispensary')),
    district      text not null,
    address       text not null,
    phone         text,
    latitude      real,
    longitude     real,
    opening_hours text not null,          -- as told to callers, e.g. `24x7`, `Mon-Sat 08:00-14:00`
    services      text not null default '', -- comma-separated, English
    services_hi   text not null default '', -- the same in Hindi
    updated_at    text not null
);
create index facility_district on facility (district);

create table facility_beds (
    facility_id integer not null references facility (facility_id),
    bed_type    text not null check (bed_type in ('general', 'icu', 'ventilator', 'oxygen', 'maternity', 'paediatric')),
    total       integer not null check (total >= 0),
    vacant      integer not null check (vacant >= 0 and vacant <= total),
    updated_at  text not null,
    primary key (facility_id, bed_type)
);

create table medicine_stock (
    facility_id integer not null references facility (facility_id),
    medicine    text not null,            -- generic name in capitals
    quantity    integer not null check (quantity >= 0),
    unit        text not null,
    updated_at  text not null,
    primary key (facility_id, medicine)
);
create index medicine_stock_medicine on medicine_stock (medicine);

-- Approved answers to common questions, in both languages.
create table faq (
    faq_id      integer primary key autoincrement,
    topic       text not null,
    question_en text not null,
    answer_en   text not null,
    question_hi text not null,
    answer_hi   text not null,
    updated_at  text not null,
    unique (topic, question_en)
);

create table scheme (
    code        text primary key,
    name        text not null,
    name_hi     text not null,
    description text not null
);

create table patient_scheme (
    patient_id  integer not null references patient (patient_id),
    scheme_code text not null references scheme (code),
    primary key (patient_id, scheme_code)
);

create table complaint_category (
    code      text primary key,
    name_en   text not null,
    name_hi   text not null,
    sla_hours integer not null check (sla_hours > 0)
);

create table complaint (
    complaint_id integer primary key autoincrement,
    ticket       text not null unique,    -- read to the caller, e.g. CL-261124-K7QF2M
    category     text not null references complaint_category (code),
    facility_id  integer references facility (facility_id),
    patient_id   integer references patient (patient_id),
    contact_id   text,
    description  text not null,
    status       text not null check (status in ('open', 'in_progress', 'resolved', 'closed')),
    created_by   integer not null references staff (staff_id),
    created_at   text not null,
    due_at       text not null,
    resolved_at  text
);
create index complaint_due on complaint (status, due_at);

create table complaint_task (
    task_id      integer primary key autoincrement,
    complaint_id integer not null references complaint (complaint_id),
    note         text not null,
    due_at       text not null,
    done_at      text,
    created_by   integer not null references staff (staff_id),
    created_at   text not null
);
create index complaint_task_due on complaint_task (done_at, due_at);

create table slot (
    slot_id     integer primary key autoincrement,
    facility_id integer not null references facility (facility_id),
    department  text not null,
    starts_at   text not null,
    ends_at     text not null,
    capacity    integer not null check (capacity > 0),
    booked      integer not null default 0 check (booked >= 0 and booked <= capacity),
    check (ends_at > starts_at),
    unique (facility_id, department, starts_at)
);
create index slot_start on slot (facility_id, starts_at);

create table appointment (
    appointment_id integer primary key autoincrement,
    slot_id        integer not null references slot (slot_id),
    patient_id     integer not null references patient (patient_id),
    contact_id     text,
    booked_by      integer not null references staff (staff_id),
    status         text not null check (status in ('booked', 'cancelled', 'fulfilled', 'noshow')),
    created_at     text not null,
    cancelled_at   text
);
create unique index appointment_once on appointment (slot_id, patient_id) where status = 'booked';
create index appointment_patient on appointment (patient_id);

-- Every routing event, in order: the history reports are built from (like
-- Asterisk's queue_log), and what a restarted node replays.
create table routing_event (
    routing_event_id integer primary key autoincrement,
    node             text not null,
    at               text not null,
    kind             text not null,
    contact_id       text,
    agent_id         integer,
    body             text not null        -- the event as JSON
);
create index routing_event_at on routing_event (at);
