//! The printable prescription and its verification. Each prescription is
//! signed with the installation's key (HMAC-SHA256, made on first use and kept
//! in the store); the page carries a QR code of the verification address, so a
//! pharmacist can check that a paper prescription is genuine and unaltered.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::AppState;
use super::error::{ApiError, Result};
use super::json::ApiQuery;
use crate::store::{Store, StoreError, StoredPrescription};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/rx/{id}", get(page)).route("/rx/{id}/verify", get(verify))
}

async fn key(store: &Store) -> Result<Vec<u8>> {
    let encoded = store
        .secret("prescription-signing-key", || {
            let mut k = [0u8; 32];
            rand::rng().fill_bytes(&mut k);
            base64::engine::general_purpose::STANDARD.encode(k)
        })
        .await?;
    base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|e| ApiError::Internal(e.into()))
}

/// The signature of a prescription as issued: its id, time and content.
pub async fn signature(store: &Store, rx: &StoredPrescription) -> Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key(store).await?).map_err(|e| ApiError::Internal(e.into()))?;
    mac.update(rx.prescription_id.as_bytes());
    mac.update(rx.issued_at.to_rfc3339().as_bytes());
    mac.update(rx.body.to_string().as_bytes());
    let bytes = mac.finalize().into_bytes();
    Ok(bytes[..16].iter().map(|b| format!("{b:02x}")).collect())
}

#[derive(Deserialize)]
struct PageQuery {
    /// The patient's token for the contact (patients have no login).
    token: Option<String>,
}

struct Line {
    generic: String,
    strength: String,
    dose: String,
    frequency: String,
    duration: String,
}

#[derive(Template)]
#[template(path = "rx.html")]
struct RxPage {
    short_id: String,
    doctor_name: String,
    qualification: String,
    registration: String,
    mode: String,
    kind: String,
    issued: String,
    patient_name: String,
    age: String,
    sex: String,
    diagnosis: String,
    items: Vec<Line>,
    advice: String,
    signature: String,
    qr: String,
}

fn text(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// The print-ready prescription, for the patient (by token) or staff on the contact.
async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    super::contacts::MaybeUser(user): super::contacts::MaybeUser,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response> {
    let rx = state.store.prescription(&id).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::NotFound(format!("prescription {id}")),
        other => other.into(),
    })?;
    super::contacts::party_reading(&state.store, &rx.contact_id, q.token.as_deref(), user, "prescription.read").await?;
    let sig = signature(&state.store, &rx).await?;
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1:8080");
    let scheme = if state.settings.secure_cookies { "https" } else { "http" };
    let url = format!("{scheme}://{host}/rx/{id}/verify?sig={sig}");
    let qr = qrcode::QrCode::new(url.as_bytes())
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("QR code: {e}")))?
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(140, 140)
        .build();
    let b = &rx.body;
    let page = RxPage {
        short_id: id.chars().take(8).collect(),
        doctor_name: text(&b["prescriber"]["name"]),
        qualification: text(&b["prescriber"]["qualification"]),
        registration: text(&b["prescriber"]["registration_number"]),
        mode: rx.mode.to_string(),
        kind: rx.kind.as_str().replace('_', "-"),
        issued: crate::time::show(rx.issued_at),
        patient_name: text(&b["patient"]["name"]),
        age: b["patient"]["age_years"].as_u64().map(|a| a.to_string()).unwrap_or_default(),
        sex: text(&b["patient"]["sex"]),
        diagnosis: text(&b["diagnosis"]),
        items: b["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| Line {
                generic: text(&e[0]["generic"]),
                strength: text(&e[0]["strength"]),
                dose: text(&e[0]["dose"]),
                frequency: text(&e[0]["frequency"]),
                duration: text(&e[0]["duration"]),
            })
            .collect(),
        advice: text(&b["advice"]),
        signature: sig,
        qr,
    };
    let html = page.render().map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Html(html).into_response())
}

#[derive(Deserialize)]
struct VerifyQuery {
    sig: String,
}

/// What a verification tells: only enough to match the paper in hand.
#[derive(Serialize)]
struct Verdict {
    valid: bool,
    prescription_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prescriber: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    registration_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    medicines: Option<Vec<String>>,
}

/// Checks a prescription's signature (public: the QR code points here).
async fn verify(
    State(store): State<Store>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<VerifyQuery>,
) -> Result<axum::Json<Verdict>> {
    let invalid = || Verdict {
        valid: false,
        prescription_id: id.clone(),
        issued_at: None,
        prescriber: None,
        registration_number: None,
        medicines: None,
    };
    let rx = match store.prescription(&id).await {
        Ok(rx) => rx,
        Err(StoreError::NotFound) => return Ok(axum::Json(invalid())),
        Err(e) => return Err(e.into()),
    };
    let expected = signature(&store, &rx).await?;
    // Compare in constant time.
    let same = expected.len() == q.sig.len()
        && expected.bytes().zip(q.sig.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !same {
        return Ok(axum::Json(invalid()));
    }
    Ok(axum::Json(Verdict {
        valid: true,
        prescription_id: id,
        issued_at: Some(rx.issued_at),
        prescriber: rx.body["prescriber"]["name"].as_str().map(str::to_owned),
        registration_number: rx.body["prescriber"]["registration_number"].as_str().map(str::to_owned),
        medicines: Some(
            rx.body["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e[0]["generic"].as_str().map(str::to_owned))
                .collect(),
        ),
    }))
}
