//! A JSON body extractor whose rejections are problem details naming the field.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Like `axum::Json`, but a body that does not parse gets a 400 (not JSON) or
/// a 422 (wrong shape) that names the offending field, e.g.
/// `patients[0].sex: unknown variant "x"`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::BadRequest("expected a JSON body with `Content-Type: application/json`".into()));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("could not read the body: {e}")))?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses JSON, telling syntax errors (400) from shape errors (422, with the field's path).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::BadRequest(format!("the body is not valid JSON: {inner}"))
        } else {
            let field = if path == "." { "body".to_owned() } else { path };
            // serde's messages carry " at line L column C": noise for a field error.
            let message = inner.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
            ApiError::invalid(field, message)
        }
    })
}

/// Like `axum::extract::Query`, but a query string that does not parse gets a
/// problem-details 400 that says what was wrong.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))
    }
}
