//! `case_facts` in SQLite: written with the projection, counted for the rates.

use gridcase_core::model::Millis;
use rusqlite::{Connection, OptionalExtension, named_params, params_from_iter};

use super::SqliteDb;
use crate::db::{FactQuery, FactRow, Placeholder, Rates, Result};
use crate::fact_days;
use crate::rates::{CaseFacts, FactFilter, count_sql};

fn placeholder(i: usize) -> String {
    format!("?{i}")
}

/// Writes the facts row of a case and moves it in the rollup (inside the commit's
/// transaction).
pub(super) fn upsert_facts(tx: &Connection, f: &CaseFacts) -> Result<()> {
    tx.prepare_cached(&fact_days::subtract_sql(placeholder))?
        .execute([&f.case_id])?;
    write_facts(tx, f, "REPLACE")?;
    add_to_days(tx, f)
}

fn add_to_days(tx: &Connection, f: &CaseFacts) -> Result<()> {
    tx.prepare_cached(&fact_days::add_sql(placeholder))?
        .execute([&f.case_id])?;
    Ok(())
}

/// Rebuilds the rollup unless it was filled by the SQL of this server's conditions (see
/// `crate::fact_days`); `true` if it was rebuilt. A database without facts is left as it is.
pub(super) fn refresh_fact_days(conn: &Connection, force: bool) -> Result<bool> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let stored: Option<String> = conn
            .query_row(
                "SELECT value FROM settings WHERE key = ?1",
                [fact_days::FINGERPRINT_KEY],
                |r| r.get(0),
            )
            .optional()?;
        let any_facts: bool =
            conn.query_row("SELECT EXISTS (SELECT 1 FROM case_facts)", [], |r| r.get(0))?;
        if !force && !fact_days::needs_rebuild(stored.as_deref(), any_facts) {
            return Ok(false);
        }
        for sql in fact_days::rebuild_sql() {
            conn.execute(&sql, [])?;
        }
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [fact_days::FINGERPRINT_KEY, &fact_days::fingerprint()],
        )?;
        Ok(true)
    })();
    match result {
        Ok(rebuilt) => {
            conn.execute_batch("COMMIT")?;
            Ok(rebuilt)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// `INSERT OR {conflict}` of a facts row; the number of rows written.
fn write_facts(tx: &Connection, f: &CaseFacts, conflict: &str) -> Result<usize> {
    let sql = format!(
        "INSERT OR {conflict} INTO case_facts (case_id, registered_at, area_code, category, unit,
             case_type, channel, dispatched_at, response_due_at, responded_at, handle_due_at, replied_at, closed_at,
             returned, duplicate, followed_up, solved, satisfaction, supervised)
         VALUES (:case_id, :registered_at, :area_code, :category, :unit, :case_type, :channel,
             :dispatched_at,
             :response_due_at, :responded_at, :handle_due_at, :replied_at, :closed_at,
             :returned, :duplicate, :followed_up, :solved, :satisfaction, :supervised)"
    );
    let n = tx.prepare_cached(&sql)?.execute(named_params! {
        ":case_id": f.case_id,
        ":registered_at": f.registered_at,
        ":area_code": f.area_code,
        ":category": f.category,
        ":unit": f.unit,
        ":case_type": f.case_type,
        ":channel": f.channel,
        ":dispatched_at": f.dispatched_at,
        ":response_due_at": f.response_due_at,
        ":responded_at": f.responded_at,
        ":handle_due_at": f.handle_due_at,
        ":replied_at": f.replied_at,
        ":closed_at": f.closed_at,
        ":returned": f.returned,
        ":duplicate": f.duplicate,
        ":followed_up": f.followed_up,
        ":solved": f.solved,
        ":satisfaction": f.satisfaction,
        ":supervised": f.supervised,
    })?;
    Ok(n)
}

impl Rates for SqliteDb {
    fn rate_counts(&self, filter: &FactFilter, now: Millis) -> Result<Vec<i64>> {
        let (sql, params) = count_sql(filter, now, placeholder);
        let conn = self.conn()?;
        // Not cached: `now` and the period are inlined, so each report is its own statement.
        let mut stmt = conn.prepare(&sql)?;
        let n = stmt.column_count();
        let row = stmt.query_row(params_from_iter(params), |r| {
            (0..n)
                .map(|i| r.get::<_, i64>(i))
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(row)
    }

    fn fact_case_ids(&self, filter: &FactFilter) -> Result<Vec<String>> {
        let (where_sql, params) = filter.sql(placeholder);
        let sql = format!("SELECT case_id FROM case_facts WHERE {where_sql} ORDER BY case_id");
        let conn = self.conn()?;
        let ids = conn
            .prepare(&sql)?
            .query_map(params_from_iter(params), |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    fn cases_without_facts(&self, after: &str, limit: u32) -> Result<Vec<String>> {
        let conn = self.conn()?;
        let ids = conn
            .prepare_cached(
                "SELECT c.case_id FROM cases c WHERE c.case_id > ?1
                   AND NOT EXISTS (SELECT 1 FROM case_facts f WHERE f.case_id = c.case_id)
                 ORDER BY c.case_id LIMIT ?2",
            )?
            .query_map(rusqlite::params![after, limit], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    fn fill_facts(&self, facts: &CaseFacts) -> Result<bool> {
        self.write(|tx| {
            let written = write_facts(tx, facts, "IGNORE")? == 1;
            if written {
                add_to_days(tx, facts)?;
            }
            Ok((written, true))
        })
    }

    fn rebuild_fact_days(&self) -> Result<()> {
        let conn = self.conn()?;
        let _writer = self.lock_writer();
        refresh_fact_days(&conn, true)?;
        Ok(())
    }

    fn fact_rows(&self, query: &dyn Fn(Placeholder) -> FactQuery) -> Result<Vec<FactRow>> {
        let query = query(placeholder);
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&query.sql)?;
        let n = stmt.column_count();
        let rows = stmt
            .query_map(params_from_iter(&query.params), |r| {
                Ok(FactRow {
                    texts: (0..query.texts)
                        .map(|i| r.get(i))
                        .collect::<rusqlite::Result<_>>()?,
                    numbers: (query.texts..n)
                        .map(|i| r.get(i))
                        .collect::<rusqlite::Result<_>>()?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}
