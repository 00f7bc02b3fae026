//! The shared test harness (feature `testing`): a fresh database of either backend per test,
//! and [`backend_tests!`](crate::backend_tests) to run a test on both.
//!
//! SQLite tests get a temporary data directory. PostgreSQL tests get a schema of their own in
//! the database named by `GRIDCASE_TEST_PG` (default `postgres://postgres@127.0.0.1:5432/test`),
//! created here and dropped when the [`TestDb`] drops; the server reaches it through the URL's
//! `search_path`. If PostgreSQL cannot be reached the test fails, loudly: `tests/run-all.sh`
//! starts it. Only `GRIDCASE_TEST_PG=off` skips the PostgreSQL variants (and says so).

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use gridcase_core::rules::SourcedRules;

use crate::db::Location;
use crate::store::Store;

/// The environment variable naming the PostgreSQL database tests create their schemas in.
pub const PG_ENV: &str = "GRIDCASE_TEST_PG";
/// Where tests look for PostgreSQL when [`PG_ENV`] is not set.
pub const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Whether the PostgreSQL variants are switched off (`GRIDCASE_TEST_PG=off`); prints that they
/// are skipped.
pub fn skip_postgres() -> bool {
    let off = std::env::var(PG_ENV).is_ok_and(|v| v == "off");
    if off {
        eprintln!("{PG_ENV}=off: PostgreSQL variant skipped");
    }
    off
}

fn pg_base_url() -> String {
    std::env::var(PG_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_PG.to_owned())
}

fn pg_client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {url} ({e}). Start it (tests/run-all.sh does: \
             pg_ctlcluster --skip-systemctl-redirect <version> main start), point {PG_ENV} at \
             another database, or set {PG_ENV}=off to skip the PostgreSQL variants"
        )
    })
}

/// A fresh, empty database for one test; removed when dropped.
#[derive(Debug)]
pub struct TestDb {
    pub backend: Backend,
    location: Location,
    dir: tempfile::TempDir,
    /// (base URL, schema) of a PostgreSQL test.
    schema: Option<(String, String)>,
}

impl TestDb {
    pub fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => TestDb {
                backend,
                location: Location::Sqlite(dir.path().join("data")),
                dir,
                schema: None,
            },
            Backend::Postgres => {
                static NEXT: AtomicU32 = AtomicU32::new(0);
                let base = pg_base_url();
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0);
                let schema = format!(
                    "gct_{}_{}_{nanos}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::SeqCst)
                );
                pg_client(&base)
                    .batch_execute(&format!("CREATE SCHEMA {schema}"))
                    .expect("create the test schema");
                let separator = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
                TestDb {
                    backend,
                    location: Location::Postgres(url),
                    dir,
                    schema: Some((base, schema)),
                }
            }
        }
    }

    /// Where the database is: what `Store::connect`, the CLI or a child process is given.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// A scratch directory that lives as long as the database.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Drops a PostgreSQL test's schema now, with everything in it (a database gone from under
    /// a running server).
    pub fn drop_schema(&self) {
        if let Some((base, schema)) = &self.schema {
            pg_client(base)
                .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                .expect("drop the test schema");
        }
    }

    /// Runs `sql` on the database directly, around the store: to leave rows as an older
    /// server or a damaged database would have.
    pub fn execute(&self, sql: &str) {
        match &self.location {
            Location::Sqlite(dir) => {
                let path = dir.join(crate::db::sqlite::DB_FILE);
                let conn = rusqlite::Connection::open(path).expect("open the test database");
                conn.execute_batch(sql).expect("run the test's SQL");
            }
            Location::Postgres(url) => pg_client(url)
                .batch_execute(sql)
                .expect("run the test's SQL"),
        }
    }

    /// Opens a store on the database (again: a restarted server).
    pub fn open(&self) -> Store {
        Store::connect(&self.location, 8, SourcedRules::shipped()).expect("open the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, schema)) = &self.schema
            && let Ok(mut client) = postgres::Client::connect(base, postgres::NoTls)
            && let Err(e) = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        {
            eprintln!("could not drop test schema {schema}: {e}");
        }
    }
}

/// Runs an async test the way the server runs store calls: on a blocking thread of a
/// multi-threaded tokio runtime (whose timers and `spawn_blocking` the test can use), where the
/// store's blocking database clients may be called directly.
pub fn run_async<F, Fut>(make: F) -> Fut::Output
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future,
    Fut::Output: Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime");
    let test = runtime.spawn_blocking(move || block_on(make()));
    let output = runtime.block_on(test);
    runtime.shutdown_background();
    match output {
        Ok(output) => output,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` to completion on this thread, parking between polls.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

/// Runs each named test function (taking a [`Backend`]) on both backends: for
/// `backend_tests!(a, b)`, tests `sqlite::a`, `postgres::a`, `sqlite::b` and `postgres::b`;
/// `backend_tests!(async: a, b)` for `async fn`s (under [`run_async`]). A function not listed
/// is dead code, which the lints refuse.
#[macro_export]
macro_rules! backend_tests {
    (async: $($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    $crate::testing::run_async(|| super::$name($crate::testing::Backend::Sqlite))
                }
            )+
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    if $crate::testing::skip_postgres() {
                        return;
                    }
                    $crate::testing::run_async(|| {
                        super::$name($crate::testing::Backend::Postgres)
                    })
                }
            )+
        }
    };
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::testing::Backend::Sqlite)
                }
            )+
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    if $crate::testing::skip_postgres() {
                        return;
                    }
                    super::$name($crate::testing::Backend::Postgres)
                }
            )+
        }
    };
}

/// Adds an admin account `name` with `role` over `area` (`*` for everywhere) and returns its
/// bearer token.
pub fn add_admin(store: &Store, name: &str, role: crate::admins::AdminRole, area: &str) -> String {
    let jurisdiction = gridcase_core::area::Jurisdiction::parse_given(area).expect("area");
    store
        .add_admin(name, role, &jurisdiction, None, &mut rand::rng(), 0)
        .expect("add admin")
}

/// The token of an `admin` over everywhere named `root` (added on first use).
pub fn root_admin(store: &Store) -> String {
    add_admin(store, "root", crate::admins::AdminRole::Admin, "*")
}

/// An admin API over a fresh database: what the admin-route tests start from.
#[derive(Debug)]
pub struct AdminApp {
    pub store: Arc<Store>,
    /// A root admin's bearer token (`root`, role admin, everywhere).
    pub token: String,
    /// The router, its clock pinned at the demo's `now`.
    pub app: axum::Router,
    /// Keeps the database until the test ends.
    pub db: TestDb,
}

/// A fresh `backend` database holding `cases` demo cases (`crate::demo::fill` with `seed`,
/// made at `now`), a root admin, and the router with its clock at `now`.
pub fn admin_app(
    backend: Backend,
    cases: u32,
    seed: u64,
    now: gridcase_core::model::Millis,
) -> AdminApp {
    let db = TestDb::new(backend);
    let store = Arc::new(db.open());
    crate::demo::fill(&store, cases, seed, now).expect("demo data");
    let token = root_admin(&store);
    let state = crate::AppState::new(store.clone()).with_clock(Arc::new(move || now));
    AdminApp {
        app: crate::app(state),
        store,
        token,
        db,
    }
}
