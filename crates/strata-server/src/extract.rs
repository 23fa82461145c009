//! Request parsing shared by the handlers: bodies capped and time-limited before JSON parsing, query
//! strings parsed strictly (unknown parameters are errors), stream ids from the path validated.

use crate::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::time::Duration;
use strata_core::StreamId;

/// Largest request body read; larger bodies are refused with 413 before any parsing. The engine's
/// own limit (`APPEND_BYTES_MAX`, 16 MiB of events) applies to the decoded events; JSON adds escaping
/// and base64 adds a third, so the body may be somewhat larger than what it carries.
pub const REQUEST_BODY_BYTES_MAX: usize = 24 << 20;
/// A request body must arrive within this time (a slow or stalled client cannot hold a handler).
pub const REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// A JSON body of type `T`, read with the size and time limits above.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        require_json(request.headers())?;
        let length = request
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if length.is_some_and(|length| length > REQUEST_BODY_BYTES_MAX as u64) {
            return Err(body_too_large());
        }
        let read = tokio::time::timeout(REQUEST_BODY_TIMEOUT, read_body_capped(request.into_body())).await;
        let bytes = match read {
            Err(_) => {
                return Err(ApiError::new(
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    "invalid_request",
                    format!("the request body did not arrive within {} s", REQUEST_BODY_TIMEOUT.as_secs()),
                ));
            }
            Ok(read) => read?,
        };
        if bytes.is_empty() {
            return Err(ApiError::invalid("the request needs a JSON body"));
        }
        parse_json(&bytes).map(JsonBody)
    }
}

/// A body is read only when it is declared JSON: `Content-Type: application/json` (parameters such
/// as `charset=utf-8` aside). Besides saying what the body is, this makes every request with a body
/// one that a web page of another origin cannot send without the server's consent (`browser`).
fn require_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let declared = headers.get(axum::http::header::CONTENT_TYPE).map(|value| value.to_str().unwrap_or("\u{fffd}"));
    if declared.is_some_and(|declared| media_type(declared).eq_ignore_ascii_case("application/json")) {
        return Ok(());
    }
    let sent = declared.map_or_else(|| "without a Content-Type".to_owned(), |value| format!("as {value:?}"));
    Err(ApiError::new(
        axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("the request body was sent {sent}; send it as JSON with Content-Type: application/json"),
    ))
}

/// A `Content-Type` value's media type, its parameters (`; charset=utf-8`) left out; compare it
/// case-insensitively.
pub(crate) fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or_default().trim()
}

/// Reads a body up to [`REQUEST_BODY_BYTES_MAX`], refusing it as soon as it grows beyond.
async fn read_body_capped(body: axum::body::Body) -> Result<bytes::Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut collected = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| ApiError::invalid(format!("could not read the request body: {error}")))?;
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > REQUEST_BODY_BYTES_MAX {
                return Err(body_too_large());
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected.freeze())
}

fn body_too_large() -> ApiError {
    ApiError::too_large(format!(
        "the request body is larger than {} bytes; split the append into several requests",
        REQUEST_BODY_BYTES_MAX
    ))
    .with(|detail| detail.max_bytes = Some(REQUEST_BODY_BYTES_MAX as u64))
}

/// Parses a JSON body; a refusal names where in the body the problem is (`checks[0].expected_revision:
/// …`) and says what is wrong.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let strata_wire::de::Object(value) = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| ApiError::invalid(json_error_message(&error)))?;
    deserializer.end().map_err(|error| ApiError::invalid(format!("the body is not valid JSON: {error}")))?;
    Ok(value)
}

fn json_error_message(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    use serde_json::error::Category;
    match error.inner().classify() {
        Category::Syntax | Category::Eof => format!("the body is not valid JSON: {}", error.inner()),
        Category::Data if error.path().iter().next().is_none() => {
            format!("the body does not have the expected shape: {}", error.inner())
        }
        Category::Data => format!("the body does not have the expected shape: {error}"),
        Category::Io => format!("could not read the body: {}", error.inner()),
    }
}

/// Parses a JSON value given in a query parameter (a DCB query).
pub fn json_param<T: DeserializeOwned>(name: &str, text: &str) -> Result<T, ApiError> {
    serde_json::from_str::<strata_wire::de::Object<T>>(text)
        .map(|object| object.0)
        .map_err(|error| ApiError::invalid(format!("query parameter {name}: {error}")))
}

/// The stream id of a `/v1/streams/{stream}` path, percent-decoded and validated.
#[derive(Debug)]
pub struct StreamPath(pub StreamId);

impl<S: Send + Sync> FromRequestParts<S> for StreamPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(text) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::invalid(format!("the stream id in the path: {}", rejection.body_text())))?;
        StreamId::new(text).map(StreamPath).map_err(|error| ApiError::from(error).at("the stream id in the path"))
    }
}

/// A query string, parsed strictly: each parameter taken by name, and whatever is left over is an
/// error naming the parameters the endpoint does take.
#[derive(Debug)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Params::parse(parts.uri.query().unwrap_or(""))
    }
}

impl Params {
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let decode = |text: &str| -> Result<String, ApiError> {
            let text = text.replace('+', " ");
            percent_encoding::percent_decode_str(&text)
                .decode_utf8()
                .map(|text| text.into_owned())
                .map_err(|_| ApiError::invalid(format!("query parameter {text:?} is not valid UTF-8 once decoded")))
        };
        let mut pairs = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            pairs.push((decode(name)?, decode(value)?));
        }
        Ok(Self { pairs })
    }

    /// Takes every value of `name` (comma-separated values are split too: `types=a,b` = `types=a&types=b`).
    pub fn take_list(&mut self, name: &str) -> Vec<String> {
        let mut values = Vec::new();
        self.pairs.retain(|(key, value)| {
            if key != name {
                return true;
            }
            values.extend(value.split(',').filter(|part| !part.is_empty()).map(str::to_owned));
            false
        });
        values
    }

    /// Takes the one value of `name`, if given; given twice is an error.
    pub fn take(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        let mut found = None;
        let mut duplicate = false;
        self.pairs.retain(|(key, value)| {
            if key != name {
                return true;
            }
            duplicate |= found.replace(value.clone()).is_some();
            false
        });
        if duplicate {
            return Err(ApiError::invalid(format!("query parameter {name} is given more than once")));
        }
        Ok(found)
    }

    /// Takes `name` as a non-negative integer.
    pub fn take_u64(&mut self, name: &str) -> Result<Option<u64>, ApiError> {
        self.take(name)?.map(|text| parse_u64(name, &text)).transpose()
    }

    /// Refuses parameters nobody took.
    pub fn finish(self, accepted: &[&str]) -> Result<(), ApiError> {
        match self.pairs.first() {
            None => Ok(()),
            Some((name, _)) if accepted.is_empty() => {
                Err(ApiError::invalid(format!("unknown query parameter {name:?}: this endpoint takes none")))
            }
            Some((name, _)) => Err(ApiError::invalid(format!(
                "unknown query parameter {name:?}: this endpoint takes {}",
                accepted.join(", ")
            ))),
        }
    }
}

/// A non-negative integer parameter, with a message that says what is wrong with it.
pub fn parse_u64(name: &str, text: &str) -> Result<u64, ApiError> {
    if text.starts_with('-') {
        return Err(ApiError::invalid(format!("{name} must not be negative, got {text}")));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|_| ApiError::invalid(format!("{name} is too large: {text} (the limit is {})", u64::MAX)));
    }
    Err(ApiError::invalid(format!("{name} must be a non-negative integer, got {text:?}")))
}
