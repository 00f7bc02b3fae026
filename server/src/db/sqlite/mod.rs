//! The embedded backend: one SQLite file in the data directory, WAL, a pool of connections.
//!
//! Readers never wait: under WAL each [`ReadView`](super::ReadView) is a snapshot beside the
//! writer. Writers are serialised in this process by a mutex around their (short) transaction,
//! so `BEGIN IMMEDIATE` only waits on another process; the Automerge work around a commit
//! happens before it, outside the lock. Because writes are serialised, a change row's
//! `AUTOINCREMENT` sequence number is assigned in commit order: the feed is gap-free by
//! construction (a reader sees every change up to the largest one it sees).

mod accounts;
mod admins;
mod blobs;
mod documents;
mod lists;
mod rates;
pub mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{Database, Result};

/// The database file inside the data directory.
pub const DB_FILE: &str = "gridcase.sqlite3";

/// Opens and configures connections for the pool.
#[derive(Debug)]
struct Manager {
    path: PathBuf,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // FULL, not NORMAL: under WAL, NORMAL may lose the last commits on a power cut or an OS
    // crash, and a change is acknowledged to a phone as soon as it is committed; a phone that
    // was told "stored" never sends it again.
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

impl r2d2::ManageConnection for Manager {
    type Connection = Connection;
    type Error = rusqlite::Error;

    fn connect(&self) -> rusqlite::Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        configure(&conn)?;
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut Connection) -> rusqlite::Result<()> {
        conn.execute_batch("")
    }

    fn has_broken(&self, _: &mut Connection) -> bool {
        false
    }
}

type Pooled = r2d2::PooledConnection<Manager>;

/// The SQLite database of a data directory.
pub struct SqliteDb {
    pool: r2d2::Pool<Manager>,
    /// Serialises this process's write transactions (see the module docs).
    writer: Mutex<()>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteDb")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteDb {
    /// Opens (creating on first run, migrating as needed) the database in `dir`.
    pub fn open(dir: &Path, pool_size: u32) -> Result<SqliteDb> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(DB_FILE);
        let manager = Manager { path: path.clone() };
        {
            let mut conn = r2d2::ManageConnection::connect(&manager)?;
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(mode, "SQLite did not switch to WAL");
            }
            schema::migrate(&mut conn)?;
            rates::refresh_fact_days(&conn, false)?;
        }
        // Connections are not tested on checkout (a round trip per use); a broken one is
        // dropped when it comes back (`has_broken`).
        let pool = r2d2::Pool::builder()
            .max_size(pool_size.max(2))
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(30))
            .test_on_check_out(false)
            .build(manager)?;
        Ok(SqliteDb {
            pool,
            writer: Mutex::new(()),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> Result<Pooled> {
        Ok(self.pool.get()?)
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`), committing when it returns `Ok`
    /// with `true`, rolling back otherwise.
    fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<(T, bool)>) -> Result<T> {
        let conn = self.conn()?;
        let _writer = self.lock_writer();
        conn.execute_batch("BEGIN IMMEDIATE")?;
        match f(&conn) {
            Ok((value, true)) => {
                if let Err(e) = conn.execute_batch("COMMIT") {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(e.into());
                }
                Ok(value)
            }
            Ok((value, false)) => {
                conn.execute_batch("ROLLBACK")?;
                Ok(value)
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// A panic while the lock was held left SQLite consistent (the transaction rolled back), so
    /// a poisoned lock is taken over.
    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Database for SqliteDb {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn schema_version(&self) -> Result<u32> {
        Ok(self
            .conn()?
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    fn pool_state(&self) -> super::PoolState {
        super::PoolState::of(&self.pool)
    }

    /// An exclusive lock on `leader.lock` beside the database file: one machine shares a
    /// SQLite database, and the OS releases the lock when the process dies.
    fn try_lead(&self) -> Result<Option<crate::leader::Lease>> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LEADER_FILE))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(crate::leader::Lease::new(FileLease { _file: file }))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }
}

/// The file whose lock is the deadline check's lease (see `crate::leader`).
pub const LEADER_FILE: &str = "leader.lock";

/// Held while the file stays open.
struct FileLease {
    _file: std::fs::File,
}

impl crate::leader::LeaseHold for FileLease {
    fn still_held(&mut self) -> bool {
        true
    }
}

fn count(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<u64> {
    Ok(conn.query_row(sql, params, |r| r.get::<_, i64>(0))? as u64)
}
