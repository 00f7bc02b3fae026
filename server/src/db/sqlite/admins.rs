//! Admin accounts and audit draws in SQLite.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::SqliteDb;
use super::accounts::write_audit;
use crate::db::{
    AdminAccounts, AdminRecord, AuditDraws, AuditEntry, DrawCaseRow, DrawInsert, DrawRow, NewDraw,
    Result, Verification, VerifyOutcome,
};
use gridcase_core::model::Millis;

const ADMIN_COLUMNS: &str = "name, role, jurisdiction, password_hash, disabled, created_at";

fn admin_row(r: &Row<'_>) -> rusqlite::Result<AdminRecord> {
    Ok(AdminRecord {
        name: r.get(0)?,
        role: r.get(1)?,
        jurisdiction: r.get(2)?,
        password_hash: r.get(3)?,
        disabled: r.get(4)?,
        created_at: r.get(5)?,
    })
}

fn admin_in(conn: &Connection, name: &str) -> Result<Option<AdminRecord>> {
    let sql = format!("SELECT {ADMIN_COLUMNS} FROM admins WHERE name = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([name], admin_row)
        .optional()?)
}

fn insert_token(
    conn: &Connection,
    name: &str,
    hash: &str,
    expires: Option<Millis>,
    now: Millis,
) -> Result<()> {
    conn.execute(
        "INSERT INTO admin_tokens (token_hash, admin, expires_at, created_at)
         VALUES (?1, ?2, ?3, ?4)",
        params![hash, name, expires, now],
    )?;
    Ok(())
}

impl AdminAccounts for SqliteDb {
    fn insert_admin(&self, a: &AdminRecord, token_hash: &str, audit: &AuditEntry) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "INSERT INTO admins (name, role, jurisdiction, password_hash, disabled, created_at)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5) ON CONFLICT(name) DO NOTHING",
                params![
                    a.name,
                    a.role,
                    a.jurisdiction,
                    a.password_hash,
                    a.created_at
                ],
            )?;
            if n == 0 {
                return Ok((false, false));
            }
            insert_token(tx, &a.name, token_hash, None, a.created_at)?;
            write_audit(tx, audit)?;
            Ok((true, true))
        })
    }

    fn admin(&self, name: &str) -> Result<Option<AdminRecord>> {
        admin_in(&*self.conn()?, name)
    }

    fn admins(&self) -> Result<Vec<AdminRecord>> {
        let conn = self.conn()?;
        let sql = format!("SELECT {ADMIN_COLUMNS} FROM admins ORDER BY name");
        let rows = conn
            .prepare_cached(&sql)?
            .query_map([], admin_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn admin_by_token(&self, token_hash: &str, now: Millis) -> Result<Option<AdminRecord>> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {} FROM admin_tokens t JOIN admins a ON a.name = t.admin
             WHERE t.token_hash = ?1 AND (t.expires_at IS NULL OR t.expires_at > ?2)",
            ADMIN_COLUMNS
                .split(", ")
                .map(|c| format!("a.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(conn
            .prepare_cached(&sql)?
            .query_row(params![token_hash, now], admin_row)
            .optional()?)
    }

    fn disable_admin(&self, name: &str, audit: &AuditEntry) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute("UPDATE admins SET disabled = 1 WHERE name = ?1", [name])?;
            if n == 0 {
                return Ok((false, false));
            }
            tx.execute("DELETE FROM admin_tokens WHERE admin = ?1", [name])?;
            write_audit(tx, audit)?;
            Ok((true, true))
        })
    }

    fn reset_admin(
        &self,
        name: &str,
        token_hash: &str,
        password_hash: Option<&str>,
        audit: &AuditEntry,
    ) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE admins SET disabled = 0,
                     password_hash = coalesce(?2, password_hash) WHERE name = ?1",
                params![name, password_hash],
            )?;
            if n == 0 {
                return Ok((false, false));
            }
            tx.execute("DELETE FROM admin_tokens WHERE admin = ?1", [name])?;
            insert_token(tx, name, token_hash, None, audit.at)?;
            write_audit(tx, audit)?;
            Ok((true, true))
        })
    }

    fn add_session(&self, name: &str, hash: &str, expires_at: Millis, now: Millis) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM admin_tokens WHERE admin = ?1 AND expires_at <= ?2",
                params![name, now],
            )?;
            insert_token(tx, name, hash, Some(expires_at), now)?;
            Ok(((), true))
        })
    }

    fn end_session(&self, token_hash: &str) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM admin_tokens WHERE token_hash = ?1 AND expires_at IS NOT NULL",
                [token_hash],
            )?;
            Ok((n > 0, n > 0))
        })
    }
}

fn draw_cases(conn: &Connection, id: i64) -> Result<Vec<DrawCaseRow>> {
    let rows = conn
        .prepare_cached(
            "SELECT position, case_id, result, note, verified_by, verified_at
             FROM audit_draw_cases WHERE draw_id = ?1 ORDER BY position",
        )?
        .query_map([id], |r| {
            Ok(DrawCaseRow {
                position: r.get(0)?,
                case_id: r.get(1)?,
                result: r.get(2)?,
                note: r.get(3)?,
                verified_by: r.get(4)?,
                verified_at: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

impl AuditDraws for SqliteDb {
    fn closed_case_ids(&self, area: &str, from: Millis, to: Millis) -> Result<Vec<String>> {
        let conn = self.conn()?;
        let ids = conn
            .prepare_cached(
                "SELECT case_id FROM case_facts
                 WHERE registered_at < ?3 AND closed_at >= ?2 AND closed_at < ?3
                   AND area_code LIKE ?1 || '%'
                 ORDER BY case_id",
            )?
            .query_map(params![area, from, to], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    fn insert_draw(&self, d: &NewDraw, audit: &dyn Fn(i64) -> AuditEntry) -> Result<DrawInsert> {
        self.write(|tx| {
            let last: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT id, sequence FROM audit_draws WHERE month = ?1 AND area = ?2
                     ORDER BY sequence DESC LIMIT 1",
                    params![d.month, d.area],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let (Some((id, _)), None) = (last, &d.reason) {
                return Ok((DrawInsert::Exists { id }, false));
            }
            let sequence = last.map_or(0, |(_, s)| s + 1);
            tx.execute(
                "INSERT INTO audit_draws (month, area, sequence, n, nonce, seed, candidates_hash,
                     candidates, reason, by_admin, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    d.month,
                    d.area,
                    sequence,
                    d.n,
                    d.nonce,
                    d.seed,
                    d.candidates_hash,
                    d.candidates.join("\n"),
                    d.reason,
                    d.by,
                    d.at
                ],
            )?;
            let id = tx.last_insert_rowid();
            for (position, case_id) in d.drawn.iter().enumerate() {
                tx.execute(
                    "INSERT INTO audit_draw_cases (draw_id, position, case_id)
                     VALUES (?1, ?2, ?3)",
                    params![id, position as i64, case_id],
                )?;
            }
            write_audit(tx, &audit(id))?;
            Ok((DrawInsert::Inserted { id, sequence }, true))
        })
    }

    fn draw(&self, id: i64) -> Result<Option<DrawRow>> {
        let conn = self.conn()?;
        let row = conn
            .prepare_cached(
                "SELECT month, area, sequence, n, nonce, seed, candidates_hash, candidates,
                     reason, by_admin, at FROM audit_draws WHERE id = ?1",
            )?
            .query_row([id], |r| {
                let candidates: String = r.get(7)?;
                Ok(DrawRow {
                    id,
                    month: r.get(0)?,
                    area: r.get(1)?,
                    sequence: r.get(2)?,
                    n: r.get(3)?,
                    nonce: r.get(4)?,
                    seed: r.get(5)?,
                    candidates_hash: r.get(6)?,
                    candidates: crate::db::split_candidates(&candidates),
                    reason: r.get(8)?,
                    by: r.get(9)?,
                    at: r.get(10)?,
                    cases: Vec::new(),
                })
            })
            .optional()?;
        let Some(mut row) = row else {
            return Ok(None);
        };
        row.cases = draw_cases(&conn, id)?;
        Ok(Some(row))
    }

    fn record_verification(&self, v: &Verification, audit: &AuditEntry) -> Result<VerifyOutcome> {
        self.write(|tx| {
            let result: Option<Option<String>> = tx
                .query_row(
                    "SELECT result FROM audit_draw_cases WHERE draw_id = ?1 AND case_id = ?2",
                    params![v.draw_id, v.case_id],
                    |r| r.get(0),
                )
                .optional()?;
            match result {
                None => return Ok((VerifyOutcome::NotDrawn, false)),
                Some(Some(_)) => return Ok((VerifyOutcome::AlreadyRecorded, false)),
                Some(None) => {}
            }
            tx.execute(
                "UPDATE audit_draw_cases SET result = ?3, note = ?4, verified_by = ?5,
                     verified_at = ?6 WHERE draw_id = ?1 AND case_id = ?2",
                params![v.draw_id, v.case_id, v.result, v.note, v.by, v.at],
            )?;
            write_audit(tx, audit)?;
            Ok((VerifyOutcome::Recorded, true))
        })
    }
}
