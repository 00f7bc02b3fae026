//! Replays every input kept under `core/fuzz/corpus/<target>/` and every crasher ever found,
//! kept under `core/fuzz/regressions/<target>/`, through the fuzz targets' bodies
//! (`gridcase_core::fuzzing`), on stable Rust: what libFuzzer once found stays fixed.
//!
//! `cargo test -p gridcase-core --test fuzz_corpus -- --ignored write_seeds` rewrites the
//! hand-made seeds the corpus started from.

use std::path::{Path, PathBuf};

use automerge::ActorId;
use automerge::sync::{State, SyncDoc};
use gridcase_core::doc::{CaseDoc, FieldEdit};
use gridcase_core::fuzzing;
use gridcase_core::lifecycle::Action;
use gridcase_core::rules::{RulesText, RulesUpdate};
use gridcase_core::sync::parts::{self, SnapshotPart};
use gridcase_core::sync::{
    CREATED_KEY, CaseTimes, CatchUp, DocPush, DocUpdate, EventTime, Identity, Payload, PushResult,
    RestoreToken, SyncRequest, SyncResponse, compact, wire,
};

/// A fuzz target's name and body.
type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 8] = [
    ("sync_request", fuzzing::sync_request),
    ("snapshot", fuzzing::snapshot),
    ("change", fuzzing::change),
    ("catch_up", fuzzing::catch_up),
    ("judge", fuzzing::judge),
    ("compact", fuzzing::compact),
    ("parts", fuzzing::parts),
    ("response", fuzzing::response),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    files
}

#[test]
fn corpus_and_crashers_replay_without_panicking() {
    let mut total = 0;
    for (target, body) in TARGETS {
        let seeds = inputs("corpus", target);
        assert!(!seeds.is_empty(), "no corpus for {target}");
        for path in seeds.iter().chain(&inputs("regressions", target)) {
            let data = std::fs::read(path).unwrap();
            body(&data);
            total += 1;
        }
    }
    assert!(total >= TARGETS.len());
}

/// The judge's seeds are pushes it accepts, so the fuzzer starts from the accepted path.
#[test]
fn honest_judge_seeds_are_accepted() {
    for seed in judge_seeds() {
        let verdict = fuzzing::judge_result(&seed).expect("the seed decodes");
        assert!(verdict.is_ok(), "pusher {}: {:?}", seed[0], verdict.err());
    }
}

/// The response seeds are answers the phone takes: each but the first page of a restore in
/// parts (whose next page the fake server never sends) leaves the new case readable.
#[test]
fn response_seeds_are_taken_by_the_phone() {
    let seeds = response_seeds(&mut fuzzing::sample_case());
    for (n, seed) in seeds.iter().enumerate() {
        let (phone, synced) = fuzzing::response_sync(seed);
        if n == 3 {
            assert!(synced.is_err(), "the restore goes on, and the link is gone");
            assert!(phone.get_case("case-1").is_err(), "nothing whole yet");
            continue;
        }
        assert!(synced.is_ok(), "seed {n}: {:?}", synced.err());
        let case = phone.get_case("case-1").expect("the new case is held");
        assert_eq!(case.case.title, "菜市场噪音", "seed {n}");
    }
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut doc = fuzzing::sample_case();
    let changes: Vec<Vec<u8>> = doc
        .get_changes(&[])
        .iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    let mut out: Vec<(&str, Vec<u8>)> = changes.iter().map(|c| ("change", c.clone())).collect();
    let mut state = State::new();
    let hello = doc.sync().generate_sync_message(&mut state).unwrap();
    out.push(("catch_up", hello.clone().encode()));
    let request = SyncRequest {
        device_time: 5_000,
        cursor: 3,
        page_size: 200,
        pushes: vec![DocPush {
            doc_id: "case-1".into(),
            changes,
        }],
        catch_up: vec![CatchUp {
            doc_id: "case-1".into(),
            message: hello.encode(),
        }],
        ..Default::default()
    };
    out.push(("sync_request", wire::encode_request(&request)));
    out.push((
        "sync_request",
        wire::encode_request(&SyncRequest::default()),
    ));
    out.extend(judge_seeds().into_iter().map(|seed| ("judge", seed)));
    let saved = doc.save_nocompress();
    out.push(("snapshot", compact::strip(&saved).unwrap()));
    out.push(("snapshot", saved.clone()));
    out.push(("compact", compact::strip(&saved).unwrap()));
    out.push(("compact", compact::strip(&doc.save()).unwrap()));
    for (flags, snapshot) in [(1, saved.clone()), (0, compact::strip(&saved).unwrap())] {
        let mut input = vec![flags];
        input.extend(postcard::to_allocvec(&parts_of(&snapshot, 400)).unwrap());
        out.push(("parts", input));
    }
    out.extend(
        response_seeds(&mut doc)
            .into_iter()
            .map(|r| ("response", r)),
    );
    out
}

/// `snapshot` of `case-1` cut into parts of `budget` bytes, as the server sends them.
fn parts_of(snapshot: &[u8], budget: usize) -> Vec<SnapshotPart> {
    let mut out: Vec<SnapshotPart> = Vec::new();
    loop {
        let staged = out.last().map(|p| gridcase_core::sync::StagedSnapshot {
            doc_id: p.doc_id.clone(),
            hash: p.hash.clone(),
            have: p.offset + p.bytes.len() as u64,
        });
        let part = parts::next_part("case-1", snapshot, staged.as_ref(), budget);
        let last = part.is_last();
        out.push(part);
        if last {
            return out;
        }
    }
}

/// What a server answers the sample phone's first sync: its push acknowledged, a new case
/// (compact snapshot, changes, a catch-up answer or parts), trusted times and new rules.
fn response_seeds(doc: &mut automerge::AutoCommit) -> Vec<Vec<u8>> {
    let saved = doc.save_nocompress();
    let heads: Vec<Vec<u8>> = doc.get_heads().iter().map(|h| h.0.to_vec()).collect();
    let changes = doc
        .get_changes(&[])
        .iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    let [worker, ..] = fuzzing::sample_pushers();
    let first = SyncResponse {
        server_time: fuzzing::NOW + 5_000,
        identity: Identity {
            user: worker.user.clone(),
            device: worker.device.clone(),
            role: worker.role.as_str().into(),
            jurisdiction: worker.jurisdiction.as_given().into(),
        },
        results: vec![PushResult::Accepted {
            doc_id: fuzzing::PHONE_CASE.into(),
            heads: Vec::new(),
        }],
        docs: vec![DocUpdate {
            doc_id: "case-1".into(),
            payload: Payload::Snapshot(compact::strip(&saved).unwrap()),
            heads: Vec::new(),
        }],
        cursor: 7,
        times: vec![CaseTimes {
            case_id: "case-1".into(),
            times: vec![EventTime {
                event: CREATED_KEY.into(),
                at: 1_000,
            }],
        }],
        rules: Some(RulesUpdate {
            version: 1,
            text: RulesText::shipped(),
        }),
        ..Default::default()
    };
    let as_changes = SyncResponse {
        docs: vec![DocUpdate {
            doc_id: "case-1".into(),
            payload: Payload::Changes(changes),
            heads,
        }],
        evict: vec![fuzzing::PHONE_CASE.into(), "gone".into()],
        rules: None,
        ..first.clone()
    };
    // The server's answer to the catch-up message of a phone that holds nothing of the case.
    let (mut server, mut phone) = (State::new(), State::new());
    let asked = automerge::AutoCommit::new()
        .sync()
        .generate_sync_message(&mut phone)
        .unwrap();
    doc.sync().receive_sync_message(&mut server, asked).unwrap();
    let answer = doc.sync().generate_sync_message(&mut server).unwrap();
    let caught_up = SyncResponse {
        docs: Vec::new(),
        catch_up: vec![CatchUp {
            doc_id: "case-1".into(),
            message: answer.encode(),
        }],
        ..first.clone()
    };
    let mut in_parts = parts_of(&saved, 600).into_iter();
    let first_part = SyncResponse {
        docs: Vec::new(),
        restore: Some(RestoreToken {
            upto: 7,
            after: String::new(),
        }),
        remaining: 1,
        part: in_parts.next(),
        ..first.clone()
    };
    let whole_part = SyncResponse {
        docs: Vec::new(),
        part: parts_of(&saved, saved.len()).pop(),
        ..first.clone()
    };
    [first, as_changes, caught_up, first_part, whole_part]
        .iter()
        .map(wire::encode_response)
        .collect()
}

/// Pushes each pusher of the sample case could honestly make, plus the case's own history as a
/// push of a new document.
fn judge_seeds() -> Vec<Vec<u8>> {
    let pushers = fuzzing::sample_pushers();
    let mut seeds = Vec::new();
    for (n, pusher) in pushers.iter().enumerate() {
        let mut base = fuzzing::sample_case();
        base.set_actor(ActorId::from(vec![10 + n as u8; 20]));
        let heads = base.get_heads();
        let mut doc = CaseDoc::from_automerge(base).unwrap();
        let me = fuzzing::author_of(pusher);
        let _ = doc.add_note("现场已查看", &me, 10_000);
        let _ = doc.act(&Action::Sign, &me, 11_000);
        let _ = doc.edit(&FieldEdit::Title("菜市场夜间噪音".into()), &me, 12_000);
        let _ = doc.splice_description(0, 0, "补充：", &me, 13_000);
        let changes = doc.automerge().get_changes(&heads);
        seeds.push(fuzzing::judge_input(n as u8, &changes));
    }
    // The worker's own part of the case's history (creation and registration), as the push of a
    // case the server has never seen.
    let mut history = fuzzing::sample_case().get_changes(&[]);
    history.retain(|c| *c.actor_id() == ActorId::from(vec![1u8; 20]));
    seeds.push(fuzzing::judge_input(0x80, &history));
    seeds
}

#[test]
#[ignore = "writes the hand-made seeds into core/fuzz/corpus"]
fn write_seeds() {
    for (n, (target, bytes)) in seeds().into_iter().enumerate() {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{n}")), bytes).unwrap();
    }
}
