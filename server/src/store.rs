//! The server's store: the database (any [`Database`] backend) with the rules it is written
//! by — the deadline policy and holiday calendar, this process's Automerge actor, and the
//! per-case locks that keep two requests of this process from judging the same case at once.
//! Accounts (enrolment, tokens) live here; sync, deadlines, audit and demo data add their own
//! `impl Store` blocks in their modules. No SQL here: see `crate::db`.
//!
//! Callers from async code run these methods inside `spawn_blocking`.

use std::path::Path;
use std::sync::Arc;

use automerge::ActorId;
use gridcase_core::area::Jurisdiction;
use gridcase_core::calendar::Calendar;
use gridcase_core::doc::DocError;
use gridcase_core::identity::device_of_token;
use gridcase_core::model::{Millis, Role};
use gridcase_core::policy::PolicySet;
use gridcase_core::rules::{RulesUpdate, SourcedRules};
use gridcase_core::scope::Scope;
use gridcase_core::sync::Identity;
use gridcase_core::validate::Pusher;
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};

use crate::audit;
use crate::case_locks::CaseLocks;
use crate::db::{self, Database, DbError, DeviceInsert, Location, NewDevice, UserRecord};

pub use crate::db::sqlite::DB_FILE;
pub use crate::db::{CaseSummary, OverdueStage, RowCounts, SupervisionRow};

/// Connections per pool unless configured.
pub const DEFAULT_POOL_SIZE: u32 = 16;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] DbError),
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    #[error("case document: {0}")]
    Doc(#[from] DocError),
    #[error("{0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The admin's role or jurisdiction does not allow it.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// It was done already and is not done twice (an audit draw, a recorded result).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A document kept changing under this request (other servers committing to it); the
    /// phone retries later.
    #[error("document {0} is busy")]
    Busy(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The device behind a token, as enrolled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCtx {
    pub device_id: String,
    pub user_id: String,
    pub role: Role,
    pub jurisdiction: Jurisdiction,
}

impl DeviceCtx {
    pub fn identity(&self) -> Identity {
        Identity {
            user: self.user_id.clone(),
            device: self.device_id.clone(),
            role: self.role.as_str().to_owned(),
            jurisdiction: self.jurisdiction.as_prefix().to_owned(),
        }
    }

    /// The device's scope: the one rule, [`gridcase_core::scope`].
    pub fn scope(&self) -> Scope {
        Scope::new(&self.jurisdiction, &self.user_id, self.role)
    }

    /// What the device is served, remembered so that a new role or jurisdiction restores.
    pub fn scope_key(&self) -> String {
        Scope::key(&self.jurisdiction, self.role)
    }

    /// The device as the judge of a push sees it.
    pub fn pusher(&self) -> Pusher {
        Pusher {
            user: self.user_id.clone(),
            device: self.device_id.clone(),
            role: self.role,
            jurisdiction: self.jurisdiction.clone(),
        }
    }
}

/// What a bearer token turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    Device(DeviceCtx),
    /// Malformed, unknown, or the secret does not match.
    Unknown,
    /// The device or its user was revoked: the phone should wipe its data.
    Revoked,
}

/// The server's database and the rules it computes deadlines with.
pub struct Store {
    db: Arc<dyn Database>,
    /// This process's Automerge actor for the server's own changes (supervision, demo data).
    /// Fresh per process, so two processes on one database never share an actor.
    actor: ActorId,
    rules: SourcedRules,
    /// The version `rules` were published under ([`Store::publish_rules`]); 0 until then, and
    /// then no rules travel (tools that only enrol or report publish nothing).
    rules_version: u64,
    pub(crate) locks: CaseLocks,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("db", &self.db).finish()
    }
}

impl Store {
    /// Opens (creating on first run) the SQLite database in `data_dir`, with the shipped policy
    /// and holiday calendar.
    pub fn open(data_dir: impl AsRef<Path>) -> Result<Store> {
        Self::open_with(data_dir, SourcedRules::shipped())
    }

    pub fn open_with(data_dir: impl AsRef<Path>, rules: SourcedRules) -> Result<Store> {
        let location = Location::Sqlite(data_dir.as_ref().to_owned());
        Self::connect(&location, DEFAULT_POOL_SIZE, rules)
    }

    /// Opens the database at `location` (SQLite directory or PostgreSQL URL), migrating it.
    pub fn connect(location: &Location, pool_size: u32, rules: SourcedRules) -> Result<Store> {
        Ok(Store::new(db::open(location, pool_size)?, rules))
    }

    pub fn new(db: Arc<dyn Database>, rules: SourcedRules) -> Store {
        let actor: [u8; 20] = rand::rng().random();
        Store {
            db,
            actor: ActorId::from(actor.to_vec()),
            rules,
            rules_version: 0,
            locks: CaseLocks::new(),
        }
    }

    /// Makes this store's rules the ones phones count by: they get the next version number
    /// when they differ from the last published (by any instance), and travel in every sync
    /// whose phone holds an older version. Called once by `serve`.
    pub fn publish_rules(&mut self) -> Result<u64> {
        self.rules_version = self.db.publish_rules(&self.rules.text.digest())?;
        Ok(self.rules_version)
    }

    /// The rules to send a phone that holds version `held`, if they are newer.
    pub fn rules_for(&self, held: u64) -> Option<RulesUpdate> {
        (self.rules_version > held).then(|| RulesUpdate {
            version: self.rules_version,
            text: self.rules.text.clone(),
        })
    }

    pub fn db(&self) -> &dyn Database {
        &*self.db
    }

    pub fn policy(&self) -> &PolicySet {
        &self.rules.rules.policy
    }

    pub fn calendar(&self) -> &Calendar {
        &self.rules.rules.calendar
    }

    pub(crate) fn actor(&self) -> ActorId {
        self.actor.clone()
    }

    pub fn schema_version(&self) -> Result<u32> {
        Ok(self.db.schema_version()?)
    }

    // ---- users and devices (admin accounts: `crate::admins`) ----

    /// Enrols a user, or updates the role and jurisdiction of an existing one (and lifts a
    /// user's revocation, never a device's: their revoked devices stay revoked). A grid worker
    /// or handling unit is never given everywhere ([`Role::may_be_everywhere`]).
    pub fn enrol_user(
        &self,
        id: &str,
        role: Role,
        jurisdiction: &Jurisdiction,
        now: Millis,
    ) -> Result<()> {
        check_user_id(id)?;
        if role == Role::System {
            return Err(StoreError::Invalid(
                "the system role belongs to the server itself".into(),
            ));
        }
        if jurisdiction.is_everywhere() && !role.may_be_everywhere() {
            return Err(StoreError::Invalid(format!(
                "a {role} works in one area; give its area code, not everywhere"
            )));
        }
        let user = UserRecord {
            id: id.to_owned(),
            role: role.as_str().to_owned(),
            jurisdiction: jurisdiction.as_prefix().to_owned(),
        };
        let entry = audit::enrolment(id, role, jurisdiction, now);
        Ok(self.db.upsert_user(&user, now, &entry)?)
    }

    /// Enrols a new device for `user` and returns its token (`<device hex32>.<secret>`). Only a
    /// SHA-256 of the secret is stored: the token cannot be shown again.
    pub fn enrol_device(&self, user: &str, now: Millis) -> Result<String> {
        self.enrol_device_with(user, &mut rand::rng(), now)
    }

    pub fn enrol_device_with(&self, user: &str, rng: &mut impl Rng, now: Millis) -> Result<String> {
        let id_bytes: [u8; 16] = rng.random();
        let device = to_hex(&id_bytes);
        let secret: String = (0..40)
            .map(|_| char::from(rng.sample(Alphanumeric)))
            .collect();
        let new = NewDevice {
            device_id: device.clone(),
            user_id: user.to_owned(),
            secret_hash: sha256_hex(secret.as_bytes()),
            now,
        };
        let entry = audit::device_enrolment(user, &device, now);
        match self.db.insert_device(&new, &entry)? {
            DeviceInsert::Inserted => Ok(format!("{device}.{secret}")),
            DeviceInsert::UnknownUser => Err(StoreError::NotFound(format!("user `{user}`"))),
            DeviceInsert::RevokedUser => {
                Err(StoreError::Invalid(format!("user `{user}` is revoked")))
            }
        }
    }

    /// Revokes a device (at the wall clock, by an unnamed admin). See [`Store::revoke_device_by`].
    pub fn revoke_device(&self, device: &str) -> Result<bool> {
        self.revoke_device_by(device, None, chrono::Utc::now().timestamp_millis())
    }

    /// Revokes a device and records it in the audit log; `false` for an unknown device.
    pub fn revoke_device_by(&self, device: &str, by: Option<&str>, now: Millis) -> Result<bool> {
        let device = device.to_ascii_lowercase();
        if !db::is_storable(&device) {
            return Ok(false);
        }
        let entry = |user: &str| audit::revocation(user, Some(&device), by, now);
        Ok(self.db.revoke_device(&device, &entry)?)
    }

    /// Revokes a user (at the wall clock, by an unnamed admin). See [`Store::revoke_user_by`].
    pub fn revoke_user(&self, user: &str) -> Result<bool> {
        self.revoke_user_by(user, None, chrono::Utc::now().timestamp_millis())
    }

    /// Revokes a user, and so all of their devices, and records it in the audit log; `false`
    /// for an unknown user.
    pub fn revoke_user_by(&self, user: &str, by: Option<&str>, now: Millis) -> Result<bool> {
        if !db::is_storable(user) {
            return Ok(false);
        }
        let entry = audit::revocation(user, None, by, now);
        Ok(self.db.revoke_user(user, &entry)?)
    }

    /// Looks up a device token.
    pub fn authenticate(&self, token: &str) -> Result<Auth> {
        let Ok(device) = device_of_token(token) else {
            return Ok(Auth::Unknown);
        };
        let device = device.to_ascii_lowercase();
        let secret = &token[device.len() + 1..];
        let Some(row) = self.db.device(&device)? else {
            return Ok(Auth::Unknown);
        };
        let hash = sha256_hex(secret.as_bytes());
        if !constant_time_eq(row.secret_hash.as_bytes(), hash.as_bytes()) {
            return Ok(Auth::Unknown);
        }
        if row.device_revoked || row.user_revoked {
            return Ok(Auth::Revoked);
        }
        let user = row.user_id;
        let role = Role::parse(&row.role).ok_or_else(|| {
            StoreError::Invalid(format!("user `{user}` has unknown role `{}`", row.role))
        })?;
        let jurisdiction = Jurisdiction::parse(&row.jurisdiction)
            .map_err(|e| StoreError::Invalid(format!("user `{user}`: {e}")))?;
        Ok(Auth::Device(DeviceCtx {
            device_id: device,
            user_id: user,
            role,
            jurisdiction,
        }))
    }

    // ---- lists and details for the admin routes and the CLI ----

    /// The overdue scan of the deadline check: every overdue stage, from an index alone.
    pub fn overdue_stages(&self, now: Millis) -> Result<Vec<OverdueStage>> {
        Ok(self.db.overdue_stages(now, false)?)
    }

    /// The overdue stages not supervised yet: what the periodic check acts on.
    pub fn unsupervised_overdue_stages(&self, now: Millis) -> Result<Vec<OverdueStage>> {
        Ok(self.db.overdue_stages(now, true)?)
    }

    /// Open cases past their due instant at `now`, most overdue first.
    pub fn overdue(&self, now: Millis, limit: u32) -> Result<Vec<CaseSummary>> {
        self.overdue_within(&Jurisdiction::everywhere(), now, limit)
    }

    /// [`Store::overdue`] of the cases inside `within` (an admin's jurisdiction).
    pub fn overdue_within(
        &self,
        within: &Jurisdiction,
        now: Millis,
        limit: u32,
    ) -> Result<Vec<CaseSummary>> {
        Ok(self.db.overdue(within.as_prefix(), now, limit)?)
    }

    /// Cases that used at least the policy's share of their stage's time but are not overdue.
    pub fn due_soon(&self, now: Millis, limit: u32) -> Result<Vec<CaseSummary>> {
        self.due_soon_within(&Jurisdiction::everywhere(), now, limit)
    }

    /// [`Store::due_soon`] of the cases inside `within`.
    pub fn due_soon_within(
        &self,
        within: &Jurisdiction,
        now: Millis,
        limit: u32,
    ) -> Result<Vec<CaseSummary>> {
        let fraction = self.policy().due_soon_fraction;
        Ok(self.db.due_soon(within.as_prefix(), now, fraction, limit)?)
    }

    /// The user as enrolled (role and jurisdiction), if known.
    pub fn user(&self, id: &str) -> Result<Option<UserRecord>> {
        if !db::is_storable(id) {
            return Ok(None);
        }
        Ok(self.db.user(id)?)
    }

    pub fn case_summary(&self, case_id: &str) -> Result<Option<CaseSummary>> {
        if !db::is_storable(case_id) {
            return Ok(None);
        }
        Ok(self.db.case_summary(case_id)?)
    }

    pub fn supervisions(&self, case_id: &str) -> Result<Vec<SupervisionRow>> {
        if !db::is_storable(case_id) {
            return Ok(Vec::new());
        }
        Ok(self.db.supervisions(case_id)?)
    }

    /// Row counts of the tables a push writes, to prove that a refused request stored nothing.
    pub fn row_counts(&self) -> Result<RowCounts> {
        Ok(self.db.row_counts()?)
    }

    /// Rows in the change feed.
    pub fn change_count(&self) -> Result<u64> {
        Ok(self.row_counts()?.changes)
    }

    pub fn case_count(&self) -> Result<u64> {
        Ok(self.row_counts()?.cases)
    }
}

fn check_user_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.chars().count() <= 64
        && id.chars().all(|c| !c.is_whitespace() && !c.is_control());
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "user id {:?} must be 1 to 64 characters without spaces",
            audit::bounded(id)
        )))
    }
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    to_hex(&Sha256::digest(data))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
