//! The admin routes (`/admin/…`): deadline lists, a case's detail, the audit log, reveals,
//! supervisions, enrolments and revocations. Each handler takes an [`Admin`], so none runs without an
//! authenticated admin, and acts through the store's `*_as` / `*_for_admin` methods
//! (`crate::admin_actions`), which apply the admin's role and jurisdiction.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::Method;
use gridcase_core::area::Jurisdiction;
use gridcase_core::doc::{CaseDoc, PersonalDoc, mask_phone, personal_doc_id};
use gridcase_core::model::Millis;
use gridcase_core::sync::times::with_trusted_times;
use serde::Deserialize;
use serde_json::json;

const GET: Method = Method::GET;
const POST: Method = Method::POST;

use super::auth::Admin;
use super::routes::Routes;
use super::{AppError, AppState};
use crate::audit::{self, AuditQuery};
use crate::store::Store;

/// The admin routes.
pub(super) fn routes(routes: Routes) -> Routes {
    routes
        .add(GET, "/admin/overdue", admin_overdue)
        .add(GET, "/admin/due-soon", admin_due_soon)
        .add(GET, "/admin/cases/{id}", admin_case)
        .add(POST, "/admin/cases/{id}/reveal", admin_reveal)
        .add(POST, "/admin/cases/{id}/supervise", admin_supervise)
        .add(GET, "/admin/audit", admin_audit)
        .add(GET, "/admin/report", super::report::admin_report)
        .add(POST, "/admin/devices/{id}/revoke", admin_revoke_device)
        .add(POST, "/admin/users/{id}/revoke", admin_revoke_user)
        .add(GET, "/admin/people", super::people::list_people)
        .add(POST, "/admin/users", super::people::enrol_user)
        .add(
            POST,
            "/admin/users/{id}/devices",
            super::people::enrol_device,
        )
        .add(POST, "/admin/sign-in", super::sign_in::sign_in)
        .add(GET, "/admin/me", super::sign_in::me)
        .with(super::audit_draws::routes)
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
    at_or_now(state, params.at.as_deref())
}

/// `?at=` (RFC 3339 or milliseconds since the epoch), or the state's clock.
pub(super) fn at_or_now(state: &AppState, at: Option<&str>) -> Result<Millis, AppError> {
    match at {
        None => Ok((state.clock)()),
        Some(text) => parse_instant(text).ok_or_else(|| AppError::BadRequest {
            code: "bad_time",
            message: "`at` must be RFC 3339 or milliseconds since the epoch".into(),
        }),
    }
}

async fn admin_overdue(
    Admin(admin): Admin,
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    deadline_list(state, params, admin.jurisdiction, Store::overdue_within).await
}

async fn admin_due_soon(
    Admin(admin): Admin,
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    deadline_list(state, params, admin.jurisdiction, Store::due_soon_within).await
}

type CaseList =
    fn(&Store, &Jurisdiction, Millis, u32) -> crate::store::Result<Vec<crate::store::CaseSummary>>;

/// One of the deadline lists (`list(store, within, at, limit)`) at `?at=`, of the cases inside
/// the admin's jurisdiction.
async fn deadline_list(
    state: AppState,
    params: Result<Query<ListParams>, QueryRejection>,
    within: Jurisdiction,
    list: CaseList,
) -> Result<Json<serde_json::Value>, AppError> {
    let Query(params) = params?;
    let at = list_at(&state, &params)?;
    let limit = parse_limit(params.limit.as_deref(), 1000, MAX_LIST_LIMIT)?;
    let store = state.store.clone();
    let cases = tokio::task::spawn_blocking(move || list(&store, &within, at, limit)).await??;
    Ok(Json(
        json!({"at": at, "count": cases.len(), "cases": cases}),
    ))
}

async fn admin_case(
    Admin(admin): Admin,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    let Path(id) = id?;
    let store = state.store.clone();
    let detail = tokio::task::spawn_blocking(move || {
        store.case_for_admin(&admin, &id)?;
        case_detail(&store, &id)
    })
    .await??;
    Ok(Json(detail))
}

#[derive(Debug, Deserialize)]
struct AuditParams {
    case: Option<String>,
    user: Option<String>,
    kind: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
}

/// `GET /admin/audit?case=&user=&kind=&from=&to=&limit=`: audit rows, newest first.
async fn admin_audit(
    Admin(admin): Admin,
    State(state): State<AppState>,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    let Query(params) = params?;
    let query = AuditQuery {
        case_id: params.case.filter(|c| !c.is_empty()),
        user_id: params.user.filter(|u| !u.is_empty()),
        kind: audit_kind_param(params.kind)?,
        from: parse_time_param("from", params.from.as_deref())?,
        to: parse_time_param("to", params.to.as_deref())?,
        limit: parse_limit(
            params.limit.as_deref(),
            audit::DEFAULT_AUDIT_LIMIT,
            audit::MAX_AUDIT_LIMIT,
        )?,
        within: None,
    };
    let store = state.store.clone();
    let rows = tokio::task::spawn_blocking(move || store.audit_log_as(&admin, &query)).await??;
    Ok(Json(json!({"count": rows.len(), "rows": rows})))
}

/// The `kind` filter: empty means every kind; an unknown kind is refused rather than matching
/// nothing, so a typo does not look like an empty log.
fn audit_kind_param(kind: Option<String>) -> Result<Option<String>, AppError> {
    match kind.filter(|k| !k.is_empty()) {
        None => Ok(None),
        Some(k) if audit::KINDS.contains(&k.as_str()) => Ok(Some(k)),
        Some(_) => Err(AppError::BadRequest {
            code: "bad_kind",
            message: format!("`kind` must be one of {}", audit::KINDS.join(", ")),
        }),
    }
}

/// The most bytes of JSON an admin POST body may have.
const MAX_ADMIN_BODY: usize = 16 * 1024;

/// Reads an optional small JSON object body: empty means `{}`. A `by` field is refused: the
/// audit log names the authenticated admin, never a name typed into a request.
pub(super) async fn admin_body(
    body: Body,
) -> Result<serde_json::Map<String, serde_json::Value>, AppError> {
    let bytes = axum::body::to_bytes(body, MAX_ADMIN_BODY)
        .await
        .map_err(|_| AppError::TooLarge)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(map)) if map.contains_key("by") => Err(AppError::BadRequest {
            code: "bad_by",
            message: "`by` is not taken: the audit log names the signed-in admin".into(),
        }),
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(AppError::BadRequest {
            code: "bad_json",
            message: "the body must be a JSON object".into(),
        }),
    }
}

/// A string field of an admin body; an absent or null field is `None`, another type an error.
pub(super) fn string_field(
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

/// `POST /admin/cases/{id}/reveal` with `{"reason": "..."}`: the complainant unmasked,
/// recorded in the audit log under the admin's name.
async fn admin_reveal(
    Admin(admin): Admin,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Json<serde_json::Value>, AppError> {
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
    let now = (state.clock)();
    let store = state.store.clone();
    let case_id = id.clone();
    let complainant =
        tokio::task::spawn_blocking(move || store.reveal_as(&admin, &case_id, &reason, now))
            .await??;
    Ok(Json(json!({
        "case_id": id,
        "complainant": complainant.map(|c| json!({
            "name": c.name, "phone": c.phone, "anonymous": c.anonymous
        })),
    })))
}

/// `POST /admin/cases/{id}/supervise` with `{"level": 1|2|3, "reason": "..."}`: a supervision
/// (督办; a higher level escalates) by the admin, in the case's timeline.
async fn admin_supervise(
    Admin(admin): Admin,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Json<serde_json::Value>, AppError> {
    let Path(id) = id?;
    let map = admin_body(body).await?;
    let reason = string_field(&map, "reason")?.unwrap_or_default();
    let level = match map.get("level") {
        None | Some(serde_json::Value::Null) => 1,
        Some(v) => v
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .ok_or_else(|| AppError::BadRequest {
                code: "bad_level",
                message: "`level` is 1, 2 or 3".into(),
            })?,
    };
    let now = (state.clock)();
    let store = state.store.clone();
    let case_id = id.clone();
    tokio::task::spawn_blocking(move || store.supervise_as(&admin, &case_id, level, &reason, now))
        .await?
        .map_err(AppError::invalid_as("bad_supervision"))?;
    Ok(Json(
        json!({"case_id": id, "level": level, "supervised": true}),
    ))
}

/// `POST /admin/devices/{id}/revoke` (body empty or `{}`).
async fn admin_revoke_device(
    Admin(admin): Admin,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Json<serde_json::Value>, AppError> {
    let Path(id) = id?;
    admin_body(body).await?;
    let now = (state.clock)();
    let store = state.store.clone();
    let device = id.clone();
    let found =
        tokio::task::spawn_blocking(move || store.revoke_device_as(&admin, &device, now)).await??;
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

/// `POST /admin/users/{id}/revoke` (body empty or `{}`): all the user's devices.
async fn admin_revoke_user(
    Admin(admin): Admin,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Json<serde_json::Value>, AppError> {
    let Path(id) = id?;
    admin_body(body).await?;
    let now = (state.clock)();
    let store = state.store.clone();
    let user = id.clone();
    let found =
        tokio::task::spawn_blocking(move || store.revoke_user_as(&admin, &user, now)).await??;
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
    // The times the server vouched for, as the phones show them.
    let case = with_trusted_times(&case, &store.trusted_times(id)?, 0);
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
