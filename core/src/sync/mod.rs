//! The batched sync protocol between phones and the server: messages, their wire encoding, and
//! the pure pieces of both sides' logic. No I/O: the phone's store and the server's database
//! feed these functions and persist what they return.
//!
//! The common case is one request and one response. The phone sends its cursor (the server's
//! change-feed sequence up to which it has everything in its scope) and every change the server
//! has not acknowledged yet; the server commits them, then answers with a per-document ack or
//! rejection, the changes the phone lacks for documents changed since the cursor, and a new
//! cursor. A first sync (restore) pages through snapshots with a resumable token. Where the
//! phone does not know which heads it shares with the server (after a reset or a lost ack), it
//! sends an Automerge sync message for that document instead and the server answers in kind.

pub mod compact;
pub mod limits;
pub mod parts;
pub mod refs;
pub mod times;
pub mod wire;

pub use parts::{SnapshotPart, StagedSnapshot};
pub use times::block::TimesBlock;
pub use times::{CREATED_KEY, CaseTimes, DeviceClock, EventTime, causal_floor, trusted_time};

use serde::{Deserialize, Serialize};

use crate::model::Millis;
use crate::rules::RulesUpdate;

/// A document: a case (`<case id>`) or its personal data (`<case id>#pii`).
pub type DocId = String;

/// A change hash as raw bytes (32).
pub type Hash = Vec<u8>;

/// What a phone sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SyncRequest {
    /// The phone's clock when it built the request; the server measures the offset from this.
    pub device_time: Millis,
    /// Feed sequence up to which the phone holds everything in its scope (0: nothing yet).
    pub cursor: u64,
    /// Set while a restore is under way; resumes it where the last stored page ended.
    pub restore: Option<RestoreToken>,
    /// The most documents the phone wants in this response's page (the server caps it).
    pub page_size: u32,
    /// Changes the server has not acknowledged, per document.
    pub pushes: Vec<DocPush>,
    /// Documents whose shared heads the phone does not know: an Automerge sync message each.
    pub catch_up: Vec<CatchUp>,
    /// The version of the deadline rules the phone counts by (0: the app's shipped rules).
    pub rules_version: u64,
    /// About how many bytes of documents the page may carry (0: the server's default); the
    /// phone shrinks it on a link that cuts connections. At least one document is always sent.
    pub page_bytes: u32,
    /// The phone takes a restore's snapshot larger than `page_bytes` in parts ([`parts`];
    /// protocol 3). Without it such a snapshot is sent whole, as before.
    pub accept_parts: bool,
    /// The snapshot the phone has received part of: the next part continues after it
    /// (protocol 3).
    pub staged: Option<StagedSnapshot>,
    /// The phone takes snapshots without the checksum and head hashes it can recompute
    /// ([`compact`]; protocol 4). Without it snapshots come as saved, as before.
    pub compact_snapshots: bool,
    /// The phone takes trusted times as a [`times::block::TimesBlock`] (`SyncResponse::
    /// compact_times`) instead of `SyncResponse::times` (protocol 5).
    pub compact_times: bool,
    /// With `restore`: the `remaining` of the page that token came with (0: not known). The
    /// server then counts this page's documents off it instead of counting what is left of the
    /// scope again, which costs each page the rest of the restore (protocol 6).
    pub restore_remaining: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocPush {
    pub doc_id: DocId,
    /// Raw Automerge change bytes, in causal order.
    #[serde(deserialize_with = "wire::bounded_changes")]
    pub changes: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatchUp {
    pub doc_id: DocId,
    /// An encoded `automerge::sync::Message` generated from a fresh sync state.
    pub message: Vec<u8>,
}

/// Where a paged restore stands: it lists the documents in scope as they were at `upto`, in
/// id order, after `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreToken {
    /// The feed sequence the restore started from; becomes the cursor when it finishes.
    pub upto: u64,
    /// The last document id already delivered.
    pub after: DocId,
}

/// What the server answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SyncResponse {
    pub server_time: Millis,
    /// Who the server knows this device as; a phone learns its user and role from its first
    /// sync (devices are set up at the office, online).
    pub identity: Identity,
    /// One per pushed document, in the order pushed.
    pub results: Vec<PushResult>,
    /// Documents the phone lacks changes for.
    pub docs: Vec<DocUpdate>,
    /// Answers to `catch_up`, one per document asked for.
    pub catch_up: Vec<CatchUp>,
    /// Documents that left the phone's scope; the phone deletes them once nothing is pending.
    pub evict: Vec<DocId>,
    /// The new cursor, to be stored together with the documents of this response.
    pub cursor: u64,
    /// Present while a restore has more pages.
    pub restore: Option<RestoreToken>,
    /// How many documents are still to come in later pages (progress for a restore).
    pub remaining: u64,
    /// The trusted times of every case whose document this response sends or acknowledges
    /// (protocol 2; empty from a protocol-1 server). The phone shows these instead of its
    /// own and computes due instants from them ([`times`]).
    #[serde(default)]
    pub times: Vec<CaseTimes>,
    /// The server's deadline rules, when they are newer than the request's `rules_version`
    /// (protocol 2).
    pub rules: Option<RulesUpdate>,
    /// Part of the next restore document, when it is larger than the page's budget and the
    /// phone accepts parts (protocol 3). A page with a part carries no other document; the
    /// restore token moves past the document only with its last part.
    pub part: Option<SnapshotPart>,
    /// The trusted times, for a phone that asked for them so (`SyncRequest::compact_times`;
    /// protocol 5): `times` is then empty.
    pub compact_times: Option<TimesBlock>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocUpdate {
    pub doc_id: DocId,
    pub payload: Payload,
    /// The server's heads for this document once the payload is applied. The phone may treat
    /// them as shared only if it holds every one of them afterwards. Empty for a snapshot,
    /// whose own heads are the server's (sparing 32 incompressible bytes per document in a
    /// restore).
    pub heads: Vec<Hash>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// A whole saved document, for one the phone has never had ([`compact`]ed for a phone
    /// that asked).
    Snapshot(Vec<u8>),
    /// Raw changes the phone lacks, in causal order.
    Changes(Vec<Vec<u8>>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PushResult {
    /// Committed. `heads` are the server's heads for the document after the merge.
    Accepted { doc_id: DocId, heads: Vec<Hash> },
    /// Not stored. The phone keeps its changes, shows the reason, and does not resend them
    /// until the user edits again or discards them.
    Rejected { doc_id: DocId, reason: Rejection },
}

/// Why the server refused a document's changes: a machine-readable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub code: RejectCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The bytes are not Automerge changes, or their dependencies are missing.
    Malformed,
    /// A change was made under an actor id that does not belong to this device.
    ForeignActor,
    /// The action is not allowed for the author's role or from the case's state.
    ActionNotAllowed,
    /// The role may not edit that field.
    FieldNotAllowed,
    /// The case would leave (or is not in) the author's jurisdiction.
    OutOfJurisdiction,
    /// The case is closed; only an explicit reopen may change it.
    CaseClosed,
    /// The role may not write personal data.
    PersonalData,
    /// Too many or too large changes in one push.
    TooLarge,
    /// The changes depend on changes the server does not have (it lost them, e.g. restored
    /// from a backup). Not the phone's fault: it forgets which heads it shares with the server
    /// and sends the document's whole history with a catch-up in its next sync.
    MissingHistory,
    /// The changes delete, edit or reorder something already recorded (a timeline event, a
    /// note, an attachment, a related case, a reveal record): these lists only grow at the end.
    HistoryRewritten,
    /// The changes write something the document layout does not have: an unknown key or
    /// object, a value of the wrong kind, a mark or counter, a missing required field.
    OutsideSchema,
}

impl RejectCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::Malformed => "malformed",
            RejectCode::ForeignActor => "foreign_actor",
            RejectCode::ActionNotAllowed => "action_not_allowed",
            RejectCode::FieldNotAllowed => "field_not_allowed",
            RejectCode::OutOfJurisdiction => "out_of_jurisdiction",
            RejectCode::CaseClosed => "case_closed",
            RejectCode::PersonalData => "personal_data",
            RejectCode::TooLarge => "too_large",
            RejectCode::MissingHistory => "missing_history",
            RejectCode::HistoryRewritten => "history_rewritten",
            RejectCode::OutsideSchema => "outside_schema",
        }
    }
}

/// The user and device behind a token, as the server enrolled them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Identity {
    pub user: String,
    pub device: String,
    /// A [`crate::model::Role`] spelling.
    pub role: String,
    /// The area-code prefix the user is responsible for ("" = everywhere).
    pub jurisdiction: String,
}

/// Measured offset of a phone's clock: add it to a device time to get server time.
pub fn clock_offset(device_time: Millis, server_time: Millis) -> Millis {
    server_time - device_time
}
