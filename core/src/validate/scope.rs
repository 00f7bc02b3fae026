//! Who may touch a case (the scope rule, [`crate::scope`]), and what a push's author had in
//! scope when they made it.

use std::collections::HashSet;

use automerge::{Change, ChangeHash};

use super::{PushContext, Pusher, reject};
use crate::sync::{RejectCode, Rejection};

/// A personal-data document is written only by a role that may see personal data, for a case in
/// the pusher's scope (when the server knows the case).
pub(crate) fn check_personal_access(
    pusher: &Pusher,
    ctx: &PushContext<'_>,
) -> Result<(), Rejection> {
    if !pusher.role.may_see_personal_data() {
        return Err(reject(
            RejectCode::PersonalData,
            format!("a {} may not write personal data", pusher.role),
        ));
    }
    if let Some(case) = ctx.case_scope
        && !pusher.scope().covers(case, true)
    {
        return Err(reject(
            RejectCode::OutOfJurisdiction,
            "the case is outside your jurisdiction",
        ));
    }
    Ok(())
}

/// The heads the pushed changes were built on: their dependencies outside the push. Empty for
/// a push that starts the document.
pub(crate) fn push_base(new: &[Change]) -> Vec<ChangeHash> {
    let pushed: HashSet<ChangeHash> = new.iter().map(Change::hash).collect();
    let mut deps: Vec<ChangeHash> = new
        .iter()
        .flat_map(|c| c.deps().iter().copied())
        .filter(|h| !pushed.contains(h))
        .collect();
    deps.sort();
    deps.dedup();
    deps
}
