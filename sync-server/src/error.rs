//! `AppError`: what a request can fail with, as an HTTP answer. Client mistakes get a 4xx
//! with a JSON body saying what was wrong; internal failures a generic 500, the detail
//! goes to the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No token, an unknown token, a revoked device, or a departed user.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but the operation or document is not theirs.
    #[error("{0}")]
    Forbidden(String),
    /// The request is malformed or breaks a rule.
    #[error("{0}")]
    BadRequest(String),
    /// The referenced thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (e.g. a device joins twice).
    #[error("{0}")]
    Conflict(String),
    /// Uploaded changes do not reach the heads the device declared: corrupt, truncated, or
    /// built on changes this server no longer has. The device resends whole documents.
    #[error("{0}")]
    Incomplete(String),
    /// The body is over the configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// Something failed on our side.
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    fn status(&self) -> StatusCode {
        match self {
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::Incomplete(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let AppError::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        let body = serde_json::json!({ "error": self.to_string() });
        (self.status(), Json(body)).into_response()
    }
}

impl From<fieldsync_core::Error> for AppError {
    fn from(e: fieldsync_core::Error) -> Self {
        use fieldsync_core::Error as E;
        match e {
            E::NotPermitted(_) => AppError::Forbidden(e.to_string()),
            E::UnknownClient(_) | E::UnknownUser(_) | E::UnknownQuote(_) => {
                AppError::NotFound(e.to_string())
            }
            E::Departed(_) => AppError::Conflict(e.to_string()),
            E::Storage(_) => AppError::Internal(e.to_string()),
            _ => AppError::BadRequest(e.to_string()),
        }
    }
}

impl From<rusqlite::Error> for AppError {
    fn from(e: rusqlite::Error) -> Self {
        AppError::Internal(e.to_string())
    }
}

/// Result alias for handlers.
pub type AppResult<T> = Result<T, AppError>;
