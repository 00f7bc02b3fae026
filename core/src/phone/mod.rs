//! The phone: what the app (through `gridcase-bindings`) and the CLI call, one method each.
//! It owns the local store and speaks the phone side of the sync protocol.
//!
//! Modules, one concern each: [`edits`] (local changes), [`queries`] (lists, cases, status),
//! [`meta`] (who this phone is, its sync bookkeeping), [`sync`] (the sync client: a pure state
//! machine and page planner, run by a thin shell that does the SQL and the network), and
//! [`changes`] (telling the app which cases changed). All SQL is in [`crate::store`].
//!
//! Threading: a `Phone` is shared between threads (`&self` everywhere). It holds two
//! connections to its database: the app's, for edits and reads, and the sync's. The sync holds
//! no lock and no transaction while it waits for the network: it reads what to send in a short
//! read transaction, exchanges, then stores the answer in one short write transaction. Reads
//! never wait for the sync (WAL); an edit waits at most for one page to be written.
//!
//! Decisions:
//! - Every mutating call is one SQLite transaction (document changes + projection row + sync
//!   bookkeeping), committed before it returns.
//! - The phone learns who it is (user, role, jurisdiction) from its first sync; until then it
//!   refuses to write ([`PhoneError::NoIdentity`]).
//! - Only what was sent is acknowledged: an acknowledgement sets the server's heads to the heads
//!   it names (or to what was pushed), so an edit made while the exchange was in flight stays
//!   pending; documents received meanwhile are merged into what the store holds at apply time.
//! - Pushes go in the first request of a sync only; later pages of a restore carry none.
//! - A rejected document is not pushed again until the user edits it again (which clears the
//!   rejection) or discards the local changes.
//! - [`Phone::discard_local_changes`] rewinds the document to the heads known to be on the server,
//!   switches the store to a fresh actor (the dropped changes used sequence numbers that must not
//!   be reused: the server might hold them after a lost acknowledgement), and marks the document
//!   for a catch-up. A document that never reached the server is simply deleted.
//! - An evicted document with pending changes is kept (and reported) until they are pushed.
//! - A response whose application fails stores nothing (one transaction); the error goes to
//!   `last_error` and the same page is asked for again next time.

pub mod blobs;
pub mod changes;
pub mod display;
pub mod edits;
pub mod error;
pub mod meta;
pub mod queries;
pub mod sync;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use automerge::ActorId;

use crate::doc::CaseDoc;
use crate::identity::{self, IdentityError};
use crate::media::PhotoPolicy;
use crate::model::Millis;
use crate::revocation::RevocationKey;
use crate::store::projection::{self, Rules};
use crate::store::{self, Store, StoreError, StoreKey, docs, meta as store_meta};

pub use blobs::{AttachmentState, AttachmentView, BlobTransport, RangeBytes, UploadSummary};
pub use changes::{CaseChanges, ChangeListener, ChangeSource};
pub use error::{PhoneError, Transport, TransportError};
pub use meta::{RejectedDoc, SyncStatus};
pub use queries::CaseDetail;
pub use sync::{SyncOutcome, SyncPhase, SyncProgress, SyncSummary};

/// The phone's facade over its store.
pub struct Phone {
    device: String,
    /// The app's connection: edits and reads.
    app: Mutex<Store>,
    /// The sync's connection; held for a whole sync, so one sync runs at a time.
    sync: Mutex<Store>,
    /// This install's Automerge actor (changes after a discard).
    actor: RwLock<ActorId>,
    rules: RwLock<Arc<Rules>>,
    wiped: AtomicBool,
    /// The response size the last sync ended with: what this link carries (see
    /// [`sync::client::PageBudget`]).
    page_bytes: AtomicU32,
    listeners: changes::Listeners,
    /// Checks the server's proof before a `revoked` answer wipes the phone.
    revocation: RevocationKey,
    /// No sync before this device time: the server answered 429 with `Retry-After`.
    retry_not_before: Mutex<Option<Millis>>,
    /// How photos are prepared before they are kept and queued (size, location).
    photo_policy: RwLock<Option<PhotoPolicy>>,
}

impl std::fmt::Debug for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phone")
            .field("device", &self.device)
            .field("wiped", &self.wiped)
            .finish_non_exhaustive()
    }
}

/// Locks a mutex; a panic while it was held rolled back any open transaction, so what it
/// guards is usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Phone {
    /// Opens the store at `path` for the device named by `token`, unlocking it with `key`
    /// (`None`: an unencrypted file, for tests and tools; apps always pass one). `nonce` (4
    /// random bytes) is used only when the store is created: it makes this install's Automerge
    /// actor unique. A wrong key fails with [`StoreError::WrongKey`] and changes nothing.
    pub fn open(
        path: impl AsRef<Path>,
        token: &str,
        nonce: [u8; 4],
        key: Option<&StoreKey>,
    ) -> Result<Phone, PhoneError> {
        let device = identity::device_of_token(token)?.to_ascii_lowercase();
        let mut app = Store::open(path.as_ref(), key)?;
        let nonce = claim(&mut app, &device, token, nonce)?;
        let sync = Store::open(path.as_ref(), key)?;
        let actor = identity::actor_for(&device, nonce).ok_or(IdentityError::MalformedToken)?;
        let rules = stored_rules(&app)?;
        let phone = Phone {
            device,
            app: Mutex::new(app),
            sync: Mutex::new(sync),
            actor: RwLock::new(actor),
            rules: RwLock::new(Arc::new(rules)),
            wiped: AtomicBool::new(false),
            page_bytes: AtomicU32::new(sync::client::INITIAL_PAGE_BYTES),
            listeners: Default::default(),
            revocation: RevocationKey::of_token(token)?,
            retry_not_before: Mutex::new(None),
            photo_policy: RwLock::new(None),
        };
        if store_meta::get(phone.app().conn(), store::REPROJECT_KEY)?.is_some() {
            phone.reproject(0)?;
        }
        Ok(phone)
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    /// Replaces the deadline policy and calendar (e.g. the deployment's, fetched at setup) and
    /// recomputes every list row with them.
    pub fn set_rules(&self, rules: Rules, now: Millis) -> Result<(), PhoneError> {
        self.check()?;
        self.replace_rules(Arc::new(rules));
        self.reproject(now)?;
        self.listeners
            .notify(CaseChanges::everything(ChangeSource::Local));
        Ok(())
    }

    /// Registers a listener for case changes; returns the id to remove it with.
    pub fn add_listener(&self, listener: Arc<dyn ChangeListener>) -> u64 {
        self.listeners.add(listener)
    }

    /// Whether a listener with that id was registered (and is now removed).
    pub fn remove_listener(&self, id: u64) -> bool {
        self.listeners.remove(id)
    }

    /// Deletes everything this phone holds (the server said the device is revoked). The phone
    /// refuses every call afterwards.
    pub fn wipe(&self) -> Result<(), PhoneError> {
        self.wipe_with(&mut self.app())
    }

    fn wipe_with(&self, store: &mut Store) -> Result<(), PhoneError> {
        self.wiped.store(true, Ordering::SeqCst);
        store.wipe()?;
        self.listeners
            .notify(CaseChanges::everything(ChangeSource::Local));
        Ok(())
    }

    // ----- shared by the modules -----

    fn app(&self) -> MutexGuard<'_, Store> {
        lock(&self.app)
    }

    fn actor(&self) -> ActorId {
        self.actor.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn rules(&self) -> Arc<Rules> {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn check(&self) -> Result<(), PhoneError> {
        if self.wiped.load(Ordering::SeqCst) {
            Err(PhoneError::Wiped)
        } else {
            Ok(())
        }
    }

    /// Recomputes every `cases` row from the documents (after a migration or a rules change),
    /// keeping when each row last changed.
    fn reproject(&self, now: Millis) -> Result<(), PhoneError> {
        let mut store = self.app();
        let tx = store.write()?;
        reproject_rows(&tx, &self.actor(), &self.rules(), now)?;
        tx.commit()?;
        Ok(())
    }

    /// Counts down by `rules` from now on (the caller has recomputed the rows with them).
    fn replace_rules(&self, rules: Arc<Rules>) {
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = rules;
    }
}

/// Recomputes every `cases` row with `rules`, keeping when each row last changed.
fn reproject_rows(
    conn: &rusqlite::Connection,
    actor: &ActorId,
    rules: &Rules,
    now: Millis,
) -> Result<(), PhoneError> {
    for id in docs::case_doc_ids(conn)? {
        let Some(loaded) = docs::load_doc(conn, &id, actor)? else {
            continue;
        };
        let updated_at = projection::updated_at(conn, &id)?.unwrap_or(now);
        match CaseDoc::from_automerge(loaded.doc).and_then(|d| d.read()) {
            Ok(case) => projection::upsert(conn, &case, rules, updated_at)?,
            Err(_) => projection::delete(conn, &id)?,
        }
    }
    store_meta::delete(conn, store::REPROJECT_KEY)?;
    Ok(())
}

/// The rules this phone counts by when it opens: the server's as last received, else the
/// shipped ones.
fn stored_rules(store: &Store) -> Result<Rules, PhoneError> {
    let stored = store_meta::server_rules(store.conn())?;
    Ok(stored
        .and_then(|update| update.text.parse().ok())
        .unwrap_or_default())
}

/// Binds a new store to `device` (or checks that an existing one belongs to it), records the
/// token, and returns the install's actor nonce.
fn claim(
    store: &mut Store,
    device: &str,
    token: &str,
    nonce: [u8; 4],
) -> Result<[u8; 4], PhoneError> {
    let tx = store.write()?;
    match store_meta::device_id(&tx)? {
        None => {
            store_meta::set_device_id(&tx, device)?;
            store_meta::set_actor_nonce(&tx, nonce)?;
        }
        Some(stored) if stored != device => {
            return Err(PhoneError::DeviceMismatch {
                stored,
                token: device.to_string(),
            });
        }
        Some(_) => {}
    }
    // The token may have been re-issued for the same device.
    store_meta::set_token(&tx, token)?;
    let nonce = store_meta::actor_nonce(&tx)?.ok_or_else(|| StoreError::Corrupt {
        doc_id: "meta".into(),
        message: "no actor nonce".into(),
    })?;
    tx.commit()?;
    Ok(nonce)
}

#[cfg(test)]
mod tests;
