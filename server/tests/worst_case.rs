//! What one request can cost the server at most (issue 8.4), measured: peak resident memory
//! (Linux `VmHWM`, reset through `/proc/self/clear_refs`) and time of the worst requests built
//! from the limits, each asserted under the bound SECURITY.md states. One test in its own
//! binary, so nothing else runs in the process while it measures.
//!
//! - Operations: `MAX_OPS_PER_REQUEST` (2,000,000) operations in 100,000-operation changes,
//!   under the device's own actor, so every one is decoded and applied before judging.
//! - Change count: a body whose decoded form is one-byte changes (each costs a `Vec`, so the
//!   decoded request is larger than its bytes): `MAX_CHANGES_PER_REQUEST` (500,000) of them,
//!   decoded then refused by the quota, and 2,000,000, refused while decoding.
//! - Bytes: 60 MiB of change bytes (a body of a few kilobytes), near the 64 MiB decoded cap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use automerge::{AutoCommit, ObjType, ROOT, transaction::Transactable};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use gridcase_core::area::Jurisdiction;
use gridcase_core::identity::actor_for;
use gridcase_core::model::Role;
use gridcase_core::sync::wire::encode_request;
use gridcase_core::sync::{DocPush, SyncRequest};
use gridcase_server::http::{AppState, app};
use gridcase_server::testing::{Backend, TestDb, run_async};
use tower::ServiceExt;

/// Peak resident memory one maximal-operations request may add (debug build).
const OPS_MEMORY_BOUND: u64 = 1024 * 1024 * 1024;
/// Time one request may take on a test machine (debug build of the server crate).
const TIME_BOUND: Duration = Duration::from_secs(60);
/// Peak memory a request decoding to the 64 MiB cap may add (buffer and decoded copies).
const BYTES_MEMORY_BOUND: u64 = 256 * 1024 * 1024;
/// Peak memory a request of one-byte changes may add, whatever their number.
const CHANGES_MEMORY_BOUND: u64 = 128 * 1024 * 1024;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Runs `f`; returns how far the peak resident memory rose above the memory before, and the
/// time taken.
async fn measure<F: std::future::Future<Output = StatusCode>>(f: F) -> (u64, Duration, StatusCode) {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak (Linux)");
    let before = status_kib("VmRSS:");
    let started = Instant::now();
    let status = f.await;
    let took = started.elapsed();
    let peak = status_kib("VmHWM:");
    (peak.saturating_sub(before) * 1024, took, status)
}

fn maximal_ops_request(device: &str) -> Vec<u8> {
    let pushes = (0..4u8)
        .map(|d| {
            let mut am = AutoCommit::new().with_actor(actor_for(device, [d, 0, 0, 2]).unwrap());
            for i in 0..5 {
                let text = am.put_object(ROOT, format!("t{i}"), ObjType::Text).unwrap();
                am.splice_text(&text, 0, 0, &"a".repeat(99_999)).unwrap();
                am.commit();
            }
            DocPush {
                doc_id: format!("heavy-{d}"),
                changes: am
                    .get_changes(&[])
                    .iter()
                    .map(|c| c.raw_bytes().to_vec())
                    .collect(),
            }
        })
        .collect();
    encode_request(&SyncRequest {
        pushes,
        ..Default::default()
    })
}

fn many_changes_request(changes: usize) -> Vec<u8> {
    let pushes = (0..changes / 10_000)
        .map(|i| DocPush {
            doc_id: format!("tiny-{i}"),
            changes: vec![vec![7u8]; 10_000],
        })
        .collect();
    encode_request(&SyncRequest {
        pushes,
        ..Default::default()
    })
}

#[test]
fn the_worst_requests_stay_under_the_stated_bounds() {
    if !std::path::Path::new("/proc/self/clear_refs").exists() {
        eprintln!("skipped: needs Linux /proc");
        return;
    }
    run_async(|| async {
        let db = TestDb::new(Backend::Sqlite);
        let store = Arc::new(db.open());
        let area = Jurisdiction::parse("330604101").unwrap();
        store.enrol_user("w1", Role::GridWorker, &area, 0).unwrap();
        let app = app(AppState::new(store.clone()));
        // A new device for each request: each has its own quota.
        let send = |body: Vec<u8>, token: String| {
            let app = app.clone();
            async move {
                let req = Request::post("/v1/sync")
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .body(Body::from(body))
                    .unwrap();
                app.oneshot(req).await.unwrap().status()
            }
        };

        for (changes, expected) in [
            (500_000, StatusCode::TOO_MANY_REQUESTS),
            (2_000_000, StatusCode::BAD_REQUEST),
        ] {
            let body = many_changes_request(changes);
            let size = body.len();
            let token = store.enrol_device("w1", 0).unwrap();
            let (memory, took, status) = measure(send(body, token)).await;
            eprintln!(
                "{changes} one-byte changes: {size} bytes on the wire, +{} MiB peak, {took:?}, \
                 {status}",
                memory >> 20
            );
            assert_eq!(status, expected);
            assert!(memory < CHANGES_MEMORY_BOUND, "+{} MiB", memory >> 20);
            assert!(took < TIME_BOUND, "{took:?}");
        }
        // Near the 64 MiB decoded cap: 60 changes of 1 MiB each (garbage, rejected per push).
        let pushes = (0..6)
            .map(|i| DocPush {
                doc_id: format!("big-{i}"),
                changes: vec![vec![0x85; 1 << 20]; 10],
            })
            .collect();
        let body = encode_request(&SyncRequest {
            pushes,
            ..Default::default()
        });
        let size = body.len();
        let token = store.enrol_device("w1", 0).unwrap();
        let (memory, took, status) = measure(send(body, token)).await;
        eprintln!(
            "60 MiB of change bytes: {size} bytes on the wire, +{} MiB peak, {took:?}, {status}",
            memory >> 20
        );
        assert_eq!(status, StatusCode::OK);
        assert!(memory < BYTES_MEMORY_BOUND, "+{} MiB", memory >> 20);
        assert!(took < TIME_BOUND, "{took:?}");

        let token = store.enrol_device("w1", 0).unwrap();
        let device = token.split_once('.').unwrap().0.to_owned();
        let body = maximal_ops_request(&device);
        let size = body.len();
        let (memory, took, status) = measure(send(body, token)).await;
        eprintln!(
            "maximal operations: {size} bytes on the wire, +{} MiB peak, {took:?}, {status}",
            memory >> 20
        );
        assert_eq!(status, StatusCode::OK);
        assert!(memory < OPS_MEMORY_BOUND, "+{} MiB", memory >> 20);
        assert!(took < TIME_BOUND, "{took:?}");
    })
}
