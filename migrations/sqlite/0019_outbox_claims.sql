-- Several nodes share one database: each outbox row (and each inbound
-- channel event) is claimed by one node before it is worked on. A claim is a
-- lease: `claimed_by` names the node, `claimed_until` is when the claim runs
-- out, so a node that dies mid-send gives its rows back by expiry. Null: no
-- claim (never claimed, or the attempt's outcome was recorded).
alter table mail_outbox add column claimed_by text;
alter table mail_outbox add column claimed_until text;
alter table ambulance_request add column claimed_by text;
alter table ambulance_request add column claimed_until text;
alter table channel_outbox add column claimed_by text;
alter table channel_outbox add column claimed_until text;
alter table channel_event add column claimed_by text;
alter table channel_event add column claimed_until text;
