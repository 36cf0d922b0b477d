//! Seats, shifts and the day's roster.

use axum::extract::State;
use chrono::NaiveDate;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use axum::http::StatusCode;
use utoipa::ToSchema;

use super::error::{ApiError, FieldError, Result};
use super::json::{ApiJson, ApiQuery};
use super::{Admin, AppState, AuthUser};
use crate::store::{NewAudit, Role, RosterEntry, Seat, Shift, ShiftId, StaffId, Store, StoreError};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(seats))
        .routes(routes!(shifts, create_shift))
        .routes(routes!(roster, add_to_roster))
}

/// The 45 seats; seats 41 to 45 open only in the peak shift.
#[utoipa::path(get, path = "/api/seats", tag = "roster", responses((status = 200, body = [Seat]), (status = 401)))]
async fn seats(State(store): State<Store>, _who: AuthUser) -> Result<axum::Json<Vec<Seat>>> {
    Ok(axum::Json(store.seats().await?))
}

/// Operator shifts and the doctors' 24-hour rota, in local minutes after midnight.
#[utoipa::path(get, path = "/api/shifts", tag = "roster", responses((status = 200, body = [Shift]), (status = 401)))]
async fn shifts(State(store): State<Store>, _who: AuthUser) -> Result<axum::Json<Vec<Shift>>> {
    Ok(axum::Json(store.shifts().await?))
}

#[derive(Deserialize, IntoParams)]
struct RosterQuery {
    /// Local date, `YYYY-MM-DD`; today in Delhi when absent.
    day: Option<NaiveDate>,
}

/// Who is rostered on which shift for a day.
#[utoipa::path(get, path = "/api/roster", tag = "roster", params(RosterQuery),
    responses((status = 200, body = [RosterEntry]), (status = 400), (status = 401)))]
async fn roster(
    State(store): State<Store>,
    _who: AuthUser,
    ApiQuery(q): ApiQuery<RosterQuery>,
) -> Result<axum::Json<Vec<RosterEntry>>> {
    let day = q.day.unwrap_or_else(crate::time::local_today);
    Ok(axum::Json(store.roster_for(day).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ShiftInput {
    #[schema(min_length = 1, pattern = r"\S")]
    name: String,
    /// `operator` or `doctor`: the roles that work shifts.
    #[schema(value_type = String, pattern = "^(operator|doctor)$")]
    role: Role,
    /// Local minutes after midnight, 0 to 1439.
    #[schema(minimum = 0, maximum = 1439)]
    starts_minute: i64,
    /// Local minutes after midnight, 1 to 1440; at or before the start, the shift runs past midnight.
    #[schema(minimum = 1, maximum = 1440)]
    ends_minute: i64,
    #[serde(default)]
    is_peak: bool,
}

/// Adds a shift to the rota. Admins only.
#[utoipa::path(post, path = "/api/shifts", tag = "roster", request_body = ShiftInput,
    responses((status = 201, body = Shift), (status = 401), (status = 403), (status = 409), (status = 422)))]
async fn create_shift(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiJson(input): ApiJson<ShiftInput>,
) -> Result<(StatusCode, axum::Json<Shift>)> {
    let mut errors = Vec::new();
    if input.name.trim().is_empty() {
        errors.push(FieldError { field: "name".into(), message: "must not be empty".into() });
    }
    errors.extend(super::json::control_characters("name", &input.name));
    if !matches!(input.role, Role::Operator | Role::Doctor) {
        errors.push(FieldError { field: "role".into(), message: "shifts are for operators or doctors".into() });
    }
    if !(0..1440).contains(&input.starts_minute) {
        errors.push(FieldError { field: "starts_minute".into(), message: "0 to 1439".into() });
    }
    if !(1..=1440).contains(&input.ends_minute) {
        errors.push(FieldError { field: "ends_minute".into(), message: "1 to 1440".into() });
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let shift = state
        .store
        .create_shift(input.name.trim(), input.role, input.starts_minute, input.ends_minute, input.is_peak)
        .await?;
    state
        .store
        .append_audit(&NewAudit {
            staff_id: Some(admin.staff_id),
            action: "shift.create".into(),
            patient_id: None,
            contact_id: None,
            detail: shift.name.clone(),
        })
        .await?;
    state.center.refresh_roster().await?;
    Ok((StatusCode::CREATED, axum::Json(shift)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RosterInput {
    shift_id: i64,
    staff_id: i64,
    /// Local date the shift starts on.
    day: NaiveDate,
}

/// Puts a staff member on a shift for a day. Admins only.
#[utoipa::path(post, path = "/api/roster", tag = "roster", request_body = RosterInput,
    responses((status = 204), (status = 401), (status = 403), (status = 422)))]
async fn add_to_roster(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    ApiJson(input): ApiJson<RosterInput>,
) -> Result<StatusCode> {
    let shift = state.store.shifts().await?.into_iter().find(|s| s.shift_id.0 == input.shift_id);
    let Some(shift) = shift else {
        return Err(ApiError::invalid("shift_id", format!("no shift {}", input.shift_id)));
    };
    let staff = state.store.staff(StaffId(input.staff_id)).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::invalid("staff_id", format!("no staff {}", input.staff_id)),
        other => other.into(),
    })?;
    if staff.role != shift.role {
        return Err(ApiError::invalid(
            "staff_id",
            format!("{} is a {}, the shift is for {}s", staff.username, staff.role, shift.role),
        ));
    }
    state.store.roster(ShiftId(input.shift_id), staff.staff_id, input.day).await?;
    state.center.refresh_roster().await?;
    Ok(StatusCode::NO_CONTENT)
}
