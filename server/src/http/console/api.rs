//! The console's own reads: `GET /console/api/overview?at=&month=` (`crate::overview`) and
//! `GET /console/api/cases?list=overdue|due_soon|supervised&area=&category=&unit=&page=&size=&at=`, a page
//! of a deadline list. Filters are area codes, categories and units, never personal data.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;

use super::super::admin::at_or_now;
use super::super::auth::Admin;
use super::super::{AppError, AppState};
use crate::overview::{DeadlineList, ListFilter, ListPage, Overview};
use crate::store::StoreError;

#[derive(Debug, Deserialize)]
pub(super) struct OverviewParams {
    at: Option<String>,
    /// The month of the rates, trend and hot spots (`2026-11`); default the current one.
    month: Option<String>,
}

/// A filter or period the caller got wrong is theirs, not the server's.
fn bad_request(e: StoreError) -> AppError {
    match e {
        StoreError::Invalid(message) => AppError::BadRequest {
            code: "bad_filter",
            message,
        },
        other => other.into(),
    }
}

pub(super) async fn overview(
    Admin(admin): Admin,
    State(state): State<AppState>,
    params: Result<Query<OverviewParams>, QueryRejection>,
) -> Result<Json<Overview>, AppError> {
    let Query(params) = params?;
    let at = at_or_now(&state, params.at.as_deref())?;
    let store = state.store.clone();
    let month = params.month.filter(|m| !m.is_empty());
    let overview =
        tokio::task::spawn_blocking(move || store.overview_for(&admin, at, month.as_deref()))
            .await?
            .map_err(bad_request)?;
    Ok(Json(overview))
}

#[derive(Debug, Deserialize)]
pub(super) struct ListParams {
    list: String,
    area: Option<String>,
    category: Option<String>,
    unit: Option<String>,
    page: Option<u32>,
    size: Option<u32>,
    at: Option<String>,
}

pub(super) async fn cases(
    Admin(admin): Admin,
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<ListPage>, AppError> {
    let Query(p) = params?;
    let at = at_or_now(&state, p.at.as_deref())?;
    let list = match p.list.as_str() {
        "overdue" => DeadlineList::Overdue,
        "due_soon" => DeadlineList::DueSoon,
        "supervised" => DeadlineList::Supervised,
        _ => {
            return Err(AppError::BadRequest {
                code: "bad_list",
                message: "`list` is overdue, due_soon or supervised".into(),
            });
        }
    };
    let filter = ListFilter {
        list,
        area: p.area,
        category: p.category,
        unit: p.unit,
        page: p.page.unwrap_or(1),
        size: p.size.unwrap_or(20),
    };
    let store = state.store.clone();
    let page = tokio::task::spawn_blocking(move || store.console_list(&admin, &filter, at))
        .await?
        .map_err(bad_request)?;
    Ok(Json(page))
}
