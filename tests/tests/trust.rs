//! Revocation and scope changes end to end: a revoked device is told to wipe and does; a case
//! moved to another village leaves the old grid worker's phone at its next sync, after that
//! phone's pending changes to it are sent.

use gridcase_core::doc::{CaseDoc, FieldEdit};
use gridcase_core::lifecycle::Action;
use gridcase_core::model::{Location, Role};
use gridcase_core::phone::{PhoneError, TransportError};
use gridcase_tests::{Backend, T0, TestPhone, TestServer, new_case};

fn revoked_device_is_told_to_wipe_and_wipes(backend: Backend) {
    let server = TestServer::start(backend);
    // An unencrypted store, so the case's text can be seen in the files before the wipe.
    let token = server.enrol("li", Role::GridWorker, "330604101");
    let mut li = TestPhone::with_key(&server, &token, 1, None);
    li.sync().unwrap();
    li.phone
        .create_case(&new_case("c-1", "井盖缺失", "330604101201"), None, T0)
        .unwrap();
    li.sync().unwrap();
    // Everything the phone keeps on disk: the database and its write-ahead log.
    let on_disk = |dir: &std::path::Path| -> Vec<u8> {
        std::fs::read_dir(dir)
            .unwrap()
            .flat_map(|e| std::fs::read(e.unwrap().path()).unwrap_or_default())
            .collect()
    };
    let holds_title = |bytes: &[u8]| bytes.windows(6).any(|w| w == "井盖".as_bytes());
    assert!(holds_title(&on_disk(li.dir.path())));

    // The phone is lost; the admin revokes it. Its next request gets 401 with wipe.
    assert!(server.store.revoke_device(li.phone.device()).unwrap());
    let err = li.sync().unwrap_err();
    assert!(
        matches!(
            err,
            PhoneError::Transport(TransportError::Unauthorized { wipe: true, .. })
        ),
        "{err:?}"
    );
    assert!(matches!(li.phone.get_case("c-1"), Err(PhoneError::Wiped)));
    assert!(
        !holds_title(&on_disk(li.dir.path())),
        "the case's text is gone from the phone's files"
    );

    // Other devices keep working.
    let zhao = TestPhone::enrolled(&server, "zhao", Role::TownshipStaff, "330604101", 2);
    assert_eq!(zhao.phone.get_case("c-1").unwrap().case.title, "井盖缺失");
}

fn case_moved_to_another_village_leaves_after_pending_changes_are_sent(backend: Backend) {
    let server = TestServer::start(backend);
    // A village grid worker and the township staff above them.
    let mut li = TestPhone::enrolled(&server, "li", Role::GridWorker, "330604101201", 1);
    let mut zhao = TestPhone::enrolled(&server, "zhao", Role::TownshipStaff, "330604101", 2);
    li.phone
        .create_case(&new_case("c-1", "河道垃圾", "330604101201"), None, T0)
        .unwrap();
    li.phone.act("c-1", &Action::Register, T0 + 1).unwrap();
    li.sync().unwrap();
    zhao.sync().unwrap();

    // Offline, li adds a note; meanwhile zhao finds the river belongs to the next village.
    li.phone.add_note("c-1", "已拍照取证", T0 + 2).unwrap();
    zhao.phone
        .edit(
            "c-1",
            &FieldEdit::Location(Location {
                address: "二村河道".into(),
                area_code: "330604101202".into(),
                gps: None,
            }),
            T0 + 3,
        )
        .unwrap();
    zhao.sync().unwrap();

    // li's next sync sends the note first, then the case leaves li's phone.
    let summary = li.sync().unwrap();
    assert!(summary.rejected.is_empty(), "{:?}", summary.rejected);
    assert!(
        li.phone.get_case("c-1").is_err(),
        "the case left li's phone"
    );
    let server_case = CaseDoc::from_automerge(server.store.load_doc("c-1").unwrap().unwrap())
        .unwrap()
        .read()
        .unwrap();
    assert_eq!(
        server_case.notes.len(),
        1,
        "li's pending note reached the server"
    );
    assert_eq!(server_case.location.area_code, "330604101202");
}

fn a_phone_number_revealed_offline_reaches_the_audit_log(backend: Backend) {
    use gridcase_core::model::Complainant;
    use gridcase_server::audit::AuditQuery;

    let server = TestServer::start(backend);
    let mut li = TestPhone::enrolled(&server, "li", Role::GridWorker, "330604101", 1);
    let complainant = Complainant {
        name: "张三".into(),
        phone: "13812341234".into(),
        anonymous: false,
    };
    li.phone
        .create_case(
            &new_case("c-1", "噪音", "330604101201"),
            Some(&complainant),
            T0,
        )
        .unwrap();
    li.sync().unwrap();
    let reveals = |server: &TestServer| {
        server
            .store
            .audit_log(&AuditQuery {
                case_id: Some("c-1".into()),
                limit: 100,
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .filter(|r| r.kind == "reveal")
            .count()
    };
    assert_eq!(reveals(&server), 0);
    // Offline, li looks at the number; the list shows it masked.
    assert_eq!(
        li.phone.get_case("c-1").unwrap().masked_phone.as_deref(),
        Some("138****1234")
    );
    assert_eq!(
        li.phone.reveal_complainant_phone("c-1", T0 + 5).unwrap(),
        "13812341234"
    );
    li.sync().unwrap();
    assert_eq!(reveals(&server), 1);
    // A repeated sync does not log it twice.
    li.sync().unwrap();
    assert_eq!(reveals(&server), 1);
}

fn a_user_moved_to_another_village_receives_its_cases_and_loses_the_old_ones(backend: Backend) {
    use gridcase_core::area::Jurisdiction;

    let server = TestServer::start(backend);
    let mut li = TestPhone::enrolled(&server, "li", Role::GridWorker, "330604101201", 1);
    let mut zhao = TestPhone::enrolled(&server, "zhao", Role::TownshipStaff, "330604101", 2);
    li.phone
        .create_case(&new_case("old", "一村的案件", "330604101201"), None, T0)
        .unwrap();
    li.sync().unwrap();
    // Long before li moves, a case is registered in the next village.
    zhao.phone
        .create_case(&new_case("new", "二村的案件", "330604101202"), None, T0)
        .unwrap();
    zhao.sync().unwrap();
    li.sync().unwrap();
    assert!(li.phone.get_case("new").is_err(), "not li's village yet");

    // The admin moves li to the second village; nothing about the case changes.
    server
        .store
        .enrol_user(
            "li",
            Role::GridWorker,
            &Jurisdiction::parse("330604101202").unwrap(),
            0,
        )
        .unwrap();
    li.sync().unwrap();
    assert_eq!(li.phone.get_case("new").unwrap().case.title, "二村的案件");
    assert!(
        li.phone.get_case("old").is_err(),
        "the old village's case left"
    );
    // And it settles: the next sync brings nothing.
    let summary = li.sync().unwrap();
    assert_eq!(summary.progress.cases_received, 0);
}

gridcase_server::backend_tests!(
    revoked_device_is_told_to_wipe_and_wipes,
    case_moved_to_another_village_leaves_after_pending_changes_are_sent,
    a_phone_number_revealed_offline_reaches_the_audit_log,
    a_user_moved_to_another_village_receives_its_cases_and_loses_the_old_ones,
);
