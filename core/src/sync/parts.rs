//! A document too large for one page, sent in byte parts (protocol 3).
//!
//! A restore sends whole snapshots, at least one per page. Over a link that cuts every
//! connection after ~10 KB, a 100 KB case never arrives whole, however small the phone makes
//! its page budget. So a phone that says it accepts parts ([`crate::sync::SyncRequest`]
//! `accept_parts`) gets such a snapshot as consecutive byte ranges, each within its budget,
//! one per page; it stages each part durably and tells the server in its next request what it
//! holds ([`StagedSnapshot`]: which document, which snapshot by hash, how many bytes). The
//! server resumes after those bytes if its snapshot still has that hash, and starts again from
//! byte 0 (under the new hash) if the document changed meanwhile; the phone then discards what
//! it staged. Once every byte arrived, the phone checks length and hash and only then loads it.
//!
//! Why byte ranges of the snapshot rather than, say, the document's changes in groups: the
//! snapshot is what a restore already sends and stores as received; ranges need no Automerge
//! knowledge to cut or to join, any budget can be met exactly, and the hash names one exact
//! byte string, so "the server's version changed" is a comparison, not a merge.
//!
//! Everything here is pure; the server's respond path and the phone's store call it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{DocId, Hash};

/// The largest snapshot either side accepts in parts. A part's announced total beyond it is
/// refused before anything is staged, so a forged total cannot make a phone stage (or later
/// assemble) more than this.
pub const MAX_SNAPSHOT_BYTES: u64 = 64 * 1024 * 1024;

/// The length of a snapshot hash (SHA-256).
pub const HASH_LEN: usize = 32;

/// What a phone holds of a snapshot it receives in parts: sent with each request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedSnapshot {
    pub doc_id: DocId,
    /// [`snapshot_hash`] of the whole snapshot, as the parts announced it.
    pub hash: Hash,
    /// How many bytes from its start the phone holds (the next part starts there).
    pub have: u64,
}

/// One byte range of a snapshot too large for the page budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPart {
    pub doc_id: DocId,
    /// [`snapshot_hash`] of the whole snapshot.
    pub hash: Hash,
    /// The whole snapshot's length in bytes.
    pub total: u64,
    /// Where `bytes` start in the snapshot.
    pub offset: u64,
    pub bytes: Vec<u8>,
}

impl SnapshotPart {
    /// Whether this part ends the snapshot.
    pub fn is_last(&self) -> bool {
        self.offset.saturating_add(self.bytes.len() as u64) == self.total
    }
}

/// The hash that names one snapshot's exact bytes.
pub fn snapshot_hash(snapshot: &[u8]) -> Hash {
    Sha256::digest(snapshot).to_vec()
}

/// Server side: the part of `snapshot` (of document `doc_id`) to send next, within `budget`
/// bytes (at least one). It continues after what `staged` holds when that is this snapshot
/// (same document, same hash, a length within it), and starts from byte 0 otherwise: a
/// changed document, or a forged or stale `have`.
pub fn next_part(
    doc_id: &str,
    snapshot: &[u8],
    staged: Option<&StagedSnapshot>,
    budget: usize,
) -> SnapshotPart {
    let hash = snapshot_hash(snapshot);
    let total = snapshot.len();
    let offset = staged
        .filter(|s| s.doc_id == doc_id && s.hash == hash)
        .and_then(|s| usize::try_from(s.have).ok())
        .filter(|&have| have < total)
        .unwrap_or(0);
    let end = offset.saturating_add(budget.max(1)).min(total);
    SnapshotPart {
        doc_id: doc_id.to_owned(),
        hash,
        total: total as u64,
        offset: offset as u64,
        bytes: snapshot[offset..end].to_vec(),
    }
}

/// Phone side: what a received part does to the staging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receive {
    /// Stage it after what is held. `discard_first`: what was staged is of another document
    /// or another version of it; delete it before staging this part (which starts at 0).
    Stage { discard_first: bool },
    /// Refuse the page: the part is malformed (a total beyond [`MAX_SNAPSHOT_BYTES`], a range
    /// past its total, a hash of the wrong length) or does not continue what is staged (a
    /// repeat, a gap: the server resumes where the request said, so only a replayed or forged
    /// answer does that). Nothing of the page is stored; the next request asks again.
    Refuse(&'static str),
}

/// Decides what `part` does, given what the phone has staged.
pub fn receive(staged: Option<&StagedSnapshot>, part: &SnapshotPart) -> Receive {
    let end = part.offset.checked_add(part.bytes.len() as u64);
    if part.hash.len() != HASH_LEN {
        return Receive::Refuse("a snapshot hash is not 32 bytes");
    }
    if part.total > MAX_SNAPSHOT_BYTES {
        return Receive::Refuse("a snapshot in parts is larger than the phone accepts");
    }
    if part.bytes.is_empty() || end.is_none_or(|end| end > part.total) {
        return Receive::Refuse("a snapshot part lies outside its snapshot");
    }
    let same = staged.filter(|s| s.doc_id == part.doc_id && s.hash == part.hash);
    match same {
        Some(s) if s.have == part.offset => Receive::Stage {
            discard_first: false,
        },
        None if part.offset == 0 => Receive::Stage {
            discard_first: staged.is_some(),
        },
        _ => Receive::Refuse("a snapshot part does not continue what is staged"),
    }
}

/// Joins the staged parts (in offset order) into the snapshot they announced, or says why
/// they do not make it: a length or hash that differs means the staging is discarded.
pub fn assemble(parts: Vec<Vec<u8>>, total: u64, hash: &[u8]) -> Result<Vec<u8>, &'static str> {
    let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
    if len != total {
        return Err("the staged parts do not add up to the snapshot's length");
    }
    let snapshot = parts.concat();
    if snapshot_hash(&snapshot) != hash {
        return Err("the assembled snapshot does not match its hash");
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn staged(part: &SnapshotPart) -> StagedSnapshot {
        StagedSnapshot {
            doc_id: part.doc_id.clone(),
            hash: part.hash.clone(),
            have: part.offset + part.bytes.len() as u64,
        }
    }

    /// A 100 KB snapshot through a 10 KB budget: ten parts, each continuing the last,
    /// staged in order and assembled to the original bytes.
    #[test]
    fn a_snapshot_splits_into_parts_within_the_budget_and_assembles() {
        let whole = snapshot(100_000);
        let mut held: Option<StagedSnapshot> = None;
        let mut parts = Vec::new();
        loop {
            let part = next_part("c1", &whole, held.as_ref(), 10_000);
            assert!(part.bytes.len() <= 10_000);
            assert_eq!(
                receive(held.as_ref(), &part),
                Receive::Stage {
                    discard_first: false
                }
            );
            held = Some(staged(&part));
            let last = part.is_last();
            parts.push(part.bytes);
            if last {
                break;
            }
        }
        assert_eq!(parts.len(), 10);
        let hash = snapshot_hash(&whole);
        assert_eq!(assemble(parts, 100_000, &hash).unwrap(), whole);
    }

    /// After a cut the phone asks with what it holds; the server resumes there, so no part
    /// that was staged is sent again.
    #[test]
    fn a_resumed_request_gets_the_next_part_only() {
        let whole = snapshot(25_000);
        let first = next_part("c1", &whole, None, 10_000);
        let held = staged(&first);
        let again = next_part("c1", &whole, Some(&held), 10_000);
        assert_eq!((again.offset, again.bytes.len()), (10_000, 10_000));
        // The budget may change between parts (it halves after a cut).
        let smaller = next_part("c1", &whole, Some(&held), 4_000);
        assert_eq!((smaller.offset, smaller.bytes.len()), (10_000, 4_000));
    }

    /// The document changed on the server: its snapshot has another hash, the server starts
    /// again from byte 0 and the phone discards what it staged.
    #[test]
    fn a_changed_document_starts_again_and_the_stale_staging_is_discarded() {
        let old = snapshot(30_000);
        let held = staged(&next_part("c1", &old, None, 10_000));
        let mut new = old.clone();
        new.push(7);
        let part = next_part("c1", &new, Some(&held), 10_000);
        assert_eq!(part.offset, 0);
        assert_eq!(
            receive(Some(&held), &part),
            Receive::Stage {
                discard_first: true
            }
        );
        // Another document's part replaces the staging too.
        let other = next_part("c2", &old, Some(&held), 10_000);
        assert_eq!(other.offset, 0);
        assert_eq!(
            receive(Some(&held), &other),
            Receive::Stage {
                discard_first: true
            }
        );
    }

    /// A `have` the server cannot honour (past the end, forged) restarts at 0; a part that
    /// does not continue the staging, a forged total or range is refused.
    #[test]
    fn bad_offsets_and_totals_neither_resume_nor_stage() {
        let whole = snapshot(20_000);
        let first = next_part("c1", &whole, None, 10_000);
        let mut forged = staged(&first);
        for have in [20_000, u64::MAX] {
            forged.have = have;
            assert_eq!(next_part("c1", &whole, Some(&forged), 10_000).offset, 0);
        }
        let held = staged(&first);
        assert!(
            matches!(receive(Some(&held), &first), Receive::Refuse(_)),
            "a repeated part is not staged twice"
        );
        let mut gap = next_part("c1", &whole, Some(&held), 5_000);
        gap.offset += 1;
        assert!(matches!(receive(Some(&held), &gap), Receive::Refuse(_)));
        assert!(matches!(receive(None, &gap), Receive::Refuse(_)));
        let mut huge = first.clone();
        huge.total = MAX_SNAPSHOT_BYTES + 1;
        assert!(matches!(receive(None, &huge), Receive::Refuse(_)));
        let mut past = first.clone();
        past.offset = u64::MAX - 3;
        assert!(matches!(receive(None, &past), Receive::Refuse(_)));
        let mut short_hash = first.clone();
        short_hash.hash.truncate(4);
        assert!(matches!(receive(None, &short_hash), Receive::Refuse(_)));
        let mut empty = first;
        empty.bytes.clear();
        assert!(matches!(receive(None, &empty), Receive::Refuse(_)));
    }

    #[test]
    fn assembly_checks_length_and_hash() {
        let whole = snapshot(3_000);
        let hash = snapshot_hash(&whole);
        let parts = || vec![whole[..1_000].to_vec(), whole[1_000..].to_vec()];
        assert_eq!(assemble(parts(), 3_000, &hash).unwrap(), whole);
        assert!(assemble(parts(), 3_001, &hash).is_err());
        let mut flipped = parts();
        flipped[1][0] ^= 1;
        assert!(assemble(flipped, 3_000, &hash).is_err());
    }
}
