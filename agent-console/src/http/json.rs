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
        match req.headers().get(header::CONTENT_TYPE) {
            None => {
                return Err(ApiError::UnsupportedMediaType(
                    "the request has no Content-Type; send the JSON body with `Content-Type: application/json`".into(),
                ));
            }
            Some(v) if !is_json(v.to_str().unwrap_or_default()) => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "Content-Type {:?} is not JSON; send `Content-Type: application/json`",
                    String::from_utf8_lossy(v.as_bytes())
                )));
            }
            Some(_) => {}
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("could not read the body: {e}")))?;
        parse(&bytes).map(ApiJson)
    }
}

/// Whether a `Content-Type` is JSON: `application/json` or a structured
/// syntax suffix `application/<x>+json` (RFC 6839 §3.1), with any parameters
/// (`; charset=utf-8`). Media types are case-insensitive (RFC 9110 §8.3.1).
/// `application/jsonfoo` is not JSON.
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let Some(subtype) = essence.strip_prefix("application/") else { return false };
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b));
    subtype == "json" || subtype.strip_suffix("+json").is_some_and(token)
}

/// A 422 for a name or other one-line text with control characters (NUL,
/// BEL, ESC, CR, LF, ...): they forge log lines and mail headers, and break
/// printed records and CSV exports. `None` when the text is clean.
pub fn control_characters(field: &str, value: &str) -> Option<super::error::FieldError> {
    value.chars().find(|c| c.is_control()).map(|c| super::error::FieldError {
        field: field.into(),
        message: format!("must not contain control characters (found U+{:04X})", u32::from(c)),
    })
}

/// Parses JSON, telling syntax errors (400) from shape errors (422, with the
/// field's path). A number written with a zero fraction (`3.0`, `1e2`) is an
/// integer, as JSON Schema counts it (the OpenAPI document's `integer`), so it
/// fills an integer field; `3.5` does not.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    integral_floats_to_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        ApiError::invalid(field, err.into_inner().to_string())
    })
}

/// Rewrites every float with no fraction that an `i64` holds exactly as that integer.
fn integral_floats_to_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // ±2^63 bounds the i64s; `f as i64` is exact inside them for a whole f.
            if f.fract() == 0.0 && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) {
                *value = serde_json::Value::from(f as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
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

#[cfg(test)]
mod tests {
    use super::{ApiError, is_json, parse};

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Shape {
        days: i64,
        share: f64,
        seats: Vec<u8>,
    }

    #[test]
    fn whole_numbers_written_as_floats_fill_integer_fields() {
        let shape: Shape = parse(br#"{"days": 7.0, "share": 2, "seats": [1e1, 2.0]}"#).unwrap();
        assert_eq!(shape, Shape { days: 7, share: 2.0, seats: vec![10, 2] });
        let half = parse::<Shape>(br#"{"days": 7.5, "share": 1.5, "seats": []}"#).unwrap_err();
        assert!(matches!(&half, ApiError::Invalid(f) if f[0].field == "days"), "{half:?}");
        let huge = parse::<Shape>(br#"{"days": 1e30, "share": 1, "seats": []}"#).unwrap_err();
        assert!(matches!(&huge, ApiError::Invalid(f) if f[0].field == "days"), "{huge:?}");
        let nested = parse::<Shape>(br#"{"days": 1, "share": 1, "seats": [1, 256.0]}"#).unwrap_err();
        assert!(matches!(&nested, ApiError::Invalid(f) if f[0].field == "seats[1]"), "{nested:?}");
        assert!(matches!(parse::<Shape>(b"{\"days\": "), Err(ApiError::BadRequest(_))));
    }

    #[test]
    fn json_media_types() {
        for yes in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
            "application/fhir+json;fhirVersion=4.0",
        ] {
            assert!(is_json(yes), "{yes}");
        }
        for no in [
            "application/jsonfoo",
            "application/json-seq",
            "text/json",
            "application/+json",
            "application/x+jsonx",
            "",
            "json",
        ] {
            assert!(!is_json(no), "{no}");
        }
    }
}
