//! Supervisors' reports: the day's intervals and the CSV export of its contacts.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, Result};
use super::json::ApiQuery;
use super::{AppState, Management};
use crate::report::{DayReport, contacts_csv, day_report, day_start};
use crate::store::Store;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(day)).routes(routes!(day_csv)).routes(routes!(agent_states))
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

/// Seconds an agent spent in each state within one period.
#[derive(Debug, Serialize, ToSchema)]
struct StateSeconds {
    staff_id: i64,
    username: String,
    /// The half hour's start, or the shift's, in UTC.
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
    /// The shift's name (per-shift rows only).
    shift: Option<String>,
    idle: i64,
    offered: i64,
    busy: i64,
    wrap_up: i64,
    /// By pause reason.
    paused: std::collections::BTreeMap<String, i64>,
}

/// Time per agent state for one day.
#[derive(Debug, Serialize, ToSchema)]
struct AgentStates {
    day: NaiveDate,
    /// Per agent and 30-minute interval with time logged in.
    intervals: Vec<StateSeconds>,
    /// Per shift of the day and agent rostered on it.
    shifts: Vec<StateSeconds>,
}

/// Time per agent state (idle, offered, busy, wrap-up, paused by reason),
/// per 30-minute interval and per shift, from the routing event log.
#[utoipa::path(get, path = "/api/reports/agent-states", tag = "reports", params(DayQuery),
    responses((status = 200, body = AgentStates), (status = 401), (status = 403), (status = 422)))]
async fn agent_states(
    State(store): State<Store>,
    _who: Management,
    ApiQuery(q): ApiQuery<DayQuery>,
) -> Result<axum::Json<AgentStates>> {
    let day = q.day();
    let start = day_start(day);
    let end = start + Duration::days(1);
    let (roster, shift_names) =
        crate::center::roster_and_shift_names_around(&store, start + Duration::hours(12)).await?;
    // Agents logged in at midnight logged in the day before.
    let log: Vec<routing::LoggedEvent> = store
        .routing_events_since(start - Duration::days(1))
        .await?
        .into_iter()
        .filter(|row| row.at < end)
        .filter_map(|row| {
            serde_json::from_str(&row.body)
                .ok()
                .map(|event| routing::LoggedEvent { at: row.at.timestamp_millis(), event })
        })
        .collect();
    let until = end.min(chrono::Utc::now()).timestamp_millis();
    let spans = routing::metrics::state_spans(&roster, &routing::RoutingConfig::default(), &log, until);
    let names: std::collections::HashMap<i64, String> =
        store.list_staff().await?.into_iter().map(|s| (s.staff_id.0, s.username)).collect();
    let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    let row = |p: &routing::metrics::AgentPeriod, shift: Option<String>| StateSeconds {
        staff_id: p.agent.0,
        username: names.get(&p.agent.0).cloned().unwrap_or_default(),
        start: at(p.start),
        end: at(p.end),
        shift,
        idle: p.times.idle / 1000,
        offered: p.times.offered / 1000,
        busy: p.times.busy / 1000,
        wrap_up: p.times.wrap_up / 1000,
        paused: p.times.paused.iter().map(|(k, v)| (k.clone(), v / 1000)).collect(),
    };
    let intervals = routing::metrics::per_interval(&spans, start.timestamp_millis(), 30 * 60 * 1000)
        .iter()
        .filter(|p| p.start >= start.timestamp_millis() && p.start < end.timestamp_millis())
        .map(|p| row(p, None))
        .collect();
    let shifts = routing::metrics::per_shift(&spans, &roster)
        .iter()
        .filter_map(|p| {
            let (name, shift_day) = shift_names.get(p.shift?)?;
            (*shift_day == day).then(|| row(p, Some(name.clone())))
        })
        .collect();
    Ok(axum::Json(AgentStates { day, intervals, shifts }))
}
