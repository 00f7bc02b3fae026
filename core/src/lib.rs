//! gridcase core: the case documents, the lifecycle rules, the deadline engine, the phone's store
//! and the sync protocol, shared by the phone apps (through `gridcase-bindings`) and the server.
//!
//! Nothing in here opens a socket or reads the clock: functions take `now` and randomness as
//! arguments, so every rule can be tested with a simulated clock and network.

pub mod area;
pub mod calendar;
pub mod deadline;
pub mod doc;
pub mod fuzzing;
pub mod identity;
pub mod lifecycle;
pub mod media;
pub mod model;
pub mod phone;
pub mod policy;
pub mod revocation;
pub mod rules;
pub mod scope;
pub mod server_url;
pub mod store;
pub mod sync;
pub mod validate;
