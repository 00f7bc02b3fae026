//! The workflow rules, judged on readings of the case: an action allowed for the role from the
//! state its author saw, closed cases changed only by an explicit reopen, jurisdiction on create
//! and move, and scope (now, or as the author last saw the case while their device held it).

use automerge::{AutoCommit, Change, ChangeHash};

use super::rights::NewEvent;
use super::scope::push_base;
use super::{PushContext, Pusher, reject};
use crate::area::AreaCode;
use crate::doc::{read_case, read_state, split_doc_id};
use crate::lifecycle::Action;
use crate::model::{Case, Status};
use crate::sync::{RejectCode, Rejection};

/// The case before the push, as the pusher last saw it, and after.
#[derive(Debug)]
pub(crate) struct Readings {
    pub before: Option<Case>,
    /// At the push's base; only while the device still holds the case.
    pub seen: Option<Case>,
    pub after: Case,
}

impl Readings {
    pub(crate) fn of(
        doc: &AutoCommit,
        stored_heads: Option<&[ChangeHash]>,
        new: &[Change],
        ctx: &PushContext<'_>,
    ) -> Result<Self, Rejection> {
        let before = match stored_heads {
            Some(heads) => Some(read_case(doc, Some(heads)).map_err(|_| {
                reject(
                    RejectCode::Malformed,
                    "the server's copy of this case does not read",
                )
            })?),
            None => None,
        };
        let after = read_case(doc, None).map_err(|e| {
            reject(
                RejectCode::Malformed,
                format!("the case does not read: {e}"),
            )
        })?;
        let (case_id, _) = split_doc_id(ctx.doc_id);
        if after.id != case_id {
            return Err(reject(
                RejectCode::Malformed,
                format!("document {case_id} holds case {}", after.id),
            ));
        }
        let base = push_base(new);
        let seen = (ctx.device_holds && before.is_some() && !base.is_empty())
            .then(|| read_case(doc, Some(&base)).ok())
            .flatten();
        Ok(Readings {
            before,
            seen,
            after,
        })
    }
}

/// The rules on the readings of a case push, `events` being the timeline events it records.
pub(crate) fn check_case(
    r: &Readings,
    events: &[NewEvent],
    pusher: &Pusher,
) -> Result<(), Rejection> {
    match &r.before {
        None => created_in_jurisdiction(&r.after, pusher)?,
        Some(before) => {
            let reopened = events
                .iter()
                .any(|e| matches!(e.action, Action::Reopen { .. }));
            closed_only_reopens(before, &r.after, reopened)?;
            in_scope_now_or_when_seen(before, r.seen.as_ref(), pusher)?;
            moves_within_jurisdiction(before, &r.after, pusher)?;
        }
    }
    values_valid(r.before.as_ref(), &r.after)
}

/// The action recorded by `change` was allowed for the pusher's role from the state its author
/// saw (the case at the change's dependencies), which is the state it records.
pub(crate) fn check_action(
    doc: &AutoCommit,
    change: &Change,
    event: &NewEvent,
    pusher: &Pusher,
) -> Result<(), Rejection> {
    let seen = read_state(doc, change.deps()).map_err(|_| {
        reject(
            RejectCode::Malformed,
            "the case as this change's author saw it does not read",
        )
    })?;
    if event.from != seen.status {
        return Err(reject(
            RejectCode::ActionNotAllowed,
            format!(
                "the {} records the case as {} but it was {} when recorded",
                event.action.name(),
                event.from,
                seen.status
            ),
        ));
    }
    event
        .action
        .check(pusher.role, seen.status, seen.flags)
        .map_err(|e| reject(RejectCode::ActionNotAllowed, e.to_string()))
}

pub(crate) fn created_in_jurisdiction(after: &Case, pusher: &Pusher) -> Result<(), Rejection> {
    if !pusher.jurisdiction.contains_str(&after.location.area_code) {
        return Err(reject(
            RejectCode::OutOfJurisdiction,
            format!(
                "area {} is outside your jurisdiction",
                after.location.area_code
            ),
        ));
    }
    Ok(())
}

pub(crate) fn closed_only_reopens(
    before: &Case,
    after: &Case,
    reopened: bool,
) -> Result<(), Rejection> {
    if before.status == Status::Closed && !reopened && before != after {
        return Err(reject(
            RejectCode::CaseClosed,
            "the case is closed; only an explicit reopen may change it",
        ));
    }
    Ok(())
}

/// Changes made while the case was in the author's scope are accepted even if it has left
/// since (moved to another village while the phone was offline): the work was done with the
/// right to do it, and is not lost.
pub(crate) fn in_scope_now_or_when_seen(
    before: &Case,
    seen: Option<&Case>,
    pusher: &Pusher,
) -> Result<(), Rejection> {
    if !pusher.covers(before) && !seen.is_some_and(|s| pusher.covers(s)) {
        return Err(reject(
            RejectCode::OutOfJurisdiction,
            "the case is outside your jurisdiction and not assigned to you",
        ));
    }
    Ok(())
}

pub(crate) fn moves_within_jurisdiction(
    before: &Case,
    after: &Case,
    pusher: &Pusher,
) -> Result<(), Rejection> {
    if after.location.area_code != before.location.area_code
        && !pusher.jurisdiction.contains_str(&after.location.area_code)
    {
        return Err(reject(
            RejectCode::OutOfJurisdiction,
            format!(
                "cannot move the case to area {}, outside your jurisdiction",
                after.location.area_code
            ),
        ));
    }
    Ok(())
}

/// What the phone's API refuses to write, refused from the wire too: an empty title, an area
/// code that is not one. Checked when they change, so an old document stays writable.
fn values_valid(before: Option<&Case>, after: &Case) -> Result<(), Rejection> {
    let changed = |f: fn(&Case) -> &str| before.is_none_or(|b| f(b) != f(after));
    if changed(|c| &c.title) && after.title.trim().is_empty() {
        return Err(reject(RejectCode::OutsideSchema, "title must not be empty"));
    }
    if changed(|c| &c.location.area_code) {
        AreaCode::parse(&after.location.area_code)
            .map_err(|e| reject(RejectCode::OutsideSchema, format!("area_code: {e}")))?;
    }
    Ok(())
}
