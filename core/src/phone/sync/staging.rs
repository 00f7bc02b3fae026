//! The shell's half of a snapshot received in parts (`crate::sync::parts`): inside the page's
//! write transaction, before the page is planned, the response's part is checked against what
//! is staged and staged itself; with the last part the assembled snapshot is verified and joins
//! the page's documents as if it had come whole. A page without a part of the staged snapshot
//! makes it stale (the server sends the next part whenever the document is next and too large),
//! so what is staged is discarded.

use rusqlite::Connection;

use crate::phone::PhoneError;
use crate::phone::error::bad;
use crate::store::staging;
use crate::sync::parts::{self, Receive};
use crate::sync::{DocUpdate, Payload, StagedSnapshot, SyncResponse};

/// What taking the part did.
#[derive(Debug)]
pub enum Taken {
    /// Bytes of a part staged by this page (0: the page had none).
    Bytes(u64),
    /// Every part arrived but they do not make the announced snapshot: the staging is
    /// discarded (commit that alone) and the page refused with this error.
    Corrupt(PhoneError),
}

/// What the next request tells the server it holds of a snapshot in parts.
pub fn staged(conn: &Connection) -> Result<Option<StagedSnapshot>, PhoneError> {
    Ok(staging::staged(conn)?.map(|s| s.snapshot))
}

/// Stages `response.part` (taking it out of the response); once complete and verified, the
/// snapshot is added to `response.docs`.
pub fn take_part(conn: &Connection, response: &mut SyncResponse) -> Result<Taken, PhoneError> {
    let held = staging::staged(conn)?;
    let Some(part) = response.part.take() else {
        if held.is_some() {
            staging::discard(conn)?;
        }
        return Ok(Taken::Bytes(0));
    };
    match parts::receive(held.as_ref().map(|h| &h.snapshot), &part) {
        Receive::Refuse(why) => return Err(bad(&part.doc_id, why)),
        Receive::Stage { discard_first } => {
            if discard_first {
                staging::discard(conn)?;
            }
            staging::stage(conn, &part)?;
        }
    }
    let bytes = part.bytes.len() as u64;
    if !part.is_last() {
        return Ok(Taken::Bytes(bytes));
    }
    let assembled = parts::assemble(staging::parts(conn, &part.doc_id)?, part.total, &part.hash);
    staging::discard(conn)?;
    match assembled {
        Ok(snapshot) => {
            response.docs.push(DocUpdate {
                doc_id: part.doc_id,
                payload: Payload::Snapshot(snapshot),
                heads: Vec::new(),
            });
            Ok(Taken::Bytes(bytes))
        }
        Err(why) => Ok(Taken::Corrupt(bad(&part.doc_id, why))),
    }
}
