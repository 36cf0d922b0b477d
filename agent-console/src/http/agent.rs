//! The agent's session at a seat: login and logout, ready and pause, and
//! the stream of their offers and of what happens on their contacts.

use std::collections::HashSet;
use std::convert::Infallible;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use futures_util::Stream;
use routing::{AgentId, Event, RoutingError, SeatId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::contacts::stream_updates;
use super::error::{ApiError, Result};
use super::json::ApiJson;
use super::{AppState, StaffOnDuty};
use crate::center::{Center, CenterError, Update};
use crate::store::Staff;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(agent_login, agent_logout))
        .routes(routes!(agent_ready))
        .routes(routes!(agent_pause))
        .routes(routes!(agent_stream))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginInput {
    seat_id: i64,
}

#[derive(Serialize, ToSchema)]
struct AgentStatus {
    /// `idle`, `offered`, `busy`, `wrap_up` or `paused`.
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

async fn status(center: &Center, staff: &Staff) -> AgentStatus {
    let s = center.agent_state(staff.staff_id.0).await;
    let v = serde_json::to_value(&s).unwrap_or_default();
    AgentStatus {
        state: v.get("state").and_then(|s| s.as_str()).unwrap_or("logged_out").to_owned(),
        reason: v.get("reason").and_then(|s| s.as_str()).map(str::to_owned),
    }
}

/// Takes a seat (the agent starts paused; `ready` opens them to offers).
#[utoipa::path(post, path = "/api/agent/session", tag = "contacts", request_body = LoginInput,
    responses((status = 200, body = AgentStatus), (status = 401), (status = 403), (status = 409), (status = 422)))]
async fn agent_login(
    State(state): State<AppState>,
    StaffOnDuty(staff): StaffOnDuty,
    ApiJson(input): ApiJson<LoginInput>,
) -> Result<axum::Json<AgentStatus>> {
    let event = Event::Login { agent: AgentId(staff.staff_id.0), seat: SeatId(input.seat_id) };
    match state.center.handle(event.clone()).await {
        Ok(_) => {}
        // The rota may have changed since the engine last read it.
        Err(CenterError::Routing(RoutingError::UnknownAgent(_) | RoutingError::NotRostered(_))) => {
            state.center.refresh_roster().await?;
            state.center.handle(event).await?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(axum::Json(status(&state.center, &staff).await))
}

/// Leaves the seat.
#[utoipa::path(delete, path = "/api/agent/session", tag = "contacts",
    responses((status = 204), (status = 401), (status = 403), (status = 409)))]
async fn agent_logout(State(state): State<AppState>, StaffOnDuty(staff): StaffOnDuty) -> Result<StatusCode> {
    state.center.handle(Event::Logout { agent: AgentId(staff.staff_id.0) }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ready for offers.
#[utoipa::path(post, path = "/api/agent/ready", tag = "contacts",
    responses((status = 200, body = AgentStatus), (status = 401), (status = 403), (status = 409)))]
async fn agent_ready(
    State(state): State<AppState>,
    StaffOnDuty(staff): StaffOnDuty,
) -> Result<axum::Json<AgentStatus>> {
    state.center.handle(Event::Ready { agent: AgentId(staff.staff_id.0) }).await?;
    Ok(axum::Json(status(&state.center, &staff).await))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PauseInput {
    /// e.g. `break`, `training`, `meeting`.
    reason: String,
}

/// Pauses: no offers until ready again.
#[utoipa::path(post, path = "/api/agent/pause", tag = "contacts", request_body = PauseInput,
    responses((status = 200, body = AgentStatus), (status = 401), (status = 403), (status = 409), (status = 422)))]
async fn agent_pause(
    State(state): State<AppState>,
    StaffOnDuty(staff): StaffOnDuty,
    ApiJson(input): ApiJson<PauseInput>,
) -> Result<axum::Json<AgentStatus>> {
    let reason = input.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::invalid("reason", "say why, e.g. `break`"));
    }
    state.center.handle(Event::Pause { agent: AgentId(staff.staff_id.0), reason: reason.into() }).await?;
    Ok(axum::Json(status(&state.center, &staff).await))
}

/// The agent's updates: offers, withdrawals, and what happens on their contacts.
#[utoipa::path(get, path = "/api/agent/stream", tag = "contacts",
    responses((status = 200, content_type = "text/event-stream", body = Update), (status = 401), (status = 403)))]
async fn agent_stream(
    State(state): State<AppState>,
    StaffOnDuty(staff): StaffOnDuty,
) -> Result<Sse<impl Stream<Item = std::result::Result<SseEvent, Infallible>>>> {
    let me = staff.staff_id.0;
    let mut mine: HashSet<String> = HashSet::new();
    let rx = state.center.subscribe();
    Ok(stream_updates(Vec::new(), rx, state.shutdown.clone(), move |u| {
        if let Update::Connected { contact, agent } = u
            && *agent == me
        {
            mine.insert(contact.clone());
        }
        let keep = u.agent() == Some(me) || u.contact().is_some_and(|c| mine.contains(c));
        if let Update::Ended { contact } = u {
            mine.remove(contact);
        }
        keep
    }))
}
