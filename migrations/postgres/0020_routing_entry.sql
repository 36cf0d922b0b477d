-- With Redis every node carries out every routing entry it applies (the
-- node that appended one may die right after): the history row and the
-- contact record's change are written once, by whichever node comes first,
-- keyed by the stream entry's ID. Null for the Local backing's rows.
alter table routing_event add column entry_id text;
create unique index routing_event_entry on routing_event (entry_id);
