//! The server's deadline rules reach phones in sync: a policy edited on the server (the server
//! restarted with another policy file) changes every phone's countdowns at its next sync, so
//! phones and the server's deadline check agree on each case's due instant.

use gridcase_core::lifecycle::Action;
use gridcase_core::model::{Millis, Role};
use gridcase_core::rules::RulesText;
use gridcase_server::store::Store;
use gridcase_tests::{Backend, T0, TestPhone, TestServer, new_case};

const HOUR: Millis = 3_600_000;

/// Every case routes within `hours` (the server's policy file as an admin might write it).
fn route_within(hours: u32) -> RulesText {
    RulesText {
        policy_toml: format!(
            "due_soon_fraction = 0.8\npause_during_extension = false\n\
             working_day_close = \"17:30\"\n\n[[rule]]\nstage = \"route\"\n\
             amount = {hours}\nunit = \"hours\"\nsource = \"county decision\"\n"
        ),
        ..RulesText::shipped()
    }
}

fn serving(server: &TestServer, rules: RulesText) -> (Store, u64) {
    let rules = rules.into_sourced().expect("the test policy parses");
    let mut store = Store::connect(server.db.location(), 8, rules).expect("open");
    let version = store.publish_rules().expect("publish");
    (store, version)
}

fn phone_due(phone: &TestPhone, id: &str) -> Option<Millis> {
    phone.phone.summary(id).unwrap().unwrap().due_at
}

fn server_due(server: &TestServer, id: &str) -> Option<Millis> {
    server.store.case_summary(id).unwrap().unwrap().due_at
}

fn an_edited_policy_reaches_every_phone_at_its_next_sync(backend: Backend) {
    let mut server = TestServer::start(backend);
    let (store, first) = serving(&server, route_within(2));
    server.restart_with(store);
    let mut li = TestPhone::enrolled(&server, "li", Role::GridWorker, "330604101", 1);
    let mut wang = TestPhone::enrolled(&server, "wang", Role::TownshipStaff, "330604101", 2);

    li.phone
        .create_case(&new_case("c1", "路灯不亮", "330604101201"), None, T0)
        .unwrap();
    li.phone.act("c1", &Action::Register, T0).unwrap();
    assert_eq!(phone_due(&li, "c1"), Some(T0 + 2 * HOUR));
    li.sync().unwrap();
    wang.sync().unwrap();
    assert_eq!(server_due(&server, "c1"), Some(T0 + 2 * HOUR));
    assert_eq!(phone_due(&wang, "c1"), Some(T0 + 2 * HOUR));

    // The county shortens the limit; the server restarts with the new file.
    let (store, second) = serving(&server, route_within(1));
    assert_eq!(second, first + 1);
    server.restart_with(store);
    // Restarting with the same file publishes no new version.
    let (store, again) = serving(&server, route_within(1));
    assert_eq!(again, second);
    server.restart_with(store);
    for phone in [&mut li, &mut wang] {
        phone.reconnect(&server);
        assert_eq!(
            phone_due(phone, "c1"),
            Some(T0 + 2 * HOUR),
            "not before a sync"
        );
        phone.sync().unwrap();
        assert_eq!(phone_due(phone, "c1"), Some(T0 + HOUR));
    }
    // The server's own deadline check counts by the same rule for cases it projects anew.
    li.phone
        .create_case(&new_case("c2", "井盖缺失", "330604101201"), None, T0)
        .unwrap();
    li.phone.act("c2", &Action::Register, T0).unwrap();
    li.sync().unwrap();
    wang.sync().unwrap();
    assert_eq!(server_due(&server, "c2"), Some(T0 + HOUR));
    assert_eq!(phone_due(&wang, "c2"), server_due(&server, "c2"));
    assert_eq!(phone_due(&li, "c2"), server_due(&server, "c2"));
}

gridcase_server::backend_tests!(an_edited_policy_reaches_every_phone_at_its_next_sync);
