//! gridcase-server: the sync endpoint phones talk to, the change feed and case projection in
//! SQLite, the deadline checks that supervise overdue cases, and the admin's lists.
//!
//! - [`audit`]: the audit log (changes, reveals, rejections, revocations, enrolments);
//! - [`store`]: the database (schema, migrations, users and devices, documents, projection);
//! - [`sync`]: the sync protocol's server side;
//! - [`deadlines`]: due-soon and overdue lists and automatic supervision;
//! - [`http`]: the axum router ([`http::app`]) and its errors;
//! - [`config`]: flags, environment and file, and [`config::serve`];
//! - [`cli`]: the `gridcase-server` command; [`demo`]: realistic demo data.

pub mod audit;
pub mod cli;
pub mod config;
pub mod deadlines;
pub mod demo;
pub mod http;
pub mod projection;
pub mod store;
pub mod sync;

pub use config::{ServeConfig, serve};
pub use deadlines::{CheckReport, run_deadline_check};
pub use http::{AppError, AppState, app, spawn};
pub use store::{Auth, DeviceCtx, Store, StoreError};
