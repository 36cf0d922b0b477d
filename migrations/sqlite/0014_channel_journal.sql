-- Messaging channels (WhatsApp through Meta or Twilio, SMS through Exotel).
--
-- Inbound is stored first: each webhook's messages and statuses become rows
-- of `channel_event` in the request's one transaction, keyed by the
-- provider's own unique key (a message's id; a status's message id and
-- status), so a redelivered webhook changes nothing. A background task then
-- processes the journal into conversations and contacts.
create table channel_event (
    channel_event_id integer primary key autoincrement,
    provider         text not null check (provider in ('whatsapp', 'twilio', 'exotel')),
    kind             text not null check (kind in ('message', 'status')),
    event_key        text not null,              -- the provider's unique key
    message_ref      text,                       -- the provider's message id
    opaque           text,                       -- a status's biz_opaque_callback_data (our outbox key)
    payload          text not null,              -- the event as parsed (JSON), with the provider's item
    received_at      text not null,
    processed_at     text,                       -- null: not processed yet
    outcome          text check (outcome in ('processed', 'unprocessable', 'unmatched')),
    error            text,                       -- why it is unprocessable, for staff
    contact_id       text references contact (contact_id),
    unique (provider, event_key)
);
create index channel_event_pending on channel_event (processed_at, channel_event_id);
create index channel_event_ref on channel_event (message_ref);
create index channel_event_opaque on channel_event (opaque);

-- A patient's conversation on one channel: a WhatsApp id or a phone number.
create table channel_thread (
    channel_thread_id integer primary key autoincrement,
    channel           text not null check (channel in ('whatsapp', 'sms')),
    provider          text not null check (provider in ('whatsapp', 'twilio', 'exotel')),
    address           text not null,             -- wa_id or E.164 number, as the provider gives it
    display_name      text,                      -- the profile name the provider sent
    patient_id        integer references patient (patient_id),
    contact_id        text references contact (contact_id), -- the latest contact of the thread
    last_inbound_at   text not null,             -- the patient's last message: WhatsApp's 24-hour window
    created_at        text not null,
    unique (channel, address)
);
create index channel_thread_contact on channel_thread (contact_id);

-- Replies going out on a channel, queued with their chat message.
create table channel_outbox (
    channel_outbox_id   integer primary key autoincrement,
    chat_message_id     integer not null unique references chat_message (chat_message_id),
    contact_id          text not null references contact (contact_id),
    provider            text not null check (provider in ('whatsapp', 'twilio', 'exotel')),
    recipient           text not null,
    request             text not null,           -- the provider's request body, built when queued (JSON)
    opaque              text not null unique,    -- sent as biz_opaque_callback_data; statuses carry it back
    state               text not null check (state in ('queued', 'sending', 'sent', 'unknown', 'failed')),
    attempts            integer not null default 0,
    next_attempt_at     text,                    -- set while queued
    last_error          text,
    provider_message_id text unique,
    delivery            text check (delivery in ('sent', 'delivered', 'read', 'failed')),
    delivery_at         text,
    created_at          text not null,
    updated_at          text not null
);
create index channel_outbox_due on channel_outbox (state, next_attempt_at);
create index channel_outbox_contact on channel_outbox (contact_id);
