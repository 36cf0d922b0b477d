//! The patient-data rule (`crate::access`) at the HTTP edge: the
//! [`PatientData`] extractor for routes under `/api/patients/{id}`, and
//! [`check_patient`] for routes that name the patient in their body (a
//! booking, a complaint) or reach it through a record (an appointment, a
//! ticket). Each allowed read or change is written to the audit log, with
//! the grant that allowed it, before the handler runs; a refusal is 403 and
//! says what would allow it. Break-glass access is asked for here too.

use std::collections::HashMap;
use std::marker::PhantomData;

use axum::extract::{FromRef, FromRequestParts, Path, Query, RawPathParams, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, Result};
use super::json::ApiJson;
use super::{AppState, Management, StaffOnDuty};
use crate::access::{Grant, contact_is_live, decide};
use crate::store::{AuditEntry, BREAK_GLASS_ACTION, NewAudit, PatientId, Role, Staff, Store, StoreError};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(break_glass)).routes(routes!(break_glass_log))
}

/// What an audited route does with the patient's data: its audit action.
pub trait Audited {
    const ACTION: &'static str;
}

/// Audit actions of the routes under `/api/patients/{id}`.
pub mod action {
    macro_rules! actions {
        ($($name:ident = $action:literal),+ $(,)?) => {$(
            pub struct $name;
            impl super::Audited for $name {
                const ACTION: &'static str = $action;
            }
        )+};
    }
    actions!(
        Read = "patient.read",
        Contacts = "patient.contacts",
        Schemes = "patient.schemes",
        Appointments = "patient.appointments",
        FamilyLink = "patient.family.link",
    );
}

/// The patient of the route's `{id}`, for a staff member the rule lets in;
/// the access is already audited as `A`. Reads `?contact=` as the contact
/// the staff member acts from (preferred for the grant and the audit).
pub struct PatientData<A> {
    pub staff: Staff,
    pub patient: PatientId,
    /// The contact the access was on behalf of, if any.
    pub contact: Option<String>,
    _action: PhantomData<A>,
}

impl<S, A> FromRequestParts<S> for PatientData<A>
where
    S: Send + Sync,
    Store: FromRef<S>,
    A: Audited,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let StaffOnDuty(staff) = StaffOnDuty::from_request_parts(parts, state).await?;
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("the path: {e}")))?;
        let raw = params.iter().find(|(k, _)| *k == "id").map(|(_, v)| v.to_owned()).unwrap_or_default();
        let id: i64 =
            raw.parse().map_err(|_| ApiError::BadRequest(format!("the path: `{raw}` is not a patient id")))?;
        let query: Query<HashMap<String, String>> =
            Query::try_from_uri(&parts.uri).map_err(|e| ApiError::BadRequest(format!("the query string: {e}")))?;
        let preferred = query.get("contact").filter(|c| !c.is_empty()).cloned();
        let store = Store::from_ref(state);
        let grant = check_patient(&store, &staff, PatientId(id), preferred.as_deref()).await?;
        let contact = grant.contact().map(str::to_owned).or(preferred);
        audit(&store, &staff, A::ACTION, PatientId(id), contact.clone(), &grant).await?;
        Ok(PatientData { staff, patient: PatientId(id), contact, _action: PhantomData })
    }
}

/// Whether `staff` may read or change `patient`'s data, and by which grant;
/// 403 saying what would allow it, 404 for a patient that does not exist
/// (told only to those the rule would let in, so ids cannot be probed).
pub(super) async fn check_patient(
    store: &Store,
    staff: &Staff,
    patient: PatientId,
    preferred: Option<&str>,
) -> Result<Grant> {
    if staff.role == Role::Admin {
        return Err(ApiError::Forbidden("administrators do not read patient records".into()));
    }
    let now = Utc::now();
    let facts = store.patient_access_facts(staff.staff_id, staff.role == Role::Supervisor, patient, now).await?;
    let Some(grant) = decide(&facts, preferred, now) else {
        tracing::warn!(staff = %staff.username, patient = patient.0, "patient data refused");
        return Err(ApiError::Forbidden(format!(
            "patient {} is open only to staff on their contact (or a relative's, or one they were found from) \
             until {} minutes after it ends, to whoever holds their complaint task or booked their follow-up, \
             and to supervisors; to see it otherwise, break the glass with a reason \
             (POST /api/patients/{}/break-glass)",
            patient.0,
            crate::access::RECENT.num_minutes(),
            patient.0
        )));
    };
    store.patient(patient).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::NotFound(format!("patient {}", patient.0)),
        other => other.into(),
    })?;
    Ok(grant)
}

/// Whether `staff` may make a lookup from `contact`: they work on it and it
/// is live. Supervisors may look up without a contact. Returns the contact
/// to record the results against (none for a supervisor's review).
pub(super) async fn lookup_from(store: &Store, staff: &Staff, contact: Option<&str>) -> Result<Option<String>> {
    let refuse = |why: &str| {
        ApiError::Forbidden(format!(
            "patients are looked up from a live contact you work on: {why}, pass it as `contact`"
        ))
    };
    let Some(contact) = contact.filter(|c| !c.is_empty()) else {
        return if staff.role == Role::Supervisor { Ok(None) } else { Err(refuse("no contact given")) };
    };
    let record = match store.contact(contact).await {
        Ok(c) => c,
        Err(StoreError::NotFound) => return Err(refuse(&format!("there is no contact {contact}"))),
        Err(e) => return Err(e.into()),
    };
    if !store.works_on_contact(staff.staff_id, contact).await? {
        return if staff.role == Role::Supervisor {
            Ok(None)
        } else {
            Err(refuse(&format!("you do not work on contact {contact}")))
        };
    }
    if !contact_is_live(record.status) {
        return Err(refuse(&format!("contact {contact} has ended")));
    }
    Ok(Some(contact.to_owned()))
}

/// Appends the audit entry of one allowed access.
pub(super) async fn audit(
    store: &Store,
    staff: &Staff,
    action: &str,
    patient: PatientId,
    contact: Option<String>,
    grant: &Grant,
) -> Result<()> {
    store
        .append_audit(&NewAudit {
            staff_id: Some(staff.staff_id),
            action: action.into(),
            patient_id: Some(patient),
            contact_id: contact,
            detail: grant.describe(),
        })
        .await?;
    Ok(())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BreakGlassInput {
    /// Why the record is needed outside the rules (10 to 500 characters);
    /// kept in the audit log and shown to supervisors.
    #[schema(min_length = 10, max_length = 500, pattern = r"^\s*\S[^\x00-\x1f\x7f]{8,}\S\s*$")]
    reason: String,
}

#[derive(Serialize, ToSchema)]
struct BreakGlass {
    patient_id: i64,
    /// Until when the record is open to you.
    until: chrono::DateTime<Utc>,
}

/// Breaks the glass: opens a patient's record to you for an hour, outside
/// the usual rules (say why). Audited with the reason, and listed for
/// supervisors (`GET /api/break-glass`).
#[utoipa::path(post, path = "/api/patients/{id}/break-glass", tag = "patients", params(("id" = i64, Path)),
    request_body = BreakGlassInput,
    responses((status = 201, body = BreakGlass), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn break_glass(
    State(store): State<Store>,
    StaffOnDuty(staff): StaffOnDuty,
    Path(id): Path<i64>,
    ApiJson(input): ApiJson<BreakGlassInput>,
) -> Result<(StatusCode, axum::Json<BreakGlass>)> {
    let reason = input.reason.trim();
    if !(10..=500).contains(&reason.chars().count()) || reason.chars().any(char::is_control) {
        return Err(ApiError::invalid("reason", "say why in 10 to 500 characters, on one line"));
    }
    store.patient(PatientId(id)).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::NotFound(format!("patient {id}")),
        other => other.into(),
    })?;
    let entry = store
        .append_audit(&NewAudit {
            staff_id: Some(staff.staff_id),
            action: BREAK_GLASS_ACTION.into(),
            patient_id: Some(PatientId(id)),
            contact_id: None,
            detail: reason.to_owned(),
        })
        .await?;
    tracing::warn!(staff = %staff.username, patient = id, reason = ?reason, "the glass was broken");
    Ok((
        StatusCode::CREATED,
        axum::Json(BreakGlass { patient_id: id, until: entry.created_at + crate::access::BREAK_GLASS }),
    ))
}

/// The latest break-glass accesses (who, which patient, when, why), newest
/// first. Supervisors and admins.
#[utoipa::path(get, path = "/api/break-glass", tag = "patients",
    responses((status = 200, body = [AuditEntry]), (status = 401), (status = 403)))]
async fn break_glass_log(State(store): State<Store>, _who: Management) -> Result<axum::Json<Vec<AuditEntry>>> {
    Ok(axum::Json(store.audit_by_action(BREAK_GLASS_ACTION, 200).await?))
}
