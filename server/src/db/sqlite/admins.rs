//! Admin accounts and audit draws in SQLite.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::SqliteDb;
use super::accounts::write_audit;
use crate::db::admin_sql as sql;
use crate::db::{
    AdminAccounts, AdminRecord, AuditDraws, AuditEntry, DrawCaseRow, DrawInsert, DrawRow, NewDraw,
    PersonDeviceRow, Result, Verification, VerifyOutcome,
};
use gridcase_core::model::Millis;

/// SQLite's spelling: `?N` as written; no row locks (the write transaction excludes other
/// writers).
const DIALECT: sql::Dialect = sql::Dialect {
    placeholder: |i| format!("?{i}"),
    row_lock: "",
};

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
    Ok(conn
        .prepare_cached(&sql::admin_by_name())?
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
    conn.execute(sql::INSERT_TOKEN, params![hash, name, expires, now])?;
    Ok(())
}

impl AdminAccounts for SqliteDb {
    fn insert_admin(&self, a: &AdminRecord, token_hash: &str, audit: &AuditEntry) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                sql::INSERT_ADMIN,
                params![
                    a.name,
                    a.role,
                    a.jurisdiction,
                    a.password_hash,
                    false,
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
        let rows = conn
            .prepare_cached(&sql::all_admins())?
            .query_map([], admin_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn people_within(&self, prefix: &str, limit: u32) -> Result<Vec<PersonDeviceRow>> {
        let conn = self.conn()?;
        let rows = conn
            .prepare_cached(sql::PEOPLE_WITHIN)?
            .query_map(params![prefix, limit], |r| {
                Ok(PersonDeviceRow {
                    user_id: r.get(0)?,
                    role: r.get(1)?,
                    jurisdiction: r.get(2)?,
                    user_revoked: r.get(3)?,
                    device_id: r.get(4)?,
                    device_revoked: r.get(5)?,
                    last_seen: r.get(6)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn admin_by_token(&self, token_hash: &str, now: Millis) -> Result<Option<AdminRecord>> {
        let conn = self.conn()?;
        Ok(conn
            .prepare_cached(&sql::admin_by_token())?
            .query_row(params![token_hash, now], admin_row)
            .optional()?)
    }

    fn disable_admin(&self, name: &str, audit: &AuditEntry) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(sql::SET_DISABLED, params![name, true])?;
            if n == 0 {
                return Ok((false, false));
            }
            tx.execute(sql::DELETE_TOKENS, [name])?;
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
            let n = tx.execute(sql::RESET_ADMIN, params![name, password_hash, false])?;
            if n == 0 {
                return Ok((false, false));
            }
            tx.execute(sql::DELETE_TOKENS, [name])?;
            insert_token(tx, name, token_hash, None, audit.at)?;
            write_audit(tx, audit)?;
            Ok((true, true))
        })
    }

    fn add_session(&self, name: &str, hash: &str, expires_at: Millis, now: Millis) -> Result<()> {
        self.write(|tx| {
            tx.execute(sql::DELETE_EXPIRED_TOKENS, params![name, now])?;
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
        .prepare_cached(sql::DRAW_CASES)?
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
            .prepare_cached(sql::CLOSED_CASE_IDS)?
            .query_map(params![area, from, to], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    fn insert_draw(&self, d: &NewDraw, audit: &dyn Fn(i64) -> AuditEntry) -> Result<DrawInsert> {
        self.write(|tx| {
            let last: Option<(i64, i64)> = tx
                .query_row(sql::LAST_DRAW, params![d.month, d.area], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            if let (Some((id, _)), None) = (last, &d.reason) {
                return Ok((DrawInsert::Exists { id }, false));
            }
            let sequence = last.map_or(0, |(_, s)| s + 1);
            let id: i64 = tx.query_row(
                sql::INSERT_DRAW,
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
                |r| r.get(0),
            )?;
            for (position, case_id) in d.drawn.iter().enumerate() {
                tx.execute(sql::INSERT_DRAW_CASE, params![id, position as i64, case_id])?;
            }
            write_audit(tx, &audit(id))?;
            Ok((DrawInsert::Inserted { id, sequence }, true))
        })
    }

    fn draw(&self, id: i64) -> Result<Option<DrawRow>> {
        let conn = self.conn()?;
        let row = conn
            .prepare_cached(sql::DRAW)?
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
                    &sql::drawn_case_result(DIALECT),
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
                sql::RECORD_RESULT,
                params![v.draw_id, v.case_id, v.result, v.note, v.by, v.at],
            )?;
            write_audit(tx, audit)?;
            Ok((VerifyOutcome::Recorded, true))
        })
    }
}
