//! The phone's side of the fuzz targets: what a phone does with bytes the server sends it
//! (a whole response, a compact snapshot, snapshot parts). A server, or whatever answers in its
//! name, controls every one of these bytes; the phone must refuse what is wrong, never panic.

use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;

use crate::doc::CaseDoc;
use crate::model::*;
use crate::phone::queries::CaseList;
use crate::phone::{Phone, PhoneError, SyncSummary, Transport, TransportError};
use crate::store::queries::Page;
use crate::sync::parts::{self, Receive, SnapshotPart, StagedSnapshot};
use crate::sync::{Identity, compact};

/// The phone's device token (the device of [`super::sample_pushers`]' grid worker).
const TOKEN: &str = "0123456789abcdef0123456789abcdef.s3cretS3cretS3cret";
const NONCE: [u8; 4] = [1, 2, 3, 4];
/// 2025-01-06 08:00 China time: when the sample phone syncs.
pub const NOW: Millis = 1_736_150_400_000;
/// The case the sample phone holds (registered on it, pushed with its first request).
pub const PHONE_CASE: &str = "c1";

/// A compact snapshot (protocol 4) as a phone receives it. Beyond "no panic": one that expands
/// is stored as the bytes expanded, so those must strip back to exactly what came, and load
/// (with the heads derived) when the phone later changes the document.
pub fn compact(data: &[u8]) {
    if data.starts_with(&compact::AUTOMERGE_MAGIC) {
        return; // a full snapshot: the `snapshot` target's input
    }
    let Ok(expanded) = compact::expand(data.to_vec()) else {
        return;
    };
    assert!(!expanded.verified, "a compact snapshot is never verified");
    assert_eq!(
        compact::strip(&expanded.bytes).as_deref(),
        Some(data),
        "the stored bytes are not the received snapshot"
    );
    let heads = expanded.heads.clone();
    if let Ok(case) = CaseDoc::from_automerge(expanded.doc.clone()) {
        let _ = case.read();
    }
    let mut loaded = expanded
        .loaded()
        .expect("a snapshot that expanded loads from its stored bytes");
    assert_eq!(
        loaded.get_heads(),
        heads,
        "the derived heads are the loaded ones"
    );
}

/// Snapshot parts (protocol 3) as a phone stages them (`crate::phone::sync::staging`, here in
/// memory): each part received against what is staged, staged or refused, and the last one
/// assembled and expanded. The input: a flag byte, then the parts as postcard (as they sit in
/// a response). Flag bit 0 names every part's snapshot by the hash of all the parts' bytes, so
/// that mutated inputs reach assembly instead of stopping at the hash.
pub fn parts(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(mut received) = postcard::from_bytes::<Vec<SnapshotPart>>(rest) else {
        return;
    };
    if flags & 1 == 1 {
        let all: Vec<u8> = received.iter().flat_map(|p| p.bytes.clone()).collect();
        let hash = parts::snapshot_hash(&all);
        received.iter_mut().for_each(|p| p.hash = hash.clone());
    }
    let mut staging: Option<(StagedSnapshot, Vec<Vec<u8>>)> = None;
    for part in received {
        if let Some(snapshot) = stage(&mut staging, part) {
            super::snapshot(&snapshot);
        }
    }
}

/// Receives one part into `staging`; the assembled snapshot once its last part arrived whole.
fn stage(
    staging: &mut Option<(StagedSnapshot, Vec<Vec<u8>>)>,
    part: SnapshotPart,
) -> Option<Vec<u8>> {
    let discard_first = match parts::receive(staging.as_ref().map(|s| &s.0), &part) {
        Receive::Refuse(_) => return None,
        Receive::Stage { discard_first } => discard_first,
    };
    if discard_first || staging.is_none() {
        let fresh = StagedSnapshot {
            doc_id: part.doc_id.clone(),
            hash: part.hash.clone(),
            have: 0,
        };
        *staging = Some((fresh, Vec::new()));
    }
    let (held, bytes) = staging.as_mut()?;
    held.have += part.bytes.len() as u64;
    assert!(
        held.have <= part.total && part.total <= parts::MAX_SNAPSHOT_BYTES,
        "a staged part lies outside its snapshot"
    );
    let last = part.is_last();
    bytes.push(part.bytes);
    if !last {
        return None;
    }
    let (_, bytes) = staging.take()?;
    parts::assemble(bytes, part.total, &part.hash).ok()
}

/// A whole response as a phone reads it: a phone holding one unsent case syncs, and the
/// server's answer is `data`; the phone decodes it, stages a part, takes the rules, plans and
/// writes the page (documents, times, list rows), then its lists and the cases are read. Each
/// input starts from the same stored phone, so a crash replays.
pub fn response(data: &[u8]) {
    let (phone, _) = response_sync(data);
    for list in [
        CaseList::All,
        CaseList::Mine,
        CaseList::DueSoon,
        CaseList::Overdue,
    ] {
        let _ = phone.list(
            &list,
            Page {
                offset: 0,
                limit: 20,
            },
            NOW,
        );
    }
    let _ = phone.get_case(PHONE_CASE);
    let _ = phone.get_case("case-1");
}

/// [`response`]'s phone after its sync, and how the sync ended (a response announcing more
/// pages ends in a network failure: the fake server answers once).
pub fn response_sync(data: &[u8]) -> (Phone, Result<SyncSummary, PhoneError>) {
    let path = fresh_phone_file();
    let phone = Phone::open(&path, TOKEN, NONCE, None).expect("the sample phone opens");
    let mut answer = AnswerOnce(Some(data.to_vec()));
    let cancel = AtomicBool::new(false);
    let synced = phone.sync(&mut answer, NOW, &mut |_| {}, &cancel, 50);
    (phone, synced)
}

/// The server's side of one exchange: `data` once, then a network failure.
struct AnswerOnce(Option<Vec<u8>>);

impl Transport for AnswerOnce {
    fn exchange(&mut self, _request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        self.0
            .take()
            .ok_or_else(|| TransportError::Network("the link is gone".into()))
    }
}

/// A copy of the sample phone's store, written afresh (this process's own file).
fn fresh_phone_file() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gridcase-fuzz-phone-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join("phone.db");
    for suffix in ["-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(dir.join(format!("phone.db{suffix}")));
    }
    std::fs::write(&path, sample_phone_store()).expect("the sample phone store is written");
    path
}

/// The store of a phone whose grid worker registered one case and has not synced yet: made
/// once per process.
fn sample_phone_store() -> &'static [u8] {
    static STORE: OnceLock<Vec<u8>> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("gridcase-fuzz-seed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.join("phone.db");
        {
            let phone = Phone::open(&path, TOKEN, NONCE, None).expect("a new phone");
            let [worker, ..] = super::sample_pushers();
            let identity = Identity {
                user: worker.user.clone(),
                device: worker.device.clone(),
                role: worker.role.as_str().into(),
                jurisdiction: worker.jurisdiction.as_given().into(),
            };
            phone.set_identity_for_tests(&identity).expect("identity");
            phone
                .create_case(&super::sample_new_case(PHONE_CASE, "GC-c1"), None, NOW)
                .expect("the phone registers a case");
        }
        let bytes = std::fs::read(&path).expect("the sample phone store");
        let _ = std::fs::remove_dir_all(&dir);
        bytes
    })
}
