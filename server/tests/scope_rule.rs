//! The scope rule has one definition in Rust (`Scope::covers`) and one in SQL (`Scope::sql`);
//! this property test runs both over the same random cases on each backend: restore pages, the
//! feed, their counts and evictions select exactly the documents the Rust rule covers.

use gridcase_core::area::Jurisdiction;
use gridcase_core::model::Role;
use gridcase_core::scope::CaseScope;
use gridcase_server::DeviceCtx;
use gridcase_server::db::{Commit, DocWrite, Expected, NewChange, SyncRecord};
use gridcase_server::projection::Projection;
use gridcase_server::testing::{Backend, TestDb};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const DEVICE: &str = "0123456789abcdef0123456789abcdef";

fn area() -> impl Strategy<Value = String> {
    prop_oneof![
        // Valid codes under a few prefixes, so that jurisdictions match some.
        (
            prop::sample::select(vec!["330604101", "330604102", "330605001", "110101001"]),
            0u32..1000
        )
            .prop_map(|(township, village)| format!("{township}{village:03}")),
        // Malformed: short, long, letters, no province, empty, a LIKE wildcard.
        Just(String::new()),
        Just("3306041".to_owned()),
        Just("3306041012010".to_owned()),
        Just("33060410120x".to_owned()),
        Just("000604101201".to_owned()),
        Just("33060410_201".to_owned()),
        Just("33060410%201".to_owned()),
    ]
}

fn case() -> impl Strategy<Value = (String, String)> {
    (
        area(),
        prop::sample::select(vec!["", "u1", "u2"]).prop_map(str::to_owned),
    )
}

fn scope() -> impl Strategy<Value = (String, String, Role)> {
    (
        prop::sample::select(vec![
            "",
            "33",
            "3306",
            "330604",
            "330604101",
            "330604101201",
            "330604102",
            "11",
        ]),
        prop::sample::select(vec!["u1", "u2", "u3"]),
        prop::sample::select(vec![Role::GridWorker, Role::HandlingUnit]),
    )
        .prop_map(|(p, u, r)| (p.to_owned(), u.to_owned(), r))
}

fn projection(id: &str, area_code: &str, assignee: &str) -> Projection {
    Projection {
        case_id: id.into(),
        number: id.into(),
        title: String::new(),
        category: String::new(),
        status: "registered".into(),
        case_type: "complaint".into(),
        urgency: "general".into(),
        priority: false,
        area_code: area_code.into(),
        scope_area: gridcase_core::scope::scope_area(area_code),
        assignee: assignee.into(),
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

/// A document with one (opaque) change row; a case document carries the projection.
fn write(doc_id: &str, case: Option<&(String, String)>, n: u8) -> DocWrite {
    let (case_id, is_pii) = gridcase_core::doc::split_doc_id(doc_id);
    DocWrite {
        doc_id: doc_id.into(),
        case_id: case_id.into(),
        is_pii,
        expected: Expected::Absent,
        changes: vec![NewChange {
            hash: [n; 32],
            bytes: vec![n],
        }],
        author_device: None,
        heads: vec![n; 32],
        snapshot: Some(vec![]),
        event_times: vec![],
        projection: case.map(|(area, assignee)| projection(case_id, area, assignee)),
        holder: None,
        supervision: None,
        audit: vec![],
        now: 0,
    }
}

fn sql_and_rust_agree(backend: Backend) {
    let mut runner = TestRunner::new(Config {
        cases: 8,
        ..Config::default()
    });
    let strategy = (
        prop::collection::vec(case(), 1..40),
        prop::collection::vec(scope(), 1..8),
    );
    runner
        .run(&strategy, |(cases, scopes)| {
            check(backend, &cases, &scopes);
            Ok(())
        })
        .unwrap();
}

fn check(backend: Backend, cases: &[(String, String)], scopes: &[(String, String, Role)]) {
    let db = TestDb::new(backend);
    let store = db.open();
    let mut docs: Vec<(String, CaseScope)> = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let id = format!("c{i:03}");
        let pii = format!("{id}#pii");
        for (doc_id, projection, n) in [(&id, Some(case), 2 * i), (&pii, None, 2 * i + 1)] {
            let outcome = store
                .db()
                .commit_doc(&write(doc_id, projection, n as u8))
                .unwrap();
            assert!(matches!(outcome, Commit::Committed { .. }));
            docs.push((doc_id.clone(), CaseScope::new(&case.0, &case.1)));
        }
    }
    store
        .db()
        .record_sync(&SyncRecord {
            device_id: DEVICE.into(),
            holds_added: docs.iter().map(|(id, _)| id.clone()).collect(),
            ..Default::default()
        })
        .unwrap();
    for (prefix, user, role) in scopes {
        let device = DeviceCtx {
            device_id: DEVICE.into(),
            user_id: user.clone(),
            role: *role,
            jurisdiction: Jurisdiction::parse(prefix).unwrap(),
        };
        let scope = device.scope();
        let mut covered: Vec<String> = docs
            .iter()
            .filter(|(id, case)| scope.covers_doc(id, case))
            .map(|(id, _)| id.clone())
            .collect();
        covered.sort();
        let mut outside: Vec<String> = docs
            .iter()
            .filter(|(id, case)| !scope.covers_doc(id, case))
            .map(|(id, _)| id.clone())
            .collect();
        outside.sort();
        let mut view = store.db().read().unwrap();
        let what = format!("{backend:?} scope {prefix:?}/{user}/{role}");
        assert_eq!(
            view.restore_ids(&scope, "", 10_000).unwrap(),
            covered,
            "{what}"
        );
        assert_eq!(
            view.restore_docs_after(&scope, "").unwrap(),
            covered.len() as u64,
            "{what}"
        );
        let mut fed: Vec<String> = view
            .feed(&scope, "other", 0, 10_000)
            .unwrap()
            .into_iter()
            .map(|r| r.doc_id)
            .collect();
        fed.sort();
        assert_eq!(fed, covered, "{what}");
        assert_eq!(
            view.feed_docs_after(&scope, 0).unwrap(),
            covered.len() as u64,
            "{what}"
        );
        assert_eq!(
            view.held_outside(DEVICE, &scope, 0).unwrap(),
            outside,
            "{what}"
        );
        // Since a position: only among cases committed after it.
        let head = view.feed_head().unwrap();
        assert!(view.held_outside(DEVICE, &scope, head).unwrap().is_empty());
        let recent = view.held_outside(DEVICE, &scope, 1).unwrap();
        assert!(recent.iter().all(|d| outside.contains(d)), "{what}");
        for (id, case) in &docs {
            let stored = view
                .case_scope(gridcase_core::doc::split_doc_id(id).0)
                .unwrap();
            assert_eq!(stored.as_ref(), Some(case), "{id}");
        }
    }
}

gridcase_server::backend_tests!(sql_and_rust_agree);
