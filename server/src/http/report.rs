//! `GET /admin/report?period=&area=&unit=&category=&at=&format=json|csv|xlsx`: the report of
//! `crate::report`, for an admin inside its jurisdiction, as JSON, or as a CSV or XLSX download
//! with Chinese headers (`report-<period>.csv|xlsx`). With `phones=reveal&reason=…`, an admin
//! whose role may reveal gets the listed cases' complainant phones unmasked, each reveal audited.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::admin::at_or_now;
use super::auth::Admin;
use super::{AppError, AppState};
use crate::report::{Report, ReportQuery, XLSX_CONTENT_TYPE, to_csv, to_xlsx};
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
    /// `reveal`: the listed cases' complainant phones, unmasked (with `reason`, audited).
    phones: Option<String>,
    reason: Option<String>,
}

pub(super) async fn admin_report(
    Admin(admin): Admin,
    State(state): State<AppState>,
    params: Result<Query<ReportParams>, QueryRejection>,
) -> Result<Response, AppError> {
    let Query(p) = params?;
    let now = at_or_now(&state, p.at.as_deref())?;
    let format = Format::parse(p.format.as_deref())?;
    let query = ReportQuery {
        period: p.period,
        area: p.area,
        unit: p.unit.filter(|u| !u.is_empty()),
        category: p.category.filter(|c| !c.is_empty()),
    };
    let reveal = match (p.phones.as_deref(), p.reason) {
        (None, _) => None,
        (Some("reveal"), Some(reason)) => Some(reason),
        _ => {
            return Err(AppError::BadRequest {
                code: "bad_phones",
                message: "`phones=reveal` needs a `reason`; it is recorded".into(),
            });
        }
    };
    let store = state.store.clone();
    // Inside the admin's jurisdiction only; no area asked is the whole jurisdiction.
    let report = tokio::task::spawn_blocking(move || {
        let area = store.report_area_for(&admin, &query.area)?;
        let mut report = store.report(&ReportQuery { area, ..query }, now)?;
        if let Some(reason) = reveal {
            store.reveal_report_phones(&admin, &mut report, &reason, now)?;
        }
        Ok(report)
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
    format.respond(&report)
}

/// What the caller asked the report as.
#[derive(Debug, Clone, Copy)]
enum Format {
    Json,
    Csv,
    Xlsx,
}

impl Format {
    fn parse(format: Option<&str>) -> Result<Format, AppError> {
        match format {
            None | Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some("xlsx") => Ok(Format::Xlsx),
            Some(_) => Err(AppError::BadRequest {
                code: "bad_format",
                message: "`format` is json, csv or xlsx".into(),
            }),
        }
    }

    fn respond(self, report: &Report) -> Result<Response, AppError> {
        // The label is one of `Period::parse`'s forms: digits, `-`, `W`, `H`.
        let download = |ext: &str| {
            format!(
                "attachment; filename=\"report-{}.{ext}\"",
                report.period.label
            )
        };
        Ok(match self {
            Format::Json => axum::Json(report).into_response(),
            Format::Csv => (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (header::CONTENT_DISPOSITION, download("csv")),
                ],
                to_csv(report),
            )
                .into_response(),
            Format::Xlsx => {
                let bytes = to_xlsx(report).map_err(|e| AppError::Internal(e.to_string()))?;
                (
                    [
                        (header::CONTENT_TYPE, XLSX_CONTENT_TYPE.to_owned()),
                        (header::CONTENT_DISPOSITION, download("xlsx")),
                    ],
                    bytes,
                )
                    .into_response()
            }
        })
    }
}
