//! A restore's next page is asked for while the phone stores the current one, and a page's
//! documents are loaded and read on several threads: the store ends the same as one page and
//! one document at a time, a cut of the early request loses nothing and fetches nothing twice,
//! and a page that fails to store drops what was fetched meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::sync::compact;

/// A restore page of `ids`, each a case the server registered (every other one sent compact,
/// as protocol 4 does), with `after` naming the restore's position when more pages follow.
fn restore_page(ids: &[String], after: Option<&str>, remaining: u64) -> SyncResponse {
    let mut resp = response();
    resp.docs = ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let saved = server_case(id, &format!("案件{id}")).save();
            let bytes = if n % 2 == 0 {
                compact::strip(&saved).unwrap()
            } else {
                saved
            };
            DocUpdate {
                doc_id: id.clone(),
                payload: Payload::Snapshot(bytes),
                heads: Vec::new(),
            }
        })
        .collect();
    resp.restore = after.map(|a| RestoreToken {
        upto: 40,
        after: a.into(),
    });
    resp.cursor = if after.is_some() { 0 } else { 40 };
    resp.remaining = remaining;
    resp
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:02}")).collect()
}

fn script(answers: Vec<Result<SyncResponse, TransportError>>) -> Script {
    Script {
        answers: answers.into(),
        sent: Vec::new(),
    }
}

fn sync(phone: &Phone, script: &mut Script) -> Result<SyncSummary, PhoneError> {
    phone.sync(script, T0, &mut |_| {}, &AtomicBool::new(false), 50)
}

fn after(request: &SyncRequest) -> Option<&str> {
    request.restore.as_ref().map(|t| t.after.as_str())
}

/// Forty cases in one page (worked through on several threads) leave the store exactly as
/// forty pages of one case each (worked through one by one).
#[test]
fn a_page_worked_in_parallel_stores_what_one_document_at_a_time_stores() {
    let cases = ids("c", 40);
    let (_dir, _path, at_once) = open();
    let request = at_once.build_request(T0, 50).unwrap();
    let page = restore_page(&cases, None, 0);
    let outcome = at_once.apply_response(&page, &request, T0).unwrap();
    assert_eq!(outcome.received.len(), 40);

    let (_dir, _path, one_by_one) = open();
    for update in page.docs.clone() {
        let single = SyncResponse {
            docs: vec![update],
            ..page.clone()
        };
        one_by_one.apply_response(&single, &request, T0).unwrap();
    }
    let stored = dump(at_once.app().conn(), &[]);
    assert!(stored.iter().filter(|r| r.starts_with("cases:")).count() == 40);
    assert_eq!(stored, dump(one_by_one.app().conn(), &[]));
}

/// Tells when a page was stored (the listeners hear it right after the commit).
#[derive(Default)]
struct Stored(AtomicBool);

impl ChangeListener for Stored {
    fn cases_changed(&self, _: &CaseChanges) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Answers the second request only once the first page is stored: without asking early, the
/// phone would store the page only after this answer, and the wait would time out.
struct WaitsForTheStore {
    stored: Arc<Stored>,
    script: Script,
    stored_while_asked: bool,
}

impl Transport for WaitsForTheStore {
    fn exchange(&mut self, request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        if self.script.sent.len() == 1 {
            let started = Instant::now();
            while !self.stored.0.load(Ordering::SeqCst)
                && started.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.stored_while_asked = self.stored.0.load(Ordering::SeqCst);
        }
        self.script.exchange(request)
    }
}

#[test]
fn the_next_page_is_asked_for_while_this_one_is_stored() {
    let (_dir, _path, phone) = open();
    let stored = Arc::new(Stored::default());
    phone.add_listener(stored.clone());
    let mut transport = WaitsForTheStore {
        stored,
        script: script(vec![
            Ok(restore_page(&ids("a", 20), Some("a19"), 20)),
            Ok(restore_page(&ids("b", 20), None, 0)),
        ]),
        stored_while_asked: false,
    };
    let summary = phone
        .sync(&mut transport, T0, &mut |_| {}, &AtomicBool::new(false), 50)
        .unwrap();
    assert!(
        transport.stored_while_asked,
        "page 1 was stored during the exchange of page 2"
    );
    assert_eq!(summary.pages, 2);
    assert_eq!(summary.progress.cases_received, 40);
    assert_eq!(after(&transport.script.sent[1]), Some("a19"));
    assert_eq!(count(&phone, CaseList::All), 40);
    assert_eq!(phone.build_request(T0, 1).unwrap().cursor, 40);
}

/// The request sent early is cut: the same page is asked for again (at half the bytes, from
/// the position the stored page left), and every document arrives once.
#[test]
fn a_cut_during_a_prefetched_page_loses_nothing_and_fetches_nothing_twice() {
    let (_dir, _path, phone) = open();
    let mut script = script(vec![
        Ok(restore_page(&ids("a", 3), Some("a2"), 5)),
        Err(TransportError::Network("cut".into())),
        Ok(restore_page(&ids("b", 3), Some("b2"), 2)),
        Ok(restore_page(&ids("c", 2), None, 0)),
    ]);
    let summary = sync(&phone, &mut script).unwrap();
    let asked: Vec<_> = script.sent.iter().map(after).collect();
    assert_eq!(asked, [None, Some("a2"), Some("a2"), Some("b2")]);
    assert_eq!(script.sent[2].page_bytes, script.sent[1].page_bytes / 2);
    assert_eq!(summary.pages, 3);
    assert_eq!(summary.progress.cases_received, 8, "each document once");
    assert_eq!(count(&phone, CaseList::All), 8);
    assert!(!phone.sync_status().unwrap().restoring);
}

/// A page that fails to store fails the sync; the page fetched meanwhile is dropped, and the
/// next sync resumes after the last page stored.
#[test]
fn a_page_that_fails_to_store_drops_the_page_fetched_meanwhile() {
    let (_dir, _path, phone) = open();
    let mut broken = restore_page(&ids("b", 2), Some("b1"), 2);
    broken.docs[1].payload = Payload::Snapshot(vec![0, 1, 2]);
    let mut first = script(vec![
        Ok(restore_page(&ids("a", 2), Some("a1"), 4)),
        Ok(broken),
        Ok(restore_page(&ids("c", 2), None, 0)),
    ]);
    assert!(sync(&phone, &mut first).is_err());
    assert_eq!(first.sent.len(), 3, "the third page was asked for early");
    assert_eq!(
        count(&phone, CaseList::All),
        2,
        "only the first page is stored"
    );
    assert!(phone.summary("c00").unwrap().is_none());
    let status = phone.sync_status().unwrap();
    assert!(status.restoring);
    assert!(status.last_error.is_some());

    let mut again = script(vec![
        Ok(restore_page(&ids("b", 2), Some("b1"), 2)),
        Ok(restore_page(&ids("c", 2), None, 0)),
    ]);
    sync(&phone, &mut again).unwrap();
    assert_eq!(after(&again.sent[0]), Some("a1"));
    assert_eq!(count(&phone, CaseList::All), 6);
}
