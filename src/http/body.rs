//! Request bodies: JSON objects of at most 64 KiB, strictly typed.
//!
//! Every body type denies unknown fields, so a typo (`"nmae"`) is a 400 naming the field
//! rather than a silently ignored setting. Parse errors keep serde's message, which names
//! the field and the position; anything token-shaped in it is redacted, so a secret pasted
//! into the wrong field never comes back in an error body.

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::domain::token::redact;

pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body that must be present.
pub struct Json<T>(pub T);

/// A JSON body that may be absent (no bytes at all), in which case `T::default()` stands in.
pub struct OptionalJson<T>(pub T);

type BodyFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, ApiError>>>>;

/// Reads the body (at most [`MAX_BODY_BYTES`]) and parses it, or calls `when_empty` if there
/// is none. Whitespace alone is not a JSON text (RFC 8259): it is a malformed body, not an
/// absent one, as the OpenAPI document says (absent, or an object).
fn read_json<T: DeserializeOwned + 'static>(
    req: &HttpRequest,
    payload: &mut Payload,
    when_empty: fn() -> Result<T, ApiError>,
) -> BodyFuture<T> {
    let bytes = web::Bytes::from_request(req, payload);
    let deadline = super::limits::BodyDeadline::of(req);
    Box::pin(async move {
        let late = || ApiError::invalid(format!("the request body did not arrive within {} s", deadline.as_secs()));
        let bytes = actix_web::rt::time::timeout(deadline, bytes).await.map_err(|_| late())?.map_err(payload_error)?;
        if bytes.is_empty() { when_empty() } else { parse(&bytes) }
    })
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = BodyFuture<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_json(req, payload, || Err(ApiError::invalid("the request body must be a JSON object")));
        Box::pin(async move { body.await.map(Json) })
    }
}

impl<T: DeserializeOwned + Default + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = BodyFuture<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_json(req, payload, || Ok(T::default()));
        Box::pin(async move { body.await.map(OptionalJson) })
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde happily reads a struct from an array in field order (`["name", …]`); only an
    // object is a valid body here. Other non-objects fail in serde with a precise position.
    // Whitespace alone (nothing to find) is no JSON at all.
    if matches!(bytes.iter().find(|b| !b.is_ascii_whitespace()), None | Some(b'[')) {
        return Err(ApiError::invalid("the request body must be a JSON object"));
    }
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut json).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        // `.` and `?` are serde_path_to_error's names for "no particular field".
        let top_level = path == "." || path == "?";
        // serde names a missing field in its message, not its path: put it where every
        // other detail has the field, first.
        // (serde_json adds the position, which says nothing more here.)
        let missing = message.strip_prefix("missing field `").and_then(|rest| rest.split_once('`')).map(|(f, _)| f);
        let detail = match (missing, top_level) {
            (Some(field), true) => format!("{field}: is required"),
            (Some(field), false) => format!("{path}.{field}: is required"),
            // Valid JSON of another type (`null`, `42`, a string): serde's words for it name
            // our types ("expected struct CreateKey").
            (None, true) if message.starts_with("invalid type: ") => {
                "the request body must be a JSON object".to_owned()
            }
            (None, true) => format!("request body: {message}"),
            (None, false) => format!("{path}: {message}"),
        };
        // Both the path and the message may quote the body (a field name, a value).
        ApiError::invalid(redact(&detail))
    })?;
    json.end().map_err(|err| ApiError::invalid(format!("request body: {}", redact(&err.to_string()))))?;
    Ok(value)
}

fn payload_error(err: actix_web::Error) -> ApiError {
    match err.as_error::<PayloadError>() {
        Some(PayloadError::Overflow) => ApiError::PayloadTooLarge(MAX_BODY_BYTES),
        _ => ApiError::invalid(format!("could not read the request body: {err}")),
    }
}

/// The payload limit every route shares; installed once as app data.
pub fn payload_config() -> web::PayloadConfig {
    web::PayloadConfig::new(MAX_BODY_BYTES)
}
