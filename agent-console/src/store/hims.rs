//! The HIMS link's bookkeeping: which FHIR resource each local working copy
//! is (`hims_ref`), patients refreshed from the HIMS, and consults written
//! into the HIMS record (`consult_record`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AbhaNumber, NewPatient, Patient, PatientKey, Result, Sex, Slot, StaffId, Store, StoreError, on_pool};

/// What kind of local record a HIMS reference belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HimsKind {
    Facility,
    Slot,
    Appointment,
}

impl HimsKind {
    fn as_str(self) -> &'static str {
        match self {
            HimsKind::Facility => "facility",
            HimsKind::Slot => "slot",
            HimsKind::Appointment => "appointment",
        }
    }
}

/// A consult written into the HIMS record.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ConsultRecord {
    pub contact_id: String,
    /// `builtin`, or the FHIR server's base URL.
    pub hims: String,
    /// Where the Encounter is: `Encounter/42` on a FHIR server, a `urn:uuid:` in the built-in record.
    pub encounter_ref: String,
    /// The FHIR R4 transaction Bundle that was recorded.
    #[schema(value_type = Object)]
    pub bundle: serde_json::Value,
    pub recorded_by: StaffId,
    pub recorded_at: DateTime<Utc>,
}

impl Store {
    /// The FHIR resource (`Type/id`) a local record is, if it came from the HIMS.
    pub async fn hims_ref(&self, kind: HimsKind, local_id: i64) -> Result<Option<String>> {
        let row: Option<(String,)> = on_pool!(self, pool => sqlx::query_as(
            "select fhir_id from hims_ref where kind = $1 and local_id = $2",
        )
        .bind(kind.as_str())
        .bind(local_id)
        .fetch_optional(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(row.map(|(r,)| r))
    }

    /// Remembers which FHIR resource a local record is.
    pub async fn set_hims_ref(&self, kind: HimsKind, local_id: i64, fhir_id: &str) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "insert into hims_ref (kind, local_id, fhir_id, created_at) values ($1, $2, $3, $4) \
             on conflict (kind, local_id) do update set fhir_id = excluded.fhir_id",
        )
        .bind(kind.as_str())
        .bind(local_id)
        .bind(fhir_id)
        .bind(Utc::now())
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)
    }

    /// The local slot of a facility's department starting at `starts_at`.
    pub async fn slot_at(&self, facility: i64, department: &str, starts_at: DateTime<Utc>) -> Result<Slot> {
        let (id,): (i64,) = on_pool!(self, pool => sqlx::query_as(
            "select slot_id from slot where facility_id = $1 and department = $2 and starts_at = $3",
        )
        .bind(facility)
        .bind(department)
        .bind(starts_at)
        .fetch_one(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        self.slot(id).await
    }

    /// Brings the local copy of a HIMS patient up to date: the row with the
    /// same HIMS id, else the same ABHA number, else the same card, is
    /// updated (and gets the HIMS id); otherwise the patient is added.
    pub async fn sync_patient(&self, p: &NewPatient) -> Result<Patient> {
        let mut existing = None;
        let keys = [
            p.hims_patient_id.clone().map(PatientKey::HimsId),
            p.abha_number.clone().map(PatientKey::Abha),
            p.ehealth_card.clone().map(PatientKey::EhealthCard),
        ];
        for key in keys.into_iter().flatten() {
            if let Some(found) = self.find_patients(&key).await?.into_iter().next() {
                existing = Some(found.patient_id);
                break;
            }
        }
        let Some(id) = existing else {
            return self.create_patient(p).await;
        };
        on_pool!(self, pool => sqlx::query(
            "update patient set name = $2, birth_date = $3, age_years = $4, sex = $5, phone = $6, email = $7, \
             ehealth_card = $8, abha_number = $9, hims_patient_id = $10, updated_at = $11 where patient_id = $1",
        )
        .bind(id.0)
        .bind(&p.name)
        .bind(p.birth_date.map(|d| d.format("%Y-%m-%d").to_string()))
        .bind(p.age_years)
        .bind(p.sex.unwrap_or(Sex::Unknown).as_str())
        .bind(&p.phone)
        .bind(&p.email)
        .bind(&p.ehealth_card)
        .bind(p.abha_number.as_ref().map(AbhaNumber::as_str))
        .bind(&p.hims_patient_id)
        .bind(Utc::now())
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)?;
        self.patient(id).await
    }

    /// Keeps a consult written into the HIMS record; a second record of the same contact is a conflict.
    pub async fn save_consult_record(&self, r: &ConsultRecord) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "insert into consult_record (contact_id, hims, encounter_ref, bundle, recorded_by, recorded_at) \
             values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&r.contact_id)
        .bind(&r.hims)
        .bind(&r.encounter_ref)
        .bind(r.bundle.to_string())
        .bind(r.recorded_by.0)
        .bind(r.recorded_at)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)
    }

    pub async fn consult_record(&self, contact: &str) -> Result<Option<ConsultRecord>> {
        let row: Option<(String, String, String, String, i64, DateTime<Utc>)> = on_pool!(self, pool => sqlx::query_as(
            "select contact_id, hims, encounter_ref, bundle, recorded_by, recorded_at from consult_record \
             where contact_id = $1",
        )
        .bind(contact)
        .fetch_optional(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        row.map(|(contact_id, hims, encounter_ref, bundle, recorded_by, recorded_at)| {
            let bundle = serde_json::from_str(&bundle)
                .map_err(|e| StoreError::Corrupt(format!("consult record of contact {contact_id}: bundle: {e}")))?;
            Ok(ConsultRecord {
                contact_id,
                hims,
                encounter_ref,
                bundle,
                recorded_by: StaffId(recorded_by),
                recorded_at,
            })
        })
        .transpose()
    }
}
