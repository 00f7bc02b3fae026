//! Admin accounts and audit draws in PostgreSQL.

use gridcase_core::model::Millis;
use postgres::Row;

use super::accounts::write_audit;
use super::{PgConn, PgDb};
use crate::db::{
    AdminAccounts, AdminRecord, AuditDraws, AuditEntry, DrawCaseRow, DrawInsert, DrawRow, NewDraw,
    Result, Verification, VerifyOutcome,
};

const ADMIN_COLUMNS: &str =
    "a.name, a.role, a.jurisdiction, a.password_hash, a.disabled, a.created_at";

fn admin_row(r: &Row) -> AdminRecord {
    AdminRecord {
        name: r.get(0),
        role: r.get(1),
        jurisdiction: r.get(2),
        password_hash: r.get(3),
        disabled: r.get(4),
        created_at: r.get(5),
    }
}

fn insert_token(
    conn: &mut PgConn,
    name: &str,
    hash: &str,
    expires: Option<Millis>,
    now: Millis,
) -> Result<()> {
    conn.execute(
        "INSERT INTO admin_tokens (token_hash, admin, expires_at, created_at)
         VALUES ($1, $2, $3, $4)",
        &[&hash, &name, &expires, &now],
    )?;
    Ok(())
}

impl AdminAccounts for PgDb {
    fn insert_admin(&self, a: &AdminRecord, token_hash: &str, audit: &AuditEntry) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "INSERT INTO admins (name, role, jurisdiction, password_hash, disabled, created_at)
                 VALUES ($1, $2, $3, $4, FALSE, $5) ON CONFLICT (name) DO NOTHING",
                &[
                    &a.name,
                    &a.role,
                    &a.jurisdiction,
                    &a.password_hash,
                    &a.created_at,
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
        let sql = format!("SELECT {ADMIN_COLUMNS} FROM admins a WHERE a.name = $1");
        Ok(self
            .conn()?
            .query_opt(&sql, &[&name])?
            .as_ref()
            .map(admin_row))
    }

    fn admins(&self) -> Result<Vec<AdminRecord>> {
        let sql = format!("SELECT {ADMIN_COLUMNS} FROM admins a ORDER BY a.name");
        Ok(self
            .conn()?
            .query(&sql, &[])?
            .iter()
            .map(admin_row)
            .collect())
    }

    fn admin_by_token(&self, token_hash: &str, now: Millis) -> Result<Option<AdminRecord>> {
        let sql = format!(
            "SELECT {ADMIN_COLUMNS} FROM admin_tokens t JOIN admins a ON a.name = t.admin
             WHERE t.token_hash = $1 AND (t.expires_at IS NULL OR t.expires_at > $2)"
        );
        let row = self.conn()?.query_opt(&sql, &[&token_hash, &now])?;
        Ok(row.as_ref().map(admin_row))
    }

    fn disable_admin(&self, name: &str, audit: &AuditEntry) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE admins SET disabled = TRUE WHERE name = $1",
                &[&name],
            )?;
            if n == 0 {
                return Ok((false, false));
            }
            tx.execute("DELETE FROM admin_tokens WHERE admin = $1", &[&name])?;
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
                "UPDATE admins SET disabled = FALSE,
                     password_hash = coalesce($2, password_hash) WHERE name = $1",
                &[&name, &password_hash],
            )?;
            if n == 0 {
                return Ok((false, false));
            }
            tx.execute("DELETE FROM admin_tokens WHERE admin = $1", &[&name])?;
            insert_token(tx, name, token_hash, None, audit.at)?;
            write_audit(tx, audit)?;
            Ok((true, true))
        })
    }

    fn add_session(&self, name: &str, hash: &str, expires_at: Millis, now: Millis) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM admin_tokens WHERE admin = $1 AND expires_at <= $2",
                &[&name, &now],
            )?;
            insert_token(tx, name, hash, Some(expires_at), now)?;
            Ok(((), true))
        })
    }

    fn end_session(&self, token_hash: &str) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM admin_tokens WHERE token_hash = $1 AND expires_at IS NOT NULL",
                &[&token_hash],
            )?;
            Ok((n > 0, n > 0))
        })
    }
}

fn draw_cases(conn: &mut PgConn, id: i64) -> Result<Vec<DrawCaseRow>> {
    let rows = conn.query(
        "SELECT position, case_id, result, note, verified_by, verified_at
         FROM audit_draw_cases WHERE draw_id = $1 ORDER BY position",
        &[&id],
    )?;
    Ok(rows
        .iter()
        .map(|r| DrawCaseRow {
            position: r.get::<_, i64>(0) as u32,
            case_id: r.get(1),
            result: r.get(2),
            note: r.get(3),
            verified_by: r.get(4),
            verified_at: r.get(5),
        })
        .collect())
}

impl AuditDraws for PgDb {
    fn closed_case_ids(&self, area: &str, from: Millis, to: Millis) -> Result<Vec<String>> {
        let rows = self.conn()?.query(
            "SELECT case_id FROM case_facts
             WHERE registered_at < $3 AND closed_at >= $2 AND closed_at < $3
               AND area_code LIKE $1 || '%'
             ORDER BY case_id",
            &[&area, &from, &to],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The month and area's newest draw is locked (`FOR UPDATE`) while the next is decided; two
    /// first draws at once meet the unique (month, area, sequence) and one fails.
    fn insert_draw(&self, d: &NewDraw, audit: &dyn Fn(i64) -> AuditEntry) -> Result<DrawInsert> {
        self.write(|tx| {
            let last = tx
                .query_opt(
                    "SELECT id, sequence FROM audit_draws WHERE month = $1 AND area = $2
                     ORDER BY sequence DESC LIMIT 1 FOR UPDATE",
                    &[&d.month, &d.area],
                )?
                .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)));
            if let (Some((id, _)), None) = (last, &d.reason) {
                return Ok((DrawInsert::Exists { id }, false));
            }
            let sequence = last.map_or(0, |(_, s)| s + 1);
            let id: i64 = tx
                .query_one(
                    "INSERT INTO audit_draws (month, area, sequence, n, nonce, seed,
                         candidates_hash, candidates, reason, by_admin, at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
                    &[
                        &d.month,
                        &d.area,
                        &sequence,
                        &i64::from(d.n),
                        &d.nonce,
                        &d.seed,
                        &d.candidates_hash,
                        &d.candidates.join("\n"),
                        &d.reason,
                        &d.by,
                        &d.at,
                    ],
                )?
                .get(0);
            for (position, case_id) in d.drawn.iter().enumerate() {
                tx.execute(
                    "INSERT INTO audit_draw_cases (draw_id, position, case_id)
                     VALUES ($1, $2, $3)",
                    &[&id, &(position as i64), case_id],
                )?;
            }
            write_audit(tx, &audit(id))?;
            Ok((DrawInsert::Inserted { id, sequence }, true))
        })
    }

    fn draw(&self, id: i64) -> Result<Option<DrawRow>> {
        let mut conn = self.conn()?;
        let Some(r) = conn.query_opt(
            "SELECT month, area, sequence, n, nonce, seed, candidates_hash, candidates,
                 reason, by_admin, at FROM audit_draws WHERE id = $1",
            &[&id],
        )?
        else {
            return Ok(None);
        };
        let candidates: String = r.get(7);
        Ok(Some(DrawRow {
            id,
            month: r.get(0),
            area: r.get(1),
            sequence: r.get(2),
            n: r.get::<_, i64>(3) as u32,
            nonce: r.get(4),
            seed: r.get(5),
            candidates_hash: r.get(6),
            candidates: crate::db::split_candidates(&candidates),
            reason: r.get(8),
            by: r.get(9),
            at: r.get(10),
            cases: draw_cases(&mut conn, id)?,
        }))
    }

    fn record_verification(&self, v: &Verification, audit: &AuditEntry) -> Result<VerifyOutcome> {
        self.write(|tx| {
            let result = tx
                .query_opt(
                    "SELECT result FROM audit_draw_cases WHERE draw_id = $1 AND case_id = $2
                     FOR UPDATE",
                    &[&v.draw_id, &v.case_id],
                )?
                .map(|r| r.get::<_, Option<String>>(0));
            match result {
                None => return Ok((VerifyOutcome::NotDrawn, false)),
                Some(Some(_)) => return Ok((VerifyOutcome::AlreadyRecorded, false)),
                Some(None) => {}
            }
            tx.execute(
                "UPDATE audit_draw_cases SET result = $3, note = $4, verified_by = $5,
                     verified_at = $6 WHERE draw_id = $1 AND case_id = $2",
                &[&v.draw_id, &v.case_id, &v.result, &v.note, &v.by, &v.at],
            )?;
            write_audit(tx, audit)?;
            Ok((VerifyOutcome::Recorded, true))
        })
    }
}
