//! Deadline scans, admin lists, statistics and the audit log in SQLite.

use gridcase_core::model::Millis;
use rusqlite::{OptionalExtension, params};

use super::accounts::write_audit;
use super::{SqliteDb, count};
use crate::db::{
    AuditEntry, AuditLog, AuditQuery, AuditRow, CaseLists, CaseSummary, NewSupervision,
    OverdueStage, Result, RowCounts, SupervisionRow,
};
use crate::db::{CaseGauges, FINISHED_STATUSES_SQL};

const SUMMARY_COLUMNS: &str = "case_id, number, title, category, status, urgency, area_code, \
     assignee, responsible_unit, stage, stage_started_at, due_at, due_provisional, \
     calendar_version";

fn summary_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<CaseSummary> {
    Ok(CaseSummary {
        case_id: row.get(0)?,
        number: row.get(1)?,
        title: row.get(2)?,
        category: row.get(3)?,
        status: row.get(4)?,
        urgency: row.get(5)?,
        area_code: row.get(6)?,
        assignee: row.get(7)?,
        responsible_unit: row.get(8)?,
        stage: row.get(9)?,
        stage_started_at: row.get(10)?,
        due_at: row.get(11)?,
        due_provisional: row.get(12)?,
        calendar_version: row.get(13)?,
    })
}

impl CaseLists for SqliteDb {
    fn overdue_stages(&self, now: Millis, unsupervised: bool) -> Result<Vec<OverdueStage>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT case_id, stage, stage_started_at FROM cases AS k INDEXED BY cases_running_due
             WHERE due_at IS NOT NULL AND paused = 0 AND due_at < ?1
               AND stage IS NOT NULL AND stage_started_at IS NOT NULL
               AND (NOT ?2 OR NOT EXISTS (SELECT 1 FROM supervisions s
                    WHERE s.case_id = k.case_id AND s.stage = k.stage
                      AND s.stage_started_at = k.stage_started_at))",
        )?;
        let rows = stmt
            .query_map(params![now, unsupervised], |r| {
                Ok(OverdueStage {
                    case_id: r.get(0)?,
                    stage: r.get(1)?,
                    stage_started_at: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn overdue(&self, within: &str, now: Millis, limit: u32) -> Result<Vec<CaseSummary>> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM cases
             WHERE due_at IS NOT NULL AND due_at < ?1 AND paused = 0
               AND (?3 = '' OR scope_area LIKE ?3 || '%')
             ORDER BY due_at, case_id LIMIT ?2"
        );
        let rows = conn
            .prepare_cached(&sql)?
            .query_map(params![now, limit, within], summary_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn due_soon(
        &self,
        within: &str,
        now: Millis,
        fraction: f64,
        limit: u32,
    ) -> Result<Vec<CaseSummary>> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM cases
             WHERE due_at IS NOT NULL AND due_at >= ?1 AND paused = 0
               AND stage_started_at IS NOT NULL
               AND (?1 - stage_started_at) >= ?2 * (due_at - stage_started_at)
               AND (?4 = '' OR scope_area LIKE ?4 || '%')
             ORDER BY due_at, case_id LIMIT ?3"
        );
        let rows = conn
            .prepare_cached(&sql)?
            .query_map(params![now, fraction, limit, within], summary_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn case_summary(&self, case_id: &str) -> Result<Option<CaseSummary>> {
        let conn = self.conn()?;
        let sql = format!("SELECT {SUMMARY_COLUMNS} FROM cases WHERE case_id = ?1");
        Ok(conn
            .prepare_cached(&sql)?
            .query_row([case_id], summary_from_row)
            .optional()?)
    }

    fn insert_supervision(&self, s: &NewSupervision) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
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
            Ok((n > 0, n > 0))
        })
    }

    fn supervisions(&self, case_id: &str) -> Result<Vec<SupervisionRow>> {
        let conn = self.conn()?;
        let rows = conn
            .prepare_cached(
                "SELECT stage, stage_started_at, level, reason, created_at FROM supervisions
                 WHERE case_id = ?1 ORDER BY created_at, id",
            )?
            .query_map([case_id], |r| {
                Ok(SupervisionRow {
                    stage: r.get(0)?,
                    stage_started_at: r.get(1)?,
                    level: r.get(2)?,
                    reason: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn row_counts(&self) -> Result<RowCounts> {
        let conn = self.conn()?;
        let n = |sql: &str| count(&conn, sql, []);
        Ok(RowCounts {
            changes: n("SELECT count(*) FROM changes")?,
            docs: n("SELECT count(*) FROM docs")?,
            cases: n("SELECT count(*) FROM cases")?,
            audit_change: n("SELECT count(*) FROM audit WHERE kind = 'change'")?,
            audit_reject: n("SELECT count(*) FROM audit WHERE kind = 'reject'")?,
            audit_reveal: n("SELECT count(*) FROM audit WHERE kind = 'reveal'")?,
        })
    }

    fn case_gauges(&self, now: Millis) -> Result<CaseGauges> {
        let conn = self.conn()?;
        let open =
            format!("SELECT count(*) FROM cases WHERE status NOT IN {FINISHED_STATUSES_SQL}");
        Ok(CaseGauges {
            open: count(&conn, &open, [])?,
            overdue: count(
                &conn,
                "SELECT count(*) FROM cases WHERE due_at IS NOT NULL AND due_at < ?1 AND paused = 0",
                [now],
            )?,
        })
    }
}

impl AuditLog for SqliteDb {
    fn write_audit(&self, entry: &AuditEntry) -> Result<()> {
        self.write(|tx| Ok((write_audit(tx, entry)?, true)))
    }

    fn audit_log(&self, q: &AuditQuery, limit: u32) -> Result<Vec<AuditRow>> {
        let conn = self.conn()?;
        let within = q.within.as_deref().unwrap_or("");
        let rows = conn
            .prepare_cached(
                "SELECT id, at, user_id, device_id, kind, case_id, doc_id, detail, area
                 FROM audit
                 WHERE (?1 IS NULL OR case_id = ?1) AND (?2 IS NULL OR user_id = ?2)
                   AND (?3 IS NULL OR at >= ?3) AND (?4 IS NULL OR at < ?4)
                   AND (?7 IS NULL OR kind = ?7)
                   AND (?6 = '' OR area LIKE ?6 || '%'
                        OR case_id IN (SELECT case_id FROM cases WHERE scope_area LIKE ?6 || '%')
                        OR user_id IN (SELECT id FROM users WHERE jurisdiction LIKE ?6 || '%'))
                 ORDER BY at DESC, id DESC LIMIT ?5",
            )?
            .query_map(
                params![q.case_id, q.user_id, q.from, q.to, limit, within, q.kind],
                |r| {
                    Ok(AuditRow {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        user_id: r.get(2)?,
                        device_id: r.get(3)?,
                        kind: r.get(4)?,
                        case_id: r.get(5)?,
                        doc_id: r.get(6)?,
                        detail: r.get(7)?,
                        area: r.get(8)?,
                    })
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn audit_count(&self, kind: &str) -> Result<u64> {
        count(
            &*self.conn()?,
            "SELECT count(*) FROM audit WHERE kind = ?1",
            [kind],
        )
    }
}
