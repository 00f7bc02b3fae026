//! The change feed under concurrent writers, on both backends: a reader paging through it by
//! cursor, exactly as sync responses do, while several threads commit, never skips a change
//! (a change committing late with a smaller sequence number than one already read is the
//! classic gap this guards against). And several devices' syncs run at the same time.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gridcase_core::area::Jurisdiction;
use gridcase_core::model::Role;
use gridcase_core::scope::Scope;
use gridcase_server::DeviceCtx;
use gridcase_server::db::{Commit, DocWrite, Expected, NewChange, Seq};
use gridcase_server::projection::Projection;
use gridcase_server::testing::{Backend, TestDb};

const WRITERS: usize = 4;
const DOCS_PER_WRITER: usize = 120;
/// Feed rows per page: small, so that cursors stop in the middle of concurrent commits.
const PAGE: usize = 7;

fn everything() -> Scope {
    Scope::new(&Jurisdiction::everywhere(), "reader", Role::HotlineCentre)
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
        facts: gridcase_server::rates::CaseFacts {
            case_id: id.into(),
            ..Default::default()
        },
        attachments: Vec::new(),
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

/// A commit judged against a version that another commit replaced is refused, whichever
/// server made the other commit; the document is untouched.
fn a_commit_against_a_replaced_version_is_a_conflict(backend: Backend) {
    let db = TestDb::new(backend);
    let (one, two) = (db.open(), db.open());
    let first = write(0, 0);
    assert!(matches!(
        one.db().commit_doc(&first).unwrap(),
        Commit::Committed { .. }
    ));
    // Both servers create it: the second one loses.
    assert_eq!(two.db().commit_doc(&first).unwrap(), Commit::Conflict);
    let version = one
        .db()
        .read()
        .unwrap()
        .doc("w0-0000")
        .unwrap()
        .unwrap()
        .last_seq;
    let next = |n: u8| DocWrite {
        expected: Expected::At(version),
        changes: vec![NewChange {
            hash: [n; 32],
            bytes: vec![n],
        }],
        snapshot: None,
        ..write(0, 0)
    };
    let Commit::Committed { last_seq } = one.db().commit_doc(&next(100)).unwrap() else {
        panic!("the first commit at the version lands");
    };
    assert_eq!(two.db().commit_doc(&next(101)).unwrap(), Commit::Conflict);
    let stored = two.db().read().unwrap().doc("w0-0000").unwrap().unwrap();
    assert_eq!(stored.last_seq, last_seq);
    assert_eq!(stored.changes, vec![vec![100u8]]);
}

/// Devices pushing notes to one case through two servers at once: every push is accepted (the
/// servers take turns on the case) and the case ends up with every note.
fn pushes_to_one_case_through_two_servers_all_land(backend: Backend) {
    use gridcase_core::doc::CaseDoc;
    use gridcase_core::identity::actor_for;
    use gridcase_core::model::Author;
    use gridcase_core::sync::{DocPush, PushResult, SyncRequest};

    const NOTES: usize = 12;
    let db = TestDb::new(backend);
    // Two server processes share a PostgreSQL database; an SQLite file has one.
    let first = Arc::new(db.open());
    let servers = match backend {
        Backend::Sqlite => [first.clone(), first],
        Backend::Postgres => [first, Arc::new(db.open())],
    };
    let area = Jurisdiction::parse("330604101").unwrap();
    let devices: Vec<DeviceCtx> = (0..4)
        .map(|i| {
            let user = format!("w{i}");
            servers[0]
                .enrol_user(&user, Role::TownshipStaff, &area, 0)
                .unwrap();
            let token = servers[0].enrol_device(&user, 0).unwrap();
            match servers[0].authenticate(&token).unwrap() {
                gridcase_server::Auth::Device(d) => d,
                other => panic!("{other:?}"),
            }
        })
        .collect();
    let author = |d: &DeviceCtx| Author {
        user: d.user_id.clone(),
        device: d.device_id.clone(),
        role: d.role,
    };
    // The case, registered by the first device.
    let new = gridcase_core::model::NewCase {
        id: "shared".into(),
        number: "N-1".into(),
        channel: gridcase_core::model::Channel::Grid,
        case_type: gridcase_core::model::CaseType::Complaint,
        category: "噪音".into(),
        urgency: gridcase_core::model::Urgency::General,
        priority: false,
        title: "夜间施工".into(),
        description: String::new(),
        location: gridcase_core::model::Location {
            address: String::new(),
            area_code: "330604101201".into(),
            gps: None,
        },
    };
    let actor = |d: &DeviceCtx| actor_for(&d.device_id, [1, 2, 3, 4]).unwrap();
    let mut doc = CaseDoc::create(&new, &author(&devices[0]), actor(&devices[0]), 0).unwrap();
    let changes = |raw: &mut automerge::AutoCommit, since: &[automerge::ChangeHash]| {
        raw.get_changes(since)
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect::<Vec<_>>()
    };
    let push = |device: &DeviceCtx, server: &gridcase_server::Store, changes: Vec<Vec<u8>>| {
        let request = SyncRequest {
            pushes: vec![DocPush {
                doc_id: "shared".into(),
                changes,
            }],
            ..Default::default()
        };
        let response = server.sync(device, &request, 1).unwrap();
        assert!(
            matches!(response.results[0], PushResult::Accepted { .. }),
            "{:?}",
            response.results
        );
    };
    push(&devices[0], &servers[0], changes(doc.automerge(), &[]));
    let base = servers[0].load_doc("shared").unwrap().unwrap();
    std::thread::scope(|s| {
        for (i, device) in devices.iter().enumerate() {
            let server = &servers[i % 2];
            let mut base = base.clone();
            s.spawn(move || {
                for n in 0..NOTES {
                    let before = base.get_heads();
                    let mut case =
                        CaseDoc::from_automerge(base.clone().with_actor(actor(device))).unwrap();
                    case.add_note(&format!("{i}-{n}"), &author(device), 2)
                        .unwrap();
                    base = case.into_automerge();
                    push(device, server, changes(&mut base, &before));
                }
            });
        }
    });
    let stored = servers[1].load_doc("shared").unwrap().unwrap();
    let case = CaseDoc::from_automerge(stored).unwrap().read().unwrap();
    assert_eq!(case.notes.len(), devices.len() * NOTES);
    assert_eq!(
        servers[0].audit_count("change").unwrap() as usize,
        1 + devices.len() * NOTES
    );
}

gridcase_server::backend_tests!(
    the_feed_skips_nothing_under_concurrent_writers,
    a_commit_against_a_replaced_version_is_a_conflict,
    pushes_to_one_case_through_two_servers_all_land,
);
