//! The PostgreSQL backend: several server processes may share one database.
//!
//! Readers use `REPEATABLE READ READ ONLY` transactions: one consistent snapshot per
//! [`ReadView`](super::ReadView), no locks. Writers use short `READ COMMITTED` transactions; a
//! document commit locks its `docs` row and checks the version it was judged against (see
//! `documents.rs`), so only commits of the same document wait for each other, in this process or
//! another. Feed positions come from a one-row counter taken at the very end of a commit: see
//! `documents.rs` for why that keeps the feed gap-free.

mod accounts;
mod documents;
mod lists;
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
        {
            let mut conn = r2d2::ManageConnection::connect(&manager)?;
            schema::migrate(&mut conn)?;
        }
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
            .build_unchecked(Manager { config });
        Ok(PgDb {
            pool: Some(pool),
            turns: Some(turns),
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
}
