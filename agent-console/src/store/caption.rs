//! The consult's transcript: final captions, kept only with consent (the
//! caller checks it).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Result, Store, StoreError, on_pool};

/// What one participant said, as transcribed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Caption {
    pub caption_id: i64,
    pub contact_id: String,
    pub participant: String,
    /// `patient`, `operator` or `doctor`.
    pub role: String,
    pub text: String,
    /// Milliseconds since the speaker's audio began.
    pub start_ms: i64,
    pub end_ms: i64,
    pub language: String,
    pub created_at: DateTime<Utc>,
}

/// A caption to keep.
#[derive(Clone, Debug)]
pub struct NewCaption<'a> {
    pub contact_id: &'a str,
    pub participant: &'a str,
    pub role: &'a str,
    pub text: &'a str,
    pub start_ms: i64,
    pub end_ms: i64,
    pub language: &'a str,
}

type CaptionRow = (i64, String, String, String, String, i64, i64, String, DateTime<Utc>);

impl Store {
    pub async fn add_caption(&self, c: &NewCaption<'_>, now: DateTime<Utc>) -> Result<Caption> {
        let row: (i64,) = on_pool!(self, pool => sqlx::query_as(
            "insert into caption (contact_id, participant, role, text, start_ms, end_ms, language, created_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8) returning caption_id",
        )
        .bind(c.contact_id)
        .bind(c.participant)
        .bind(c.role)
        .bind(c.text)
        .bind(c.start_ms)
        .bind(c.end_ms)
        .bind(c.language)
        .bind(now)
        .fetch_one(pool)
        .await)
        .map_err(StoreError::refers_to("contact_id"))?;
        Ok(Caption {
            caption_id: row.0,
            contact_id: c.contact_id.to_owned(),
            participant: c.participant.to_owned(),
            role: c.role.to_owned(),
            text: c.text.to_owned(),
            start_ms: c.start_ms,
            end_ms: c.end_ms,
            language: c.language.to_owned(),
            created_at: now,
        })
    }

    /// A contact's transcript, in the order it was spoken (by arrival).
    pub async fn captions(&self, contact: &str) -> Result<Vec<Caption>> {
        let rows: Vec<CaptionRow> = on_pool!(self, pool => sqlx::query_as(
            "select caption_id, contact_id, participant, role, text, start_ms, end_ms, language, created_at \
             from caption where contact_id = $1 order by caption_id",
        )
        .bind(contact)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(rows
            .into_iter()
            .map(|(caption_id, contact_id, participant, role, text, start_ms, end_ms, language, created_at)| Caption {
                caption_id,
                contact_id,
                participant,
                role,
                text,
                start_ms,
                end_ms,
                language,
                created_at,
            })
            .collect())
    }
}
