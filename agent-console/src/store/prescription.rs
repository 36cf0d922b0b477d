//! Issued prescriptions, as stored: who wrote one for whom on which
//! contact, and the issued prescription itself as JSON.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{PatientId, Result, StaffId, Store, StoreError, on_pool};

crate::store::text_enum::text_enum!(
    /// How the doctor and the patient talked when it was written (TPG 2020).
    PrescriptionMode { Video = "video", Audio = "audio", Text = "text" }
);
crate::store::text_enum::text_enum!(
    /// Whether it was written on a first consult for the condition or a follow-up.
    PrescriptionKind { First = "first", FollowUp = "follow_up" }
);

impl From<telemed::consult::ConsultMode> for PrescriptionMode {
    fn from(m: telemed::consult::ConsultMode) -> Self {
        match m {
            telemed::consult::ConsultMode::Video => PrescriptionMode::Video,
            telemed::consult::ConsultMode::Audio => PrescriptionMode::Audio,
            telemed::consult::ConsultMode::Text => PrescriptionMode::Text,
        }
    }
}

impl From<PrescriptionMode> for telemed::consult::ConsultMode {
    fn from(m: PrescriptionMode) -> Self {
        match m {
            PrescriptionMode::Video => telemed::consult::ConsultMode::Video,
            PrescriptionMode::Audio => telemed::consult::ConsultMode::Audio,
            PrescriptionMode::Text => telemed::consult::ConsultMode::Text,
        }
    }
}

impl From<telemed::consult::ConsultKind> for PrescriptionKind {
    fn from(k: telemed::consult::ConsultKind) -> Self {
        match k {
            telemed::consult::ConsultKind::First => PrescriptionKind::First,
            telemed::consult::ConsultKind::FollowUp => PrescriptionKind::FollowUp,
        }
    }
}

impl From<PrescriptionKind> for telemed::consult::ConsultKind {
    fn from(k: PrescriptionKind) -> Self {
        match k {
            PrescriptionKind::First => telemed::consult::ConsultKind::First,
            PrescriptionKind::FollowUp => telemed::consult::ConsultKind::FollowUp,
        }
    }
}

/// A stored prescription (its body is the issued `telemed::consult::Prescription` as JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StoredPrescription {
    pub prescription_id: String,
    pub contact_id: String,
    pub patient_id: PatientId,
    pub doctor_id: StaffId,
    pub mode: PrescriptionMode,
    pub kind: PrescriptionKind,
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    pub issued_at: DateTime<Utc>,
}

impl Store {
    pub async fn create_prescription(&self, p: &StoredPrescription) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "insert into prescription (prescription_id, contact_id, patient_id, doctor_id, mode, kind, body, issued_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&p.prescription_id)
        .bind(&p.contact_id)
        .bind(p.patient_id.0)
        .bind(p.doctor_id.0)
        .bind(p.mode.as_str())
        .bind(p.kind.as_str())
        .bind(p.body.to_string())
        .bind(p.issued_at)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)
    }

    /// A patient's prescriptions, latest first.
    pub async fn prescriptions_of(&self, patient: PatientId) -> Result<Vec<StoredPrescription>> {
        let rows: Vec<(String, String, i64, i64, String, String, String, DateTime<Utc>)> =
            on_pool!(self, pool => sqlx::query_as(
            "select prescription_id, contact_id, patient_id, doctor_id, mode, kind, body, issued_at from prescription \
             where patient_id = $1 order by issued_at desc limit 50",
        )
        .bind(patient.0)
        .fetch_all(pool)
        .await)
            .map_err(StoreError::from_sqlx)?;
        rows.into_iter()
            .map(|(prescription_id, contact_id, patient_id, doctor_id, mode, kind, body, issued_at)| {
                Ok(StoredPrescription {
                    body: parse_body(&prescription_id, &body)?,
                    mode: parse_text(&prescription_id, &mode)?,
                    kind: parse_text(&prescription_id, &kind)?,
                    prescription_id,
                    contact_id,
                    patient_id: PatientId(patient_id),
                    doctor_id: StaffId(doctor_id),
                    issued_at,
                })
            })
            .collect()
    }

    pub async fn prescription(&self, id: &str) -> Result<StoredPrescription> {
        let row: (String, String, i64, i64, String, String, String, DateTime<Utc>) =
            on_pool!(self, pool => sqlx::query_as(
            "select prescription_id, contact_id, patient_id, doctor_id, mode, kind, body, issued_at from prescription \
             where prescription_id = $1",
        )
        .bind(id)
        .fetch_one(pool)
        .await)
            .map_err(StoreError::from_sqlx)?;
        Ok(StoredPrescription {
            body: parse_body(&row.0, &row.6)?,
            mode: parse_text(&row.0, &row.4)?,
            kind: parse_text(&row.0, &row.5)?,
            prescription_id: row.0,
            contact_id: row.1,
            patient_id: PatientId(row.2),
            doctor_id: StaffId(row.3),
            issued_at: row.7,
        })
    }
}

/// A prescription's stored JSON body; one that does not parse is an error
/// naming the prescription, never an empty prescription.
fn parse_body(id: &str, body: &str) -> Result<serde_json::Value> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("prescription {id}: body: {e}")))
}

/// A prescription's stored mode or kind; one that is not a known value is
/// `StoreError::Corrupt` naming the prescription.
fn parse_text<T: std::str::FromStr<Err = String>>(id: &str, text: &str) -> Result<T> {
    text.parse().map_err(|e| StoreError::Corrupt(format!("prescription {id}: {e}")))
}
