-- Keys this installation makes for itself on first use (e.g. the key that
-- signs prescriptions), so that they survive restarts and are shared by nodes.
create table secret (
    name       text primary key,
    value      text not null,
    created_at timestamptz not null
);
