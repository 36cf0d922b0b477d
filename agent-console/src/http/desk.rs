//! The operator's information desk: facilities (beds, stock, timings,
//! services), approved answers, schemes, complaints and appointments.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::access::{PatientData, action, check_patient, lookup_from};
use super::error::{ApiError, FieldError, Result};
use super::json::{ApiJson, ApiQuery};
use super::{AppState, StaffOnDuty};
use crate::hims::HimsLink;
use crate::store::{
    Appointment, BedType, Complaint, ComplaintCategory, ComplaintStatus, ComplaintTask, Facility, FacilityKind,
    FacilityQuery, Faq, NewAudit, NewComplaint, PatientId, Scheme, Slot, Stock, Store, StoreError,
};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search_facilities))
        .routes(routes!(facility))
        .routes(routes!(stock))
        .routes(routes!(faq))
        .routes(routes!(patient_schemes))
        .routes(routes!(complaint_categories))
        .routes(routes!(create_complaint))
        .routes(routes!(complaint))
        .routes(routes!(set_complaint_status))
        .routes(routes!(add_complaint_task))
        .routes(routes!(due_tasks))
        .routes(routes!(free_slots))
        .routes(routes!(book_appointment))
        .routes(routes!(patient_appointments))
        .routes(routes!(cancel_appointment))
}

fn not_found(what: String) -> impl FnOnce(StoreError) -> ApiError {
    move |e| match e {
        StoreError::NotFound => ApiError::NotFound(what),
        other => other.into(),
    }
}

async fn audit(
    store: &Store,
    staff: &crate::store::Staff,
    action: &str,
    patient: Option<PatientId>,
    contact: Option<String>,
    detail: String,
) -> Result<()> {
    store
        .append_audit(&NewAudit {
            staff_id: Some(staff.staff_id),
            action: action.into(),
            patient_id: patient,
            contact_id: contact,
            detail,
        })
        .await?;
    Ok(())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct FacilitySearch {
    /// Words of the name (English or Hindi), address, district or services.
    q: Option<String>,
    kind: Option<FacilityKind>,
    district: Option<String>,
    /// Only facilities with a vacant bed of this type, most vacant first.
    vacant_bed: Option<BedType>,
    /// Only facilities with this medicine in stock (generic name).
    medicine: Option<String>,
}

/// Searches facilities in the HIMS, in Hindi or English.
#[utoipa::path(get, path = "/api/facilities", tag = "desk", params(FacilitySearch),
    responses((status = 200, body = [Facility]), (status = 400), (status = 401), (status = 403), (status = 502)))]
async fn search_facilities(
    State(hims): State<HimsLink>,
    _staff: StaffOnDuty,
    ApiQuery(q): ApiQuery<FacilitySearch>,
) -> Result<axum::Json<Vec<Facility>>> {
    let query =
        FacilityQuery { text: q.q, kind: q.kind, district: q.district, vacant_bed: q.vacant_bed, medicine: q.medicine };
    Ok(axum::Json(hims.search_facilities(&query).await?))
}

#[derive(Serialize, ToSchema)]
struct FacilityDetail {
    #[serde(flatten)]
    facility: Facility,
    stock: Vec<Stock>,
}

/// One facility with its beds and medicine stock.
#[utoipa::path(get, path = "/api/facilities/{id}", tag = "desk", params(("id" = i64, Path)),
    responses((status = 200, body = FacilityDetail), (status = 401), (status = 403), (status = 404)))]
async fn facility(
    State(store): State<Store>,
    State(hims): State<HimsLink>,
    _staff: StaffOnDuty,
    Path(id): Path<i64>,
) -> Result<axum::Json<FacilityDetail>> {
    let facility = hims.facility(id).await?;
    let stock = store.stock(Some(id), None).await?;
    Ok(axum::Json(FacilityDetail { facility, stock }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct StockSearch {
    /// A generic name or part of it, e.g. `paracetamol` (two letters or more).
    #[param(min_length = 2, pattern = r"^\s*\S.*\S\s*$")]
    medicine: String,
}

/// Where a medicine is in stock, most first.
#[utoipa::path(get, path = "/api/stock", tag = "desk", params(StockSearch),
    responses((status = 200, body = [Stock]), (status = 400), (status = 401), (status = 403), (status = 422)))]
async fn stock(
    State(store): State<Store>,
    _staff: StaffOnDuty,
    ApiQuery(q): ApiQuery<StockSearch>,
) -> Result<axum::Json<Vec<Stock>>> {
    if q.medicine.trim().len() < 2 {
        return Err(ApiError::invalid("medicine", "give at least two letters of the medicine's name"));
    }
    Ok(axum::Json(store.stock(None, Some(&q.medicine)).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct FaqSearch {
    /// Words of the question, answer or topic, in Hindi or English; all answers when absent.
    q: Option<String>,
}

/// Approved answers to common questions.
#[utoipa::path(get, path = "/api/faq", tag = "desk", params(FaqSearch),
    responses((status = 200, body = [Faq]), (status = 401), (status = 403)))]
async fn faq(
    State(store): State<Store>,
    _staff: StaffOnDuty,
    ApiQuery(q): ApiQuery<FaqSearch>,
) -> Result<axum::Json<Vec<Faq>>> {
    Ok(axum::Json(store.search_faq(q.q.as_deref().unwrap_or_default()).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ContactParam {
    /// The contact on whose behalf the record is read; written to the audit log.
    #[allow(dead_code)] // read by the `PatientData` extractor
    contact: Option<String>,
}

/// The schemes a patient's family is mapped to. Audited as a read of the record.
#[utoipa::path(get, path = "/api/patients/{id}/schemes", tag = "desk", params(("id" = i64, Path), ContactParam),
    responses((status = 200, body = [Scheme]), (status = 401), (status = 403), (status = 404)))]
async fn patient_schemes(
    State(store): State<Store>,
    access: PatientData<action::Schemes>,
) -> Result<axum::Json<Vec<Scheme>>> {
    Ok(axum::Json(store.schemes_of_family(access.patient).await?))
}

/// Kinds of complaint and their service levels.
#[utoipa::path(get, path = "/api/complaint-categories", tag = "desk",
    responses((status = 200, body = [ComplaintCategory]), (status = 401), (status = 403)))]
async fn complaint_categories(
    State(store): State<Store>,
    _staff: StaffOnDuty,
) -> Result<axum::Json<Vec<ComplaintCategory>>> {
    Ok(axum::Json(store.complaint_categories().await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ComplaintInput {
    /// A complaint category code, e.g. `medicine_unavailable`.
    category: String,
    facility_id: Option<i64>,
    patient_id: Option<i64>,
    contact_id: Option<String>,
    /// What happened, in the caller's words (10 to 4000 characters).
    #[schema(min_length = 10, max_length = 4000, pattern = r"^\s*\S[\s\S]{8,}\S\s*$")]
    description: String,
}

/// Registers a complaint; the answer carries the ticket number to read to the caller and the due date.
#[utoipa::path(post, path = "/api/complaints", tag = "desk", request_body = ComplaintInput,
    responses((status = 201, body = Complaint), (status = 401), (status = 403), (status = 422)))]
async fn create_complaint(
    State(store): State<Store>,
    StaffOnDuty(staff): StaffOnDuty,
    ApiJson(input): ApiJson<ComplaintInput>,
) -> Result<(StatusCode, axum::Json<Complaint>)> {
    let mut errors = Vec::new();
    let description = input.description.trim().to_owned();
    if !(10..=4000).contains(&description.chars().count()) {
        errors.push(FieldError {
            field: "description".into(),
            message: "say what happened in 10 to 4000 characters".into(),
        });
    }
    if !store.complaint_categories().await?.iter().any(|c| c.code == input.category) {
        errors.push(FieldError { field: "category".into(), message: format!("unknown category `{}`", input.category) });
    }
    if let Some(f) = input.facility_id
        && store.facility(f).await.is_err()
    {
        errors.push(FieldError { field: "facility_id".into(), message: format!("no facility {f}") });
    }
    if let Some(p) = input.patient_id
        && store.patient(PatientId(p)).await.is_err()
    {
        errors.push(FieldError { field: "patient_id".into(), message: format!("no patient {p}") });
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    if let Some(p) = input.patient_id {
        check_patient(&store, &staff, PatientId(p), input.contact_id.as_deref()).await?;
    }
    let complaint = store
        .create_complaint(
            &NewComplaint {
                category: input.category,
                facility_id: input.facility_id,
                patient_id: input.patient_id.map(PatientId),
                contact_id: input.contact_id.clone(),
                description,
                created_by: staff.staff_id,
            },
            Utc::now(),
        )
        .await?;
    audit(&store, &staff, "complaint.create", complaint.patient_id, input.contact_id, complaint.ticket.clone()).await?;
    Ok((StatusCode::CREATED, axum::Json(complaint)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ComplaintContext {
    /// The live contact you act from (the caller quoted the ticket): it
    /// opens the complaint, and its patient, to you on that contact.
    contact: Option<String>,
}

/// Whether `staff` may see or change complaint `c`: supervisors; whoever
/// registered it or holds one of its tasks; staff the patient-data rule lets
/// in to its patient; or staff on a live contact where the caller quoted the
/// ticket (a lookup: its patient then opens to them there). Audited as `action`.
async fn check_complaint(
    store: &Store,
    staff: &crate::store::Staff,
    c: &Complaint,
    contact: Option<&str>,
    action: &str,
) -> Result<()> {
    let mine = c.created_by == staff.staff_id || c.tasks.iter().any(|t| t.created_by == staff.staff_id);
    let allowed = if staff.role == crate::store::Role::Supervisor || mine {
        true
    } else if let Some(p) = c.patient_id {
        match check_patient(store, staff, p, contact).await {
            Ok(_) => true,
            Err(ApiError::Forbidden(_)) => false,
            Err(e) => return Err(e),
        }
    } else {
        false
    };
    let from = if allowed { None } else { lookup_from(store, staff, contact).await? };
    if let (Some(contact), Some(p)) = (&from, c.patient_id) {
        store.add_contact_lookup(contact, staff.staff_id, p, Utc::now()).await?;
    }
    let contact = from.or(contact.map(str::to_owned));
    audit(store, staff, action, c.patient_id, contact, c.ticket.clone()).await
}

/// A complaint by its ticket number, with its follow-up tasks: for whoever
/// registered it or holds its task, staff its patient is open to,
/// supervisors, or from the live contact where the caller quoted it. Audited.
#[utoipa::path(get, path = "/api/complaints/{ticket}", tag = "desk", params(("ticket" = String, Path), ComplaintContext),
    responses((status = 200, body = Complaint), (status = 401), (status = 403), (status = 404)))]
async fn complaint(
    State(store): State<Store>,
    StaffOnDuty(staff): StaffOnDuty,
    Path(ticket): Path<String>,
    ApiQuery(q): ApiQuery<ComplaintContext>,
) -> Result<axum::Json<Complaint>> {
    let c = store.complaint_by_ticket(&ticket).await.map_err(not_found(format!("complaint {ticket}")))?;
    check_complaint(&store, &staff, &c, q.contact.as_deref(), "complaint.read").await?;
    Ok(axum::Json(c))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StatusInput {
    status: ComplaintStatus,
}

/// Moves a complaint on (in progress, resolved, closed).
#[utoipa::path(post, path = "/api/complaints/{ticket}/status", tag = "desk", params(("ticket" = String, Path), ComplaintContext),
    request_body = StatusInput,
    responses((status = 200, body = Complaint), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn set_complaint_status(
    State(store): State<Store>,
    StaffOnDuty(staff): StaffOnDuty,
    Path(ticket): Path<String>,
    ApiQuery(q): ApiQuery<ComplaintContext>,
    ApiJson(input): ApiJson<StatusInput>,
) -> Result<axum::Json<Complaint>> {
    let c = store.complaint_by_ticket(&ticket).await.map_err(not_found(format!("complaint {ticket}")))?;
    check_complaint(&store, &staff, &c, q.contact.as_deref(), "complaint.status").await?;
    let c = store.set_complaint_status(c.complaint_id, input.status, Utc::now()).await?;
    Ok(axum::Json(c))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TaskInput {
    #[schema(min_length = 1, pattern = r"\S")]
    note: String,
    /// When the reminder is due; in the future.
    due_at: DateTime<Utc>,
}

/// Adds a follow-up task to a complaint.
#[utoipa::path(post, path = "/api/complaints/{ticket}/tasks", tag = "desk", params(("ticket" = String, Path), ComplaintContext),
    request_body = TaskInput,
    responses((status = 201, body = ComplaintTask), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn add_complaint_task(
    State(store): State<Store>,
    StaffOnDuty(staff): StaffOnDuty,
    Path(ticket): Path<String>,
    ApiQuery(q): ApiQuery<ComplaintContext>,
    ApiJson(input): ApiJson<TaskInput>,
) -> Result<(StatusCode, axum::Json<ComplaintTask>)> {
    let now = Utc::now();
    let mut errors = Vec::new();
    if input.note.trim().is_empty() {
        errors.push(FieldError { field: "note".into(), message: "must not be empty".into() });
    }
    if input.due_at <= now {
        errors.push(FieldError { field: "due_at".into(), message: "must be in the future".into() });
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let c = store.complaint_by_ticket(&ticket).await.map_err(not_found(format!("complaint {ticket}")))?;
    check_complaint(&store, &staff, &c, q.contact.as_deref(), "complaint.task").await?;
    let task = store.add_complaint_task(c.complaint_id, input.note.trim(), input.due_at, staff.staff_id, now).await?;
    Ok((StatusCode::CREATED, axum::Json(task)))
}

#[derive(Serialize, ToSchema)]
struct DueTask {
    ticket: String,
    #[serde(flatten)]
    task: ComplaintTask,
}

/// Your follow-up tasks that are due now: the reminders (supervisors see everyone's).
#[utoipa::path(get, path = "/api/complaint-tasks/due", tag = "desk",
    responses((status = 200, body = [DueTask]), (status = 401), (status = 403)))]
async fn due_tasks(State(store): State<Store>, StaffOnDuty(staff): StaffOnDuty) -> Result<axum::Json<Vec<DueTask>>> {
    let due = store.due_complaint_tasks(Utc::now()).await?;
    let everyone = staff.role == crate::store::Role::Supervisor;
    Ok(axum::Json(
        due.into_iter()
            .filter(|(_, task)| everyone || task.created_by == staff.staff_id)
            .map(|(ticket, task)| DueTask { ticket, task })
            .collect(),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct SlotSearch {
    department: Option<String>,
    /// How many days ahead to look (1 to 30, default 7).
    #[param(minimum = 1, maximum = 30)]
    days: Option<i64>,
}

/// Free appointment slots at a facility from now on, from the HIMS.
#[utoipa::path(get, path = "/api/facilities/{id}/slots", tag = "desk", params(("id" = i64, Path), SlotSearch),
    responses((status = 200, body = [Slot]), (status = 401), (status = 403), (status = 404), (status = 422), (status = 502)))]
async fn free_slots(
    State(hims): State<HimsLink>,
    _staff: StaffOnDuty,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<SlotSearch>,
) -> Result<axum::Json<Vec<Slot>>> {
    let days = q.days.unwrap_or(7);
    if !(1..=30).contains(&days) {
        return Err(ApiError::invalid("days", "look 1 to 30 days ahead"));
    }
    let now = Utc::now();
    Ok(axum::Json(hims.free_slots(id, q.department.as_deref(), now, now + Duration::days(days)).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BookingInput {
    slot_id: i64,
    patient_id: i64,
    contact_id: Option<String>,
}

/// Books a patient into a free slot, in the HIMS. A full, taken or past slot
/// is refused (409) and nothing is stored; a HIMS that fails is a 502.
#[utoipa::path(post, path = "/api/appointments", tag = "desk", request_body = BookingInput,
    responses((status = 201, body = Appointment), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422), (status = 502)))]
async fn book_appointment(
    State(state): State<AppState>,
    StaffOnDuty(staff): StaffOnDuty,
    ApiJson(input): ApiJson<BookingInput>,
) -> Result<(StatusCode, axum::Json<Appointment>)> {
    let store = &state.store;
    check_patient(store, &staff, PatientId(input.patient_id), input.contact_id.as_deref()).await?;
    let patient =
        store.patient(PatientId(input.patient_id)).await.map_err(not_found(format!("patient {}", input.patient_id)))?;
    let now = Utc::now();
    let appointment = state
        .hims
        .book(&crate::hims::Booking {
            slot_id: input.slot_id,
            patient: &patient,
            booked_by: staff.staff_id,
            contact_id: input.contact_id.as_deref(),
            now,
        })
        .await?;
    let detail = format!("appointment {} slot {}", appointment.appointment_id, appointment.slot.slot_id);
    audit(store, &staff, "appointment.book", Some(patient.patient_id), input.contact_id, detail).await?;
    // The confirmation goes through the outbox; the booking stands even if mail is down.
    if let (Some(mailer), Some(_)) = (&state.mailer, &patient.email) {
        let facility = store.facility(appointment.slot.facility_id).await?;
        // A follow-up booked from a consult carries the consult's prescription summary.
        let mut summary = Vec::new();
        if let Some(contact) = &appointment.contact_id {
            for rx in store.prescriptions_of(patient.patient_id).await?.iter().filter(|p| &p.contact_id == contact) {
                for entry in rx.body["items"].as_array().into_iter().flatten() {
                    let i = &entry[0];
                    summary.push(format!(
                        "{} {}: {} {}, {}",
                        i["generic"].as_str().unwrap_or_default(),
                        i["strength"].as_str().unwrap_or_default(),
                        i["dose"].as_str().unwrap_or_default(),
                        i["frequency"].as_str().unwrap_or_default(),
                        i["duration"].as_str().unwrap_or_default()
                    ));
                }
            }
        }
        let message =
            crate::mail::appointment_confirmation(&mailer.from, &appointment, &facility, &patient, &summary, now)?;
        mailer.enqueue(store, &message, "appointment.confirmation", Some(patient.patient_id)).await?;
    }
    Ok((StatusCode::CREATED, axum::Json(appointment)))
}

/// A patient's appointments. Audited as a read of the record.
#[utoipa::path(get, path = "/api/patients/{id}/appointments", tag = "desk", params(("id" = i64, Path), ContactParam),
    responses((status = 200, body = [Appointment]), (status = 401), (status = 403), (status = 404)))]
async fn patient_appointments(
    State(store): State<Store>,
    access: PatientData<action::Appointments>,
) -> Result<axum::Json<Vec<Appointment>>> {
    Ok(axum::Json(store.appointments_of(access.patient).await?))
}

/// Cancels a booked appointment and frees its place.
#[utoipa::path(post, path = "/api/appointments/{id}/cancel", tag = "desk", params(("id" = i64, Path)),
    responses((status = 200, body = Appointment), (status = 401), (status = 403), (status = 404), (status = 409)))]
async fn cancel_appointment(
    State(store): State<Store>,
    StaffOnDuty(staff): StaffOnDuty,
    Path(id): Path<i64>,
) -> Result<axum::Json<Appointment>> {
    let booked = store.appointment(id).await.map_err(not_found(format!("appointment {id}")))?;
    check_patient(&store, &staff, booked.patient_id, booked.contact_id.as_deref()).await?;
    let appointment = store.cancel_appointment(id, Utc::now()).await?;
    audit(&store, &staff, "appointment.cancel", Some(appointment.patient_id), None, format!("appointment {id}"))
        .await?;
    Ok(axum::Json(appointment))
}
