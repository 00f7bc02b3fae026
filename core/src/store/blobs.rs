//! Attachment bytes on the phone: `blobs` (one row per SHA-256: type, size, upload state),
//! `blob_chunks` (the bytes, in rows of at most [`CHUNK_BYTES`], so no statement holds a whole
//! video in memory) and `blob_refs` (which held case references which blob, written with the
//! case's list row). They live in the SQLCipher database, encrypted at rest like the cases.
//!
//! Bytes are content-addressed and deduplicated: two cases attaching the same photo share one
//! row. Chunks are only ever appended at the end of what is held, so `held` (the sum of their
//! lengths) is also where a download resumes.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use crate::model::Millis;

/// The most bytes one `blob_chunks` row holds.
pub const CHUNK_BYTES: usize = 32 * 1024;

/// Where a blob stands with the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upload {
    /// Attached on this phone, waiting for (or in the middle of) its upload.
    Queued,
    /// The server holds it.
    Uploaded,
    /// The server refused it for good (type, size, quota): not sent again.
    Failed(String),
    /// It came from the server (attached on another phone).
    Remote,
}

impl Upload {
    fn column(&self) -> &'static str {
        match self {
            Upload::Queued => "queued",
            Upload::Uploaded => "uploaded",
            Upload::Failed(_) => "failed",
            Upload::Remote => "remote",
        }
    }
}

/// One blob's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRow {
    pub sha256: String,
    pub mime: String,
    pub size: u64,
    pub upload: Upload,
    /// Bytes the server said it holds of an upload in progress.
    pub sent: u64,
    /// Bytes held on this phone.
    pub held: u64,
}

impl BlobRow {
    pub fn complete(&self) -> bool {
        self.held == self.size
    }
}

/// The row of `sha256`, if this phone knows the blob.
pub fn row(conn: &Connection, sha256: &str) -> Result<Option<BlobRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT b.sha256, b.mime, b.size, b.upload, b.failure, b.sent,
                (SELECT coalesce(sum(length(c.bytes)), 0) FROM blob_chunks c
                  WHERE c.sha256 = b.sha256)
         FROM blobs b WHERE b.sha256 = ?1",
    )?;
    Ok(stmt.query_row([sha256], read_row).optional()?)
}

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BlobRow> {
    let upload = match r.get::<_, String>(3)?.as_str() {
        "queued" => Upload::Queued,
        "uploaded" => Upload::Uploaded,
        "failed" => Upload::Failed(r.get::<_, Option<String>>(4)?.unwrap_or_default()),
        _ => Upload::Remote,
    };
    Ok(BlobRow {
        sha256: r.get(0)?,
        mime: r.get(1)?,
        size: r.get::<_, i64>(2)? as u64,
        upload,
        sent: r.get::<_, i64>(5)? as u64,
        held: r.get::<_, i64>(6)? as u64,
    })
}

/// Keeps `bytes` (attached on this phone) and queues their upload. A blob held whole already
/// keeps its row and state (deduplication); one only partly downloaded gets its bytes
/// completed. Returns whether a new upload was queued.
pub fn keep_local(
    conn: &Connection,
    sha256: &str,
    mime: &str,
    bytes: &[u8],
    now: Millis,
) -> Result<bool, StoreError> {
    let existing = row(conn, sha256)?;
    if existing.as_ref().is_some_and(BlobRow::complete) {
        return Ok(false);
    }
    if existing.is_none() {
        conn.prepare_cached(
            "INSERT INTO blobs (sha256, mime, size, upload, queued_at) VALUES (?1, ?2, ?3, 'queued', ?4)",
        )?
        .execute(params![sha256, mime, bytes.len() as i64, now])?;
    }
    conn.prepare_cached("DELETE FROM blob_chunks WHERE sha256 = ?1")?
        .execute([sha256])?;
    for (i, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
        append(conn, sha256, (i * CHUNK_BYTES) as u64, chunk)?;
    }
    Ok(existing.is_none())
}

/// Records a blob known from the server (its bytes fetched later, if ever).
pub fn know_remote(
    conn: &Connection,
    sha256: &str,
    mime: &str,
    size: u64,
    now: Millis,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO blobs (sha256, mime, size, upload, queued_at)
         VALUES (?1, ?2, ?3, 'remote', ?4)",
    )?
    .execute(params![sha256, mime, size as i64, now])?;
    Ok(())
}

/// Appends downloaded bytes at `offset` (which must be what is held: see the module comment).
pub fn append(
    conn: &Connection,
    sha256: &str,
    offset: u64,
    bytes: &[u8],
) -> Result<(), StoreError> {
    let mut insert =
        conn.prepare_cached("INSERT INTO blob_chunks (sha256, offset, bytes) VALUES (?1, ?2, ?3)")?;
    for (i, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
        insert.execute(params![
            sha256,
            (offset as usize + i * CHUNK_BYTES) as i64,
            chunk
        ])?;
    }
    Ok(())
}

/// Drops the held bytes of `sha256` (a download that did not hash to its name).
pub fn drop_bytes(conn: &Connection, sha256: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM blob_chunks WHERE sha256 = ?1")?
        .execute([sha256])?;
    Ok(())
}

/// The held bytes of `sha256` in `[start, start + len)` (fewer at the end).
pub fn read_range(
    conn: &Connection,
    sha256: &str,
    start: u64,
    len: u64,
) -> Result<Vec<u8>, StoreError> {
    let end = start.saturating_add(len);
    let mut stmt = conn.prepare_cached(
        "SELECT offset, bytes FROM blob_chunks
         WHERE sha256 = ?1 AND offset < ?3 AND offset + length(bytes) > ?2 ORDER BY offset",
    )?;
    let mut rows = stmt.query(params![
        sha256,
        start as i64,
        end.min(i64::MAX as u64) as i64
    ])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let offset = row.get::<_, i64>(0)? as u64;
        let bytes: Vec<u8> = row.get(1)?;
        let from = start.saturating_sub(offset) as usize;
        let to = ((end - offset) as usize).min(bytes.len());
        out.extend_from_slice(&bytes[from..to]);
    }
    Ok(out)
}

/// Blobs attached here and not yet uploaded, oldest first.
pub fn queued(conn: &Connection) -> Result<Vec<BlobRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT sha256 FROM blobs WHERE upload = 'queued' ORDER BY queued_at, sha256",
    )?;
    let hashes: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut rows = Vec::with_capacity(hashes.len());
    for sha256 in hashes {
        rows.extend(row(conn, &sha256)?);
    }
    Ok(rows)
}

/// Records how many bytes the server holds of an upload in progress.
pub fn set_sent(conn: &Connection, sha256: &str, sent: u64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE blobs SET sent = ?2 WHERE sha256 = ?1")?
        .execute(params![sha256, sent as i64])?;
    Ok(())
}

/// Sets where the blob stands with the server.
pub fn set_upload(conn: &Connection, sha256: &str, upload: &Upload) -> Result<(), StoreError> {
    let failure = match upload {
        Upload::Failed(why) => Some(why.as_str()),
        _ => None,
    };
    conn.prepare_cached("UPDATE blobs SET upload = ?2, failure = ?3 WHERE sha256 = ?1")?
        .execute(params![sha256, upload.column(), failure])?;
    Ok(())
}

/// Rewrites the blobs `case_id` references (with its list row); those in `thumbnails` are
/// photos' thumbnails.
pub fn set_refs(
    conn: &Connection,
    case_id: &str,
    hashes: &[String],
    thumbnails: &[String],
) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM blob_refs WHERE case_id = ?1")?
        .execute([case_id])?;
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO blob_refs (case_id, sha256, thumbnail) VALUES (?1, ?2, ?3)",
    )?;
    for sha256 in hashes {
        insert.execute(params![case_id, sha256, thumbnails.contains(sha256)])?;
    }
    Ok(())
}

/// The thumbnails held cases reference whose bytes this phone does not hold whole (to
/// prefetch), as (a case referencing it, SHA-256), in SHA-256 order.
pub fn missing_thumbnails(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT min(r.case_id), r.sha256 FROM blob_refs r WHERE r.thumbnail
         GROUP BY r.sha256 ORDER BY r.sha256",
    )?;
    let refs = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut missing = Vec::new();
    for pair in refs {
        let (case_id, sha256): (String, String) = pair?;
        if !row(conn, &sha256)?.is_some_and(|r| r.complete()) {
            missing.push((case_id, sha256));
        }
    }
    Ok(missing)
}

/// Whether the held case `case_id` references `sha256`.
pub fn is_referenced(conn: &Connection, case_id: &str, sha256: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM blob_refs WHERE case_id = ?1 AND sha256 = ?2)",
        )?
        .query_row([case_id, sha256], |r| r.get(0))?)
}

/// The held cases that reference `sha256`.
pub fn referencing_cases(conn: &Connection, sha256: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT case_id FROM blob_refs WHERE sha256 = ?1 ORDER BY case_id")?;
    let rows = stmt.query_map([sha256], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes the blobs no held case references any more (their cases left this phone), except
/// those still waiting for their upload. Returns how many.
pub fn drop_unreferenced(conn: &Connection) -> Result<usize, StoreError> {
    let gone = "SELECT sha256 FROM blobs WHERE upload <> 'queued'
                  AND sha256 NOT IN (SELECT sha256 FROM blob_refs)";
    conn.execute(
        &format!("DELETE FROM blob_chunks WHERE sha256 IN ({gone})"),
        [],
    )?;
    Ok(conn.execute(&format!("DELETE FROM blobs WHERE sha256 IN ({gone})"), [])?)
}
