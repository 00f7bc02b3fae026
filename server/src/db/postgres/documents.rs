//! Documents, the change feed and device bookkeeping in PostgreSQL.
//!
//! The gap-free feed. PostgreSQL commits concurrent transactions in any order, so a sequence
//! number taken at insert time could become visible after a larger one, and a device whose
//! cursor already moved past it would never receive that change. Here a commit takes its feed
//! positions from the one-row `feed_head` counter as its last step before `COMMIT`: the row lock
//! is held until the commit ends, so positions are handed out in commit order, and a snapshot
//! that sees position `n` sees every position below it. Only that tail (counter, change rows,
//! the document's row, its projection) is serialised across commits; the document row lock
//! taken first serialises commits of the same document, and everything else runs in parallel.

use std::collections::HashMap;

use gridcase_core::model::Millis;
use gridcase_core::sync::times::block::StoredTime;

use super::accounts::write_audit;
use super::{PgConn, PgDb, Pooled};
use crate::db::{
    CaseTurn, Commit, DeviceState, DocWrite, Documents, Expected, FeedRow, ReadView, Result, Seq,
    StoredDoc, SyncRecord,
};
use crate::projection::Projection;
use gridcase_core::scope::{CaseScope, Placeholders, Scope};

/// [`Scope::sql`] with the prefix, user and personal-data flag as `$first`, `$first+1`,
/// `$first+2`.
pub(super) fn scope_sql(first: usize) -> String {
    Scope::sql(Placeholders {
        prefix: &format!("${first}::text"),
        user: &format!("${}::text", first + 1),
        personal_data: &format!("${}::boolean", first + 2),
    })
}

/// A session-level advisory lock on a connection of the lock pool; unlocked when dropped (or
/// released by the server when the connection dies).
struct Turn {
    conn: Pooled,
    key: i64,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Err(e) = self
            .conn
            .execute("SELECT pg_advisory_unlock($1)", &[&self.key])
        {
            tracing::warn!(error = %e, "could not release a case's advisory lock");
        }
    }
}

/// The advisory lock key of a case in a schema: the same in every process. Advisory locks
/// are database-wide, so the schema is part of the key: the same case id in two schemas of
/// one database (two test databases, two deployments) gets two locks.
fn turn_key(schema: &str, case_id: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("gridcase case {schema}\0{case_id}").as_bytes());
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(key)
}

impl Documents for PgDb {
    /// A session-level advisory lock per case, held on a connection of a pool of its own: a
    /// push holding a turn may wait for a data connection, never the other way round.
    fn case_turn(&self, case_id: &str) -> Result<CaseTurn<'_>> {
        let mut conn = self.turn_conn()?;
        let key = turn_key(&self.schema, case_id);
        conn.execute("SELECT pg_advisory_lock($1)", &[&key])?;
        Ok(CaseTurn::holding(Turn { conn, key }))
    }

    fn read(&self) -> Result<Box<dyn ReadView + '_>> {
        let mut conn = self.conn()?;
        conn.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        Ok(Box::new(PgRead { conn }))
    }

    fn commit_doc(&self, w: &DocWrite) -> Result<Commit> {
        self.write(|tx| {
            if !claim_doc(tx, w)? {
                return Ok((Commit::Conflict, false));
            }
            if let Some(s) = &w.supervision {
                let inserted = tx.execute(
                    "INSERT INTO supervisions
                         (case_id, stage, stage_started_at, level, reason, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    &[
                        &s.case_id,
                        &s.stage,
                        &s.stage_started_at,
                        &i32::from(s.level),
                        &s.reason,
                        &s.created_at,
                    ],
                )?;
                if inserted == 0 {
                    return Ok((Commit::Duplicate, false));
                }
            }
            let events: Vec<&str> = w.event_times.iter().map(|t| t.event.as_str()).collect();
            let times: Vec<Millis> = w.event_times.iter().map(|t| t.at).collect();
            let stated: Vec<Option<Millis>> = w.event_times.iter().map(|t| t.stated).collect();
            tx.execute(
                "INSERT INTO event_times (case_id, event_id, at, stated)
                 SELECT $1, e, t, s FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS u(e, t, s)
                 ON CONFLICT DO NOTHING",
                &[&w.case_id, &events, &times, &stated],
            )?;
            if let Some(device) = &w.holder {
                tx.execute(
                    "INSERT INTO device_docs (device_id, doc_id) VALUES ($1, $2)
                     ON CONFLICT DO NOTHING",
                    &[device, &w.doc_id],
                )?;
            }
            for entry in &w.audit {
                write_audit(tx, entry)?;
            }
            let last_seq = append_changes(tx, w)?;
            tx.execute(
                "UPDATE docs SET last_seq = $2, heads = $3,
                     snapshot = coalesce($4, snapshot),
                     snapshot_seq = CASE WHEN $4::bytea IS NULL THEN snapshot_seq ELSE $2 END
                 WHERE doc_id = $1",
                &[&w.doc_id, &last_seq, &w.heads, &w.snapshot],
            )?;
            if let Some(p) = &w.projection {
                upsert_projection(tx, p, last_seq, w.now)?;
                super::blobs::write_case_blobs(tx, &p.case_id, &p.attachments)?;
                super::rates::upsert_facts(tx, &p.facts)?;
            }
            Ok((Commit::Committed { last_seq }, true))
        })
    }

    fn record_sync(&self, r: &SyncRecord) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE devices SET clock_offset_ms = $2, last_seen = $3, served_scope = $4
                 WHERE id = $1",
                &[&r.device_id, &r.clock_offset, &r.last_seen, &r.served_scope],
            )?;
            if !r.holds_added.is_empty() {
                tx.execute(
                    "INSERT INTO device_docs (device_id, doc_id)
                     SELECT $1, d FROM unnest($2::text[]) AS u(d) ORDER BY d
                     ON CONFLICT DO NOTHING",
                    &[&r.device_id, &r.holds_added],
                )?;
            }
            if !r.holds_removed.is_empty() {
                tx.execute(
                    "DELETE FROM device_docs WHERE device_id = $1 AND doc_id = ANY($2::text[])",
                    &[&r.device_id, &r.holds_removed],
                )?;
            }
            Ok(((), true))
        })
    }
}

/// Locks the document's row at the expected version (or creates it, for a new document).
/// `false`: another commit came first.
fn claim_doc(tx: &mut PgConn, w: &DocWrite) -> Result<bool> {
    match w.expected {
        Expected::Absent => {
            // Positions are set in the tail; a concurrent creator waits on the key, then
            // finds the row and reports a conflict.
            let snapshot = w.snapshot.as_deref().unwrap_or_default();
            let n = tx.execute(
                "INSERT INTO docs (doc_id, case_id, is_pii, snapshot, snapshot_seq, last_seq,
                     heads)
                 VALUES ($1, $2, $3, $4, 0, 0, $5) ON CONFLICT (doc_id) DO NOTHING",
                &[&w.doc_id, &w.case_id, &w.is_pii, &snapshot, &w.heads],
            )?;
            Ok(n == 1)
        }
        Expected::At(seq) => {
            let stored = tx
                .query_opt(
                    "SELECT last_seq FROM docs WHERE doc_id = $1 FOR UPDATE",
                    &[&w.doc_id],
                )?
                .map(|r| r.get::<_, i64>(0));
            Ok(stored == Some(seq))
        }
    }
}

/// Takes feed positions for the change rows and writes them: the tail of a commit (see the
/// module docs). Returns the document's new `last_seq`.
fn append_changes(tx: &mut PgConn, w: &DocWrite) -> Result<Seq> {
    let n = w.changes.len() as i64;
    let head: i64 = tx
        .query_one(
            "UPDATE feed_head SET seq = seq + $1 WHERE id = 1 RETURNING seq",
            &[&n],
        )?
        .get(0);
    let hashes: Vec<&[u8]> = w.changes.iter().map(|c| c.hash.as_slice()).collect();
    let bytes: Vec<&[u8]> = w.changes.iter().map(|c| c.bytes.as_slice()).collect();
    tx.execute(
        "INSERT INTO changes (seq, doc_id, hash, bytes, device_id, received_at)
         SELECT $1 + u.ord, $2, u.h, u.b, $5, $6
         FROM unnest($3::bytea[], $4::bytea[]) WITH ORDINALITY AS u(h, b, ord)
         ON CONFLICT DO NOTHING",
        &[
            &(head - n),
            &w.doc_id,
            &hashes,
            &bytes,
            &w.author_device,
            &w.now,
        ],
    )?;
    Ok(head)
}

fn upsert_projection(tx: &mut PgConn, p: &Projection, last_seq: Seq, now: Millis) -> Result<()> {
    tx.execute(
        "INSERT INTO cases (case_id, number, title, category, status, case_type, urgency, priority,
             area_code, scope_area, assignee, responsible_unit, stage, stage_started_at, due_at,
             due_provisional, calendar_version, paused, needs_review, last_seq, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
             $18, $19, $20, $21)
         ON CONFLICT (case_id) DO UPDATE SET number = excluded.number, title = excluded.title,
             category = excluded.category, status = excluded.status,
             case_type = excluded.case_type, urgency = excluded.urgency,
             priority = excluded.priority, area_code = excluded.area_code,
             scope_area = excluded.scope_area, assignee = excluded.assignee,
             responsible_unit = excluded.responsible_unit, stage = excluded.stage,
             stage_started_at = excluded.stage_started_at, due_at = excluded.due_at,
             due_provisional = excluded.due_provisional,
             calendar_version = excluded.calendar_version, paused = excluded.paused,
             needs_review = excluded.needs_review, last_seq = excluded.last_seq,
             updated_at = excluded.updated_at",
        &[
            &p.case_id,
            &p.number,
            &p.title,
            &p.category,
            &p.status,
            &p.case_type,
            &p.urgency,
            &p.priority,
            &p.area_code,
            &p.scope_area,
            &p.assignee,
            &p.responsible_unit,
            &p.stage,
            &p.stage_started_at,
            &p.due_at,
            &p.due_provisional,
            &p.calendar_version,
            &p.paused,
            &p.needs_review,
            &last_seq,
            &now,
        ],
    )?;
    Ok(())
}

/// A `REPEATABLE READ READ ONLY` transaction on one pooled connection; rolled back when
/// dropped.
struct PgRead {
    conn: Pooled,
}

impl Drop for PgRead {
    fn drop(&mut self) {
        let _ = self.conn.batch("ROLLBACK");
    }
}

impl ReadView for PgRead {
    fn feed_head(&mut self) -> Result<Seq> {
        Ok(self
            .conn
            .query_one("SELECT seq FROM feed_head WHERE id = 1", &[])?
            .get(0))
    }

    fn doc(&mut self, doc_id: &str) -> Result<Option<StoredDoc>> {
        let Some(row) = self.conn.query_opt(
            "SELECT snapshot, snapshot_seq, last_seq FROM docs WHERE doc_id = $1",
            &[&doc_id],
        )?
        else {
            return Ok(None);
        };
        let (snapshot, snapshot_seq, last_seq): (Vec<u8>, i64, i64) =
            (row.get(0), row.get(1), row.get(2));
        let changes = self
            .conn
            .query(
                "SELECT bytes FROM changes WHERE doc_id = $1 AND seq > $2 AND seq <= $3
                 ORDER BY seq",
                &[&doc_id, &snapshot_seq, &last_seq],
            )?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        Ok(Some(StoredDoc {
            snapshot,
            snapshot_seq,
            last_seq,
            changes,
        }))
    }

    fn doc_heads(&mut self, doc_id: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_opt("SELECT heads FROM docs WHERE doc_id = $1", &[&doc_id])?
            .map(|r| r.get(0)))
    }

    fn case_scope(&mut self, case_id: &str) -> Result<Option<CaseScope>> {
        Ok(self
            .conn
            .query_opt(
                "SELECT scope_area, assignee FROM cases WHERE case_id = $1",
                &[&case_id],
            )?
            .map(|r| CaseScope {
                area: r.get(0),
                assignee: r.get(1),
            }))
    }

    fn trusted_times(&mut self, case_id: &str) -> Result<HashMap<String, Millis>> {
        Ok(self
            .conn
            .query(
                "SELECT event_id, at FROM event_times WHERE case_id = $1",
                &[&case_id],
            )?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn stored_times(&mut self, case_id: &str) -> Result<Vec<StoredTime>> {
        Ok(self
            .conn
            .query(
                "SELECT event_id, at, stated FROM event_times WHERE case_id = $1",
                &[&case_id],
            )?
            .into_iter()
            .map(|r| StoredTime {
                event: r.get(0),
                at: r.get(1),
                stated: r.get(2),
            })
            .collect())
    }

    fn holds(&mut self, device: &str, doc_id: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_opt(
                "SELECT 1 FROM device_docs WHERE device_id = $1 AND doc_id = $2",
                &[&device, &doc_id],
            )?
            .is_some())
    }

    fn device_state(&mut self, device: &str) -> Result<Option<DeviceState>> {
        Ok(self
            .conn
            .query_opt(
                "SELECT served_scope, clock_offset_ms, last_seen, created_at FROM devices
                 WHERE id = $1",
                &[&device],
            )?
            .map(|r| DeviceState {
                served_scope: r.get(0),
                clock_offset: r.get(1),
                last_seen: r.get(2),
                created_at: r.get(3),
            }))
    }

    fn device_and_head(&mut self, device: &str) -> Result<(Option<DeviceState>, Seq)> {
        let row = self.conn.query_one(
            "SELECT h.seq, d.id IS NOT NULL, d.served_scope, d.clock_offset_ms, d.last_seen,
                    d.created_at
             FROM feed_head h LEFT JOIN devices d ON d.id = $1 WHERE h.id = 1",
            &[&device],
        )?;
        let state = row.get::<_, bool>(1).then(|| DeviceState {
            served_scope: row.get(2),
            clock_offset: row.get(3),
            last_seen: row.get(4),
            created_at: row.get(5),
        });
        Ok((state, row.get(0)))
    }

    fn feed(
        &mut self,
        scope: &Scope,
        device: &str,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<FeedRow>> {
        let sql = format!(
            "SELECT c.seq, c.doc_id,
                 CASE WHEN c.device_id IS NOT DISTINCT FROM $1 THEN NULL ELSE c.bytes END
             FROM changes c JOIN docs d ON d.doc_id = c.doc_id
             JOIN cases k ON k.case_id = d.case_id
             WHERE c.seq > $2 AND {} ORDER BY c.seq LIMIT $6",
            scope_sql(3)
        );
        let (prefix, user, pii) = scope.params();
        Ok(self
            .conn
            .query(
                &sql,
                &[&device, &after, &prefix, &user, &pii, &(limit as i64)],
            )?
            .into_iter()
            .map(|r| FeedRow {
                seq: r.get(0),
                doc_id: r.get(1),
                bytes: r.get(2),
            })
            .collect())
    }

    fn feed_docs_after(&mut self, scope: &Scope, after: Seq) -> Result<u64> {
        let sql = format!(
            "SELECT count(DISTINCT c.doc_id) FROM changes c JOIN docs d ON d.doc_id = c.doc_id
             JOIN cases k ON k.case_id = d.case_id WHERE c.seq > $1 AND {}",
            scope_sql(2)
        );
        let (prefix, user, pii) = scope.params();
        self.conn.count(&sql, &[&after, &prefix, &user, &pii])
    }

    fn restore_ids(&mut self, scope: &Scope, after: &str, limit: usize) -> Result<Vec<String>> {
        let sql = format!(
            "SELECT d.doc_id FROM docs d JOIN cases k ON k.case_id = d.case_id
             WHERE d.doc_id > $1 AND {} ORDER BY d.doc_id LIMIT $5",
            scope_sql(2)
        );
        let (prefix, user, pii) = scope.params();
        Ok(self
            .conn
            .query(&sql, &[&after, &prefix, &user, &pii, &(limit as i64)])?
            .into_iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn restore_docs_after(&mut self, scope: &Scope, after: &str) -> Result<u64> {
        let sql = format!(
            "SELECT count(*) FROM docs d JOIN cases k ON k.case_id = d.case_id
             WHERE d.doc_id > $1 AND {}",
            scope_sql(2)
        );
        let (prefix, user, pii) = scope.params();
        self.conn.count(&sql, &[&after, &prefix, &user, &pii])
    }

    fn held_outside(
        &mut self,
        device: &str,
        scope: &Scope,
        changed_after: Seq,
    ) -> Result<Vec<String>> {
        let (prefix, user, pii) = scope.params();
        if changed_after == 0 {
            let sql = format!(
                "SELECT dd.doc_id FROM device_docs dd JOIN docs d ON d.doc_id = dd.doc_id
                 JOIN cases k ON k.case_id = d.case_id
                 WHERE dd.device_id = $1 AND NOT {} ORDER BY dd.doc_id",
                scope_sql(2)
            );
            return Ok(self
                .conn
                .query(&sql, &[&device, &prefix, &user, &pii])?
                .into_iter()
                .map(|r| r.get(0))
                .collect());
        }
        // Since the cursor, in two statements rather than one join: PostgreSQL planned the join
        // from the device's holdings whenever their statistics were stale (estimate 11 rows,
        // 917 held), reading every held document on every sync. Apart, each statement has only
        // one plan: the changed cases by `cases_last_seq` (none, on a nothing-new sync, which
        // then ends here), then those documents' holdings by primary key.
        let sql = format!(
            "SELECT d.doc_id FROM cases k JOIN docs d ON d.case_id = k.case_id
             WHERE k.last_seq > $4 AND NOT {}",
            scope_sql(1)
        );
        let left: Vec<String> = self
            .conn
            .query(&sql, &[&prefix, &user, &pii, &changed_after])?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        if left.is_empty() {
            return Ok(left);
        }
        Ok(self
            .conn
            .query(
                "SELECT doc_id FROM device_docs WHERE device_id = $1 AND doc_id = ANY($2)
                 ORDER BY doc_id",
                &[&device, &left],
            )?
            .into_iter()
            .map(|r| r.get(0))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cases_lock_key_depends_on_its_schema() {
        assert_eq!(turn_key("public", "c1"), turn_key("public", "c1"));
        assert_ne!(turn_key("public", "c1"), turn_key("public", "c2"));
        assert_ne!(turn_key("public", "c1"), turn_key("test_a", "c1"));
        // The separator keeps (schema, case) pairs apart that concatenate alike.
        assert_ne!(turn_key("ab", "c"), turn_key("a", "bc"));
    }
}
