//! What one device, connection or request may cost, and the revocation proof (issue 8.4, 8.5):
//! per-device quotas answer 429 with `Retry-After`; slow-loris headers and bodies are cut off on
//! a real socket; a device's maximal request does not stall another's small sync; a `revoked`
//! answer carries a proof only the device's secret verifies. HTTP-layer behaviour, so SQLite
//! only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use automerge::{AutoCommit, ObjType, ROOT, transaction::Transactable};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use gridcase_core::area::Jurisdiction;
use gridcase_core::identity::actor_for;
use gridcase_core::model::{Millis, Role};
use gridcase_core::revocation::{NONCE_HEADER, RevocationKey, request_nonce};
use gridcase_core::sync::wire::encode_request;
use gridcase_core::sync::{DocPush, SyncRequest};
use gridcase_server::http::quota::QuotaLimits;
use gridcase_server::http::{AppState, PRE_AUTH_BODY_BYTES, app, spawn_with};
use gridcase_server::store::Store;
use gridcase_server::testing::{Backend, TestDb, run_async};
use tower::ServiceExt;

const T0: Millis = 1_750_000_000_000;

struct Env {
    store: Arc<Store>,
    clock: Arc<AtomicI64>,
    _db: TestDb,
}

impl Env {
    fn new() -> Env {
        let db = TestDb::new(Backend::Sqlite);
        Env {
            store: Arc::new(db.open()),
            clock: Arc::new(AtomicI64::new(T0)),
            _db: db,
        }
    }

    fn state(&self) -> AppState {
        let clock = self.clock.clone();
        AppState::new(self.store.clone()).with_clock(Arc::new(move || clock.load(Ordering::SeqCst)))
    }

    fn token(&self, user: &str) -> String {
        let area = Jurisdiction::parse("330604101").unwrap();
        self.store
            .enrol_user(user, Role::GridWorker, &area, T0)
            .unwrap();
        self.store.enrol_device(user, T0).unwrap()
    }
}

fn device_of(token: &str) -> &str {
    token.split_once('.').unwrap().0
}

async fn post(
    app: &Router,
    token: &str,
    nonce: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = Request::post("/v1/sync")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if let Some(nonce) = nonce {
        req = req.header(NONCE_HEADER, nonce);
    }
    let response = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, bytes.to_vec())
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

fn empty() -> Vec<u8> {
    encode_request(&SyncRequest::default())
}

/// A push to a new document of `changes` changes of 100,000 operations each (one text of
/// 100,000 characters per change), made under `device`'s actor: a few kilobytes on the wire.
fn op_heavy_push(device: &str, doc: u8, changes: usize) -> DocPush {
    let mut am = AutoCommit::new().with_actor(actor_for(device, [doc, 0, 0, 1]).unwrap());
    for i in 0..changes {
        let text = am.put_object(ROOT, format!("t{i}"), ObjType::Text).unwrap();
        am.splice_text(&text, 0, 0, &"a".repeat(99_999)).unwrap();
        am.commit();
    }
    DocPush {
        doc_id: format!("heavy-{doc}"),
        changes: am
            .get_changes(&[])
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect(),
    }
}

/// The most operations a request may carry: `MAX_OPS_PER_REQUEST` in 100,000-op changes.
fn maximal_request(device: &str) -> Vec<u8> {
    let pushes = (0..4).map(|d| op_heavy_push(device, d, 5)).collect();
    encode_request(&SyncRequest {
        pushes,
        ..Default::default()
    })
}

#[test]
fn a_request_over_the_operation_budget_is_refused_before_decoding() {
    run_async(|| async {
        let env = Env::new();
        let app = app(env.state());
        let token = env.token("w1");
        let before = env.store.row_counts().unwrap();
        let mut pushes: Vec<DocPush> = (0..4)
            .map(|d| op_heavy_push(device_of(&token), d, 5))
            .collect();
        pushes.push(op_heavy_push(device_of(&token), 9, 1));
        let body = encode_request(&SyncRequest {
            pushes,
            ..Default::default()
        });
        let started = Instant::now();
        let (status, _, bytes) = post(&app, &token, None, body).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(json(&bytes)["error"], "too_many_ops");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(env.store.row_counts().unwrap(), before, "nothing stored");
    })
}

#[test]
fn a_revoked_answer_carries_a_proof_only_the_device_secret_makes() {
    run_async(|| async {
        let env = Env::new();
        let app = app(env.state());
        let token = env.token("w1");
        env.store.revoke_device(device_of(&token)).unwrap();
        let body = empty();
        let nonce = request_nonce(&body);
        let (status, _, bytes) = post(&app, &token, Some(&nonce), body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let answer = json(&bytes);
        assert_eq!(answer["error"], "revoked");
        let proof = answer["proof"].as_str().expect("a proof");
        let key = RevocationKey::of_token(&token).unwrap();
        assert!(key.verifies(&nonce, proof));
        assert!(!key.verifies(&request_nonce(b"another request"), proof));
        // No nonce, or one that is not short lowercase hex: no proof, so the phone keeps its data.
        for nonce in [None, Some("NOT-HEX"), Some(&*"a".repeat(65))] {
            let (status, _, bytes) = post(&app, &token, nonce, body.clone()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert!(json(&bytes)["proof"].is_null(), "{nonce:?}");
        }
        // Someone with the device id but not the secret learns nothing, and gets no proof.
        let forged = format!("{}.{}", device_of(&token), "x".repeat(40));
        let (status, _, bytes) = post(&app, &forged, Some(&nonce), body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(json(&bytes)["error"], "unauthorized");
        assert!(json(&bytes).get("proof").is_none());
    })
}

#[test]
fn a_device_over_its_quota_gets_429_with_retry_after_and_others_do_not() {
    run_async(|| async {
        let env = Env::new();
        let limits = QuotaLimits {
            period_ms: 60_000,
            requests: 3,
            bytes: 1 << 20,
            changes: 100,
        };
        let app = app(env.state().with_quotas(limits));
        let (greedy, other) = (env.token("w1"), env.token("w2"));
        for _ in 0..3 {
            assert_eq!(post(&app, &greedy, None, empty()).await.0, StatusCode::OK);
        }
        env.clock.store(T0 + 15_000, Ordering::SeqCst);
        let (status, headers, bytes) = post(&app, &greedy, None, empty()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers[header::RETRY_AFTER], "45");
        let answer = json(&bytes);
        assert_eq!(answer["error"], "quota_exceeded");
        assert_eq!(answer["retry_after"], 45);
        assert!(answer["message"].as_str().unwrap().contains("requests"));
        assert_eq!(post(&app, &other, None, empty()).await.0, StatusCode::OK);
        env.clock.store(T0 + 60_000, Ordering::SeqCst);
        assert_eq!(post(&app, &greedy, None, empty()).await.0, StatusCode::OK);

        // Changes: one request pushing more than the period allows is refused before judging.
        let before = env.store.row_counts().unwrap();
        let push = DocPush {
            doc_id: "c-many".into(),
            changes: vec![vec![0u8; 8]; 101],
        };
        let body = encode_request(&SyncRequest {
            pushes: vec![push],
            ..Default::default()
        });
        let (status, _, bytes) = post(&app, &other, None, body).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            json(&bytes)["message"]
                .as_str()
                .unwrap()
                .contains("changes")
        );
        assert_eq!(env.store.row_counts().unwrap(), before, "nothing stored");

        // Bytes: a body announced over the period's bytes is refused before it is read.
        let big = vec![0u8; (1 << 20) + 1];
        let fresh = env.token("w3");
        let (status, _, bytes) = post(&app, &fresh, None, big).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{:?}", json(&bytes));
        assert!(json(&bytes)["message"].as_str().unwrap().contains("bytes"));
    })
}

/// True once the server closed the connection or answered (a 408); false while it waits.
fn cut_off(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    match stream.read(&mut buf) {
        // Closed, or an answer (a 408).
        Ok(n) => n == 0 || buf[..n].starts_with(b"HTTP/1.1 4"),
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// Sends `prefix` then one byte of `trickle` every 50 ms until the server cuts the connection
/// off; returns how long that took (or panics after 10 s).
fn trickle_until_cut(addr: std::net::SocketAddr, prefix: &[u8], trickle: u8) -> Duration {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let started = Instant::now();
    stream.write_all(prefix).unwrap();
    while started.elapsed() < Duration::from_secs(10) {
        if stream.write_all(&[trickle]).is_err() || cut_off(&mut stream) {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("a client sending a byte every 50 ms was never cut off");
}

#[test]
fn slow_loris_headers_and_bodies_are_cut_off_on_a_real_socket() {
    run_async(|| async {
        let env = Env::new();
        let token = env.token("w1");
        let mut state = env.state();
        state.body_timeout = Duration::from_millis(600);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn_with(listener, state, Duration::from_millis(600));
        let (headers, body) = tokio::task::spawn_blocking(move || {
            let headers = trickle_until_cut(addr, b"POST /v1/sync HTTP/1.1\r\nX-Slow: ", b'a');
            let request = format!(
                "POST /v1/sync HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                 Content-Length: 100000\r\n\r\n"
            );
            let body = trickle_until_cut(addr, request.as_bytes(), 0);
            (headers, body)
        })
        .await
        .unwrap();
        assert!(
            headers < Duration::from_secs(3),
            "headers cut after {headers:?}"
        );
        assert!(body < Duration::from_secs(3), "body cut after {body:?}");
        // The server still serves well-behaved clients.
        let ok = tokio::task::spawn_blocking(move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
        })
        .await
        .unwrap();
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        server.abort();
    })
}

/// A sync body larger than `PRE_AUTH_BODY_BYTES`, or of unknown length, is read only once its
/// token checks out: a bad token is answered 401 at once, with the body never sent. A small
/// body is read first and its token checked with it (one thread hop less), answered the same.
#[test]
fn a_large_sync_body_is_read_only_for_a_good_token() {
    run_async(|| async {
        let env = Env::new();
        let token = env.token("w1");
        let state = env.state();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn_with(listener, state, Duration::from_secs(5));
        let forged = format!("{}.{}", device_of(&token), "x".repeat(40));
        let answers = tokio::task::spawn_blocking(move || {
            let first_line = |framing: String, body: &[u8]| {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let head = format!(
                    "POST /v1/sync HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {forged}\r\n\
                     {framing}\r\n\r\n"
                );
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(body).unwrap();
                let mut answer = [0u8; 64];
                let n = stream.read(&mut answer).unwrap_or(0);
                String::from_utf8_lossy(&answer[..n])
                    .lines()
                    .next()
                    .map(str::to_owned)
            };
            let large = PRE_AUTH_BODY_BYTES + 1;
            [
                first_line(format!("Content-Length: {large}"), b""),
                first_line("Transfer-Encoding: chunked".into(), b""),
                first_line("Content-Length: 5".into(), b"hello"),
            ]
        })
        .await
        .unwrap();
        for answer in answers {
            assert_eq!(answer.as_deref(), Some("HTTP/1.1 401 Unauthorized"));
        }
        server.abort();
    })
}

#[test]
fn a_maximal_request_does_not_stall_another_devices_small_sync() {
    run_async(|| async {
        let env = Env::new();
        let app = app(env.state());
        let (heavy, light) = (env.token("w1"), env.token("w2"));
        let body = maximal_request(device_of(&heavy));
        let alone = Instant::now();
        assert_eq!(post(&app, &light, None, empty()).await.0, StatusCode::OK);
        let alone = alone.elapsed();
        let heavy_app = app.clone();
        let started = Instant::now();
        let big = tokio::spawn(async move { post(&heavy_app, &heavy, None, body).await.0 });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let small = Instant::now();
        assert_eq!(post(&app, &light, None, empty()).await.0, StatusCode::OK);
        let small = small.elapsed();
        let heavy_still_running = !big.is_finished();
        assert_eq!(big.await.unwrap(), StatusCode::OK);
        let heavy_took = started.elapsed();
        eprintln!(
            "small sync alone {alone:?}, during the maximal request {small:?} \
             (maximal request {heavy_took:?}, still running: {heavy_still_running})"
        );
        assert!(small < Duration::from_secs(2), "small sync took {small:?}");
    })
}
