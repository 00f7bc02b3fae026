//! The monthly random audit over HTTP (`crate::audit_draw`):
//! - `POST /admin/audit-draws` `{"month": "2026-11", "area": "330604", "n": 10, "reason"}`
//!   draws (201); a second draw of the month and area without `reason` is 409 `conflict`;
//! - `GET /admin/audit-draws/{id}`: the draw, its recorded inputs, its cases' results, and
//!   `replays`: whether the drawn cases follow from the recorded inputs;
//! - `POST /admin/audit-draws/{id}/results` `{"case", "result": "confirmed"|"failed", "note"}`.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use gridcase_core::area::Jurisdiction;
use serde_json::json;

use super::admin::{admin_body, string_field};
use super::auth::Admin;
use super::routes::Routes;
use super::{AppError, AppState};
use crate::audit_draw::{self, DEFAULT_DRAW_SIZE, DrawRequest};
use crate::db::DrawRow;

pub(super) fn routes(routes: Routes) -> Routes {
    routes
        .add(Method::POST, "/admin/audit-draws", draw)
        .add(Method::GET, "/admin/audit-draws/{id}", show)
        .add(Method::POST, "/admin/audit-draws/{id}/results", result)
}

fn bad(code: &'static str, message: &str) -> AppError {
    AppError::BadRequest {
        code,
        message: message.into(),
    }
}

fn draw_json(draw: &DrawRow) -> serde_json::Value {
    let mut value = json!(draw);
    value["candidates"] = json!(draw.candidates.len());
    value["replays"] = json!(audit_draw::replay(draw));
    value
}

fn draw_id(id: Result<Path<String>, PathRejection>) -> Result<i64, AppError> {
    let Path(id) = id?;
    id.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| AppError::NotFound(format!("audit draw {}", crate::audit::bounded(&id))))
}

async fn draw(
    Admin(admin): Admin,
    State(state): State<AppState>,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    let map = admin_body(body).await?;
    let month =
        string_field(&map, "month")?.ok_or_else(|| bad("bad_month", "`month` is required"))?;
    let area = string_field(&map, "area")?.ok_or_else(|| bad("bad_area", "`area` is required"))?;
    let area = Jurisdiction::parse_given(&area).map_err(|e| bad("bad_area", &e.to_string()))?;
    let n = match map.get("n") {
        None | Some(serde_json::Value::Null) => DEFAULT_DRAW_SIZE,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad("bad_n", "`n` must be a whole number"))?,
    };
    let reason = string_field(&map, "reason")?;
    let now = (state.clock)();
    let store = state.store.clone();
    let drawn = tokio::task::spawn_blocking(move || {
        let req = DrawRequest {
            month: &month,
            area: &area,
            n,
            reason: reason.as_deref(),
        };
        store.draw_audit(&admin, &req, &mut rand::rng(), now)
    })
    .await?
    .map_err(AppError::invalid_as("bad_draw"))?;
    Ok((StatusCode::CREATED, Json(draw_json(&drawn))))
}

async fn show(
    Admin(admin): Admin,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    let id = draw_id(id)?;
    let store = state.store.clone();
    let found = tokio::task::spawn_blocking(move || store.audit_draw(&admin, id)).await??;
    Ok(Json(draw_json(&found)))
}

async fn result(
    Admin(admin): Admin,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Json<serde_json::Value>, AppError> {
    let id = draw_id(id)?;
    let map = admin_body(body).await?;
    let case = string_field(&map, "case")?.ok_or_else(|| bad("bad_case", "`case` is required"))?;
    let result =
        string_field(&map, "result")?.ok_or_else(|| bad("bad_result", "`result` is required"))?;
    let note = string_field(&map, "note")?.unwrap_or_default();
    let now = (state.clock)();
    let store = state.store.clone();
    let (case_id, outcome) = (case.clone(), result.clone());
    tokio::task::spawn_blocking(move || {
        store.verify_drawn_case(&admin, id, &case_id, &outcome, &note, now)
    })
    .await?
    .map_err(AppError::invalid_as("bad_result"))?;
    Ok(Json(json!({"draw": id, "case": case, "result": result})))
}
