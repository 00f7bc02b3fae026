//! The server's row per case: the fields lists and deadline scans need, computed from the case
//! document with server-trusted times. Pure: the store writes what [`project`] returns.

use std::collections::HashMap;

use gridcase_core::calendar::Calendar;
use gridcase_core::deadline::{DeadlineInput, clock_paused, due_at};
use gridcase_core::model::{Case, Millis};
use gridcase_core::policy::{PolicySet, Stage};
use gridcase_core::sync::times::with_trusted_times;
use serde::Serialize;

/// The key under which the trusted creation time of a case is kept beside its events' times.
pub use gridcase_core::sync::CREATED_KEY;

/// One row of the `cases` table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Projection {
    pub case_id: String,
    pub number: String,
    pub title: String,
    pub category: String,
    pub status: String,
    pub case_type: String,
    pub urgency: String,
    pub priority: bool,
    pub area_code: String,
    /// The area as the scope rule reads it: the code if valid, else `None` (`crate::scope`).
    pub scope_area: Option<String>,
    pub assignee: String,
    pub responsible_unit: String,
    /// The stage whose clock runs, if any.
    pub stage: Option<String>,
    /// Server-trusted start of that stage.
    pub stage_started_at: Option<Millis>,
    pub due_at: Option<Millis>,
    pub due_provisional: bool,
    pub calendar_version: String,
    /// The clock stands still for a pending extension (policy `pause_during_extension`).
    pub paused: bool,
    pub needs_review: bool,
    /// What the assessment rates count (table `case_facts`, `crate::rates`).
    pub facts: crate::rates::CaseFacts,
    /// The SHA-256 of every attachment the case references, each with whether it is personal
    /// (table `case_blobs`, which decides who may download the bytes, `crate::blobs`: a personal
    /// one only roles that may see personal data, never the unit complained about).
    pub attachments: Vec<(String, bool)>,
}

/// Computes the projection row of `case`. Deadlines come from the deadline engine over the
/// trusted times, never from a phone's clock directly.
pub fn project(
    case: &Case,
    trusted: &HashMap<String, Millis>,
    policy: &PolicySet,
    calendar: &Calendar,
) -> Projection {
    let corrected = with_trusted_times(case, trusted, 0);
    let input = DeadlineInput::from_case(&corrected);
    let stage = Stage::for_status(case.status);
    let due = due_at(&input, policy, calendar);
    Projection {
        case_id: case.id.clone(),
        number: case.number.clone(),
        title: case.title.clone(),
        category: case.category.clone(),
        status: case.status.as_str().to_owned(),
        case_type: case.case_type.as_str().to_owned(),
        urgency: case.urgency.as_str().to_owned(),
        priority: case.priority,
        area_code: case.location.area_code.clone(),
        scope_area: gridcase_core::scope::scope_area(&case.location.area_code),
        assignee: case.assignee.clone(),
        responsible_unit: case.responsible_unit.clone(),
        stage: stage.map(|s| s.as_str().to_owned()),
        stage_started_at: stage.map(|_| input.stage_started_at),
        due_at: due.as_ref().map(|d| d.due_at),
        due_provisional: due.as_ref().is_some_and(|d| d.provisional),
        calendar_version: calendar.version(),
        paused: clock_paused(&input, policy),
        needs_review: case.needs_review,
        facts: crate::rates::CaseFacts::of(case, trusted, policy, calendar),
        attachments: attachment_refs(case),
    }
}

/// The distinct (SHA-256, personal) references of a case's attachments, lowercase.
pub fn attachment_refs(case: &Case) -> Vec<(String, bool)> {
    let mut refs: Vec<(String, bool)> = case
        .attachments
        .iter()
        .map(|a| (a.sha256.to_ascii_lowercase(), a.personal))
        .collect();
    refs.sort();
    refs.dedup();
    refs
}
