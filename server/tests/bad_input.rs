//! Bad input from the outside world, through the router (`tower::ServiceExt::oneshot`, no
//! sockets): malformed, truncated, oversized, replayed and forged sync bodies, tokens and admin
//! requests. Each test asserts a clear answer (status and JSON error code, or a per-document
//! reject code), that nothing was stored (row counts before and after), and that the server
//! still serves a well-formed request from another device afterwards. SECURITY.md lists them.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use automerge::AutoCommit;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use gridcase_core::area::Jurisdiction;
use gridcase_core::doc::{CaseDoc, PersonalDoc, personal_doc_id};
use gridcase_core::identity::actor_for;
use gridcase_core::lifecycle::Action;
use gridcase_core::model::{
    Author, CaseType, Channel, Complainant, Location, Millis, NewCase, Role, Urgency,
};
use gridcase_core::sync::wire::{MAGIC, PROTOCOL_VERSION, decode_response, encode_request};
use gridcase_core::sync::{
    CatchUp, DocPush, Payload, PushResult, RejectCode, StagedSnapshot, SyncRequest, SyncResponse,
};
use gridcase_server::store::RowCounts;
use gridcase_server::sync::{
    MAX_CATCH_UPS_PER_REQUEST, MAX_CHANGES_PER_PUSH, MAX_DOC_ID_LEN, MAX_PUSHES_PER_REQUEST,
};
use gridcase_server::testing::{Backend, TestDb};
use gridcase_server::{AppState, Store, app};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tower::ServiceExt;

/// 2025-03-03 09:00 China time, a Monday.
const T0: Millis = 1_740_963_600_000;

struct Env {
    store: Arc<Store>,
    clock: Arc<AtomicI64>,
    admin: String,
    fresh: AtomicUsize,
    _db: TestDb,
}

impl Env {
    fn new(backend: Backend) -> Env {
        let db = TestDb::new(backend);
        let store = Arc::new(db.open());
        let admin = gridcase_server::testing::root_admin(&store);
        Env {
            store,
            clock: Arc::new(AtomicI64::new(T0)),
            admin,
            fresh: AtomicUsize::new(0),
            _db: db,
        }
    }

    fn state(&self) -> AppState {
        let clock = self.clock.clone();
        AppState::new(self.store.clone()).with_clock(Arc::new(move || clock.load(Ordering::SeqCst)))
    }

    fn app(&self) -> Router {
        app(self.state())
    }

    fn phone(&self, user: &str, role: Role, area: &str) -> Phone {
        self.store
            .enrol_user(user, role, &Jurisdiction::parse(area).unwrap(), T0)
            .unwrap();
        let token = self.store.enrol_device(user, T0).unwrap();
        let device = token.split_once('.').unwrap().0.to_owned();
        Phone {
            token,
            author: Author {
                user: user.into(),
                device: device.clone(),
                role,
            },
            device,
            docs: Default::default(),
        }
    }

    fn counts(&self) -> RowCounts {
        self.store.row_counts().unwrap()
    }

    /// A device that took no part in the test pushes a new case: it must be accepted and
    /// stored.
    async fn still_serves(&self, app: &Router) {
        let n = self.fresh.fetch_add(1, Ordering::SeqCst);
        let mut phone = self.phone(&format!("fresh{n}"), Role::GridWorker, "330604101");
        let id = format!("fresh-case-{n}");
        phone.new_case(&id, "330604101201", T0);
        let before = self.counts();
        let request = phone.request(&[&id]);
        let response = sync_ok(app, &phone, &request).await;
        assert!(
            matches!(&response.results[0], PushResult::Accepted { .. }),
            "{:?}",
            response.results
        );
        let after = self.counts();
        assert!(after.changes > before.changes);
        assert_eq!(after.audit_change, before.audit_change + 1);
    }
}

struct Phone {
    token: String,
    device: String,
    author: Author,
    docs: std::collections::BTreeMap<String, AutoCommit>,
}

impl Phone {
    fn actor(&self) -> automerge::ActorId {
        actor_for(&self.device, [7, 7, 7, 7]).unwrap()
    }

    fn new_case(&mut self, id: &str, area: &str, at: Millis) {
        let new = NewCase {
            id: id.into(),
            number: format!("N-{}", id.len()),
            channel: Channel::Grid,
            case_type: CaseType::Complaint,
            category: "噪音".into(),
            urgency: Urgency::General,
            priority: false,
            title: "夜间施工噪音扰民".into(),
            description: "村民反映工地夜间施工".into(),
            location: Location {
                address: "龙山村3组".into(),
                area_code: area.into(),
                gps: None,
            },
        };
        let mut doc = CaseDoc::create(&new, &self.author, self.actor(), at).unwrap();
        doc.act(&Action::Register, &self.author, at).unwrap();
        self.docs.insert(id.into(), doc.into_automerge());
    }

    fn new_personal(&mut self, case_id: &str, at: Millis) {
        let c = Complainant {
            name: "王建国".into(),
            phone: "13812341234".into(),
            anonymous: false,
        };
        let mut doc = PersonalDoc::create(&c, &self.author, self.actor(), at).unwrap();
        self.docs
            .insert(personal_doc_id(case_id), doc.automerge().clone());
    }

    fn edit(&mut self, id: &str, f: impl FnOnce(&mut CaseDoc, &Author)) {
        let raw = self.docs.remove(id).unwrap().with_actor(self.actor());
        let mut doc = CaseDoc::from_automerge(raw).unwrap();
        f(&mut doc, &self.author);
        self.docs.insert(id.into(), doc.into_automerge());
    }

    fn changes(&self, id: &str) -> Vec<Vec<u8>> {
        self.docs[id]
            .clone()
            .get_changes(&[])
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect()
    }

    fn request(&self, ids: &[&str]) -> SyncRequest {
        let pushes = ids
            .iter()
            .map(|id| DocPush {
                doc_id: id.to_string(),
                changes: self.changes(id),
            })
            .collect();
        SyncRequest {
            device_time: T0,
            pushes,
            ..Default::default()
        }
    }
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

async fn send(app: &Router, token: Option<&str>, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let mut req =
        Request::post("/v1/sync").header(header::CONTENT_TYPE, "application/octet-stream");
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    call(app, req.body(Body::from(body)).unwrap()).await
}

async fn sync_ok(app: &Router, phone: &Phone, request: &SyncRequest) -> SyncResponse {
    let (status, body) = send(app, Some(&phone.token), encode_request(request)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    decode_response(&body).unwrap()
}

/// Asserts an error answer: its status and its JSON `error` code (and a message).
fn assert_error(status: StatusCode, body: &[u8], want: StatusCode, code: &str) -> Value {
    assert_eq!(status, want, "{}", String::from_utf8_lossy(body));
    let json: Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)));
    assert_eq!(json["error"], code, "{json}");
    assert!(json["message"].is_string(), "{json}");
    json
}

async fn admin(
    app: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_owned())
        }
        None => Body::empty(),
    };
    call(app, req.body(body).unwrap()).await
}

fn reject_code(result: &PushResult) -> Option<RejectCode> {
    match result {
        PushResult::Rejected { reason, .. } => Some(reason.code),
        PushResult::Accepted { .. } => None,
    }
}

/// A zstd frame of raw (type 0) or run-length (type 1) blocks, built by hand so the tests need
/// no compressor: `(block type, decoded size, payload)`.
fn zstd_frame(blocks: &[(u32, u32, &[u8])]) -> Vec<u8> {
    // Magic, a frame header without content size, window 128 KiB.
    let mut out = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x38];
    for (i, (kind, size, payload)) in blocks.iter().enumerate() {
        let last = u32::from(i + 1 == blocks.len());
        let header = (size << 3) | (kind << 1) | last;
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.extend_from_slice(payload);
    }
    out
}

fn framed(compressed: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    out.extend_from_slice(compressed);
    out
}

async fn undecodable_sync_bodies_are_refused_and_store_nothing(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut phone = env.phone("w1", Role::GridWorker, "330604101");
    phone.new_case("case-1", "330604101201", T0);
    let real = encode_request(&phone.request(&["case-1"]));

    let mut random = vec![0u8; 4096];
    StdRng::seed_from_u64(5).fill(&mut random[..]);
    let mut version_0 = real.clone();
    version_0[4..6].copy_from_slice(&0u16.to_be_bytes());
    let mut version_next = real.clone();
    version_next[4..6].copy_from_slice(&(PROTOCOL_VERSION + 1).to_be_bytes());
    let mut version_max = real.clone();
    version_max[4..6].copy_from_slice(&u16::MAX.to_be_bytes());
    let mut wrong_magic = real.clone();
    wrong_magic[..4].copy_from_slice(b"GCSX");
    // A valid frame holding bytes that are not a postcard SyncRequest (varint overflow).
    let garbage_postcard = framed(&zstd_frame(&[(0, 64, &[0xff; 64])]));
    // 520 run-length blocks of 128 KiB: 65 MiB decoded from about 2 KiB sent.
    let bomb = framed(&zstd_frame(&vec![(1, 128 * 1024, &[0u8][..]); 520]));
    assert!(bomb.len() < 4096);
    // Half a real request: the zstd frame ends early.
    let truncated = real[..real.len() / 2].to_vec();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "truncated"),
        ("random bytes", random, "bad_magic"),
        ("json", b"{\"pushes\": []}".to_vec(), "bad_magic"),
        ("wrong magic", wrong_magic, "bad_magic"),
        ("magic prefix only", b"GC".to_vec(), "truncated"),
        ("magic without version", b"GCSY\x00".to_vec(), "truncated"),
        ("unknown version 0", version_0, "unsupported_version"),
        ("unknown next version", version_next, "unsupported_version"),
        ("unknown version 65535", version_max, "unsupported_version"),
        ("not zstd", framed(b"garbage"), "bad_compression"),
        ("garbage postcard", garbage_postcard, "bad_message"),
        ("decompression bomb", bomb, "bad_compression"),
        ("truncated request", truncated, "bad_compression"),
    ];
    let before = env.counts();
    for (what, body, code) in cases {
        let (status, bytes) = send(&app, Some(&phone.token), body).await;
        let json = assert_error(status, &bytes, StatusCode::BAD_REQUEST, code);
        assert!(!json["message"].as_str().unwrap().is_empty(), "{what}");
        assert_eq!(env.counts(), before, "{what} stored something");
    }
    // The very request that was truncated goes through whole.
    let (status, _) = send(&app, Some(&phone.token), real).await;
    assert_eq!(status, StatusCode::OK);
    env.still_serves(&app).await;
}

async fn oversized_bodies_get_413_json_and_store_nothing(backend: Backend) {
    let env = Env::new(backend);
    let mut state = env.state();
    state.max_body_bytes = 4096;
    let app = app(state);
    let phone = env.phone("w1", Role::GridWorker, "330604101");
    let before = env.counts();
    // Streamed without a length: the handler notices while reading.
    let (status, bytes) = send(&app, Some(&phone.token), vec![0u8; 10_000]).await;
    assert_error(status, &bytes, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    // With a Content-Length the limit layer refuses before reading; still JSON.
    let req = Request::post("/v1/sync")
        .header(header::AUTHORIZATION, format!("Bearer {}", phone.token))
        .header(header::CONTENT_LENGTH, "10000")
        .body(Body::from(vec![0u8; 10_000]))
        .unwrap();
    let (status, bytes) = call(&app, req).await;
    assert_error(status, &bytes, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    // An admin body over its own 16 KiB limit.
    let big = format!("{{\"reason\": \"{}\"}}", "x".repeat(20_000));
    let (status, bytes) = admin(
        &app,
        "POST",
        "/admin/cases/x/reveal",
        Some(&env.admin),
        Some(&big),
    )
    .await;
    assert_error(status, &bytes, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    assert_eq!(env.counts(), before);
    env.still_serves(&app).await;
}

async fn non_automerge_changes_are_rejected_per_document_while_the_rest_is_accepted(
    backend: Backend,
) {
    let env = Env::new(backend);
    let app = env.app();
    let mut phone = env.phone("w1", Role::GridWorker, "330604101");
    phone.new_case("good", "330604101201", T0);
    let good = phone.changes("good");
    let request = SyncRequest {
        pushes: vec![
            DocPush {
                doc_id: "garbage".into(),
                changes: vec![vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3], vec![]],
            },
            DocPush {
                doc_id: "good".into(),
                changes: good.clone(),
            },
            DocPush {
                doc_id: "no-changes".into(),
                changes: vec![],
            },
            // A real change under the wrong document id: it holds case `good`.
            DocPush {
                doc_id: "elsewhere".into(),
                changes: good.clone(),
            },
        ],
        ..Default::default()
    };
    let before = env.counts();
    let response = sync_ok(&app, &phone, &request).await;
    let codes: Vec<Option<RejectCode>> = response.results.iter().map(reject_code).collect();
    assert_eq!(
        codes,
        [
            Some(RejectCode::Malformed),
            None,
            Some(RejectCode::Malformed),
            Some(RejectCode::Malformed)
        ]
    );
    let after = env.counts();
    assert_eq!(after.changes, before.changes + good.len() as u64);
    assert_eq!(after.docs, before.docs + 1);
    assert_eq!(after.audit_change, before.audit_change + 1);
    assert_eq!(after.audit_reject, before.audit_reject + 3);
    // The rejections are in the audit log with their codes.
    let rows = env
        .store
        .audit_log(&gridcase_server::audit::AuditQuery {
            user_id: Some("w1".into()),
            ..Default::default()
        })
        .unwrap();
    let rejects: Vec<&str> = rows
        .iter()
        .filter(|r| r.kind == "reject")
        .map(|r| r.doc_id.as_deref().unwrap())
        .collect();
    assert_eq!(rejects.len(), 3);
    assert!(rejects.contains(&"garbage"));
    assert!(
        rows.iter().filter(|r| r.kind == "reject").all(|r| r
            .detail
            .as_deref()
            .unwrap()
            .contains("\"malformed\""))
    );
    env.still_serves(&app).await;
}

async fn changes_under_another_devices_actor_are_foreign(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut victim = env.phone("w1", Role::GridWorker, "330604101");
    let forger = env.phone("w2", Role::GridWorker, "330604101");
    victim.new_case("case-1", "330604101201", T0);
    let request = victim.request(&["case-1"]);
    let before = env.counts();
    let response = sync_ok(&app, &forger, &request).await;
    assert_eq!(
        reject_code(&response.results[0]),
        Some(RejectCode::ForeignActor)
    );
    let after = env.counts();
    assert_eq!((after.changes, after.docs, after.cases), (0, 0, 0));
    assert_eq!(after.audit_change, before.audit_change);
    assert_eq!(after.audit_reject, before.audit_reject + 1);
    env.still_serves(&app).await;
}

async fn a_replayed_request_stores_nothing_twice_and_gets_the_same_answer(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut phone = env.phone("w1", Role::GridWorker, "330604101");
    phone.new_case("case-1", "330604101201", T0);
    phone.new_personal("case-1", T0);
    let request = phone.request(&["case-1", "case-1#pii"]);
    let first = sync_ok(&app, &phone, &request).await;
    assert!(
        first
            .results
            .iter()
            .all(|r| matches!(r, PushResult::Accepted { .. }))
    );
    let after_first = env.counts();
    assert_eq!(after_first.audit_change, 2);
    for _ in 0..3 {
        let again = sync_ok(&app, &phone, &request).await;
        assert_eq!(again.results, first.results);
        assert_eq!(env.counts(), after_first);
    }
    // The same changes replayed by another device of the same area are no news either.
    let other = env.phone("w9", Role::GridWorker, "330604101");
    let before = env.counts();
    let replay = sync_ok(&app, &other, &request).await;
    assert_eq!(replay.results, first.results);
    assert_eq!(env.counts(), before);
    env.still_serves(&app).await;
}

async fn a_case_outside_the_jurisdiction_is_refused(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut phone = env.phone("w1", Role::GridWorker, "330604101");
    phone.new_case("far", "330604102201", T0);
    let before = env.counts();
    let response = sync_ok(&app, &phone, &phone.request(&["far"])).await;
    assert_eq!(
        reject_code(&response.results[0]),
        Some(RejectCode::OutOfJurisdiction)
    );
    let after = env.counts();
    assert_eq!((after.changes, after.docs, after.cases), (0, 0, 0));
    assert_eq!(after.audit_change, before.audit_change);
    env.still_serves(&app).await;
}

async fn personal_data_from_a_handling_unit_is_refused(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut worker = env.phone("w1", Role::GridWorker, "330604101");
    worker.new_case("case-1", "330604101201", T0);
    sync_ok(&app, &worker, &worker.request(&["case-1"])).await;
    let mut unit = env.phone("u1", Role::HandlingUnit, "330604");
    unit.docs.insert("case-1#pii".into(), {
        use automerge::transaction::Transactable;
        let mut d = AutoCommit::new().with_actor(unit.actor());
        d.put(automerge::ROOT, "phone", "13900000000").unwrap();
        d.commit();
        d
    });
    let before = env.counts();
    let response = sync_ok(&app, &unit, &unit.request(&["case-1#pii"])).await;
    assert_eq!(
        reject_code(&response.results[0]),
        Some(RejectCode::PersonalData)
    );
    let after = env.counts();
    assert_eq!(
        (after.changes, after.docs, after.audit_change),
        (before.changes, before.docs, before.audit_change)
    );
    assert!(env.store.load_doc("case-1#pii").unwrap().is_none());
    env.still_serves(&app).await;
}

async fn bad_document_ids_are_malformed(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut phone = env.phone("w1", Role::GridWorker, "330604101");
    let longest = "c".repeat(MAX_DOC_ID_LEN);
    phone.new_case(&longest, "330604101201", T0);
    let real = phone.changes(&longest);
    let bad = [
        String::new(),
        "#pii".into(),
        "a#b#pii".into(),
        "a b".into(),
        "a\u{0}b".into(),
        "a\nb".into(),
        "a\u{7f}".into(),
        "c".repeat(MAX_DOC_ID_LEN + 1),
        "x".repeat(1000),
        "长".repeat(MAX_DOC_ID_LEN + 1),
    ];
    let request = SyncRequest {
        pushes: bad
            .iter()
            .map(|id| DocPush {
                doc_id: id.clone(),
                changes: real.clone(),
            })
            .collect(),
        ..Default::default()
    };
    let before = env.counts();
    let response = sync_ok(&app, &phone, &request).await;
    for (id, result) in bad.iter().zip(&response.results) {
        assert_eq!(reject_code(result), Some(RejectCode::Malformed), "{id:?}");
    }
    let after = env.counts();
    assert_eq!(
        (after.changes, after.docs, after.audit_change),
        (before.changes, before.docs, before.audit_change)
    );
    // Refused ids are stored in the audit log cut short.
    let rows = env
        .store
        .audit_log(&gridcase_server::audit::AuditQuery::default())
        .unwrap();
    assert!(
        rows.iter()
            .all(|r| r.doc_id.as_deref().unwrap_or("").chars().count() <= 301)
    );
    // The longest allowed id goes through.
    let response = sync_ok(&app, &phone, &phone.request(&[&longest])).await;
    assert_eq!(reject_code(&response.results[0]), None);
    env.still_serves(&app).await;
}

async fn too_many_changes_or_pushes_are_refused(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let phone = env.phone("w1", Role::GridWorker, "330604101");
    let before = env.counts();
    // One push with more changes than allowed: rejected too_large before any is decoded.
    let request = SyncRequest {
        pushes: vec![DocPush {
            doc_id: "many".into(),
            changes: vec![vec![1]; MAX_CHANGES_PER_PUSH + 1],
        }],
        ..Default::default()
    };
    let response = sync_ok(&app, &phone, &request).await;
    assert_eq!(
        reject_code(&response.results[0]),
        Some(RejectCode::TooLarge)
    );
    // More pushes than allowed in one request: the whole request is refused, nothing at all
    // is stored (not even rejections), so the phone keeps its changes.
    let before_many = env.counts();
    let request = SyncRequest {
        pushes: (0..=MAX_PUSHES_PER_REQUEST)
            .map(|i| DocPush {
                doc_id: format!("tiny-{i}"),
                changes: vec![vec![i as u8]],
            })
            .collect(),
        ..Default::default()
    };
    let (status, bytes) = send(&app, Some(&phone.token), encode_request(&request)).await;
    assert_error(
        status,
        &bytes,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_pushes",
    );
    assert_eq!(env.counts(), before_many);
    // As many catch-up messages.
    let request = SyncRequest {
        catch_up: (0..=MAX_CATCH_UPS_PER_REQUEST)
            .map(|i| CatchUp {
                doc_id: format!("d{i}"),
                message: vec![],
            })
            .collect(),
        ..Default::default()
    };
    let (status, bytes) = send(&app, Some(&phone.token), encode_request(&request)).await;
    assert_error(
        status,
        &bytes,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_catch_ups",
    );
    // A thousand tiny garbage pushes, under the cap: each rejected, nothing but the rejections
    // stored.
    let request = SyncRequest {
        pushes: (0..1000)
            .map(|i| DocPush {
                doc_id: format!("tiny-{i}"),
                changes: vec![vec![i as u8]],
            })
            .collect(),
        ..Default::default()
    };
    let response = sync_ok(&app, &phone, &request).await;
    assert!(
        response
            .results
            .iter()
            .all(|r| reject_code(r) == Some(RejectCode::Malformed))
    );
    let after = env.counts();
    assert_eq!(
        (after.changes, after.docs, after.audit_change),
        (before.changes, before.docs, before.audit_change)
    );
    assert_eq!(after.audit_reject, before.audit_reject + 1 + 1000);
    env.still_serves(&app).await;
}

async fn bad_tokens_are_401_and_revoked_ones_say_wipe(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut phone = env.phone("w1", Role::GridWorker, "330604101");
    phone.new_case("case-1", "330604101201", T0);
    let body = encode_request(&phone.request(&["case-1"]));
    let (device, _secret) = phone.token.split_once('.').unwrap();
    let wrong_secret = format!("{device}.{}", "a".repeat(40));
    let unknown_device = format!("{}.{}", "0".repeat(32), "a".repeat(40));
    let long = "a".repeat(10_000);
    let before = env.counts();

    let mut headers: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("empty", Some(String::new())),
        ("scheme only", Some("Bearer".into())),
        ("scheme and space", Some("Bearer ".into())),
        ("basic scheme", Some(format!("Basic {}", phone.token))),
        ("token scheme", Some(format!("Token {}", phone.token))),
        ("no scheme", Some(phone.token.clone())),
        ("malformed", Some("Bearer nonsense".into())),
        ("dot only", Some("Bearer .".into())),
        (
            "not hex",
            Some(format!("Bearer {}.{}", "z".repeat(32), "a".repeat(40))),
        ),
        ("short device", Some("Bearer abc.def".into())),
        ("very long", Some(format!("Bearer {long}"))),
        ("unknown device", Some(format!("Bearer {unknown_device}"))),
        ("wrong secret", Some(format!("Bearer {wrong_secret}"))),
        ("admin token", Some(format!("Bearer {}", env.admin))),
    ];
    // A secret with its last character changed.
    let mut near = phone.token.clone();
    let last = near.pop().unwrap();
    near.push(if last == 'a' { 'b' } else { 'a' });
    headers.push(("near secret", Some(format!("Bearer {near}"))));
    for (what, header_value) in headers {
        let mut req = Request::post("/v1/sync");
        if let Some(value) = header_value {
            req = req.header(header::AUTHORIZATION, value);
        }
        let (status, bytes) = call(&app, req.body(Body::from(body.clone())).unwrap()).await;
        let json = assert_error(status, &bytes, StatusCode::UNAUTHORIZED, "unauthorized");
        assert!(json.get("wipe").is_none(), "{what}");
        assert_eq!(env.counts(), before, "{what}");
    }
    // A header value that is not visible ASCII.
    let req = Request::post("/v1/sync")
        .header(
            header::AUTHORIZATION,
            axum::http::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
        )
        .body(Body::from(body.clone()))
        .unwrap();
    let (status, bytes) = call(&app, req).await;
    assert_error(status, &bytes, StatusCode::UNAUTHORIZED, "unauthorized");

    // A device token on the admin routes.
    for (method, path) in [
        ("GET", "/admin/overdue"),
        ("GET", "/admin/audit"),
        ("GET", "/admin/cases/case-1"),
        ("POST", "/admin/cases/case-1/reveal"),
        ("POST", "/admin/users/w1/revoke"),
    ] {
        let (status, bytes) = admin(
            &app,
            method,
            path,
            Some(&phone.token),
            Some("{\"reason\":\"x\"}"),
        )
        .await;
        assert_error(status, &bytes, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    assert_eq!(env.counts(), before);
    assert!(env.store.audit_count("revoke").unwrap() == 0);

    // Revoked: 401 with wipe, nothing stored.
    env.store.revoke_device(&phone.device).unwrap();
    let (status, bytes) = send(&app, Some(&phone.token), body).await;
    let json = assert_error(status, &bytes, StatusCode::UNAUTHORIZED, "revoked");
    assert_eq!(json["wipe"], true);
    // Wrong secret for a revoked device is only unauthorized: no oracle for revocation.
    let (status, bytes) = send(&app, Some(&wrong_secret), vec![]).await;
    assert_error(status, &bytes, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(env.counts(), before);
    env.still_serves(&app).await;
}

async fn bad_admin_requests_get_json_errors(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let token = Some(env.admin.as_str());
    let long_id = "x".repeat(5000);
    let long_path = format!("/admin/cases/{long_id}");
    let checks: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "GET",
            "/admin/overdue?at=yesterday".into(),
            StatusCode::BAD_REQUEST,
            "bad_time",
        ),
        (
            "GET",
            "/admin/overdue?at=99999999999999999999".into(),
            StatusCode::BAD_REQUEST,
            "bad_time",
        ),
        (
            "GET",
            "/admin/due-soon?at=2025-13-01T00:00:00Z".into(),
            StatusCode::BAD_REQUEST,
            "bad_time",
        ),
        (
            "GET",
            "/admin/overdue?limit=abc".into(),
            StatusCode::BAD_REQUEST,
            "bad_limit",
        ),
        (
            "GET",
            "/admin/overdue?limit=-1".into(),
            StatusCode::BAD_REQUEST,
            "bad_limit",
        ),
        (
            "GET",
            "/admin/overdue?limit=0".into(),
            StatusCode::BAD_REQUEST,
            "bad_limit",
        ),
        (
            "GET",
            "/admin/overdue?limit=1e3".into(),
            StatusCode::BAD_REQUEST,
            "bad_limit",
        ),
        (
            "GET",
            "/admin/due-soon?limit=99999999999".into(),
            StatusCode::BAD_REQUEST,
            "bad_limit",
        ),
        (
            "GET",
            "/admin/overdue?limit=%FF".into(),
            StatusCode::BAD_REQUEST,
            "bad_limit",
        ),
        (
            "GET",
            "/admin/overdue?limit=1&limit=2".into(),
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (
            "GET",
            "/admin/audit?from=soon".into(),
            StatusCode::BAD_REQUEST,
            "bad_time",
        ),
        (
            "GET",
            "/admin/audit?to=2025-02-30".into(),
            StatusCode::BAD_REQUEST,
            "bad_time",
        ),
        (
            "GET",
            "/admin/audit?limit=100001".into(),
            StatusCode::BAD_REQUEST,
            "bad_limit",
        ),
        (
            "GET",
            "/admin/cases/nope".into(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "GET",
            "/admin/cases/%FF%FE".into(),
            StatusCode::BAD_REQUEST,
            "bad_path",
        ),
        (
            "GET",
            "/admin/cases/..%2F..%2Fetc%2Fpasswd".into(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "GET",
            "/admin/cases/%00".into(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "GET",
            "/admin/cases/a%20b'%3B%20DROP%20TABLE%20cases".into(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        ("GET", long_path.clone(), StatusCode::NOT_FOUND, "not_found"),
        (
            "GET",
            "/admin/cases/a/b".into(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "GET",
            "/admin/nothing".into(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "GET",
            "/v1/sync".into(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "DELETE",
            "/admin/cases/x".into(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "POST",
            "/admin/devices/nope/revoke".into(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "POST",
            "/admin/users/nope/revoke".into(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "POST",
            "/admin/users/%FF/revoke".into(),
            StatusCode::BAD_REQUEST,
            "bad_path",
        ),
    ];
    let before = env.counts();
    for (method, path, want, code) in checks {
        let (status, bytes) = admin(&app, method, &path, token, None).await;
        let json = assert_error(status, &bytes, want, code);
        // Errors never echo a 5000-character id back whole.
        assert!(json["message"].as_str().unwrap().len() < 1000, "{path}");
    }
    assert_eq!(env.counts(), before);
    assert_eq!(env.store.audit_count("revoke").unwrap(), 0);
    env.still_serves(&app).await;
}

/// The routes of admin accounts and audit draws: every bad body, id or token gets a JSON error
/// and writes nothing.
async fn bad_account_and_audit_draw_requests_get_json_errors(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let phone = env.phone("w1", Role::GridWorker, "330604101");
    let token = Some(env.admin.as_str());
    let long = "x".repeat(5000);
    let checks: Vec<(&str, String, Option<String>, StatusCode, &str)> = vec![
        // Sign-in: missing, wrong types, unknown name, no body, not JSON.
        ("POST", "/admin/sign-in".into(), None, StatusCode::UNAUTHORIZED, "unauthorized"),
        ("POST", "/admin/sign-in".into(), Some("{\"name\": 5}".into()), StatusCode::BAD_REQUEST, "bad_json"),
        ("POST", "/admin/sign-in".into(), Some("[1]".into()), StatusCode::BAD_REQUEST, "bad_json"),
        ("POST", "/admin/sign-in".into(), Some(format!("{{\"name\": \"{long}\", \"password\": \"p\"}}")), StatusCode::UNAUTHORIZED, "unauthorized"),
        ("POST", "/admin/sign-in".into(), Some("{\"name\": \"a\\u0000b\", \"password\": \"p\"}".into()), StatusCode::UNAUTHORIZED, "unauthorized"),
        ("GET", "/admin/sign-in".into(), None, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        // Enrolments.
        ("POST", "/admin/users".into(), Some("{}".into()), StatusCode::BAD_REQUEST, "bad_json"),
        ("POST", "/admin/users".into(), Some("{\"id\": \"u\", \"role\": \"king\", \"area\": \"33\"}".into()), StatusCode::BAD_REQUEST, "bad_role"),
        ("POST", "/admin/users".into(), Some("{\"id\": \"u\", \"role\": \"system\", \"area\": \"33\"}".into()), StatusCode::BAD_REQUEST, "bad_role"),
        ("POST", "/admin/users".into(), Some("{\"id\": \"u\", \"role\": \"grid_worker\", \"area\": \"\"}".into()), StatusCode::BAD_REQUEST, "bad_area"),
        ("POST", "/admin/users".into(), Some("{\"id\": \"u\", \"role\": \"grid_worker\", \"area\": \"33x\"}".into()), StatusCode::BAD_REQUEST, "bad_area"),
        ("POST", "/admin/users".into(), Some("{\"id\": \"a b\", \"role\": \"grid_worker\", \"area\": \"330604101\"}".into()), StatusCode::BAD_REQUEST, "bad_user"),
        ("POST", "/admin/users".into(), Some("{\"id\": \"u\", \"role\": \"grid_worker\", \"area\": \"*\"}".into()), StatusCode::BAD_REQUEST, "bad_user"),
        ("POST", "/admin/users".into(), Some("{\"id\": \"u\", \"role\": \"grid_worker\", \"area\": \"330604101\", \"by\": \"z\"}".into()), StatusCode::BAD_REQUEST, "bad_by"),
        ("POST", "/admin/users/nobody/devices".into(), None, StatusCode::NOT_FOUND, "not_found"),
        ("POST", format!("/admin/users/{long}/devices"), None, StatusCode::NOT_FOUND, "not_found"),
        ("POST", "/admin/users/%00/devices".into(), None, StatusCode::NOT_FOUND, "not_found"),
        // Audit draws.
        ("POST", "/admin/audit-draws".into(), None, StatusCode::BAD_REQUEST, "bad_month"),
        ("POST", "/admin/audit-draws".into(), Some("{\"month\": \"2025-02\"}".into()), StatusCode::BAD_REQUEST, "bad_area"),
        ("POST", "/admin/audit-draws".into(), Some("{\"month\": \"2025-02\", \"area\": \"\"}".into()), StatusCode::BAD_REQUEST, "bad_area"),
        ("POST", "/admin/audit-draws".into(), Some("{\"month\": \"2025-13\", \"area\": \"33\"}".into()), StatusCode::BAD_REQUEST, "bad_draw"),
        ("POST", "/admin/audit-draws".into(), Some("{\"month\": \"2025-02-01\", \"area\": \"33\"}".into()), StatusCode::BAD_REQUEST, "bad_draw"),
        ("POST", "/admin/audit-draws".into(), Some("{\"month\": \"2099-01\", \"area\": \"33\"}".into()), StatusCode::BAD_REQUEST, "bad_draw"),
        ("POST", "/admin/audit-draws".into(), Some("{\"month\": \"2025-02\", \"area\": \"33\", \"n\": -1}".into()), StatusCode::BAD_REQUEST, "bad_n"),
        ("POST", "/admin/audit-draws".into(), Some("{\"month\": \"2025-02\", \"area\": \"33\", \"n\": 1.5}".into()), StatusCode::BAD_REQUEST, "bad_n"),
        ("POST", "/admin/audit-draws".into(), Some("{\"month\": \"2025-02\", \"area\": \"33\", \"n\": 99999999999}".into()), StatusCode::BAD_REQUEST, "bad_n"),
        ("POST", "/admin/audit-draws".into(), Some("{\"month\": \"2025-02\", \"area\": \"33\", \"n\": 100000}".into()), StatusCode::BAD_REQUEST, "bad_draw"),
        ("POST", "/admin/audit-draws".into(), Some("{\"month\": \"2025-02\", \"area\": \"33\", \"reason\": \" \"}".into()), StatusCode::BAD_REQUEST, "bad_draw"),
        // No case closed in that month: nothing to draw, nothing recorded.
        ("POST", "/admin/audit-draws".into(), Some("{\"month\": \"2025-02\", \"area\": \"33\"}".into()), StatusCode::BAD_REQUEST, "bad_draw"),
        ("GET", "/admin/audit-draws/1".into(), None, StatusCode::NOT_FOUND, "not_found"),
        ("GET", "/admin/audit-draws/0".into(), None, StatusCode::NOT_FOUND, "not_found"),
        ("GET", "/admin/audit-draws/-1".into(), None, StatusCode::NOT_FOUND, "not_found"),
        ("GET", "/admin/audit-draws/abc".into(), None, StatusCode::NOT_FOUND, "not_found"),
        ("GET", "/admin/audit-draws/99999999999999999999999".into(), None, StatusCode::NOT_FOUND, "not_found"),
        ("GET", format!("/admin/audit-draws/{long}"), None, StatusCode::NOT_FOUND, "not_found"),
        ("POST", "/admin/audit-draws/1/results".into(), Some("{\"case\": \"c\", \"result\": \"confirmed\"}".into()), StatusCode::NOT_FOUND, "not_found"),
        ("POST", "/admin/audit-draws/1/results".into(), Some("{\"result\": \"confirmed\"}".into()), StatusCode::BAD_REQUEST, "bad_case"),
        ("POST", "/admin/audit-draws/1/results".into(), Some("{\"case\": \"c\"}".into()), StatusCode::BAD_REQUEST, "bad_result"),
        ("POST", "/admin/audit-draws/1/results".into(), Some("not json".into()), StatusCode::BAD_REQUEST, "bad_json"),
        ("DELETE", "/admin/audit-draws/1".into(), None, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
    ];
    let before = env.counts();
    let audit_before = env.store.audit_log(&Default::default()).unwrap().len();
    for (method, path, body, want, code) in checks {
        let (status, bytes) = admin(&app, method, &path, token, body.as_deref()).await;
        let json = assert_error(status, &bytes, want, code);
        assert!(json["message"].as_str().unwrap().len() < 1000, "{path}");
    }
    // Every new route but sign-in needs an admin: none, a device's or a made-up token is 401.
    for (method, path) in [
        ("GET", "/admin/me"),
        ("POST", "/admin/users"),
        ("POST", "/admin/users/w1/devices"),
        ("POST", "/admin/audit-draws"),
        ("GET", "/admin/audit-draws/1"),
        ("POST", "/admin/audit-draws/1/results"),
    ] {
        for bad in [
            None,
            Some(phone.token.as_str()),
            Some("admin.nope"),
            Some("session.x"),
        ] {
            let (status, bytes) = admin(&app, method, path, bad, Some("{}")).await;
            assert_error(status, &bytes, StatusCode::UNAUTHORIZED, "unauthorized");
        }
    }
    assert_eq!(env.counts(), before);
    let audit_after = env.store.audit_log(&Default::default()).unwrap().len();
    assert_eq!(audit_after, audit_before, "nothing refused is recorded");
    assert!(env.store.user("u").unwrap().is_none());
    env.still_serves(&app).await;
}

async fn reveal_needs_a_reason_and_is_audited(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut worker = env.phone("w1", Role::GridWorker, "330604101");
    worker.new_case("case-1", "330604101201", T0);
    worker.new_personal("case-1", T0);
    sync_ok(&app, &worker, &worker.request(&["case-1", "case-1#pii"])).await;
    let path = "/admin/cases/case-1/reveal";
    let token = Some(env.admin.as_str());
    let long_reason = format!("{{\"reason\": \"{}\"}}", "x".repeat(501));
    let bad: Vec<(Option<&str>, &str)> = vec![
        (None, "reason_required"),
        (Some(""), "reason_required"),
        (Some("{}"), "reason_required"),
        (Some("{\"reason\": \"\"}"), "reason_required"),
        (Some("{\"reason\": \"   \"}"), "reason_required"),
        (Some("{\"reason\": null}"), "reason_required"),
        (Some("{\"reason\": 5}"), "bad_json"),
        (Some("not json"), "bad_json"),
        (Some("[\"reason\"]"), "bad_json"),
        (Some("{\"reason\": \"x\""), "bad_json"),
        (Some(&long_reason), "bad_reason"),
        (Some("{\"reason\": \"a\\u0000b\"}"), "bad_reason"),
        // The audit log names the authenticated admin; a typed name is refused.
        (Some("{\"reason\": \"ok\", \"by\": \"\"}"), "bad_by"),
        (Some("{\"reason\": \"ok\", \"by\": \"zhang\"}"), "bad_by"),
        (Some("{\"reason\": \"ok\", \"by\": 7}"), "bad_by"),
    ];
    let before = env.counts();
    for (body, code) in bad {
        let (status, bytes) = admin(&app, "POST", path, token, body).await;
        assert_error(status, &bytes, StatusCode::BAD_REQUEST, code);
    }
    let (status, bytes) = admin(
        &app,
        "POST",
        "/admin/cases/nope/reveal",
        token,
        Some("{\"reason\": \"回访\"}"),
    )
    .await;
    assert_error(status, &bytes, StatusCode::NOT_FOUND, "not_found");
    let (status, bytes) = admin(&app, "POST", path, None, Some("{\"reason\": \"回访\"}")).await;
    assert_error(status, &bytes, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(env.counts(), before, "no reveal recorded for a refused one");

    // A proper reveal: unmasked, recorded with the reason and the admin's name.
    let (status, bytes) = admin(
        &app,
        "POST",
        path,
        token,
        Some("{\"reason\": \"回访需要联系投诉人\"}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["complainant"]["phone"], "13812341234");
    assert_eq!(env.counts().audit_reveal, before.audit_reveal + 1);
    let (_, bytes) = admin(&app, "GET", "/admin/audit?case=case-1&limit=1", token, None).await;
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["rows"][0]["kind"], "reveal");
    assert_eq!(
        json["rows"][0]["user_id"], "root",
        "the authenticated admin"
    );
    assert!(
        json["rows"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("回访需要联系投诉人")
    );
    // The case detail stays masked.
    let (_, bytes) = admin(&app, "GET", "/admin/cases/case-1", token, None).await;
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["complainant"]["phone"], "138****1234");
    env.still_serves(&app).await;
}

async fn the_audit_log_records_changes_rejections_revocations_and_enrolments(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut worker = env.phone("w1", Role::GridWorker, "330604101");
    let other = env.phone("w2", Role::GridWorker, "330604101");
    worker.new_case("case-1", "330604101201", T0);
    let changes = worker.changes("case-1").len();
    env.clock.store(T0 + 1000, Ordering::SeqCst);
    sync_ok(&app, &worker, &worker.request(&["case-1"])).await;
    env.clock.store(T0 + 2000, Ordering::SeqCst);
    // w2 replays w1's changes to a new id: rejected (the case inside is another).
    let mut forged = worker.request(&["case-1"]);
    forged.pushes[0].doc_id = "case-2".into();
    sync_ok(&app, &other, &forged).await;
    env.clock.store(T0 + 3000, Ordering::SeqCst);
    let token = Some(env.admin.as_str());
    let path = format!("/admin/devices/{}/revoke", other.device.to_uppercase());
    let (status, _) = admin(&app, "POST", &path, token, Some("{\"by\": \"zhang\"}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no typed admin name");
    let (status, _) = admin(&app, "POST", &path, token, Some("{}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, bytes) = send(&app, Some(&other.token), vec![]).await;
    assert_error(status, &bytes, StatusCode::UNAUTHORIZED, "revoked");
    let (status, _) = admin(&app, "POST", "/admin/users/w1/revoke", token, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, bytes) = send(&app, Some(&worker.token), vec![]).await;
    assert_error(status, &bytes, StatusCode::UNAUTHORIZED, "revoked");

    let (status, bytes) = admin(&app, "GET", "/admin/audit?limit=1000", token, None).await;
    assert_eq!(status, StatusCode::OK);
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    let rows = json["rows"].as_array().unwrap();
    let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    // Newest first: two revocations, the rejection, the change, the four enrolments, then
    // the admin account the test acts as.
    assert_eq!(
        kinds,
        [
            "revoke", "revoke", "reject", "change", "enrol", "enrol", "enrol", "enrol", "admin"
        ]
    );
    let change = &rows[3];
    assert_eq!(change["user_id"], "w1");
    assert_eq!(change["device_id"], worker.device.as_str());
    assert_eq!(change["case_id"], "case-1");
    assert_eq!(change["at"], T0 + 1000);
    let detail: Value = serde_json::from_str(change["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["changes"], changes);
    assert_eq!(detail["hashes"].as_array().unwrap().len(), changes);
    assert!(
        rows[1]["detail"]
            .as_str()
            .unwrap()
            .contains("\"by\":\"root\"")
    );

    // Filters: case, user, time window, limit.
    let (_, bytes) = admin(&app, "GET", "/admin/audit?case=case-1", token, None).await;
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["count"], 1);
    let (_, bytes) = admin(&app, "GET", "/admin/audit?user=w2", token, None).await;
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    let kinds: Vec<&str> = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["revoke", "reject", "enrol", "enrol"]);
    let window = format!("/admin/audit?from={}&to={}", T0 + 1000, T0 + 3000);
    let (_, bytes) = admin(&app, "GET", &window, token, None).await;
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["count"], 2);
    let (_, bytes) = admin(
        &app,
        "GET",
        "/admin/audit?from=2025-03-03T09:00:02%2B08:00&limit=1",
        token,
        None,
    )
    .await;
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["count"], 1);
    assert_eq!(json["rows"][0]["kind"], "revoke");
    env.still_serves(&app).await;
}

async fn old_dependencies_do_not_reopen_a_case_that_left_the_scope(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut worker = env.phone("w1", Role::GridWorker, "330604101");
    let mut hotline = env.phone("h1", Role::HotlineCentre, "330604");
    worker.new_case("case-1", "330604101201", T0);
    sync_ok(&app, &worker, &worker.request(&["case-1"])).await;
    // The hotline moves the case to the next township.
    hotline
        .docs
        .insert("case-1".into(), worker.docs["case-1"].clone());
    hotline.edit("case-1", |doc, author| {
        let location = Location {
            address: "曹娥村1组".into(),
            area_code: "330604102201".into(),
            gps: None,
        };
        doc.edit(
            &gridcase_core::doc::FieldEdit::Location(location),
            author,
            T0 + 1,
        )
        .unwrap();
    });
    let response = sync_ok(&app, &hotline, &hotline.request(&["case-1"])).await;
    assert_eq!(reject_code(&response.results[0]), None);
    // The worker syncs without pushing and is told to evict the case.
    let response = sync_ok(&app, &worker, &SyncRequest::default()).await;
    assert_eq!(response.evict, ["case-1"]);
    // A note built on the worker's old copy: its dependencies show the case in the worker's
    // scope, but the device no longer holds the case, so that view no longer counts.
    worker.edit("case-1", |doc, author| {
        doc.add_note("还想改", author, T0 + 2).unwrap();
    });
    let before = env.counts();
    let response = sync_ok(&app, &worker, &worker.request(&["case-1"])).await;
    assert_eq!(
        reject_code(&response.results[0]),
        Some(RejectCode::OutOfJurisdiction)
    );
    let after = env.counts();
    assert_eq!(
        (after.changes, after.audit_change),
        (before.changes, before.audit_change)
    );
    env.still_serves(&app).await;
}

/// The replay hole: changes the server already has, sent again, are acknowledged again, but
/// they make the device hold the case again only if the case is in its scope. Otherwise a grid
/// worker whose case moved away could put an old change in front of a new note and have the
/// note judged against its old view of the case.
async fn replayed_old_changes_do_not_reopen_a_case_that_left_the_scope(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut worker = env.phone("w1", Role::GridWorker, "330604101");
    let mut hotline = env.phone("h1", Role::HotlineCentre, "330604");
    worker.new_case("case-1", "330604101201", T0);
    sync_ok(&app, &worker, &worker.request(&["case-1"])).await;
    let old = worker.changes("case-1");
    hotline
        .docs
        .insert("case-1".into(), worker.docs["case-1"].clone());
    hotline.edit("case-1", |doc, author| {
        let location = Location {
            address: "曹娥村1组".into(),
            area_code: "330604102201".into(),
            gps: None,
        };
        doc.edit(
            &gridcase_core::doc::FieldEdit::Location(location),
            author,
            T0 + 1,
        )
        .unwrap();
    });
    sync_ok(&app, &hotline, &hotline.request(&["case-1"])).await;
    let response = sync_ok(&app, &worker, &SyncRequest::default()).await;
    assert_eq!(response.evict, ["case-1"]);
    worker.edit("case-1", |doc, author| {
        doc.add_note("还想改", author, T0 + 2).unwrap();
    });
    let replay = DocPush {
        doc_id: "case-1".into(),
        changes: old.clone(),
    };
    let before = env.counts();

    // In one request: the old changes first, then the note.
    let request = SyncRequest {
        device_time: T0,
        pushes: vec![replay.clone(), worker.request(&["case-1"]).pushes.remove(0)],
        ..Default::default()
    };
    let response = sync_ok(&app, &worker, &request).await;
    assert_eq!(
        reject_code(&response.results[0]),
        None,
        "acknowledged again"
    );
    assert_eq!(
        reject_code(&response.results[1]),
        Some(RejectCode::OutOfJurisdiction)
    );
    // In two requests: the replay alone, then the note.
    let request = SyncRequest {
        device_time: T0,
        pushes: vec![replay],
        ..Default::default()
    };
    let response = sync_ok(&app, &worker, &request).await;
    assert_eq!(reject_code(&response.results[0]), None);
    assert!(response.evict.is_empty());
    let response = sync_ok(&app, &worker, &worker.request(&["case-1"])).await;
    assert_eq!(
        reject_code(&response.results[0]),
        Some(RejectCode::OutOfJurisdiction)
    );
    // The replay recorded no holding: nothing to evict, nothing stored.
    assert!(response.evict.is_empty(), "{:?}", response.evict);
    let after = env.counts();
    assert_eq!(
        (after.changes, after.audit_change),
        (before.changes, before.audit_change)
    );
    env.still_serves(&app).await;
}

/// Text the server keeps in columns (a title, an area, an event id) with a NUL in it: refused
/// `malformed` on both backends (PostgreSQL text cannot hold NUL), nothing stored.
async fn nul_in_stored_text_is_malformed(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut phone = env.phone("w1", Role::GridWorker, "330604101");
    phone.new_case("case-1", "330604101201", T0);
    phone.edit("case-1", |doc, author| {
        doc.edit(
            &gridcase_core::doc::FieldEdit::Title("夜间\0施工".into()),
            author,
            T0,
        )
        .unwrap();
    });
    let before = env.counts();
    let response = sync_ok(&app, &phone, &phone.request(&["case-1"])).await;
    assert_eq!(
        reject_code(&response.results[0]),
        Some(RejectCode::Malformed)
    );
    let after = env.counts();
    assert_eq!(
        (after.changes, after.docs, after.cases),
        (before.changes, before.docs, before.cases)
    );
    assert_eq!(after.audit_reject, before.audit_reject + 1);
    env.still_serves(&app).await;
}

/// `len` CJK characters from a seeded generator: text that does not compress away.
fn varied_text(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from_u32(0x4e00 + ((x >> 33) % 3000) as u32).unwrap_or('一')
        })
        .collect()
}

/// A restore of a case larger than the page, in parts (protocol 3), with forged `staged`
/// claims: an offset past the end or far beyond it, a megabyte hash, a huge document id, the
/// hash of another snapshot. Each starts the part at byte 0 (nothing is allocated after the
/// claim, nothing stored); an honest claim resumes exactly after it, and the device holds the
/// case only once its last part went out. A phone that does not ask for parts gets it whole.
async fn forged_part_claims_restart_the_part_and_store_nothing(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut phone = env.phone("w1", Role::GridWorker, "330604101");
    phone.new_case("big", "330604101201", T0);
    phone.edit("big", |doc, author| {
        for n in 0..12 {
            doc.add_note(&varied_text(n, 1_000), author, T0 + 1)
                .unwrap();
        }
    });
    sync_ok(&app, &phone, &phone.request(&["big"])).await;
    let restorer = env.phone("t1", Role::TownshipStaff, "330604101");
    let ask = |staged: Option<StagedSnapshot>| SyncRequest {
        device_time: T0,
        page_bytes: 4_096,
        accept_parts: true,
        staged,
        ..Default::default()
    };
    let first = sync_ok(&app, &restorer, &ask(None)).await;
    let part = first
        .part
        .expect("a case larger than the page comes in parts");
    assert!(first.docs.is_empty());
    assert_eq!((part.offset, part.bytes.len()), (0, 4_096));
    assert!(part.total > 20_000, "{} bytes", part.total);
    assert_eq!(
        first.restore.as_ref().unwrap().after,
        "",
        "not past the case yet"
    );
    let before = env.counts();
    let honest = StagedSnapshot {
        doc_id: "big".into(),
        hash: part.hash.clone(),
        have: 4_096,
    };
    for forged in [
        StagedSnapshot {
            have: part.total,
            ..honest.clone()
        },
        StagedSnapshot {
            have: u64::MAX,
            ..honest.clone()
        },
        StagedSnapshot {
            hash: vec![0xab; 1024 * 1024],
            ..honest.clone()
        },
        StagedSnapshot {
            doc_id: "x".repeat(100_000),
            ..honest.clone()
        },
        StagedSnapshot {
            hash: vec![1; 32],
            ..honest.clone()
        },
    ] {
        let mut request = ask(Some(forged));
        request.restore = first.restore.clone();
        let answer = sync_ok(&app, &restorer, &request).await;
        let again = answer.part.expect("the part again");
        assert_eq!((again.offset, again.bytes.len()), (0, 4_096));
        assert_eq!(again.hash, part.hash);
    }
    assert_eq!(env.counts(), before, "forged claims store nothing");
    // The honest claim resumes after it, to the last part; then the case is held.
    let mut staged = honest;
    let mut received = part.bytes.clone();
    let mut restore = first.restore.clone();
    loop {
        let mut request = ask(Some(staged.clone()));
        request.restore = restore.clone();
        let answer = sync_ok(&app, &restorer, &request).await;
        let next = answer.part.expect("the next part");
        assert_eq!(next.offset, staged.have);
        received.extend_from_slice(&next.bytes);
        staged.have += next.bytes.len() as u64;
        restore = answer.restore;
        if next.is_last() {
            break;
        }
        assert_eq!(restore.as_ref().unwrap().after, "");
    }
    assert_eq!(received.len() as u64, part.total);
    assert!(automerge::AutoCommit::load(&received).is_ok());
    // A phone that does not ask for parts (protocol 2) gets the case whole, as before.
    let old = env.phone("t2", Role::TownshipStaff, "330604101");
    let whole = sync_ok(
        &app,
        &old,
        &SyncRequest {
            device_time: T0,
            page_bytes: 4_096,
            ..Default::default()
        },
    )
    .await;
    assert!(whole.part.is_none());
    assert_eq!(whole.docs.len(), 1);
    env.still_serves(&app).await;
}

/// Receives the parts of a snapshot through the change feed after `cursor` until the last,
/// checking that the cursor stays before the document until then; returns the last answer,
/// the snapshot's bytes and the request the last part answered.
async fn feed_in_parts(
    app: &Router,
    phone: &Phone,
    cursor: u64,
) -> (SyncResponse, Vec<u8>, SyncRequest) {
    let mut staged: Option<StagedSnapshot> = None;
    let mut received = Vec::new();
    loop {
        let request = SyncRequest {
            device_time: T0,
            cursor,
            page_bytes: 4_096,
            accept_parts: true,
            staged: staged.clone(),
            ..Default::default()
        };
        let answer = sync_ok(app, phone, &request).await;
        let part = answer.part.clone().expect("the next part");
        assert_eq!(part.offset, received.len() as u64);
        assert!(part.bytes.len() <= 4_096);
        received.extend_from_slice(&part.bytes);
        if part.is_last() {
            return (answer, received, request);
        }
        assert_eq!(answer.cursor, cursor, "the cursor waits for the last part");
        assert!(answer.remaining > 0);
        staged = Some(StagedSnapshot {
            doc_id: part.doc_id,
            hash: part.hash,
            have: received.len() as u64,
        });
    }
}

/// The change feed sends a case new to the device, larger than the page, in parts (the
/// cursor moves past it only with the last part); and a single change larger than the page
/// to a case the device holds brings the case's snapshot in parts, since no page of that
/// budget carries the change. A phone that does not take parts gets both whole, as before.
async fn the_feed_sends_what_exceeds_the_page_in_parts(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut worker = env.phone("w1", Role::GridWorker, "330604101");
    worker.new_case("c0", "330604101201", T0);
    sync_ok(&app, &worker, &worker.request(&["c0"])).await;
    let township = env.phone("t1", Role::TownshipStaff, "330604101");
    let restore = SyncRequest {
        device_time: T0,
        page_bytes: 4_096,
        accept_parts: true,
        ..Default::default()
    };
    let restored = sync_ok(&app, &township, &restore).await;
    assert_eq!(restored.docs.len(), 1);
    let cursor = restored.cursor;
    let old = env.phone("t2", Role::TownshipStaff, "330604101");
    let plain = SyncRequest {
        accept_parts: false,
        ..restore.clone()
    };
    assert_eq!(sync_ok(&app, &old, &plain).await.cursor, cursor);

    worker.new_case("big", "330604101201", T0);
    worker.edit("big", |doc, author| {
        for n in 0..12 {
            doc.add_note(&varied_text(n, 1_000), author, T0 + 1)
                .unwrap();
        }
    });
    sync_ok(&app, &worker, &worker.request(&["big"])).await;
    let (last, snapshot, asked) = feed_in_parts(&app, &township, cursor).await;
    // The response with the last part was cut: asked again, it comes again (the server noted
    // the case as held when it sent it, but the phone still says it holds only parts).
    let repeated = sync_ok(&app, &township, &asked).await;
    assert_eq!(repeated.part, last.part);
    assert_eq!(repeated.cursor, last.cursor);
    assert!(snapshot.len() > 20_000, "{} bytes", snapshot.len());
    assert!(AutoCommit::load(&snapshot).is_ok());
    assert!(last.cursor > cursor, "past the case with its last part");
    assert_eq!(last.times.len(), 1, "the case's trusted times come with it");
    let idle = SyncRequest {
        cursor: last.cursor,
        ..restore.clone()
    };
    let nothing = sync_ok(&app, &township, &idle).await;
    assert!(nothing.docs.is_empty() && nothing.part.is_none());

    // One change of ~9 KB to the case the device now holds.
    worker.edit("big", |doc, author| {
        doc.add_note(&varied_text(99, 3_000), author, T0 + 2)
            .unwrap();
    });
    sync_ok(&app, &worker, &worker.request(&["big"])).await;
    let (again, snapshot, _) = feed_in_parts(&app, &township, last.cursor).await;
    let mut doc = AutoCommit::load(&snapshot).unwrap();
    assert!(snapshot.len() > 29_000, "{} bytes", snapshot.len());
    assert!(!doc.get_heads().is_empty());
    assert!(again.cursor > last.cursor);

    // A phone that does not take parts gets the case whole in its feed.
    let whole = sync_ok(&app, &old, &SyncRequest { cursor, ..plain }).await;
    assert!(whole.part.is_none());
    assert_eq!(whole.docs.len(), 1);
    assert!(matches!(whole.docs[0].payload, Payload::Snapshot(_)));
    env.still_serves(&app).await;
}

gridcase_server::backend_tests!(async:
    forged_part_claims_restart_the_part_and_store_nothing,
    the_feed_sends_what_exceeds_the_page_in_parts,
    nul_in_stored_text_is_malformed,
    replayed_old_changes_do_not_reopen_a_case_that_left_the_scope,
    undecodable_sync_bodies_are_refused_and_store_nothing,
    oversized_bodies_get_413_json_and_store_nothing,
    non_automerge_changes_are_rejected_per_document_while_the_rest_is_accepted,
    changes_under_another_devices_actor_are_foreign,
    a_replayed_request_stores_nothing_twice_and_gets_the_same_answer,
    a_case_outside_the_jurisdiction_is_refused,
    personal_data_from_a_handling_unit_is_refused,
    bad_document_ids_are_malformed,
    too_many_changes_or_pushes_are_refused,
    bad_tokens_are_401_and_revoked_ones_say_wipe,
    bad_admin_requests_get_json_errors,
    bad_account_and_audit_draw_requests_get_json_errors,
    reveal_needs_a_reason_and_is_audited,
    the_audit_log_records_changes_rejections_revocations_and_enrolments,
    old_dependencies_do_not_reopen_a_case_that_left_the_scope,
);
