//! The phone's local store: one SQLCipher database per install (WAL, `synchronous = FULL`),
//! encrypted with a key the app keeps in the platform keystore ([`cipher`]). All of the phone's
//! SQL lives in this module and its children; `crate::phone` composes their functions into
//! transactions.
//!
//! - `docs` + `doc_changes` ([`docs`]): every document (case or `#pii`) as a compacted
//!   snapshot plus the raw Automerge changes appended since; per document `server_heads`
//!   (hashes known to be on the server), `pending` (it holds changes beyond them) and a
//!   rejection that stops re-pushing; `refetch`: documents to catch up on.
//! - `cases` ([`projection`], [`queries`]): a projection of each case for the lists, written in
//!   the same transaction as the changes it reflects, so lists never load a CRDT.
//! - `meta` ([`meta`]): device token and id, the actor nonce, the identity learnt from the
//!   server, the sync position, the last sync time and error, the last measured clock offset.
//! - `event_times` ([`times`]): the trusted times the server vouched for, per case and event.
//! - `staged_parts` ([`staging`]): the parts received so far of a restore document sent in
//!   parts, until the last one arrives and the document is stored whole.
//!
//! Two connections share the file: the app's (edits and reads) and the sync's. Writes take the
//! write lock when they begin ([`Store::write`], `BEGIN IMMEDIATE`), so two writers queue on
//! SQLite's busy timeout instead of failing when one's read snapshot went stale; readers never
//! wait for a writer (WAL).
//!
//! - `blobs`, `blob_chunks`, `blob_refs` ([`blobs`]): attachment bytes, content-addressed, with
//!   their upload state and the cases that reference them.
//!
//! The phone keeps no files besides the database and its `-wal`/`-shm` companions: attachment
//! bytes are rows too (encrypted like the rest), and temporary tables stay in memory.

pub mod blobs;
pub mod cache;
pub mod cipher;
pub mod docs;
pub mod meta;
pub mod projection;
pub mod queries;
pub mod schema;
pub mod staging;
pub mod times;

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

pub use cipher::StoreKey;
pub use queries::{CaseFilter, CasePage, CaseSummary, Page};

/// Meta key set by a migration that changes how the projection is computed.
pub const REPROJECT_KEY: &str = "reproject";

/// Prepared statements kept per connection: a sync page runs about twenty distinct statements
/// per document, more than rusqlite's default of 16, which would re-prepare them every time.
const STATEMENT_CACHE: usize = 64;

/// How long a writer waits for the other connection's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "database schema {found} is newer than this app understands ({supported}); update the app"
    )]
    TooNew { found: u32, supported: u32 },
    #[error("database migration {version} ({name}) failed: {message}")]
    Migration {
        version: u32,
        name: &'static str,
        message: String,
    },
    #[error("stored document {doc_id} is corrupt: {message}")]
    Corrupt { doc_id: String, message: String },
    #[error(
        "the key does not open this phone's database (another key, or not a gridcase store); \
         nothing was changed"
    )]
    WrongKey,
    #[error("the file is not a database (or it is encrypted and needs its key)")]
    NotADatabase,
    #[error("a store key is {} bytes, not {len}", StoreKey::LEN)]
    BadKey { len: usize },
}

/// One connection to the database of one install.
pub struct Store {
    conn: Connection,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.conn.path())
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed), unlocks with `key` (`None`: a plain SQLite file, for tests
    /// and tools) and migrates the database at `path`. A wrong key fails before anything is
    /// written.
    pub fn open(path: impl AsRef<Path>, key: Option<&StoreKey>) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        cipher::unlock(&conn, key)?;
        // In-memory databases answer "memory"; files always get WAL.
        let _mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        // FULL: a committed edit survives power loss too, not only an app kill.
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Deleted pages are zeroed, so a wipe does not leave personal data in free pages.
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Every page read from disk is decrypted and checked: keep the list projection of a
        // township (20,000 cases: a few MiB) in memory instead of decrypting it again per page.
        conn.pragma_update(None, "cache_size", -cache::EVERYDAY_KIB)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        schema::migrate(&mut conn)?;
        Ok(Store { conn })
    }

    pub fn schema_version(&self) -> Result<u32, StoreError> {
        schema::version(&self.conn)
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// A write transaction that holds the write lock from its first statement.
    pub fn write(&mut self) -> Result<Transaction<'_>, StoreError> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }

    /// A read transaction: one consistent snapshot for several queries.
    pub fn read(&mut self) -> Result<Transaction<'_>, StoreError> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Deferred)?)
    }

    /// Deletes every row of every table, then compacts the file and its WAL so the bytes are
    /// gone from disk too.
    pub fn wipe(&mut self) -> Result<(), StoreError> {
        let tx = self.write()?;
        for table in [
            "doc_changes",
            "docs",
            "cases",
            "refetch",
            "event_times",
            "staged_parts",
            "blob_chunks",
            "blobs",
            "blob_refs",
            "meta",
        ] {
            tx.execute(&format!("DELETE FROM {table}"), [])?;
        }
        tx.commit()?;
        self.conn.execute_batch("VACUUM;")?;
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
