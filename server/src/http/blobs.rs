//! Attachment bytes over HTTP (`crate::blobs`). Devices upload resumably in chunks and download
//! what their scope allows; the admin case view serves a case's attachments.
//!
//! - `GET /v1/blobs/{sha256}/upload`: `{"offset", "complete"}`: where to resume (a committed
//!   chunk is never sent twice).
//! - `PUT /v1/blobs/{sha256}/chunks/{offset}`: the bytes at `offset` (409 `offset_mismatch` with
//!   the kept `offset` otherwise).
//! - `POST /v1/blobs/{sha256}/commit`: check and store; `{"sha256", "size", "mime"}`.
//! - `GET /v1/blobs/{sha256}`: the bytes (a single `Range` gives 206), streamed from the store
//!   as they are sent, never held whole in memory.
//! - `GET /admin/cases/{id}/attachments/{sha256}`: the bytes, for an admin who may view the case.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::auth::{Admin, Device};
use super::routes::Routes;
use super::{AppError, AppState};
use crate::blobs::{BlobError, Blobs, ByteRange, Download, Sha256};

pub(super) fn routes(routes: Routes) -> Routes {
    routes
        .add(Method::GET, "/v1/blobs/{sha256}/upload", upload_status)
        .add(Method::PUT, "/v1/blobs/{sha256}/chunks/{offset}", put_chunk)
        .add(Method::POST, "/v1/blobs/{sha256}/commit", commit)
        .add(Method::GET, "/v1/blobs/{sha256}", download)
        .add(
            Method::GET,
            "/admin/cases/{id}/attachments/{sha256}",
            admin_download,
        )
}

impl From<BlobError> for AppError {
    fn from(e: BlobError) -> Self {
        let (status, code) = match &e {
            BlobError::Offset { committed } => {
                return AppError::Refused {
                    status: StatusCode::CONFLICT,
                    code: "offset_mismatch",
                    message: format!("{e}; offset {committed}"),
                };
            }
            BlobError::HashMismatch => (StatusCode::UNPROCESSABLE_ENTITY, "hash_mismatch"),
            BlobError::WrongType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_type"),
            BlobError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "blob_too_large"),
            BlobError::OverQuota { .. } => {
                (StatusCode::INSUFFICIENT_STORAGE, "blob_quota_exceeded")
            }
            BlobError::Range => (StatusCode::RANGE_NOT_SATISFIABLE, "bad_range"),
            BlobError::NotFound => return AppError::NotFound("blob".into()),
            BlobError::Io(_) | BlobError::ObjectStore(_) | BlobError::Db(_) => {
                return AppError::Internal(e.to_string());
            }
        };
        AppError::Refused {
            status,
            code,
            message: e.to_string(),
        }
    }
}

/// The blob service, or 503 when this server keeps no blobs.
fn service(state: &AppState) -> Result<Blobs, AppError> {
    state.blobs.clone().ok_or_else(|| AppError::Refused {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "blobs_unavailable",
        message: "this server stores no attachments".into(),
    })
}

fn sha256(text: &str) -> Result<Sha256, AppError> {
    Sha256::parse(text).ok_or_else(|| AppError::BadRequest {
        code: "bad_sha256",
        message: "a blob is named by its SHA-256 in 64 hex digits".into(),
    })
}

async fn upload_status(
    Device(device): Device,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, AppError> {
    let Path(sha) = path?;
    let (sha, blobs, store) = (sha256(&sha)?, service(&state)?, state.store.clone());
    let status =
        tokio::task::spawn_blocking(move || blobs.status(store.db(), &device, &sha)).await??;
    Ok(Json(status).into_response())
}

async fn put_chunk(
    Device(device): Device,
    State(state): State<AppState>,
    path: Result<Path<(String, u64)>, PathRejection>,
    body: Bytes,
) -> Result<Response, AppError> {
    let Path((sha, offset)) = path?;
    let (sha, blobs, store) = (sha256(&sha)?, service(&state)?, state.store.clone());
    state
        .quotas
        .request(&device.device_id, 0, (state.clock)())?;
    if body.len() as u64 > blobs.limits().max_chunk_bytes {
        return Err(AppError::Refused {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "chunk_too_large",
            message: format!(
                "a chunk holds at most {} bytes",
                blobs.limits().max_chunk_bytes
            ),
        });
    }
    let len = body.len() as u64;
    let status = tokio::task::spawn_blocking(move || {
        blobs.put_chunk(store.db(), &device, &sha, offset, &body)
    })
    .await??;
    if !status.complete {
        state.metrics.blob_chunk_accepted(len);
    }
    Ok(Json(status).into_response())
}

async fn commit(
    Device(device): Device,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, AppError> {
    let Path(sha) = path?;
    let (sha, blobs, store) = (sha256(&sha)?, service(&state)?, state.store.clone());
    let now = (state.clock)();
    let row =
        tokio::task::spawn_blocking(move || blobs.commit(store.db(), &device, &sha, now)).await??;
    state.metrics.blob_committed();
    Ok(Json(json!({"sha256": row.sha256, "size": row.size, "mime": row.mime})).into_response())
}

async fn download(
    Device(device): Device,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let Path(sha) = path?;
    let (sha, blobs, store) = (sha256(&sha)?, service(&state)?, state.store.clone());
    let range = match headers.get(header::RANGE) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(ByteRange::parse)
                .ok_or(BlobError::Range)?,
        ),
    };
    let now = (state.clock)();
    let got =
        tokio::task::spawn_blocking(move || blobs.download(store.db(), &device, &sha, range, now))
            .await??;
    Ok(bytes_response(got, range.is_some()))
}

async fn admin_download(
    Admin(admin): Admin,
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, AppError> {
    let Path((case_id, sha)) = path?;
    let (sha, blobs, store) = (sha256(&sha)?, service(&state)?, state.store.clone());
    let now = (state.clock)();
    let got = tokio::task::spawn_blocking(move || -> Result<Download, AppError> {
        store.case_for_admin(&admin, &case_id)?;
        Ok(blobs.admin_download(store.db(), &admin, &case_id, &sha, now)?)
    })
    .await??;
    Ok(bytes_response(got, false))
}

/// The bytes with their sniffed type, streamed; a range as 206 with `Content-Range`.
fn bytes_response(got: Download, partial: bool) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, got.mime),
            (header::CONTENT_LENGTH, (got.end - got.start).to_string()),
            (header::ACCEPT_RANGES, "bytes".to_owned()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        Body::from_stream(got.body),
    )
        .into_response();
    if partial {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let last = got.end.saturating_sub(1);
        let range = format!("bytes {}-{last}/{}", got.start, got.size);
        if let Ok(value) = range.parse() {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
    }
    response
}
