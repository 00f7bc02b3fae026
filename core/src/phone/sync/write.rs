//! The shell's half of applying a page: loading what [`super::apply::plan_page`] needs and
//! writing the plan it returns, inside one write transaction.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use automerge::{ActorId, AutoCommit};
use rusqlite::Connection;

use super::apply::{DocPlan, DocWrite, Held, PagePlan, RowPlan};
use super::parallel;
use crate::doc::CaseDoc;
use crate::model::{Case, CaseId, Millis};
use crate::phone::PhoneError;
use crate::rules::{self, RulesUpdate};
use crate::store::blobs;
use crate::store::docs::{self, Loaded};
use crate::store::meta::{self, PageRecord};
use crate::store::projection::{self, Rules};
use crate::store::times;
use crate::sync::DocId;
use crate::sync::times::block::PendingTimes;

/// The server's deadline rules from this page, stored and parsed, when they are newer than the
/// phone's. Rules that do not parse (a server bug) are ignored: the phone keeps counting down
/// by the rules it has rather than stop syncing.
pub fn take_newer_rules(
    conn: &Connection,
    offered: Option<RulesUpdate>,
) -> Result<Option<(u64, Arc<Rules>)>, PhoneError> {
    let Some(offered) = offered else {
        return Ok(None);
    };
    if !rules::should_replace(meta::sync_position(conn)?.rules_version, &offered) {
        return Ok(None);
    }
    let Ok(parsed) = offered.text.parse() else {
        return Ok(None);
    };
    meta::set_server_rules(conn, &offered)?;
    Ok(Some((offered.version, Arc::new(parsed))))
}

/// Loads the documents `whole` names and the bookkeeping of those `state_only` names.
pub fn load_held(
    conn: &Connection,
    whole: impl IntoIterator<Item = DocId>,
    state_only: impl IntoIterator<Item = DocId>,
    actor: &ActorId,
) -> Result<BTreeMap<DocId, Held>, PhoneError> {
    let mut held = BTreeMap::new();
    for doc_id in whole {
        if let Some(Loaded {
            doc,
            persisted,
            state,
        }) = docs::load_doc(conn, &doc_id, actor)?
        {
            let entry = Held {
                doc: Some(doc),
                persisted,
                server_heads: state.server_heads,
                pending: state.pending,
            };
            held.insert(doc_id, entry);
        }
    }
    for doc_id in state_only {
        if let Some(state) = docs::doc_state(conn, &doc_id)? {
            let entry = Held {
                doc: None,
                persisted: Vec::new(),
                server_heads: state.server_heads,
                pending: state.pending,
            };
            held.insert(doc_id, entry);
        }
    }
    Ok(held)
}

/// Stores the protocol-5 trusted times of `case`, if the page carried some, placed against the
/// times the case states; before its row is computed, so the row shows them.
fn store_pending_times(
    conn: &Connection,
    pending: &BTreeMap<DocId, PendingTimes>,
    case: &Case,
) -> Result<(), PhoneError> {
    if let Some(times) = pending.get(&case.id) {
        times::store(conn, &[times.resolve(case)])?;
    }
    Ok(())
}

/// Writes the plan: documents, the identity, the sync position and clock offset, the trusted
/// times, then the list rows (computed with those times and that offset). Fills in which cases
/// could not be read.
pub fn write_plan(
    conn: &Connection,
    mut plan: PagePlan,
    rules: &Rules,
    actor: &ActorId,
    now: Millis,
) -> Result<super::SyncOutcome, PhoneError> {
    for (doc_id, doc_plan) in plan.docs.iter_mut() {
        write_doc(conn, doc_id, doc_plan, now)?;
    }
    if let Some(identity) = &plan.identity {
        meta::set_identity(conn, identity)?;
    }
    meta::record_page(
        conn,
        &PageRecord {
            position: &plan.position,
            synced_at: now,
            clock_offset: plan.clock_offset,
        },
    )?;
    times::store(conn, &plan.times)?;
    let mut read = read_cases(&mut plan);
    for row in &plan.rows {
        match row {
            RowPlan::Delete(case_id) => {
                projection::delete(conn, case_id)?;
                times::delete(conn, case_id)?;
            }
            RowPlan::PendingMark(doc_id) => projection::refresh_has_pending(conn, doc_id)?,
            RowPlan::Refresh(case_id) => {
                let case = match read.remove(case_id) {
                    Some(case) => case,
                    None => match docs::load_doc(conn, case_id, actor)? {
                        Some(loaded) => read_case(loaded.doc),
                        None => continue,
                    },
                };
                match case {
                    Some(case) => {
                        store_pending_times(conn, &plan.pending_times, &case)?;
                        projection::refresh(conn, &case, rules, now)?
                    }
                    None => plan.outcome.unreadable.push(case_id.clone()),
                }
            }
        }
    }
    if plan.rows.iter().any(|r| matches!(r, RowPlan::Delete(_))) {
        // Evicted cases take their attachments' bytes along, unless a held case shares them.
        blobs::drop_unreferenced(conn)?;
    }
    Ok(plan.outcome)
}

fn write_doc(
    conn: &Connection,
    doc_id: &str,
    plan: &mut DocPlan,
    now: Millis,
) -> Result<(), PhoneError> {
    match &plan.write {
        DocWrite::Keep => {}
        DocWrite::Delete => docs::delete_doc(conn, doc_id)?,
        DocWrite::Snapshot { bytes, heads } => {
            docs::insert_snapshot(conn, doc_id, bytes, heads, now)?;
        }
        DocWrite::Changes {
            persisted,
            server_heads,
        } => {
            let doc = plan.doc.get_or_insert_with(AutoCommit::new);
            docs::persist(conn, doc_id, doc, persisted.as_deref(), server_heads, now)?;
        }
    }
    match &plan.rejection {
        Some(Some((code, message))) => docs::set_rejected(conn, doc_id, Some((code, message)))?,
        Some(None) => docs::set_rejected(conn, doc_id, None)?,
        None => {}
    }
    match plan.refetch {
        Some(true) => docs::mark_refetch(conn, doc_id)?,
        Some(false) => docs::clear_refetch(conn, doc_id)?,
        None => {}
    }
    Ok(())
}

/// The cases of the rows to refresh whose documents the page holds, read in parallel (each
/// is independent of the others; the rows are then written in order on this thread).
fn read_cases(plan: &mut PagePlan) -> HashMap<CaseId, Option<Case>> {
    let docs: Vec<(CaseId, AutoCommit)> = plan
        .rows
        .iter()
        .filter_map(|row| match row {
            RowPlan::Refresh(case_id) => {
                let doc = plan.docs.get_mut(case_id)?.doc.take()?;
                Some((case_id.clone(), doc))
            }
            _ => None,
        })
        .collect();
    parallel::map(docs, |(case_id, doc)| (case_id, read_case(doc)))
        .into_iter()
        .collect()
}

/// The case a document holds; `None` when this version cannot read it (a migration on read is
/// not stored here: it is deterministic and repeats).
fn read_case(doc: AutoCommit) -> Option<Case> {
    CaseDoc::from_automerge(doc).and_then(|d| d.read()).ok()
}
