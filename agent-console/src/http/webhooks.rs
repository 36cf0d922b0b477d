//! Providers' webhooks: messages and statuses from WhatsApp (and SMS),
//! stored first. Each is checked on its raw body (401 and a log line when
//! the signature is wrong or missing), parsed (400 naming what is wrong),
//! and its events journalled in one transaction before the 200; a channel
//! that is not configured answers 404. What they mean is `crate::channels`.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::Utc;

use super::AppState;
use super::error::{ApiError, Result};
use crate::channels::{twilio, whatsapp};
use crate::store::Provider;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks/whatsapp", get(whatsapp_verify).post(whatsapp_receive))
        .route(twilio::MESSAGE_PATH, axum::routing::post(twilio_message))
        .route(twilio::STATUS_PATH, axum::routing::post(twilio_status))
}

fn off(channel: &str) -> ApiError {
    ApiError::NotFound(format!("the {channel} channel is not configured"))
}

/// Compares two secrets in constant time (for equal lengths), so the
/// answer's timing does not tell how much of a guess was right.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Meta's verification request: `hub.mode=subscribe` with our verify token
/// is answered with `hub.challenge`; anything else is 403.
async fn whatsapp_verify(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<(StatusCode, String)> {
    let wa = state.channels.whatsapp.as_ref().ok_or_else(|| off("WhatsApp"))?;
    let mode = q.get("hub.mode").map(String::as_str);
    let token = q.get("hub.verify_token").map(String::as_str).unwrap_or_default();
    match (mode, q.get("hub.challenge")) {
        (Some("subscribe"), Some(challenge)) if same_secret(token, &wa.verify_token) => {
            tracing::info!("WhatsApp webhook verified");
            Ok((StatusCode::OK, challenge.clone()))
        }
        _ => {
            tracing::warn!(mode = ?mode, "WhatsApp webhook verification refused");
            Err(ApiError::Forbidden(
                "hub.verify_token: not this helpline's verify token (or hub.mode is not `subscribe`)".into(),
            ))
        }
    }
}

/// A WhatsApp notification: signature, parse, journal, 200.
async fn whatsapp_receive(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<StatusCode> {
    let wa = state.channels.whatsapp.as_ref().ok_or_else(|| off("WhatsApp"))?;
    let signature = headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok());
    if !whatsapp::signature_ok(&wa.app_secret, &body, signature) {
        // Logged: a wrong secret after a rotation, or someone forging messages.
        tracing::warn!(
            present = signature.is_some(),
            bytes = body.len(),
            "WhatsApp webhook refused: bad X-Hub-Signature-256"
        );
        return Err(ApiError::Unauthorized);
    }
    let events = whatsapp::parse(&body, &wa.phone_number_id).map_err(|e| match e {
        whatsapp::ParseError::Malformed(m) => ApiError::BadRequest(m),
        whatsapp::ParseError::UnknownAccount(m) => ApiError::NotFound(m),
    })?;
    let added = state.store.journal_channel_events(Provider::Whatsapp, &events, Utc::now()).await?;
    tracing::info!(events = events.len(), new = added, "WhatsApp webhook journalled");
    if added > 0 {
        state.channels.journal_written();
    }
    Ok(StatusCode::OK)
}

/// Checks a Twilio webhook's `X-Twilio-Signature` over the public URL it was
/// sent to (`--public-url` and the path and query as requested) and its form.
/// A bad or missing signature is 403 (as Twilio's own examples answer) and a
/// log line, and nothing is stored.
fn twilio_form(
    tw: &twilio::Twilio,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>> {
    let url = format!("{}{}", tw.public_url, uri.path_and_query().map(|p| p.as_str()).unwrap_or(uri.path()));
    let params = twilio::form(body).map_err(twilio_error)?;
    let signature = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok());
    if !twilio::signature_ok(&tw.auth_token, &url, &params, signature) {
        // Logged: a wrong token after a rotation, a wrong --public-url, or someone forging messages.
        tracing::warn!(present = signature.is_some(), %url, "Twilio webhook refused: bad X-Twilio-Signature");
        return Err(ApiError::Forbidden("X-Twilio-Signature: not signed by this helpline's Twilio account".into()));
    }
    Ok(params)
}

fn twilio_error(e: twilio::ParseError) -> ApiError {
    match e {
        twilio::ParseError::Malformed(m) => ApiError::BadRequest(m),
        twilio::ParseError::UnknownAccount(m) => ApiError::NotFound(m),
    }
}

/// An empty TwiML answer: Twilio itself sends nothing back to the patient.
fn empty_twiml() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/xml")], "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>")
}

/// A patient's SMS through Twilio: signature, parse, journal, empty TwiML.
async fn twilio_message(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse> {
    let tw = state.channels.twilio.as_ref().ok_or_else(|| off("Twilio SMS"))?;
    let params = twilio_form(tw, &uri, &headers, &body)?;
    let event = twilio::parse_message(&params, &tw.account_sid, Utc::now()).map_err(twilio_error)?;
    let added = state.store.journal_channel_events(Provider::Twilio, &[event], Utc::now()).await?;
    tracing::info!(new = added, "Twilio message journalled");
    if added > 0 {
        state.channels.journal_written();
    }
    Ok(empty_twiml())
}

/// A status callback of one of our Twilio sends; our outbox key is the URL's `careline_ref`.
async fn twilio_status(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode> {
    let tw = state.channels.twilio.as_ref().ok_or_else(|| off("Twilio SMS"))?;
    let params = twilio_form(tw, &uri, &headers, &body)?;
    let opaque = q.get(twilio::REF_PARAM).cloned();
    let event = twilio::parse_status(&params, &tw.account_sid, opaque, Utc::now()).map_err(twilio_error)?;
    let added = state.store.journal_channel_events(Provider::Twilio, &[event], Utc::now()).await?;
    if added > 0 {
        state.channels.journal_written();
    }
    Ok(StatusCode::OK)
}
