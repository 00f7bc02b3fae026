//! The `cases` row of a case: what the lists show and filter on, computed from the document and
//! the deadline engine whenever the document changes, in the same transaction.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::queries::{self, CaseSummary};
use crate::calendar::Calendar;
use crate::deadline::{self, DeadlineInput};
use crate::doc::split_doc_id;
use crate::model::{Attachment, Case, Millis, VariantKind};
use crate::policy::PolicySet;

/// The deadline rules the projection is computed with.
#[derive(Debug, Clone)]
pub struct Rules {
    pub policy: PolicySet,
    pub calendar: Calendar,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            policy: PolicySet::default(),
            calendar: Calendar::embedded(),
        }
    }
}

/// The deadline columns of a case's row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DueColumns {
    pub stage: Option<String>,
    pub stage_started_at: Option<Millis>,
    pub due_at: Option<Millis>,
    pub paused: bool,
    pub provisional: bool,
    pub calendar_version: Option<String>,
}

/// The due instant of the case's current stage, by the times in `case`: [`upsert`] passes the
/// case as `super::times::vouched` shows it (the server's times where it vouched for them).
/// The one place the projection asks the deadline engine.
pub fn due_columns(case: &Case, rules: &Rules) -> DueColumns {
    let input = DeadlineInput::from_case(case);
    match deadline::due_at(&input, &rules.policy, &rules.calendar) {
        Some(due) => DueColumns {
            stage: Some(due.stage.as_str().to_string()),
            stage_started_at: Some(due.started_at),
            due_at: Some(due.due_at),
            paused: deadline::clock_paused(&input, &rules.policy),
            provisional: due.provisional,
            calendar_version: Some(rules.calendar.version()),
        },
        None => DueColumns::default(),
    }
}

/// Writes (or replaces) the row of `case`. `has_pending` is kept; see [`refresh_has_pending`].
pub fn upsert(
    conn: &Connection,
    case: &Case,
    rules: &Rules,
    now: Millis,
) -> Result<(), StoreError> {
    let due = due_columns(&super::times::vouched(conn, case)?, rules);
    conn.prepare_cached(
        "INSERT INTO cases (case_id, number, title, status, case_type, urgency, priority,
            area_code, assignee, responsible_unit, created_by, stage, due_at, needs_review,
            updated_at, has_pending, stage_started_at, deadline_paused, due_provisional,
            calendar_version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, 0, ?16, ?17,
            ?18, ?19)
         ON CONFLICT (case_id) DO UPDATE SET number = excluded.number, title = excluded.title,
            status = excluded.status, case_type = excluded.case_type,
            urgency = excluded.urgency, priority = excluded.priority,
            area_code = excluded.area_code, assignee = excluded.assignee,
            responsible_unit = excluded.responsible_unit, created_by = excluded.created_by,
            stage = excluded.stage, due_at = excluded.due_at,
            needs_review = excluded.needs_review, updated_at = excluded.updated_at,
            stage_started_at = excluded.stage_started_at,
            deadline_paused = excluded.deadline_paused,
            due_provisional = excluded.due_provisional,
            calendar_version = excluded.calendar_version",
    )?
    .execute(params![
        case.id,
        case.number,
        case.title,
        case.status.as_str(),
        case.case_type.as_str(),
        case.urgency.as_str(),
        case.priority,
        case.location.area_code,
        case.assignee,
        case.responsible_unit,
        case.created_by.user,
        due.stage,
        due.due_at,
        case.needs_review,
        now,
        due.stage_started_at,
        due.paused,
        due.provisional,
        due.calendar_version,
    ])?;
    super::blobs::set_refs(conn, &case.id, &case.attachment_hashes(), &thumbnails(case))?;
    refresh_has_pending(conn, &case.id)
}

/// The SHA-256s of a case's photo thumbnails (which a phone may prefetch).
fn thumbnails(case: &Case) -> Vec<String> {
    let is_thumbnail = |a: &&Attachment| {
        a.variant
            .as_ref()
            .is_some_and(|v| v.kind == VariantKind::Thumbnail)
    };
    let thumbnails = case.attachments.iter().filter(is_thumbnail);
    thumbnails.map(|a| a.sha256.to_ascii_lowercase()).collect()
}

/// Recomputes `has_pending` of a case from its two documents (the case and its `#pii`).
pub fn refresh_has_pending(conn: &Connection, doc_id: &str) -> Result<(), StoreError> {
    let (case_id, _) = split_doc_id(doc_id);
    conn.prepare_cached(
        "UPDATE cases SET has_pending = EXISTS (
            SELECT 1 FROM docs WHERE doc_id IN (?1, ?1 || '#pii') AND pending = 1)
         WHERE case_id = ?1",
    )?
    .execute([case_id])?;
    Ok(())
}

pub fn delete(conn: &Connection, case_id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM cases WHERE case_id = ?1", [case_id])?;
    super::blobs::set_refs(conn, case_id, &[], &[])?;
    Ok(())
}

/// When the row of `case_id` last changed, if it has a row.
pub fn updated_at(conn: &Connection, case_id: &str) -> Result<Option<Millis>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT updated_at FROM cases WHERE case_id = ?1")?
        .query_row([case_id], |r| r.get(0))
        .optional()?)
}

/// Writes the row of `case` like [`upsert`], but keeps its `updated_at` when nothing the row
/// shows changed (a sync that only acknowledged, or brought a change lists do not show), so
/// "recently changed" lists do not reshuffle on every sync.
pub fn refresh(
    conn: &Connection,
    case: &Case,
    rules: &Rules,
    now: Millis,
) -> Result<(), StoreError> {
    // A new row (all of a restore) has no earlier state to keep.
    let Some(before) = queries::get(conn, &case.id)? else {
        return upsert(conn, case, rules, now);
    };
    upsert(conn, case, rules, now)?;
    if let Some(after) = queries::get(conn, &case.id)? {
        let unchanged = CaseSummary {
            updated_at: before.updated_at,
            ..after
        } == before;
        if unchanged {
            conn.prepare_cached("UPDATE cases SET updated_at = ?2 WHERE case_id = ?1")?
                .execute(params![case.id, before.updated_at])?;
        }
    }
    Ok(())
}
