//! Snapshots on the wire without what the phone can recompute (protocol 4).
//!
//! A saved Automerge document is one chunk: a 4-byte magic, a 4-byte checksum (the start of
//! the SHA-256 of the rest), the chunk type and length, then its body, which lists the actors,
//! the document's heads (32-byte change hashes) and the columns. The checksum and the heads
//! are random bytes no compressor shrinks: 36 of them per document of one head, about half of
//! the gzipped JSON of a case (BENCHMARKS.md, "The bytes floor"). The phone derives both from
//! the rest: loading the document computes every change's hash, so its heads, and the
//! checksum is a hash of the bytes it then holds.
//!
//! So a phone that says so (`SyncRequest::compact_snapshots`) receives each snapshot
//! [`strip`]ped: the chunk type, then the body with the head hashes left out (their count
//! stays), no magic, no checksum, no length. [`expand`] puts zero hashes in their place,
//! loads the document without checking heads, and writes the real heads and checksum back:
//! the result is the server's snapshot byte for byte (a property test checks it), stored as
//! received. A stripped snapshot never starts with the magic (its first byte is the chunk
//! type), so each side tells the two forms apart by their first bytes. What is lost is the
//! checksum's check for corruption, which the transport's own integrity (TLS, zstd's framing)
//! covers; the server is the phone's source for snapshots either way.

use std::collections::{BTreeSet, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::{AutoCommit, AutomergeError, ChangeHash};
use sha2::{Digest, Sha256};

/// The magic every saved Automerge chunk starts with.
pub const AUTOMERGE_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const DOCUMENT_CHUNK: u8 = 0;
const HASH_LEN: usize = 32;

/// Why a received snapshot does not load.
#[derive(Debug, thiserror::Error)]
pub enum ExpandError {
    #[error("a compact snapshot does not parse: {0}")]
    Malformed(&'static str),
    #[error("the snapshot does not load: {0}")]
    Load(#[from] automerge::AutomergeError),
}

/// Where a document chunk's parts lie in a saved snapshot.
struct Layout {
    /// Offset of the body (after magic, checksum, type and length).
    body: usize,
    /// Offset of the head hashes and their count.
    heads: usize,
    count: usize,
}

/// The snapshot without magic, checksum, length and head hashes; `None` when it is not a
/// single uncompressed-header document chunk (then it is sent as it is).
pub fn strip(snapshot: &[u8]) -> Option<Vec<u8>> {
    let layout = layout(snapshot)?;
    let heads_end = layout.heads + layout.count * HASH_LEN;
    let mut out = Vec::with_capacity(snapshot.len() - layout.body + 1);
    out.push(DOCUMENT_CHUNK);
    out.extend_from_slice(&snapshot[layout.body..layout.heads]);
    out.extend_from_slice(&snapshot[heads_end..]);
    Some(out)
}

/// A received snapshot loaded, and the server's saved bytes of it.
pub struct Expanded {
    pub bytes: Vec<u8>,
    pub doc: AutoCommit,
    /// The document's heads, derived from its changes.
    pub heads: Vec<ChangeHash>,
    /// Loaded from the full bytes. `false`: from a compact snapshot, whose heads the loaded
    /// document does not know (it answers `get_heads` with placeholders). Such a document may
    /// be read, and is stored as `bytes`; to change it, load `bytes` ([`Expanded::loaded`]).
    pub verified: bool,
}

impl Expanded {
    /// The document, fit to be changed and saved.
    pub fn loaded(self) -> Result<AutoCommit, ExpandError> {
        if self.verified {
            Ok(self.doc)
        } else {
            load_untrusted(|| AutoCommit::load(&self.bytes))
        }
    }
}

/// A received snapshot, either form, loaded.
pub fn expand(bytes: Vec<u8>) -> Result<Expanded, ExpandError> {
    if bytes.starts_with(&AUTOMERGE_MAGIC) {
        let mut doc = load_untrusted(|| AutoCommit::load(&bytes))?;
        let heads = doc.get_heads();
        return Ok(Expanded {
            bytes,
            doc,
            heads,
            verified: true,
        });
    }
    let (&chunk_type, body) = bytes.split_first().ok_or(ExpandError::Malformed("empty"))?;
    if chunk_type != DOCUMENT_CHUNK {
        return Err(ExpandError::Malformed("not a document chunk"));
    }
    let (heads_at, count) = heads_in_body(body).ok_or(ExpandError::Malformed("bad prefix"))?;
    let zeros = vec![[0u8; HASH_LEN]; count];
    let unverified = frame(body, heads_at, &zeros);
    let mut doc = load_untrusted(|| AutoCommit::load_unverified_heads(&unverified))?;
    let heads = derived_heads(&mut doc);
    if heads.len() != count {
        return Err(ExpandError::Malformed(
            "the head count does not match the changes",
        ));
    }
    let raw: Vec<[u8; HASH_LEN]> = heads.iter().map(|h| h.0).collect();
    let bytes = frame(body, heads_at, &raw);
    Ok(Expanded {
        bytes,
        doc,
        heads,
        verified: false,
    })
}

/// Loads a snapshot from outside. Automerge 0.12 panics on some malformed documents (an
/// assertion in its change collector, found by fuzzing: `core/fuzz/regressions/snapshot/` and
/// `compact/`), so loading runs under `catch_unwind` and a panic refuses the snapshot.
fn load_untrusted(
    load: impl FnOnce() -> Result<AutoCommit, AutomergeError>,
) -> Result<AutoCommit, ExpandError> {
    match catch_unwind(AssertUnwindSafe(load)) {
        Ok(loaded) => Ok(loaded?),
        Err(_) => Err(ExpandError::Malformed("Automerge could not load it")),
    }
}

/// The heads of a document's change graph (every change no other depends on), sorted as
/// Automerge saves them. `get_heads` would answer the heads the loaded bytes stated, here the
/// zeros put in their place.
fn derived_heads(doc: &mut AutoCommit) -> Vec<ChangeHash> {
    let meta = doc.get_changes_meta(&[]);
    let deps: HashSet<ChangeHash> = meta.iter().flat_map(|m| m.deps.iter().copied()).collect();
    let heads: BTreeSet<ChangeHash> = meta
        .iter()
        .map(|m| m.hash)
        .filter(|h| !deps.contains(h))
        .collect();
    heads.into_iter().collect()
}

/// A saved document chunk: magic, checksum, type, length, and `body` with `heads` inserted
/// at `heads_at`.
fn frame(body: &[u8], heads_at: usize, heads: &[[u8; HASH_LEN]]) -> Vec<u8> {
    let mut chunk = Vec::with_capacity(body.len() + heads.len() * HASH_LEN + 16);
    chunk.push(DOCUMENT_CHUNK);
    let len = body.len() + heads.len() * HASH_LEN;
    leb128_write(&mut chunk, len as u64);
    chunk.extend_from_slice(&body[..heads_at]);
    for head in heads {
        chunk.extend_from_slice(head);
    }
    chunk.extend_from_slice(&body[heads_at..]);
    let checksum = Sha256::digest(&chunk);
    let mut out = Vec::with_capacity(chunk.len() + 8);
    out.extend_from_slice(&AUTOMERGE_MAGIC);
    out.extend_from_slice(&checksum[..4]);
    out.extend_from_slice(&chunk);
    out
}

/// Finds body and heads in a saved snapshot that is exactly one document chunk.
fn layout(snapshot: &[u8]) -> Option<Layout> {
    let rest = snapshot.strip_prefix(&AUTOMERGE_MAGIC)?;
    let (&chunk_type, rest) = rest.get(4..)?.split_first()?;
    if chunk_type != DOCUMENT_CHUNK {
        return None;
    }
    let (len, used) = leb128_read(rest)?;
    let body = AUTOMERGE_MAGIC.len() + 4 + 1 + used;
    if snapshot.len().checked_sub(body)? != usize::try_from(len).ok()? {
        return None; // trailing chunks (changes saved after the document)
    }
    let (heads, count) = heads_in_body(&snapshot[body..])?;
    Some(Layout {
        body,
        heads: body + heads,
        count,
    })
}

/// In a document chunk's body: the offset of the head hashes (after their count) and how
/// many there are, once the body is long enough to hold them.
fn heads_in_body(body: &[u8]) -> Option<(usize, usize)> {
    let (actors, mut at) = leb128_read(body)?;
    for _ in 0..actors {
        let (len, used) = leb128_read(body.get(at..)?)?;
        at = at
            .checked_add(used)?
            .checked_add(usize::try_from(len).ok()?)?;
    }
    let (count, used) = leb128_read(body.get(at..)?)?;
    let count = usize::try_from(count).ok()?;
    at += used;
    (body.len().checked_sub(at)? / HASH_LEN >= count).then_some((at, count))
}

/// An unsigned LEB128 number and how many bytes it took (at most 10).
fn leb128_read(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, &byte) in bytes.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f).checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn leb128_write(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ActorId, ROOT, ReadDoc};
    use proptest::prelude::*;

    /// A document of `edits` writes by up to three actors, merged: several heads when the
    /// last writes of different actors are concurrent.
    fn document(edits: &[(u8, String)], concurrent_tail: bool) -> AutoCommit {
        let mut doc = AutoCommit::new().with_actor(ActorId::from(vec![1]));
        for (actor, text) in edits {
            doc.set_actor(ActorId::from(vec![*actor % 3 + 1]));
            doc.put(ROOT, format!("k{actor}"), text.as_str()).unwrap();
            doc.commit();
        }
        if concurrent_tail {
            let mut other = doc.fork().with_actor(ActorId::from(vec![9]));
            other.put(ROOT, "tail", "b").unwrap();
            doc.put(ROOT, "tail", "a").unwrap();
            doc.merge(&mut other).unwrap();
        }
        doc
    }

    proptest! {
        /// The server's saved bytes come back exactly, whatever the document: actors, heads
        /// (one or several), text.
        #[test]
        fn expanding_a_stripped_snapshot_gives_the_saved_bytes(
            edits in proptest::collection::vec((any::<u8>(), "\\PC{0,40}"), 1..12),
            concurrent in any::<bool>(),
        ) {
            let mut doc = document(&edits, concurrent);
            let saved = doc.save_nocompress();
            let stripped = strip(&saved).expect("a saved document strips");
            // Magic, checksum, the length (1-3 bytes) and 32 bytes a head are left out.
            let saved_off = saved.len() - stripped.len() - 32 * doc.get_heads().len();
            prop_assert!((9..=11).contains(&saved_off), "{}", saved_off);
            prop_assert!(!stripped.starts_with(&AUTOMERGE_MAGIC));
            let expanded = expand(stripped).unwrap();
            prop_assert!(!expanded.verified);
            prop_assert_eq!(&expanded.bytes, &saved);
            prop_assert_eq!(&expanded.heads, &doc.get_heads());
            prop_assert_eq!(expanded.doc.get(ROOT, "tail").unwrap().is_some(), concurrent);
            let mut loaded = expanded.loaded().unwrap();
            prop_assert_eq!(loaded.get_heads(), doc.get_heads());
        }

        /// Bytes from outside never panic: they expand to an error or to some document.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = expand(bytes.clone());
            let _ = strip(&bytes);
        }
    }

    /// Snapshots on which Automerge's loader panics (found by fuzzing) are refused.
    #[test]
    fn snapshots_that_panic_automerge_are_refused() {
        let compact = include_bytes!(
            "../../fuzz/regressions/compact/crash-653c263ea089a219fac6e5190d460ac28535328f"
        );
        let full = include_bytes!(
            "../../fuzz/regressions/snapshot/crash-fcb44274590a9aa5e7a681f31db10fb335ce0224"
        );
        for bytes in [&compact[..], &full[..]] {
            assert!(matches!(
                expand(bytes.to_vec()),
                Err(ExpandError::Malformed("Automerge could not load it"))
            ));
        }
    }

    #[test]
    fn a_full_snapshot_expands_as_it_is_and_others_are_refused() {
        let mut doc = document(&[(0, "一".into())], false);
        let saved = doc.save_nocompress();
        let full = expand(saved.clone()).unwrap();
        assert!(full.verified);
        assert_eq!((full.bytes, full.heads), (saved.clone(), doc.get_heads()));
        // Compressed columns strip too (the header is the same); trailing changes do not.
        assert!(strip(&doc.save()).is_some());
        let mut trailing = saved.clone();
        doc.put(ROOT, "k", "v").unwrap();
        trailing.extend(doc.save_incremental());
        assert!(strip(&trailing).is_none());
        assert!(matches!(expand(vec![]), Err(ExpandError::Malformed(_))));
        assert!(matches!(expand(vec![1, 0]), Err(ExpandError::Malformed(_))));
        let mut stripped = strip(&saved).unwrap();
        stripped.truncate(stripped.len() - 3);
        assert!(expand(stripped).is_err());
    }
}
