//! The HTTP API: `GET /health`, `GET /ready` (the database answers), `GET /metrics`
//! (Prometheus), `POST /v1/sync` for devices, and `/admin/…` for admin accounts.
//! Database work runs in `spawn_blocking`; requests of different devices run at the same time
//! (the store keeps a pool of connections and locks nothing wider than one case). A sync
//! request passes the device's quota, then its body must arrive within the body timeout; a
//! heavy one (a body over [`HEAVY_BODY_BYTES`], or changes over [`HEAVY_OPS`] operations)
//! waits for one of a few heavy permits before it is decoded or judged, so devices sending
//! maximal requests do not hold up the others' small syncs.
//!
//! - [`auth`]: the [`auth::Device`] and [`auth::Admin`] extractors;
//! - [`admin`]: the admin handlers; [`error`]: [`AppError`], the one error answer;
//! - [`quota`]: per-device quotas; [`serve`]: the accept loop with a header read timeout;
//! - [`console`]: the admin console under `/console` (its files, cookie sessions, its reads);
//! - `automerge_repo`: `GET /v1/automerge-repo`, the WebSocket of web clients (`crate::amrepo`).

pub mod admin;
mod audit_draws;
pub mod auth;
mod automerge_repo;
mod blobs;
pub mod console;
mod error;
mod people;
pub mod quota;
mod report;
pub mod routes;
pub mod serve;
pub mod sign_in;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gridcase_core::model::Millis;
use gridcase_core::sync::SyncRequest;
use gridcase_core::sync::wire;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use admin::{MAX_LIST_LIMIT, case_detail, parse_instant};
use auth::{Device, DeviceToken};
use quota::{QuotaLimits, Quotas};
use routes::Routes;

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
/// Default limit on receiving a request's line and headers (a few hundred bytes).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(15);
/// Default limit on receiving a sync request's body.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(90);
/// A sync body larger than this is heavy: it is decoded and judged only with a heavy permit.
pub const HEAVY_BODY_BYTES: usize = 1024 * 1024;
/// A sync request whose changes hold more operations than this is heavy: it is judged only with
/// a heavy permit (a few hundred new cases stay below).
pub const HEAVY_OPS: u64 = 100_000;
/// Default number of heavy requests decoded and judged at once.
pub const DEFAULT_HEAVY_REQUESTS: usize = 2;
/// Sync bodies decoded at once. Decoding is fast (well under a second) but its memory is
/// bounded only by the decoded size (64 MiB) times the per-change overhead, so it is counted.
pub const DECODING_AT_ONCE: usize = 4;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub clock: Clock,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub metrics: Metrics,
    /// Time allowed to receive a sync request's body once its headers are in.
    pub body_timeout: Duration,
    pub quotas: Arc<Quotas>,
    /// Permits for heavy requests (see [`HEAVY_BODY_BYTES`]).
    pub heavy: Arc<Semaphore>,
    /// Permits to decode a sync body ([`DECODING_AT_ONCE`]).
    pub decoding: Arc<Semaphore>,
    /// Failed admin sign-ins per name ([`sign_in::SignInLimiter`]).
    pub sign_ins: Arc<sign_in::SignInLimiter>,
    /// The console's session cookie is marked `Secure` (behind TLS; `secure_cookie` in the
    /// config file).
    pub secure_cookie: bool,
    /// How often an open console page's event stream looks for changed cases.
    pub live_poll: Duration,
    /// Attachment bytes (`crate::blobs`); `None`: the blob routes answer 503.
    pub blobs: Option<crate::blobs::Blobs>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("quotas", &self.quotas.limits())
            .finish_non_exhaustive()
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
            body_timeout: DEFAULT_BODY_TIMEOUT,
            quotas: Arc::new(Quotas::new(QuotaLimits::default())),
            heavy: Arc::new(Semaphore::new(DEFAULT_HEAVY_REQUESTS)),
            decoding: Arc::new(Semaphore::new(DECODING_AT_ONCE)),
            sign_ins: Arc::default(),
            secure_cookie: false,
            live_poll: console::LIVE_POLL,
            blobs: None,
        }
    }

    pub fn with_quotas(mut self, limits: QuotaLimits) -> Self {
        self.quotas = Arc::new(Quotas::new(limits));
        self
    }

    pub fn with_heavy_requests(mut self, permits: usize) -> Self {
        self.heavy = Arc::new(Semaphore::new(permits.max(1)));
        self
    }

    pub fn with_blobs(mut self, blobs: crate::blobs::Blobs) -> Self {
        self.blobs = Some(blobs);
        self
    }

    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

pub use error::AppError;

/// Every route, each added once through [`Routes::add`] (see [`routes`] for why): the router
/// is built from it and the OpenAPI document is checked against it.
fn all_routes() -> Routes {
    Routes::new()
        .add(Method::GET, "/health", health)
        .add(Method::GET, "/ready", ready)
        .add(Method::GET, "/metrics", metrics)
        .add(Method::POST, "/v1/sync", sync)
        .add(Method::GET, "/admin/openapi.json", openapi)
        .with(admin::routes)
        .with(console::routes)
        .with(blobs::routes)
        .with(automerge_repo::routes)
}

/// The method and path of every route [`app`] answers.
pub fn route_list() -> Vec<(Method, &'static str)> {
    all_routes().list().to_vec()
}

/// The router, testable without sockets.
pub fn app(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    let timeout = state.request_timeout;
    all_routes()
        .into_router()
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::map_response(console::security_headers))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            track_requests,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `state` on `listener` until the task is aborted (for tests and benchmarks), with
/// the default header timeout.
pub fn spawn(
    listener: tokio::net::TcpListener,
    state: AppState,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    spawn_with(listener, state, DEFAULT_HEADER_TIMEOUT)
}

/// [`spawn`] with a header read timeout of its own.
pub fn spawn_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    header_timeout: Duration,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let router = app(state);
    tokio::spawn(async move {
        let forever = std::future::pending();
        serve::serve_until(listener, router, header_timeout, forever, Duration::ZERO).await
    })
}

/// `GET /admin/openapi.json`: the OpenAPI document of this API. No token needed: it describes
/// the routes (as the public source does), no data, and a console reads it before signing in.
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        routes::OPENAPI_JSON,
    )
        .into_response()
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

/// The largest sync body read before its token is checked. An "anything new?" sync is tens of
/// bytes and a note's push a few KB: such a body is read first and its token checked on the
/// blocking thread that then decodes and answers it (one hop between the async workers and the
/// blocking pool instead of two). A larger body, or one of unknown length, is read only once
/// its token checks out.
pub const PRE_AUTH_BODY_BYTES: u64 = 64 * 1024;

/// `POST /v1/sync`: one sync request of an authenticated device: token, quota, body (within the
/// body timeout), then decode, check and commit on a blocking thread (heavy bodies with a
/// permit). A small body's token is checked on that thread ([`PRE_AUTH_BODY_BYTES`]).
async fn sync(
    token: DeviceToken,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    let small = axum::body::HttpBody::size_hint(&body)
        .exact()
        .is_some_and(|n| n <= PRE_AUTH_BODY_BYTES);
    let caller = if small {
        Caller::Claimed(token)
    } else {
        let store = state.store.clone();
        let Device(device) = tokio::task::spawn_blocking(move || token.check(&store)).await??;
        state
            .quotas
            .request(&device.device_id, announced, (state.clock)())?;
        Caller::Known(device)
    };
    let bytes = tokio::time::timeout(
        state.body_timeout,
        axum::body::to_bytes(body, state.max_body_bytes),
    )
    .await
    .map_err(|_| AppError::Refused {
        status: StatusCode::REQUEST_TIMEOUT,
        code: "timeout",
        message: "the request body did not arrive in time".into(),
    })?
    .map_err(body_error)?;
    let mut permit = None;
    if bytes.len() > HEAVY_BODY_BYTES {
        permit = Some(heavy_permit(&state).await?);
    }
    let now = (state.clock)();
    let decoding = permit_of(&state.decoding).await?;
    let (store, quotas, metrics) = (
        state.store.clone(),
        state.quotas.clone(),
        state.metrics.clone(),
    );
    // One blocking task checks a small body's token, decodes and, unless the request turns out
    // heavy, answers it: each hop between the async workers and the blocking pool costs a
    // context switch or two.
    let needs_permit = permit.is_none();
    let step = tokio::task::spawn_blocking(move || {
        let device = caller.admitted(&store, &quotas, announced, bytes.len(), now)?;
        let decoded = decode_checked(&bytes, &quotas, &device.device_id, now);
        drop(decoding);
        let (version, request, ops) = decoded?;
        let answer = Answer {
            store,
            metrics,
            device,
            body_len: bytes.len(),
            now,
        };
        if needs_permit && ops > HEAVY_OPS {
            return Ok(Step::Heavy(Box::new((answer, version, request))));
        }
        answer.encode(version, &request).map(Step::Answered)
    })
    .await??;
    let encoded = match step {
        Step::Answered(encoded) => encoded,
        Step::Heavy(heavy) => {
            let (answer, version, request) = *heavy;
            permit = Some(heavy_permit(&state).await?);
            tokio::task::spawn_blocking(move || answer.encode(version, &request)).await??
        }
    };
    drop(permit);
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        encoded,
    )
        .into_response())
}

/// Who sent a sync request: a device checked before its body was read, or a token still to be
/// checked (a small body, [`PRE_AUTH_BODY_BYTES`]).
enum Caller {
    Known(crate::store::DeviceCtx),
    Claimed(DeviceToken),
}

impl Caller {
    /// The device, its token checked now if it was not yet, once the request passes its
    /// quotas: the request itself (charged before the body for a known device), then the body
    /// bytes beyond what its `Content-Length` announced. Blocking.
    fn admitted(
        self,
        store: &Store,
        quotas: &Quotas,
        announced: u64,
        body_len: usize,
        now: Millis,
    ) -> Result<crate::store::DeviceCtx, AppError> {
        let device = match self {
            Caller::Known(device) => device,
            Caller::Claimed(token) => {
                let Device(device) = token.check(store)?;
                quotas.request(&device.device_id, announced, now)?;
                device
            }
        };
        let extra = (body_len as u64).saturating_sub(announced);
        if extra > 0 {
            quotas.body(&device.device_id, extra, now)?;
        }
        Ok(device)
    }
}

/// What answering a decoded sync request needs, moved onto a blocking thread.
struct Answer {
    store: Arc<Store>,
    metrics: Metrics,
    device: crate::store::DeviceCtx,
    body_len: usize,
    now: Millis,
}

impl Answer {
    /// Runs the sync and encodes its response in the request's protocol version.
    fn encode(self, version: u16, request: &SyncRequest) -> Result<Vec<u8>, AppError> {
        let response = self.store.sync(&self.device, request, self.now)?;
        let encoded = wire::encode_response_for(version, &response);
        self.metrics
            .sync_answered(self.body_len, &response, encoded.len());
        Ok(encoded)
    }
}

/// Where a decoded request stands: answered, or heavy and waiting for a permit.
enum Step {
    Answered(Vec<u8>),
    Heavy(Box<(Answer, u16, SyncRequest)>),
}

async fn heavy_permit(state: &AppState) -> Result<OwnedSemaphorePermit, AppError> {
    permit_of(&state.heavy).await
}

async fn permit_of(permits: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit, AppError> {
    permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| AppError::Internal("request permits were closed".into()))
}

/// Decodes a sync body, refuses it if it is too large or its changes exceed the device's
/// quota, and counts its operations.
fn decode_checked(
    bytes: &[u8],
    quotas: &Quotas,
    device: &str,
    now: Millis,
) -> Result<(u16, SyncRequest, u64), AppError> {
    let (version, request) =
        wire::decode_request_versioned(bytes).map_err(|e| AppError::BadRequest {
            code: e.code(),
            message: e.to_string(),
        })?;
    let ops =
        crate::sync::check_request_size(&request).map_err(|(code, message)| AppError::Refused {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code,
            message,
        })?;
    let changes = request.pushes.iter().map(|p| p.changes.len() as u64).sum();
    quotas.changes(device, changes, now)?;
    Ok((version, request, ops))
}

/// A body that could not be read: over the size limit (413) or broken off (400).
fn body_error(e: axum::Error) -> AppError {
    let too_large = std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
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
}
