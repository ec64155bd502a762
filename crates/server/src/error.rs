//! API errors: JSON `{"error": ..., "detail": ...}` with the right status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    /// Stable machine word: `not_found`, `bad_parameter`, `unavailable`, `internal`.
    pub error: &'static str,
    /// What went wrong, for humans.
    pub detail: String,
    /// The offending query parameter, for `bad_parameter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
}

impl ApiError {
    pub fn not_found(detail: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            error: "not_found",
            detail: detail.into(),
            parameter: None,
        }
    }

    pub fn bad_parameter(parameter: &str, detail: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error: "bad_parameter",
            detail: detail.into(),
            parameter: Some(parameter.to_string()),
        }
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: "unavailable",
            detail: detail.into(),
            parameter: None,
        }
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "internal",
            detail: detail.into(),
            parameter: None,
        }
    }
}

impl From<portwarden_store::StoreError> for ApiError {
    fn from(e: portwarden_store::StoreError) -> Self {
        match e {
            portwarden_store::StoreError::BadCursor => {
                ApiError::bad_parameter("cursor", e.to_string())
            }
            portwarden_store::StoreError::NotFound(_) => ApiError::not_found(e.to_string()),
            portwarden_store::StoreError::Closed => ApiError::unavailable(e.to_string()),
            other => {
                tracing::warn!(error = %other, "store query failed");
                ApiError::unavailable(format!("the store could not answer: {other}"))
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(&self)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
