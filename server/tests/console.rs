//! Issue 12 slice 1 over the router without sockets, on both backends: the console's files
//! with their security headers, the cookie session (sign-in, who, sign-out), the CSRF token
//! required on cookie changes while bearer clients are unchanged, and the console's overview
//! and paged lists agreeing with the admin API's lists.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, header};
use gridcase_core::area::Jurisdiction;
use gridcase_core::model::Millis;
use gridcase_server::admins::AdminRole;
use gridcase_server::blobs::{BlobLimits, Blobs, LocalBlobs};
use gridcase_server::testing::{Backend, TestDb, add_admin};
use gridcase_server::{AppState, Store, app, demo};
use serde_json::{Value, json};
use tower::ServiceExt;

/// 2026-11-28 10:00 China time.
const NOW: Millis = 1_795_831_200_000;
const PASSWORD: &str = "correct horse battery";

/// What a request carries besides method and path.
#[derive(Default)]
struct Ask<'a> {
    cookie: Option<&'a str>,
    csrf: Option<&'a str>,
    bearer: Option<&'a str>,
    body: Option<Value>,
}

struct Answer {
    status: u16,
    headers: axum::http::HeaderMap,
    json: Value,
    text: String,
}

async fn send(app: &axum::Router, method: &str, uri: &str, ask: Ask<'_>) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(cookie) = ask.cookie {
        req = req.header(header::COOKIE, format!("gridcase_session={cookie}"));
    }
    if let Some(csrf) = ask.csrf {
        req = req.header("x-csrf-token", csrf);
    }
    if let Some(token) = ask.bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match ask.body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let response = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

struct Env {
    store: Arc<Store>,
    app: axum::Router,
    _db: TestDb,
}

fn env(backend: Backend) -> Env {
    let db = TestDb::new(backend);
    let store = Arc::new(db.open());
    demo::fill(&store, 120, 5, NOW).unwrap();
    add_console_admin(&store, "desk", AdminRole::Supervisor);
    let app = app(AppState::new(store.clone()).with_clock(Arc::new(|| NOW)));
    Env {
        store,
        app,
        _db: db,
    }
}

/// An admin of the county who signs in with [`PASSWORD`].
fn add_console_admin(store: &Store, name: &str, role: AdminRole) {
    let county = Jurisdiction::parse_given("330604").unwrap();
    store
        .add_admin(name, role, &county, Some(PASSWORD), &mut rand::rng(), 0)
        .unwrap();
}

/// A read with the session cookie.
fn read(cookie: &str) -> Ask<'_> {
    Ask {
        cookie: Some(cookie),
        ..Ask::default()
    }
}

/// A change with the session cookie and its CSRF token.
fn change<'a>(cookie: &'a str, csrf: &'a str, body: Option<Value>) -> Ask<'a> {
    Ask {
        cookie: Some(cookie),
        csrf: Some(csrf),
        body,
        ..Ask::default()
    }
}

/// A JSON body and no credentials (signing in).
fn with_body(body: Value) -> Ask<'static> {
    Ask {
        body: Some(body),
        ..Ask::default()
    }
}

/// Signs `desk` in; returns the session cookie's value and the CSRF token.
async fn sign_in(app: &axum::Router) -> (String, String) {
    sign_in_as(app, "desk").await
}

/// Signs the admin `name` (with [`PASSWORD`]) in; returns the cookie's value and the CSRF token.
async fn sign_in_as(app: &axum::Router, name: &str) -> (String, String) {
    let body = json!({"name": name, "password": PASSWORD});
    let answer = send(app, "POST", "/console/session", with_body(body)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let set = answer.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    let value = set
        .strip_prefix("gridcase_session=")
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned();
    (value, answer.json["csrf"].as_str().unwrap().to_owned())
}

async fn the_console_is_served_with_strict_headers(backend: Backend) {
    let Env { app, _db, .. } = env(backend);
    let page = send(&app, "GET", "/console/", Ask::default()).await;
    assert_eq!(page.status, 200);
    assert!(
        page.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text.contains("/console/assets/app.js"));
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(page.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let script = send(&app, "GET", "/console/assets/app.js", Ask::default()).await;
    assert_eq!(script.status, 200);
    assert!(
        script.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(
        send(&app, "GET", "/console/assets/nope.js", Ask::default())
            .await
            .status,
        404
    );
    // The API's answers carry them too.
    let health = send(&app, "GET", "/health", Ask::default()).await;
    assert_eq!(health.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(health.headers.contains_key(header::CONTENT_SECURITY_POLICY));
}

async fn a_cookie_session_signs_in_and_out(backend: Backend) {
    let Env { app, _db, .. } = env(backend);
    let wrong = json!({"name": "desk", "password": "wrong wrong wrong"});
    let refused = send(&app, "POST", "/console/session", with_body(wrong)).await;
    assert_eq!(refused.status, 401);
    assert!(!refused.headers.contains_key(header::SET_COOKIE));

    let body = json!({"name": "desk", "password": PASSWORD});
    let answer = send(&app, "POST", "/console/session", with_body(body)).await;
    assert_eq!(answer.status, 200);
    let set = answer.headers[header::SET_COOKIE].to_str().unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("Secure"), "not configured for TLS: {set}");
    assert!(
        answer.json.get("token").is_none(),
        "the page never sees the session token"
    );
    assert_eq!(answer.json["role"], "supervisor");
    let (cookie, csrf) = sign_in(&app).await;
    assert!(cookie.starts_with("session."));

    let who = send(&app, "GET", "/console/session", read(&cookie)).await;
    assert_eq!((who.status, who.json["name"].as_str()), (200, Some("desk")));
    assert_eq!(
        who.json["csrf"],
        csrf.as_str(),
        "the same token after a reload"
    );
    let lists = send(&app, "GET", "/admin/overdue", read(&cookie)).await;
    assert_eq!(lists.status, 200, "the admin API takes the cookie");
    assert_eq!(
        send(&app, "GET", "/console/session", Ask::default())
            .await
            .status,
        401
    );
    let forged = "session.forgedforgedforgedforgedforgedforgedforged12";
    assert_eq!(
        send(
            &app,
            "GET",
            "/admin/overdue",
            Ask {
                cookie: Some(forged),
                ..Ask::default()
            }
        )
        .await
        .status,
        401
    );

    let end = read(&cookie);
    assert_eq!(
        send(&app, "POST", "/console/session/end", end).await.status,
        403,
        "needs the CSRF token"
    );
    let end = change(&cookie, &csrf, None);
    let out = send(&app, "POST", "/console/session/end", end).await;
    assert_eq!(out.status, 200);
    assert!(
        out.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = send(&app, "GET", "/admin/overdue", read(&cookie)).await;
    assert_eq!(after.status, 401, "the session ended on the server");
}

async fn a_form_post_cannot_sign_in(backend: Backend) {
    let Env { app, _db, .. } = env(backend);
    let req = Request::builder()
        .method("POST")
        .uri("/console/session")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(
            json!({"name": "desk", "password": PASSWORD}).to_string(),
        ))
        .unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status().as_u16(), 415);
    assert!(!response.headers().contains_key(header::SET_COOKIE));
}

async fn cookie_changes_need_the_csrf_token_bearer_clients_do_not(backend: Backend) {
    let Env { store, app, _db } = env(backend);
    let (cookie, csrf) = sign_in(&app).await;
    let (_, csrf2) = sign_in(&app).await;
    assert_ne!(csrf, csrf2, "each session has its own token");
    let overdue = send(&app, "GET", "/admin/overdue", read(&cookie)).await;
    let case = overdue.json["cases"][0]["case_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/admin/cases/{case}/reveal");
    let reason = || Some(json!({"reason": "回访核实办理结果"}));
    for (csrf, why) in [
        (None, "missing"),
        (Some("0".repeat(64)), "forged"),
        (Some(csrf2.clone()), "another session's"),
    ] {
        let ask = Ask {
            cookie: Some(&cookie),
            csrf: csrf.as_deref(),
            body: reason(),
            ..Ask::default()
        };
        let refused = send(&app, "POST", &path, ask).await;
        assert_eq!(
            (refused.status, refused.json["error"].as_str()),
            (403, Some("csrf")),
            "{why}"
        );
    }
    assert_eq!(
        store.audit_count("reveal").unwrap(),
        0,
        "a refused reveal reveals nothing"
    );
    let ask = change(&cookie, &csrf, reason());
    let revealed = send(&app, "POST", &path, ask).await;
    assert_eq!(revealed.status, 200, "{}", revealed.text);
    let rows = send(
        &app,
        "GET",
        &format!("/admin/audit?case={case}"),
        read(&cookie),
    )
    .await;
    let reveal = rows.json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "reveal")
        .unwrap();
    assert_eq!(
        reveal["user_id"], "desk",
        "the audit row names the signed-in admin"
    );

    let token = add_admin(&store, "api-client", AdminRole::Admin, "330604");
    let ask = Ask {
        bearer: Some(&token),
        body: reason(),
        ..Ask::default()
    };
    assert_eq!(
        send(&app, "POST", &path, ask).await.status,
        200,
        "bearer clients need no CSRF token"
    );
    assert_eq!(store.audit_count("reveal").unwrap(), 2);
}

async fn the_overview_and_lists_agree_with_the_admin_api(backend: Backend) {
    let Env { app, _db, .. } = env(backend);
    let (cookie, csrf) = sign_in(&app).await;
    let get = |uri: String| {
        let app = app.clone();
        let cookie = cookie.clone();
        async move { send(&app, "GET", &uri, read(&cookie)).await }
    };
    let overview = get("/console/api/overview".into()).await;
    assert_eq!(overview.status, 200, "{}", overview.text);
    let o = &overview.json;
    let overdue = get("/admin/overdue?limit=100000".into()).await.json;
    let due_soon = get("/admin/due-soon?limit=100000".into()).await.json;
    assert_eq!(o["overdue"]["count"], overdue["count"]);
    assert_eq!(o["due_soon"]["count"], due_soon["count"]);
    assert!(
        o["overdue"]["count"].as_u64().unwrap() > 0,
        "the demo data has overdue cases"
    );
    assert_eq!(
        (o["today"].as_str(), o["month"]["period"]["label"].as_str()),
        (Some("2026-11-28"), Some("2026-11"))
    );
    let report = get("/admin/report?period=2026-11".into()).await.json;
    assert_eq!(
        o["month"]["rates"], report["rates"],
        "the month's rates are the report's"
    );
    let trend = o["trend"].as_array().unwrap();
    let labels: Vec<&str> = trend
        .iter()
        .map(|p| p["period"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            "2026-06", "2026-07", "2026-08", "2026-09", "2026-10", "2026-11"
        ]
    );
    assert_eq!(trend[5]["rates"], report["rates"]);
    assert_eq!(trend[4]["rates"], report["previous_rates"]);
    let august = get("/admin/report?period=2026-08".into()).await.json;
    assert_eq!(
        trend[1]["rates"], august["previous_rates"],
        "older months counted alike"
    );
    let day = get("/admin/report?period=2026-11-28".into()).await.json;
    assert_eq!(o["today_cases"], day["cases"]);
    let october = get("/console/api/overview?month=2026-10".into()).await.json;
    let report = get("/admin/report?period=2026-10".into()).await.json;
    assert_eq!(october["month"]["rates"], report["rates"]);
    assert_eq!(october["trend"][5]["period"], "2026-10");
    assert_eq!(
        october["overdue"], o["overdue"],
        "the lists are of now, whatever the month"
    );
    for bad in ["2026-13", "2026-11-28", "2026-W48", "x"] {
        let answer = get(format!("/console/api/overview?month={bad}")).await;
        assert_eq!(answer.status, 400, "{bad}");
    }

    // Paging walks the whole list in order; a filter keeps only its matches.
    let all: Vec<&str> = overdue["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["case_id"].as_str().unwrap())
        .collect();
    let mut walked = Vec::new();
    for page in 1.. {
        let p = get(format!(
            "/console/api/cases?list=overdue&size=7&page={page}"
        ))
        .await
        .json;
        walked.extend(
            p["cases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["case_id"].as_str().unwrap().to_owned()),
        );
        assert_eq!(p["total"].as_u64().unwrap() as usize, all.len());
        if page >= p["pages"].as_u64().unwrap() {
            break;
        }
    }
    assert_eq!(walked, all);
    let category = overdue["cases"][0]["category"].as_str().unwrap();
    let p = get(format!(
        "/console/api/cases?list=overdue&size=200&category={}",
        urlencode(category)
    ))
    .await
    .json;
    let expected = overdue["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["category"] == category)
        .count();
    assert_eq!(p["total"].as_u64().unwrap() as usize, expected);
    assert!(
        p["categories"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == category)
    );
    let p = get("/console/api/cases?list=due_soon&area=330604101".into())
        .await
        .json;
    assert!(
        p["cases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["area_code"].as_str().unwrap().starts_with("330604101"))
    );

    // The supervised list: open cases with a supervision, each with its full summary.
    let first = overdue["cases"][0]["case_id"].as_str().unwrap();
    let ask = change(
        &cookie,
        &csrf,
        Some(json!({"level": 1, "reason": "请尽快办理"})),
    );
    let done = send(
        &app,
        "POST",
        &format!("/admin/cases/{first}/supervise"),
        ask,
    )
    .await;
    assert_eq!(done.status, 200);
    let supervised = get("/console/api/cases?list=supervised&size=200".into())
        .await
        .json;
    let rows = supervised["cases"].as_array().unwrap();
    assert!(
        !rows.is_empty(),
        "the deadline check supervised the demo's overdue cases"
    );
    assert_eq!(supervised["total"].as_u64().unwrap() as usize, rows.len());
    for row in rows {
        let id = row["case_id"].as_str().unwrap();
        let detail = get(format!("/admin/cases/{id}")).await.json;
        assert_eq!(
            row, &detail["summary"],
            "the page's rows are the projection's"
        );
        assert!(
            !detail["supervisions"].as_array().unwrap().is_empty()
                || !detail["case"]["supervisions"]
                    .as_array()
                    .unwrap()
                    .is_empty()
        );
        assert!(!["closed", "merged", "not_accepted"].contains(&row["status"].as_str().unwrap()));
    }

    // Bad input and outside the jurisdiction.
    for (uri, status) in [
        ("/console/api/cases?list=everything", 400),
        ("/console/api/cases?list=overdue&area=3306", 403),
        ("/console/api/cases?list=overdue&area=33060410x", 400),
        ("/console/api/cases?list=overdue&page=x", 400),
        ("/console/api/overview?at=yesterday", 400),
    ] {
        assert_eq!(get(uri.into()).await.status, status, "{uri}");
    }
    assert_eq!(
        send(&app, "GET", "/console/api/overview", Ask::default())
            .await
            .status,
        401
    );
}

fn urlencode(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

async fn the_cookie_is_secure_when_configured(backend: Backend) {
    let Env { store, _db, .. } = env(backend);
    let mut state = AppState::new(store).with_clock(Arc::new(|| NOW));
    state.secure_cookie = true;
    let app = app(state);
    let body = json!({"name": "desk", "password": PASSWORD});
    let answer = send(&app, "POST", "/console/session", with_body(body)).await;
    assert!(
        answer.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .ends_with("; Secure")
    );
}

/// The next chunk of an event stream, if one comes within `wait`.
async fn next_chunk(
    stream: &mut axum::body::BodyDataStream,
    wait: std::time::Duration,
) -> Option<Option<String>> {
    use futures_util::StreamExt;
    match tokio::time::timeout(wait, stream.next()).await {
        Ok(Some(Ok(bytes))) => Some(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Ok(_) => Some(None),
        Err(_) => None,
    }
}

async fn an_open_page_hears_that_cases_changed_until_signed_out(backend: Backend) {
    let Env { store, _db, .. } = env(backend);
    let mut state = AppState::new(store.clone()).with_clock(Arc::new(|| NOW));
    state.live_poll = std::time::Duration::from_millis(20);
    let app = app(state);
    let (cookie, csrf) = sign_in(&app).await;
    let req = Request::builder()
        .uri("/console/api/events")
        .header(header::COOKIE, format!("gridcase_session={cookie}"))
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = response.into_body().into_data_stream();
    let quiet = std::time::Duration::from_millis(300);
    assert_eq!(
        next_chunk(&mut stream, quiet).await,
        None,
        "nothing changed, nothing said"
    );
    let more = store.clone();
    tokio::task::spawn_blocking(move || demo::fill(&more, 125, 5, NOW).unwrap())
        .await
        .unwrap();
    let said = next_chunk(&mut stream, std::time::Duration::from_secs(10)).await;
    assert_eq!(said, Some(Some("event: cases\ndata: changed\n\n".into())));
    let end = change(&cookie, &csrf, None);
    assert_eq!(
        send(&app, "POST", "/console/session/end", end).await.status,
        200
    );
    let after = next_chunk(&mut stream, std::time::Duration::from_secs(10)).await;
    assert_eq!(after, Some(None), "the stream ends with the session");
    assert_eq!(
        send(&app, "GET", "/console/api/events", Ask::default())
            .await
            .status,
        401
    );
}

async fn a_device_is_enrolled_with_its_token_once_as_a_qr_code(backend: Backend) {
    let Env { store, app, _db } = env(backend);
    add_console_admin(&store, "boss", AdminRole::Admin);
    let (cookie, csrf) = sign_in_as(&app, "boss").await;
    let enrol = |user: &str, server: &str| json!({"user": user, "server": server});
    let ask = |body| change(&cookie, &csrf, Some(body));
    let made = send(
        &app,
        "POST",
        "/console/api/devices",
        ask(enrol("grid-101", "http://127.0.0.1:8080")),
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.text);
    assert_eq!(made.headers[header::CACHE_CONTROL], "no-store");
    let token = made.json["token"].as_str().unwrap();
    assert!(made.json["qr_svg"].as_str().unwrap().starts_with("<?xml"));
    assert!(
        matches!(store.authenticate(token).unwrap(), gridcase_server::Auth::Device(d) if d.user_id == "grid-101")
    );
    let bad = send(
        &app,
        "POST",
        "/console/api/devices",
        ask(enrol("grid-101", "javascript:alert(1)")),
    )
    .await;
    assert_eq!(
        (bad.status, bad.json["error"].as_str()),
        (400, Some("bad_server"))
    );
    let unknown = send(
        &app,
        "POST",
        "/console/api/devices",
        ask(enrol("nobody", "http://x")),
    )
    .await;
    assert_eq!(unknown.status, 404);
    // A supervisor may not enrol phones.
    let (desk, desk_csrf) = sign_in(&app).await;
    let ask = change(&desk, &desk_csrf, Some(enrol("grid-101", "http://x")));
    assert_eq!(
        send(&app, "POST", "/console/api/devices", ask).await.status,
        403
    );
}

async fn a_supervisor_supervises_and_escalates_an_auditor_may_not(backend: Backend) {
    let Env { store, app, _db } = env(backend);
    let (cookie, csrf) = sign_in(&app).await;
    let overdue = send(&app, "GET", "/admin/overdue", read(&cookie)).await;
    let case = overdue.json["cases"][0]["case_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/admin/cases/{case}/supervise");
    let ask = |body: Value| change(&cookie, &csrf, Some(body));
    let done = send(
        &app,
        "POST",
        &path,
        ask(json!({"level": 2, "reason": "请三日内办结"})),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.text);
    let detail = send(&app, "GET", &format!("/admin/cases/{case}"), read(&cookie)).await;
    let events = detail.json["case"]["timeline"].as_array().unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        last["action"],
        json!({"kind": "supervise", "level": 2, "reason": "请三日内办结"})
    );
    assert_eq!(last["author"]["user"], "desk");
    for (body, code) in [
        (json!({"level": 4, "reason": "x"}), "bad_supervision"),
        (json!({"level": "high", "reason": "x"}), "bad_level"),
        (json!({"level": 1, "reason": "  "}), "bad_supervision"),
    ] {
        let refused = send(&app, "POST", &path, ask(body.clone())).await;
        assert_eq!(
            (refused.status, refused.json["error"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    let auditor = add_admin(&store, "checker", AdminRole::Auditor, "330604");
    let ask = Ask {
        bearer: Some(&auditor),
        body: Some(json!({"reason": "x"})),
        ..Ask::default()
    };
    assert_eq!(send(&app, "POST", &path, ask).await.status, 403);
    let unchanged = send(&app, "GET", &format!("/admin/cases/{case}"), read(&cookie)).await;
    assert_eq!(
        unchanged.json["case"]["timeline"].as_array().unwrap().len(),
        events.len()
    );
}

/// The case page's photos come from the admin attachment route: a signed-in page reaches it
/// (the browser test loads a real photo through it), a page without the cookie does not.
async fn the_attachment_route_takes_the_cookie_session(backend: Backend) {
    let Env { store, _db, .. } = env(backend);
    let dir = _db.dir().join("blobs");
    let blobs = Blobs::new(
        Arc::new(LocalBlobs::open(&dir).unwrap()),
        BlobLimits::default(),
    );
    let state = AppState::new(store).with_clock(Arc::new(|| NOW));
    let app = app(state.with_blobs(blobs));
    let (cookie, _) = sign_in(&app).await;
    let overdue = send(&app, "GET", "/admin/overdue", read(&cookie)).await;
    let case = overdue.json["cases"][0]["case_id"].as_str().unwrap();
    let path = format!("/admin/cases/{case}/attachments/{}", "ab".repeat(32));
    let signed_in = send(&app, "GET", &path, read(&cookie)).await;
    assert_eq!(
        (signed_in.status, signed_in.json["error"].as_str()),
        (404, Some("not_found")),
        "past the sign-in check: the case references no such photo"
    );
    assert_eq!(send(&app, "GET", &path, Ask::default()).await.status, 401);
    let bad = format!("/admin/cases/{case}/attachments/not-a-hash");
    let refused = send(&app, "GET", &bad, read(&cookie)).await;
    assert_eq!(
        (refused.status, refused.json["error"].as_str()),
        (400, Some("bad_sha256"))
    );
}

gridcase_server::backend_tests!(async:
    the_console_is_served_with_strict_headers,
    a_cookie_session_signs_in_and_out,
    a_form_post_cannot_sign_in,
    cookie_changes_need_the_csrf_token_bearer_clients_do_not,
    the_overview_and_lists_agree_with_the_admin_api,
    the_cookie_is_secure_when_configured,
    an_open_page_hears_that_cases_changed_until_signed_out,
    a_device_is_enrolled_with_its_token_once_as_a_qr_code,
    a_supervisor_supervises_and_escalates_an_auditor_may_not,
    the_attachment_route_takes_the_cookie_session,
);
