use super::*;
use crate::doc::{CaseDoc, FieldEdit};
use crate::model::*;
use automerge::ActorId;
use automerge::transaction::Transactable;

fn who(user: &str, role: Role) -> Author {
    Author {
        user: user.into(),
        device: format!("{user}-d"),
        role,
    }
}

fn pusher(user: &str, role: Role, area: &str) -> Pusher {
    Pusher {
        user: user.into(),
        device: format!("{user}-d"),
        role,
        jurisdiction: Jurisdiction::parse(area).unwrap(),
    }
}

fn case_doc(author: &Author) -> CaseDoc {
    let new = NewCase {
        id: "c1".into(),
        number: "N1".into(),
        channel: Channel::Grid,
        case_type: CaseType::Help,
        category: "供水".into(),
        urgency: Urgency::General,
        priority: false,
        title: "停水".into(),
        description: "三天没水".into(),
        location: Location {
            address: "一村".into(),
            area_code: "330604101201".into(),
            gps: None,
        },
    };
    CaseDoc::create(&new, author, ActorId::from(vec![1u8; 16]), 0).unwrap()
}

fn code(r: Result<(), Rejection>) -> Option<RejectCode> {
    r.err().map(|r| r.code)
}

#[test]
fn own_new_case_inside_jurisdiction_is_accepted() {
    let li = who("li", Role::GridWorker);
    let mut doc = case_doc(&li);
    doc.act(&Action::Register, &li, 1).unwrap();
    let case = doc.read().unwrap();
    assert_eq!(
        code(validate_case_change(
            None,
            &case,
            &pusher("li", Role::GridWorker, "330604101")
        )),
        None
    );
    assert_eq!(
        code(validate_case_change(
            None,
            &case,
            &pusher("li", Role::GridWorker, "330604102")
        )),
        Some(RejectCode::OutOfJurisdiction)
    );
    assert_eq!(
        code(validate_case_change(
            None,
            &case,
            &pusher("wang", Role::GridWorker, "330604101")
        )),
        Some(RejectCode::ForeignActor)
    );
}

#[test]
fn forged_action_is_rejected() {
    let li = who("li", Role::GridWorker);
    let mut doc = case_doc(&li);
    doc.act(&Action::Register, &li, 1).unwrap();
    let before = doc.read().unwrap();
    // A modified app writes a dispatch as if it were township staff.
    let fake_staff = who("li", Role::TownshipStaff);
    doc.act(
        &Action::Dispatch {
            unit: "x".into(),
            assignee: "li".into(),
        },
        &fake_staff,
        2,
    )
    .unwrap();
    let after = doc.read().unwrap();
    let p = pusher("li", Role::GridWorker, "330604101");
    assert_eq!(
        code(validate_case_change(Some(&before), &after, &p)),
        Some(RejectCode::ForeignActor)
    );
}

#[test]
fn field_permissions_and_area_moves() {
    let staff = who("zhao", Role::TownshipStaff);
    let unit = who("water", Role::HandlingUnit);
    let mut doc = case_doc(&staff);
    let before = doc.read().unwrap();
    let mut moved = doc.clone();
    moved
        .edit(
            &FieldEdit::Location(Location {
                address: "外乡".into(),
                area_code: "330604102001".into(),
                gps: None,
            }),
            &staff,
            1,
        )
        .unwrap();
    let p = pusher("zhao", Role::TownshipStaff, "330604101");
    assert_eq!(
        code(validate_case_change(
            Some(&before),
            &moved.read().unwrap(),
            &p
        )),
        Some(RejectCode::OutOfJurisdiction)
    );
    // A handling unit may write in the description but not retitle the case.
    let mut retitled = doc.clone();
    retitled
        .edit(&FieldEdit::Title("改标题".into()), &staff, 1)
        .unwrap();
    let unit_pusher = pusher("water", Role::HandlingUnit, "330604");
    assert_eq!(
        code(validate_case_change(
            Some(&before),
            &retitled.read().unwrap(),
            &unit_pusher
        )),
        Some(RejectCode::FieldNotAllowed)
    );
    doc.set_description("三天没水，已派人", &unit, 2).unwrap();
    assert_eq!(
        code(validate_case_change(
            Some(&before),
            &doc.read().unwrap(),
            &unit_pusher
        )),
        None
    );
}

#[test]
fn closed_case_only_changes_by_reopen() {
    let li = who("li", Role::GridWorker);
    let staff = who("zhao", Role::TownshipStaff);
    let mut doc = case_doc(&li);
    for (a, by) in [
        (Action::Register, &li),
        (Action::Start, &li),
        (Action::Reply { text: "ok".into() }, &li),
        (Action::Approve, &staff),
        (
            Action::FollowUp {
                solved: true,
                satisfaction: Satisfaction::Satisfied,
            },
            &li,
        ),
        (Action::Close, &staff),
    ] {
        doc.act(&a, by, 1).unwrap();
    }
    let closed = doc.read().unwrap();
    // A late offline edit made before the close, merged afterwards.
    let mut late = doc.clone();
    late.automerge()
        .put(automerge::ROOT, "title", "late edit")
        .unwrap();
    late.automerge().commit();
    let p = pusher("zhao", Role::TownshipStaff, "330604101");
    assert_eq!(
        code(validate_case_change(
            Some(&closed),
            &late.read().unwrap(),
            &p
        )),
        Some(RejectCode::CaseClosed)
    );
    doc.act(
        &Action::Reopen {
            reason: "不满意".into(),
        },
        &staff,
        2,
    )
    .unwrap();
    assert_eq!(
        code(validate_case_change(
            Some(&closed),
            &doc.read().unwrap(),
            &p
        )),
        None
    );
}

#[test]
fn case_outside_scope_cannot_be_touched() {
    let li = who("li", Role::GridWorker);
    let mut doc = case_doc(&li);
    let before = doc.read().unwrap();
    let other = who("chen", Role::GridWorker);
    doc.add_note("路过", &other, 1).unwrap();
    assert_eq!(
        code(validate_case_change(
            Some(&before),
            &doc.read().unwrap(),
            &pusher("chen", Role::GridWorker, "330604102")
        )),
        Some(RejectCode::OutOfJurisdiction)
    );
    assert_eq!(
        code(validate_case_change(
            Some(&before),
            &doc.read().unwrap(),
            &pusher("li", Role::GridWorker, "330604101")
        )),
        Some(RejectCode::ForeignActor),
        "li may not add a note in chen's name"
    );
}

#[test]
fn work_done_while_in_scope_is_accepted_after_the_case_moved() {
    let li = who("li", Role::GridWorker);
    let staff = who("zhao", Role::TownshipStaff);
    let mut doc = case_doc(&li);
    let seen = doc.read().unwrap();
    let mut moved = doc.clone();
    moved.automerge().set_actor(ActorId::from(vec![2u8; 16]));
    moved
        .edit(
            &FieldEdit::Location(Location {
                address: "二村".into(),
                area_code: "330604101202".into(),
                gps: None,
            }),
            &staff,
            1,
        )
        .unwrap();
    let before = moved.read().unwrap();
    doc.add_note("已拍照", &li, 2).unwrap();
    moved.merge(&mut doc).unwrap();
    let after = moved.read().unwrap();
    let p = pusher("li", Role::GridWorker, "330604101201");
    assert_eq!(
        code(validate_case_change(Some(&before), &after, &p)),
        Some(RejectCode::OutOfJurisdiction)
    );
    assert_eq!(
        code(validate_case_change_seen(
            Some(&before),
            Some(&seen),
            &after,
            &p
        )),
        None
    );
}
