//! The one error type of the HTTP layer and how each kind answers.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use logfold_core::protocol::ErrorBody;
use logfold_core::PROTOCOL_VERSION;

use crate::store::StoreError;

/// Why a request was refused whole. Nothing was written for any of them.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No token, or one the server does not know: 401.
    #[error("{0}")]
    Unauthorized(String),
    /// A known token used outside its scope: 403.
    #[error("{0}")]
    Forbidden(String),
    /// Malformed JSON, query or log name: 400.
    #[error("{0}")]
    BadRequest(String),
    /// The body is over the request limit; the client should split it: 413.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The push body did not arrive in time: 408.
    #[error("{0}")]
    RequestTimeout(String),
    /// A push body that is not `application/json`: 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A snapshot set of an offset the log has not reached, or of a log never written: 409.
    #[error("{0}")]
    SnapshotAhead(String),
    /// The client speaks another protocol version: 426.
    #[error("{0}")]
    UpgradeRequired(String),
    /// Too many pushes wait for this log's next commit: 503, with `Retry-After`.
    #[error("{0}")]
    Busy(String),
    /// As many live tails are open as the server or the log may have: 503, with `Retry-After`.
    #[error("{0}")]
    TooManyTails(String),
    /// The database failed: 500, and the push is not acknowledged.
    #[error("storage failed: {0}")]
    Store(StoreError),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> AppError {
        match e {
            StoreError::ClientTaken(_) => AppError::Forbidden(e.to_string()),
            StoreError::Busy(_) => AppError::Busy(e.to_string()),
            e => AppError::Store(e),
        }
    }
}

impl AppError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
            AppError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            AppError::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "REQUEST_TIMEOUT"),
            AppError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")
            }
            AppError::SnapshotAhead(_) => (StatusCode::CONFLICT, "SNAPSHOT_AHEAD"),
            AppError::UpgradeRequired(_) => (StatusCode::UPGRADE_REQUIRED, "UPGRADE_REQUIRED"),
            AppError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "BUSY"),
            AppError::TooManyTails(_) => (StatusCode::SERVICE_UNAVAILABLE, "TOO_MANY_TAILS"),
            AppError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "SERVER"),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let AppError::Store(e) = &self {
            eprintln!("logfold-server: storage error: {e}");
        }
        let body = ErrorBody {
            code: code.to_owned(),
            message: self.to_string(),
            protocol: PROTOCOL_VERSION,
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // A full queue drains within a commit; open tails close at their clients' pace.
            let after = if matches!(self, AppError::TooManyTails(_)) {
                "5"
            } else {
                "1"
            };
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static(after));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
