//! The doctor's consult on a contact: prescriptions (checked against the
//! TPG 2020 drug lists, in the consult mode the server determines: text on
//! a chat, video only while `Sfu::receives_video` says the patient's video
//! reaches the doctor, else audio), consent and notes, the formulary, the
//! FHIR export, and the record written into the patient's HIMS record.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::contacts::{on_contact, party_reading};
use super::error::{ApiError, FieldError, Result};
use super::json::ApiJson;
use super::{AppState, AuthUser};
use crate::store::{Contact, Staff, StaffId, Store};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(prescribe))
        .routes(routes!(save_note, read_note))
        .routes(routes!(formulary))
        .routes(routes!(fhir_bundle))
        .routes(routes!(record_consult))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PrescriptionInput {
    /// The doctor's statement of how they consult (`video`, `audio`,
    /// `text`). Optional: the server decides the mode from the contact and
    /// the call, and refuses a statement that claims more than it sees.
    #[schema(example = "video")]
    #[serde(default)]
    mode: Option<crate::store::PrescriptionMode>,
    /// `first` or `follow_up`.
    #[schema(example = "first")]
    kind: crate::store::PrescriptionKind,
    diagnosis: String,
    #[schema(value_type = Vec<Object>)]
    items: Vec<telemed::consult::RxItem>,
    #[serde(default)]
    advice: String,
}

/// How the doctor consults on this contact, as the server sees it: a chat is
/// text; a call is video only while the patient's video reaches this doctor
/// through the SFU now (routed to them and its packets arriving), else audio.
/// The TPG 2020 List A rule rests on this, so it is never the client's word.
async fn consult_mode(state: &AppState, contact: &Contact, doctor: &Staff) -> telemed::consult::ConsultMode {
    use telemed::consult::ConsultMode;
    if contact.channel.is_text() {
        return ConsultMode::Text;
    }
    // Participant ids on the media plane: see `media::media_socket`.
    if state.sfu.receives_video(&contact.contact_id, &doctor.username, "patient").await {
        ConsultMode::Video
    } else {
        ConsultMode::Audio
    }
}

/// A doctor on the contact writes a prescription for its identified patient.
/// It is checked against the Telemedicine Practice Guidelines 2020 and the
/// shipped formulary with the consult mode the server determines (a stated
/// `mode` that claims more, such as video on a chat or with the patient's
/// camera off, is refused); a refused draft gets every problem at once and
/// stores nothing.
#[utoipa::path(post, path = "/api/contacts/{id}/prescriptions", tag = "contacts", params(("id" = String, Path)),
    request_body = PrescriptionInput,
    responses((status = 201, body = crate::store::StoredPrescription), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn prescribe(
    State(state): State<AppState>,
    super::Doctor(doctor): super::Doctor,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<PrescriptionInput>,
) -> Result<(StatusCode, axum::Json<crate::store::StoredPrescription>)> {
    let store = &state.store;
    on_contact(store, doctor.staff_id, &id).await?;
    let contact = store.contact(&id).await?;
    let mode = consult_mode(&state, &contact, &doctor).await;
    if let Some(claimed) = input.mode.map(telemed::consult::ConsultMode::from)
        && rank(claimed) > rank(mode)
    {
        let name = |m| crate::store::PrescriptionMode::from(m).as_str();
        return Err(ApiError::Invalid(vec![FieldError {
            field: "mode".into(),
            message: format!(
                "this is {} consult: {} (TPG 2020: List A on a first consult only by video)",
                match mode {
                    telemed::consult::ConsultMode::Audio => "an audio",
                    _ => "a text",
                },
                match mode {
                    telemed::consult::ConsultMode::Text => format!("a chat cannot be `{}`", name(claimed)),
                    _ => format!("the patient's video is not reaching you now, so it cannot be `{}`", name(claimed)),
                }
            ),
        }]));
    }
    let patient_id = contact
        .patient_id
        .ok_or_else(|| ApiError::Conflict("identify the patient on this contact before prescribing".into()))?;
    let patient = store.patient(patient_id).await?;
    let draft = telemed::consult::PrescriptionDraft {
        prescriber: telemed::consult::Prescriber {
            name: doctor.display_name.clone(),
            qualification: doctor.qualification.clone().unwrap_or_default(),
            registration_number: doctor.registration_number.clone().unwrap_or_default(),
        },
        patient: telemed::consult::RxPatient {
            name: patient.name.clone(),
            age_years: patient.age_years.and_then(|a| u32::try_from(a).ok()),
            sex: patient.sex.as_str().to_owned(),
        },
        mode,
        kind: input.kind.into(),
        diagnosis: input.diagnosis,
        items: input.items,
        advice: input.advice,
    };
    let rx = draft.issue(&telemed::consult::Formulary::builtin()).map_err(|problems| {
        ApiError::Invalid(problems.into_iter().map(|p| FieldError { field: p.field, message: p.message }).collect())
    })?;
    let stored = crate::store::StoredPrescription {
        prescription_id: uuid::Uuid::new_v4().to_string(),
        contact_id: id,
        patient_id,
        doctor_id: doctor.staff_id,
        mode: rx.mode.into(),
        kind: rx.kind.into(),
        body: serde_json::to_value(&rx).map_err(|e| ApiError::Internal(e.into()))?,
        issued_at: Utc::now(),
    };
    store.create_prescription(&stored).await?;
    store
        .append_audit(&crate::store::NewAudit {
            staff_id: Some(doctor.staff_id),
            action: "prescription.issue".into(),
            patient_id: Some(patient_id),
            contact_id: Some(stored.contact_id.clone()),
            detail: stored.prescription_id.clone(),
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(stored)))
}

/// How much a consult mode shows the doctor: text < audio < video.
fn rank(mode: telemed::consult::ConsultMode) -> u8 {
    use telemed::consult::ConsultMode;
    match mode {
        ConsultMode::Text => 0,
        ConsultMode::Audio => 1,
        ConsultMode::Video => 2,
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NoteInput {
    /// How consent to the consult was given (TPG 2020).
    #[schema(value_type = Object)]
    consent: telemed::consult::Consent,
    /// The patient's explicit consent to record and transcribe. Without it no audio is kept.
    #[serde(default)]
    recording_consent: bool,
    #[serde(default)]
    chief_complaint: String,
    #[serde(default)]
    history: String,
    #[serde(default)]
    findings: String,
    #[serde(default)]
    diagnosis: String,
    #[serde(default)]
    advice: String,
}

/// The doctor records consent and notes for the consult on this contact.
#[utoipa::path(put, path = "/api/contacts/{id}/consult", tag = "contacts", params(("id" = String, Path)),
    request_body = NoteInput,
    responses((status = 200, body = crate::store::ConsultNote), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn save_note(
    State(state): State<AppState>,
    super::Doctor(doctor): super::Doctor,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<NoteInput>,
) -> Result<axum::Json<crate::store::ConsultNote>> {
    use telemed::consult::Consent;
    let mut errors = Vec::new();
    match &input.consent {
        Consent::Implied => {}
        Consent::Explicit { by } if by.trim().is_empty() => {
            errors.push(FieldError { field: "consent.by".into(), message: "say who gave consent".into() })
        }
        Consent::Explicit { .. } => {}
        Consent::Guardian { name, relation, .. } => {
            if name.trim().is_empty() {
                errors.push(FieldError {
                    field: "consent.name".into(),
                    message: "the guardian's name is required".into(),
                });
            }
            if relation.trim().is_empty() {
                errors.push(FieldError {
                    field: "consent.relation".into(),
                    message: "say how the guardian is related".into(),
                });
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let store = &state.store;
    on_contact(store, doctor.staff_id, &id).await?;
    let note = crate::store::ConsultNote {
        contact_id: id.clone(),
        doctor_id: doctor.staff_id,
        consent: serde_json::to_value(&input.consent).map_err(|e| ApiError::Internal(e.into()))?,
        recording_consent: input.recording_consent,
        chief_complaint: input.chief_complaint.trim().to_owned(),
        history: input.history.trim().to_owned(),
        findings: input.findings.trim().to_owned(),
        diagnosis: input.diagnosis.trim().to_owned(),
        advice: input.advice.trim().to_owned(),
        updated_at: Utc::now(),
    };
    store.save_consult_note(&note).await?;
    // Recording (and transcription) only with the patient's explicit consent.
    state.sfu.set_recording(&id, note.recording_consent).await;
    Ok(axum::Json(note))
}

/// The consult's consent and notes, for staff on the contact.
#[utoipa::path(get, path = "/api/contacts/{id}/consult", tag = "contacts", params(("id" = String, Path)),
    responses((status = 200, body = crate::store::ConsultNote), (status = 401), (status = 403), (status = 404)))]
async fn read_note(
    State(store): State<Store>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<axum::Json<crate::store::ConsultNote>> {
    party_reading(&store, &id, None, Some(user), "contact.consult").await?;
    store
        .consult_note(&id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::NotFound(format!("consult notes of contact {id}")))
}

/// The generic drugs a prescription may name, with their TPG list.
#[utoipa::path(get, path = "/api/formulary", tag = "contacts",
    responses((status = 200, body = [Object]), (status = 401), (status = 403)))]
async fn formulary(super::Doctor(_doctor): super::Doctor) -> axum::Json<Vec<telemed::consult::FormularyEntry>> {
    axum::Json(telemed::consult::Formulary::builtin().entries())
}

/// The consult on this contact as a FHIR R4 transaction Bundle for the HIMS:
/// Patient, Practitioner, Encounter (class VR), DocumentReference (notes),
/// MedicationRequests, and the follow-up Appointment at its Slot.
#[utoipa::path(get, path = "/api/contacts/{id}/fhir", tag = "contacts", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 401), (status = 403), (status = 404), (status = 409)))]
async fn fhir_bundle(
    State(store): State<Store>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<axum::Json<serde_json::Value>> {
    let staff_id = user.staff.staff_id;
    party_reading(&store, &id, None, Some(user), "contact.fhir").await?;
    let consult = gather_consult(&store, &id, staff_id).await?;
    Ok(axum::Json(crate::hims::consult_bundle(&consult)))
}

/// A doctor on the contact writes the finished consult into the patient's
/// HIMS record (the built-in record, or the FHIR server): the Encounter
/// (class VR), the notes and transcript as a DocumentReference, the
/// prescriptions as MedicationRequests, and the booked follow-up linked to
/// the Encounter. Once per contact; the HIMS takes all of it or none.
#[utoipa::path(post, path = "/api/contacts/{id}/hims-record", tag = "contacts", params(("id" = String, Path)),
    responses((status = 201, body = crate::store::ConsultRecord), (status = 401), (status = 403), (status = 404), (status = 409), (status = 502)))]
async fn record_consult(
    State(state): State<AppState>,
    super::Doctor(doctor): super::Doctor,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<crate::store::ConsultRecord>)> {
    let store = &state.store;
    on_contact(store, doctor.staff_id, &id).await?;
    let consult = gather_consult(store, &id, doctor.staff_id).await?;
    if consult.ended.is_none() {
        return Err(ApiError::Conflict("the consult is still going on: end the contact before recording it".into()));
    }
    let record = state.hims.record_consult(&consult).await?;
    store
        .append_audit(&crate::store::NewAudit {
            staff_id: Some(doctor.staff_id),
            action: "consult.record".into(),
            patient_id: Some(consult.patient.patient_id),
            contact_id: Some(id),
            detail: format!("{} {}", record.hims, record.encounter_ref),
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(record)))
}

/// What the consult on a contact gives the HIMS record, from the store.
async fn gather_consult(store: &Store, id: &str, recorded_by: StaffId) -> Result<crate::hims::Consult> {
    let contact = store.contact(id).await?;
    let patient_id =
        contact.patient_id.ok_or_else(|| ApiError::Conflict("the patient is not identified on this contact".into()))?;
    let doctor_id = contact.doctor_id.ok_or_else(|| ApiError::Conflict("no doctor has joined this contact".into()))?;
    let patient = store.patient(patient_id).await?;
    let doctor = store.staff(doctor_id).await?;
    let note = store.consult_note(id).await?;
    let notes = note
        .as_ref()
        .map(|n| {
            format!(
                "Chief complaint: {}\nHistory: {}\nFindings: {}\nProvisional diagnosis: {}\nAdvice: {}",
                n.chief_complaint, n.history, n.findings, n.diagnosis, n.advice
            )
        })
        .unwrap_or_default();
    // The call's transcript, kept only when the patient consented.
    let captions = store.captions(id).await?;
    let transcript = (!captions.is_empty()).then(|| {
        captions.iter().map(|c| format!("{} ({}): {}", c.role, c.participant, c.text)).collect::<Vec<_>>().join("\n")
    });
    let reason = note.as_ref().map(|n| n.chief_complaint.clone()).filter(|c| !c.is_empty()).unwrap_or_else(|| {
        contact.specialty.clone().map(|s| format!("Escalated to {s}")).unwrap_or_else(|| "Tele-consultation".into())
    });
    let mut medications = Vec::new();
    for rx in store.prescriptions_of(patient_id).await?.into_iter().filter(|p| p.contact_id == id) {
        for entry in rx.body["items"].as_array().into_iter().flatten() {
            let item: telemed::consult::RxItem =
                serde_json::from_value(entry[0].clone()).map_err(|e| ApiError::Internal(e.into()))?;
            medications.push((
                item.generic.clone(),
                format!("{}, {} {}, {}", item.strength, item.dose, item.frequency, item.duration),
            ));
        }
    }
    let follow_up = match store
        .appointments_of(patient_id)
        .await?
        .into_iter()
        .find(|a| a.contact_id.as_deref() == Some(id) && a.status == crate::store::AppointmentStatus::Booked)
    {
        Some(a) => Some((store.facility(a.slot.facility_id).await?, a)),
        None => None,
    };
    Ok(crate::hims::Consult {
        contact_id: id.to_owned(),
        patient,
        doctor,
        started: contact.answered_at.unwrap_or(contact.created_at),
        ended: contact.ended_at,
        reason,
        notes,
        transcript,
        medications,
        follow_up,
        recorded_by,
        now: Utc::now(),
    })
}
