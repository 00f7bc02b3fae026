//! Concurrent offline edits to the same case converge on every phone and on the server.

use gridcase_core::doc::{CaseDoc, FieldEdit};
use gridcase_core::lifecycle::Action;
use gridcase_core::model::{Role, Status};
use gridcase_core::sync::times::with_trusted_times;
use gridcase_tests::{Backend, T0, TestPhone, TestServer, new_case};

fn concurrent_offline_edits_converge_everywhere(backend: Backend) {
    let server = TestServer::start(backend);
    let mut li = TestPhone::enrolled(&server, "li", Role::GridWorker, "330604101", 1);
    let mut wang = TestPhone::enrolled(&server, "wang", Role::GridWorker, "330604101", 2);
    let mut zhao = TestPhone::enrolled(&server, "zhao", Role::TownshipStaff, "330604101", 3);

    // Li registers a case offline, then syncs; everyone receives it.
    let case = li
        .phone
        .create_case(&new_case("c-1", "夜间施工噪音", "330604101201"), None, T0)
        .unwrap();
    li.phone.act(&case.id, &Action::Register, T0 + 1).unwrap();
    li.sync().unwrap();
    wang.sync().unwrap();
    zhao.sync().unwrap();
    assert_eq!(
        wang.phone.get_case("c-1").unwrap().case.title,
        "夜间施工噪音"
    );

    // All three go offline and edit the same case.
    li.phone
        .splice_description("c-1", 0, 0, "【李】", T0 + 10)
        .unwrap();
    let len = wang
        .phone
        .get_case("c-1")
        .unwrap()
        .case
        .description
        .chars()
        .count();
    wang.phone
        .splice_description("c-1", len, 0, "【王补充】", T0 + 11)
        .unwrap();
    wang.phone.add_note("c-1", "已上门核实", T0 + 12).unwrap();
    zhao.phone
        .edit(
            "c-1",
            &FieldEdit::Title("工地夜间施工噪音扰民".into()),
            T0 + 13,
        )
        .unwrap();
    zhao.phone
        .act(
            "c-1",
            &Action::Dispatch {
                unit: "城管中队".into(),
                assignee: "li".into(),
            },
            T0 + 14,
        )
        .unwrap();

    // Sync in an arbitrary order, twice round so everyone has everything.
    for _ in 0..2 {
        wang.sync().unwrap();
        zhao.sync().unwrap();
        li.sync().unwrap();
    }

    let cases: Vec<_> = [&li, &wang, &zhao]
        .iter()
        .map(|p| p.phone.get_case("c-1").unwrap().case)
        .collect();
    assert_eq!(cases[0], cases[1]);
    assert_eq!(cases[1], cases[2]);
    let merged = &cases[0];
    assert!(
        merged.description.starts_with("【李】"),
        "{}",
        merged.description
    );
    assert!(
        merged.description.ends_with("【王补充】"),
        "{}",
        merged.description
    );
    assert_eq!(merged.title, "工地夜间施工噪音扰民");
    assert_eq!(merged.status, Status::Dispatched);
    assert_eq!(merged.notes.len(), 1);

    // The server's own copy reads the same, with the times it vouched for (which the phones
    // show in place of their own).
    let server_doc = server
        .store
        .load_doc("c-1")
        .unwrap()
        .expect("server holds the case");
    let server_case = CaseDoc::from_automerge(server_doc).unwrap().read().unwrap();
    let trusted = server.store.trusted_times("c-1").unwrap();
    let server_case = with_trusted_times(&server_case, &trusted, 0);
    assert_eq!(&server_case, merged);
    // Nothing left to send anywhere.
    for p in [&li, &wang, &zhao] {
        assert_eq!(p.phone.sync_status().unwrap().pending_docs, 0);
    }
}

fn conflicting_offline_actions_are_flagged_on_every_replica(backend: Backend) {
    let server = TestServer::start(backend);
    let mut li = TestPhone::enrolled(&server, "li", Role::GridWorker, "330604101", 1);
    let mut zhao = TestPhone::enrolled(&server, "zhao", Role::TownshipStaff, "330604101", 2);
    li.phone
        .create_case(&new_case("c-2", "路灯不亮", "330604101202"), None, T0)
        .unwrap();
    li.phone.act("c-2", &Action::Register, T0 + 1).unwrap();
    li.sync().unwrap();
    zhao.sync().unwrap();

    // Offline: li handles it on the spot (自办) while zhao declines to accept it.
    li.phone.act("c-2", &Action::Start, T0 + 2).unwrap();
    li.phone
        .act(
            "c-2",
            &Action::Reply {
                text: "已修复".into(),
            },
            T0 + 3,
        )
        .unwrap();
    zhao.phone
        .act(
            "c-2",
            &Action::NotAccept {
                reason: "重复件".into(),
            },
            T0 + 2,
        )
        .unwrap();
    li.sync().unwrap();
    zhao.sync().unwrap();
    li.sync().unwrap();

    let a = li.phone.get_case("c-2").unwrap().case;
    let b = zhao.phone.get_case("c-2").unwrap().case;
    assert_eq!(a, b);
    assert!(
        a.needs_review,
        "a conflict is flagged, not silently resolved"
    );
    assert_eq!(a.timeline.len(), 4, "every action is kept");
    assert!(a.timeline.iter().any(|e| e.conflicted));
}

gridcase_server::backend_tests!(
    concurrent_offline_edits_converge_everywhere,
    conflicting_offline_actions_are_flagged_on_every_replica,
);
