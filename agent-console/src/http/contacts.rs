//! Contacts in motion, the part every side shares: agents take offers, talk
//! or chat, escalate, end and wrap up; who may see a contact ([`party`]),
//! and the server-sent event streams of its updates. Each step goes through
//! the routing engine (the [`crate::center::Center`]) and is written to the
//! contact's record. The patient's side is in `patient_side`, the agent's
//! seat in `agent`, the consult in `consult`, the ambulance in `ambulance`.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use routing::{AgentId, ContactId, Event, RoutingError};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, FieldError, Result};
use super::json::ApiJson;
use super::{AppState, AuthUser, StaffOnDuty};
use crate::auth::token_hash;
use crate::center::Update;
use crate::store::{
    ChatMessage, Contact, ContactChange, Disposition, RecordWrite, Role, Staff, StaffId, Store, StoreError,
};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(contact))
        .routes(routes!(accept))
        .routes(routes!(decline))
        .routes(routes!(end))
        .routes(routes!(escalate))
        .routes(routes!(leave))
        .routes(routes!(wrap_up))
        .routes(routes!(identify))
        .routes(routes!(patient_contacts))
}

impl From<RoutingError> for ApiError {
    fn from(e: RoutingError) -> Self {
        match e {
            RoutingError::UnknownContact(c) => ApiError::NotFound(format!("contact {}", c.0)),
            RoutingError::UnknownAgent(_) => ApiError::Forbidden("only operators and doctors take contacts".into()),
            RoutingError::UnknownSeat(s) => ApiError::invalid("seat_id", format!("no seat {}", s.0)),
            other => ApiError::Conflict(other.to_string()),
        }
    }
}

impl From<crate::center::CenterError> for ApiError {
    fn from(e: crate::center::CenterError) -> Self {
        match e {
            crate::center::CenterError::Routing(e) => e.into(),
            crate::center::CenterError::Unavailable(why) => ApiError::Unavailable(why),
            crate::center::CenterError::Store(e) => e.into(),
        }
    }
}

fn not_found(id: &str) -> impl FnOnce(StoreError) -> ApiError + '_ {
    move |e| match e {
        StoreError::NotFound => ApiError::NotFound(format!("contact {id}")),
        other => other.into(),
    }
}

/// The signed-in staff member, if any (patients use a token instead).
pub(super) struct MaybeUser(pub Option<AuthUser>);

impl<S> axum::extract::FromRequestParts<S> for MaybeUser
where
    S: Send + Sync,
    Store: axum::extract::FromRef<S>,
{
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> std::result::Result<Self, Infallible> {
        Ok(MaybeUser(AuthUser::from_request_parts(parts, state).await.ok()))
    }
}

/// Who is asking about a contact: its patient (by token) or a staff member who works on it.
pub(super) enum Party {
    Patient,
    Staff(Staff),
}

pub(super) async fn party(store: &Store, id: &str, token: Option<&str>, user: Option<AuthUser>) -> Result<Party> {
    if let Some(token) = token {
        // An unknown token is 401; any other failure (the database down) is the server's, 500.
        let contact = store.contact_by_token(&token_hash(token)).await.map_err(|e| match e {
            StoreError::NotFound => ApiError::Unauthorized,
            other => other.into(),
        })?;
        if contact.contact_id != id {
            tracing::warn!(contact = %id, "a patient token was used for another contact");
            return Err(ApiError::Forbidden("this token is for another contact".into()));
        }
        return Ok(Party::Patient);
    }
    let Some(user) = user else {
        return Err(ApiError::Unauthorized);
    };
    let contact = store.contact(id).await.map_err(not_found(id))?;
    let staff = user.staff;
    if staff.role == Role::Supervisor {
        return Ok(Party::Staff(staff));
    }
    // The contact's own staff while it is live and for a while after (the
    // patient-data rule's window); after that, only what opens its patient.
    let now = Utc::now();
    if crate::access::contact_is_open(contact.status, contact.ended_at, now)
        && store.works_on_contact(staff.staff_id, id).await?
    {
        return Ok(Party::Staff(staff));
    }
    if staff.role != Role::Admin
        && let Some(patient) = contact.patient_id
    {
        let facts = store.patient_access_facts(staff.staff_id, false, patient, now).await?;
        if crate::access::decide(&facts, Some(id), now).is_some() {
            return Ok(Party::Staff(staff));
        }
    }
    Err(ApiError::Forbidden(format!(
        "only staff working on this contact may see it, until {} minutes after it ends",
        crate::access::RECENT.num_minutes()
    )))
}

/// [`party`], and for staff an audit entry of the read (`action`), with the
/// contact's patient when it is identified: contacts carry patient data.
pub(super) async fn party_reading(
    store: &Store,
    id: &str,
    token: Option<&str>,
    user: Option<AuthUser>,
    action: &str,
) -> Result<Party> {
    let who = party(store, id, token, user).await?;
    if let Party::Staff(staff) = &who {
        let patient = store.contact(id).await.map_err(not_found(id))?.patient_id;
        store
            .append_audit(&crate::store::NewAudit {
                staff_id: Some(staff.staff_id),
                action: action.into(),
                patient_id: patient,
                contact_id: Some(id.to_owned()),
                detail: String::new(),
            })
            .await?;
    }
    Ok(who)
}

pub(super) fn status_update(c: &Contact) -> Option<Update> {
    match c.status {
        crate::store::ContactStatus::Connected => {
            Some(Update::Connected { contact: c.contact_id.clone(), agent: c.answered_by.map_or(0, |s| s.0) })
        }
        crate::store::ContactStatus::Ended
        | crate::store::ContactStatus::WrapUp
        | crate::store::ContactStatus::Abandoned => Some(Update::Ended { contact: c.contact_id.clone() }),
        _ => None,
    }
}

pub(super) fn message_update(m: &ChatMessage) -> Option<Update> {
    Some(Update::Message {
        contact: m.contact_id.clone(),
        id: m.chat_message_id,
        sender: m.sender.clone(),
        body: m.body.clone(),
        at: m.created_at,
    })
}

/// A contact's record, for staff working on it (until 30 minutes after it
/// ends) and supervisors. Audited.
#[utoipa::path(get, path = "/api/contacts/{id}", tag = "contacts", params(("id" = String, Path)),
    responses((status = 200, body = Contact), (status = 401), (status = 403), (status = 404)))]
async fn contact(State(store): State<Store>, user: AuthUser, Path(id): Path<String>) -> Result<axum::Json<Contact>> {
    party_reading(&store, &id, None, Some(user), "contact.read").await?;
    Ok(axum::Json(store.contact(&id).await?))
}

/// Accepts the contact offered to this agent.
#[utoipa::path(post, path = "/api/contacts/{id}/accept", tag = "contacts", params(("id" = String, Path)),
    responses((status = 200, body = Contact), (status = 401), (status = 403), (status = 404), (status = 409)))]
async fn accept(
    State(state): State<AppState>,
    StaffOnDuty(staff): StaffOnDuty,
    Path(id): Path<String>,
) -> Result<axum::Json<Contact>> {
    let change = if staff.role == Role::Doctor {
        ContactChange::DoctorJoined { doctor: staff.staff_id }
    } else {
        ContactChange::Answered { by: staff.staff_id }
    };
    // The answer and the routing event in one transaction (see `Center::handle_recording`).
    let record = RecordWrite::Change { contact_id: id.clone(), change, staff: Some(staff.staff_id) };
    state
        .center
        .handle_recording(Event::Accept { agent: AgentId(staff.staff_id.0), contact: ContactId(id.clone()) }, record)
        .await?;
    let contact = state.store.contact(&id).await?;
    state.center.publish(Update::Connected { contact: id, agent: staff.staff_id.0 });
    Ok(axum::Json(contact))
}

/// Declines the offer; it goes to the next agent.
#[utoipa::path(post, path = "/api/contacts/{id}/decline", tag = "contacts", params(("id" = String, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404), (status = 409)))]
async fn decline(
    State(state): State<AppState>,
    StaffOnDuty(staff): StaffOnDuty,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    state.center.handle(Event::Decline { agent: AgentId(staff.staff_id.0), contact: ContactId(id) }).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn on_contact(store: &Store, staff: StaffId, id: &str) -> Result<()> {
    store.contact(id).await.map_err(not_found(id))?;
    if store.works_on_contact(staff, id).await? {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!("you are not on contact {id}")))
    }
}

/// Ends a connected contact for everyone; its agents go to wrap-up.
#[utoipa::path(post, path = "/api/contacts/{id}/end", tag = "contacts", params(("id" = String, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404), (status = 409)))]
async fn end(
    State(state): State<AppState>,
    StaffOnDuty(staff): StaffOnDuty,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    on_contact(&state.store, staff.staff_id, &id).await?;
    let record = RecordWrite::Change { contact_id: id.clone(), change: ContactChange::Ended, staff: None };
    state.center.handle_recording(Event::End { contact: ContactId(id.clone()) }, record).await?;
    state.center.publish(Update::Ended { contact: id });
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EscalateInput {
    /// `general` or a specialty, e.g. `paediatrics`.
    #[schema(min_length = 1, pattern = r"\S")]
    specialty: String,
    #[serde(default)]
    urgent: bool,
    /// What the doctor should know (shown on the doctor's console; 5 characters or more).
    #[schema(min_length = 5, pattern = r"\S.*\S.*\S.*\S.*\S")]
    note: String,
}

/// Asks for a doctor; the operator stays on until the doctor joins (warm transfer).
#[utoipa::path(post, path = "/api/contacts/{id}/escalate", tag = "contacts", params(("id" = String, Path)),
    request_body = EscalateInput,
    responses((status = 204), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn escalate(
    State(state): State<AppState>,
    StaffOnDuty(staff): StaffOnDuty,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<EscalateInput>,
) -> Result<StatusCode> {
    let specialty = input.specialty.trim().to_lowercase();
    let mut errors = Vec::new();
    if specialty.is_empty() {
        errors.push(FieldError { field: "specialty".into(), message: "say which doctor, e.g. `general`".into() });
    }
    if input.note.trim().len() < 5 {
        errors.push(FieldError {
            field: "note".into(),
            message: "tell the doctor what is wrong (5 characters or more)".into(),
        });
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    on_contact(&state.store, staff.staff_id, &id).await?;
    let urgent = input.urgent;
    let record = RecordWrite::Change {
        contact_id: id.clone(),
        change: ContactChange::Escalated { specialty: specialty.clone() },
        staff: None,
    };
    state
        .center
        .handle_recording(Event::Escalate { contact: ContactId(id.clone()), specialty, urgent }, record)
        .await?;
    let now = Utc::now();
    let note = format!("Escalated by {}: {}", staff.display_name, input.note.trim());
    state.store.add_chat_message(&id, "system", Some(staff.staff_id), &note, now).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Leaves a contact that goes on without this agent (after handing over to a doctor).
#[utoipa::path(post, path = "/api/contacts/{id}/leave", tag = "contacts", params(("id" = String, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404), (status = 409)))]
async fn leave(
    State(state): State<AppState>,
    StaffOnDuty(staff): StaffOnDuty,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    state.center.handle(Event::Leave { agent: AgentId(staff.staff_id.0), contact: ContactId(id.clone()) }).await?;
    state.center.publish(Update::Left { contact: id, agent: staff.staff_id.0 });
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct WrapUpInput {
    /// One of `information`, `complaint`, `appointment`, `escalated`, `callback`,
    /// `emergency`, `wrong_number`, `silent`, `other`.
    disposition: Disposition,
    note: Option<String>,
}

/// Closes the agent's wrap-up of a contact with a disposition code; the agent is ready again.
#[utoipa::path(post, path = "/api/contacts/{id}/wrap-up", tag = "contacts", params(("id" = String, Path)),
    request_body = WrapUpInput,
    responses((status = 200, body = Contact), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn wrap_up(
    State(state): State<AppState>,
    StaffOnDuty(staff): StaffOnDuty,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<WrapUpInput>,
) -> Result<axum::Json<Contact>> {
    on_contact(&state.store, staff.staff_id, &id).await?;
    let note = input.note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    // The engine first: ready for the next contact. When the wrap-up time
    // already ran out the engine made the agent ready itself, and the
    // disposition is still recorded; anything else (routing unavailable)
    // fails the request before the record is written, so a retry is safe.
    let change = ContactChange::WrappedUp { disposition: input.disposition, note };
    let record = RecordWrite::Change { contact_id: id.clone(), change: change.clone(), staff: None };
    match state.center.handle_recording(Event::WrapUpDone { agent: AgentId(staff.staff_id.0) }, record).await {
        Ok(_) => {}
        Err(crate::center::CenterError::Routing(RoutingError::NotInWrapUp(_))) => {
            state.store.update_contact(&id, &change, Utc::now()).await?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(axum::Json(state.store.contact(&id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct IdentifyInput {
    patient_id: i64,
}

/// Records who the caller is (after the operator identified them): a
/// patient open to you by the patient-data rule, e.g. found from this contact.
#[utoipa::path(post, path = "/api/contacts/{id}/patient", tag = "contacts", params(("id" = String, Path)),
    request_body = IdentifyInput,
    responses((status = 200, body = Contact), (status = 401), (status = 403), (status = 404)))]
async fn identify(
    State(store): State<Store>,
    StaffOnDuty(staff): StaffOnDuty,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<IdentifyInput>,
) -> Result<axum::Json<Contact>> {
    on_contact(&store, staff.staff_id, &id).await?;
    let patient = crate::store::PatientId(input.patient_id);
    // Only a patient open to this operator (found or registered from this
    // contact, say) may be named: naming one opens their record.
    let grant = super::access::check_patient(&store, &staff, patient, Some(&id)).await?;
    let contact = store.update_contact(&id, &ContactChange::Identified { patient }, Utc::now()).await?;
    super::access::audit(&store, &staff, "contact.identify", patient, Some(id), &grant).await?;
    Ok(axum::Json(contact))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ContactParam {
    /// The contact on whose behalf the record is read.
    #[allow(dead_code)] // read by the `PatientData` extractor
    contact: Option<String>,
}

/// A patient's past contacts with the helpline, latest first. Open by the
/// patient-data rule; audited as a read of the record.
#[utoipa::path(get, path = "/api/patients/{id}/contacts", tag = "contacts", params(("id" = i64, Path), ContactParam),
    responses((status = 200, body = [Contact]), (status = 401), (status = 403), (status = 404)))]
async fn patient_contacts(
    State(store): State<Store>,
    access: super::access::PatientData<super::access::action::Contacts>,
) -> Result<axum::Json<Vec<Contact>>> {
    Ok(axum::Json(store.contacts_of_patient(access.patient).await?))
}
