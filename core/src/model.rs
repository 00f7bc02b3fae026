//! Plain values that describe a case. These are what callers (store, server, bindings) see; none
//! of them knows about Automerge.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC. Kept as an integer so documents, the wire format and
/// SQLite all store the same value without time-zone or precision surprises.
pub type Millis = i64;

/// A stable identifier for a case, chosen on the phone that registers it (a UUID in practice).
pub type CaseId = String;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The spelling used in documents, policy files, the database and the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// Where the request came in (热线/网上/来信/来访/视频/网格采集).
    Channel {
        Hotline = "hotline",
        Web = "web",
        Letter = "letter",
        Visit = "visit",
        Video = "video",
        Grid = "grid",
    }
);

string_enum!(
    /// 咨询 / 求助 / 投诉 / 举报 / 建议, plus 信访 petitions, which run on their own clocks.
    CaseType {
        Inquiry = "inquiry",
        Help = "help",
        Complaint = "complaint",
        Report = "report",
        Suggestion = "suggestion",
        Petition = "petition",
    }
);

string_enum!(
    /// 紧急 / 一般.
    Urgency {
        Urgent = "urgent",
        General = "general",
    }
);

string_enum!(
    /// The lifecycle states of domain.md. Supervision and pending extensions are flags, not states.
    Status {
        Draft = "draft",
        Registered = "registered",
        NotAccepted = "not_accepted",
        Dispatched = "dispatched",
        Signed = "signed",
        InProgress = "in_progress",
        Replied = "replied",
        Reviewed = "reviewed",
        FollowedUp = "followed_up",
        Closed = "closed",
        ReturnRequested = "return_requested",
        Returned = "returned",
        Merged = "merged",
        Reopened = "reopened",
    }
);

string_enum!(
    /// Who a user is; decides which actions they may take and what their devices receive.
    Role {
        GridWorker = "grid_worker",
        TownshipStaff = "township_staff",
        HandlingUnit = "handling_unit",
        HotlineCentre = "hotline_centre",
        Admin = "admin",
        /// The server itself, when its deadline checks record a supervision.
        System = "system",
    }
);

string_enum!(
    /// What a second file kept for a photo is (see [`Variant`]).
    VariantKind {
        /// The photo as taken, kept beside the prepared one when the photo policy says so.
        Original = "original",
        /// A small JPEG of the photo, for lists: phones may prefetch it, the photo stays lazy.
        Thumbnail = "thumbnail",
    }
);

string_enum!(
    /// 满意 / 基本满意 / 不满意.
    Satisfaction {
        Satisfied = "satisfied",
        BasicallySatisfied = "basically_satisfied",
        Dissatisfied = "dissatisfied",
    }
);

impl Role {
    /// Roles that may be given the whole country as their jurisdiction. A grid worker works in
    /// one village or community and a handling unit is one department (domain.md, roles):
    /// "everywhere" for them is a mistake that would hand over every case (issue 8.5).
    pub fn may_be_everywhere(self) -> bool {
        !matches!(self, Role::GridWorker | Role::HandlingUnit)
    }

    /// Roles that need the complainant's name and phone to do their work (domain.md, 个人信息保护法
    /// art. 51). Handling units never get them: a petitioner's identity must not reach the unit
    /// complained about.
    pub fn may_see_personal_data(self) -> bool {
        matches!(
            self,
            Role::GridWorker | Role::TownshipStaff | Role::HotlineCentre
        )
    }
}

/// Who made a change: the user, the device they used and the role they acted in. Recorded with
/// every change so a timeline can always say who did what from which phone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    pub user: String,
    pub device: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub address: String,
    pub area_code: String,
    pub gps: Option<(f64, f64)>,
}

/// The complainant's personal data. Lives in its own document so that devices whose role may not
/// see it never receive its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Complainant {
    pub name: String,
    pub phone: String,
    pub anonymous: bool,
}

/// What a phone supplies when it registers a new case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewCase {
    pub id: CaseId,
    pub number: String,
    pub channel: Channel,
    pub case_type: CaseType,
    pub category: String,
    pub urgency: Urgency,
    pub priority: bool,
    pub title: String,
    pub description: String,
    pub location: Location,
}

/// One action in the timeline, as recorded by whoever performed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEvent {
    /// Unique within the case; lets replicas recognise the same event after a merge.
    pub id: String,
    pub action: crate::lifecycle::Action,
    /// The state the author saw when acting; a merge that finds another state here knows the
    /// action was concurrent with something else.
    pub from: Status,
    pub author: Author,
    /// The author's device clock. Servers correct it with the measured clock offset.
    pub at: Millis,
    /// Set when replaying the timeline found this action could not follow the actions ordered
    /// before it (a conflict between offline replicas). The action is kept, not applied.
    pub conflicted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub id: String,
    pub text: String,
    pub author: Author,
    pub at: Millis,
}

/// A photo or file stored elsewhere (the phone's gallery, an object store); the case keeps only
/// a reference and a checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: String,
    pub sha256: String,
    pub mime: String,
    pub size: u64,
    pub caption: String,
    /// Shows the complainant (a face, a letter with their name): the server never sends it to
    /// the unit complained about. Documents written before the field existed read as `false`.
    #[serde(default)]
    pub personal: bool,
    /// Set on a second file kept for a photo: its original or its thumbnail. Documents written
    /// before the field existed read as `None` (a file of its own).
    #[serde(default)]
    pub variant: Option<Variant>,
    pub author: Author,
    pub at: Millis,
}

/// A file kept for another attachment of the same case: what it is, and the SHA-256 of the
/// photo it belongs to. An entry of its own, so the server references, scopes and serves it as
/// any attachment; the app shows it with its photo, not as a file of the case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    pub kind: VariantKind,
    /// The SHA-256 of the photo this file belongs to.
    pub of: String,
}

/// What a phone records when it attaches a file: [`Attachment`] without the author and time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAttachment {
    pub sha256: String,
    pub mime: String,
    pub size: u64,
    pub caption: String,
    pub personal: bool,
    pub variant: Option<Variant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUpResult {
    pub solved: bool,
    pub satisfaction: Satisfaction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supervision {
    pub level: u8,
    pub reason: String,
    pub by: Author,
    pub at: Millis,
}

/// A case read back from its document. Derived state (status, flags) is computed by replaying the
/// timeline, so every replica that holds the same changes reads the same value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub id: CaseId,
    pub schema_version: u64,
    pub number: String,
    pub channel: Channel,
    pub case_type: CaseType,
    pub category: String,
    pub urgency: Urgency,
    pub priority: bool,
    pub title: String,
    pub description: String,
    pub location: Location,
    pub responsible_unit: String,
    pub assignee: String,
    pub status: Status,
    /// Conflicting offline actions were merged; a person should look.
    pub needs_review: bool,
    pub extension_pending: bool,
    /// Days granted by all granted extensions together.
    pub extension_days: u32,
    pub merged_into: Option<CaseId>,
    pub related: Vec<CaseId>,
    pub follow_up: Option<FollowUpResult>,
    pub supervisions: Vec<Supervision>,
    pub timeline: Vec<TimelineEvent>,
    pub notes: Vec<Note>,
    pub attachments: Vec<Attachment>,
    pub created_by: Author,
    pub created_at: Millis,
}

impl Case {
    /// When the case entered its current status, by the author's clock: the start of the stage
    /// clock that the deadline engine runs.
    pub fn status_since(&self) -> Millis {
        self.timeline
            .iter()
            .rev()
            .find(|e| !e.conflicted && e.action.target_status(e.from).is_some())
            .map(|e| e.at)
            .unwrap_or(self.created_at)
    }

    /// The distinct SHA-256s the case's attachments reference, lowercase (as the document
    /// stores them): the blobs a store must keep for it, on the phone and on the server.
    pub fn attachment_hashes(&self) -> Vec<String> {
        let mut hashes: Vec<String> = self
            .attachments
            .iter()
            .map(|a| a.sha256.to_ascii_lowercase())
            .collect();
        hashes.sort();
        hashes.dedup();
        hashes
    }
}
