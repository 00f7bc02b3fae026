//! `AppError`: the one error answer of every route. JSON `{"error": "<code>", "message":
//! "..."}`; internal details are logged, never sent.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::quota::OverQuota;
use crate::metrics::ErrorCode;
use crate::store::StoreError;

/// An error answer: JSON `{"error": "<code>", "message": "..."}`. Internal details are logged,
/// never sent.
#[derive(Debug)]
pub enum AppError {
    Unauthorized,
    /// The device or user was revoked: the phone must wipe its data. `proof` (when the request
    /// carried a nonce) shows the phone that the answer comes from a holder of its secret.
    Revoked {
        proof: Option<String>,
    },
    BadRequest {
        code: &'static str,
        message: String,
    },
    TooLarge,
    /// Any other refusal with its own status and code.
    Refused {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    NotFound(String),
    Internal(String),
    /// 429: the device's quota for this period is used up.
    OverQuota(OverQuota),
}

impl From<OverQuota> for AppError {
    fn from(over: OverQuota) -> Self {
        AppError::OverQuota(over)
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AppError::NotFound(what),
            StoreError::Forbidden(message) => AppError::Refused {
                status: StatusCode::FORBIDDEN,
                code: "forbidden",
                message,
            },
            StoreError::Conflict(message) => AppError::Refused {
                status: StatusCode::CONFLICT,
                code: "conflict",
                message,
            },
            StoreError::Busy(what) => AppError::Refused {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "busy",
                message: format!("{what} is busy; try again"),
            },
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl AppError {
    /// A store error where [`StoreError::Invalid`] is the caller's mistake: 400 with `code`.
    pub fn invalid_as(code: &'static str) -> impl Fn(StoreError) -> AppError {
        move |e| match e {
            StoreError::Invalid(message) => AppError::BadRequest { code, message },
            other => other.into(),
        }
    }
}

impl From<PathRejection> for AppError {
    fn from(e: PathRejection) -> Self {
        AppError::BadRequest {
            code: "bad_path",
            message: e.body_text(),
        }
    }
}

impl From<QueryRejection> for AppError {
    fn from(e: QueryRejection) -> Self {
        AppError::BadRequest {
            code: "bad_query",
            message: e.body_text(),
        }
    }
}

impl From<tokio::task::JoinError> for AppError {
    fn from(e: tokio::task::JoinError) -> Self {
        AppError::Internal(format!("blocking task failed: {e}"))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let code = self.code();
        let (status, body) = match self {
            AppError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "unauthorized", "message": "missing, malformed or unknown token"}),
            ),
            AppError::Revoked { proof } => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "revoked", "wipe": true, "proof": proof,
                       "message": "this device was revoked; delete its data"}),
            ),
            AppError::BadRequest { code, message } => (
                StatusCode::BAD_REQUEST,
                json!({"error": code, "message": message}),
            ),
            AppError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": "too_large", "message": "the request body is too large"}),
            ),
            AppError::Refused {
                status,
                code,
                message,
            } => (status, json!({"error": code, "message": message})),
            AppError::NotFound(what) => (
                StatusCode::NOT_FOUND,
                json!({"error": "not_found", "message": format!("{what} not found")}),
            ),
            AppError::OverQuota(OverQuota { what, retry_after }) => {
                let body = json!({"error": "quota_exceeded", "retry_after": retry_after,
                    "message": format!("this device sent too many {what} in this period; \
                                        retry after {retry_after} s")});
                let retry = [(header::RETRY_AFTER, retry_after.to_string())];
                let mut response =
                    (StatusCode::TOO_MANY_REQUESTS, retry, Json(body)).into_response();
                response.extensions_mut().insert(ErrorCode(code));
                return response;
            }
            AppError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "internal", "message": "internal server error"}),
                )
            }
        };
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(code));
        response
    }
}

impl AppError {
    /// The `error` code of the answer (also counted by `/metrics`).
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthorized => "unauthorized",
            AppError::Revoked { .. } => "revoked",
            AppError::OverQuota(_) => "quota_exceeded",
            AppError::BadRequest { code, .. } | AppError::Refused { code, .. } => code,
            AppError::TooLarge => "too_large",
            AppError::NotFound(_) => "not_found",
            AppError::Internal(_) => "internal",
        }
    }
}
