//! The *decode* and *check* steps of a push: pure functions over what the device sent and what
//! the server holds. [`judge`] is the one place a document's new state is judged; it is the one
//! call into core's validation (`gridcase_core::validate`), so swapping in core's
//! `validate::judge_push` changes only its body.

use std::collections::HashSet;

use automerge::{AutoCommit, Change, ChangeHash};
use gridcase_core::doc::{CaseDoc, PersonalDoc, split_doc_id};
use gridcase_core::identity::actor_belongs_to;
use gridcase_core::model::{Author, Case, Millis};
use gridcase_core::sync::{DocPush, RejectCode, Rejection};
use gridcase_core::validate::{Pusher, validate_case_change_seen};

use super::{MAX_CHANGES_PER_PUSH, MAX_DOC_ID_LEN};
use crate::db::is_storable;
use crate::scope::{CaseScope, Scope};
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

/// Decodes a push's changes.
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
            Change::from_bytes(bytes.clone()).map_err(|e| {
                rejection(
                    RejectCode::Malformed,
                    format!("change {i} is not an Automerge change: {e}"),
                )
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

/// The pusher as `gridcase_core::validate` sees it.
pub fn pusher(device: &DeviceCtx) -> Pusher {
    Pusher {
        user: device.user_id.clone(),
        device: device.device_id.clone(),
        role: device.role,
        jurisdiction: device.jurisdiction.clone(),
    }
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

/// Judges `new` (changes the server does not hold, made by `device`) against the stored document
/// (`None`: new to the server): the changes apply and lack nothing; a case document passes
/// `gridcase_core::validate` (as the case was before, as the pusher last saw it, and after); a
/// personal-data document is written only by a role that may see personal data, for a case in
/// the pusher's scope.
pub fn judge(
    doc_id: &str,
    stored: Option<&AutoCommit>,
    new: &[Change],
    device: &DeviceCtx,
    ctx: JudgeContext<'_>,
) -> Result<Judged, Rejection> {
    let mut doc = stored.cloned().unwrap_or_else(AutoCommit::new);
    doc.apply_changes(new.iter().cloned()).map_err(|e| {
        rejection(
            RejectCode::Malformed,
            format!("the changes do not apply: {e}"),
        )
    })?;
    if !doc.get_missing_deps(&[]).is_empty() {
        // Either the phone skipped something or the server lost history it had acknowledged
        // (restored from a backup): the phone answers by resending the whole history.
        return Err(rejection(
            RejectCode::MissingHistory,
            "the changes depend on changes the server does not have; send those first",
        ));
    }
    let (case_id, is_pii) = split_doc_id(doc_id);
    if is_pii {
        let reveals = judge_personal(doc_id, stored, &doc, device, ctx)?;
        return Ok(Judged {
            doc,
            case: None,
            reveals,
        });
    }
    let before = stored.map(read_case).transpose().map_err(|e| {
        tracing::error!(doc_id, error = %e, "the stored case does not read");
        rejection(
            RejectCode::Malformed,
            "the server's copy of this case does not read",
        )
    })?;
    let after = read_case(&doc).map_err(|e| {
        rejection(
            RejectCode::Malformed,
            format!("the case does not read: {e}"),
        )
    })?;
    if after.id != case_id {
        return Err(rejection(
            RejectCode::Malformed,
            format!("document {doc_id} holds case {}", after.id),
        ));
    }
    check_storable(&after)?;
    let seen = match stored {
        Some(stored) if ctx.holds => seen_case(stored, new),
        _ => None,
    };
    validate_case_change_seen(before.as_ref(), seen.as_ref(), &after, &pusher(device))?;
    Ok(Judged {
        doc,
        case: Some(after),
        reveals: Vec::new(),
    })
}

fn read_case(doc: &AutoCommit) -> Result<Case, gridcase_core::doc::DocError> {
    CaseDoc::from_automerge(doc.clone())?.read()
}

/// The personal-data rule; returns the reveal records the push adds.
fn judge_personal(
    doc_id: &str,
    stored: Option<&AutoCommit>,
    after: &AutoCommit,
    device: &DeviceCtx,
    ctx: JudgeContext<'_>,
) -> Result<Vec<(Author, Millis)>, Rejection> {
    if !device.role.may_see_personal_data() {
        return Err(rejection(
            RejectCode::PersonalData,
            format!("a {} may not write personal data", device.role),
        ));
    }
    if let Some(case) = ctx.case_before
        && !Scope::of(device).covers_doc(doc_id, case)
    {
        return Err(rejection(
            RejectCode::OutOfJurisdiction,
            "the case is outside your jurisdiction",
        ));
    }
    let before = stored
        .map(|d| PersonalDoc::from_automerge(d.clone()).reveals())
        .unwrap_or_default();
    let reveals: Vec<(Author, Millis)> = PersonalDoc::from_automerge(after.clone())
        .reveals()
        .into_iter()
        .filter(|r| !before.contains(r))
        .collect();
    if reveals
        .iter()
        .any(|(by, _)| !is_storable(&by.user) || !is_storable(&by.device))
    {
        return Err(nul_rejection());
    }
    Ok(reveals)
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

/// The case as the author of `new` last saw it: the server's copy at the changes they depend on
/// (outside `new` itself).
fn seen_case(stored: &AutoCommit, new: &[Change]) -> Option<Case> {
    let new_hashes: HashSet<ChangeHash> = new.iter().map(Change::hash).collect();
    let mut deps: Vec<ChangeHash> = new
        .iter()
        .flat_map(|c| c.deps().iter().copied())
        .filter(|h| !new_hashes.contains(h))
        .collect();
    deps.sort();
    deps.dedup();
    if deps.is_empty() {
        return None;
    }
    let forked = stored.clone().fork_at(&deps).ok()?;
    CaseDoc::from_automerge(forked).and_then(|d| d.read()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridcase_core::area::Jurisdiction;
    use gridcase_core::model::Role;

    fn device(role: Role, prefix: &str) -> DeviceCtx {
        DeviceCtx {
            device_id: "0123456789abcdef0123456789abcdef".into(),
            user_id: "u1".into(),
            role,
            jurisdiction: Jurisdiction::parse(prefix).unwrap(),
        }
    }

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

    #[test]
    fn personal_data_needs_the_role_and_the_scope() {
        let no_changes = JudgeContext {
            case_before: None,
            holds: false,
        };
        let unit = device(Role::HandlingUnit, "330604");
        let err = judge("c#pii", None, &[], &unit, no_changes).unwrap_err();
        assert_eq!(err.code, RejectCode::PersonalData);
        let worker = device(Role::GridWorker, "330604101");
        assert!(judge("c#pii", None, &[], &worker, no_changes).is_ok());
        let elsewhere = CaseScope::new("330604102001", "");
        let ctx = JudgeContext {
            case_before: Some(&elsewhere),
            holds: false,
        };
        assert_eq!(
            judge("c#pii", None, &[], &worker, ctx).unwrap_err().code,
            RejectCode::OutOfJurisdiction
        );
    }
}
