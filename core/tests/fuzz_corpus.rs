//! Replays every input kept under `core/fuzz/corpus/<target>/` and every crasher ever found,
//! kept under `core/fuzz/regressions/<target>/`, through the fuzz targets' bodies
//! (`gridcase_core::fuzzing`), on stable Rust: what libFuzzer once found stays fixed.
//!
//! `cargo test -p gridcase-core --test fuzz_corpus -- --ignored write_seeds` rewrites the
//! hand-made seeds the corpus started from.

use std::path::{Path, PathBuf};

use automerge::sync::{State, SyncDoc};
use gridcase_core::fuzzing;
use gridcase_core::sync::{CatchUp, DocPush, SyncRequest, wire};

const TARGETS: [(&str, fn(&[u8])); 3] = [
    ("sync_request", fuzzing::sync_request),
    ("change", fuzzing::change),
    ("catch_up", fuzzing::catch_up),
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
    out
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
