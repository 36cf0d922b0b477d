-- Careline foundation: staff, sessions, seats, shifts, roster, patients, audit.
-- Timestamps are UTC, stored as RFC 3339 text (sqlx's chrono encoding for SQLite).

create table staff (
    staff_id            integer primary key autoincrement,
    username            text not null unique,
    password_hash       text not null,
    role                text not null check (role in ('operator', 'doctor', 'supervisor', 'admin')),
    display_name        text not null,
    languages           text not null default 'hi,en',
    specialty           text,
    qualification       text,
    registration_number text,
    active              boolean not null default true,
    created_at          text not null,
    updated_at          text not null
);

-- A login session (cookie) or an API token (bearer). Only the SHA-256 of the
-- token is kept, so a leaked database does not leak live sessions.
create table auth_session (
    auth_session_id text primary key,
    staff_id        integer not null references staff (staff_id),
    kind            text not null check (kind in ('cookie', 'bearer')),
    created_at      text not null,
    expires_at      text not null,
    revoked_at      text
);
create index auth_session_staff on auth_session (staff_id);

create table seat (
    seat_id integer primary key,
    label   text not null unique,
    is_peak boolean not null default false
);

create table shift (
    shift_id       integer primary key autoincrement,
    name           text not null unique,
    role           text not null check (role in ('operator', 'doctor')),
    -- Local (Asia/Kolkata) minutes after midnight; ends_minute may be <= starts_minute for a night shift.
    starts_minute  integer not null check (starts_minute between 0 and 1439),
    ends_minute    integer not null check (ends_minute between 0 and 1440),
    is_peak        boolean not null default false
);

create table roster (
    shift_id  integer not null references shift (shift_id),
    staff_id  integer not null references staff (staff_id),
    day       text not null, -- the local calendar day the shift starts on, YYYY-MM-DD
    primary key (shift_id, staff_id, day)
);
create index roster_day on roster (day);

create table patient (
    patient_id         integer primary key autoincrement,
    name               text not null,
    birth_date         text,
    age_years          integer,
    sex                text not null check (sex in ('female', 'male', 'other', 'unknown')),
    phone              text,
    email              text,
    preferred_language text not null default 'hi',
    ehealth_card       text unique,
    abha_number        text unique,
    hims_patient_id    text unique,
    created_at         text not null,
    updated_at         text not null
);
create index patient_phone on patient (phone);

create table family_link (
    patient_id  integer not null references patient (patient_id),
    relative_id integer not null references patient (patient_id),
    relation    text not null,
    primary key (patient_id, relative_id),
    check (patient_id <> relative_id)
);

create table audit_log (
    audit_log_id integer primary key autoincrement,
    created_at   text not null,
    staff_id     integer references staff (staff_id),
    action       text not null,
    patient_id   integer references patient (patient_id),
    contact_id   text,
    detail       text not null default ''
);
create index audit_log_patient on audit_log (patient_id);

-- The audit log is append-only: the database itself refuses edits.
create trigger audit_log_no_update before update on audit_log
begin select raise(abort, 'audit_log is append-only'); end;
create trigger audit_log_no_delete before delete on audit_log
begin select raise(abort, 'audit_log is append-only'); end;
