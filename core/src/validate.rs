//! What the server checks before it stores a push. A CRDT merges whatever it is given; a
//! government case system may not: the timeline, notes, attachments and reveal records are the
//! record that supervision and audits are computed from, so nobody may rewrite them.
//!
//! [`judge_push`] is the one judge of a push. Pure: the server supplies its stored copy, the new
//! changes and who pushed them, and commits what comes back. It works in steps:
//! 1. merge: apply the changes to a copy of the stored document ([`RejectCode::MissingHistory`]
//!    when they build on changes the copy lacks);
//! 2. per change, in `ops`: every operation against the layout ([`crate::doc::schema`]): lists
//!    only grow at their end as the author saw them, a new entry is written only by the change
//!    that made it, root fields are known keys of the right kind, the description takes only
//!    text splices; anything else is refused;
//! 3. per change, in `rights`: who may have written it: the commit message and every new entry
//!    name the pusher, each field is one the role may edit or an effect of the action recorded
//!    in the same change ([`crate::lifecycle::Action::effects`]), and the action itself was
//!    allowed for the role from the state the author saw; the change that creates a document
//!    and a schema upgrade are checked whole, in `creation`;
//! 4. on the readings of the case before, as the author last saw it, and after (`rules`):
//!    closed cases change only by an explicit reopen, jurisdiction on create and move, scope.
//!
//! What stays possible, by design: a device may always claim it worked offline from an older
//! state of the case (its changes' dependencies). What it appends is then ordered by the merge
//! like any concurrent entry, and the replay marks the actions that no longer follow as
//! conflicted and flags the case for review, as for an honest phone that was offline. It can
//! neither change nor remove what is recorded, nor write in anyone else's name.

mod creation;
mod ops;
mod rights;
mod rules;
mod scope;

use automerge::{AutoCommit, Change, ChangeHash};

use crate::area::Jurisdiction;
use crate::doc::schema::{CASE, Layout, PERSONAL};
use crate::doc::{change_author, migration_author, split_doc_id};
use crate::model::{Author, Case, Millis, Role};
use crate::scope::{CaseScope, Scope};
use crate::sync::{RejectCode, Rejection};

/// The authenticated author of a push, as the server enrolled them.
#[derive(Debug, Clone)]
pub struct Pusher {
    pub user: String,
    pub device: String,
    pub role: Role,
    pub jurisdiction: Jurisdiction,
}

impl Pusher {
    fn is(&self, author: &Author) -> bool {
        author.user == self.user && author.device == self.device && author.role == self.role
    }

    /// The pusher's scope ([`crate::scope`], the one rule).
    pub fn scope(&self) -> Scope {
        Scope::new(&self.jurisdiction, &self.user, self.role)
    }

    fn covers(&self, case: &Case) -> bool {
        self.scope().covers(&CaseScope::of(case), false)
    }
}

/// What the server knows about the pushed document besides its bytes.
#[derive(Debug, Clone, Copy)]
pub struct PushContext<'a> {
    /// A case id, or `<case id>#pii` for its personal data (which [`split_doc_id`] tells apart).
    pub doc_id: &'a str,
    /// For a `#pii` document: the case's projected scope columns, if the server knows the case.
    /// The personal data is in scope exactly when the case is.
    pub case_scope: Option<&'a CaseScope>,
    /// The device still holds the document (it was never told to evict it). Only then may its
    /// offline work on a case that has since left its scope be accepted.
    pub device_holds: bool,
}

/// An accepted push, ready to commit.
#[derive(Debug)]
pub struct Judged {
    /// The stored document with the new changes applied.
    pub doc: AutoCommit,
    /// The changes the stored document lacked, in the order pushed: the ones to store.
    pub new_changes: Vec<Change>,
    /// The case as it reads after the push (case documents only).
    pub case: Option<Case>,
    /// Reveal records the push added (personal-data documents only), oldest first.
    pub new_reveals: Vec<(Author, Millis)>,
}

fn reject(code: RejectCode, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
    }
}

/// Judges a push of `new` (already decoded, made under the pusher's actor ids) onto `stored`
/// (`None` for a document the server has never seen). Changes `stored` already holds are
/// skipped. Returns what to commit, or why nothing may be.
///
/// Judging reads the merged document through Automerge, which panics on some documents an
/// untrusted change can make (0.12: `parents` of a list element deleted by the change, see the
/// test `automerge_panics_on_parents_of_a_deleted_list_element`). The panic is caught here, once
/// for every read, and refuses the push; `stored` is only read, so it stays as it was.
pub fn judge_push(
    stored: Option<&AutoCommit>,
    new: &[Change],
    pusher: &Pusher,
    ctx: &PushContext<'_>,
) -> Result<Judged, Rejection> {
    let judged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        judge_unguarded(stored, new, pusher, ctx)
    }));
    judged.unwrap_or_else(|_| {
        Err(reject(
            RejectCode::Malformed,
            "the changes could not be read back: the push is refused",
        ))
    })
}

fn judge_unguarded(
    stored: Option<&AutoCommit>,
    new: &[Change],
    pusher: &Pusher,
    ctx: &PushContext<'_>,
) -> Result<Judged, Rejection> {
    let (case_id, is_personal) = split_doc_id(ctx.doc_id);
    if is_personal {
        scope::check_personal_access(pusher, ctx)?;
    }
    let Merged {
        doc,
        new,
        stored_heads,
    } = merge(stored, new)?;
    let layout: &'static Layout = if is_personal { &PERSONAL } else { &CASE };
    let new_document = stored_heads.is_none();
    let judged = judge_changes(&doc, layout, new_document, &new, pusher, case_id)?;
    if is_personal {
        return Ok(Judged {
            doc,
            new_changes: new,
            case: None,
            new_reveals: judged.reveals,
        });
    }
    let readings = rules::Readings::of(&doc, stored_heads.as_deref(), &new, ctx)?;
    rules::check_case(&readings, &judged.events, pusher)?;
    Ok(Judged {
        doc,
        new_changes: new,
        case: Some(readings.after),
        new_reveals: Vec::new(),
    })
}

/// The stored document with the push applied.
struct Merged {
    doc: AutoCommit,
    /// The pushed changes the stored document lacked, each once, in the order pushed.
    new: Vec<Change>,
    /// The stored document's heads; `None` for a new document.
    stored_heads: Option<Vec<ChangeHash>>,
}

fn merge(stored: Option<&AutoCommit>, pushed: &[Change]) -> Result<Merged, Rejection> {
    let mut doc = stored.cloned().unwrap_or_default();
    let stored_heads = stored.map(|_| doc.get_heads());
    let mut seen = std::collections::HashSet::new();
    let new: Vec<Change> = pushed
        .iter()
        .filter(|c| seen.insert(c.hash()) && doc.get_change_by_hash(&c.hash()).is_none())
        .cloned()
        .collect();
    if stored.is_none() && new.is_empty() {
        return Err(reject(
            RejectCode::Malformed,
            "a new document needs changes",
        ));
    }
    crate::sync::limits::apply_untrusted(&mut doc, new.clone())
        .map_err(|e| reject(RejectCode::Malformed, e.to_string()))?;
    if !doc.get_missing_deps(&[]).is_empty() {
        // Either the phone skipped something or the server lost history it had acknowledged
        // (restored from a backup): the phone answers by resending the document's whole history.
        return Err(reject(
            RejectCode::MissingHistory,
            "the changes depend on changes the server does not have; send those first",
        ));
    }
    Ok(Merged {
        doc,
        new,
        stored_heads,
    })
}

/// What the new changes recorded, once each passed.
#[derive(Default)]
struct ChangesJudged {
    events: Vec<rights::NewEvent>,
    reveals: Vec<(Author, Millis)>,
}

fn judge_changes(
    doc: &AutoCommit,
    layout: &'static Layout,
    new_document: bool,
    new: &[Change],
    pusher: &Pusher,
    case_id: &str,
) -> Result<ChangesJudged, Rejection> {
    let roots = new.iter().filter(|c| c.deps().is_empty()).count();
    if new_document && roots != 1 {
        return Err(reject(
            RejectCode::OutsideSchema,
            format!("a {} is created by exactly one change", layout.name),
        ));
    }
    let containers = ops::Containers::of(doc, layout);
    let mut judged = ChangesJudged::default();
    for change in new {
        let author = change_author(change);
        if !new_document && std::ptr::eq(layout, &CASE) && author == Some(migration_author()) {
            creation::check_migration(doc, change)?;
            continue;
        }
        if !author.as_ref().is_some_and(|a| pusher.is(a)) {
            return Err(reject(
                RejectCode::ForeignActor,
                format!(
                    "change {} is not signed in your name",
                    short(&change.hash())
                ),
            ));
        }
        let creating = new_document && change.deps().is_empty();
        let written = ops::walk(doc, layout, &containers, change, creating)?;
        let event = rights::check(doc, layout, pusher, change, &written, creating)?;
        if creating {
            creation::check_created(layout, change, &written, pusher, case_id)?;
        }
        if let Some(event) = &event {
            rules::check_action(doc, change, event, pusher)?;
        }
        judged.reveals.extend(rights::reveals(&written));
        judged.events.extend(event);
    }
    Ok(judged)
}

/// A change hash cut short for messages.
fn short(hash: &ChangeHash) -> String {
    hash.to_string().chars().take(12).collect()
}

#[cfg(test)]
mod attacks;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
