//! The complainant's personal data, kept apart from the case (see the module comment of `doc`).

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ObjType, ROOT, ReadDoc};

use super::read::Reader;
use super::{DocError, SCHEMA_VERSION, commit, put_author, schema};
use crate::model::{Author, Complainant, Millis};

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
        // Created with the document, like every container (see the module comment of `doc`).
        for list in schema::PERSONAL.lists {
            doc.put_object(ROOT, list.key, ObjType::List)?;
        }
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
        let list = Reader::new(&self.doc, None).container("reveals", ObjType::List)?;
        let len = self.doc.length(&list);
        let item = self.doc.insert_object(&list, len, ObjType::Map)?;
        put_author(&mut self.doc, &item, author, now)?;
        commit(&mut self.doc, author, now);
        Ok(())
    }

    /// Who revealed the phone number and when, oldest first.
    pub fn reveals(&self) -> Vec<(Author, Millis)> {
        let r = Reader::new(&self.doc, None);
        let Ok(list) = r.container("reveals", ObjType::List) else {
            return Vec::new();
        };
        r.items(&list)
            .into_iter()
            .filter_map(|item| Some((r.author(&item).ok()?, r.int(&item, "at").ok()?)))
            .collect()
    }

    pub fn read(&self) -> Complainant {
        let r = Reader::new(&self.doc, None);
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
