//! Upgrading a real SQLite database written by the server before the data layer (schema
//! version 4, `fixtures/schema-4/`, see its `tokens.json`): it migrates, keeps every row, and
//! its devices keep syncing without a restore.

use gridcase_core::doc::{CaseDoc, personal_doc_id};
use gridcase_core::identity::actor_for;
use gridcase_core::model::{Author, Role};
use gridcase_core::sync::{DocPush, Payload, PushResult, SyncRequest};
use gridcase_server::db::Location;
use gridcase_server::testing::{Backend, TestDb};
use gridcase_server::{Auth, DeviceCtx, Store};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema-4");
/// The instant the fixture's devices last synced at.
const T0: i64 = 1_767_225_600_000;

fn token(name: &str) -> String {
    let text = std::fs::read_to_string(format!("{FIXTURE}/tokens.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json[name].as_str().unwrap().to_owned()
}

fn device(store: &Store, name: &str) -> DeviceCtx {
    match store.authenticate(&token(name)).unwrap() {
        Auth::Device(device) => device,
        other => panic!("{name}: {other:?}"),
    }
}

/// The fixture copied into a fresh SQLite data directory.
fn upgraded() -> (TestDb, Store) {
    let db = TestDb::new(Backend::Sqlite);
    let Location::Sqlite(dir) = db.location() else {
        unreachable!()
    };
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(
        format!("{FIXTURE}/gridcase.sqlite3"),
        dir.join(gridcase_server::store::DB_FILE),
    )
    .unwrap();
    let version: u32 = rusqlite::Connection::open(dir.join(gridcase_server::store::DB_FILE))
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4, "the fixture is a schema 4 database");
    let store = db.open();
    (db, store)
}

#[test]
fn a_schema_4_database_migrates_and_keeps_its_rows() {
    let (_db, store) = upgraded();
    assert_eq!(
        store.schema_version().unwrap(),
        gridcase_server::db::sqlite::schema::MIGRATIONS.len() as u32
    );
    let counts = store.row_counts().unwrap();
    assert_eq!(
        (counts.changes, counts.docs, counts.cases),
        (57, 16, 10),
        "{counts:?}"
    );
    assert_eq!(store.audit_count("enrol").unwrap(), 20);
    assert!(store.audit_count("change").unwrap() >= 16);
    // Accounts: tokens still authenticate, the revoked device stays revoked, the shared admin
    // token of schema 4 became the account `admin` (everywhere), and nothing else.
    assert_eq!(device(&store, "li").user_id, "li");
    assert_eq!(store.authenticate(&token("gone")).unwrap(), Auth::Revoked);
    let admin = store
        .authenticate_admin(&token("admin"), T0)
        .unwrap()
        .expect("the old admin token opens the admin account");
    assert_eq!(admin.name, "admin");
    assert_eq!(admin.role, gridcase_server::admins::AdminRole::Admin);
    assert!(admin.jurisdiction.is_everywhere());
    assert_eq!(store.admins().unwrap().len(), 1);
    assert_eq!(store.db().setting("admin_token_hash").unwrap(), None);
    assert!(
        store
            .authenticate_admin("admin.wrong", T0)
            .unwrap()
            .is_none()
    );
    // Deadlines: the supervisions recorded at schema 4 are not repeated.
    let later = T0 + 40 * 86_400_000;
    let report = gridcase_server::run_deadline_check(&store, later).unwrap();
    assert!(!report.overdue.is_empty());
    assert!(report.supervised.is_empty(), "{:?}", report.supervised);
    for case in &report.overdue {
        assert_eq!(store.supervisions(&case.case_id).unwrap().len(), 1);
    }
    // Documents load and read.
    let fx0 = CaseDoc::from_automerge(store.load_doc("fx-0").unwrap().unwrap())
        .unwrap()
        .read()
        .unwrap();
    assert_eq!(fx0.notes.len(), 1);
    assert!(store.load_doc(&personal_doc_id("fx-0")).unwrap().is_some());
}

#[test]
fn devices_keep_syncing_after_the_upgrade() {
    let (_db, store) = upgraded();
    let li = device(&store, "li");
    let head = store.db().read().unwrap().feed_head().unwrap() as u64;
    // Nothing new for a device at the head of the feed (its cursor survived the upgrade).
    let request = SyncRequest {
        cursor: head,
        device_time: T0,
        ..Default::default()
    };
    let response = store.sync(&li, &request, T0).unwrap();
    assert!(response.docs.is_empty() && response.evict.is_empty());
    assert_eq!(response.cursor, head);

    // The township's staff restore their scope from the migrated projection: the four cases
    // li registered with their personal data, and the demo cases of the township.
    let zhao = device(&store, "zhao");
    let restored = store.sync(&zhao, &SyncRequest::default(), T0).unwrap();
    assert!(restored.restore.is_none());
    let ids: Vec<&str> = restored.docs.iter().map(|d| d.doc_id.as_str()).collect();
    for id in ["fx-0", "fx-0#pii", "fx-1", "fx-2", "fx-2#pii", "fx-3"] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    assert!(
        restored
            .docs
            .iter()
            .all(|d| matches!(d.payload, Payload::Snapshot(_)))
    );

    // li adds a note to a case it holds since schema 4: judged against migrated rows, accepted,
    // and fed to zhao incrementally.
    let mut doc = store.load_doc("fx-1").unwrap().unwrap();
    let before = doc.get_heads();
    let actor = actor_for(&li.device_id, [9, 9, 9, 9]).unwrap();
    let mut case = CaseDoc::from_automerge(doc.with_actor(actor)).unwrap();
    let author = Author {
        user: li.user_id.clone(),
        device: li.device_id.clone(),
        role: Role::GridWorker,
    };
    case.add_note("迁移后补充", &author, T0 + 1).unwrap();
    let mut doc = case.into_automerge();
    let push = DocPush {
        doc_id: "fx-1".into(),
        changes: doc
            .get_changes(&before)
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect(),
    };
    let request = SyncRequest {
        cursor: head,
        device_time: T0 + 1,
        pushes: vec![push],
        ..Default::default()
    };
    let response = store.sync(&li, &request, T0 + 1).unwrap();
    assert!(
        matches!(response.results[0], PushResult::Accepted { .. }),
        "{:?}",
        response.results
    );
    let request = SyncRequest {
        cursor: restored.cursor,
        ..Default::default()
    };
    let after = store.sync(&zhao, &request, T0 + 2).unwrap();
    assert_eq!(after.docs.len(), 1);
    assert_eq!(after.docs[0].doc_id, "fx-1");
    assert!(matches!(after.docs[0].payload, Payload::Changes(_)));
}

/// The blob step (SQLite 10) on a database from before it: the tables are there and empty, and
/// a case committed after the upgrade records the blobs it references, for the scope rule.
#[test]
fn the_blob_step_records_references_of_cases_committed_after_it() {
    let (_db, store) = upgraded();
    let li = device(&store, "li");
    let sha = "ab".repeat(32);
    assert_eq!(store.db().blob_bytes_of(&li.device_id).unwrap(), 0);
    assert!(store.db().blob(&sha).unwrap().is_none());
    // Cases from before the step reference nothing until their next commit.
    assert!(!store.db().case_references_blob("fx-1", &sha).unwrap());
    let fx1 = CaseDoc::from_automerge(store.load_doc("fx-1").unwrap().unwrap())
        .unwrap()
        .read()
        .unwrap();
    let author = Author {
        user: li.user_id.clone(),
        device: li.device_id.clone(),
        role: Role::GridWorker,
    };
    let new = gridcase_core::model::NewCase {
        id: "fx-new".into(),
        number: "N-new".into(),
        channel: fx1.channel,
        case_type: fx1.case_type,
        category: fx1.category.clone(),
        urgency: fx1.urgency,
        priority: false,
        title: "照片".into(),
        description: String::new(),
        location: fx1.location.clone(),
    };
    let actor = actor_for(&li.device_id, [8, 8, 8, 8]).unwrap();
    let mut doc = CaseDoc::create(&new, &author, actor, T0).unwrap();
    doc.add_attachment(&sha, "image/jpeg", 10, "", &author, T0)
        .unwrap();
    assert!(
        store
            .insert_server_doc("fx-new", doc.automerge(), T0)
            .unwrap()
    );
    assert!(store.db().case_references_blob("fx-new", &sha).unwrap());
    assert_eq!(
        store.db().blob_cases_in_scope(&sha, &li.scope()).unwrap(),
        vec!["fx-new".to_string()]
    );
}
