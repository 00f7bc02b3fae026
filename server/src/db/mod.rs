//! The data layer: everything the server needs from a database, as a few traits, and their two
//! implementations, [`sqlite`] (embedded, the default) and [`postgres`]. All SQL lives in those
//! two modules; sync, validation, deadlines, audit and admin logic are written once above
//! [`Database`] (see `crate::store`, `crate::sync`, `crate::deadlines`).
//!
//! The traits are blocking and object-safe: the server holds an `Arc<dyn Database>` and calls it
//! from `spawn_blocking`. Both backends keep a pool of connections (r2d2), so requests of
//! different devices use the database at the same time.
//!
//! Client crates. SQLite stays on `rusqlite` (bundled, WAL). PostgreSQL uses the blocking
//! `postgres` client of the rust-postgres project, the de facto standard driver (the same wire
//! implementation as `tokio-postgres`, binary parameters, no ORM or compile-time database
//! needed), with `r2d2` as the pool for both backends: the store is called from blocking tasks,
//! and a blocking client with a blocking pool fits that without turning the data layer async.
//! Each pooled PostgreSQL connection caches its prepared statements. TLS to PostgreSQL is not
//! wired in yet (a loopback or private-network database): `postgres-native-tls` would be the
//! addition.
//!
//! Concurrency contract (see `crate::sync::push`): reads happen in a [`ReadView`], a consistent
//! snapshot that takes no write lock; a document is written by [`Documents::commit_doc`], one
//! short transaction that refuses (`Conflict`) when the document changed since it was read, so
//! the caller re-reads and judges again. The change feed is gap-free: a change row's sequence
//! number is only ever visible after every smaller one is (each backend documents how).

mod admin_sql;
mod admins;
pub mod migrate;
pub mod move_up;
pub mod postgres;
pub mod sqlite;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use gridcase_core::model::Millis;
use gridcase_core::sync::times::block::StoredTime;
use serde::Serialize;

pub use admins::{
    AdminAccounts, AdminRecord, AuditDraws, DrawCaseRow, DrawInsert, DrawRow, NewDraw,
    PersonDeviceRow, Verification, VerifyOutcome,
};

use crate::projection::Projection;
use gridcase_core::scope::{CaseScope, Scope};

/// A position in the change feed (a change row's sequence number; 0 is "before everything").
pub type Seq = i64;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("the database schema ({found}) is newer than this server understands ({supported})")]
    TooNew { found: u32, supported: u32 },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite database in this data directory.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://user@host:port/db?options=...`).
    Postgres(String),
}

impl Location {
    /// `--database` wins over `--data`; only PostgreSQL URLs are accepted there.
    pub fn from_args(data: PathBuf, database: Option<&str>) -> Result<Location> {
        match database {
            None => Ok(Location::Sqlite(data)),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Location::Postgres(url.to_owned()))
            }
            Some(_) => Err(DbError::Invalid(
                "--database takes a postgres://… URL; the SQLite database lives in --data".into(),
            )),
        }
    }

    /// For logs: the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(dir) => format!("sqlite in {}", dir.display()),
            Location::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    let user = &url[scheme + 3..at];
                    let user = user.split(':').next().unwrap_or("");
                    format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
                }
                _ => url.clone(),
            },
        }
    }
}

/// Opens (creating and migrating as needed) the database at `location` with a pool of at most
/// `pool_size` connections.
pub fn open(location: &Location, pool_size: u32) -> Result<Arc<dyn Database>> {
    Ok(match location {
        Location::Sqlite(dir) => Arc::new(sqlite::SqliteDb::open(dir, pool_size)?),
        Location::Postgres(url) => Arc::new(postgres::PgDb::open(url, pool_size)?),
    })
}

/// A database the server can run on.
pub trait Database:
    Accounts
    + AdminAccounts
    + AuditDraws
    + Documents
    + CaseLists
    + AuditLog
    + Rates
    + BlobRows
    + Send
    + Sync
    + std::fmt::Debug
{
    /// "sqlite" or "postgres".
    fn backend(&self) -> &'static str;
    fn schema_version(&self) -> Result<u32>;
    /// The connection pool now (for `/metrics`).
    fn pool_state(&self) -> PoolState;
    /// Takes the deadline check's lease if no other process holds it (see `crate::leader`).
    fn try_lead(&self) -> Result<Option<crate::leader::Lease>>;
}

/// A connection pool's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolState {
    pub connections: u32,
    pub idle: u32,
    pub max: u32,
}

impl PoolState {
    pub fn of<M: r2d2::ManageConnection>(pool: &r2d2::Pool<M>) -> PoolState {
        let state = pool.state();
        PoolState {
            connections: state.connections,
            idle: state.idle_connections,
            max: pool.max_size(),
        }
    }
}

/// Statuses after which a case needs no more work: every other case counts as open.
pub const FINISHED_STATUSES_SQL: &str = "('closed', 'merged', 'not_accepted')";

/// Case counts for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CaseGauges {
    /// Cases not closed, merged or refused.
    pub open: u64,
    /// Open cases past their due instant, clock running.
    pub overdue: u64,
}

// ---- accounts ----

/// A user as enrolled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    pub role: String,
    pub jurisdiction: String,
}

/// What authenticating a device token needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub device_id: String,
    pub user_id: String,
    pub secret_hash: String,
    pub device_revoked: bool,
    pub user_revoked: bool,
    pub role: String,
    pub jurisdiction: String,
}

/// A device about to be enrolled.
#[derive(Debug, Clone)]
pub struct NewDevice {
    pub device_id: String,
    pub user_id: String,
    pub secret_hash: String,
    pub now: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceInsert {
    Inserted,
    UnknownUser,
    RevokedUser,
}

pub trait Accounts {
    /// Enrols a user or updates an existing one's role and jurisdiction (lifting a revocation),
    /// with its audit row.
    fn upsert_user(&self, user: &UserRecord, now: Millis, audit: &AuditEntry) -> Result<()>;
    /// Adds a device to an enrolled, unrevoked user, with its audit row.
    fn insert_device(&self, device: &NewDevice, audit: &AuditEntry) -> Result<DeviceInsert>;
    fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>>;
    fn user(&self, user_id: &str) -> Result<Option<UserRecord>>;
    /// Revokes a device; `audit` builds the row from the device's user. `false`: unknown.
    fn revoke_device(&self, device_id: &str, audit: &dyn Fn(&str) -> AuditEntry) -> Result<bool>;
    /// Revokes a user (and so their devices), with its audit row. `false`: unknown.
    fn revoke_user(&self, user_id: &str, audit: &AuditEntry) -> Result<bool>;
    fn setting(&self, key: &str) -> Result<Option<String>>;
    fn set_setting(&self, key: &str, value: &str) -> Result<()>;
    /// The version of the deadline rules with this digest: the last published one if its digest
    /// matches, else the next number, recorded atomically (several instances may start at once).
    fn publish_rules(&self, digest: &str) -> Result<u64>;
}

/// The `settings` key holding the published rules as `<version> <digest>`.
pub const RULES_SETTING: &str = "deadline_rules";

/// What [`Accounts::publish_rules`] does with the stored `<version> <digest>`: the version to
/// use and, when it is new, the value to store.
pub fn next_rules_version(stored: Option<&str>, digest: &str) -> (u64, Option<String>) {
    let (version, last_digest) = stored
        .and_then(|v| v.split_once(' '))
        .and_then(|(v, d)| Some((v.parse::<u64>().ok()?, d)))
        .unwrap_or((0, ""));
    if last_digest == digest {
        return (version, None);
    }
    let next = version + 1;
    (next, Some(format!("{next} {digest}")))
}

// ---- documents, the feed and device bookkeeping ----

/// A document as stored: its snapshot and the change rows committed after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDoc {
    /// `save_nocompress` bytes; empty for "no snapshot yet".
    pub snapshot: Vec<u8>,
    pub snapshot_seq: Seq,
    /// The sequence of the document's newest change: the version a commit compares against.
    pub last_seq: Seq,
    /// Raw change bytes after the snapshot, in feed order.
    pub changes: Vec<Vec<u8>>,
}

/// A change row about to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChange {
    pub hash: [u8; 32],
    pub bytes: Vec<u8>,
}

/// What a commit expects the stored document to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Not stored yet.
    Absent,
    /// Stored with this `last_seq`.
    At(Seq),
}

/// A supervision (督办) row: unique per case, stage and stage start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSupervision {
    pub case_id: String,
    pub stage: String,
    pub stage_started_at: Millis,
    pub level: u8,
    pub reason: String,
    pub created_at: Millis,
}

/// One document's commit: everything written in its one transaction.
#[derive(Debug, Clone)]
pub struct DocWrite {
    pub doc_id: String,
    pub case_id: String,
    pub is_pii: bool,
    pub expected: Expected,
    /// At least one: a commit always adds changes (that is what moves `last_seq`).
    pub changes: Vec<NewChange>,
    /// The device that sent the changes (`None` for the server's own).
    pub author_device: Option<String>,
    /// The document's heads afterwards (32 bytes each, concatenated).
    pub heads: Vec<u8>,
    /// A new snapshot (the whole document after the changes); required for a new document.
    pub snapshot: Option<Vec<u8>>,
    /// Trusted times of events seen for the first time, with the times they stated (kept if
    /// already present).
    pub event_times: Vec<StoredTime>,
    /// The case's new projection row (case documents only).
    pub projection: Option<Projection>,
    /// The device that now holds the document (checked against its scope by the caller).
    pub holder: Option<String>,
    /// Recorded with the change; if the row exists, nothing is written ([`Commit::Duplicate`]).
    pub supervision: Option<NewSupervision>,
    pub audit: Vec<AuditEntry>,
    pub now: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    Committed {
        last_seq: Seq,
    },
    /// The document is not as expected (another commit came first): read again and retry.
    Conflict,
    /// The supervision was recorded already.
    Duplicate,
}

/// One change-feed row for a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRow {
    pub seq: Seq,
    pub doc_id: String,
    /// `None` for the device's own changes (it has them).
    pub bytes: Option<Vec<u8>>,
}

/// A device's row as the last recorded sync left it, and when it was enrolled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceState {
    pub created_at: Millis,
    pub served_scope: Option<String>,
    pub clock_offset: Option<Millis>,
    pub last_seen: Option<Millis>,
}

/// What one sync changed about the device, written at its end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncRecord {
    pub device_id: String,
    pub clock_offset: Millis,
    pub last_seen: Millis,
    pub served_scope: String,
    /// Documents the device now holds (each checked against its scope by the caller).
    pub holds_added: Vec<String>,
    pub holds_removed: Vec<String>,
}

/// A case's turn across every server process sharing the database; released when dropped.
pub struct CaseTurn<'a>(Option<Box<dyn Send + 'a>>);

impl std::fmt::Debug for CaseTurn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CaseTurn").field(&self.0.is_some()).finish()
    }
}

impl<'a> CaseTurn<'a> {
    /// Nothing to hold (one server process per database).
    pub fn local() -> CaseTurn<'static> {
        CaseTurn(None)
    }

    /// Holds `guard` (whose drop ends the turn).
    pub fn holding(guard: impl Send + 'a) -> CaseTurn<'a> {
        CaseTurn(Some(Box::new(guard)))
    }
}

/// A stored blob's row (`crate::blobs`): its name, size, sniffed type and uploader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobRow {
    pub sha256: String,
    pub size: u64,
    pub mime: String,
    /// The device whose quota it counts against (`None` once that no longer matters).
    pub device_id: Option<String>,
    pub created_at: Millis,
}

/// The rows about attachment bytes. Which case references which blob is written with the
/// case's projection (`DocWrite::projection`, [`Projection::attachments`]).
pub trait BlobRows {
    /// Records a stored blob; `false` if it was recorded already (the first upload counts).
    fn insert_blob(&self, row: &BlobRow) -> Result<bool>;
    fn blob(&self, sha256: &str) -> Result<Option<BlobRow>>;
    /// Bytes of the blobs `device` uploaded (what its quota counts).
    fn blob_bytes_of(&self, device_id: &str) -> Result<u64>;
    /// The cases within `scope` that reference `sha256` (the scope rule's SQL, with a personal
    /// reference treated as a personal-data document). Empty: the device may not have it.
    fn blob_cases_in_scope(&self, sha256: &str, scope: &Scope) -> Result<Vec<String>>;
    /// Whether `case_id` references `sha256` (any reference).
    fn case_references_blob(&self, case_id: &str, sha256: &str) -> Result<bool>;
    /// Blobs no case references, recorded before `before`.
    fn unreferenced_blobs(&self, before: Millis) -> Result<Vec<String>>;
    /// Removes a blob's row if still no case references it; `true` if removed.
    fn delete_unreferenced_blob(&self, sha256: &str) -> Result<bool>;
    /// Case ids after `after`, in order, at most `limit` (a backfill's pages).
    fn case_ids_after(&self, after: &str, limit: u32) -> Result<Vec<String>>;
    /// Adds references of `case_id` (kept if present; never removes one, so a backfill racing
    /// a commit cannot lose the commit's references). Returns how many were new.
    fn add_case_blobs(&self, case_id: &str, hashes: &[String]) -> Result<u64>;
}

pub trait Documents {
    /// Waits for this case's turn among the server processes sharing the database, so that a
    /// push judged under it is not beaten to its commit by another server (the commit's version
    /// check stays the safety net). Within one process, `crate::case_locks` already serialises.
    fn case_turn(&self, case_id: &str) -> Result<CaseTurn<'_>>;
    /// A consistent read-only snapshot (no write lock taken).
    fn read(&self) -> Result<Box<dyn ReadView + '_>>;
    /// Writes one document's commit atomically, unless the stored document is no longer as
    /// `expected` or the supervision exists already.
    fn commit_doc(&self, write: &DocWrite) -> Result<Commit>;
    fn record_sync(&self, record: &SyncRecord) -> Result<()>;
}

/// Reads inside one snapshot.
pub trait ReadView {
    /// The feed position every visible change lies at or below.
    fn feed_head(&mut self) -> Result<Seq>;
    fn doc(&mut self, doc_id: &str) -> Result<Option<StoredDoc>>;
    /// The stored heads blob of a document.
    fn doc_heads(&mut self, doc_id: &str) -> Result<Option<Vec<u8>>>;
    /// The scope columns of a case's projection.
    fn case_scope(&mut self, case_id: &str) -> Result<Option<CaseScope>>;
    fn trusted_times(&mut self, case_id: &str) -> Result<HashMap<String, Millis>>;
    /// The trusted times of a case with the times their events stated, in no order.
    fn stored_times(&mut self, case_id: &str) -> Result<Vec<StoredTime>>;
    fn holds(&mut self, device: &str, doc_id: &str) -> Result<bool>;
    /// What the last recorded sync wrote about the device, and its enrolment: all a sync
    /// needs of the device row, in one read (`None`: unknown device).
    fn device_state(&mut self, device: &str) -> Result<Option<DeviceState>>;
    /// [`Self::device_state`] and [`Self::feed_head`]: what every sync reads first, in one
    /// statement where a statement costs a round trip (PostgreSQL).
    fn device_and_head(&mut self, device: &str) -> Result<(Option<DeviceState>, Seq)> {
        Ok((self.device_state(device)?, self.feed_head()?))
    }
    /// Feed rows after `after` of documents in `scope`, in sequence order, at most `limit`.
    fn feed(
        &mut self,
        scope: &Scope,
        device: &str,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<FeedRow>>;
    /// How many documents in scope have changes after `after`.
    fn feed_docs_after(&mut self, scope: &Scope, after: Seq) -> Result<u64>;
    /// Ids of documents in scope after `after`, in id order, at most `limit`.
    fn restore_ids(&mut self, scope: &Scope, after: &str, limit: usize) -> Result<Vec<String>>;
    fn restore_docs_after(&mut self, scope: &Scope, after: &str) -> Result<u64>;
    /// Documents the device holds that are outside `scope`; with `changed_after` > 0, only
    /// among cases committed after that feed position (nothing else can have left the scope
    /// since the device's last sync), so the cost follows what changed, not what it holds.
    fn held_outside(
        &mut self,
        device: &str,
        scope: &Scope,
        changed_after: Seq,
    ) -> Result<Vec<String>>;
}

// ---- lists, deadlines and statistics ----

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

/// An overdue stage: what a supervision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverdueStage {
    pub case_id: String,
    pub stage: String,
    pub stage_started_at: Millis,
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

/// Row counts of the tables a push writes, to prove that a refused request stored nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RowCounts {
    pub changes: u64,
    pub docs: u64,
    pub cases: u64,
    pub audit_change: u64,
    pub audit_reject: u64,
    pub audit_reveal: u64,
}

pub trait CaseLists {
    /// Every stage whose clock ran out before `now` (with `unsupervised`, only those without a
    /// supervision yet), from an index alone.
    fn overdue_stages(&self, now: Millis, unsupervised: bool) -> Result<Vec<OverdueStage>>;
    /// Open cases past their due instant at `now`, most overdue first, of the cases whose
    /// valid area code starts with `within` ("" is every case).
    fn overdue(&self, within: &str, now: Millis, limit: u32) -> Result<Vec<CaseSummary>>;
    /// Cases that used at least `fraction` of their stage's time but are not overdue (of the
    /// cases inside `within`, as for `overdue`).
    fn due_soon(
        &self,
        within: &str,
        now: Millis,
        fraction: f64,
        limit: u32,
    ) -> Result<Vec<CaseSummary>>;
    fn case_summary(&self, case_id: &str) -> Result<Option<CaseSummary>>;
    /// Records a supervision without a document change; `false` if it existed.
    fn insert_supervision(&self, supervision: &NewSupervision) -> Result<bool>;
    fn supervisions(&self, case_id: &str) -> Result<Vec<SupervisionRow>>;
    fn row_counts(&self) -> Result<RowCounts>;
    fn case_gauges(&self, now: Millis) -> Result<CaseGauges>;
}

// ---- assessment rates ----

/// Counts over `case_facts` (the conditions and their SQL are `crate::rates`'s).
pub trait Rates {
    /// One count per `crate::rates::counted_conditions` entry over the cases `filter` covers.
    fn rate_counts(&self, filter: &crate::rates::FactFilter, now: Millis) -> Result<Vec<i64>>;
    /// Ids of the cases `filter` covers, in id order (for drill-down and tests).
    fn fact_case_ids(&self, filter: &crate::rates::FactFilter) -> Result<Vec<String>>;
    /// Up to `limit` cases with a projection but no facts row (committed before the facts
    /// existed), in id order after `after`.
    fn cases_without_facts(&self, after: &str, limit: u32) -> Result<Vec<String>>;
    /// Writes a facts row unless the case has one (a commit since the read wrote newer facts).
    fn fill_facts(&self, facts: &crate::rates::CaseFacts) -> Result<bool>;
    /// Empties the per-day rollup and fills it again from `case_facts` (`crate::fact_days`),
    /// for facts written around the store (a benchmark's bulk insert).
    fn rebuild_fact_days(&self) -> Result<()>;
    /// Runs one of the report's read-only queries (`crate::report::queries`, which writes the
    /// SQL once for both backends given their placeholder spelling).
    fn fact_rows(&self, query: &dyn Fn(Placeholder) -> FactQuery) -> Result<Vec<FactRow>>;
}

/// How a backend spells its i-th (1-based) bound parameter (`?1`, `$1`).
pub type Placeholder = fn(usize) -> String;

/// A read-only query over `case_facts`: its SQL, its text parameters, and how many of its
/// leading columns are text (the rest are integers or NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactQuery {
    pub sql: String,
    pub params: Vec<String>,
    pub texts: usize,
}

/// A row of a [`FactQuery`]: its text columns, then its integer columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactRow {
    pub texts: Vec<String>,
    pub numbers: Vec<Option<i64>>,
}

// ---- audit ----

/// An audit row about to be written (see `crate::audit` for the kinds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: Millis,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    pub kind: &'static str,
    pub case_id: Option<String>,
    pub doc_id: Option<String>,
    /// A small JSON object.
    pub detail: Option<String>,
    /// The jurisdiction (area prefix) of a row that concerns no case or user: an admin
    /// account's or an audit draw's.
    pub area: Option<String>,
}

/// One audit row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: Millis,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    pub kind: String,
    pub case_id: Option<String>,
    pub doc_id: Option<String>,
    pub detail: Option<String>,
    pub area: Option<String>,
}

/// A filter over the audit log. Rows come newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub case_id: Option<String>,
    pub user_id: Option<String>,
    /// Only rows of this kind (one of `crate::audit::KINDS`).
    pub kind: Option<String>,
    /// Inclusive lower bound on `at`.
    pub from: Option<Millis>,
    /// Exclusive upper bound on `at`.
    pub to: Option<Millis>,
    /// 0 means the default.
    pub limit: u32,
    /// Only rows inside this jurisdiction (digits; `None` or "" everywhere): rows of a case
    /// whose area lies inside, of a user enrolled inside, or whose own `area` lies inside.
    pub within: Option<String>,
}

pub trait AuditLog {
    fn write_audit(&self, entry: &AuditEntry) -> Result<()>;
    /// `limit` already resolved (never 0).
    fn audit_log(&self, query: &AuditQuery, limit: u32) -> Result<Vec<AuditRow>>;
    fn audit_count(&self, kind: &str) -> Result<u64>;
}

/// Whether text can be stored or looked up at all: PostgreSQL text cannot hold NUL. No stored
/// id contains one (ids are checked on the way in), so a lookup by such a key finds nothing,
/// on either backend, without asking the database.
pub fn is_storable(text: &str) -> bool {
    !text.contains('\0')
}

/// The candidate ids of a draw as stored (one per line).
pub(crate) fn split_candidates(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

/// Splits a heads blob into hashes.
pub fn blob_to_heads(blob: &[u8]) -> Vec<Vec<u8>> {
    blob.chunks(32).map(<[u8]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            Location::from_args("d".into(), None).unwrap(),
            Location::Sqlite("d".into())
        );
        assert!(matches!(
            Location::from_args("d".into(), Some("postgresql://x/y")).unwrap(),
            Location::Postgres(_)
        ));
        assert!(Location::from_args("d".into(), Some("mysql://x")).is_err());
        let pg = Location::Postgres("postgres://gc:secret@db:5432/gc".into());
        assert_eq!(pg.describe(), "postgres://gc@db:5432/gc");
    }

    #[test]
    fn a_new_digest_takes_the_next_version_and_the_same_one_keeps_it() {
        assert_eq!(next_rules_version(None, "aa"), (1, Some("1 aa".into())));
        assert_eq!(next_rules_version(Some("1 aa"), "aa"), (1, None));
        assert_eq!(
            next_rules_version(Some("1 aa"), "bb"),
            (2, Some("2 bb".into()))
        );
        // Going back to earlier texts is a new edit, with a new version.
        assert_eq!(
            next_rules_version(Some("2 bb"), "aa"),
            (3, Some("3 aa".into()))
        );
        // PostgreSQL's placeholder row before the first publication.
        assert_eq!(
            next_rules_version(Some("0 "), "aa"),
            (1, Some("1 aa".into()))
        );
    }
}
