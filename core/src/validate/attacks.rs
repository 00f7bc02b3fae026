//! Regression tests for the attacks of issue 8 and their neighbours: a device with a valid
//! enrolment and a modified app writes raw Automerge operations. Each test fails if the attack
//! is accepted again.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, ROOT, ReadDoc, ScalarValue};

use super::testing::*;
use super::tests::write_event;
use super::{Judged, Pusher};
use crate::doc::{CaseDoc, FieldEdit};
use crate::lifecycle::Action;
use crate::model::*;
use crate::sync::{RejectCode, Rejection};

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// A case the way it stands after a few days of work: registered by grid worker li, dispatched
/// by township staff zhao to the water unit, which signed and asked for an extension that zhao
/// granted (3 days); li added a note and a photo, zhao linked a related case.
fn worked_case() -> AutoCommit {
    let li = who("li", Role::GridWorker);
    let zhao = who("zhao", Role::TownshipStaff);
    let water = who("water", Role::HandlingUnit);
    let mut doc = case_doc(&li);
    let dispatch = Action::Dispatch {
        unit: "水务站".into(),
        assignee: "water".into(),
    };
    let ask = Action::RequestExtension {
        days: 5,
        reason: "管道老化".into(),
    };
    doc.act(&Action::Register, &li, 1).unwrap();
    doc.act(&dispatch, &zhao, 2).unwrap();
    doc.act(&Action::Sign, &water, 3).unwrap();
    doc.act(&ask, &water, 4).unwrap();
    doc.act(&Action::GrantExtension { days: 3 }, &zhao, 5)
        .unwrap();
    doc.add_note("已到现场", &li, 6).unwrap();
    doc.add_attachment(SHA, "image/jpeg", 10, "照片", &li, 7)
        .unwrap();
    doc.edit(&FieldEdit::AddRelated("c0".into()), &zhao, 8)
        .unwrap();
    assert_eq!(doc.read().unwrap().extension_days, 3);
    doc.into_automerge()
}

fn water() -> Pusher {
    pusher("water", Role::HandlingUnit, "330604")
}

fn li() -> Pusher {
    pusher("li", Role::GridWorker, "330604101")
}

/// A phone replica of `server` on which `tamper` writes raw operations, committed signed as the
/// pusher, then pushed.
fn attempt(
    server: &mut AutoCommit,
    by: &Pusher,
    tamper: impl FnOnce(&mut AutoCommit),
) -> Result<Judged, Rejection> {
    let mut phone = replica(server, 9);
    tamper(&mut phone);
    commit_as(&mut phone, &author_of(by), 10);
    // An attempt that wrote nothing (a put of the value already there) would prove nothing.
    assert_eq!(
        phone.get_changes(&server.get_heads()).len(),
        1,
        "no change made"
    );
    push(server, &mut phone, by)
}

fn list(doc: &AutoCommit, key: &str) -> ObjId {
    doc.get(ROOT, key).unwrap().unwrap().1
}

fn item(doc: &AutoCommit, key: &str, index: usize) -> ObjId {
    doc.get(list(doc, key), index).unwrap().unwrap().1
}

#[track_caller]
fn assert_refused(result: Result<Judged, Rejection>, expected: RejectCode) -> String {
    match result {
        Ok(_) => panic!("the attack was accepted; expected {expected:?}"),
        Err(r) => {
            assert_eq!(r.code, expected, "{}", r.message);
            r.message
        }
    }
}

#[test]
fn deleting_every_timeline_entry_is_history_rewritten() {
    let mut server = worked_case();
    let message = assert_refused(
        attempt(&mut server, &water(), |doc| {
            let timeline = list(doc, "timeline");
            while doc.length(&timeline) > 0 {
                doc.delete(&timeline, 0).unwrap();
            }
        }),
        RejectCode::HistoryRewritten,
    );
    assert!(message.contains("timeline event 1"), "{message}");
}

#[test]
fn editing_a_granted_extension_is_history_rewritten() {
    let mut server = worked_case();
    let grant = serde_json::to_string(&Action::GrantExtension { days: 30 }).unwrap();
    let message = assert_refused(
        attempt(&mut server, &water(), |doc| {
            let event = item(doc, "timeline", 4);
            doc.put(&event, "action", grant.as_str()).unwrap();
        }),
        RejectCode::HistoryRewritten,
    );
    assert!(message.contains("timeline event 5"), "{message}");
    // Rewriting its author or time is the same.
    assert_refused(
        attempt(&mut server, &water(), |doc| {
            let event = item(doc, "timeline", 4);
            doc.put(&event, "at", 0).unwrap();
        }),
        RejectCode::HistoryRewritten,
    );
}

#[test]
fn an_event_inserted_mid_timeline_is_history_rewritten() {
    let mut server = worked_case();
    let water_author = author_of(&water());
    assert_refused(
        attempt(&mut server, &water(), |doc| {
            let timeline = list(doc, "timeline");
            let event = doc.insert_object(&timeline, 2, ObjType::Map).unwrap();
            let start = serde_json::to_string(&Action::Start).unwrap();
            doc.put(&event, "action", start).unwrap();
            doc.put(&event, "from", "signed").unwrap();
            doc.put(&event, "user", water_author.user.as_str()).unwrap();
            doc.put(&event, "device", water_author.device.as_str())
                .unwrap();
            doc.put(&event, "role", "handling_unit").unwrap();
            doc.put(&event, "at", 10).unwrap();
        }),
        RejectCode::HistoryRewritten,
    );
    // At the very front too.
    assert_refused(
        attempt(&mut server, &water(), |doc| {
            let notes = list(doc, "notes");
            let note = doc.insert_object(&notes, 0, ObjType::Map).unwrap();
            doc.put(&note, "text", "先到").unwrap();
            doc.put(&note, "user", "water").unwrap();
            doc.put(&note, "device", "water-d").unwrap();
            doc.put(&note, "role", "handling_unit").unwrap();
            doc.put(&note, "at", 10).unwrap();
        }),
        RejectCode::HistoryRewritten,
    );
}

#[test]
fn a_reveal_naming_someone_else_is_foreign() {
    let li_author = who("li", Role::GridWorker);
    let mut pii = personal_doc(&li_author);
    let mut server = pii.automerge().clone();
    let id = personal_id();
    let mut phone = replica(&mut server, 9);
    let reveals = list(&phone, "reveals");
    let reveal = phone.insert_object(&reveals, 0, ObjType::Map).unwrap();
    phone.put(&reveal, "user", "hotline").unwrap();
    phone.put(&reveal, "device", "hotline-d").unwrap();
    phone.put(&reveal, "role", "hotline_centre").unwrap();
    phone.put(&reveal, "at", 10).unwrap();
    commit_as(&mut phone, &li_author, 10);
    assert_refused(
        push_to(&mut server, &mut phone, &li(), &ctx(&id)),
        RejectCode::ForeignActor,
    );
}

#[test]
fn reveal_records_are_never_deleted_and_personal_data_has_no_other_keys() {
    let li_author = who("li", Role::GridWorker);
    let mut pii = personal_doc(&li_author);
    pii.record_reveal(&li_author, 3).unwrap();
    let mut server = pii.automerge().clone();
    let id = personal_id();
    let mut try_push = |tamper: &dyn Fn(&mut AutoCommit)| {
        let mut phone = replica(&mut server, 9);
        tamper(&mut phone);
        commit_as(&mut phone, &li_author, 10);
        push_to(&mut server, &mut phone, &li(), &ctx(&id))
    };
    assert_refused(
        try_push(&|doc| doc.delete(list(doc, "reveals"), 0).unwrap()),
        RejectCode::HistoryRewritten,
    );
    assert_refused(
        try_push(&|doc| doc.put(ROOT, "id_card", "330…").unwrap()),
        RejectCode::OutsideSchema,
    );
    assert!(try_push(&|doc| doc.put(ROOT, "phone", "13900000000").unwrap()).is_ok());
}

#[test]
fn a_note_in_someone_elses_name_is_foreign() {
    let mut server = worked_case();
    // Signed by li, the note names zhao.
    assert_refused(
        attempt(&mut server, &li(), |doc| {
            let notes = list(doc, "notes");
            let note = doc.insert_object(&notes, 1, ObjType::Map).unwrap();
            doc.put(&note, "text", "同意延期").unwrap();
            doc.put(&note, "user", "zhao").unwrap();
            doc.put(&note, "device", "zhao-d").unwrap();
            doc.put(&note, "role", "township_staff").unwrap();
            doc.put(&note, "at", 10).unwrap();
        }),
        RejectCode::ForeignActor,
    );
}

#[test]
fn a_put_into_an_old_note_is_history_rewritten() {
    let mut server = worked_case();
    let message = assert_refused(
        attempt(&mut server, &li(), |doc| {
            let note = item(doc, "notes", 0);
            doc.put(&note, "text", "未到现场").unwrap();
        }),
        RejectCode::HistoryRewritten,
    );
    assert!(message.contains("note 1"), "{message}");
    // Deleting a field of an old attachment, or overwriting a related case, is the same.
    assert_refused(
        attempt(&mut server, &li(), |doc| {
            let photo = item(doc, "attachments", 0);
            doc.delete(&photo, "caption").unwrap();
        }),
        RejectCode::HistoryRewritten,
    );
    assert_refused(
        attempt(&mut server, &li(), |doc| {
            doc.put(list(doc, "related"), 0, "c9").unwrap();
        }),
        RejectCode::HistoryRewritten,
    );
}

#[test]
fn a_root_key_outside_the_schema_is_refused() {
    let mut server = worked_case();
    assert_refused(
        attempt(&mut server, &li(), |doc| {
            doc.put(ROOT, "overdue", false).unwrap()
        }),
        RejectCode::OutsideSchema,
    );
    assert_refused(
        attempt(&mut server, &li(), |doc| {
            doc.put_object(ROOT, "shadow", ObjType::Map).unwrap();
        }),
        RejectCode::OutsideSchema,
    );
    assert_refused(
        attempt(&mut server, &li(), |doc| {
            doc.put(ROOT, "title", 42).unwrap()
        }),
        RejectCode::OutsideSchema,
    );
    assert_refused(
        attempt(&mut server, &li(), |doc| {
            doc.put(ROOT, "priority", ScalarValue::counter(1)).unwrap();
        }),
        RejectCode::OutsideSchema,
    );
}

#[test]
fn deleting_the_title_is_refused() {
    let mut server = worked_case();
    assert_refused(
        attempt(&mut server, &li(), |doc| doc.delete(ROOT, "title").unwrap()),
        RejectCode::OutsideSchema,
    );
    // Removing the GPS position is how a location without one is written.
    let mut phone = CaseDoc::from_automerge(replica(&mut server, 9)).unwrap();
    let location = Location {
        address: "一村".into(),
        area_code: VILLAGE.into(),
        gps: None,
    };
    phone
        .edit(&FieldEdit::Location(location), &author_of(&li()), 10)
        .unwrap();
    assert!(push(&mut server, phone.automerge(), &li()).is_ok());
}

#[test]
fn a_change_signed_as_another_user_is_foreign() {
    let mut server = worked_case();
    let zhao = who("zhao", Role::TownshipStaff);
    let mut phone = replica(&mut server, 9);
    phone.put(ROOT, "title", "改标题").unwrap();
    commit_as(&mut phone, &zhao, 10);
    assert_refused(
        push(&mut server, &mut phone, &li()),
        RejectCode::ForeignActor,
    );
    // Or not signed at all.
    let mut phone = replica(&mut server, 9);
    phone.put(ROOT, "title", "改标题").unwrap();
    phone.commit();
    assert_refused(
        push(&mut server, &mut phone, &li()),
        RejectCode::ForeignActor,
    );
}

#[test]
fn containers_are_never_replaced_or_deleted() {
    let mut server = worked_case();
    for key in ["timeline", "notes", "description"] {
        assert_refused(
            attempt(&mut server, &water(), |doc| {
                doc.put_object(ROOT, key, ObjType::List).unwrap();
            }),
            RejectCode::HistoryRewritten,
        );
        assert_refused(
            attempt(&mut server, &water(), |doc| doc.delete(ROOT, key).unwrap()),
            RejectCode::HistoryRewritten,
        );
    }
}

#[test]
fn fixed_fields_and_the_schema_version_never_change() {
    let mut server = worked_case();
    for (key, value) in [
        ("id", ScalarValue::from("c2")),
        ("number", "N2".into()),
        ("created_user", "water".into()),
        ("created_at", ScalarValue::Int(99)),
        ("schema_version", ScalarValue::Uint(3)),
    ] {
        assert_refused(
            attempt(&mut server, &water(), |doc| {
                doc.put(ROOT, key, value).unwrap()
            }),
            RejectCode::FieldNotAllowed,
        );
    }
}

#[test]
fn a_role_writes_only_the_fields_it_may_edit() {
    let mut server = worked_case();
    for key in ["assignee", "responsible_unit", "title", "area_code"] {
        assert_refused(
            attempt(&mut server, &water(), |doc| {
                doc.put(ROOT, key, "evil").unwrap()
            }),
            RejectCode::FieldNotAllowed,
        );
    }
    assert_refused(
        attempt(&mut server, &li(), |doc| {
            doc.put(ROOT, "assignee", "li").unwrap()
        }),
        RejectCode::FieldNotAllowed,
    );
    // An action's effects are accepted only with an action the role may take, and only with
    // the values the action names.
    let dispatch = Action::Dispatch {
        unit: "供水所".into(),
        assignee: "li".into(),
    };
    let dispatch_by_li = |assignee: &'static str| {
        let dispatch = dispatch.clone();
        move |doc: &mut AutoCommit| {
            write_event(doc, &dispatch, Status::Signed, &author_of(&li()), 10);
            doc.put(ROOT, "responsible_unit", "供水所").unwrap();
            doc.put(ROOT, "assignee", assignee).unwrap();
        }
    };
    assert_refused(
        attempt(&mut server, &li(), dispatch_by_li("li")),
        RejectCode::ActionNotAllowed,
    );
    assert_refused(
        attempt(&mut server, &li(), dispatch_by_li("wang")),
        RejectCode::FieldNotAllowed,
    );
}

#[test]
fn new_entries_hold_exactly_their_fields_in_the_pushers_name_and_time() {
    let mut server = worked_case();
    let me = author_of(&li());
    let note = |extra: Option<(&'static str, ScalarValue)>, at: i64| {
        let me = me.clone();
        move |doc: &mut AutoCommit| {
            let notes = list(doc, "notes");
            let len = doc.length(&notes);
            let note = doc.insert_object(&notes, len, ObjType::Map).unwrap();
            doc.put(&note, "text", "补充").unwrap();
            doc.put(&note, "user", me.user.as_str()).unwrap();
            doc.put(&note, "device", me.device.as_str()).unwrap();
            doc.put(&note, "role", me.role.as_str()).unwrap();
            doc.put(&note, "at", at).unwrap();
            if let Some((key, value)) = extra {
                doc.put(&note, key, value).unwrap();
            }
        }
    };
    assert!(attempt(&mut server, &li(), note(None, 10)).is_ok());
    // Backdated: the entry claims another time than the change recording it.
    assert_refused(
        attempt(&mut server, &li(), note(None, 1)),
        RejectCode::OutsideSchema,
    );
    assert_refused(
        attempt(
            &mut server,
            &li(),
            note(Some(("status", "closed".into())), 10),
        ),
        RejectCode::OutsideSchema,
    );
    // A field written twice: the second write could rename the author.
    assert_refused(
        attempt(&mut server, &li(), note(Some(("user", "zhao".into())), 10)),
        RejectCode::OutsideSchema,
    );
    // A nested object inside a new entry.
    assert_refused(
        attempt(&mut server, &li(), |doc| {
            note(None, 10)(doc);
            let notes = list(doc, "notes");
            let mine = doc.get(&notes, doc.length(&notes) - 1).unwrap().unwrap().1;
            doc.put_object(&mine, "more", ObjType::Map).unwrap();
        }),
        RejectCode::OutsideSchema,
    );
    // An entry missing its author.
    assert_refused(
        attempt(&mut server, &li(), |doc| {
            let notes = list(doc, "notes");
            let len = doc.length(&notes);
            let note = doc.insert_object(&notes, len, ObjType::Map).unwrap();
            doc.put(&note, "text", "无名").unwrap();
        }),
        RejectCode::OutsideSchema,
    );
}

#[test]
fn an_entry_is_written_only_by_the_change_that_made_it() {
    let mut server = worked_case();
    let mut phone = CaseDoc::from_automerge(replica(&mut server, 9)).unwrap();
    let me = author_of(&li());
    phone.add_note("一", &me, 10).unwrap();
    let am = phone.automerge();
    let mine = item(am, "notes", 1);
    am.put(&mine, "text", "改过的一").unwrap();
    commit_as(am, &me, 11);
    assert_refused(push(&mut server, am, &li()), RejectCode::HistoryRewritten);
}

#[test]
fn the_description_takes_only_text_splices() {
    let mut server = worked_case();
    assert_refused(
        attempt(&mut server, &li(), |doc| {
            let text = doc.get(ROOT, "description").unwrap().unwrap().1;
            doc.mark(
                &text,
                automerge::marks::Mark::new("bold".into(), true, 0, 2),
                automerge::marks::ExpandMark::None,
            )
            .unwrap();
        }),
        RejectCode::OutsideSchema,
    );
    assert!(
        attempt(&mut server, &water(), |doc| {
            let text = doc.get(ROOT, "description").unwrap().unwrap().1;
            doc.splice_text(&text, 0, 1, "五").unwrap();
        })
        .is_ok()
    );
}

#[test]
fn an_action_carries_nothing_beyond_what_the_app_writes() {
    let mut server = worked_case();
    let me = author_of(&li());
    let padded = r#"{"kind":"start","hidden":"与案件无关的内容"}"#;
    let message = assert_refused(
        attempt(&mut server, &li(), |doc| {
            let timeline = list(doc, "timeline");
            let len = doc.length(&timeline);
            let event = doc.insert_object(&timeline, len, ObjType::Map).unwrap();
            doc.put(&event, "action", padded).unwrap();
            doc.put(&event, "from", "signed").unwrap();
            doc.put(&event, "user", me.user.as_str()).unwrap();
            doc.put(&event, "device", me.device.as_str()).unwrap();
            doc.put(&event, "role", me.role.as_str()).unwrap();
            doc.put(&event, "at", 10).unwrap();
        }),
        RejectCode::OutsideSchema,
    );
    assert!(message.contains("as the app writes it"), "{message}");
}

#[test]
fn a_new_case_is_created_at_the_time_of_its_change() {
    let li_author = who("li", Role::GridWorker);
    let honest = case_doc(&li_author).into_automerge();
    // Rebuilt by hand: the same case, its creation time a month before the change's.
    let mut forged = AutoCommit::new().with_actor(actor(3));
    for item in honest.map_range(ROOT, ..).collect::<Vec<_>>() {
        if let automerge::Value::Scalar(s) = item.value.into_value() {
            forged.put(ROOT, item.key.as_ref(), s.into_owned()).unwrap();
        }
    }
    forged.put(ROOT, "created_at", -2_592_000_000i64).unwrap();
    let text = forged
        .put_object(ROOT, "description", ObjType::Text)
        .unwrap();
    forged.splice_text(&text, 0, 0, "三天没水").unwrap();
    for key in ["timeline", "notes", "attachments", "related"] {
        forged.put_object(ROOT, key, ObjType::List).unwrap();
    }
    commit_as(&mut forged, &li_author, 0);
    let message = assert_refused(
        push_new(&mut forged, &li(), CASE_ID),
        RejectCode::OutsideSchema,
    );
    assert!(message.contains("created_at"), "{message}");
}

#[test]
fn one_change_adds_one_entry_to_a_list() {
    let mut server = worked_case();
    let me = author_of(&li());
    let message = assert_refused(
        attempt(&mut server, &li(), |doc| {
            let notes = list(doc, "notes");
            for _ in 0..2 {
                let len = doc.length(&notes);
                let note = doc.insert_object(&notes, len, ObjType::Map).unwrap();
                doc.put(&note, "text", "批量").unwrap();
                doc.put(&note, "user", me.user.as_str()).unwrap();
                doc.put(&note, "device", me.device.as_str()).unwrap();
                doc.put(&note, "role", me.role.as_str()).unwrap();
                doc.put(&note, "at", 10).unwrap();
            }
        }),
        RejectCode::OutsideSchema,
    );
    assert!(message.contains("one change adds one note"), "{message}");
}
