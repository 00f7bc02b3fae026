//! Store tests: migrations, durability, compaction, projection queries. Helpers here are shared
//! with the phone's tests.

use super::*;
use crate::doc::CaseDoc;
use crate::lifecycle::Action;
use crate::model::*;
use crate::phone::Phone;
use crate::sync::Identity;
use docs::*;
use meta::get as meta_get;
use projection::Rules;
use queries::{CaseFilter, Page};

pub(crate) const DEVICE: &str = "0123456789abcdef0123456789abcdef";
pub(crate) const TOKEN: &str = "0123456789abcdef0123456789abcdef.s3cretS3cretS3cret";
pub(crate) const T0: Millis = 1_736_150_400_000; // 2025-01-06 08:00 China time, a Monday

pub(crate) fn worker() -> Author {
    Author {
        user: "li".into(),
        device: DEVICE.into(),
        role: Role::GridWorker,
    }
}

pub(crate) fn identity() -> Identity {
    Identity {
        user: "li".into(),
        device: DEVICE.into(),
        role: "grid_worker".into(),
        jurisdiction: "330604101".into(),
    }
}

pub(crate) fn new_case(id: &str, title: &str, area: &str) -> NewCase {
    NewCase {
        id: id.into(),
        number: format!("GC-{id}"),
        channel: Channel::Grid,
        case_type: CaseType::Complaint,
        category: "市场监管".into(),
        urgency: Urgency::General,
        priority: false,
        title: title.into(),
        description: "早上五点卸货噪音大".into(),
        location: Location {
            address: "城关镇一村".into(),
            area_code: area.into(),
            gps: None,
        },
    }
}

pub(crate) fn actor() -> automerge::ActorId {
    crate::identity::actor_for(DEVICE, [1, 2, 3, 4]).unwrap()
}

/// Every row of every table, as text, for "nothing changed" comparisons. `skip_meta` leaves
/// out meta keys whose change is expected.
pub(crate) fn dump(conn: &Connection, skip_meta: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for table in ["meta", "docs", "doc_changes", "cases", "refetch"] {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let columns = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                let mut line = format!("{table}:");
                for i in 0..columns {
                    let v: rusqlite::types::Value = r.get(i)?;
                    line.push_str(&format!(" {v:?}"));
                }
                Ok(line)
            })
            .unwrap();
        for row in rows {
            let row = row.unwrap();
            if skip_meta
                .iter()
                .any(|k| row.starts_with(&format!("meta: Text(\"{k}\")")))
            {
                continue;
            }
            out.push(row);
        }
    }
    out.sort();
    out
}

pub(crate) fn temp() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    (dir, path)
}

#[test]
fn a_new_store_is_at_the_latest_version_in_wal_mode() {
    let (_dir, path) = temp();
    let store = Store::open(&path, None).unwrap();
    assert_eq!(store.schema_version().unwrap(), schema::latest_version());
    let mode: String = store
        .conn()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(store);
    // Opening again applies nothing and keeps the version.
    assert_eq!(
        Store::open(&path, None).unwrap().schema_version().unwrap(),
        schema::latest_version()
    );
}

#[test]
fn a_v1_database_is_migrated_and_its_rows_reprojected() {
    let (_dir, path) = temp();
    // Build a v1 database by hand: the first migration only, with one registered case in it.
    let mut doc = CaseDoc::create(
        &new_case("c1", "噪音", "330604101201"),
        &worker(),
        actor(),
        T0,
    )
    .unwrap();
    doc.act(&Action::Register, &worker(), T0 + 1_000).unwrap();
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(schema::MIGRATIONS[0].sql).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO docs (doc_id, snapshot, updated_at, pending) VALUES ('c1', ?1, 5, 1)",
            [doc.save()],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO cases (case_id, number, title, status, case_type, urgency, priority,
                area_code, assignee, responsible_unit, created_by, needs_review, updated_at)
             VALUES ('c1', 'GC-c1', '噪音', 'registered', 'complaint', 'general', 0,
                '330604101201', '', '', 'li', 0, 5)",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('device_id', ?1)",
            [DEVICE],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('actor_nonce', '01020304')",
            [],
        )
        .unwrap();
    }
    let store = Store::open(&path, None).unwrap();
    assert_eq!(store.schema_version().unwrap(), schema::latest_version());
    let conn = store.conn();
    let indexes: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name LIKE 'cases_%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 6);
    assert_eq!(meta_get(conn, REPROJECT_KEY).unwrap().as_deref(), Some("1"));
    // The old row is there, without the new deadline columns yet.
    let started: Option<i64> = conn
        .query_row(
            "SELECT stage_started_at FROM cases WHERE case_id = 'c1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(started, None);
    drop(store);

    // The phone recomputes the rows on open and clears the flag.
    let phone = Phone::open(&path, TOKEN, [9, 9, 9, 9], None).unwrap();
    let summary = phone.summary("c1").unwrap().unwrap();
    assert_eq!(summary.stage.as_deref(), Some("route"));
    assert!(summary.due_at.is_some());
    assert_eq!(
        summary.updated_at, 5,
        "reprojection keeps when the row last changed"
    );
    drop(phone);
    let store = Store::open(&path, None).unwrap();
    assert_eq!(meta_get(store.conn(), REPROJECT_KEY).unwrap(), None);
    let started: Option<i64> = store
        .conn()
        .query_row(
            "SELECT stage_started_at FROM cases WHERE case_id = 'c1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(started, Some(T0 + 1_000));
}

#[test]
fn a_newer_database_is_refused() {
    let (_dir, path) = temp();
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let latest = schema::latest_version();
    assert!(matches!(
        Store::open(&path, None),
        Err(StoreError::TooNew {
            found: 99,
            supported
        }) if supported == latest
    ));
}

fn change_rows(conn: &Connection, doc_id: &str) -> i64 {
    conn.query_row(
        "SELECT COUNT(*) FROM doc_changes WHERE doc_id = ?1",
        [doc_id],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn changes_are_appended_then_compacted_and_the_document_stays_equal() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path, None).unwrap();
    let mut doc = CaseDoc::create(
        &new_case("c1", "噪音", "330604101201"),
        &worker(),
        actor(),
        T0,
    )
    .unwrap();
    {
        let tx = store.write().unwrap();
        persist(&tx, "c1", doc.automerge(), None, &[], T0).unwrap();
        tx.commit().unwrap();
    }
    for i in 0..(COMPACT_AFTER + 8) {
        // Each round loads from the store, as the phone does, and appends one change.
        let tx = store.write().unwrap();
        let loaded = load_doc(&tx, "c1", &actor()).unwrap().unwrap();
        let mut stored = CaseDoc::from_automerge(loaded.doc).unwrap();
        stored
            .splice_description(0, 0, &format!("{i}"), &worker(), T0 + i)
            .unwrap();
        doc.splice_description(0, 0, &format!("{i}"), &worker(), T0 + i)
            .unwrap();
        let written = persist(
            &tx,
            "c1",
            stored.automerge(),
            Some(&loaded.persisted),
            &[],
            T0 + i,
        )
        .unwrap();
        assert!(written);
        let rows = change_rows(&tx, "c1");
        if i < COMPACT_AFTER {
            assert_eq!(rows, i + 1, "appended, not yet compacted");
        } else {
            assert!(rows <= COMPACT_AFTER, "compacted: {rows} rows");
        }
        tx.commit().unwrap();
    }
    assert_eq!(
        change_rows(store.conn(), "c1"),
        7,
        "compacted at 33, then 7 more appended"
    );
    let mut loaded = load_doc(store.conn(), "c1", &actor()).unwrap().unwrap();
    let mut heads = loaded.doc.get_heads();
    heads.sort();
    let mut expected = doc.heads();
    expected.sort();
    assert_eq!(heads, expected);
    let reread = CaseDoc::from_automerge(loaded.doc).unwrap().read().unwrap();
    assert_eq!(reread, doc.read().unwrap());
    assert!(
        loaded.state.pending,
        "nothing was acknowledged by the server"
    );
    // Nothing new: nothing written.
    let tx = store.write().unwrap();
    let before = dump(&tx, &[]);
    let mut again = load_doc(&tx, "c1", &actor()).unwrap().unwrap();
    assert!(
        !persist(
            &tx,
            "c1",
            &mut again.doc,
            Some(&again.persisted),
            &[],
            T0 + 99
        )
        .unwrap()
    );
    assert_eq!(dump(&tx, &[]), before);
}

fn project(store: &mut Store, new: NewCase, actions: &[(Action, Author)], at: Millis) -> Case {
    let mut doc = CaseDoc::create(&new, &worker(), actor(), at).unwrap();
    for (i, (action, author)) in actions.iter().enumerate() {
        doc.act(action, author, at + 1 + i as i64).unwrap();
    }
    let case = doc.read().unwrap();
    let tx = store.write().unwrap();
    persist(&tx, &new.id, doc.automerge(), None, &[], at).unwrap();
    projection::upsert(&tx, &case, &Rules::default(), at).unwrap();
    tx.commit().unwrap();
    case
}

fn ids(conn: &Connection, filter: CaseFilter) -> Vec<String> {
    let page = queries::list(conn, &filter, Page::ALL).unwrap();
    assert_eq!(page.next_offset, None);
    assert_eq!(
        queries::count(conn, &filter).unwrap(),
        page.cases.len() as u64
    );
    page.cases.into_iter().map(|s| s.case_id).collect()
}

#[test]
fn lists_come_from_the_projection() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path, None).unwrap();
    let staff = Author {
        user: "wang".into(),
        device: DEVICE.into(),
        role: Role::TownshipStaff,
    };
    let register = (Action::Register, worker());
    let dispatch = (
        Action::Dispatch {
            unit: "市场监管所".into(),
            assignee: "zhao".into(),
        },
        staff.clone(),
    );
    let a = project(
        &mut store,
        new_case("a", "菜市场噪音", "330604101201"),
        &[],
        T0,
    );
    let b = project(
        &mut store,
        new_case("b", "路灯不亮 100%", "330604101202"),
        std::slice::from_ref(&register),
        T0 + 10,
    );
    let mut other = new_case("c", "占道经营", "330604102001");
    other.id = "c".into();
    let c = project(&mut store, other, &[register.clone(), dispatch], T0 + 20);
    assert_eq!(a.status, Status::Draft);
    assert_eq!(c.status, Status::Dispatched);
    let conn = store.conn();

    // Mine: created by li (all three) or assigned to zhao (c).
    assert_eq!(
        ids(conn, CaseFilter::Mine { user: "li".into() }),
        ["c", "b", "a"]
    );
    assert_eq!(
        ids(
            conn,
            CaseFilter::Mine {
                user: "zhao".into()
            }
        ),
        ["c"]
    );
    assert!(
        ids(
            conn,
            CaseFilter::Mine {
                user: "nobody".into()
            }
        )
        .is_empty()
    );

    assert_eq!(ids(conn, CaseFilter::Status(Status::Draft)), ["a"]);
    assert_eq!(ids(conn, CaseFilter::Status(Status::Registered)), ["b"]);

    assert_eq!(ids(conn, CaseFilter::Area("330604101".into())), ["a", "b"]);
    assert_eq!(ids(conn, CaseFilter::Area("330604102".into())), ["c"]);
    assert_eq!(ids(conn, CaseFilter::Area("3306".into())), ["a", "b", "c"]);
    assert_eq!(ids(conn, CaseFilter::Area("330604101201".into())), ["a"]);
    assert!(ids(conn, CaseFilter::Area("33060410120".into())).len() == 2);

    assert_eq!(ids(conn, CaseFilter::Search("噪音".into())), ["a"]);
    assert_eq!(ids(conn, CaseFilter::Search("100%".into())), ["b"]);
    assert!(
        ids(conn, CaseFilter::Search("0%0".into())).is_empty(),
        "% is literal"
    );
    assert_eq!(ids(conn, CaseFilter::Search("GC-c".into())), ["c"]);

    // Deadlines: a draft has no clock; b (route stage) and c (sign stage) do.
    let rules = Rules::default();
    assert_eq!(
        projection::due_columns(&a, &rules),
        projection::DueColumns::default()
    );
    let due_b = projection::due_columns(&b, &rules);
    let due_c = projection::due_columns(&c, &rules);
    let (b_start, b_due) = (due_b.stage_started_at.unwrap(), due_b.due_at.unwrap());
    let c_due = due_c.due_at.unwrap();
    assert!(due_b.calendar_version.is_some());
    let summary_b = queries::get(conn, "b").unwrap().unwrap();
    assert_eq!(summary_b.due_at, Some(b_due));
    assert_eq!(summary_b.stage.as_deref(), Some("route"));

    assert!(ids(conn, CaseFilter::Overdue { now: b_start }).is_empty());
    assert!(
        ids(
            conn,
            CaseFilter::DueSoon {
                now: b_start,
                fraction: 0.8
            }
        )
        .is_empty()
    );
    let ninety = b_start + (b_due - b_start) * 9 / 10;
    let soon = ids(
        conn,
        CaseFilter::DueSoon {
            now: ninety,
            fraction: 0.8,
        },
    );
    assert!(soon.contains(&"b".to_string()), "{soon:?}");
    assert!(!ids(conn, CaseFilter::Overdue { now: ninety }).contains(&"b".to_string()));
    let late = b_due.max(c_due) + 1;
    assert_eq!(ids(conn, CaseFilter::Overdue { now: late }).len(), 2);
    assert!(
        ids(
            conn,
            CaseFilter::DueSoon {
                now: late,
                fraction: 0.8
            }
        )
        .is_empty()
    );
}

#[test]
fn heads_round_trip_through_blobs() {
    let mut doc = CaseDoc::create(
        &new_case("c1", "噪音", "330604101201"),
        &worker(),
        actor(),
        T0,
    )
    .unwrap();
    let heads = doc.heads();
    assert_eq!(
        heads_from_blob("c1", &heads_to_blob(&heads)).unwrap(),
        heads
    );
    assert!(heads_from_blob("c1", &[1, 2, 3]).is_err());
    assert!(heads_from_blob("c1", &[]).unwrap().is_empty());
}

#[test]
fn lists_page_with_offset_and_limit() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path, None).unwrap();
    for i in 0..7 {
        project(
            &mut store,
            new_case(&format!("p{i}"), "路灯不亮", "330604101201"),
            &[],
            T0 + i,
        );
    }
    let conn = store.conn();
    let all = CaseFilter::Area("330604101".into());
    let mut seen = Vec::new();
    let mut page = Page::first(3);
    loop {
        let got = queries::list(conn, &all, page).unwrap();
        assert!(got.cases.len() <= 3);
        seen.extend(got.cases.into_iter().map(|c| c.case_id));
        match got.next_offset {
            Some(next) => page.offset = next,
            None => break,
        }
    }
    assert_eq!(seen, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
    let past = queries::list(
        conn,
        &all,
        Page {
            offset: 7,
            limit: 3,
        },
    )
    .unwrap();
    assert!(past.cases.is_empty() && past.next_offset.is_none());
    let exact = queries::list(
        conn,
        &all,
        Page {
            offset: 4,
            limit: 3,
        },
    )
    .unwrap();
    assert_eq!((exact.cases.len(), exact.next_offset), (3, None));
    // Most recent first, ties broken by id.
    let recent = queries::list(conn, &CaseFilter::Status(Status::Draft), Page::first(2)).unwrap();
    let ids: Vec<&str> = recent.cases.iter().map(|c| c.case_id.as_str()).collect();
    assert_eq!(
        (ids.as_slice(), recent.next_offset),
        (&["p6", "p5"][..], Some(2))
    );
}

/// The server's times replace the phone's in the projection; an unvouched event takes the last
/// measured offset; a case's times leave with it and with a wipe.
#[test]
fn vouched_times_drive_the_projection_and_leave_with_the_case() {
    use crate::sync::{CREATED_KEY, CaseTimes, EventTime};
    let (_dir, path) = temp();
    let mut store = Store::open(&path, None).unwrap();
    let mut doc = CaseDoc::create(
        &new_case("c1", "噪音", "330604101201"),
        &worker(),
        actor(),
        T0,
    )
    .unwrap();
    doc.act(&Action::Register, &worker(), T0 + 1_000).unwrap();
    let case = doc.read().unwrap();
    let register = case.timeline[0].id.clone();
    let started = |store: &Store| -> Option<i64> {
        store
            .conn()
            .query_row(
                "SELECT stage_started_at FROM cases WHERE case_id = 'c1'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    let tx = store.write().unwrap();
    let position = meta::SyncPosition::default();
    let page = |offset| meta::PageRecord {
        position: &position,
        synced_at: T0,
        clock_offset: offset,
    };
    meta::record_page(&tx, &page(500)).unwrap();
    projection::upsert(&tx, &case, &Rules::default(), T0).unwrap();
    tx.commit().unwrap();
    // Not vouched for yet: the phone's time plus the last measured offset.
    assert_eq!(started(&store), Some(T0 + 1_500));

    let tx = store.write().unwrap();
    let vouched = CaseTimes {
        case_id: "c1".into(),
        times: vec![
            EventTime {
                event: CREATED_KEY.into(),
                at: T0 - 7,
            },
            EventTime {
                event: register,
                at: T0 + 200,
            },
        ],
    };
    times::store(&tx, std::slice::from_ref(&vouched)).unwrap();
    times::store(&tx, &[vouched]).unwrap();
    projection::upsert(&tx, &case, &Rules::default(), T0).unwrap();
    let shown = times::vouched(&tx, &case).unwrap();
    assert_eq!(shown.created_at, T0 - 7);
    assert_eq!(shown.timeline[0].at, T0 + 200);
    assert_eq!(times::server_now(&tx, T0).unwrap(), T0 + 500);
    tx.commit().unwrap();
    assert_eq!(started(&store), Some(T0 + 200));

    let tx = store.write().unwrap();
    times::delete(&tx, "c1").unwrap();
    assert!(times::load(&tx, "c1").unwrap().is_empty());
    times::store(
        &tx,
        &[CaseTimes {
            case_id: "c2".into(),
            times: vec![EventTime {
                event: CREATED_KEY.into(),
                at: 1,
            }],
        }],
    )
    .unwrap();
    tx.commit().unwrap();
    store.wipe().unwrap();
    assert!(times::load(store.conn(), "c2").unwrap().is_empty());
}

/// A phone upgraded to the schema with trusted times restores once, to get every case's times.
#[test]
fn the_upgrade_to_trusted_times_restores_once() {
    let (_dir, path) = temp();
    {
        let conn = Connection::open(&path).unwrap();
        for step in &schema::MIGRATIONS[..3] {
            conn.execute_batch(step.sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        meta::set(&conn, "cursor", "42").unwrap();
    }
    let store = Store::open(&path, None).unwrap();
    assert_eq!(store.schema_version().unwrap(), schema::latest_version());
    assert_eq!(meta::sync_position(store.conn()).unwrap().cursor, 0);
}

#[test]
fn holds_all_answers_from_the_change_graph_and_not_for_queued_changes() {
    use automerge::transaction::Transactable;
    let mut doc = automerge::AutoCommit::new();
    doc.put(automerge::ROOT, "a", 1).unwrap();
    doc.commit();
    let first = doc.get_heads();
    doc.put(automerge::ROOT, "a", 2).unwrap();
    doc.commit();
    let second = doc.get_heads();
    assert!(holds_all(&mut doc, &first));
    assert!(holds_all(&mut doc, &second));
    assert!(holds_all(&mut doc, &[]));
    assert!(!holds_all(&mut doc, &[automerge::ChangeHash([7; 32])]));
    // A change whose dependency is missing waits in the queue: not held.
    let changes = doc.get_changes(&[]);
    let mut partial = automerge::AutoCommit::new();
    partial.apply_changes(vec![changes[1].clone()]).unwrap();
    assert!(!holds_all(&mut partial, &second));
    partial.apply_changes(vec![changes[0].clone()]).unwrap();
    assert!(holds_all(&mut partial, &second));
}
