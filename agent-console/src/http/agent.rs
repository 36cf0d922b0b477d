//! The agent's session at a seat: login and logout, ready and pause, their
//! state now (seat, offer, contacts held), and the stream of their offers
//! and of what happens on their contacts, which starts from that state.

use std::collections::HashSet;
use std::convert::Infallible;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use routing::{AgentId, AgentState, Event, RoutingError, SeatId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, Result};
use super::json::ApiJson;
use super::live::{Reader, json_event, live};
use super::{AppState, StaffOnDuty};
use crate::center::{Center, CenterError, PresenceGuard, Update};
use crate::store::{Channel, ContactStatus, Staff};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(agent_login, agent_logout))
        .routes(routes!(agent_ready))
        .routes(routes!(agent_pause))
        .routes(routes!(agent_state))
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

/// The name of an agent's state (as `AgentStatus.state`) and the reason of a pause.
fn state_name(state: Option<&AgentState>) -> (&'static str, Option<String>) {
    match state {
        None => ("logged_out", None),
        Some(AgentState::Idle { .. }) => ("idle", None),
        Some(AgentState::Offered { .. }) => ("offered", None),
        Some(AgentState::Busy) => ("busy", None),
        Some(AgentState::WrapUp { .. }) => ("wrap_up", None),
        Some(AgentState::Paused { reason }) => ("paused", Some(reason.clone())),
    }
}

async fn status(center: &Center, staff: &Staff) -> AgentStatus {
    let (state, reason) = state_name(center.agent_state(staff.staff_id.0).await.as_ref());
    AgentStatus { state: state.to_owned(), reason }
}

/// The offer ringing at the agent.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
struct OfferView {
    contact_id: String,
    /// When it stops ringing (and moves to another agent).
    until: DateTime<Utc>,
    /// The agent calls the patient back.
    callback: bool,
}

/// A contact the agent is working on now.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
struct HeldContact {
    contact_id: String,
    /// `connected`, or `wrap_up` when it ended and awaits the agent's disposition.
    status: ContactStatus,
    channel: Channel,
    /// The last chat message's id: a console that has it asks for the
    /// messages after it; `None` before the first.
    last_message_id: Option<i64>,
}

/// Everything a console needs to draw the agent's seat now: the answer of
/// `GET /api/agent/state` and the first `snapshot` event of the agent's stream.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
struct AgentSnapshot {
    /// `logged_out`, `idle`, `offered`, `busy`, `wrap_up` or `paused`.
    state: String,
    /// Why they are paused (e.g. `break`, `missed offers`, `console gone`).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    seat_id: Option<i64>,
    offer: Option<OfferView>,
    /// Connected contacts in the order taken, then those awaiting wrap-up.
    contacts: Vec<HeldContact>,
}

/// Wrap-ups older than this are not shown again (the engine's wrap-up time is minutes).
const WRAP_UP_SHOWN_FOR: chrono::Duration = chrono::Duration::hours(12);

async fn snapshot(state: &AppState, staff: &Staff) -> Result<AgentSnapshot> {
    let view = state.center.agent_view(staff.staff_id.0).await?;
    let (name, reason) = state_name(view.as_ref().map(|v| &v.state));
    let mut contacts = Vec::new();
    for id in view.iter().flat_map(|v| &v.handling) {
        let c = state.store.contact(&id.0).await?;
        let last_message_id = state.store.last_chat_message_id(&id.0).await?;
        contacts.push(HeldContact { contact_id: c.contact_id, status: c.status, channel: c.channel, last_message_id });
    }
    for c in state.store.contacts_to_wrap_up(staff.staff_id, Utc::now() - WRAP_UP_SHOWN_FOR).await? {
        let last_message_id = state.store.last_chat_message_id(&c.contact_id).await?;
        contacts.push(HeldContact { contact_id: c.contact_id, status: c.status, channel: c.channel, last_message_id });
    }
    Ok(AgentSnapshot {
        state: name.to_owned(),
        reason,
        seat_id: view.as_ref().map(|v| v.seat),
        offer: view.and_then(|v| v.ringing).map(|r| OfferView {
            contact_id: r.contact.0,
            until: DateTime::from_timestamp_millis(r.until).unwrap_or_default(),
            callback: r.callback,
        }),
        contacts,
    })
}

/// The agent's own seat, state, ringing offer and the contacts they hold.
#[utoipa::path(get, path = "/api/agent/state", tag = "contacts",
    responses((status = 200, body = AgentSnapshot), (status = 401), (status = 403), (status = 503)))]
async fn agent_state(
    State(state): State<AppState>,
    StaffOnDuty(staff): StaffOnDuty,
) -> Result<axum::Json<AgentSnapshot>> {
    Ok(axum::Json(snapshot(&state, &staff).await?))
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
    #[schema(min_length = 1, pattern = r"\S")]
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

/// The agent's stream: what they may see, from their snapshot.
struct AgentReader {
    state: AppState,
    staff: Staff,
    /// The contacts the agent is on (from the snapshot, then as they connect
    /// and end): their messages and captions reach the agent.
    mine: HashSet<String>,
    /// Counts this console as open while the stream lives.
    _present: PresenceGuard,
}

impl Reader for AgentReader {
    async fn snapshot(&mut self) -> Result<Vec<SseEvent>> {
        let snap = snapshot(&self.state, &self.staff).await?;
        self.mine = snap.contacts.iter().map(|c| c.contact_id.clone()).collect();
        Ok(vec![json_event("snapshot", &snap)])
    }

    fn pass(&mut self, u: &Update) -> bool {
        let me = self.staff.staff_id.0;
        if let Update::Connected { contact, agent } = u
            && *agent == me
        {
            self.mine.insert(contact.clone());
        }
        let keep = u.agent() == Some(me) || u.contact().is_some_and(|c| self.mine.contains(c));
        if let Update::Ended { contact } = u {
            self.mine.remove(contact);
        }
        keep
    }
}

/// The agent's updates: first a `snapshot` event (as `GET /api/agent/state`),
/// then `update`s: offers, withdrawals, and what happens on their contacts; a
/// fresh `snapshot` when the stream fell behind. While one is open the
/// agent's console counts as present.
#[utoipa::path(get, path = "/api/agent/stream", tag = "contacts",
    responses((status = 200, content_type = "text/event-stream", body = Update), (status = 401), (status = 403), (status = 503)))]
async fn agent_stream(
    State(state): State<AppState>,
    StaffOnDuty(staff): StaffOnDuty,
) -> Result<Sse<impl Stream<Item = std::result::Result<SseEvent, Infallible>>>> {
    let present = state.presence.arrive(&state.center, staff.staff_id.0).await?;
    let rx = state.center.subscribe();
    let shutdown = state.shutdown.clone();
    live(AgentReader { state, staff, mine: HashSet::new(), _present: present }, rx, shutdown).await
}
