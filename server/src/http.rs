//! The HTTP API: `GET /health`, `POST /v1/sync` for devices, and `/admin/…` for the admin token.
//! Database work runs in `spawn_blocking` (the store serialises it on one connection).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gridcase_core::doc::{CaseDoc, PersonalDoc, mask_phone, personal_doc_id};
use gridcase_core::model::Millis;
use gridcase_core::sync::wire;
use serde::Deserialize;
use serde_json::json;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::store::{Auth, Store, StoreError};

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

/// An error answer: JSON `{"error": "<code>", "message": "..."}`. Internal details are logged,
/// never sent.
#[derive(Debug)]
pub enum AppError {
    Unauthorized,
    /// The device or user was revoked: the phone must wipe its data.
    Revoked,
    BadRequest {
        code: &'static str,
        message: String,
    },
    TooLarge,
    NotFound(String),
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        AppError::Internal(e.to_string())
    }
}

impl From<tokio::task::JoinError> for AppError {
    fn from(e: tokio::task::JoinError) -> Self {
        AppError::Internal(format!("blocking task failed: {e}"))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            AppError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "unauthorized", "message": "missing, malformed or unknown token"}),
            ),
            AppError::Revoked => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "revoked", "wipe": true,
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
            AppError::NotFound(what) => (
                StatusCode::NOT_FOUND,
                json!({"error": "not_found", "message": format!("{what} not found")}),
            ),
            AppError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "internal", "message": "internal server error"}),
                )
            }
        };
        (status, Json(body)).into_response()
    }
}

/// The router, testable without sockets.
pub fn app(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    let timeout = state.request_timeout;
    Router::new()
        .route("/health", get(health))
        .route("/v1/sync", post(sync))
        .route("/admin/overdue", get(admin_overdue))
        .route("/admin/due-soon", get(admin_due_soon))
        .route("/admin/cases/{id}", get(admin_case))
        .fallback(not_found)
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
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

async fn not_found() -> AppError {
    AppError::NotFound("route".into())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

async fn sync(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let token = bearer(&headers).ok_or(AppError::Unauthorized)?;
    let store = state.store.clone();
    let auth = tokio::task::spawn_blocking(move || store.authenticate(&token)).await??;
    let ctx = match auth {
        Auth::Device(ctx) => ctx,
        Auth::Unknown => return Err(AppError::Unauthorized),
        Auth::Revoked => return Err(AppError::Revoked),
    };
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
        let request = wire::decode_request(&bytes).map_err(|e| AppError::BadRequest {
            code: e.code(),
            message: e.to_string(),
        })?;
        let response = store.sync(&ctx, &request, now)?;
        Ok(wire::encode_response(&response))
    })
    .await??;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        encoded,
    )
        .into_response())
}

async fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), AppError> {
    let token = bearer(headers).ok_or(AppError::Unauthorized)?;
    let store = state.store.clone();
    if tokio::task::spawn_blocking(move || store.check_admin_token(&token)).await?? {
        Ok(())
    } else {
        Err(AppError::Unauthorized)
    }
}

#[derive(Debug, Deserialize)]
struct ListParams {
    /// RFC 3339 or milliseconds since the epoch; default now.
    at: Option<String>,
    limit: Option<u32>,
}

/// Parses an instant given as RFC 3339 or as milliseconds since the epoch.
pub fn parse_instant(text: &str) -> Option<Millis> {
    text.parse::<Millis>().ok().or_else(|| {
        chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_millis())
    })
}

fn list_at(state: &AppState, params: &ListParams) -> Result<Millis, AppError> {
    match &params.at {
        None => Ok((state.clock)()),
        Some(text) => parse_instant(text).ok_or_else(|| AppError::BadRequest {
            code: "bad_time",
            message: "`at` must be RFC 3339 or milliseconds since the epoch".into(),
        }),
    }
}

async fn admin_overdue(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Result<Json<serde_json::Value>, AppError> {
    require_admin(&state, &headers).await?;
    let at = list_at(&state, &params)?;
    let limit = params.limit.unwrap_or(1000);
    let store = state.store.clone();
    let cases = tokio::task::spawn_blocking(move || store.overdue(at, limit)).await??;
    Ok(Json(
        json!({"at": at, "count": cases.len(), "cases": cases}),
    ))
}

async fn admin_due_soon(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Result<Json<serde_json::Value>, AppError> {
    require_admin(&state, &headers).await?;
    let at = list_at(&state, &params)?;
    let limit = params.limit.unwrap_or(1000);
    let store = state.store.clone();
    let cases = tokio::task::spawn_blocking(move || store.due_soon(at, limit)).await??;
    Ok(Json(
        json!({"at": at, "count": cases.len(), "cases": cases}),
    ))
}

async fn admin_case(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, AppError> {
    require_admin(&state, &headers).await?;
    let store = state.store.clone();
    let detail = tokio::task::spawn_blocking(move || case_detail(&store, &id)).await??;
    Ok(Json(detail))
}

/// A case for the admin: its projection, the case as read from its document, supervisions, and
/// the complainant with the phone masked.
pub fn case_detail(store: &Store, id: &str) -> Result<serde_json::Value, AppError> {
    let summary = store
        .case_summary(id)?
        .ok_or_else(|| AppError::NotFound(format!("case {id}")))?;
    let doc = store
        .load_doc(id)?
        .ok_or_else(|| AppError::NotFound(format!("case {id}")))?;
    let case = CaseDoc::from_automerge(doc)
        .and_then(|d| d.read())
        .map_err(|e| AppError::Internal(format!("case {id} does not read: {e}")))?;
    let complainant = store.load_doc(&personal_doc_id(id))?.map(|doc| {
        let c = PersonalDoc::from_automerge(doc).read();
        json!({"name": c.name, "phone": mask_phone(&c.phone), "anonymous": c.anonymous})
    });
    let supervisions = store.supervisions(id)?;
    Ok(json!({
        "summary": summary,
        "case": case,
        "complainant": complainant,
        "supervisions": supervisions,
    }))
}
