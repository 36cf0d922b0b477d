//! The supervisors' wallboard: the live queue and the day's figures, as a
//! JSON snapshot and as a server-sent event stream that pushes one every
//! few seconds until the client leaves or the server stops.

use std::convert::Infallible;
use std::time::Duration as StdDuration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::{DateTime, Duration, Utc};
use futures_util::Stream;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::Result;
use super::{AppState, Management};
use crate::dispatch::DispatchPolicy;
use crate::report::{Figures, day_report, day_start};
use crate::store::{ContactStatus, Store};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(snapshot)).routes(routes!(stream))
}

/// Rostered staff on one of today's shifts.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ShiftStaffing {
    pub shift: String,
    pub starts_minute: i64,
    pub ends_minute: i64,
    pub rostered: usize,
    /// Of those rostered, how many are at a seat now, by state (`idle`, `busy`, ...).
    pub at_seats: std::collections::BTreeMap<String, usize>,
}

/// What the wallboard shows.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Wallboard {
    pub at: DateTime<Utc>,
    /// Contacts waiting for an agent now (callbacks included).
    pub waiting: usize,
    pub callbacks: usize,
    pub longest_wait_seconds: Option<i64>,
    /// The current 30-minute interval.
    pub interval: Figures,
    pub today: Figures,
    pub intervals: Vec<Figures>,
    pub shifts: Vec<ShiftStaffing>,
    /// Agents at their seats now, and what they are doing.
    pub agents: Vec<AgentAtSeat>,
    /// Voice and video calls in progress, which a supervisor may join.
    pub calls: Vec<LiveCall>,
    /// Ambulance requests the dispatch webhook has not taken within the
    /// alarm time (`--dispatch-alarm-seconds`), oldest first: phone 102/108.
    /// Each leaves the list when it is delivered.
    pub ambulance_alarms: Vec<AmbulanceAlarm>,
    /// What a supervisor must know of the last [`SECURITY_SHOWN_FOR`],
    /// newest first: someone guessing a user's password (that user's
    /// sign-ins from unknown devices are then delayed: the supervisor
    /// checks with them), and each break-glass read of a patient's record
    /// with its reason.
    pub security: Vec<SecurityAlert>,
}

/// How long a security event stays on the wallboard: a shift and more.
pub const SECURITY_SHOWN_FOR: Duration = Duration::hours(12);

/// A security event from the audit log.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SecurityAlert {
    pub at: DateTime<Utc>,
    /// `login_guessing` or `break_glass`.
    pub kind: String,
    /// Whose sign-ins are being guessed, or who broke the glass.
    pub staff_id: Option<i64>,
    pub username: Option<String>,
    pub patient_id: Option<i64>,
    /// The audit entry's words: the failures and the last address, or the reason given.
    pub detail: String,
}

/// An ambulance request still undelivered after the alarm time.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AmbulanceAlarm {
    pub ambulance_request_id: String,
    pub contact_id: String,
    pub urgency: crate::store::Urgency,
    pub location: String,
    pub requested_at: DateTime<Utc>,
    pub undelivered_seconds: i64,
    /// Delivery attempts so far; they go on until the webhook takes it.
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// A voice or video call in progress.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LiveCall {
    pub contact_id: String,
    pub channel: crate::store::Channel,
    pub tier: i64,
    pub answered_at: Option<DateTime<Utc>>,
}

/// An agent at a seat.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AgentAtSeat {
    pub staff_id: i64,
    pub seat_id: i64,
    /// `idle`, `offered`, `busy`, `wrap_up` or `paused`.
    pub state: String,
}

async fn build(
    store: &Store,
    center: &crate::center::Center,
    dispatch: &DispatchPolicy,
    now: DateTime<Utc>,
) -> Result<Wallboard> {
    let day = crate::time::to_local(now).date_naive();
    let start = day_start(day);
    let contacts = store.contacts_between(start - Duration::days(1), start + Duration::days(1)).await?;
    let queued: Vec<_> =
        contacts.iter().filter(|c| matches!(c.status, ContactStatus::Waiting | ContactStatus::Callback)).collect();
    let today: Vec<_> = contacts.iter().filter(|c| c.created_at >= start).cloned().collect();
    let report = day_report(day, &today, 20);
    let slot = ((now - start).num_minutes() / 30).clamp(0, 47) as usize;
    let shifts = store.shifts().await?;
    let roster = store.roster_for(day).await?;
    let agents: Vec<AgentAtSeat> = center
        .agents()
        .await
        .into_iter()
        .map(|(staff_id, seat_id, state)| AgentAtSeat { staff_id, seat_id, state: state.name().to_owned() })
        .collect();
    Ok(Wallboard {
        at: now,
        waiting: queued.iter().filter(|c| c.status == ContactStatus::Waiting).count(),
        callbacks: queued.iter().filter(|c| c.status == ContactStatus::Callback).count(),
        longest_wait_seconds: queued.iter().map(|c| (now - c.created_at).num_seconds()).max(),
        interval: report.intervals[slot].clone(),
        today: report.total,
        intervals: report.intervals,
        shifts: shifts
            .iter()
            .map(|s| {
                let on: Vec<i64> = roster.iter().filter(|r| r.shift_id == s.shift_id).map(|r| r.staff_id.0).collect();
                let mut at_seats = std::collections::BTreeMap::new();
                for a in agents.iter().filter(|a| on.contains(&a.staff_id)) {
                    *at_seats.entry(a.state.clone()).or_insert(0) += 1;
                }
                ShiftStaffing {
                    shift: s.name.clone(),
                    starts_minute: s.starts_minute,
                    ends_minute: s.ends_minute,
                    rostered: on.len(),
                    at_seats,
                }
            })
            .collect(),
        agents,
        calls: contacts
            .iter()
            .filter(|c| c.status == ContactStatus::Connected && !c.channel.is_text())
            .map(|c| LiveCall {
                contact_id: c.contact_id.clone(),
                channel: c.channel,
                tier: c.tier,
                answered_at: c.answered_at,
            })
            .collect(),
        security: security_alerts(store, now).await?,
        ambulance_alarms: crate::dispatch::alarms(store, dispatch, now)
            .await?
            .into_iter()
            .map(|r| AmbulanceAlarm {
                undelivered_seconds: (now - r.created_at).num_seconds(),
                ambulance_request_id: r.ambulance_request_id,
                contact_id: r.contact_id,
                urgency: r.urgency,
                location: r.location,
                requested_at: r.created_at,
                attempts: r.attempts,
                last_error: r.last_error,
            })
            .collect(),
    })
}

/// The security events of the last [`SECURITY_SHOWN_FOR`], newest first (at most 20).
async fn security_alerts(store: &Store, now: DateTime<Utc>) -> Result<Vec<SecurityAlert>> {
    let since = now - SECURITY_SHOWN_FOR;
    let mut entries = Vec::new();
    for (action, kind) in
        [(super::auth::GUESSING_ACTION, "login_guessing"), (crate::store::BREAK_GLASS_ACTION, "break_glass")]
    {
        entries.extend(
            store.audit_by_action(action, 20).await?.into_iter().filter(|e| e.created_at >= since).map(|e| (kind, e)),
        );
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.1.created_at));
    entries.truncate(20);
    let staff = if entries.is_empty() { Vec::new() } else { store.list_staff().await? };
    Ok(entries
        .into_iter()
        .map(|(kind, e)| SecurityAlert {
            at: e.created_at,
            kind: kind.to_owned(),
            staff_id: e.staff_id.map(|s| s.0),
            username: e.staff_id.and_then(|id| staff.iter().find(|s| s.staff_id == id)).map(|s| s.username.clone()),
            patient_id: e.patient_id.map(|p| p.0),
            detail: e.detail,
        })
        .collect())
}

/// The wallboard now.
#[utoipa::path(get, path = "/api/wallboard", tag = "reports",
    responses((status = 200, body = Wallboard), (status = 401), (status = 403)))]
async fn snapshot(State(state): State<AppState>, _who: Management) -> Result<axum::Json<Wallboard>> {
    Ok(axum::Json(build(&state.store, &state.center, &state.settings.dispatch, Utc::now()).await?))
}

/// The wallboard as server-sent events (`event: wallboard`), one every 5 s.
#[utoipa::path(get, path = "/api/wallboard/stream", tag = "reports",
    responses((status = 200, content_type = "text/event-stream", body = Wallboard), (status = 401), (status = 403)))]
async fn stream(State(state): State<AppState>, _who: Management) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let store = state.store.clone();
    let center = state.center.clone();
    let shutdown = state.shutdown.clone();
    let dispatch = state.settings.dispatch;
    let events = futures_util::stream::unfold(
        (store, center, shutdown, true),
        move |(store, center, shutdown, first)| async move {
            if !first {
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(StdDuration::from_secs(5)) => {}
                }
            }
            let event = match build(&store, &center, &dispatch, Utc::now()).await {
                Ok(board) => Event::default().event("wallboard").json_data(&board).unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(error = %e, "wallboard");
                    Event::default().event("error").data("the wallboard could not be read; retrying")
                }
            };
            Some((Ok(event), (store, center, shutdown, false)))
        },
    );
    Sse::new(events).keep_alive(KeepAlive::default())
}
