//! Enrolling people and phones over HTTP (for the console): `POST /admin/users` with
//! `{"id", "role", "area"}` and `POST /admin/users/{id}/devices`, whose answer carries the new
//! device's token (shown once). Both need the `ManagePeople` permission and stay inside the
//! admin's jurisdiction (`crate::admin_actions`).

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gridcase_core::area::Jurisdiction;
use gridcase_core::model::Role;
use serde_json::json;

use super::admin::{admin_body, string_field};
use super::auth::Admin;
use super::{AppError, AppState};

pub(super) fn required(
    map: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<String, AppError> {
    string_field(map, name)?.ok_or_else(|| AppError::BadRequest {
        code: "bad_json",
        message: format!("`{name}` is required"),
    })
}

/// The most user-device rows `GET /admin/people` lists.
const MAX_PEOPLE_ROWS: u32 = 5_000;

/// `GET /admin/people`: the users and devices inside the admin's jurisdiction (and the admin
/// accounts inside it, for an admin that manages people).
pub(super) async fn list_people(
    Admin(admin): Admin,
    State(state): State<AppState>,
) -> Result<Json<crate::admin_actions::People>, AppError> {
    let store = state.store.clone();
    let people =
        tokio::task::spawn_blocking(move || store.people_as(&admin, MAX_PEOPLE_ROWS)).await??;
    Ok(Json(people))
}

/// `POST /admin/users` `{"id": "li", "role": "grid_worker", "area": "330604101"}`.
pub(super) async fn enrol_user(
    Admin(admin): Admin,
    State(state): State<AppState>,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    let map = admin_body(body).await?;
    let (id, role, area) = (
        required(&map, "id")?,
        required(&map, "role")?,
        required(&map, "area")?,
    );
    let role = Role::parse(&role)
        .filter(|r| *r != Role::System)
        .ok_or_else(|| AppError::BadRequest {
            code: "bad_role",
            message: "unknown role".into(),
        })?;
    let jurisdiction = Jurisdiction::parse_given(&area).map_err(|e| AppError::BadRequest {
        code: "bad_area",
        message: e.to_string(),
    })?;
    let now = (state.clock)();
    let store = state.store.clone();
    let (user, given) = (id.clone(), jurisdiction.as_given().to_owned());
    tokio::task::spawn_blocking(move || {
        store.enrol_user_as(&admin, &user, role, &jurisdiction, now)
    })
    .await?
    .map_err(AppError::invalid_as("bad_user"))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"user": id, "role": role.as_str(), "area": given})),
    ))
}

/// `POST /admin/users/{id}/devices`: a new device for the user; its token is in the answer
/// and cannot be shown again.
pub(super) async fn enrol_device(
    Admin(admin): Admin,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    let Path(id) = id?;
    admin_body(body).await?;
    let now = (state.clock)();
    let store = state.store.clone();
    let user = id.clone();
    let token = tokio::task::spawn_blocking(move || store.enrol_device_as(&admin, &user, now))
        .await?
        .map_err(AppError::invalid_as("bad_user"))?;
    let device = token.split_once('.').map(|(d, _)| d.to_owned());
    Ok((
        StatusCode::CREATED,
        Json(json!({"user": id, "device": device, "token": token})),
    ))
}
