//! The HIMS link: the hospital records the consoles read and write, behind
//! one interface, [`Hims`], with two implementations:
//!
//! - [`Builtin`]: Careline's own records in the store (the Delhi demo data,
//!   or what `careline hims import` loaded from CSV or FHIR bundles).
//! - [`FhirHims`]: a FHIR R4 server over its REST API (`--hims-fhir-url`).
//!   Careline keeps a working copy of what it read there (patients,
//!   facilities, slots, appointments) under its own ids, because contacts,
//!   audit entries and prescriptions refer to those; `hims_ref` says which
//!   server resource each copy is. The server stays the record: slots are
//!   booked there first, and the consult is written there as one
//!   transaction.
//!
//! Who may read what, and the audit log, stay in the HTTP handlers: the
//! link only fetches and writes records.
//!
//! ## Layout
//! - `import`: the built-in records' import from CSV and FHIR bundles, and
//!   the demo data (re-exported here).
//! - `builtin`, `fhir`: the two implementations.

mod builtin;
mod fhir;
mod import;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use builtin::Builtin;
pub use fhir::FhirHims;
pub use import::*;

use crate::store::{
    Appointment, ConsultRecord, Facility, FacilityQuery, Patient, PatientKey, Slot, Staff, StaffId, StoreError,
};

/// Why the HIMS could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum HimsError {
    /// 404: no such record.
    #[error("{0} not found")]
    NotFound(String),
    /// 409: it clashes with the record as it stands (a taken slot, a consult already recorded).
    #[error("{0}")]
    Refused(String),
    /// 502: the FHIR server could not be reached, refused, or answered with something that is not FHIR.
    #[error("{0}")]
    Upstream(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T, E = HimsError> = std::result::Result<T, E>;

/// A booking of a patient into a slot.
pub struct Booking<'a> {
    pub slot_id: i64,
    pub patient: &'a Patient,
    pub booked_by: StaffId,
    pub contact_id: Option<&'a str>,
    pub now: DateTime<Utc>,
}

/// A finished consult, as it goes into the HIMS record.
pub struct Consult {
    pub contact_id: String,
    pub patient: Patient,
    pub doctor: Staff,
    pub started: DateTime<Utc>,
    pub ended: Option<DateTime<Utc>>,
    pub reason: String,
    /// The doctor's notes as text.
    pub notes: String,
    /// The call's transcript, when the patient consented to one.
    pub transcript: Option<String>,
    /// Generic name and dosage text of each prescribed drug.
    pub medications: Vec<(String, String)>,
    /// The follow-up booked from this consult, and where.
    pub follow_up: Option<(Facility, Appointment)>,
    pub recorded_by: StaffId,
    pub now: DateTime<Utc>,
}

/// The hospital records the consoles use.
#[async_trait::async_trait]
pub trait Hims: Send + Sync + 'static {
    /// `builtin`, or the FHIR server's base URL.
    fn name(&self) -> String;

    /// Patients by card, ABHA number, phone (which may find a family) or HIMS id, each with family.
    async fn find_patients(&self, key: &PatientKey) -> Result<Vec<Patient>>;

    /// Facilities (a FHIR Location with its HealthcareServices) matching the query.
    async fn search_facilities(&self, query: &FacilityQuery) -> Result<Vec<Facility>>;

    async fn facility(&self, id: i64) -> Result<Facility>;

    /// Free slots at a facility starting between `from` and `to`.
    async fn free_slots(
        &self,
        facility: i64,
        department: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Slot>>;

    /// Books a free slot; a slot that is taken (also by a booking at the same
    /// moment) or has started is refused and nothing is written.
    async fn book(&self, booking: &Booking<'_>) -> Result<Appointment>;

    /// Writes a finished consult into the patient's record: the Encounter
    /// (class VR), the notes and transcript, the MedicationRequests, and the
    /// follow-up Appointment linked to the Encounter. Once per contact.
    async fn record_consult(&self, consult: &Consult) -> Result<ConsultRecord>;
}

/// The HIMS a node uses. Cheap to clone.
pub type HimsLink = Arc<dyn Hims>;

/// The consult as a self-contained R4 transaction Bundle (every resource in it), as the built-in record keeps it.
pub fn consult_bundle(c: &Consult) -> serde_json::Value {
    use telemed::fhir::*;
    let p = &c.patient;
    consult_bundle(
        &FhirPatient {
            name: &p.name,
            sex: p.sex.as_str(),
            birth_date: p.birth_date,
            phone: p.phone.as_deref(),
            email: p.email.as_deref(),
            abha_number: p.abha_number.as_ref().map(|a| a.as_str()),
            ehealth_card: p.ehealth_card.as_deref(),
            hims_id: p.hims_patient_id.as_deref(),
        },
        &practitioner_of(&c.doctor),
        &consult_of(c),
        &medications_of(c),
        c.follow_up
            .as_ref()
            .map(|(f, a)| FhirFollowUp {
                facility_code: &f.code,
                facility_name: &f.name,
                department: &a.slot.department,
                start: a.slot.starts_at,
                end: a.slot.ends_at,
            })
            .as_ref(),
    )
}

fn practitioner_of(d: &Staff) -> telemed::fhir::FhirPractitioner<'_> {
    telemed::fhir::FhirPractitioner {
        name: &d.display_name,
        qualification: d.qualification.as_deref().unwrap_or_default(),
        registration_number: d.registration_number.as_deref().unwrap_or_default(),
    }
}

fn consult_of(c: &Consult) -> telemed::fhir::FhirConsult<'_> {
    telemed::fhir::FhirConsult {
        contact_id: &c.contact_id,
        started: c.started,
        ended: c.ended,
        reason: &c.reason,
        notes: &c.notes,
        transcript: c.transcript.as_deref(),
    }
}

fn medications_of(c: &Consult) -> Vec<telemed::fhir::FhirMedication<'_>> {
    c.medications.iter().map(|(g, d)| telemed::fhir::FhirMedication { generic: g, dosage: d.clone() }).collect()
}

/// The `fullUrl` of the bundle's Encounter.
fn encounter_url(bundle: &serde_json::Value) -> String {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["resource"]["resourceType"] == "Encounter")
        .and_then(|e| e["fullUrl"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Maps a store miss to a HIMS "not found" naming `what` (and a store refusal to a refusal).
fn not_found(what: String) -> impl FnOnce(StoreError) -> HimsError {
    move |e| match e {
        StoreError::NotFound => HimsError::NotFound(what),
        StoreError::Refused(why) => HimsError::Refused(why),
        other => other.into(),
    }
}
