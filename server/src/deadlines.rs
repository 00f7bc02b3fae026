//! The server's deadline checks: due-soon (预警) and overdue (超期) lists from the projection's
//! indexed `due_at`, and a supervision (督办) for every overdue stage, recorded once.

use automerge::Change;
use gridcase_core::doc::CaseDoc;
use gridcase_core::lifecycle::Action;
use gridcase_core::model::{Author, Millis, Role};
use serde::Serialize;

use crate::db::{Commit, NewSupervision};
use crate::documents::{Loaded, NewState, Writer, load, plan_commit};
use crate::store::{CaseSummary, Result, Store, StoreError};

/// The reason recorded with an automatic supervision.
pub const OVERDUE_REASON: &str = "超期";

/// What one run of the check found and did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    pub at: Millis,
    pub due_soon: Vec<CaseSummary>,
    pub overdue: Vec<CaseSummary>,
    /// Cases supervised by this run (a stage is supervised once, however often the check runs).
    pub supervised: Vec<String>,
}

/// The author of the server's own timeline events.
pub fn system_author() -> Author {
    Author {
        user: "server".into(),
        device: "server".into(),
        role: Role::System,
    }
}

/// Lists due-soon and overdue cases at `now` and supervises each overdue stage not yet
/// supervised: a `supervisions` row (unique per case, stage and stage start) and a
/// `Supervise { level: 1, reason: "超期" }` event in the case document, as the server's own
/// change in the feed so that phones receive it.
pub fn run_deadline_check(store: &Store, now: Millis) -> Result<CheckReport> {
    let overdue = store.overdue(now, u32::MAX)?;
    let due_soon = store.due_soon(now, u32::MAX)?;
    let supervised = supervise_overdue_stages(store, now)?;
    Ok(CheckReport {
        at: now,
        due_soon,
        overdue,
        supervised,
    })
}

/// How often a supervision is tried again after losing a race to a commit of the same case.
const MAX_ATTEMPTS: usize = 8;

impl Store {
    /// Records the supervision of one overdue stage, unless already recorded. Returns whether it
    /// was new. The row and the document change commit together; if the case changed meanwhile
    /// the change is made again on the new version.
    pub fn supervise_overdue(
        &self,
        case_id: &str,
        stage: &str,
        stage_started_at: Millis,
        now: Millis,
    ) -> Result<bool> {
        let supervision = NewSupervision {
            case_id: case_id.to_owned(),
            stage: stage.to_owned(),
            stage_started_at,
            level: 1,
            reason: OVERDUE_REASON.to_owned(),
            created_at: now,
        };
        let _local = self.locks.lock(case_id);
        let _turn = self.db().case_turn(case_id)?;
        let event = SupervisionEvent {
            action: Action::Supervise {
                level: supervision.level,
                reason: supervision.reason.clone(),
            },
            author: system_author(),
            writer: "system",
            row: Some(supervision.clone()),
        };
        for _ in 0..MAX_ATTEMPTS {
            let mut view = self.db().read()?;
            let stored = view.doc(case_id)?;
            let trusted = view.trusted_times(case_id)?;
            drop(view);
            let Some(stored) = stored else {
                return Ok(self.db().insert_supervision(&supervision)?);
            };
            let base = load(case_id, stored)?;
            match self.supervision_commit(case_id, &base, &trusted, &event, now)? {
                Some(Commit::Committed { .. }) => return Ok(true),
                Some(Commit::Duplicate) => return Ok(false),
                Some(Commit::Conflict) => continue,
                // Recorded in the table all the same, so the check does not retry forever.
                None => return Ok(self.db().insert_supervision(&supervision)?),
            }
        }
        Err(StoreError::Busy(case_id.to_owned()))
    }

    /// Adds a `Supervise` event to the case and commits it, with the supervision row when
    /// given; `None` when the event cannot be added.
    pub(crate) fn supervision_commit(
        &self,
        case_id: &str,
        base: &Loaded,
        trusted: &std::collections::HashMap<String, Millis>,
        event: &SupervisionEvent<'_>,
        now: Millis,
    ) -> Result<Option<Commit>> {
        let mut raw = base.doc.clone();
        let before = raw.get_heads();
        let mut doc = CaseDoc::from_automerge(raw.with_actor(self.actor()))?;
        if let Err(e) = doc.act(&event.action, &event.author, now) {
            tracing::warn!(case_id, error = %e, "could not add the supervision to the case");
            return Ok(None);
        }
        let case = doc.read()?;
        let mut doc = doc.into_automerge();
        let new: Vec<Change> = doc.get_changes(&before);
        let mut write = plan_commit(
            self,
            NewState {
                doc_id: case_id,
                base,
                doc: &mut doc,
                new_changes: &new,
                case: Some(&case),
                trusted,
                writer: Writer {
                    device: None,
                    user: event.writer,
                    clock: gridcase_core::sync::DeviceClock::default(),
                },
                holder: None,
                now,
            },
        );
        write.supervision = event.row.clone();
        Ok(Some(self.db().commit_doc(&write)?))
    }
}

/// A supervision to commit: the `Supervise` action, its author in the timeline, the writer the
/// audit log names, and the supervisions row (one per stage) when there is none yet.
pub(crate) struct SupervisionEvent<'a> {
    pub action: Action,
    pub author: Author,
    pub writer: &'a str,
    pub row: Option<NewSupervision>,
}

/// Supervises every overdue stage not yet supervised, found by the index-only overdue scan.
/// Returns the cases newly supervised. This is what the periodic check does; the lists are
/// for people.
pub fn supervise_overdue_stages(store: &Store, now: Millis) -> Result<Vec<String>> {
    let overdue = store.unsupervised_overdue_stages(now)?;
    let mut supervised = Vec::new();
    for o in &overdue {
        if store.supervise_overdue(&o.case_id, &o.stage, o.stage_started_at, now)? {
            supervised.push(o.case_id.clone());
        }
    }
    Ok(supervised)
}
