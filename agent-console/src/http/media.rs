//! The media signaling socket of a contact's call: `/api/contacts/{id}/media`
//! (WebSocket, JSON messages of `telemed::media`). The patient joins with
//! their contact's token, staff with their session when they work on the
//! contact (supervisors on any). The socket only carries signaling: audio and
//! video go over the peer connection to the server's SFU.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use telemed::media::{ClientMessage, Role as MediaRole, ServerMessage};
use tokio::sync::mpsc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::contacts::{MaybeUser, Party, party, party_reading};
use super::error::{ApiError, Result};
use super::json::ApiQuery;
use super::patient_side::TokenQuery;
use super::{AppState, AuthUser};
use crate::store::Role;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(media_socket)).routes(routes!(levels)).routes(routes!(transcript))
}

/// How loud one participant was over the last 100 ms.
#[derive(Debug, Serialize, ToSchema)]
struct Level {
    participant: String,
    role: String,
    /// Milliseconds on the media plane's clock, at the end of the window.
    at_ms: u64,
    /// Root mean square of the decoded audio, 0 (silence) to 1 (full scale).
    rms: f32,
}

/// Who is talking: the loudness of each participant of the contact's call,
/// every 100 ms, from the server's decoded audio (server-sent events
/// `level`). For staff on the contact and supervisors; no audio is kept.
#[utoipa::path(get, path = "/api/contacts/{id}/media/levels", tag = "contacts", params(("id" = String, Path)),
    responses((status = 200, content_type = "text/event-stream", body = Level), (status = 401), (status = 403), (status = 404)))]
async fn levels(
    State(state): State<AppState>,
    Path(id): Path<String>,
    user: AuthUser,
) -> Result<Sse<impl Stream<Item = std::result::Result<SseEvent, Infallible>>>> {
    let Party::Staff(_) = party(&state.store, &id, None, Some(user)).await? else {
        return Err(ApiError::Forbidden("staff only".into()));
    };
    let taps = state.sfu.taps();
    let shutdown = state.shutdown.clone();
    // Per participant: (sum of squares, samples) of the window being filled.
    let windows: HashMap<String, (f64, usize)> = HashMap::new();
    let stream = futures_util::stream::unfold((taps, windows), move |(mut taps, mut windows)| {
        let (id, shutdown) = (id.clone(), shutdown.clone());
        async move {
            loop {
                let frame = tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    got = taps.recv() => match got {
                        Ok(frame) => frame,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return None,
                    },
                };
                if frame.session != id {
                    continue;
                }
                let window = windows.entry(frame.participant.clone()).or_default();
                window.0 += frame.pcm.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>();
                window.1 += frame.pcm.len();
                if window.1 >= 1_600 {
                    let rms = (window.0 / window.1 as f64).sqrt() as f32;
                    *window = (0.0, 0);
                    let level = Level {
                        participant: frame.participant,
                        role: frame.role.as_str().into(),
                        at_ms: frame.at_ms,
                        rms,
                    };
                    let event = SseEvent::default().event("level").json_data(&level).unwrap_or_default();
                    return Some((Ok(event), (taps, windows)));
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Signaling for the contact's voice/video call (WebSocket upgrade). Send an
/// `offer` with one audio m-line per party to hear (the first carries the
/// microphone), trickle `candidate`s; then `mute`, `video`, `hold` (staff),
/// `supervise` (supervisors: listen, whisper, barge) and `leave`. The server
/// sends `welcome` (with the ICE servers), `answer`, `candidate`, `roster`
/// and `error` (the call is then unchanged). Closing without `leave` keeps
/// the place for the grace period: a reloaded page rejoins with a new offer.
#[utoipa::path(get, path = "/api/contacts/{id}/media", tag = "contacts", params(("id" = String, Path), TokenQuery),
    responses((status = 101, description = "switching to the signaling WebSocket"), (status = 401), (status = 403), (status = 404)))]
async fn media_socket(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TokenQuery>,
    MaybeUser(user): MaybeUser,
    ws: WebSocketUpgrade,
) -> Result<Response> {
    let who = user.as_ref().map(|u| u.staff.username.clone());
    let party = party(&state.store, &id, q.token.as_deref(), user).await.inspect_err(|e| {
        tracing::warn!(contact = %id, staff = ?who, error = %e, "a join to a call was refused");
    })?;
    let (participant, role) = match party {
        Party::Patient => ("patient".to_owned(), MediaRole::Patient),
        Party::Staff(staff) => {
            let role = match staff.role {
                Role::Operator => MediaRole::Operator,
                Role::Doctor => MediaRole::Doctor,
                Role::Supervisor => MediaRole::Supervisor,
                Role::Admin => return Err(ApiError::Forbidden("administrators do not take part in calls".into())),
            };
            (staff.username, role)
        }
    };
    // Consent given before a restart still holds.
    if let Some(note) = state.store.consult_note(&id).await? {
        state.sfu.set_recording(&id, note.recording_consent).await;
    }
    Ok(ws.on_upgrade(move |socket| signaling(state, id, participant, role, socket)))
}

async fn signaling(state: AppState, contact: String, participant: String, role: MediaRole, socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let call = state.sfu.attach(&contact, &participant, role, tx.clone()).await;
    let (mut sink, mut stream) = socket.split();
    let send = |m: &ServerMessage| Message::Text(serde_json::to_string(m).unwrap_or_default().into());
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            out = rx.recv() => {
                let Some(out) = out else { break };
                if sink.send(send(&out)).await.is_err() {
                    call.disconnected().await;
                    return;
                }
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let message = match serde_json::from_str::<ClientMessage>(&text) {
                        Ok(m) => m,
                        Err(e) => {
                            let _ = tx.send(ServerMessage::Error { message: format!("malformed message: {e}") });
                            continue;
                        }
                    };
                    let leaving = matches!(message, ClientMessage::Leave);
                    if let Err(e) = call.handle(message).await {
                        tracing::info!(%contact, %participant, error = %e, "signaling request refused");
                        let _ = tx.send(ServerMessage::Error { message: e.to_string() });
                    }
                    if leaving {
                        let _ = sink.close().await;
                        return;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let _ = tx.send(ServerMessage::Error { message: "messages are JSON text".into() });
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    call.disconnected().await;
                    return;
                }
                Some(Ok(_)) => {}
            }
        }
    }
    call.leave().await;
}

/// The call's transcript so far (final captions; kept only with the
/// patient's consent to recording and transcription). Staff on the contact.
#[utoipa::path(get, path = "/api/contacts/{id}/transcript", tag = "contacts", params(("id" = String, Path)),
    responses((status = 200, body = [crate::store::Caption]), (status = 401), (status = 403), (status = 404)))]
async fn transcript(
    State(state): State<AppState>,
    Path(id): Path<String>,
    user: AuthUser,
) -> Result<axum::Json<Vec<crate::store::Caption>>> {
    let Party::Staff(_) = party_reading(&state.store, &id, None, Some(user), "contact.transcript").await? else {
        return Err(ApiError::Forbidden("staff only".into()));
    };
    Ok(axum::Json(state.store.captions(&id).await?))
}
