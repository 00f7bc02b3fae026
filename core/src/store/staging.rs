//! The `staged_parts` table: the parts received so far of a snapshot sent in parts
//! (`crate::sync::parts`), one row per part, committed with the page that brought it. It holds
//! one snapshot at a time: the restore asks for documents in order, and a part of another
//! snapshot replaces what is staged.

use rusqlite::{Connection, params};

use super::StoreError;
use crate::sync::{SnapshotPart, StagedSnapshot};

/// What is staged: which snapshot, its announced length, and how many bytes are held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub snapshot: StagedSnapshot,
    pub total: u64,
}

/// The snapshot staged, if any (the first one, should rows of two ever be found).
pub fn staged(conn: &Connection) -> Result<Option<Staged>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT doc_id, hash, total, SUM(length(bytes)) FROM staged_parts
         GROUP BY doc_id, hash, total ORDER BY doc_id LIMIT 1",
    )?;
    let mut rows = stmt.query([])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    Ok(Some(Staged {
        snapshot: StagedSnapshot {
            doc_id: row.get(0)?,
            hash: row.get(1)?,
            have: row.get::<_, i64>(3)? as u64,
        },
        total: row.get::<_, i64>(2)? as u64,
    }))
}

/// Stores one part (checked by `parts::receive` to continue what is staged).
pub fn stage(conn: &Connection, part: &SnapshotPart) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO staged_parts (doc_id, hash, total, offset, bytes) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        part.doc_id,
        part.hash,
        part.total as i64,
        part.offset as i64,
        part.bytes
    ])?;
    Ok(())
}

/// The staged parts of `doc_id`, in order.
pub fn parts(conn: &Connection, doc_id: &str) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT bytes FROM staged_parts WHERE doc_id = ?1 ORDER BY offset")?;
    let rows = stmt.query_map([doc_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Forgets everything staged.
pub fn discard(conn: &Connection) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM staged_parts")?
        .execute([])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::temp;
    use crate::store::{Store, schema};
    use crate::sync::parts::next_part;

    /// A phone at schema 4 (before parts) opens at the latest schema with an empty staging
    /// table, keeping what it held; staged parts survive a reopen (an app restart) and a wipe
    /// removes them.
    #[test]
    fn the_staging_table_is_added_by_migration_survives_a_restart_and_is_wiped() {
        let (_dir, path) = temp();
        {
            let conn = Connection::open(&path).unwrap();
            for step in &schema::MIGRATIONS[..4] {
                conn.execute_batch(step.sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 4).unwrap();
            super::super::meta::set(&conn, "device_id", "d1").unwrap();
        }
        let snapshot: Vec<u8> = (0..5_000u32).map(|i| (i % 253) as u8).collect();
        let first = next_part("c1", &snapshot, None, 2_000);
        {
            let store = Store::open(&path, None).unwrap();
            assert_eq!(store.schema_version().unwrap(), schema::latest_version());
            assert_eq!(
                super::super::meta::device_id(store.conn()).unwrap(),
                Some("d1".into())
            );
            assert_eq!(staged(store.conn()).unwrap(), None);
            stage(store.conn(), &first).unwrap();
        }
        let mut store = Store::open(&path, None).unwrap();
        let held = staged(store.conn())
            .unwrap()
            .expect("staged across a reopen");
        assert_eq!(held.total, 5_000);
        assert_eq!(held.snapshot.have, 2_000);
        let second = next_part("c1", &snapshot, Some(&held.snapshot), 2_000);
        assert_eq!(second.offset, 2_000);
        stage(store.conn(), &second).unwrap();
        assert_eq!(
            parts(store.conn(), "c1").unwrap().concat(),
            snapshot[..4_000]
        );
        store.wipe().unwrap();
        assert_eq!(staged(store.conn()).unwrap(), None);
        stage(store.conn(), &first).unwrap();
        discard(store.conn()).unwrap();
        assert_eq!(staged(store.conn()).unwrap(), None);
    }
}
