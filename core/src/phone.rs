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
use crate::doc::{
    CaseDoc, DocError, FieldEdit, PersonalDoc, mask_phone, personal_doc_id, split_doc_id,
};
use crate::identity::{self, IdentityError};
use crate::lifecycle::Action;
use crate::model::{Author, Case, Complainant, Millis, NewCase, Role, Status};
use crate::store::projection::{self, Rules};
use crate::store::{self, CaseSummary, Loaded, Store, StoreError, queries};
use crate::sync::wire::{self, WireError};
use crate::sync::{
    CatchUp, DocId, DocPush, DocUpdate, Identity, Payload, PushResult, RejectCode, RestoreToken,
    SyncRequest, SyncResponse,
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
    #[error(
        "this phone does not know who you are yet: sync once while online to learn who you are"
    )]
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
    let deps: std::collections::HashSet<ChangeHash> = changes
        .iter()
        .flat_map(|c| c.deps().iter().copied())
        .collect();
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
                    .query_row(
                        "SELECT updated_at FROM cases WHERE case_id = ?1",
                        [&id],
                        |r| r.get(0),
                    )
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

    pub fn set_description(
        &mut self,
        case_id: &str,
        text: &str,
        now: Millis,
    ) -> Result<(), PhoneError> {
        self.mutate_case(case_id, now, |doc, author| {
            doc.set_description(text, author, now)
        })
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
    pub fn add_note(
        &mut self,
        case_id: &str,
        text: &str,
        now: Millis,
    ) -> Result<String, PhoneError> {
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
    /// The complainant's unmasked phone number, for a role that may see it. Every reveal is
    /// recorded in the personal-data document (committed before the number is returned), so
    /// it reaches the server's audit log with the next sync.
    pub fn reveal_complainant_phone(
        &mut self,
        case_id: &str,
        now: Millis,
    ) -> Result<String, PhoneError> {
        let author = self.author()?;
        let pii_id = personal_doc_id(case_id);
        let tx = self.store.transaction()?;
        let Some(Loaded {
            doc,
            persisted,
            state,
        }) = store::load_doc(&tx, &pii_id, &self.actor)?
        else {
            return Err(PhoneError::NotFound(pii_id));
        };
        let mut pii = PersonalDoc::from_automerge(doc);
        pii.record_reveal(&author, now)?;
        store::persist(
            &tx,
            &pii_id,
            pii.automerge(),
            Some(&persisted),
            &state.server_heads,
            now,
        )?;
        store::set_rejected(&tx, &pii_id, None)?;
        projection::refresh_has_pending(&tx, &pii_id)?;
        tx.commit()?;
        Ok(pii.read().phone)
    }

    pub fn set_complainant(
        &mut self,
        case_id: &str,
        complainant: &Complainant,
        now: Millis,
    ) -> Result<(), PhoneError> {
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
    pub fn deadline(
        &self,
        case_id: &str,
        now: Millis,
    ) -> Result<Option<DeadlineStatus>, PhoneError> {
        let case = self.get_case(case_id)?.case;
        Ok(deadline::evaluate(
            &case,
            &self.rules.policy,
            &self.rules.calendar,
            now,
        ))
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
            conn.query_row("SELECT COUNT(*) FROM docs WHERE pending = 1", [], |r| {
                r.get(0)
            })?;
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
    pub fn discard_local_changes(
        &mut self,
        doc_id: &str,
        fresh_nonce: [u8; 4],
        now: Millis,
    ) -> Result<(), PhoneError> {
        self.check()?;
        let new_actor =
            identity::actor_for(&self.device, fresh_nonce).ok_or(IdentityError::MalformedToken)?;
        let tx = self.store.transaction()?;
        let Loaded { mut doc, state, .. } = store::load_doc(&tx, doc_id, &self.actor)?
            .ok_or_else(|| PhoneError::NotFound(doc_id.into()))?;
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
    pub fn build_request(
        &mut self,
        now: Millis,
        page_size: u32,
    ) -> Result<SyncRequest, PhoneError> {
        self.build(now, page_size, true)
    }

    fn build(
        &mut self,
        now: Millis,
        page_size: u32,
        with_pushes: bool,
    ) -> Result<SyncRequest, PhoneError> {
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
            let Some(Loaded { mut doc, state, .. }) = store::load_doc(conn, &doc_id, &self.actor)?
            else {
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
                PushResult::Rejected { doc_id, reason }
                    if reason.code == RejectCode::MissingHistory =>
                {
                    // The server lost history it had acknowledged: resend it all, and catch up.
                    if store::doc_state(&tx, doc_id)?.is_some() {
                        store::forget_server_heads(&tx, doc_id)?;
                        store::mark_refetch(&tx, doc_id)?;
                    }
                    touched.push(doc_id.clone());
                }
                PushResult::Rejected { doc_id, reason } => {
                    if store::doc_state(&tx, doc_id)?.is_some() {
                        store::set_rejected(
                            &tx,
                            doc_id,
                            Some((reason.code.as_str(), &reason.message)),
                        )?;
                    }
                    outcome.rejected.push(RejectedDoc {
                        doc_id: doc_id.clone(),
                        code: reason.code.as_str().into(),
                        message: reason.message.clone(),
                    });
                }
            }
        }

        // Documents already in memory, so list rows need not load them again.
        let mut fresh: std::collections::HashMap<&str, AutoCommit> = Default::default();
        for update in &response.docs {
            let doc = apply_update(&tx, update, &actor, now)?;
            fresh.insert(&update.doc_id, doc);
            touched.push(update.doc_id.clone());
            outcome.received.push(update.doc_id.clone());
        }

        for answer in &response.catch_up {
            let doc_id = &answer.doc_id;
            fresh.remove(doc_id.as_str());
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
            store::persist(
                &tx,
                doc_id,
                &mut doc,
                persisted.as_deref(),
                &server_heads,
                now,
            )?;
            store::clear_refetch(&tx, doc_id)?;
            touched.push(doc_id.clone());
            outcome.received.push(doc_id.clone());
        }

        for doc_id in &response.evict {
            fresh.remove(doc_id.as_str());
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
            let doc = match fresh.remove(case_id) {
                Some(doc) => doc,
                None => match store::load_doc(&tx, case_id, &actor)? {
                    Some(loaded) => loaded.doc,
                    None => continue,
                },
            };
            // A migration on read is not stored here: it is deterministic and repeats.
            let case_doc = match CaseDoc::from_automerge(doc) {
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
/// Applies one received document and returns it as stored.
fn apply_update(
    conn: &Connection,
    update: &DocUpdate,
    actor: &ActorId,
    now: Millis,
) -> Result<AutoCommit, PhoneError> {
    let doc_id = &update.doc_id;
    let mut heads = hashes(&update.heads, doc_id)?;
    let existing = store::load_doc(conn, doc_id, actor)?;
    let (mut doc, persisted, old_server) = match existing {
        Some(l) => (l.doc, Some(l.persisted), l.state.server_heads),
        None => (
            AutoCommit::new().with_actor(actor.clone()),
            None,
            Vec::new(),
        ),
    };
    match &update.payload {
        Payload::Snapshot(bytes) => {
            let mut snapshot = AutoCommit::load(bytes)
                .map_err(|e| bad(doc_id, e))?
                .with_actor(actor.clone());
            if heads.is_empty() {
                heads = snapshot.get_heads();
            }
            if persisted.is_none() {
                // A document new to this phone, all of it from the server: store the bytes as
                // they came instead of saving them again (most of a restore's time).
                store::insert_snapshot(conn, doc_id, bytes, &heads, now)?;
                return Ok(snapshot);
            } else {
                doc.merge(&mut snapshot).map_err(|e| bad(doc_id, e))?;
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
        return Err(bad(
            doc_id,
            "the update left the document empty (missing dependencies?)",
        ));
    }
    let server_heads = if store::holds_all(&mut doc, &heads) {
        heads
    } else {
        old_server
    };
    store::persist(
        conn,
        doc_id,
        &mut doc,
        persisted.as_deref(),
        &server_heads,
        now,
    )?;
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::doc::FieldEdit;
    use crate::store::tests::{DEVICE, T0, TOKEN, dump, identity, new_case};
    use crate::sync::{RejectCode, Rejection};

    const NONCE: [u8; 4] = [1, 2, 3, 4];

    fn server_actor() -> ActorId {
        ActorId::from(vec![7u8; 20])
    }

    fn server_author() -> Author {
        Author {
            user: "wang".into(),
            device: "server".into(),
            role: Role::TownshipStaff,
        }
    }

    fn open() -> (tempfile::TempDir, std::path::PathBuf, Phone) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phone.db");
        let mut phone = Phone::open(&path, TOKEN, NONCE).unwrap();
        phone.set_identity_for_tests(&identity()).unwrap();
        (dir, path, phone)
    }

    fn raw(heads: &[ChangeHash]) -> Vec<Vec<u8>> {
        heads.iter().map(|h| h.0.to_vec()).collect()
    }

    fn loaded(phone: &Phone, doc_id: &str) -> Option<Loaded> {
        store::load_doc(phone.store.conn(), doc_id, &phone.actor).unwrap()
    }

    fn heads(phone: &Phone, doc_id: &str) -> Vec<ChangeHash> {
        loaded(phone, doc_id).unwrap().doc.get_heads()
    }

    fn complainant() -> Complainant {
        Complainant {
            name: "张三".into(),
            phone: "13812341234".into(),
            anonymous: false,
        }
    }

    fn accept(doc_id: &str, heads: &[ChangeHash]) -> PushResult {
        PushResult::Accepted {
            doc_id: doc_id.into(),
            heads: raw(heads),
        }
    }

    fn response() -> SyncResponse {
        SyncResponse {
            server_time: T0,
            identity: identity(),
            cursor: 1,
            ..Default::default()
        }
    }

    #[test]
    fn a_phone_can_move_between_threads() {
        fn is_send<T: Send>() {}
        is_send::<Phone>();
    }

    #[test]
    fn writing_needs_an_identity_from_a_first_sync() {
        let dir = tempfile::tempdir().unwrap();
        let mut phone = Phone::open(dir.path().join("p.db"), TOKEN, NONCE).unwrap();
        let err = phone
            .create_case(&new_case("c1", "噪音", "330604101201"), None, T0)
            .unwrap_err();
        assert_eq!(err.code(), "no_identity");
        assert!(
            err.to_string()
                .contains("sync once while online to learn who you are")
        );
        // A first sync's identity is enough.
        let request = phone.build_request(T0, 50).unwrap();
        phone.apply_response(&response(), &request, T0).unwrap();
        assert_eq!(phone.identity().unwrap().unwrap().user, "li");
        phone
            .create_case(&new_case("c1", "噪音", "330604101201"), None, T0)
            .unwrap();
    }

    #[test]
    fn tokens_and_devices_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        assert_eq!(
            Phone::open(&path, "garbage", NONCE).unwrap_err().code(),
            "bad_token"
        );
        Phone::open(&path, TOKEN, NONCE).unwrap();
        let other = "ffffffffffffffffffffffffffffffff.s3cretS3cretS3cret";
        assert_eq!(
            Phone::open(&path, other, NONCE).unwrap_err().code(),
            "device_mismatch"
        );
    }

    #[test]
    fn unsynced_changes_survive_an_app_kill() {
        let (_dir, path, mut phone) = open();
        phone
            .create_case(
                &new_case("c1", "噪音", "330604101201"),
                Some(&complainant()),
                T0,
            )
            .unwrap();
        phone
            .edit("c1", &FieldEdit::Title("菜市场噪音".into()), T0 + 1)
            .unwrap();
        phone.add_note("c1", "已联系摊主", T0 + 2).unwrap();
        phone
            .splice_description("c1", 0, 0, "【急】", T0 + 3)
            .unwrap();
        // Killed: dropped without sync or any shutdown. Reopened with another nonce, which a
        // reopened store ignores (its actor stays the same).
        drop(phone);
        let mut phone = Phone::open(&path, TOKEN, [9, 9, 9, 9]).unwrap();
        assert_eq!(
            phone.actor,
            crate::identity::actor_for(DEVICE, NONCE).unwrap()
        );
        let detail = phone.get_case("c1").unwrap();
        assert_eq!(detail.case.title, "菜市场噪音");
        assert_eq!(detail.case.notes.len(), 1);
        assert!(detail.case.description.starts_with("【急】"));
        assert_eq!(detail.complainant, Some(complainant()));
        assert_eq!(detail.masked_phone.as_deref(), Some("138****1234"));
        let status = phone.sync_status().unwrap();
        assert_eq!(status.pending_docs, 2);
        assert!(phone.summary("c1").unwrap().unwrap().has_pending);
        let request = phone.build_request(T0 + 10, 50).unwrap();
        let pushed: Vec<(&str, usize)> = request
            .pushes
            .iter()
            .map(|p| (p.doc_id.as_str(), p.changes.len()))
            .collect();
        assert_eq!(pushed, [("c1", 4), ("c1#pii", 1)]);
    }

    #[test]
    fn a_request_carries_exactly_the_unacknowledged_changes() {
        let (_dir, _path, mut phone) = open();
        phone
            .create_case(&new_case("c1", "噪音", "330604101201"), None, T0)
            .unwrap();
        phone.act("c1", &Action::Register, T0 + 1).unwrap();
        let first = phone.build_request(T0 + 2, 50).unwrap();
        assert_eq!(first.device_time, T0 + 2);
        assert_eq!(
            (first.cursor, first.restore.clone(), first.page_size),
            (0, None, 50)
        );
        assert_eq!(first.pushes.len(), 1);
        let mut doc = loaded(&phone, "c1").unwrap().doc;
        let all: Vec<Vec<u8>> = doc
            .get_changes(&[])
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect();
        assert_eq!(first.pushes[0].changes, all);

        // Acknowledged with the heads the phone holds: nothing more to push.
        let acked = heads(&phone, "c1");
        let mut resp = response();
        resp.results = vec![accept("c1", &acked)];
        let outcome = phone.apply_response(&resp, &first, T0 + 3).unwrap();
        assert_eq!(outcome.accepted, ["c1"]);
        assert!(phone.build_request(T0 + 4, 50).unwrap().pushes.is_empty());
        assert_eq!(phone.sync_status().unwrap().pending_docs, 0);
        assert!(!phone.summary("c1").unwrap().unwrap().has_pending);
        assert_eq!(phone.build_request(T0 + 4, 50).unwrap().cursor, 1);

        // One more edit: exactly that change goes.
        phone.add_note("c1", "到场查看", T0 + 5).unwrap();
        let second = phone.build_request(T0 + 6, 50).unwrap();
        assert_eq!(second.pushes.len(), 1);
        assert_eq!(second.pushes[0].changes.len(), 1);
        let mut doc = loaded(&phone, "c1").unwrap().doc;
        let newest = doc.get_changes(&acked);
        assert_eq!(second.pushes[0].changes[0], newest[0].raw_bytes());

        // Acknowledged with server heads the phone does not hold (someone else's concurrent
        // change): the pushed heads count as shared.
        let mut resp = response();
        resp.results = vec![accept("c1", &[ChangeHash([5; 32])])];
        phone.apply_response(&resp, &second, T0 + 7).unwrap();
        let state = store::doc_state(phone.store.conn(), "c1").unwrap().unwrap();
        assert_eq!(state.server_heads, heads(&phone, "c1"));
        assert!(phone.build_request(T0 + 8, 50).unwrap().pushes.is_empty());
    }

    #[test]
    fn lost_server_history_is_resent_with_a_catch_up() {
        let (_dir, _path, mut phone) = open();
        phone
            .create_case(&new_case("c1", "噪音", "330604101201"), None, T0)
            .unwrap();
        let first = phone.build_request(T0, 50).unwrap();
        let mut resp = response();
        resp.results = vec![accept("c1", &heads(&phone, "c1"))];
        phone.apply_response(&resp, &first, T0 + 1).unwrap();
        phone.add_note("c1", "补充", T0 + 2).unwrap();
        let second = phone.build_request(T0 + 3, 50).unwrap();
        assert_eq!(second.pushes[0].changes.len(), 1);
        // The server was restored from a backup and no longer has the first change.
        let mut resp = response();
        resp.results = vec![PushResult::Rejected {
            doc_id: "c1".into(),
            reason: Rejection {
                code: RejectCode::MissingHistory,
                message: "depends on changes the server does not have".into(),
            },
        }];
        let outcome = phone.apply_response(&resp, &second, T0 + 4).unwrap();
        assert!(
            outcome.rejected.is_empty(),
            "not shown as a user-facing rejection"
        );
        let third = phone.build_request(T0 + 5, 50).unwrap();
        assert_eq!(
            third.pushes[0].changes.len(),
            2,
            "the whole history goes again"
        );
        assert_eq!(third.catch_up.len(), 1);
        assert!(phone.sync_status().unwrap().rejected.is_empty());
    }

    #[test]
    fn a_rejection_stops_re_pushing_until_the_user_edits_again() {
        let (_dir, _path, mut phone) = open();
        phone
            .create_case(&new_case("c1", "噪音", "330604101201"), None, T0)
            .unwrap();
        let request = phone.build_request(T0, 50).unwrap();
        let mut resp = response();
        resp.results = vec![PushResult::Rejected {
            doc_id: "c1".into(),
            reason: Rejection {
                code: RejectCode::OutOfJurisdiction,
                message: "不在辖区".into(),
            },
        }];
        let outcome = phone.apply_response(&resp, &request, T0 + 1).unwrap();
        assert_eq!(outcome.rejected[0].code, "out_of_jurisdiction");
        let status = phone.sync_status().unwrap();
        assert_eq!(status.pending_docs, 1);
        assert_eq!(
            status.rejected,
            [RejectedDoc {
                doc_id: "c1".into(),
                code: "out_of_jurisdiction".into(),
                message: "不在辖区".into()
            }]
        );
        assert!(phone.build_request(T0 + 2, 50).unwrap().pushes.is_empty());
        // Applying the rejection again changes nothing; an edit clears it and pushes it all.
        phone
            .edit(
                "c1",
                &FieldEdit::Location(Location {
                    address: "二村".into(),
                    area_code: "330604101202".into(),
                    gps: None,
                }),
                T0 + 3,
            )
            .unwrap();
        assert!(phone.sync_status().unwrap().rejected.is_empty());
        let again = phone.build_request(T0 + 4, 50).unwrap();
        assert_eq!(again.pushes[0].changes.len(), 2);
    }

    use crate::model::Location;

    fn server_case(id: &str, title: &str) -> CaseDoc {
        let mut doc = CaseDoc::create(
            &new_case(id, title, "330604101201"),
            &server_author(),
            server_actor(),
            T0,
        )
        .unwrap();
        doc.act(&Action::Register, &server_author(), T0 + 1)
            .unwrap();
        doc
    }

    #[test]
    fn updates_from_the_server_are_stored_and_listed() {
        let (_dir, _path, mut phone) = open();
        let mut server = server_case("s1", "路灯不亮");
        let mut pii =
            PersonalDoc::create(&complainant(), &server_author(), server_actor(), T0).unwrap();
        let request = phone.build_request(T0, 50).unwrap();
        let mut resp = response();
        resp.docs = vec![
            DocUpdate {
                doc_id: "s1".into(),
                payload: Payload::Snapshot(server.save()),
                heads: raw(&server.heads()),
            },
            DocUpdate {
                doc_id: "s1#pii".into(),
                payload: Payload::Snapshot(pii.automerge().save()),
                heads: raw(&pii.automerge().get_heads()),
            },
        ];
        resp.cursor = 7;
        let outcome = phone.apply_response(&resp, &request, T0 + 5).unwrap();
        assert_eq!(outcome.received, ["s1", "s1#pii"]);
        let summary = phone.summary("s1").unwrap().unwrap();
        assert_eq!(summary.status, Status::Registered);
        assert!(!summary.has_pending);
        assert_eq!(phone.by_status(Status::Registered).unwrap().len(), 1);
        assert_eq!(
            phone.get_case("s1").unwrap().complainant,
            Some(complainant())
        );
        assert!(phone.deadline("s1", T0 + 5).unwrap().is_some());
        assert_eq!(phone.sync_status().unwrap().pending_docs, 0);
        assert_eq!(phone.build_request(T0, 50).unwrap().cursor, 7);

        // Idempotent: the same response again changes nothing.
        let before = dump(phone.store.conn(), &[]);
        phone.apply_response(&resp, &request, T0 + 5).unwrap();
        assert_eq!(dump(phone.store.conn(), &[]), before);
        // ... even at a later time, except for when it last synced.
        phone.apply_response(&resp, &request, T0 + 6).unwrap();
        assert_eq!(
            dump(phone.store.conn(), &[K_LAST_SYNC]),
            dump_without(&before, K_LAST_SYNC)
        );

        // Changes: the server renames it and dispatches it.
        let base = server.heads();
        server
            .edit(
                &FieldEdit::Title("路灯不亮（三处）".into()),
                &server_author(),
                T0 + 10,
            )
            .unwrap();
        server
            .act(
                &Action::Dispatch {
                    unit: "城管".into(),
                    assignee: "li".into(),
                },
                &server_author(),
                T0 + 11,
            )
            .unwrap();
        let changes = server
            .automerge()
            .get_changes(&base)
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect();
        let mut resp = response();
        resp.docs = vec![DocUpdate {
            doc_id: "s1".into(),
            payload: Payload::Changes(changes),
            heads: raw(&server.heads()),
        }];
        phone.apply_response(&resp, &request, T0 + 12).unwrap();
        let summary = phone.summary("s1").unwrap().unwrap();
        assert_eq!(summary.title, "路灯不亮（三处）");
        assert_eq!(summary.status, Status::Dispatched);
        assert_eq!(summary.updated_at, T0 + 12);
        assert_eq!(phone.my_cases().unwrap().len(), 1, "assigned to li");
        assert!(!summary.has_pending);
    }

    fn dump_without(rows: &[String], key: &str) -> Vec<String> {
        rows.iter()
            .filter(|r| !r.starts_with(&format!("meta: Text(\"{key}\")")))
            .cloned()
            .collect()
    }

    #[test]
    fn a_snapshot_merges_with_local_pending_changes() {
        let (_dir, _path, mut phone) = open();
        let mut server = server_case("s1", "路灯不亮");
        let request = phone.build_request(T0, 50).unwrap();
        let mut resp = response();
        resp.docs = vec![DocUpdate {
            doc_id: "s1".into(),
            payload: Payload::Snapshot(server.save()),
            heads: raw(&server.heads()),
        }];
        phone.apply_response(&resp, &request, T0 + 1).unwrap();
        phone.add_note("s1", "本地备注", T0 + 2).unwrap();
        server
            .add_note("服务器备注", &server_author(), T0 + 3)
            .unwrap();
        resp.docs[0].payload = Payload::Snapshot(server.save());
        resp.docs[0].heads = raw(&server.heads());
        phone.apply_response(&resp, &request, T0 + 4).unwrap();
        let case = phone.get_case("s1").unwrap().case;
        assert_eq!(case.notes.len(), 2);
        assert!(phone.summary("s1").unwrap().unwrap().has_pending);
        let push = phone.build_request(T0 + 5, 50).unwrap();
        assert_eq!(push.pushes.len(), 1);
        assert_eq!(push.pushes[0].changes.len(), 1, "only the local note");
    }

    #[test]
    fn evictions_spare_documents_with_pending_changes() {
        let (_dir, _path, mut phone) = open();
        let server = server_case("s1", "路灯不亮");
        let mut server = server;
        let request = phone.build_request(T0, 50).unwrap();
        let mut resp = response();
        resp.docs = vec![DocUpdate {
            doc_id: "s1".into(),
            payload: Payload::Snapshot(server.save()),
            heads: raw(&server.heads()),
        }];
        phone.apply_response(&resp, &request, T0 + 1).unwrap();
        phone
            .create_case(&new_case("c1", "噪音", "330604101201"), None, T0 + 2)
            .unwrap();
        let mut resp = response();
        resp.evict = vec!["s1".into(), "c1".into(), "never-had".into()];
        let outcome = phone.apply_response(&resp, &request, T0 + 3).unwrap();
        assert_eq!(outcome.evicted, ["s1"]);
        assert_eq!(outcome.kept_pending, ["c1"]);
        assert!(phone.summary("s1").unwrap().is_none());
        assert!(loaded(&phone, "s1").is_none());
        assert!(phone.summary("c1").unwrap().is_some());
    }

    #[test]
    fn a_failing_response_stores_nothing() {
        let (_dir, _path, mut phone) = open();
        phone
            .create_case(&new_case("c1", "噪音", "330604101201"), None, T0)
            .unwrap();
        let request = phone.build_request(T0, 50).unwrap();
        let before = dump(phone.store.conn(), &[]);
        let mut server = server_case("s1", "路灯不亮");
        let mut resp = response();
        resp.cursor = 99;
        resp.results = vec![accept("c1", &heads(&phone, "c1"))];
        resp.docs = vec![
            DocUpdate {
                doc_id: "s1".into(),
                payload: Payload::Snapshot(server.save()),
                heads: raw(&server.heads()),
            },
            DocUpdate {
                doc_id: "s2".into(),
                payload: Payload::Changes(vec![vec![1, 2, 3]]),
                heads: vec![],
            },
        ];
        let err = phone.apply_response(&resp, &request, T0 + 1).unwrap_err();
        assert_eq!(err.code(), "bad_data");
        assert_eq!(dump(phone.store.conn(), &[K_LAST_ERROR]), before);
        let status = phone.sync_status().unwrap();
        assert!(status.last_error.unwrap().contains("s2"));
        assert_eq!(status.pending_docs, 1);
        assert!(phone.summary("s1").unwrap().is_none());
        // A bad head is refused too.
        resp.docs.pop();
        resp.docs[0].heads = vec![vec![1, 2]];
        assert!(phone.apply_response(&resp, &request, T0 + 1).is_err());
        assert_eq!(dump(phone.store.conn(), &[K_LAST_ERROR]), before);
    }

    #[test]
    fn discarding_rewinds_to_the_server_and_catches_up() {
        let (_dir, _path, mut phone) = open();
        // A case that never reached the server is simply deleted.
        phone
            .create_case(&new_case("draft", "草稿", "330604101201"), None, T0)
            .unwrap();
        phone
            .discard_local_changes("draft", [5, 5, 5, 5], T0)
            .unwrap();
        assert!(phone.summary("draft").unwrap().is_none());
        assert_eq!(
            phone.actor,
            crate::identity::actor_for(DEVICE, [5, 5, 5, 5]).unwrap()
        );

        // The server holds s1; the phone adds a note the server refuses, then discards it.
        let mut server = server_case("s1", "路灯不亮");
        let request = phone.build_request(T0, 50).unwrap();
        let mut resp = response();
        resp.docs = vec![DocUpdate {
            doc_id: "s1".into(),
            payload: Payload::Snapshot(server.save()),
            heads: raw(&server.heads()),
        }];
        phone.apply_response(&resp, &request, T0 + 1).unwrap();
        phone.add_note("s1", "不该有的备注", T0 + 2).unwrap();
        let push = phone.build_request(T0 + 3, 50).unwrap();
        let mut resp = response();
        resp.results = vec![PushResult::Rejected {
            doc_id: "s1".into(),
            reason: Rejection {
                code: RejectCode::CaseClosed,
                message: "closed".into(),
            },
        }];
        phone.apply_response(&resp, &push, T0 + 4).unwrap();
        phone
            .discard_local_changes("s1", [6, 6, 6, 6], T0 + 5)
            .unwrap();
        let case = phone.get_case("s1").unwrap().case;
        assert!(case.notes.is_empty());
        assert!(phone.sync_status().unwrap().rejected.is_empty());
        assert!(!phone.summary("s1").unwrap().unwrap().has_pending);

        // Meanwhile the server got a note from someone else. The next request asks for s1
        // with a sync message and pushes nothing.
        server
            .add_note("服务器备注", &server_author(), T0 + 6)
            .unwrap();
        let request = phone.build_request(T0 + 7, 50).unwrap();
        assert!(request.pushes.is_empty());
        assert_eq!(request.catch_up.len(), 1);
        assert_eq!(request.catch_up[0].doc_id, "s1");
        // The server answers as the sync protocol does, from a fresh state.
        let mut server_state = SyncState::new();
        let message = Message::decode(&request.catch_up[0].message).unwrap();
        server
            .automerge()
            .sync()
            .receive_sync_message(&mut server_state, message)
            .unwrap();
        let answer = server
            .automerge()
            .sync()
            .generate_sync_message(&mut server_state)
            .unwrap();
        let mut resp = response();
        resp.catch_up = vec![CatchUp {
            doc_id: "s1".into(),
            message: answer.encode(),
        }];
        let outcome = phone.apply_response(&resp, &request, T0 + 8).unwrap();
        assert_eq!(outcome.received, ["s1"]);
        let case = phone.get_case("s1").unwrap().case;
        assert_eq!(case.notes.len(), 1);
        assert_eq!(case.notes[0].text, "服务器备注");
        assert!(phone.build_request(T0 + 9, 50).unwrap().catch_up.is_empty());
        assert!(!phone.summary("s1").unwrap().unwrap().has_pending);

        // New edits use the new actor, so no sequence number is reused.
        phone.add_note("s1", "新备注", T0 + 10).unwrap();
        let push = phone.build_request(T0 + 11, 50).unwrap();
        let change = Change::try_from(&push.pushes[0].changes[0][..]).unwrap();
        assert_eq!(
            change.actor_id(),
            &crate::identity::actor_for(DEVICE, [6, 6, 6, 6]).unwrap()
        );
        assert_eq!(change.seq(), 1);
    }

    #[test]
    fn revealing_a_phone_number_is_recorded_and_synced() {
        let (_dir, _path, mut phone) = open();
        phone
            .create_case(
                &new_case("c1", "噪音", "330604101201"),
                Some(&complainant()),
                T0,
            )
            .unwrap();
        let first = phone.build_request(T0, 50).unwrap();
        let pii_pushed = |r: &SyncRequest| r.pushes.iter().any(|p| p.doc_id == "c1#pii");
        assert!(pii_pushed(&first));
        let mut resp = response();
        resp.results = first
            .pushes
            .iter()
            .map(|p| accept(&p.doc_id, &heads(&phone, &p.doc_id)))
            .collect();
        phone.apply_response(&resp, &first, T0 + 1).unwrap();
        assert!(!pii_pushed(&phone.build_request(T0 + 2, 50).unwrap()));
        let masked = phone.get_case("c1").unwrap().masked_phone;
        assert_eq!(masked.as_deref(), Some("138****1234"));
        assert_eq!(
            phone.reveal_complainant_phone("c1", T0 + 3).unwrap(),
            "13812341234"
        );
        // The reveal is a change of its own, waiting to be sent to the server's audit log.
        assert!(pii_pushed(&phone.build_request(T0 + 4, 50).unwrap()));
        assert!(phone.reveal_complainant_phone("nope", T0 + 5).is_err());
    }

    #[test]
    fn wipe_deletes_everything() {
        let (_dir, path, mut phone) = open();
        phone
            .create_case(
                &new_case("c1", "噪音", "330604101201"),
                Some(&complainant()),
                T0,
            )
            .unwrap();
        phone.wipe().unwrap();
        assert_eq!(phone.get_case("c1").unwrap_err().code(), "wiped");
        assert_eq!(phone.build_request(T0, 50).unwrap_err().code(), "wiped");
        let rows = dump(phone.store.conn(), &[]);
        assert!(rows.is_empty(), "{rows:?}");
        drop(phone);
        let bytes = std::fs::read(&path).unwrap();
        let needle = "13812341234".as_bytes();
        assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        let phone = Phone::open(&path, TOKEN, [8, 8, 8, 8]).unwrap();
        assert!(phone.identity().unwrap().is_none());
        assert!(phone.by_area("").unwrap().is_empty());
    }

    /// A transport that answers from a script and records what it was sent.
    struct Script {
        answers: VecDeque<Result<SyncResponse, TransportError>>,
        sent: Vec<SyncRequest>,
    }

    impl Transport for Script {
        fn exchange(&mut self, request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
            self.sent.push(wire::decode_request(&request).unwrap());
            match self.answers.pop_front() {
                Some(Ok(resp)) => Ok(wire::encode_response(&resp)),
                Some(Err(e)) => Err(e),
                None => Err(TransportError::Network("script ran out".into())),
            }
        }
    }

    fn page(id: &str, after: Option<&str>, remaining: u64) -> SyncResponse {
        let mut server = server_case(id, id);
        let mut resp = response();
        resp.docs = vec![DocUpdate {
            doc_id: id.into(),
            payload: Payload::Snapshot(server.save()),
            heads: raw(&server.heads()),
        }];
        resp.cursor = 0;
        resp.restore = after.map(|a| RestoreToken {
            upto: 40,
            after: a.into(),
        });
        resp.remaining = remaining;
        if after.is_none() {
            resp.cursor = 40;
        }
        resp
    }

    #[test]
    fn sync_pages_through_a_restore_and_resumes_after_a_drop() {
        let (_dir, _path, mut phone) = open();
        phone
            .create_case(&new_case("c1", "噪音", "330604101201"), None, T0)
            .unwrap();
        let mut script = Script {
            answers: VecDeque::from([
                Ok(page("r1", Some("r1"), 2)),
                Err(TransportError::Network("dropped".into())),
            ]),
            sent: Vec::new(),
        };
        let mut reports = Vec::new();
        let cancel = AtomicBool::new(false);
        let err = phone
            .sync(&mut script, T0, &mut |p| reports.push(p), &cancel, 1)
            .unwrap_err();
        assert_eq!(err.code(), "network");
        assert_eq!(script.sent.len(), 2);
        assert_eq!(
            script.sent[0].pushes.len(),
            1,
            "pushes go in the first request"
        );
        assert!(script.sent[1].pushes.is_empty(), "and only there");
        assert_eq!(script.sent[1].restore.as_ref().unwrap().after, "r1");
        assert!(phone.summary("r1").unwrap().is_some(), "page 1 was stored");
        let status = phone.sync_status().unwrap();
        assert!(status.restoring);
        assert!(status.last_error.unwrap().contains("dropped"));
        assert_eq!(reports.last().unwrap().cases_received, 1);

        // The next sync resumes at page 2, then page 3 ends the restore.
        let mut script = Script {
            answers: VecDeque::from([Ok(page("r2", Some("r2"), 1)), Ok(page("r3", None, 0))]),
            sent: Vec::new(),
        };
        let summary = phone
            .sync(&mut script, T0 + 1, &mut |_| {}, &cancel, 1)
            .unwrap();
        assert_eq!(summary.pages, 2);
        assert!(!summary.cancelled);
        assert_eq!(summary.progress.phase, SyncPhase::Done);
        assert_eq!(summary.progress.cases_received, 2);
        assert_eq!(script.sent[0].restore.as_ref().unwrap().after, "r1");
        assert_eq!(script.sent[0].pushes.len(), 1, "c1 was never acknowledged");
        let status = phone.sync_status().unwrap();
        assert!(!status.restoring);
        assert_eq!(status.last_error, None);
        assert_eq!(status.last_sync_at, Some(T0 + 1));
        assert_eq!(phone.build_request(T0, 1).unwrap().cursor, 40);
        assert_eq!(phone.by_status(Status::Registered).unwrap().len(), 3);
    }

    #[test]
    fn sync_stops_between_pages_when_cancelled() {
        let (_dir, _path, mut phone) = open();
        let mut script = Script {
            answers: VecDeque::from([Ok(page("r1", Some("r1"), 5)), Ok(page("r2", None, 0))]),
            sent: Vec::new(),
        };
        let cancel = AtomicBool::new(true);
        let summary = phone
            .sync(&mut script, T0, &mut |_| {}, &cancel, 1)
            .unwrap();
        assert!(summary.cancelled);
        assert_eq!(summary.pages, 1);
        assert_eq!(summary.progress.remaining, 5);
        assert_eq!(script.sent.len(), 1);
    }

    #[test]
    fn a_revoked_device_wipes_itself() {
        let (_dir, _path, mut phone) = open();
        phone
            .create_case(&new_case("c1", "噪音", "330604101201"), None, T0)
            .unwrap();
        let mut script = Script {
            answers: VecDeque::from([Err(TransportError::Unauthorized {
                wipe: false,
                message: "bad token".into(),
            })]),
            sent: Vec::new(),
        };
        let cancel = AtomicBool::new(false);
        assert!(
            phone
                .sync(&mut script, T0, &mut |_| {}, &cancel, 10)
                .is_err()
        );
        assert!(phone.summary("c1").unwrap().is_some(), "not revoked: kept");
        let mut script = Script {
            answers: VecDeque::from([Err(TransportError::Unauthorized {
                wipe: true,
                message: "revoked".into(),
            })]),
            sent: Vec::new(),
        };
        let err = phone
            .sync(&mut script, T0, &mut |_| {}, &cancel, 10)
            .unwrap_err();
        assert_eq!(err.code(), "unauthorized");
        assert_eq!(phone.summary("c1").unwrap_err().code(), "wiped");
    }
}
