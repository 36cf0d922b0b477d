-- SMS opt-outs: a patient who sent STOP (or another opt-out keyword) gets
-- no SMS from the helpline until they send START. Twilio blocks such sends
-- at the carrier level too (error 21610); Careline keeps its own record so
-- the console refuses before anything is queued. One row per number, the
-- latest keyword winning (journal order).
create table channel_opt_out (
    channel    text not null check (channel in ('whatsapp', 'sms')),
    address    text not null,              -- the number as the provider gives it (E.164)
    opted_out  boolean not null,           -- false after START
    keyword    text not null,              -- what the patient sent, or the provider's error
    changed_at text not null,
    primary key (channel, address)
);
