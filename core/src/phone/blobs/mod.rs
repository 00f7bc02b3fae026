//! Attachment bytes on the phone (issue 10): attach offline, upload after the cases, open
//! lazily. The bytes live in the phone's encrypted store (`crate::store::blobs`); what to do
//! with the server is decided by the pure [`upload`] state machine, and this module is the
//! shell around it: short transactions, and the network with nothing held.
//!
//! - [`Phone::attach`] keeps the bytes (content-addressed, deduplicated), adds the reference to
//!   the case and queues the upload, all in one transaction: the list shows it at once.
//! - [`Phone::sync_with_attachments`] syncs the cases, then uploads what is queued. Cases
//!   first: an upload never delays the cases and its failure never fails their sync.
//! - [`Phone::open_attachment`] returns the bytes held, or fetches them (resuming a cut
//!   download where it stopped) and keeps them.

pub mod upload;

use std::sync::TryLockError;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::sync::{SyncPhase, SyncProgress, SyncSummary};
use super::{CaseChanges, ChangeSource, Phone, PhoneError, Transport, TransportError};
use crate::media::{self, PhotoPolicy};
use crate::model::{Attachment, Millis, NewAttachment, Variant, VariantKind};
use crate::store::Store;
use crate::store::blobs::{self, BlobRow, Upload};
use upload::{BlobUpload, UploadEnd, UploadStatus, UploadStep};

/// The most bytes asked for per download request (a cut loses at most this much). A cut
/// halves the range, each range that arrives doubles it back, as uploads do with chunks.
pub const DOWNLOAD_BYTES: u64 = 64 * 1024;

/// A range of a blob's bytes as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeBytes {
    pub bytes: Vec<u8>,
    /// The whole blob's size.
    pub size: u64,
    /// The type the server sniffed from the bytes.
    pub mime: String,
}

/// The blob half of the phone's link to its server (HTTP in the app, in memory in tests). Like
/// [`Transport`], it runs while the phone holds no lock and no transaction.
pub trait BlobTransport {
    /// Where this device's upload of `sha256` stands.
    fn upload_status(&mut self, sha256: &str) -> Result<UploadStatus, TransportError>;
    /// Sends `bytes` at `offset`; the answer says where the upload stands after it.
    fn put_chunk(
        &mut self,
        sha256: &str,
        offset: u64,
        bytes: &[u8],
    ) -> Result<UploadStatus, TransportError>;
    /// Asks the server to check (hash, type, size, quota) and store the upload.
    fn commit(&mut self, sha256: &str) -> Result<(), TransportError>;
    /// At most `len` bytes of the blob from `start`.
    fn download(
        &mut self,
        sha256: &str,
        start: u64,
        len: u64,
    ) -> Result<RangeBytes, TransportError>;
}

/// Where an attachment's bytes are, for the app's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum AttachmentState {
    /// Attached here, waiting for its upload.
    Local,
    /// Attached here; the server holds `sent` bytes of it so far.
    Uploading { sent: u64 },
    /// Attached here and stored by the server.
    Uploaded,
    /// Attached here; the server refused it for good (it is not sent again).
    Failed { reason: String },
    /// Attached on another phone; fetched when opened.
    RemoteOnly,
    /// Attached on another phone and fetched.
    Downloaded,
}

impl AttachmentState {
    fn of(row: Option<&BlobRow>) -> AttachmentState {
        let Some(row) = row else {
            return AttachmentState::RemoteOnly;
        };
        match &row.upload {
            Upload::Queued if row.sent == 0 => AttachmentState::Local,
            Upload::Queued => AttachmentState::Uploading { sent: row.sent },
            Upload::Uploaded => AttachmentState::Uploaded,
            Upload::Failed(reason) => AttachmentState::Failed {
                reason: reason.clone(),
            },
            Upload::Remote if row.complete() => AttachmentState::Downloaded,
            Upload::Remote => AttachmentState::RemoteOnly,
        }
    }
}

/// An attachment of a case with where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentView {
    pub attachment: Attachment,
    pub state: AttachmentState,
}

/// What the upload after a sync did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UploadSummary {
    /// Attachments (SHA-256) the server now stores.
    pub uploaded: Vec<String>,
    /// Refused for good: (SHA-256, the server's reason).
    pub refused: Vec<(String, String)>,
    /// Why the rest waits for the next sync (the link or the server), if it does.
    pub deferred: Option<String>,
    /// Thumbnails fetched after the uploads (the photo policy's prefetch).
    #[serde(default)]
    pub thumbnails_fetched: Vec<String>,
}

/// The SHA-256 of `bytes`, in lowercase hex (an attachment's name).
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A MIME type as `type/subtype`, in the characters a header allows.
fn check_mime(mime: &str) -> Result<(), PhoneError> {
    let ok = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    };
    match mime.split_once('/') {
        Some((kind, sub)) if ok(kind) && ok(sub) => Ok(()),
        _ => Err(PhoneError::BadInput(format!(
            "{mime:?} is not a file type (like image/jpeg)"
        ))),
    }
}

impl Phone {
    /// How photos attached from now on are prepared, and whether thumbnails are prefetched:
    /// the county's policy, handed in by the app (`None`, the default: kept as given, no
    /// thumbnails).
    pub fn set_photo_policy(&self, policy: Option<PhotoPolicy>) {
        *self.photo_policy.write().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    fn photo_policy(&self) -> Option<PhotoPolicy> {
        self.photo_policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The files to keep for `bytes`, the attachment first: as the photo policy prepares it,
    /// then its thumbnail and its original when the policy makes them (see [`Variant`]). Each
    /// file inherits the caption and `personal` (a thumbnail of a face shows the face).
    fn files_to_keep(
        &self,
        bytes: &[u8],
        mime: &str,
        caption: &str,
        personal: bool,
    ) -> Result<Vec<(NewAttachment, Vec<u8>)>, PhoneError> {
        let prepared = match self.photo_policy() {
            None => media::Prepared {
                bytes: bytes.to_vec(),
                mime: mime.into(),
                original: None,
                thumbnail: None,
            },
            Some(policy) => media::prepare_attachment(bytes.to_vec(), mime, &policy)
                .map_err(|e| PhoneError::BadInput(e.to_string()))?,
        };
        let file = |bytes: Vec<u8>, mime: &str, variant: Option<Variant>| {
            let new = NewAttachment {
                sha256: sha256_hex(&bytes),
                mime: mime.to_ascii_lowercase(),
                size: bytes.len() as u64,
                caption: caption.into(),
                personal,
                variant,
            };
            (new, bytes)
        };
        let main = file(prepared.bytes, &prepared.mime, None);
        let of = |kind| {
            Some(Variant {
                kind,
                of: main.0.sha256.clone(),
            })
        };
        let mut files = Vec::with_capacity(3);
        if let Some(thumb) = prepared.thumbnail {
            files.push(file(thumb, "image/jpeg", of(VariantKind::Thumbnail)));
        }
        if let Some(original) = prepared.original {
            files.push(file(original, mime, of(VariantKind::Original)));
        }
        files.insert(0, main);
        Ok(files)
    }

    /// Attaches `bytes` (a photo, a recording, a scan) to a held case, offline: the bytes are
    /// kept in the store, the reference is added to the case, and the upload is queued, in one
    /// transaction. Returns the attachment's id. `personal`: the file shows the complainant
    /// (the unit complained about never receives it). A photo policy may add its thumbnail
    /// and its original as entries of their own ([`Variant`]), kept and queued alike.
    pub fn attach(
        &self,
        case_id: &str,
        bytes: &[u8],
        mime: &str,
        caption: &str,
        personal: bool,
        now: Millis,
    ) -> Result<String, PhoneError> {
        check_mime(mime)?;
        if bytes.is_empty() {
            return Err(PhoneError::BadInput(
                "an attachment holds at least one byte".into(),
            ));
        }
        // Photos are downscaled and stripped of their location by policy before hashing, so
        // the name, the size and the queued bytes are those of what is uploaded.
        let files = self.files_to_keep(bytes, mime, caption, personal)?;
        self.mutate_case_with(
            case_id,
            now,
            |doc, author| {
                let ids = files.iter().map(|(new, _)| doc.attach(new, author, now));
                ids.collect::<Result<Vec<_>, _>>().map(|ids| ids[0].clone())
            },
            |tx| {
                for (new, bytes) in &files {
                    blobs::keep_local(tx, &new.sha256, &new.mime, bytes, now)?;
                }
                Ok(())
            },
        )
    }

    /// The attachments of a held case, each with where its bytes are.
    pub fn attachments(&self, case_id: &str) -> Result<Vec<AttachmentView>, PhoneError> {
        let case = self.get_case(case_id)?.case;
        let mut store = self.app();
        let tx = store.read()?;
        case.attachments
            .into_iter()
            .map(|attachment| {
                let row = blobs::row(&tx, &attachment.sha256)?;
                let state = AttachmentState::of(row.as_ref());
                Ok(AttachmentView { attachment, state })
            })
            .collect()
    }

    /// Syncs the cases ([`Phone::sync`]), then uploads the queued attachments. A failed upload
    /// stays queued (see [`UploadSummary::deferred`]) and does not fail the sync; a failed case
    /// sync uploads nothing.
    pub fn sync_with_attachments<T: Transport + BlobTransport>(
        &self,
        transport: &mut T,
        now: Millis,
        progress: &mut dyn FnMut(SyncProgress),
        cancel: &AtomicBool,
        page_size: u32,
    ) -> Result<SyncSummary, PhoneError> {
        let mut summary = self.sync(transport, now, progress, cancel, page_size)?;
        if summary.cancelled {
            return Ok(summary);
        }
        let mut uploads = UploadSummary::default();
        if let Err(e) = self.upload_queued(
            transport,
            &mut summary.progress,
            progress,
            cancel,
            &mut uploads,
        ) {
            uploads.deferred = Some(e.to_string());
        }
        if self.photo_policy().is_some_and(|p| p.prefetch_thumbnails) {
            let fetched = self.prefetch_thumbnails(transport, now, cancel, &mut uploads);
            if let Err(e) = fetched {
                uploads.deferred.get_or_insert(e.to_string());
            }
        }
        summary.progress.phase = SyncPhase::Done;
        progress(summary.progress.clone());
        summary.uploads = uploads;
        Ok(summary)
    }

    /// Fetches the thumbnails of held cases' photos not held yet (the photos stay lazy), each
    /// as [`Phone::open_attachment`] would; stops at the first failure (the rest waits for the
    /// next sync).
    fn prefetch_thumbnails(
        &self,
        transport: &mut dyn BlobTransport,
        now: Millis,
        cancel: &AtomicBool,
        summary: &mut UploadSummary,
    ) -> Result<(), PhoneError> {
        let missing = {
            let mut store = self.app();
            let tx = store.read()?;
            blobs::missing_thumbnails(&tx)?
        };
        for (case_id, sha) in missing {
            if cancel.load(Ordering::SeqCst) {
                break;
            }
            self.open_attachment(&case_id, &sha, now, Some(&mut *transport))?;
            summary.thumbnails_fetched.push(sha);
        }
        Ok(())
    }

    /// Uploads every queued blob, oldest first, until one must wait (then the rest waits too).
    fn upload_queued(
        &self,
        transport: &mut dyn BlobTransport,
        shown: &mut SyncProgress,
        progress: &mut dyn FnMut(SyncProgress),
        cancel: &AtomicBool,
        summary: &mut UploadSummary,
    ) -> Result<(), PhoneError> {
        self.check()?;
        let mut store = match self.sync.try_lock() {
            Ok(store) => store,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            // Another sync runs: it uploads the queue itself.
            Err(TryLockError::WouldBlock) => return Ok(()),
        };
        let queued = blobs::queued(store.conn())?;
        shown.phase = SyncPhase::Uploading;
        shown.blob_bytes_total = queued.iter().map(|b| b.size).sum();
        shown.blob_bytes_sent = queued.iter().map(|b| b.sent).sum();
        progress(shown.clone());
        for row in queued {
            if cancel.load(Ordering::SeqCst) {
                break;
            }
            let end = self.upload_one(&mut store, transport, &row, shown, progress)?;
            let sha = row.sha256.clone();
            match end {
                UploadEnd::Uploaded => summary.uploaded.push(sha),
                UploadEnd::Refused(why) => summary.refused.push((sha, why)),
                UploadEnd::Later(e) => {
                    summary.deferred = Some(e.to_string());
                    break;
                }
            }
        }
        Ok(())
    }

    /// Runs one blob's [`BlobUpload`] to its end and records it.
    fn upload_one(
        &self,
        store: &mut Store,
        transport: &mut dyn BlobTransport,
        row: &BlobRow,
        shown: &mut SyncProgress,
        progress: &mut dyn FnMut(SyncProgress),
    ) -> Result<UploadEnd, PhoneError> {
        let sha = row.sha256.as_str();
        let mut upload = BlobUpload::new(row.size, row.sent);
        let mut step = upload.start();
        let end = loop {
            let before = upload.offset();
            step = match step {
                UploadStep::AskStatus => upload.status(transport.upload_status(sha)),
                UploadStep::Send { offset, len } => {
                    let bytes = blobs::read_range(store.conn(), sha, offset, len)?;
                    upload.chunk_sent(transport.put_chunk(sha, offset, &bytes))
                }
                UploadStep::Commit => upload.committed(transport.commit(sha)),
                UploadStep::Done(end) => break end,
            };
            if upload.offset() != before {
                let gained = upload.offset().saturating_sub(before);
                shown.blob_bytes_sent = shown.blob_bytes_sent.saturating_add(gained);
                blobs::set_sent(store.conn(), sha, upload.offset())?;
                progress(shown.clone());
            }
        };
        match &end {
            UploadEnd::Uploaded => blobs::set_upload(store.conn(), sha, &Upload::Uploaded)?,
            UploadEnd::Refused(why) => {
                blobs::set_upload(store.conn(), sha, &Upload::Failed(why.clone()))?
            }
            UploadEnd::Later(_) => return Ok(end),
        }
        let mut changes = CaseChanges::new(ChangeSource::Sync);
        changes.updated = blobs::referencing_cases(store.conn(), sha)?;
        self.listeners.notify(changes.normalized());
        Ok(end)
    }

    /// The bytes of attachment `sha256` of the held case `case_id`: those held, or else fetched
    /// through `transport` (resuming a cut download where it stopped; `None`: offline, which
    /// fails with [`PhoneError::NotDownloaded`]), checked against their name and kept.
    pub fn open_attachment(
        &self,
        case_id: &str,
        sha256: &str,
        now: Millis,
        transport: Option<&mut dyn BlobTransport>,
    ) -> Result<Vec<u8>, PhoneError> {
        self.check()?;
        let sha = sha256.to_ascii_lowercase();
        let row = {
            let mut store = self.app();
            let tx = store.read()?;
            if !blobs::is_referenced(&tx, case_id, &sha)? {
                return Err(PhoneError::NotFound(format!("{case_id}: attachment {sha}")));
            }
            let row = blobs::row(&tx, &sha)?;
            if let Some(row) = row.as_ref().filter(|r| r.complete()) {
                return Ok(blobs::read_range(&tx, &sha, 0, row.size)?);
            }
            row
        };
        let Some(transport) = transport else {
            return Err(PhoneError::NotDownloaded(sha));
        };
        self.download(transport, &sha, row.map_or(0, |r| r.held), now)
    }

    /// Fetches the rest of a blob from `held`, a range at a time, each kept as it arrives.
    fn download(
        &self,
        transport: &mut dyn BlobTransport,
        sha: &str,
        mut held: u64,
        now: Millis,
    ) -> Result<Vec<u8>, PhoneError> {
        let (mut cuts, mut len) = (0, DOWNLOAD_BYTES);
        loop {
            let part = match transport.download(sha, held, len) {
                Ok(part) => part,
                Err(TransportError::Network(_)) if cuts < upload::MAX_CUTS => {
                    cuts += 1;
                    len = (len / 2).max(upload::MIN_CHUNK_BYTES);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            cuts = 0;
            len = (len * 2).min(DOWNLOAD_BYTES);
            let past_end = held.saturating_add(part.bytes.len() as u64) > part.size;
            if past_end || (part.bytes.is_empty() && held < part.size) {
                return Err(super::error::bad(sha, "a download range outside the file"));
            }
            let mut store = self.app();
            let tx = store.write()?;
            blobs::know_remote(&tx, sha, &part.mime, part.size, now)?;
            let now_held = blobs::row(&tx, sha)?.map_or(0, |r| r.held);
            if now_held == held {
                blobs::append(&tx, sha, held, &part.bytes)?;
                held += part.bytes.len() as u64;
            } else {
                held = now_held; // another call fetched meanwhile
            }
            if held >= part.size {
                let bytes = blobs::read_range(&tx, sha, 0, part.size)?;
                if sha256_hex(&bytes) != sha {
                    blobs::drop_bytes(&tx, sha)?;
                    tx.commit()?;
                    return Err(super::error::bad(
                        sha,
                        "the bytes do not hash to their name",
                    ));
                }
                tx.commit()?;
                return Ok(bytes);
            }
            tx.commit()?;
        }
    }
}

#[cfg(test)]
mod tests;
