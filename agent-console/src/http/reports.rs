//! Supervisors' reports: the day's intervals and the CSV export of its contacts.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use chrono::{Duration, NaiveDate};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, Result};
use super::json::ApiQuery;
use super::{AppState, Management};
use crate::report::{DayReport, contacts_csv, day_report, day_start};
use crate::store::Store;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(day)).routes(routes!(day_csv))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DayQuery {
    /// `YYYY-MM-DD`, Delhi time; today when absent.
    day: Option<NaiveDate>,
    /// Service-level threshold in seconds (default 20).
    threshold: Option<i64>,
}

impl DayQuery {
    fn day(&self) -> NaiveDate {
        self.day.unwrap_or_else(crate::time::local_today)
    }

    fn threshold(&self) -> Result<i64> {
        let t = self.threshold.unwrap_or(20);
        if (1..=3600).contains(&t) { Ok(t) } else { Err(ApiError::invalid("threshold", "1 to 3600 seconds")) }
    }
}

/// The day's figures per 30-minute interval and in total.
#[utoipa::path(get, path = "/api/reports/day", tag = "reports", params(DayQuery),
    responses((status = 200, body = DayReport), (status = 401), (status = 403), (status = 422)))]
async fn day(
    State(store): State<Store>,
    _who: Management,
    ApiQuery(q): ApiQuery<DayQuery>,
) -> Result<axum::Json<DayReport>> {
    let threshold = q.threshold()?;
    let start = day_start(q.day());
    let contacts = store.contacts_between(start, start + Duration::days(1)).await?;
    Ok(axum::Json(day_report(q.day(), &contacts, threshold)))
}

/// The day's contacts as CSV.
#[utoipa::path(get, path = "/api/reports/day.csv", tag = "reports", params(DayQuery),
    responses((status = 200, content_type = "text/csv", body = String), (status = 401), (status = 403)))]
async fn day_csv(
    State(store): State<Store>,
    _who: Management,
    ApiQuery(q): ApiQuery<DayQuery>,
) -> Result<impl IntoResponse> {
    let start = day_start(q.day());
    let contacts = store.contacts_between(start, start + Duration::days(1)).await?;
    let name = format!("attachment; filename=\"careline-contacts-{}.csv\"", q.day());
    Ok((
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, name)],
        contacts_csv(&contacts),
    ))
}
