//! The store on both backends: schema migrations (fresh, repeated, concurrent, refusing a newer
//! schema), accounts and tokens, and that a reader never holds up a writer.

use std::sync::Arc;

use gridcase_core::area::Jurisdiction;
use gridcase_core::model::Role;
use gridcase_server::db::{DbError, Location};
use gridcase_server::store::StoreError;
use gridcase_server::testing::{Backend, TestDb};

fn latest(backend: Backend) -> u32 {
    match backend {
        Backend::Sqlite => gridcase_server::db::sqlite::schema::MIGRATIONS.len() as u32,
        Backend::Postgres => gridcase_server::db::postgres::schema::MIGRATIONS.len() as u32,
    }
}

fn migrations_run_once_and_keep_data(backend: Backend) {
    let db = TestDb::new(backend);
    let store = db.open();
    assert_eq!(store.schema_version().unwrap(), latest(backend));
    assert_eq!(
        store.db().backend(),
        match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    );
    let area = Jurisdiction::parse("330604101").unwrap();
    store.enrol_user("u1", Role::GridWorker, &area, 1).unwrap();
    drop(store);
    // Reopening keeps data and does not re-run steps.
    let store = db.open();
    assert_eq!(store.schema_version().unwrap(), latest(backend));
    assert!(store.enrol_device("u1", 2).is_ok());
    // Servers starting at the same moment on one database migrate it once between them.
    let fresh = TestDb::new(backend);
    let stores: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3).map(|_| s.spawn(|| fresh.open())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for store in &stores {
        assert_eq!(store.schema_version().unwrap(), latest(backend));
    }
}

fn a_newer_schema_is_refused(backend: Backend) {
    let db = TestDb::new(backend);
    drop(db.open());
    match db.location() {
        Location::Sqlite(dir) => {
            let conn =
                rusqlite::Connection::open(dir.join(gridcase_server::store::DB_FILE)).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        Location::Postgres(url) => {
            let mut client = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
            client
                .batch_execute("INSERT INTO schema_version (version) VALUES (99)")
                .unwrap();
        }
    }
    let err = gridcase_server::store::Store::connect(
        db.location(),
        2,
        gridcase_core::rules::SourcedRules::shipped(),
    )
    .unwrap_err();
    assert!(
        matches!(err, StoreError::Db(DbError::TooNew { found: 99, .. })),
        "{err}"
    );
}

fn tokens_authenticate_and_revocation_is_reported(backend: Backend) {
    use gridcase_server::Auth;
    let db = TestDb::new(backend);
    let store = db.open();
    let j = Jurisdiction::parse("330604101").unwrap();
    store.enrol_user("u1", Role::GridWorker, &j, 0).unwrap();
    let token = store.enrol_device("u1", 0).unwrap();
    let (device, secret) = token.split_once('.').unwrap();
    assert_eq!(device.len(), 32);
    assert!(secret.len() >= 16);
    let Auth::Device(ctx) = store.authenticate(&token).unwrap() else {
        panic!("token should authenticate");
    };
    assert_eq!(ctx.user_id, "u1");
    assert_eq!(ctx.role, Role::GridWorker);
    assert_eq!(
        store
            .authenticate(&format!("{device}.wrongwrongwrongwrong"))
            .unwrap(),
        Auth::Unknown
    );
    assert_eq!(store.authenticate("garbage").unwrap(), Auth::Unknown);
    store.revoke_device(device).unwrap();
    assert_eq!(store.authenticate(&token).unwrap(), Auth::Revoked);
    assert!(matches!(
        store.enrol_device("nobody", 0),
        Err(StoreError::NotFound(_))
    ));
    assert!(store.enrol_user("x", Role::System, &j, 0).is_err());
    // A revoked user gets no new device.
    store.revoke_user("u1").unwrap();
    assert!(matches!(
        store.enrol_device("u1", 0),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.audit_count("enrol").unwrap(), 2);
    assert_eq!(store.audit_count("revoke").unwrap(), 2);
}

/// Issue 8.5: re-enrolling a revoked user (say, to change their area) lets them enrol new
/// devices, but never revives a device revoked with them or before: a lost phone stays dead.
fn re_enrolling_a_revoked_user_never_revives_their_devices(backend: Backend) {
    use gridcase_server::Auth;
    let db = TestDb::new(backend);
    let store = db.open();
    let j = Jurisdiction::parse("330604101").unwrap();
    store.enrol_user("u1", Role::GridWorker, &j, 0).unwrap();
    let lost = store.enrol_device("u1", 0).unwrap();
    let kept = store.enrol_device("u1", 0).unwrap();
    store
        .revoke_device(lost.split_once('.').unwrap().0)
        .unwrap();
    store.revoke_user("u1").unwrap();
    assert_eq!(store.authenticate(&kept).unwrap(), Auth::Revoked);
    store.enrol_user("u1", Role::GridWorker, &j, 1).unwrap();
    for token in [&lost, &kept] {
        assert_eq!(store.authenticate(token).unwrap(), Auth::Revoked);
    }
    let fresh = store.enrol_device("u1", 2).unwrap();
    assert!(matches!(
        store.authenticate(&fresh).unwrap(),
        Auth::Device(_)
    ));
    // Re-enrolling an active user (a new area) keeps their working devices working.
    store
        .enrol_user(
            "u1",
            Role::GridWorker,
            &Jurisdiction::parse("330604").unwrap(),
            3,
        )
        .unwrap();
    assert!(matches!(
        store.authenticate(&fresh).unwrap(),
        Auth::Device(_)
    ));
}

fn admin_accounts_authenticate_reset_and_disable(backend: Backend) {
    use gridcase_server::admins::AdminRole;
    let db = TestDb::new(backend);
    let store = db.open();
    assert!(store.authenticate_admin("admin.x", 0).unwrap().is_none());
    let county = Jurisdiction::parse("330604").unwrap();
    let mut rng = rand::rng();
    let first = store
        .add_admin(
            "wang",
            AdminRole::Supervisor,
            &county,
            Some("长长的口令 password"),
            &mut rng,
            5,
        )
        .unwrap();
    let wang = store.authenticate_admin(&first, 6).unwrap().unwrap();
    assert_eq!(
        (wang.name.as_str(), wang.role),
        ("wang", AdminRole::Supervisor)
    );
    assert_eq!(wang.jurisdiction, county);
    // Names are unique; bad names and short passwords are refused.
    let again = store.add_admin("wang", AdminRole::Admin, &county, None, &mut rng, 5);
    assert!(matches!(again, Err(StoreError::Invalid(_))));
    assert!(
        store
            .add_admin("a b", AdminRole::Admin, &county, None, &mut rng, 5)
            .is_err()
    );
    assert!(
        store
            .add_admin("li", AdminRole::Admin, &county, Some("short"), &mut rng, 5)
            .is_err()
    );
    // The password opens a session that expires; a wrong one opens nothing.
    assert!(
        store
            .check_admin_password("wang", "wrong password!!")
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .check_admin_password("nobody", "长长的口令 password")
            .unwrap()
            .is_none()
    );
    let ctx = store
        .check_admin_password("wang", "长长的口令 password")
        .unwrap()
        .unwrap();
    let (session, expires) = store.open_session(&ctx, &mut rng, 100).unwrap();
    assert!(
        store
            .authenticate_admin(&session, expires - 1)
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .authenticate_admin(&session, expires)
            .unwrap()
            .is_none()
    );
    // A reset replaces every token and session.
    let second = store.reset_admin("wang", None, &mut rng, 200).unwrap();
    assert!(store.authenticate_admin(&first, 201).unwrap().is_none());
    assert!(store.authenticate_admin(&session, 201).unwrap().is_none());
    assert!(store.authenticate_admin(&second, 201).unwrap().is_some());
    // Disabled: nothing opens, not even the password.
    store.disable_admin("wang", 300).unwrap();
    assert!(store.authenticate_admin(&second, 301).unwrap().is_none());
    assert!(
        store
            .check_admin_password("wang", "长长的口令 password")
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        store.disable_admin("nobody", 1),
        Err(StoreError::NotFound(_))
    ));
    let listed = store.admins().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].disabled && listed[0].password);
    // Each change is in the audit log, inside the admin's jurisdiction.
    assert_eq!(store.audit_count("admin").unwrap(), 3);
    // Tokens are stored hashed: the token text is nowhere in the database.
    let stored = format!("{:?}", store.db().admin("wang").unwrap());
    assert!(!stored.contains(second.split_once('.').unwrap().1));
}

/// Instances starting at once with the same new rules publish them under one version; the
/// rules travel only to a phone that holds an older one.
fn rules_are_published_once_and_sent_only_to_older_phones(backend: Backend) {
    use gridcase_core::rules::{RulesText, SourcedRules};
    use gridcase_core::sync::SyncRequest;
    let db = TestDb::new(backend);
    let edited = || {
        let mut text = RulesText::shipped();
        text.policy_toml.push_str("\n# edited by the county\n");
        text.into_sourced().unwrap()
    };
    let mut shipped =
        gridcase_server::store::Store::connect(db.location(), 2, SourcedRules::shipped()).unwrap();
    assert_eq!(
        shipped.rules_for(0),
        None,
        "nothing travels before publication"
    );
    assert_eq!(shipped.publish_rules().unwrap(), 1);
    let versions: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut store =
                        gridcase_server::store::Store::connect(db.location(), 2, edited()).unwrap();
                    store.publish_rules().unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(versions, vec![2; 4]);

    let mut store = gridcase_server::store::Store::connect(db.location(), 2, edited()).unwrap();
    assert_eq!(store.publish_rules().unwrap(), 2);
    let area = Jurisdiction::parse("330604101").unwrap();
    store.enrol_user("w1", Role::GridWorker, &area, 0).unwrap();
    let token = store.enrol_device("w1", 0).unwrap();
    let gridcase_server::Auth::Device(device) = store.authenticate(&token).unwrap() else {
        panic!()
    };
    let sync = |held| {
        let request = SyncRequest {
            rules_version: held,
            ..Default::default()
        };
        store.sync(&device, &request, 10).unwrap().rules
    };
    let sent = sync(1).expect("a phone on version 1 gets version 2");
    assert_eq!(sent.version, 2);
    assert_eq!(sent.text, edited().text);
    assert_eq!(sync(2), None);
    assert_eq!(sync(3), None);
}

/// No global lock: while one request reads (a long restore, say), another device's sync
/// commits. Under the old one-connection store this deadlocked.
fn a_reader_never_holds_up_another_devices_commit(backend: Backend) {
    use gridcase_core::sync::{PushResult, SyncRequest};
    let db = TestDb::new(backend);
    let store = Arc::new(db.open());
    let area = Jurisdiction::parse("330604101").unwrap();
    store.enrol_user("w1", Role::GridWorker, &area, 0).unwrap();
    let token = store.enrol_device("w1", 0).unwrap();
    let gridcase_server::Auth::Device(device) = store.authenticate(&token).unwrap() else {
        panic!()
    };
    let mut view = store.db().read().unwrap();
    let head = view.feed_head().unwrap();
    let request = SyncRequest {
        pushes: vec![support::case_push(&device, "case-1", "330604101201")],
        ..Default::default()
    };
    let response = store.sync(&device, &request, 1).unwrap();
    assert!(matches!(response.results[0], PushResult::Accepted { .. }));
    // The open snapshot does not see the commit; a new one does.
    assert_eq!(view.feed_head().unwrap(), head);
    drop(view);
    assert!(store.db().read().unwrap().feed_head().unwrap() > head);
}

/// What a sync reads first (one statement on PostgreSQL): the device's row and the feed head,
/// as the two separate reads give them, for a device that synced and for an unknown one.
fn a_sync_reads_the_device_row_and_the_feed_head_together(backend: Backend) {
    use gridcase_core::sync::SyncRequest;
    let db = TestDb::new(backend);
    let store = db.open();
    let area = Jurisdiction::parse("330604101").unwrap();
    store.enrol_user("w1", Role::GridWorker, &area, 0).unwrap();
    let token = store.enrol_device("w1", 5).unwrap();
    let gridcase_server::Auth::Device(device) = store.authenticate(&token).unwrap() else {
        panic!()
    };
    let request = SyncRequest {
        device_time: 7_000,
        pushes: vec![support::case_push(&device, "case-1", "330604101201")],
        ..Default::default()
    };
    store.sync(&device, &request, 9_000).unwrap();
    let mut view = store.db().read().unwrap();
    let (state, head) = view.device_and_head(&device.device_id).unwrap();
    assert_eq!(state, view.device_state(&device.device_id).unwrap());
    let state = state.expect("an enrolled device");
    assert_eq!((state.created_at, state.last_seen), (5, Some(9_000)));
    assert_eq!(state.clock_offset, Some(2_000));
    assert_eq!(state.served_scope, Some(device.scope_key()));
    assert_eq!(head, view.feed_head().unwrap());
    assert!(head > 0);
    assert_eq!(view.device_and_head("nobody").unwrap(), (None, head));
}

/// Pages are bounded in bytes as well as documents: a small budget gives small pages, never an
/// empty one, and paging through them delivers every document (restore and feed).
fn pages_are_bounded_in_bytes(backend: Backend) {
    use gridcase_core::sync::{Payload, SyncRequest, SyncResponse};
    let db = TestDb::new(backend);
    let store = db.open();
    let area = Jurisdiction::parse("330604101").unwrap();
    store.enrol_user("w1", Role::GridWorker, &area, 0).unwrap();
    store
        .enrol_user("t1", Role::TownshipStaff, &area, 0)
        .unwrap();
    let device = |user| {
        let token = store.enrol_device(user, 0).unwrap();
        let gridcase_server::Auth::Device(device) = store.authenticate(&token).unwrap() else {
            panic!()
        };
        device
    };
    let (worker, township) = (device("w1"), device("t1"));
    let push = |ids: std::ops::Range<usize>| {
        let pushes = ids
            .map(|i| support::case_push(&worker, &format!("case-{i:02}"), "330604101201"))
            .collect();
        let request = SyncRequest {
            pushes,
            ..Default::default()
        };
        store.sync(&worker, &request, 1).unwrap();
    };
    let size = |r: &SyncResponse| -> usize {
        r.docs
            .iter()
            .map(|d| match &d.payload {
                Payload::Snapshot(b) => b.len(),
                Payload::Changes(c) => c.iter().map(Vec::len).sum(),
            })
            .sum()
    };
    push(0..12);
    let one_doc = {
        let request = SyncRequest {
            page_bytes: 1,
            ..Default::default()
        };
        let first = store.sync(&township, &request, 2).unwrap();
        // The server's smallest budget (1 KiB) holds one or two of these documents.
        assert!((1..=2).contains(&first.docs.len()), "{}", first.docs.len());
        size(&first) / first.docs.len()
    };
    // Page through with room for about three documents.
    let budget = (one_doc * 5 / 2) as u32;
    let mut request = SyncRequest {
        page_bytes: budget,
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = store.sync(&township, &request, 3).unwrap();
        assert!(!page.docs.is_empty());
        assert!(
            size(&page) < budget as usize + one_doc * 2,
            "page over budget"
        );
        seen.extend(page.docs.iter().map(|d| d.doc_id.clone()));
        request.cursor = page.cursor;
        request.restore = page.restore.clone();
        if page.restore.is_none() && page.remaining == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), 12);
    let mut pages = 0;
    push(12..24);
    loop {
        let page = store.sync(&township, &request, 4).unwrap();
        pages += 1;
        assert!(
            size(&page) < budget as usize + one_doc * 2,
            "feed page over budget"
        );
        seen.extend(page.docs.iter().map(|d| d.doc_id.clone()));
        request.cursor = page.cursor;
        if page.remaining == 0 {
            break;
        }
    }
    assert!(
        pages >= 3,
        "12 new documents in pages of about 3: {pages} pages"
    );
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 24, "every document");
    // A document whose changes straddle a page boundary continues on the next page.
    assert!(
        seen.len() <= 24 + pages,
        "{} updates in {pages} pages",
        seen.len()
    );
}

/// `serve` on the test's database: it migrates it and answers on its address.
fn serve_runs_on_either_database(backend: Backend) {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    let db = TestDb::new(backend);
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = gridcase_server::ServeConfig {
        listen,
        database: db.location().clone(),
        pool_size: 4,
        check_every: Duration::from_secs(3600),
        policy: None,
        calendar: None,
        max_body_bytes: 1024 * 1024,
        request_timeout: Duration::from_secs(10),
        limits: Default::default(),
        secure_cookie: false,
        blobs: Default::default(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.spawn(gridcase_server::serve(config));
    // Poll until it listens (bounded), as a supervisor would.
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        assert!(!server.is_finished(), "serve stopped");
        if let Ok(mut stream) = std::net::TcpStream::connect(listen) {
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not listen within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(answer.contains("\"status\":\"ok\""), "{answer}");
    server.abort();
    runtime.shutdown_background();
    assert_eq!(db.open().schema_version().unwrap(), latest(backend));
}

mod support {
    use gridcase_core::doc::CaseDoc;
    use gridcase_core::identity::actor_for;
    use gridcase_core::lifecycle::Action;
    use gridcase_core::model::{Author, CaseType, Channel, Location, NewCase, Urgency};
    use gridcase_core::sync::DocPush;
    use gridcase_server::DeviceCtx;

    /// A push registering a new case in `area`, made by `device`.
    pub fn case_push(device: &DeviceCtx, id: &str, area: &str) -> DocPush {
        let author = Author {
            user: device.user_id.clone(),
            device: device.device_id.clone(),
            role: device.role,
        };
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
        let actor = actor_for(&device.device_id, [7, 7, 7, 7]).unwrap();
        let mut doc = CaseDoc::create(&new, &author, actor, 0).unwrap();
        doc.act(&Action::Register, &author, 0).unwrap();
        let mut raw = doc.into_automerge();
        DocPush {
            doc_id: id.into(),
            changes: raw
                .get_changes(&[])
                .iter()
                .map(|c| c.raw_bytes().to_vec())
                .collect(),
        }
    }
}

/// The admin-accounts step on both backends: a database one step before it, holding the shared
/// admin token's hash and an audit row, comes out with the account `admin` opened by that token,
/// the row kept, and the new audit kinds accepted.
fn the_shared_admin_token_becomes_the_admin_account(backend: Backend) {
    use sha2::Digest;
    let db = TestDb::new(backend);
    let token = "admin.legacy0123456789legacy0123456789legacy012345";
    let hash: String = sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let audit_row = "INSERT INTO audit (at, user_id, kind, case_id, detail)
                     VALUES (7, 'zhang', 'reveal', 'c1', '{}')";
    match db.location() {
        Location::Sqlite(dir) => {
            std::fs::create_dir_all(dir).unwrap();
            let conn =
                rusqlite::Connection::open(dir.join(gridcase_server::store::DB_FILE)).unwrap();
            let steps = &gridcase_server::db::sqlite::schema::MIGRATIONS;
            for step in &steps[..before_accounts(steps)] {
                conn.execute_batch(step).unwrap();
            }
            conn.pragma_update(None, "user_version", before_accounts(steps))
                .unwrap();
            conn.execute(
                "INSERT INTO settings (key, value) VALUES ('admin_token_hash', ?1)",
                [&hash],
            )
            .unwrap();
            conn.execute_batch(audit_row).unwrap();
        }
        Location::Postgres(url) => {
            let mut client = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
            let steps = &gridcase_server::db::postgres::schema::MIGRATIONS;
            client
                .batch_execute(
                    "CREATE TABLE schema_version (version INTEGER PRIMARY KEY,
                         applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                )
                .unwrap();
            for (i, step) in steps[..before_accounts(steps)].iter().enumerate() {
                client.batch_execute(step).unwrap();
                client
                    .execute(
                        "INSERT INTO schema_version (version) VALUES ($1)",
                        &[&(i as i32 + 1)],
                    )
                    .unwrap();
            }
            client
                .execute(
                    "INSERT INTO settings (key, value) VALUES ('admin_token_hash', $1)",
                    &[&hash],
                )
                .unwrap();
            client.batch_execute(audit_row).unwrap();
        }
    }
    let store = db.open();
    assert_eq!(store.schema_version().unwrap(), latest(backend));
    let admin = store
        .authenticate_admin(token, 0)
        .unwrap()
        .expect("migrated");
    assert_eq!(admin.name, "admin");
    assert!(admin.jurisdiction.is_everywhere());
    assert_eq!(store.db().setting("admin_token_hash").unwrap(), None);
    let rows = store.audit_log(&Default::default()).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].kind.as_str(), rows[0].at), ("reveal", 7));
    // The new kinds are accepted by the altered CHECK.
    gridcase_server::testing::root_admin(&store);
    assert_eq!(store.audit_count("admin").unwrap(), 1);
}

/// How many migration steps come before the one that adds admin accounts: a database of that
/// version is one that still had the shared admin token.
fn before_accounts(steps: &[&str]) -> usize {
    steps
        .iter()
        .position(|step| step.contains("CREATE TABLE admins"))
        .expect("a step adds admin accounts")
}

gridcase_server::backend_tests!(
    migrations_run_once_and_keep_data,
    a_newer_schema_is_refused,
    tokens_authenticate_and_revocation_is_reported,
    re_enrolling_a_revoked_user_never_revives_their_devices,
    admin_accounts_authenticate_reset_and_disable,
    the_shared_admin_token_becomes_the_admin_account,
    rules_are_published_once_and_sent_only_to_older_phones,
    a_reader_never_holds_up_another_devices_commit,
    a_sync_reads_the_device_row_and_the_feed_head_together,
    serve_runs_on_either_database,
    pages_are_bounded_in_bytes,
);
