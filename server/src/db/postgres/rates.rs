//! `case_facts` in PostgreSQL: written with the projection, counted for the rates.

use gridcase_core::model::Millis;
use postgres::types::ToSql;

use super::{PgConn, PgDb};
use crate::db::{FactQuery, FactRow, Placeholder, Rates, Result};
use crate::fact_days;
use crate::rates::{CaseFacts, FactFilter, count_sql};

fn placeholder(i: usize) -> String {
    format!("${i}")
}

/// Writes the facts row of a case and moves it in the rollup (inside the commit's
/// transaction).
pub(super) fn upsert_facts(tx: &mut PgConn, f: &CaseFacts) -> Result<()> {
    tx.execute(&fact_days::subtract_sql(placeholder), &[&f.case_id])?;
    write_facts(tx, f, UPDATE)?;
    add_to_days(tx, f)
}

fn add_to_days(tx: &mut PgConn, f: &CaseFacts) -> Result<()> {
    tx.execute(&fact_days::add_sql(placeholder), &[&f.case_id])?;
    Ok(())
}

/// Rebuilds the rollup unless it was filled by the SQL of this server's conditions (see
/// `crate::fact_days`); `true` if it was rebuilt. A database without facts is left as it is
/// (moving up copies into an empty database only). Servers starting together wait on the
/// table lock and find the rollup rebuilt.
pub(super) fn refresh_fact_days(conn: &mut PgConn, force: bool) -> Result<bool> {
    conn.batch("BEGIN")?;
    let result = (|| {
        conn.batch("LOCK TABLE case_fact_days IN EXCLUSIVE MODE")?;
        let stored: Option<String> = conn
            .query_opt(
                "SELECT value FROM settings WHERE key = $1",
                &[&fact_days::FINGERPRINT_KEY],
            )?
            .map(|r| r.get(0));
        let any_facts: bool = conn
            .query_one("SELECT EXISTS (SELECT 1 FROM case_facts)", &[])?
            .get(0);
        if !force && !fact_days::needs_rebuild(stored.as_deref(), any_facts) {
            return Ok(false);
        }
        for sql in fact_days::rebuild_sql() {
            conn.batch(&sql)?;
        }
        conn.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&fact_days::FINGERPRINT_KEY, &fact_days::fingerprint()],
        )?;
        Ok(true)
    })();
    match result {
        Ok(rebuilt) => {
            conn.batch("COMMIT")?;
            Ok(rebuilt)
        }
        Err(e) => {
            let _ = conn.batch("ROLLBACK");
            Err(e)
        }
    }
}

const UPDATE: &str = "DO UPDATE SET registered_at = excluded.registered_at,
             area_code = excluded.area_code, category = excluded.category,
             unit = excluded.unit, case_type = excluded.case_type,
             channel = excluded.channel, dispatched_at = excluded.dispatched_at,
             response_due_at = excluded.response_due_at, responded_at = excluded.responded_at,
             handle_due_at = excluded.handle_due_at, replied_at = excluded.replied_at,
             closed_at = excluded.closed_at, returned = excluded.returned,
             duplicate = excluded.duplicate, followed_up = excluded.followed_up,
             solved = excluded.solved, satisfaction = excluded.satisfaction,
             supervised = excluded.supervised";

/// Inserts a facts row, `ON CONFLICT (case_id) {on_conflict}`; the number of rows written.
fn write_facts(tx: &mut PgConn, f: &CaseFacts, on_conflict: &str) -> Result<u64> {
    let flag = |b: bool| i64::from(b);
    let sql = format!(
        "INSERT INTO case_facts (case_id, registered_at, area_code, category, unit,
             dispatched_at, response_due_at, responded_at, handle_due_at, replied_at, closed_at,
             returned, duplicate, followed_up, solved, satisfaction, supervised,
             case_type, channel)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
             $18, $19)
         ON CONFLICT (case_id) {on_conflict}"
    );
    let n = tx.execute(
        &sql,
        &[
            &f.case_id,
            &f.registered_at,
            &f.area_code,
            &f.category,
            &f.unit,
            &f.dispatched_at,
            &f.response_due_at,
            &f.responded_at,
            &f.handle_due_at,
            &f.replied_at,
            &f.closed_at,
            &flag(f.returned),
            &flag(f.duplicate),
            &flag(f.followed_up),
            &flag(f.solved),
            &f.satisfaction,
            &flag(f.supervised),
            &f.case_type,
            &f.channel,
        ],
    )?;
    Ok(n)
}

fn refs(params: &[String]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl Rates for PgDb {
    fn rate_counts(&self, filter: &FactFilter, now: Millis) -> Result<Vec<i64>> {
        let (sql, params) = count_sql(filter, now, placeholder);
        let mut conn = self.conn()?;
        // Not cached: `now` and the period are inlined, so each report is its own statement.
        let row = conn.client.query_one(&sql, &refs(&params))?;
        Ok((0..row.len()).map(|i| row.get::<_, i64>(i)).collect())
    }

    fn fact_case_ids(&self, filter: &FactFilter) -> Result<Vec<String>> {
        let (where_sql, params) = filter.sql(placeholder);
        let sql = format!("SELECT case_id FROM case_facts WHERE {where_sql} ORDER BY case_id");
        let mut conn = self.conn()?;
        let rows = conn.client.query(&sql, &refs(&params))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn cases_without_facts(&self, after: &str, limit: u32) -> Result<Vec<String>> {
        let mut conn = self.conn()?;
        let rows = conn.query(
            "SELECT c.case_id FROM cases c WHERE c.case_id > $1
               AND NOT EXISTS (SELECT 1 FROM case_facts f WHERE f.case_id = c.case_id)
             ORDER BY c.case_id LIMIT $2",
            &[&after, &i64::from(limit)],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn fill_facts(&self, facts: &CaseFacts) -> Result<bool> {
        self.write(|tx| {
            let written = write_facts(tx, facts, "DO NOTHING")? == 1;
            if written {
                add_to_days(tx, facts)?;
            }
            Ok((written, true))
        })
    }

    fn rebuild_fact_days(&self) -> Result<()> {
        let mut conn = self.conn()?;
        refresh_fact_days(&mut conn, true)?;
        Ok(())
    }

    fn fact_rows(&self, query: &dyn Fn(Placeholder) -> FactQuery) -> Result<Vec<FactRow>> {
        let query = query(placeholder);
        let mut conn = self.conn()?;
        let rows = conn.client.query(&query.sql, &refs(&query.params))?;
        let row = |r: &postgres::Row| -> std::result::Result<FactRow, postgres::Error> {
            Ok(FactRow {
                texts: (0..query.texts)
                    .map(|i| r.try_get(i))
                    .collect::<Result<_, _>>()?,
                numbers: (query.texts..r.len())
                    .map(|i| r.try_get(i))
                    .collect::<Result<_, _>>()?,
            })
        };
        Ok(rows.iter().map(row).collect::<Result<Vec<_>, _>>()?)
    }
}
