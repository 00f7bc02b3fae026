//! The server's deadline checks: due-soon (预警) and overdue (超期) lists from the projection's
//! indexed `due_at`, and a supervision (督办) for every overdue stage, recorded once.

use std::sync::Arc;
use std::time::Duration;

use automerge::Change;
use gridcase_core::doc::CaseDoc;
use gridcase_core::lifecycle::Action;
use gridcase_core::model::{Author, Millis, Role};
use rusqlite::{TransactionBehavior, params};
use serde::Serialize;

use crate::store::{
    CaseSummary, Commit, Result, Store, commit_doc, due_soon_in, load_doc, overdue_in,
};

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
    let (overdue, due_soon) = {
        let conn = store.conn();
        (
            overdue_in(&conn, now, u32::MAX)?,
            due_soon_in(&conn, now, store.policy().due_soon_fraction, u32::MAX)?,
        )
    };
    let supervised = supervise_overdue_stages(store, now)?;
    Ok(CheckReport {
        at: now,
        due_soon,
        overdue,
        supervised,
    })
}

impl Store {
    /// Records the supervision of one overdue stage, unless already recorded. Returns whether it
    /// was new. The row and the document change commit together.
    pub fn supervise_overdue(
        &self,
        case_id: &str,
        stage: &str,
        stage_started_at: Millis,
        now: Millis,
    ) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO supervisions
                 (case_id, stage, stage_started_at, level, reason, created_at)
             VALUES (?1, ?2, ?3, 1, ?4, ?5)",
            params![case_id, stage, stage_started_at, OVERDUE_REASON, now],
        )?;
        if inserted == 0 {
            return Ok(false);
        }
        let Some(mut raw) = load_doc(&tx, case_id)? else {
            tx.commit()?;
            return Ok(true);
        };
        let before = raw.get_heads();
        let mut doc = CaseDoc::from_automerge(raw.with_actor(self.actor()))?;
        let action = Action::Supervise {
            level: 1,
            reason: OVERDUE_REASON.into(),
        };
        if let Err(e) = doc.act(&action, &system_author(), now) {
            // Recorded in the table all the same, so the check does not retry forever.
            tracing::warn!(case_id, error = %e, "could not add the supervision to the case");
            tx.commit()?;
            return Ok(true);
        }
        let mut doc = doc.into_automerge();
        let new: Vec<Change> = doc.get_changes(&before);
        commit_doc(
            &tx,
            Commit {
                doc_id: case_id,
                doc: &mut doc,
                new_changes: &new,
                device: None,
                user: Some("system"),
                offset: 0,
                now,
            },
            self.policy(),
            self.calendar(),
        )?;
        tx.commit()?;
        Ok(true)
    }
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

/// Runs [`supervise_overdue_stages`] every `every`, with `clock` giving the time.
pub fn spawn_deadline_checker(
    store: Arc<Store>,
    every: Duration,
    clock: crate::http::Clock,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let store = store.clone();
            let now = clock();
            match tokio::task::spawn_blocking(move || supervise_overdue_stages(&store, now)).await {
                Ok(Ok(supervised)) => {
                    tracing::info!(supervised = supervised.len(), "deadline check")
                }
                Ok(Err(e)) => tracing::error!(error = %e, "deadline check failed"),
                Err(e) => tracing::error!(error = %e, "deadline check panicked"),
            }
        }
    })
}
