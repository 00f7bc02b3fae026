use super::*;
use proptest::prelude::*;

fn actor(n: u8) -> ActorId {
    ActorId::from(vec![n; 16])
}

fn author(user: &str, role: Role) -> Author {
    Author {
        user: user.into(),
        device: format!("{user}-phone"),
        role,
    }
}

fn new_case() -> NewCase {
    NewCase {
        id: "case-1".into(),
        number: "GC-20250106-0001".into(),
        channel: Channel::Grid,
        case_type: CaseType::Complaint,
        category: "市场监管".into(),
        urgency: Urgency::General,
        priority: false,
        title: "菜市场噪音".into(),
        description: "早上五点卸货噪音大".into(),
        location: Location {
            address: "城关镇一村".into(),
            area_code: "330604101201".into(),
            gps: Some((30.0, 120.5)),
        },
    }
}

fn fork(doc: &mut CaseDoc, n: u8) -> CaseDoc {
    let mut am = doc.automerge().fork();
    am.set_actor(actor(n));
    CaseDoc::from_automerge(am).unwrap()
}

#[test]
fn create_and_read_back() {
    let worker = author("li", Role::GridWorker);
    let mut doc = CaseDoc::create(&new_case(), &worker, actor(1), 1_000).unwrap();
    let case = doc.read().unwrap();
    assert_eq!(case.title, "菜市场噪音");
    assert_eq!(case.status, Status::Draft);
    assert_eq!(case.location.gps, Some((30.0, 120.5)));
    assert_eq!(case.created_by, worker);
    assert_eq!(case.schema_version, SCHEMA_VERSION);
    // The change records who and when.
    let changes = doc.automerge().get_changes(&[]);
    assert_eq!(changes.len(), 1);
    assert_eq!(change_author(&changes[0]), Some(worker));
    assert_eq!(changes[0].timestamp(), 1_000);
}

#[test]
fn create_rejects_bad_area_and_empty_title() {
    let worker = author("li", Role::GridWorker);
    let mut bad = new_case();
    bad.location.area_code = "3306".into();
    assert!(matches!(
        CaseDoc::create(&bad, &worker, actor(1), 0),
        Err(DocError::Area(_))
    ));
    let mut untitled = new_case();
    untitled.title = "  ".into();
    assert!(matches!(
        CaseDoc::create(&untitled, &worker, actor(1), 0),
        Err(DocError::Empty("title"))
    ));
}

#[test]
fn refused_action_changes_nothing() {
    let worker = author("li", Role::GridWorker);
    let mut doc = CaseDoc::create(&new_case(), &worker, actor(1), 0).unwrap();
    let heads = doc.heads();
    let err = doc.act(&Action::Close, &worker, 1).unwrap_err();
    assert!(err.to_string().contains("may not close"), "{err}");
    assert_eq!(doc.heads(), heads);
    let err = doc
        .edit(&FieldEdit::Assignee("wang".into()), &worker, 1)
        .unwrap_err();
    assert!(matches!(err, DocError::FieldNotEditable { .. }));
    assert_eq!(doc.heads(), heads);
}

#[test]
fn closed_case_is_immutable_until_reopened() {
    let worker = author("li", Role::GridWorker);
    let staff = author("zhao", Role::TownshipStaff);
    let mut doc = CaseDoc::create(&new_case(), &worker, actor(1), 0).unwrap();
    for (action, who) in [
        (Action::Register, &worker),
        (Action::Start, &worker),
        (
            Action::Reply {
                text: "已协调".into(),
            },
            &worker,
        ),
        (Action::Approve, &staff),
        (
            Action::FollowUp {
                solved: true,
                satisfaction: Satisfaction::Satisfied,
            },
            &worker,
        ),
        (Action::Close, &staff),
    ] {
        doc.act(&action, who, 10).unwrap();
    }
    assert_eq!(doc.read().unwrap().status, Status::Closed);
    assert!(matches!(
        doc.set_description("changed", &worker, 11),
        Err(DocError::Closed)
    ));
    assert!(matches!(
        doc.add_note("late", &worker, 11),
        Err(DocError::Closed)
    ));
    let case = doc
        .act(
            &Action::Reopen {
                reason: "回访不满意".into(),
            },
            &staff,
            12,
        )
        .unwrap();
    assert_eq!(case.status, Status::Reopened);
    assert_eq!(
        case.follow_up,
        Some(FollowUpResult {
            solved: true,
            satisfaction: Satisfaction::Satisfied
        })
    );
}

#[test]
fn concurrent_description_edits_keep_both() {
    let worker = author("li", Role::GridWorker);
    let staff = author("zhao", Role::TownshipStaff);
    let mut a = CaseDoc::create(&new_case(), &worker, actor(1), 0).unwrap();
    let mut b = fork(&mut a, 2);
    a.splice_description(0, 0, "【紧急】", &worker, 1).unwrap();
    let len = b.read().unwrap().description.chars().count();
    b.splice_description(len, 0, "，居民多次反映", &staff, 1)
        .unwrap();
    a.merge(&mut b).unwrap();
    b.merge(&mut a).unwrap();
    let text = a.read().unwrap().description;
    assert_eq!(text, "【紧急】早上五点卸货噪音大，居民多次反映");
    assert_eq!(b.read().unwrap().description, text);
}

#[test]
fn set_description_merges_as_a_diff() {
    let worker = author("li", Role::GridWorker);
    let mut a = CaseDoc::create(&new_case(), &worker, actor(1), 0).unwrap();
    let mut b = fork(&mut a, 2);
    a.set_description("今天早上五点卸货噪音大", &worker, 1)
        .unwrap();
    b.set_description("早上五点卸货噪音大。已联系市场", &worker, 1)
        .unwrap();
    a.merge(&mut b).unwrap();
    assert_eq!(
        a.read().unwrap().description,
        "今天早上五点卸货噪音大。已联系市场"
    );
}

#[test]
fn conflicting_offline_actions_are_kept_and_flagged() {
    let worker = author("li", Role::GridWorker);
    let staff = author("zhao", Role::TownshipStaff);
    let unit = author("water", Role::HandlingUnit);
    let mut a = CaseDoc::create(&new_case(), &worker, actor(1), 0).unwrap();
    a.act(&Action::Register, &worker, 1).unwrap();
    a.act(
        &Action::Dispatch {
            unit: "水务站".into(),
            assignee: "".into(),
        },
        &staff,
        2,
    )
    .unwrap();
    a.act(&Action::Sign, &unit, 3).unwrap();
    let mut b = fork(&mut a, 2);
    // Offline: A starts and replies; B asks for the order to be returned.
    a.act(&Action::Start, &unit, 4).unwrap();
    a.act(
        &Action::Reply {
            text: "已修复".into(),
        },
        &unit,
        5,
    )
    .unwrap();
    b.act(
        &Action::RequestReturn {
            reason: "非本单位职责".into(),
        },
        &unit,
        4,
    )
    .unwrap();
    let mut ab = a.clone();
    ab.merge(&mut b).unwrap();
    let mut ba = b.clone();
    ba.merge(&mut a).unwrap();
    let x = ab.read().unwrap();
    let y = ba.read().unwrap();
    assert_eq!(x, y);
    assert!(x.needs_review);
    assert_eq!(x.timeline.len(), 6, "both sides' actions are kept");
    assert!(x.timeline.iter().any(|e| e.conflicted));
    assert!(
        x.timeline
            .iter()
            .any(|e| matches!(e.action, Action::Reply { .. }))
    );
    assert!(
        x.timeline
            .iter()
            .any(|e| matches!(e.action, Action::RequestReturn { .. }))
    );
    // A person resolves it.
    let resolved = ab
        .act(
            &Action::ResolveConflict {
                status: Status::Replied,
            },
            &staff,
            9,
        )
        .unwrap();
    assert!(!resolved.needs_review);
    assert_eq!(resolved.status, Status::Replied);
}

#[test]
fn notes_attachments_and_dispatch_fields() {
    let worker = author("li", Role::GridWorker);
    let staff = author("zhao", Role::TownshipStaff);
    let mut doc = CaseDoc::create(&new_case(), &worker, actor(1), 0).unwrap();
    doc.act(&Action::Register, &worker, 1).unwrap();
    doc.act(
        &Action::Dispatch {
            unit: "市场监管所".into(),
            assignee: "wang".into(),
        },
        &staff,
        2,
    )
    .unwrap();
    let note_id = doc.add_note("已电话联系", &worker, 3).unwrap();
    doc.add_attachment(&"ab".repeat(32), "image/jpeg", 2048, "现场照片", &worker, 4)
        .unwrap();
    assert!(
        doc.add_attachment("xyz", "image/jpeg", 1, "", &worker, 4)
            .is_err()
    );
    let case = doc.read().unwrap();
    assert_eq!(case.responsible_unit, "市场监管所");
    assert_eq!(case.assignee, "wang");
    assert_eq!(case.notes[0].id, note_id);
    assert_eq!(case.attachments[0].size, 2048);
    assert_eq!(case.status_since(), 2);
}

#[test]
fn save_and_load_round_trip() {
    let worker = author("li", Role::GridWorker);
    let mut doc = CaseDoc::create(&new_case(), &worker, actor(1), 0).unwrap();
    doc.act(&Action::Register, &worker, 1).unwrap();
    let bytes = doc.save();
    let loaded = CaseDoc::load(&bytes, actor(1)).unwrap();
    assert_eq!(loaded.read().unwrap(), doc.read().unwrap());
    assert!(CaseDoc::load(b"not automerge", actor(1)).is_err());
}

/// Builds a document as schema 1 wrote it: urgency was a boolean `urgent`.
fn v1_document() -> Vec<u8> {
    let worker = author("li", Role::GridWorker);
    let mut doc = CaseDoc::create(&new_case(), &worker, actor(1), 0).unwrap();
    let am = doc.automerge();
    am.put(ROOT, "schema_version", 1u64).unwrap();
    am.delete(ROOT, "urgency").unwrap();
    am.put(ROOT, "urgent", true).unwrap();
    am.commit();
    am.save()
}

#[test]
fn old_schema_is_upgraded_and_replicas_agree() {
    let bytes = v1_document();
    let mut a = CaseDoc::load(&bytes, actor(2)).unwrap();
    let mut b = CaseDoc::load(&bytes, actor(3)).unwrap();
    assert_eq!(a.read().unwrap().urgency, Urgency::Urgent);
    assert_eq!(a.read().unwrap().schema_version, SCHEMA_VERSION);
    a.merge(&mut b).unwrap();
    let merged = a.read().unwrap();
    assert_eq!(merged.urgency, Urgency::Urgent);
    assert_eq!(merged.schema_version, SCHEMA_VERSION);
}

#[test]
fn newer_schema_is_refused() {
    let worker = author("li", Role::GridWorker);
    let mut doc = CaseDoc::create(&new_case(), &worker, actor(1), 0).unwrap();
    doc.automerge()
        .put(ROOT, "schema_version", SCHEMA_VERSION + 1)
        .unwrap();
    let bytes = doc.save();
    assert!(matches!(
        CaseDoc::load(&bytes, actor(2)),
        Err(DocError::TooNew { .. })
    ));
}

#[test]
fn personal_data_is_separate_and_masked() {
    let worker = author("li", Role::GridWorker);
    let unit = author("water", Role::HandlingUnit);
    let c = Complainant {
        name: "张三".into(),
        phone: "13812341234".into(),
        anonymous: false,
    };
    let doc = PersonalDoc::create(&c, &worker, actor(1), 0).unwrap();
    assert_eq!(doc.read(), c);
    assert!(PersonalDoc::create(&c, &unit, actor(2), 0).is_err());
    let mut doc = doc;
    doc.record_reveal(&worker, 5).unwrap();
    assert_eq!(doc.reveals(), vec![(worker.clone(), 5)]);
    assert!(doc.record_reveal(&unit, 6).is_err());
    assert_eq!(mask_phone("13812341234"), "138****1234");
    assert_eq!(mask_phone("12345"), "*****");
    assert_eq!(personal_doc_id("c1"), "c1#pii");
    assert_eq!(split_doc_id("c1#pii"), ("c1", true));
    assert_eq!(split_doc_id("c1"), ("c1", false));
}

/// One random operation a replica may perform offline.
#[derive(Debug, Clone)]
enum Op {
    Act(usize, u8),
    Edit(u8),
    Splice(usize, usize, String),
    Note(String),
    Sync(usize),
}

const ACTIONS: &[fn() -> Action] = &[
    || Action::Register,
    || Action::Start,
    || Action::Dispatch {
        unit: "u".into(),
        assignee: "a".into(),
    },
    || Action::Sign,
    || Action::Reply { text: "r".into() },
    || Action::Approve,
    || Action::Reject {
        reason: "no".into(),
    },
    || Action::FollowUp {
        solved: true,
        satisfaction: Satisfaction::Satisfied,
    },
    || Action::Close,
    || Action::RequestReturn { reason: "x".into() },
    || Action::ApproveReturn,
    || Action::RequestExtension {
        days: 3,
        reason: "x".into(),
    },
    || Action::GrantExtension { days: 3 },
    || Action::Supervise {
        level: 1,
        reason: "x".into(),
    },
    || Action::Reopen { reason: "x".into() },
    || Action::ResolveConflict {
        status: Status::InProgress,
    },
];

const ROLES: &[Role] = &[Role::GridWorker, Role::TownshipStaff, Role::HandlingUnit];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..ACTIONS.len(), 0..3u8).prop_map(|(a, r)| Op::Act(a, r)),
        2 => (0..4u8).prop_map(Op::Edit),
        2 => (0..40usize, 0..3usize, "[a-c中文]{0,3}").prop_map(|(p, d, s)| Op::Splice(p, d, s)),
        1 => "[a-z]{1,4}".prop_map(Op::Note),
        2 => (0..3usize).prop_map(Op::Sync),
    ]
}

fn apply(doc: &mut CaseDoc, op: &Op, replica: usize, t: Millis) {
    let who = |r: u8| Author {
        user: format!("u{replica}"),
        device: format!("d{replica}"),
        role: ROLES[r as usize % ROLES.len()],
    };
    // Refused operations are fine: they must change nothing, which the convergence check covers.
    let _ = match op {
        Op::Act(a, r) => doc.act(&ACTIONS[*a](), &who(*r), t).map(|_| ()),
        Op::Edit(k) => {
            let edit = match k {
                0 => FieldEdit::Title(format!("t{replica}-{t}")),
                1 => FieldEdit::Urgency(Urgency::Urgent),
                2 => FieldEdit::Category(format!("c{t}")),
                _ => FieldEdit::AddRelated(format!("r{replica}")),
            };
            doc.edit(&edit, &who(1), t)
        }
        Op::Splice(p, d, s) => doc.splice_description(*p, *d, s, &who(0), t),
        Op::Note(text) => doc.add_note(text, &who(0), t).map(|_| ()),
        Op::Sync(_) => Ok(()),
    };
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Three replicas edit and act concurrently, syncing pairwise now and then; merged in any
    /// order they end identical, including the state derived from the timeline.
    #[test]
    fn three_replicas_converge(
        ops in proptest::collection::vec((0..3usize, op()), 1..40),
        order in Just([0usize, 1, 2]).prop_shuffle(),
    ) {
        let worker = author("li", Role::GridWorker);
        let mut origin = CaseDoc::create(&new_case(), &worker, actor(9), 0).unwrap();
        let mut replicas: Vec<CaseDoc> = (0..3).map(|i| fork(&mut origin, i as u8 + 1)).collect();
        for (t, (who, op)) in ops.iter().enumerate() {
            if let Op::Sync(other) = op {
                if other != who {
                    let mut peer = replicas[*other].clone();
                    replicas[*who].merge(&mut peer).unwrap();
                }
                continue;
            }
            apply(&mut replicas[*who], op, *who, t as Millis + 1);
        }
        let mut merged: Vec<Case> = Vec::new();
        for start in 0..3 {
            let first = order[start];
            let mut acc = replicas[first].clone();
            for &i in order.iter().cycle().skip(start + 1).take(2) {
                let mut other = replicas[i].clone();
                acc.merge(&mut other).unwrap();
            }
            merged.push(acc.read().unwrap());
        }
        prop_assert_eq!(&merged[0], &merged[1]);
        prop_assert_eq!(&merged[1], &merged[2]);
        // Nothing dropped: every event recorded on any replica is in the merged timeline.
        for r in &replicas {
            for e in r.read().unwrap().timeline {
                prop_assert!(merged[0].timeline.iter().any(|m| m.id == e.id));
            }
        }
    }
}
