//! Attachment bytes' rows in SQLite (`crate::blobs`): `blobs` and `case_blobs`.

use gridcase_core::model::Millis;
use gridcase_core::scope::Scope;
use rusqlite::{Connection, OptionalExtension, named_params, params};

use super::SqliteDb;
use super::documents::scope_sql;
use crate::db::{BlobRow, BlobRows, Result};

/// Rewrites the references of `case_id` (in its commit's transaction). A case's attachments
/// only grow, but rewriting keeps the rows equal to the document whatever happened before.
pub(super) fn write_case_blobs(
    tx: &Connection,
    case_id: &str,
    refs: &[(String, bool)],
) -> Result<()> {
    tx.prepare_cached("DELETE FROM case_blobs WHERE case_id = ?1")?
        .execute([case_id])?;
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO case_blobs (case_id, sha256, is_pii) VALUES (?1, ?2, ?3)",
    )?;
    for (sha256, personal) in refs {
        insert.execute(params![case_id, sha256, personal])?;
    }
    Ok(())
}

impl BlobRows for SqliteDb {
    fn insert_blob(&self, b: &BlobRow) -> Result<bool> {
        self.write(|tx| {
            let n = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO blobs (sha256, size, mime, device_id, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    b.sha256,
                    b.size as i64,
                    b.mime,
                    b.device_id,
                    b.created_at
                ])?;
            Ok((n == 1, n == 1))
        })
    }

    fn blob(&self, sha256: &str) -> Result<Option<BlobRow>> {
        Ok(self
            .conn()?
            .prepare_cached(
                "SELECT sha256, size, mime, device_id, created_at FROM blobs WHERE sha256 = ?1",
            )?
            .query_row([sha256], |r| {
                Ok(BlobRow {
                    sha256: r.get(0)?,
                    size: r.get::<_, i64>(1)? as u64,
                    mime: r.get(2)?,
                    device_id: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })
            .optional()?)
    }

    fn blob_bytes_of(&self, device_id: &str) -> Result<u64> {
        let bytes: i64 = self.conn()?.query_row(
            "SELECT coalesce(sum(size), 0) FROM blobs WHERE device_id = ?1",
            [device_id],
            |r| r.get(0),
        )?;
        Ok(bytes as u64)
    }

    fn blob_cases_in_scope(&self, sha256: &str, scope: &Scope) -> Result<Vec<String>> {
        let (prefix, user, pii) = scope.params();
        let conn = self.conn()?;
        let sql = format!(
            "SELECT DISTINCT d.case_id FROM case_blobs d JOIN cases k ON k.case_id = d.case_id
             WHERE d.sha256 = :sha256 AND {} ORDER BY d.case_id",
            scope_sql()
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            named_params! {":sha256": sha256, ":prefix": prefix, ":user": user, ":pii": pii},
            |r| r.get(0),
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn case_references_blob(&self, case_id: &str, sha256: &str) -> Result<bool> {
        Ok(self.conn()?.query_row(
            "SELECT EXISTS (SELECT 1 FROM case_blobs WHERE case_id = ?1 AND sha256 = ?2)",
            [case_id, sha256],
            |r| r.get(0),
        )?)
    }

    fn unreferenced_blobs(&self, before: Millis) -> Result<Vec<String>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT b.sha256 FROM blobs b WHERE b.created_at < ?1
               AND NOT EXISTS (SELECT 1 FROM case_blobs c WHERE c.sha256 = b.sha256)
             ORDER BY b.sha256",
        )?;
        let rows = stmt.query_map([before], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn delete_unreferenced_blob(&self, sha256: &str) -> Result<bool> {
        self.write(|tx| {
            let n = tx
                .prepare_cached(
                    "DELETE FROM blobs WHERE sha256 = ?1
                       AND NOT EXISTS (SELECT 1 FROM case_blobs c WHERE c.sha256 = ?1)",
                )?
                .execute([sha256])?;
            Ok((n == 1, n == 1))
        })
    }

    fn case_ids_after(&self, after: &str, limit: u32) -> Result<Vec<String>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT case_id FROM cases WHERE case_id > ?1 ORDER BY case_id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after, limit], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn add_case_blobs(&self, case_id: &str, hashes: &[String]) -> Result<u64> {
        self.write(|tx| {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO case_blobs (case_id, sha256, is_pii) VALUES (?1, ?2, 0)",
            )?;
            let mut added = 0;
            for sha256 in hashes {
                added += insert.execute([case_id, sha256])? as u64;
            }
            Ok((added, added > 0))
        })
    }
}
