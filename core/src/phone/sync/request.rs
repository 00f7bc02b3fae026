//! What the next request carries, decided from what the store holds (no I/O).

use automerge::sync::{State as SyncState, SyncDoc};
use automerge::{AutoCommit, ChangeHash};

use crate::model::Millis;
use crate::store::meta::SyncPosition;
use crate::sync::{CatchUp, DocId, DocPush, SyncRequest};

/// A document with changes the server has not acknowledged.
#[derive(Debug)]
pub struct Unsent {
    pub doc_id: DocId,
    pub doc: AutoCommit,
    /// The heads the server is known to hold.
    pub server_heads: Vec<ChangeHash>,
}

/// What the store holds for the first request of a sync.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Documents with unacknowledged changes (refused ones left out), in id order.
    pub unsent: Vec<Unsent>,
    /// Documents to catch up on, with what the phone holds of each (`None`: nothing).
    pub catch_up: Vec<(DocId, Option<AutoCommit>)>,
}

/// The most documents pushed in one request (the server refuses more than 5,000).
pub const MAX_PUSHES_PER_REQUEST: usize = 1_000;

/// The request: the sync position, and (given an outbox) the changes beyond the server's heads,
/// document by document until `push_bytes` are reached (at least one document, so a link that
/// carries little still moves), and a sync message from a fresh state for each document to
/// catch up on. The flag says that pushes were left for a later request.
pub fn plan_request(
    position: &SyncPosition,
    now: Millis,
    page_size: u32,
    push_bytes: usize,
    outbox: Option<Outbox>,
) -> (SyncRequest, bool) {
    let mut request = SyncRequest {
        device_time: now,
        cursor: position.cursor,
        restore: position.restore.clone(),
        page_size,
        page_bytes: 0,
        pushes: Vec::new(),
        catch_up: Vec::new(),
        rules_version: position.rules_version,
        // This phone stages parts; the shell adds what it holds (`staged`).
        accept_parts: true,
        staged: None,
        // This phone expands compact snapshots (`crate::sync::compact`).
        compact_snapshots: true,
        // This phone places trusted times relative to its documents' (`crate::sync::times`).
        compact_times: true,
        // The sync client echoes what the server said remained (`SyncClient::encode`).
        restore_remaining: 0,
    };
    let Some(outbox) = outbox else {
        return (request, false);
    };
    let mut bytes = 0;
    let mut left_over = false;
    for mut unsent in outbox.unsent {
        if !request.pushes.is_empty()
            && (bytes >= push_bytes || request.pushes.len() >= MAX_PUSHES_PER_REQUEST)
        {
            left_over = true;
            break;
        }
        let changes: Vec<Vec<u8>> = unsent
            .doc
            .get_changes(&unsent.server_heads)
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect();
        if !changes.is_empty() {
            bytes += changes.iter().map(Vec::len).sum::<usize>();
            request.pushes.push(DocPush {
                doc_id: unsent.doc_id,
                changes,
            });
        }
    }
    for (doc_id, held) in outbox.catch_up {
        let mut doc = held.unwrap_or_default();
        if let Some(message) = doc.sync().generate_sync_message(&mut SyncState::new()) {
            request.catch_up.push(CatchUp {
                doc_id,
                message: message.encode(),
            });
        }
    }
    (request, left_over)
}
