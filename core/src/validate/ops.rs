//! Every operation of a change against the document layout: the shape of what it writes, not
//! yet who may write it (that is [`super::rights`]).
//!
//! A change is read as its author made it: the document at the change's dependencies is what
//! they saw, and the document at the change itself is what they made of it. Comparing the two
//! views of a list tells whether the change only appended at the end, whatever others appended
//! concurrently (which the merge may interleave: that is CRDT ordering, not a reorder).

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::ObjId as ExId;
use automerge::legacy::{Key, ObjectId, Op, OpType};
use automerge::{ActorId, ReadDoc, ScalarValue, Value};
use automerge::{AutoCommit, Change, ChangeHash, ExpandedChange, ObjType, Prop, ROOT};

use super::reject;
use crate::doc::schema::{Item, Layout, List};
use crate::sync::{RejectCode, Rejection};

/// An operation's id, as the legacy op format and [`ExId`] both spell it.
pub(crate) type OpKey = (u64, ActorId);

fn key_of(id: &ExId) -> Option<OpKey> {
    match id {
        ExId::Id(counter, actor, _) => Some((*counter, actor.clone())),
        ExId::Root => None,
    }
}

/// A value or entry a change appended to a list.
#[derive(Debug)]
pub(crate) struct Appended {
    pub list: &'static List,
    pub id: OpKey,
    /// The value, for a list of plain values.
    pub value: Option<ScalarValue>,
    /// The fields written into the new entry, for a list of entries.
    pub fields: Vec<(String, ScalarValue)>,
}

impl Appended {
    pub(crate) fn field(&self, key: &str) -> Option<&ScalarValue> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// What one change writes, once every operation fits the layout.
#[derive(Debug, Default)]
pub(crate) struct Written {
    /// Root scalars put (`Some`) or deleted (`None`), in order.
    pub root: Vec<(String, Option<ScalarValue>)>,
    /// Containers the change created at the root (only the creating change may).
    pub made: Vec<String>,
    pub appended: Vec<Appended>,
    /// The change inserted or deleted characters of the free text.
    pub text_edited: bool,
}

impl Written {
    /// The last value the change put at a root key (deleted or never written: `None`).
    pub(crate) fn root_value(&self, key: &str) -> Option<&ScalarValue> {
        self.root
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_ref())
    }
}

#[derive(Clone, Copy)]
enum Container {
    List(&'static List),
    Text,
}

/// The layout's containers in a document, by object id. They are created with the document and
/// never replaced (a change that tries is refused), so one lookup serves every change.
pub(crate) struct Containers(HashMap<OpKey, (Container, ExId)>);

impl Containers {
    pub(crate) fn of(doc: &AutoCommit, layout: &'static Layout) -> Self {
        let lists = layout
            .lists
            .iter()
            .map(|l| (l.key, Container::List(l), ObjType::List));
        let text = layout.text.map(|t| (t, Container::Text, ObjType::Text));
        let found = lists
            .chain(text)
            .filter_map(|(key, container, kind)| match doc.get(ROOT, key) {
                Ok(Some((Value::Object(found), id))) if found == kind => {
                    Some((key_of(&id)?, (container, id)))
                }
                _ => None,
            })
            .collect();
        Containers(found)
    }
}

/// One change under judgement, with the two views of the document that frame it.
struct Walk<'a> {
    doc: &'a AutoCommit,
    layout: &'static Layout,
    /// The document as the author saw it.
    seen: &'a [ChangeHash],
    /// The document as the author left it.
    made: [ChangeHash; 1],
    containers: &'a Containers,
    creating: bool,
    written: Written,
    /// New entries by id, as indices into `written.appended`.
    entries: HashMap<OpKey, usize>,
}

/// Checks every operation of `change` against `layout` and returns what it writes. `creating`:
/// this is the change that creates the document, and may create its containers.
pub(crate) fn walk(
    doc: &AutoCommit,
    layout: &'static Layout,
    containers: &Containers,
    change: &Change,
    creating: bool,
) -> Result<Written, Rejection> {
    let expanded = decode(change)?;
    let mut walk = Walk {
        doc,
        layout,
        seen: change.deps(),
        containers,
        made: [change.hash()],
        creating,
        written: Written::default(),
        entries: HashMap::new(),
    };
    let start = change.start_op().get();
    for (i, op) in expanded.operations.iter().enumerate() {
        walk.op(op, (start + i as u64, change.actor_id().clone()))?;
    }
    walk.check_appends_at_end()?;
    Ok(walk.written)
}

/// The legacy form of a change lists its operations with their objects and keys. Automerge
/// builds it with `unwrap`s on actor indices; a change that applied has valid ones, but a panic
/// here would take the whole server request down, so one is turned into a rejection.
pub(crate) fn decode(change: &Change) -> Result<ExpandedChange, Rejection> {
    catch_unwind(AssertUnwindSafe(|| change.decode())).map_err(|_| {
        reject(
            RejectCode::Malformed,
            format!("change {} does not decode", super::short(&change.hash())),
        )
    })
}

fn outside(message: impl Into<String>) -> Rejection {
    reject(RejectCode::OutsideSchema, message)
}

fn rewritten(message: impl Into<String>) -> Rejection {
    reject(RejectCode::HistoryRewritten, message)
}

impl Walk<'_> {
    fn op(&mut self, op: &Op, id: OpKey) -> Result<(), Rejection> {
        let ObjectId::Id(obj) = &op.obj else {
            return self.root_op(op);
        };
        let obj = (obj.counter(), obj.actor().clone());
        if let Some((container, list_id)) = self.containers.0.get(&obj).cloned() {
            return match container {
                Container::Text => self.text_op(op),
                Container::List(list) => self.list_op(list, &list_id, op, id),
            };
        }
        if let Some(&n) = self.entries.get(&obj) {
            return entry_op(&mut self.written.appended[n], op);
        }
        Err(self.foreign_object(&obj))
    }

    fn root_op(&mut self, op: &Op) -> Result<(), Rejection> {
        let name = self.layout.name;
        let Key::Map(key) = &op.key else {
            return Err(outside(format!("the {name} holds only named fields")));
        };
        let key = key.as_str();
        let container = self.layout.is_container(key);
        match &op.action {
            OpType::Put(value) if !op.insert && !container => {
                let Some(scalar) = self.layout.scalar(key) else {
                    return Err(outside(format!("`{key}` is not a field of a {name}")));
                };
                if !scalar.kind.admits(value) {
                    return Err(outside(format!("{key} must be {}", scalar.kind.name())));
                }
                self.written.root.push((key.into(), Some(value.clone())));
            }
            OpType::Delete if !container => {
                if self.layout.scalar(key).is_none() {
                    return Err(outside(format!("`{key}` is not a field of a {name}")));
                }
                self.written.root.push((key.into(), None));
            }
            OpType::Make(kind) if self.creating && self.may_make(key, *kind) => {
                self.written.made.push(key.into());
            }
            _ if container => {
                return Err(rewritten(format!(
                    "`{key}` is created with the {name}; replacing or deleting it would drop \
                     what it holds"
                )));
            }
            _ => return Err(outside(format!("`{key}` is not a field of a {name}"))),
        }
        Ok(())
    }

    fn may_make(&self, key: &str, kind: ObjType) -> bool {
        let expected = match self.layout.list(key) {
            Some(_) => ObjType::List,
            None if self.layout.text == Some(key) => ObjType::Text,
            None => return false,
        };
        kind == expected && !self.written.made.iter().any(|k| k == key)
    }

    fn text_op(&mut self, op: &Op) -> Result<(), Rejection> {
        match (&op.action, op.insert) {
            (OpType::Put(ScalarValue::Str(_)), true) | (OpType::Delete, false) => {
                self.written.text_edited = true;
                Ok(())
            }
            _ => Err(outside(format!(
                "the {} holds plain text: only characters are inserted and deleted",
                self.layout.text.unwrap_or("text")
            ))),
        }
    }

    fn list_op(
        &mut self,
        list: &'static List,
        list_id: &ExId,
        op: &Op,
        id: OpKey,
    ) -> Result<(), Rejection> {
        if !op.insert {
            let entry = match op.key.to_opid() {
                Some(elem) => self.entry_label(list, list_id, &(elem.counter(), elem.1)),
                None => format!("a {}", list.entry),
            };
            let what = match op.action {
                OpType::Delete => "deleted",
                _ => "overwritten",
            };
            return Err(rewritten(format!(
                "{entry} would be {what}: recorded entries are never changed"
            )));
        }
        let appended = match (&list.item, &op.action) {
            _ if self
                .written
                .appended
                .iter()
                .any(|a| std::ptr::eq(a.list, list)) =>
            {
                // What the app writes; and a bound on how much one change makes every later
                // change's view of the list cost.
                return Err(outside(format!("one change adds one {}", list.entry)));
            }
            (Item::Entry(_), OpType::Make(ObjType::Map)) => {
                self.entries.insert(id.clone(), self.written.appended.len());
                Appended {
                    list,
                    id,
                    value: None,
                    fields: Vec::new(),
                }
            }
            (Item::Value(kind), OpType::Put(value)) if kind.admits(value) => Appended {
                list,
                id,
                value: Some(value.clone()),
                fields: Vec::new(),
            },
            _ => {
                return Err(outside(format!("a {} cannot hold that", list.entry)));
            }
        };
        self.written.appended.push(appended);
        Ok(())
    }

    /// "timeline event 3": where an element sat as the author saw the list.
    fn entry_label(&self, list: &List, list_id: &ExId, elem: &OpKey) -> String {
        self.doc
            .list_range_at(list_id, .., self.seen)
            .position(|item| key_of(&item.id()).as_ref() == Some(elem))
            .map(|i| format!("{} {}", list.entry, i + 1))
            .unwrap_or_else(|| format!("a {}", list.entry))
    }

    /// An operation on an object that is neither a container nor an entry this change made:
    /// an entry recorded earlier, or something that has no place in the layout.
    fn foreign_object(&self, obj: &OpKey) -> Rejection {
        let path = self
            .doc
            .import(&format!("{}@{}", obj.0, obj.1))
            // At the heads the author saw: the object existed there (it is not one of the
            // change's new entries), while the change itself may have deleted it, and Automerge
            // 0.12 panics on the parents of a deleted list element (see `judge_push`).
            .and_then(|(id, _)| self.doc.parents_at(id, self.seen))
            .map(|parents| parents.path());
        if let Ok(path) = path
            && let [(ExId::Root, Prop::Map(key)), (_, Prop::Seq(i)), ..] = path.as_slice()
            && let Some(list) = self.layout.list(key)
        {
            return rewritten(format!(
                "{} {} was recorded earlier: recorded entries are never changed",
                list.entry,
                i + 1
            ));
        }
        outside(format!(
            "an object that is not part of a {}",
            self.layout.name
        ))
    }

    /// Every list the change appended to reads, as the author left it, as it was when they saw
    /// it followed by their new entries in the order they made them. The change can only have
    /// inserted (anything else was refused), so its new entries being the last ones says that.
    fn check_appends_at_end(&self) -> Result<(), Rejection> {
        for (container, list_id) in self.containers.0.values() {
            let Container::List(list) = container else {
                continue;
            };
            let mine: Vec<Option<OpKey>> = self
                .written
                .appended
                .iter()
                .filter(|a| std::ptr::eq(a.list, *list))
                .map(|a| Some(a.id.clone()))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let len = self.doc.length_at(list_id, &self.made);
            let last: Vec<Option<OpKey>> = self
                .doc
                .list_range_at(list_id, len.saturating_sub(mine.len()).., &self.made)
                .map(|item| key_of(&item.id()))
                .collect();
            if last != mine {
                return Err(rewritten(format!(
                    "`{}` only grows at its end: a new {} was put before ones recorded earlier",
                    list.key, list.entry
                )));
            }
        }
        Ok(())
    }
}

fn entry_op(entry: &mut Appended, op: &Op) -> Result<(), Rejection> {
    let list = entry.list.entry;
    let Item::Entry(fields) = &entry.list.item else {
        return Err(outside(format!("a {list} is a plain value")));
    };
    let (Key::Map(key), OpType::Put(value), false) = (&op.key, &op.action, op.insert) else {
        return Err(outside(format!("a {list} holds only its fields")));
    };
    let Some((_, kind)) = fields.iter().find(|(k, _)| k == key) else {
        return Err(outside(format!("`{key}` is not a field of a {list}")));
    };
    if !kind.admits(value) {
        return Err(outside(format!("a {list}'s {key} must be {}", kind.name())));
    }
    if !op.pred.is_empty() || entry.field(key).is_some() {
        return Err(outside(format!(
            "each field of a new {list} is written once"
        )));
    }
    entry.fields.push((key.to_string(), value.clone()));
    Ok(())
}
