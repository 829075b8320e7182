//! The one API error: a status, a stable code and a message for people. Handlers return
//! `Result<_, ApiError>` and use `?`; causes of 5xx are logged here, never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ghbs_store::StoreError;
use ghbs_wire::{codes, ErrorBody};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            format!("{what} not found"),
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED, message)
    }

    /// A server-side failure: the cause is logged, the client gets a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            "internal server error; the server log has the details",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code.to_string(),
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

/// Store errors: `NotFound` is the caller's 404 (the handler names the thing when it can),
/// `Unavailable` and `StorageFull` a 503, anything else a logged 500.
/// A schedule or timezone the user sent that does not parse or runs too often: 400 with the
/// code that names which.
impl From<ghbs_core::ScheduleError> for ApiError {
    fn from(e: ghbs_core::ScheduleError) -> Self {
        use ghbs_core::ScheduleError;
        let code = match e {
            ScheduleError::Invalid(_) => codes::INVALID_SCHEDULE,
            ScheduleError::TooFrequent(_) => codes::SCHEDULE_TOO_FREQUENT,
            ScheduleError::UnknownTimezone(_) => codes::INVALID_TIMEZONE,
        };
        ApiError::bad_request(code, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound => ApiError::not_found("resource"),
            StoreError::Conflict { what, .. } => {
                ApiError::new(StatusCode::CONFLICT, codes::CONFLICT, what)
            }
            StoreError::Unavailable(m) => {
                tracing::error!(error = %m, "database unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    codes::UNAVAILABLE,
                    "the database is unavailable; try again shortly",
                )
            }
            StoreError::StorageFull(m) => {
                tracing::error!(error = %m, "database disk full");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    codes::UNAVAILABLE,
                    "the server's disk is full: changes cannot be saved until space is freed \
                     (reading still works)",
                )
            }
            StoreError::Other(m) => ApiError::internal(m),
        }
    }
}

/// Map a store `NotFound` to a 404 that names what was looked for.
pub trait OrNotFound<T> {
    fn or_not_found(self, what: &str) -> Result<T, ApiError>;
}

impl<T> OrNotFound<T> for Result<T, StoreError> {
    fn or_not_found(self, what: &str) -> Result<T, ApiError> {
        self.map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found(what),
            other => other.into(),
        })
    }
}
