//! The plain values that cross the boundary, and their field-by-field conversions from and to
//! core's types. Enums that are already plain (status, type, urgency, the lifecycle action…) are
//! core's own types, declared to uniffi as remote types; structs get a `…Record` twin here
//! because core's carry shapes uniffi cannot (tuples) or names the apps should not depend on.

use gridcase_core::deadline::{DeadlineState, DeadlineStatus};
use gridcase_core::doc::{FieldEdit, split_doc_id};
use gridcase_core::lifecycle::Action;
use gridcase_core::model::{
    Attachment, Author, Case, CaseType, Channel, Complainant, FollowUpResult, Location, Note, Role,
    Satisfaction, Status, Supervision, TimelineEvent, Urgency,
};
use gridcase_core::phone as core_phone;
use gridcase_core::phone::queries::CaseList as CoreList;
use gridcase_core::phone::{
    CaseChanges, CaseDetail, ChangeSource, RejectedDoc, SyncPhase, SyncProgress, SyncStatus,
    SyncSummary,
};
use gridcase_core::policy::Stage;
use gridcase_core::store::{CasePage, CaseSummary};
use gridcase_core::sync::Identity;

// ----- core's enums, as they are -----

/// Where the request came in (热线/网上/来信/来访/视频/网格采集).
#[uniffi::remote(Enum)]
pub enum Channel {
    Hotline,
    Web,
    Letter,
    Visit,
    Video,
    Grid,
}

/// 咨询 / 求助 / 投诉 / 举报 / 建议, and 信访 petitions.
#[uniffi::remote(Enum)]
pub enum CaseType {
    Inquiry,
    Help,
    Complaint,
    Report,
    Suggestion,
    Petition,
}

/// 紧急 / 一般.
#[uniffi::remote(Enum)]
pub enum Urgency {
    Urgent,
    General,
}

/// The lifecycle states (受理→派单→签收→办理→回复→审核→回访→办结 and the side paths).
#[uniffi::remote(Enum)]
pub enum Status {
    Draft,
    Registered,
    NotAccepted,
    Dispatched,
    Signed,
    InProgress,
    Replied,
    Reviewed,
    FollowedUp,
    Closed,
    ReturnRequested,
    Returned,
    Merged,
    Reopened,
}

#[uniffi::remote(Enum)]
pub enum Role {
    GridWorker,
    TownshipStaff,
    HandlingUnit,
    HotlineCentre,
    Admin,
    System,
}

/// 满意 / 基本满意 / 不满意.
#[uniffi::remote(Enum)]
pub enum Satisfaction {
    Satisfied,
    BasicallySatisfied,
    Dissatisfied,
}

/// Everything a person can do to a case (the lifecycle actions), with their parameters.
#[uniffi::remote(Enum)]
pub enum Action {
    Register,
    NotAccept {
        reason: String,
    },
    Dispatch {
        unit: String,
        assignee: String,
    },
    Sign,
    Start,
    Reply {
        text: String,
    },
    Approve,
    Reject {
        reason: String,
    },
    FollowUp {
        solved: bool,
        satisfaction: Satisfaction,
    },
    Close,
    RequestReturn {
        reason: String,
    },
    ApproveReturn,
    RequestExtension {
        days: u32,
        reason: String,
    },
    GrantExtension {
        days: u32,
    },
    DenyExtension {
        reason: String,
    },
    MergeInto {
        master: String,
    },
    Reopen {
        reason: String,
    },
    Supervise {
        level: u8,
        reason: String,
    },
    ResolveConflict {
        status: Status,
    },
}

/// The stretch of the lifecycle whose clock runs.
#[uniffi::remote(Enum)]
pub enum Stage {
    Route,
    Sign,
    Handle,
    Review,
    FollowUp,
    Close,
    ReturnReview,
}

/// Green, yellow (预警) or red (超期).
#[uniffi::remote(Enum)]
pub enum DeadlineState {
    OnTime,
    DueSoon,
    Overdue,
}

#[uniffi::remote(Enum)]
pub enum SyncPhase {
    Sending,
    Applying,
    Uploading,
    Done,
}

/// Where a change came from: an edit on this phone, or a sync page.
#[uniffi::remote(Enum)]
pub enum ChangeSource {
    Local,
    Sync,
}

/// The lists a screen shows.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum CaseList {
    /// Every case on this phone, by area code.
    All,
    /// Assigned to or registered by this phone's user, most recently changed first.
    Mine,
    /// Most of the stage's time used (预警), soonest first.
    DueSoon,
    /// Past the deadline (超期), most overdue first.
    Overdue,
    /// In one state, most recently changed first.
    Status { status: Status },
    /// In an area: a prefix of the 12-digit code (a jurisdiction), by area code.
    Area { prefix: String },
    /// Title or number contains the text, most recently changed first.
    Search { text: String },
}

// ----- inputs -----

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct GpsPoint {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct LocationRecord {
    pub address: String,
    /// 12-digit statistical division code (330604101201).
    pub area_code: String,
    pub gps: Option<GpsPoint>,
}

/// What the app supplies to register a case; the id is chosen by the library.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct NewCaseRecord {
    pub number: String,
    pub channel: Channel,
    pub case_type: CaseType,
    pub category: String,
    pub urgency: Urgency,
    /// The epidemic/safety priority flag.
    pub priority: bool,
    pub title: String,
    pub description: String,
    pub location: LocationRecord,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ComplainantRecord {
    pub name: String,
    pub phone: String,
    pub anonymous: bool,
}

/// A change to one field of a case (the description has its own methods).
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum CaseEdit {
    Title { value: String },
    Category { value: String },
    CaseType { value: CaseType },
    Channel { value: Channel },
    Urgency { value: Urgency },
    Priority { value: bool },
    Location { value: LocationRecord },
    ResponsibleUnit { value: String },
    Assignee { value: String },
    AddRelated { case_id: String },
}

/// A photo or file kept outside the case (the gallery, an object store): the case keeps the
/// reference and checksum only.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AttachmentRef {
    pub sha256: String,
    pub mime: String,
    pub size: u64,
    pub caption: String,
}

/// How photos are prepared before they are kept and uploaded: the county's policy.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PhotoPolicyRecord {
    /// A photo longer than this on its longest side is downscaled and re-encoded as JPEG.
    pub max_side_px: u32,
    /// JPEG quality (1-100) of a re-encoded photo.
    pub jpeg_quality: u8,
    /// Keep the photo's location (EXIF GPS); otherwise it is stripped.
    pub keep_location: bool,
    /// Keep the photo as taken beside a downscaled one, uploaded too (an `original` variant).
    #[uniffi(default = false)]
    pub keep_original: bool,
    /// Longest side of each photo's thumbnail (a `thumbnail` variant); 0: none.
    #[uniffi(default = 320)]
    pub thumbnail_side_px: u32,
    /// Fetch the thumbnails of the cases' photos after each sync (photos stay lazy).
    #[uniffi(default = true)]
    pub prefetch_thumbnails: bool,
}

impl From<PhotoPolicyRecord> for gridcase_core::media::PhotoPolicy {
    fn from(p: PhotoPolicyRecord) -> Self {
        gridcase_core::media::PhotoPolicy {
            max_side_px: p.max_side_px,
            jpeg_quality: p.jpeg_quality,
            keep_location: p.keep_location,
            keep_original: p.keep_original,
            thumbnail_side_px: p.thumbnail_side_px,
            prefetch_thumbnails: p.prefetch_thumbnails,
        }
    }
}

// ----- outputs -----

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AuthorRecord {
    pub user: String,
    pub device: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct TimelineEventRecord {
    pub id: String,
    pub action: Action,
    /// The state the author saw when acting.
    pub from_status: Status,
    pub author: AuthorRecord,
    /// Milliseconds since the epoch, by the author's device clock.
    pub at: i64,
    /// Kept but not applied: it conflicted with a concurrent offline action.
    pub conflicted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NoteRecord {
    pub id: String,
    pub text: String,
    pub author: AuthorRecord,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AttachmentRecord {
    pub id: String,
    pub sha256: String,
    pub mime: String,
    pub size: u64,
    pub caption: String,
    /// Shows the complainant: the unit complained about never receives it.
    pub personal: bool,
    /// Set on a second file kept for a photo: `original` or `thumbnail` (else a file of its
    /// own), with the SHA-256 of the photo in `variant_of`.
    pub variant: Option<String>,
    pub variant_of: Option<String>,
    pub author: AuthorRecord,
    pub at: i64,
}

/// Where an attachment's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum AttachmentState {
    /// Attached here, waiting for its upload (the next sync).
    Local,
    /// Attached here; the server holds `sent` bytes so far.
    Uploading { sent: u64 },
    /// Attached here and stored by the server.
    Uploaded,
    /// The server refused it for good (type, size, quota); it is not sent again.
    Failed { reason: String },
    /// Attached on another phone; `open_attachment` fetches it.
    RemoteOnly,
    /// Attached on another phone and fetched.
    Downloaded,
}

/// An attachment of a case with where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AttachmentStatusRecord {
    pub attachment: AttachmentRecord,
    pub state: AttachmentState,
}

/// An attachment the server refused for good in a sync.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RefusedUploadRecord {
    pub sha256: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct FollowUpRecord {
    pub solved: bool,
    pub satisfaction: Satisfaction,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SupervisionRecord {
    pub level: u8,
    pub reason: String,
    pub by: AuthorRecord,
    pub at: i64,
}

/// A whole case as this phone holds it.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct CaseRecord {
    pub id: String,
    pub number: String,
    pub channel: Channel,
    pub case_type: CaseType,
    pub category: String,
    pub urgency: Urgency,
    pub priority: bool,
    pub title: String,
    pub description: String,
    pub location: LocationRecord,
    pub responsible_unit: String,
    pub assignee: String,
    pub status: Status,
    /// Conflicting offline actions were merged; a person should look.
    pub needs_review: bool,
    pub extension_pending: bool,
    pub extension_days: u32,
    pub merged_into: Option<String>,
    pub related: Vec<String>,
    pub follow_up: Option<FollowUpRecord>,
    pub supervisions: Vec<SupervisionRecord>,
    pub timeline: Vec<TimelineEventRecord>,
    pub notes: Vec<NoteRecord>,
    pub attachments: Vec<AttachmentRecord>,
    pub created_by: AuthorRecord,
    pub created_at: i64,
    /// Present when this phone holds the personal data (its role may see it).
    pub complainant: Option<ComplainantRecord>,
    /// The complainant's phone as lists show it (138****1234).
    pub masked_phone: Option<String>,
}

/// One row of a case list.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CaseSummaryRecord {
    pub case_id: String,
    pub number: String,
    pub title: String,
    pub status: Status,
    pub case_type: CaseType,
    pub urgency: Urgency,
    pub priority: bool,
    pub area_code: String,
    pub assignee: String,
    pub responsible_unit: String,
    pub created_by: String,
    /// The stage whose clock runs, if any.
    pub stage: Option<Stage>,
    pub due_at: Option<i64>,
    /// The due date relied on a year without holiday data.
    pub due_provisional: bool,
    pub needs_review: bool,
    pub updated_at: i64,
    /// Holds changes the server has not acknowledged yet.
    pub has_pending: bool,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CasePageRecord {
    pub cases: Vec<CaseSummaryRecord>,
    /// Where the next page starts; `None` when this is the last.
    pub next_offset: Option<u64>,
}

/// Which cases changed (case ids), as a [`crate::CaseChangeListener`] hears it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CaseChangesRecord {
    pub source: ChangeSource,
    /// Content changed (edited here, or received): reload rows and open details.
    pub updated: Vec<String>,
    /// The server stored this phone's changes: the "not yet sent" mark may go.
    pub acknowledged: Vec<String>,
    /// The server refused this phone's changes (`syncStatus().rejected` says why).
    pub rejected: Vec<String>,
    /// No longer on this phone (left its scope, or a discarded draft).
    pub removed: Vec<String>,
    /// Every list may have changed (new deadline rules, a wipe): reload what is shown.
    pub everything: bool,
}

/// The countdown of a case's current stage, computed on the phone.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct DeadlineRecord {
    pub stage: Stage,
    pub started_at: i64,
    pub due_at: i64,
    /// Negative when overdue.
    pub remaining_ms: i64,
    /// Share of the stage's time used; above 1 when overdue.
    pub fraction_used: f64,
    pub state: DeadlineState,
    /// A year without holiday data was crossed: the due date may still move.
    pub provisional: bool,
    /// The clock stands still for a pending extension request.
    pub paused: bool,
    pub calendar_version: String,
    /// The rule's limit, e.g. 2 and "working_days".
    pub limit_amount: u32,
    pub limit_unit: String,
}

/// Changes the server refused: kept on the phone, not sent again until the case is edited
/// again or the changes are discarded.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RejectionRecord {
    /// The document: the case id, or `<case id>#pii` for its personal data.
    pub doc_id: String,
    pub case_id: String,
    pub personal_data: bool,
    /// A machine-readable reason (`action_not_allowed`, `case_closed`, `out_of_jurisdiction`…).
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncStatusRecord {
    /// Documents holding changes the server has not acknowledged (rejected ones included).
    pub pending_changes: u64,
    pub last_sync_at: Option<i64>,
    pub last_error: Option<String>,
    pub rejected: Vec<RejectionRecord>,
    /// A first download (restore) is under way and has more pages to fetch.
    pub restoring: bool,
}

/// Reported to the [`crate::SyncListener`] as a sync goes.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ProgressRecord {
    pub phase: SyncPhase,
    pub cases_sent: u64,
    pub cases_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Documents still to come in later pages.
    pub remaining: u64,
    /// Bytes of cases too large for one page received in parts so far (each part is kept:
    /// it is not downloaded again after a dropped connection).
    pub part_bytes: u64,
    /// Attachment bytes the server holds of those queued when the upload began.
    pub blob_bytes_sent: u64,
    /// Bytes of the attachments queued when the upload began.
    pub blob_bytes_total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncSummaryRecord {
    pub pages: u32,
    pub progress: ProgressRecord,
    /// Changes the server refused in this sync.
    pub rejected: Vec<RejectionRecord>,
    /// Cases that left this phone's scope but are kept until their changes are sent.
    pub kept_pending: Vec<String>,
    /// Stored but unreadable by this version of the app (update it).
    pub unreadable: Vec<String>,
    /// Attachments (SHA-256) the server stores since this sync.
    pub uploaded: Vec<String>,
    /// Attachments the server refused for good (see [`AttachmentState::Failed`]).
    pub upload_refused: Vec<RefusedUploadRecord>,
    /// Why the other queued attachments wait for the next sync, if they do.
    pub upload_deferred: Option<String>,
}

/// Who the server knows this device as (learnt in the first sync).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct IdentityRecord {
    pub user: String,
    pub device: String,
    pub role: String,
    /// Area-code prefix the user is responsible for ("" = everywhere).
    pub jurisdiction: String,
}

// ----- conversions -----

impl From<LocationRecord> for Location {
    fn from(l: LocationRecord) -> Self {
        Location {
            address: l.address,
            area_code: l.area_code,
            gps: l.gps.map(|g| (g.lat, g.lon)),
        }
    }
}

impl From<Location> for LocationRecord {
    fn from(l: Location) -> Self {
        LocationRecord {
            address: l.address,
            area_code: l.area_code,
            gps: l.gps.map(|(lat, lon)| GpsPoint { lat, lon }),
        }
    }
}

impl From<ComplainantRecord> for Complainant {
    fn from(c: ComplainantRecord) -> Self {
        Complainant {
            name: c.name,
            phone: c.phone,
            anonymous: c.anonymous,
        }
    }
}

impl From<Complainant> for ComplainantRecord {
    fn from(c: Complainant) -> Self {
        ComplainantRecord {
            name: c.name,
            phone: c.phone,
            anonymous: c.anonymous,
        }
    }
}

impl From<CaseEdit> for FieldEdit {
    fn from(e: CaseEdit) -> Self {
        match e {
            CaseEdit::Title { value } => FieldEdit::Title(value),
            CaseEdit::Category { value } => FieldEdit::Category(value),
            CaseEdit::CaseType { value } => FieldEdit::CaseType(value),
            CaseEdit::Channel { value } => FieldEdit::Channel(value),
            CaseEdit::Urgency { value } => FieldEdit::Urgency(value),
            CaseEdit::Priority { value } => FieldEdit::Priority(value),
            CaseEdit::Location { value } => FieldEdit::Location(value.into()),
            CaseEdit::ResponsibleUnit { value } => FieldEdit::ResponsibleUnit(value),
            CaseEdit::Assignee { value } => FieldEdit::Assignee(value),
            CaseEdit::AddRelated { case_id } => FieldEdit::AddRelated(case_id),
        }
    }
}

impl From<Author> for AuthorRecord {
    fn from(a: Author) -> Self {
        AuthorRecord {
            user: a.user,
            device: a.device,
            role: a.role,
        }
    }
}

impl From<TimelineEvent> for TimelineEventRecord {
    fn from(e: TimelineEvent) -> Self {
        TimelineEventRecord {
            id: e.id,
            action: e.action,
            from_status: e.from,
            author: e.author.into(),
            at: e.at,
            conflicted: e.conflicted,
        }
    }
}

impl From<Note> for NoteRecord {
    fn from(n: Note) -> Self {
        NoteRecord {
            id: n.id,
            text: n.text,
            author: n.author.into(),
            at: n.at,
        }
    }
}

impl From<Attachment> for AttachmentRecord {
    fn from(a: Attachment) -> Self {
        AttachmentRecord {
            id: a.id,
            sha256: a.sha256,
            mime: a.mime,
            size: a.size,
            caption: a.caption,
            personal: a.personal,
            variant: a.variant.as_ref().map(|v| v.kind.as_str().to_owned()),
            variant_of: a.variant.map(|v| v.of),
            author: a.author.into(),
            at: a.at,
        }
    }
}

impl From<core_phone::AttachmentState> for AttachmentState {
    fn from(s: core_phone::AttachmentState) -> Self {
        use core_phone::AttachmentState as S;
        match s {
            S::Local => AttachmentState::Local,
            S::Uploading { sent } => AttachmentState::Uploading { sent },
            S::Uploaded => AttachmentState::Uploaded,
            S::Failed { reason } => AttachmentState::Failed { reason },
            S::RemoteOnly => AttachmentState::RemoteOnly,
            S::Downloaded => AttachmentState::Downloaded,
        }
    }
}

impl From<core_phone::AttachmentView> for AttachmentStatusRecord {
    fn from(v: core_phone::AttachmentView) -> Self {
        AttachmentStatusRecord {
            attachment: v.attachment.into(),
            state: v.state.into(),
        }
    }
}

impl From<FollowUpResult> for FollowUpRecord {
    fn from(f: FollowUpResult) -> Self {
        FollowUpRecord {
            solved: f.solved,
            satisfaction: f.satisfaction,
        }
    }
}

impl From<Supervision> for SupervisionRecord {
    fn from(s: Supervision) -> Self {
        SupervisionRecord {
            level: s.level,
            reason: s.reason,
            by: s.by.into(),
            at: s.at,
        }
    }
}

pub(crate) fn all<T, U: From<T>>(items: Vec<T>) -> Vec<U> {
    items.into_iter().map(U::from).collect()
}

impl From<Case> for CaseRecord {
    fn from(c: Case) -> Self {
        CaseDetail {
            case: c,
            complainant: None,
            masked_phone: None,
        }
        .into()
    }
}

impl From<CaseDetail> for CaseRecord {
    fn from(d: CaseDetail) -> Self {
        let c = d.case;
        CaseRecord {
            id: c.id,
            number: c.number,
            channel: c.channel,
            case_type: c.case_type,
            category: c.category,
            urgency: c.urgency,
            priority: c.priority,
            title: c.title,
            description: c.description,
            location: c.location.into(),
            responsible_unit: c.responsible_unit,
            assignee: c.assignee,
            status: c.status,
            needs_review: c.needs_review,
            extension_pending: c.extension_pending,
            extension_days: c.extension_days,
            merged_into: c.merged_into,
            related: c.related,
            follow_up: c.follow_up.map(Into::into),
            supervisions: all(c.supervisions),
            timeline: all(c.timeline),
            notes: all(c.notes),
            attachments: all(c.attachments),
            created_by: c.created_by.into(),
            created_at: c.created_at,
            complainant: d.complainant.map(Into::into),
            masked_phone: d.masked_phone,
        }
    }
}

impl From<CaseSummary> for CaseSummaryRecord {
    fn from(s: CaseSummary) -> Self {
        CaseSummaryRecord {
            case_id: s.case_id,
            number: s.number,
            title: s.title,
            status: s.status,
            case_type: s.case_type,
            urgency: s.urgency,
            priority: s.priority,
            area_code: s.area_code,
            assignee: s.assignee,
            responsible_unit: s.responsible_unit,
            created_by: s.created_by,
            stage: s.stage.as_deref().and_then(Stage::parse),
            due_at: s.due_at,
            due_provisional: s.due_provisional,
            needs_review: s.needs_review,
            updated_at: s.updated_at,
            has_pending: s.has_pending,
        }
    }
}

impl From<CaseList> for CoreList {
    fn from(l: CaseList) -> Self {
        match l {
            CaseList::All => CoreList::All,
            CaseList::Mine => CoreList::Mine,
            CaseList::DueSoon => CoreList::DueSoon,
            CaseList::Overdue => CoreList::Overdue,
            CaseList::Status { status } => CoreList::Status(status),
            CaseList::Area { prefix } => CoreList::Area(prefix),
            CaseList::Search { text } => CoreList::Search(text),
        }
    }
}

impl From<CasePage> for CasePageRecord {
    fn from(p: CasePage) -> Self {
        CasePageRecord {
            cases: all(p.cases),
            next_offset: p.next_offset,
        }
    }
}

impl From<CaseChanges> for CaseChangesRecord {
    fn from(c: CaseChanges) -> Self {
        CaseChangesRecord {
            source: c.source,
            updated: c.updated,
            acknowledged: c.acknowledged,
            rejected: c.rejected,
            removed: c.removed,
            everything: c.everything,
        }
    }
}

impl From<DeadlineStatus> for DeadlineRecord {
    fn from(d: DeadlineStatus) -> Self {
        DeadlineRecord {
            stage: d.stage,
            started_at: d.started_at,
            due_at: d.due_at,
            remaining_ms: d.remaining_ms,
            fraction_used: d.fraction_used,
            state: d.state,
            provisional: d.provisional,
            paused: d.paused,
            calendar_version: d.calendar_version,
            limit_amount: d.limit.amount,
            limit_unit: d.limit.unit.as_str().to_string(),
        }
    }
}

impl From<RejectedDoc> for RejectionRecord {
    fn from(r: RejectedDoc) -> Self {
        let (case_id, personal_data) = split_doc_id(&r.doc_id);
        RejectionRecord {
            case_id: case_id.to_string(),
            personal_data,
            doc_id: r.doc_id,
            code: r.code,
            message: r.message,
        }
    }
}

impl From<SyncStatus> for SyncStatusRecord {
    fn from(s: SyncStatus) -> Self {
        SyncStatusRecord {
            pending_changes: s.pending_docs,
            last_sync_at: s.last_sync_at,
            last_error: s.last_error,
            rejected: all(s.rejected),
            restoring: s.restoring,
        }
    }
}

impl From<SyncProgress> for ProgressRecord {
    fn from(p: SyncProgress) -> Self {
        ProgressRecord {
            phase: p.phase,
            cases_sent: p.cases_sent,
            cases_received: p.cases_received,
            bytes_sent: p.bytes_sent,
            bytes_received: p.bytes_received,
            remaining: p.remaining,
            part_bytes: p.part_bytes,
            blob_bytes_sent: p.blob_bytes_sent,
            blob_bytes_total: p.blob_bytes_total,
        }
    }
}

impl From<SyncSummary> for SyncSummaryRecord {
    fn from(s: SyncSummary) -> Self {
        SyncSummaryRecord {
            pages: s.pages,
            progress: s.progress.into(),
            rejected: all(s.rejected),
            kept_pending: s.kept_pending,
            unreadable: s.unreadable,
            uploaded: s.uploads.uploaded,
            upload_refused: s
                .uploads
                .refused
                .into_iter()
                .map(|(sha256, reason)| RefusedUploadRecord { sha256, reason })
                .collect(),
            upload_deferred: s.uploads.deferred,
        }
    }
}

impl From<Identity> for IdentityRecord {
    fn from(i: Identity) -> Self {
        IdentityRecord {
            user: i.user,
            device: i.device,
            role: i.role,
            jurisdiction: i.jurisdiction,
        }
    }
}
