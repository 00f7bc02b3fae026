//! A case as an Automerge document, behind a typed API so no caller touches raw paths.
//!
//! Layout of the root map (schema [`SCHEMA_VERSION`]):
//! - scalar registers: `schema_version`, `id`, `number`, `channel`, `case_type`, `category`,
//!   `urgency`, `priority`, `title`, `responsible_unit`, `assignee`, `address`, `area_code`,
//!   `gps_lat`, `gps_lon`, `created_at`, `created_user`, `created_device`, `created_role`;
//! - `description`: Automerge text, so two people typing offline both keep their words;
//! - `timeline`, `notes`, `attachments`, `related`: lists that only grow.
//!
//! The same layout as data, with who may write what, is [`schema::CASE`]; the push judge
//! (`crate::validate`) holds every pushed operation against it.
//!
//! Every container is created when the case is created: if two replicas created the same list
//! concurrently, Automerge would keep only one of them and the other's items would vanish.
//! Every change carries its author (user, device, role) in the commit message and the device
//! time in the commit timestamp.
//!
//! The complainant's personal data lives in a second document, [`PersonalDoc`], so it can be
//! withheld from devices that may not see it: withholding bytes is the only way to keep them off
//! a phone.

mod personal;
mod read;
pub mod schema;

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, Change, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, Value};
use automerge::{ScalarValue, transaction::CommitOptions};
use serde::{Deserialize, Serialize};

use crate::area::{AreaCode, AreaError};
use crate::lifecycle::{Action, Effect, LifecycleError};
use crate::model::*;

pub use personal::{PersonalDoc, mask_phone};
use read::Reader;
pub(crate) use read::{read_case, read_state};
pub use schema::may_edit;

/// Version of the document layout written by this code. Bump it with a step in `migrate`.
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

fn list_obj(doc: &AutoCommit, name: &str) -> Result<ObjId, DocError> {
    Reader::new(doc, None).container(name, ObjType::List)
}

/// Appends a value at the end of a root list.
fn append(doc: &mut AutoCommit, list: &str, value: &str) -> Result<(), DocError> {
    let list = list_obj(doc, list)?;
    let len = doc.length(&list);
    doc.insert(&list, len, value)?;
    Ok(())
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
            for list in schema::CASE.lists {
                doc.put_object(ROOT, list.key, ObjType::List)?;
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

    fn id_and_status(&self) -> Result<(Case, crate::lifecycle::Flags), DocError> {
        let case = self.read()?;
        let flags = crate::lifecycle::Flags {
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
                FieldEdit::AddRelated(id) => append(doc, "related", id)?,
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
            for effect in action.effects() {
                match effect {
                    Effect::Set { field, value } => doc.put(ROOT, field, value)?,
                    Effect::Append { list, value } => append(doc, list, value)?,
                }
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

    /// Adds a reference to a photo or file kept outside the document (not personal).
    pub fn add_attachment(
        &mut self,
        sha256: &str,
        mime: &str,
        size: u64,
        caption: &str,
        author: &Author,
        now: Millis,
    ) -> Result<String, DocError> {
        let new = NewAttachment {
            sha256: sha256.into(),
            mime: mime.into(),
            size,
            caption: caption.into(),
            personal: false,
            variant: None,
        };
        self.attach(&new, author, now)
    }

    /// Adds a reference to a photo or file kept outside the document; returns the entry's id.
    pub fn attach(
        &mut self,
        new: &NewAttachment,
        author: &Author,
        now: Millis,
    ) -> Result<String, DocError> {
        let sha256 = &new.sha256;
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
            doc.put(&item, "mime", new.mime.as_str())?;
            doc.put(&item, "size", new.size)?;
            doc.put(&item, "caption", new.caption.as_str())?;
            doc.put(&item, "personal", new.personal)?;
            if let Some(variant) = &new.variant {
                doc.put(&item, "variant", variant.kind.as_str())?;
                doc.put(&item, "variant_of", variant.of.to_ascii_lowercase())?;
            }
            put_author(doc, &item, author, now)
        })();
        self.finish(result, author, now)?;
        Ok(id)
    }
}

/// Upgrades a document to [`SCHEMA_VERSION`], one step at a time.
///
/// Steps write only scalar registers: two replicas that upgrade the same old document offline
/// then write the same values, and the merge is the same whichever wins. A step must never
/// create a container (see the module comment).
pub(crate) fn migrate(doc: &mut AutoCommit) -> Result<(), DocError> {
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
    // The upgrade time is not meaningful; 0 keeps replicas' upgrade changes comparable.
    commit(doc, &migration_author(), 0);
    Ok(())
}

/// The author recorded on the change a schema upgrade makes: no person made it, and the push
/// judge accepts it only when it is exactly what [`migrate`] writes.
pub(crate) fn migration_author() -> Author {
    Author {
        user: "migration".into(),
        device: String::new(),
        role: Role::System,
    }
}

#[cfg(test)]
mod tests;
