//! The layout of the two documents as data: which keys exist, what each holds and who may write
//! it. [`super::CaseDoc`] and [`super::PersonalDoc`] create their containers from here, and the
//! push judge ([`crate::validate`]) checks every operation of every pushed change against it, so
//! the writer and the checker cannot drift apart.

use automerge::ScalarValue;

use crate::model::Role;

/// The kind of value a scalar key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    /// Signed or unsigned: Automerge keeps `u64` and `i64` apart, the reader does not.
    Int,
    Bool,
    F64,
}

impl Kind {
    pub fn admits(self, value: &ScalarValue) -> bool {
        matches!(
            (self, value),
            (Kind::Str, ScalarValue::Str(_))
                | (Kind::Int, ScalarValue::Int(_) | ScalarValue::Uint(_))
                | (Kind::Bool, ScalarValue::Boolean(_))
                | (Kind::F64, ScalarValue::F64(_))
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Str => "text",
            Kind::Int => "an integer",
            Kind::Bool => "true or false",
            Kind::F64 => "a number",
        }
    }
}

/// Who may write a root scalar once the document exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Fixed by the change that creates the document (id, number, creator).
    Never,
    /// The layout version: raised only by a migration step.
    Version,
    /// An editable field, under this name in [`Layout::may_write`].
    Field(&'static str),
}

#[derive(Debug)]
pub struct Scalar {
    pub key: &'static str,
    pub kind: Kind,
    pub write: Write,
    /// A document always has it; only optional keys may be deleted.
    pub required: bool,
}

/// What a list holds.
#[derive(Debug)]
pub enum Item {
    /// Maps with exactly these keys; every entry names its author (user, device, role, at).
    Entry(&'static [(&'static str, Kind)]),
    /// Plain values.
    Value(Kind),
}

/// A list that only grows at its end.
#[derive(Debug)]
pub struct List {
    pub key: &'static str,
    /// What one entry is called in messages: "note", "timeline event".
    pub entry: &'static str,
    pub item: Item,
    /// The editable field an append needs, or `None` when anyone writing the document may
    /// append (what an entry records is checked on its own: actions, authors).
    pub field: Option<&'static str>,
}

/// One document's layout.
#[derive(Debug)]
pub struct Layout {
    /// What the document is called in messages.
    pub name: &'static str,
    pub scalars: &'static [Scalar],
    pub lists: &'static [List],
    /// The free-text field, written by text splices, if the document has one.
    pub text: Option<&'static str>,
    /// May `role` write the editable field named so?
    pub may_write: fn(Role, &str) -> bool,
}

impl Layout {
    pub fn scalar(&self, key: &str) -> Option<&'static Scalar> {
        self.scalars.iter().find(|s| s.key == key)
    }

    pub fn list(&self, key: &str) -> Option<&'static List> {
        self.lists.iter().find(|l| l.key == key)
    }

    /// Is `key` a container (list or text) created with the document?
    pub fn is_container(&self, key: &str) -> bool {
        self.list(key).is_some() || self.text == Some(key)
    }
}

/// Entry fields added after entries first shipped: an entry written by an older app lacks them
/// and reads with their default, so a new entry may leave them out.
pub const LATER_ENTRY_FIELDS: &[&str] = &["personal", "variant", "variant_of"];

/// The keys every entry carries to name its author.
pub const AUTHOR_KEYS: [&str; 4] = ["user", "device", "role", "at"];

const fn required(key: &'static str, kind: Kind, write: Write) -> Scalar {
    Scalar {
        key,
        kind,
        write,
        required: true,
    }
}

const fn field(key: &'static str, kind: Kind, name: &'static str) -> Scalar {
    required(key, kind, Write::Field(name))
}

const TIMELINE_ENTRY: &[(&str, Kind)] = &[
    ("action", Kind::Str),
    ("from", Kind::Str),
    ("user", Kind::Str),
    ("device", Kind::Str),
    ("role", Kind::Str),
    ("at", Kind::Int),
];

const NOTE_ENTRY: &[(&str, Kind)] = &[
    ("text", Kind::Str),
    ("user", Kind::Str),
    ("device", Kind::Str),
    ("role", Kind::Str),
    ("at", Kind::Int),
];

const ATTACHMENT_ENTRY: &[(&str, Kind)] = &[
    ("sha256", Kind::Str),
    ("mime", Kind::Str),
    ("size", Kind::Int),
    ("caption", Kind::Str),
    ("personal", Kind::Bool),
    ("variant", Kind::Str),
    ("variant_of", Kind::Str),
    ("user", Kind::Str),
    ("device", Kind::Str),
    ("role", Kind::Str),
    ("at", Kind::Int),
];

const REVEAL_ENTRY: &[(&str, Kind)] = &[
    ("user", Kind::Str),
    ("device", Kind::Str),
    ("role", Kind::Str),
    ("at", Kind::Int),
];

/// A case document (schema [`super::SCHEMA_VERSION`]; see the module comment of [`super`]).
pub static CASE: Layout = Layout {
    name: "case",
    scalars: &[
        required("schema_version", Kind::Int, Write::Version),
        required("id", Kind::Str, Write::Never),
        required("number", Kind::Str, Write::Never),
        field("channel", Kind::Str, "channel"),
        field("case_type", Kind::Str, "case_type"),
        field("category", Kind::Str, "category"),
        field("urgency", Kind::Str, "urgency"),
        field("priority", Kind::Bool, "priority"),
        field("title", Kind::Str, "title"),
        field("responsible_unit", Kind::Str, "responsible_unit"),
        field("assignee", Kind::Str, "assignee"),
        field("address", Kind::Str, "location"),
        field("area_code", Kind::Str, "location"),
        Scalar {
            key: "gps_lat",
            kind: Kind::F64,
            write: Write::Field("location"),
            required: false,
        },
        Scalar {
            key: "gps_lon",
            kind: Kind::F64,
            write: Write::Field("location"),
            required: false,
        },
        required("created_at", Kind::Int, Write::Never),
        required("created_user", Kind::Str, Write::Never),
        required("created_device", Kind::Str, Write::Never),
        required("created_role", Kind::Str, Write::Never),
    ],
    lists: &[
        List {
            key: "timeline",
            entry: "timeline event",
            item: Item::Entry(TIMELINE_ENTRY),
            field: None,
        },
        List {
            key: "notes",
            entry: "note",
            item: Item::Entry(NOTE_ENTRY),
            field: None,
        },
        List {
            key: "attachments",
            entry: "attachment",
            item: Item::Entry(ATTACHMENT_ENTRY),
            field: None,
        },
        List {
            key: "related",
            entry: "related case",
            item: Item::Value(Kind::Str),
            field: Some("related"),
        },
    ],
    text: Some("description"),
    may_write: may_edit,
};

/// A personal-data document: the complainant and the log of who revealed the phone number.
/// Only roles that may see personal data write it at all.
pub static PERSONAL: Layout = Layout {
    name: "personal-data document",
    scalars: &[
        required("schema_version", Kind::Int, Write::Never),
        field("name", Kind::Str, "complainant"),
        field("phone", Kind::Str, "complainant"),
        field("anonymous", Kind::Bool, "complainant"),
    ],
    lists: &[List {
        key: "reveals",
        entry: "reveal record",
        item: Item::Entry(REVEAL_ENTRY),
        field: None,
    }],
    text: None,
    may_write: may_write_personal,
};

/// Which fields a role may edit directly (outside lifecycle actions); the one table the phone
/// ([`super::CaseDoc::edit`]) and the push judge both ask. Routing fields belong to the people
/// who route; a handling unit only works the case and writes in the description. What an action
/// writes besides its event is [`crate::lifecycle::Action::effects`].
pub fn may_edit(role: Role, field: &str) -> bool {
    match role {
        Role::TownshipStaff | Role::HotlineCentre | Role::Admin => true,
        Role::GridWorker => !matches!(field, "responsible_unit" | "assignee"),
        Role::HandlingUnit => matches!(field, "description" | "related"),
        Role::System => false,
    }
}

fn may_write_personal(role: Role, _field: &str) -> bool {
    role.may_see_personal_data()
}
