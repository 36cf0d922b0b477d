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
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
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
        if let ApiError::TooManyRequests(secs) = self {
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
