//! The server's SQLite database: users and devices, the change feed, document snapshots and the
//! case projection that lists and deadline scans read.
//!
//! One connection behind a `Mutex`: every request's database work is serialised. That keeps the
//! feed's sequence numbers in commit order trivially and is plenty for a county's phones; a pool
//! of readers beside one writer is the step up if it ever is not. Callers from async code run
//! these methods inside `spawn_blocking`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use automerge::{ActorId, AutoCommit, Change, ChangeHash};
use gridcase_core::area::Jurisdiction;
use gridcase_core::calendar::Calendar;
use gridcase_core::doc::{CaseDoc, DocError, split_doc_id};
use gridcase_core::identity::device_of_token;
use gridcase_core::model::{Millis, Role};
use gridcase_core::policy::PolicySet;
use gridcase_core::sync::{Hash, Identity};
use rand::Rng;
use rand::distr::Alphanumeric;
use rusqlite::{Connection, OptionalExtension, Transaction, named_params, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::audit;
use crate::projection::{CREATED_KEY, Projection, project, trusted_time};

/// The database file inside the data directory.
pub const DB_FILE: &str = "gridcase.sqlite3";

/// Once this many change rows have accumulated past a document's snapshot, the next commit saves
/// a fresh snapshot (loading is then one `load` plus few changes).
pub const COMPACT_AFTER: i64 = 32;

/// The schema, one step per `PRAGMA user_version`. Append steps; never edit a released one.
pub const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        jurisdiction TEXT NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id),
        secret_hash TEXT NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0,
        clock_offset_ms INTEGER,
        last_seen INTEGER,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX devices_user ON devices(user_id);
    CREATE TABLE changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        doc_id TEXT NOT NULL,
        hash BLOB NOT NULL,
        bytes BLOB NOT NULL,
        device_id TEXT,
        received_at INTEGER NOT NULL,
        UNIQUE (doc_id, hash)
    );
    CREATE INDEX changes_doc_seq ON changes(doc_id, seq);
    CREATE TABLE docs (
        doc_id TEXT PRIMARY KEY,
        case_id TEXT NOT NULL,
        is_pii INTEGER NOT NULL,
        snapshot BLOB NOT NULL,
        snapshot_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        heads BLOB NOT NULL
    );
    CREATE INDEX docs_case ON docs(case_id);
    CREATE TABLE cases (
        case_id TEXT PRIMARY KEY,
        number TEXT NOT NULL,
        title TEXT NOT NULL,
        category TEXT NOT NULL,
        status TEXT NOT NULL,
        case_type TEXT NOT NULL,
        urgency TEXT NOT NULL,
        priority INTEGER NOT NULL,
        area_code TEXT NOT NULL,
        assignee TEXT NOT NULL,
        responsible_unit TEXT NOT NULL,
        stage TEXT,
        stage_started_at INTEGER,
        due_at INTEGER,
        due_provisional INTEGER NOT NULL DEFAULT 0,
        calendar_version TEXT NOT NULL,
        paused INTEGER NOT NULL DEFAULT 0,
        needs_review INTEGER NOT NULL DEFAULT 0,
        last_seq INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX cases_due_at ON cases(due_at);
    CREATE INDEX cases_area_code ON cases(area_code);
    CREATE INDEX cases_assignee ON cases(assignee);
    CREATE INDEX cases_last_seq ON cases(last_seq);
    CREATE TABLE event_times (
        case_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (case_id, event_id)
    ) WITHOUT ROWID;
    CREATE TABLE device_docs (
        device_id TEXT NOT NULL,
        doc_id TEXT NOT NULL,
        PRIMARY KEY (device_id, doc_id)
    ) WITHOUT ROWID;
    CREATE TABLE supervisions (
        id INTEGER PRIMARY KEY,
        case_id TEXT NOT NULL,
        stage TEXT NOT NULL,
        stage_started_at INTEGER NOT NULL,
        level INTEGER NOT NULL,
        reason TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (case_id, stage, stage_started_at)
    );
    "#,
    // 2: the audit log (see `crate::audit`).
    r#"
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        user_id TEXT,
        device_id TEXT,
        kind TEXT NOT NULL CHECK (kind IN ('change', 'reveal', 'reject', 'revoke', 'enrol')),
        case_id TEXT,
        doc_id TEXT,
        detail TEXT
    );
    CREATE INDEX audit_case_at ON audit(case_id, at);
    CREATE INDEX audit_user_at ON audit(user_id, at);
    CREATE INDEX audit_at ON audit(at);
    "#,
    // 3: the overdue scan reads only this covering index (running clocks by due instant with
    // what a supervision needs), never the table rows.
    r#"
    CREATE INDEX cases_running_due ON cases(due_at, case_id, stage, stage_started_at)
        WHERE due_at IS NOT NULL AND paused = 0;
    "#,
    // 4: the scope (role and jurisdiction) each device was last served, so that a changed
    // scope sends the device the cases it now covers (see `sync::Store::sync`).
    r#"
    ALTER TABLE devices ADD COLUMN served_scope TEXT;
    "#,
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    #[error("case document: {0}")]
    Doc(#[from] DocError),
    #[error("{0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("the database schema ({found}) is newer than this server understands ({supported})")]
    TooNew { found: u32, supported: u32 },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Brings the schema up to date. Returns the version reached.
pub fn migrate(conn: &mut Connection) -> Result<u32> {
    let supported = MIGRATIONS.len() as u32;
    let found: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > supported {
        return Err(StoreError::TooNew { found, supported });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as u32 + 1)?;
        tx.commit()?;
    }
    Ok(supported)
}

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

/// A case as the lists show it (from the projection, never from the document).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseSummary {
    pub case_id: String,
    pub number: String,
    pub title: String,
    pub category: String,
    pub status: String,
    pub urgency: String,
    pub area_code: String,
    pub assignee: String,
    pub responsible_unit: String,
    pub stage: Option<String>,
    pub stage_started_at: Option<Millis>,
    pub due_at: Option<Millis>,
    pub due_provisional: bool,
    pub calendar_version: String,
}

pub(crate) const SUMMARY_COLUMNS: &str = "case_id, number, title, category, status, urgency, \
     area_code, assignee, responsible_unit, stage, stage_started_at, due_at, due_provisional, \
     calendar_version";

pub(crate) fn summary_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<CaseSummary> {
    Ok(CaseSummary {
        case_id: row.get(0)?,
        number: row.get(1)?,
        title: row.get(2)?,
        category: row.get(3)?,
        status: row.get(4)?,
        urgency: row.get(5)?,
        area_code: row.get(6)?,
        assignee: row.get(7)?,
        responsible_unit: row.get(8)?,
        stage: row.get(9)?,
        stage_started_at: row.get(10)?,
        due_at: row.get(11)?,
        due_provisional: row.get(12)?,
        calendar_version: row.get(13)?,
    })
}

/// The server's database and the rules it computes deadlines with.
pub struct Store {
    conn: Mutex<Connection>,
    /// This process's Automerge actor for the server's own changes (supervision, demo data).
    /// Fresh per process, so two processes on one database never share an actor.
    actor: ActorId,
    policy: PolicySet,
    calendar: Calendar,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // FULL, not NORMAL: under WAL, NORMAL may lose the last commits on a power cut or an OS
    // crash, and a change is acknowledged to a phone as soon as it is committed; a phone that
    // was told "stored" never sends it again.
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

impl Store {
    /// Opens (creating on first run) the database in `data_dir`, with the shipped policy and
    /// holiday calendar.
    pub fn open(data_dir: impl AsRef<Path>) -> Result<Store> {
        Self::open_with(data_dir, PolicySet::default(), Calendar::embedded())
    }

    pub fn open_with(
        data_dir: impl AsRef<Path>,
        policy: PolicySet,
        calendar: Calendar,
    ) -> Result<Store> {
        let dir = data_dir.as_ref();
        std::fs::create_dir_all(dir)?;
        let path = dir.join(DB_FILE);
        let mut conn = Connection::open(&path)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "SQLite did not switch to WAL");
        }
        configure(&conn)?;
        migrate(&mut conn)?;
        Ok(Store::from_connection(conn, policy, calendar, Some(path)))
    }

    /// A database in memory, for tests and benchmarks.
    pub fn open_in_memory() -> Result<Store> {
        let mut conn = Connection::open_in_memory()?;
        configure(&conn)?;
        migrate(&mut conn)?;
        Ok(Store::from_connection(
            conn,
            PolicySet::default(),
            Calendar::embedded(),
            None,
        ))
    }

    fn from_connection(
        conn: Connection,
        policy: PolicySet,
        calendar: Calendar,
        path: Option<PathBuf>,
    ) -> Store {
        let mut rng = rand::rng();
        let actor: [u8; 20] = rng.random();
        Store {
            conn: Mutex::new(conn),
            actor: ActorId::from(actor.to_vec()),
            policy,
            calendar,
            path,
        }
    }

    pub fn policy(&self) -> &PolicySet {
        &self.policy
    }

    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    pub(crate) fn actor(&self) -> ActorId {
        self.actor.clone()
    }

    /// The connection. A panic while it was held leaves SQLite consistent (an open transaction
    /// rolls back when dropped), so a poisoned lock is taken over.
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn schema_version(&self) -> Result<u32> {
        Ok(self
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    // ---- users, devices, admin token ----

    /// Enrols a user, or updates the role and jurisdiction of an existing one (and lifts a
    /// revocation).
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
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO users (id, role, jurisdiction, revoked, created_at)
             VALUES (?1, ?2, ?3, 0, ?4)
             ON CONFLICT(id) DO UPDATE SET role = excluded.role,
                 jurisdiction = excluded.jurisdiction, revoked = 0",
            params![id, role.as_str(), jurisdiction.as_prefix(), now],
        )?;
        audit::write(
            &tx,
            &audit::Entry {
                at: now,
                user_id: Some(id),
                kind: audit::ENROL,
                detail: Some(serde_json::json!({
                    "role": role.as_str(),
                    "jurisdiction": jurisdiction.as_prefix(),
                })),
                ..Default::default()
            },
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Enrols a new device for `user` and returns its token (`<device hex32>.<secret>`). Only a
    /// SHA-256 of the secret is stored: the token cannot be shown again.
    pub fn enrol_device(&self, user: &str, now: Millis) -> Result<String> {
        self.enrol_device_with(user, &mut rand::rng(), now)
    }

    pub fn enrol_device_with(&self, user: &str, rng: &mut impl Rng, now: Millis) -> Result<String> {
        let mut conn = self.conn();
        let conn = conn.transaction()?;
        let known: Option<bool> = conn
            .query_row("SELECT revoked FROM users WHERE id = ?1", [user], |r| {
                r.get(0)
            })
            .optional()?;
        match known {
            None => return Err(StoreError::NotFound(format!("user `{user}`"))),
            Some(true) => return Err(StoreError::Invalid(format!("user `{user}` is revoked"))),
            Some(false) => {}
        }
        let id_bytes: [u8; 16] = rng.random();
        let device = to_hex(&id_bytes);
        let secret: String = (0..40)
            .map(|_| char::from(rng.sample(Alphanumeric)))
            .collect();
        conn.execute(
            "INSERT INTO devices (id, user_id, secret_hash, revoked, created_at)
             VALUES (?1, ?2, ?3, 0, ?4)",
            params![device, user, sha256_hex(secret.as_bytes()), now],
        )?;
        audit::write(
            &conn,
            &audit::Entry {
                at: now,
                user_id: Some(user),
                device_id: Some(&device),
                kind: audit::ENROL,
                detail: Some(serde_json::json!({"device": device})),
                ..Default::default()
            },
        )?;
        conn.commit()?;
        Ok(format!("{device}.{secret}"))
    }

    /// Revokes a device (at the wall clock, by an unnamed admin). See [`Store::revoke_device_by`].
    pub fn revoke_device(&self, device: &str) -> Result<bool> {
        self.revoke_device_by(device, None, chrono::Utc::now().timestamp_millis())
    }

    /// Revokes a device and records it in the audit log; `false` for an unknown device.
    pub fn revoke_device_by(&self, device: &str, by: Option<&str>, now: Millis) -> Result<bool> {
        let device = device.to_ascii_lowercase();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let user: Option<String> = tx
            .query_row(
                "SELECT user_id FROM devices WHERE id = ?1",
                [&device],
                |r| r.get(0),
            )
            .optional()?;
        let Some(user) = user else {
            return Ok(false);
        };
        tx.execute("UPDATE devices SET revoked = 1 WHERE id = ?1", [&device])?;
        audit::write(
            &tx,
            &audit::Entry {
                at: now,
                user_id: Some(&user),
                device_id: Some(&device),
                kind: audit::REVOKE,
                detail: Some(serde_json::json!({"by": by, "what": "device"})),
                ..Default::default()
            },
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Revokes a user (at the wall clock, by an unnamed admin). See [`Store::revoke_user_by`].
    pub fn revoke_user(&self, user: &str) -> Result<bool> {
        self.revoke_user_by(user, None, chrono::Utc::now().timestamp_millis())
    }

    /// Revokes a user, and so all of their devices, and records it in the audit log; `false`
    /// for an unknown user.
    pub fn revoke_user_by(&self, user: &str, by: Option<&str>, now: Millis) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute("UPDATE users SET revoked = 1 WHERE id = ?1", [user])?;
        if n == 0 {
            return Ok(false);
        }
        audit::write(
            &tx,
            &audit::Entry {
                at: now,
                user_id: Some(user),
                kind: audit::REVOKE,
                detail: Some(serde_json::json!({"by": by, "what": "user"})),
                ..Default::default()
            },
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Looks up a device token.
    pub fn authenticate(&self, token: &str) -> Result<Auth> {
        let Ok(device) = device_of_token(token) else {
            return Ok(Auth::Unknown);
        };
        let device = device.to_ascii_lowercase();
        let secret = &token[device.len() + 1..];
        let row = self
            .conn()
            .query_row(
                "SELECT d.secret_hash, d.revoked, u.revoked, u.id, u.role, u.jurisdiction
                 FROM devices d JOIN users u ON u.id = d.user_id WHERE d.id = ?1",
                [&device],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, bool>(1)?,
                        r.get::<_, bool>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                },
            )
            .optional()?;
        let Some((hash, device_revoked, user_revoked, user, role, jurisdiction)) = row else {
            return Ok(Auth::Unknown);
        };
        if !constant_time_eq(hash.as_bytes(), sha256_hex(secret.as_bytes()).as_bytes()) {
            return Ok(Auth::Unknown);
        }
        if device_revoked || user_revoked {
            return Ok(Auth::Revoked);
        }
        let role = Role::parse(&role).ok_or_else(|| {
            StoreError::Invalid(format!("user `{user}` has unknown role `{role}`"))
        })?;
        let jurisdiction = Jurisdiction::parse(&jurisdiction)
            .map_err(|e| StoreError::Invalid(format!("user `{user}`: {e}")))?;
        Ok(Auth::Device(DeviceCtx {
            device_id: device,
            user_id: user,
            role,
            jurisdiction,
        }))
    }

    /// Creates a new admin bearer token, replacing any previous one, and returns it. Only its
    /// hash is stored.
    pub fn create_admin_token(&self) -> Result<String> {
        let mut rng = rand::rng();
        let secret: String = (0..48)
            .map(|_| char::from(rng.sample(Alphanumeric)))
            .collect();
        let token = format!("admin.{secret}");
        self.conn().execute(
            "INSERT INTO settings (key, value) VALUES ('admin_token_hash', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [sha256_hex(token.as_bytes())],
        )?;
        Ok(token)
    }

    pub fn check_admin_token(&self, token: &str) -> Result<bool> {
        let hash: Option<String> = self
            .conn()
            .query_row(
                "SELECT value FROM settings WHERE key = 'admin_token_hash'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(hash.is_some_and(|h| {
            constant_time_eq(h.as_bytes(), sha256_hex(token.as_bytes()).as_bytes())
        }))
    }

    // ---- lists and details for the admin routes and the CLI ----

    /// Open cases past their due instant at `now`, most overdue first.
    /// The overdue scan of the deadline check: every overdue stage, from an index alone.
    pub fn overdue_stages(&self, now: Millis) -> Result<Vec<OverdueStage>> {
        overdue_stages_in(&self.conn(), now, false)
    }

    /// The overdue stages not supervised yet: what the periodic check acts on.
    pub fn unsupervised_overdue_stages(&self, now: Millis) -> Result<Vec<OverdueStage>> {
        overdue_stages_in(&self.conn(), now, true)
    }

    pub fn overdue(&self, now: Millis, limit: u32) -> Result<Vec<CaseSummary>> {
        overdue_in(&self.conn(), now, limit)
    }

    /// Cases that used at least the policy's share of their stage's time but are not overdue.
    pub fn due_soon(&self, now: Millis, limit: u32) -> Result<Vec<CaseSummary>> {
        due_soon_in(&self.conn(), now, self.policy.due_soon_fraction, limit)
    }

    pub fn case_summary(&self, case_id: &str) -> Result<Option<CaseSummary>> {
        let conn = self.conn();
        let sql = format!("SELECT {SUMMARY_COLUMNS} FROM cases WHERE case_id = ?1");
        Ok(conn
            .query_row(&sql, [case_id], summary_from_row)
            .optional()?)
    }

    /// The server's current copy of a document, if it has one.
    pub fn load_doc(&self, doc_id: &str) -> Result<Option<AutoCommit>> {
        load_doc(&self.conn(), doc_id)
    }

    pub fn supervisions(&self, case_id: &str) -> Result<Vec<SupervisionRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT stage, stage_started_at, level, reason, created_at FROM supervisions
             WHERE case_id = ?1 ORDER BY created_at, id",
        )?;
        let rows = stmt
            .query_map([case_id], |r| {
                Ok(SupervisionRow {
                    stage: r.get(0)?,
                    stage_started_at: r.get(1)?,
                    level: r.get(2)?,
                    reason: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Rows in the change feed.
    pub fn change_count(&self) -> Result<u64> {
        Ok(self
            .conn()
            .query_row("SELECT count(*) FROM changes", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    /// Row counts of the tables a push writes, to prove that a refused request stored nothing.
    pub fn row_counts(&self) -> Result<RowCounts> {
        let conn = self.conn();
        let count = |sql: &str| {
            conn.query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
        };
        Ok(RowCounts {
            changes: count("SELECT count(*) FROM changes")?,
            docs: count("SELECT count(*) FROM docs")?,
            cases: count("SELECT count(*) FROM cases")?,
            audit_change: count("SELECT count(*) FROM audit WHERE kind = 'change'")?,
            audit_reject: count("SELECT count(*) FROM audit WHERE kind = 'reject'")?,
            audit_reveal: count("SELECT count(*) FROM audit WHERE kind = 'reveal'")?,
        })
    }

    pub fn case_count(&self) -> Result<u64> {
        Ok(self
            .conn()
            .query_row("SELECT count(*) FROM cases", [], |r| r.get::<_, i64>(0))? as u64)
    }
}

/// See [`Store::row_counts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RowCounts {
    pub changes: u64,
    pub docs: u64,
    pub cases: u64,
    pub audit_change: u64,
    pub audit_reject: u64,
    pub audit_reveal: u64,
}

/// A supervision (督办) the deadline check recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SupervisionRow {
    pub stage: String,
    pub stage_started_at: Millis,
    pub level: u8,
    pub reason: String,
    pub created_at: Millis,
}

pub(crate) fn overdue_in(conn: &Connection, now: Millis, limit: u32) -> Result<Vec<CaseSummary>> {
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM cases
         WHERE due_at IS NOT NULL AND due_at < ?1 AND paused = 0
         ORDER BY due_at, case_id LIMIT ?2"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt
        .query_map(params![now, limit], summary_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// An overdue stage: what a supervision needs, read from the covering index alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverdueStage {
    pub case_id: String,
    pub stage: String,
    pub stage_started_at: Millis,
}

/// Every stage whose clock ran out before `now`, from `cases_running_due` (no row reads);
/// with `unsupervised`, only those without a supervision yet (checked in its unique index).
pub(crate) fn overdue_stages_in(
    conn: &Connection,
    now: Millis,
    unsupervised: bool,
) -> Result<Vec<OverdueStage>> {
    let mut stmt = conn.prepare_cached(
        "SELECT case_id, stage, stage_started_at FROM cases AS k INDEXED BY cases_running_due
         WHERE due_at IS NOT NULL AND paused = 0 AND due_at < ?1
           AND stage IS NOT NULL AND stage_started_at IS NOT NULL
           AND (NOT ?2 OR NOT EXISTS (SELECT 1 FROM supervisions s WHERE s.case_id = k.case_id
                AND s.stage = k.stage AND s.stage_started_at = k.stage_started_at))",
    )?;
    let rows = stmt
        .query_map(params![now, unsupervised], |r| {
            Ok(OverdueStage {
                case_id: r.get(0)?,
                stage: r.get(1)?,
                stage_started_at: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub(crate) fn due_soon_in(
    conn: &Connection,
    now: Millis,
    fraction: f64,
    limit: u32,
) -> Result<Vec<CaseSummary>> {
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM cases
         WHERE due_at IS NOT NULL AND due_at >= ?1 AND paused = 0
           AND stage_started_at IS NOT NULL
           AND (?1 - stage_started_at) >= ?2 * (due_at - stage_started_at)
         ORDER BY due_at, case_id LIMIT ?3"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt
        .query_map(params![now, fraction, limit], summary_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
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

pub(crate) fn heads_to_blob(heads: &[ChangeHash]) -> Vec<u8> {
    heads.iter().flat_map(|h| h.0).collect()
}

pub(crate) fn blob_to_heads(blob: &[u8]) -> Vec<Hash> {
    blob.chunks(32).map(<[u8]>::to_vec).collect()
}

pub(crate) fn hashes(heads: &[ChangeHash]) -> Vec<Hash> {
    heads.iter().map(|h| h.0.to_vec()).collect()
}

/// Loads the server's copy of a document: its snapshot plus the change rows after it.
pub(crate) fn load_doc(conn: &Connection, doc_id: &str) -> Result<Option<AutoCommit>> {
    let row: Option<(Vec<u8>, i64)> = conn
        .query_row(
            "SELECT snapshot, snapshot_seq FROM docs WHERE doc_id = ?1",
            [doc_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((snapshot, snapshot_seq)) = row else {
        return Ok(None);
    };
    let mut doc = if snapshot.is_empty() {
        AutoCommit::new()
    } else {
        AutoCommit::load(&snapshot)?
    };
    let mut stmt = conn
        .prepare_cached("SELECT bytes FROM changes WHERE doc_id = ?1 AND seq > ?2 ORDER BY seq")?;
    let mut changes = Vec::new();
    for bytes in stmt.query_map(params![doc_id, snapshot_seq], |r| r.get::<_, Vec<u8>>(0))? {
        let change = Change::from_bytes(bytes?)
            .map_err(|e| StoreError::Invalid(format!("stored change of {doc_id}: {e}")))?;
        changes.push(change);
    }
    if !changes.is_empty() {
        doc.apply_changes(changes)?;
    }
    Ok(Some(doc))
}

/// What is being committed for one document.
pub(crate) struct Commit<'a> {
    pub doc_id: &'a str,
    /// The server's document with `new_changes` already applied.
    pub doc: &'a mut AutoCommit,
    pub new_changes: &'a [Change],
    /// The device that sent the changes; `None` for the server's own.
    pub device: Option<&'a str>,
    /// The user behind `device`, or the server's name for its own changes (`system`, `demo`).
    pub user: Option<&'a str>,
    /// The sender's measured clock offset (0 for the server).
    pub offset: Millis,
    pub now: Millis,
}

/// Writes one document's new changes, its snapshot bookkeeping, trusted event times, the case
/// projection, what the sending device holds and the `change` audit row, all inside the caller's
/// transaction. Returns
/// the document's heads.
pub(crate) fn commit_doc(
    tx: &Transaction<'_>,
    c: Commit<'_>,
    policy: &PolicySet,
    calendar: &Calendar,
) -> Result<Vec<Hash>> {
    let (case_id, is_pii) = split_doc_id(c.doc_id);
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO changes (doc_id, hash, bytes, device_id, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for change in c.new_changes {
            insert.execute(params![
                c.doc_id,
                change.hash().0.as_slice(),
                change.raw_bytes(),
                c.device,
                c.now
            ])?;
        }
    }
    let last_seq: i64 = tx.query_row(
        "SELECT coalesce(max(seq), 0) FROM changes WHERE doc_id = ?1",
        [c.doc_id],
        |r| r.get(0),
    )?;
    let heads = c.doc.get_heads();
    let existing: Option<i64> = tx
        .query_row(
            "SELECT snapshot_seq FROM docs WHERE doc_id = ?1",
            [c.doc_id],
            |r| r.get(0),
        )
        .optional()?;
    // Snapshots are kept uncompressed: a restore sends them as they are when nothing came
    // after them, and the response is compressed as a whole (see `sync::snapshot_update`).
    match existing {
        None => {
            tx.execute(
                "INSERT INTO docs (doc_id, case_id, is_pii, snapshot, snapshot_seq, last_seq, heads)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
                params![
                    c.doc_id,
                    case_id,
                    is_pii,
                    c.doc.save_nocompress(),
                    last_seq,
                    heads_to_blob(&heads)
                ],
            )?;
        }
        Some(snapshot_seq) => {
            let since: i64 = tx.query_row(
                "SELECT count(*) FROM changes WHERE doc_id = ?1 AND seq > ?2",
                params![c.doc_id, snapshot_seq],
                |r| r.get(0),
            )?;
            if since > COMPACT_AFTER {
                tx.execute(
                    "UPDATE docs SET snapshot = ?2, snapshot_seq = ?3 WHERE doc_id = ?1",
                    params![c.doc_id, c.doc.save_nocompress(), last_seq],
                )?;
            }
            tx.execute(
                "UPDATE docs SET last_seq = ?2, heads = ?3 WHERE doc_id = ?1",
                params![c.doc_id, last_seq, heads_to_blob(&heads)],
            )?;
        }
    }
    if !is_pii {
        let case = CaseDoc::from_automerge(c.doc.clone())?.read()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO event_times (case_id, event_id, at) VALUES (?1, ?2, ?3)",
            )?;
            insert.execute(params![
                case_id,
                CREATED_KEY,
                trusted_time(case.created_at, c.offset, c.now)
            ])?;
            for event in &case.timeline {
                insert.execute(params![
                    case_id,
                    event.id,
                    trusted_time(event.at, c.offset, c.now)
                ])?;
            }
        }
        let trusted = trusted_times(tx, case_id)?;
        let row = project(&case, &trusted, policy, calendar);
        upsert_projection(tx, &row, last_seq, c.now)?;
    }
    if let Some(device) = c.device {
        tx.execute(
            "INSERT OR IGNORE INTO device_docs (device_id, doc_id) VALUES (?1, ?2)",
            params![device, c.doc_id],
        )?;
    }
    let new_hashes: Vec<String> = c
        .new_changes
        .iter()
        .map(|change| to_hex(&change.hash().0))
        .collect();
    audit::write(
        tx,
        &audit::Entry {
            at: c.now,
            user_id: c.user,
            device_id: c.device,
            kind: audit::CHANGE,
            case_id: Some(case_id),
            doc_id: Some(c.doc_id),
            detail: Some(serde_json::json!({"changes": new_hashes.len(), "hashes": new_hashes})),
        },
    )?;
    Ok(hashes(&heads))
}

pub(crate) fn trusted_times(conn: &Connection, case_id: &str) -> Result<HashMap<String, Millis>> {
    let mut stmt =
        conn.prepare_cached("SELECT event_id, at FROM event_times WHERE case_id = ?1")?;
    let map = stmt
        .query_map([case_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?
        .collect::<rusqlite::Result<HashMap<_, _>>>()?;
    Ok(map)
}

fn upsert_projection(tx: &Connection, p: &Projection, last_seq: i64, now: Millis) -> Result<()> {
    tx.execute(
        "INSERT INTO cases (case_id, number, title, category, status, case_type, urgency, priority,
             area_code, assignee, responsible_unit, stage, stage_started_at, due_at,
             due_provisional, calendar_version, paused, needs_review, last_seq, updated_at)
         VALUES (:case_id, :number, :title, :category, :status, :case_type, :urgency, :priority,
             :area_code, :assignee, :responsible_unit, :stage, :stage_started_at, :due_at,
             :due_provisional, :calendar_version, :paused, :needs_review, :last_seq, :updated_at)
         ON CONFLICT(case_id) DO UPDATE SET number = excluded.number, title = excluded.title,
             category = excluded.category, status = excluded.status,
             case_type = excluded.case_type, urgency = excluded.urgency,
             priority = excluded.priority, area_code = excluded.area_code,
             assignee = excluded.assignee, responsible_unit = excluded.responsible_unit,
             stage = excluded.stage, stage_started_at = excluded.stage_started_at,
             due_at = excluded.due_at, due_provisional = excluded.due_provisional,
             calendar_version = excluded.calendar_version, paused = excluded.paused,
             needs_review = excluded.needs_review, last_seq = excluded.last_seq,
             updated_at = excluded.updated_at",
        named_params! {
            ":case_id": p.case_id,
            ":number": p.number,
            ":title": p.title,
            ":category": p.category,
            ":status": p.status,
            ":case_type": p.case_type,
            ":urgency": p.urgency,
            ":priority": p.priority,
            ":area_code": p.area_code,
            ":assignee": p.assignee,
            ":responsible_unit": p.responsible_unit,
            ":stage": p.stage,
            ":stage_started_at": p.stage_started_at,
            ":due_at": p.due_at,
            ":due_provisional": p.due_provisional,
            ":calendar_version": p.calendar_version,
            ":paused": p.paused,
            ":needs_review": p.needs_review,
            ":last_seq": last_seq,
            ":updated_at": now,
        },
    )?;
    Ok(())
}

/// The projection row of a case, for validation (who it is assigned to, where it is).
pub(crate) fn case_scope_row(conn: &Connection, case_id: &str) -> Result<Option<(String, String)>> {
    Ok(conn
        .query_row(
            "SELECT area_code, assignee FROM cases WHERE case_id = ?1",
            [case_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_run_once_and_reach_the_latest_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as u32);
        store
            .enrol_user(
                "u1",
                Role::GridWorker,
                &Jurisdiction::parse("330604101").unwrap(),
                1,
            )
            .unwrap();
        drop(store);
        // Reopening keeps data and does not re-run steps.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as u32);
        let mode: String = store
            .conn()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert!(store.enrol_device("u1", 2).is_ok());
    }

    #[test]
    fn migrating_from_an_empty_database_and_refusing_a_newer_one() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), MIGRATIONS.len() as u32);
        // Idempotent.
        assert_eq!(migrate(&mut conn).unwrap(), MIGRATIONS.len() as u32);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN
                 ('users','devices','changes','docs','cases','device_docs','supervisions')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 7);
        conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }

    #[test]
    fn tokens_authenticate_and_revocation_is_reported() {
        let store = Store::open_in_memory().unwrap();
        let j = Jurisdiction::parse("330604101").unwrap();
        store.enrol_user("u1", Role::GridWorker, &j, 0).unwrap();
        let token = store.enrol_device("u1", 0).unwrap();
        let (device, secret) = token.split_once('.').unwrap();
        assert_eq!(device.len(), 32);
        assert!(secret.len() >= 16);
        let Auth::Device(ctx) = store.authenticate(&token).unwrap() else {
            panic!("token should authenticate");
        };
        assert_eq!(ctx.user_id, "u1");
        assert_eq!(ctx.role, Role::GridWorker);
        assert_eq!(
            store
                .authenticate(&format!("{device}.wrongwrongwrongwrong"))
                .unwrap(),
            Auth::Unknown
        );
        assert_eq!(store.authenticate("garbage").unwrap(), Auth::Unknown);
        // The secret itself is not stored.
        let stored: String = store
            .conn()
            .query_row("SELECT secret_hash FROM devices", [], |r| r.get(0))
            .unwrap();
        assert!(!stored.contains(secret));
        store.revoke_device(device).unwrap();
        assert_eq!(store.authenticate(&token).unwrap(), Auth::Revoked);
        assert!(store.enrol_device("nobody", 0).is_err());
        assert!(store.enrol_user("x", Role::System, &j, 0).is_err());
    }

    #[test]
    fn admin_token_rotates() {
        let store = Store::open_in_memory().unwrap();
        assert!(!store.check_admin_token("admin.x").unwrap());
        let first = store.create_admin_token().unwrap();
        assert!(store.check_admin_token(&first).unwrap());
        let second = store.create_admin_token().unwrap();
        assert!(!store.check_admin_token(&first).unwrap());
        assert!(store.check_admin_token(&second).unwrap());
    }
}
