//! The HTTP API: `GET /health`, `POST /v1/sync` for devices, and `/admin/…` for the admin token.
//! Database work runs in `spawn_blocking` (the store serialises it on one connection).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
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

use crate::audit::{self, AuditQuery};
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
    /// Any other refusal with its own status and code.
    Refused {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    NotFound(String),
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AppError::NotFound(what),
            other => AppError::Internal(other.to_string()),
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
            AppError::Refused {
                status,
                code,
                message,
            } => (status, json!({"error": code, "message": message})),
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
        .route("/admin/cases/{id}/reveal", post(admin_reveal))
        .route("/admin/audit", get(admin_audit))
        .route("/admin/devices/{id}/revoke", post(admin_revoke_device))
        .route("/admin/users/{id}/revoke", post(admin_revoke_user))
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
        crate::sync::check_request_size(&request).map_err(|(code, message)| AppError::Refused {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code,
            message,
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
    /// 1 to [`MAX_LIST_LIMIT`]; default 1000.
    limit: Option<String>,
}

/// The most rows a list route returns.
pub const MAX_LIST_LIMIT: u32 = 100_000;

/// Parses a `limit` parameter: a whole number from 1 to `max`.
fn parse_limit(text: Option<&str>, default: u32, max: u32) -> Result<u32, AppError> {
    let Some(text) = text else {
        return Ok(default);
    };
    match text.trim().parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(AppError::BadRequest {
            code: "bad_limit",
            message: format!("`limit` must be a whole number from 1 to {max}"),
        }),
    }
}

fn parse_time_param(name: &str, text: Option<&str>) -> Result<Option<Millis>, AppError> {
    match text {
        None => Ok(None),
        Some(text) => parse_instant(text)
            .map(Some)
            .ok_or_else(|| AppError::BadRequest {
                code: "bad_time",
                message: format!("`{name}` must be RFC 3339 or milliseconds since the epoch"),
            }),
    }
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
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    deadline_list(state, headers, params, Store::overdue).await
}

async fn admin_due_soon(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    deadline_list(state, headers, params, Store::due_soon).await
}

/// One of the deadline lists (`list(store, at, limit)`) at `?at=`, for an admin.
async fn deadline_list(
    state: AppState,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
    list: fn(&Store, Millis, u32) -> crate::store::Result<Vec<crate::store::CaseSummary>>,
) -> Result<Json<serde_json::Value>, AppError> {
    require_admin(&state, &headers).await?;
    let Query(params) = params?;
    let at = list_at(&state, &params)?;
    let limit = parse_limit(params.limit.as_deref(), 1000, MAX_LIST_LIMIT)?;
    let store = state.store.clone();
    let cases = tokio::task::spawn_blocking(move || list(&store, at, limit)).await??;
    Ok(Json(
        json!({"at": at, "count": cases.len(), "cases": cases}),
    ))
}

async fn admin_case(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    require_admin(&state, &headers).await?;
    let Path(id) = id?;
    let store = state.store.clone();
    let detail = tokio::task::spawn_blocking(move || case_detail(&store, &id)).await??;
    Ok(Json(detail))
}

#[derive(Debug, Deserialize)]
struct AuditParams {
    case: Option<String>,
    user: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
}

/// `GET /admin/audit?case=&user=&from=&to=&limit=`: audit rows, newest first.
async fn admin_audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    require_admin(&state, &headers).await?;
    let Query(params) = params?;
    let query = AuditQuery {
        case_id: params.case.filter(|c| !c.is_empty()),
        user_id: params.user.filter(|u| !u.is_empty()),
        from: parse_time_param("from", params.from.as_deref())?,
        to: parse_time_param("to", params.to.as_deref())?,
        limit: parse_limit(
            params.limit.as_deref(),
            audit::DEFAULT_AUDIT_LIMIT,
            audit::MAX_AUDIT_LIMIT,
        )?,
    };
    let store = state.store.clone();
    let rows = tokio::task::spawn_blocking(move || store.audit_log(&query)).await??;
    Ok(Json(json!({"count": rows.len(), "rows": rows})))
}

/// The most bytes of JSON an admin POST body may have.
const MAX_ADMIN_BODY: usize = 16 * 1024;

/// Reads an optional small JSON object body: empty means `{}`.
async fn admin_body(body: Body) -> Result<serde_json::Map<String, serde_json::Value>, AppError> {
    let bytes = axum::body::to_bytes(body, MAX_ADMIN_BODY)
        .await
        .map_err(|_| AppError::TooLarge)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(AppError::BadRequest {
            code: "bad_json",
            message: "the body must be a JSON object".into(),
        }),
    }
}

/// A string field of an admin body; an absent or null field is `None`, another type an error.
fn string_field(
    map: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<String>, AppError> {
    match map.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AppError::BadRequest {
            code: "bad_json",
            message: format!("`{name}` must be a string"),
        }),
    }
}

/// The admin name for the audit log: `by` in the body, else `admin` (the admin token is one
/// shared secret and names nobody).
fn admin_name(map: &serde_json::Map<String, serde_json::Value>) -> Result<String, AppError> {
    let by = string_field(map, "by")?.unwrap_or_else(|| "admin".into());
    audit::check_by(&by)
        .map(str::to_owned)
        .map_err(|e| AppError::BadRequest {
            code: "bad_by",
            message: e.to_string(),
        })
}

/// `POST /admin/cases/{id}/reveal` with `{"reason": "...", "by": "..."}`: the complainant
/// unmasked, recorded in the audit log.
async fn admin_reveal(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Json<serde_json::Value>, AppError> {
    require_admin(&state, &headers).await?;
    let Path(id) = id?;
    let map = admin_body(body).await?;
    let reason = string_field(&map, "reason")?.unwrap_or_default();
    if reason.trim().is_empty() {
        return Err(AppError::BadRequest {
            code: "reason_required",
            message: "a reveal needs a non-empty `reason`; it is recorded".into(),
        });
    }
    if let Err(e) = audit::check_reason(&reason) {
        return Err(AppError::BadRequest {
            code: "bad_reason",
            message: e.to_string(),
        });
    }
    let by = admin_name(&map)?;
    let now = (state.clock)();
    let store = state.store.clone();
    let case_id = id.clone();
    let complainant =
        tokio::task::spawn_blocking(move || store.reveal(&case_id, &by, &reason, now)).await??;
    Ok(Json(json!({
        "case_id": id,
        "complainant": complainant.map(|c| json!({
            "name": c.name, "phone": c.phone, "anonymous": c.anonymous
        })),
    })))
}

/// `POST /admin/devices/{id}/revoke` (optional body `{"by": "..."}`).
async fn admin_revoke_device(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Json<serde_json::Value>, AppError> {
    require_admin(&state, &headers).await?;
    let Path(id) = id?;
    let by = admin_name(&admin_body(body).await?)?;
    let now = (state.clock)();
    let store = state.store.clone();
    let device = id.clone();
    let found =
        tokio::task::spawn_blocking(move || store.revoke_device_by(&device, Some(&by), now))
            .await??;
    if !found {
        return Err(AppError::NotFound(format!(
            "device {}",
            audit::bounded(&id)
        )));
    }
    Ok(Json(
        json!({"device": id.to_ascii_lowercase(), "revoked": true}),
    ))
}

/// `POST /admin/users/{id}/revoke` (optional body `{"by": "..."}`): all the user's devices.
async fn admin_revoke_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Json<serde_json::Value>, AppError> {
    require_admin(&state, &headers).await?;
    let Path(id) = id?;
    let by = admin_name(&admin_body(body).await?)?;
    let now = (state.clock)();
    let store = state.store.clone();
    let user = id.clone();
    let found =
        tokio::task::spawn_blocking(move || store.revoke_user_by(&user, Some(&by), now)).await??;
    if !found {
        return Err(AppError::NotFound(format!("user {}", audit::bounded(&id))));
    }
    Ok(Json(json!({"user": id, "revoked": true})))
}

/// A case for the admin: its projection, the case as read from its document, supervisions, and
/// the complainant with the phone masked.
pub fn case_detail(store: &Store, id: &str) -> Result<serde_json::Value, AppError> {
    let summary = store
        .case_summary(id)?
        .ok_or_else(|| AppError::NotFound(format!("case {}", audit::bounded(id))))?;
    let doc = store
        .load_doc(id)?
        .ok_or_else(|| AppError::NotFound(format!("case {}", audit::bounded(id))))?;
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
