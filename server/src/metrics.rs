//! Operations: the Prometheus metrics of one server process, served at `GET /metrics`.
//!
//! Crate choice: `prometheus` (the TiKV client) without its protobuf feature. Its registry is
//! an ordinary value held by [`crate::AppState`], so every router (and every test) has its own
//! counters; the `metrics` facade instead installs one global recorder per process, which makes
//! counters of tests running side by side mix and needs its exporter crate besides. Only the
//! text exposition format is produced.
//!
//! Counters and histograms are updated as requests pass ([`track_requests`] and the sync
//! handler). Gauges that describe the database (open and overdue cases, the connection pool)
//! are read when scraped, so they are right whichever instance wrote the rows.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use gridcase_core::sync::{PushResult, SyncResponse};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::db::{CaseGauges, PoolState};
use crate::http::AppState;

/// Latency buckets in seconds: a loopback "anything new?" takes milliseconds, a phone's
/// upload over 2G tens of seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

/// The error code of an error answer, attached by `AppError` so that refusals can be counted
/// by reason without reading the body.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// One process's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    syncs: IntCounter,
    bytes_in: IntCounter,
    bytes_out: IntCounter,
    pushes: IntCounterVec,
    rejections: IntCounterVec,
    blob_chunk_bytes: IntCounter,
    blobs_committed: IntCounter,
    open_cases: IntGauge,
    overdue_cases: IntGauge,
    pool_size: IntGauge,
    pool_in_use: IntGauge,
    pool_max: IntGauge,
    /// 1 while this process runs the deadline check (see `crate::leader`).
    pub leader: IntGauge,
    pub deadline_checks: IntCounterVec,
    pub supervisions: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("a valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("a valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("registered once");
    g
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "gridcase_http_request_duration_seconds",
                "Time to answer a request, by route",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("a valid metric");
        r.register(Box::new(latency.clone()))
            .expect("registered once");
        Metrics {
            requests: counter_vec(
                &r,
                "gridcase_http_requests_total",
                "Requests answered, by route and status",
                &["route", "status"],
            ),
            latency,
            syncs: counter(&r, "gridcase_syncs_total", "Sync requests answered"),
            bytes_in: counter(&r, "gridcase_sync_bytes_in_total", "Sync request bytes"),
            bytes_out: counter(&r, "gridcase_sync_bytes_out_total", "Sync response bytes"),
            pushes: counter_vec(
                &r,
                "gridcase_pushes_total",
                "Document pushes judged, by result",
                &["result"],
            ),
            rejections: counter_vec(
                &r,
                "gridcase_rejections_total",
                "Refusals by reason: a push's rejection code or a request's error code",
                &["reason"],
            ),
            blob_chunk_bytes: counter(
                &r,
                "gridcase_blob_chunk_bytes_total",
                "Attachment bytes added to uploads by accepted chunks (a chunk sent twice counts twice)",
            ),
            blobs_committed: counter(
                &r,
                "gridcase_blobs_committed_total",
                "Attachment uploads checked and stored",
            ),
            open_cases: gauge(
                &r,
                "gridcase_open_cases",
                "Cases not closed, merged or refused",
            ),
            overdue_cases: gauge(
                &r,
                "gridcase_overdue_cases",
                "Open cases past their deadline",
            ),
            pool_size: gauge(
                &r,
                "gridcase_db_pool_connections",
                "Database connections open",
            ),
            pool_in_use: gauge(&r, "gridcase_db_pool_in_use", "Database connections in use"),
            pool_max: gauge(&r, "gridcase_db_pool_max", "Database connections at most"),
            leader: gauge(
                &r,
                "gridcase_deadline_leader",
                "1 while this instance runs the deadline check",
            ),
            deadline_checks: counter_vec(
                &r,
                "gridcase_deadline_checks_total",
                "Deadline check runs, by outcome (ok, failed, follower)",
                &["outcome"],
            ),
            supervisions: counter(
                &r,
                "gridcase_supervisions_total",
                "Supervisions recorded by this instance's deadline checks",
            ),
            registry: r,
        }
    }

    /// Counts one answered sync: its bytes and each push's result.
    pub fn sync_answered(&self, bytes_in: usize, response: &SyncResponse, bytes_out: usize) {
        self.syncs.inc();
        self.bytes_in.inc_by(bytes_in as u64);
        self.bytes_out.inc_by(bytes_out as u64);
        for result in &response.results {
            match result {
                PushResult::Accepted { .. } => self.pushes.with_label_values(&["accepted"]).inc(),
                PushResult::Rejected { reason, .. } => {
                    self.pushes.with_label_values(&["rejected"]).inc();
                    self.rejections
                        .with_label_values(&[reason.code.as_str()])
                        .inc();
                }
            }
        }
    }

    /// Counts an accepted chunk's bytes: added to an upload, not a blob stored already. Their
    /// sum against the files' sizes tells whether phones resend committed chunks.
    pub fn blob_chunk_accepted(&self, bytes: u64) {
        self.blob_chunk_bytes.inc_by(bytes);
    }

    /// Counts a blob checked and stored by a commit.
    pub fn blob_committed(&self) {
        self.blobs_committed.inc();
    }

    /// Sets the gauges read from the database and renders everything in the text format.
    pub fn render(&self, cases: Option<CaseGauges>, pool: PoolState) -> String {
        if let Some(cases) = cases {
            self.open_cases.set(cases.open as i64);
            self.overdue_cases.set(cases.overdue as i64);
        }
        self.pool_size.set(i64::from(pool.connections));
        self.pool_in_use
            .set(i64::from(pool.connections.saturating_sub(pool.idle)));
        self.pool_max.set(i64::from(pool.max));
        let mut out = Vec::new();
        // Encoding into a Vec only fails on a malformed metric, which `new` cannot build.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Middleware: counts every request by route and status, times it, and counts error answers
/// by their code. The route is the matched pattern (never the raw path: no ids in labels).
pub async fn track_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    let m = &state.metrics;
    m.latency
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .with_label_values(&[&route, response.status().as_str()])
        .inc();
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>() {
        m.rejections.with_label_values(&[code]).inc();
    }
    response
}
