//! The one interface blob bytes live behind ([`BlobStore`]), and the names it uses. The local
//! data directory ([`super::LocalBlobs`]) is the default; an S3-compatible object store
//! ([`super::S3Blobs`]) serves deployments with several server instances.

use std::fmt;
use std::io;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;

use gridcase_core::model::Millis;

/// A blob's name: its SHA-256, 64 lowercase hex digits (checked, so it is safe in a path).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(String);

impl Sha256 {
    /// Accepts 64 hex digits in either case (the case document stores lowercase).
    pub fn parse(text: &str) -> Option<Sha256> {
        (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Sha256(text.to_ascii_lowercase()))
    }

    pub fn of(bytes: &[u8]) -> Sha256 {
        use sha2::Digest;
        Sha256(crate::store::to_hex(&sha2::Sha256::digest(bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One device's upload of one blob: two devices sending the same photo upload apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upload {
    pub device: String,
    pub sha256: Sha256,
}

/// An upload in progress as the store lists it (for quotas and for removing abandoned ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    pub upload: Upload,
    /// The bytes kept so far.
    pub len: u64,
    /// When the last chunk arrived.
    pub last_chunk_at: Millis,
}

/// Bytes of a blob as they are read, so a download never holds the whole blob in memory.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// How a device id appears in a file or object name: hex, so any text is safe there.
pub(super) fn device_key(device: &str) -> String {
    crate::store::to_hex(device.as_bytes())
}

/// The device id back from [`device_key`]; `None` for a name no upload of ours has.
pub(super) fn device_of_key(key: &str) -> Option<String> {
    if !key.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..key.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(key.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// A stored blob as the store lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub sha256: Sha256,
    pub size: u64,
    /// When the bytes were stored (the file's modification time).
    pub stored_at: Millis,
}

/// Why a blob operation failed. Each refusal the phone can act on has its own variant.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The chunk does not start where the upload stands: resend from `committed`.
    #[error("the upload holds {committed} bytes; send the chunk at that offset")]
    Offset { committed: u64 },
    #[error("the bytes do not hash to the name they were uploaded under")]
    HashMismatch,
    #[error("not an accepted type (photo, audio recording or PDF)")]
    WrongType,
    #[error("larger than the {limit} bytes a file may have")]
    TooLarge { limit: u64 },
    #[error("over this device's quota of {quota} bytes")]
    OverQuota { quota: u64 },
    #[error("the requested range lies outside the blob")]
    Range,
    #[error("no such blob")]
    NotFound,
    #[error("blob storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("blob rows: {0}")]
    Db(#[from] crate::db::DbError),
}

/// What a finished upload looks like to the checks run before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received<'a> {
    pub size: u64,
    /// The first bytes (up to `super::sniff::SNIFF_BYTES`), for the type check.
    pub head: &'a [u8],
}

/// Content-addressed storage of attachment bytes with resumable uploads. A blob is stored only
/// under the SHA-256 of its bytes; a failed upload leaves nothing behind.
pub trait BlobStore: Send + Sync + fmt::Debug {
    /// The bytes of `upload` kept so far (0 if none): where the next chunk starts.
    fn upload_len(&self, upload: &Upload) -> Result<u64, BlobError>;
    /// Appends `bytes` at `offset`, which must be [`BlobStore::upload_len`] (else
    /// [`BlobError::Offset`]); durable once this returns. Returns the new length.
    fn put_chunk(&self, upload: &Upload, offset: u64, bytes: &[u8]) -> Result<u64, BlobError>;
    /// Hashes the upload; if the hash is its name and `accept` agrees, stores it under that
    /// name (a blob stored already stays as it is). On any error the upload is removed.
    fn commit(
        &self,
        upload: &Upload,
        accept: &dyn Fn(&Received<'_>) -> Result<(), BlobError>,
    ) -> Result<u64, BlobError>;
    /// Removes an upload's bytes (no error if there are none).
    fn abort(&self, upload: &Upload) -> Result<(), BlobError>;
    /// The size of a stored blob, `None` if it is not stored.
    fn size(&self, sha256: &Sha256) -> Result<Option<u64>, BlobError>;
    /// Bytes `start..end` of a stored blob (`end` at most its size, else [`BlobError::Range`]),
    /// read as the stream is polled.
    fn read_range(&self, sha256: &Sha256, start: u64, end: u64) -> Result<ByteStream, BlobError>;
    /// Deletes a stored blob; `false` if it was not stored.
    fn delete(&self, sha256: &Sha256) -> Result<bool, BlobError>;
    /// Every stored blob.
    fn list(&self) -> Result<Vec<BlobInfo>, BlobError>;
    /// The uploads in progress, of one device or (`None`) of all.
    fn uploads(&self, device: Option<&str>) -> Result<Vec<UploadInfo>, BlobError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_keys_round_trip_and_reject_other_names() {
        for device in ["dev-1", "dev/../1", "设备", ""] {
            assert_eq!(device_of_key(&device_key(device)).as_deref(), Some(device));
        }
        for bad in ["abc", "zz", "ff", "0g"] {
            assert_eq!(device_of_key(bad), None, "{bad}");
        }
    }
}
