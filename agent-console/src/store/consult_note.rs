//! The doctor's notes of a consult: consent (and consent to recording),
//! complaint, history, findings, diagnosis and advice; one per contact.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Result, StaffId, Store, StoreError, on_pool};

/// The doctor's record of a consult: consent and notes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConsultNote {
    pub contact_id: String,
    pub doctor_id: StaffId,
    /// `{"kind": "implied"}`, `{"kind": "explicit", "by": ...}` or
    /// `{"kind": "guardian", "name": ..., "relation": ..., "id_document": ...}`.
    #[schema(value_type = Object)]
    pub consent: serde_json::Value,
    /// Explicit consent to record and transcribe the consult.
    pub recording_consent: bool,
    pub chief_complaint: String,
    pub history: String,
    pub findings: String,
    pub diagnosis: String,
    pub advice: String,
    pub updated_at: DateTime<Utc>,
}

type NoteRow = (String, i64, String, bool, String, String, String, String, String, DateTime<Utc>);

impl Store {
    /// Saves (replaces) the consult's note.
    pub async fn save_consult_note(&self, n: &ConsultNote) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "insert into consult_note (contact_id, doctor_id, consent, recording_consent, chief_complaint, history, \
             findings, diagnosis, advice, updated_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             on conflict (contact_id) do update set doctor_id = excluded.doctor_id, consent = excluded.consent, \
             recording_consent = excluded.recording_consent, chief_complaint = excluded.chief_complaint, \
             history = excluded.history, findings = excluded.findings, diagnosis = excluded.diagnosis, \
             advice = excluded.advice, updated_at = excluded.updated_at",
        )
        .bind(&n.contact_id)
        .bind(n.doctor_id.0)
        .bind(n.consent.to_string())
        .bind(n.recording_consent)
        .bind(&n.chief_complaint)
        .bind(&n.history)
        .bind(&n.findings)
        .bind(&n.diagnosis)
        .bind(&n.advice)
        .bind(n.updated_at)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)
    }

    pub async fn consult_note(&self, contact: &str) -> Result<Option<ConsultNote>> {
        let row: Option<NoteRow> = on_pool!(self, pool => sqlx::query_as(
            "select contact_id, doctor_id, consent, recording_consent, chief_complaint, history, findings, diagnosis, \
             advice, updated_at from consult_note where contact_id = $1",
        )
        .bind(contact)
        .fetch_optional(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        row.map(
            |(
                contact_id,
                doctor,
                consent,
                recording_consent,
                chief_complaint,
                history,
                findings,
                diagnosis,
                advice,
                updated_at,
            )| {
                // Consent is what makes the consult lawful (TPG 2020): a body
                // that does not parse is an error naming the contact, never `null`.
                let consent = serde_json::from_str(&consent)
                    .map_err(|e| StoreError::Corrupt(format!("consult note of contact {contact_id}: consent: {e}")))?;
                Ok(ConsultNote {
                    contact_id,
                    doctor_id: StaffId(doctor),
                    consent,
                    recording_consent,
                    chief_complaint,
                    history,
                    findings,
                    diagnosis,
                    advice,
                    updated_at,
                })
            },
        )
        .transpose()
    }
}
