//! Trusted times as protocol 5 sends them (`gridcase_core::sync::times::block`): each relative
//! to the time its event states, read from the store beside the trusted time without loading a
//! document. Times stored before the server kept stated times (SQLite step 11, PostgreSQL step
//! 8 leave them NULL) go as exact instants. Either way a phone placing the block against the
//! documents it received gets exactly the times the old list carried.

use std::collections::BTreeMap;

use automerge::AutoCommit;
use gridcase_core::doc::CaseDoc;
use gridcase_core::model::{Case, Millis};
use gridcase_core::sync::times::block::At;
use gridcase_core::sync::{CaseTimes, Payload, SyncRequest, SyncResponse};
use gridcase_server::testing::{Backend, TestDb};
use gridcase_server::{Auth, DeviceCtx, Store, demo};

const NOW: Millis = 1_767_225_600_000;

fn hotline(store: &Store) -> DeviceCtx {
    let token = store.enrol_device("hotline", NOW).unwrap();
    match store.authenticate(&token).unwrap() {
        Auth::Device(device) => device,
        other => panic!("{other:?}"),
    }
}

/// Every page of a first sync (whole snapshots), asking for times as a block or as a list.
fn restore(store: &Store, device: &DeviceCtx, compact_times: bool) -> Vec<SyncResponse> {
    let mut request = SyncRequest {
        device_time: NOW,
        page_size: 40,
        compact_times,
        ..Default::default()
    };
    let mut pages = Vec::new();
    loop {
        let response = store.sync(device, &request, NOW).unwrap();
        request.restore = response.restore.clone();
        request.cursor = response.cursor;
        let done = response.restore.is_none();
        pages.push(response);
        if done {
            return pages;
        }
    }
}

/// The cases the pages carried, read from their snapshots.
fn cases(pages: &[SyncResponse]) -> BTreeMap<String, Case> {
    let mut cases = BTreeMap::new();
    for update in pages.iter().flat_map(|p| &p.docs) {
        let Payload::Snapshot(bytes) = &update.payload else {
            panic!("a restore sends snapshots")
        };
        if update.doc_id.contains('#') {
            continue;
        }
        let doc = CaseDoc::from_automerge(AutoCommit::load(bytes).unwrap()).unwrap();
        cases.insert(update.doc_id.clone(), doc.read().unwrap());
    }
    cases
}

fn blocks_place_every_time_as_the_list_does(backend: Backend) {
    let db = TestDb::new(backend);
    let store = db.open();
    demo::fill(&store, 30, 1, NOW).unwrap();
    // Five cases' times as a database upgraded from before the stated times has them.
    db.execute(
        "UPDATE event_times SET stated = NULL WHERE case_id IN
         (SELECT case_id FROM cases ORDER BY case_id LIMIT 5)",
    );
    let device = hotline(&store);

    let listed = restore(&store, &device, false);
    let expected: Vec<CaseTimes> = listed.iter().flat_map(|p| p.times.clone()).collect();
    assert!(listed.iter().all(|p| p.compact_times.is_none()));
    assert_eq!(expected.len(), 30);

    let pages = restore(&store, &device, true);
    assert!(pages.iter().all(|p| p.times.is_empty()));
    let held = cases(&pages);
    let (mut exact, mut relative) = (0, 0);
    let mut placed = Vec::new();
    for page in &pages {
        let block = page
            .compact_times
            .clone()
            .expect("a block for a phone that asked");
        for pending in block.into_pending().unwrap() {
            for (_, at) in &pending.times {
                match at {
                    At::Exact(_) => exact += 1,
                    At::Stated(_) => relative += 1,
                }
            }
            placed.push(pending.resolve(&held[&pending.case_id]));
        }
    }
    assert_eq!(placed, expected);
    // The upgraded rows went as instants, the others relative to their events' stated times.
    assert!(
        exact >= 5 && relative > exact,
        "{exact} exact, {relative} relative"
    );
}

gridcase_server::backend_tests!(blocks_place_every_time_as_the_list_does,);
