//! The two kinds of change judged whole rather than field by field: the one that creates a
//! document, which must create exactly its layout, every container included (see the module
//! comment of [`crate::doc`] on containers created concurrently), and a schema upgrade, which
//! must be exactly what [`crate::doc::migrate`] writes.

use std::collections::BTreeMap;

use automerge::legacy::{Key, ObjectId, OpType};
use automerge::{AutoCommit, Change, ChangeHash, ROOT, ReadDoc};

use super::ops::{self, Written};
use super::{Pusher, reject};
use crate::doc::schema::{CASE, Layout};
use crate::doc::{SCHEMA_VERSION, migrate};
use crate::model::{Author, Role};
use crate::sync::{RejectCode, Rejection};

fn outside(message: impl Into<String>) -> Rejection {
    reject(RejectCode::OutsideSchema, message)
}

/// The creating change of a document (already through [`ops::walk`]) wrote every required field
/// and created every container, empty, in the current schema; a case names its id, its creator
/// and, as its creation time, the time of the change.
pub(crate) fn check_created(
    layout: &Layout,
    change: &Change,
    written: &Written,
    pusher: &Pusher,
    case_id: &str,
) -> Result<(), Rejection> {
    let name = layout.name;
    if let Some(s) = layout
        .scalars
        .iter()
        .find(|s| s.required && written.root_value(s.key).is_none())
    {
        return Err(outside(format!("a new {name} lacks its {}", s.key)));
    }
    let containers = layout.lists.iter().map(|l| l.key).chain(layout.text);
    if let Some(key) = containers
        .clone()
        .find(|k| !written.made.iter().any(|m| m == k))
    {
        return Err(outside(format!("a new {name} is created with its {key}")));
    }
    if !written.appended.is_empty() {
        return Err(outside(format!(
            "a {name} is created empty; its entries come in later changes"
        )));
    }
    let version = written
        .root_value("schema_version")
        .and_then(|v| v.as_u64());
    if version != Some(SCHEMA_VERSION) {
        return Err(outside(format!(
            "a new {name} is written in schema {SCHEMA_VERSION}"
        )));
    }
    if std::ptr::eq(layout, &CASE) {
        check_case_identity(written, pusher, case_id)?;
        if written.root_value("created_at").and_then(|v| v.as_i64()) != Some(change.timestamp()) {
            return Err(outside(
                "a new case's created_at is the time of the change that creates it",
            ));
        }
    }
    Ok(())
}

fn check_case_identity(written: &Written, pusher: &Pusher, case_id: &str) -> Result<(), Rejection> {
    let text = |key: &str| {
        written
            .root_value(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let id = text("id");
    if id != case_id {
        return Err(reject(
            RejectCode::Malformed,
            format!("document {case_id} holds case {id}"),
        ));
    }
    let creator = Role::parse(&text("created_role")).map(|role| Author {
        user: text("created_user"),
        device: text("created_device"),
        role,
    });
    if !creator.is_some_and(|c| pusher.is(&c)) {
        return Err(reject(
            RejectCode::ForeignActor,
            "a case may only be created in its author's own name",
        ));
    }
    Ok(())
}

/// A change signed as the schema upgrade: it writes root fields only, and the document it leaves
/// is the one [`migrate`] makes of the document it was made on.
pub(crate) fn check_migration(doc: &AutoCommit, change: &Change) -> Result<(), Rejection> {
    let expanded = ops::decode(change)?;
    let root_fields_only = expanded.operations.iter().all(|op| {
        op.obj == ObjectId::Root
            && !op.insert
            && matches!(op.action, OpType::Put(_) | OpType::Delete)
            && matches!(&op.key, Key::Map(k) if !CASE.is_container(k))
    });
    if !root_fields_only {
        return Err(outside("a schema upgrade writes only root fields"));
    }
    let malformed = |_| reject(RejectCode::Malformed, "the upgraded document does not read");
    let mut expected = doc.clone().fork_at(change.deps()).map_err(malformed)?;
    let base = expected.get_heads();
    migrate(&mut expected).map_err(|_| outside("a schema upgrade of a document that has none"))?;
    if expected.get_heads() == base {
        return Err(outside("a schema upgrade of a document already up to date"));
    }
    if root_values(&expected, None) != root_values(doc, Some(&[change.hash()])) {
        return Err(outside(
            "a schema upgrade must write exactly what the upgrade steps write",
        ));
    }
    Ok(())
}

/// The root map's values (objects by their kind), now or at `heads`.
fn root_values(doc: &AutoCommit, heads: Option<&[ChangeHash]>) -> BTreeMap<String, String> {
    let items: Vec<_> = match heads {
        Some(heads) => doc.map_range_at(ROOT, .., heads).collect(),
        None => doc.map_range(ROOT, ..).collect(),
    };
    items
        .into_iter()
        .map(|item| (item.key.to_string(), format!("{:?}", item.value)))
        .collect()
}
