//! The *decode* and *check* steps of a push: pure functions over what the device sent and what
//! the server holds. [`judge`] is the one place a document's new state is judged; it is the one
//! call into core's validation (`gridcase_core::validate`), so swapping in core's
//! `validate::judge_push` changes only its body.

use std::collections::HashSet;

use automerge::{AutoCommit, Change, ChangeHash};
use gridcase_core::doc::split_doc_id;
use gridcase_core::identity::actor_belongs_to;
use gridcase_core::model::{Author, Case, Millis};
use gridcase_core::scope::CaseScope;
use gridcase_core::sync::limits::{self, LimitError};
use gridcase_core::sync::{DocPush, RejectCode, Rejection};
use gridcase_core::validate::{PushContext, judge_push};

use super::{MAX_CHANGES_PER_PUSH, MAX_DOC_ID_LEN};
use crate::db::is_storable;
use crate::store::DeviceCtx;

pub(crate) fn rejection(code: RejectCode, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
    }
}

/// A document id must be a case id or `<case id>#pii`, printable and bounded.
pub fn check_doc_id(doc_id: &str) -> Result<(), Rejection> {
    let (case_id, _) = split_doc_id(doc_id);
    let ok = !case_id.is_empty()
        && case_id.chars().count() <= MAX_DOC_ID_LEN
        && !case_id.contains('#')
        && doc_id
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(rejection(
            RejectCode::Malformed,
            format!(
                "document id must be a case id or `<case id>#pii`, the case id 1 to \
                 {MAX_DOC_ID_LEN} characters without spaces or control characters"
            ),
        ))
    }
}

/// Decodes a push's changes, each bounded before Automerge parses it
/// (`gridcase_core::sync::limits`).
pub fn decode_push(push: &DocPush) -> Result<Vec<Change>, Rejection> {
    if push.changes.len() > MAX_CHANGES_PER_PUSH {
        return Err(rejection(
            RejectCode::TooLarge,
            format!("at most {MAX_CHANGES_PER_PUSH} changes per document and push"),
        ));
    }
    push.changes
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            limits::decode_change(bytes).map_err(|e| {
                let code = match e {
                    LimitError::TooManyOps { .. }
                    | LimitError::TooManyPreds { .. }
                    | LimitError::TooManyListed => RejectCode::TooLarge,
                    _ => RejectCode::Malformed,
                };
                rejection(code, format!("change {i}: {e}"))
            })
        })
        .collect()
}

/// The changes of `pushed` the server does not hold yet (each once).
pub fn new_changes(stored: &mut AutoCommit, pushed: &[Change]) -> Vec<Change> {
    let mut seen = HashSet::new();
    pushed
        .iter()
        .filter(|c| seen.insert(c.hash()) && stored.get_change_by_hash(&c.hash()).is_none())
        .cloned()
        .collect()
}

/// Checks that every change new to the server was made under one of the sending device's actor
/// ids. (Changes the server already holds may come back from any device: they change nothing.)
pub fn check_actors(new_changes: &[Change], device: &str) -> Result<(), Rejection> {
    match new_changes
        .iter()
        .find(|c| !actor_belongs_to(c.actor_id(), device))
    {
        Some(c) => Err(rejection(
            RejectCode::ForeignActor,
            format!(
                "change {} was made under an actor id of another device",
                c.hash()
            ),
        )),
        None => Ok(()),
    }
}

/// The heads of a set of changes: those no other change in the set depends on.
pub fn pushed_heads(changes: &[Change]) -> Vec<ChangeHash> {
    let deps: HashSet<ChangeHash> = changes
        .iter()
        .flat_map(|c| c.deps().iter().copied())
        .collect();
    let mut heads: Vec<ChangeHash> = changes
        .iter()
        .map(Change::hash)
        .filter(|h| !deps.contains(h))
        .collect();
    heads.sort();
    heads.dedup();
    heads
}

/// What the server knows beside the document when it judges a push.
#[derive(Debug, Clone, Copy)]
pub struct JudgeContext<'a> {
    /// The case's scope columns before the push (`None`: the server has not seen the case).
    pub case_before: Option<&'a CaseScope>,
    /// The device holds the document: its view at the pushed changes' dependencies counts (work
    /// done offline before the case moved away). Once told to evict, it no longer does.
    pub holds: bool,
}

/// A push the rules accept.
#[derive(Debug)]
pub struct Judged {
    /// The server's document with the new changes applied.
    pub doc: AutoCommit,
    /// The case as read afterwards (case documents only).
    pub case: Option<Case>,
    /// Reveal records new in a personal-data document: (who, device time).
    pub reveals: Vec<(Author, Millis)>,
}

/// Judges `new` (changes the server does not hold, made under `device`'s actors) against the
/// stored document (`None`: new to the server) with core's one judge,
/// `gridcase_core::validate::judge_push`; then refuses what the database could not store.
pub fn judge(
    doc_id: &str,
    stored: Option<&AutoCommit>,
    new: &[Change],
    device: &DeviceCtx,
    ctx: JudgeContext<'_>,
) -> Result<Judged, Rejection> {
    let push = PushContext {
        doc_id,
        case_scope: ctx.case_before,
        device_holds: ctx.holds,
    };
    let judged = judge_push(stored, new, &device.pusher(), &push)?;
    if let Some(case) = &judged.case {
        check_storable(case)?;
    }
    if judged
        .new_reveals
        .iter()
        .any(|(by, _)| !is_storable(&by.user) || !is_storable(&by.device))
    {
        return Err(nul_rejection());
    }
    Ok(Judged {
        doc: judged.doc,
        case: judged.case,
        reveals: judged.new_reveals,
    })
}

fn nul_rejection() -> Rejection {
    rejection(
        RejectCode::Malformed,
        "text the server stores (titles, areas, names, event ids) may not contain NUL",
    )
}

/// The case's text that the server keeps in columns (its projection, its events' trusted
/// times) holds no NUL, which PostgreSQL text cannot store: refused alike on both backends.
fn check_storable(case: &Case) -> Result<(), Rejection> {
    let texts = [
        &case.number,
        &case.title,
        &case.category,
        &case.location.area_code,
        &case.assignee,
        &case.responsible_unit,
    ];
    let events = case.timeline.iter().map(|e| &e.id);
    if texts.into_iter().chain(events).all(|t| is_storable(t)) {
        Ok(())
    } else {
        Err(nul_rejection())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_ids() {
        assert!(check_doc_id("abc").is_ok());
        assert!(check_doc_id("abc#pii").is_ok());
        assert!(check_doc_id("").is_err());
        assert!(check_doc_id("#pii").is_err());
        assert!(check_doc_id("a#b#pii").is_err());
        assert!(check_doc_id("a b").is_err());
        assert!(check_doc_id(&"x".repeat(500)).is_err());
    }

    #[test]
    fn garbage_changes_are_malformed() {
        let push = DocPush {
            doc_id: "c".into(),
            changes: vec![vec![1, 2, 3]],
        };
        assert_eq!(decode_push(&push).unwrap_err().code, RejectCode::Malformed);
    }
}
