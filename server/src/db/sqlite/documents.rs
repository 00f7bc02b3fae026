//! Documents, the change feed and device bookkeeping in SQLite.

use std::collections::HashMap;

use gridcase_core::model::Millis;
use gridcase_core::sync::times::block::StoredTime;
use rusqlite::{Connection, OptionalExtension, named_params, params};

use super::accounts::write_audit;
use super::{Pooled, SqliteDb, count};
use crate::db::{
    CaseTurn, Commit, DeviceState, DocWrite, Documents, Expected, FeedRow, ReadView, Result, Seq,
    StoredDoc, SyncRecord,
};
use crate::projection::Projection;
use gridcase_core::scope::{CaseScope, Placeholders, Scope};

/// [`Scope::sql`] with this backend's named parameters.
pub(super) fn scope_sql() -> String {
    Scope::sql(Placeholders {
        prefix: ":prefix",
        user: ":user",
        personal_data: ":pii",
    })
}

impl Documents for SqliteDb {
    /// One server process per SQLite file: the process's own case locks are the turn.
    fn case_turn(&self, _case_id: &str) -> Result<CaseTurn<'_>> {
        Ok(CaseTurn::local())
    }

    fn read(&self) -> Result<Box<dyn ReadView + '_>> {
        let conn = self.conn()?;
        conn.execute_batch("BEGIN")?;
        Ok(Box::new(SqliteRead { conn }))
    }

    fn commit_doc(&self, w: &DocWrite) -> Result<Commit> {
        self.write(|tx| {
            let stored: Option<Seq> = tx
                .prepare_cached("SELECT last_seq FROM docs WHERE doc_id = ?1")?
                .query_row([&w.doc_id], |r| r.get(0))
                .optional()?;
            let as_expected = match w.expected {
                Expected::Absent => stored.is_none(),
                Expected::At(seq) => stored == Some(seq),
            };
            if !as_expected {
                return Ok((Commit::Conflict, false));
            }
            if let Some(s) = &w.supervision {
                let inserted = tx.execute(
                    "INSERT OR IGNORE INTO supervisions
                         (case_id, stage, stage_started_at, level, reason, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        s.case_id,
                        s.stage,
                        s.stage_started_at,
                        s.level,
                        s.reason,
                        s.created_at
                    ],
                )?;
                if inserted == 0 {
                    return Ok((Commit::Duplicate, false));
                }
            }
            let last_seq = write_changes(tx, w)?;
            write_doc_row(tx, w, last_seq)?;
            let mut times = tx.prepare_cached(
                "INSERT OR IGNORE INTO event_times (case_id, event_id, at, stated)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for time in &w.event_times {
                times.execute(params![w.case_id, time.event, time.at, time.stated])?;
            }
            if let Some(p) = &w.projection {
                upsert_projection(tx, p, last_seq, w.now)?;
                super::blobs::write_case_blobs(tx, &p.case_id, &p.attachments)?;
                super::rates::upsert_facts(tx, &p.facts)?;
            }
            if let Some(device) = &w.holder {
                hold(tx, device, &w.doc_id)?;
            }
            for entry in &w.audit {
                write_audit(tx, entry)?;
            }
            Ok((Commit::Committed { last_seq }, true))
        })
    }

    fn record_sync(&self, r: &SyncRecord) -> Result<()> {
        self.write(|tx| {
            tx.prepare_cached(
                "UPDATE devices SET clock_offset_ms = ?2, last_seen = ?3, served_scope = ?4
                 WHERE id = ?1",
            )?
            .execute(params![
                r.device_id,
                r.clock_offset,
                r.last_seen,
                r.served_scope
            ])?;
            for doc_id in &r.holds_added {
                hold(tx, &r.device_id, doc_id)?;
            }
            let mut forget =
                tx.prepare_cached("DELETE FROM device_docs WHERE device_id = ?1 AND doc_id = ?2")?;
            for doc_id in &r.holds_removed {
                forget.execute([&r.device_id, doc_id])?;
            }
            Ok(((), true))
        })
    }
}

fn hold(tx: &Connection, device: &str, doc_id: &str) -> Result<()> {
    tx.prepare_cached("INSERT OR IGNORE INTO device_docs (device_id, doc_id) VALUES (?1, ?2)")?
        .execute([device, doc_id])?;
    Ok(())
}

/// Appends the change rows; returns the document's new `last_seq`. Writers are serialised, so
/// AUTOINCREMENT hands out sequence numbers in commit order.
fn write_changes(tx: &Connection, w: &DocWrite) -> Result<Seq> {
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO changes (doc_id, hash, bytes, device_id, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for change in &w.changes {
        insert.execute(params![
            w.doc_id,
            change.hash.as_slice(),
            change.bytes,
            w.author_device,
            w.now
        ])?;
    }
    Ok(tx
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM changes WHERE doc_id = ?1")?
        .query_row([&w.doc_id], |r| r.get(0))?)
}

fn write_doc_row(tx: &Connection, w: &DocWrite, last_seq: Seq) -> Result<()> {
    match (w.expected, &w.snapshot) {
        (Expected::Absent, snapshot) => {
            tx.execute(
                "INSERT INTO docs (doc_id, case_id, is_pii, snapshot, snapshot_seq, last_seq, heads)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
                params![
                    w.doc_id,
                    w.case_id,
                    w.is_pii,
                    snapshot.as_deref().unwrap_or_default(),
                    last_seq,
                    w.heads
                ],
            )?;
        }
        (Expected::At(_), Some(snapshot)) => {
            tx.prepare_cached(
                "UPDATE docs SET snapshot = ?2, snapshot_seq = ?3, last_seq = ?3, heads = ?4
                 WHERE doc_id = ?1",
            )?
            .execute(params![w.doc_id, snapshot, last_seq, w.heads])?;
        }
        (Expected::At(_), None) => {
            tx.prepare_cached("UPDATE docs SET last_seq = ?2, heads = ?3 WHERE doc_id = ?1")?
                .execute(params![w.doc_id, last_seq, w.heads])?;
        }
    }
    Ok(())
}

fn upsert_projection(tx: &Connection, p: &Projection, last_seq: Seq, now: Millis) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO cases (case_id, number, title, category, status, case_type, urgency, priority,
             area_code, scope_area, assignee, responsible_unit, stage, stage_started_at, due_at,
             due_provisional, calendar_version, paused, needs_review, last_seq, updated_at)
         VALUES (:case_id, :number, :title, :category, :status, :case_type, :urgency, :priority,
             :area_code, :scope_area, :assignee, :responsible_unit, :stage, :stage_started_at,
             :due_at, :due_provisional, :calendar_version, :paused, :needs_review, :last_seq,
             :updated_at)
         ON CONFLICT(case_id) DO UPDATE SET number = excluded.number, title = excluded.title,
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
    )?
    .execute(named_params! {
        ":case_id": p.case_id,
        ":number": p.number,
        ":title": p.title,
        ":category": p.category,
        ":status": p.status,
        ":case_type": p.case_type,
        ":urgency": p.urgency,
        ":priority": p.priority,
        ":area_code": p.area_code,
        ":scope_area": p.scope_area,
        ":assignee": p.assignee,
        ":responsible_unit": p.responsible_unit,
        ":stage": p.stage,
        ":stage_started_at": p.stage_started_at,
        ":due_at": p.due_at,
        ":due_provisional": p.due_provisional,
        ":calendar_version": p.calendar_version,
        ":paused": p.paused,
        ":needs_review": p.needs_review,
        ":last_seq": last_seq,
        ":updated_at": now,
    })?;
    Ok(())
}

/// A read transaction on one pooled connection; rolled back when dropped.
struct SqliteRead {
    conn: Pooled,
}

impl Drop for SqliteRead {
    fn drop(&mut self) {
        let _ = self.conn.execute_batch("ROLLBACK");
    }
}

impl ReadView for SqliteRead {
    fn feed_head(&mut self) -> Result<Seq> {
        Ok(self
            .conn
            .prepare_cached("SELECT coalesce(max(seq), 0) FROM changes")?
            .query_row([], |r| r.get(0))?)
    }

    fn doc(&mut self, doc_id: &str) -> Result<Option<StoredDoc>> {
        let row: Option<(Vec<u8>, Seq, Seq)> = self
            .conn
            .prepare_cached("SELECT snapshot, snapshot_seq, last_seq FROM docs WHERE doc_id = ?1")?
            .query_row([doc_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((snapshot, snapshot_seq, last_seq)) = row else {
            return Ok(None);
        };
        let changes = self
            .conn
            .prepare_cached(
                "SELECT bytes FROM changes WHERE doc_id = ?1 AND seq > ?2 AND seq <= ?3
                 ORDER BY seq",
            )?
            .query_map(params![doc_id, snapshot_seq, last_seq], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
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
            .prepare_cached("SELECT heads FROM docs WHERE doc_id = ?1")?
            .query_row([doc_id], |r| r.get(0))
            .optional()?)
    }

    fn case_scope(&mut self, case_id: &str) -> Result<Option<CaseScope>> {
        Ok(self
            .conn
            .prepare_cached("SELECT scope_area, assignee FROM cases WHERE case_id = ?1")?
            .query_row([case_id], |r| {
                Ok(CaseScope {
                    area: r.get(0)?,
                    assignee: r.get(1)?,
                })
            })
            .optional()?)
    }

    fn trusted_times(&mut self, case_id: &str) -> Result<HashMap<String, Millis>> {
        Ok(self
            .conn
            .prepare_cached("SELECT event_id, at FROM event_times WHERE case_id = ?1")?
            .query_map([case_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn stored_times(&mut self, case_id: &str) -> Result<Vec<StoredTime>> {
        Ok(self
            .conn
            .prepare_cached("SELECT event_id, at, stated FROM event_times WHERE case_id = ?1")?
            .query_map([case_id], |r| {
                Ok(StoredTime {
                    event: r.get(0)?,
                    at: r.get(1)?,
                    stated: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn holds(&mut self, device: &str, doc_id: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM device_docs WHERE device_id = ?1 AND doc_id = ?2")?
            .query_row([device, doc_id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn device_state(&mut self, device: &str) -> Result<Option<DeviceState>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT served_scope, clock_offset_ms, last_seen, created_at FROM devices
                 WHERE id = ?1",
            )?
            .query_row([device], |r| {
                Ok(DeviceState {
                    served_scope: r.get(0)?,
                    clock_offset: r.get(1)?,
                    last_seen: r.get(2)?,
                    created_at: r.get(3)?,
                })
            })
            .optional()?)
    }

    fn feed(
        &mut self,
        scope: &Scope,
        device: &str,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<FeedRow>> {
        let sql = format!(
            "SELECT c.seq, c.doc_id, CASE WHEN c.device_id IS :device THEN NULL ELSE c.bytes END
             FROM changes c JOIN docs d ON d.doc_id = c.doc_id
             JOIN cases k ON k.case_id = d.case_id
             WHERE c.seq > :after AND {} ORDER BY c.seq LIMIT :limit",
            scope_sql()
        );
        let (prefix, user, pii) = scope.params();
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_map(
                named_params! {":device": device, ":after": after, ":prefix": prefix,
                ":user": user, ":pii": pii, ":limit": limit as i64},
                |r| {
                    Ok(FeedRow {
                        seq: r.get(0)?,
                        doc_id: r.get(1)?,
                        bytes: r.get(2)?,
                    })
                },
            )?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn feed_docs_after(&mut self, scope: &Scope, after: Seq) -> Result<u64> {
        let sql = format!(
            "SELECT count(DISTINCT c.doc_id) FROM changes c JOIN docs d ON d.doc_id = c.doc_id
             JOIN cases k ON k.case_id = d.case_id WHERE c.seq > :after AND {}",
            scope_sql()
        );
        let (prefix, user, pii) = scope.params();
        count(
            &self.conn,
            &sql,
            named_params! {":after": after, ":prefix": prefix, ":user": user, ":pii": pii},
        )
    }

    fn restore_ids(&mut self, scope: &Scope, after: &str, limit: usize) -> Result<Vec<String>> {
        let sql = format!(
            "SELECT d.doc_id FROM docs d JOIN cases k ON k.case_id = d.case_id
             WHERE d.doc_id > :after AND {} ORDER BY d.doc_id LIMIT :limit",
            scope_sql()
        );
        let (prefix, user, pii) = scope.params();
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_map(
                named_params! {":after": after, ":prefix": prefix, ":user": user, ":pii": pii,
                ":limit": limit as i64},
                |r| r.get(0),
            )?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn restore_docs_after(&mut self, scope: &Scope, after: &str) -> Result<u64> {
        let sql = format!(
            "SELECT count(*) FROM docs d JOIN cases k ON k.case_id = d.case_id
             WHERE d.doc_id > :after AND {}",
            scope_sql()
        );
        let (prefix, user, pii) = scope.params();
        count(
            &self.conn,
            &sql,
            named_params! {":after": after, ":prefix": prefix, ":user": user, ":pii": pii},
        )
    }

    fn held_outside(
        &mut self,
        device: &str,
        scope: &Scope,
        changed_after: Seq,
    ) -> Result<Vec<String>> {
        let sql = held_outside_sql(changed_after > 0);
        let (prefix, user, pii) = scope.params();
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_map(
                named_params! {":device": device, ":prefix": prefix, ":user": user, ":pii": pii,
                ":after": changed_after},
                |r| r.get(0),
            )?
            .collect::<rusqlite::Result<_>>()?)
    }
}

/// The statement of [`ReadView::held_outside`]: two, so each is planned for its shape: from the
/// cases changed since the device's cursor (index `cases_last_seq`), or from all the device's
/// holdings. `CROSS JOIN` pins the first order: without statistics SQLite would start from the
/// device's holdings and so read all of them on every sync
/// (`held_outside_reads_only_the_changed_cases`).
fn held_outside_sql(since_cursor: bool) -> String {
    if since_cursor {
        format!(
            "SELECT dd.doc_id FROM cases k CROSS JOIN docs d ON d.case_id = k.case_id
             CROSS JOIN device_docs dd ON dd.doc_id = d.doc_id AND dd.device_id = :device
             WHERE k.last_seq > :after AND NOT {} ORDER BY dd.doc_id",
            scope_sql()
        )
    } else {
        format!(
            "SELECT dd.doc_id FROM device_docs dd JOIN docs d ON d.doc_id = dd.doc_id
             JOIN cases k ON k.case_id = d.case_id
             WHERE dd.device_id = :device AND :after = 0 AND NOT {} ORDER BY dd.doc_id",
            scope_sql()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query plan of `sql`, one line per step.
    fn plan(conn: &Connection, sql: &str) -> Vec<String> {
        let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let count = statement.parameter_count();
        let nulls = vec![rusqlite::types::Null; count];
        statement
            .query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn held_outside_reads_only_the_changed_cases() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        let steps = plan(&conn, &held_outside_sql(true));
        assert!(
            steps[0].contains("k USING INDEX cases_last_seq"),
            "starts from the changed cases: {steps:?}"
        );
        assert!(!steps.iter().any(|s| s.starts_with("SCAN")), "{steps:?}");
        let steps = plan(&conn, &held_outside_sql(false));
        assert!(steps[0].contains("dd USING PRIMARY KEY"), "{steps:?}");
    }
}
