//! The HTTP API: `GET /health`, `GET /ready` (the database answers), `GET /metrics`
//! (Prometheus), `POST /v1/sync` for devices, and `/admin/…` for the admin token.
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

use crate::metrics::{Metrics, track_requests};
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
    pub metrics: Metrics,
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
            metrics: Metrics::new(),
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
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
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
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            track_requests,
        ))
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

/// How long `/ready` waits for the database before answering 503.
pub const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET /ready`: 200 when the database answers within [`READY_TIMEOUT`] and holds the
/// gridcase schema, else 503 (a load balancer then sends phones to another instance).
async fn ready(State(state): State<AppState>) -> Response {
    let store = state.store.clone();
    let check = tokio::task::spawn_blocking(move || store.schema_version());
    match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(Ok(version))) if version > 0 => {
            Json(json!({"status": "ready", "schema": version})).into_response()
        }
        outcome => {
            let reason = match outcome {
                Ok(Ok(Ok(_))) => "the database has no gridcase schema".to_owned(),
                Ok(Ok(Err(e))) => e.to_string(),
                Ok(Err(e)) => e.to_string(),
                _ => "the database did not answer in time".to_owned(),
            };
            tracing::warn!(reason, "not ready");
            let body = json!({"status": "unavailable", "error": "database_unavailable",
                              "message": "the database cannot be reached"});
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// `GET /metrics`: the Prometheus text format. Counts only, no personal data, no token needed
/// (expose it to the scraper's network only; see SECURITY.md).
async fn metrics(State(state): State<AppState>) -> Response {
    let store = state.store.clone();
    let now = (state.clock)();
    let read = tokio::task::spawn_blocking(move || store.db().case_gauges(now));
    let cases = match tokio::time::timeout(READY_TIMEOUT, read).await {
        Ok(Ok(Ok(cases))) => Some(cases),
        _ => {
            tracing::warn!("metrics: case counts unavailable");
            None
        }
    };
    let text = state.metrics.render(cases, state.store.db().pool_state());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
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
    let metrics = state.metrics.clone();
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
        let encoded = wire::encode_response_for(version, &response);
        metrics.sync_answered(bytes.len(), &response, encoded.len());
        Ok(encoded)
    })
    .await??;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        encoded,
    )
        .into_response())
}
