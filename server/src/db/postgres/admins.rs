//! Admin accounts and audit draws in PostgreSQL.

use gridcase_core::model::Millis;
use postgres::Row;

use super::accounts::write_audit;
use super::{PgConn, PgDb};
use crate::db::admin_sql::{self as sql, spell};
use crate::db::{
    AdminAccounts, AdminRecord, AuditDraws, AuditEntry, DrawCaseRow, DrawInsert, DrawRow, NewDraw,
    PersonDeviceRow, Result, Verification, VerifyOutcome,
};

/// PostgreSQL's spelling: `$N`, and `FOR UPDATE` on a row about to be updated.
const DIALECT: sql::Dialect = sql::Dialect {
    placeholder: |i| format!("${i}"),
    row_lock: "FOR UPDATE",
};

/// `statement` in PostgreSQL's spelling.
fn pg(statement: &str) -> String {
    spell(statement, DIALECT.placeholder)
}

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
    conn.execute(&pg(sql::INSERT_TOKEN), &[&hash, &name, &expires, &now])?;
    Ok(())
}

impl AdminAccounts for PgDb {
    fn insert_admin(&self, a: &AdminRecord, token_hash: &str, audit: &AuditEntry) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                &pg(sql::INSERT_ADMIN),
                &[
                    &a.name,
                    &a.role,
                    &a.jurisdiction,
                    &a.password_hash,
                    &false,
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
        Ok(self
            .conn()?
            .query_opt(&pg(&sql::admin_by_name()), &[&name])?
            .as_ref()
            .map(admin_row))
    }

    fn admins(&self) -> Result<Vec<AdminRecord>> {
        Ok(self
            .conn()?
            .query(&sql::all_admins(), &[])?
            .iter()
            .map(admin_row)
            .collect())
    }

    fn people_within(&self, prefix: &str, limit: u32) -> Result<Vec<PersonDeviceRow>> {
        let sql = pg(sql::PEOPLE_WITHIN);
        let rows = self.conn()?.query(&sql, &[&prefix, &i64::from(limit)])?;
        Ok(rows
            .iter()
            .map(|r| PersonDeviceRow {
                user_id: r.get(0),
                role: r.get(1),
                jurisdiction: r.get(2),
                user_revoked: r.get(3),
                device_id: r.get(4),
                device_revoked: r.get(5),
                last_seen: r.get(6),
            })
            .collect())
    }

    fn admin_by_token(&self, token_hash: &str, now: Millis) -> Result<Option<AdminRecord>> {
        let sql = pg(&sql::admin_by_token());
        let row = self.conn()?.query_opt(&sql, &[&token_hash, &now])?;
        Ok(row.as_ref().map(admin_row))
    }

    fn disable_admin(&self, name: &str, audit: &AuditEntry) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(&pg(sql::SET_DISABLED), &[&name, &true])?;
            if n == 0 {
                return Ok((false, false));
            }
            tx.execute(&pg(sql::DELETE_TOKENS), &[&name])?;
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
            let n = tx.execute(&pg(sql::RESET_ADMIN), &[&name, &password_hash, &false])?;
            if n == 0 {
                return Ok((false, false));
            }
            tx.execute(&pg(sql::DELETE_TOKENS), &[&name])?;
            insert_token(tx, name, token_hash, None, audit.at)?;
            write_audit(tx, audit)?;
            Ok((true, true))
        })
    }

    fn add_session(&self, name: &str, hash: &str, expires_at: Millis, now: Millis) -> Result<()> {
        self.write(|tx| {
            tx.execute(&pg(sql::DELETE_EXPIRED_TOKENS), &[&name, &now])?;
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

/// The first key of the draws' advisory locks (the second is the month and area's hash); the
/// two-key space does not meet the migrations' one-key lock.
const DRAW_LOCK: i32 = 0x6764_7261; // "gdra"

fn draw_cases(conn: &mut PgConn, id: i64) -> Result<Vec<DrawCaseRow>> {
    let rows = conn.query(&pg(sql::DRAW_CASES), &[&id])?;
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
        let rows = self
            .conn()?
            .query(&pg(sql::CLOSED_CASE_IDS), &[&area, &from, &to])?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Draws of one month and area are decided one at a time: a transaction lock on the pair
    /// (a row lock cannot cover a first draw, which has no row yet), so the second of two
    /// simultaneous first draws finds the first (a conflict) instead of breaking the unique
    /// (month, area, sequence).
    fn insert_draw(&self, d: &NewDraw, audit: &dyn Fn(i64) -> AuditEntry) -> Result<DrawInsert> {
        self.write(|tx| {
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2 || '/' || $3))",
                &[&DRAW_LOCK, &d.month, &d.area],
            )?;
            let last = tx
                .query_opt(&pg(sql::LAST_DRAW), &[&d.month, &d.area])?
                .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)));
            if let (Some((id, _)), None) = (last, &d.reason) {
                return Ok((DrawInsert::Exists { id }, false));
            }
            let sequence = last.map_or(0, |(_, s)| s + 1);
            let id: i64 = tx
                .query_one(
                    &pg(sql::INSERT_DRAW),
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
                    &pg(sql::INSERT_DRAW_CASE),
                    &[&id, &(position as i64), case_id],
                )?;
            }
            write_audit(tx, &audit(id))?;
            Ok((DrawInsert::Inserted { id, sequence }, true))
        })
    }

    fn draw(&self, id: i64) -> Result<Option<DrawRow>> {
        let mut conn = self.conn()?;
        let Some(r) = conn.query_opt(&pg(sql::DRAW), &[&id])? else {
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
                    &pg(&sql::drawn_case_result(DIALECT)),
                    &[&v.draw_id, &v.case_id],
                )?
                .map(|r| r.get::<_, Option<String>>(0));
            match result {
                None => return Ok((VerifyOutcome::NotDrawn, false)),
                Some(Some(_)) => return Ok((VerifyOutcome::AlreadyRecorded, false)),
                Some(None) => {}
            }
            tx.execute(
                &pg(sql::RECORD_RESULT),
                &[&v.draw_id, &v.case_id, &v.result, &v.note, &v.by, &v.at],
            )?;
            write_audit(tx, audit)?;
            Ok((VerifyOutcome::Recorded, true))
        })
    }
}
