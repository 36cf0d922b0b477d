//! The patient's side of a contact: a patient starts one from `/call` (no
//! login) and follows it with the one-time token it answers with: the
//! stream of its updates, chat messages, a callback request, hanging up.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use chrono::Utc;
use futures_util::Stream;
use routing::{ContactId, Event, Media, NewContact as RoutedContact, RoutingError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::contacts::{MaybeUser, Party, message_update, party, party_reading, status_update};
use super::error::{ApiError, FieldError, Result};
use super::json::{ApiJson, ApiQuery};
use super::live::{Reader, json_event, live, update_event};
use super::patients::normalise_phone;
use crate::auth::{new_token, token_hash};
use crate::center::{CenterError, Update};
use crate::store::{AbhaNumber, Channel, ChatMessage, ContactChange, ContactStatus, NewContact, RecordWrite, Store};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_contact))
        .routes(routes!(patient_stream))
        .routes(routes!(messages, send_message))
        .routes(routes!(conversation))
        .routes(routes!(request_callback))
        .routes(routes!(hang_up))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StartInput {
    /// `hi` or `en` (or another ISO 639-1 code of a language the caller speaks).
    #[schema(pattern = r"^\s*[A-Za-z]{2,3}\s*$")]
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
    super::client::ClientAddr(client): super::client::ClientAddr,
    ApiJson(input): ApiJson<StartInput>,
) -> Result<(StatusCode, axum::Json<Started>)> {
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
    if input.channel.is_messaging() {
        errors.push(FieldError {
            field: "channel".into(),
            message: format!(
                "{} messages arrive through the provider's webhook; use `chat` or `webrtc`",
                input.channel
            ),
        });
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    // Limits per number, per address and overall; an emergency always passes.
    if let Err((refusal, error)) = state.edge.admit_contact(client, phone.as_deref(), input.emergency, &language) {
        state.metrics.contact_refused(refusal.limit());
        return Err(error);
    }
    let new = NewContact {
        channel: Some(input.channel),
        language,
        emergency: input.emergency,
        caller_phone: phone,
        ehealth_card: input.ehealth_card.map(|c| c.trim().to_uppercase()).filter(|c| !c.is_empty()),
        abha_number: abha,
        patient_id: None,
        location: input.location.filter(|l| !l.trim().is_empty()),
    };
    let (id, token) = open_contact(&state, &new).await?;
    Ok((StatusCode::CREATED, axum::Json(Started { contact_id: id, token })))
}

/// Records a new contact and queues it (web callers and phone callers alike);
/// returns its id and the patient's one-time token.
pub(crate) async fn open_contact(state: &AppState, new: &NewContact) -> Result<(String, String)> {
    let id = uuid::Uuid::new_v4().to_string();
    let token = new_token();
    let media = if new.channel.is_some_and(Channel::is_text) { Media::Chat } else { Media::Voice };
    // The record and the routing event in one transaction: a crash leaves both or neither.
    let record = RecordWrite::Create { contact_id: id.clone(), new: new.clone(), token_hash: token_hash(&token) };
    state
        .center
        .handle_recording(
            Event::ContactArrived(RoutedContact {
                id: ContactId(id.clone()),
                media,
                language: new.language.clone(),
                emergency: new.emergency,
                specialty: None,
            }),
            record,
        )
        .await?;
    let channel = new.channel.map(|c| c.to_string()).unwrap_or_default();
    tracing::info!(contact = %id, %channel, emergency = new.emergency, "contact started");
    Ok((id, token))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct TokenQuery {
    /// The patient's token for this contact; staff use their session instead.
    pub(super) token: Option<String>,
    /// Messages after this id (for a reconnecting client).
    after: Option<i64>,
}

/// Where a patient's contact stands: the first `snapshot` event of their stream.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
struct PatientSnapshot {
    contact_id: String,
    /// `waiting`, `callback`, `connected`, `wrap_up`, `ended` or `abandoned`.
    status: ContactStatus,
    /// Their place in the queue and the estimated wait, while they wait and were told one.
    position: Option<usize>,
    estimated_wait_seconds: Option<i64>,
    /// The last chat message's id (`None` before the first).
    last_message_id: Option<i64>,
}

/// A patient's stream: their contact's updates, from its snapshot.
struct PatientReader {
    state: AppState,
    id: String,
    /// The last message the patient was sent: a fresh snapshot sends the ones after it.
    after: i64,
}

impl Reader for PatientReader {
    async fn snapshot(&mut self) -> Result<Vec<SseEvent>> {
        let contact = self.state.store.contact(&self.id).await?;
        let position = self.state.center.position(&self.id).await;
        let messages = self.state.store.chat_messages(&self.id, self.after).await?;
        let last_message_id = match messages.last() {
            Some(m) => Some(m.chat_message_id),
            None => self.state.store.last_chat_message_id(&self.id).await?,
        };
        let (place, wait) = match &position {
            Some(Update::Position { position, estimated_wait_seconds, .. }) => {
                (Some(*position), Some(*estimated_wait_seconds))
            }
            _ => (None, None),
        };
        let snap = PatientSnapshot {
            contact_id: contact.contact_id.clone(),
            status: contact.status,
            position: place,
            estimated_wait_seconds: wait,
            last_message_id,
        };
        // Then the same as updates, for pages that only read those: where the
        // contact stands, and the messages the reader has not had.
        let mut events = vec![json_event("snapshot", &snap)];
        events.extend([status_update(&contact), position].iter().flatten().map(update_event));
        for m in &messages {
            events.extend(message_update(m).as_ref().map(update_event));
        }
        self.after = last_message_id.unwrap_or(self.after);
        Ok(events)
    }

    fn pass(&mut self, u: &Update) -> bool {
        let keep = u.contact() == Some(self.id.as_str())
            && !matches!(
                u,
                Update::Offer { .. } | Update::Withdraw { .. } | Update::Alert { .. } | Update::Caption { .. }
            );
        if keep && let Update::Message { id, .. } = u {
            self.after = self.after.max(*id);
        }
        keep
    }
}

/// A contact's updates for its patient: first a `snapshot` event (where it
/// stands: its place and estimated wait, or connected), then `update`s:
/// position and wait, connected, messages, ended; a fresh `snapshot` when
/// the stream fell behind.
#[utoipa::path(get, path = "/api/contacts/{id}/stream", tag = "contacts", params(("id" = String, Path), TokenQuery),
    responses((status = 200, content_type = "text/event-stream", body = Update), (status = 401), (status = 403)))]
async fn patient_stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TokenQuery>,
) -> Result<Sse<impl Stream<Item = std::result::Result<SseEvent, Infallible>>>> {
    let Party::Patient = party(&state.store, &id, q.token.as_deref(), None).await? else { unreachable!() };
    let rx = state.center.subscribe();
    let shutdown = state.shutdown.clone();
    live(PatientReader { state, id, after: q.after.unwrap_or(0) }, rx, shutdown).await
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
    party_reading(&store, &id, q.token.as_deref(), user, "contact.messages").await?;
    Ok(axum::Json(store.chat_messages(&id, q.after.unwrap_or(0)).await?))
}

/// A WhatsApp or SMS contact's conversation: the channel, whether free
/// text may go now (WhatsApp's 24-hour window, an SMS STOP), and each
/// reply's progress with the provider. Staff on the contact; 404 for a
/// contact no patient's message opened.
#[utoipa::path(get, path = "/api/contacts/{id}/conversation", tag = "contacts", params(("id" = String, Path)),
    responses((status = 200, body = crate::channels::Conversation), (status = 401), (status = 403), (status = 404)))]
async fn conversation(
    State(state): State<AppState>,
    Path(id): Path<String>,
    user: super::AuthUser,
) -> Result<axum::Json<crate::channels::Conversation>> {
    let Party::Staff(_) = party_reading(&state.store, &id, None, Some(user), "contact.conversation").await? else {
        return Err(ApiError::Forbidden("staff only".into()));
    };
    crate::channels::conversation(&state, &id, Utc::now())
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::NotFound(format!("contact {id} is not a WhatsApp or SMS conversation")))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct MessageInput {
    /// 1 to 2000 characters.
    #[schema(min_length = 1, max_length = 2000, pattern = r"\S")]
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
        // Supervisors read any contact, but only those on it write into it.
        Party::Staff(s) => {
            if !state.store.works_on_contact(s.staff_id, &id).await? {
                return Err(ApiError::Forbidden(format!("only staff on contact {id} write into it")));
            }
            ("staff", Some(s.staff_id))
        }
    };
    let m = match (contact.channel.is_messaging(), staff) {
        // A reply on WhatsApp or SMS goes out through the channel's outbox, queued with the message.
        (true, Some(staff)) => {
            crate::channels::queue_reply(&state, &id, contact.channel, staff, body, Utc::now()).await?.0
        }
        (true, None) => {
            return Err(ApiError::Conflict(format!("the patient writes on {}, not here", contact.channel)));
        }
        (false, _) => state.store.add_chat_message(&id, sender, staff, body, Utc::now()).await?,
    };
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
    let record = RecordWrite::Change { contact_id: id.clone(), change: ContactChange::CallbackRequested, staff: None };
    state.center.handle_recording(Event::RequestCallback { contact: ContactId(id.clone()) }, record).await?;
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

/// The caller is gone: a waiting contact is abandoned, a connected one ends.
pub(crate) async fn end_or_abandon(state: &AppState, id: &str) -> Result<()> {
    let contact = ContactId(id.to_owned());
    let record = |change| RecordWrite::Change { contact_id: id.to_owned(), change, staff: None };
    match state
        .center
        .handle_recording(Event::Abandon { contact: contact.clone() }, record(ContactChange::Abandoned))
        .await
    {
        Ok(_) => {}
        Err(CenterError::Routing(RoutingError::Connected(_))) => {
            state.center.handle_recording(Event::End { contact }, record(ContactChange::Ended)).await?;
        }
        Err(e) => return Err(e.into()),
    }
    state.center.publish(Update::Ended { contact: id.to_owned() });
    Ok(())
}
