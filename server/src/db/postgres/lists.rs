//! Deadline scans, admin lists, statistics and the audit log in PostgreSQL.

use gridcase_core::model::Millis;
use postgres::Row;

use super::PgDb;
use super::accounts::write_audit;
use crate::db::{
    AuditEntry, AuditLog, AuditQuery, AuditRow, CaseLists, CaseSummary, NewSupervision,
    OverdueStage, Result, RowCounts, SupervisionRow,
};
use crate::db::{CaseGauges, FINISHED_STATUSES_SQL};

const SUMMARY_COLUMNS: &str = "case_id, number, title, category, status, urgency, area_code, \
     assignee, responsible_unit, stage, stage_started_at, due_at, due_provisional, \
     calendar_version";

fn summary(row: &Row) -> CaseSummary {
    CaseSummary {
        case_id: row.get(0),
        number: row.get(1),
        title: row.get(2),
        category: row.get(3),
        status: row.get(4),
        urgency: row.get(5),
        area_code: row.get(6),
        assignee: row.get(7),
        responsible_unit: row.get(8),
        stage: row.get(9),
        stage_started_at: row.get(10),
        due_at: row.get(11),
        due_provisional: row.get(12),
        calendar_version: row.get(13),
    }
}

impl CaseLists for PgDb {
    fn overdue_stages(&self, now: Millis, unsupervised: bool) -> Result<Vec<OverdueStage>> {
        let mut conn = self.conn()?;
        let rows = conn.query(
            "SELECT case_id, stage, stage_started_at FROM cases AS k
             WHERE due_at IS NOT NULL AND NOT paused AND due_at < $1
               AND stage IS NOT NULL AND stage_started_at IS NOT NULL
               AND (NOT $2::boolean OR NOT EXISTS (SELECT 1 FROM supervisions s
                    WHERE s.case_id = k.case_id AND s.stage = k.stage
                      AND s.stage_started_at = k.stage_started_at))",
            &[&now, &unsupervised],
        )?;
        Ok(rows
            .iter()
            .map(|r| OverdueStage {
                case_id: r.get(0),
                stage: r.get(1),
                stage_started_at: r.get(2),
            })
            .collect())
    }

    fn overdue(&self, within: &str, now: Millis, limit: u32) -> Result<Vec<CaseSummary>> {
        let mut conn = self.conn()?;
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM cases
             WHERE due_at IS NOT NULL AND due_at < $1 AND NOT paused
               AND ($3::text = '' OR scope_area LIKE $3 || '%')
             ORDER BY due_at, case_id LIMIT $2"
        );
        let rows = conn.query(&sql, &[&now, &i64::from(limit), &within])?;
        Ok(rows.iter().map(summary).collect())
    }

    fn due_soon(
        &self,
        within: &str,
        now: Millis,
        fraction: f64,
        limit: u32,
    ) -> Result<Vec<CaseSummary>> {
        let mut conn = self.conn()?;
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM cases
             WHERE due_at IS NOT NULL AND due_at >= $1 AND NOT paused
               AND stage_started_at IS NOT NULL
               AND ($1 - stage_started_at) >= $2::float8 * (due_at - stage_started_at)
               AND ($4::text = '' OR scope_area LIKE $4 || '%')
             ORDER BY due_at, case_id LIMIT $3"
        );
        let rows = conn.query(&sql, &[&now, &fraction, &i64::from(limit), &within])?;
        Ok(rows.iter().map(summary).collect())
    }

    fn case_summary(&self, case_id: &str) -> Result<Option<CaseSummary>> {
        let mut conn = self.conn()?;
        let sql = format!("SELECT {SUMMARY_COLUMNS} FROM cases WHERE case_id = $1");
        Ok(conn.query_opt(&sql, &[&case_id])?.as_ref().map(summary))
    }

    fn insert_supervision(&self, s: &NewSupervision) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
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
            Ok((n > 0, n > 0))
        })
    }

    fn supervisions(&self, case_id: &str) -> Result<Vec<SupervisionRow>> {
        let mut conn = self.conn()?;
        let rows = conn.query(
            "SELECT stage, stage_started_at, level, reason, created_at FROM supervisions
             WHERE case_id = $1 ORDER BY created_at, id",
            &[&case_id],
        )?;
        Ok(rows
            .iter()
            .map(|r| SupervisionRow {
                stage: r.get(0),
                stage_started_at: r.get(1),
                level: u8::try_from(r.get::<_, i32>(2)).unwrap_or(u8::MAX),
                reason: r.get(3),
                created_at: r.get(4),
            })
            .collect())
    }

    fn row_counts(&self) -> Result<RowCounts> {
        let mut conn = self.conn()?;
        let row = conn.query_one(
            "SELECT (SELECT count(*) FROM changes), (SELECT count(*) FROM docs),
                 (SELECT count(*) FROM cases),
                 (SELECT count(*) FROM audit WHERE kind = 'change'),
                 (SELECT count(*) FROM audit WHERE kind = 'reject'),
                 (SELECT count(*) FROM audit WHERE kind = 'reveal')",
            &[],
        )?;
        let n = |i: usize| row.get::<_, i64>(i) as u64;
        Ok(RowCounts {
            changes: n(0),
            docs: n(1),
            cases: n(2),
            audit_change: n(3),
            audit_reject: n(4),
            audit_reveal: n(5),
        })
    }

    fn case_gauges(&self, now: Millis) -> Result<CaseGauges> {
        let mut conn = self.conn()?;
        let sql = format!(
            "SELECT (SELECT count(*) FROM cases WHERE status NOT IN {FINISHED_STATUSES_SQL}),
                    (SELECT count(*) FROM cases
                     WHERE due_at IS NOT NULL AND due_at < $1 AND NOT paused)"
        );
        let row = conn.query_one(&sql, &[&now])?;
        Ok(CaseGauges {
            open: row.get::<_, i64>(0) as u64,
            overdue: row.get::<_, i64>(1) as u64,
        })
    }
}

impl AuditLog for PgDb {
    fn write_audit(&self, entry: &AuditEntry) -> Result<()> {
        self.write(|tx| Ok((write_audit(tx, entry)?, true)))
    }

    fn audit_log(&self, q: &AuditQuery, limit: u32) -> Result<Vec<AuditRow>> {
        let mut conn = self.conn()?;
        let within = q.within.clone().unwrap_or_default();
        let rows = conn.query(
            "SELECT id, at, user_id, device_id, kind, case_id, doc_id, detail, area FROM audit
             WHERE ($1::text IS NULL OR case_id = $1) AND ($2::text IS NULL OR user_id = $2)
               AND ($3::bigint IS NULL OR at >= $3) AND ($4::bigint IS NULL OR at < $4)
               AND ($7::text IS NULL OR kind = $7)
               AND ($6::text = '' OR area LIKE $6 || '%'
                    OR case_id IN (SELECT case_id FROM cases WHERE scope_area LIKE $6 || '%')
                    OR user_id IN (SELECT id FROM users WHERE jurisdiction LIKE $6 || '%'))
             ORDER BY at DESC, id DESC LIMIT $5",
            &[
                &q.case_id,
                &q.user_id,
                &q.from,
                &q.to,
                &i64::from(limit),
                &within,
                &q.kind,
            ],
        )?;
        Ok(rows
            .iter()
            .map(|r| AuditRow {
                id: r.get(0),
                at: r.get(1),
                user_id: r.get(2),
                device_id: r.get(3),
                kind: r.get(4),
                case_id: r.get(5),
                doc_id: r.get(6),
                detail: r.get(7),
                area: r.get(8),
            })
            .collect())
    }

    fn audit_count(&self, kind: &str) -> Result<u64> {
        self.conn()?
            .count("SELECT count(*) FROM audit WHERE kind = $1", &[&kind])
    }
}
