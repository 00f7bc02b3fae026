//! The bodies of the fuzz targets (`core/fuzz/`), kept here so that stable `cargo test` replays
//! the checked-in corpus and every crasher ever found (`core/tests/fuzz_corpus.rs`) through
//! exactly the code libFuzzer explores. Each function takes arbitrary bytes and must return
//! without panicking, whatever they are.

use automerge::sync::{State, SyncDoc};
use automerge::{ActorId, AutoCommit, Change};
use sha2::{Digest, Sha256};

use crate::area::Jurisdiction;
use crate::doc::CaseDoc;
use crate::lifecycle::Action;
use crate::model::*;
use crate::sync::Rejection;
use crate::sync::{compact, limits, wire};
use crate::validate::{Judged, PushContext, Pusher, judge_push};

mod phone;
pub use phone::{NOW, PHONE_CASE, compact, parts, response, response_sync};

/// libfuzzer-sys aborts on every panic, even one the code under test catches on purpose
/// ([`limits::apply_untrusted`] catches Automerge's). The fuzz targets call this first: caught
/// panics then pass quietly, and an uncaught one still aborts (libfuzzer-sys checks the target's
/// result itself).
pub fn let_caught_panics_pass() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

/// The people of the sample case: the grid worker who registered it (and is its assignee), the
/// township staff who dispatched it, a handling unit and the hotline centre.
pub fn sample_pushers() -> [Pusher; 4] {
    let person = |user: &str, device: &str, role, area| Pusher {
        user: user.into(),
        device: device.into(),
        role,
        jurisdiction: Jurisdiction::parse(area).expect("a valid jurisdiction"),
    };
    [
        person(
            "li",
            "0123456789abcdef0123456789abcdef",
            Role::GridWorker,
            "330604101",
        ),
        person(
            "zhao",
            "fedcba9876543210fedcba9876543210",
            Role::TownshipStaff,
            "330604101",
        ),
        person(
            "unit",
            "00000000000000000000000000000003",
            Role::HandlingUnit,
            "330604",
        ),
        person(
            "hotline",
            "00000000000000000000000000000004",
            Role::HotlineCentre,
            "3306",
        ),
    ]
}

/// How a pusher signs their changes and entries.
pub fn author_of(pusher: &Pusher) -> Author {
    Author {
        user: pusher.user.clone(),
        device: pusher.device.clone(),
        role: pusher.role,
    }
}

/// A registered, dispatched case with a note: the kind of document pushes land on.
pub fn sample_case() -> AutoCommit {
    let [worker, township, ..] = sample_pushers();
    let (worker, township) = (author_of(&worker), author_of(&township));
    let mut doc = CaseDoc::create(
        &sample_new_case("case-1", "GC-1"),
        &worker,
        ActorId::from(vec![1u8; 20]),
        1_000,
    )
    .expect("the sample case is valid");
    doc.act(&Action::Register, &worker, 2_000)
        .expect("register");
    let mut am = doc.into_automerge();
    am.set_actor(ActorId::from(vec![2u8; 20]));
    let mut doc = CaseDoc::from_automerge(am).expect("reads");
    let dispatch = Action::Dispatch {
        unit: "城管中队".into(),
        assignee: "li".into(),
    };
    doc.act(&dispatch, &township, 3_000).expect("dispatch");
    doc.add_note("已联系", &township, 4_000).expect("note");
    doc.into_automerge()
}

/// A grid worker's noise complaint in a village of 330604101, as case `id` numbered `number`.
pub fn sample_new_case(id: &str, number: &str) -> NewCase {
    NewCase {
        id: id.into(),
        number: number.into(),
        channel: Channel::Grid,
        case_type: CaseType::Complaint,
        category: "噪音".into(),
        urgency: Urgency::General,
        priority: false,
        title: "菜市场噪音".into(),
        description: "夜里卸货".into(),
        location: Location {
            address: "一村".into(),
            area_code: "330604101201".into(),
            gps: None,
        },
    }
}

/// Rewrites a change chunk's checksum to match its contents, so that mutated inputs reach the
/// decoder instead of stopping at the checksum. Leaves anything that is not a chunk alone.
pub fn fix_checksum(bytes: &mut [u8]) {
    if bytes.len() < 10 || bytes[..4] != [0x85, 0x6f, 0x4a, 0x83] {
        return;
    }
    let mut hasher = Sha256::new();
    hasher.update(&bytes[8..]);
    let digest = hasher.finalize();
    bytes[4..8].copy_from_slice(&digest[..4]);
}

/// Applies decoded changes to a copy of `doc` as the server does, then reads, saves and reloads
/// it; errors are fine, panics are not.
fn apply_and_read(doc: &AutoCommit, changes: Vec<Change>) {
    let mut copy = doc.clone();
    if limits::apply_untrusted(&mut copy, changes).is_err() {
        return;
    }
    let saved = copy.save_nocompress();
    let _ = AutoCommit::load(&saved);
    if let Ok(case) = CaseDoc::from_automerge(copy) {
        let _ = case.read();
    }
}

/// One change chunk from a phone: the bounds check, the decoder, and applying it to a case.
pub fn change(data: &[u8]) {
    let mut bytes = data.to_vec();
    fix_checksum(&mut bytes);
    if let Ok(change) = limits::decode_change(&bytes) {
        apply_and_read(&sample_case(), vec![change]);
    }
}

/// One catch-up message from a phone, answered against a case as the server does.
pub fn catch_up(data: &[u8]) {
    let Ok(message) = limits::decode_catch_up(data) else {
        return;
    };
    let mut doc = sample_case();
    let mut state = State::new();
    if doc.sync().receive_sync_message(&mut state, message).is_ok() {
        let _ = doc.sync().generate_sync_message(&mut state);
    }
}

/// A push judged against the sample case as the server judges it. The input: one byte choosing
/// the pusher (and, with its high bit, a document the server has never seen), then changes, each
/// as a 2-byte big-endian length and the chunk.
pub fn judge(data: &[u8]) {
    if let Some(Ok(judged)) = judge_result(data) {
        let mut doc = judged.doc;
        let _ = AutoCommit::load(&doc.save_nocompress());
    }
}

/// [`judge`]'s verdict; `None` when the input does not decode to changes.
pub fn judge_result(data: &[u8]) -> Option<Result<Judged, Rejection>> {
    let (&selector, mut rest) = data.split_first()?;
    let pushers = sample_pushers();
    let pusher = &pushers[usize::from(selector & 0x7f) % pushers.len()];
    let mut changes = Vec::new();
    while let [high, low, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*high, *low])).min(tail.len());
        let mut bytes = tail[..len].to_vec();
        rest = &tail[len..];
        fix_checksum(&mut bytes);
        changes.push(limits::decode_change(&bytes).ok()?);
    }
    let stored = (selector & 0x80 == 0).then(sample_case);
    let ctx = PushContext {
        doc_id: "case-1",
        case_scope: None,
        device_holds: true,
    };
    Some(judge_push(stored.as_ref(), &changes, pusher, &ctx))
}

/// Encodes a push for [`judge`]: the inverse of its input format.
pub fn judge_input(pusher: u8, changes: &[Change]) -> Vec<u8> {
    let mut out = vec![pusher];
    for change in changes {
        let bytes = change.raw_bytes();
        let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&bytes[..usize::from(len)]);
    }
    out
}

/// A snapshot as a phone receives it (compact or as saved, `crate::sync::compact`): expanded,
/// loaded and read as a case.
pub fn snapshot(data: &[u8]) {
    if let Ok(expanded) = compact::expand(data.to_vec())
        && let Ok(case) = CaseDoc::from_automerge(expanded.doc)
    {
        let _ = case.read();
    }
}

/// A whole sync request body: the frame, then every push's changes and every catch-up.
pub fn sync_request(data: &[u8]) {
    let Ok(request) = wire::decode_request(data) else {
        return;
    };
    let doc = sample_case();
    for push in &request.pushes {
        let changes: Result<Vec<Change>, _> = push
            .changes
            .iter()
            .map(|bytes| limits::decode_change(bytes))
            .collect();
        if let Ok(changes) = changes {
            apply_and_read(&doc, changes);
        }
    }
    for ask in &request.catch_up {
        catch_up(&ask.message);
    }
}
