-- Ambulance delivery is the life-critical outbox: an undelivered request is
-- retried seconds apart and never given up. Each attempt is kept with its
-- error (null once the dispatch webhook took it), and the request says when
-- it is tried next (null once delivered).
alter table ambulance_request add column next_attempt_at timestamptz;

create table ambulance_attempt (
    ambulance_attempt_id bigint generated always as identity primary key,
    ambulance_request_id text not null references ambulance_request (ambulance_request_id),
    attempted_at         timestamptz not null,
    error                text
);
create index ambulance_attempt_of_request on ambulance_attempt (ambulance_request_id, ambulance_attempt_id);
create index ambulance_request_undelivered on ambulance_request (created_at) where delivered_at is null;
