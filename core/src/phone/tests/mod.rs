//! The phone's tests: edits, the sync shell against scripted responses, a sync stalled
//! mid-exchange while the app keeps working, encryption at rest, and the change listener.

mod answers;
mod encryption;
mod parts;
mod prefetch;
mod rules;
mod stall;
mod times_block;

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;

use automerge::sync::{Message, State as SyncState, SyncDoc};
use automerge::{ActorId, Change, ChangeHash};

use super::*;
use crate::doc::{CaseDoc, FieldEdit, PersonalDoc};
use crate::lifecycle::Action;
use crate::model::{Author, Complainant, Role, Status};
use crate::phone::queries::CaseList;
use crate::store::docs::{self, Loaded};
use crate::store::meta::{LAST_ERROR_KEY, LAST_SYNC_KEY};
use crate::store::tests::{DEVICE, T0, TOKEN, dump, identity, new_case};
use crate::sync::wire;
use crate::sync::{
    CatchUp, DocUpdate, Payload, PushResult, RejectCode, Rejection, RestoreToken, SyncRequest,
    SyncResponse,
};

pub(crate) fn count(phone: &Phone, list: CaseList) -> u64 {
    phone.count(&list, T0).unwrap()
}

const NONCE: [u8; 4] = [1, 2, 3, 4];

fn server_actor() -> ActorId {
    ActorId::from(vec![7u8; 20])
}

fn server_author() -> Author {
    Author {
        user: "wang".into(),
        device: "server".into(),
        role: Role::TownshipStaff,
    }
}

fn open() -> (tempfile::TempDir, std::path::PathBuf, Phone) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    let phone = Phone::open(&path, TOKEN, NONCE, None).unwrap();
    phone.set_identity_for_tests(&identity()).unwrap();
    (dir, path, phone)
}

fn raw(heads: &[ChangeHash]) -> Vec<Vec<u8>> {
    heads.iter().map(|h| h.0.to_vec()).collect()
}

fn loaded(phone: &Phone, doc_id: &str) -> Option<Loaded> {
    docs::load_doc(phone.app().conn(), doc_id, &phone.actor()).unwrap()
}

fn heads(phone: &Phone, doc_id: &str) -> Vec<ChangeHash> {
    loaded(phone, doc_id).unwrap().doc.get_heads()
}

fn complainant() -> Complainant {
    Complainant {
        name: "张三".into(),
        phone: "13812341234".into(),
        anonymous: false,
    }
}

fn accept(doc_id: &str, heads: &[ChangeHash]) -> PushResult {
    PushResult::Accepted {
        doc_id: doc_id.into(),
        heads: raw(heads),
    }
}

fn response() -> SyncResponse {
    SyncResponse {
        server_time: T0,
        identity: identity(),
        cursor: 1,
        ..Default::default()
    }
}

#[test]
fn a_phone_can_move_between_threads() {
    fn is_send<T: Send>() {}
    is_send::<Phone>();
}

#[test]
fn writing_needs_an_identity_from_a_first_sync() {
    let dir = tempfile::tempdir().unwrap();
    let phone = Phone::open(dir.path().join("p.db"), TOKEN, NONCE, None).unwrap();
    let err = phone
        .create_case(&new_case("c1", "噪音", "330604101201"), None, T0)
        .unwrap_err();
    assert_eq!(err.code(), "no_identity");
    assert!(
        err.to_string()
            .contains("sync once while online to learn who you are")
    );
    // A first sync's identity is enough.
    let request = phone.build_request(T0, 50).unwrap();
    phone.apply_response(&response(), &request, T0).unwrap();
    assert_eq!(phone.identity().unwrap().unwrap().user, "li");
    phone
        .create_case(&new_case("c1", "噪音", "330604101201"), None, T0)
        .unwrap();
}

#[test]
fn tokens_and_devices_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    assert_eq!(
        Phone::open(&path, "garbage", NONCE, None)
            .unwrap_err()
            .code(),
        "bad_token"
    );
    Phone::open(&path, TOKEN, NONCE, None).unwrap();
    let other = "ffffffffffffffffffffffffffffffff.s3cretS3cretS3cret";
    assert_eq!(
        Phone::open(&path, other, NONCE, None).unwrap_err().code(),
        "device_mismatch"
    );
}

#[test]
fn unsynced_changes_survive_an_app_kill() {
    let (_dir, path, phone) = open();
    phone
        .create_case(
            &new_case("c1", "噪音", "330604101201"),
            Some(&complainant()),
            T0,
        )
        .unwrap();
    phone
        .edit("c1", &FieldEdit::Title("菜市场噪音".into()), T0 + 1)
        .unwrap();
    phone.add_note("c1", "已联系摊主", T0 + 2).unwrap();
    phone
        .splice_description("c1", 0, 0, "【急】", T0 + 3)
        .unwrap();
    // Killed: dropped without sync or any shutdown. Reopened with another nonce, which a
    // reopened store ignores (its actor stays the same).
    drop(phone);
    let phone = Phone::open(&path, TOKEN, [9, 9, 9, 9], None).unwrap();
    assert_eq!(
        phone.actor(),
        crate::identity::actor_for(DEVICE, NONCE).unwrap()
    );
    let detail = phone.get_case("c1").unwrap();
    assert_eq!(detail.case.title, "菜市场噪音");
    assert_eq!(detail.case.notes.len(), 1);
    assert!(detail.case.description.starts_with("【急】"));
    assert_eq!(detail.complainant, Some(complainant()));
    assert_eq!(detail.masked_phone.as_deref(), Some("138****1234"));
    let status = phone.sync_status().unwrap();
    assert_eq!(status.pending_docs, 2);
    assert!(phone.summary("c1").unwrap().unwrap().has_pending);
    let request = phone.build_request(T0 + 10, 50).unwrap();
    let pushed: Vec<(&str, usize)> = request
        .pushes
        .iter()
        .map(|p| (p.doc_id.as_str(), p.changes.len()))
        .collect();
    assert_eq!(pushed, [("c1", 4), ("c1#pii", 1)]);
}

#[test]
fn a_request_carries_exactly_the_unacknowledged_changes() {
    let (_dir, _path, phone) = open();
    phone
        .create_case(&new_case("c1", "噪音", "330604101201"), None, T0)
        .unwrap();
    phone.act("c1", &Action::Register, T0 + 1).unwrap();
    let first = phone.build_request(T0 + 2, 50).unwrap();
    assert_eq!(first.device_time, T0 + 2);
    assert_eq!(
        (first.cursor, first.restore.clone(), first.page_size),
        (0, None, 50)
    );
    assert_eq!(first.pushes.len(), 1);
    let mut doc = loaded(&phone, "c1").unwrap().doc;
    let all: Vec<Vec<u8>> = doc
        .get_changes(&[])
        .iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    assert_eq!(first.pushes[0].changes, all);

    // Acknowledged with the heads the phone holds: nothing more to push.
    let acked = heads(&phone, "c1");
    let mut resp = response();
    resp.results = vec![accept("c1", &acked)];
    let outcome = phone.apply_response(&resp, &first, T0 + 3).unwrap();
    assert_eq!(outcome.accepted, ["c1"]);
    assert!(phone.build_request(T0 + 4, 50).unwrap().pushes.is_empty());
    assert_eq!(phone.sync_status().unwrap().pending_docs, 0);
    assert!(!phone.summary("c1").unwrap().unwrap().has_pending);
    assert_eq!(phone.build_request(T0 + 4, 50).unwrap().cursor, 1);

    // One more edit: exactly that change goes.
    phone.add_note("c1", "到场查看", T0 + 5).unwrap();
    let second = phone.build_request(T0 + 6, 50).unwrap();
    assert_eq!(second.pushes.len(), 1);
    assert_eq!(second.pushes[0].changes.len(), 1);
    let mut doc = loaded(&phone, "c1").unwrap().doc;
    let newest = doc.get_changes(&acked);
    assert_eq!(second.pushes[0].changes[0], newest[0].raw_bytes());

    // Acknowledged with server heads the phone does not hold (someone else's concurrent
    // change): the pushed heads count as shared.
    let mut resp = response();
    resp.results = vec![accept("c1", &[ChangeHash([5; 32])])];
    phone.apply_response(&resp, &second, T0 + 7).unwrap();
    let state = docs::doc_state(phone.app().conn(), "c1").unwrap().unwrap();
    assert_eq!(state.server_heads, heads(&phone, "c1"));
    assert!(phone.build_request(T0 + 8, 50).unwrap().pushes.is_empty());
}

#[test]
fn lost_server_history_is_resent_with_a_catch_up() {
    let (_dir, _path, phone) = open();
    phone
        .create_case(&new_case("c1", "噪音", "330604101201"), None, T0)
        .unwrap();
    let first = phone.build_request(T0, 50).unwrap();
    let mut resp = response();
    resp.results = vec![accept("c1", &heads(&phone, "c1"))];
    phone.apply_response(&resp, &first, T0 + 1).unwrap();
    phone.add_note("c1", "补充", T0 + 2).unwrap();
    let second = phone.build_request(T0 + 3, 50).unwrap();
    assert_eq!(second.pushes[0].changes.len(), 1);
    // The server was restored from a backup and no longer has the first change.
    let mut resp = response();
    resp.results = vec![PushResult::Rejected {
        doc_id: "c1".into(),
        reason: Rejection {
            code: RejectCode::MissingHistory,
            message: "depends on changes the server does not have".into(),
        },
    }];
    let outcome = phone.apply_response(&resp, &second, T0 + 4).unwrap();
    assert!(
        outcome.rejected.is_empty(),
        "not shown as a user-facing rejection"
    );
    let third = phone.build_request(T0 + 5, 50).unwrap();
    assert_eq!(
        third.pushes[0].changes.len(),
        2,
        "the whole history goes again"
    );
    assert_eq!(third.catch_up.len(), 1);
    assert!(phone.sync_status().unwrap().rejected.is_empty());
}

#[test]
fn a_rejection_stops_re_pushing_until_the_user_edits_again() {
    let (_dir, _path, phone) = open();
    phone
        .create_case(&new_case("c1", "噪音", "330604101201"), None, T0)
        .unwrap();
    let request = phone.build_request(T0, 50).unwrap();
    let mut resp = response();
    resp.results = vec![PushResult::Rejected {
        doc_id: "c1".into(),
        reason: Rejection {
            code: RejectCode::OutOfJurisdiction,
            message: "不在辖区".into(),
        },
    }];
    let outcome = phone.apply_response(&resp, &request, T0 + 1).unwrap();
    assert_eq!(outcome.rejected[0].code, "out_of_jurisdiction");
    let status = phone.sync_status().unwrap();
    assert_eq!(status.pending_docs, 1);
    assert_eq!(
        status.rejected,
        [RejectedDoc {
            doc_id: "c1".into(),
            code: "out_of_jurisdiction".into(),
            message: "不在辖区".into()
        }]
    );
    assert!(phone.build_request(T0 + 2, 50).unwrap().pushes.is_empty());
    // Applying the rejection again changes nothing; an edit clears it and pushes it all.
    phone
        .edit(
            "c1",
            &FieldEdit::Location(Location {
                address: "二村".into(),
                area_code: "330604101202".into(),
                gps: None,
            }),
            T0 + 3,
        )
        .unwrap();
    assert!(phone.sync_status().unwrap().rejected.is_empty());
    let again = phone.build_request(T0 + 4, 50).unwrap();
    assert_eq!(again.pushes[0].changes.len(), 2);
}

use crate::model::Location;

fn server_case(id: &str, title: &str) -> CaseDoc {
    let mut doc = CaseDoc::create(
        &new_case(id, title, "330604101201"),
        &server_author(),
        server_actor(),
        T0,
    )
    .unwrap();
    doc.act(&Action::Register, &server_author(), T0 + 1)
        .unwrap();
    doc
}

#[test]
fn updates_from_the_server_are_stored_and_listed() {
    let (_dir, _path, phone) = open();
    let mut server = server_case("s1", "路灯不亮");
    let mut pii =
        PersonalDoc::create(&complainant(), &server_author(), server_actor(), T0).unwrap();
    let request = phone.build_request(T0, 50).unwrap();
    let mut resp = response();
    resp.docs = vec![
        DocUpdate {
            doc_id: "s1".into(),
            payload: Payload::Snapshot(server.save()),
            heads: raw(&server.heads()),
        },
        DocUpdate {
            doc_id: "s1#pii".into(),
            payload: Payload::Snapshot(pii.automerge().save()),
            heads: raw(&pii.automerge().get_heads()),
        },
    ];
    resp.cursor = 7;
    let outcome = phone.apply_response(&resp, &request, T0 + 5).unwrap();
    assert_eq!(outcome.received, ["s1", "s1#pii"]);
    let summary = phone.summary("s1").unwrap().unwrap();
    assert_eq!(summary.status, Status::Registered);
    assert!(!summary.has_pending);
    assert_eq!(count(&phone, CaseList::Status(Status::Registered)), 1);
    assert_eq!(
        phone.get_case("s1").unwrap().complainant,
        Some(complainant())
    );
    assert!(phone.deadline("s1", T0 + 5).unwrap().is_some());
    assert_eq!(phone.sync_status().unwrap().pending_docs, 0);
    assert_eq!(phone.build_request(T0, 50).unwrap().cursor, 7);

    // Idempotent: the same response again changes nothing.
    let before = dump(phone.app().conn(), &[]);
    phone.apply_response(&resp, &request, T0 + 5).unwrap();
    assert_eq!(dump(phone.app().conn(), &[]), before);
    // ... even at a later time, except for when it last synced.
    phone.apply_response(&resp, &request, T0 + 6).unwrap();
    assert_eq!(
        dump(phone.app().conn(), &[LAST_SYNC_KEY]),
        dump_without(&before, LAST_SYNC_KEY)
    );

    // Changes: the server renames it and dispatches it.
    let base = server.heads();
    server
        .edit(
            &FieldEdit::Title("路灯不亮（三处）".into()),
            &server_author(),
            T0 + 10,
        )
        .unwrap();
    server
        .act(
            &Action::Dispatch {
                unit: "城管".into(),
                assignee: "li".into(),
            },
            &server_author(),
            T0 + 11,
        )
        .unwrap();
    let changes = server
        .automerge()
        .get_changes(&base)
        .iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    let mut resp = response();
    resp.docs = vec![DocUpdate {
        doc_id: "s1".into(),
        payload: Payload::Changes(changes),
        heads: raw(&server.heads()),
    }];
    phone.apply_response(&resp, &request, T0 + 12).unwrap();
    let summary = phone.summary("s1").unwrap().unwrap();
    assert_eq!(summary.title, "路灯不亮（三处）");
    assert_eq!(summary.status, Status::Dispatched);
    assert_eq!(summary.updated_at, T0 + 12);
    assert_eq!(count(&phone, CaseList::Mine), 1, "assigned to li");
    assert!(!summary.has_pending);
}

fn dump_without(rows: &[String], key: &str) -> Vec<String> {
    rows.iter()
        .filter(|r| !r.starts_with(&format!("meta: Text(\"{key}\")")))
        .cloned()
        .collect()
}

#[test]
fn a_snapshot_merges_with_local_pending_changes() {
    let (_dir, _path, phone) = open();
    let mut server = server_case("s1", "路灯不亮");
    let request = phone.build_request(T0, 50).unwrap();
    let mut resp = response();
    resp.docs = vec![DocUpdate {
        doc_id: "s1".into(),
        payload: Payload::Snapshot(server.save()),
        heads: raw(&server.heads()),
    }];
    phone.apply_response(&resp, &request, T0 + 1).unwrap();
    phone.add_note("s1", "本地备注", T0 + 2).unwrap();
    server
        .add_note("服务器备注", &server_author(), T0 + 3)
        .unwrap();
    resp.docs[0].payload = Payload::Snapshot(server.save());
    resp.docs[0].heads = raw(&server.heads());
    phone.apply_response(&resp, &request, T0 + 4).unwrap();
    let case = phone.get_case("s1").unwrap().case;
    assert_eq!(case.notes.len(), 2);
    assert!(phone.summary("s1").unwrap().unwrap().has_pending);
    let push = phone.build_request(T0 + 5, 50).unwrap();
    assert_eq!(push.pushes.len(), 1);
    assert_eq!(push.pushes[0].changes.len(), 1, "only the local note");
}

#[test]
fn evictions_spare_documents_with_pending_changes() {
    let (_dir, _path, phone) = open();
    let server = server_case("s1", "路灯不亮");
    let mut server = server;
    let request = phone.build_request(T0, 50).unwrap();
    let mut resp = response();
    resp.docs = vec![DocUpdate {
        doc_id: "s1".into(),
        payload: Payload::Snapshot(server.save()),
        heads: raw(&server.heads()),
    }];
    // With the time the server vouched for: the phone shows it.
    resp.times = vec![crate::sync::CaseTimes {
        case_id: "s1".into(),
        times: vec![crate::sync::EventTime {
            event: crate::sync::CREATED_KEY.into(),
            at: T0 - 99,
        }],
    }];
    phone.apply_response(&resp, &request, T0 + 1).unwrap();
    assert_eq!(phone.get_case("s1").unwrap().case.created_at, T0 - 99);
    phone
        .create_case(&new_case("c1", "噪音", "330604101201"), None, T0 + 2)
        .unwrap();
    let mut resp = response();
    resp.evict = vec!["s1".into(), "c1".into(), "never-had".into()];
    let outcome = phone.apply_response(&resp, &request, T0 + 3).unwrap();
    assert_eq!(outcome.evicted, ["s1"]);
    assert_eq!(outcome.kept_pending, ["c1"]);
    assert!(phone.summary("s1").unwrap().is_none());
    assert!(loaded(&phone, "s1").is_none());
    assert!(phone.summary("c1").unwrap().is_some());
    // Its times leave with it.
    let times = crate::store::times::load(phone.app().conn(), "s1").unwrap();
    assert!(times.is_empty());
}

#[test]
fn a_failing_response_stores_nothing() {
    let (_dir, _path, phone) = open();
    phone
        .create_case(&new_case("c1", "噪音", "330604101201"), None, T0)
        .unwrap();
    let request = phone.build_request(T0, 50).unwrap();
    let before = dump(phone.app().conn(), &[]);
    let mut server = server_case("s1", "路灯不亮");
    let mut resp = response();
    resp.cursor = 99;
    resp.results = vec![accept("c1", &heads(&phone, "c1"))];
    resp.docs = vec![
        DocUpdate {
            doc_id: "s1".into(),
            payload: Payload::Snapshot(server.save()),
            heads: raw(&server.heads()),
        },
        DocUpdate {
            doc_id: "s2".into(),
            payload: Payload::Changes(vec![vec![1, 2, 3]]),
            heads: vec![],
        },
    ];
    let err = phone.apply_response(&resp, &request, T0 + 1).unwrap_err();
    assert_eq!(err.code(), "bad_data");
    assert_eq!(dump(phone.app().conn(), &[LAST_ERROR_KEY]), before);
    let status = phone.sync_status().unwrap();
    assert!(status.last_error.unwrap().contains("s2"));
    assert_eq!(status.pending_docs, 1);
    assert!(phone.summary("s1").unwrap().is_none());
    // A bad head is refused too.
    resp.docs.pop();
    resp.docs[0].heads = vec![vec![1, 2]];
    assert!(phone.apply_response(&resp, &request, T0 + 1).is_err());
    assert_eq!(dump(phone.app().conn(), &[LAST_ERROR_KEY]), before);
}

#[test]
fn discarding_rewinds_to_the_server_and_catches_up() {
    let (_dir, _path, phone) = open();
    // A case that never reached the server is simply deleted.
    phone
        .create_case(&new_case("draft", "草稿", "330604101201"), None, T0)
        .unwrap();
    phone
        .discard_local_changes("draft", [5, 5, 5, 5], T0)
        .unwrap();
    assert!(phone.summary("draft").unwrap().is_none());
    assert_eq!(
        phone.actor(),
        crate::identity::actor_for(DEVICE, [5, 5, 5, 5]).unwrap()
    );

    // The server holds s1; the phone adds a note the server refuses, then discards it.
    let mut server = server_case("s1", "路灯不亮");
    let request = phone.build_request(T0, 50).unwrap();
    let mut resp = response();
    resp.docs = vec![DocUpdate {
        doc_id: "s1".into(),
        payload: Payload::Snapshot(server.save()),
        heads: raw(&server.heads()),
    }];
    phone.apply_response(&resp, &request, T0 + 1).unwrap();
    phone.add_note("s1", "不该有的备注", T0 + 2).unwrap();
    let push = phone.build_request(T0 + 3, 50).unwrap();
    let mut resp = response();
    resp.results = vec![PushResult::Rejected {
        doc_id: "s1".into(),
        reason: Rejection {
            code: RejectCode::CaseClosed,
            message: "closed".into(),
        },
    }];
    phone.apply_response(&resp, &push, T0 + 4).unwrap();
    phone
        .discard_local_changes("s1", [6, 6, 6, 6], T0 + 5)
        .unwrap();
    let case = phone.get_case("s1").unwrap().case;
    assert!(case.notes.is_empty());
    assert!(phone.sync_status().unwrap().rejected.is_empty());
    assert!(!phone.summary("s1").unwrap().unwrap().has_pending);

    // Meanwhile the server got a note from someone else. The next request asks for s1
    // with a sync message and pushes nothing.
    server
        .add_note("服务器备注", &server_author(), T0 + 6)
        .unwrap();
    let request = phone.build_request(T0 + 7, 50).unwrap();
    assert!(request.pushes.is_empty());
    assert_eq!(request.catch_up.len(), 1);
    assert_eq!(request.catch_up[0].doc_id, "s1");
    // The server answers as the sync protocol does, from a fresh state.
    let mut server_state = SyncState::new();
    let message = Message::decode(&request.catch_up[0].message).unwrap();
    server
        .automerge()
        .sync()
        .receive_sync_message(&mut server_state, message)
        .unwrap();
    let answer = server
        .automerge()
        .sync()
        .generate_sync_message(&mut server_state)
        .unwrap();
    let mut resp = response();
    resp.catch_up = vec![CatchUp {
        doc_id: "s1".into(),
        message: answer.encode(),
    }];
    let outcome = phone.apply_response(&resp, &request, T0 + 8).unwrap();
    assert_eq!(outcome.received, ["s1"]);
    let case = phone.get_case("s1").unwrap().case;
    assert_eq!(case.notes.len(), 1);
    assert_eq!(case.notes[0].text, "服务器备注");
    assert!(phone.build_request(T0 + 9, 50).unwrap().catch_up.is_empty());
    assert!(!phone.summary("s1").unwrap().unwrap().has_pending);

    // New edits use the new actor, so no sequence number is reused.
    phone.add_note("s1", "新备注", T0 + 10).unwrap();
    let push = phone.build_request(T0 + 11, 50).unwrap();
    let change = Change::try_from(&push.pushes[0].changes[0][..]).unwrap();
    assert_eq!(
        change.actor_id(),
        &crate::identity::actor_for(DEVICE, [6, 6, 6, 6]).unwrap()
    );
    assert_eq!(change.seq(), 1);
}

#[test]
fn revealing_a_phone_number_is_recorded_and_synced() {
    let (_dir, _path, phone) = open();
    phone
        .create_case(
            &new_case("c1", "噪音", "330604101201"),
            Some(&complainant()),
            T0,
        )
        .unwrap();
    let first = phone.build_request(T0, 50).unwrap();
    let pii_pushed = |r: &SyncRequest| r.pushes.iter().any(|p| p.doc_id == "c1#pii");
    assert!(pii_pushed(&first));
    let mut resp = response();
    resp.results = first
        .pushes
        .iter()
        .map(|p| accept(&p.doc_id, &heads(&phone, &p.doc_id)))
        .collect();
    phone.apply_response(&resp, &first, T0 + 1).unwrap();
    assert!(!pii_pushed(&phone.build_request(T0 + 2, 50).unwrap()));
    let masked = phone.get_case("c1").unwrap().masked_phone;
    assert_eq!(masked.as_deref(), Some("138****1234"));
    assert_eq!(
        phone.reveal_complainant_phone("c1", T0 + 3).unwrap(),
        "13812341234"
    );
    // The reveal is a change of its own, waiting to be sent to the server's audit log.
    assert!(pii_pushed(&phone.build_request(T0 + 4, 50).unwrap()));
    assert!(phone.reveal_complainant_phone("nope", T0 + 5).is_err());
}

#[test]
fn wipe_deletes_everything() {
    let (_dir, path, phone) = open();
    phone
        .create_case(
            &new_case("c1", "噪音", "330604101201"),
            Some(&complainant()),
            T0,
        )
        .unwrap();
    phone.wipe().unwrap();
    assert_eq!(phone.get_case("c1").unwrap_err().code(), "wiped");
    assert_eq!(phone.build_request(T0, 50).unwrap_err().code(), "wiped");
    let rows = dump(phone.app().conn(), &[]);
    assert!(rows.is_empty(), "{rows:?}");
    drop(phone);
    let bytes = std::fs::read(&path).unwrap();
    let needle = "13812341234".as_bytes();
    assert!(!bytes.windows(needle.len()).any(|w| w == needle));
    let phone = Phone::open(&path, TOKEN, [8, 8, 8, 8], None).unwrap();
    assert!(phone.identity().unwrap().is_none());
    assert!(count(&phone, CaseList::All) == 0);
}

/// A transport that answers from a script and records what it was sent.
struct Script {
    answers: VecDeque<Result<SyncResponse, TransportError>>,
    sent: Vec<SyncRequest>,
}

impl Transport for Script {
    fn exchange(&mut self, request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        self.sent.push(wire::decode_request(&request).unwrap());
        match self.answers.pop_front() {
            Some(Ok(resp)) => Ok(wire::encode_response(&resp)),
            Some(Err(e)) => Err(e),
            None => Err(TransportError::Network("script ran out".into())),
        }
    }
}

fn page(id: &str, after: Option<&str>, remaining: u64) -> SyncResponse {
    let mut server = server_case(id, id);
    let mut resp = response();
    resp.docs = vec![DocUpdate {
        doc_id: id.into(),
        payload: Payload::Snapshot(server.save()),
        heads: raw(&server.heads()),
    }];
    resp.cursor = 0;
    resp.restore = after.map(|a| RestoreToken {
        upto: 40,
        after: a.into(),
    });
    resp.remaining = remaining;
    if after.is_none() {
        resp.cursor = 40;
    }
    resp
}

#[test]
fn sync_pages_through_a_restore_and_resumes_after_a_drop() {
    let (_dir, _path, phone) = open();
    phone
        .create_case(&new_case("c1", "噪音", "330604101201"), None, T0)
        .unwrap();
    let max_cuts = super::sync::client::MAX_CUTS_PER_PAGE as usize;
    let mut answers = VecDeque::from([Ok(page("r1", Some("r1"), 2))]);
    answers.extend((0..max_cuts).map(|_| Err(TransportError::Network("dropped".into()))));
    let mut script = Script {
        answers,
        sent: Vec::new(),
    };
    let mut reports = Vec::new();
    let cancel = AtomicBool::new(false);
    let err = phone
        .sync(&mut script, T0, &mut |p| reports.push(p), &cancel, 1)
        .unwrap_err();
    assert_eq!(err.code(), "network");
    // The dropped page is asked for again with half the bytes each time, then the sync gives up.
    assert_eq!(script.sent.len(), 1 + max_cuts);
    assert_eq!(script.sent[2].page_bytes, script.sent[1].page_bytes / 2);
    assert!(
        script.sent[1..]
            .iter()
            .all(|r| r.restore.as_ref().unwrap().after == "r1")
    );
    assert_eq!(
        script.sent[0].pushes.len(),
        1,
        "pushes go in the first request"
    );
    assert!(script.sent[1].pushes.is_empty(), "and only there");
    assert_eq!(script.sent[1].restore.as_ref().unwrap().after, "r1");
    assert!(phone.summary("r1").unwrap().is_some(), "page 1 was stored");
    let status = phone.sync_status().unwrap();
    assert!(status.restoring);
    assert!(status.last_error.unwrap().contains("dropped"));
    assert_eq!(reports.last().unwrap().cases_received, 1);

    // The next sync resumes at page 2, then page 3 ends the restore.
    let mut script = Script {
        answers: VecDeque::from([Ok(page("r2", Some("r2"), 1)), Ok(page("r3", None, 0))]),
        sent: Vec::new(),
    };
    let summary = phone
        .sync(&mut script, T0 + 1, &mut |_| {}, &cancel, 1)
        .unwrap();
    assert_eq!(summary.pages, 2);
    assert!(!summary.cancelled);
    assert_eq!(summary.progress.phase, SyncPhase::Done);
    assert_eq!(summary.progress.cases_received, 2);
    assert_eq!(script.sent[0].restore.as_ref().unwrap().after, "r1");
    assert_eq!(script.sent[0].pushes.len(), 1, "c1 was never acknowledged");
    let status = phone.sync_status().unwrap();
    assert!(!status.restoring);
    assert_eq!(status.last_error, None);
    assert_eq!(status.last_sync_at, Some(T0 + 1));
    assert_eq!(phone.build_request(T0, 1).unwrap().cursor, 40);
    assert_eq!(count(&phone, CaseList::Status(Status::Registered)), 3);
}

#[test]
fn sync_stops_between_pages_when_cancelled() {
    let (_dir, _path, phone) = open();
    let mut script = Script {
        answers: VecDeque::from([Ok(page("r1", Some("r1"), 5)), Ok(page("r2", None, 0))]),
        sent: Vec::new(),
    };
    let cancel = AtomicBool::new(true);
    let summary = phone
        .sync(&mut script, T0, &mut |_| {}, &cancel, 1)
        .unwrap();
    assert!(summary.cancelled);
    assert_eq!(summary.pages, 1);
    assert_eq!(summary.progress.remaining, 5);
    assert_eq!(script.sent.len(), 1);
}

#[test]
fn a_refused_token_keeps_the_data() {
    let (_dir, _path, phone) = open();
    phone
        .create_case(&new_case("c1", "噪音", "330604101201"), None, T0)
        .unwrap();
    let mut script = Script {
        answers: VecDeque::from([Err(TransportError::Unauthorized {
            wipe: false,
            message: "bad token".into(),
            proof: None,
        })]),
        sent: Vec::new(),
    };
    let cancel = AtomicBool::new(false);
    assert!(
        phone
            .sync(&mut script, T0, &mut |_| {}, &cancel, 10)
            .is_err()
    );
    assert!(phone.summary("c1").unwrap().is_some(), "not revoked: kept");
    // A revoked device wipes itself only on a proven revocation: `answers.rs`.
}

#[derive(Default)]
struct Collect(std::sync::Mutex<Vec<CaseChanges>>);

impl ChangeListener for Collect {
    fn cases_changed(&self, changes: &CaseChanges) {
        self.0.lock().unwrap().push(changes.clone());
    }
}

#[test]
fn listeners_hear_edits_and_pages_until_removed() {
    let (_dir, _path, phone) = open();
    let heard = std::sync::Arc::new(Collect::default());
    let id = phone.add_listener(heard.clone());
    phone
        .create_case(
            &new_case("c1", "噪音", "330604101201"),
            Some(&complainant()),
            T0,
        )
        .unwrap();
    phone.reveal_complainant_phone("c1", T0 + 1).unwrap();
    assert!(
        phone
            .edit("nope", &FieldEdit::Title("x".into()), T0)
            .is_err()
    );
    let request = phone.build_request(T0 + 2, 50).unwrap();
    let mut resp = response();
    resp.results = vec![accept("c1", &heads(&phone, "c1"))];
    resp.evict = vec!["c1#pii".into()];
    phone.apply_response(&resp, &request, T0 + 3).unwrap();
    {
        let heard = heard.0.lock().unwrap();
        let sources: Vec<ChangeSource> = heard.iter().map(|c| c.source).collect();
        assert_eq!(
            sources,
            [ChangeSource::Local, ChangeSource::Local, ChangeSource::Sync],
            "a failed edit is not announced"
        );
        assert_eq!(heard[0].updated, ["c1"]);
        assert_eq!(heard[1].updated, ["c1"], "personal data counts as the case");
        assert_eq!(heard[2].acknowledged, ["c1"]);
        assert!(heard[2].removed.is_empty(), "kept: the reveal is unsent");
    }
    assert!(phone.remove_listener(id));
    assert!(!phone.remove_listener(id));
    phone.add_note("c1", "备注", T0 + 4).unwrap();
    assert_eq!(heard.0.lock().unwrap().len(), 3);
}
