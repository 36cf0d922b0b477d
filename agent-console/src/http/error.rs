//! The one error type of the HTTP edge, sent as RFC 9457 problem details.
//!
//! Every error names what was wrong with the request: the field and the rule
//! it broke. Details of 5xx errors are logged and never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// One field that failed validation.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field's path in the request, e.g. `abha_number` or `items[2].dose`.
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON, or not the right shape.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no session, or an expired one.
    #[error("authentication required")]
    Unauthorized,
    /// 403: signed in, but the role may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    /// 409: it would clash with something already stored.
    #[error("{0}")]
    Conflict(String),
    /// 422: well-formed, but the values break a rule.
    #[error("the request has invalid fields")]
    Invalid(Vec<FieldError>),
    /// 502: the HIMS (a FHIR server) could not be reached, refused, or
    /// answered with something that is not FHIR; the detail says what it said.
    #[error("{0}")]
    BadGateway(String),
    /// 429: too many attempts; try again after this many seconds.
    #[error("too many attempts; try again in {0} s")]
    TooManyRequests(u64),
    /// 429: a limit on this client (a phone number, an address); the detail says which and what to do.
    #[error("{detail}")]
    RateLimited { retry_after: u64, detail: String },
    /// 503 with `Retry-After`: the server sheds load; the detail says what to do instead.
    #[error("{detail}")]
    Overloaded { retry_after: u64, detail: String },
    /// 415: the body's media type is not one this route reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 503: a service this needs is unreachable for now (shared routing state on Redis).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A 422 for one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid(vec![FieldError { field: field.into(), message: message.into() }])
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(_) | ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::NotFound("record".into()),
            StoreError::Conflict(what) => ApiError::Conflict(format!("already exists: {what}")),
            StoreError::Refused(why) => ApiError::Conflict(why),
            StoreError::InvalidReference(what) => ApiError::invalid(what, "refers to a record that does not exist"),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<crate::hims::HimsError> for ApiError {
    fn from(err: crate::hims::HimsError) -> Self {
        use crate::hims::HimsError;
        match err {
            HimsError::NotFound(what) => ApiError::NotFound(what),
            HimsError::Refused(why) => ApiError::Conflict(why),
            HimsError::Upstream(what) => {
                tracing::warn!(error = %what, "the HIMS failed a request");
                ApiError::BadGateway(what)
            }
            HimsError::Store(e) => e.into(),
        }
    }
}

/// RFC 9457 problem details, with Careline's `errors` extension listing fields.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            ApiError::Internal(err) => {
                tracing::error!(error = ?err, "request failed");
                "an internal error occurred; it has been logged".to_owned()
            }
            ApiError::Invalid(errors) => {
                errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ")
            }
            other => other.to_string(),
        };
        let errors = match self {
            ApiError::Invalid(ref errors) => errors.clone(),
            _ => Vec::new(),
        };
        let problem = Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail,
            errors,
        };
        let mut response = (status, Json(problem)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let ApiError::TooManyRequests(secs)
        | ApiError::RateLimited { retry_after: secs, .. }
        | ApiError::Overloaded { retry_after: secs, .. } = self
        {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"careline\""));
        }
        response
    }
}

/// Turns the error responses that do not come from [`ApiError`] into
/// problem details too: axum's own rejections (a path integer beyond i64, a
/// WebSocket route without upgrade headers, a body over the limit) are plain
/// text, and 404/405 from the router are empty. Their text becomes the
/// `detail`; their status and other headers (`Allow`) stay. HTML pages' errors stay HTML.
pub async fn problem_for_plain_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type =
        response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if content_type.starts_with("application/problem+json") || content_type.starts_with("text/html") {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Rejections are one line; a body larger than this is not one of them.
    let text = match axum::body::to_bytes(body, 16 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(e) => {
            tracing::warn!(error = %e, %status, "reading an error response's body failed");
            String::new()
        }
    };
    let detail = if text.is_empty() {
        match status {
            StatusCode::NOT_FOUND => "no such resource".to_owned(),
            StatusCode::METHOD_NOT_ALLOWED => "this method is not allowed here; see the Allow header".to_owned(),
            _ => status.canonical_reason().unwrap_or("error").to_owned(),
        }
    } else {
        text
    };
    let problem = Problem {
        kind: "about:blank".into(),
        title: status.canonical_reason().unwrap_or("Error").into(),
        status: status.as_u16(),
        detail,
        errors: Vec::new(),
    };
    let body = serde_json::to_vec(&problem).expect("a problem serialises");
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}
