//! A case as an Automerge document, behind a typed API so no caller touches raw paths.
//!
//! Layout of the root map (schema [`SCHEMA_VERSION`]):
//! - scalar registers: `schema_version`, `id`, `number`, `channel`, `case_type`, `category`,
//!   `urgency`, `priority`, `title`, `responsible_unit`, `assignee`, `address`, `area_code`,
//!   `gps_lat`, `gps_lon`, `created_at`, `created_user`, `created_device`, `created_role`;
//! - `description`: Automerge text, so two people typing offline both keep their words;
//! - `timeline`, `notes`, `attachments`, `related`: lists that only grow.
//!
//! Every container is created when the case is created: if two replicas created the same list
//! concurrently, Automerge would keep only one of them and the other's items would vanish.
//! Every change carries its author (user, device, role) in the commit message and the device
//! time in the commit timestamp.
//!
//! The complainant's personal data lives in a second document, [`PersonalDoc`], so it can be
//! withheld from devices that may not see it: withholding bytes is the only way to keep them off
//! a phone.

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, Change, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, Value};
use automerge::{ScalarValue, ValueRef, transaction::CommitOptions};
use serde::{Deserialize, Serialize};

use crate::area::{AreaCode, AreaError};
use crate::lifecycle::{self, Action, LifecycleError, Recorded};
use crate::model::*;

/// Version of the document layout written by this code. Bump it with a step in [`migrate`].
pub const SCHEMA_VERSION: u64 = 2;

/// The id of the document holding a case's personal data.
pub fn personal_doc_id(case_id: &str) -> String {
    format!("{case_id}#pii")
}

/// Which case a document id belongs to, and whether it is the personal-data document.
pub fn split_doc_id(doc_id: &str) -> (&str, bool) {
    match doc_id.strip_suffix("#pii") {
        Some(case) => (case, true),
        None => (doc_id, false),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Area(#[from] AreaError),
    #[error("the case is closed; only an explicit reopen may change it")]
    Closed,
    #[error("a {role} may not edit {field}")]
    FieldNotEditable { role: Role, field: &'static str },
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("field `{field}` is missing or malformed in the document")]
    Malformed { field: String },
    #[error("document schema {found} is newer than this app understands ({supported})")]
    TooNew { found: u64, supported: u64 },
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}

/// A change to one field of a case. The description has its own text operations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "field", content = "value", rename_all = "snake_case")]
pub enum FieldEdit {
    Title(String),
    Category(String),
    CaseType(CaseType),
    Channel(Channel),
    Urgency(Urgency),
    Priority(bool),
    Location(Location),
    ResponsibleUnit(String),
    Assignee(String),
    AddRelated(CaseId),
}

impl FieldEdit {
    pub fn field(&self) -> &'static str {
        match self {
            FieldEdit::Title(_) => "title",
            FieldEdit::Category(_) => "category",
            FieldEdit::CaseType(_) => "case_type",
            FieldEdit::Channel(_) => "channel",
            FieldEdit::Urgency(_) => "urgency",
            FieldEdit::Priority(_) => "priority",
            FieldEdit::Location(_) => "location",
            FieldEdit::ResponsibleUnit(_) => "responsible_unit",
            FieldEdit::Assignee(_) => "assignee",
            FieldEdit::AddRelated(_) => "related",
        }
    }
}

/// Which fields a role may edit directly (outside lifecycle actions). Routing fields belong to
/// the people who route; a handling unit only works the case and writes in the description.
pub fn may_edit(role: Role, field: &str) -> bool {
    match role {
        Role::TownshipStaff | Role::HotlineCentre | Role::Admin => true,
        Role::GridWorker => !matches!(field, "responsible_unit" | "assignee"),
        Role::HandlingUnit => matches!(field, "description" | "related"),
        Role::System => false,
    }
}

/// One case document.
#[derive(Debug, Clone)]
pub struct CaseDoc {
    doc: AutoCommit,
}

fn commit(doc: &mut AutoCommit, author: &Author, now: Millis) {
    let message = serde_json::to_string(author).unwrap_or_default();
    doc.commit_with(
        CommitOptions::default()
            .with_message(message)
            .with_time(now),
    );
}

/// The list at `name` in the root map; its absence means a malformed document, since every
/// container is created with the document.
fn list_obj(doc: &AutoCommit, name: &str) -> Result<ObjId, DocError> {
    match doc.get(ROOT, name)? {
        Some((Value::Object(ObjType::List), id)) => Ok(id),
        _ => Err(DocError::Malformed { field: name.into() }),
    }
}

/// Who made a change, as recorded in its commit message.
pub fn change_author(change: &Change) -> Option<Author> {
    change.message().and_then(|m| serde_json::from_str(m).ok())
}

fn put_location(doc: &mut AutoCommit, location: &Location) -> Result<(), DocError> {
    AreaCode::parse(&location.area_code)?;
    doc.put(ROOT, "address", location.address.as_str())?;
    doc.put(ROOT, "area_code", location.area_code.as_str())?;
    match location.gps {
        Some((lat, lon)) => {
            doc.put(ROOT, "gps_lat", lat)?;
            doc.put(ROOT, "gps_lon", lon)?;
        }
        None => {
            doc.delete(ROOT, "gps_lat")?;
            doc.delete(ROOT, "gps_lon")?;
        }
    }
    Ok(())
}

fn put_author(
    doc: &mut AutoCommit,
    obj: &ObjId,
    author: &Author,
    at: Millis,
) -> Result<(), DocError> {
    doc.put(obj, "user", author.user.as_str())?;
    doc.put(obj, "device", author.device.as_str())?;
    doc.put(obj, "role", author.role.as_str())?;
    doc.put(obj, "at", at)?;
    Ok(())
}

impl CaseDoc {
    /// Registers a draft case on this replica. `actor` must be unique to this device and store
    /// (the server binds actor ids to devices).
    pub fn create(
        new: &NewCase,
        author: &Author,
        actor: ActorId,
        now: Millis,
    ) -> Result<Self, DocError> {
        if new.id.trim().is_empty() {
            return Err(DocError::Empty("id"));
        }
        if new.title.trim().is_empty() {
            return Err(DocError::Empty("title"));
        }
        let mut doc = AutoCommit::new().with_actor(actor);
        let result = (|| -> Result<(), DocError> {
            doc.put(ROOT, "schema_version", SCHEMA_VERSION)?;
            doc.put(ROOT, "id", new.id.as_str())?;
            doc.put(ROOT, "number", new.number.as_str())?;
            doc.put(ROOT, "channel", new.channel.as_str())?;
            doc.put(ROOT, "case_type", new.case_type.as_str())?;
            doc.put(ROOT, "category", new.category.as_str())?;
            doc.put(ROOT, "urgency", new.urgency.as_str())?;
            doc.put(ROOT, "priority", new.priority)?;
            doc.put(ROOT, "title", new.title.as_str())?;
            doc.put(ROOT, "responsible_unit", "")?;
            doc.put(ROOT, "assignee", "")?;
            put_location(&mut doc, &new.location)?;
            doc.put(ROOT, "created_at", now)?;
            doc.put(ROOT, "created_user", author.user.as_str())?;
            doc.put(ROOT, "created_device", author.device.as_str())?;
            doc.put(ROOT, "created_role", author.role.as_str())?;
            let text = doc.put_object(ROOT, "description", ObjType::Text)?;
            doc.splice_text(&text, 0, 0, &new.description)?;
            for list in ["timeline", "notes", "attachments", "related"] {
                doc.put_object(ROOT, list, ObjType::List)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            doc.rollback();
            return Err(e);
        }
        commit(&mut doc, author, now);
        Ok(CaseDoc { doc })
    }

    /// Loads a saved document (snapshot or concatenated changes), upgrading an older schema.
    /// The upgrade is made as a change by `actor` only when one is needed.
    pub fn load(bytes: &[u8], actor: ActorId) -> Result<Self, DocError> {
        let doc = AutoCommit::load(bytes)?.with_actor(actor);
        Self::from_automerge(doc)
    }

    /// Wraps an Automerge document (e.g. one assembled by the sync layer), upgrading it.
    pub fn from_automerge(doc: AutoCommit) -> Result<Self, DocError> {
        let mut case = CaseDoc { doc };
        migrate(&mut case.doc)?;
        Ok(case)
    }

    pub fn automerge(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    pub fn into_automerge(self) -> AutoCommit {
        self.doc
    }

    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// Merges another replica of the same case into this one.
    pub fn merge(&mut self, other: &mut CaseDoc) -> Result<(), DocError> {
        self.doc.merge(&mut other.doc)?;
        Ok(())
    }

    fn id_and_status(&self) -> Result<(Case, lifecycle::Flags), DocError> {
        let case = self.read()?;
        let flags = lifecycle::Flags {
            extension_pending: case.extension_pending,
            needs_review: case.needs_review,
        };
        Ok((case, flags))
    }

    fn ensure_open(&self) -> Result<Case, DocError> {
        let (case, _) = self.id_and_status()?;
        if case.status == Status::Closed {
            return Err(DocError::Closed);
        }
        Ok(case)
    }

    fn list(&self, name: &str) -> Result<ObjId, DocError> {
        list_obj(&self.doc, name)
    }

    /// Edits one field. Refused, with nothing changed, on a closed case or for a field the
    /// author's role may not edit.
    pub fn edit(&mut self, edit: &FieldEdit, author: &Author, now: Millis) -> Result<(), DocError> {
        if !may_edit(author.role, edit.field()) {
            return Err(DocError::FieldNotEditable {
                role: author.role,
                field: edit.field(),
            });
        }
        self.ensure_open()?;
        let doc = &mut self.doc;
        let result = (|| -> Result<(), DocError> {
            match edit {
                FieldEdit::Title(t) if t.trim().is_empty() => return Err(DocError::Empty("title")),
                FieldEdit::Title(t) => doc.put(ROOT, "title", t.as_str())?,
                FieldEdit::Category(c) => doc.put(ROOT, "category", c.as_str())?,
                FieldEdit::CaseType(t) => doc.put(ROOT, "case_type", t.as_str())?,
                FieldEdit::Channel(c) => doc.put(ROOT, "channel", c.as_str())?,
                FieldEdit::Urgency(u) => doc.put(ROOT, "urgency", u.as_str())?,
                FieldEdit::Priority(p) => doc.put(ROOT, "priority", *p)?,
                FieldEdit::Location(l) => put_location(doc, l)?,
                FieldEdit::ResponsibleUnit(u) => doc.put(ROOT, "responsible_unit", u.as_str())?,
                FieldEdit::Assignee(a) => doc.put(ROOT, "assignee", a.as_str())?,
                FieldEdit::AddRelated(id) => {
                    let related = list_obj(doc, "related")?;
                    let len = doc.length(&related);
                    doc.insert(&related, len, id.as_str())?;
                }
            }
            Ok(())
        })();
        self.finish(result, author, now)
    }

    fn finish(
        &mut self,
        result: Result<(), DocError>,
        author: &Author,
        now: Millis,
    ) -> Result<(), DocError> {
        match result {
            Ok(()) => {
                commit(&mut self.doc, author, now);
                Ok(())
            }
            Err(e) => {
                self.doc.rollback();
                Err(e)
            }
        }
    }

    fn description_obj(&self) -> Result<ObjId, DocError> {
        match self.doc.get(ROOT, "description")? {
            Some((Value::Object(ObjType::Text), id)) => Ok(id),
            _ => Err(DocError::Malformed {
                field: "description".into(),
            }),
        }
    }

    /// Replaces the description with `text`, recorded as the smallest edit that gets there, so
    /// that concurrent edits elsewhere in the text survive.
    pub fn set_description(
        &mut self,
        text: &str,
        author: &Author,
        now: Millis,
    ) -> Result<(), DocError> {
        self.check_description(author)?;
        let obj = self.description_obj()?;
        let result = self.doc.update_text(&obj, text).map_err(DocError::from);
        self.finish(result, author, now)
    }

    /// Inserts and deletes at a position (in Unicode scalar values), as a text field reports
    /// keystrokes: the best merge when two people type at once.
    pub fn splice_description(
        &mut self,
        pos: usize,
        delete: usize,
        insert: &str,
        author: &Author,
        now: Millis,
    ) -> Result<(), DocError> {
        self.check_description(author)?;
        let obj = self.description_obj()?;
        let len = self.doc.length(&obj);
        let pos = pos.min(len);
        let delete = delete.min(len - pos) as isize;
        let result = self
            .doc
            .splice_text(&obj, pos, delete, insert)
            .map_err(DocError::from);
        self.finish(result, author, now)
    }

    fn check_description(&self, author: &Author) -> Result<(), DocError> {
        if !may_edit(author.role, "description") {
            return Err(DocError::FieldNotEditable {
                role: author.role,
                field: "description",
            });
        }
        self.ensure_open().map(|_| ())
    }

    /// Performs a lifecycle action after checking the role and the current state. Returns the
    /// case as it reads afterwards. A refused action changes nothing.
    pub fn act(&mut self, action: &Action, author: &Author, now: Millis) -> Result<Case, DocError> {
        let (case, flags) = self.id_and_status()?;
        action.check(author.role, case.status, flags)?;
        let timeline = self.list("timeline")?;
        let doc = &mut self.doc;
        let result = (|| -> Result<(), DocError> {
            let len = doc.length(&timeline);
            let event = doc.insert_object(&timeline, len, ObjType::Map)?;
            let encoded = serde_json::to_string(action).map_err(|_| DocError::Malformed {
                field: "action".into(),
            })?;
            doc.put(&event, "action", encoded)?;
            doc.put(&event, "from", case.status.as_str())?;
            put_author(doc, &event, author, now)?;
            match action {
                Action::Dispatch { unit, assignee } => {
                    doc.put(ROOT, "responsible_unit", unit.as_str())?;
                    doc.put(ROOT, "assignee", assignee.as_str())?;
                }
                Action::MergeInto { master } => {
                    let related = list_obj(doc, "related")?;
                    let len = doc.length(&related);
                    doc.insert(&related, len, master.as_str())?;
                }
                _ => {}
            }
            Ok(())
        })();
        self.finish(result, author, now)?;
        self.read()
    }

    /// Adds a note (notes only grow).
    pub fn add_note(
        &mut self,
        text: &str,
        author: &Author,
        now: Millis,
    ) -> Result<String, DocError> {
        if text.trim().is_empty() {
            return Err(DocError::Empty("note"));
        }
        self.ensure_open()?;
        let notes = self.list("notes")?;
        let doc = &mut self.doc;
        let mut id = String::new();
        let result = (|| -> Result<(), DocError> {
            let len = doc.length(&notes);
            let note = doc.insert_object(&notes, len, ObjType::Map)?;
            id = note.to_string();
            doc.put(&note, "text", text)?;
            put_author(doc, &note, author, now)
        })();
        self.finish(result, author, now)?;
        Ok(id)
    }

    /// Adds a reference to a photo or file kept outside the document.
    pub fn add_attachment(
        &mut self,
        sha256: &str,
        mime: &str,
        size: u64,
        caption: &str,
        author: &Author,
        now: Millis,
    ) -> Result<String, DocError> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DocError::Malformed {
                field: "sha256".into(),
            });
        }
        self.ensure_open()?;
        let list = self.list("attachments")?;
        let doc = &mut self.doc;
        let mut id = String::new();
        let result = (|| -> Result<(), DocError> {
            let len = doc.length(&list);
            let item = doc.insert_object(&list, len, ObjType::Map)?;
            id = item.to_string();
            doc.put(&item, "sha256", sha256.to_ascii_lowercase())?;
            doc.put(&item, "mime", mime)?;
            doc.put(&item, "size", size)?;
            doc.put(&item, "caption", caption)?;
            put_author(doc, &item, author, now)
        })();
        self.finish(result, author, now)?;
        Ok(id)
    }

    /// Reads the whole case. Derived state comes from replaying the timeline.
    pub fn read(&self) -> Result<Case, DocError> {
        let r = Reader { doc: &self.doc };
        let timeline_id = self.list("timeline")?;
        let mut timeline = Vec::new();
        for (i, event_id) in r.items(&timeline_id).into_iter().enumerate() {
            let action_json = r.str(&event_id, "action")?;
            let action: Action =
                serde_json::from_str(&action_json).map_err(|_| DocError::Malformed {
                    field: format!("timeline[{i}].action"),
                })?;
            timeline.push(TimelineEvent {
                id: event_id.to_string(),
                action,
                from: r.parse(&event_id, "from", Status::parse)?,
                author: r.author(&event_id)?,
                at: r.int(&event_id, "at")?,
                conflicted: false,
            });
        }
        let replay = lifecycle::replay(timeline.iter().map(|e| Recorded {
            action: &e.action,
            from: e.from,
            role: e.author.role,
        }));
        for (event, conflicted) in timeline.iter_mut().zip(&replay.conflicted) {
            event.conflicted = *conflicted;
        }
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

        let mut notes = Vec::new();
        for id in r.items(&self.list("notes")?) {
            notes.push(Note {
                id: id.to_string(),
                text: r.str(&id, "text")?,
                author: r.author(&id)?,
                at: r.int(&id, "at")?,
            });
        }
        let mut attachments = Vec::new();
        for id in r.items(&self.list("attachments")?) {
            attachments.push(Attachment {
                id: id.to_string(),
                sha256: r.str(&id, "sha256")?,
                mime: r.str(&id, "mime")?,
                size: r.int(&id, "size")? as u64,
                caption: r.str(&id, "caption")?,
                author: r.author(&id)?,
                at: r.int(&id, "at")?,
            });
        }
        let related_id = self.list("related")?;
        let mut related: Vec<CaseId> = self
            .doc
            .list_range(&related_id, ..)
            .filter_map(|item| match item.value.into_value() {
                Value::Scalar(s) => s.as_str().map(str::to_owned),
                _ => None,
            })
            .collect();
        related.sort();
        related.dedup();

        let gps = match (r.float(&ROOT, "gps_lat"), r.float(&ROOT, "gps_lon")) {
            (Some(lat), Some(lon)) => Some((lat, lon)),
            _ => None,
        };
        Ok(Case {
            id: r.str(&ROOT, "id")?,
            schema_version: r.int(&ROOT, "schema_version")? as u64,
            number: r.str(&ROOT, "number")?,
            channel: r.parse(&ROOT, "channel", Channel::parse)?,
            case_type: r.parse(&ROOT, "case_type", CaseType::parse)?,
            category: r.str(&ROOT, "category")?,
            urgency: r.parse(&ROOT, "urgency", Urgency::parse)?,
            priority: r.bool(&ROOT, "priority")?,
            title: r.str(&ROOT, "title")?,
            description: self.doc.text(self.description_obj()?)?,
            location: Location {
                address: r.str(&ROOT, "address")?,
                area_code: r.str(&ROOT, "area_code")?,
                gps,
            },
            responsible_unit: r.str(&ROOT, "responsible_unit")?,
            assignee: r.str(&ROOT, "assignee")?,
            status: replay.status,
            needs_review: replay.flags.needs_review,
            extension_pending: replay.flags.extension_pending,
            extension_days: replay.extension_days,
            merged_into,
            related,
            follow_up,
            supervisions,
            timeline,
            notes,
            attachments,
            created_by: Author {
                user: r.str(&ROOT, "created_user")?,
                device: r.str(&ROOT, "created_device")?,
                role: r.parse(&ROOT, "created_role", Role::parse)?,
            },
            created_at: r.int(&ROOT, "created_at")?,
        })
    }
}

/// Typed reads of scalar values, with errors that name the field.
struct Reader<'a> {
    doc: &'a AutoCommit,
}

impl Reader<'_> {
    fn scalar(&self, obj: &ObjId, key: &str) -> Option<ScalarValue> {
        match self.doc.get(obj, key) {
            Ok(Some((Value::Scalar(s), _))) => Some(s.into_owned()),
            _ => None,
        }
    }

    fn malformed(key: &str) -> DocError {
        DocError::Malformed { field: key.into() }
    }

    fn str(&self, obj: &ObjId, key: &str) -> Result<String, DocError> {
        match self.scalar(obj, key) {
            Some(ScalarValue::Str(s)) => Ok(s.to_string()),
            _ => Err(Self::malformed(key)),
        }
    }

    fn int(&self, obj: &ObjId, key: &str) -> Result<i64, DocError> {
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

    fn bool(&self, obj: &ObjId, key: &str) -> Result<bool, DocError> {
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

    fn author(&self, obj: &ObjId) -> Result<Author, DocError> {
        Ok(Author {
            user: self.str(obj, "user")?,
            device: self.str(obj, "device")?,
            role: self.parse(obj, "role", Role::parse)?,
        })
    }

    fn items(&self, list: &ObjId) -> Vec<ObjId> {
        self.doc
            .list_range(list, ..)
            .filter_map(|item| match item.value {
                ValueRef::Object(ObjType::Map) => Some(item.id()),
                _ => None,
            })
            .collect()
    }
}

/// Upgrades a document to [`SCHEMA_VERSION`], one step at a time.
///
/// Steps write only scalar registers: two replicas that upgrade the same old document offline
/// then write the same values, and the merge is the same whichever wins. A step must never
/// create a container (see the module comment).
fn migrate(doc: &mut AutoCommit) -> Result<(), DocError> {
    let version = match doc.get(ROOT, "schema_version")? {
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Uint(v) => *v,
            ScalarValue::Int(v) => *v as u64,
            _ => return Err(Reader::malformed("schema_version")),
        },
        _ => return Err(Reader::malformed("schema_version")),
    };
    if version > SCHEMA_VERSION {
        return Err(DocError::TooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let mut current = version;
    while current < SCHEMA_VERSION {
        match current {
            // v1 kept urgency as a boolean `urgent`; v2 names it so that more levels can come.
            1 => {
                let urgent = matches!(
                    doc.get(ROOT, "urgent")?,
                    Some((Value::Scalar(s), _)) if matches!(s.as_ref(), ScalarValue::Boolean(true))
                );
                let urgency = if urgent {
                    Urgency::Urgent
                } else {
                    Urgency::General
                };
                doc.put(ROOT, "urgency", urgency.as_str())?;
                doc.delete(ROOT, "urgent")?;
            }
            other => {
                return Err(DocError::Malformed {
                    field: format!("schema_version {other}"),
                });
            }
        }
        current += 1;
    }
    doc.put(ROOT, "schema_version", SCHEMA_VERSION)?;
    let system = Author {
        user: "migration".into(),
        device: String::new(),
        role: Role::System,
    };
    // The upgrade time is not meaningful; 0 keeps replicas' upgrade changes comparable.
    commit(doc, &system, 0);
    Ok(())
}

/// The complainant's personal data, in a document of its own (see the module comment).
#[derive(Debug, Clone)]
pub struct PersonalDoc {
    doc: AutoCommit,
}

impl PersonalDoc {
    pub fn create(
        complainant: &Complainant,
        author: &Author,
        actor: ActorId,
        now: Millis,
    ) -> Result<Self, DocError> {
        let mut doc = AutoCommit::new().with_actor(actor);
        let mut this = PersonalDoc {
            doc: AutoCommit::new(),
        };
        doc.put(ROOT, "schema_version", SCHEMA_VERSION)?;
        // Created with the document, like every container (see the module comment).
        doc.put_object(ROOT, "reveals", ObjType::List)?;
        this.doc = doc;
        this.set(complainant, author, now)?;
        Ok(this)
    }

    pub fn from_automerge(doc: AutoCommit) -> Self {
        PersonalDoc { doc }
    }

    pub fn automerge(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    pub fn set(&mut self, c: &Complainant, author: &Author, now: Millis) -> Result<(), DocError> {
        if !author.role.may_see_personal_data() {
            return Err(DocError::FieldNotEditable {
                role: author.role,
                field: "complainant",
            });
        }
        self.doc.put(ROOT, "name", c.name.as_str())?;
        self.doc.put(ROOT, "phone", c.phone.as_str())?;
        self.doc.put(ROOT, "anonymous", c.anonymous)?;
        commit(&mut self.doc, author, now);
        Ok(())
    }

    /// Records that `author` looked at the unmasked phone number. The record syncs with the
    /// document, so the server's audit log learns of reveals made offline.
    pub fn record_reveal(&mut self, author: &Author, now: Millis) -> Result<(), DocError> {
        if !author.role.may_see_personal_data() {
            return Err(DocError::FieldNotEditable {
                role: author.role,
                field: "complainant",
            });
        }
        let list = list_obj(&self.doc, "reveals")?;
        let len = self.doc.length(&list);
        let item = self.doc.insert_object(&list, len, ObjType::Map)?;
        put_author(&mut self.doc, &item, author, now)?;
        commit(&mut self.doc, author, now);
        Ok(())
    }

    /// Who revealed the phone number and when, oldest first.
    pub fn reveals(&self) -> Vec<(Author, Millis)> {
        let r = Reader { doc: &self.doc };
        let Ok(list) = list_obj(&self.doc, "reveals") else {
            return Vec::new();
        };
        r.items(&list)
            .into_iter()
            .filter_map(|item| Some((r.author(&item).ok()?, r.int(&item, "at").ok()?)))
            .collect()
    }

    pub fn read(&self) -> Complainant {
        let r = Reader { doc: &self.doc };
        Complainant {
            name: r.str(&ROOT, "name").unwrap_or_default(),
            phone: r.str(&ROOT, "phone").unwrap_or_default(),
            anonymous: r.bool(&ROOT, "anonymous").unwrap_or(false),
        }
    }
}

/// Masks a phone number for lists and exports: 13812341234 → 138****1234.
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() < 7 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

#[cfg(test)]
mod tests;
