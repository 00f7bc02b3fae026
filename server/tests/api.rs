//! Router tests through `tower::ServiceExt::oneshot`: no sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use automerge::{AutoCommit, Change};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use gridcase_core::area::Jurisdiction;
use gridcase_core::doc::{CaseDoc, FieldEdit, PersonalDoc, personal_doc_id};
use gridcase_core::identity::actor_for;
use gridcase_core::lifecycle::Action;
use gridcase_core::model::{
    Author, CaseType, Channel, Complainant, Location, Millis, NewCase, Role, Urgency,
};
use gridcase_core::sync::wire::{PROTOCOL_VERSION, decode_response, encode_request};
use gridcase_core::sync::{
    CatchUp, DocPush, Payload, PushResult, RejectCode, SyncRequest, SyncResponse,
};
use gridcase_server::testing::{Backend, TestDb};
use gridcase_server::{AppState, Store, app, run_deadline_check};
use tower::ServiceExt;

/// 2025-03-03 09:00 China time, a Monday.
const T0: Millis = 1_740_963_600_000;
const HOUR: Millis = 3_600_000;
const DAY: Millis = 24 * HOUR;

struct Env {
    store: Arc<Store>,
    clock: Arc<AtomicI64>,
    admin: String,
    db: TestDb,
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
            db,
        }
    }

    fn state(&self) -> AppState {
        let clock = self.clock.clone();
        AppState::new(self.store.clone()).with_clock(Arc::new(move || clock.load(Ordering::SeqCst)))
    }

    fn app(&self) -> Router {
        app(self.state())
    }

    fn set_time(&self, at: Millis) {
        self.clock.store(at, Ordering::SeqCst);
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
            cursor: 0,
            docs: Default::default(),
        }
    }
}

/// A minimal phone: its documents and cursor.
struct Phone {
    token: String,
    device: String,
    author: Author,
    cursor: u64,
    docs: std::collections::BTreeMap<String, AutoCommit>,
}

impl Phone {
    fn actor(&self) -> automerge::ActorId {
        actor_for(&self.device, [7, 7, 7, 7]).unwrap()
    }

    fn new_case(&mut self, id: &str, area: &str, at: Millis) {
        let new = NewCase {
            id: id.into(),
            number: format!("N-{id}"),
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
        let doc = PersonalDoc::create(&c, &self.author, self.actor(), at).unwrap();
        let mut doc = doc;
        self.docs
            .insert(personal_doc_id(case_id), doc.automerge().clone());
    }

    fn case(&self, id: &str) -> CaseDoc {
        CaseDoc::from_automerge(self.docs[id].clone()).unwrap()
    }

    fn edit(&mut self, id: &str, f: impl FnOnce(&mut CaseDoc, &Author)) {
        let raw = self.docs.remove(id).unwrap().with_actor(self.actor());
        let mut doc = CaseDoc::from_automerge(raw).unwrap();
        f(&mut doc, &self.author);
        self.docs.insert(id.into(), doc.into_automerge());
    }

    /// Pushes every change of the given documents (the server deduplicates).
    fn request(&mut self, ids: &[&str], device_time: Millis) -> SyncRequest {
        let pushes = ids
            .iter()
            .map(|id| DocPush {
                doc_id: id.to_string(),
                changes: self
                    .docs
                    .get_mut(*id)
                    .unwrap()
                    .get_changes(&[])
                    .iter()
                    .map(|c| c.raw_bytes().to_vec())
                    .collect(),
            })
            .collect();
        SyncRequest {
            device_time,
            cursor: self.cursor,
            pushes,
            ..Default::default()
        }
    }

    fn apply(&mut self, response: &SyncResponse) {
        let actor = self.actor();
        for update in &response.docs {
            match &update.payload {
                Payload::Snapshot(bytes) => {
                    let mut loaded = AutoCommit::load(bytes).unwrap().with_actor(actor.clone());
                    match self.docs.get_mut(&update.doc_id) {
                        Some(doc) => {
                            doc.merge(&mut loaded).unwrap();
                        }
                        None => {
                            self.docs.insert(update.doc_id.clone(), loaded);
                        }
                    }
                }
                Payload::Changes(changes) => {
                    let doc = self
                        .docs
                        .entry(update.doc_id.clone())
                        .or_insert_with(|| AutoCommit::new().with_actor(actor.clone()));
                    doc.apply_changes(
                        changes
                            .iter()
                            .map(|c| Change::from_bytes(c.clone()).unwrap()),
                    )
                    .unwrap();
                }
            }
        }
        for id in &response.evict {
            self.docs.remove(id);
        }
        if response.restore.is_none() {
            self.cursor = response.cursor;
        }
    }
}

async fn send(app: &Router, token: Option<&str>, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let mut req =
        Request::post("/v1/sync").header(header::CONTENT_TYPE, "application/octet-stream");
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

async fn sync(app: &Router, phone: &mut Phone, request: &SyncRequest) -> SyncResponse {
    let (status, body) = send(app, Some(&phone.token), encode_request(request)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let response = decode_response(&body).unwrap();
    phone.apply(&response);
    response
}

/// `phone` (the hotline's) moves a case to `area_code` at `at` and pushes it; the server takes it.
async fn move_case(
    app: &Router,
    phone: &mut Phone,
    case_id: &str,
    (address, area_code): (&str, &str),
    at: Millis,
) {
    phone.edit(case_id, |doc, author| {
        let location = Location {
            address: address.into(),
            area_code: area_code.into(),
            gps: None,
        };
        doc.edit(&FieldEdit::Location(location), author, at)
            .unwrap();
    });
    let request = phone.request(&[case_id], at);
    assert!(accepted(&sync(app, phone, &request).await.results[0]));
}

async fn get_json(
    app: &Router,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::get(path);
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, value)
}

fn accepted(result: &PushResult) -> bool {
    matches!(result, PushResult::Accepted { .. })
}

fn rejected_code(result: &PushResult) -> Option<RejectCode> {
    match result {
        PushResult::Rejected { reason, .. } => Some(reason.code),
        _ => None,
    }
}

async fn health_answers(backend: Backend) {
    let env = Env::new(backend);
    let (status, body) = get_json(&env.app(), "/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

async fn missing_or_unknown_tokens_are_unauthorized(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let body = encode_request(&SyncRequest::default());
    for token in [
        None,
        Some("nonsense"),
        Some("0123456789abcdef0123456789abcdef.notthesecretatall"),
    ] {
        let (status, bytes) = send(&app, token, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["error"], "unauthorized");
    }
    // The admin token is not a device token.
    let (status, _) = send(&app, Some(&env.admin), body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn revoked_devices_are_told_to_wipe(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let phone = env.phone("w1", Role::GridWorker, "330604101");
    env.store.revoke_device(&phone.device).unwrap();
    let (status, bytes) = send(
        &app,
        Some(&phone.token),
        encode_request(&SyncRequest::default()),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["error"], "revoked");
    assert_eq!(json["wipe"], true);

    let other = env.phone("w2", Role::GridWorker, "330604101");
    env.store.revoke_user("w2").unwrap();
    let (status, bytes) = send(
        &app,
        Some(&other.token),
        encode_request(&SyncRequest::default()),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["error"], "revoked");
}

async fn undecodable_bodies_get_the_wire_error_code(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let phone = env.phone("w1", Role::GridWorker, "330604101");
    let mut wrong_version = encode_request(&SyncRequest::default());
    wrong_version[4..6].copy_from_slice(&9u16.to_be_bytes());
    for (body, code) in [
        (b"{\"json\": true}".to_vec(), "bad_magic"),
        (b"GC".to_vec(), "truncated"),
        (wrong_version, "unsupported_version"),
        (
            [&b"GCSY"[..], &PROTOCOL_VERSION.to_be_bytes(), b"garbage"].concat(),
            "bad_compression",
        ),
    ] {
        let (status, bytes) = send(&app, Some(&phone.token), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["error"], code);
        assert!(json["message"].is_string());
    }
}

/// A phone still on protocol 1 is served, in protocol 1; a protocol-2 phone gets the trusted
/// times of the case it pushed.
async fn protocol_1_phones_are_answered_in_protocol_1(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut phone = env.phone("w1", Role::GridWorker, "330604101");
    phone.new_case("case-1", "330604101201", T0 - DAY);
    let mut old = encode_request(&phone.request(&["case-1"], T0 - DAY));
    old[4..6].copy_from_slice(&1u16.to_be_bytes());
    let (status, body) = send(&app, Some(&phone.token), old).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[4..6], &[0, 1]);
    let response = decode_response(&body).unwrap();
    assert!(accepted(&response.results[0]));
    // The same request in protocol 2 (acknowledged again) carries the case's trusted times:
    // the phone's clock was a day behind, so corrected to the server's time.
    let request = phone.request(&["case-1"], T0 - DAY);
    let response = sync(&app, &mut phone, &request).await;
    assert_eq!(response.times.len(), 1);
    assert_eq!(response.times[0].case_id, "case-1");
    assert!(!response.times[0].times.is_empty());
    assert!(response.times[0].times.iter().all(|t| t.at == T0));
}

async fn oversized_bodies_are_refused(backend: Backend) {
    let env = Env::new(backend);
    let mut state = env.state();
    state.max_body_bytes = 4096;
    let app = app(state);
    let phone = env.phone("w1", Role::GridWorker, "330604101");
    let (status, _) = send(&app, Some(&phone.token), vec![0u8; 10_000]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // With a Content-Length header the limit layer refuses before reading.
    let req = Request::post("/v1/sync")
        .header(header::AUTHORIZATION, format!("Bearer {}", phone.token))
        .header(header::CONTENT_LENGTH, "10000")
        .body(Body::from(vec![0u8; 10_000]))
        .unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

async fn admin_routes_need_the_admin_token(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let phone = env.phone("w1", Role::GridWorker, "330604101");
    for path in ["/admin/overdue", "/admin/due-soon", "/admin/cases/x"] {
        let (status, body) = get_json(&app, path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body["error"], "unauthorized");
        let (status, _) = get_json(&app, path, Some(&phone.token)).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path} with a device token"
        );
    }
    let (status, body) = get_json(&app, "/admin/overdue", Some(&env.admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], 0);
    let (status, body) = get_json(&app, "/admin/cases/nope", Some(&env.admin)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
    let (status, body) = get_json(&app, "/admin/overdue?at=yesterday", Some(&env.admin)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "bad_time");
}

async fn a_case_reaches_the_township_but_not_the_neighbours(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut worker = env.phone("w1", Role::GridWorker, "330604101");
    let mut staff = env.phone("s1", Role::TownshipStaff, "330604101");
    let mut neighbour = env.phone("w2", Role::GridWorker, "330604102");
    let mut unit = env.phone("u1", Role::HandlingUnit, "330604");

    worker.new_case("case-1", "330604101201", T0);
    worker.new_personal("case-1", T0);
    let request = worker.request(&["case-1#pii", "case-1"], T0);
    let response = sync(&app, &mut worker, &request).await;
    assert_eq!(response.results.len(), 2);
    // Results come in the order pushed.
    assert!(
        matches!(&response.results[0], PushResult::Accepted { doc_id, .. } if doc_id == "case-1#pii")
    );
    assert!(accepted(&response.results[1]));
    assert_eq!(response.identity.user, "w1");
    assert_eq!(response.identity.role, "grid_worker");
    assert_eq!(response.identity.jurisdiction, "330604101");
    if let PushResult::Accepted { heads, .. } = &response.results[1] {
        let mine: Vec<Vec<u8>> = worker
            .docs
            .get_mut("case-1")
            .unwrap()
            .get_heads()
            .iter()
            .map(|h| h.0.to_vec())
            .collect();
        assert_eq!(heads, &mine);
    }
    assert!(worker.cursor > 0);

    // The township's staff restore it, personal data included.
    let response = sync(&app, &mut staff, &SyncRequest::default()).await;
    let ids: Vec<&str> = response.docs.iter().map(|d| d.doc_id.as_str()).collect();
    assert_eq!(ids, ["case-1", "case-1#pii"]);
    assert!(response.restore.is_none());
    assert_eq!(
        staff.case("case-1").read().unwrap().title,
        "夜间施工噪音扰民"
    );

    // The next township sees nothing; the county's handling unit sees the case, not the person.
    let response = sync(&app, &mut neighbour, &SyncRequest::default()).await;
    assert!(response.docs.is_empty());
    let response = sync(&app, &mut unit, &SyncRequest::default()).await;
    let ids: Vec<&str> = response.docs.iter().map(|d| d.doc_id.as_str()).collect();
    assert_eq!(ids, ["case-1"]);

    // An edit travels incrementally, as changes, to the staff; not back to its author.
    worker.edit("case-1", |doc, author| {
        doc.add_note("已联系施工方", author, T0 + HOUR).unwrap();
    });
    let request = worker.request(&["case-1"], T0 + HOUR);
    let response = sync(&app, &mut worker, &request).await;
    assert!(accepted(&response.results[0]));
    assert!(response.docs.is_empty(), "the author gets nothing back");
    let request = SyncRequest {
        cursor: staff.cursor,
        ..Default::default()
    };
    let response = sync(&app, &mut staff, &request).await;
    assert_eq!(response.docs.len(), 1);
    assert!(matches!(response.docs[0].payload, Payload::Changes(_)));
    assert_eq!(staff.case("case-1").read().unwrap().notes.len(), 1);
    let request = SyncRequest {
        cursor: neighbour.cursor,
        ..Default::default()
    };
    assert!(sync(&app, &mut neighbour, &request).await.docs.is_empty());
    let request = SyncRequest {
        cursor: unit.cursor,
        ..Default::default()
    };
    let response = sync(&app, &mut unit, &request).await;
    assert_eq!(response.docs.len(), 1);
    assert_eq!(response.docs[0].doc_id, "case-1");

    // The admin sees the case with the phone masked.
    let (status, body) = get_json(&app, "/admin/cases/case-1", Some(&env.admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["complainant"]["phone"], "138****1234");
    assert_eq!(body["case"]["title"], "夜间施工噪音扰民");
    assert_eq!(body["summary"]["status"], "registered");
}

async fn repeating_a_request_is_harmless(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut worker = env.phone("w1", Role::GridWorker, "330604101");
    worker.new_case("case-1", "330604101201", T0);
    let request = worker.request(&["case-1"], T0);
    let first = sync(&app, &mut worker, &request).await;
    let rows = env.store.change_count().unwrap();
    // The response was lost; the phone sends the same request again.
    let second = sync(&app, &mut worker, &request).await;
    assert_eq!(first.results, second.results);
    assert_eq!(env.store.change_count().unwrap(), rows);
    assert_eq!(env.store.case_count().unwrap(), 1);
}

async fn pushes_that_break_the_rules_are_rejected(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut worker = env.phone("w1", Role::GridWorker, "330604101");
    let mut unit = env.phone("u1", Role::HandlingUnit, "330604");
    let mut other = env.phone("w3", Role::GridWorker, "330604101");

    // Outside the worker's township.
    worker.new_case("far", "330604102201", T0);
    let request = worker.request(&["far"], T0);
    let response = sync(&app, &mut worker, &request).await;
    assert_eq!(
        rejected_code(&response.results[0]),
        Some(RejectCode::OutOfJurisdiction)
    );

    // Changes made under another device's actor.
    worker.new_case("mine", "330604101201", T0);
    let mut request = worker.request(&["mine"], T0);
    request.pushes[0].doc_id = "mine".into();
    let response = sync(&app, &mut other, &request).await;
    assert_eq!(
        rejected_code(&response.results[0]),
        Some(RejectCode::ForeignActor)
    );

    // Garbage bytes.
    let request = SyncRequest {
        pushes: vec![DocPush {
            doc_id: "x".into(),
            changes: vec![vec![0, 1, 2]],
        }],
        ..Default::default()
    };
    let response = sync(&app, &mut worker, &request).await;
    assert_eq!(
        rejected_code(&response.results[0]),
        Some(RejectCode::Malformed)
    );

    // Personal data from a handling unit.
    unit.docs.insert("mine#pii".into(), {
        let mut d = AutoCommit::new().with_actor(unit.actor());
        use automerge::transaction::Transactable;
        d.put(automerge::ROOT, "phone", "13900000000").unwrap();
        d.commit();
        d
    });
    let request = unit.request(&["mine#pii"], T0);
    let response = sync(&app, &mut unit, &request).await;
    assert_eq!(
        rejected_code(&response.results[0]),
        Some(RejectCode::PersonalData)
    );

    // A change whose dependency the server never got.
    worker.edit("mine", |doc, author| {
        doc.add_note("second", author, T0 + 1).unwrap();
    });
    let last = worker
        .docs
        .get_mut("mine")
        .unwrap()
        .get_last_local_change()
        .unwrap();
    let request = SyncRequest {
        pushes: vec![DocPush {
            doc_id: "mine".into(),
            changes: vec![last.raw_bytes().to_vec()],
        }],
        ..Default::default()
    };
    let response = sync(&app, &mut worker, &request).await;
    assert_eq!(
        rejected_code(&response.results[0]),
        Some(RejectCode::MissingHistory),
        "the phone is told to resend the whole history"
    );
    assert_eq!(env.store.case_count().unwrap(), 0);

    // The fuller rules of gridcase_core::validate apply too: a worker's phone claiming to be
    // township staff, and a field the role may not edit.
    let real = worker.author.clone();
    worker.author.role = Role::TownshipStaff;
    worker.new_case("forged", "330604101201", T0);
    worker.author = real;
    let request = worker.request(&["forged"], T0);
    let response = sync(&app, &mut worker, &request).await;
    assert_eq!(
        rejected_code(&response.results[0]),
        Some(RejectCode::ForeignActor)
    );
    worker.new_case("ok", "330604101201", T0);
    let request = worker.request(&["ok"], T0);
    assert!(accepted(
        &sync(&app, &mut worker, &request).await.results[0]
    ));
    let mut staff_author = worker.author.clone();
    staff_author.role = Role::TownshipStaff;
    worker.edit("ok", |doc, _| {
        doc.edit(
            &FieldEdit::Assignee("someone".into()),
            &staff_author,
            T0 + 1,
        )
        .unwrap();
    });
    // A role claimed in the change's signature that is not the device's own is a forged
    // author before it is a forbidden field (field rights per role: core's judge tests).
    let request = worker.request(&["ok"], T0 + 1);
    let response = sync(&app, &mut worker, &request).await;
    assert_eq!(
        rejected_code(&response.results[0]),
        Some(RejectCode::ForeignActor)
    );
}

async fn restore_pages_resume_where_they_stopped(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut worker = env.phone("w1", Role::GridWorker, "330604101");
    let ids: Vec<String> = (0..25).map(|i| format!("case-{i:02}")).collect();
    for id in &ids {
        worker.new_case(id, "330604101201", T0);
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let request = worker.request(&refs, T0);
    let response = sync(&app, &mut worker, &request).await;
    assert!(response.results.iter().all(accepted));
    let upto = env.store.change_count().unwrap();

    let mut staff = env.phone("s1", Role::TownshipStaff, "330604101");
    let mut request = SyncRequest {
        page_size: 10,
        ..Default::default()
    };
    let mut pages = Vec::new();
    let mut first_token = None;
    loop {
        let response = sync(&app, &mut staff, &request).await;
        pages.push((response.docs.len(), response.remaining));
        match response.restore {
            Some(token) => {
                assert_eq!(token.upto, upto);
                assert_eq!(
                    response.cursor, 0,
                    "the cursor moves only when the restore ends"
                );
                first_token.get_or_insert(token.clone());
                request = SyncRequest {
                    page_size: 10,
                    restore: Some(token),
                    ..Default::default()
                };
            }
            None => {
                assert_eq!(response.cursor, upto);
                break;
            }
        }
        assert!(pages.len() < 10);
    }
    assert_eq!(pages, [(10, 15), (10, 5), (5, 0)]);
    assert_eq!(staff.docs.keys().cloned().collect::<Vec<_>>(), ids);
    // A phone that echoes the count it was given has the page counted off it (protocol 6):
    // the same figures as counting, and a count that went wrong never ends the restore early.
    for (told, left) in [(15, 5), (11, 1), (3, 1)] {
        let echoed = SyncRequest {
            page_size: 10,
            restore: first_token.clone(),
            restore_remaining: told,
            ..Default::default()
        };
        let mut fresh = env.phone("s1", Role::TownshipStaff, "330604101");
        let response = sync(&app, &mut fresh, &echoed).await;
        assert_eq!(response.docs.len(), 10);
        assert_eq!(response.remaining, left, "told {told}");
        assert!(response.restore.is_some());
    }
    // Nothing new afterwards.
    let request = SyncRequest {
        cursor: staff.cursor,
        ..Default::default()
    };
    let response = sync(&app, &mut staff, &request).await;
    assert!(response.docs.is_empty());
    assert_eq!(response.cursor, upto);
}

/// A restore page looks for evictions only among cases committed since the restore started
/// (`eviction_horizon`): a case sent on the first page that leaves the scope before the last
/// page must still be evicted.
async fn a_case_that_leaves_the_scope_during_a_restore_is_evicted(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut worker = env.phone("w1", Role::GridWorker, "330604101");
    let mut hotline = env.phone("h1", Role::HotlineCentre, "330604");
    let ids = ["case-1", "case-2", "case-3"];
    for id in ids {
        worker.new_case(id, "330604101201", T0);
    }
    let request = worker.request(&ids, T0);
    sync(&app, &mut worker, &request).await;
    sync(&app, &mut hotline, &SyncRequest::default()).await;

    let mut staff = env.phone("s1", Role::TownshipStaff, "330604101");
    let first = SyncRequest {
        page_size: 1,
        ..Default::default()
    };
    let response = sync(&app, &mut staff, &first).await;
    assert_eq!(staff.docs.keys().collect::<Vec<_>>(), ["case-1"]);
    let mut token = response.restore.expect("more pages to come");
    // The hotline moves case-1, which the staff now hold, to the next township.
    let next_township = ("曹娥村1组", "330604102201");
    move_case(&app, &mut hotline, "case-1", next_township, T0 + HOUR).await;

    let mut evicted = Vec::new();
    for _ in 0..5 {
        let request = SyncRequest {
            page_size: 1,
            restore: Some(token),
            ..Default::default()
        };
        let response = sync(&app, &mut staff, &request).await;
        evicted.extend(response.evict);
        match response.restore {
            Some(next) => token = next,
            None => break,
        }
    }
    assert_eq!(evicted, ["case-1"]);
    assert_eq!(staff.docs.keys().collect::<Vec<_>>(), ["case-2", "case-3"]);
}

async fn incremental_pages_and_unheld_documents(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut worker = env.phone("w1", Role::GridWorker, "330604101");
    let mut staff = env.phone("s1", Role::TownshipStaff, "330604101");
    // The staff restore, then 15 cases arrive: the staff do not hold them yet, so they come as
    // snapshots, 10 per page.
    worker.new_case("first", "330604101201", T0);
    let request = worker.request(&["first"], T0);
    sync(&app, &mut worker, &request).await;
    sync(&app, &mut staff, &SyncRequest::default()).await;
    assert!(staff.cursor > 0);
    worker.docs.clear();
    for i in 0..15 {
        worker.new_case(&format!("c{i:02}"), "330604101201", T0);
    }
    let ids: Vec<String> = worker.docs.keys().cloned().collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let request = worker.request(&refs, T0);
    sync(&app, &mut worker, &request).await;
    let request = SyncRequest {
        cursor: staff.cursor,
        page_size: 10,
        ..Default::default()
    };
    let first = sync(&app, &mut staff, &request).await;
    assert_eq!(first.docs.len(), 10);
    assert!(
        first
            .docs
            .iter()
            .all(|d| matches!(d.payload, Payload::Snapshot(_)))
    );
    assert_eq!(first.remaining, 5);
    let request = SyncRequest {
        cursor: staff.cursor,
        page_size: 10,
        ..Default::default()
    };
    let second = sync(&app, &mut staff, &request).await;
    assert_eq!(second.docs.len(), 5);
    assert_eq!(second.remaining, 0);
    assert_eq!(staff.docs.len(), 16);
    assert_eq!(second.cursor, env.store.change_count().unwrap());
}

async fn cases_that_leave_the_scope_are_evicted(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut worker = env.phone("w1", Role::GridWorker, "330604101");
    let mut hotline = env.phone("h1", Role::HotlineCentre, "330604");
    worker.new_case("case-1", "330604101201", T0);
    let request = worker.request(&["case-1"], T0);
    sync(&app, &mut worker, &request).await;
    sync(&app, &mut hotline, &SyncRequest::default()).await;
    // The hotline moves the case to the next township.
    let next_township = ("曹娥村1组", "330604102201");
    move_case(&app, &mut hotline, "case-1", next_township, T0 + HOUR).await;
    let request = SyncRequest {
        cursor: worker.cursor,
        ..Default::default()
    };
    let response = sync(&app, &mut worker, &request).await;
    assert_eq!(response.evict, ["case-1"]);
    assert!(worker.docs.is_empty());

    // A case moved into a township arrives there with its personal data, whose own changes
    // are older than the township worker's cursor.
    let mut far = env.phone("w2", Role::GridWorker, "330604102");
    far.new_case("case-2", "330604102201", T0);
    far.new_personal("case-2", T0);
    let request = far.request(&["case-2", "case-2#pii"], T0);
    sync(&app, &mut far, &request).await;
    let request = SyncRequest {
        cursor: worker.cursor,
        ..Default::default()
    };
    assert!(sync(&app, &mut worker, &request).await.docs.is_empty());
    let request = SyncRequest {
        cursor: hotline.cursor,
        ..Default::default()
    };
    sync(&app, &mut hotline, &request).await;
    let back_home = ("龙山村2组", "330604101202");
    move_case(&app, &mut hotline, "case-2", back_home, T0 + 2 * HOUR).await;
    let request = SyncRequest {
        cursor: worker.cursor,
        ..Default::default()
    };
    let response = sync(&app, &mut worker, &request).await;
    let ids: Vec<&str> = response.docs.iter().map(|d| d.doc_id.as_str()).collect();
    assert_eq!(ids, ["case-2", "case-2#pii"]);
    assert_eq!(
        worker.case("case-2").read().unwrap().location.area_code,
        "330604101202"
    );
}

async fn catch_up_answers_a_sync_message(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut worker = env.phone("w1", Role::GridWorker, "330604101");
    let mut staff = env.phone("s1", Role::TownshipStaff, "330604101");
    worker.new_case("case-1", "330604101201", T0);
    let request = worker.request(&["case-1"], T0);
    sync(&app, &mut worker, &request).await;
    // The staff phone lost track of what it shares: it sends a sync message from a fresh state.
    use automerge::sync::{State, SyncDoc};
    let mut empty = AutoCommit::new();
    let message = empty
        .sync()
        .generate_sync_message(&mut State::new())
        .unwrap();
    let request = SyncRequest {
        cursor: 1,
        catch_up: vec![
            CatchUp {
                doc_id: "case-1".into(),
                message: message.clone().encode(),
            },
            CatchUp {
                doc_id: "unknown".into(),
                message: message.encode(),
            },
        ],
        ..Default::default()
    };
    let response = sync(&app, &mut staff, &request).await;
    assert_eq!(response.catch_up.len(), 1);
    assert_eq!(response.catch_up[0].doc_id, "case-1");
    assert!(automerge::sync::Message::decode(&response.catch_up[0].message).is_ok());
}

async fn deadlines_use_trusted_times_and_supervise_once(backend: Backend) {
    let env = Env::new(backend);
    let app = env.app();
    let mut worker = env.phone("w1", Role::GridWorker, "330604101");
    let mut staff = env.phone("s1", Role::TownshipStaff, "330604101");
    sync(&app, &mut staff, &SyncRequest::default()).await;
    // The worker's phone clock runs three days fast.
    let skew = 3 * DAY;
    worker.new_case("case-1", "330604101201", T0 + skew);
    let request = worker.request(&["case-1"], T0 + skew);
    let response = sync(&app, &mut worker, &request).await;
    assert!(accepted(&response.results[0]));
    let summary = env.store.case_summary("case-1").unwrap().unwrap();
    assert_eq!(summary.stage.as_deref(), Some("route"));
    assert_eq!(
        summary.stage_started_at,
        Some(T0),
        "corrected by the measured offset"
    );
    let due = summary.due_at.unwrap();
    assert!(due > T0);

    // Long past the deadline: one supervision, however often the check runs.
    let later = T0 + 30 * DAY;
    let first = run_deadline_check(&env.store, later).unwrap();
    assert_eq!(first.overdue.len(), 1);
    assert_eq!(first.supervised, ["case-1"]);
    let second = run_deadline_check(&env.store, later + HOUR).unwrap();
    assert_eq!(second.overdue.len(), 1);
    assert!(second.supervised.is_empty());
    assert_eq!(env.store.supervisions("case-1").unwrap().len(), 1);

    // A restarted server (same data) does not supervise again either.
    let reopened = env.db.open();
    assert!(
        run_deadline_check(&reopened, later + 2 * HOUR)
            .unwrap()
            .supervised
            .is_empty()
    );

    // The supervision is a change in the feed: the staff phone receives it.
    env.set_time(later);
    let request = SyncRequest {
        cursor: staff.cursor,
        ..Default::default()
    };
    sync(&app, &mut staff, &request).await;
    let case = staff.case("case-1").read().unwrap();
    assert_eq!(case.supervisions.len(), 1);
    assert_eq!(case.supervisions[0].reason, "超期");
    assert_eq!(case.supervisions[0].by.role, Role::System);
    // So does the worker, who created the case.
    let request = SyncRequest {
        cursor: worker.cursor,
        ..Default::default()
    };
    sync(&app, &mut worker, &request).await;
    assert_eq!(worker.case("case-1").read().unwrap().supervisions.len(), 1);

    // The admin lists show it.
    let (status, body) = get_json(&app, "/admin/overdue", Some(&env.admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], 1);
    assert_eq!(body["cases"][0]["case_id"], "case-1");
    let (_, body) = get_json(&app, "/admin/due-soon", Some(&env.admin)).await;
    assert_eq!(body["count"], 0);
    let (_, body) = get_json(
        &app,
        &format!("/admin/due-soon?at={}", due - 1),
        Some(&env.admin),
    )
    .await;
    assert_eq!(body["count"], 1);
}

gridcase_server::backend_tests!(async:
    health_answers,
    missing_or_unknown_tokens_are_unauthorized,
    revoked_devices_are_told_to_wipe,
    undecodable_bodies_get_the_wire_error_code,
    protocol_1_phones_are_answered_in_protocol_1,
    oversized_bodies_are_refused,
    admin_routes_need_the_admin_token,
    a_case_reaches_the_township_but_not_the_neighbours,
    repeating_a_request_is_harmless,
    pushes_that_break_the_rules_are_rejected,
    restore_pages_resume_where_they_stopped,
    a_case_that_leaves_the_scope_during_a_restore_is_evicted,
    incremental_pages_and_unheld_documents,
    cases_that_leave_the_scope_are_evicted,
    catch_up_answers_a_sync_message,
    deadlines_use_trusted_times_and_supervise_once,
);
