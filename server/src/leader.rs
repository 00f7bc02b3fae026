//! The deadline check's leader: of the server processes sharing one database, one runs the
//! periodic deadline check at a time, and another takes over when it dies.
//!
//! Leadership is a lease the database hands out ([`crate::db::Database::try_lead`]):
//! - PostgreSQL: a session-level `pg_try_advisory_lock` on a dedicated connection held while
//!   leading. The server releases it when that connection closes, so a killed process's lease
//!   ends with its TCP connection, and the next tick of another process takes it.
//! - SQLite: an exclusive lock on `leader.lock` in the data directory (one machine), released
//!   by the OS when the process exits.
//!
//! Followers try again every tick. The lease is an efficiency measure, not the safety net: a
//! supervision is recorded once however many checks run (the per-case turn and the unique
//! supervision row, see `crate::deadlines`), which the tests race to prove.

use std::sync::Arc;
use std::time::Duration;

use gridcase_core::model::Millis;

use crate::deadlines::supervise_overdue_stages;
use crate::http::Clock;
use crate::metrics::Metrics;
use crate::store::{Result, Store};

/// What a backend holds while its process leads.
pub trait LeaseHold: Send {
    /// Whether the lease is still held (e.g. its connection is alive).
    fn still_held(&mut self) -> bool;
}

/// The deadline check's lease; dropping it lets another process lead.
pub struct Lease(Box<dyn LeaseHold>);

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lease")
    }
}

impl Lease {
    pub fn new(hold: impl LeaseHold + 'static) -> Lease {
        Lease(Box::new(hold))
    }
}

/// What one tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    /// Led and ran the check: the cases newly supervised.
    Led(Vec<String>),
    /// Another process leads.
    Follower,
}

/// One process's side of the election; keeps the lease between ticks.
#[derive(Debug, Default)]
pub struct Leader {
    lease: Option<Lease>,
}

impl Leader {
    pub fn new() -> Leader {
        Leader::default()
    }

    pub fn is_leading(&self) -> bool {
        self.lease.is_some()
    }

    /// Checks or takes the lease, then runs the deadline check if leading. Blocking.
    pub fn tick(&mut self, store: &Store, now: Millis) -> Result<Tick> {
        if let Some(lease) = &mut self.lease
            && !lease.0.still_held()
        {
            tracing::warn!("lost the deadline check lease");
            self.lease = None;
        }
        if self.lease.is_none() {
            self.lease = store.db().try_lead()?;
            if self.lease.is_some() {
                tracing::info!("leading the deadline check");
            }
        }
        if self.lease.is_none() {
            return Ok(Tick::Follower);
        }
        Ok(Tick::Led(supervise_overdue_stages(store, now)?))
    }
}

/// Runs [`Leader::tick`] every `every` with `clock` giving the time, reporting to `metrics`.
pub fn spawn_deadline_leader(
    store: Arc<Store>,
    every: Duration,
    clock: Clock,
    metrics: Metrics,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leader = Some(Leader::new());
        loop {
            interval.tick().await;
            let store = store.clone();
            let now = clock();
            let mut moved = leader.take().unwrap_or_default();
            let joined = tokio::task::spawn_blocking(move || {
                let tick = moved.tick(&store, now);
                (moved, tick)
            })
            .await;
            let (back, tick) = match joined {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::error!(error = %e, "deadline check panicked");
                    metrics.deadline_checks.with_label_values(&["failed"]).inc();
                    continue;
                }
            };
            metrics.leader.set(i64::from(back.is_leading()));
            leader = Some(back);
            report(&metrics, tick);
        }
    })
}

fn report(metrics: &Metrics, tick: Result<Tick>) {
    match tick {
        Ok(Tick::Led(supervised)) => {
            tracing::info!(supervised = supervised.len(), "deadline check");
            metrics.deadline_checks.with_label_values(&["ok"]).inc();
            metrics.supervisions.inc_by(supervised.len() as u64);
        }
        Ok(Tick::Follower) => {
            metrics
                .deadline_checks
                .with_label_values(&["follower"])
                .inc();
        }
        Err(e) => {
            tracing::error!(error = %e, "deadline check failed");
            metrics.deadline_checks.with_label_values(&["failed"]).inc();
        }
    }
}
