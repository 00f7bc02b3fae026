//! Issue 11.5 end to end over the admin API, on both backends: each admin acts inside its role
//! and jurisdiction (lists, case view, reveal, revoke, enrol, reports, audit log), the audit log
//! names the authenticated admin, and a password sign-in opens a session with failed attempts
//! rate limited.

use axum::body::Body;
use axum::http::{Request, header};
use gridcase_core::model::Millis;
use gridcase_server::admins::AdminRole;
use gridcase_server::testing::{AdminApp, Backend, add_admin, admin_app};
use serde_json::{Value, json};
use tower::ServiceExt;

/// 2026-11-28 10:00 China time.
const NOW: Millis = 1_795_831_200_000;

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let response = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json)
}

fn ids(list: &Value) -> Vec<(String, String)> {
    list["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["case_id"].as_str().unwrap().to_owned(),
                c["area_code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A township admin sees and acts on its township only; the county admin on both.
async fn a_township_admin_stays_inside_its_township(backend: Backend) {
    let AdminApp {
        store,
        app,
        db: _db,
        ..
    } = admin_app(backend, 120, 5, NOW);
    let town = add_admin(&store, "town-a", AdminRole::Admin, "330604101");
    let county = add_admin(&store, "county", AdminRole::Admin, "330604");
    let (status, all) = call(&app, "GET", "/admin/overdue", Some(&county), None).await;
    assert_eq!(status, 200);
    let all = ids(&all);
    let (_, mine) = call(&app, "GET", "/admin/overdue", Some(&town), None).await;
    let mine = ids(&mine);
    assert!(
        !mine.is_empty() && mine.len() < all.len(),
        "{} {}",
        mine.len(),
        all.len()
    );
    assert!(mine.iter().all(|(_, area)| area.starts_with("330604101")));
    let expected: Vec<_> = all
        .iter()
        .filter(|(_, a)| a.starts_with("330604101"))
        .cloned()
        .collect();
    assert_eq!(
        mine, expected,
        "exactly the township's share of the county's list"
    );
    let (_, soon) = call(&app, "GET", "/admin/due-soon", Some(&town), None).await;
    assert!(ids(&soon).iter().all(|(_, a)| a.starts_with("330604101")));

    let outside = &all
        .iter()
        .find(|(_, a)| a.starts_with("330604102"))
        .unwrap()
        .0;
    let inside = &mine[0].0;
    let (status, _) = call(
        &app,
        "GET",
        &format!("/admin/cases/{inside}"),
        Some(&town),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &app,
        "GET",
        &format!("/admin/cases/{outside}"),
        Some(&town),
        None,
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    let reveal = json!({"reason": "回访"});
    let path = format!("/admin/cases/{outside}/reveal");
    let (status, _) = call(&app, "POST", &path, Some(&town), Some(reveal.clone())).await;
    assert_eq!(status, 403);
    assert_eq!(
        store.audit_count("reveal").unwrap(),
        0,
        "a refused reveal reveals nothing"
    );
    let path = format!("/admin/cases/{inside}/reveal");
    let (status, _) = call(&app, "POST", &path, Some(&town), Some(reveal)).await;
    assert_eq!(status, 200);

    // Users and devices: grid-102 works in the other township.
    let (status, _) = call(
        &app,
        "POST",
        "/admin/users/grid-102/revoke",
        Some(&town),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &app,
        "POST",
        "/admin/users/grid-101/revoke",
        Some(&town),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let enrol = |user: &str, area: &str| json!({"id": user, "role": "grid_worker", "area": area});
    let (status, _) = call(
        &app,
        "POST",
        "/admin/users",
        Some(&town),
        Some(enrol("x", "330604102")),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &app,
        "POST",
        "/admin/users",
        Some(&town),
        Some(enrol("x", "330604101")),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = call(
        &app,
        "POST",
        "/admin/users",
        Some(&town),
        Some(enrol("grid-102", "330604101")),
    )
    .await;
    assert_eq!(status, 403, "a user of another township is not taken over");
    let (status, body) = call(&app, "POST", "/admin/users/x/devices", Some(&town), None).await;
    assert_eq!(status, 201);
    let token = body["token"].as_str().unwrap();
    assert!(matches!(
        store.authenticate(token).unwrap(),
        gridcase_server::Auth::Device(_)
    ));
    let (status, _) = call(
        &app,
        "POST",
        "/admin/users/grid-102/devices",
        Some(&town),
        None,
    )
    .await;
    assert_eq!(status, 403);

    // Reports: inside only; no area is the whole jurisdiction.
    let (status, _) = call(
        &app,
        "GET",
        "/admin/report?period=2026-11&area=330604",
        Some(&town),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = call(
        &app,
        "GET",
        "/admin/report?period=2026-11",
        Some(&town),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let query = gridcase_server::report::ReportQuery {
        period: "2026-11".into(),
        area: "330604101".into(),
        ..Default::default()
    };
    let expected = serde_json::to_value(store.report(&query, NOW).unwrap()).unwrap();
    assert_eq!(body["cases"], expected["cases"]);

    // The audit log: the town admin's rows name it, and it sees none of the other township.
    let (_, log) = call(&app, "GET", "/admin/audit?limit=10000", Some(&town), None).await;
    let rows = log["rows"].as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["kind"] == "reveal" && r["user_id"] == "town-a")
    );
    assert!(
        rows.iter()
            .all(|r| r["user_id"] != "grid-102" && r["case_id"] != outside.as_str())
    );
    assert!(
        rows.iter()
            .all(|r| r["kind"] != "admin" || r["user_id"] == "town-a")
    );
    let (_, log) = call(&app, "GET", "/admin/audit?limit=10000", Some(&county), None).await;
    assert!(
        log["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["user_id"] == "grid-102")
    );

    // The kind filter: only that kind's rows, still inside the jurisdiction; a typo is refused.
    let (status, log) = call(
        &app,
        "GET",
        "/admin/audit?kind=reveal&limit=10000",
        Some(&town),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let reveals = log["rows"].as_array().unwrap();
    assert!(reveals.iter().any(|r| r["user_id"] == "town-a"));
    assert!(reveals.iter().all(|r| r["kind"] == "reveal"));
    assert!(reveals.iter().all(|r| r["case_id"] != outside.as_str()));
    let (_, log) = call(
        &app,
        "GET",
        "/admin/audit?kind=&limit=10000",
        Some(&town),
        None,
    )
    .await;
    assert!(log["rows"].as_array().unwrap().len() > reveals.len());
    let (status, body) = call(&app, "GET", "/admin/audit?kind=reveals", Some(&town), None).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "bad_kind");
}

/// The permission table over HTTP: a supervisor reveals but does not revoke; an auditor reads
/// but neither reveals nor revokes; a disabled admin is refused.
async fn roles_limit_what_an_admin_does(backend: Backend) {
    let AdminApp {
        store,
        app,
        db: _db,
        ..
    } = admin_app(backend, 120, 5, NOW);
    let supervisor = add_admin(&store, "sup", AdminRole::Supervisor, "330604");
    let auditor = add_admin(&store, "aud", AdminRole::Auditor, "330604");
    let (_, list) = call(&app, "GET", "/admin/overdue", Some(&auditor), None).await;
    let case = ids(&list)[0].0.clone();
    let reveal = format!("/admin/cases/{case}/reveal");
    let reason = Some(json!({"reason": "回访"}));
    assert_eq!(
        call(&app, "POST", &reveal, Some(&auditor), reason.clone())
            .await
            .0,
        403
    );
    assert_eq!(
        call(&app, "POST", &reveal, Some(&supervisor), reason)
            .await
            .0,
        200
    );
    for token in [&supervisor, &auditor] {
        let (status, _) = call(
            &app,
            "POST",
            "/admin/users/grid-101/revoke",
            Some(token),
            None,
        )
        .await;
        assert_eq!(status, 403);
        assert_eq!(
            call(
                &app,
                "GET",
                &format!("/admin/cases/{case}"),
                Some(token),
                None
            )
            .await
            .0,
            200
        );
    }
    let (status, me) = call(&app, "GET", "/admin/me", Some(&auditor), None).await;
    assert_eq!((status, me["role"].as_str()), (200, Some("auditor")));
    store.disable_admin("aud", NOW).unwrap();
    assert_eq!(
        call(&app, "GET", "/admin/me", Some(&auditor), None).await.0,
        401
    );
}

/// A password opens a session; wrong passwords are counted and the sixth try within the window
/// is refused even with the right password.
async fn sign_in_opens_a_session_and_limits_failures(backend: Backend) {
    let AdminApp {
        store,
        app,
        db: _db,
        ..
    } = admin_app(backend, 120, 5, NOW);
    let county = gridcase_core::area::Jurisdiction::parse("330604").unwrap();
    let password = "一个足够长的口令 2026";
    store
        .add_admin(
            "li",
            AdminRole::Supervisor,
            &county,
            Some(password),
            &mut rand::rng(),
            0,
        )
        .unwrap();
    let sign_in = |pw: &str| json!({"name": "li", "password": pw});
    let (status, body) = call(
        &app,
        "POST",
        "/admin/sign-in",
        None,
        Some(sign_in(password)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let session = body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        body["expires_at"],
        NOW + gridcase_server::admins::SESSION_MS
    );
    let (status, me) = call(&app, "GET", "/admin/me", Some(&session), None).await;
    assert_eq!((status, me["name"].as_str()), (200, Some("li")));
    let (status, body) = call(
        &app,
        "POST",
        "/admin/sign-in",
        None,
        Some(json!({"name": "nobody", "password": password})),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    for _ in 0..gridcase_server::http::sign_in::MAX_FAILURES {
        let (status, _) = call(
            &app,
            "POST",
            "/admin/sign-in",
            None,
            Some(sign_in("wrong wrong wrong")),
        )
        .await;
        assert_eq!(status, 401);
    }
    let (status, body) = call(
        &app,
        "POST",
        "/admin/sign-in",
        None,
        Some(sign_in(password)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("too_many_sign_ins"))
    );
    // The session opened before still works; the lock is on signing in.
    assert_eq!(
        call(&app, "GET", "/admin/me", Some(&session), None).await.0,
        200
    );
}

/// A user's entry in `GET /admin/people`, if listed.
fn person<'a>(people: &'a Value, id: &str) -> Option<&'a Value> {
    people["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == id)
}

fn admin_names(people: &Value) -> Vec<&str> {
    people["admins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect()
}

/// The people list: users with their devices and admin accounts inside the jurisdiction only;
/// a supervisor sees the users but not the accounts; a device revoked shows as revoked.
async fn the_people_list_stays_inside_the_jurisdiction(backend: Backend) {
    let AdminApp {
        store,
        app,
        db: _db,
        ..
    } = admin_app(backend, 40, 5, NOW);
    let town = add_admin(&store, "town-a", AdminRole::Admin, "330604101");
    let county = add_admin(&store, "county", AdminRole::Admin, "330604");
    let sup = add_admin(&store, "sup", AdminRole::Supervisor, "330604");
    assert_eq!(call(&app, "GET", "/admin/people", None, None).await.0, 401);

    let (status, mine) = call(&app, "GET", "/admin/people", Some(&town), None).await;
    assert_eq!(status, 200);
    let users = mine["users"].as_array().unwrap();
    assert!(!users.is_empty());
    assert!(
        users
            .iter()
            .all(|u| u["jurisdiction"].as_str().unwrap().starts_with("330604101"))
    );
    assert!(
        person(&mine, "grid-102").is_none(),
        "the other township's worker"
    );
    assert_eq!(admin_names(&mine), ["town-a"]);

    let (_, all) = call(&app, "GET", "/admin/people", Some(&county), None).await;
    assert!(person(&all, "grid-102").is_some());
    assert_eq!(
        admin_names(&all),
        ["county", "sup", "town-a"],
        "not root (everywhere)"
    );
    let (status, seen) = call(&app, "GET", "/admin/people", Some(&sup), None).await;
    assert_eq!((status, seen["admins"].is_null()), (200, true));
    assert_eq!(seen["users"], all["users"]);

    let worker = person(&mine, "grid-101").expect("the township's worker");
    let device = worker["devices"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(worker["devices"][0]["revoked"], false);
    let path = format!("/admin/devices/{device}/revoke");
    assert_eq!(call(&app, "POST", &path, Some(&town), None).await.0, 200);
    let (_, mine) = call(&app, "GET", "/admin/people", Some(&town), None).await;
    let devices = person(&mine, "grid-101").unwrap()["devices"]
        .as_array()
        .unwrap();
    let listed = devices.iter().find(|d| d["id"] == device.as_str()).unwrap();
    assert_eq!(listed["revoked"], true);
}

gridcase_server::backend_tests!(async:
    a_township_admin_stays_inside_its_township,
    the_people_list_stays_inside_the_jurisdiction,
    roles_limit_what_an_admin_does,
    sign_in_opens_a_session_and_limits_failures,
);
