//! Who may have written what a change writes: its entries name the pusher, each field is one
//! the pusher's role may edit ([`Layout::may_write`]) or an effect of the action the same change
//! records ([`Action::effects`]), and an action's effects are all there.

use automerge::{AutoCommit, Change, ROOT, ReadDoc, ScalarValue, Value};

use super::ops::{Appended, Written};
use super::{Pusher, reject};
use crate::doc::schema::{AUTHOR_KEYS, Item, LATER_ENTRY_FIELDS, Layout, Write};
use crate::lifecycle::{Action, Effect};
use crate::model::{Author, Millis, Role, Status};
use crate::sync::{RejectCode, Rejection};

/// A timeline event a change recorded.
#[derive(Debug, Clone)]
pub(crate) struct NewEvent {
    pub action: Action,
    pub from: Status,
}

/// Checks who may have written `written` (what `change` writes) and returns the timeline event
/// it records, if any (one at most: a change adds one entry to a list). The change creating the document is checked whole in
/// [`super::creation`]; here only its entries' authors.
pub(crate) fn check(
    doc: &AutoCommit,
    layout: &Layout,
    pusher: &Pusher,
    change: &Change,
    written: &Written,
    creating: bool,
) -> Result<Option<NewEvent>, Rejection> {
    for entry in &written.appended {
        check_entry(entry, pusher, change.timestamp())?;
    }
    let event = events(written)?.pop();
    if !creating {
        let effects = event
            .as_ref()
            .map(|e| e.action.effects())
            .unwrap_or_default();
        check_root(layout, pusher.role, written, &effects)?;
        check_appends(layout, pusher.role, written, &effects)?;
        if written.text_edited {
            let text = layout.text.unwrap_or("text");
            if !(layout.may_write)(pusher.role, text) {
                return Err(not_allowed(pusher.role, text));
            }
        }
    }
    if let Some(event) = &event {
        check_effects_written(doc, change, written, event)?;
    }
    Ok(event)
}

fn not_allowed(role: Role, field: &str) -> Rejection {
    reject(
        RejectCode::FieldNotAllowed,
        format!("a {role} may not edit {field}"),
    )
}

fn outside(message: impl Into<String>) -> Rejection {
    reject(RejectCode::OutsideSchema, message)
}

fn text_field<'a>(entry: &'a Appended, key: &str) -> &'a str {
    match entry.field(key) {
        Some(ScalarValue::Str(s)) => s.as_str(),
        _ => "",
    }
}

fn int_field(entry: &Appended, key: &str) -> Option<i64> {
    match entry.field(key)? {
        ScalarValue::Int(i) => Some(*i),
        ScalarValue::Uint(u) => i64::try_from(*u).ok(),
        _ => None,
    }
}

/// The author an entry names.
fn entry_author(entry: &Appended) -> Option<Author> {
    Some(Author {
        user: text_field(entry, "user").into(),
        device: text_field(entry, "device").into(),
        role: Role::parse(text_field(entry, "role"))?,
    })
}

/// A new entry is complete, names the pusher, and carries the time of the change recording it
/// (the time the server corrects and vouches for; an entry cannot claim another).
fn check_entry(entry: &Appended, pusher: &Pusher, change_time: Millis) -> Result<(), Rejection> {
    let list = entry.list.entry;
    let Item::Entry(fields) = &entry.list.item else {
        return Ok(());
    };
    let missing = |k: &&str| !LATER_ENTRY_FIELDS.contains(k) && entry.field(k).is_none();
    if let Some((key, _)) = fields.iter().find(|(k, _)| missing(k)) {
        return Err(outside(format!("a new {list} lacks its {key}")));
    }
    debug_assert!(
        AUTHOR_KEYS
            .iter()
            .all(|k| fields.iter().any(|(f, _)| f == k))
    );
    if !entry_author(entry).is_some_and(|a| pusher.is(&a)) {
        return Err(reject(
            RejectCode::ForeignActor,
            format!(
                "a {list} written in the name of {} ({}) by {}",
                text_field(entry, "user"),
                text_field(entry, "role"),
                pusher.user
            ),
        ));
    }
    if int_field(entry, "at") != Some(change_time) {
        return Err(outside(format!(
            "a new {list} carries the time of the change that records it"
        )));
    }
    check_entry_values(entry)
}

/// What the phone's API would have refused to write into an entry.
fn check_entry_values(entry: &Appended) -> Result<(), Rejection> {
    match entry.list.key {
        "notes" if text_field(entry, "text").trim().is_empty() => {
            Err(outside("a note must not be empty"))
        }
        "attachments" => {
            let sha = text_field(entry, "sha256");
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                Err(outside("an attachment names its file by a SHA-256 in hex"))
            } else if int_field(entry, "size").is_none_or(|size| size < 0) {
                Err(outside("an attachment's size is a number of bytes"))
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

/// The timeline events among the entries, parsed.
fn events(written: &Written) -> Result<Vec<NewEvent>, Rejection> {
    written
        .appended
        .iter()
        .filter(|a| a.list.key == "timeline")
        .map(|entry| {
            let text = text_field(entry, "action");
            let action: Action = serde_json::from_str(text)
                .map_err(|_| outside("a new timeline event records no known action"))?;
            // Written as the app writes it, so that nothing rides along inside the text.
            if serde_json::to_string(&action).ok().as_deref() != Some(text) {
                return Err(outside(
                    "a new timeline event's action is not written as the app writes it",
                ));
            }
            let from = Status::parse(text_field(entry, "from"))
                .ok_or_else(|| outside("a new timeline event records no known state"))?;
            Ok(NewEvent { action, from })
        })
        .collect()
}

fn check_root(
    layout: &Layout,
    role: Role,
    written: &Written,
    effects: &[Effect<'_>],
) -> Result<(), Rejection> {
    for (key, value) in &written.root {
        let Some(scalar) = layout.scalar(key) else {
            return Err(outside(format!(
                "`{key}` is not a field of a {}",
                layout.name
            )));
        };
        let field = match scalar.write {
            Write::Never => {
                return Err(reject(
                    RejectCode::FieldNotAllowed,
                    format!(
                        "{key} is set when the {} is created and never changes",
                        layout.name
                    ),
                ));
            }
            Write::Version => {
                return Err(reject(
                    RejectCode::FieldNotAllowed,
                    format!("only a schema upgrade changes {key}"),
                ));
            }
            Write::Field(field) => field,
        };
        if value.is_none() && scalar.required {
            return Err(outside(format!("a {} always has its {key}", layout.name)));
        }
        let effect = value.as_ref().and_then(|v| v.as_str()).is_some_and(|v| {
            effects.contains(&Effect::Set {
                field: scalar.key,
                value: v,
            })
        });
        if !(layout.may_write)(role, field) && !effect {
            return Err(not_allowed(role, field));
        }
    }
    Ok(())
}

/// Appends to lists that need an editable field (related cases): by a role that may edit it,
/// or as an action's effect.
fn check_appends(
    layout: &Layout,
    role: Role,
    written: &Written,
    effects: &[Effect<'_>],
) -> Result<(), Rejection> {
    for appended in &written.appended {
        let Some(field) = appended.list.field else {
            continue;
        };
        let effect = appended
            .value
            .as_ref()
            .and_then(|v| v.as_str())
            .is_some_and(|v| {
                effects.contains(&Effect::Append {
                    list: appended.list.key,
                    value: v,
                })
            });
        if !(layout.may_write)(role, field) && !effect {
            return Err(not_allowed(role, field));
        }
    }
    Ok(())
}

/// An action's effects are written by the change that records it: a dispatch without its unit
/// would leave a dispatched case with nobody to handle it. A field that already held the value
/// as the author saw it needs no write (Automerge writes nothing for an unchanged value).
fn check_effects_written(
    doc: &AutoCommit,
    change: &Change,
    written: &Written,
    event: &NewEvent,
) -> Result<(), Rejection> {
    let held = |field: &str, value: &str| match doc.get_at(ROOT, field, change.deps()) {
        Ok(Some((Value::Scalar(s), _))) => s.as_str() == Some(value),
        _ => false,
    };
    for effect in event.action.effects() {
        let (present, field) = match effect {
            Effect::Set { field, value } => (
                match written.root_value(field) {
                    Some(v) => v.as_str() == Some(value),
                    None => !written.root.iter().any(|(k, _)| k == field) && held(field, value),
                },
                field,
            ),
            Effect::Append { list, value } => (
                written.appended.iter().any(|a| {
                    a.list.key == list && a.value.as_ref().and_then(|v| v.as_str()) == Some(value)
                }),
                list,
            ),
        };
        if !present {
            return Err(reject(
                RejectCode::ActionNotAllowed,
                format!(
                    "a {} also writes {field}, in the change that records it",
                    event.action.name()
                ),
            ));
        }
    }
    Ok(())
}

/// The reveal records among the entries (personal-data documents), oldest first.
pub(crate) fn reveals(written: &Written) -> Vec<(Author, Millis)> {
    written
        .appended
        .iter()
        .filter(|a| a.list.key == "reveals")
        .filter_map(|entry| Some((entry_author(entry)?, int_field(entry, "at")?)))
        .collect()
}
