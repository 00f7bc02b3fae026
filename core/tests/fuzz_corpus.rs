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
use gridcase_core::sync::{CatchUp, DocPush, SyncRequest, compact, wire};

/// A fuzz target's name and body.
type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 5] = [
    ("sync_request", fuzzing::sync_request),
    ("snapshot", fuzzing::snapshot),
    ("change", fuzzing::change),
    ("catch_up", fuzzing::catch_up),
    ("judge", fuzzing::judge),
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
    out.push(("snapshot", saved));
    out
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
