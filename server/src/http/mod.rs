//! The HTTP API: `GET /health`, `POST /v1/sync` for devices, and `/admin/…` for the admin token.
//! Database work runs in `spawn_blocking`; requests of different devices run at the same time
//! (the store keeps a pool of connections and locks nothing wider than one case).
//!
//! - [`auth`]: the [`auth::Device`] and [`auth::Admin`] extractors;
//! - [`admin`]: the admin handlers; [`error`]: [`AppError`], the one error answer.

pub mod admin;
pub mod auth;
mod error;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gridcase_core::model::Millis;
use gridcase_core::sync::wire;
use serde_json::json;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use admin::{MAX_LIST_LIMIT, case_detail, parse_instant};
use auth::Device;

use crate::store::Store;

/// The time source: milliseconds since the epoch. Tests pin it.
pub type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(now_millis)
}

pub fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// Largest request body accepted by default (a phone back from days offline with photos'
/// metadata and hundreds of cases stays far below it).
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Default limit on handling one request (slow 2G uploads included).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub clock: Clock,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl AppState {
    pub fn new(store: Arc<Store>) -> Self {
        AppState {
            store,
            clock: system_clock(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

pub use error::AppError;

/// The router, testable without sockets.
pub fn app(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    let timeout = state.request_timeout;
    Router::new()
        .route("/health", get(health))
        .route("/v1/sync", post(sync))
        .merge(admin::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::map_response(json_errors))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `state` on `listener` until the task is aborted (for tests and benchmarks).
pub fn spawn(
    listener: tokio::net::TcpListener,
    state: AppState,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move { axum::serve(listener, app(state)).await })
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok", "protocol": wire::PROTOCOL_VERSION}))
}

async fn not_found() -> AppError {
    AppError::NotFound("route".into())
}

async fn method_not_allowed() -> AppError {
    AppError::Refused {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: "this route does not take that method".into(),
    }
}

/// Errors produced by layers and extractors outside the handlers (the body limit's 413, the
/// timeout's 408, a rejected extractor) come as plain text; every error answer is JSON.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => return AppError::TooLarge.into_response(),
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let message = status.canonical_reason().unwrap_or("error").to_lowercase();
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

/// `POST /v1/sync`: one sync request of an authenticated device.
async fn sync(
    Device(device): Device,
    State(state): State<AppState>,
    body: Body,
) -> Result<Response, AppError> {
    let bytes = axum::body::to_bytes(body, state.max_body_bytes)
        .await
        .map_err(|e| {
            let too_large =
                std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                    e.source()
                })
                .any(|e| e.to_string().contains("length limit"));
            if too_large {
                AppError::TooLarge
            } else {
                AppError::BadRequest {
                    code: "bad_body",
                    message: "the request body could not be read".into(),
                }
            }
        })?;
    let now = (state.clock)();
    let store = state.store.clone();
    let encoded = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, AppError> {
        let (version, request) =
            wire::decode_request_versioned(&bytes).map_err(|e| AppError::BadRequest {
                code: e.code(),
                message: e.to_string(),
            })?;
        crate::sync::check_request_size(&request).map_err(|(code, message)| AppError::Refused {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code,
            message,
        })?;
        let response = store.sync(&device, &request, now)?;
        Ok(wire::encode_response_for(version, &response))
    })
    .await??;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        encoded,
    )
        .into_response())
}
