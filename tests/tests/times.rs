//! Times the server can vouch for (issue 8, part 3), end to end: phones whose clocks run two
//! days ahead and two days behind, and one that is right, register cases; after a sync every
//! phone shows the server's due instants, and no case is overdue, due soon or on time on any
//! phone (at the same real instant) unless it is so on the server's admin view. A phone
//! offline after its sync computes the due instant the server will; events backdated or
//! postdated by 30 days get the times the server vouches for, on the server and on the phones.

use std::collections::BTreeSet;

use gridcase_core::deadline::DeadlineState;
use gridcase_core::lifecycle::Action;
use gridcase_core::model::{Millis, Role};
use gridcase_core::phone::queries::CaseList;
use gridcase_core::store::Page;
use gridcase_tests::{Backend, T0, TestPhone, TestServer, new_case};

const MINUTE: Millis = 60_000;
const HOUR: Millis = 60 * MINUTE;
const DAY: Millis = 24 * HOUR;
/// Monday 2026-01-05, 10:00 in China: working days on both sides of it.
const START: Millis = T0 + 4 * DAY + 2 * HOUR;

/// A phone and how far its clock is off the server's.
struct Skewed {
    phone: TestPhone,
    skew: Millis,
}

impl Skewed {
    fn new(server: &TestServer, user: &str, role: Role, skew: Millis, nonce: u8) -> Skewed {
        let token = server.enrol(user, role, "330604101");
        let mut phone = TestPhone::new(server, &token, nonce);
        phone.now = START + skew;
        phone.sync().expect("first sync");
        Skewed { phone, skew }
    }

    /// Sets the phone's clock for the real (server) instant `at`.
    fn at(&mut self, at: Millis) {
        self.phone.now = at + self.skew;
    }

    fn register(&mut self, id: &str, device_time: Millis) {
        let case = new_case(id, "夜间施工噪音", "330604101201");
        self.phone
            .phone
            .create_case(&case, None, device_time)
            .unwrap();
        self.phone
            .phone
            .act(id, &Action::Register, device_time)
            .unwrap();
    }

    fn due(&self, id: &str) -> Option<Millis> {
        self.phone.phone.summary(id).unwrap().unwrap().due_at
    }

    /// The phone's list of cases, as the screen asks for it with the phone's clock at `at`.
    fn list(&mut self, list: CaseList, at: Millis) -> BTreeSet<String> {
        self.at(at);
        let page = self
            .phone
            .phone
            .list(&list, Page::ALL, self.phone.now)
            .unwrap();
        page.cases.into_iter().map(|c| c.case_id).collect()
    }
}

fn server_due(server: &TestServer, id: &str) -> Millis {
    let summary = server
        .store
        .case_summary(id)
        .unwrap()
        .expect("case on the server");
    summary.due_at.expect("a running clock")
}

fn server_list(server: &TestServer, overdue: bool, at: Millis) -> BTreeSet<String> {
    let rows = if overdue {
        server.store.overdue(at, 500).unwrap()
    } else {
        server.store.due_soon(at, 500).unwrap()
    };
    rows.into_iter().map(|c| c.case_id).collect()
}

/// Syncs every phone at the real instant `at`, twice round, so each holds every case.
fn sync_all(server: &TestServer, phones: &mut [Skewed], at: Millis) {
    server.set_time(at);
    for _ in 0..2 {
        for p in phones.iter_mut() {
            p.at(at);
            p.phone.sync().unwrap();
        }
    }
}

/// Every phone agrees with the server on every case's due instant, and on which cases are
/// overdue and due soon at each of `instants`.
fn assert_agree(server: &TestServer, phones: &mut [Skewed], ids: &[&str], instants: &[Millis]) {
    for p in phones.iter_mut() {
        for id in ids {
            assert_eq!(
                p.due(id),
                Some(server_due(server, id)),
                "{id}, skew {}",
                p.skew
            );
        }
        for &at in instants {
            let overdue = server_list(server, true, at);
            let due_soon = server_list(server, false, at);
            assert_eq!(
                p.list(CaseList::Overdue, at),
                overdue,
                "skew {} at {at}",
                p.skew
            );
            assert_eq!(
                p.list(CaseList::DueSoon, at),
                due_soon,
                "skew {} at {at}",
                p.skew
            );
            for id in ids {
                let state = p
                    .phone
                    .phone
                    .deadline(id, p.phone.now)
                    .unwrap()
                    .unwrap()
                    .state;
                let server_state = if overdue.contains(*id) {
                    DeadlineState::Overdue
                } else if due_soon.contains(*id) {
                    DeadlineState::DueSoon
                } else {
                    DeadlineState::OnTime
                };
                assert_eq!(state, server_state, "{id}, skew {} at {at}", p.skew);
            }
        }
    }
}

/// The instants around each due instant, where a phone off by hours or days would differ.
fn around(server: &TestServer, ids: &[&str]) -> Vec<Millis> {
    ids.iter()
        .flat_map(|id| {
            let due = server_due(server, id);
            [due - 2 * HOUR, due - MINUTE, due + MINUTE, due + 2 * DAY]
        })
        .collect()
}

fn skewed_phones_show_the_servers_deadlines(backend: Backend) {
    let server = TestServer::start(backend);
    server.set_time(START);
    let mut phones = vec![
        Skewed::new(&server, "li", Role::GridWorker, 2 * DAY, 1),
        Skewed::new(&server, "wang", Role::GridWorker, -2 * DAY, 2),
        Skewed::new(&server, "zhao", Role::TownshipStaff, 0, 3),
    ];

    // Each worker registers a case at 10:30 real time, stamped by its own clock.
    let registered = START + 30 * MINUTE;
    for (p, id) in phones.iter_mut().zip(["ahead", "behind"]) {
        p.register(id, registered + p.skew);
    }
    sync_all(&server, &mut phones, START + HOUR);
    // The server corrected both by the measured offsets: the same real instant.
    for id in ["ahead", "behind"] {
        let summary = server.store.case_summary(id).unwrap().unwrap();
        assert_eq!(summary.stage_started_at, Some(registered), "{id}");
    }
    // The phones show the server's time on the case screen too.
    for p in phones.iter() {
        for id in ["ahead", "behind"] {
            let case = p.phone.phone.get_case(id).unwrap().case;
            let register = case.timeline.last().unwrap();
            assert_eq!(register.at, registered, "{id}, skew {}", p.skew);
            assert_eq!(case.created_at, registered, "{id}, skew {}", p.skew);
        }
    }
    let ids = ["ahead", "behind"];
    let instants = around(&server, &ids);
    assert_agree(&server, &mut phones, &ids, &instants);

    // Offline after the sync, the phone ahead registers another case: it applies its last
    // measured offset, and shows the due instant the server computes once it syncs.
    let offline = START + 3 * HOUR;
    phones[0].register("offline", offline + 2 * DAY);
    let before = phones[0].due("offline").expect("a running clock");
    sync_all(&server, &mut phones, START + 4 * HOUR);
    assert_eq!(server_due(&server, "offline"), before);
    assert_eq!(phones[0].due("offline"), Some(before));

    // A clock set back 30 days while registering, forward again to sync: the server places the
    // events at the device's previous sync (START + 4h), not a month ago; one set 30 days
    // ahead gets no later than its arrival. Every phone shows what the server vouched for.
    let previous_sync = START + 4 * HOUR;
    phones[1].register("backdated", START + 5 * HOUR - 2 * DAY - 30 * DAY);
    phones[0].register("postdated", START + 5 * HOUR + 2 * DAY + 30 * DAY);
    sync_all(&server, &mut phones, START + 6 * HOUR);
    let started = |id| {
        server
            .store
            .case_summary(id)
            .unwrap()
            .unwrap()
            .stage_started_at
    };
    assert_eq!(started("backdated"), Some(previous_sync));
    assert_eq!(started("postdated"), Some(START + 6 * HOUR));
    for p in phones.iter() {
        let case = p.phone.phone.get_case("backdated").unwrap().case;
        assert_eq!(case.created_at, previous_sync, "skew {}", p.skew);
    }

    let ids = ["ahead", "behind", "offline", "backdated", "postdated"];
    let instants = around(&server, &ids);
    assert_agree(&server, &mut phones, &ids, &instants);

    // A phone restoring now, and every phone that synced along: each shows exactly the times
    // the server holds, though they travel as differences from the times the documents state
    // (protocol 5; far from zero for the skewed, backdated and postdated events).
    phones.push(Skewed::new(&server, "sun", Role::TownshipStaff, HOUR, 4));
    for p in &phones {
        for id in ids {
            assert_shows_trusted_times(&server, p, id);
        }
    }
}

/// The phone shows each of the case's events, and its creation, at the trusted time the
/// server holds for it.
fn assert_shows_trusted_times(server: &TestServer, p: &Skewed, id: &str) {
    let trusted = server.store.trusted_times(id).unwrap();
    let case = p.phone.phone.get_case(id).unwrap().case;
    assert_eq!(
        Some(&case.created_at),
        trusted.get(gridcase_core::sync::CREATED_KEY),
        "{id}, skew {}",
        p.skew
    );
    assert!(!case.timeline.is_empty());
    for event in &case.timeline {
        assert_eq!(
            Some(&event.at),
            trusted.get(&event.id),
            "{id} {}, skew {}",
            event.id,
            p.skew
        );
    }
}

gridcase_server::backend_tests!(skewed_phones_show_the_servers_deadlines,);
