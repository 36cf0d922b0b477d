-- Sign-in devices and failed sign-ins (issue 21), after OWASP's "Slow Down
-- Online Guessing Attacks with Device Cookies": a device that signed in as a
-- user before holds a random cookie, kept here only as its SHA-256; strangers'
-- failures never delay it. Failed sign-ins are kept until the user's next
-- sign-in, which tells them how many there were.

create table staff_device (
    staff_device_id text primary key,
    staff_id        bigint not null references staff (staff_id),
    created_at      timestamptz not null,
    last_sign_in_at timestamptz not null
);
create index staff_device_staff on staff_device (staff_id);

create table login_failure (
    login_failure_id bigint generated always as identity primary key,
    staff_id         bigint not null references staff (staff_id),
    created_at       timestamptz not null,
    -- The client's address (behind trusted proxies, the forwarded one).
    client           text not null,
    known_device     boolean not null
);
create index login_failure_staff on login_failure (staff_id);
