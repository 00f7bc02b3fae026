//! The phone's lists, read from the `cases` projection only (no document is loaded), a page
//! at a time: a screen asks for the rows it shows, not for the 20,000 a township holds.
//!
//! Pages are offset + limit over a total order (every ordering ends with `case_id`), so a page
//! is stable while nothing changes; when something does, the change listener tells the app to
//! reload what it shows. Every filter is a range of an index except text search, which is
//! `title LIKE '%q%'` (and the case number), a scan of the projection: a few milliseconds for
//! 20,000 rows. Full-text search (FTS5) would be the next step.

use rusqlite::types::Type;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params_from_iter};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::model::{CaseId, CaseType, Millis, Status, Urgency};
use crate::policy::PolicySet;

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

/// Which cases a list shows, and in which order.
#[derive(Debug, Clone, PartialEq)]
pub enum CaseFilter {
    /// Every case held, by area code.
    All,
    /// Assigned to or registered by `user`, most recently changed first.
    Mine { user: String },
    /// Not yet overdue, but at least `fraction` of the stage's time used at `now` (预警),
    /// soonest first. Clocks paused for a pending extension are left out.
    DueSoon { now: Millis, fraction: f64 },
    /// Past the due instant at `now` (超期), most overdue first. Paused clocks are left out.
    Overdue { now: Millis },
    /// In one state, most recently changed first.
    Status(Status),
    /// Area code starts with the prefix (a jurisdiction), by area code.
    Area(String),
    /// Title or number contains the text (case-insensitively for ASCII), most recent first.
    Search(String),
}

impl CaseFilter {
    /// The due-soon list by a policy's warning threshold.
    pub fn due_soon(now: Millis, policy: &PolicySet) -> CaseFilter {
        CaseFilter::DueSoon {
            now,
            fraction: policy.due_soon_fraction,
        }
    }

    /// The `WHERE` clause, the `ORDER BY` clause and the parameters.
    fn sql(&self) -> (&'static str, &'static str, Vec<Value>) {
        const RECENT: &str = "ORDER BY updated_at DESC, case_id";
        match self {
            CaseFilter::All => ("", "ORDER BY area_code, case_id", vec![]),
            CaseFilter::Mine { user } => (
                "WHERE assignee = ?1 OR created_by = ?1",
                RECENT,
                vec![user.clone().into()],
            ),
            CaseFilter::DueSoon { now, fraction } => (
                "WHERE due_at > ?1 AND deadline_paused = 0
                   AND (?1 - stage_started_at) >= ?2 * (due_at - stage_started_at)",
                "ORDER BY due_at, case_id",
                vec![(*now).into(), (*fraction).into()],
            ),
            CaseFilter::Overdue { now } => (
                "WHERE due_at <= ?1 AND deadline_paused = 0",
                "ORDER BY due_at, case_id",
                vec![(*now).into()],
            ),
            CaseFilter::Status(status) => (
                "WHERE status = ?1",
                RECENT,
                vec![status.as_str().to_string().into()],
            ),
            // Area codes are digits, and `:` sorts right after `9`: the prefix is an index range.
            CaseFilter::Area(prefix) => (
                "WHERE area_code >= ?1 AND area_code < ?1 || ':'",
                "ORDER BY area_code, case_id",
                vec![prefix.clone().into()],
            ),
            CaseFilter::Search(text) => (
                "WHERE title LIKE ?1 ESCAPE '\\' OR number LIKE ?1 ESCAPE '\\'",
                RECENT,
                vec![like_pattern(text).into()],
            ),
        }
    }
}

fn like_pattern(text: &str) -> String {
    let escaped: String = text
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("%{escaped}%")
}

/// Which rows of a list: `limit` rows after skipping `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub offset: u64,
    pub limit: u32,
}

impl Page {
    pub fn first(limit: u32) -> Page {
        Page { offset: 0, limit }
    }

    /// Every row: for tools and tests, not for screens.
    pub const ALL: Page = Page {
        offset: 0,
        limit: u32::MAX,
    };
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CasePage {
    pub cases: Vec<CaseSummary>,
    /// The offset of the next page, if there are more rows.
    pub next_offset: Option<u64>,
}

/// One page of the cases `filter` selects.
pub fn list(conn: &Connection, filter: &CaseFilter, page: Page) -> Result<CasePage, StoreError> {
    let (filter_sql, order, mut values) = filter.sql();
    let n = values.len();
    let sql = format!(
        "SELECT {COLUMNS} FROM cases {filter_sql} {order} LIMIT ?{} OFFSET ?{}",
        n + 1,
        n + 2
    );
    // One row more than asked tells whether another page follows.
    let fetch = i64::from(page.limit).saturating_add(1);
    values.push(fetch.into());
    values.push(i64::try_from(page.offset).unwrap_or(i64::MAX).into());
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut cases: Vec<CaseSummary> = stmt
        .query_map(params_from_iter(values), summary)?
        .collect::<Result<_, _>>()?;
    let more = cases.len() as u64 > u64::from(page.limit);
    cases.truncate(page.limit as usize);
    Ok(CasePage {
        next_offset: more.then(|| page.offset + u64::from(page.limit)),
        cases,
    })
}

/// How many cases `filter` selects.
pub fn count(conn: &Connection, filter: &CaseFilter) -> Result<u64, StoreError> {
    let (filter_sql, _, values) = filter.sql();
    let sql = format!("SELECT COUNT(*) FROM cases {filter_sql}");
    let n: i64 = conn
        .prepare_cached(&sql)?
        .query_row(params_from_iter(values), |r| r.get(0))?;
    Ok(n as u64)
}

/// The list row of one case.
pub fn get(conn: &Connection, case_id: &str) -> Result<Option<CaseSummary>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM cases WHERE case_id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([case_id], summary)
        .optional()?)
}
