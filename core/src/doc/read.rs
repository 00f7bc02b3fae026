//! Reading a case back from its document, now or as it was at given heads (what an author saw
//! when they made a change: the push judge asks).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use automerge::{AutoCommit, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};

use super::{CaseDoc, DocError, SCHEMA_VERSION};
use crate::lifecycle::{self, Action, Recorded};
use crate::model::*;

impl CaseDoc {
    /// Reads the whole case. Derived state comes from replaying the timeline.
    pub fn read(&self) -> Result<Case, DocError> {
        Reader::new(&self.doc, None).case()
    }

    /// Reads the case as it was at `heads` (which this document must hold).
    pub fn read_at(&self, heads: &[ChangeHash]) -> Result<Case, DocError> {
        read_case(&self.doc, Some(heads))
    }
}

/// The case in `doc`, now or as it was at `heads`. A document of an older schema is read
/// through an upgraded copy.
pub(crate) fn read_case(doc: &AutoCommit, heads: Option<&[ChangeHash]>) -> Result<Case, DocError> {
    let reader = Reader::new(doc, heads);
    match reader.int(&ROOT, "schema_version") {
        Ok(v) if v == SCHEMA_VERSION as i64 => reader.case(),
        _ => {
            let copy = match heads {
                Some(heads) => doc.clone().fork_at(heads)?,
                None => doc.clone(),
            };
            CaseDoc::from_automerge(copy)?.read()
        }
    }
}

/// The lifecycle state of the case at `heads`: its timeline replayed, nothing else read (the
/// timeline's layout is the same in every schema).
pub(crate) fn read_state(
    doc: &AutoCommit,
    heads: &[ChangeHash],
) -> Result<lifecycle::Replay, DocError> {
    Ok(replay(&Reader::new(doc, Some(heads)).timeline()?))
}

fn replay(timeline: &[TimelineEvent]) -> lifecycle::Replay {
    lifecycle::replay(timeline.iter().map(|e| Recorded {
        action: &e.action,
        from: e.from,
        role: e.author.role,
    }))
}

/// The keys of one map with their current values, read in one pass.
type MapEntries = HashMap<String, (Value<'static>, ObjId)>;

/// Typed reads of values, now or at fixed heads, with errors that name the field.
pub(crate) struct Reader<'a> {
    doc: &'a AutoCommit,
    heads: Option<&'a [ChangeHash]>,
    /// Each map read so far, every key at once: one pass over a map's operations costs about
    /// what one `get` by key does, and a case reads some sixty keys (reading them one by one
    /// was most of a restore's time on the phone).
    maps: RefCell<HashMap<ObjId, Rc<MapEntries>>>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(doc: &'a AutoCommit, heads: Option<&'a [ChangeHash]>) -> Self {
        Reader {
            doc,
            heads,
            maps: RefCell::default(),
        }
    }

    fn get(&self, obj: &ObjId, key: &str) -> Option<(Value<'a>, ObjId)> {
        self.entries(obj).get(key).cloned()
    }

    /// The keys and values of the map `obj` (none if it is not a map).
    fn entries(&self, obj: &ObjId) -> Rc<MapEntries> {
        if let Some(entries) = self.maps.borrow().get(obj) {
            return entries.clone();
        }
        let items = match self.heads {
            Some(heads) => self.doc.map_range_at(obj, .., heads),
            None => self.doc.map_range(obj, ..),
        };
        let entries: Rc<MapEntries> = Rc::new(
            items
                .map(|item| {
                    let id = item.id();
                    (item.key.into_owned(), (item.value.into_value(), id))
                })
                .collect(),
        );
        self.maps.borrow_mut().insert(obj.clone(), entries.clone());
        entries
    }

    fn scalar(&self, obj: &ObjId, key: &str) -> Option<ScalarValue> {
        match self.get(obj, key) {
            Some((Value::Scalar(s), _)) => Some(s.into_owned()),
            _ => None,
        }
    }

    pub(crate) fn malformed(key: &str) -> DocError {
        DocError::Malformed { field: key.into() }
    }

    pub(crate) fn str(&self, obj: &ObjId, key: &str) -> Result<String, DocError> {
        match self.scalar(obj, key) {
            Some(ScalarValue::Str(s)) => Ok(s.to_string()),
            _ => Err(Self::malformed(key)),
        }
    }

    pub(crate) fn int(&self, obj: &ObjId, key: &str) -> Result<i64, DocError> {
        match self.scalar(obj, key) {
            Some(ScalarValue::Int(i)) => Ok(i),
            Some(ScalarValue::Uint(u)) => i64::try_from(u).map_err(|_| Self::malformed(key)),
            _ => Err(Self::malformed(key)),
        }
    }

    fn float(&self, obj: &ObjId, key: &str) -> Option<f64> {
        match self.scalar(obj, key) {
            Some(ScalarValue::F64(f)) => Some(f),
            _ => None,
        }
    }

    pub(crate) fn bool(&self, obj: &ObjId, key: &str) -> Result<bool, DocError> {
        match self.scalar(obj, key) {
            Some(ScalarValue::Boolean(b)) => Ok(b),
            _ => Err(Self::malformed(key)),
        }
    }

    fn parse<T>(
        &self,
        obj: &ObjId,
        key: &str,
        parse: fn(&str) -> Option<T>,
    ) -> Result<T, DocError> {
        parse(&self.str(obj, key)?).ok_or_else(|| Self::malformed(key))
    }

    pub(crate) fn author(&self, obj: &ObjId) -> Result<Author, DocError> {
        Ok(Author {
            user: self.str(obj, "user")?,
            device: self.str(obj, "device")?,
            role: self.parse(obj, "role", Role::parse)?,
        })
    }

    /// The container at `key` in the root map; its absence means a malformed document, since
    /// every container is created with the document.
    pub(crate) fn container(&self, key: &str, kind: ObjType) -> Result<ObjId, DocError> {
        match self.get(&ROOT, key) {
            Some((Value::Object(found), id)) if found == kind => Ok(id),
            _ => Err(Self::malformed(key)),
        }
    }

    /// The values of a list, in order, each with its id.
    fn values(&self, list: &ObjId) -> Vec<(Value<'a>, ObjId)> {
        let items: Vec<_> = match self.heads {
            Some(heads) => self.doc.list_range_at(list, .., heads).collect(),
            None => self.doc.list_range(list, ..).collect(),
        };
        items
            .into_iter()
            .map(|item| {
                let id = item.id();
                (item.value.into_value(), id)
            })
            .collect()
    }

    /// The map entries of a list, in order.
    pub(crate) fn items(&self, list: &ObjId) -> Vec<ObjId> {
        self.values(list)
            .into_iter()
            .filter_map(|(value, id)| matches!(value, Value::Object(ObjType::Map)).then_some(id))
            .collect()
    }

    fn text(&self, obj: &ObjId) -> Result<String, DocError> {
        Ok(match self.heads {
            Some(heads) => self.doc.text_at(obj, heads)?,
            None => self.doc.text(obj)?,
        })
    }

    fn timeline(&self) -> Result<Vec<TimelineEvent>, DocError> {
        let list = self.container("timeline", ObjType::List)?;
        let mut timeline = Vec::new();
        for (i, id) in self.items(&list).into_iter().enumerate() {
            let action: Action = serde_json::from_str(&self.str(&id, "action")?)
                .map_err(|_| Self::malformed(&format!("timeline[{i}].action")))?;
            timeline.push(TimelineEvent {
                id: id.to_string(),
                action,
                from: self.parse(&id, "from", Status::parse)?,
                author: self.author(&id)?,
                at: self.int(&id, "at")?,
                conflicted: false,
            });
        }
        Ok(timeline)
    }

    fn notes(&self) -> Result<Vec<Note>, DocError> {
        let list = self.container("notes", ObjType::List)?;
        self.items(&list)
            .into_iter()
            .map(|id| {
                Ok(Note {
                    id: id.to_string(),
                    text: self.str(&id, "text")?,
                    author: self.author(&id)?,
                    at: self.int(&id, "at")?,
                })
            })
            .collect()
    }

    fn attachments(&self) -> Result<Vec<Attachment>, DocError> {
        let list = self.container("attachments", ObjType::List)?;
        self.items(&list)
            .into_iter()
            .map(|id| {
                Ok(Attachment {
                    id: id.to_string(),
                    sha256: self.str(&id, "sha256")?,
                    mime: self.str(&id, "mime")?,
                    size: self.int(&id, "size")? as u64,
                    caption: self.str(&id, "caption")?,
                    // Absent from entries written before the field existed: not personal.
                    personal: matches!(
                        self.scalar(&id, "personal"),
                        Some(ScalarValue::Boolean(true))
                    ),
                    variant: self.variant(&id),
                    author: self.author(&id)?,
                    at: self.int(&id, "at")?,
                })
            })
            .collect()
    }

    /// An attachment's [`Variant`]: both fields, with a kind this version knows (an entry
    /// without them, or with a kind from a later version, is a file of its own).
    fn variant(&self, id: &ObjId) -> Option<Variant> {
        let text = |key| match self.scalar(id, key) {
            Some(ScalarValue::Str(s)) => Some(s.to_string()),
            _ => None,
        };
        Some(Variant {
            kind: VariantKind::parse(&text("variant")?)?,
            of: text("variant_of")?,
        })
    }

    /// Related case ids, sorted and without repeats (two people may link the same case).
    fn related(&self) -> Result<Vec<CaseId>, DocError> {
        let list = self.container("related", ObjType::List)?;
        let mut related: Vec<CaseId> = self
            .values(&list)
            .into_iter()
            .filter_map(|(value, _)| match value {
                Value::Scalar(s) => s.as_str().map(str::to_owned),
                _ => None,
            })
            .collect();
        related.sort();
        related.dedup();
        Ok(related)
    }

    fn location(&self) -> Result<Location, DocError> {
        let gps = match (self.float(&ROOT, "gps_lat"), self.float(&ROOT, "gps_lon")) {
            (Some(lat), Some(lon)) => Some((lat, lon)),
            _ => None,
        };
        Ok(Location {
            address: self.str(&ROOT, "address")?,
            area_code: self.str(&ROOT, "area_code")?,
            gps,
        })
    }

    fn case(&self) -> Result<Case, DocError> {
        let mut timeline = self.timeline()?;
        let replay = replay(&timeline);
        for (event, conflicted) in timeline.iter_mut().zip(&replay.conflicted) {
            event.conflicted = *conflicted;
        }
        let derived = Derived::of(&timeline);
        let description = self.text(&self.container("description", ObjType::Text)?)?;
        Ok(Case {
            id: self.str(&ROOT, "id")?,
            schema_version: self.int(&ROOT, "schema_version")? as u64,
            number: self.str(&ROOT, "number")?,
            channel: self.parse(&ROOT, "channel", Channel::parse)?,
            case_type: self.parse(&ROOT, "case_type", CaseType::parse)?,
            category: self.str(&ROOT, "category")?,
            urgency: self.parse(&ROOT, "urgency", Urgency::parse)?,
            priority: self.bool(&ROOT, "priority")?,
            title: self.str(&ROOT, "title")?,
            description,
            location: self.location()?,
            responsible_unit: self.str(&ROOT, "responsible_unit")?,
            assignee: self.str(&ROOT, "assignee")?,
            status: replay.status,
            needs_review: replay.flags.needs_review,
            extension_pending: replay.flags.extension_pending,
            extension_days: replay.extension_days,
            merged_into: derived.merged_into,
            related: self.related()?,
            follow_up: derived.follow_up,
            supervisions: derived.supervisions,
            timeline,
            notes: self.notes()?,
            attachments: self.attachments()?,
            created_by: Author {
                user: self.str(&ROOT, "created_user")?,
                device: self.str(&ROOT, "created_device")?,
                role: self.parse(&ROOT, "created_role", Role::parse)?,
            },
            created_at: self.int(&ROOT, "created_at")?,
        })
    }
}

/// What the applied (not conflicted) events of a timeline say beyond the state.
struct Derived {
    follow_up: Option<FollowUpResult>,
    supervisions: Vec<Supervision>,
    merged_into: Option<CaseId>,
}

impl Derived {
    fn of(timeline: &[TimelineEvent]) -> Self {
        let applied = || timeline.iter().filter(|e| !e.conflicted);
        let follow_up = applied()
            .filter_map(|e| match &e.action {
                Action::FollowUp {
                    solved,
                    satisfaction,
                } => Some(FollowUpResult {
                    solved: *solved,
                    satisfaction: *satisfaction,
                }),
                _ => None,
            })
            .next_back();
        let supervisions = applied()
            .filter_map(|e| match &e.action {
                Action::Supervise { level, reason } => Some(Supervision {
                    level: *level,
                    reason: reason.clone(),
                    by: e.author.clone(),
                    at: e.at,
                }),
                _ => None,
            })
            .collect();
        let merged_into = applied()
            .filter_map(|e| match &e.action {
                Action::MergeInto { master } => Some(master.clone()),
                _ => None,
            })
            .next_back();
        Derived {
            follow_up,
            supervisions,
            merged_into,
        }
    }
}
