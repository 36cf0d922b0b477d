//! Contacts in motion: a patient starts one from `/call` and follows it with
//! a one-time token; agents sit at a seat, take offers, talk or chat, escalate,
//! end and wrap up. Each step goes through the routing engine (the
//! [`crate::center::Center`]) and is written to the contact's record.

use std::collections::HashSet;
use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use chrono::Utc;
use futures_util::Stream;
use routing::{AgentId, ContactId, Event, Media, NewContact as RoutedContact, RoutingError, SeatId};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, FieldError, Result};
use super::json::{ApiJson, ApiQuery};
use super::patients::normalise_phone;
use super::{AppState, AuthUser, StaffOnDuty};
use crate::auth::{new_token, token_hash};
use crate::center::{Center, CenterError, Update};
use crate::store::{
    AbhaNumber, Channel, ChatMessage, Contact, ContactChange, NewContact, Role, Staff, StaffId, Store, StoreError,
};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_contact))
        .routes(routes!(patient_stream))
        .routes(routes!(messages, send_message))
        .routes(routes!(request_callback))
        .routes(routes!(hang_up))
        .routes(routes!(agent_login, agent_logout))
        .routes(routes!(agent_ready))
        .routes(routes!(agent_pause))
        .routes(routes!(agent_stream))
        .routes(routes!(contact))
        .routes(routes!(accept))
        .routes(routes!(decline))
        .routes(routes!(end))
        .routes(routes!(escalate))
        .routes(routes!(leave))
        .routes(routes!(wrap_up))
        .routes(routes!(identify))
        .routes(routes!(patient_contacts))
        .routes(routes!(prescribe))
        .routes(routes!(save_note, read_note))
        .routes(routes!(formulary))
        .routes(routes!(fhir_bundle))
        .routes(routes!(record_consult))
        .routes(routes!(request_ambulance))
}

/// Wrap-up codes an agent closes a contact with.
pub const DISPOSITIONS: &[&str] = &[
    "information",
    "complaint",
    "appointment",
    "escalated",
    "callback",
    "emergency",
    "wrong_number",
    "silent",
    "other",
];

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

// --- The patient's side -------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StartInput {
    /// `hi` or `en` (or another language the caller speaks).
    language: String,
    phone: String,
    /// `chat`, or `webrtc` for a voice call from the browser.
    channel: Channel,
    #[serde(default)]
    emergency: bool,
    /// For an emergency: where the patient is, for the ambulance.
    location: Option<String>,
    ehealth_card: Option<String>,
    abha_number: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct Started {
    contact_id: String,
    /// Keep it: it follows and rejoins this contact (`?token=`). Shown once.
    token: String,
}

/// A patient starts a contact (no login). The answer carries the token that follows it.
#[utoipa::path(post, path = "/api/contacts", tag = "contacts", request_body = StartInput,
    responses((status = 201, body = Started), (status = 400), (status = 422), (status = 429)))]
async fn start_contact(
    State(state): State<AppState>,
    super::auth::ClientAddr(peer): super::auth::ClientAddr,
    ApiJson(input): ApiJson<StartInput>,
) -> Result<(StatusCode, axum::Json<Started>)> {
    let client = peer.map(|a| a.ip().to_string()).unwrap_or_else(|| "unknown".into());
    let now = std::time::Instant::now();
    state.contact_throttle.check(&[&client], now).map_err(ApiError::TooManyRequests)?;
    let mut errors = Vec::new();
    let phone =
        normalise_phone(&input.phone).map_err(|m| errors.push(FieldError { field: "phone".into(), message: m })).ok();
    let language = input.language.trim().to_lowercase();
    if !(2..=3).contains(&language.len()) || !language.chars().all(|c| c.is_ascii_lowercase()) {
        errors.push(FieldError { field: "language".into(), message: "an ISO 639-1 code such as `hi` or `en`".into() });
    }
    let abha = match input.abha_number.as_deref().filter(|a| !a.trim().is_empty()) {
        Some(a) => AbhaNumber::parse(a).map(|a| Some(a.as_str().to_owned())).unwrap_or_else(|m| {
            errors.push(FieldError { field: "abha_number".into(), message: m });
            None
        }),
        None => None,
    };
    if input.channel == Channel::Phone {
        errors.push(FieldError {
            field: "channel".into(),
            message: "phone calls arrive through the telephony gateway; use `chat` or `webrtc`".into(),
        });
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let token = new_token();
    let new = NewContact {
        channel: Some(input.channel),
        language: language.clone(),
        emergency: input.emergency,
        caller_phone: phone,
        ehealth_card: input.ehealth_card.map(|c| c.trim().to_uppercase()).filter(|c| !c.is_empty()),
        abha_number: abha,
        patient_id: None,
        location: input.location.filter(|l| !l.trim().is_empty()),
    };
    state.store.create_contact(&id, &new, &token_hash(&token), Utc::now()).await?;
    state.contact_throttle.record(&[&client], now);
    let media = if input.channel == Channel::Chat { Media::Chat } else { Media::Voice };
    state
        .center
        .handle(Event::ContactArrived(RoutedContact {
            id: ContactId(id.clone()),
            media,
            language,
            emergency: input.emergency,
            specialty: None,
        }))
        .await?;
    tracing::info!(contact = %id, channel = %input.channel, emergency = input.emergency, "contact started");
    Ok((StatusCode::CREATED, axum::Json(Started { contact_id: id, token })))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct TokenQuery {
    /// The patient's token for this contact; staff use their session instead.
    pub(super) token: Option<String>,
    /// Messages after this id (for a reconnecting client).
    after: Option<i64>,
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

/// Whether the patient (by token) or a staff member on the contact (or a supervisor) may see it.
pub(super) async fn may_see_contact(
    store: &Store,
    id: &str,
    token: Option<&str>,
    user: Option<AuthUser>,
) -> Result<()> {
    party(store, id, token, user).await.map(|_| ())
}

/// Who is asking about a contact: its patient (by token) or a staff member who works on it.
pub(super) enum Party {
    Patient,
    Staff(Staff),
}

pub(super) async fn party(store: &Store, id: &str, token: Option<&str>, user: Option<AuthUser>) -> Result<Party> {
    if let Some(token) = token {
        let contact = store.contact_by_token(&token_hash(token)).await.map_err(|_| ApiError::Unauthorized)?;
        if contact.contact_id != id {
            tracing::warn!(contact = %id, "a patient token was used for another contact");
            return Err(ApiError::Forbidden("this token is for another contact".into()));
        }
        return Ok(Party::Patient);
    }
    let Some(user) = user else {
        return Err(ApiError::Unauthorized);
    };
    store.contact(id).await.map_err(not_found(id))?;
    let staff = user.staff;
    if staff.role == Role::Supervisor || store.works_on_contact(staff.staff_id, id).await? {
        Ok(Party::Staff(staff))
    } else {
        Err(ApiError::Forbidden("only staff working on this contact may see it".into()))
    }
}

fn sse_event(update: &Update) -> SseEvent {
    SseEvent::default().event("update").json_data(update).unwrap_or_default()
}

/// A contact's updates for its patient: position and wait, connected, messages, ended.
#[utoipa::path(get, path = "/api/contacts/{id}/stream", tag = "contacts", params(("id" = String, Path), TokenQuery),
    responses((status = 200, content_type = "text/event-stream", body = Update), (status = 401), (status = 403)))]
async fn patient_stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TokenQuery>,
) -> Result<Sse<impl Stream<Item = std::result::Result<SseEvent, Infallible>>>> {
    let Party::Patient = party(&state.store, &id, q.token.as_deref(), None).await? else { unreachable!() };
    let contact = state.store.contact(&id).await?;
    // What a reconnecting page missed: where the contact stands (its place in
    // the queue while it waits), and the messages.
    let mut first = vec![status_update(&contact), state.center.position(&id).await];
    for m in state.store.chat_messages(&id, q.after.unwrap_or(0)).await? {
        first.push(message_update(&m));
    }
    let rx = state.center.subscribe();
    Ok(stream_updates(first.into_iter().flatten().collect(), rx, state.shutdown.clone(), move |u| {
        u.contact() == Some(id.as_str())
            && !matches!(
                u,
                Update::Offer { .. } | Update::Withdraw { .. } | Update::Alert { .. } | Update::Caption { .. }
            )
    }))
}

fn status_update(c: &Contact) -> Option<Update> {
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

fn message_update(m: &ChatMessage) -> Option<Update> {
    Some(Update::Message {
        contact: m.contact_id.clone(),
        sender: m.sender.clone(),
        body: m.body.clone(),
        at: m.created_at,
    })
}

fn stream_updates(
    first: Vec<Update>,
    rx: tokio::sync::broadcast::Receiver<Update>,
    shutdown: tokio_util::sync::CancellationToken,
    mut keep: impl FnMut(&Update) -> bool + Send + 'static,
) -> Sse<impl Stream<Item = std::result::Result<SseEvent, Infallible>>> {
    let initial = futures_util::stream::iter(first.into_iter().map(|u| Ok(sse_event(&u))));
    let live = futures_util::stream::unfold((rx, shutdown), move |(mut rx, shutdown)| async move {
        loop {
            let got = tokio::select! {
                _ = shutdown.cancelled() => return None,
                got = rx.recv() => got,
            };
            match got {
                Ok(update) => return Some((update, (rx, shutdown))),
                Err(RecvError::Lagged(n)) => tracing::warn!(missed = n, "a stream fell behind"),
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let live = futures_util::StreamExt::filter_map(live, move |u| {
        let keep = keep(&u);
        async move { keep.then(|| Ok(sse_event(&u))) }
    });
    Sse::new(futures_util::StreamExt::chain(initial, live)).keep_alive(KeepAlive::default())
}

/// A chat's messages (patient by token, or staff on the contact).
#[utoipa::path(get, path = "/api/contacts/{id}/messages", tag = "contacts", params(("id" = String, Path), TokenQuery),
    responses((status = 200, body = [ChatMessage]), (status = 401), (status = 403), (status = 404)))]
async fn messages(
    State(store): State<Store>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TokenQuery>,
) -> Result<axum::Json<Vec<ChatMessage>>> {
    party(&store, &id, q.token.as_deref(), user).await?;
    Ok(axum::Json(store.chat_messages(&id, q.after.unwrap_or(0)).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct MessageInput {
    /// 1 to 2000 characters.
    body: String,
}

/// Sends a chat message on a contact.
#[utoipa::path(post, path = "/api/contacts/{id}/messages", tag = "contacts", params(("id" = String, Path), TokenQuery),
    request_body = MessageInput,
    responses((status = 201, body = ChatMessage), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn send_message(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TokenQuery>,
    ApiJson(input): ApiJson<MessageInput>,
) -> Result<(StatusCode, axum::Json<ChatMessage>)> {
    let body = input.body.trim();
    if body.is_empty() || body.chars().count() > 2000 {
        return Err(ApiError::invalid("body", "write 1 to 2000 characters"));
    }
    let who = party(&state.store, &id, q.token.as_deref(), user).await?;
    let contact = state.store.contact(&id).await?;
    if matches!(contact.status, crate::store::ContactStatus::Ended | crate::store::ContactStatus::Abandoned) {
        return Err(ApiError::Conflict(format!("contact {id} has ended")));
    }
    let (sender, staff) = match who {
        Party::Patient => ("patient", None),
        Party::Staff(s) => ("staff", Some(s.staff_id)),
    };
    let m = state.store.add_chat_message(&id, sender, staff, body, Utc::now()).await?;
    if let Some(u) = message_update(&m) {
        state.center.publish(u);
    }
    Ok((StatusCode::CREATED, axum::Json(m)))
}

/// The waiting patient asks to be called back; they keep their place.
#[utoipa::path(post, path = "/api/contacts/{id}/callback", tag = "contacts", params(("id" = String, Path), TokenQuery),
    responses((status = 204), (status = 401), (status = 403), (status = 409)))]
async fn request_callback(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TokenQuery>,
) -> Result<StatusCode> {
    let Party::Patient = party(&state.store, &id, q.token.as_deref(), None).await? else { unreachable!() };
    state.center.handle(Event::RequestCallback { contact: ContactId(id.clone()) }).await?;
    state.store.update_contact(&id, &ContactChange::CallbackRequested, Utc::now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The patient hangs up: a waiting contact is abandoned, a connected one ends.
#[utoipa::path(post, path = "/api/contacts/{id}/hangup", tag = "contacts", params(("id" = String, Path), TokenQuery),
    responses((status = 204), (status = 401), (status = 403), (status = 409)))]
async fn hang_up(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TokenQuery>,
) -> Result<StatusCode> {
    let Party::Patient = party(&state.store, &id, q.token.as_deref(), None).await? else { unreachable!() };
    end_or_abandon(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn end_or_abandon(state: &AppState, id: &str) -> Result<()> {
    let contact = ContactId(id.to_owned());
    match state.center.handle(Event::Abandon { contact: contact.clone() }).await {
        Ok(_) => {
            state.store.update_contact(id, &ContactChange::Abandoned, Utc::now()).await?;
        }
        Err(CenterError::Routing(RoutingError::Connected(_))) => {
            state.center.handle(Event::End { contact }).await?;
            state.store.update_contact(id, &ContactChange::Ended, Utc::now()).await?;
        }
        Err(e) => return Err(e.into()),
    }
    state.center.publish(Update::Ended { contact: id.to_owned() });
    Ok(())
}

// --- The agent's side -----------------------------------------------------------

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

/// A contact's record, for staff working on it.
#[utoipa::path(get, path = "/api/contacts/{id}", tag = "contacts", params(("id" = String, Path)),
    responses((status = 200, body = Contact), (status = 401), (status = 403), (status = 404)))]
async fn contact(State(store): State<Store>, user: AuthUser, Path(id): Path<String>) -> Result<axum::Json<Contact>> {
    party(&store, &id, None, Some(user)).await?;
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
    state.center.handle(Event::Accept { agent: AgentId(staff.staff_id.0), contact: ContactId(id.clone()) }).await?;
    let now = Utc::now();
    state.store.add_contact_staff(&id, staff.staff_id, now).await?;
    let change = if staff.role == Role::Doctor {
        ContactChange::DoctorJoined { doctor: staff.staff_id }
    } else {
        ContactChange::Answered { by: staff.staff_id }
    };
    let contact = state.store.update_contact(&id, &change, now).await?;
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

async fn on_contact(store: &Store, staff: StaffId, id: &str) -> Result<()> {
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
    state.center.handle(Event::End { contact: ContactId(id.clone()) }).await?;
    state.store.update_contact(&id, &ContactChange::Ended, Utc::now()).await?;
    state.center.publish(Update::Ended { contact: id });
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EscalateInput {
    /// `general` or a specialty, e.g. `paediatrics`.
    specialty: String,
    #[serde(default)]
    urgent: bool,
    /// What the doctor should know (shown on the doctor's console).
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
    state
        .center
        .handle(Event::Escalate { contact: ContactId(id.clone()), specialty: specialty.clone(), urgent })
        .await?;
    let now = Utc::now();
    state.store.update_contact(&id, &ContactChange::Escalated { specialty }, now).await?;
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
    disposition: String,
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
    if !DISPOSITIONS.contains(&input.disposition.as_str()) {
        return Err(ApiError::invalid("disposition", format!("one of {}", DISPOSITIONS.join(", "))));
    }
    on_contact(&state.store, staff.staff_id, &id).await?;
    let note = input.note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    let contact = state
        .store
        .update_contact(&id, &ContactChange::WrappedUp { disposition: input.disposition, note }, Utc::now())
        .await?;
    // Ready for the next contact; harmless when the wrap-up time already ran out.
    let _ = state.center.handle(Event::WrapUpDone { agent: AgentId(staff.staff_id.0) }).await;
    Ok(axum::Json(contact))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct IdentifyInput {
    patient_id: i64,
}

/// Records who the caller is (after the operator identified them).
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
    store.patient(patient).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::NotFound(format!("patient {}", input.patient_id)),
        other => other.into(),
    })?;
    Ok(axum::Json(store.update_contact(&id, &ContactChange::Identified { patient }, Utc::now()).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ContactParam {
    /// The contact on whose behalf the record is read.
    contact: Option<String>,
}

/// A patient's past contacts with the helpline, latest first. Audited as a read of the record.
#[utoipa::path(get, path = "/api/patients/{id}/contacts", tag = "contacts", params(("id" = i64, Path), ContactParam),
    responses((status = 200, body = [Contact]), (status = 401), (status = 403), (status = 404)))]
async fn patient_contacts(
    State(store): State<Store>,
    StaffOnDuty(staff): StaffOnDuty,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<ContactParam>,
) -> Result<axum::Json<Vec<Contact>>> {
    super::patients::may_read_patients(&store, &staff, q.contact.as_deref()).await?;
    let patient = crate::store::PatientId(id);
    store.patient(patient).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::NotFound(format!("patient {id}")),
        other => other.into(),
    })?;
    store
        .append_audit(&crate::store::NewAudit {
            staff_id: Some(staff.staff_id),
            action: "patient.contacts".into(),
            patient_id: Some(patient),
            contact_id: q.contact,
            detail: String::new(),
        })
        .await?;
    Ok(axum::Json(store.contacts_of_patient(patient).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PrescriptionInput {
    /// The doctor's statement of how they consult (`video`, `audio`,
    /// `text`). Optional: the server decides the mode from the contact and
    /// the call, and refuses a statement that claims more than it sees.
    #[schema(value_type = Option<String>, example = "video")]
    #[serde(default)]
    mode: Option<telemed::consult::ConsultMode>,
    /// `first` or `follow_up`.
    #[schema(value_type = String, example = "first")]
    kind: telemed::consult::ConsultKind,
    diagnosis: String,
    #[schema(value_type = Vec<Object>)]
    items: Vec<telemed::consult::RxItem>,
    #[serde(default)]
    advice: String,
}

/// How the doctor consults on this contact, as the server sees it: a chat is
/// text; a call is video only while the patient's video reaches this doctor
/// through the SFU now (routed to them and its packets arriving), else audio.
/// The TPG 2020 List A rule rests on this, so it is never the client's word.
async fn consult_mode(state: &AppState, contact: &Contact, doctor: &Staff) -> telemed::consult::ConsultMode {
    use telemed::consult::ConsultMode;
    if contact.channel == Channel::Chat {
        return ConsultMode::Text;
    }
    // Participant ids on the media plane: see `media::media_socket`.
    if state.sfu.receives_video(&contact.contact_id, &doctor.username, "patient").await {
        ConsultMode::Video
    } else {
        ConsultMode::Audio
    }
}

/// A doctor on the contact writes a prescription for its identified patient.
/// It is checked against the Telemedicine Practice Guidelines 2020 and the
/// shipped formulary with the consult mode the server determines (a stated
/// `mode` that claims more, such as video on a chat or with the patient's
/// camera off, is refused); a refused draft gets every problem at once and
/// stores nothing.
#[utoipa::path(post, path = "/api/contacts/{id}/prescriptions", tag = "contacts", params(("id" = String, Path)),
    request_body = PrescriptionInput,
    responses((status = 201, body = crate::store::StoredPrescription), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn prescribe(
    State(state): State<AppState>,
    super::Doctor(doctor): super::Doctor,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<PrescriptionInput>,
) -> Result<(StatusCode, axum::Json<crate::store::StoredPrescription>)> {
    let store = &state.store;
    on_contact(store, doctor.staff_id, &id).await?;
    let contact = store.contact(&id).await?;
    let mode = consult_mode(&state, &contact, &doctor).await;
    if let Some(claimed) = input.mode
        && rank(claimed) > rank(mode)
    {
        let name = |m| serde_json::to_value(m).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        return Err(ApiError::Invalid(vec![FieldError {
            field: "mode".into(),
            message: format!(
                "this is {} consult: {} (TPG 2020: List A on a first consult only by video)",
                match mode {
                    telemed::consult::ConsultMode::Audio => "an audio",
                    _ => "a text",
                },
                match mode {
                    telemed::consult::ConsultMode::Text => format!("a chat cannot be `{}`", name(claimed)),
                    _ => format!("the patient's video is not reaching you now, so it cannot be `{}`", name(claimed)),
                }
            ),
        }]));
    }
    let patient_id = contact
        .patient_id
        .ok_or_else(|| ApiError::Conflict("identify the patient on this contact before prescribing".into()))?;
    let patient = store.patient(patient_id).await?;
    let draft = telemed::consult::PrescriptionDraft {
        prescriber: telemed::consult::Prescriber {
            name: doctor.display_name.clone(),
            qualification: doctor.qualification.clone().unwrap_or_default(),
            registration_number: doctor.registration_number.clone().unwrap_or_default(),
        },
        patient: telemed::consult::RxPatient {
            name: patient.name.clone(),
            age_years: patient.age_years.and_then(|a| u32::try_from(a).ok()),
            sex: patient.sex.as_str().to_owned(),
        },
        mode,
        kind: input.kind,
        diagnosis: input.diagnosis,
        items: input.items,
        advice: input.advice,
    };
    let rx = draft.issue(&telemed::consult::Formulary::builtin()).map_err(|problems| {
        ApiError::Invalid(problems.into_iter().map(|p| FieldError { field: p.field, message: p.message }).collect())
    })?;
    let stored = crate::store::StoredPrescription {
        prescription_id: uuid::Uuid::new_v4().to_string(),
        contact_id: id,
        patient_id,
        doctor_id: doctor.staff_id,
        mode: serde_json::to_value(rx.mode).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
        kind: serde_json::to_value(rx.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
        body: serde_json::to_value(&rx).map_err(|e| ApiError::Internal(e.into()))?,
        issued_at: Utc::now(),
    };
    store.create_prescription(&stored).await?;
    store
        .append_audit(&crate::store::NewAudit {
            staff_id: Some(doctor.staff_id),
            action: "prescription.issue".into(),
            patient_id: Some(patient_id),
            contact_id: Some(stored.contact_id.clone()),
            detail: stored.prescription_id.clone(),
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(stored)))
}

/// How much a consult mode shows the doctor: text < audio < video.
fn rank(mode: telemed::consult::ConsultMode) -> u8 {
    use telemed::consult::ConsultMode;
    match mode {
        ConsultMode::Text => 0,
        ConsultMode::Audio => 1,
        ConsultMode::Video => 2,
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NoteInput {
    /// How consent to the consult was given (TPG 2020).
    #[schema(value_type = Object)]
    consent: telemed::consult::Consent,
    /// The patient's explicit consent to record and transcribe. Without it no audio is kept.
    #[serde(default)]
    recording_consent: bool,
    #[serde(default)]
    chief_complaint: String,
    #[serde(default)]
    history: String,
    #[serde(default)]
    findings: String,
    #[serde(default)]
    diagnosis: String,
    #[serde(default)]
    advice: String,
}

/// The doctor records consent and notes for the consult on this contact.
#[utoipa::path(put, path = "/api/contacts/{id}/consult", tag = "contacts", params(("id" = String, Path)),
    request_body = NoteInput,
    responses((status = 200, body = crate::store::ConsultNote), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn save_note(
    State(state): State<AppState>,
    super::Doctor(doctor): super::Doctor,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<NoteInput>,
) -> Result<axum::Json<crate::store::ConsultNote>> {
    use telemed::consult::Consent;
    let mut errors = Vec::new();
    match &input.consent {
        Consent::Implied => {}
        Consent::Explicit { by } if by.trim().is_empty() => {
            errors.push(FieldError { field: "consent.by".into(), message: "say who gave consent".into() })
        }
        Consent::Explicit { .. } => {}
        Consent::Guardian { name, relation, .. } => {
            if name.trim().is_empty() {
                errors.push(FieldError {
                    field: "consent.name".into(),
                    message: "the guardian's name is required".into(),
                });
            }
            if relation.trim().is_empty() {
                errors.push(FieldError {
                    field: "consent.relation".into(),
                    message: "say how the guardian is related".into(),
                });
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let store = &state.store;
    on_contact(store, doctor.staff_id, &id).await?;
    let note = crate::store::ConsultNote {
        contact_id: id.clone(),
        doctor_id: doctor.staff_id,
        consent: serde_json::to_value(&input.consent).map_err(|e| ApiError::Internal(e.into()))?,
        recording_consent: input.recording_consent,
        chief_complaint: input.chief_complaint.trim().to_owned(),
        history: input.history.trim().to_owned(),
        findings: input.findings.trim().to_owned(),
        diagnosis: input.diagnosis.trim().to_owned(),
        advice: input.advice.trim().to_owned(),
        updated_at: Utc::now(),
    };
    store.save_consult_note(&note).await?;
    // Recording (and transcription) only with the patient's explicit consent.
    state.sfu.set_recording(&id, note.recording_consent).await;
    Ok(axum::Json(note))
}

/// The consult's consent and notes, for staff on the contact.
#[utoipa::path(get, path = "/api/contacts/{id}/consult", tag = "contacts", params(("id" = String, Path)),
    responses((status = 200, body = crate::store::ConsultNote), (status = 401), (status = 403), (status = 404)))]
async fn read_note(
    State(store): State<Store>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<axum::Json<crate::store::ConsultNote>> {
    party(&store, &id, None, Some(user)).await?;
    store
        .consult_note(&id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::NotFound(format!("consult notes of contact {id}")))
}

/// The generic drugs a prescription may name, with their TPG list.
#[utoipa::path(get, path = "/api/formulary", tag = "contacts",
    responses((status = 200, body = [Object]), (status = 401), (status = 403)))]
async fn formulary(super::Doctor(_doctor): super::Doctor) -> axum::Json<Vec<telemed::consult::FormularyEntry>> {
    axum::Json(telemed::consult::Formulary::builtin().entries())
}

/// The consult on this contact as a FHIR R4 transaction Bundle for the HIMS:
/// Patient, Practitioner, Encounter (class VR), DocumentReference (notes),
/// MedicationRequests, and the follow-up Appointment at its Slot.
#[utoipa::path(get, path = "/api/contacts/{id}/fhir", tag = "contacts", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 401), (status = 403), (status = 404), (status = 409)))]
async fn fhir_bundle(
    State(store): State<Store>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<axum::Json<serde_json::Value>> {
    let staff_id = user.staff.staff_id;
    party(&store, &id, None, Some(user)).await?;
    let consult = gather_consult(&store, &id, staff_id).await?;
    Ok(axum::Json(crate::hims::consult_bundle(&consult)))
}

/// A doctor on the contact writes the finished consult into the patient's
/// HIMS record (the built-in record, or the FHIR server): the Encounter
/// (class VR), the notes and transcript as a DocumentReference, the
/// prescriptions as MedicationRequests, and the booked follow-up linked to
/// the Encounter. Once per contact; the HIMS takes all of it or none.
#[utoipa::path(post, path = "/api/contacts/{id}/hims-record", tag = "contacts", params(("id" = String, Path)),
    responses((status = 201, body = crate::store::ConsultRecord), (status = 401), (status = 403), (status = 404), (status = 409), (status = 502)))]
async fn record_consult(
    State(state): State<AppState>,
    super::Doctor(doctor): super::Doctor,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<crate::store::ConsultRecord>)> {
    let store = &state.store;
    on_contact(store, doctor.staff_id, &id).await?;
    let consult = gather_consult(store, &id, doctor.staff_id).await?;
    if consult.ended.is_none() {
        return Err(ApiError::Conflict("the consult is still going on: end the contact before recording it".into()));
    }
    let record = state.hims.record_consult(&consult).await?;
    store
        .append_audit(&crate::store::NewAudit {
            staff_id: Some(doctor.staff_id),
            action: "consult.record".into(),
            patient_id: Some(consult.patient.patient_id),
            contact_id: Some(id),
            detail: format!("{} {}", record.hims, record.encounter_ref),
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(record)))
}

/// What the consult on a contact gives the HIMS record, from the store.
async fn gather_consult(store: &Store, id: &str, recorded_by: StaffId) -> Result<crate::hims::Consult> {
    let contact = store.contact(id).await?;
    let patient_id =
        contact.patient_id.ok_or_else(|| ApiError::Conflict("the patient is not identified on this contact".into()))?;
    let doctor_id = contact.doctor_id.ok_or_else(|| ApiError::Conflict("no doctor has joined this contact".into()))?;
    let patient = store.patient(patient_id).await?;
    let doctor = store.staff(doctor_id).await?;
    let note = store.consult_note(id).await?;
    let notes = note
        .as_ref()
        .map(|n| {
            format!(
                "Chief complaint: {}\nHistory: {}\nFindings: {}\nProvisional diagnosis: {}\nAdvice: {}",
                n.chief_complaint, n.history, n.findings, n.diagnosis, n.advice
            )
        })
        .unwrap_or_default();
    // The call's transcript, kept only when the patient consented.
    let captions = store.captions(id).await?;
    let transcript = (!captions.is_empty()).then(|| {
        captions.iter().map(|c| format!("{} ({}): {}", c.role, c.participant, c.text)).collect::<Vec<_>>().join("\n")
    });
    let reason = note.as_ref().map(|n| n.chief_complaint.clone()).filter(|c| !c.is_empty()).unwrap_or_else(|| {
        contact.specialty.clone().map(|s| format!("Escalated to {s}")).unwrap_or_else(|| "Tele-consultation".into())
    });
    let mut medications = Vec::new();
    for rx in store.prescriptions_of(patient_id).await?.into_iter().filter(|p| p.contact_id == id) {
        for entry in rx.body["items"].as_array().into_iter().flatten() {
            let item: telemed::consult::RxItem =
                serde_json::from_value(entry[0].clone()).map_err(|e| ApiError::Internal(e.into()))?;
            medications.push((
                item.generic.clone(),
                format!("{}, {} {}, {}", item.strength, item.dose, item.frequency, item.duration),
            ));
        }
    }
    let follow_up = match store
        .appointments_of(patient_id)
        .await?
        .into_iter()
        .find(|a| a.contact_id.as_deref() == Some(id) && a.status == "booked")
    {
        Some(a) => Some((store.facility(a.slot.facility_id).await?, a)),
        None => None,
    };
    Ok(crate::hims::Consult {
        contact_id: id.to_owned(),
        patient,
        doctor,
        started: contact.answered_at.unwrap_or(contact.created_at),
        ended: contact.ended_at,
        reason,
        notes,
        transcript,
        medications,
        follow_up,
        recorded_by,
        now: Utc::now(),
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AmbulanceInput {
    /// Where the patient is: an address, a landmark, or `lat, lon`.
    location: String,
    /// `critical`, `urgent` or `routine`.
    urgency: String,
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
    if !["critical", "urgent", "routine"].contains(&input.urgency.as_str()) {
        errors.push(FieldError { field: "urgency".into(), message: "one of critical, urgent, routine".into() });
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
    };
    state.store.create_ambulance_request(&request).await?;
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
    deliver_ambulance(&state.store, state.settings.dispatch_webhook.as_deref(), &request.ambulance_request_id).await?;
    let stored = state.store.ambulance_request(&request.ambulance_request_id).await?;
    Ok((StatusCode::CREATED, axum::Json(stored)))
}

/// Sends a stored ambulance request to the dispatch webhook and records the outcome.
pub async fn deliver_ambulance(store: &Store, webhook: Option<&str>, request_id: &str) -> crate::store::Result<bool> {
    let request = store.ambulance_request(request_id).await?;
    let contact = store.contact(&request.contact_id).await?;
    let outcome = match webhook {
        None => Err("no dispatch webhook is configured; call the dispatch service (102)".to_owned()),
        Some(url) => {
            let patient = match request.patient_id {
                Some(p) => store.patient(p).await.ok(),
                None => None,
            };
            let requested_by = store.staff(request.requested_by).await.map(|s| s.display_name).unwrap_or_default();
            let body = serde_json::json!({
                "request_id": request.ambulance_request_id,
                "contact_id": request.contact_id,
                "urgency": request.urgency,
                "location": request.location,
                "note": request.note,
                "caller_phone": contact.caller_phone,
                "patient": patient.map(|p| serde_json::json!({"name": p.name, "age_years": p.age_years, "sex": p.sex})),
                "requested_by": requested_by,
                "requested_at": request.created_at,
            });
            match reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build() {
                Err(e) => Err(format!("no HTTP client: {e}")),
                Ok(client) => match client.post(url).json(&body).send().await {
                    Ok(res) if res.status().is_success() => Ok(Utc::now()),
                    Ok(res) => Err(format!("the dispatch webhook answered {}", res.status())),
                    Err(e) => Err(format!("the dispatch webhook could not be reached: {e}")),
                },
            }
        }
    };
    if let Err(e) = &outcome {
        tracing::error!(request = %request_id, error = %e, "ambulance request not delivered");
    }
    let delivered = outcome.is_ok();
    store.record_ambulance_delivery(request_id, outcome).await?;
    Ok(delivered)
}
