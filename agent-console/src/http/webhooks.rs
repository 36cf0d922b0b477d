//! Providers' webhooks: messages and statuses from WhatsApp (and SMS),
//! stored first. Each is checked on its raw body (401 and a log line when
//! the signature is wrong or missing), parsed (400 naming what is wrong),
//! and its events journalled in one transaction before the 200; a channel
//! that is not configured answers 404. What they mean is `crate::channels`.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use chrono::Utc;

use super::AppState;
use super::error::{ApiError, Result};
use crate::channels::whatsapp;
use crate::store::Provider;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/webhooks/whatsapp", get(whatsapp_verify).post(whatsapp_receive))
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
