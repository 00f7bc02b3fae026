//! Attachment bytes on the server (issue 10, server side): content-addressed storage behind
//! [`BlobStore`] (the local data directory by default, [`LocalBlobs`]; an S3-compatible object
//! store, [`S3Blobs`], for several server instances), resumable uploads by
//! devices, downloads for the devices whose scope includes a case that references the blob, the
//! admin case view, and garbage collection of blobs no case references.
//!
//! The rules, each in one place here: an upload is stored only if its bytes hash to its name,
//! sniff as an accepted type ([`sniff`]), fit the per-file limit and the uploading device's
//! quota ([`BlobLimits`], counting its unfinished uploads too, so many abandoned uploads cannot
//! fill the disk); anything else removes the upload. Who may download is the scope
//! rule's SQL over the `case_blobs` references written with each case's projection
//! (`crate::db::BlobRows::blob_cases_in_scope`), where a personal reference counts as
//! personal data, so a role that may not see personal data (the unit complained about) never
//! gets it. Every download is audited as a `reveal` row before a byte is sent.

mod local;
mod s3;
pub mod sniff;
mod store;

use std::sync::Arc;

use gridcase_core::model::Millis;
use serde_json::json;

pub use local::LocalBlobs;
pub use s3::{S3Blobs, S3Settings};
pub use store::{BlobError, BlobInfo, BlobStore, ByteStream, Received, Sha256, Upload, UploadInfo};

use crate::admins::AdminCtx;
use crate::db::{AuditEntry, BlobRow, Database};
use crate::store::DeviceCtx;

/// Limits on what devices may store. Defaults suit photos downscaled on the phone and minutes
/// of voice recording; a deployment changes them in the `[blobs]` table of its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLimits {
    /// Largest blob accepted.
    pub max_file_bytes: u64,
    /// Bytes of blobs one device may have uploaded in all, stored or still uploading.
    pub device_quota_bytes: u64,
    /// Largest chunk accepted in one request.
    pub max_chunk_bytes: u64,
    /// How long a blob no case references is kept (its case may still be on its way).
    pub grace_ms: Millis,
}

impl Default for BlobLimits {
    fn default() -> Self {
        BlobLimits {
            max_file_bytes: 20 * 1024 * 1024,
            device_quota_bytes: 2 * 1024 * 1024 * 1024,
            max_chunk_bytes: 1024 * 1024,
            grace_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// Where an upload stands: the bytes kept (the next chunk's offset), and whether the blob is
/// stored already (then nothing needs sending).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct UploadStatus {
    pub offset: u64,
    pub complete: bool,
}

/// Bytes of a blob being sent, read from the store as they go out, with the range they cover.
pub struct Download {
    pub body: ByteStream,
    /// The range sent: `start..end`.
    pub start: u64,
    pub end: u64,
    /// The whole blob's size.
    pub size: u64,
    pub mime: String,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("start", &self.start)
            .field("end", &self.end)
            .field("size", &self.size)
            .field("mime", &self.mime)
            .finish_non_exhaustive()
    }
}

/// What [`Blobs::collect_garbage`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// Unreferenced blobs past the grace period (row and bytes).
    pub blobs: Vec<String>,
    /// Files past the grace period with no row (a commit cut off between its two steps).
    pub orphans: Vec<String>,
    /// Uploads that received no chunk for the grace period.
    pub stale_uploads: u64,
}

/// A byte range a download asks for: `start..end`, `end` `None` for "to the end", or the last
/// `n` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    From { start: u64, end: Option<u64> },
    Last(u64),
}

impl ByteRange {
    /// The HTTP `Range` header's single `bytes=` range; `None` for anything else.
    pub fn parse(header: &str) -> Option<ByteRange> {
        let spec = header.trim().strip_prefix("bytes=")?;
        let (start, end) = spec.split_once('-')?;
        if start.is_empty() {
            return Some(ByteRange::Last(end.parse().ok()?));
        }
        let start = start.parse().ok()?;
        let end = match end {
            "" => None,
            end => Some(end.parse::<u64>().ok()?.checked_add(1)?),
        };
        Some(ByteRange::From { start, end })
    }

    /// `start..end` within a blob of `size` bytes, or `None` if unsatisfiable.
    fn within(self, size: u64) -> Option<(u64, u64)> {
        let (start, end) = match self {
            ByteRange::From { start, end } => (start, end.unwrap_or(size).min(size)),
            ByteRange::Last(n) => (size.saturating_sub(n), size),
        };
        (start < end).then_some((start, end))
    }
}

/// The blob service: the store and the limits, with the database passed in per call.
#[derive(Debug, Clone)]
pub struct Blobs {
    store: Arc<dyn BlobStore>,
    limits: BlobLimits,
}

impl Blobs {
    pub fn new(store: Arc<dyn BlobStore>, limits: BlobLimits) -> Blobs {
        Blobs { store, limits }
    }

    pub fn limits(&self) -> BlobLimits {
        self.limits
    }

    pub fn store(&self) -> &dyn BlobStore {
        &*self.store
    }

    /// Where `device`'s upload of `sha256` stands.
    pub fn status(
        &self,
        db: &dyn Database,
        device: &DeviceCtx,
        sha256: &Sha256,
    ) -> Result<UploadStatus, BlobError> {
        if let Some(row) = self.stored(db, sha256)? {
            return Ok(UploadStatus {
                offset: row.size,
                complete: true,
            });
        }
        let offset = self.store.upload_len(&upload(device, sha256))?;
        Ok(UploadStatus {
            offset,
            complete: false,
        })
    }

    /// Adds a chunk at `offset`. A chunk that would make the blob too large or exceed the
    /// device's quota removes the upload. A blob stored already takes no more bytes.
    pub fn put_chunk(
        &self,
        db: &dyn Database,
        device: &DeviceCtx,
        sha256: &Sha256,
        offset: u64,
        bytes: &[u8],
    ) -> Result<UploadStatus, BlobError> {
        if let Some(row) = self.stored(db, sha256)? {
            return Ok(UploadStatus {
                offset: row.size,
                complete: true,
            });
        }
        let up = upload(device, sha256);
        let end = offset.saturating_add(bytes.len() as u64);
        if let Err(refused) = self.check_size(db, device, sha256, end) {
            self.store.abort(&up)?;
            return Err(refused);
        }
        let offset = self.store.put_chunk(&up, offset, bytes)?;
        Ok(UploadStatus {
            offset,
            complete: false,
        })
    }

    /// Finishes `device`'s upload of `sha256`: stored if the hash, type, size and quota
    /// checks pass, else removed. Returns the blob's row.
    pub fn commit(
        &self,
        db: &dyn Database,
        device: &DeviceCtx,
        sha256: &Sha256,
        now: Millis,
    ) -> Result<BlobRow, BlobError> {
        if let Some(row) = self.stored(db, sha256)? {
            self.store.abort(&upload(device, sha256))?;
            return Ok(row);
        }
        let mime = std::cell::Cell::new("");
        let size = self.store.commit(&upload(device, sha256), &|got| {
            self.check_size(db, device, sha256, got.size)?;
            mime.set(sniff::sniff(got.head).ok_or(BlobError::WrongType)?);
            Ok(())
        })?;
        let row = BlobRow {
            sha256: sha256.to_string(),
            size,
            mime: mime.get().to_owned(),
            device_id: Some(device.device_id.clone()),
            created_at: now,
        };
        db.insert_blob(&row)?;
        Ok(db.blob(sha256.as_str())?.unwrap_or(row))
    }

    /// The one size rule: the upload of `sha256`, at `size` bytes, fits the per-file limit
    /// and, with what the device stored before and its other unfinished uploads, its quota.
    /// (Two chunks of one device arriving at once at two instances may both pass; the excess is
    /// one chunk, and the next chunk is refused.)
    fn check_size(
        &self,
        db: &dyn Database,
        device: &DeviceCtx,
        sha256: &Sha256,
        size: u64,
    ) -> Result<(), BlobError> {
        let limit = self.limits.max_file_bytes;
        if size > limit {
            return Err(BlobError::TooLarge { limit });
        }
        let quota = self.limits.device_quota_bytes;
        let uploading: u64 = (self.store.uploads(Some(&device.device_id))?)
            .iter()
            .filter(|u| u.upload.sha256 != *sha256)
            .map(|u| u.len)
            .sum();
        let stored = db.blob_bytes_of(&device.device_id)?;
        if stored.saturating_add(uploading).saturating_add(size) > quota {
            return Err(BlobError::OverQuota { quota });
        }
        Ok(())
    }

    /// The blob's row, if its bytes are stored.
    fn stored(&self, db: &dyn Database, sha256: &Sha256) -> Result<Option<BlobRow>, BlobError> {
        match db.blob(sha256.as_str())? {
            Some(row) if self.store.size(sha256)?.is_some() => Ok(Some(row)),
            _ => Ok(None),
        }
    }

    /// A device's download: only if a case in its scope references the blob (else
    /// [`BlobError::NotFound`], the same answer as for a blob nobody has, so a hash's
    /// existence is not told). Audited before a byte is read.
    pub fn download(
        &self,
        db: &dyn Database,
        device: &DeviceCtx,
        sha256: &Sha256,
        range: Option<ByteRange>,
        now: Millis,
    ) -> Result<Download, BlobError> {
        let cases = db.blob_cases_in_scope(sha256.as_str(), &device.scope())?;
        let Some(case_id) = cases.first() else {
            return Err(BlobError::NotFound);
        };
        let row = self.stored(db, sha256)?.ok_or(BlobError::NotFound)?;
        let (start, end) = span(range, row.size)?;
        db.write_audit(&AuditEntry {
            at: now,
            kind: crate::audit::REVEAL,
            user_id: Some(device.user_id.clone()),
            device_id: Some(device.device_id.clone()),
            case_id: Some(case_id.clone()),
            detail: Some(
                json!({"attachment": sha256.as_str(), "from": start, "to": end}).to_string(),
            ),
            ..AuditEntry::default()
        })?;
        self.read(sha256, row, start, end)
    }

    /// The admin case view's download: the admin may view the case (`case_for_admin`, checked
    /// by the caller) and the case references the blob. Audited before a byte is read.
    pub fn admin_download(
        &self,
        db: &dyn Database,
        admin: &AdminCtx,
        case_id: &str,
        sha256: &Sha256,
        now: Millis,
    ) -> Result<Download, BlobError> {
        if !db.case_references_blob(case_id, sha256.as_str())? {
            return Err(BlobError::NotFound);
        }
        let row = self.stored(db, sha256)?.ok_or(BlobError::NotFound)?;
        db.write_audit(&AuditEntry {
            at: now,
            kind: crate::audit::REVEAL,
            user_id: Some(admin.name.clone()),
            case_id: Some(case_id.to_owned()),
            detail: Some(
                json!({"attachment": sha256.as_str(), "from": 0, "to": row.size}).to_string(),
            ),
            ..AuditEntry::default()
        })?;
        let size = row.size;
        self.read(sha256, row, 0, size)
    }

    fn read(
        &self,
        sha256: &Sha256,
        row: BlobRow,
        start: u64,
        end: u64,
    ) -> Result<Download, BlobError> {
        Ok(Download {
            body: self.store.read_range(sha256, start, end)?,
            start,
            end,
            size: row.size,
            mime: row.mime,
        })
    }

    /// Deletes the blobs no case references that were stored before `now` minus the grace
    /// period, files without a row as old (the bytes of a commit cut off before its row), and
    /// uploads that received no chunk for as long.
    pub fn collect_garbage(&self, db: &dyn Database, now: Millis) -> Result<Collected, BlobError> {
        let before = now.saturating_sub(self.limits.grace_ms);
        let mut collected = Collected::default();
        for sha in db.unreferenced_blobs(before)? {
            // The row goes first, and only while still unreferenced: a case committed meanwhile
            // keeps it. Bytes without a row are then the orphans below, never the reverse.
            if db.delete_unreferenced_blob(&sha)? {
                if let Some(name) = Sha256::parse(&sha) {
                    self.store.delete(&name)?;
                }
                collected.blobs.push(sha);
            }
        }
        for info in self.store.list()? {
            if info.stored_at < before && db.blob(info.sha256.as_str())?.is_none() {
                self.store.delete(&info.sha256)?;
                collected.orphans.push(info.sha256.to_string());
            }
        }
        for stale in self.store.uploads(None)? {
            if stale.last_chunk_at < before {
                self.store.abort(&stale.upload)?;
                collected.stale_uploads += 1;
            }
        }
        Ok(collected)
    }
}

/// Records the blob references of every case (once after upgrading to the blob schema step:
/// cases committed before it have none until their next commit). Only adds references, so it
/// may run while the server serves. Returns how many references were new.
pub fn backfill_references(store: &crate::store::Store) -> Result<u64, crate::store::StoreError> {
    let (mut after, mut added) = (String::new(), 0);
    loop {
        let ids = store.db().case_ids_after(&after, 500)?;
        let Some(last) = ids.last() else {
            return Ok(added);
        };
        after = last.clone();
        for id in &ids {
            let Some(doc) = store.load_doc(id)? else {
                continue;
            };
            let case = gridcase_core::doc::CaseDoc::from_automerge(doc)
                .and_then(|d| d.read())
                .map_err(|e| crate::store::StoreError::Invalid(format!("case {id}: {e}")))?;
            let hashes = case.attachment_hashes();
            added += store.db().add_case_blobs(id, &hashes)?;
        }
    }
}

/// How often a serving process collects garbage (`Blobs::collect_garbage`).
pub const COLLECT_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Collects garbage every `every` until the task is aborted. Several processes collecting at
/// once is harmless: a row is deleted only while unreferenced, and deleting bytes twice is a
/// no-op.
pub fn spawn_collector(
    store: Arc<crate::store::Store>,
    blobs: Blobs,
    every: std::time::Duration,
    clock: crate::http::Clock,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let (store, blobs, now) = (store.clone(), blobs.clone(), clock());
            let run = tokio::task::spawn_blocking(move || blobs.collect_garbage(store.db(), now));
            match run.await {
                Ok(Ok(done)) if done == Collected::default() => {}
                Ok(Ok(done)) => tracing::info!(
                    blobs = done.blobs.len(),
                    orphans = done.orphans.len(),
                    stale_uploads = done.stale_uploads,
                    "unreferenced attachment bytes deleted"
                ),
                Ok(Err(e)) => tracing::warn!(error = %e, "blob garbage collection failed"),
                Err(e) => tracing::error!(error = %e, "blob garbage collection panicked"),
            }
        }
    })
}

fn upload(device: &DeviceCtx, sha256: &Sha256) -> Upload {
    Upload {
        device: device.device_id.clone(),
        sha256: sha256.clone(),
    }
}

/// The bytes to send: the whole blob, or the asked range if it is satisfiable.
fn span(range: Option<ByteRange>, size: u64) -> Result<(u64, u64), BlobError> {
    match range {
        None => Ok((0, size)),
        Some(range) => range.within(size).ok_or(BlobError::Range),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        let r = |h: &str| ByteRange::parse(h).and_then(|r| r.within(10));
        assert_eq!(r("bytes=0-3"), Some((0, 4)));
        assert_eq!(r("bytes=4-"), Some((4, 10)));
        assert_eq!(r("bytes=-3"), Some((7, 10)));
        assert_eq!(r("bytes=5-99"), Some((5, 10)));
        assert_eq!(r("bytes=10-"), None);
        for bad in ["bytes=a-b", "items=0-1", "bytes=0-1,3-4", "bytes=-", "0-1"] {
            assert_eq!(r(bad), None, "{bad}");
        }
    }
}
