use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};

use super::testing::*;
use super::*;
use crate::doc::{CaseDoc, FieldEdit, PersonalDoc};
use crate::lifecycle::Action;
use crate::model::*;

/// A case registered by grid worker li, as the server stores it.
fn registered() -> (CaseDoc, Author) {
    let li = who("li", Role::GridWorker);
    let mut doc = case_doc(&li);
    doc.act(&Action::Register, &li, 1).unwrap();
    (doc, li)
}

#[test]
fn own_new_case_inside_jurisdiction_is_accepted() {
    let (mut doc, _) = registered();
    let am = doc.automerge();
    let judged = push_new(am, &pusher("li", Role::GridWorker, "330604101"), CASE_ID).unwrap();
    let case = judged.case.unwrap();
    assert_eq!(case.status, Status::Registered);
    assert_eq!(judged.new_changes.len(), 2);
    assert_eq!(
        code(push_new(
            am,
            &pusher("li", Role::GridWorker, "330604102"),
            CASE_ID
        )),
        Some(RejectCode::OutOfJurisdiction)
    );
    assert_eq!(
        code(push_new(
            am,
            &pusher("wang", Role::GridWorker, "330604101"),
            CASE_ID
        )),
        Some(RejectCode::ForeignActor)
    );
    assert_eq!(
        code(push_new(
            am,
            &pusher("li", Role::GridWorker, "330604101"),
            "c2"
        )),
        Some(RejectCode::Malformed),
        "a document id that names another case"
    );
}

#[test]
fn forged_action_is_rejected() {
    let (doc, _) = registered();
    let mut server = doc.into_automerge();
    let mut phone = CaseDoc::from_automerge(replica(&mut server, 2)).unwrap();
    // A modified app writes a dispatch as if it were township staff.
    let fake_staff = who("li", Role::TownshipStaff);
    let dispatch = Action::Dispatch {
        unit: "x".into(),
        assignee: "li".into(),
    };
    phone.act(&dispatch, &fake_staff, 2).unwrap();
    let li = pusher("li", Role::GridWorker, "330604101");
    assert_eq!(
        code(push(&mut server, phone.automerge(), &li)),
        Some(RejectCode::ForeignActor)
    );
}

#[test]
fn field_permissions_and_area_moves() {
    let staff = who("zhao", Role::TownshipStaff);
    let mut server = case_doc(&staff).into_automerge();
    let zhao = pusher("zhao", Role::TownshipStaff, "330604101");
    let mut moved = CaseDoc::from_automerge(replica(&mut server, 2)).unwrap();
    let away = Location {
        address: "外乡".into(),
        area_code: "330604102001".into(),
        gps: None,
    };
    moved.edit(&FieldEdit::Location(away), &staff, 1).unwrap();
    assert_eq!(
        code(push(&mut server, moved.automerge(), &zhao)),
        Some(RejectCode::OutOfJurisdiction)
    );
    // A handling unit may write in the description but not retitle the case.
    let unit = who("water", Role::HandlingUnit);
    let water = pusher("water", Role::HandlingUnit, "330604");
    let mut retitled = replica(&mut server, 3);
    retitled.put(ROOT, "title", "改标题").unwrap();
    commit_as(&mut retitled, &unit, 1);
    assert_eq!(
        code(push(&mut server, &mut retitled, &water)),
        Some(RejectCode::FieldNotAllowed)
    );
    let mut described = CaseDoc::from_automerge(replica(&mut server, 3)).unwrap();
    described
        .set_description("三天没水，已派人", &unit, 2)
        .unwrap();
    let judged = push(&mut server, described.automerge(), &water).unwrap();
    assert_eq!(judged.case.unwrap().description, "三天没水，已派人");
}

fn closed_case() -> CaseDoc {
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
    doc
}

#[test]
fn closed_case_only_changes_by_reopen() {
    let staff = who("zhao", Role::TownshipStaff);
    let zhao = pusher("zhao", Role::TownshipStaff, "330604101");
    let mut server = closed_case().into_automerge();
    // A late edit made offline before the close, merged afterwards.
    let mut late = replica(&mut server, 2);
    late.put(ROOT, "title", "late edit").unwrap();
    commit_as(&mut late, &staff, 2);
    assert_eq!(
        code(push(&mut server, &mut late, &zhao)),
        Some(RejectCode::CaseClosed)
    );
    let mut reopened = CaseDoc::from_automerge(replica(&mut server, 2)).unwrap();
    let reopen = Action::Reopen {
        reason: "不满意".into(),
    };
    reopened.act(&reopen, &staff, 2).unwrap();
    let judged = push(&mut server, reopened.automerge(), &zhao).unwrap();
    assert_eq!(judged.case.unwrap().status, Status::Reopened);
}

#[test]
fn case_outside_scope_cannot_be_touched() {
    let li = who("li", Role::GridWorker);
    let mut server = case_doc(&li).into_automerge();
    let chen = who("chen", Role::GridWorker);
    let mut phone = CaseDoc::from_automerge(replica(&mut server, 2)).unwrap();
    phone.add_note("路过", &chen, 1).unwrap();
    assert_eq!(
        code(push(
            &mut server,
            phone.automerge(),
            &pusher("chen", Role::GridWorker, "330604102")
        )),
        Some(RejectCode::OutOfJurisdiction)
    );
    assert_eq!(
        code(push(
            &mut server,
            phone.automerge(),
            &pusher("li", Role::GridWorker, "330604101")
        )),
        Some(RejectCode::ForeignActor),
        "li may not push a note in chen's name"
    );
}

#[test]
fn work_done_while_in_scope_is_accepted_after_the_case_moved() {
    let li = who("li", Role::GridWorker);
    let staff = who("zhao", Role::TownshipStaff);
    let mut server = case_doc(&li).into_automerge();
    let mut phone = CaseDoc::from_automerge(replica(&mut server, 2)).unwrap();
    let mut office = CaseDoc::from_automerge(replica(&mut server, 3)).unwrap();
    let next_village = Location {
        address: "二村".into(),
        area_code: "330604101202".into(),
        gps: None,
    };
    office
        .edit(&FieldEdit::Location(next_village), &staff, 1)
        .unwrap();
    server.merge(office.automerge()).unwrap();
    phone.add_note("已拍照", &li, 2).unwrap();
    let p = pusher("li", Role::GridWorker, VILLAGE);
    let evicted = PushContext {
        device_holds: false,
        ..ctx(CASE_ID)
    };
    assert_eq!(
        code(push_to(&mut server, phone.automerge(), &p, &evicted)),
        Some(RejectCode::OutOfJurisdiction)
    );
    let judged = push(&mut server, phone.automerge(), &p).unwrap();
    let case = judged.case.unwrap();
    assert_eq!(case.location.area_code, "330604101202");
    assert_eq!(case.notes.len(), 1);
}

#[test]
fn changes_the_server_lacks_the_base_of_are_missing_history() {
    let (doc, li) = registered();
    let mut server = doc.into_automerge();
    let mut phone = CaseDoc::from_automerge(replica(&mut server, 2)).unwrap();
    phone.add_note("一", &li, 2).unwrap();
    let skipped = phone.heads();
    phone.add_note("二", &li, 3).unwrap();
    let only_second = phone.automerge().get_changes(&skipped);
    let p = pusher("li", Role::GridWorker, "330604101");
    assert_eq!(
        code(judge_push(Some(&server), &only_second, &p, &ctx(CASE_ID))),
        Some(RejectCode::MissingHistory)
    );
}

#[test]
fn a_repeated_push_changes_nothing_and_is_accepted() {
    let (mut doc, _) = registered();
    let all = doc.automerge().get_changes(&[]);
    let server = doc.into_automerge();
    let p = pusher("li", Role::GridWorker, "330604101");
    let judged = judge_push(Some(&server), &all, &p, &ctx(CASE_ID)).unwrap();
    assert!(judged.new_changes.is_empty());
    assert_eq!(judged.case.unwrap().status, Status::Registered);
    assert_eq!(
        code(judge_push(None, &[], &p, &ctx(CASE_ID))),
        Some(RejectCode::Malformed)
    );
}

#[test]
fn dispatch_writes_its_effects_in_the_same_change() {
    let (doc, _) = registered();
    let mut server = doc.into_automerge();
    let staff = who("zhao", Role::TownshipStaff);
    let zhao = pusher("zhao", Role::TownshipStaff, "330604101");
    let mut phone = CaseDoc::from_automerge(replica(&mut server, 2)).unwrap();
    let dispatch = Action::Dispatch {
        unit: "水务站".into(),
        assignee: "wang".into(),
    };
    phone.act(&dispatch, &staff, 2).unwrap();
    let judged = push(&mut server, phone.automerge(), &zhao).unwrap();
    let case = judged.case.unwrap();
    assert_eq!(
        (case.responsible_unit.as_str(), case.assignee.as_str()),
        ("水务站", "wang")
    );
    let mut server = judged.doc;

    // Sent back and dispatched again to the same unit: Automerge writes nothing for a field
    // that keeps its value, and the dispatch is still whole.
    let water = who("water", Role::HandlingUnit);
    let mut unit_phone = CaseDoc::from_automerge(replica(&mut server, 4)).unwrap();
    let back = Action::RequestReturn {
        reason: "非本单位".into(),
    };
    unit_phone.act(&back, &water, 3).unwrap();
    let mut server = push(
        &mut server,
        unit_phone.automerge(),
        &pusher("water", Role::HandlingUnit, "330604"),
    )
    .unwrap()
    .doc;
    let mut again = CaseDoc::from_automerge(replica(&mut server, 2)).unwrap();
    again.act(&Action::ApproveReturn, &staff, 4).unwrap();
    let heads = again.heads();
    again.act(&dispatch, &staff, 5).unwrap();
    let redispatch = again.automerge().get_changes(&heads);
    assert!(
        redispatch[0]
            .decode()
            .operations
            .iter()
            .all(|op| op.obj != automerge::legacy::ObjectId::Root)
    );
    let case = push(&mut server, again.automerge(), &zhao)
        .unwrap()
        .case
        .unwrap();
    assert_eq!(case.status, Status::Dispatched);

    // The same event without the unit it names: a dispatched case nobody handles.
    let mut bare = replica(&mut server, 3);
    append_event(&mut bare, &dispatch, Status::Registered, &staff, 2);
    assert_eq!(
        code(push(&mut server, &mut bare, &zhao)),
        Some(RejectCode::ActionNotAllowed)
    );
}

/// Appends a timeline event with raw operations, the way a modified app could.
pub(super) fn append_event(
    doc: &mut automerge::AutoCommit,
    action: &Action,
    from: Status,
    by: &Author,
    at: Millis,
) {
    write_event(doc, action, from, by, at);
    commit_as(doc, by, at);
}

/// Writes a timeline event at the end, without committing.
pub(super) fn write_event(
    doc: &mut automerge::AutoCommit,
    action: &Action,
    from: Status,
    by: &Author,
    at: Millis,
) {
    let (_, timeline) = doc.get(ROOT, "timeline").unwrap().unwrap();
    let len = doc.length(&timeline);
    let event = doc
        .insert_object(&timeline, len, automerge::ObjType::Map)
        .unwrap();
    doc.put(&event, "action", serde_json::to_string(action).unwrap())
        .unwrap();
    doc.put(&event, "from", from.as_str()).unwrap();
    doc.put(&event, "user", by.user.as_str()).unwrap();
    doc.put(&event, "device", by.device.as_str()).unwrap();
    doc.put(&event, "role", by.role.as_str()).unwrap();
    doc.put(&event, "at", at).unwrap();
}

#[test]
fn an_action_is_judged_from_the_state_its_author_saw() {
    let (doc, li) = registered();
    let mut server = doc.into_automerge();
    let p = pusher("li", Role::GridWorker, "330604101");
    // Recorded as if from another state than the author's copy was in.
    let mut wrong_from = replica(&mut server, 2);
    append_event(&mut wrong_from, &Action::Start, Status::Draft, &li, 2);
    assert_eq!(
        code(push(&mut server, &mut wrong_from, &p)),
        Some(RejectCode::ActionNotAllowed)
    );
    // A grant the rules refuse (no extension pending, too many days) is refused as the phone
    // would have.
    let staff = who("zhao", Role::TownshipStaff);
    let mut grant = replica(&mut server, 3);
    append_event(
        &mut grant,
        &Action::GrantExtension { days: 365 },
        Status::Registered,
        &staff,
        2,
    );
    assert_eq!(
        code(push(
            &mut server,
            &mut grant,
            &pusher("zhao", Role::TownshipStaff, "330604101")
        )),
        Some(RejectCode::ActionNotAllowed)
    );
    // Two actions in one change: the app records one per change.
    let mut two = replica(&mut server, 4);
    write_event(&mut two, &Action::Start, Status::Registered, &li, 2);
    let reply = Action::Reply { text: "好".into() };
    append_event(&mut two, &reply, Status::InProgress, &li, 2);
    assert_eq!(
        code(push(&mut server, &mut two, &p)),
        Some(RejectCode::OutsideSchema)
    );
    let mut phone = CaseDoc::from_automerge(replica(&mut server, 5)).unwrap();
    phone.act(&Action::Start, &li, 2).unwrap();
    assert!(push(&mut server, phone.automerge(), &p).is_ok());
}

#[test]
fn personal_data_needs_the_role_and_the_scope() {
    let li = who("li", Role::GridWorker);
    let mut pii = personal_doc(&li);
    let id = personal_id();
    let new = pii.automerge().get_changes(&[]);
    let unit = pusher("water", Role::HandlingUnit, "330604");
    assert_eq!(
        code(judge_push(None, &new, &unit, &ctx(&id))),
        Some(RejectCode::PersonalData)
    );
    let p = pusher("li", Role::GridWorker, "330604101");
    let far = crate::scope::CaseScope::new("330604102001", "");
    let elsewhere = PushContext {
        case_scope: Some(&far),
        ..ctx(&id)
    };
    assert_eq!(
        code(judge_push(None, &new, &p, &elsewhere)),
        Some(RejectCode::OutOfJurisdiction)
    );
    let far_but_mine = crate::scope::CaseScope::new("330604102001", "li");
    let assigned = PushContext {
        case_scope: Some(&far_but_mine),
        ..ctx(&id)
    };
    let judged = judge_push(None, &new, &p, &assigned).unwrap();
    assert!(judged.case.is_none() && judged.new_reveals.is_empty());

    let mut server = pii.automerge().clone();
    let mut phone = PersonalDoc::from_automerge(replica(&mut server, 2));
    phone.record_reveal(&li, 7).unwrap();
    let judged = push_to(&mut server, phone.automerge(), &p, &ctx(&id)).unwrap();
    assert_eq!(judged.new_reveals, vec![(li, 7)]);
}

#[test]
fn a_new_document_is_created_by_exactly_one_change_with_all_its_containers() {
    let li = who("li", Role::GridWorker);
    let p = pusher("li", Role::GridWorker, "330604101");
    // Two replicas each "creating" the case: their timelines would hide each other.
    let mut a = case_doc(&li).into_automerge();
    let mut b = CaseDoc::create(&new_case(), &li, actor(2), 0)
        .unwrap()
        .into_automerge();
    a.merge(&mut b).unwrap();
    assert_eq!(
        code(push_new(&mut a, &p, CASE_ID)),
        Some(RejectCode::OutsideSchema)
    );
    // A case created without its notes list.
    let partial = case_doc(&li).into_automerge().fork();
    let mut bare = automerge::AutoCommit::new().with_actor(actor(3));
    for item in partial.map_range(ROOT, ..).collect::<Vec<_>>() {
        if let automerge::Value::Scalar(s) = item.value.into_value() {
            bare.put(ROOT, item.key.as_ref(), s.into_owned()).unwrap();
        }
    }
    bare.put_object(ROOT, "description", automerge::ObjType::Text)
        .unwrap();
    for list in ["timeline", "attachments", "related"] {
        bare.put_object(ROOT, list, automerge::ObjType::List)
            .unwrap();
    }
    commit_as(&mut bare, &li, 0);
    let rejection = push_new(&mut bare, &p, CASE_ID).unwrap_err();
    assert_eq!(rejection.code, RejectCode::OutsideSchema);
    assert!(rejection.message.contains("notes"), "{}", rejection.message);
}

#[test]
fn a_schema_upgrade_is_accepted_only_as_the_upgrade_writes_it() {
    let li = who("li", Role::GridWorker);
    let mut v1 = case_doc(&li);
    let am = v1.automerge();
    am.put(ROOT, "schema_version", 1u64).unwrap();
    am.delete(ROOT, "urgency").unwrap();
    am.put(ROOT, "urgent", true).unwrap();
    am.commit();
    let mut server = am.clone();
    let p = pusher("li", Role::GridWorker, "330604101");
    // The phone loads the old document: the upgrade is a change of its own.
    let mut phone = CaseDoc::from_automerge(replica(&mut server, 2)).unwrap();
    phone.add_note("升级后", &li, 3).unwrap();
    let judged = push(&mut server, phone.automerge(), &p).unwrap();
    let case = judged.case.unwrap();
    assert_eq!(case.urgency, Urgency::Urgent);
    assert_eq!(case.schema_version, crate::doc::SCHEMA_VERSION);
    // Something else signed as the upgrade.
    let mut forged = replica(&mut server, 3);
    forged.put(ROOT, "schema_version", 2u64).unwrap();
    forged.put(ROOT, "urgency", "general").unwrap();
    forged.put(ROOT, "title", "改").unwrap();
    commit_as(&mut forged, &crate::doc::migration_author(), 0);
    assert_eq!(
        code(push(&mut server, &mut forged, &p)),
        Some(RejectCode::OutsideSchema)
    );
}

#[test]
fn concurrent_appends_by_two_devices_are_both_accepted() {
    let (doc, li) = registered();
    let mut server = doc.into_automerge();
    let zhao = who("zhao", Role::TownshipStaff);
    let mut a = CaseDoc::from_automerge(replica(&mut server, 2)).unwrap();
    let mut b = CaseDoc::from_automerge(replica(&mut server, 3)).unwrap();
    a.add_note("甲", &li, 2).unwrap();
    b.add_note("乙", &zhao, 2).unwrap();
    b.add_note("丙", &zhao, 3).unwrap();
    let judged = push(
        &mut server,
        b.automerge(),
        &pusher("zhao", Role::TownshipStaff, "330604101"),
    )
    .unwrap();
    let mut server = judged.doc;
    let judged = push(
        &mut server,
        a.automerge(),
        &pusher("li", Role::GridWorker, "330604101"),
    )
    .unwrap();
    let notes: Vec<String> = judged
        .case
        .unwrap()
        .notes
        .into_iter()
        .map(|n| n.text)
        .collect();
    assert_eq!(notes.len(), 3);
}

/// Appends an attachment with raw operations: `personal` as given, or left out as apps written
/// before the field existed do.
fn append_attachment(
    doc: &mut automerge::AutoCommit,
    personal: Option<automerge::ScalarValue>,
    by: &Author,
    at: Millis,
) {
    let (_, list) = doc.get(ROOT, "attachments").unwrap().unwrap();
    let len = doc.length(&list);
    let item = doc
        .insert_object(&list, len, automerge::ObjType::Map)
        .unwrap();
    doc.put(&item, "sha256", "ab".repeat(32)).unwrap();
    doc.put(&item, "mime", "image/jpeg").unwrap();
    doc.put(&item, "size", 10).unwrap();
    doc.put(&item, "caption", "照片").unwrap();
    if let Some(personal) = personal {
        doc.put(&item, "personal", personal).unwrap();
    }
    doc.put(&item, "user", by.user.as_str()).unwrap();
    doc.put(&item, "device", by.device.as_str()).unwrap();
    doc.put(&item, "role", by.role.as_str()).unwrap();
    doc.put(&item, "at", at).unwrap();
    commit_as(doc, by, at);
}

#[test]
fn an_attachment_may_omit_the_personal_flag_which_then_reads_false() {
    let (doc, li) = registered();
    let mut server = doc.into_automerge();
    let p = pusher("li", Role::GridWorker, "330604101");
    let mut old_app = replica(&mut server, 2);
    append_attachment(&mut old_app, None, &li, 2);
    let judged = push(&mut server, &mut old_app, &p).unwrap();
    assert!(!judged.case.unwrap().attachments[0].personal);
    let mut new_app = replica(&mut server, 3);
    append_attachment(&mut new_app, Some(true.into()), &li, 3);
    let judged = push(&mut server, &mut new_app, &p).unwrap();
    assert!(judged.case.unwrap().attachments.last().unwrap().personal);
    // Anything but true or false is refused.
    let mut bad = replica(&mut server, 4);
    append_attachment(&mut bad, Some("yes".into()), &li, 4);
    assert_eq!(
        code(push(&mut server, &mut bad, &p)),
        Some(RejectCode::OutsideSchema)
    );
}
