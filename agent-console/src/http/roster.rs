//! Seats, shifts and the day's roster.

use axum::extract::State;
use chrono::NaiveDate;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::Result;
use super::json::ApiQuery;
use super::{AppState, AuthUser};
use crate::store::{RosterEntry, Seat, Shift, Store};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(seats))
        .routes(routes!(shifts))
        .routes(routes!(roster))
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
