//! A restore document larger than the page budget, received in parts: staged durably page by
//! page (across an app restart), resumed from the next part, verified before it is loaded,
//! and discarded when the server's snapshot changed or the parts do not make it.

use super::*;
use crate::sync::parts::{next_part, snapshot_hash};
use crate::sync::{SnapshotPart, StagedSnapshot};

/// A case whose saved snapshot is well over 30 KB (a 10 KB budget needs several parts): a long description no compressor shrinks.
fn large_case(id: &str, seed: u64) -> Vec<u8> {
    let mut case = new_case(id, "噪音", "330604101201");
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    case.description = (0..20_000)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from_u32(0x4e00 + ((x >> 33) % 3000) as u32).unwrap_or('一')
        })
        .collect();
    let doc = CaseDoc::create(&case, &server_author(), server_actor(), T0).unwrap();
    let snapshot = doc.into_automerge().save();
    assert!(snapshot.len() > 30_000, "{} bytes", snapshot.len());
    snapshot
}

/// A restore page carrying `part`; the restore token moves past the document with its last.
fn page_with(part: SnapshotPart) -> SyncResponse {
    let after = if part.is_last() {
        part.doc_id.clone()
    } else {
        String::new()
    };
    SyncResponse {
        restore: Some(RestoreToken { upto: 9, after }),
        remaining: 1,
        part: Some(part),
        ..response()
    }
}

/// Asks as the shell does, then applies the server's next part of `snapshot` for it.
fn next_page(phone: &Phone, snapshot: &[u8], budget: usize) -> Result<SyncOutcome, PhoneError> {
    let request = phone.build_request(T0, 50).unwrap();
    assert!(request.accept_parts);
    let part = next_part("c1", snapshot, request.staged.as_ref(), budget);
    phone.apply_response(&page_with(part), &request, T0)
}

fn staged(phone: &Phone) -> Option<StagedSnapshot> {
    phone.build_request(T0, 50).unwrap().staged
}

#[test]
fn parts_are_staged_across_a_restart_and_the_assembled_case_is_stored() {
    let (_dir, path, phone) = open();
    let snapshot = large_case("c1", 1);
    let outcome = next_page(&phone, &snapshot, 10_000).unwrap();
    assert_eq!(outcome.part_bytes, 10_000);
    assert!(outcome.more && outcome.received.is_empty());
    assert!(
        loaded(&phone, "c1").is_none(),
        "not loaded before every part arrived"
    );
    // The app restarts: what was staged is still there, and the next request says so.
    drop(phone);
    let phone = Phone::open(&path, TOKEN, NONCE, None).unwrap();
    let held = staged(&phone).expect("staged across a restart");
    assert_eq!((held.doc_id.as_str(), held.have), ("c1", 10_000));
    assert_eq!(held.hash, snapshot_hash(&snapshot));
    let mut pages = 1;
    let mut part_bytes = 10_000;
    loop {
        let outcome = next_page(&phone, &snapshot, 10_000).unwrap();
        pages += 1;
        part_bytes += outcome.part_bytes;
        if !outcome.received.is_empty() {
            assert_eq!(outcome.received, ["c1"]);
            break;
        }
        assert!(pages < 100, "the parts never completed");
    }
    // Each part was fetched once: the page count is the snapshot's length over the budget.
    assert_eq!(pages, snapshot.len().div_ceil(10_000));
    assert_eq!(part_bytes, snapshot.len() as u64);
    assert_eq!(
        staged(&phone),
        None,
        "the staging is emptied once assembled"
    );
    assert_eq!(phone.summary("c1").unwrap().unwrap().title, "噪音");
    assert_eq!(loaded(&phone, "c1").unwrap().doc.save(), snapshot);
}

/// The document changed on the server between two parts: its new snapshot starts again from
/// byte 0 and the old parts are discarded, so the case stored is the new one.
#[test]
fn a_changed_snapshot_replaces_the_stale_staging() {
    let (_dir, _path, phone) = open();
    let old = large_case("c1", 1);
    next_page(&phone, &old, 10_000).unwrap();
    next_page(&phone, &old, 10_000).unwrap();
    let new = large_case("c1", 2);
    let outcome = next_page(&phone, &new, 10_000).unwrap();
    assert_eq!(outcome.part_bytes, 10_000);
    let held = staged(&phone).unwrap();
    assert_eq!((held.hash, held.have), (snapshot_hash(&new), 10_000));
    while next_page(&phone, &new, 10_000).unwrap().received.is_empty() {}
    assert_eq!(loaded(&phone, "c1").unwrap().doc.save(), new);
}

/// Parts that do not make the snapshot they announced are discarded, nothing is loaded and the
/// page is refused (the restore stays before the document, to fetch it again).
#[test]
fn parts_that_do_not_match_their_hash_are_discarded_and_nothing_is_loaded() {
    let (_dir, _path, phone) = open();
    let snapshot = large_case("c1", 1);
    let mut forged = snapshot.clone();
    forged[5] ^= 1;
    let request = phone.build_request(T0, 50).unwrap();
    let mut part = next_part("c1", &forged, None, forged.len());
    part.hash = snapshot_hash(&snapshot);
    let err = phone
        .apply_response(&page_with(part), &request, T0)
        .unwrap_err();
    assert!(err.to_string().contains("hash"), "{err}");
    assert_eq!(staged(&phone), None);
    assert!(loaded(&phone, "c1").is_none());
    assert_eq!(phone.build_request(T0, 50).unwrap().restore, None);
}

/// A repeated part is refused rather than staged twice; a page without a part makes the
/// staging stale (the server sends a document's next part whenever it is next and too large).
#[test]
fn a_repeated_part_is_refused_and_a_page_without_one_discards_the_staging() {
    let (_dir, _path, phone) = open();
    let snapshot = large_case("c1", 1);
    let request = phone.build_request(T0, 50).unwrap();
    let first = next_part("c1", &snapshot, None, 10_000);
    phone
        .apply_response(&page_with(first.clone()), &request, T0)
        .unwrap();
    let again = phone.build_request(T0, 50).unwrap();
    let err = phone
        .apply_response(&page_with(first), &again, T0)
        .unwrap_err();
    assert!(err.to_string().contains("does not continue"), "{err}");
    assert_eq!(staged(&phone).unwrap().have, 10_000);
    phone.apply_response(&response(), &again, T0).unwrap();
    assert_eq!(staged(&phone), None);
}
