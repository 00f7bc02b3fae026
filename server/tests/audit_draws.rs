//! Issue 11.3, the monthly random audit, on both backends: a draw takes N of the month's closed
//! cases inside the jurisdiction (checked against a recomputation from the case documents), is
//! reproducible from its recorded inputs, is audited, cannot be redrawn without a reason, is
//! refused outside the jurisdiction, and records each drawn case's re-verification once.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, header};
use gridcase_core::doc::CaseDoc;
use gridcase_core::model::Millis;
use gridcase_server::admins::AdminRole;
use gridcase_server::audit::AuditQuery;
use gridcase_server::audit_draw::{candidates_hash, pick, seed};
use gridcase_server::rates::{CaseFacts, FactFilter};
use gridcase_server::report::Period;
use gridcase_server::testing::{Backend, TestDb, add_admin};
use gridcase_server::{AppState, Store, app, demo};
use serde_json::{Value, json};
use tower::ServiceExt;

/// 2026-11-28 10:00 China time: the demo data is made then.
const NOW: Millis = 1_795_831_200_000;
/// 2026-12-03 10:00: November is over, December is not.
const LATER: Millis = NOW + 5 * 86_400_000;

async fn call(app: &axum::Router, uri: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let method = if body.is_some() { "POST" } else { "GET" };
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json");
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let response = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The cases closed in `month` inside `area`, recomputed from the documents.
fn closed_in(store: &Store, month: &str, area: &str) -> Vec<String> {
    let period = Period::parse(month).unwrap();
    let all = FactFilter {
        from: Millis::MIN,
        to: Millis::MAX,
        ..FactFilter::default()
    };
    let mut ids: Vec<String> = store
        .db()
        .fact_case_ids(&all)
        .unwrap()
        .into_iter()
        .filter(|id| {
            let doc = store.load_doc(id).unwrap().unwrap();
            let case = CaseDoc::from_automerge(doc).unwrap().read().unwrap();
            let facts = CaseFacts::of(
                &case,
                &store.trusted_times(id).unwrap(),
                store.policy(),
                store.calendar(),
            );
            case.location.area_code.starts_with(area)
                && facts
                    .closed_at
                    .is_some_and(|t| t >= period.from && t < period.to)
        })
        .collect();
    ids.sort();
    ids
}

fn drawn_ids(draw: &Value) -> Vec<String> {
    draw["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["case_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_draw_is_reproducible_audited_and_not_redrawn_silently(backend: Backend) {
    let db = TestDb::new(backend);
    let store = Arc::new(db.open());
    demo::fill(&store, 400, 7, NOW).unwrap();
    let app = app(AppState::new(store.clone()).with_clock(Arc::new(|| LATER)));
    let sup = add_admin(&store, "sup-101", AdminRole::Supervisor, "330604101");
    let month = "2026-11";
    let expected = closed_in(&store, month, "330604101");
    assert!(
        expected.len() > 3,
        "the demo closes cases in November: {}",
        expected.len()
    );

    let request = json!({"month": month, "area": "330604101", "n": 3});
    let (status, draw) = call(&app, "/admin/audit-draws", &sup, Some(request.clone())).await;
    assert_eq!(status, 201, "{draw}");
    assert_eq!(draw["candidates"], expected.len());
    assert_eq!(draw["replays"], true);
    // Reproducible: the recorded inputs give the recorded cases, by an independent call.
    let hash = candidates_hash(&expected);
    assert_eq!(draw["candidates_hash"], hash.as_str());
    let nonce = draw["nonce"].as_str().unwrap();
    let s = seed(month, "330604101", 3, &hash, nonce);
    assert_eq!(draw["seed"], s.as_str());
    assert_eq!(drawn_ids(&draw), pick(&s, &expected, 3));
    assert!(drawn_ids(&draw).iter().all(|id| expected.contains(id)));
    let id = draw["id"].as_i64().unwrap();
    let stored = store.db().draw(id).unwrap().unwrap();
    assert_eq!(
        stored.candidates, expected,
        "the candidates are kept for a later replay"
    );
    // Audited, by the authenticated admin.
    let rows = store
        .audit_log(&AuditQuery {
            user_id: Some("sup-101".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rows[0].kind, "audit_draw");
    assert_eq!(rows[0].area.as_deref(), Some("330604101"));
    assert!(rows[0].detail.as_deref().unwrap().contains(&s));

    // No silent redraw; a redraw with a reason is recorded as such and the first stays.
    let (status, body) = call(&app, "/admin/audit-draws", &sup, Some(request.clone())).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("conflict")));
    let mut with_reason = request.clone();
    with_reason["reason"] = json!("第一次抽取的案件编号录入错误");
    let (status, redraw) = call(&app, "/admin/audit-draws", &sup, Some(with_reason)).await;
    assert_eq!(status, 201);
    assert_eq!(redraw["sequence"], 1);
    assert_ne!(redraw["nonce"], draw["nonce"]);
    assert_eq!(store.audit_count("audit_draw").unwrap(), 2);
    let (status, first) = call(&app, &format!("/admin/audit-draws/{id}"), &sup, None).await;
    assert_eq!((status, first["sequence"].as_i64()), (200, Some(0)));

    // Outside the jurisdiction, a month not over, bad sizes: refused, nothing recorded.
    let refused = [
        (json!({"month": month, "area": "330604102"}), 403),
        (json!({"month": month, "area": "330604"}), 403),
        (json!({"month": "2026-12", "area": "330604101"}), 400),
        (json!({"month": month, "area": "330604101", "n": 0}), 400),
    ];
    for (body, want) in refused {
        let (status, answer) = call(&app, "/admin/audit-draws", &sup, Some(body.clone())).await;
        assert_eq!(status, want, "{body} {answer}");
    }
    let other = store.db().closed_case_ids("330604102", 0, LATER).unwrap();
    assert!(!other.is_empty());
    let own = add_admin(&store, "sup-102", AdminRole::Supervisor, "330604102");
    let (status, _) = call(&app, &format!("/admin/audit-draws/{id}"), &own, None).await;
    assert_eq!(status, 403, "another township's draw is not shown");
    assert_eq!(store.audit_count("audit_draw").unwrap(), 2);
}

async fn re_verification_results_are_recorded_once_and_audited(backend: Backend) {
    let db = TestDb::new(backend);
    let store = Arc::new(db.open());
    demo::fill(&store, 400, 7, NOW).unwrap();
    let app = app(AppState::new(store.clone()).with_clock(Arc::new(|| LATER)));
    let sup = add_admin(&store, "sup", AdminRole::Supervisor, "330604");
    let auditor = add_admin(&store, "aud", AdminRole::Auditor, "330604");
    let far = add_admin(&store, "aud-far", AdminRole::Auditor, "330604102");
    let (status, draw) = call(
        &app,
        "/admin/audit-draws",
        &sup,
        Some(json!({"month": "2026-11", "area": "330604"})),
    )
    .await;
    assert_eq!(status, 201, "{draw}");
    let id = draw["id"].as_i64().unwrap();
    let cases = drawn_ids(&draw);
    assert_eq!(
        cases.len(),
        10.min(draw["candidates"].as_u64().unwrap() as usize)
    );
    let results = format!("/admin/audit-draws/{id}/results");
    let confirm = json!({"case": cases[0], "result": "confirmed", "note": "电话回访属实"});
    // The drawer does not verify; an auditor of another township may not either.
    assert_eq!(
        call(&app, &results, &sup, Some(confirm.clone())).await.0,
        403
    );
    assert_eq!(
        call(&app, &results, &far, Some(confirm.clone())).await.0,
        403
    );
    let (status, body) = call(&app, &results, &auditor, Some(confirm.clone())).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&app, &results, &auditor, Some(confirm)).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("conflict")));
    let failed = json!({"case": cases[1], "result": "failed", "note": "群众反映未解决"});
    assert_eq!(call(&app, &results, &auditor, Some(failed)).await.0, 200);
    for (body, want) in [
        (json!({"case": "not-drawn", "result": "confirmed"}), 404),
        (json!({"case": cases[2], "result": "maybe"}), 400),
        (json!({"case": cases[2]}), 400),
        (
            json!({"case": cases[2], "result": "failed", "note": 5}),
            400,
        ),
        (
            json!({"case": cases[2], "result": "failed", "note": "a\u{0}b"}),
            400,
        ),
    ] {
        assert_eq!(
            call(&app, &results, &auditor, Some(body.clone())).await.0,
            want,
            "{body}"
        );
    }
    let (_, shown) = call(&app, &format!("/admin/audit-draws/{id}"), &auditor, None).await;
    let shown = shown["cases"].as_array().unwrap();
    assert_eq!(shown[0]["result"], "confirmed");
    assert_eq!(shown[0]["verified_by"], "aud");
    assert_eq!(shown[0]["note"], "电话回访属实");
    assert_eq!(shown[1]["result"], "failed");
    assert!(shown[2]["result"].is_null());
    let rows = store
        .audit_log(&AuditQuery {
            case_id: Some(cases[0].clone()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rows[0].kind, "audit_verify");
    assert_eq!(rows[0].user_id.as_deref(), Some("aud"));
    assert_eq!(store.audit_count("audit_verify").unwrap(), 2);
}

/// Two admins drawing the same month and area at the same moment: one draw is recorded (201)
/// and the other is told it exists (409), never a server error; two redraws at once are both
/// recorded, one after the other.
async fn simultaneous_draws_give_one_draw_and_one_conflict(backend: Backend) {
    let db = TestDb::new(backend);
    let store = Arc::new(db.open());
    demo::fill(&store, 200, 7, NOW).unwrap();
    let app = app(AppState::new(store.clone()).with_clock(Arc::new(|| LATER)));
    let root = gridcase_server::testing::root_admin(&store);
    for area in ["330604101", "330604", "3306", "33"] {
        let request = json!({"month": "2026-11", "area": area, "n": 2});
        let (a, b) = tokio::join!(
            call(&app, "/admin/audit-draws", &root, Some(request.clone())),
            call(&app, "/admin/audit-draws", &root, Some(request.clone())),
        );
        let mut statuses = [a.0, b.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "{area}: {} / {}", a.1, b.1);
    }
    let redraw = json!({"month": "2026-11", "area": "330604101", "n": 2, "reason": "复核抽样"});
    let (a, b) = tokio::join!(
        call(&app, "/admin/audit-draws", &root, Some(redraw.clone())),
        call(&app, "/admin/audit-draws", &root, Some(redraw.clone())),
    );
    assert_eq!((a.0, b.0), (201, 201), "{} / {}", a.1, b.1);
    let mut sequences = [a.1["sequence"].as_i64(), b.1["sequence"].as_i64()];
    sequences.sort_unstable();
    assert_eq!(sequences, [Some(1), Some(2)]);
}

gridcase_server::backend_tests!(async:
    a_draw_is_reproducible_audited_and_not_redrawn_silently,
    re_verification_results_are_recorded_once_and_audited,
    simultaneous_draws_give_one_draw_and_one_conflict,
);
