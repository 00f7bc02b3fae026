//! The readings-only check that [`super::judge_push`] replaces: it compares two readings of a
//! case and looks only at what is new, so it cannot see a deleted, edited or reordered entry.
//! Kept only while the server still calls it; remove it once the server calls `judge_push`.

use super::{Pusher, reject, rules};
use crate::doc::may_edit;
use crate::lifecycle::Action;
use crate::model::{Author, Case, TimelineEvent};
use crate::sync::{RejectCode, Rejection};

/// Checks the difference `before` → `after` that a push by `pusher` makes. `before` is `None`
/// for a case the server has never seen.
pub fn validate_case_change(
    before: Option<&Case>,
    after: &Case,
    pusher: &Pusher,
) -> Result<(), Rejection> {
    validate_case_change_seen(before, None, after, pusher)
}

/// As [`validate_case_change`], where `seen` is the case as the author last saw it (at the
/// dependencies of the pushed changes). Changes made while the case was in the author's scope
/// are accepted even if it has left since (moved to another village while the phone was
/// offline): the work was done with the right to do it, and is not lost.
pub fn validate_case_change_seen(
    before: Option<&Case>,
    seen: Option<&Case>,
    after: &Case,
    pusher: &Pusher,
) -> Result<(), Rejection> {
    let new_events: Vec<_> = after
        .timeline
        .iter()
        .filter(|e| before.is_none_or(|b| !b.timeline.iter().any(|old| old.id == e.id)))
        .collect();

    for event in &new_events {
        if !pusher.is(&event.author) {
            return Err(reject(
                RejectCode::ForeignActor,
                format!(
                    "timeline event written in the name of {} ({}) by {}",
                    event.author.user, event.author.role, pusher.user
                ),
            ));
        }
        if !event.action.roles().contains(&pusher.role) {
            return Err(reject(
                RejectCode::ActionNotAllowed,
                format!("a {} may not {}", pusher.role, event.action.name()),
            ));
        }
        if !event.action.from_states().contains(&event.from) {
            return Err(reject(
                RejectCode::ActionNotAllowed,
                format!(
                    "cannot {} a case that is {}",
                    event.action.name(),
                    event.from
                ),
            ));
        }
    }
    let reopened = new_events
        .iter()
        .any(|e| matches!(e.action, Action::Reopen { .. }));

    match before {
        None => {
            if after.created_by.user != pusher.user || after.created_by.role != pusher.role {
                return Err(reject(
                    RejectCode::ForeignActor,
                    "a case may only be created in its author's own name",
                ));
            }
            rules::created_in_jurisdiction(after, pusher)?;
        }
        Some(before) => {
            rules::closed_only_reopens(before, after, reopened)?;
            rules::in_scope_now_or_when_seen(before, seen, pusher)?;
            rules::moves_within_jurisdiction(before, after, pusher)?;
            check_fields(before, after, pusher, &new_events)?;
        }
    }

    let added_by_others = |ids: Vec<(&str, &Author)>, old: Vec<&str>| {
        ids.into_iter()
            .any(|(id, author)| !old.contains(&id) && !pusher.is(author))
    };
    let old_notes: Vec<&str> = before
        .map(|b| b.notes.iter().map(|n| n.id.as_str()).collect())
        .unwrap_or_default();
    let old_attachments: Vec<&str> = before
        .map(|b| b.attachments.iter().map(|n| n.id.as_str()).collect())
        .unwrap_or_default();
    if added_by_others(
        after
            .notes
            .iter()
            .map(|n| (n.id.as_str(), &n.author))
            .collect(),
        old_notes,
    ) || added_by_others(
        after
            .attachments
            .iter()
            .map(|a| (a.id.as_str(), &a.author))
            .collect(),
        old_attachments,
    ) {
        return Err(reject(
            RejectCode::ForeignActor,
            "a note or attachment written in someone else's name",
        ));
    }
    Ok(())
}

fn check_fields(
    before: &Case,
    after: &Case,
    pusher: &Pusher,
    new_events: &[&TimelineEvent],
) -> Result<(), Rejection> {
    let dispatched = new_events
        .iter()
        .any(|e| matches!(e.action, Action::Dispatch { .. }));
    let merged = new_events
        .iter()
        .any(|e| matches!(e.action, Action::MergeInto { .. }));
    let changed: [(&str, bool); 11] = [
        ("title", before.title != after.title),
        ("category", before.category != after.category),
        ("case_type", before.case_type != after.case_type),
        ("channel", before.channel != after.channel),
        ("urgency", before.urgency != after.urgency),
        ("priority", before.priority != after.priority),
        ("location", before.location != after.location),
        (
            "responsible_unit",
            !dispatched && before.responsible_unit != after.responsible_unit,
        ),
        ("assignee", !dispatched && before.assignee != after.assignee),
        ("related", !merged && before.related != after.related),
        ("description", before.description != after.description),
    ];
    for (field, was_changed) in changed {
        if was_changed && !may_edit(pusher.role, field) {
            return Err(reject(
                RejectCode::FieldNotAllowed,
                format!("a {} may not edit {field}", pusher.role),
            ));
        }
    }
    let immutable = before.id != after.id
        || before.number != after.number
        || before.created_by != after.created_by
        || before.created_at != after.created_at;
    if immutable {
        return Err(reject(
            RejectCode::FieldNotAllowed,
            "the case's id, number and creator never change",
        ));
    }
    Ok(())
}
