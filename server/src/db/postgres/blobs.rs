//! Attachment bytes' rows in PostgreSQL (`crate::blobs`): `blobs` and `case_blobs`.

use gridcase_core::model::Millis;
use gridcase_core::scope::Scope;

use super::documents::scope_sql;
use super::{PgConn, PgDb};
use crate::db::{BlobRow, BlobRows, Result};

/// Rewrites the references of `case_id` (in its commit's transaction), as SQLite does.
pub(super) fn write_case_blobs(
    tx: &mut PgConn,
    case_id: &str,
    refs: &[(String, bool)],
) -> Result<()> {
    tx.execute("DELETE FROM case_blobs WHERE case_id = $1", &[&case_id])?;
    for (sha256, personal) in refs {
        tx.execute(
            "INSERT INTO case_blobs (case_id, sha256, is_pii) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&case_id, sha256, personal],
        )?;
    }
    Ok(())
}

impl BlobRows for PgDb {
    fn insert_blob(&self, b: &BlobRow) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "INSERT INTO blobs (sha256, size, mime, device_id, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sha256) DO NOTHING",
                &[
                    &b.sha256,
                    &(b.size as i64),
                    &b.mime,
                    &b.device_id,
                    &b.created_at,
                ],
            )?;
            Ok((n == 1, n == 1))
        })
    }

    fn blob(&self, sha256: &str) -> Result<Option<BlobRow>> {
        let row = self.conn()?.query_opt(
            "SELECT sha256, size, mime, device_id, created_at FROM blobs WHERE sha256 = $1",
            &[&sha256],
        )?;
        Ok(row.map(|r| BlobRow {
            sha256: r.get(0),
            size: r.get::<_, i64>(1) as u64,
            mime: r.get(2),
            device_id: r.get(3),
            created_at: r.get(4),
        }))
    }

    fn blob_bytes_of(&self, device_id: &str) -> Result<u64> {
        let row = self.conn()?.query_one(
            "SELECT coalesce(sum(size), 0)::bigint FROM blobs WHERE device_id = $1",
            &[&device_id],
        )?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    fn blob_cases_in_scope(&self, sha256: &str, scope: &Scope) -> Result<Vec<String>> {
        let (prefix, user, pii) = scope.params();
        let sql = format!(
            "SELECT DISTINCT d.case_id FROM case_blobs d JOIN cases k ON k.case_id = d.case_id
             WHERE d.sha256 = $1 AND {} ORDER BY d.case_id",
            scope_sql(2)
        );
        let rows = self.conn()?.query(&sql, &[&sha256, &prefix, &user, &pii])?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn case_references_blob(&self, case_id: &str, sha256: &str) -> Result<bool> {
        let row = self.conn()?.query_one(
            "SELECT EXISTS (SELECT 1 FROM case_blobs WHERE case_id = $1 AND sha256 = $2)",
            &[&case_id, &sha256],
        )?;
        Ok(row.get(0))
    }

    fn unreferenced_blobs(&self, before: Millis) -> Result<Vec<String>> {
        let rows = self.conn()?.query(
            "SELECT b.sha256 FROM blobs b WHERE b.created_at < $1
               AND NOT EXISTS (SELECT 1 FROM case_blobs c WHERE c.sha256 = b.sha256)
             ORDER BY b.sha256",
            &[&before],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn delete_unreferenced_blob(&self, sha256: &str) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM blobs WHERE sha256 = $1
                   AND NOT EXISTS (SELECT 1 FROM case_blobs c WHERE c.sha256 = $1)",
                &[&sha256],
            )?;
            Ok((n == 1, n == 1))
        })
    }

    fn case_ids_after(&self, after: &str, limit: u32) -> Result<Vec<String>> {
        let rows = self.conn()?.query(
            "SELECT case_id FROM cases WHERE case_id > $1 ORDER BY case_id LIMIT $2",
            &[&after, &i64::from(limit)],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn add_case_blobs(&self, case_id: &str, hashes: &[String]) -> Result<u64> {
        self.write(|tx| {
            let mut added = 0;
            for sha256 in hashes {
                added += tx.execute(
                    "INSERT INTO case_blobs (case_id, sha256, is_pii) VALUES ($1, $2, FALSE)
                     ON CONFLICT DO NOTHING",
                    &[&case_id, sha256],
                )?;
            }
            Ok((added, added > 0))
        })
    }
}
