//! `GET /admin/report?period=&area=&unit=&category=&at=&format=json|csv`: the assessment rates
//! of `crate::report`, for an admin inside its jurisdiction, as JSON or as CSV with Chinese
//! headers.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::admin::at_or_now;
use super::auth::Admin;
use super::{AppError, AppState};
use crate::report::{ReportQuery, to_csv};
use crate::store::StoreError;

#[derive(Debug, Deserialize)]
pub(super) struct ReportParams {
    period: String,
    #[serde(default)]
    area: String,
    unit: Option<String>,
    category: Option<String>,
    at: Option<String>,
    format: Option<String>,
}

pub(super) async fn admin_report(
    Admin(admin): Admin,
    State(state): State<AppState>,
    params: Result<Query<ReportParams>, QueryRejection>,
) -> Result<Response, AppError> {
    let Query(p) = params?;
    let now = at_or_now(&state, p.at.as_deref())?;
    let csv = match p.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => {
            return Err(AppError::BadRequest {
                code: "bad_format",
                message: "`format` is json or csv".into(),
            });
        }
    };
    let query = ReportQuery {
        period: p.period,
        area: p.area,
        unit: p.unit.filter(|u| !u.is_empty()),
        category: p.category.filter(|c| !c.is_empty()),
    };
    let store = state.store.clone();
    // Inside the admin's jurisdiction only; no area asked is the whole jurisdiction.
    let report = tokio::task::spawn_blocking(move || {
        let area = store.report_area_for(&admin, &query.area)?;
        store.report(&ReportQuery { area, ..query }, now)
    })
    .await?
    .map_err(|e| match e {
        // A period or area the caller got wrong, not a fault of the server.
        StoreError::Invalid(message) => AppError::BadRequest {
            code: "bad_report",
            message,
        },
        other => other.into(),
    })?;
    Ok(if csv {
        (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            to_csv(&report),
        )
            .into_response()
    } else {
        axum::Json(report).into_response()
    })
}
