//! What the judge's tests share: people, a case, a server copy and a phone replica of it.

use automerge::transaction::CommitOptions;
use automerge::{ActorId, AutoCommit, ChangeHash};

use super::{Judged, PushContext, Pusher, judge_push};
use crate::area::Jurisdiction;
use crate::doc::{CaseDoc, PersonalDoc, personal_doc_id};
use crate::model::*;
use crate::sync::{RejectCode, Rejection};

pub(super) const CASE_ID: &str = "c1";
pub(super) const VILLAGE: &str = "330604101201";

pub(super) fn actor(n: u8) -> ActorId {
    ActorId::from(vec![n; 16])
}

pub(super) fn who(user: &str, role: Role) -> Author {
    Author {
        user: user.into(),
        device: format!("{user}-d"),
        role,
    }
}

pub(super) fn pusher(user: &str, role: Role, area: &str) -> Pusher {
    Pusher {
        user: user.into(),
        device: format!("{user}-d"),
        role,
        jurisdiction: Jurisdiction::parse(area).unwrap(),
    }
}

/// The pusher's own name, as their phone signs changes and entries.
pub(super) fn author_of(p: &Pusher) -> Author {
    Author {
        user: p.user.clone(),
        device: p.device.clone(),
        role: p.role,
    }
}

pub(super) fn new_case() -> NewCase {
    NewCase {
        id: CASE_ID.into(),
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
            area_code: VILLAGE.into(),
            gps: None,
        },
    }
}

pub(super) fn case_doc(author: &Author) -> CaseDoc {
    CaseDoc::create(&new_case(), author, actor(1), 0).unwrap()
}

pub(super) fn complainant() -> Complainant {
    Complainant {
        name: "张三".into(),
        phone: "13812341234".into(),
        anonymous: false,
    }
}

pub(super) fn personal_doc(author: &Author) -> PersonalDoc {
    PersonalDoc::create(&complainant(), author, actor(1), 0).unwrap()
}

/// A phone's replica of the server's copy, writing under its own actor.
pub(super) fn replica(server: &mut AutoCommit, n: u8) -> AutoCommit {
    let mut phone = server.fork();
    phone.set_actor(actor(n));
    phone
}

/// Commits raw operations the way a modified app would, signed as `author` at `now`.
pub(super) fn commit_as(doc: &mut AutoCommit, author: &Author, now: Millis) {
    doc.commit_with(
        CommitOptions::default()
            .with_message(serde_json::to_string(author).unwrap())
            .with_time(now),
    );
}

pub(super) fn ctx(doc_id: &str) -> PushContext<'_> {
    PushContext {
        doc_id,
        case_scope: None,
        device_holds: true,
    }
}

/// Pushes what `phone` has beyond `server` to it, as `by`.
pub(super) fn push(
    server: &mut AutoCommit,
    phone: &mut AutoCommit,
    by: &Pusher,
) -> Result<Judged, Rejection> {
    push_to(server, phone, by, &ctx(CASE_ID))
}

pub(super) fn push_to(
    server: &mut AutoCommit,
    phone: &mut AutoCommit,
    by: &Pusher,
    ctx: &PushContext<'_>,
) -> Result<Judged, Rejection> {
    let heads: Vec<ChangeHash> = server.get_heads();
    let new = phone.get_changes(&heads);
    judge_push(Some(server), &new, by, ctx)
}

/// Pushes a whole new document.
pub(super) fn push_new(
    doc: &mut AutoCommit,
    by: &Pusher,
    doc_id: &str,
) -> Result<Judged, Rejection> {
    let new = doc.get_changes(&[]);
    judge_push(None, &new, by, &ctx(doc_id))
}

pub(super) fn code<T>(r: Result<T, Rejection>) -> Option<RejectCode> {
    r.err().map(|r| r.code)
}

pub(super) fn personal_id() -> String {
    personal_doc_id(CASE_ID)
}
