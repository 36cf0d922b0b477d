//! Ambulances: an agent requests one for the patient on a contact; it is
//! stored, logged, and sent to the dispatch webhook (and resent until the
//! webhook takes it: [`crate::dispatch`]).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::contacts::on_contact;
use super::error::{ApiError, FieldError, Result};
use super::json::ApiJson;
use super::{AppState, StaffOnDuty};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(request_ambulance))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AmbulanceInput {
    /// Where the patient is: an address, a landmark, or `lat, lon` (3 characters or more).
    #[schema(min_length = 3, pattern = r"\S.*\S.*\S")]
    location: String,
    /// `critical`, `urgent` or `routine`.
    urgency: crate::store::Urgency,
    #[serde(default)]
    note: String,
}

/// Requests an ambulance for the patient on this contact: stored, logged, and
/// sent at once to the dispatch webhook. The answer says whether dispatch took it.
#[utoipa::path(post, path = "/api/contacts/{id}/ambulance", tag = "contacts", params(("id" = String, Path)),
    request_body = AmbulanceInput,
    responses((status = 201, body = crate::store::AmbulanceRequest), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn request_ambulance(
    State(state): State<AppState>,
    StaffOnDuty(staff): StaffOnDuty,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<AmbulanceInput>,
) -> Result<(StatusCode, axum::Json<crate::store::AmbulanceRequest>)> {
    let mut errors = Vec::new();
    if input.location.trim().len() < 3 {
        errors.push(FieldError { field: "location".into(), message: "say where the patient is".into() });
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    on_contact(&state.store, staff.staff_id, &id).await?;
    let contact = state.store.contact(&id).await?;
    let request = crate::store::AmbulanceRequest {
        ambulance_request_id: uuid::Uuid::new_v4().to_string(),
        contact_id: id.clone(),
        patient_id: contact.patient_id,
        requested_by: staff.staff_id,
        location: input.location.trim().to_owned(),
        urgency: input.urgency,
        note: input.note.trim().to_owned(),
        created_at: Utc::now(),
        delivered_at: None,
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
    };
    // Claimed by this node as it is made: sent just below, so no retrier elsewhere sends it too.
    state.store.create_ambulance_request(&request, &state.claimant).await?;
    tracing::warn!(contact = %id, urgency = %request.urgency, "ambulance requested");
    state
        .store
        .append_audit(&crate::store::NewAudit {
            staff_id: Some(staff.staff_id),
            action: "ambulance.request".into(),
            patient_id: contact.patient_id,
            contact_id: Some(id.clone()),
            detail: format!("{} at {}", request.urgency, request.location),
        })
        .await?;
    let webhook = state.settings.dispatch_webhook.as_deref();
    crate::dispatch::deliver(&state.store, webhook, &state.settings.dispatch, &request.ambulance_request_id).await?;
    let stored = state.store.ambulance_request(&request.ambulance_request_id).await?;
    Ok((StatusCode::CREATED, axum::Json(stored)))
}
