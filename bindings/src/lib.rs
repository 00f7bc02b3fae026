//! The phone apps' API (Kotlin, Swift, Python through UniFFI proc-macros): one object,
//! [`GridcasePhone`], over core's [`gridcase_core::phone::Phone`]. Each method is a line or two
//! calling core; what lives here is only the edge: the system clock, randomness (case ids, actor
//! nonces), the HTTP transport, the sync thread, and the mapping of errors and records.
//!
//! Threading: methods may be called from any thread, at any time, including while a sync runs:
//! core's phone holds no lock while the sync waits for the network, so a call waits at most for
//! one sync page to be written. Listeners run on the thread that made the change (the caller's
//! for an edit, the sync thread for a page) after it is committed, and may call the phone.

uniffi::setup_scaffolding!();

pub mod errors;
pub mod http;
mod oneshot;
pub mod records;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use gridcase_core::calendar::Calendar;
use gridcase_core::lifecycle::Action;
use gridcase_core::model::{Millis, NewCase};
use gridcase_core::phone::{CaseChanges, ChangeListener, Phone, PhoneError};
use gridcase_core::policy::PolicySet;
use gridcase_core::server_url::check_server_url;
use gridcase_core::store::projection::Rules;
use gridcase_core::store::{Page, StoreKey};

use errors::guard;
pub use errors::{GridcaseError, Result};
pub use http::{HttpTransport, Timeouts};
pub use records::*;

/// Documents asked for per restore page.
const PAGE_SIZE: u32 = 200;

/// Receives progress while a sync runs (on the sync thread). Implemented by the app. Whatever
/// it throws is ignored: a failing progress display does not stop the sync.
#[uniffi::export(foreign)]
pub trait SyncListener: Send + Sync {
    fn on_progress(&self, progress: ProgressRecord) -> Result<()>;
}

/// Hears which cases changed: after every local edit and after every sync page stored
/// (received, acknowledged, refused, removed). Implemented by the app; runs on the thread that
/// made the change, after it is committed, and may call the phone back. Whatever it throws is
/// ignored.
#[uniffi::export(foreign)]
pub trait CaseChangeListener: Send + Sync {
    fn on_cases_changed(&self, changes: CaseChangesRecord) -> Result<()>;
}

/// Core's listener, calling the app's.
struct Foreign(Arc<dyn CaseChangeListener>);

impl ChangeListener for Foreign {
    fn cases_changed(&self, changes: &CaseChanges) {
        // A listener that throws (or panics) must not undo or hide the change it hears about.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            self.0.on_cases_changed(changes.clone().into())
        }));
    }
}

/// The case store of one install, as the app holds it.
#[derive(uniffi::Object)]
pub struct GridcasePhone {
    phone: Phone,
    server_url: String,
    token: String,
    /// The running sync's cancel flag, if a sync runs.
    current_sync: Mutex<Option<Arc<AtomicBool>>>,
}

impl std::fmt::Debug for GridcasePhone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GridcasePhone")
            .field("server_url", &self.server_url)
            .finish_non_exhaustive()
    }
}

/// The edge's clock: the only place the bindings read the time.
fn now() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

fn nonce() -> [u8; 4] {
    rand::random()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl GridcasePhone {
    fn run_sync(
        &self,
        listener: Option<Arc<dyn SyncListener>>,
        cancel: Arc<AtomicBool>,
    ) -> Result<SyncSummaryRecord> {
        let mut transport =
            HttpTransport::new(&self.server_url, &self.token).with_cancel(cancel.clone());
        let mut report = |p: gridcase_core::phone::SyncProgress| {
            if let Some(l) = &listener {
                // A listener that throws must not abort the sync.
                let _ = catch_unwind(AssertUnwindSafe(|| l.on_progress(p.into())));
            }
        };
        let result = self.phone.sync_with_attachments(
            &mut transport,
            now(),
            &mut report,
            &cancel,
            PAGE_SIZE,
        );
        let cancelled = cancel.load(std::sync::atomic::Ordering::SeqCst);
        match result {
            Ok(summary) if summary.cancelled => Err(GridcaseError::cancelled()),
            Ok(summary) => Ok(summary.into()),
            Err(_) if cancelled => Err(GridcaseError::cancelled()),
            Err(e) => Err(e.into()),
        }
    }
}

#[uniffi::export]
impl GridcasePhone {
    /// Opens (or creates) the store at `path` for the device `device_token` enrolled at the
    /// office, syncing with `server_url` (e.g. `https://cases.example.gov.cn`; plain `http://`
    /// only to 127.0.0.1, ::1 or localhost, else `InvalidInput` before anything opens). `store_key`
    /// (32 random bytes the app keeps in the Android Keystore / iOS Keychain, never beside the
    /// file) encrypts the store; a different key fails with `WrongKey` and changes nothing.
    #[uniffi::constructor]
    pub fn open(
        path: String,
        server_url: String,
        device_token: String,
        store_key: Vec<u8>,
    ) -> Result<Arc<Self>> {
        guard(|| {
            check_server_url(&server_url)?;
            let key = StoreKey::from_slice(&store_key).map_err(PhoneError::from)?;
            let phone = Phone::open(PathBuf::from(path), &device_token, nonce(), Some(&key))?;
            Ok(Arc::new(GridcasePhone {
                phone,
                server_url,
                token: device_token,
                current_sync: Mutex::new(None),
            }))
        })
    }

    /// This device's id (from the token).
    pub fn device_id(&self) -> String {
        self.phone.device().to_string()
    }

    /// Who the server knows this device as; `None` before the first sync.
    pub fn identity(&self) -> Result<Option<IdentityRecord>> {
        guard(|| Ok(self.phone.identity()?.map(Into::into)))
    }

    /// Replaces the deadline policy (TOML) and, optionally, the holiday calendar text; list
    /// rows are recomputed with them. Rarely needed: the server's rules arrive in sync (and are
    /// kept across restarts), replacing these whenever the server publishes a newer version.
    pub fn set_deadline_rules(&self, policy_toml: String, calendar: Option<String>) -> Result<()> {
        guard(|| {
            let calendar = match calendar {
                Some(text) => Calendar::parse(&text)?,
                None => Calendar::embedded(),
            };
            let rules = Rules {
                policy: PolicySet::from_toml(&policy_toml)?,
                calendar,
            };
            Ok(self.phone.set_rules(rules, now())?)
        })
    }

    // ----- offline edits -----

    /// Registers a new case (a draft) offline; the id is a fresh UUID.
    pub fn create_case(
        &self,
        draft: NewCaseRecord,
        complainant: Option<ComplainantRecord>,
    ) -> Result<CaseRecord> {
        guard(|| {
            let new = NewCase {
                id: uuid::Uuid::new_v4().to_string(),
                number: draft.number,
                channel: draft.channel,
                case_type: draft.case_type,
                category: draft.category,
                urgency: draft.urgency,
                priority: draft.priority,
                title: draft.title,
                description: draft.description,
                location: draft.location.into(),
            };
            let complainant = complainant.map(Into::into);
            Ok(self
                .phone
                .create_case(&new, complainant.as_ref(), now())?
                .into())
        })
    }

    /// Changes one field.
    pub fn edit(&self, case_id: String, edit: CaseEdit) -> Result<()> {
        guard(|| Ok(self.phone.edit(&case_id, &edit.into(), now())?))
    }

    /// Replaces the description; the change is stored as the smallest text edit, so it merges
    /// with other people's concurrent edits.
    pub fn set_description(&self, case_id: String, text: String) -> Result<()> {
        guard(|| Ok(self.phone.set_description(&case_id, &text, now())?))
    }

    /// Deletes `delete` characters at `position` of the description and inserts `insert` there.
    pub fn splice_description(
        &self,
        case_id: String,
        position: u64,
        delete: u64,
        insert: String,
    ) -> Result<()> {
        guard(|| {
            let (pos, del) = (position as usize, delete as usize);
            Ok(self
                .phone
                .splice_description(&case_id, pos, del, &insert, now())?)
        })
    }

    /// Performs a lifecycle action (register, sign, reply…); returns the case afterwards.
    pub fn act(&self, case_id: String, action: Action) -> Result<CaseRecord> {
        guard(|| Ok(self.phone.act(&case_id, &action, now())?.into()))
    }

    /// Adds a note; returns its id.
    pub fn add_note(&self, case_id: String, text: String) -> Result<String> {
        guard(|| Ok(self.phone.add_note(&case_id, &text, now())?))
    }

    /// Adds a reference to a photo or file; returns its id.
    pub fn add_attachment(&self, case_id: String, attachment: AttachmentRef) -> Result<String> {
        guard(|| {
            let a = attachment;
            Ok(self.phone.add_attachment(
                &case_id,
                &a.sha256,
                &a.mime,
                a.size,
                &a.caption,
                now(),
            )?)
        })
    }

    /// Attaches the file at `path` (a photo, a recording, a PDF) to a case, offline: the bytes
    /// are kept in the encrypted store and go to the server with the next sync. `personal`: it
    /// shows the complainant (the unit complained about never receives it). Returns its id.
    pub fn attach_file(
        &self,
        case_id: String,
        path: String,
        mime: String,
        caption: String,
        personal: bool,
    ) -> Result<String> {
        guard(|| {
            let bytes = std::fs::read(&path).map_err(|e| GridcaseError::InvalidInput {
                message: format!("cannot read {path}: {e}"),
            })?;
            self.attach_bytes(case_id, bytes, mime, caption, personal)
        })
    }

    /// How photos attached from now on are downscaled and stripped of their location; `None`
    /// (the default) keeps them as given.
    pub fn set_photo_policy(&self, policy: Option<PhotoPolicyRecord>) {
        self.phone.set_photo_policy(policy.map(Into::into));
    }

    /// [`Self::attach_file`] for bytes the app holds (a camera buffer).
    pub fn attach_bytes(
        &self,
        case_id: String,
        bytes: Vec<u8>,
        mime: String,
        caption: String,
        personal: bool,
    ) -> Result<String> {
        guard(|| {
            let p = &self.phone;
            Ok(p.attach(&case_id, &bytes, &mime, &caption, personal, now())?)
        })
    }

    /// The case's attachments, each with where its bytes are (here, uploading, on the server).
    pub fn attachments(&self, case_id: String) -> Result<Vec<AttachmentStatusRecord>> {
        guard(|| Ok(records::all(self.phone.attachments(&case_id)?)))
    }

    /// The bytes of an attachment: from the store, or else fetched from the server (resuming a
    /// cut download) and kept. Blocks while it downloads: call it off the UI thread. Offline
    /// and not yet fetched: `Network`.
    pub fn open_attachment(&self, case_id: String, sha256: String) -> Result<Vec<u8>> {
        guard(|| {
            let mut transport = HttpTransport::new(&self.server_url, &self.token);
            let t: &mut dyn gridcase_core::phone::BlobTransport = &mut transport;
            Ok(self
                .phone
                .open_attachment(&case_id, &sha256, now(), Some(t))?)
        })
    }

    /// The complainant's unmasked phone number. Lists show it masked; each reveal is recorded
    /// and reaches the server's audit log with the next sync.
    pub fn reveal_complainant_phone(&self, case_id: String) -> Result<String> {
        guard(|| Ok(self.phone.reveal_complainant_phone(&case_id, now())?))
    }

    /// Sets the complainant's name and phone (personal data, kept in its own document).
    pub fn set_complainant(&self, case_id: String, complainant: ComplainantRecord) -> Result<()> {
        guard(|| {
            Ok(self
                .phone
                .set_complainant(&case_id, &complainant.into(), now())?)
        })
    }

    // ----- reads -----

    /// The whole case, with its complainant when this phone holds it.
    pub fn get_case(&self, case_id: String) -> Result<CaseRecord> {
        guard(|| Ok(self.phone.get_case(&case_id)?.into()))
    }

    /// The countdown of the case's current stage by the phone's rules, the server's trusted
    /// times and the phone's clock corrected by its last measured offset; `None` when no clock
    /// runs (draft, closed…).
    pub fn deadline(&self, case_id: String) -> Result<Option<DeadlineRecord>> {
        guard(|| Ok(self.phone.deadline(&case_id, now())?.map(Into::into)))
    }

    /// One page of a list: `limit` rows after skipping `offset`. `nextOffset` in the answer is
    /// where the next page starts (`None`: this was the last).
    pub fn list_cases(&self, list: CaseList, offset: u64, limit: u32) -> Result<CasePageRecord> {
        guard(|| {
            let page = Page { offset, limit };
            Ok(self.phone.list(&list.into(), page, now())?.into())
        })
    }

    /// How many cases a list holds.
    pub fn count_cases(&self, list: CaseList) -> Result<u64> {
        guard(|| Ok(self.phone.count(&list.into(), now())?))
    }

    // ----- change listeners -----

    /// Registers a listener for case changes; returns the id that removes it.
    pub fn add_change_listener(&self, listener: Arc<dyn CaseChangeListener>) -> u64 {
        self.phone.add_listener(Arc::new(Foreign(listener)))
    }

    /// Removes a listener; false when no listener had that id.
    pub fn remove_change_listener(&self, id: u64) -> bool {
        self.phone.remove_listener(id)
    }

    // ----- sync -----

    /// Pending local changes, the last successful sync, the last error, refused changes.
    pub fn sync_status(&self) -> Result<SyncStatusRecord> {
        guard(|| Ok(self.phone.sync_status()?.into()))
    }

    /// Changes the server refused, with its reasons. They stay on the phone and are not sent
    /// again until the case is edited again or [`Self::discard_local_changes`] drops them.
    pub fn rejected_changes(&self) -> Result<Vec<RejectionRecord>> {
        guard(|| Ok(self.sync_status()?.rejected))
    }

    /// Drops this phone's unsent (e.g. refused) changes to a document (`doc_id` from a
    /// [`RejectionRecord`]); the next sync brings back what the server holds.
    pub fn discard_local_changes(&self, doc_id: String) -> Result<()> {
        guard(|| Ok(self.phone.discard_local_changes(&doc_id, nonce(), now())?))
    }

    /// Exchanges changes with the server: sends what this phone changed, receives what others
    /// changed, page by page. Runs on its own thread; `listener` hears the progress. Fails with
    /// `Cancelled` after [`Self::cancel_sync`] (or when the awaiting coroutine/task is cancelled),
    /// `Network` when offline, `Unauthorized`/`Revoked` when the token is refused.
    pub async fn sync(
        self: Arc<Self>,
        listener: Option<Arc<dyn SyncListener>>,
    ) -> Result<SyncSummaryRecord> {
        let cancel = {
            let mut slot = lock(&self.current_sync);
            if slot.is_some() {
                return Err(GridcaseError::NotAllowed {
                    message: "a sync is already running".into(),
                });
            }
            let flag = Arc::new(AtomicBool::new(false));
            *slot = Some(flag.clone());
            flag
        };
        let (sender, receiver) = oneshot::channel(cancel.clone());
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("gridcase-sync".into())
            .spawn(move || {
                let result = guard(|| me.run_sync(listener, cancel));
                *lock(&me.current_sync) = None;
                sender.send(result);
            });
        if let Err(e) = spawned {
            *lock(&self.current_sync) = None;
            return Err(GridcaseError::Internal {
                message: format!("cannot start the sync thread: {e}"),
            });
        }
        receiver.await
    }

    /// Asks the running sync, if any, to stop: before its next exchange, or on receiving the
    /// current one (whose answer is then dropped unapplied). Pages already stored stay.
    pub fn cancel_sync(&self) {
        if let Some(flag) = lock(&self.current_sync).as_ref() {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Deletes everything this phone holds; every call fails with `Revoked` afterwards.
    pub fn wipe(&self) -> Result<()> {
        guard(|| Ok(self.phone.wipe()?))
    }
}

/// An instant (milliseconds since the epoch) as people read it: China time (UTC+8),
/// `2025-01-06 08:00`, whatever the device's zone.
#[uniffi::export]
pub fn china_time(at_ms: i64) -> String {
    gridcase_core::phone::display::china_time(at_ms)
}
