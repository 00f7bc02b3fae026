//! gridcase-server: the sync endpoint phones talk to, the change feed and case projection, the
//! deadline checks that supervise overdue cases, and the admin's lists — on SQLite (embedded,
//! the default) or PostgreSQL.
//!
//! - [`db`]: the data layer: the [`db::Database`] traits and their SQLite and PostgreSQL
//!   implementations (all SQL lives there);
//! - [`store`]: the [`Store`] every path goes through (accounts, lists) over a database;
//! - [`scope`]: the one scope rule, in Rust and SQL;
//! - [`sync`]: the sync protocol's server side (decode → check → commit, then the response);
//! - [`documents`]: loading documents and planning commits; [`projection`]: the case row;
//! - [`deadlines`]: due-soon and overdue lists and automatic supervision;
//! - [`audit`]: the audit log's rows and queries; [`admins`]: admin accounts, roles and
//!   jurisdictions; [`audit_draw`]: the monthly random audit;
//! - [`overview`]: what the console's overview and deadline-list pages show;
//! - [`leader`]: one process runs the deadline check at a time; [`metrics`]: `/metrics`;
//! - [`http`]: the axum router ([`http::app`]), its auth extractors and errors;
//! - [`config`]: flags, environment and file, and [`config::serve`];
//! - [`cli`]: the `gridcase-server` command; [`demo`]: realistic demo data;
//! - `testing` (feature `testing`): a fresh database of either backend per test.

mod admin_actions;
mod admin_cli;
pub mod admins;
pub mod amrepo;
pub mod audit;
pub mod audit_draw;
pub mod blobs;
mod case_locks;
pub mod cli;
pub mod config;
pub mod db;
pub mod deadlines;
pub mod demo;
pub mod documents;
pub mod fact_days;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod overview;
pub mod projection;
pub mod rates;
pub mod report;
pub mod store;
pub mod sync;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{ServeConfig, serve};
pub use deadlines::{CheckReport, run_deadline_check};
pub use http::{AppError, AppState, app, spawn};
pub use store::{Auth, DeviceCtx, Store, StoreError};
