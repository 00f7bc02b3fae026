//! The phone's lists, read from the `cases` projection only (no document is loaded).
//!
//! Text search is `title LIKE '%q%'` (and the case number), a scan of the projection: fine for
//! the few thousand cases a phone holds. Full-text search (FTS5) would be the next step.

use rusqlite::types::Type;
use rusqlite::{Connection, Row, params};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::model::{CaseId, CaseType, Millis, Status, Urgency};

/// One line of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseSummary {
    pub case_id: CaseId,
    pub number: String,
    pub title: String,
    pub status: Status,
    pub case_type: CaseType,
    pub urgency: Urgency,
    pub priority: bool,
    pub area_code: String,
    pub assignee: String,
    pub responsible_unit: String,
    pub created_by: String,
    /// The stage whose clock runs (a `policy::Stage` spelling), if any.
    pub stage: Option<String>,
    pub due_at: Option<Millis>,
    /// The due date relied on a year without holiday data.
    pub due_provisional: bool,
    pub needs_review: bool,
    /// When this phone last changed the row (a local edit or a sync that touched the case).
    pub updated_at: Millis,
    /// The case or its personal data holds changes the server has not acknowledged.
    pub has_pending: bool,
}

const COLUMNS: &str = "case_id, number, title, status, case_type, urgency, priority, area_code,
    assignee, responsible_unit, created_by, stage, due_at, due_provisional, needs_review,
    updated_at, has_pending";

fn parsed<T>(row: &Row<'_>, index: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            Type::Text,
            format!("unknown value {text:?}").into(),
        )
    })
}

fn summary(row: &Row<'_>) -> rusqlite::Result<CaseSummary> {
    Ok(CaseSummary {
        case_id: row.get(0)?,
        number: row.get(1)?,
        title: row.get(2)?,
        status: parsed(row, 3, Status::parse)?,
        case_type: parsed(row, 4, CaseType::parse)?,
        urgency: parsed(row, 5, Urgency::parse)?,
        priority: row.get(6)?,
        area_code: row.get(7)?,
        assignee: row.get(8)?,
        responsible_unit: row.get(9)?,
        created_by: row.get(10)?,
        stage: row.get(11)?,
        due_at: row.get(12)?,
        due_provisional: row.get(13)?,
        needs_review: row.get(14)?,
        updated_at: row.get(15)?,
        has_pending: row.get(16)?,
    })
}

fn list(
    conn: &Connection,
    filter_and_order: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<CaseSummary>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM cases {filter_and_order}");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params, summary)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn get(conn: &Connection, case_id: &str) -> Result<Option<CaseSummary>, StoreError> {
    Ok(list(conn, "WHERE case_id = ?1", [case_id])?.pop())
}

/// Cases assigned to or registered by `user`, most recently changed first.
pub fn my_cases(conn: &Connection, user: &str) -> Result<Vec<CaseSummary>, StoreError> {
    list(
        conn,
        "WHERE assignee = ?1 OR created_by = ?1 ORDER BY updated_at DESC, case_id",
        [user],
    )
}

/// Not yet overdue, but at least `fraction` of the stage's time used (预警), soonest first.
/// Clocks paused for a pending extension are left out.
pub fn due_soon(
    conn: &Connection,
    now: Millis,
    fraction: f64,
) -> Result<Vec<CaseSummary>, StoreError> {
    list(
        conn,
        "WHERE due_at > ?1 AND deadline_paused = 0
           AND (?1 - stage_started_at) >= ?2 * (due_at - stage_started_at)
         ORDER BY due_at, case_id",
        params![now, fraction],
    )
}

/// Past the due instant (超期), most overdue first. Paused clocks are left out.
pub fn overdue(conn: &Connection, now: Millis) -> Result<Vec<CaseSummary>, StoreError> {
    list(
        conn,
        "WHERE due_at <= ?1 AND deadline_paused = 0 ORDER BY due_at, case_id",
        [now],
    )
}

pub fn by_status(conn: &Connection, status: Status) -> Result<Vec<CaseSummary>, StoreError> {
    list(
        conn,
        "WHERE status = ?1 ORDER BY updated_at DESC, case_id",
        [status.as_str()],
    )
}

/// Cases whose area code starts with `prefix` (a jurisdiction). Area codes are digits, and `:`
/// sorts right after `9`, so the prefix is an index range.
pub fn by_area(conn: &Connection, prefix: &str) -> Result<Vec<CaseSummary>, StoreError> {
    list(
        conn,
        "WHERE area_code >= ?1 AND area_code < ?1 || ':' ORDER BY area_code, case_id",
        [prefix],
    )
}

/// Cases whose title (or number) contains `q`, case-insensitively for ASCII.
pub fn search_title(conn: &Connection, q: &str) -> Result<Vec<CaseSummary>, StoreError> {
    let escaped: String = q
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    let pattern = format!("%{escaped}%");
    list(
        conn,
        "WHERE title LIKE ?1 ESCAPE '\\' OR number LIKE ?1 ESCAPE '\\'
         ORDER BY updated_at DESC, case_id",
        [pattern],
    )
}
