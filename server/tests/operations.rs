//! Operations without sockets: `/metrics` counts what passed, `/ready` says whether the
//! database answers, and one process at a time leads the deadline check.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use gridcase_core::model::{Millis, Role};
use gridcase_core::sync::wire::{decode_response, encode_request};
use gridcase_core::sync::{DocPush, PushResult, RejectCode, SyncRequest};
use gridcase_server::leader::{Leader, Tick};
use gridcase_server::testing::{Backend, TestDb};
use gridcase_server::{AppState, Store, app};
use tower::ServiceExt;

/// 2025-03-03 09:00 China time, a Monday.
const T0: Millis = 1_740_963_600_000;
const DAY: Millis = 86_400_000;

fn router(store: &Arc<Store>, now: Millis) -> Router {
    app(AppState::new(store.clone()).with_clock(Arc::new(move || now)))
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, body.to_vec())
}

fn sync_request(token: &str, body: Vec<u8>) -> Request<Body> {
    Request::post("/v1/sync")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(body))
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

/// The value of one sample line (`name{labels} value`) of the text format.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample `{series}` in\n{text}"))
}

async fn metrics_count_syncs_bytes_rejections_and_cases(backend: Backend) {
    let db = TestDb::new(backend);
    let store = Arc::new(db.open());
    let demo = gridcase_server::demo::fill(&store, 12, 7, T0).unwrap();
    let worker = demo
        .tokens
        .iter()
        .find(|(_, role, _)| *role == Role::GridWorker)
        .map(|(_, _, token)| token.clone())
        .unwrap();
    let now = T0 + 30 * DAY;
    let app = router(&store, now);

    // A first sync (a restore), then a push of bytes that are no Automerge change.
    let quiet = encode_request(&SyncRequest {
        device_time: now,
        ..Default::default()
    });
    let bad = encode_request(&SyncRequest {
        device_time: now,
        pushes: vec![DocPush {
            doc_id: "no-such-case".into(),
            changes: vec![vec![1, 2, 3]],
        }],
        ..Default::default()
    });
    let (s1, r1) = send(&app, sync_request(&worker, quiet.clone())).await;
    let (s2, r2) = send(&app, sync_request(&worker, bad.clone())).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    let rejected = decode_response(&r2).unwrap();
    assert!(matches!(
        &rejected.results[..],
        [PushResult::Rejected { reason, .. }] if reason.code == RejectCode::Malformed
    ));
    // A refused request: an unknown token.
    let (s3, _) = send(&app, sync_request("0123.nope", quiet.clone())).await;
    assert_eq!(s3, StatusCode::UNAUTHORIZED);

    // No token needed to scrape.
    let (status, body) = send(&app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    assert_eq!(sample(&text, "gridcase_syncs_total"), 2.0);
    let bytes_in = (quiet.len() + bad.len()) as f64;
    assert_eq!(sample(&text, "gridcase_sync_bytes_in_total"), bytes_in);
    let bytes_out = (r1.len() + r2.len()) as f64;
    assert_eq!(sample(&text, "gridcase_sync_bytes_out_total"), bytes_out);
    assert_eq!(
        sample(&text, "gridcase_rejections_total{reason=\"malformed\"}"),
        1.0
    );
    assert_eq!(
        sample(&text, "gridcase_rejections_total{reason=\"unauthorized\"}"),
        1.0
    );
    assert_eq!(
        sample(&text, "gridcase_pushes_total{result=\"rejected\"}"),
        1.0
    );
    let route = "gridcase_http_request_duration_seconds_count{route=\"/v1/sync\"}";
    assert_eq!(sample(&text, route), 3.0);
    assert_eq!(
        sample(
            &text,
            "gridcase_http_requests_total{route=\"/v1/sync\",status=\"401\"}"
        ),
        1.0
    );
    // Case gauges agree with the lists; a month on, some demo cases are overdue.
    let overdue = store.overdue(now, u32::MAX).unwrap().len() as f64;
    assert!(overdue > 0.0);
    assert_eq!(sample(&text, "gridcase_overdue_cases"), overdue);
    let open = sample(&text, "gridcase_open_cases");
    assert!(open >= overdue && open <= store.case_count().unwrap() as f64);
    assert_eq!(sample(&text, "gridcase_db_pool_max"), 8.0);
    assert!(sample(&text, "gridcase_db_pool_connections") >= 1.0);
    assert!(sample(&text, "gridcase_db_pool_in_use") >= 0.0);
    // Unknown paths are one label, not one per path.
    let _ = send(&app, get("/no/such/path/123")).await;
    let (_, body) = send(&app, get("/metrics")).await;
    let text = String::from_utf8(body).unwrap();
    assert!(!text.contains("/no/such"), "{text}");
    assert_eq!(
        sample(
            &text,
            "gridcase_http_requests_total{route=\"unmatched\",status=\"404\"}"
        ),
        1.0
    );
}

async fn ready_says_whether_the_database_answers(backend: Backend) {
    let db = TestDb::new(backend);
    let store = Arc::new(db.open());
    let app = router(&store, T0);
    let (status, body) = send(&app, get("/ready")).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["status"], "ready");

    // The database goes away under the running server.
    match db.location() {
        gridcase_server::db::Location::Sqlite(dir) => {
            let file = dir.join(gridcase_server::store::DB_FILE);
            std::fs::write(&file, vec![0xA5; 8192]).unwrap();
            let _ =
                std::fs::remove_file(dir.join(format!("{}-wal", gridcase_server::store::DB_FILE)));
            let _ =
                std::fs::remove_file(dir.join(format!("{}-shm", gridcase_server::store::DB_FILE)));
        }
        gridcase_server::db::Location::Postgres(_) => db.drop_schema(),
    }
    let (status, body) = send(&app, get("/ready")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"], "database_unavailable");
    // Liveness is not readiness.
    assert_eq!(send(&app, get("/health")).await.0, StatusCode::OK);
}

fn one_process_leads_and_another_takes_over(backend: Backend) {
    let db = TestDb::new(backend);
    let (a, b) = (db.open(), db.open());
    let (mut la, mut lb) = (Leader::new(), Leader::new());
    assert_eq!(la.tick(&a, T0).unwrap(), Tick::Led(vec![]));
    assert_eq!(lb.tick(&b, T0).unwrap(), Tick::Follower);
    assert_eq!(la.tick(&a, T0).unwrap(), Tick::Led(vec![]));
    assert!(la.is_leading() && !lb.is_leading());
    // The leader goes away: the next tick of the other one takes over.
    drop(la);
    drop(a);
    assert_eq!(lb.tick(&b, T0).unwrap(), Tick::Led(vec![]));
    let c = db.open();
    let mut lc = Leader::new();
    assert_eq!(lc.tick(&c, T0).unwrap(), Tick::Follower);
    // Another database elects on its own.
    let other = TestDb::new(backend);
    let mut lo = Leader::new();
    assert_eq!(lo.tick(&other.open(), T0).unwrap(), Tick::Led(vec![]));
}

gridcase_server::backend_tests!(
    async: metrics_count_syncs_bytes_rejections_and_cases,
    ready_says_whether_the_database_answers,
);

mod election {
    gridcase_server::backend_tests!(one_process_leads_and_another_takes_over);
    use super::one_process_leads_and_another_takes_over;
}
