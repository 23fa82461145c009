//! The one place where failures become HTTP responses: `{"error": {"code", "message", …details}}`.
//! `docs/api.md` lists every code with its causes and what a client does about it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use strata_core::ValidationError;
use strata_storage::{AppendError, ReadError};

/// An error answer: status, stable code, a message saying what to fix, and details for programs.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: Map::new() }
    }

    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// Prefixes the message with where in the request the problem is (`events[3]`).
    pub fn at(mut self, place: &str) -> Self {
        self.message = format!("{place}: {}", self.message);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = Map::with_capacity(self.details.len() + 2);
        error.insert("code".to_owned(), Value::from(self.code));
        error.insert("message".to_owned(), Value::from(self.message));
        error.extend(self.details);
        (self.status, axum::Json(json!({ "error": error }))).into_response()
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        match error {
            ValidationError::EventTooLarge { .. } | ValidationError::AppendTooLarge { .. } => {
                ApiError::too_large(error.to_string())
            }
            _ => ApiError::invalid(error.to_string()),
        }
    }
}

impl From<AppendError> for ApiError {
    fn from(error: AppendError) -> Self {
        let message = error.to_string();
        match error {
            AppendError::Invalid(error) => error.into(),
            AppendError::PartialDuplicate { event_id, committed_stream, committed_revision } => {
                ApiError::invalid(message)
                    .with("event_id", event_id.to_string())
                    .with("committed_stream", committed_stream.as_str())
                    .with("committed_revision", committed_revision.value())
            }
            AppendError::StreamDeleted { stream } => {
                ApiError::new(StatusCode::GONE, "stream_deleted", message).with("stream", stream.as_str())
            }
            AppendError::StreamNotFound { stream } => {
                ApiError::new(StatusCode::NOT_FOUND, "stream_not_found", message).with("stream", stream.as_str())
            }
            AppendError::OutcomeUnknown { .. } => ApiError::unavailable(message).with("outcome_unknown", true),
            AppendError::Poisoned { .. } | AppendError::NotWritten { .. } | AppendError::Closed => {
                ApiError::unavailable(message)
            }
            _ => ApiError::internal(message),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(error: ReadError) -> Self {
        let message = error.to_string();
        match error {
            ReadError::StreamNotFound { stream } => {
                ApiError::new(StatusCode::NOT_FOUND, "stream_not_found", message).with("stream", stream.as_str())
            }
            ReadError::StreamDeleted { stream } => {
                ApiError::new(StatusCode::GONE, "stream_deleted", message).with("stream", stream.as_str())
            }
            _ => ApiError::internal(message),
        }
    }
}
