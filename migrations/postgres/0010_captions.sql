-- The consult's live transcript: what each participant said, final captions
-- only, kept only when the patient consented to recording and transcription.
create table caption (
    caption_id  bigserial primary key,
    contact_id  text not null references contact (contact_id),
    participant text not null,
    role        text not null,                 -- patient, operator, doctor
    text        text not null,
    start_ms    bigint not null,               -- since the speaker's audio began
    end_ms      bigint not null,
    language    text not null,
    created_at  timestamptz not null
);
create index caption_contact on caption (contact_id, caption_id);
