//! Patients: registration, look-up by card, ABHA, phone or HIMS id, and the
//! record itself. Every read of a record by staff is written to the audit log
//! (who, when, which patient, for which contact) before the record is sent.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::NaiveDate;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::access::{PatientData, action, check_patient, lookup_from};
use super::error::{ApiError, FieldError, Result};
use super::json::{ApiJson, ApiQuery};
use super::{AppState, Management, StaffOnDuty};
use crate::store::{AbhaNumber, AuditEntry, NewAudit, NewPatient, Patient, PatientId, PatientKey, Sex, Staff, Store};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(find_patients, create_patient))
        .routes(routes!(read_patient))
        .routes(routes!(link_family))
        .routes(routes!(patient_audit))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PatientInput {
    name: String,
    /// `YYYY-MM-DD`. Give this or `age_years`.
    birth_date: Option<NaiveDate>,
    age_years: Option<i64>,
    #[serde(default = "unknown_sex")]
    sex: Sex,
    /// Indian mobile number: 10 digits, optionally with +91.
    phone: Option<String>,
    email: Option<String>,
    /// ISO 639-1, e.g. `hi`.
    preferred_language: Option<String>,
    ehealth_card: Option<String>,
    /// 14 digits, written `91-XXXX-XXXX-XXXX`.
    abha_number: Option<String>,
    hims_patient_id: Option<String>,
}

fn unknown_sex() -> Sex {
    Sex::Unknown
}

/// An Indian mobile number as `+91XXXXXXXXXX`, or why it is not one.
pub fn normalise_phone(input: &str) -> Result<String, String> {
    let digits: String = input.chars().filter(|c| c.is_ascii_digit()).collect();
    let national = match digits.len() {
        10 => digits.as_str(),
        12 if digits.starts_with("91") => &digits[2..],
        11 if digits.starts_with('0') => &digits[1..],
        _ => {
            return Err(format!("`{input}` is not a phone number: give 10 digits, optionally with +91"));
        }
    };
    if !national.starts_with(['6', '7', '8', '9']) {
        return Err(format!("`{input}` is not an Indian mobile number: it starts with 6, 7, 8 or 9"));
    }
    Ok(format!("+91{national}"))
}

/// A Delhi e-health card number: letters, digits and hyphens, 6 to 24 characters, upper-cased.
pub fn normalise_card(input: &str) -> Result<String, String> {
    let card = input.trim().to_uppercase();
    if (6..=24).contains(&card.len()) && card.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Ok(card)
    } else {
        Err(format!("`{input}` is not an e-health card number: 6 to 24 letters, digits or hyphens"))
    }
}

impl PatientInput {
    fn validate(self) -> Result<NewPatient> {
        let mut errors = Vec::new();
        let mut bad = |field: &str, message: String| errors.push(FieldError { field: field.into(), message });
        let name = self.name.trim().to_owned();
        if name.is_empty() {
            bad("name", "must not be empty".into());
        }
        for (field, value) in [
            ("name", Some(&self.name)),
            ("preferred_language", self.preferred_language.as_ref()),
            ("hims_patient_id", self.hims_patient_id.as_ref()),
        ] {
            if let Some(e) = value.and_then(|v| super::json::control_characters(field, v)) {
                bad(&e.field, e.message);
            }
        }
        if let Some(age) = self.age_years
            && !(0..=130).contains(&age)
        {
            bad("age_years", "must be between 0 and 130".into());
        }
        if let Some(birth) = self.birth_date
            && birth > crate::time::local_today()
        {
            bad("birth_date", "is in the future".into());
        }
        let phone = self.phone.as_deref().map(normalise_phone).transpose().unwrap_or_else(|e| {
            bad("phone", e);
            None
        });
        let ehealth_card = self.ehealth_card.as_deref().map(normalise_card).transpose().unwrap_or_else(|e| {
            bad("ehealth_card", e);
            None
        });
        let abha_number = self.abha_number.as_deref().map(AbhaNumber::parse).transpose().unwrap_or_else(|e| {
            bad("abha_number", e);
            None
        });
        // One `@` with text on both sides, and nothing that could end a mail
        // header or an iCalendar line (CR, LF, other controls) or split an address.
        if let Some(email) = &self.email
            && (email.split('@').count() != 2
                || email.starts_with('@')
                || email.ends_with('@')
                || email.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | ',' | '"')))
        {
            bad("email", format!("{email:?} is not an email address"));
        }
        if !errors.is_empty() {
            return Err(ApiError::Invalid(errors));
        }
        Ok(NewPatient {
            name,
            birth_date: self.birth_date,
            age_years: self.age_years,
            sex: Some(self.sex),
            phone,
            email: self.email,
            preferred_language: self.preferred_language,
            ehealth_card,
            abha_number,
            hims_patient_id: self.hims_patient_id,
        })
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct RegisterQuery {
    /// The live contact you register the caller from: the new record is then
    /// open to you on it (as a lookup's results are).
    contact: Option<String>,
}

/// Registers a patient with the helpline.
#[utoipa::path(post, path = "/api/patients", tag = "patients", request_body = PatientInput, params(RegisterQuery),
    responses((status = 201, body = Patient), (status = 401), (status = 403), (status = 409), (status = 422)))]
async fn create_patient(
    State(store): State<Store>,
    StaffOnDuty(staff): StaffOnDuty,
    ApiQuery(q): ApiQuery<RegisterQuery>,
    ApiJson(input): ApiJson<PatientInput>,
) -> Result<(StatusCode, axum::Json<Patient>)> {
    let new = input.validate()?;
    let from = match q.contact.as_deref() {
        Some(_) => lookup_from(&store, &staff, q.contact.as_deref()).await?,
        None => None,
    };
    let patient = store.create_patient(&new).await.map_err(|e| match e {
        crate::store::StoreError::Conflict(field) => {
            ApiError::Conflict(format!("a patient with this {field} is already registered"))
        }
        other => other.into(),
    })?;
    if let Some(contact) = &from {
        store.add_contact_lookup(contact, staff.staff_id, patient.patient_id, chrono::Utc::now()).await?;
    }
    audit(&store, &staff, "patient.create", patient.patient_id, from).await?;
    Ok((StatusCode::CREATED, axum::Json(patient)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ContactContext {
    /// The contact (call or chat) on whose behalf the record is read; written to the audit log.
    #[allow(dead_code)] // read by the `PatientData` extractor
    contact: Option<String>,
}

/// A patient's record, with family. Open by the patient-data rule
/// (`crate::access`); audited.
#[utoipa::path(get, path = "/api/patients/{id}", tag = "patients", params(("id" = i64, Path), ContactContext),
    responses((status = 200, body = Patient), (status = 401), (status = 403), (status = 404)))]
async fn read_patient(State(store): State<Store>, access: PatientData<action::Read>) -> Result<axum::Json<Patient>> {
    Ok(axum::Json(store.patient(access.patient).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FindQuery {
    /// E-health card number (also what the card's QR code holds).
    card: Option<String>,
    /// ABHA number, `91-XXXX-XXXX-XXXX` or 14 digits.
    abha: Option<String>,
    /// Phone number; may match a whole family.
    phone: Option<String>,
    /// HIMS patient id.
    hims_id: Option<String>,
    contact: Option<String>,
}

/// Finds patients by exactly one key, in the HIMS (the built-in records or
/// the FHIR server), with family, from a live contact you work on
/// (`contact`; supervisors need none). Each patient found is audited as read
/// and becomes open to you on that contact.
#[utoipa::path(get, path = "/api/patients", tag = "patients", params(FindQuery),
    responses((status = 200, body = [Patient]), (status = 401), (status = 403), (status = 422), (status = 502)))]
async fn find_patients(
    State(store): State<Store>,
    State(hims): State<crate::hims::HimsLink>,
    StaffOnDuty(staff): StaffOnDuty,
    ApiQuery(q): ApiQuery<FindQuery>,
) -> Result<axum::Json<Vec<Patient>>> {
    let given = [&q.card, &q.abha, &q.phone, &q.hims_id].iter().filter(|v| v.is_some()).count();
    if given != 1 {
        return Err(ApiError::invalid("card|abha|phone|hims_id", "give exactly one of these to search by"));
    }
    let key = if let Some(card) = &q.card {
        PatientKey::EhealthCard(normalise_card(card).map_err(|e| ApiError::invalid("card", e))?)
    } else if let Some(abha) = &q.abha {
        PatientKey::Abha(AbhaNumber::parse(abha).map_err(|e| ApiError::invalid("abha", e))?)
    } else if let Some(phone) = &q.phone {
        PatientKey::Phone(normalise_phone(phone).map_err(|e| ApiError::invalid("phone", e))?)
    } else {
        PatientKey::HimsId(q.hims_id.clone().unwrap_or_default())
    };
    // Only a live contact's staff look up, and only what they find opens to them.
    let from = lookup_from(&store, &staff, q.contact.as_deref()).await?;
    let found = hims.find_patients(&key).await?;
    let now = chrono::Utc::now();
    for patient in &found {
        if let Some(contact) = &from {
            store.add_contact_lookup(contact, staff.staff_id, patient.patient_id, now).await?;
        }
        audit(&store, &staff, "patient.lookup", patient.patient_id, from.clone().or(q.contact.clone())).await?;
    }
    Ok(axum::Json(found))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FamilyInput {
    relative_id: i64,
    /// What the relative is to the patient, e.g. `mother`.
    relation: String,
    /// What the patient is to the relative, e.g. `son`.
    reverse_relation: String,
}

/// Links two patients as family, both ways.
#[utoipa::path(post, path = "/api/patients/{id}/family", tag = "patients", params(("id" = i64, Path)),
    request_body = FamilyInput,
    responses((status = 204), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn link_family(
    State(store): State<Store>,
    access: PatientData<action::FamilyLink>,
    ApiJson(input): ApiJson<FamilyInput>,
) -> Result<StatusCode> {
    let (staff, id) = (&access.staff, access.patient.0);
    let mut errors = Vec::new();
    for (field, value) in [("relation", &input.relation), ("reverse_relation", &input.reverse_relation)] {
        if value.trim().is_empty() {
            errors.push(FieldError { field: field.into(), message: "must not be empty".into() });
        }
        errors.extend(super::json::control_characters(field, value));
    }
    if input.relative_id == id {
        errors.push(FieldError { field: "relative_id".into(), message: "a patient is not their own relative".into() });
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    // Both sides of the link must be open to whoever makes it.
    let grant = check_patient(&store, staff, PatientId(input.relative_id), access.contact.as_deref()).await?;
    store
        .link_family(PatientId(id), PatientId(input.relative_id), input.relation.trim(), input.reverse_relation.trim())
        .await
        .map_err(|e| match e {
            crate::store::StoreError::InvalidReference(_) => ApiError::NotFound("patient or relative".into()),
            other => other.into(),
        })?;
    super::access::audit(
        &store,
        staff,
        "patient.family.link",
        PatientId(input.relative_id),
        access.contact.clone(),
        &grant,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who read a patient's record, and when. Supervisors and admins only.
#[utoipa::path(get, path = "/api/patients/{id}/audit", tag = "patients", params(("id" = i64, Path)),
    responses((status = 200, body = [AuditEntry]), (status = 401), (status = 403)))]
async fn patient_audit(
    State(store): State<Store>,
    _who: Management,
    Path(id): Path<i64>,
) -> Result<axum::Json<Vec<AuditEntry>>> {
    Ok(axum::Json(store.audit_for_patient(PatientId(id)).await?))
}

async fn audit(store: &Store, staff: &Staff, action: &str, patient: PatientId, contact: Option<String>) -> Result<()> {
    store
        .append_audit(&NewAudit {
            staff_id: Some(staff.staff_id),
            action: action.into(),
            patient_id: Some(patient),
            contact_id: contact,
            detail: String::new(),
        })
        .await?;
    Ok(())
}
