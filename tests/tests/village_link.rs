//! Restore and incremental sync over a village link (the real server behind a loopback proxy
//! that adds latency, caps bandwidth and cuts connections): they finish, converge, and fetch
//! what was stored only once. Bounded: tens of cases, a minute at most.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gridcase_bindings::http::HttpTransport;
use gridcase_core::lifecycle::Action;
use gridcase_core::model::Role;
use gridcase_core::phone::{PhoneError, Transport, TransportError};
use gridcase_core::sync::wire::decode_response;
use gridcase_tests::link::{LinkShape, VillageLink};
use gridcase_tests::{Backend, TestPhone, TestServer, new_case};

const AREA: &str = "330604101";

/// A server holding `n` cases a grid worker registered, and that worker's phone.
fn server_with_cases(n: usize) -> (TestServer, TestPhone) {
    let server = TestServer::start(Backend::Sqlite);
    let mut li = TestPhone::enrolled(&server, "li", Role::GridWorker, AREA, 1);
    for i in 0..n {
        create(&li, &format!("case-{i:04}"), i);
    }
    li.sync().unwrap();
    (server, li)
}

/// A registered case whose title and description differ from every other's (as real ones do:
/// identical texts would compress to nothing and never fill a page).
fn create(phone: &TestPhone, id: &str, seed: usize) {
    let mut case = new_case(id, &varied_text(seed, 12), "330604101201");
    case.description = varied_text(seed * 7 + 3, 160);
    phone.phone.create_case(&case, None, phone.now).unwrap();
    phone.phone.act(id, &Action::Register, phone.now).unwrap();
}

/// `len` CJK characters from a seeded linear congruential generator.
fn varied_text(seed: usize, len: usize) -> String {
    let mut x = (seed as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from_u32(0x4e00 + ((x >> 33) % 3000) as u32).unwrap_or('一')
        })
        .collect()
}

/// A township phone whose every exchange goes through `link`, counting the documents of the
/// responses that arrived whole.
struct LinkedPhone {
    phone: TestPhone,
    transport: Counting,
}

struct Counting {
    inner: HttpTransport,
    docs: usize,
    /// The parts of snapshots that arrived, as (document, offset, length).
    parts: Vec<(String, u64, usize)>,
}

impl Transport for Counting {
    fn exchange(&mut self, body: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        let answer = self.inner.exchange(body)?;
        if let Ok(response) = decode_response(&answer) {
            self.docs += response.docs.len();
            if let Some(p) = response.part {
                self.parts.push((p.doc_id, p.offset, p.bytes.len()));
            }
        }
        Ok(answer)
    }
}

impl LinkedPhone {
    fn sync(&mut self) -> Result<(), PhoneError> {
        self.phone.sync_with(&mut self.transport, 200).map(drop)
    }

    fn docs_received(&self) -> usize {
        self.transport.docs
    }

    fn cases_in(&self, area: &str) -> Vec<String> {
        self.phone.cases_in(area)
    }
}

fn phone_behind(
    server: &TestServer,
    link: &VillageLink,
    user: &str,
    role: Role,
    nonce: u8,
) -> LinkedPhone {
    let token = server.enrol(user, role, AREA);
    LinkedPhone {
        phone: TestPhone::new(server, &token, nonce),
        transport: Counting {
            inner: HttpTransport::new(&link.url, &token),
            docs: 0,
            parts: Vec::new(),
        },
    }
}

/// Syncs as an app does on a bad link: again after each failure, until done or out of time.
fn sync_until_done(phone: &mut LinkedPhone, deadline: Duration) -> u32 {
    let started = Instant::now();
    let mut failures = 0;
    loop {
        match phone.sync() {
            Ok(_) => return failures,
            Err(e) => {
                assert_eq!(e.code(), "network", "{e}");
                failures += 1;
                assert!(started.elapsed() < deadline, "no progress: {e}");
            }
        }
    }
}

#[test]
fn a_restore_finishes_through_a_link_that_cuts_every_connection_after_10_kb() {
    let (server, mut li) = server_with_cases(120);
    let link = VillageLink::start(
        &server.url,
        LinkShape {
            rtt: Duration::from_millis(300),
            bits_per_second: 2_000_000,
            cut_after: Some(10_000),
        },
    );
    let mut wang = phone_behind(&server, &link, "wang", Role::TownshipStaff, 2);
    sync_until_done(&mut wang, Duration::from_secs(90));
    assert_eq!(wang.cases_in(AREA).len(), 120);
    assert!(!wang.phone.phone.sync_status().unwrap().restoring);
    assert!(
        link.cuts.load(Ordering::Relaxed) > 0,
        "the link must have cut"
    );
    let restore_bytes = link.bytes_down.load(Ordering::Relaxed);
    // Every document arrived exactly once: a stored page is not fetched again.
    assert_eq!(wang.docs_received(), 120);
    // What cuts waste (the part of a response before the cut) is bounded: the link carried
    // less than three times what a restore over a good link takes.
    let token = server.enrol("zhao", Role::TownshipStaff, AREA);
    let mut direct = TestPhone::new(&server, &token, 3);
    let direct_bytes = direct.sync().unwrap().progress.bytes_received;
    assert!(
        restore_bytes < 3 * direct_bytes,
        "{restore_bytes} bytes through the link, {direct_bytes} direct"
    );

    // Nothing stored is fetched again: a second sync with nothing new is tiny.
    sync_until_done(&mut wang, Duration::from_secs(30));
    let idle = link.bytes_down.load(Ordering::Relaxed) - restore_bytes;
    assert!(idle < 2_000, "a nothing-new sync took {idle} bytes");

    // A day's offline work uploaded over the same link: 60 new cases are more than one
    // connection carries, so they go in several requests. Everyone converges.
    let mut zhou = phone_behind(&server, &link, "zhou", Role::GridWorker, 4);
    sync_until_done(&mut zhou, Duration::from_secs(60));
    for i in 0..60 {
        create(&zhou.phone, &format!("later-{i:03}"), 1000 + i);
    }
    let before = link.cuts.load(Ordering::Relaxed);
    sync_until_done(&mut zhou, Duration::from_secs(90));
    assert_eq!(zhou.phone.phone.sync_status().unwrap().pending_docs, 0);
    sync_until_done(&mut wang, Duration::from_secs(90));
    li.sync().unwrap();
    assert_eq!(wang.cases_in(AREA).len(), 180);
    assert_eq!(wang.cases_in(AREA), li.cases_in(AREA));
    assert_eq!(zhou.cases_in(AREA), li.cases_in(AREA));
    eprintln!(
        "60 cases uploaded and fetched through the link: {} more cuts",
        link.cuts.load(Ordering::Relaxed) - before
    );
    eprintln!(
        "restore of 120 cases through a 10 KB-cut link: {restore_bytes} bytes down \
         ({direct_bytes} direct), {} cuts",
        link.cuts.load(Ordering::Relaxed)
    );
}

#[test]
fn a_restore_finishes_over_50_kbit_with_600_ms_rtt() {
    let (server, _li) = server_with_cases(25);
    let link = VillageLink::start(
        &server.url,
        LinkShape {
            rtt: Duration::from_millis(600),
            bits_per_second: 50_000,
            cut_after: None,
        },
    );
    let mut wang = phone_behind(&server, &link, "wang", Role::TownshipStaff, 2);
    let started = Instant::now();
    let failures = sync_until_done(&mut wang, Duration::from_secs(60));
    assert_eq!(failures, 0);
    assert_eq!(wang.cases_in(AREA).len(), 25);
    eprintln!(
        "restore of 25 cases at 50 kbit/s, 600 ms: {:?}, {} bytes",
        started.elapsed(),
        link.bytes_down.load(Ordering::Relaxed)
    );
}

/// A registered case of more than 100 KB (a long description and twenty long notes).
fn create_big(phone: &TestPhone, id: &str) {
    let mut case = new_case(id, &varied_text(1, 12), "330604101201");
    case.description = varied_text(11, 30_000);
    phone.phone.create_case(&case, None, phone.now).unwrap();
    phone.phone.act(id, &Action::Register, phone.now).unwrap();
    for n in 0..20 {
        let note = varied_text(100 + n, 1_000);
        phone.phone.add_note(id, &note, phone.now).unwrap();
    }
}

/// Parts arrived back to back, none twice: they cover `doc_id`'s snapshot exactly once.
/// Returns the snapshot's length.
fn assert_parts_cover_once(parts: &[(String, u64, usize)], doc_id: &str) -> usize {
    let snapshot: usize = parts.iter().map(|(_, _, len)| len).sum();
    assert!(snapshot > 100_000, "the case is {snapshot} bytes");
    let mut next = 0;
    for (part_doc, offset, len) in parts {
        assert_eq!(
            (part_doc.as_str(), *offset),
            (doc_id, next as u64),
            "{parts:?}"
        );
        next += len;
    }
    assert!(parts.len() > 10, "{} parts", parts.len());
    snapshot
}

/// A case of more than 100 KB (a long description and many notes): no response that holds it
/// whole gets through a link that cuts every connection after 10 KB. It comes in parts, each
/// staged as it arrives, none fetched twice once it arrived, and the restore converges.
#[test]
fn a_case_larger_than_the_link_carries_restores_in_parts() {
    let server = TestServer::start(Backend::Sqlite);
    let mut li = TestPhone::enrolled(&server, "li", Role::GridWorker, AREA, 1);
    create_big(&li, "big-0001");
    for i in 0..5 {
        create(&li, &format!("case-{i:04}"), i);
    }
    li.sync().unwrap();
    let link = VillageLink::start(
        &server.url,
        LinkShape {
            rtt: Duration::from_millis(300),
            bits_per_second: 2_000_000,
            cut_after: Some(10_000),
        },
    );
    let mut wang = phone_behind(&server, &link, "wang", Role::TownshipStaff, 2);
    let started = Instant::now();
    sync_until_done(&mut wang, Duration::from_secs(120));
    let took = started.elapsed();
    assert_eq!(wang.cases_in(AREA), li.cases_in(AREA));
    assert_eq!(wang.cases_in(AREA).len(), 6);
    let got = wang.phone.phone.get_case("big-0001").unwrap().case;
    let sent = li.phone.get_case("big-0001").unwrap().case;
    assert_eq!(got.description, sent.description);
    assert_eq!(got.notes.len(), 20);
    assert_eq!(got.notes, sent.notes);

    let parts = &wang.transport.parts;
    let snapshot = assert_parts_cover_once(parts, "big-0001");
    // The small cases came whole, each once.
    assert_eq!(wang.docs_received(), 5);
    let restore_bytes = link.bytes_down.load(Ordering::Relaxed);
    let cuts = link.cuts.load(Ordering::Relaxed);
    assert!(cuts > 0, "the link must have cut");
    // What cuts waste is bounded: a cut response carries at most the 10 KB before the cut.
    let token = server.enrol("zhao", Role::TownshipStaff, AREA);
    let mut direct = TestPhone::new(&server, &token, 3);
    let direct_bytes = direct.sync().unwrap().progress.bytes_received;
    assert!(
        restore_bytes < direct_bytes + (cuts + parts.len() as u64) * 2_000 + cuts * 10_000,
        "{restore_bytes} bytes through the link, {direct_bytes} direct, {cuts} cuts"
    );
    eprintln!(
        "restore of a {snapshot}-byte case and 5 others through a 10 KB-cut link: \
         {took:?}, {restore_bytes} bytes down ({direct_bytes} direct), {} parts, {cuts} cuts",
        parts.len()
    );
}

/// A large case new to a phone that already restored (created after its restore): the change
/// feed would send it whole, which never gets through a link that cuts after 10 KB. It comes
/// in parts too, each once; the feed's cursor moves past it only with the last part, and the
/// case's later changes and the other new cases follow as usual.
#[test]
fn a_large_case_new_to_the_phone_comes_through_the_feed_in_parts() {
    let (server, mut li) = server_with_cases(3);
    let link = VillageLink::start(
        &server.url,
        LinkShape {
            rtt: Duration::from_millis(300),
            bits_per_second: 2_000_000,
            cut_after: Some(10_000),
        },
    );
    let mut wang = phone_behind(&server, &link, "wang", Role::TownshipStaff, 2);
    sync_until_done(&mut wang, Duration::from_secs(60));
    assert_eq!(wang.cases_in(AREA).len(), 3);
    assert!(wang.transport.parts.is_empty());

    create_big(&li, "big-0002");
    for i in 0..3 {
        create(&li, &format!("after-{i:04}"), 500 + i);
    }
    li.sync().unwrap();
    li.phone.add_note("big-0002", "已到现场", li.now).unwrap();
    li.sync().unwrap();
    let (bytes_before, cuts_before) = (
        link.bytes_down.load(Ordering::Relaxed),
        link.cuts.load(Ordering::Relaxed),
    );
    let started = Instant::now();
    sync_until_done(&mut wang, Duration::from_secs(120));
    let took = started.elapsed();
    assert_eq!(wang.cases_in(AREA), li.cases_in(AREA));
    assert_eq!(wang.cases_in(AREA).len(), 7);
    let got = wang.phone.phone.get_case("big-0002").unwrap().case;
    let sent = li.phone.get_case("big-0002").unwrap().case;
    assert_eq!(got.description, sent.description);
    assert_eq!(got.notes, sent.notes);
    assert_eq!(got.notes.len(), 21);
    let snapshot = assert_parts_cover_once(&wang.transport.parts, "big-0002");
    let cuts = link.cuts.load(Ordering::Relaxed) - cuts_before;
    assert!(cuts > 0, "the link must have cut");
    // Nothing is left to fetch: the next sync is tiny.
    let fed = link.bytes_down.load(Ordering::Relaxed) - bytes_before;
    sync_until_done(&mut wang, Duration::from_secs(30));
    let idle = link.bytes_down.load(Ordering::Relaxed) - bytes_before - fed;
    assert!(idle < 2_000, "a nothing-new sync took {idle} bytes");
    eprintln!(
        "feed of a {snapshot}-byte new case and 3 others through a 10 KB-cut link: {took:?}, \
         {fed} bytes down, {} parts, {cuts} cuts",
        wang.transport.parts.len()
    );
}
