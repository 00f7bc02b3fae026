//! Moving up: copies a township's SQLite database into an empty PostgreSQL database, row for
//! row, so that phones keep syncing against the new server without a restore.
//!
//! What phones depend on is copied verbatim: device ids and secret hashes (their tokens stay
//! valid), feed sequence numbers (their cursors stay valid), the documents the server thinks
//! each device holds and the scope it was served (no restore is triggered), and every change's
//! bytes (heads agree). The PostgreSQL feed counter and id sequences then continue after the
//! copied rows. Both schemas are first migrated to this server's version; the columns are the
//! same by name, so the copy is generic over the tables.
//!
//! The SQLite side is read in one read transaction (a consistent snapshot); stop the SQLite
//! server first, or changes it accepts afterwards stay behind. The PostgreSQL side is written
//! in one transaction: a failed copy leaves it empty.

use std::path::Path;

use postgres::types::{ToSql, Type};
use rusqlite::types::ValueRef;

use super::{DbError, Result};

/// Every table, parents before children.
pub const TABLES: &[&str] = &[
    "settings",
    "users",
    "devices",
    "changes",
    "docs",
    "cases",
    "case_facts",
    "case_fact_days",
    "event_times",
    "device_docs",
    "supervisions",
    "audit",
    "admins",
    "admin_tokens",
    "audit_draws",
    "audit_draw_cases",
    "blobs",
    "case_blobs",
];

/// Rows copied per table, in [`TABLES`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied(pub Vec<(&'static str, u64)>);

/// Copies the SQLite database in `data_dir` into the (empty) PostgreSQL database at `url`.
pub fn copy(data_dir: &Path, url: &str) -> Result<Copied> {
    let file = data_dir.join(super::sqlite::DB_FILE);
    if !file.exists() {
        return Err(DbError::Invalid(format!(
            "no gridcase database in {}",
            data_dir.display()
        )));
    }
    // Opening migrates both to this server's schema.
    drop(super::sqlite::SqliteDb::open(data_dir, 2)?);
    drop(super::postgres::PgDb::open(url, 2)?);
    let mut from = rusqlite::Connection::open(&file)?;
    let mut to = postgres::Client::connect(url, postgres::NoTls)?;
    let read = from.transaction()?;
    let mut write = to.transaction()?;
    refuse_non_empty(&mut write)?;
    let mut copied = Vec::new();
    for table in TABLES {
        copied.push((*table, copy_table(&read, &mut write, table)?));
    }
    continue_counters(&mut write)?;
    write.commit()?;
    Ok(Copied(copied))
}

fn refuse_non_empty(to: &mut postgres::Transaction<'_>) -> Result<()> {
    for table in TABLES {
        let row = to.query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])?;
        if row.get::<_, bool>(0) {
            return Err(DbError::Invalid(format!(
                "the PostgreSQL database is not empty (table {table} has rows); moving up \
                 copies into a new database only"
            )));
        }
    }
    Ok(())
}

/// The target's columns and their types, in the source's column order.
fn columns(
    from: &rusqlite::Transaction<'_>,
    to: &mut postgres::Transaction<'_>,
    table: &str,
) -> Result<Vec<(String, Type)>> {
    let names: Vec<String> = from
        .prepare(&format!(
            "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
        ))?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let probe = to.prepare(&format!("SELECT {} FROM {table} LIMIT 0", names.join(", ")))?;
    Ok(probe
        .columns()
        .iter()
        .map(|c| (c.name().to_owned(), c.type_().clone()))
        .collect())
}

fn copy_table(
    from: &rusqlite::Transaction<'_>,
    to: &mut postgres::Transaction<'_>,
    table: &str,
) -> Result<u64> {
    let cols = columns(from, to, table)?;
    let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
    let placeholders: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
    let insert = to.prepare(&format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        names.join(", "),
        placeholders.join(", ")
    ))?;
    let mut select = from.prepare(&format!("SELECT {} FROM {table}", names.join(", ")))?;
    let mut rows = select.query([])?;
    let mut n = 0;
    while let Some(row) = rows.next()? {
        let mut values: Vec<Box<dyn ToSql + Sync>> = Vec::with_capacity(cols.len());
        for (i, (name, ty)) in cols.iter().enumerate() {
            values.push(
                convert(row.get_ref(i)?, ty)
                    .map_err(|e| DbError::Invalid(format!("{table}.{name}: {e}")))?,
            );
        }
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| &**v).collect();
        to.execute(&insert, &params)?;
        n += 1;
    }
    Ok(n)
}

/// One SQLite value as the PostgreSQL column's type wants it.
fn convert(value: ValueRef<'_>, ty: &Type) -> Result<Box<dyn ToSql + Sync>, String> {
    let int = |v: ValueRef<'_>| match v {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(i) => Ok(Some(i)),
        other => Err(format!(
            "expected an integer, found {:?}",
            other.data_type()
        )),
    };
    Ok(match *ty {
        Type::BOOL => Box::new(int(value)?.map(|i| i != 0)),
        Type::INT8 => Box::new(int(value)?),
        Type::INT4 => Box::new(
            int(value)?
                .map(i32::try_from)
                .transpose()
                .map_err(|e| e.to_string())?,
        ),
        Type::TEXT => Box::new(match value {
            ValueRef::Null => None,
            ValueRef::Text(t) => Some(String::from_utf8(t.to_vec()).map_err(|e| e.to_string())?),
            other => return Err(format!("expected text, found {:?}", other.data_type())),
        }),
        Type::BYTEA => Box::new(match value {
            ValueRef::Null => None,
            ValueRef::Blob(b) => Some(b.to_vec()),
            other => return Err(format!("expected bytes, found {:?}", other.data_type())),
        }),
        ref other => return Err(format!("no conversion to {other}")),
    })
}

/// The feed counter and the id sequences continue after the copied rows.
fn continue_counters(to: &mut postgres::Transaction<'_>) -> Result<()> {
    to.batch_execute(
        "UPDATE feed_head SET seq = (SELECT coalesce(max(seq), 0) FROM changes) WHERE id = 1;
         SELECT setval(pg_get_serial_sequence('supervisions', 'id'),
                       (SELECT coalesce(max(id), 0) + 1 FROM supervisions), false);
         SELECT setval(pg_get_serial_sequence('audit', 'id'),
                       (SELECT coalesce(max(id), 0) + 1 FROM audit), false);
         SELECT setval(pg_get_serial_sequence('audit_draws', 'id'),
                       (SELECT coalesce(max(id), 0) + 1 FROM audit_draws), false);",
    )?;
    Ok(())
}
