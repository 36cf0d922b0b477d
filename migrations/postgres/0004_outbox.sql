-- Mail goes through an outbox, so it survives restarts and is retried with
-- backoff. Each row is a whole RFC 5322 message, built when it was queued.
create table mail_outbox (
    mail_id         bigint generated always as identity primary key,
    envelope_from   text not null,
    envelope_to     text not null,          -- comma-separated addresses
    subject         text not null,          -- for the logs and the admin view
    raw             text not null,          -- the formatted message (MIME, 7-bit)
    purpose         text not null,          -- e.g. `appointment.confirmation`
    patient_id      bigint references patient (patient_id),
    attempts        bigint not null default 0,
    next_attempt_at timestamptz,            -- null once sent or given up
    sent_at         timestamptz,
    failed_at       timestamptz,            -- set when retries are exhausted
    last_error      text,
    created_at      timestamptz not null
);
create index mail_outbox_due on mail_outbox (next_attempt_at);
