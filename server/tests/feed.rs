//! The change feed under concurrent writers, on both backends: a reader paging through it by
//! cursor, exactly as sync responses do, while several threads commit, never skips a change
//! (a change committing late with a smaller sequence number than one already read is the
//! classic gap this guards against). And several devices' syncs run at the same time.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gridcase_core::area::Jurisdiction;
use gridcase_core::model::Role;
use gridcase_server::DeviceCtx;
use gridcase_server::db::{Commit, DocWrite, Expected, NewChange, Seq};
use gridcase_server::projection::Projection;
use gridcase_server::scope::Scope;
use gridcase_server::testing::{Backend, TestDb};

const WRITERS: usize = 4;
const DOCS_PER_WRITER: usize = 120;
/// Feed rows per page: small, so that cursors stop in the middle of concurrent commits.
const PAGE: usize = 7;

fn everything() -> Scope {
    Scope::of(&DeviceCtx {
        device_id: "reader".into(),
        user_id: "reader".into(),
        role: Role::HotlineCentre,
        jurisdiction: Jurisdiction::everywhere(),
    })
}

fn projection(id: &str) -> Projection {
    Projection {
        case_id: id.into(),
        number: id.into(),
        title: String::new(),
        category: String::new(),
        status: "registered".into(),
        case_type: "complaint".into(),
        urgency: "general".into(),
        priority: false,
        area_code: "330604101201".into(),
        scope_area: Some("330604101201".into()),
        assignee: String::new(),
        responsible_unit: String::new(),
        stage: None,
        stage_started_at: None,
        due_at: None,
        due_provisional: false,
        calendar_version: String::new(),
        paused: false,
        needs_review: false,
    }
}

/// A new document of 1 to 3 (opaque) change rows.
fn write(writer: usize, i: usize) -> DocWrite {
    let id = format!("w{writer}-{i:04}");
    let changes = (0..=(i % 3))
        .map(|k| {
            let mut hash = [0u8; 32];
            hash[..4].copy_from_slice(&[writer as u8, (i >> 8) as u8, i as u8, k as u8]);
            NewChange {
                hash,
                bytes: hash.to_vec(),
            }
        })
        .collect();
    DocWrite {
        doc_id: id.clone(),
        case_id: id.clone(),
        is_pii: false,
        expected: Expected::Absent,
        changes,
        author_device: Some(format!("writer-{writer}")),
        heads: vec![0; 32],
        snapshot: Some(Vec::new()),
        event_times: vec![],
        projection: Some(projection(&id)),
        holder: None,
        supervision: None,
        audit: vec![],
        now: 0,
    }
}

/// One page as a sync response reads it: the rows after `cursor`, and the new cursor (past the
/// head once the rows run out). Returns (sequence numbers read, new cursor, more to come).
fn page(store: &gridcase_server::Store, scope: &Scope, cursor: Seq) -> (Vec<Seq>, Seq, bool) {
    let mut view = store.db().read().unwrap();
    let head = view.feed_head().unwrap();
    let rows = view.feed(scope, "reader", cursor, PAGE + 1).unwrap();
    let more = rows.len() > PAGE;
    let seqs: Vec<Seq> = rows.iter().take(PAGE).map(|r| r.seq).collect();
    let mut covered = seqs.last().copied().unwrap_or(cursor);
    if !more {
        covered = covered.max(head);
    }
    (seqs, covered, more)
}

fn the_feed_skips_nothing_under_concurrent_writers(backend: Backend) {
    let db = TestDb::new(backend);
    let store = Arc::new(db.open());
    let scope = everything();
    let writers_done = AtomicBool::new(false);
    let (read, pages) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut read = BTreeSet::new();
            let mut cursor = 0;
            let mut pages = 0;
            loop {
                let finished = writers_done.load(Ordering::SeqCst);
                let (seqs, next, more) = page(&store, &scope, cursor);
                pages += 1;
                for seq in seqs {
                    assert!(read.insert(seq), "{seq} read twice");
                }
                cursor = next;
                if finished && !more {
                    return (read, pages);
                }
            }
        });
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = &store;
                s.spawn(move || {
                    for i in 0..DOCS_PER_WRITER {
                        let outcome = store.db().commit_doc(&write(w, i)).unwrap();
                        assert!(matches!(outcome, Commit::Committed { .. }));
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        writers_done.store(true, Ordering::SeqCst);
        reader.join().unwrap()
    });
    let all: BTreeSet<Seq> = store
        .db()
        .read()
        .unwrap()
        .feed(&scope, "reader", 0, usize::MAX / 2)
        .unwrap()
        .into_iter()
        .map(|r| r.seq)
        .collect();
    let expected_rows: usize = (0..DOCS_PER_WRITER).map(|i| i % 3 + 1).sum::<usize>() * WRITERS;
    assert_eq!(all.len(), expected_rows);
    let skipped: Vec<&Seq> = all.difference(&read).collect();
    assert!(
        skipped.is_empty(),
        "{backend:?}: the cursor moved past {} committed changes ({pages} pages read), e.g. {:?}",
        skipped.len(),
        &skipped[..skipped.len().min(20)]
    );
}

gridcase_server::backend_tests!(the_feed_skips_nothing_under_concurrent_writers);
