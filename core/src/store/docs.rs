//! The documents: a snapshot plus appended change rows each, the sync bookkeeping beside them
//! (`server_heads`, `pending`, a rejection), and the `refetch` list of documents to catch up on.

use automerge::{ActorId, AutoCommit, Change, ChangeHash};
use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use crate::model::Millis;

/// A document is compacted once it has more than this many incremental change rows.
pub const COMPACT_AFTER: i64 = 32;

pub fn heads_to_blob(heads: &[ChangeHash]) -> Vec<u8> {
    let mut sorted: Vec<&ChangeHash> = heads.iter().collect();
    sorted.sort();
    sorted.dedup();
    sorted.iter().flat_map(|h| h.0).collect()
}

pub fn heads_from_blob(doc_id: &str, blob: &[u8]) -> Result<Vec<ChangeHash>, StoreError> {
    if !blob.len().is_multiple_of(32) {
        return Err(StoreError::Corrupt {
            doc_id: doc_id.into(),
            message: "server_heads is not a list of 32-byte hashes".into(),
        });
    }
    Ok(blob
        .chunks(32)
        .map(|c| ChangeHash::try_from(c).expect("32-byte chunk"))
        .collect())
}

/// Whether `doc` holds every one of `heads`: look-ups in its change graph.
/// (`get_change_by_hash` rebuilds the change from the document's operations; called for every
/// received document, it was the largest single cost of a restore on the phone.)
pub fn holds_all(doc: &mut AutoCommit, heads: &[ChangeHash]) -> bool {
    if !doc.get_missing_deps(&[]).is_empty() {
        // Changes wait for missing dependencies: a head among them is not held, although
        // `get_missing_deps` would not name it.
        return heads.iter().all(|h| doc.get_change_by_hash(h).is_some());
    }
    doc.get_missing_deps(heads).is_empty()
}

// ----- documents -----

/// Sync bookkeeping of one stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocState {
    pub server_heads: Vec<ChangeHash>,
    pub pending: bool,
    /// `(code, message)` of the server's last rejection.
    pub rejected: Option<(String, String)>,
}

pub fn doc_state(conn: &Connection, doc_id: &str) -> Result<Option<DocState>, StoreError> {
    let row = conn
        .query_row(
            "SELECT server_heads, pending, rejected_code, rejected_message
             FROM docs WHERE doc_id = ?1",
            [doc_id],
            |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            },
        )
        .optional()?;
    let Some((heads, pending, code, message)) = row else {
        return Ok(None);
    };
    Ok(Some(DocState {
        server_heads: heads_from_blob(doc_id, &heads)?,
        pending,
        rejected: code.map(|c| (c, message.unwrap_or_default())),
    }))
}

/// A document read from the store.
#[derive(Debug)]
pub struct Loaded {
    pub doc: AutoCommit,
    /// The heads of what is stored: [`persist`] writes the changes beyond them.
    pub persisted: Vec<ChangeHash>,
    pub state: DocState,
}

fn corrupt(doc_id: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        doc_id: doc_id.into(),
        message: e.to_string(),
    }
}

/// Loads a document (snapshot, then its changes in order) with `actor` as the local actor.
pub fn load_doc(
    conn: &Connection,
    doc_id: &str,
    actor: &ActorId,
) -> Result<Option<Loaded>, StoreError> {
    let Some(state) = doc_state(conn, doc_id)? else {
        return Ok(None);
    };
    let snapshot: Vec<u8> = conn.query_row(
        "SELECT snapshot FROM docs WHERE doc_id = ?1",
        [doc_id],
        |r| r.get(0),
    )?;
    let mut doc = AutoCommit::load(&snapshot)
        .map_err(|e| corrupt(doc_id, e))?
        .with_actor(actor.clone());
    let mut stmt =
        conn.prepare_cached("SELECT bytes FROM doc_changes WHERE doc_id = ?1 ORDER BY seq")?;
    let rows = stmt.query_map([doc_id], |r| r.get::<_, Vec<u8>>(0))?;
    let mut changes = Vec::new();
    for bytes in rows {
        let bytes = bytes?;
        changes.push(Change::try_from(&bytes[..]).map_err(|e| corrupt(doc_id, e))?);
    }
    if !changes.is_empty() {
        doc.apply_changes(changes).map_err(|e| corrupt(doc_id, e))?;
    }
    let persisted = doc.get_heads();
    Ok(Some(Loaded {
        doc,
        persisted,
        state,
    }))
}

/// Stores a document that is new to this store and came whole from the server, as the bytes
/// it came in: nothing is pending and the server holds `server_heads`.
pub fn insert_snapshot(
    conn: &Connection,
    doc_id: &str,
    snapshot: &[u8],
    server_heads: &[ChangeHash],
    now: Millis,
) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM doc_changes WHERE doc_id = ?1")?
        .execute([doc_id])?;
    conn.prepare_cached(
        "INSERT INTO docs (doc_id, snapshot, change_count, server_heads, pending, updated_at)
         VALUES (?1, ?2, 0, ?3, 0, ?4)
         ON CONFLICT (doc_id) DO UPDATE SET snapshot = excluded.snapshot, change_count = 0,
            server_heads = excluded.server_heads, pending = 0, updated_at = excluded.updated_at",
    )?
    .execute(params![doc_id, snapshot, heads_to_blob(server_heads), now])?;
    Ok(())
}

/// Writes what `doc` holds beyond `persisted` (`None`: the document is not stored yet, or is
/// to be replaced: write a snapshot), sets `server_heads` (only those the document holds) and
/// recomputes `pending`. Compacts when the change rows exceed [`COMPACT_AFTER`]. Returns
/// whether any change was written. The rejection is left alone.
pub fn persist(
    conn: &Connection,
    doc_id: &str,
    doc: &mut AutoCommit,
    persisted: Option<&[ChangeHash]>,
    server_heads: &[ChangeHash],
    now: Millis,
) -> Result<bool, StoreError> {
    let server_heads: Vec<ChangeHash> = server_heads
        .iter()
        .filter(|h| holds_all(doc, std::slice::from_ref(h)))
        .copied()
        .collect();
    let pending = !doc.get_changes(&server_heads).is_empty();
    let heads_blob = heads_to_blob(&server_heads);
    let written = match persisted {
        None => {
            let snapshot = doc.save();
            conn.execute("DELETE FROM doc_changes WHERE doc_id = ?1", [doc_id])?;
            conn.execute(
                "INSERT INTO docs (doc_id, snapshot, change_count, server_heads, pending, updated_at)
                 VALUES (?1, ?2, 0, ?3, ?4, ?5)
                 ON CONFLICT (doc_id) DO UPDATE SET snapshot = excluded.snapshot,
                    change_count = 0, server_heads = excluded.server_heads,
                    pending = excluded.pending, updated_at = excluded.updated_at",
                params![doc_id, snapshot, heads_blob, pending, now],
            )?;
            true
        }
        Some(persisted) => {
            let new = doc.get_changes(persisted);
            if !new.is_empty() {
                let next: i64 = conn.query_row(
                    "SELECT COALESCE(MAX(seq), 0) + 1 FROM doc_changes WHERE doc_id = ?1",
                    [doc_id],
                    |r| r.get(0),
                )?;
                let mut insert = conn.prepare_cached(
                    "INSERT INTO doc_changes (doc_id, seq, bytes) VALUES (?1, ?2, ?3)",
                )?;
                for (i, change) in new.iter().enumerate() {
                    insert.execute(params![doc_id, next + i as i64, change.raw_bytes()])?;
                }
            }
            let count: i64 = conn.query_row(
                "UPDATE docs SET change_count = change_count + ?2, server_heads = ?3, pending = ?4,
                    updated_at = CASE WHEN ?2 > 0 THEN ?5 ELSE updated_at END
                 WHERE doc_id = ?1 RETURNING change_count",
                params![doc_id, new.len() as i64, heads_blob, pending, now],
                |r| r.get(0),
            )?;
            if count > COMPACT_AFTER {
                compact(conn, doc_id, doc)?;
            }
            !new.is_empty()
        }
    };
    Ok(written)
}

/// Re-saves the snapshot from `doc` (which must hold everything stored) and drops the change
/// rows.
pub fn compact(conn: &Connection, doc_id: &str, doc: &mut AutoCommit) -> Result<(), StoreError> {
    let snapshot = doc.save();
    conn.execute(
        "UPDATE docs SET snapshot = ?2, change_count = 0 WHERE doc_id = ?1",
        params![doc_id, snapshot],
    )?;
    conn.execute("DELETE FROM doc_changes WHERE doc_id = ?1", [doc_id])?;
    Ok(())
}

/// Records (or with `None` clears) the server's refusal of a document's pending changes.
pub fn set_rejected(
    conn: &Connection,
    doc_id: &str,
    rejected: Option<(&str, &str)>,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE docs SET rejected_code = ?2, rejected_message = ?3 WHERE doc_id = ?1",
        params![doc_id, rejected.map(|r| r.0), rejected.map(|r| r.1)],
    )?;
    Ok(())
}

/// Removes a document and its changes (not its projection: see [`projection::delete`]).
pub fn delete_doc(conn: &Connection, doc_id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM doc_changes WHERE doc_id = ?1", [doc_id])?;
    conn.execute("DELETE FROM docs WHERE doc_id = ?1", [doc_id])?;
    conn.execute("DELETE FROM refetch WHERE doc_id = ?1", [doc_id])?;
    Ok(())
}

/// Documents with changes the server has not acknowledged and has not refused, in id order.
pub fn pushable_docs(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT doc_id FROM docs WHERE pending = 1 AND rejected_code IS NULL ORDER BY doc_id",
    )?;
    let ids = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// Forgets which heads the server holds for a document: everything in it is pending again.
pub fn forget_server_heads(conn: &Connection, doc_id: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE docs SET server_heads = ?2, pending = 1 WHERE doc_id = ?1",
        params![doc_id, Vec::<u8>::new()],
    )?;
    Ok(())
}

pub fn mark_refetch(conn: &Connection, doc_id: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR IGNORE INTO refetch (doc_id) VALUES (?1)",
        [doc_id],
    )?;
    Ok(())
}

pub fn clear_refetch(conn: &Connection, doc_id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM refetch WHERE doc_id = ?1", [doc_id])?;
    Ok(())
}

pub fn refetch_docs(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT doc_id FROM refetch ORDER BY doc_id")?;
    let ids = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// Every stored case document id (not `#pii`), for recomputing the projection.
pub fn case_doc_ids(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT doc_id FROM docs WHERE doc_id NOT LIKE '%#pii' ORDER BY doc_id")?;
    let ids = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// How many documents hold changes the server has not acknowledged (rejected ones included).
pub fn pending_count(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM docs WHERE pending = 1", [], |r| {
        r.get(0)
    })?;
    Ok(n as u64)
}

/// A document whose pending changes the server refused: `(doc_id, code, message)`.
pub type Rejected = (String, String, String);

/// Every refused document, in id order.
pub fn rejected_docs(conn: &Connection) -> Result<Vec<Rejected>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT doc_id, rejected_code, COALESCE(rejected_message, '') FROM docs
         WHERE rejected_code IS NOT NULL ORDER BY doc_id",
    )?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}
