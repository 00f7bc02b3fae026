//! Moving up: a township's SQLite server is copied into PostgreSQL
//! (`gridcase-server migrate --from <dir> --to postgres://…`, here its function), and the phones
//! keep syncing against a server on the new database without a restore. Skipped only when
//! `GRIDCASE_TEST_PG` is `off`.

use std::sync::Arc;

use gridcase_bindings::http::HttpTransport;
use gridcase_core::lifecycle::Action;
use gridcase_core::model::{CaseType, Role};
use gridcase_core::sync::wire::decode_response;
use gridcase_server::db::Location;
use gridcase_server::db::move_up;
use gridcase_server::deadlines::run_deadline_check;
use gridcase_tests::{Backend, FlakyTransport, T0, TestDb, TestPhone, TestServer, new_case};

const AREA: &str = "330604101";
const VILLAGE: &str = "330604101201";
const DAY: i64 = 86_400_000;

/// Syncs `phone` through `server`, checking that no answer restores.
fn sync_without_restore(phone: &mut TestPhone, server: &TestServer, token: &str) -> usize {
    phone.transport = HttpTransport::new(&server.url, token);
    let mut inner = HttpTransport::new(&server.url, token);
    let mut recording = FlakyTransport {
        inner: &mut inner,
        limit: usize::MAX,
        exchanges: 0,
        responses: Vec::new(),
    };
    let summary = phone.sync_with(&mut recording, 200).unwrap();
    assert!(summary.rejected.is_empty(), "{summary:?}");
    let mut docs = 0;
    for bytes in &recording.responses {
        let response = decode_response(bytes).unwrap();
        assert!(response.restore.is_none(), "a restore after moving up");
        assert!(response.evict.is_empty(), "evictions after moving up");
        docs += response.docs.len();
    }
    docs
}

#[test]
fn phones_keep_syncing_after_moving_up_to_postgres() {
    if gridcase_server::testing::skip_postgres() {
        return;
    }
    // A township on SQLite: two phones, cases, a supervision, an admin token.
    let mut old = TestServer::start(Backend::Sqlite);
    let admin = gridcase_server::testing::root_admin(&old.store);
    let li_token = old.enrol("li", Role::GridWorker, AREA);
    let zhao_token = old.enrol("zhao", Role::TownshipStaff, AREA);
    let mut li = TestPhone::new(&old, &li_token, 1);
    let mut zhao = TestPhone::new(&old, &zhao_token, 2);
    li.sync().unwrap();
    zhao.sync().unwrap();
    for id in ["m1", "m2", "m3"] {
        let mut case = new_case(id, "咨询社保办理", VILLAGE);
        case.case_type = CaseType::Inquiry;
        li.phone.create_case(&case, None, T0 + 1_000).unwrap();
        li.phone.act(id, &Action::Register, T0 + 2_000).unwrap();
    }
    li.phone.act("m1", &Action::Start, T0 + 3_000).unwrap();
    li.now = T0 + 10_000;
    li.sync().unwrap();
    let late = T0 + 30 * DAY;
    let check = run_deadline_check(&old.store, late).unwrap();
    let supervised = check.supervised;
    assert!(supervised.contains(&"m1".to_string()));
    old.set_time(late);
    zhao.now = late;
    li.now = late;
    zhao.sync().unwrap();
    li.sync().unwrap();
    assert_eq!(zhao.cases_in(AREA), li.cases_in(AREA));
    let before = old.store.row_counts().unwrap();
    let Location::Sqlite(data) = old.db.location().clone() else {
        unreachable!()
    };
    old.stop();

    // Move up.
    let pg = TestDb::new(Backend::Postgres);
    let Location::Postgres(url) = pg.location().clone() else {
        unreachable!()
    };
    let copied = move_up::copy(&data, &url).unwrap();
    assert_eq!(copied.0.len(), move_up::TABLES.len());
    let rows = |table: &str| copied.0.iter().find(|(t, _)| *t == table).unwrap().1;
    assert_eq!(rows("changes"), before.changes);
    assert!(rows("audit") >= before.audit_change);
    assert_eq!(rows("supervisions"), supervised.len() as u64);
    assert!(rows("device_docs") > 0 && rows("devices") == 2);
    // Into a database that is no longer empty: refused, nothing written twice.
    let again = move_up::copy(&data, &url).unwrap_err().to_string();
    assert!(again.contains("not empty"), "{again}");

    let new = TestServer::start_with(Arc::new(pg.open()), pg);
    new.set_time(late + 1_000);
    assert_eq!(new.store.row_counts().unwrap(), before);
    assert!(new.store.authenticate_admin(&admin, 0).unwrap().is_some());
    for id in &supervised {
        assert_eq!(new.store.supervisions(id).unwrap().len(), 1, "{id}");
    }
    // The copied supervision is known: the check on the new database does not repeat it.
    assert!(
        run_deadline_check(&new.store, late + 2_000)
            .unwrap()
            .supervised
            .is_empty()
    );

    // Phones: same tokens, same cursors, nothing to restore, nothing new to fetch.
    assert_eq!(sync_without_restore(&mut li, &new, &li_token), 0);
    assert_eq!(sync_without_restore(&mut zhao, &new, &zhao_token), 0);
    // New work flows through the new server; feed positions continue after the copied ones.
    li.now = late + 5_000;
    li.phone.add_note("m2", "搬迁后的备注", li.now).unwrap();
    li.phone.act("m3", &Action::Start, li.now + 1).unwrap();
    sync_without_restore(&mut li, &new, &li_token);
    zhao.now = late + 6_000;
    assert!(sync_without_restore(&mut zhao, &new, &zhao_token) >= 2);
    for id in ["m1", "m2", "m3"] {
        assert_eq!(
            zhao.phone.get_case(id).unwrap().case,
            li.phone.get_case(id).unwrap().case,
            "{id}"
        );
    }
    let m2 = zhao.phone.get_case("m2").unwrap().case;
    assert!(m2.notes.iter().any(|n| n.text == "搬迁后的备注"));
    assert!(new.store.change_count().unwrap() > before.changes);
}

#[test]
fn moving_up_refuses_a_directory_without_a_database() {
    if gridcase_server::testing::skip_postgres() {
        return;
    }
    let pg = TestDb::new(Backend::Postgres);
    let Location::Postgres(url) = pg.location().clone() else {
        unreachable!()
    };
    let empty = tempfile::tempdir().unwrap();
    let err = move_up::copy(empty.path(), &url).unwrap_err().to_string();
    assert!(err.contains("no gridcase database"), "{err}");
    // Nothing was created in the target either.
    assert_eq!(pg.open().row_counts().unwrap().changes, 0);
}
