//! The PostgreSQL backend: several server processes may share one database.
//!
//! Readers use `REPEATABLE READ READ ONLY` transactions: one consistent snapshot per
//! [`ReadView`](super::ReadView), no locks. Writers use short `READ COMMITTED` transactions; a
//! document commit locks its `docs` row and checks the version it was judged against (see
//! `documents.rs`), so only commits of the same document wait for each other, in this process or
//! another. Feed positions come from a one-row counter taken at the very end of a commit: see
//! `documents.rs` for why that keeps the feed gap-free.

mod accounts;
mod admins;
mod blobs;
mod documents;
mod lists;
mod rates;
pub mod schema;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};

use super::{Database, Result};

/// A pooled connection with its prepared statements (prepared once per connection: a query
/// then costs one round trip).
pub struct PgConn {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl PgConn {
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let statement = self.statement(sql)?;
        Ok(self.client.query(&statement, params)?)
    }

    fn query_opt(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        let statement = self.statement(sql)?;
        Ok(self.client.query_opt(&statement, params)?)
    }

    fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        let statement = self.statement(sql)?;
        Ok(self.client.query_one(&statement, params)?)
    }

    fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let statement = self.statement(sql)?;
        Ok(self.client.execute(&statement, params)?)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.client.batch_execute(sql)?)
    }

    fn count(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        Ok(self.query_one(sql, params)?.get::<_, i64>(0) as u64)
    }
}

struct Manager {
    config: postgres::Config,
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConn, postgres::Error> {
        Ok(PgConn {
            client: self.config.connect(NoTls)?,
            statements: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

type Pooled = r2d2::PooledConnection<Manager>;

/// A PostgreSQL database (the schema in the URL's `search_path`, else `public`).
pub struct PgDb {
    /// Always `Some` but while dropping.
    pool: Option<r2d2::Pool<Manager>>,
    /// Connections holding cases' advisory locks (`Documents::case_turn`).
    turns: Option<r2d2::Pool<Manager>>,
    /// For the deadline check lease's own connection.
    config: postgres::Config,
    /// The schema this database lives in: advisory locks are database-wide, so a case's lock
    /// key includes it (two schemas in one database, as in tests, never contend).
    schema: String,
}

/// The blocking client closes its connections on its own small runtime, which must not happen
/// on a thread that is running async tasks: the last handle to the pool may well be dropped
/// there (a server shutting down), so the pool is dropped on a thread of its own.
impl Drop for PgDb {
    fn drop(&mut self) {
        let pools = (self.pool.take(), self.turns.take());
        let _ = std::thread::spawn(move || drop(pools)).join();
    }
}

impl std::fmt::Debug for PgDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDb")
            .field(
                "connections",
                &self.pool.as_ref().map(|p| p.state().connections),
            )
            .finish()
    }
}

impl PgDb {
    /// Connects, migrating the schema as needed.
    pub fn open(url: &str, pool_size: u32) -> Result<PgDb> {
        let mut config = postgres::Config::from_str(url)?;
        if config.get_application_name().is_none() {
            config.application_name("gridcase-server");
        }
        config.connect_timeout(Duration::from_secs(10));
        let manager = Manager {
            config: config.clone(),
        };
        let schema = {
            let mut conn = r2d2::ManageConnection::connect(&manager)?;
            schema::migrate(&mut conn)?;
            rates::refresh_fact_days(&mut conn, false)?;
            conn.query_one("SELECT current_schema()::text", &[])?
                .get::<_, String>(0)
        };
        // Connections are not tested on checkout (a round trip per use); a broken one is
        // dropped when it comes back (`has_broken`).
        let pool = r2d2::Pool::builder()
            .max_size(pool_size.max(2))
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(30))
            .test_on_check_out(false)
            .build(manager)?;
        let turns = r2d2::Pool::builder()
            .max_size(pool_size.max(2))
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(30))
            .test_on_check_out(false)
            .build_unchecked(Manager {
                config: config.clone(),
            });
        Ok(PgDb {
            pool: Some(pool),
            turns: Some(turns),
            config,
            schema,
        })
    }

    fn conn(&self) -> Result<Pooled> {
        let pool = self.pool.as_ref().expect("the pool lives until drop");
        Ok(pool.get()?)
    }

    fn turn_conn(&self) -> Result<Pooled> {
        let pool = self.turns.as_ref().expect("the pool lives until drop");
        Ok(pool.get()?)
    }

    /// Runs `f` in a `READ COMMITTED` transaction, committing when it returns `Ok` with `true`.
    fn write<T>(&self, f: impl FnOnce(&mut PgConn) -> Result<(T, bool)>) -> Result<T> {
        let mut conn = self.conn()?;
        conn.batch("BEGIN")?;
        match f(&mut conn) {
            Ok((value, true)) => {
                conn.batch("COMMIT")?;
                Ok(value)
            }
            Ok((value, false)) => {
                conn.batch("ROLLBACK")?;
                Ok(value)
            }
            Err(e) => {
                let _ = conn.batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

impl Database for PgDb {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn schema_version(&self) -> Result<u32> {
        let mut conn = self.conn()?;
        schema::version(&mut conn)
    }

    fn pool_state(&self) -> super::PoolState {
        let pool = self.pool.as_ref().expect("the pool lives until drop");
        super::PoolState::of(pool)
    }

    /// A session-level advisory lock on a connection of its own, held while leading. Keyed by
    /// the schema too, so that databases in different schemas (tests) elect separately; the
    /// two-key form never meets the cases' one-key locks.
    fn try_lead(&self) -> Result<Option<crate::leader::Lease>> {
        let manager = Manager {
            config: self.config.clone(),
        };
        let mut conn = r2d2::ManageConnection::connect(&manager)?;
        let row = conn.query_one(
            "SELECT pg_try_advisory_lock($1, hashtext(current_schema()))",
            &[&LEADER_LOCK_CLASS],
        )?;
        let lease = row
            .get::<_, bool>(0)
            .then(|| crate::leader::Lease::new(PgLease(Some(conn.client))));
        Ok(lease)
    }
}

/// The first key of the deadline check's advisory lock.
const LEADER_LOCK_CLASS: i32 = 0x6763_6c64;

/// A connection holding the deadline check's advisory lock.
struct PgLease(Option<Client>);

impl crate::leader::LeaseHold for PgLease {
    /// The lock lives as long as its session: a live connection still holds it.
    fn still_held(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| c.simple_query("SELECT 1").is_ok())
    }
}

/// Closed on a thread of its own, like the pools (see `Drop for PgDb`).
impl Drop for PgLease {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            let _ = std::thread::spawn(move || drop(client)).join();
        }
    }
}
