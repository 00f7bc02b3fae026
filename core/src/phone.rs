//! The phone: what the app (through `gridcase-bindings`) and the CLI call, one method each.
//! It owns the local [`Store`] and speaks the phone side of the sync protocol without doing I/O:
//! [`Phone::build_request`] and [`Phone::apply_response`] are pure with respect to the network,
//! and [`Phone::sync`] drives them over a [`Transport`] the caller supplies.
//!
//! Decisions:
//! - Every mutating call is one SQLite transaction (document changes + projection row + sync
//!   bookkeeping), committed before it returns.
//! - The phone learns who it is (user, role, jurisdiction) from its first sync; until then it
//!   refuses to write ([`PhoneError::NoIdentity`]).
//! - Pushes go in the first request of a sync only; later pages of a restore carry none.
//! - A rejected document is not pushed again until the user edits it again (which clears the
//!   rejection) or discards the local changes.
//! - [`Phone::discard_local_changes`] rewinds the document to the heads known to be on the server,
//!   switches the store to a fresh actor (the dropped changes used sequence numbers that must not
//!   be reused: the server might hold them after a lost acknowledgement), and marks the document
//!   for a catch-up: the next sync sends an Automerge sync message generated from a fresh sync
//!   state, and the server answers with whatever the phone lacks. A document that never reached
//!   the server is simply deleted.
//! - An evicted document with pending changes is kept (and reported) until they are pushed.
//! - A response whose application fails stores nothing (one transaction); the error goes to
//!   `last_error` and the same page is asked for again next time.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use automerge::sync::{Message, State as SyncState, SyncDoc};
use automerge::{ActorId, AutoCommit, Change, ChangeHash};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::deadline::{self, DeadlineStatus};
use crate::doc::{CaseDoc, DocError, FieldEdit, PersonalDoc, mask_phone, personal_doc_id, split_doc_id};
use crate::identity::{self, IdentityError};
use crate::lifecycle::Action;
use crate::model::{Author, Case, Complainant, Millis, NewCase, Role, Status};
use crate::store::projection::{self, Rules};
use crate::store::{self, CaseSummary, Loaded, Store, StoreError, queries};
use crate::sync::wire::{self, WireError};
use crate::sync::{
    CatchUp, DocId, DocPush, DocUpdate, Identity, Payload, PushResult, RestoreToken, SyncRequest,
    SyncResponse,
};

const K_TOKEN: &str = "device_token";
const K_DEVICE: &str = "device_id";
const K_NONCE: &str = "actor_nonce";
const K_USER: &str = "identity_user";
const K_ROLE: &str = "identity_role";
const K_JURISDICTION: &str = "identity_jurisdiction";
const K_CURSOR: &str = "cursor";
const K_RESTORE_UPTO: &str = "restore_upto";
const K_RESTORE_AFTER: &str = "restore_after";
const K_LAST_SYNC: &str = "last_sync_at";
const K_LAST_ERROR: &str = "last_error";
const K_SERVER_OFFSET: &str = "server_clock_offset";

#[derive(Debug, thiserror::Error)]
pub enum PhoneError {
    #[error("this phone does not know who you are yet: sync once while online to learn who you are")]
    NoIdentity,
    #[error("no case or document {0} on this phone")]
    NotFound(String),
    #[error(transparent)]
    Doc(#[from] DocError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Token(#[from] IdentityError),
    #[error("this database belongs to device {stored}, not to the token's device {token}")]
    DeviceMismatch { stored: String, token: String },
    #[error("this phone's data was wiped; open it again with a new token")]
    Wiped,
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the server sent something unusable for {doc_id}: {message}")]
    BadData { doc_id: String, message: String },
}

impl PhoneError {
    /// A stable code for the bindings.
    pub fn code(&self) -> &'static str {
        match self {
            PhoneError::NoIdentity => "no_identity",
            PhoneError::NotFound(_) => "not_found",
            PhoneError::Doc(_) => "refused",
            PhoneError::Store(_) => "storage",
            PhoneError::Token(_) => "bad_token",
            PhoneError::DeviceMismatch { .. } => "device_mismatch",
            PhoneError::Wiped => "wiped",
            PhoneError::Wire(e) => e.code(),
            PhoneError::Transport(TransportError::Unauthorized { .. }) => "unauthorized",
            PhoneError::Transport(TransportError::Network(_)) => "network",
            PhoneError::Transport(TransportError::Server { .. }) => "server",
            PhoneError::BadData { .. } => "bad_data",
        }
    }
}

impl From<rusqlite::Error> for PhoneError {
    fn from(e: rusqlite::Error) -> Self {
        PhoneError::Store(StoreError::Sqlite(e))
    }
}

/// Why an exchange with the server failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The token was refused. `wipe`: the device was revoked and must delete its data.
    #[error("the server refused this device: {message}")]
    Unauthorized { wipe: bool, message: String },
    #[error("network: {0}")]
    Network(String),
    #[error("server error {status} ({code}): {message}")]
    Server {
        status: u16,
        code: String,
        message: String,
    },
}

/// One request/response round trip with the server (HTTP in the app, in memory in tests).
pub trait Transport {
    fn exchange(&mut self, request: Vec<u8>) -> Result<Vec<u8>, TransportError>;
}

/// A case with its complainant, when this phone holds the personal data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseDetail {
    pub case: Case,
    pub complainant: Option<Complainant>,
    /// The complainant's phone as lists and exports show it (138****1234).
    pub masked_phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedDoc {
    pub doc_id: DocId,
    /// A [`crate::sync::RejectCode`] spelling.
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SyncStatus {
    /// Documents holding changes the server has not acknowledged (rejected ones included).
    pub pending_docs: u64,
    pub last_sync_at: Option<Millis>,
    pub last_error: Option<String>,
    pub rejected: Vec<RejectedDoc>,
    /// A restore is under way (more pages to fetch).
    pub restoring: bool,
}

/// What one applied response did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SyncOutcome {
    pub accepted: Vec<DocId>,
    pub rejected: Vec<RejectedDoc>,
    /// Documents that received changes (updates and catch-up answers).
    pub received: Vec<DocId>,
    pub evicted: Vec<DocId>,
    /// Evicted by the server but kept because they hold unpushed changes.
    pub kept_pending: Vec<DocId>,
    /// Stored, but the case could not be read (e.g. a newer schema): not in the lists.
    pub unreadable: Vec<DocId>,
    /// More restore pages follow.
    pub more: bool,
    pub remaining: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncPhase {
    Sending,
    Applying,
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncProgress {
    pub phase: SyncPhase,
    pub cases_sent: u64,
    pub cases_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Documents still to come in later pages (as the server last said).
    pub remaining: u64,
}

/// The end of a [`Phone::sync`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSummary {
    pub pages: u32,
    pub cancelled: bool,
    pub progress: SyncProgress,
    pub rejected: Vec<RejectedDoc>,
    pub kept_pending: Vec<DocId>,
    pub unreadable: Vec<DocId>,
}

/// The phone's facade over its store.
pub struct Phone {
    store: Store,
    device: String,
    actor: ActorId,
    rules: Rules,
    wiped: bool,
}

impl std::fmt::Debug for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phone")
            .field("store", &self.store)
            .field("device", &self.device)
            .field("wiped", &self.wiped)
            .finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn nonce_from_hex(text: &str) -> Option<[u8; 4]> {
    if text.len() != 8 {
        return None;
    }
    let mut out = [0u8; 4];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn hashes(raw: &[Vec<u8>], doc_id: &str) -> Result<Vec<ChangeHash>, PhoneError> {
    raw.iter()
        .map(|h| {
            ChangeHash::try_from(&h[..]).map_err(|_| PhoneError::BadData {
                doc_id: doc_id.into(),
                message: "a head is not a 32-byte hash".into(),
            })
        })
        .collect()
}

fn bad(doc_id: &str, e: impl std::fmt::Display) -> PhoneError {
    PhoneError::BadData {
        doc_id: doc_id.into(),
        message: e.to_string(),
    }
}

/// The heads after `old` plus `pushed` changes: pushed hashes no pushed change depends on, and
/// old heads no pushed change depends on.
fn heads_after_push(old: &[ChangeHash], pushed: &[Vec<u8>]) -> Vec<ChangeHash> {
    let changes: Vec<Change> = pushed
        .iter()
        .filter_map(|b| Change::try_from(&b[..]).ok())
        .collect();
    let deps: std::collections::HashSet<ChangeHash> =
        changes.iter().flat_map(|c| c.deps().iter().copied()).collect();
    let mut heads: Vec<ChangeHash> = old
        .iter()
        .chain(changes.iter().map(|c| c.hash()).collect::<Vec<_>>().iter())
        .filter(|h| !deps.contains(h))
        .copied()
        .collect();
    heads.sort();
    heads.dedup();
    heads
}

impl Phone {
    /// Opens the store at `path` for the device named by `token`. `nonce` (4 random bytes) is
    /// used only when the store is created: it makes this install's Automerge actor unique.
    pub fn open(path: impl AsRef<Path>, token: &str, nonce: [u8; 4]) -> Result<Phone, PhoneError> {
        let device = identity::device_of_token(token)?.to_ascii_lowercase();
        let mut store = Store::open(path)?;
        let tx = store.transaction()?;
        match store::meta_get(&tx, K_DEVICE)? {
            None => {
                store::meta_set(&tx, K_DEVICE, &device)?;
                store::meta_set(&tx, K_NONCE, &hex(&nonce))?;
            }
            Some(stored) if stored != device => {
                return Err(PhoneError::DeviceMismatch {
                    stored,
                    token: device,
                });
            }
            Some(_) => {}
        }
        // The token may have been re-issued for the same device.
        store::meta_set(&tx, K_TOKEN, token)?;
        let nonce = store::meta_get(&tx, K_NONCE)?
            .as_deref()
            .and_then(nonce_from_hex)
            .ok_or_else(|| StoreError::Corrupt {
                doc_id: "meta".into(),
                message: "actor nonce".into(),
            })?;
        tx.commit()?;
        let actor = identity::actor_for(&device, nonce).ok_or(IdentityError::MalformedToken)?;
        let mut phone = Phone {
            store,
            device,
            actor,
            rules: Rules::default(),
            wiped: false,
        };
        if store::meta_get(phone.store.conn(), store::REPROJECT_KEY)?.is_some() {
            phone.reproject(0)?;
        }
        Ok(phone)
    }

    /// Replaces the deadline policy and calendar (e.g. the deployment's, fetched at setup) and
    /// recomputes every list row with them.
    pub fn set_rules(&mut self, rules: Rules, now: Millis) -> Result<(), PhoneError> {
        self.rules = rules;
        self.reproject(now)
    }

    /// Recomputes every `cases` row from the documents (after a migration or a rules change).
    fn reproject(&mut self, now: Millis) -> Result<(), PhoneError> {
        self.check()?;
        let tx = self.store.transaction()?;
        for id in store::case_doc_ids(&tx)? {
            if let Some(loaded) = store::load_doc(&tx, &id, &self.actor)? {
                let updated_at: Millis = tx
                    .query_row("SELECT updated_at FROM cases WHERE case_id = ?1", [&id], |r| r.get(0))
                    .unwrap_or(now);
                match CaseDoc::from_automerge(loaded.doc).and_then(|d| d.read()) {
                    Ok(case) => projection::upsert(&tx, &case, &self.rules, updated_at)?,
                    Err(_) => projection::delete(&tx, &id)?,
                }
            }
        }
        store::meta_delete(&tx, store::REPROJECT_KEY)?;
        tx.commit()?;
        Ok(())
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    /// The device token, for the transport's `Authorization` header.
    pub fn token(&self) -> Result<String, PhoneError> {
        self.check()?;
        store::meta_get(self.store.conn(), K_TOKEN)?.ok_or(PhoneError::Wiped)
    }

    /// Who the server says this device belongs to, once known.
    pub fn identity(&self) -> Result<Option<Identity>, PhoneError> {
        self.check()?;
        let conn = self.store.conn();
        let Some(user) = store::meta_get(conn, K_USER)? else {
            return Ok(None);
        };
        Ok(Some(Identity {
            user,
            device: self.device.clone(),
            role: store::meta_get(conn, K_ROLE)?.unwrap_or_default(),
            jurisdiction: store::meta_get(conn, K_JURISDICTION)?.unwrap_or_default(),
        }))
    }

    /// Sets the identity without a sync. For tests and for tools provisioning a phone offline;
    /// the app learns it from the server.
    pub fn set_identity_for_tests(&mut self, identity: &Identity) -> Result<(), PhoneError> {
        self.check()?;
        let tx = self.store.transaction()?;
        store_identity(&tx, identity)?;
        tx.commit()?;
        Ok(())
    }

    fn check(&self) -> Result<(), PhoneError> {
        if self.wiped {
            Err(PhoneError::Wiped)
        } else {
            Ok(())
        }
    }

    fn author(&self) -> Result<Author, PhoneError> {
        self.check()?;
        let conn = self.store.conn();
        let user = store::meta_get(conn, K_USER)?.ok_or(PhoneError::NoIdentity)?;
        let role = store::meta_get(conn, K_ROLE)?
            .as_deref()
            .and_then(Role::parse)
            .ok_or(PhoneError::NoIdentity)?;
        Ok(Author {
            user,
            device: self.device.clone(),
            role,
        })
    }

    // ----- local edits -----

    /// Registers a new case (a draft) on this phone, with its complainant's personal data in
    /// the separate `#pii` document.
    pub fn create_case(
        &mut self,
        new: &NewCase,
        complainant: Option<&Complainant>,
        now: Millis,
    ) -> Result<Case, PhoneError> {
        let author = self.author()?;
        let tx = self.store.transaction()?;
        if store::doc_state(&tx, &new.id)?.is_some() {
            return Err(PhoneError::Doc(DocError::Malformed {
                field: format!("id {} already exists", new.id),
            }));
        }
        let mut doc = CaseDoc::create(new, &author, self.actor.clone(), now)?;
        let case = doc.read()?;
        store::persist(&tx, &new.id, doc.automerge(), None, &[], now)?;
        projection::upsert(&tx, &case, &self.rules, now)?;
        if let Some(c) = complainant {
            let pii_id = personal_doc_id(&new.id);
            let mut pii = PersonalDoc::create(c, &author, self.actor.clone(), now)?;
            store::persist(&tx, &pii_id, pii.automerge(), None, &[], now)?;
            projection::refresh_has_pending(&tx, &pii_id)?;
        }
        tx.commit()?;
        Ok(case)
    }

    /// Loads a case document, lets `f` change it, and stores the new changes with the updated
    /// projection in one transaction. An edit clears a rejection (the user edited again).
    fn mutate_case<T>(
        &mut self,
        case_id: &str,
        now: Millis,
        f: impl FnOnce(&mut CaseDoc, &Author) -> Result<T, DocError>,
    ) -> Result<T, PhoneError> {
        let author = self.author()?;
        let tx = self.store.transaction()?;
        let Loaded {
            doc,
            persisted,
            state,
        } = store::load_doc(&tx, case_id, &self.actor)?
            .ok_or_else(|| PhoneError::NotFound(case_id.into()))?;
        let mut case_doc = CaseDoc::from_automerge(doc)?;
        let out = f(&mut case_doc, &author)?;
        let case = case_doc.read()?;
        let written = store::persist(
            &tx,
            case_id,
            case_doc.automerge(),
            Some(&persisted),
            &state.server_heads,
            now,
        )?;
        if written {
            store::set_rejected(&tx, case_id, None)?;
            projection::upsert(&tx, &case, &self.rules, now)?;
        }
        tx.commit()?;
        Ok(out)
    }

    pub fn edit(&mut self, case_id: &str, edit: &FieldEdit, now: Millis) -> Result<(), PhoneError> {
        self.mutate_case(case_id, now, |doc, author| doc.edit(edit, author, now))
    }

    pub fn set_description(&mut self, case_id: &str, text: &str, now: Millis) -> Result<(), PhoneError> {
        self.mutate_case(case_id, now, |doc, author| doc.set_description(text, author, now))
    }

    pub fn splice_description(
        &mut self,
        case_id: &str,
        pos: usize,
        delete: usize,
        insert: &str,
        now: Millis,
    ) -> Result<(), PhoneError> {
        self.mutate_case(case_id, now, |doc, author| {
            doc.splice_description(pos, delete, insert, author, now)
        })
    }

    /// Performs a lifecycle action; returns the case as it reads afterwards.
    pub fn act(&mut self, case_id: &str, action: &Action, now: Millis) -> Result<Case, PhoneError> {
        self.mutate_case(case_id, now, |doc, author| doc.act(action, author, now))
    }

    /// Returns the note's id.
    pub fn add_note(&mut self, case_id: &str, text: &str, now: Millis) -> Result<String, PhoneError> {
        self.mutate_case(case_id, now, |doc, author| doc.add_note(text, author, now))
    }

    /// Returns the attachment's id.
    pub fn add_attachment(
        &mut self,
        case_id: &str,
        sha256: &str,
        mime: &str,
        size: u64,
        caption: &str,
        now: Millis,
    ) -> Result<String, PhoneError> {
        self.mutate_case(case_id, now, |doc, author| {
            doc.add_attachment(sha256, mime, size, caption, author, now)
        })
    }

    /// Sets the complainant of a case held on this phone (creating its `#pii` document).
    pub fn set_complainant(&mut self, case_id: &str, complainant: &Complainant, now: Millis) -> Result<(), PhoneError> {
        let author = self.author()?;
        let pii_id = personal_doc_id(case_id);
        let tx = self.store.transaction()?;
        if store::doc_state(&tx, case_id)?.is_none() {
            return Err(PhoneError::NotFound(case_id.into()));
        }
        let written = match store::load_doc(&tx, &pii_id, &self.actor)? {
            Some(Loaded {
                doc,
                persisted,
                state,
            }) => {
                let mut pii = PersonalDoc::from_automerge(doc);
                pii.set(complainant, &author, now)?;
                store::persist(
                    &tx,
                    &pii_id,
                    pii.automerge(),
                    Some(&persisted),
                    &state.server_heads,
                    now,
                )?
            }
            None => {
                let mut pii = PersonalDoc::create(complainant, &author, self.actor.clone(), now)?;
                store::persist(&tx, &pii_id, pii.automerge(), None, &[], now)?
            }
        };
        if written {
            store::set_rejected(&tx, &pii_id, None)?;
        }
        projection::refresh_has_pending(&tx, &pii_id)?;
        tx.commit()?;
        Ok(())
    }

    // ----- reads -----

    /// The whole case, read from its document, with the complainant when this phone holds it.
    pub fn get_case(&self, case_id: &str) -> Result<CaseDetail, PhoneError> {
        self.check()?;
        let conn = self.store.conn();
        let loaded = store::load_doc(conn, case_id, &self.actor)?
            .ok_or_else(|| PhoneError::NotFound(case_id.into()))?;
        let case = CaseDoc::from_automerge(loaded.doc)?.read()?;
        let complainant = store::load_doc(conn, &personal_doc_id(case_id), &self.actor)?
            .map(|l| PersonalDoc::from_automerge(l.doc).read());
        let masked_phone = complainant.as_ref().map(|c| mask_phone(&c.phone));
        Ok(CaseDetail {
            case,
            complainant,
            masked_phone,
        })
    }

    /// Where the case stands against its current stage's deadline, by the phone's rules.
    pub fn deadline(&self, case_id: &str, now: Millis) -> Result<Option<DeadlineStatus>, PhoneError> {
        let case = self.get_case(case_id)?.case;
        Ok(deadline::evaluate(&case, &self.rules.policy, &self.rules.calendar, now))
    }

    pub fn summary(&self, case_id: &str) -> Result<Option<CaseSummary>, PhoneError> {
        self.check()?;
        Ok(queries::get(self.store.conn(), case_id)?)
    }

    /// Cases assigned to or registered by this phone's user.
    pub fn my_cases(&self) -> Result<Vec<CaseSummary>, PhoneError> {
        let user = self.author()?.user;
        Ok(queries::my_cases(self.store.conn(), &user)?)
    }

    pub fn due_soon(&self, now: Millis) -> Result<Vec<CaseSummary>, PhoneError> {
        self.check()?;
        Ok(queries::due_soon(
            self.store.conn(),
            now,
            self.rules.policy.due_soon_fraction,
        )?)
    }

    pub fn overdue(&self, now: Millis) -> Result<Vec<CaseSummary>, PhoneError> {
        self.check()?;
        Ok(queries::overdue(self.store.conn(), now)?)
    }

    pub fn by_status(&self, status: Status) -> Result<Vec<CaseSummary>, PhoneError> {
        self.check()?;
        Ok(queries::by_status(self.store.conn(), status)?)
    }

    pub fn by_area(&self, prefix: &str) -> Result<Vec<CaseSummary>, PhoneError> {
        self.check()?;
        Ok(queries::by_area(self.store.conn(), prefix)?)
    }

    pub fn search_title(&self, q: &str) -> Result<Vec<CaseSummary>, PhoneError> {
        self.check()?;
        Ok(queries::search_title(self.store.conn(), q)?)
    }

    pub fn sync_status(&self) -> Result<SyncStatus, PhoneError> {
        self.check()?;
        let conn = self.store.conn();
        let pending_docs: i64 =
            conn.query_row("SELECT COUNT(*) FROM docs WHERE pending = 1", [], |r| r.get(0))?;
        let mut stmt = conn.prepare(
            "SELECT doc_id, rejected_code, COALESCE(rejected_message, '') FROM docs
             WHERE rejected_code IS NOT NULL ORDER BY doc_id",
        )?;
        let rejected = stmt
            .query_map([], |r| {
                Ok(RejectedDoc {
                    doc_id: r.get(0)?,
                    code: r.get(1)?,
                    message: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(SyncStatus {
            pending_docs: pending_docs as u64,
            last_sync_at: store::meta_get(conn, K_LAST_SYNC)?.and_then(|v| v.parse().ok()),
            last_error: store::meta_get(conn, K_LAST_ERROR)?,
            rejected,
            restoring: store::meta_get(conn, K_RESTORE_UPTO)?.is_some(),
        })
    }

    // ----- discard and wipe -----

    /// Drops this phone's unacknowledged changes to a document: the document goes back to what
    /// the server is known to hold and is marked for a catch-up in the next sync (which brings
    /// anything else the server has). A document the server never had is deleted (with its list
    /// row, for a case). `fresh_nonce` (4 random bytes) becomes this store's actor nonce, so the
    /// sequence numbers of the dropped changes are never reused.
    pub fn discard_local_changes(&mut self, doc_id: &str, fresh_nonce: [u8; 4], now: Millis) -> Result<(), PhoneError> {
        self.check()?;
        let new_actor = identity::actor_for(&self.device, fresh_nonce).ok_or(IdentityError::MalformedToken)?;
        let tx = self.store.transaction()?;
        let Loaded {
            mut doc, state, ..
        } = store::load_doc(&tx, doc_id, &self.actor)?.ok_or_else(|| PhoneError::NotFound(doc_id.into()))?;
        let (case_id, is_pii) = split_doc_id(doc_id);
        if state.server_heads.is_empty() {
            store::delete_doc(&tx, doc_id)?;
            if is_pii {
                projection::refresh_has_pending(&tx, doc_id)?;
            } else {
                projection::delete(&tx, case_id)?;
            }
        } else {
            let mut rewound = doc
                .fork_at(&state.server_heads)
                .map_err(|e| bad(doc_id, e))?
                .with_actor(new_actor.clone());
            store::persist(&tx, doc_id, &mut rewound, None, &state.server_heads, now)?;
            store::set_rejected(&tx, doc_id, None)?;
            store::mark_refetch(&tx, doc_id)?;
            if !is_pii {
                match CaseDoc::from_automerge(rewound).and_then(|d| d.read()) {
                    Ok(case) => projection::upsert(&tx, &case, &self.rules, now)?,
                    Err(_) => projection::delete(&tx, case_id)?,
                }
            }
            projection::refresh_has_pending(&tx, doc_id)?;
        }
        store::meta_set(&tx, K_NONCE, &hex(&fresh_nonce))?;
        tx.commit()?;
        self.actor = new_actor;
        Ok(())
    }

    /// Deletes everything this phone holds (the server said the device is revoked). The phone
    /// refuses every call afterwards.
    pub fn wipe(&mut self) -> Result<(), PhoneError> {
        self.store.wipe()?;
        self.wiped = true;
        Ok(())
    }

    // ----- sync -----

    /// The request for the next exchange: the stored cursor and restore token, every change
    /// the server has not acknowledged (documents it refused are left out), and a catch-up
    /// message for each document marked for re-fetch.
    pub fn build_request(&mut self, now: Millis, page_size: u32) -> Result<SyncRequest, PhoneError> {
        self.build(now, page_size, true)
    }

    fn build(&mut self, now: Millis, page_size: u32, with_pushes: bool) -> Result<SyncRequest, PhoneError> {
        self.check()?;
        let conn = self.store.conn();
        let cursor = store::meta_get(conn, K_CURSOR)?
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let restore = match (
            store::meta_get(conn, K_RESTORE_UPTO)?,
            store::meta_get(conn, K_RESTORE_AFTER)?,
        ) {
            (Some(upto), Some(after)) => upto.parse().ok().map(|upto| RestoreToken { upto, after }),
            _ => None,
        };
        let mut request = SyncRequest {
            device_time: now,
            cursor,
            restore,
            page_size,
            pushes: Vec::new(),
            catch_up: Vec::new(),
        };
        if !with_pushes {
            return Ok(request);
        }
        for doc_id in store::pushable_docs(conn)? {
            let Some(Loaded { mut doc, state, .. }) = store::load_doc(conn, &doc_id, &self.actor)? else {
                continue;
            };
            let changes: Vec<Vec<u8>> = doc
                .get_changes(&state.server_heads)
                .iter()
                .map(|c| c.raw_bytes().to_vec())
                .collect();
            if !changes.is_empty() {
                request.pushes.push(DocPush { doc_id, changes });
            }
        }
        for doc_id in store::refetch_docs(conn)? {
            let mut doc = match store::load_doc(conn, &doc_id, &self.actor)? {
                Some(loaded) => loaded.doc,
                None => AutoCommit::new().with_actor(self.actor.clone()),
            };
            let mut state = SyncState::new();
            if let Some(message) = doc.sync().generate_sync_message(&mut state) {
                request.catch_up.push(CatchUp {
                    doc_id,
                    message: message.encode(),
                });
            }
        }
        Ok(request)
    }

    /// Stores everything of `response` (the answer to `sent`) in one transaction: identity,
    /// acknowledgements and rejections, received documents, catch-up answers, evictions, list
    /// rows, cursor and restore token. On error nothing is stored and the error is recorded as
    /// the last sync error.
    pub fn apply_response(
        &mut self,
        response: &SyncResponse,
        sent: &SyncRequest,
        now: Millis,
    ) -> Result<SyncOutcome, PhoneError> {
        self.check()?;
        let result = self.apply_inner(response, sent, now);
        if let Err(e) = &result {
            self.record_error(&e.to_string());
        }
        result
    }

    fn record_error(&mut self, message: &str) {
        if self.wiped {
            return;
        }
        // Best effort: failing to record an error must not hide the error itself.
        if let Ok(tx) = self.store.transaction()
            && store::meta_set(&tx, K_LAST_ERROR, message).is_ok()
        {
            let _ = tx.commit();
        }
    }

    fn apply_inner(
        &mut self,
        response: &SyncResponse,
        sent: &SyncRequest,
        now: Millis,
    ) -> Result<SyncOutcome, PhoneError> {
        let actor = self.actor.clone();
        let rules = self.rules.clone();
        let tx = self.store.transaction()?;
        let mut outcome = SyncOutcome {
            more: response.restore.is_some(),
            remaining: response.remaining,
            ..Default::default()
        };
        if !response.identity.user.is_empty() {
            store_identity(&tx, &response.identity)?;
        }
        store::meta_set(
            &tx,
            K_SERVER_OFFSET,
            &crate::sync::clock_offset(sent.device_time, response.server_time).to_string(),
        )?;

        // Touched case ids, whose list rows are recomputed at the end.
        let mut touched: Vec<String> = Vec::new();

        for result in &response.results {
            match result {
                PushResult::Accepted { doc_id, heads } => {
                    let Some(Loaded {
                        mut doc,
                        persisted,
                        state,
                    }) = store::load_doc(&tx, doc_id, &actor)?
                    else {
                        continue;
                    };
                    let heads = hashes(heads, doc_id)?;
                    let server_heads = if store::holds_all(&mut doc, &heads) {
                        heads
                    } else {
                        let pushed = sent
                            .pushes
                            .iter()
                            .find(|p| &p.doc_id == doc_id)
                            .map(|p| p.changes.as_slice())
                            .unwrap_or(&[]);
                        heads_after_push(&state.server_heads, pushed)
                    };
                    store::persist(&tx, doc_id, &mut doc, Some(&persisted), &server_heads, now)?;
                    store::set_rejected(&tx, doc_id, None)?;
                    touched.push(doc_id.clone());
                    outcome.accepted.push(doc_id.clone());
                }
                PushResult::Rejected { doc_id, reason } => {
                    if store::doc_state(&tx, doc_id)?.is_some() {
                        store::set_rejected(&tx, doc_id, Some((reason.code.as_str(), &reason.message)))?;
                    }
                    outcome.rejected.push(RejectedDoc {
                        doc_id: doc_id.clone(),
                        code: reason.code.as_str().into(),
                        message: reason.message.clone(),
                    });
                }
            }
        }

        for update in &response.docs {
            apply_update(&tx, update, &actor, now)?;
            touched.push(update.doc_id.clone());
            outcome.received.push(update.doc_id.clone());
        }

        for answer in &response.catch_up {
            let doc_id = &answer.doc_id;
            let message = Message::decode(&answer.message).map_err(|e| bad(doc_id, e))?;
            let their_heads = message.heads.clone();
            let (mut doc, persisted, state) = match store::load_doc(&tx, doc_id, &actor)? {
                Some(l) => (l.doc, Some(l.persisted), Some(l.state)),
                None => (AutoCommit::new().with_actor(actor.clone()), None, None),
            };
            let mut sync_state = SyncState::new();
            doc.sync()
                .receive_sync_message(&mut sync_state, message)
                .map_err(|e| bad(doc_id, e))?;
            if doc.get_heads().is_empty() {
                // Nothing came: the server does not have it (any more) for us.
                continue;
            }
            let server_heads = if store::holds_all(&mut doc, &their_heads) {
                their_heads
            } else {
                state.map(|s| s.server_heads).unwrap_or_default()
            };
            store::persist(&tx, doc_id, &mut doc, persisted.as_deref(), &server_heads, now)?;
            store::clear_refetch(&tx, doc_id)?;
            touched.push(doc_id.clone());
            outcome.received.push(doc_id.clone());
        }

        for doc_id in &response.evict {
            match store::doc_state(&tx, doc_id)? {
                Some(state) if state.pending => outcome.kept_pending.push(doc_id.clone()),
                Some(_) => {
                    store::delete_doc(&tx, doc_id)?;
                    let (case_id, is_pii) = split_doc_id(doc_id);
                    if is_pii {
                        projection::refresh_has_pending(&tx, doc_id)?;
                    } else {
                        projection::delete(&tx, case_id)?;
                    }
                    outcome.evicted.push(doc_id.clone());
                }
                None => {
                    store::clear_refetch(&tx, doc_id)?;
                }
            }
        }

        touched.sort();
        touched.dedup();
        for doc_id in &touched {
            let (case_id, is_pii) = split_doc_id(doc_id);
            if is_pii {
                projection::refresh_has_pending(&tx, doc_id)?;
                continue;
            }
            let Some(loaded) = store::load_doc(&tx, case_id, &actor)? else {
                continue;
            };
            // A migration on read is not stored here: it is deterministic and repeats.
            let case_doc = match CaseDoc::from_automerge(loaded.doc) {
                Ok(d) => d,
                Err(_) => {
                    outcome.unreadable.push(doc_id.clone());
                    continue;
                }
            };
            match case_doc.read() {
                Ok(case) => {
                    // Only rewrite the row (and its updated_at) when something it shows changed.
                    let before = queries::get(&tx, case_id)?;
                    projection::upsert(&tx, &case, &rules, now)?;
                    if let (Some(before), Some(after)) = (before, queries::get(&tx, case_id)?)
                        && (CaseSummary {
                            updated_at: before.updated_at,
                            ..after.clone()
                        }) == before
                    {
                        tx.execute(
                            "UPDATE cases SET updated_at = ?2 WHERE case_id = ?1",
                            rusqlite::params![case_id, before.updated_at],
                        )?;
                    }
                }
                Err(_) => outcome.unreadable.push(doc_id.clone()),
            }
        }

        store::meta_set(&tx, K_CURSOR, &response.cursor.to_string())?;
        match &response.restore {
            Some(token) => {
                store::meta_set(&tx, K_RESTORE_UPTO, &token.upto.to_string())?;
                store::meta_set(&tx, K_RESTORE_AFTER, &token.after)?;
            }
            None => {
                store::meta_delete(&tx, K_RESTORE_UPTO)?;
                store::meta_delete(&tx, K_RESTORE_AFTER)?;
            }
        }
        store::meta_set(&tx, K_LAST_SYNC, &now.to_string())?;
        store::meta_delete(&tx, K_LAST_ERROR)?;
        tx.commit()?;
        Ok(outcome)
    }

    /// Runs a whole sync over `transport`: the first request carries the pushes and catch-ups,
    /// then restore pages follow while the server announces more, each stored before the next
    /// is asked for (a dropped connection resumes at the next page). `cancel` is checked between
    /// pages. An `Unauthorized { wipe: true }` answer wipes the phone.
    pub fn sync(
        &mut self,
        transport: &mut dyn Transport,
        now: Millis,
        progress: &mut dyn FnMut(SyncProgress),
        cancel: &AtomicBool,
        page_size: u32,
    ) -> Result<SyncSummary, PhoneError> {
        let mut report = SyncProgress {
            phase: SyncPhase::Sending,
            cases_sent: 0,
            cases_received: 0,
            bytes_sent: 0,
            bytes_received: 0,
            remaining: 0,
        };
        let mut summary = SyncSummary {
            pages: 0,
            cancelled: false,
            progress: report.clone(),
            rejected: Vec::new(),
            kept_pending: Vec::new(),
            unreadable: Vec::new(),
        };
        loop {
            let request = self.build(now, page_size, summary.pages == 0)?;
            let bytes = wire::encode_request(&request);
            report.phase = SyncPhase::Sending;
            report.cases_sent += request.pushes.len() as u64;
            report.bytes_sent += bytes.len() as u64;
            progress(report.clone());
            let answer = match transport.exchange(bytes) {
                Ok(answer) => answer,
                Err(e) => {
                    if let TransportError::Unauthorized { wipe: true, .. } = &e {
                        self.wipe()?;
                    } else {
                        self.record_error(&e.to_string());
                    }
                    return Err(e.into());
                }
            };
            report.bytes_received += answer.len() as u64;
            let response = match wire::decode_response(&answer) {
                Ok(r) => r,
                Err(e) => {
                    self.record_error(&e.to_string());
                    return Err(e.into());
                }
            };
            report.phase = SyncPhase::Applying;
            progress(report.clone());
            let outcome = self.apply_response(&response, &request, now)?;
            summary.pages += 1;
            report.cases_received += outcome.received.len() as u64;
            report.remaining = outcome.remaining;
            summary.rejected.extend(outcome.rejected);
            summary.kept_pending.extend(outcome.kept_pending);
            summary.unreadable.extend(outcome.unreadable);
            if !outcome.more {
                break;
            }
            if cancel.load(Ordering::Relaxed) {
                summary.cancelled = true;
                break;
            }
        }
        report.phase = SyncPhase::Done;
        progress(report.clone());
        summary.progress = report;
        Ok(summary)
    }
}

fn store_identity(conn: &Connection, identity: &Identity) -> Result<(), StoreError> {
    store::meta_set(conn, K_USER, &identity.user)?;
    store::meta_set(conn, K_ROLE, &identity.role)?;
    store::meta_set(conn, K_JURISDICTION, &identity.jurisdiction)?;
    Ok(())
}

/// Applies one document from the server: a snapshot is merged into what the phone holds (or
/// becomes the document), changes are applied; `server_heads` become the update's heads when
/// the phone holds them all.
fn apply_update(conn: &Connection, update: &DocUpdate, actor: &ActorId, now: Millis) -> Result<(), PhoneError> {
    let doc_id = &update.doc_id;
    let heads = hashes(&update.heads, doc_id)?;
    let existing = store::load_doc(conn, doc_id, actor)?;
    let (mut doc, persisted, old_server) = match existing {
        Some(l) => (l.doc, Some(l.persisted), l.state.server_heads),
        None => (AutoCommit::new().with_actor(actor.clone()), None, Vec::new()),
    };
    match &update.payload {
        Payload::Snapshot(bytes) => {
            if persisted.is_none() {
                doc = AutoCommit::load(bytes).map_err(|e| bad(doc_id, e))?.with_actor(actor.clone());
            } else {
                doc.load_incremental(bytes).map_err(|e| bad(doc_id, e))?;
            }
        }
        Payload::Changes(raw) => {
            let changes = raw
                .iter()
                .map(|b| Change::try_from(&b[..]).map_err(|e| bad(doc_id, e)))
                .collect::<Result<Vec<_>, _>>()?;
            doc.apply_changes(changes).map_err(|e| bad(doc_id, e))?;
        }
    }
    if doc.get_heads().is_empty() {
        return Err(bad(doc_id, "the update left the document empty (missing dependencies?)"));
    }
    let server_heads = if store::holds_all(&mut doc, &heads) {
        heads
    } else {
        old_server
    };
    store::persist(conn, doc_id, &mut doc, persisted.as_deref(), &server_heads, now)?;
    Ok(())
}

