//! The one place where failures become HTTP responses: [`strata_wire::ErrorBody`],
//! `{"error": {"code", "message", …details}}`. `docs/api.md` lists every code with its causes and
//! what a client does about it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use strata_core::ValidationError;
use strata_storage::{AppendError, ReadError};
use strata_wire::ErrorDetail;

/// An error answer: status, stable code, a message saying what to fix, and details for programs.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Boxed: errors travel in every handler's `Result`, which stays small.
    pub detail: Box<ErrorDetail>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, detail: Box::new(ErrorDetail::new(code, message)) }
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

    pub fn code(&self) -> &str {
        &self.detail.code
    }

    pub fn message(&self) -> &str {
        &self.detail.message
    }

    /// Sets details: `self.with(|detail| detail.stream = Some(..))`.
    pub fn with(mut self, set: impl FnOnce(&mut ErrorDetail)) -> Self {
        set(&mut self.detail);
        self
    }

    pub fn with_stream(self, stream: &strata_core::StreamId) -> Self {
        self.with(|detail| detail.stream = Some(stream.to_string()))
    }

    /// Prefixes the message with where in the request the problem is (`events[3]`).
    pub fn at(mut self, place: &str) -> Self {
        self.detail.message = format!("{place}: {}", self.detail.message);
        self
    }

    /// The body, `{"error": {…}}`.
    pub fn body(self) -> strata_wire::ErrorBody {
        strata_wire::ErrorBody { error: *self.detail }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
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
                ApiError::invalid(message).with(|detail| {
                    detail.event_id = Some(event_id.to_string());
                    detail.committed_stream = Some(committed_stream.to_string());
                    detail.committed_revision = Some(committed_revision.value());
                })
            }
            AppendError::StreamDeleted { stream } => {
                ApiError::new(StatusCode::GONE, "stream_deleted", message).with_stream(&stream)
            }
            AppendError::StreamNotFound { stream } => {
                ApiError::new(StatusCode::NOT_FOUND, "stream_not_found", message).with_stream(&stream)
            }
            AppendError::OutcomeUnknown { .. } => {
                ApiError::unavailable(message).with(|detail| detail.outcome_unknown = Some(true))
            }
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
                ApiError::new(StatusCode::NOT_FOUND, "stream_not_found", message).with_stream(&stream)
            }
            ReadError::StreamDeleted { stream } => {
                ApiError::new(StatusCode::GONE, "stream_deleted", message).with_stream(&stream)
            }
            _ => ApiError::internal(message),
        }
    }
}
