-- The consult's live transcript: what each participant said, final captions
-- only, kept only when the patient consented to recording and transcription.
create table caption (
    caption_id  integer primary key autoincrement,
    contact_id  text not null references contact (contact_id),
    participant text not null,
    role        text not null,                 -- patient, operator, doctor
    text        text not null,
    start_ms    integer not null,               -- since the speaker's audio began
    end_ms      integer not null,
    language    text not null,
    created_at  text not null
);
create index caption_contact on caption (contact_id, caption_id);
